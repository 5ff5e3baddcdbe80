#!/bin/sh
# bench/run.sh [bench.py options] — build ocimirror (RelWithDebInfo) and run
# the benchmark suite (bench/bench.py, P1-P6 of issue 3) inside a network
# namespace that has only loopback.  Options: bench/bench.py --help.
#   bench/run.sh --cluster [opts]  the cluster benchmarks instead
#                                  (bench/cluster.py, C1-C5: replicas on
#                                  S3 + Redis; options: bench/cluster.py --help)
#   OCIMIRROR_BIN=path  benchmark that binary instead of building
#   BENCH_NICE=n        niceness of everything it starts (default -10 when
#                       run as root: other work on a shared machine, e.g.
#                       fuzzers at nice 10, then barely disturbs it)
#   BENCH_BUILD=dir     build directory (default: build, as `make` uses)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD:-$ROOT/build}
if [ -z "${OCIMIRROR_BIN:-}" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target ocimirror
    OCIMIRROR_BIN=$BUILD/ocimirror
    OM_BENCH_BUILT=1    # the report then shows the plain command
    export OM_BENCH_BUILT
fi
export OCIMIRROR_BIN
if [ -z "${BENCH_NICE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then BENCH_NICE=-10; else BENCH_NICE=0; fi
fi
SCRIPT=bench.py
if [ "${1:-}" = "--cluster" ]; then
    SCRIPT=cluster.py
    shift
fi
exec nice -n "$BENCH_NICE" "$ROOT/scripts/netns-run" python3 -u "$ROOT/bench/$SCRIPT" "$@"
