#!/usr/bin/env bash
# scripts/fuzz.sh — build the libFuzzer targets of tests/fuzz/ with clang and
# run them.  docs/fuzzing.md explains the targets and how to read results.
#
#   scripts/fuzz.sh short              every target for 20 s (CI); fails on any crash
#   scripts/fuzz.sh long SECONDS       every target for SECONDS (e.g. 3600 = the
#                                      documented 1 CPU-hour per target)
#   scripts/fuzz.sh topup CPU_SECONDS  run every target, in chunks of at most
#                                      10 min, until the ledger says it has had
#                                      CPU_SECONDS of CPU time in all (stop it
#                                      any time: a chunk's CPU time is booked
#                                      when the chunk ends; runs add up)
#   scripts/fuzz.sh ledger             CPU seconds each target has had
#   scripts/fuzz.sh run TARGET SECONDS one target (name without "fuzz_")
#   scripts/fuzz.sh replay             every target over its seed corpus once
#   scripts/fuzz.sh findings           the reproducers of open findings
#                                      (tests/fuzz/findings/) in strict mode:
#                                      says which are still open, which fixed
#   scripts/fuzz.sh build              only build
#   scripts/fuzz.sh list               the target names
# Extra targets after the mode limit a short/long/replay run to those:
#   scripts/fuzz.sh long 600 config route
#
# Environment:
#   FUZZ_JOBS=2          targets run side by side (one core each)
#   FUZZ_BUILD=DIR       build dir (default build-fuzz in the repo)
#   FUZZ_SHORT_SECONDS   per target in "short" (default 20)
#   OM_FUZZ_STRICT=1     known open findings abort too (see tests/fuzz/fuzz_known.h)
#   (runs use tests/fuzz/lsan.supp: a known leak inside libfyaml)
#   CC                   the clang to use (default clang)
#
# Layout under FUZZ_BUILD: fuzz_<t> binaries; corpus/<t>/ the growing
# working corpus (kept between runs, never written into the repo: the
# seeds in tests/fuzz/corpus/<t>/ are only read); artifacts/<t>/ crash,
# timeout and OOM inputs; logs/<t>.log; summary.txt one line per target;
# cpu-ledger.txt "target cpu-seconds" lines, one per run (user + system
# time as the kernel counted it, so a run at low priority on a busy
# machine books what it really got, not its wall time).
# Exit status: 0 when no target found anything, 1 otherwise, 2 on misuse.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
JOBS=${FUZZ_JOBS:-2}
SHORT=${FUZZ_SHORT_SECONDS:-20}
CC=${CC:-clang}
SEEDS=$ROOT/tests/fuzz/corpus
DICTS=$ROOT/tests/fuzz/dict

# Largest input per target: about the biggest thing that parser meets in
# practice, so the fuzzer does not waste time on sizes the server refuses.
max_len() {
    case $1 in
        manifest | image_config) echo 65536 ;;
        config) echo 16384 ;;
        token) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

targets() {
    local f
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        f=${f##*/fuzz_}
        echo "${f%.c}"
    done
}

build() {
    command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; return 2; }
    cmake -S "$ROOT/tests/fuzz" -B "$BUILD" -DCMAKE_C_COMPILER="$CC" >/dev/null || return 1
    cmake --build "$BUILD" -j"$JOBS" >/dev/null || { cmake --build "$BUILD" -j1; return 1; }
}

# run_one TARGET SECONDS: one libFuzzer run; writes a summary line.
run_one() {
    local t=$1 secs=$2 bin="$BUILD/fuzz_$1" log="$BUILD/logs/$1.log" dict=() rc start=$SECONDS
    mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t" "$BUILD/logs"
    [ -f "$DICTS/$t.dict" ] && dict=(-dict="$DICTS/$t.dict")
    local TIMEFORMAT='%U %S' cputimes
    cputimes=$( { time LSAN_OPTIONS="suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        "${dict[@]}" -artifact_prefix="$BUILD/artifacts/$t/" -print_final_stats=1 \
        "$BUILD/corpus/$t" "$SEEDS/$t" >"$log" 2>&1 ; echo "rc=$?" >"$log.rc"; } 2>&1 )
    rc=$(sed -n 's/^rc=//p' "$log.rc")
    local cpu
    cpu=$(echo "$cputimes" | awk 'NF == 2 { printf "%d", $1 + $2 }')
    (flock 9; echo "$t ${cpu:-0}" >>"$BUILD/cpu-ledger.txt") 9>>"$BUILD/cpu-ledger.lock"
    local execs eps cov ft corpus status ran=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "$BUILD/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then status=ok; else status="FOUND(rc=$rc) see $log"; fi
    grep -q "known finding" "$log" && status="$status, known finding(s) warned"
    printf '%-10s %5ss/%-5s cpu=%-5s execs=%-11s exec/s=%-7s cov=%-5s ft=%-6s corpus=%-5s %s\n' \
        "$t" "$ran" "$secs" "${cpu:-?}" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$status" \
        >>"$BUILD/summary.txt"
    return $rc
}

# run_all SECONDS TARGET...: JOBS at a time; 1 if any failed.
run_all() {
    local secs=$1 failed=0 t running=0
    shift
    : >"$BUILD/summary.txt"
    echo "fuzz.sh: $# target(s), ${secs}s each, $JOBS at a time; logs in $BUILD/logs" >&2
    for t in "$@"; do
        if [ "$running" -ge "$JOBS" ]; then
            wait -n || failed=1
            running=$((running - 1))
        fi
        run_one "$t" "$secs" &
        running=$((running + 1))
    done
    while [ "$running" -gt 0 ]; do
        wait -n || failed=1
        running=$((running - 1))
    done
    sort "$BUILD/summary.txt"
    return $failed
}

# booked TARGET: CPU seconds the ledger holds for TARGET.
booked() {
    awk -v t="$1" '$1 == t { s += $2 } END { printf "%d", s }' "$BUILD/cpu-ledger.txt" 2>/dev/null || echo 0
}

# topup CPU_SECONDS TARGET...: chunks of at most 600 s, JOBS at a time, the
# target with the least CPU booked first, until every target has its share.
topup() {
    local want=$1 failed=0 running=() t best bestv v left
    shift
    : >"$BUILD/summary.txt"
    echo "fuzz.sh: topping up $# target(s) to ${want} CPU-s each, $JOBS at a time" >&2
    while :; do
        # reap finished chunks
        local still=() pt
        for pt in "${running[@]}"; do
            if kill -0 "${pt%%:*}" 2>/dev/null; then still+=("$pt"); else wait "${pt%%:*}" || failed=1; fi
        done
        running=("${still[@]}")
        if [ ${#running[@]} -lt "$JOBS" ]; then
            best='' bestv=$want
            for t in "$@"; do
                case " ${running[*]} " in *":$t "*) continue ;; esac
                v=$(booked "$t")
                if [ "$v" -lt "$bestv" ]; then best=$t bestv=$v; fi
            done
            if [ -n "$best" ]; then
                left=$((want - bestv))
                [ $left -gt 600 ] && left=600
                [ $left -lt 30 ] && left=30
                run_one "$best" "$left" &
                running+=("$!:$best")
                continue
            fi
            [ ${#running[@]} -eq 0 ] && break
        fi
        sleep 2
    done
    for t in "$@"; do printf '%-10s %6s CPU-s booked\n' "$t" "$(booked "$t")"; done
    return $failed
}

replay() {
    local t failed=0
    for t in "$@"; do
        if "$BUILD/fuzz_$t" -runs=0 "$SEEDS/$t" >"$BUILD/logs/$t.replay.log" 2>&1; then
            echo "replay $t: ok ($(find "$SEEDS/$t" -type f | wc -l) seeds)"
        else
            echo "replay $t: FAILED, see $BUILD/logs/$t.replay.log"
            failed=1
        fi
    done
    return $failed
}

# Each reproducer in tests/fuzz/findings/<t>/ under OM_FUZZ_STRICT=1: a
# crash, timeout or OOM means the finding is still open.
findings() {
    local dir t f rc open=0
    for dir in "$ROOT"/tests/fuzz/findings/*/; do
        t=$(basename "$dir")
        [ -x "$BUILD/fuzz_$t" ] || continue   # e.g. findings/http/: a script, not a fuzz input
        for f in "$dir"*; do
            [ -f "$f" ] || continue
            OM_FUZZ_STRICT=1 timeout 60 "$BUILD/fuzz_$t" -runs=1 -timeout=10 -rss_limit_mb=2048 \
                "$f" >"$BUILD/logs/finding-$t-$(basename "$f").log" 2>&1
            rc=$?
            if [ $rc -ne 0 ]; then
                echo "open   $t/$(basename "$f") (rc=$rc)"
                open=$((open + 1))
            else
                echo "FIXED  $t/$(basename "$f"): move it to tests/fuzz/corpus/$t/ and make its FUZZ_KNOWN a FUZZ_CHECK"
            fi
        done
    done
    echo "$open finding(s) still open"
    return 0
}

mode=${1:-}
[ $# -gt 0 ] && shift
case $mode in
    list) targets; exit 0 ;;
    build) build; exit $? ;;
    findings)
        build || exit $?
        mkdir -p "$BUILD/logs"
        findings
        exit $? ;;
    short | replay)
        build || exit $?
        mkdir -p "$BUILD/logs"
        sel=("$@")
        [ ${#sel[@]} -eq 0 ] && mapfile -t sel < <(targets)
        if [ "$mode" = short ]; then run_all "$SHORT" "${sel[@]}"; else replay "${sel[@]}"; fi
        exit $? ;;
    long)
        secs=${1:-}
        case $secs in '' | *[!0-9]*) echo "usage: fuzz.sh long SECONDS [TARGET...]" >&2; exit 2 ;; esac
        shift
        build || exit $?
        sel=("$@")
        [ ${#sel[@]} -eq 0 ] && mapfile -t sel < <(targets)
        run_all "$secs" "${sel[@]}"
        exit $? ;;
    topup)
        secs=${1:-}
        case $secs in '' | *[!0-9]*) echo "usage: fuzz.sh topup CPU_SECONDS [TARGET...]" >&2; exit 2 ;; esac
        shift
        build || exit $?
        sel=("$@")
        [ ${#sel[@]} -eq 0 ] && mapfile -t sel < <(targets)
        topup "$secs" "${sel[@]}"
        exit $? ;;
    ledger)
        for t in $(targets); do printf '%-10s %6s CPU-s\n' "$t" "$(booked "$t")"; done
        exit 0 ;;
    run)
        [ $# -eq 2 ] || { echo "usage: fuzz.sh run TARGET SECONDS" >&2; exit 2; }
        build || exit $?
        : >"$BUILD/summary.txt"
        run_one "$1" "$2"
        rc=$?
        cat "$BUILD/summary.txt"
        exit $rc ;;
    *)
        sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
