#!/usr/bin/env bash
# Alerting benchmark: prints numbers, asserts nothing.
#
#   1. Failure -> webhook latency: BENCH_FAIL_JOBS jobs whose only source exits 3, a webhook
#      channel to a receiver on loopback (bench/alerts_helper.py receiver), group_wait 0s and
#      one group per job. Each job is run through the API in turn; the latency is the
#      receiver's arrival time minus the run's end as the catalog records it (target < 1 s).
#   2. Rule evaluation cost: BENCH_JOBS jobs with BENCH_RUNS runs of history (the catalog of
#      bench/daemon.sh, written by bench/daemon_catalog.py) and BENCH_RULES user rules on top
#      of the built-in ones. Cold: `coffer alerts check --force --json` (a fresh process reads
#      every job's history); warm: the daemon's own evaluations, read from
#      coffer_alert_evaluation_seconds on /metrics, plus its CPU while it evaluates every 1 s.
#
#   bench/alerts.sh                       # builds target/release/coffer first
#   COFFER=path/to/coffer bench/alerts.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fail_jobs=${BENCH_FAIL_JOBS:-10}
jobs=${BENCH_JOBS:-500}
runs=${BENCH_RUNS:-100000}
rules=${BENCH_RULES:-50}
helper="$PWD/bench/alerts_helper.py"
catalog_helper="$PWD/bench/daemon_catalog.py"

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }

work=$(mktemp -d /tmp/coffer-alerts.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp "$coffer" "$work/coffer"; coffer="$work/coffer"
freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "== coffer alerting benchmark; $(nproc) cores; $("$coffer" version 2>/dev/null | head -n 1)"

# ---------------------------------------------------------------------------------------
echo "== 1. failure -> webhook latency ($fail_jobs failing jobs, group_wait 0s)"
d="$work/latency"; mkdir -p "$d"
echo bench > "$d/password"; chmod 600 "$d/password"
rport=$(freeport); dport=$(freeport)
python3 "$helper" receiver --port "$rport" --out "$d/received.jsonl" &
pids+=($!)
{
    printf '[server]\nlisten = "127.0.0.1:%s"\ncatalog = "%s/catalog.db"\n\n' "$dport" "$d"
    printf '[audit]\nkey_file = "%s/key/audit.key"\n\n' "$work"
    printf '[[repository]]\nname = "local"\nurl = "%s/repo"\npassword_file = "%s/password"\n\n' "$d" "$d"
    printf '[[source]]\nname = "failing"\ntype = "command"\ncommand = ["sh", "-c", "echo disk error >&2; exit 3"]\n\n'
    printf '[alerting]\ngroup_by = ["alertname", "backup_job"]\n\n'
    printf '[[channel]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:%s/hook"\n\n' "$rport"
    for i in $(seq 1 "$fail_jobs"); do
        printf '[[job]]\nname = "fail-%02d"\nsources = ["failing"]\nschedule = "0 0 1 1 *"\nretries = 0\n\n' "$i"
    done
} > "$d/coffer.toml"
"$coffer" --config "$d/coffer.toml" -q init >/dev/null
"$coffer" --config "$d/coffer.toml" serve > "$d/serve.log" 2>&1 &
pids+=($!)
wait_port "$dport"
for i in $(seq 1 "$fail_jobs"); do
    job=$(printf 'fail-%02d' "$i")
    curl -s -X POST "http://127.0.0.1:$dport/api/jobs/$job/run" >/dev/null
    for _ in $(seq 1 200); do
        grep -q "\"backup_job\": \"$job\"" "$d/received.jsonl" 2>/dev/null && break
        sleep 0.05
    done
done
lat=$(python3 "$helper" latency --catalog "$d/catalog.db" --received "$d/received.jsonl")
echo "   $lat"

# ---------------------------------------------------------------------------------------
echo "== 2. rule evaluation: $jobs jobs, $runs runs, $rules user rules + the built-in ones"
e="$work/eval"; mkdir -p "$e/data/0001"
echo bench > "$e/password"; chmod 600 "$e/password"
eport=$(freeport)
python3 "$catalog_helper" config --out "$e/coffer.toml" --work "$e" --jobs "$jobs" --port "$eport" --seed 1
printf '\n[audit]\nkey_file = "%s/key/audit.key"\n' "$work" >> "$e/coffer.toml"
python3 "$helper" rules --config "$e/coffer.toml" --count "$rules" --interval 1s
C=("$coffer" --config "$e/coffer.toml")
"${C[@]}" -q init >/dev/null
"${C[@]}" -q config check
"${C[@]}" runs >/dev/null
cp /etc/hostname "$e/data/0001/"
"${C[@]}" -q job run job-0001 >/dev/null
python3 "$catalog_helper" fill --config "$e/coffer.toml" --runs "$runs" --seed 1 >/dev/null
for i in 1 2 3; do
    out=$("${C[@]}" --json alerts check --force)
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
c, e, h, f, p, r = v["collect_ms"], v["evaluate_ms"], v["hits"], v["firing"], v["pending"], len(v["rule_errors"])
print(f"   cold (alerts check #{sys.argv[2]}): facts {c:.0f} ms, rules + lifecycle {e:.1f} ms; {h} hits, {f} firing, {p} pending, {r} rule errors")
' "$out" "$i"
done
"${C[@]}" serve > "$e/serve.log" 2>&1 &
spid=$!; pids+=($spid)
wait_port "$eport"
sleep 5
t0=$(awk '{print $14+$15}' "/proc/$spid/stat")
samples=()
for _ in $(seq 1 10); do
    v=$(curl -s "http://127.0.0.1:$eport/metrics" | awk '/^coffer_alert_evaluation_seconds /{print $2}')
    samples+=("$v")
    sleep 1
done
t1=$(awk '{print $14+$15}' "/proc/$spid/stat")
python3 -c '
import os, statistics, sys
s = sorted(float(x) * 1000 for x in sys.argv[3:] if x)
ticks = (int(sys.argv[2]) - int(sys.argv[1])) / os.sysconf("SC_CLK_TCK")
print(f"   warm (daemon, every 1 s): p50 {statistics.median(s):.1f} ms, max {s[-1]:.1f} ms per evaluation; daemon CPU {ticks / 10 * 100:.1f}% of one core over 10 s")
' "$t0" "$t1" "${samples[@]}"
rss=$(awk '/VmHWM/{print $2}' "/proc/$spid/status")
echo "   daemon peak RSS $((rss / 1024)) MB"
if grep -Ei '\bpanic' "$e/serve.log" "$d/serve.log" >/dev/null; then
    echo "   the daemon logged a panic:" >&2; grep -i panic "$e/serve.log" "$d/serve.log" >&2; exit 1
fi
