#!/usr/bin/env python3
"""Helper of bench/daemon.sh (python3 standard library only).

Subcommands:
  config   write a coffer.toml with JOBS [[job]]s over JOBS [[source]]s (schedules that do
           not fire before January), one local repository and [server] on a loopback port
  fill     fill the run catalog the config names with RUNS finished runs spread over the
           jobs and the last 365 days, rows written the way coffer-catalog writes them
           (run ids, RFC 3339 columns, the serde shape of `Run` in `body`)
  verify   check with the coffer binary that every row parses (`coffer runs --json` must
           return all of them, each equal to its stored body; `coffer status --json` must
           agree with the catalog for every job); exits 1 on any mismatch
  wait     wait for GET /-/ready; prints the seconds it took
  latency  sequential keep-alive GETs per endpoint: p50/p95/p99/max and response size, then
           /-/healthy latency while concurrent clients loop over /api/status
  proc     utime+stime ticks, VmRSS, VmHWM, Threads and write_bytes of a pid, as JSON

The catalog rows must be exactly what the Rust code would produce, so this file mirrors
crates/coffer-catalog/src/lib.rs: `started`/`ended` columns are chrono's to_rfc3339()
("+00:00", sub-seconds as 0, 3, 6 or 9 digits), the body's times are chrono's serde form
(the same with "Z"), duration_seconds is whole milliseconds / 1000, and the totals,
compression_ratio, throughput, snapshot_ids, errors and warnings follow Run::finish.
"""

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from datetime import datetime, timezone

NS = 1_000_000_000
DAY_NS = 86_400 * NS


def die(msg):
    print(f"daemon_catalog.py: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# config


def cmd_config(a):
    rng = random.Random(a.seed)
    out = []
    out.append("# written by bench/daemon_catalog.py config\n")
    out.append(
        f'[[repository]]\nname = "local"\nurl = "{a.work}/repo"\n'
        f'password_file = "{a.work}/password"\n\n'
    )
    out.append(
        f'[server]\nlisten = "127.0.0.1:{a.port}"\ncatalog = "{a.work}/catalog.db"\n'
        # The history is a year long: keep all of it (the default, 180d, would trim half of
        # it at the daemon's first tick).
        'catalog_retention = "400d"\nmax_concurrent_jobs = 2\n\n'
    )
    n = a.jobs
    for i in range(1, n + 1):
        out.append(
            f'[[source]]\nname = "src-{i:04d}"\ntype = "files"\n'
            # Only data/0001 exists: job-0001 runs once for real, as the template of a row.
            f'paths = ["{a.work}/data/{i:04d}"]\n\n'
        )
    rpos = ["26h", "30h", "36h", "2d", "8d", "1w"]
    retentions = [
        None,
        "{ daily = 7, weekly = 4, monthly = 12 }",
        "{ last = 30 }",
        '{ within = "30d" }',
        "{ hourly = 24, daily = 14, weekly = 8 }",
    ]
    zones = [None, None, "UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
    for i in range(1, n + 1):
        srcs = [f"src-{i:04d}"]
        if i % 4 == 0:
            srcs.append(f"src-{i % n + 1:04d}")
        if i % 10 == 0:
            srcs.append(f"src-{(i + 1) % n + 1:04d}")
        lines = [
            "[[job]]",
            f'name = "job-{i:04d}"',
            "sources = [" + ", ".join(f'"{s}"' for s in srcs) + "]",
            # January 1st, 03:MM: will not fire while the benchmark runs (unless run on
            # New Year's night).
            f'schedule = "{i % 60} 3 1 1 *"',
            f'rpo = "{rng.choice(rpos)}"',
        ]
        if i % 3 == 0:
            lines.append('repository = "local"')
        tz = rng.choice(zones)
        if tz:
            lines.append(f'timezone = "{tz}"')
        ret = rng.choice(retentions)
        if ret:
            lines.append(f"retention = {ret}")
        if i % 5 == 0:
            lines.append(f'max_runtime = "{rng.choice(["30m", "2h", "4h"])}"')
        lines.append(f"retries = {rng.choice([0, 1, 1, 2, 3])}")
        if i % 25 == 0:
            lines.append("priority = 10")
        out.append("\n".join(lines) + "\n\n")
    with open(a.out, "w") as f:
        f.write("".join(out))


# ---------------------------------------------------------------------------------------------
# fill


def rfc3339(ns, z):
    """chrono's write_rfc3339 with SecondsFormat::AutoSi: no fraction, or 3, 6 or 9 digits."""
    secs, frac = divmod(ns, NS)
    s = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        pass
    elif frac % 1_000_000 == 0:
        s += f".{frac // 1_000_000:03d}"
    elif frac % 1_000 == 0:
        s += f".{frac // 1_000:06d}"
    else:
        s += f".{frac:09d}"
    return s + ("Z" if z else "+00:00")


def parse_ns(s):
    """Nanoseconds since the epoch of an RFC 3339 UTC time ("Z" or "+00:00")."""
    s = s.replace("Z", "+00:00")
    main, _, frac = s[:-6].partition(".")
    if s[-6:] != "+00:00":
        die(f"not a UTC time: {s!r}")
    secs = int(datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return secs * NS + int((frac + "000000000")[:9])


def id_base(ns, job):
    return datetime.fromtimestamp(ns // NS, timezone.utc).strftime("%Y%m%d_%H%M%S") + "-" + job


SOURCE_ERRORS = [
    "reading /srv/data: Permission denied (os error 13)",
    "repository \"local\": unable to lock: locked exclusively by PID 4711 on host backup01",
    "the source process exited with status 2",
    "writing pack: No space left on device (os error 28)",
    "timed out after 600s waiting for the repository lock",
]
SOURCE_WARNINGS = [
    "/srv/data/tmp/upload.part: file changed while it was read",
    "/srv/data/cache/sessions: Permission denied (os error 13)",
    "/srv/data/run/app.sock: special file skipped",
]


def cmd_fill(a):
    rng = random.Random(a.seed)
    cfg = tomllib.load(open(a.config, "rb"))
    db = cfg["server"]["catalog"]
    repo0 = cfg["repository"][0]["name"]
    kinds = {s["name"]: s["type"] for s in cfg.get("source", [])}
    jobs = cfg["job"]
    if not jobs:
        die("the config has no [[job]]")
    con = sqlite3.connect(db)
    (uv,) = con.execute("PRAGMA user_version").fetchone()
    (tables,) = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('runs', 'jobs', 'meta')").fetchone()
    if uv < 2 or tables != 3:
        die(f"{db}: expected coffer's schema (user_version >= 2, tables runs/jobs/meta), found user_version {uv}, {tables} tables: let coffer create it first")
    paused = {r[0] for r in con.execute("SELECT name FROM jobs WHERE paused != 0")}

    # The template: the one run coffer itself recorded (`coffer job run` of a real job). Its
    # body gives the key order and any field this script does not know (copied as is); its
    # row gives the columns beyond id/job/status/started/ended/body (filled from the body key
    # of the same name, else copied). Then it goes, so that the catalog holds RUNS runs.
    cols = [r[1] for r in con.execute("PRAGMA table_info(runs)")]
    tmpl = con.execute("SELECT * FROM runs").fetchall()
    if len(tmpl) != 1:
        die(f"{db}: expected exactly one run recorded by coffer (the template), found {len(tmpl)}")
    trow = dict(zip(cols, tmpl[0]))
    tbody = json.loads(trow["body"])
    tsrc = tbody.get("sources") or [{}]
    checks = [
        (trow["id"] == id_base(parse_ns(tbody["started"]), trow["job"]), f"run id {trow['id']!r} is not YYYYMMDD_HHMMSS-<job> of its start"),
        (trow["started"] == rfc3339(parse_ns(tbody["started"]), False), f"column started {trow['started']!r} is not to_rfc3339() of body started {tbody['started']!r}"),
        (tbody["started"] == rfc3339(parse_ns(tbody["started"]), True), f"body started {tbody['started']!r} is not chrono's serde form"),
        (trow["ended"] == rfc3339(parse_ns(tbody["ended"]), False), f"column ended {trow['ended']!r} does not match body ended {tbody['ended']!r}"),
        (trow["status"] == tbody["status"], "column status differs from body status"),
    ]
    for ok, msg in checks:
        if not ok:
            die(f"the template run does not look as this script assumes: {msg}")
    extra_cols = [c for c in cols if c not in ("id", "job", "status", "started", "ended", "body")]
    con.execute("DELETE FROM runs")
    con.commit()

    def shaped(mine, template):
        """`mine` in the template's key order; keys it lacks copied from the template."""
        return {k: mine[k] if k in mine else template[k] for k in template}

    # Runs per job: uneven, like real fleets (hourly-ish jobs next to weekly ones).
    weights = [rng.choice([0.25, 0.5, 1, 1, 1, 1.5, 2, 4]) for _ in jobs]
    total_w = sum(weights)
    counts = [max(1, int(a.runs * w / total_w)) for w in weights]
    i = 0
    while sum(counts) != a.runs:  # exact total
        d = 1 if sum(counts) < a.runs else -1
        if counts[i % len(jobs)] + d >= 1:
            counts[i % len(jobs)] += d
        i += 1

    now = time.time_ns()
    span = 365 * DAY_NS
    # Per source: a stable size, file count and throughput, growing slowly over the year.
    src_base = {}
    for name in kinds:
        size = int(rng.lognormvariate(21.5, 1.6))  # median ~2 GB
        src_base[name] = (size, max(1, int(size / rng.uniform(50_000, 2_000_000))), rng.uniform(40e6, 400e6))

    rows = []
    used_ids = set()
    stat = {"SUCCESS": 0, "WARNING": 0, "FAILED": 0, "PAUSED": 0}
    for j, (job, n) in enumerate(zip(jobs, counts)):
        name = job["name"]
        srcs = job["sources"]
        retries = int(job.get("retries", 1))
        repo = job.get("repository", repo0)
        flaky = rng.choice([0.002, 0.005, 0.01, 0.01, 0.03, 0.1])
        # How the job's history ends: most are fine now; some fail lately; job 2 has been
        # failing for months, job 3 never worked (worst cases for the "last good run" and
        # "consecutive failures" look-ups); paused jobs record PAUSED runs.
        tail_fail = 0
        if j == 1:
            tail_fail = int(n * 0.6)
        elif j == 2:
            tail_fail = n
        elif rng.random() < 0.04:
            tail_fail = rng.randint(1, 10)
        tail_paused = 5 if name in paused else 0
        interval = span // n
        seen_first = set()
        for k in range(n):
            from_end = n - 1 - k
            if from_end < tail_paused:
                status = "PAUSED"
            elif from_end < tail_paused + tail_fail:
                status = "FAILED"
            else:
                r = rng.random()
                status = "FAILED" if r < flaky else "WARNING" if r < flaky + 0.04 else "PAUSED" if r < flaky + 0.042 else "SUCCESS"
            # Counted back from now, so the newest run of each job is from the last hours.
            started = now - from_end * interval - int(rng.uniform(0.02, 0.3) * min(interval, DAY_NS))
            started += rng.randrange(NS)  # Utc::now() precision
            trigger = rng.choices(["schedule", "manual", "api", "misfire"], [0.93, 0.03, 0.03, 0.01])[0]
            body_sources = []
            if status == "PAUSED":
                ended = started + rng.randint(200_000, 4_000_000)
                errors = ["the job is paused (coffer job resume NAME)"]
                warnings = []
                attempt = 1
                cpu = rss = None
            else:
                bad = rng.randrange(len(srcs))
                attempt = retries + 1 if status == "FAILED" else (2 if retries and rng.random() < flaky else 1)
                t = 0.0
                for si, s in enumerate(srcs):
                    size0, files0, tput = src_base[s]
                    grow = 1 + 0.3 * k / n
                    sbytes = int(size0 * grow * rng.uniform(0.98, 1.02))
                    sstatus = "SUCCESS"
                    if si == bad and status in ("FAILED", "WARNING"):
                        sstatus = status
                    if sstatus == "FAILED":
                        sr = {"source": s, "type": kinds[s], "status": "FAILED", "snapshot_id": None,
                              "source_bytes": 0, "stored_bytes": 0, "files": 0,
                              "duration_seconds": round(rng.uniform(0.2, 30), 3),
                              "error": rng.choice(SOURCE_ERRORS), "warnings": []}
                    else:
                        first = s not in seen_first
                        seen_first.add(s)
                        ratio = rng.uniform(0.35, 0.6) if first else rng.uniform(0.0005, 0.03)
                        sr = {"source": s, "type": kinds[s], "status": sstatus,
                              "snapshot_id": "%064x" % rng.getrandbits(256),
                              "source_bytes": sbytes, "stored_bytes": int(sbytes * ratio),
                              "files": int(files0 * grow),
                              "duration_seconds": round(sbytes / tput * rng.uniform(0.8, 1.25), 3),
                              "error": None,
                              "warnings": rng.sample(SOURCE_WARNINGS, rng.randint(1, 2)) if sstatus == "WARNING" else []}
                    t += sr["duration_seconds"]
                    body_sources.append(sr)
                ended = started + int((t + rng.uniform(0.5, 4)) * NS) + rng.randrange(NS)
                errors = []
                warnings = []
                for sr in body_sources:  # Run::finish
                    if sr["error"] is not None:
                        errors.append(f"{sr['source']}: {sr['error']}")
                    warnings.extend(f"{sr['source']}: {w}" for w in sr["warnings"])
                cpu = round(t * rng.uniform(0.2, 0.9), 6)
                rss = rng.randint(40, 900) * 1024 * 1024
            if ended > now - 60 * NS:  # nothing ends in the future
                shift = ended - (now - 60 * NS)
                started -= shift
                ended -= shift
            base = id_base(started, name)
            rid, m = base, 1
            while rid in used_ids:
                m += 1
                rid = f"{base}.{m}"
            used_ids.add(rid)
            secs = ((ended - started) // 1_000_000) / 1000.0
            sb = sum(s["source_bytes"] for s in body_sources)
            st = sum(s["stored_bytes"] for s in body_sources)
            body = {
                "id": rid,
                "job": name,
                "status": status,
                "trigger": trigger,
                "repository": repo,
                "attempt": attempt,
                "started": rfc3339(started, True),
                "ended": rfc3339(ended, True),
                "duration_seconds": secs,
                "source_bytes": sb,
                "stored_bytes": st,
                "compression_ratio": sb / st if st > 0 else None,
                "files": sum(s["files"] for s in body_sources),
                "throughput_bytes_per_second": sb / secs if secs > 0 else None,
                "cpu_seconds": cpu,
                "peak_rss_bytes": rss,
                "errors": errors,
                "warnings": warnings,
                "snapshot_ids": [s["snapshot_id"] for s in body_sources if s["snapshot_id"] is not None],
                "sources": body_sources,
            }
            if tsrc[0]:
                body["sources"] = [shaped(x, tsrc[0]) for x in body["sources"]]
            body = shaped(body, tbody)
            stat[status] += 1
            rows.append((started, rid, name, status, rfc3339(started, False), rfc3339(ended, False),
                         json.dumps(body, separators=(",", ":")),
                         *[body.get(c, trow[c]) for c in extra_cols]))
    # Inserted in time order, as a daemon would have: one job's rows are spread over the file.
    rows.sort()
    names = ["id", "job", "status", "started", "ended", "body", *extra_cols]
    with con:
        con.executemany(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            (r[1:] for r in rows),
        )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(db)
    print(json.dumps({"runs": len(rows), "jobs": len(jobs), "schema": uv, "by_status": stat,
                      "runs_per_job_min": min(counts), "runs_per_job_max": max(counts),
                      "db_bytes": size,
                      "avg_body_bytes": round(sum(len(r[6]) for r in rows) / len(rows))}))


# ---------------------------------------------------------------------------------------------
# verify


def same(a, b):
    """JSON equality; floats within 1e-12 relative (serde_json's default float parser is not
    correctly rounded: a value can come back one ulp off, for coffer's own rows too)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def run_cli(coffer, config, *args):
    t0 = time.perf_counter()
    p = subprocess.run([coffer, "--config", config, *args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        die(f"coffer {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    try:
        return json.loads(p.stdout), dt
    except json.JSONDecodeError as e:
        die(f"coffer {' '.join(args)} printed no JSON ({e}):\n{p.stdout[:500]}\n{p.stderr}")


def cmd_verify(a):
    cfg = tomllib.load(open(a.config, "rb"))
    con = sqlite3.connect(cfg["server"]["catalog"])
    (total,) = con.execute("SELECT count(*) FROM runs").fetchone()
    problems = []
    timings = {}

    # 1. The three newest, as asked.
    out, timings["runs --limit 3"] = run_cli(a.coffer, a.config, "--json", "runs", "--limit", "3")
    want = con.execute("SELECT id, body FROM runs ORDER BY started DESC, id DESC LIMIT 3").fetchall()
    got = out.get("runs", [])
    if [r.get("id") for r in got] != [w[0] for w in want]:
        problems.append(f"runs --limit 3: ids {[r.get('id') for r in got]}, catalog has {[w[0] for w in want]}")
    for r, (_, body) in zip(got, want):
        if not same(r, json.loads(body)):
            problems.append(f"runs --limit 3: run {r.get('id')} differs from its stored body")

    # 2. Every row: Catalog::list drops a body it cannot decode without a word, so the count
    #    is the real test; each run must also come back equal to what was stored.
    out, timings[f"runs --limit {total}"] = run_cli(a.coffer, a.config, "--json", "runs", "--limit", str(total))
    got = out.get("runs", [])
    if len(got) != total:
        problems.append(f"runs --limit {total}: coffer decoded {len(got)} of {total} rows")
    bodies = dict(con.execute("SELECT id, body FROM runs"))
    bad = 0
    for r in got:
        b = bodies.get(r.get("id"))
        if b is None or not same(json.loads(b), r):
            bad += 1
            if bad <= 3:
                problems.append(f"run {r.get('id')}: coffer's JSON differs from the stored body")
    if bad > 3:
        problems.append(f"... {bad} runs differ in all")
    del bodies, got, out

    # 3. status --json against the catalog, job by job.
    out, timings["status"] = run_cli(a.coffer, a.config, "--json", "status")
    jobs = {j["name"]: j for j in out.get("jobs", [])}
    if len(jobs) != len(cfg["job"]):
        problems.append(f"status: {len(jobs)} jobs, the config has {len(cfg['job'])}")
    paused = {r[0] for r in con.execute("SELECT name FROM jobs WHERE paused != 0")}
    bad = 0
    for job in cfg["job"]:
        name = job["name"]
        rows = con.execute("SELECT id, status, started, ended FROM runs WHERE job = ? ORDER BY started DESC, id DESC", (name,)).fetchall()
        j = jobs.get(name, {})
        good = next((r for r in rows if r[1] in ("SUCCESS", "WARNING")), None)
        fails = 0
        for r in rows:  # Catalog::consecutive_failures
            if r[1] == "FAILED":
                fails += 1
            elif r[1] in ("SUCCESS", "WARNING"):
                break
        want = {
            "status": rows[0][1] if rows else None,
            "last_run": rows[0][0] if rows else None,
            "last_start": rows[0][2] if rows else None,  # the column is to_rfc3339(), as is this
            "last_success": good[3] if good else None,
            "consecutive_failures": fails,
            "paused": name in paused,
        }
        diff = {k: (j.get(k), v) for k, v in want.items() if j.get(k) != v and (k in j or k in ("status", "last_run"))}
        if diff:
            bad += 1
            if bad <= 3:
                problems.append(f"status of {name}: (coffer, catalog) {diff}")
    if bad > 3:
        problems.append(f"... {bad} jobs differ in all")
    if problems:
        die("the filled catalog does not read back as written:\n  " + "\n  ".join(problems))
    print(json.dumps({"ok": True, "runs": total, "jobs": len(jobs),
                      "cli_seconds": {k: round(v, 3) for k, v in timings.items()}}))


# ---------------------------------------------------------------------------------------------
# wait, latency, proc


def get(conn, path):
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return time.perf_counter() - t0, resp.status, body


def cmd_wait(a):
    # Seconds since `since` (the daemon's launch, Unix time), else since this started.
    t0 = time.perf_counter() - (time.time() - a.since if a.since else 0)
    while time.perf_counter() - t0 < a.timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
            _, st, _ = get(c, "/-/ready")
            c.close()
            if st == 200:
                print(f"{time.perf_counter() - t0:.3f}")
                return
        except OSError:
            pass
        if a.pid and not os.path.exists(f"/proc/{a.pid}"):
            die("the daemon exited before it was ready")
        time.sleep(0.02)
    die(f"/-/ready did not answer within {a.timeout}s")


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(-(-p * len(s) // 100)) - 1))]


def summary(name, times, size):
    ms = [t * 1000 for t in times]
    return {"endpoint": name, "n": len(ms), "first_ms": ms[0], "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95),
            "p99_ms": pct(ms, 99), "max_ms": max(ms), "mean_ms": statistics.fmean(ms), "bytes": size}


def cmd_latency(a):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=900)
    results = []
    for path in a.paths:
        # Warm-up: `warmup` requests, cut short after 10 s (at least one).
        first = None
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            dt, st, body = get(conn, path)
            first = dt if first is None else first
            if st != 200:
                die(f"GET {path}: HTTP {st}: {body[:300]!r}")
            if time.perf_counter() - t0 > 10:
                break
        # Measured: `requests` requests, or fewer (at least 3) when they take longer than
        # `max_seconds` in all: the report says how many were made.
        times = []
        size = 0
        t0 = time.perf_counter()
        for _ in range(a.requests):
            dt, st, body = get(conn, path)
            if st != 200:
                die(f"GET {path}: HTTP {st}: {body[:300]!r}")
            times.append(dt)
            size = len(body)
            if len(times) >= 3 and time.perf_counter() - t0 > a.max_seconds:
                break
        s = summary(path, times, size)
        s["first_ms"] = (first if first is not None else times[0]) * 1000
        results.append(s)
        if path == "/metrics" and a.save_metrics:
            with open(a.save_metrics, "wb") as f:
                f.write(body)
        if path == "/api/status":
            n = len(json.loads(body)["jobs"])
            if n != a.jobs:
                die(f"/api/status lists {n} jobs, expected {a.jobs}")
        print(f"   {path:<28} p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms  {size:>9} bytes  "
              f"({len(times)} requests)", flush=True)

    # Health checks while `clients` connections loop over /api/status: the handlers do their
    # SQLite work on the async runtime's threads under one catalog mutex.
    stop = threading.Event()
    done = [0] * a.clients

    def hammer(i):
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=900)
        while not stop.is_set():
            get(c, "/api/status")
            done[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(a.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(0.5)
    hc = http.client.HTTPConnection("127.0.0.1", a.port, timeout=900)
    ht = []
    t1 = time.perf_counter()
    for _ in range(a.health_probes):
        dt, st, _ = get(hc, "/-/healthy")
        ht.append(dt)
        if len(ht) >= 3 and time.perf_counter() - t1 > a.max_seconds:
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s = summary(f"/-/healthy under {a.clients}x/api/status", ht, 3)
    s["concurrent_status_rps"] = sum(done) / wall
    results.append(s)
    print(f"   {s['endpoint']:<28} p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms  "
          f"({s['concurrent_status_rps']:.2f} /api/status per s meanwhile)", flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f)


def cmd_table(a):
    results = json.load(open(a.file))
    print(f"{'endpoint':<34} {'n':>4} {'first':>9} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'bytes':>9}")
    for s in results:
        print(f"{s['endpoint']:<34} {s['n']:>4} {s['first_ms']:9.1f} {s['p50_ms']:9.1f} {s['p95_ms']:9.1f} "
              f"{s['p99_ms']:9.1f} {s['max_ms']:9.1f} {s['bytes']:>9}")
        if "concurrent_status_rps" in s:
            print(f"{'':<34} ({s['concurrent_status_rps']:.2f} /api/status answered per second meanwhile)")


def cmd_proc(a):
    with open(f"/proc/{a.pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    status = {}
    with open(f"/proc/{a.pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            status[k] = v.strip()
    io = {}
    try:
        with open(f"/proc/{a.pid}/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                io[k] = int(v)
    except OSError:
        pass
    kb = lambda k: int(status.get(k, "0 kB").split()[0])
    print(json.dumps({"t": time.time(), "ticks": int(rest[11]) + int(rest[12]),
                      "rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM"), "threads": int(status.get("Threads", 0)),
                      "write_bytes": io.get("write_bytes", 0), "wchar": io.get("wchar", 0)}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--out", required=True)
    c.add_argument("--work", required=True)
    c.add_argument("--jobs", type=int, default=500)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("fill")
    c.add_argument("--config", required=True)
    c.add_argument("--runs", type=int, default=100_000)
    c.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("verify")
    c.add_argument("--config", required=True)
    c.add_argument("--coffer", required=True)
    c = sub.add_parser("wait")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--pid", type=int)
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--since", type=float)
    c = sub.add_parser("latency")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--requests", type=int, default=200)
    c.add_argument("--warmup", type=int, default=5)
    c.add_argument("--jobs", type=int, required=True)
    c.add_argument("--clients", type=int, default=2)
    c.add_argument("--health-probes", type=int, default=40)
    c.add_argument("--max-seconds", type=float, default=180)
    c.add_argument("--save-metrics")
    c.add_argument("--out", required=True)
    c.add_argument("paths", nargs="+")
    c = sub.add_parser("table")
    c.add_argument("file")
    c = sub.add_parser("proc")
    c.add_argument("pid", type=int)
    a = p.parse_args()
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
