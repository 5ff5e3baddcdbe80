#!/usr/bin/env python3
"""The ocimirror soak (issue 3, section 5): `clients` concurrent clients for
`seconds`, mixing cache hits, misses (a pool of images not cached at the
start plus images pushed to the upstreams during the run) and Range
requests, every answer checked byte for byte, against one mirror started
on the e2e World (three docker-registry upstreams, one with token auth).
RSS and open fds of the mirror are sampled from /proc every few seconds.

    bench/soak.sh                        # 10 minutes, 200 clients
    scripts/netns-run python3 -u bench/soak.py --seconds 60   # what CI runs

Passes (exit 0) when there were 0 errors, the mirror is alive, after the
warm-up every RSS sample and the open fds at every quiescent checkpoint
(clients paused, nothing in flight: a sample under load also counts one
blob fd per response in flight) are within ±tolerance of their median
(default ±10%), the file fds at those checkpoints stay the same (±2), and,
idle again after the run (no download in flight): no client connection
left open, exactly as many non-socket fds as before the run — but for the
-wal/-shm files SQLite opens at a connection's first read (the admin view's,
GC's), which the failure message would name — and other sockets grown by at
most --idle-socket-slack.  The engine is tests/e2e/lib/bench_soak.py; the CI test
is tests/e2e/test_soak.py.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from lib.world import World                      # noqa: E402
from lib.bench_soak import Soak, summary, idle_problems   # noqa: E402


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def parse_actions(text):
    if not text:
        return None
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = float(v or 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default max(10, 20%%))")
    ap.add_argument("--sample-every", type=float, default=None, help="seconds (default 2, or 5 above 2 min)")
    ap.add_argument("--checkpoint-every", type=float, default=None,
                    help="seconds between quiescent checkpoints (default 10, or 30 above 2 min)")
    ap.add_argument("--push-every", type=float, default=1.0, help="a new upstream image every N s")
    ap.add_argument("--actions", default=None,
                    help="request mix, e.g. hit=40,miss=20,range=25,head=10,missing=5 (the default)")
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--fd-tolerance", type=float, default=0.10)
    ap.add_argument("--idle-socket-slack", type=int, default=200,
                    help="idle non-client sockets after the run may exceed those before it by "
                         "this many: the upstream easy-handle pools (8 handles per upstream, "
                         "each a wake-up socketpair and its kept connections)")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    ap.add_argument("--log-level", default="warn", help="the mirror's log level")
    args = ap.parse_args()
    if os.environ.get("OM_IN_NETNS") != "1":
        log("warning: not inside scripts/netns-run (use bench/soak.sh)")
    t0 = time.monotonic()
    rc = 1
    with World() as w:
        m = w.mirror(extra={"log": {"level": args.log_level, "format": "json"}})
        log("world and mirror up in %.1f s; mirror log %s" % (time.monotonic() - t0, m.log_path))
        s = Soak(w, m, seconds=args.seconds, clients=args.clients, warmup_s=args.warmup,
                 sample_every=args.sample_every, push_every=args.push_every, log=log,
                 actions=parse_actions(args.actions), checkpoint_every=args.checkpoint_every)
        s.prepare()
        log("cache warmed, %d images waiting upstream; %d clients for %d s" % (
            s.pool_n, args.clients, args.seconds))
        res = s.run()
        rc_stop = m.stop()
        text = summary(res)
        print(text)
        problems = []
        if res["errors"]:
            problems.append("%d errors" % len(res["errors"]))
        if not res["alive"] or m.unexpected_exits:
            problems.append("the mirror died")
        for key, tol in (("rss", args.rss_tolerance), ("fds", args.fd_tolerance)):
            f = res[key]
            if f["dev"] is None or f["dev"] > tol:
                problems.append("%s not flat within ±%.0f%%: %r" % (key, tol * 100, f))
        files = [q[7] for q in res["quiescent"] if q[0] >= res["warmup_s"]]
        if files and max(files) - min(files) > 2:
            problems.append("file fds at the quiescent checkpoints changed: %s" % files)
        problems += idle_problems(res, args.idle_socket_slack)
        reports = m.sanitizer_reports()
        if reports:
            problems.append("sanitizer reports:\n" + "\n".join(reports[:3]))
        print("mirror exit status on SIGTERM: %s" % rc_stop)
        print("verdict: %s" % ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(dict(res, problems=problems, args=vars(args)), f, indent=1)
        rc = 0 if not problems else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
