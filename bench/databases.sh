#!/usr/bin/env bash
# Database backups side by side, in one run, on one scratch PostgreSQL cluster and one scratch
# Redis (both started here, stopped at the end):
#
#   PostgreSQL (pgbench, scale SCALE, database "bench"):
#     coffer logical     coffer backup --source (pg_dump -Fc --compress=0, streamed)
#     pg_dump | restic   pg_dump -Fc --compress=0 | restic backup --stdin
#     pg_dump -Fc|restic the same with pg_dump's default (gzip) compression
#     coffer physical    coffer backup --source (pg_basebackup -Ft -X none, streamed)
#     pgbackrest         pgbackrest backup --type=full, process-max=2 (Debian's 2.45)
#   then PGBENCH_SECS of pgbench traffic and a second round (pgBackRest: --type=incr), so the
#   second column shows what deduplication (or pgBackRest's file-level increments) saves.
#   Then the logical restore: pg_restore into a new database from the dump as a local file,
#   against coffer restore --source --to-database streaming it from the repository.
#   Redis (REDIS_KEYS keys from DEBUG POPULATE): coffer backup --source against
#   redis-cli --rdb into a file.
#
# Printed per run: wall seconds, peak RSS of the backup tool, repository growth; then each
# peer's time as a ratio of coffer's. Archiving runs through both pgbackrest archive-push and
# coffer wal-push during the physical backups (one archive_command), so both pay for it.
#
# Usage: bench/databases.sh
# Env:   SCALE (default 50), PGBENCH_SECS (default 30), REDIS_KEYS (default 2000000),
#        BENCH_DIR (default /tmp/coffer-dbbench), PG_PORT (5497), REDIS_PORT (6397),
#        COFFER (binary; when unset target/release/coffer is built first).
# Installs restic, time, pgbackrest and the PostgreSQL server (apt) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scale=${SCALE:-50}
secs=${PGBENCH_SECS:-30}
redis_keys=${REDIS_KEYS:-2000000}
work=${BENCH_DIR:-/tmp/coffer-dbbench}
port=${PG_PORT:-5497}
rport=${REDIS_PORT:-6397}
pw=bench

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }
need_apt=()
command -v restic >/dev/null || need_apt+=(restic)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v pgbackrest >/dev/null || need_apt+=(pgbackrest)
command -v pg_dump >/dev/null || need_apt+=(postgresql postgresql-client)
command -v redis-server >/dev/null || need_apt+=(redis-server redis-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

cleanup() {
    [ -d "$work/pg" ] && as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
}
as_pg() { "$work/as-pg" "$@"; }
cleanup
rm -rf "$work"; mkdir -p "$work"; chmod 755 "$work"
trap cleanup EXIT
# A script, not a function, so that /usr/bin/time can run it.
cat > "$work/as-pg" <<EOF
#!/bin/sh
exec setpriv --reuid=postgres --regid=postgres --clear-groups -- env -i PATH="$pgbin:$PATH" \\
    HOME="$work" LANG=C.UTF-8 COFFER_CACHE_DIR="$work/cache-coffer" \\
    RESTIC_CACHE_DIR="$work/cache-restic" RESTIC_PASSWORD=$pw "\$@"
EOF
chmod 755 "$work/as-pg"
cp "$coffer" "$work/coffer"; coffer="$work/coffer"
echo "$pw" > "$work/password"; chmod 600 "$work/password"
cat > "$work/coffer.toml" <<EOF
[[repository]]
name = "logical"
url = "$work/repo-coffer-logical"
password_file = "$work/password"

[[repository]]
name = "physical"
url = "$work/repo-coffer-physical"
password_file = "$work/password"

[[repository]]
name = "redis"
url = "$work/repo-coffer-redis"
password_file = "$work/password"

[[source]]
name = "pg-logical"
type = "postgres"
url = "postgresql://postgres@127.0.0.1:$port/postgres"
databases = ["bench"]
repository = "logical"

[[source]]
name = "pg-physical"
type = "postgres"
mode = "physical"
url = "postgresql://postgres@127.0.0.1:$port/postgres"
repository = "physical"

[[source]]
name = "redis-bench"
type = "redis"
url = "redis://127.0.0.1:$rport/"
repository = "redis"
EOF
cat > "$work/pgbackrest.conf" <<EOF
[global]
repo1-path=$work/repo-pgbackrest
process-max=2
start-fast=y
log-level-console=warn
log-path=$work/pgbackrest-log
lock-path=$work/pgbackrest-lock
spool-path=$work/pgbackrest-spool

[bench]
pg1-path=$work/pg
pg1-port=$port
pg1-socket-path=$work
EOF
chown -R postgres: "$work"

C="$coffer --config $work/coffer.toml"
for r in logical physical redis; do as_pg $C init --repo "$work/repo-coffer-$r" >/dev/null; done
as_pg restic -r "$work/repo-restic" init >/dev/null
as_pg restic -r "$work/repo-restic-gz" init >/dev/null

echo "== PostgreSQL scratch cluster on port $port, pgbench scale $scale"
as_pg "$pgbin/initdb" -A trust -U postgres -D "$work/pg" >/dev/null
cat >> "$work/pg/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
archive_mode = on
archive_command = '/bin/true'
max_wal_size = '4GB'
shared_buffers = '512MB'
EOF
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql_() { psql -X -Atq -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE bench"
t0=$(date +%s)
as_pg "$pgbin/pgbench" -i -q -s "$scale" -h 127.0.0.1 -p "$port" -U postgres bench 2>&1 | tail -n 1
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
echo "   initialised in $(( $(date +%s) - t0 )) s; database size $(psql_ -d postgres -c "SELECT pg_size_pretty(pg_database_size('bench'))")"
psql_ -d postgres -c "ALTER SYSTEM SET archive_command = 'pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p && $coffer --config $work/coffer.toml --quiet wal-push --source pg-physical %p'" -c "SELECT pg_reload_conf()" >/dev/null
as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench stanza-create >/dev/null

declare -A T M G
repo_bytes() { du -sb "$1" | cut -f1; }
run() { # key repo command...   (wall seconds and peak RSS of the command, repository growth)
    local key=$1 repo=$2; shift 2
    local before after tf
    before=$(repo_bytes "$repo")
    tf=$(mktemp)
    sync
    if ! /usr/bin/time -o "$tf" -f "%e %M" "$@" > "$work/$key.log" 2>&1; then
        echo "FAILED: $key (see $work/$key.log)" >&2; tail -n 20 "$work/$key.log" >&2; exit 1
    fi
    read -r T[$key] M[$key] < "$tf"; rm -f "$tf"
    after=$(repo_bytes "$repo")
    G[$key]=$(( after - before ))
    printf "   %-22s %7.1f s  %6d MB RSS  +%s\n" "$key" "${T[$key]}" $(( M[$key] / 1024 )) "$(numfmt --to=iec "${G[$key]}")"
}
dump_cmd() { # repo, extra pg_dump args
    echo "set -o pipefail; pg_dump -Fc $2 -h 127.0.0.1 -p $port -U postgres bench | restic -r $1 --quiet backup --stdin --stdin-filename bench.dump"
}

for round in 1 2; do
    echo "== round $round"
    run "coffer-logical.$round" "$work/repo-coffer-logical" "$work/as-pg" $C backup --source pg-logical
    run "pgdump-restic.$round" "$work/repo-restic" "$work/as-pg" bash -c "$(dump_cmd "$work/repo-restic" --compress=0)"
    run "pgdump-gz-restic.$round" "$work/repo-restic-gz" "$work/as-pg" bash -c "$(dump_cmd "$work/repo-restic-gz" "")"
    run "coffer-physical.$round" "$work/repo-coffer-physical" "$work/as-pg" $C backup --source pg-physical
    type=full; [ "$round" = 2 ] && type=incr
    run "pgbackrest.$round" "$work/repo-pgbackrest" "$work/as-pg" pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --type=$type backup
    if [ "$round" = 1 ]; then
        echo "   pgbench traffic for $secs s"
        as_pg "$pgbin/pgbench" -n -T "$secs" -c 2 -h 127.0.0.1 -p "$port" -U postgres bench >/dev/null 2>&1
    fi
done

echo "== PostgreSQL logical restore: pg_restore from a local file vs coffer streaming from the repository"
as_pg $C restore --source pg-logical --target "$work/dumps" >/dev/null
ls -l "$work/dumps/bench.dump" | awk '{printf "   dump file %s bytes\n", $5}'
for round in 1 2; do
    psql_ -d postgres -c "DROP DATABASE IF EXISTS bench_file" -c "CREATE DATABASE bench_file"
    run "pg_restore-file.$round" "$work/dumps" "$work/as-pg" "$pgbin/pg_restore" -h 127.0.0.1 \
        -p "$port" -U postgres -d bench_file "$work/dumps/bench.dump"
    psql_ -d postgres -c "DROP DATABASE IF EXISTS bench_coffer"
    run "coffer-pg-restore.$round" "$work/dumps" "$work/as-pg" $C restore --source pg-logical \
        --database bench --to-database bench_coffer
done
[ "$(psql_ -d bench_file -c 'SELECT count(*) FROM pgbench_accounts')" = \
  "$(psql_ -d bench_coffer -c 'SELECT count(*) FROM pgbench_accounts')" ] || { echo "restored row counts differ" >&2; exit 1; }
psql_ -d postgres -c "DROP DATABASE bench_file" -c "DROP DATABASE bench_coffer"

echo "== Redis: $redis_keys keys on port $rport"
mkdir -p "$work/redis"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
    --enable-debug-command yes --daemonize yes >/dev/null
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$rport" debug populate "$redis_keys" key 100 >/dev/null
mkdir -p "$work/rdb"
for round in 1 2; do
    run "redis-cli-rdb.$round" "$work/rdb" redis-cli -p "$rport" --rdb "$work/rdb/dump-$round.rdb"
    run "coffer-redis.$round" "$work/repo-coffer-redis" "$work/as-pg" $C backup --source redis-bench
done
echo "   RDB size $(numfmt --to=iec "$(stat -c %s "$work/rdb/dump-1.rdb")")"

ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
echo
echo "== ratios (peer time / coffer time; above 1: coffer is faster)"
for round in 1 2; do
    echo "round $round (PostgreSQL):"
    for peer in pgdump-restic pgdump-gz-restic; do
        printf "   %-18s vs coffer logical:  %s\n" "$peer" "$(ratio "${T[$peer.$round]}" "${T[coffer-logical.$round]}")"
    done
    printf "   %-18s vs coffer physical: %s\n" pgbackrest "$(ratio "${T[pgbackrest.$round]}" "${T[coffer-physical.$round]}")"
done
best() { printf '%s\n' "$@" | sort -g | head -n1; }
printf "PostgreSQL restore: pg_restore from a file vs coffer from the repository: %s (best of 2: %s s vs %s s)\n" \
    "$(ratio "$(best "${T[pg_restore-file.1]}" "${T[pg_restore-file.2]}")" "$(best "${T[coffer-pg-restore.1]}" "${T[coffer-pg-restore.2]}")")" \
    "$(best "${T[pg_restore-file.1]}" "${T[pg_restore-file.2]}")" "$(best "${T[coffer-pg-restore.1]}" "${T[coffer-pg-restore.2]}")"
printf "Redis: redis-cli --rdb vs coffer: %s (best of 2: %s s vs %s s)\n" \
    "$(ratio "$(printf '%s\n' "${T[redis-cli-rdb.1]}" "${T[redis-cli-rdb.2]}" | sort -g | head -n1)" \
             "$(printf '%s\n' "${T[coffer-redis.1]}" "${T[coffer-redis.2]}" | sort -g | head -n1)")" \
    "$(printf '%s\n' "${T[redis-cli-rdb.1]}" "${T[redis-cli-rdb.2]}" | sort -g | head -n1)" \
    "$(printf '%s\n' "${T[coffer-redis.1]}" "${T[coffer-redis.2]}" | sort -g | head -n1)"
echo
echo "repository sizes after both rounds:"
for r in repo-coffer-logical repo-restic repo-restic-gz repo-coffer-physical repo-pgbackrest; do
    printf "   %-22s %s\n" "$r" "$(numfmt --to=iec "$(repo_bytes "$work/$r")")"
done
