#!/usr/bin/env bash
# Backs up the same data with coffer, restic and rustic in one run and prints, per tool and
# phase (first backup, unchanged second backup, restore into a new file system, check
# --read-data, and, when the data is one file, dump: that file streamed to a pipe, the way a
# restore feeds pg_restore): wall time, MB/s, peak RSS and repository size, then coffer's
# ratios against each peer. The page cache is dropped before every phase (as root), so
# each tool reads cold, as after a disaster.
#
# Usage: bench/peers.sh [PATH...]        default: /usr/lib /usr/share (real binaries, libraries,
#                                         docs and compressed files, about 5 GB)
# Env:   BENCH_DIR (scratch space, default /tmp/coffer-bench), BENCH_TOOLS (default
#        "coffer restic rustic"), COFFER (binary, default target/release/coffer),
#        BENCH_RUNS (rounds, default 3: the tools take turns each round; times are medians,
#        peak RSS the highest seen, because one run of each varies by 10% on a shared VM).
# Installs restic (apt) and rustic (cargo install --locked rustic-rs) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(/usr/lib /usr/share)
work="${BENCH_DIR:-/tmp/coffer-bench}"
tools=(${BENCH_TOOLS:-coffer restic rustic})

cargo build --release --bin coffer >&2
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
if [[ " ${tools[*]} " == *" rustic "* ]] && ! command -v rustic >/dev/null; then
    cargo install --locked rustic-rs >&2
fi

rm -rf "$work"; mkdir -p "$work"
export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench RUSTIC_PASSWORD=bench
export RESTIC_CACHE_DIR="$work/cache-restic" COFFER_CACHE_DIR="$work/cache-coffer"

bytes=$(du -sb --apparent-size "${paths[@]}" 2>/dev/null | awk '{s+=$1} END {print s}')
files=$(find "${paths[@]}" -type f 2>/dev/null | wc -l)
# One file: its path for the dump phase.
one=""
if [ "$files" = 1 ]; then one=$(find "${paths[@]}" -type f 2>/dev/null); fi
phases=(first second restore check)
[ -n "$one" ] && phases+=(dump)

declare -A TL RL S
run() { # tool phase command...
    local tool=$1 phase=$2; shift 2
    sync
    if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
    local out
    out=$( { /usr/bin/time -f "TIME %e %M" "$@" > "$work/$tool-$phase.log" 2>&1; } 2>&1 | grep '^TIME' || true)
    if [ -z "$out" ]; then out=$(grep '^TIME' "$work/$tool-$phase.log" | tail -n 1); fi
    TL[$tool.$phase]+="$(echo "$out" | awk '{print $2}') "
    RL[$tool.$phase]+="$(echo "$out" | awk '{print $3}') "
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : 0)}'; }
highest() { tr ' ' '\n' | grep . | sort -g | tail -n 1; }

# Each restore goes to a newly made ext4 file system when we may mount one: after a few
# rounds of creating and deleting 100k files, ext4's inode allocator on the shared disk
# spends most of a restore searching past recently deleted inodes (a 12 s restore took 46 s),
# which measures the disk's history rather than the tool.
target() { # tool -> directory to restore into
    local mnt="$work/mnt"
    if mountpoint -q "$mnt"; then umount "$mnt"; fi
    if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
        rm -f "$work/fs.img"
        truncate -s 32G "$work/fs.img"
        mkdir -p "$mnt"
        if mkfs.ext4 -q -F "$work/fs.img" && mount -o loop "$work/fs.img" "$mnt" 2>/dev/null; then
            echo "$mnt/restore-$1"
            return
        fi
    fi
    echo "$work/restore-$1"
}
cleanup() {
    if mountpoint -q "$work/mnt" 2>/dev/null; then umount "$work/mnt"; fi
    rm -f "$work/fs.img"
}
trap cleanup EXIT

runs=${BENCH_RUNS:-3}
for round in $(seq 1 "$runs"); do
    for tool in "${tools[@]}"; do
        repo="$work/repo-$tool"
        rm -rf "$repo"
        case $tool in
        coffer)
            "$coffer" -r "$repo" init -q
            run coffer first "$coffer" -r "$repo" -q backup "${paths[@]}"
            run coffer second "$coffer" -r "$repo" -q backup "${paths[@]}"
            S[coffer]=$(du -sb "$repo" | cut -f1)
            run coffer restore "$coffer" -r "$repo" -q restore latest --target "$(target coffer)"
            run coffer check "$coffer" -r "$repo" -q check --read-data
            [ -z "$one" ] || run coffer dump sh -c '"$0" -r "$1" dump latest "$2" | cat > /dev/null' "$coffer" "$repo" "$one"
            ;;
        restic)
            rm -rf "$RESTIC_CACHE_DIR"
            restic -r "$repo" init -q
            run restic first restic -r "$repo" -q backup "${paths[@]}"
            run restic second restic -r "$repo" -q backup "${paths[@]}"
            S[restic]=$(du -sb "$repo" | cut -f1)
            run restic restore restic -r "$repo" -q restore latest --target "$(target restic)"
            run restic check restic -r "$repo" -q check --read-data
            [ -z "$one" ] || run restic dump sh -c 'restic -r "$0" dump latest "$1" | cat > /dev/null' "$repo" "$one"
            ;;
        rustic)
            rustic -r "$repo" init >/dev/null 2>&1
            run rustic first rustic -r "$repo" backup "${paths[@]}"
            run rustic second rustic -r "$repo" backup "${paths[@]}"
            S[rustic]=$(du -sb "$repo" | cut -f1)
            run rustic restore rustic -r "$repo" restore latest "$(target rustic)"
            run rustic check rustic -r "$repo" check --read-data
            [ -z "$one" ] || run rustic dump sh -c 'rustic -r "$0" dump "latest:$1" | cat > /dev/null' "$repo" "$one"
            ;;
        esac
        rm -rf "$work"/restore-*
    done
done
declare -A T R
for k in "${!TL[@]}"; do
    T[$k]=$(echo "${TL[$k]}" | median)
    R[$k]=$(echo "${RL[$k]}" | highest)
done

mb=$(awk -v b="$bytes" 'BEGIN {printf "%.0f", b/1e6}')
echo
echo "data: ${paths[*]}: $files files, $mb MB; $(nproc) cores; $runs rounds; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-8s %-8s %9s %9s %10s %12s\n' tool phase seconds MB/s peakRSS_MB repo_MB
for tool in "${tools[@]}"; do
    for phase in "${phases[@]}"; do
        t=${T[$tool.$phase]:-nan}; r=${R[$tool.$phase]:-0}
        printf '%-8s %-8s %9s %9.1f %10.1f %12.1f\n' "$tool" "$phase" "$t" \
            "$(awk -v b="$bytes" -v t="$t" 'BEGIN {print (t>0 ? b/1e6/t : 0)}')" \
            "$(awk -v r="$r" 'BEGIN {print r/1024}')" \
            "$(awk -v s="${S[$tool]:-0}" 'BEGIN {print s/1e6}')"
    done
done
echo
for peer in "${tools[@]}"; do
    [ "$peer" = coffer ] && continue
    for phase in "${phases[@]}"; do
        awk -v p="$peer" -v ph="$phase" -v a="${T[coffer.$phase]:-0}" -v b="${T[$peer.$phase]:-0}" \
            -v ra="${R[coffer.$phase]:-0}" -v rb="${R[$peer.$phase]:-0}" \
            'BEGIN { if (a > 0) printf "coffer vs %-7s %-8s speed x%.2f  peak RSS x%.2f\n", p, ph, b/a, ra/rb }'
    done
done
