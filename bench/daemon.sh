#!/usr/bin/env bash
# What the daemon's API costs at scale: `coffer serve` with BENCH_JOBS jobs and BENCH_RUNS runs
# (a year of history) in its run catalog.
#
#   1. A scratch directory: a local repository (coffer init), a coffer.toml with BENCH_JOBS
#      [[source]]s (type files) and BENCH_JOBS [[job]]s whose schedules do not fire before
#      January (varied rpo, retention, time zone, retries), [server] on a free loopback port,
#      catalog_retention 400d so the daemon keeps the whole year.
#   2. coffer creates the catalog (`coffer runs` on an empty one: its own schema and
#      user_version) and records one real run (`coffer job run job-0001`: its row is the
#      template of every other row's body and columns); `coffer job pause` pauses two jobs.
#      bench/daemon_catalog.py then replaces the template run with BENCH_RUNS finished runs
#      (mostly SUCCESS, some FAILED/WARNING/PAUSED, per-source results and snapshot ids; one
#      job failing for months, one that never worked) and checks that coffer reads every row
#      back: `runs --json --limit 3`, `runs --json` over all rows (each equal to its stored
#      body), `status --json` against the catalog, job by job. Any mismatch stops the script.
#   3. `coffer serve`: time to /-/ready, then BENCH_WARMUP + BENCH_REQUESTS sequential
#      keep-alive GETs each of /metrics, /api/status, /api/runs?limit=50 and /api/jobs/NAME:
#      p50/p95/p99/max in ms and response size; then /-/healthy latency while two clients loop
#      over /api/status. An endpoint whose requests take more than BENCH_MAX_SECONDS in all
#      gets fewer requests (at least 3; warm-up stops after 10 s): column n says how many.
#      `promtool check metrics` on one scrape when promtool is installed.
#   4. Idle cost after the load: CPU % over BENCH_IDLE_SECONDS (utime+stime from /proc/PID/stat),
#      bytes written meanwhile (/proc/PID/io), VmRSS after start, after load and VmHWM.
#
# Usage: bench/daemon.sh
# Env:   BENCH_JOBS (500), BENCH_RUNS (100000), BENCH_REQUESTS (200), BENCH_WARMUP (5),
#        BENCH_MAX_SECONDS (180, per endpoint), BENCH_IDLE_SECONDS (60), BENCH_SEED (1),
#        BENCH_DIR (scratch directory, emptied first and kept; default a new mktemp -d under
#        /tmp, removed at the end unless BENCH_KEEP=1), COFFER (binary; when unset,
#        target/release/coffer is built with cargo first).
# Needs python3 (standard library); uses promtool when installed.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${BENCH_JOBS:-500}
runs=${BENCH_RUNS:-100000}
requests=${BENCH_REQUESTS:-200}
warmup=${BENCH_WARMUP:-5}
idle=${BENCH_IDLE_SECONDS:-60}
max_secs=${BENCH_MAX_SECONDS:-180}
seed=${BENCH_SEED:-1}
helper="$PWD/bench/daemon_catalog.py"

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
(( jobs >= 5 && runs >= jobs )) || { echo "BENCH_JOBS must be >= 5 and BENCH_RUNS >= BENCH_JOBS" >&2; exit 1; }

keep=${BENCH_KEEP:-0}
if [ -n "${BENCH_DIR:-}" ]; then
    work=$BENCH_DIR; rm -rf "$work"; mkdir -p "$work"; keep=1
else
    work=$(mktemp -d /tmp/coffer-daemon.XXXXXX)
fi
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy, so that a rebuild during the run cannot swap the binary halfway through.
cp "$coffer" "$work/coffer"; coffer="$work/coffer"
echo bench > "$work/password"; chmod 600 "$work/password"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cfg="$work/coffer.toml"
C=("$coffer" --config "$cfg")
secs() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$1" "$2"; }
now() { date +%s.%N; }
proc() { python3 "$helper" proc "$pid"; }
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo "== $jobs jobs, $runs runs, in $work; $(nproc) cores; $("$coffer" version 2>/dev/null | head -n 1)"
python3 "$helper" config --out "$cfg" --work "$work" --jobs "$jobs" --port "$port" --seed "$seed"
"${C[@]}" -q init >/dev/null
"${C[@]}" -q config check
"${C[@]}" runs >/dev/null   # creates the catalog: coffer's schema and user_version
# One real run, the template of every row the helper writes (it checks and removes it).
mkdir -p "$work/data/0001"; cp /etc/hostname /etc/os-release "$work/data/0001/"
"${C[@]}" -q job run job-0001 >/dev/null || { echo "coffer job run job-0001 failed" >&2; exit 1; }
"${C[@]}" -q job pause job-0005
"${C[@]}" -q job pause "job-$(printf %04d $(( jobs > 40 ? 40 : jobs )))"

t0=$(now)
fill=$(python3 "$helper" fill --config "$cfg" --runs "$runs" --seed "$seed")
echo "   catalog filled in $(secs "$t0" "$(now)") s: $fill"
echo "== checking that coffer reads every row back"
verify=$(python3 "$helper" verify --config "$cfg" --coffer "$coffer")
echo "   $verify"
db_mb=$(du -m "$work/catalog.db" | cut -f1)

echo "== coffer serve on 127.0.0.1:$port"
t0=$(now)
"${C[@]}" serve > "$work/serve.log" 2>&1 &
pid=$!
ready=$(python3 "$helper" wait --port "$port" --pid "$pid" --since "$t0")
echo "   ready after $ready s"
sleep 2
p_start=$(proc)

echo "== latency: $warmup warm-up + $requests sequential requests per endpoint"
python3 "$helper" latency --port "$port" --requests "$requests" --warmup "$warmup" --jobs "$jobs" \
    --max-seconds "$max_secs" --save-metrics "$work/metrics.txt" --out "$work/latency.json" \
    /metrics /api/status "/api/runs?limit=50" "/api/jobs/job-$(printf %04d $(( (jobs + 1) / 2 )))"
p_load=$(proc)
if command -v promtool >/dev/null; then
    if promtool_out=$(promtool check metrics < "$work/metrics.txt" 2>&1); then
        promtool_res="OK${promtool_out:+ ($(echo "$promtool_out" | wc -l) lint lines)}"
    else
        promtool_res="FAILED: $(echo "$promtool_out" | head -n 5 | tr '\n' ' ')"
    fi
    [ -n "$promtool_out" ] && echo "$promtool_out" | head -n 10 | sed 's/^/   promtool: /'
else
    promtool_res="not installed"
fi
samples=$(grep -vc '^#' "$work/metrics.txt" || true)
families=$(grep -c '^# TYPE' "$work/metrics.txt" || true)

echo "== idle for $idle s"
p0=$(proc)
sleep "$idle"
p1=$(proc)
read -r cpu_pct wr_kbs < <(python3 -c '
import json, os, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dt = b["t"] - a["t"]
cpu = (b["ticks"] - a["ticks"]) / os.sysconf("SC_CLK_TCK") / dt * 100
wr = (b["write_bytes"] - a["write_bytes"]) / 1024 / dt
print(f"{cpu:.2f} {wr:.1f}")' "$p0" "$p1")

(( $(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM runs").fetchone()[0])' "$work/catalog.db") == runs )) ||
    { echo "the catalog lost runs while the daemon ran (catalog_retention?)" >&2; exit 1; }
if grep -Ei '\b(error|panic)' "$work/serve.log" >/dev/null; then
    echo "   daemon log has errors:"; grep -Ei '\b(error|panic)' "$work/serve.log" | head -n 5 | sed 's/^/   /'
fi

mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
echo
echo "== results: $jobs jobs, $runs runs (catalog $db_mb MB), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
python3 "$helper" table "$work/latency.json"
echo "(ms; first = first request after start; n = requests measured after warm-up: $requests, or fewer past ${max_secs} s)"
echo
printf '%-34s %s\n' "startup to /-/ready" "$ready s"
printf '%-34s %s\n' "/metrics exposition" "$families families, $samples samples; promtool: $promtool_res"
printf '%-34s %s\n' "idle CPU ($idle s)" "$cpu_pct % of one core"
printf '%-34s %s\n' "idle writes" "$wr_kbs KiB/s"
printf '%-34s %s\n' "RSS after start" "$(mb "$(field "$p_start" rss_kb)") MB ($(field "$p_start" threads) threads)"
printf '%-34s %s\n' "RSS after load" "$(mb "$(field "$p_load" rss_kb)") MB"
printf '%-34s %s\n' "RSS after idle" "$(mb "$(field "$p1" rss_kb)") MB"
printf '%-34s %s\n' "peak RSS (VmHWM)" "$(mb "$(field "$p1" hwm_kb)") MB"
printf '%-34s %s\n' "CLI (same catalog)" "$(python3 -c 'import json, sys; print(", ".join(f"{k}: {v} s" for k, v in json.loads(sys.argv[1])["cli_seconds"].items()))' "$verify")"
