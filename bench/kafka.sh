#!/usr/bin/env bash
# Kafka backup and restore side by side, in one run, against one scratch tansu broker (memory
# storage, started here and stopped at the end). Topic `bench` has PARTITIONS partitions and
# RECORDS records of about RECORD_BYTES (printable keys and values, partitions round-robin).
# The peer is a script-based backup with librdkafka, the C client most Kafka tools are built
# on (confluent-kafka; bench/kafka_helper.py). ROUNDS rounds of each, medians printed:
#
#   coffer backup -P1   coffer backup --source --force with parallel = 1 (one partition at a time)
#   coffer backup       coffer backup --source --force with parallel = 4 (the default)
#   rdkafka dump        one consumer assigned every partition, records into a file per
#                       partition (keys and values only: no offsets, headers, timestamps or
#                       group positions are kept)
#   coffer next         coffer backup --source after 1% more records (incremental: only they
#                       are fetched, everything else carried over)
#   coffer restore -j1  coffer restore --source --rename bench:NEW --no-groups --jobs 1
#   coffer restore      the same with --jobs 4
#   coffer restore -V   the same with --verify (every record read back and compared)
#   rdkafka produce     an idempotent producer (acks=all) from those files
#
# Printed per phase: wall seconds, MB/s of record bytes, peak RSS of the tool; then ratios.
# kcat itself (Debian's, librdkafka 2.0) cannot talk to tansu: its ApiVersions fails.
#
# Usage: bench/kafka.sh
# Env:   PARTITIONS (8), RECORDS (400000), RECORD_BYTES (500), ROUNDS (3),
#        BENCH_DIR (/tmp/coffer-kafkabench), COFFER (binary; built when unset).
# Needs tansu and kafka-python (scripts/test-deps installs both); installs confluent-kafka
# (pip) and time (apt) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

partitions=${PARTITIONS:-8}
records=${RECORDS:-400000}
size=${RECORD_BYTES:-500}
rounds=${ROUNDS:-3}
work=${BENCH_DIR:-/tmp/coffer-kafkabench}

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }
command -v tansu >/dev/null || { echo "no tansu: run scripts/test-deps" >&2; exit 1; }
python3 -c 'import confluent_kafka' 2>/dev/null || pip install -q confluent-kafka >&2
if [ ! -x /usr/bin/time ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
helper=(python3 "$PWD/bench/kafka_helper.py")

rm -rf "$work"; mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bs="127.0.0.1:$port"
tansu broker --listener-url "tcp://$bs" --advertised-listener-url "tcp://$bs" \
    --storage-engine memory://tansu/ --cluster-id bench > /dev/null 2> "$work/tansu.log" &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "== $records records of $size bytes in $partitions partitions" >&2
"${helper[@]}" create "$bs" bench "$partitions"
"${helper[@]}" gen "$work/gen" "$partitions" 0 "$records" "$size"
"${helper[@]}" produce "$bs" bench "$work/gen"
data_mb=$(du -sm "$work/gen" | cut -f1)

echo pw > "$work/password"
write_config() { # PARALLEL
    cat > "$work/coffer.toml" <<EOF
[server]
catalog = "$work/catalog.db"
[audit]
key_file = "$work/audit.key"
[[repository]]
name = "main"
url = "$work/repo"
password_file = "$work/password"
[[source]]
name = "events"
type = "kafka"
brokers = ["$bs"]
topics = ["bench"]
repository = "main"
parallel = $1
EOF
}
write_config 4
export COFFER_CONFIG="$work/coffer.toml" COFFER_CACHE_DIR="$work/cache"
"$coffer" init --repo "$work/repo" >/dev/null

declare -A secs rss
timed() { # NAME CMD...: appends seconds and peak RSS (MB) of one run
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$work/rss" "$@" > "$work/out" 2> "$work/err" || {
        echo "$name failed:" >&2; tail -n 20 "$work/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    secs[$name]+="$(echo "$t1 - $t0" | bc) "
    rss[$name]+="$(( $(tail -n 1 "$work/rss") / 1024 )) "
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for r in $(seq 1 "$rounds"); do
    echo "== round $r" >&2
    write_config 1
    timed "coffer backup -P1" "$coffer" backup -q --source events --force
    write_config 4
    timed "coffer backup" "$coffer" backup -q --source events --force
    rm -rf "$work/dump"
    timed "rdkafka dump" "${helper[@]}" dump "$bs" bench "$partitions" "$work/dump"
    cmp <(cat "$work"/dump/p* | sort) <(cat "$work"/gen/p* | sort) \
        || { echo "the peer's copy differs from what was produced" >&2; exit 1; }
    timed "coffer restore -j1" "$coffer" restore -q --source events --rename "bench:c1-$r" --no-groups --jobs 1
    timed "coffer restore" "$coffer" restore -q --source events --rename "bench:c4-$r" --no-groups --jobs 4
    timed "coffer restore -V" "$coffer" restore -q --source events --rename "bench:cv-$r" --no-groups --jobs 4 --verify
    "${helper[@]}" create "$bs" "k-$r" "$partitions"
    timed "rdkafka produce" "${helper[@]}" produce "$bs" "k-$r" "$work/dump"
done
# The incremental backup: 1% more records each round, then a backup that fetches only them.
for r in $(seq 1 "$rounds"); do
    rm -rf "$work/more"
    "${helper[@]}" gen "$work/more" "$partitions" $((records + r * records / 100)) $((records / 100)) "$size"
    "${helper[@]}" produce "$bs" bench "$work/more"
    timed "coffer next" "$coffer" backup -q --source events
done
# Every restore holds what was produced first.
for r in $(seq 1 "$rounds"); do
    rm -rf "$work/check"
    "${helper[@]}" dump "$bs" "c4-$r" "$partitions" "$work/check"
    cmp <(cat "$work"/check/p* | sort) <(cat "$work"/gen/p* | sort) \
        || { echo "coffer's restore c4-$r differs from what was produced" >&2; exit 1; }
done

echo
echo "Kafka: $records records, $data_mb MB of keys and values, $partitions partitions, tansu (memory), medians of $rounds"
printf '%-20s %9s %9s %9s\n' phase seconds "MB/s" "RSS MB"
for name in "coffer backup -P1" "coffer backup" "rdkafka dump" "coffer next" "coffer restore -j1" "coffer restore" "coffer restore -V" "rdkafka produce"; do
    s=$(echo "${secs[$name]}" | median)
    m=$(echo "${rss[$name]}" | median)
    printf '%-20s %9.2f %9.1f %9s\n' "$name" "$s" "$(echo "$data_mb / $s" | bc -l)" "$m"
done
ratio() { echo "scale=2; $(echo "${secs[$2]}" | median) / $(echo "${secs[$1]}" | median)" | bc -l; }
echo
echo "rdkafka dump / coffer backup:      x$(ratio "coffer backup" "rdkafka dump")"
echo "coffer backup -P1 / -P4:           x$(ratio "coffer backup" "coffer backup -P1")"
echo "rdkafka produce / coffer restore:  x$(ratio "coffer restore" "rdkafka produce")"
echo "coffer restore -j1 / -j4:          x$(ratio "coffer restore" "coffer restore -j1")"
echo "coffer restore --verify / without: x$(ratio "coffer restore" "coffer restore -V")"
