#!/usr/bin/env bash
# How time and peak memory grow with the work, coffer against restic in one run:
#   files:     a tree of N small files (default 100k and 1M): first backup, unchanged re-backup
#   snapshots: a repository with N snapshots (default 100 and 1000): snapshots, forget
#              --keep-daily 7 --dry-run, check
#   index:     a repository whose index holds N blobs (default 1M and 10M): check, and a small
#              backup into it (open, index load, 1 MB of new data, commit)
# The synthetic repositories are written by crates/coffer-repo/examples/synth_repo.rs through
# coffer's own packer: valid restic repositories that both tools open. The page cache is
# dropped before every measurement (as root). Each point prints seconds and peak RSS per tool
# and coffer's ratios; growth is read off the two points of each part.
#
# Usage: bench/scale.sh [PART...]        default: files snapshots index
# Env:   BENCH_DIR (scratch, default /tmp/coffer-scale), SCALE_FILES ("100000 1000000"),
#        SCALE_SNAPSHOTS ("100 1000"), SCALE_BLOBS ("1000000 10000000"), COFFER (binary).
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(files snapshots index)
work="${BENCH_DIR:-/tmp/coffer-scale}"

cargo build --release --bin coffer -p coffer >&2
cargo build --release -p coffer-repo --example synth_repo >&2
target="${CARGO_TARGET_DIR:-target}/release"
coffer="${COFFER:-$target/coffer}"
synth="$target/examples/synth_repo"
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }

rm -rf "$work"; mkdir -p "$work"
export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench
export RESTIC_CACHE_DIR="$work/cache-restic" COFFER_CACHE_DIR="$work/cache-coffer"

measure() { # label tool command... -> prints one row, keeps the log
    local label=$1 tool=$2; shift 2
    sync
    if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
    local log="$work/${label// /_}-$tool.log" out rc=0
    /usr/bin/time -o "$log.time" -f "TIME %e %M" "$@" > "$log" 2>&1 || rc=$?
    out=$(grep '^TIME' "$log.time")
    printf '%-34s %-7s %9s s %9.1f MB%s\n' "$label" "$tool" "$(echo "$out" | awk '{print $2}')" \
        "$(echo "$out" | awk '{print $3/1024}')" "$([ $rc = 0 ] || echo "  FAILED, see $log")"
    echo "$label|$tool|$(echo "$out" | awk '{print $2, $3}')" >> "$work/rows"
}

ratios() {
    echo
    awk -F'|' '{split($3, v, " "); t[$1 "|" $2] = v[1]; m[$1 "|" $2] = v[2]; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END { for (i = 1; i <= n; i++) { l = order[i]; a = t[l "|coffer"]; b = t[l "|restic"];
              if (a > 0 && b > 0) printf "coffer vs restic  %-34s speed x%.2f  peak RSS x%.2f\n", l, b / a, m[l "|coffer"] / m[l "|restic"] } }' "$work/rows"
}

make_files() { # dir count: count files of 100 B to 8 KiB in directories of 1000
    python3 - "$1" "$2" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(17)
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:05d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(100, 8192)))
EOF
}

echo "$(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for part in "${parts[@]}"; do
    case $part in
    files)
        for n in ${SCALE_FILES:-100000 1000000}; do
            data="$work/files-$n"
            make_files "$data" "$n"
            for tool in coffer restic; do
                repo="$work/repo-$tool"; rm -rf "$repo" "$work"/cache-*
                if [ $tool = coffer ]; then
                    "$coffer" -r "$repo" init -q
                    measure "$n files: first backup" coffer "$coffer" -r "$repo" -q backup "$data"
                    measure "$n files: unchanged backup" coffer "$coffer" -r "$repo" -q backup "$data"
                else
                    restic -r "$repo" init -q
                    measure "$n files: first backup" restic restic -r "$repo" -q backup "$data"
                    measure "$n files: unchanged backup" restic restic -r "$repo" -q backup "$data"
                fi
            done
            rm -rf "$data" "$work"/repo-*
        done
        ;;
    snapshots)
        for n in ${SCALE_SNAPSHOTS:-100 1000}; do
            repo="$work/repo-snaps"; rm -rf "$repo" "$work"/cache-*
            "$coffer" -r "$repo" init -q
            "$synth" "$repo" bench 10000 "$n"
            for tool in coffer restic; do
                bin=$coffer; [ $tool = restic ] && bin=restic
                measure "$n snapshots: snapshots" $tool "$bin" -r "$repo" snapshots
                measure "$n snapshots: forget dry-run" $tool "$bin" -r "$repo" forget --keep-daily 7 --dry-run
                measure "$n snapshots: check" $tool "$bin" -r "$repo" check
            done
            rm -rf "$repo"
        done
        ;;
    index)
        mkdir -p "$work/small"
        head -c 1000000 /dev/urandom > "$work/small/new.bin"
        for n in ${SCALE_BLOBS:-1000000 10000000}; do
            repo="$work/repo-index"; rm -rf "$repo" "$work"/cache-*
            "$coffer" -r "$repo" init -q
            "$synth" "$repo" bench "$n" 1
            echo "$n blobs: repository $(du -sh "$repo" | cut -f1), index $(du -sh "$repo/index" | cut -f1)"
            for tool in coffer restic; do
                bin=$coffer; [ $tool = restic ] && bin=restic
                measure "$n blobs: check" $tool "$bin" -r "$repo" check
                head -c 1000000 /dev/urandom > "$work/small/new.bin"
                measure "$n blobs: small backup" $tool "$bin" -r "$repo" backup "$work/small"
            done
            rm -rf "$repo"
        done
        ;;
    *) echo "unknown part $part (files, snapshots, index)" >&2; exit 2 ;;
    esac
done
ratios
