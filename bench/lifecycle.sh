#!/usr/bin/env bash
# Builds the same history of many snapshots with coffer, restic and rustic, each in its own
# repository, then applies one retention policy and times, per tool: forget, prune (max-unused
# 0%), check and check --read-data: wall time and peak RSS, repository size before and after
# prune, then each peer's ratios against coffer. Afterwards every repository must pass its own
# tool's check, and coffer's pruned repository must pass `restic check --read-data`.
#
# The history: SIZE of files copied from PATH... (a seeded sample), then SNAPSHOTS backups;
# before each backup but the first, CHURN% of the files change (half modified in place or
# appended to, a quarter added, a quarter removed), drawn by a generator seeded with SEED. The
# tools back up one tree in turn after each change, so all three see the same states.
#
# Usage: bench/lifecycle.sh [PATH...]   default: /usr/lib /usr/share
# Env:   SIZE (initial tree, default 1.5G; K/M/G suffixes), SNAPSHOTS (default 30), KEEP
#        (forget --keep-last, default 10), CHURN (percent of files changed per snapshot,
#        default 4), SEED (default 1), BENCH_DIR (scratch space, default
#        /tmp/coffer-lifecycle), BENCH_TOOLS (default "coffer restic rustic"), COFFER (binary;
#        when unset, target/release/coffer is built with cargo first).
# Installs restic (apt), time (apt) and rustic (cargo install --locked rustic-rs) when missing.
# All tools run without a local cache (--no-cache), and rustic prunes with --instant-delete
# (without it rustic only marks unused packs, and a later prune deletes them after 23 h).
set -euo pipefail
cd "$(dirname "$0")/.."

paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(/usr/lib /usr/share)
work="${BENCH_DIR:-/tmp/coffer-lifecycle}"
tools=(${BENCH_TOOLS:-coffer restic rustic})
size=$(numfmt --from=iec "${SIZE:-1.5G}")
snapshots=${SNAPSHOTS:-30}
keep=${KEEP:-10}
churn=${CHURN:-4}
seed=${SEED:-1}
pw=bench

if [ -z "${COFFER:-}" ]; then cargo build --release --bin coffer >&2; fi
coffer="${COFFER:-${CARGO_TARGET_DIR:-target}/release/coffer}"
[ -x "$coffer" ] || { echo "no coffer binary at $coffer" >&2; exit 1; }
need_apt=()
command -v restic >/dev/null || need_apt+=(restic)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [[ " ${tools[*]} " == *" rustic "* ]] && ! command -v rustic >/dev/null; then
    cargo install --locked rustic-rs >&2
fi

rm -rf "$work"; mkdir -p "$work"
# A private copy, so that a rebuild during the run cannot swap the binary halfway through.
cp "$coffer" "$work/coffer"; coffer="$work/coffer"
export RESTIC_PASSWORD=$pw COFFER_PASSWORD=$pw
# Whatever caches a tool would still open go to the scratch space.
export RESTIC_CACHE_DIR="$work/cache-restic" COFFER_CACHE_DIR="$work/cache-coffer"
export XDG_CACHE_HOME="$work/cache"
src="$work/src"
start=$(date +%s)

# The tree and its changes: seeded, so every run (and every tool) sees the same history.
gen() {
    python3 - "$@" <<'EOF'
import os, random, shutil, stat, sys

def walk(top):
    out = []
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for n in sorted(names):
            f = os.path.join(root, n)
            try:
                st = os.lstat(f)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((f, st.st_size))
    return out

def fresh(rng, n):
    # Half-compressible bytes (hex text of random data), like logs or generated files.
    return rng.randbytes((n + 1) // 2).hex()[:n].encode()

mode = sys.argv[1]
if mode == "seed":
    src, seed, size, paths = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
    files = [(f, s) for p in paths for f, s in walk(p)
             if s <= 64 << 20 and os.access(f, os.R_OK)]
    random.Random(f"{seed}-seed").shuffle(files)
    total = count = 0
    for f, s in files:
        if total >= size:
            break
        dst = os.path.join(src, f.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            shutil.copyfile(f, dst)
        except OSError:
            continue
        total += s
        count += 1
    print(count, total)
elif mode == "mutate":
    src, seed, rnd, churn = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    rng = random.Random(f"{seed}-{rnd}")
    files = [f for f, _ in walk(src)]
    k = max(4, round(len(files) * churn / 100))
    km, kr = k // 2, k // 4
    ka = k - km - kr
    picked = rng.sample(files, km + kr)
    modify, remove = picked[:km], picked[km:]
    changed = 0
    for f in modify:
        with open(f, "r+b") as fh:
            data = fh.read()
            if len(data) < 256 << 10:
                # Small file: one region rewritten, so the whole (single-blob) file is new.
                m = rng.randint(1, max(1, len(data) // 2) + 64)
                off = rng.randint(0, len(data))
                new = data[:off] + fresh(rng, m) + data[off + m:]
                fh.seek(0)
                fh.truncate()
                fh.write(new)
                changed += m
            else:
                # Large file: a region overwritten in place; one or two chunks change.
                m = rng.randint(4 << 10, 64 << 10)
                fh.seek(rng.randint(0, len(data) - m))
                fh.write(fresh(rng, m))
                changed += m
            if rng.random() < 0.3:
                m = rng.randint(1 << 10, 32 << 10)
                fh.seek(0, 2)
                fh.write(fresh(rng, m))
                changed += m
    for i in range(ka):
        t = rng.choice(files)
        with open(t, "rb") as fh:
            data = fh.read()
        m = rng.randint(1 << 10, 16 << 10)
        off = rng.randint(0, len(data))
        d, b = os.path.split(t)
        with open(os.path.join(d, f"{b}.r{rnd}.{i}"), "wb") as fh:
            fh.write(data[:off] + fresh(rng, m) + data[off:])
        changed += len(data) + m
    for f in remove:
        if os.path.exists(f):
            os.unlink(f)
    print(km, ka, kr, changed)
EOF
}

declare -A T R S P N RC
fails=()
run() { # tool op command...   (times one command; a failure is recorded, printed, and fatal at the end)
    local tool=$1 op=$2; shift 2
    local log="$work/log/$tool-$op.log" tf="$work/log/$tool-$op.time" rc=0
    sync
    /usr/bin/time -o "$tf" -f "%e %M" "$@" > "$log" 2>&1 || rc=$?
    T[$tool.$op]=$(tail -n 1 "$tf" | awk '{print $1}')
    R[$tool.$op]=$(tail -n 1 "$tf" | awk '{print $2}')
    # rustic logs check findings as [ERROR]/[WARN] lines; an error must fail the run even if
    # the exit code does not say so.
    if [ $rc -eq 0 ] && [ "$tool" = rustic ] && grep -q '\[ERROR\]' "$log"; then rc=99; fi
    RC[$tool.$op]=$rc
    if [ $rc -ne 0 ]; then
        fails+=("$tool $op (exit $rc, log $log)")
        echo "!!! $tool $op FAILED (exit $rc); last lines of $log:" >&2
        tail -n 20 "$log" >&2
    fi
    return 0
}
tool_cmd() { # tool -> the command prefix with repository, password and no cache
    local repo="$work/repo-$1"
    case $1 in
    coffer) echo "$coffer -r $repo --no-cache" ;;
    restic) echo "restic -r $repo --no-cache" ;;
    rustic) echo "rustic -r $repo --password $pw --no-cache --no-progress" ;;
    esac
}
measure() { # tool key: repository bytes, pack count, snapshot count
    local repo="$work/repo-$1"
    S[$1.$2]=$(du -sb "$repo" | cut -f1)
    P[$1.$2]=$(find "$repo/data" -type f | wc -l)
    N[$1.$2]=$(find "$repo/snapshots" -type f | wc -l)
}
warm() { tar cf - "$work/repo-$1" 2>/dev/null | cat > /dev/null; }

mkdir -p "$src" "$work/log"
out=$(gen seed "$src" "$seed" "$size" "${paths[@]}")
read -r files0 bytes0 <<< "$out"
echo "tree: $files0 files, $((bytes0 / 1000000)) MB from ${paths[*]}" >&2

for tool in "${tools[@]}"; do
    repo="$work/repo-$tool"
    case $tool in
    coffer) $(tool_cmd coffer) init -q ;;
    restic) $(tool_cmd restic) init -q --repository-version 2 ;;
    rustic) $(tool_cmd rustic) init > "$work/log/rustic-init.log" 2>&1 ;;
    esac
    T[$tool.backup]=0; R[$tool.backup]=0
done

mutated=0
for i in $(seq 1 "$snapshots"); do
    if [ "$i" -gt 1 ]; then
        out=$(gen mutate "$src" "$seed" "$i" "$churn")
        read -r _ _ _ changed <<< "$out"
        mutated=$((mutated + changed))
    fi
    for tool in "${tools[@]}"; do
        case $tool in
        coffer) run coffer "backup$i" $(tool_cmd coffer) backup --json -q "$src" ;;
        restic) run restic "backup$i" $(tool_cmd restic) backup -q "$src" ;;
        rustic) run rustic "backup$i" $(tool_cmd rustic) backup "$src" ;;
        esac
        [ "${RC[$tool.backup$i]}" -eq 0 ] || { echo "$tool backup $i failed: no point going on" >&2; exit 1; }
        T[$tool.backup]=$(awk -v a="${T[$tool.backup]}" -v b="${T[$tool.backup$i]}" 'BEGIN {print a + b}')
        R[$tool.backup]=$(awk -v a="${R[$tool.backup]}" -v b="${R[$tool.backup$i]}" 'BEGIN {print (a > b ? a : b)}')
    done
    echo "snapshot $i/$snapshots done ($(( $(date +%s) - start )) s)" >&2
done
files1=$(find "$src" -type f | wc -l)
bytes1=$(du -sb --apparent-size "$src" | cut -f1)

for tool in "${tools[@]}"; do
    cmd=$(tool_cmd "$tool")
    measure "$tool" before
    echo "$tool: forget, prune, check, check --read-data" >&2
    run "$tool" forget $cmd forget --keep-last "$keep"
    measure "$tool" forgot
    case $tool in
    rustic) run "$tool" prune $cmd prune --max-unused 0% --instant-delete ;;
    *) run "$tool" prune $cmd prune --max-unused 0% ;;
    esac
    measure "$tool" after
    warm "$tool"
    run "$tool" check $cmd check
    warm "$tool"
    run "$tool" read-data $cmd check --read-data
    if [ "$tool" = coffer ]; then
        run restic interop-coffer $(tool_cmd restic | sed "s|repo-restic|repo-coffer|") check --read-data
    fi
    [ "${N[$tool.after]}" -eq "$keep" ] ||
        fails+=("$tool keeps ${N[$tool.after]} snapshots after forget --keep-last $keep")
done

ver_coffer=$("$coffer" --version | awk '{print $NF}')
ver_restic=$(restic version | awk '{print $2}')
ver_rustic=n/a
command -v rustic >/dev/null && ver_rustic=$(rustic --version 2>/dev/null | awk '{print $NF}' | sed 's/^v//')
mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }

echo
echo "coffer $ver_coffer, restic $ver_restic, rustic $ver_rustic"
echo "data: ${paths[*]} sample, seed $seed: $files0 files, $(mb "$bytes0") MB at first;" \
    "$snapshots snapshots, $churn% of files changed before each (half modified, a quarter" \
    "added, a quarter removed), $(mb "$mutated") MB written by the changes; $files1 files," \
    "$(mb "$bytes1") MB at the end"
echo "$(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); tools run: ${tools[*]}"
echo "all tools without a local cache (--no-cache); forget --keep-last $keep, prune --max-unused 0%" \
    "(rustic also --instant-delete); page cache warm for check"
echo
printf '%-11s %-8s %9s %11s %10s %7s %6s\n' operation tool seconds peakRSS_MB repo_MB packs snaps
for op in backup forget prune check read-data; do
    for tool in "${tools[@]}"; do
        case $op in
        backup) key=before; label="backup x$snapshots" ;;
        forget) key=forgot; label=forget ;;
        *) key=after; label=$op ;;
        esac
        [ "$op" = read-data ] && label="check -rd"
        snaps=${N[$tool.$key]:-0}
        [ "$op" = backup ] && snaps=$snapshots
        printf '%-11s %-8s %9s %11.1f %10s %7s %6s\n' "$label" "$tool" "${T[$tool.$op]:-nan}" \
            "$(awk -v r="${R[$tool.$op]:-0}" 'BEGIN {print r / 1024}')" \
            "$(mb "${S[$tool.$key]:-0}")" "${P[$tool.$key]:-0}" "$snaps"
    done
done
echo "(backup: sum of the $snapshots backups' seconds and the largest peak RSS; check -rd: check" \
    "--read-data; repo_MB/packs/snaps: after the operation)"
echo
for tool in "${tools[@]}"; do
    awk -v t="$tool" -v a="${S[$tool.before]:-0}" -v b="${S[$tool.after]:-0}" \
        -v pa="${P[$tool.before]:-0}" -v pb="${P[$tool.after]:-0}" \
        'BEGIN { if (a > 0) printf "%-7s prune: %.1f MB -> %.1f MB (-%.1f%%), %d -> %d packs\n", t, a/1e6, b/1e6, 100*(a-b)/a, pa, pb }'
done
echo
echo "ratios peer/coffer (above 1: coffer is faster / smaller)"
for peer in "${tools[@]}"; do
    [ "$peer" = coffer ] && continue
    for op in backup forget prune check read-data; do
        awk -v p="$peer" -v op="$op" -v a="${T[coffer.$op]:-0}" -v b="${T[$peer.$op]:-0}" \
            -v ra="${R[coffer.$op]:-0}" -v rb="${R[$peer.$op]:-0}" \
            'BEGIN { if (a > 0 && ra > 0) printf "%s/coffer %-10s time x%.2f  peak RSS x%.2f\n", p, op, b/a, rb/ra }'
    done
    awk -v p="$peer" -v a="${S[coffer.after]:-0}" -v b="${S[$peer.after]:-0}" \
        'BEGIN { if (a > 0) printf "%s/coffer %-10s size x%.2f\n", p, "repo", b/a }'
done
echo
if [[ " ${tools[*]} " == *" coffer "* ]]; then
    if [ "${RC[restic.interop-coffer]:-1}" -eq 0 ]; then
        echo "interop: restic check --read-data on coffer's pruned repository: ok (${T[restic.interop-coffer]} s)"
    else
        echo "interop: restic check --read-data on coffer's pruned repository: FAILED"
    fi
fi
for tool in "${tools[@]}"; do
    ok=ok
    for op in forget prune check read-data; do [ "${RC[$tool.$op]:-1}" -eq 0 ] || ok=FAILED; done
    echo "$tool: forget, prune, check, check --read-data after prune: $ok"
done
echo "total $(( $(date +%s) - start )) s; logs in $work/log"
if [ ${#fails[@]} -gt 0 ]; then
    echo
    printf 'FAILED: %s\n' "${fails[@]}"
    exit 1
fi
