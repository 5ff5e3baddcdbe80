"""Reproducer for finding H1 (docs/fuzzing.md): after a flood of idle
connections beyond limits.max_connections closes, libmicrohttpd 0.9.75 may
serve nothing until its epoll timeout (= limits.connection_timeout) runs
out.  Prints how long the first request after the flood took; with the
default connection_timeout of 60s it is often tens of seconds (or the 30 s
client timeout).  Timing dependent: run it a few times.

Run from tests/e2e (needs the e2e world):
  cd tests/e2e && OCIMIRROR_BIN=$PWD/../../build/ocimirror ../../scripts/netns-run \
      python3 -u ../fuzz/findings/http/idle_flood_stall.py [CONNECTIONS] [CONNECTION_TIMEOUT]
"""
import http.client
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.getcwd())
from lib.world import World            # noqa: E402
from lib.images import ACCEPT_ALL      # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
TIMEOUT = sys.argv[2] if len(sys.argv) > 2 else "60s"
PATH = "/v2/library/alpine/manifests/3.19"

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
with World() as w:
    m = w.mirror(extra={"tag_ttl": "1h", "limits": {"max_connections": 256,
                                                    "connection_timeout": TIMEOUT}})
    assert m.get(PATH, {"Accept": ACCEPT_ALL}).status == 200
    stop = threading.Event()

    def client():
        # a client pulling during the flood (its connections wait in the
        # backlog); the stall shows more often with one
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=8)
                c.request("GET", PATH, headers={"Accept": ACCEPT_ALL})
                c.getresponse().read()
                c.close()
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    time.sleep(0.5)
    socks = []
    for _ in range(N):
        try:
            socks.append(socket.create_connection(("127.0.0.1", m.port), timeout=2))
        except OSError:
            break
    time.sleep(3)
    for s in socks:
        s.close()
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
        c.request("GET", PATH, headers={"Accept": ACCEPT_ALL})
        result = c.getresponse().status
    except OSError as e:
        result = repr(e)
    stop.set()
    print("%d idle connections closed; first request after them: %s after %.1fs "
          "(connection_timeout %s)" % (len(socks), result, time.monotonic() - t0, TIMEOUT))
