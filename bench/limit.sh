#!/usr/bin/env bash
# The machine's limit for backing up one stream, measured stage by stage on the same file,
# beside coffer's first backup of it. A backup chunks a stream in order (one core) while
# hashing, compressing and encrypting chunks on every core, reading ahead of the chunker,
# so its floor is the slowest of:
#   - reading the file cold (page cache dropped),
#   - content-defined chunking of it on one core (coffer's chunker, cargo bench),
#   - SHA-256 + zstd (level 2, the repository's default "auto") + AES-256-CTR of every byte,
#     divided over the cores (openssl dgst and enc, which use SHA-NI and AES-NI as coffer's
#     crates do, and zstd -T1, each on one core, warm).
# Prints each stage, the floor, coffer's median of three first backups and the ratio.
#
# Usage: bench/limit.sh FILE      Env: COFFER (binary), BENCH_DIR (default /tmp/coffer-limit)
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:?usage: bench/limit.sh FILE}
work="${BENCH_DIR:-/tmp/coffer-limit}"
cargo build --release --bin coffer -p coffer >&2
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
rm -rf "$work"; mkdir -p "$work"
export COFFER_PASSWORD=bench COFFER_CACHE_DIR="$work/cache"

bytes=$(stat -c %s "$file")
cores=$(nproc)
drop() { sync; if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
secs() { # command... -> wall seconds
    local t0 t1
    t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

reads=""; for _ in 1 2 3; do drop; reads+="$(secs cat "$file") "; done
read_s=$(echo "$reads" | median)
cat "$file" > /dev/null # warm for the CPU stages
sha_s=$(for _ in 1 2 3; do secs openssl dgst -sha256 "$file"; echo; done | median)
zstd_s=$(for _ in 1 2 3; do secs zstd -2 -T1 -c "$file"; echo; done | median)
aes_s=$(for _ in 1 2 3; do secs openssl enc -aes-256-ctr -K "$(printf '%064d' 0)" -iv "$(printf '%032d' 0)" -in "$file"; echo; done | median)
chunk_mbs=$(CHUNK_FILE="$file" cargo bench -q -p coffer-chunker --bench throughput -- --bench 2>/dev/null \
    | sed -n 's/^next_boundary, whole buffer *\([0-9]*\) MB\/s wall.*/\1/p' | head -n 1)
chunk_s=$(awk -v b="$bytes" -v m="$chunk_mbs" 'BEGIN {printf "%.3f", b / 1e6 / m}')
cpu_s=$(awk -v a="$sha_s" -v b="$zstd_s" -v c="$aes_s" -v n="$cores" 'BEGIN {printf "%.3f", (a + b + c) / n}')
floor=$(printf '%s\n' "$read_s" "$chunk_s" "$cpu_s" | sort -g | tail -n 1)

runs=""
for _ in 1 2 3; do
    rm -rf "$work/repo" "$work/cache"
    "$coffer" -r "$work/repo" init -q
    drop
    runs+="$(secs "$coffer" -r "$work/repo" -q backup "$file") "
done
backup_s=$(echo "$runs" | median)

mb=$(awk -v b="$bytes" 'BEGIN {printf "%.0f", b / 1e6}')
echo "file: $file, $mb MB; $cores cores; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-44s %8s s\n' "read cold (cat, median of 3)" "$read_s" \
    "chunk on one core ($chunk_mbs MB/s)" "$chunk_s" \
    "sha256 one core (SHA-NI)" "$sha_s" "zstd -2 one core" "$zstd_s" "aes-256-ctr one core" "$aes_s" \
    "hash+compress+encrypt over $cores cores" "$cpu_s" \
    "floor: the slowest stage" "$floor" \
    "coffer first backup (median of 3, cold)" "$backup_s"
awk -v a="$backup_s" -v f="$floor" 'BEGIN {printf "coffer / floor: x%.2f\n", a / f}'
