#!/usr/bin/env python3
"""Helper of bench/alerts.sh (python3 standard library only).

Subcommands:
  rules     append N [[rule]]s (CEL over the documented fields, a mix of string, number and
            list tests, some with `for`) and an [alerting] table to a coffer.toml
  receiver  an HTTP server on loopback that appends {"t": arrival time, "alerts": [...]} per
            POST to a JSON-lines file (the webhook channel's receiver)
  latency   for each failed run in the catalog, the time from the run's end (as the catalog
            records it) to the first webhook carrying a firing BackupFailed for its job
"""

import argparse
import http.server
import json
import sqlite3
import statistics
import sys
import threading
import time
from datetime import datetime


def cmd_rules(a):
    exprs = [
        'status == "FAILED" && source_type == "files"',
        'status == "FAILED" && consecutive_failures >= 3',
        'duration_seconds > 3600.0',
        'duration_seconds > 2.0 * median_duration_seconds && median_duration_seconds > 0.0',
        'compression_ratio > 0.0 && compression_ratio < 1.1',
        'backup_age_seconds > rpo_seconds && rpo_seconds > 0.0',
        'storage_ratio > 0.9',
        '"files" in source_types && size(source_types) > 2',
        'error.contains("No space")',
        'error.matches("(?i)timeout|refused")',
        'paused && backup_age_seconds > 86400.0',
        'stored_bytes > 10 * 1024 * 1024 * 1024',
        'source_bytes == 0 && status == "SUCCESS"',
        'running_seconds > max_runtime_seconds && max_runtime_seconds > 0.0',
        'verify_status == "FAILED" || verify_problems > 0',
        'backup_job.startsWith("job-00") && status == "WARNING"',
        'repository == "local" && files < 1',
    ]
    sev = ["critical", "high", "medium", "low"]
    out = ["\n[alerting]\n",
           f'evaluation_interval = "{a.interval}"\n',
           'group_by = ["alertname", "backup_job"]\n']
    for i in range(a.count):
        e = exprs[i % len(exprs)]
        out.append(
            f'\n[[rule]]\nname = "bench-{i:03d}"\nwhen = \'{e}\'\n'
            f'severity = "{sev[i % 4]}"\n'
            + ('for = "10m"\n' if i % 5 == 0 else "")
            + f'summary = "{{{{ backup_job }}}}: rule {i} ({{{{ status }}}}, {{{{ error }}}})"\n'
        )
    with open(a.config, "a") as f:
        f.write("".join(out))


def cmd_receiver(a):
    out = open(a.out, "a", buffering=1)
    lock = threading.Lock()

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            t = time.time()
            n = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(n)
            try:
                alerts = json.loads(body).get("alerts", [])
            except ValueError:
                alerts = []
            with lock:
                out.write(json.dumps({"t": t, "alerts": alerts}) + "\n")
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)
    srv.serve_forever()


def parse_time(s):
    # chrono writes up to 9 sub-second digits; Python takes 6.
    if "." in s:
        head, rest = s.split(".", 1)
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        s = f"{head}.{frac[:6]}{tz}"
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def cmd_latency(a):
    db = sqlite3.connect(a.catalog)
    ends = {}
    for job, ended in db.execute(
        "SELECT job, ended FROM runs WHERE kind = 'backup' AND status = 'FAILED' AND ended IS NOT NULL"
    ):
        ends.setdefault(job, parse_time(ended))
    first = {}
    for line in open(a.received):
        r = json.loads(line)
        for al in r["alerts"]:
            lab = al.get("labels", {})
            if lab.get("alertname") == "BackupFailed" and al.get("status") == "firing":
                first.setdefault(lab.get("backup_job"), r["t"])
    lat = [(first[j] - ends[j]) * 1000 for j in ends if j in first]
    missing = [j for j in ends if j not in first]
    if not lat:
        print(json.dumps({"error": "no alert received", "missing": missing}))
        sys.exit(1)
    lat.sort()
    print(json.dumps({
        "runs": len(ends),
        "received": len(lat),
        "missing": missing,
        "p50_ms": round(statistics.median(lat), 1),
        "max_ms": round(lat[-1], 1),
        "min_ms": round(lat[0], 1),
    }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rules")
    r.add_argument("--config", required=True)
    r.add_argument("--count", type=int, default=50)
    r.add_argument("--interval", default="10s")
    r.set_defaults(f=cmd_rules)
    v = sub.add_parser("receiver")
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--out", required=True)
    v.set_defaults(f=cmd_receiver)
    l = sub.add_parser("latency")
    l.add_argument("--catalog", required=True)
    l.add_argument("--received", required=True)
    l.set_defaults(f=cmd_latency)
    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
