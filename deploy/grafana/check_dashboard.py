#!/usr/bin/env python3
"""Checks coffer's Grafana dashboard (Python 3 standard library only).

Usage: check_dashboard.py DASHBOARD.json [SCRAPE.txt]

Always, so that the file imports and no panel is silently empty: the JSON parses; every
panel (also those nested in collapsed rows) has a unique integer id, a type, a title and a
gridPos with h/w/x/y; every panel but rows and text panels has targets, each with an expr and
a refId unique in the panel; panels, targets and query variables use the ${datasource}
variable, so the dashboard is not tied to one Grafana's datasource UID.

With SCRAPE.txt (a coffer /metrics response in the Prometheus text format), also: every
coffer_* name in a target expr or query variable (string literals skipped) is a sample name
in the scrape, since a renamed or removed metric only turns panels into "No data". Names are
compared exactly, with no suffix stripping: a histogram is exposed as NAME_bucket/_sum/_count
samples, which PromQL must select, while the bare family name appears only on # HELP/# TYPE
lines and selects nothing, so it is reported. Labelled metrics have no sample until first set:
scrape a daemon whose jobs have run and succeeded and whose repositories were verified.

Exit status: 0 OK (one summary line), 1 a check failed (problems on stderr), 2 usage error.
"""

import json
import re
import sys

DS_VAR = "${datasource}"
NO_TARGETS = {"row", "text"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
METRIC = re.compile(r"(?<![A-Za-z0-9_:])coffer_[A-Za-z0-9_:]+")  # whole names, odd ones too
SAMPLE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def all_panels(panels):
    """Top-level panels and those nested in (collapsed) rows."""
    for p in panels:
        yield p if isinstance(p, dict) else {}
        yield from all_panels(p.get("panels") or [] if isinstance(p, dict) else [])


def ds_ok(ds, required):
    return not required if ds is None else DS_VAR in (ds, isinstance(ds, dict) and ds.get("uid"))


def check(dash, errors):
    """Structural checks; returns (panel count, target count, PromQL expressions)."""
    if not isinstance(dash, dict) or not isinstance(dash.get("panels"), list):
        errors.append('no "panels" list at the top level')
        return 0, 0, []
    exprs, ids, n_panels, n_targets = [], set(), 0, 0
    for p in all_panels(dash["panels"]):
        n_panels += 1
        name = f"panel {p.get('id')!r} ({p.get('title')!r})"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            errors.append(f"{name}: id missing, not an integer or not unique")
        ids.add(p.get("id"))
        errors += [f"{name}: no {k}" for k in ("type", "title") if not p.get(k)]
        gp = p.get("gridPos")
        if not isinstance(gp, dict) or not all(isinstance(gp.get(k), int) for k in "hwxy"):
            errors.append(f"{name}: gridPos missing or without integer h, w, x, y")
        if p.get("type") in NO_TARGETS:
            continue
        if not ds_ok(p.get("datasource"), True):
            errors.append(f"{name}: datasource is not {DS_VAR}")
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            errors.append(f"{name}: no targets")
            continue
        refs = set()
        for t in targets:
            n_targets, t = n_targets + 1, t if isinstance(t, dict) else {}
            if not t.get("expr"):
                errors.append(f"{name}: target {t.get('refId')!r} has no expr")
            if not t.get("refId") or t["refId"] in refs:
                errors.append(f"{name}: target refId missing or repeated: {t.get('refId')!r}")
            if not ds_ok(t.get("datasource"), False):
                errors.append(f"{name}: target {t.get('refId')!r} datasource is not {DS_VAR}")
            refs.add(t.get("refId"))
            exprs.append(t.get("expr") or "")
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            if not ds_ok(v.get("datasource"), True):
                errors.append(f"variable {v.get('name')!r}: datasource is not {DS_VAR}")
            q = v.get("query")
            exprs.append((q.get("query") if isinstance(q, dict) else q) or "")
    return n_panels, n_targets, exprs


def metric_names(exprs):
    return {m for e in exprs for m in METRIC.findall(STRING.sub('""', e))}


def sample_names(text):
    """Names of the sample lines (not of # HELP / # TYPE comments) of a text exposition."""
    lines = (line.strip() for line in text.splitlines())
    return {m.group(0) for m in (SAMPLE.match(x) for x in lines if not x.startswith("#")) if m}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        text, scrape = read(argv[1]), (read(argv[2]) if len(argv) == 3 else None)
    except OSError as e:
        print(f"check_dashboard: {e}", file=sys.stderr)
        return 2
    errors, dash = [], None
    try:
        dash = json.loads(text)
    except ValueError as e:
        errors.append(f"not valid JSON: {e}")
    n_panels, n_targets, exprs = check(dash, errors) if dash is not None else (0, 0, [])
    used = metric_names(exprs)
    if scrape is not None:
        errors += [f"metric not in the scrape: {m}" for m in sorted(used - sample_names(scrape))]
    if errors:
        print("\n".join(f"{argv[1]}: {e}" for e in errors), file=sys.stderr)
        return 1
    against = f", all found in {argv[2]}" if scrape is not None else " (no scrape given)"
    print(f"OK {argv[1]}: {n_panels} panels, {n_targets} targets, "
          f"{len(used)} coffer_* metric names{against}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
