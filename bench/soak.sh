#!/bin/sh
# bench/soak.sh [soak.py options] — build ocimirror (RelWithDebInfo) and run
# the soak (bench/soak.py: 10 minutes, 200 clients by default) inside a
# network namespace that has only loopback.  Options: bench/soak.py --help.
#   OCIMIRROR_BIN=path  soak that binary instead of building
#   BENCH_NICE=n        niceness of everything it starts (default -10 when
#                       run as root: other work on a shared machine, e.g.
#                       fuzzers at nice 10, then barely disturbs it)
#   BENCH_BUILD=dir     build directory (default: build)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD:-$ROOT/build}
if [ -z "${OCIMIRROR_BIN:-}" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target ocimirror
    OCIMIRROR_BIN=$BUILD/ocimirror
fi
export OCIMIRROR_BIN
if [ -z "${BENCH_NICE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then BENCH_NICE=-10; else BENCH_NICE=0; fi
fi
cd "$ROOT/tests/e2e"    # artifacts (logs) go to tests/e2e/artifacts/soak/
exec nice -n "$BENCH_NICE" "$ROOT/scripts/netns-run" python3 -u "$ROOT/bench/soak.py" "$@"
