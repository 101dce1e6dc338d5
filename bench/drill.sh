#!/usr/bin/env bash
# What a restore drill costs on top of the restore it proves, side by side in one run, on a
# scratch PostgreSQL cluster and a scratch Redis started here (and stopped at the end):
#
#   PostgreSQL logical (pgbench scale SCALE, database "bench"):
#     plain   coffer restore --source pg-logical --to-database bench_restored  (live cluster)
#     drill   coffer dr drill --scenario pg-logical_failure  (initdb of a scratch cluster,
#             the same restore, pg_amcheck --heapallindexed, row counts, report)
#   PostgreSQL physical (the same cluster, base backup + archived WAL):
#     plain   coffer pg restore --target DIR, pg_ctl start, wait for the promotion
#     drill   coffer dr drill --scenario pg-physical_failure  (WAL fetched into the scratch
#             directory, the same restore and replay, pg_amcheck of every database, report)
#   Redis (REDIS_KEYS keys from DEBUG POPULATE):
#     plain   coffer restore --target DIR, redis-server on it until loaded
#     drill   coffer dr drill --scenario redis-bench_failure  (scratch redis-server, key
#             counts against the manifest, report)
#
# Each pair runs ROUNDS times, alternating; printed: every run, the medians, and the drill's
# overhead over the plain restore (target: under 10 % or 5 s), with the drill's own split
# (restore step against its checks) from its JSON report.
#
# Usage: bench/drill.sh
# Env:   SCALE (50), REDIS_KEYS (2000000), ROUNDS (3), BENCH_DIR (/tmp/coffer-drillbench),
#        PG_PORT (5498), REDIS_PORT (6398), COFFER (binary; else target/release/coffer is built)
set -euo pipefail
cd "$(dirname "$0")/.."

scale=${SCALE:-50}
redis_keys=${REDIS_KEYS:-2000000}
rounds=${ROUNDS:-3}
work=${BENCH_DIR:-/tmp/coffer-drillbench}
port=${PG_PORT:-5498}
rport=${REDIS_PORT:-6398}

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing: scripts/test-deps installs it" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

as_pg() { "$work/as-pg" "$@"; }
cleanup() {
    [ -d "$work/pg" ] && as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    [ -d "$work/plain-pg" ] && as_pg "$pgbin/pg_ctl" -D "$work/plain-pg" -m immediate stop >/dev/null 2>&1 || true
    redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
}
[ -x "$work/as-pg" ] && cleanup
rm -rf "$work"; mkdir -p "$work/tmp"; chmod 755 "$work"
trap cleanup EXIT
cat > "$work/as-pg" <<EOF
#!/bin/sh
exec setpriv --reuid=postgres --regid=postgres --clear-groups -- env -i PATH="$pgbin:$PATH" \\
    HOME="$work" LANG=C.UTF-8 TMPDIR="$work/tmp" COFFER_CACHE_DIR="$work/cache" "\$@"
EOF
chmod 755 "$work/as-pg"
cp "$coffer" "$work/coffer"; coffer="$work/coffer"
echo bench > "$work/password"; chmod 600 "$work/password"
cat > "$work/coffer.toml" <<EOF
[server]
catalog = "$work/catalog.db"

[audit]
key_file = "$work/keys/audit.key"

[dr]
reports = "$work/reports"

[[repository]]
name = "local"
url = "$work/repo"
password_file = "$work/password"

[[source]]
name = "pg-logical"
type = "postgres"
url = "postgresql://postgres@127.0.0.1:$port/postgres"
databases = ["bench"]

[[source]]
name = "pg-physical"
type = "postgres"
mode = "physical"
url = "postgresql://postgres@127.0.0.1:$port/postgres"

[[source]]
name = "redis-bench"
type = "redis"
url = "redis://127.0.0.1:$rport/"
timeout = 120
EOF
chown -R postgres: "$work"
C="$coffer --config $work/coffer.toml"
as_pg $C init >/dev/null

echo "== coffer restore drills; $(nproc) cores; $("$coffer" version 2>/dev/null | head -n 1)"
echo "== PostgreSQL scratch cluster on port $port, pgbench scale $scale"
as_pg "$pgbin/initdb" -A trust -U postgres -D "$work/pg" >/dev/null
cat >> "$work/pg/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
archive_mode = on
archive_command = '$coffer --config $work/coffer.toml --quiet wal-push --source pg-physical %p'
max_wal_size = '4GB'
shared_buffers = '512MB'
EOF
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql_() { psql -X -Atq -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE bench"
as_pg "$pgbin/pgbench" -i -q -s "$scale" -h 127.0.0.1 -p "$port" -U postgres bench 2>&1 | tail -n 1
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
echo "   database size $(psql_ -d postgres -c "SELECT pg_size_pretty(pg_database_size('bench'))")"
as_pg $C --quiet backup --source pg-logical
as_pg $C --quiet backup --source pg-physical
# Some WAL after the base backup, archived, for the replay to have something to do.
as_pg "$pgbin/pgbench" -n -T 10 -c 2 -h 127.0.0.1 -p "$port" -U postgres bench >/dev/null 2>&1
psql_ -d postgres -c "SELECT pg_switch_wal()" >/dev/null
sleep 3

echo "== Redis: $redis_keys keys on port $rport"
mkdir -p "$work/redis"; chown postgres: "$work/redis"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
    --enable-debug-command yes --daemonize yes >/dev/null
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$rport" debug populate "$redis_keys" key 100 >/dev/null
as_pg $C --quiet backup --source redis-bench

freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
declare -A T
record() { T[$1]="${T[$1]:-} $2"; printf "   %-18s %7.2f s\n" "$1" "$2"; }

plain_logical() {
    psql_ -d postgres -c "DROP DATABASE IF EXISTS bench_restored" >/dev/null
    local t0; t0=$(now)
    as_pg $C --quiet restore --source pg-logical --to-database bench_restored >/dev/null
    record logical.plain "$(awk "BEGIN {print $(now) - $t0}")"
    psql_ -d postgres -c "DROP DATABASE bench_restored" >/dev/null
}
plain_physical() {
    rm -rf "$work/plain-pg"
    local t0 p; t0=$(now); p=$(freeport)
    as_pg $C --quiet pg restore --source pg-physical --target "$work/plain-pg" >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$work/plain-pg" -l "$work/plain-pg.log" -o "-p $p -c unix_socket_directories=$work/tmp" -w start >/dev/null
    until [ "$(psql -X -Atq -h 127.0.0.1 -p "$p" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.1; done
    record physical.plain "$(awk "BEGIN {print $(now) - $t0}")"
    as_pg "$pgbin/pg_ctl" -D "$work/plain-pg" -m immediate stop >/dev/null
    rm -rf "$work/plain-pg"
}
plain_redis() {
    rm -rf "$work/plain-redis"; mkdir -p "$work/plain-redis"; chown postgres: "$work/plain-redis"
    local t0 p; t0=$(now); p=$(freeport)
    as_pg $C --quiet restore --source redis-bench --target "$work/plain-redis" >/dev/null
    as_pg redis-server --port "$p" --bind 127.0.0.1 --save "" --dir "$work/plain-redis" --daemonize yes \
        --logfile "$work/plain-redis/log" >/dev/null
    until redis-cli -p "$p" info persistence 2>/dev/null | grep -q '^loading:0'; do sleep 0.05; done
    record redis.plain "$(awk "BEGIN {print $(now) - $t0}")"
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$work/plain-redis"
}
drill() { # key scenario [options]
    local t0 out key=$1 sc=$2; shift 2; t0=$(now); out="$work/drill-$key.json"
    if ! as_pg $C --json dr drill --scenario "$sc" "$@" > "$out" 2> "$work/drill-$key.err"; then
        echo "FAILED: drill $sc (see $out, $work/drill-$key.err)" >&2; tail -n 5 "$work/drill-$key.err" >&2; exit 1
    fi
    record "$key.drill" "$(awk "BEGIN {print $(now) - $t0}")"
    python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
steps = "; ".join(f"{s['step']} {s['seconds']:.2f} s" for s in r["steps"])
checks = sum(c.get("seconds", 0) for c in r["checks"])
print(f"      inside: {steps}; of which checks {checks:.2f} s; RTO reported {r['rto_seconds']:.2f} s")
PY
}

for round in $(seq 1 "$rounds"); do
    echo "== round $round"
    # A new base backup each round: the WAL the last round's plain logical restore wrote into
    # the live cluster is not replayed again and again.
    base=$(as_pg $C --json backup --source pg-physical | python3 -c '
import json, sys
for l in sys.stdin:
    v = json.loads(l)
    if v.get("message_type") == "summary": print(v["snapshot_id"])')
    plain_logical; drill logical pg-logical_failure
    # The newest base backup and all WAL after it, as the plain restore does.
    plain_physical; drill physical pg-physical_failure --snapshot "$base"
    plain_redis; drill redis redis-bench_failure
done

echo
echo "== medians of $rounds rounds (seconds) and the drill's overhead over the plain restore"
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf "   %-10s %8s %8s %10s %9s  %s\n" what plain drill overhead percent "target (<10 % or <5 s)"
for k in logical physical redis; do
    p=$(median "${T[$k.plain]}"); d=$(median "${T[$k.drill]}")
    python3 - "$k" "$p" "$d" <<'PY'
import sys
k, p, d = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
o = d - p
pct = 100 * o / p if p else 0
ok = "met" if (o < 5 or pct < 10) else "MISSED"
print(f"   {k:<10} {p:8.2f} {d:8.2f} {o:+10.2f} {pct:+8.1f}%  {ok}")
PY
done
