"""HTTP abuse against a running ocimirror, one table row per kind of abuse,
while an honest client keeps pulling.

Every row runs with an honest client in a thread that pulls a cached
manifest (by tag) and one of its blobs over and over on fresh connections.
After the row:
  - the mirror process is alive (and, in sanitizer builds, reported
    nothing: WorldTestCase checks its log after each test);
  - the honest client was served during the row (at least one full pull),
    every request it made succeeded with the right bytes, and each took
    less than HONEST_MAX_S seconds.
The row "thousands of idle connections" has its own rule and its own
mirror (max_connections 256, connection_timeout 60s, the default): while
2000 idle connections are open the honest client is served or refused
cleanly (refused, reset, closed without an answer) — never given a wrong
answer — and it is served again within RECOVER_S of them closing.  The
connection guard (src/http/conn_guard.h) closes connections beyond
max_connections as soon as they are accepted, so libmicrohttpd never
reaches its own limit, where 0.9.75 could stall for a whole
connection_timeout (docs/fuzzing.md, finding H1); the test prints how long
recovery took.

Own mirrors too for the guard's other rules: a request head must be
complete within limits.header_timeout of connecting (slowloris, H3), while
a kept-alive connection may idle longer; connections beyond
max_connections are closed at once and counted in /metrics.  And a request
with both Content-Length and Transfer-Encoding (H2) or an HTTP/1.1 request
without Host (H4) is answered 400 and the connection closed.

Rows (ROWS below): slowloris (200 connections, below the limit), one huge
header, many headers, huge URLs, pipelined garbage
after a valid request, invalid UTF-8 / %00 / %2e%2e / .. paths,
absolute-form targets, CONNECT, HTTP/1.0 without Host, request smuggling
shapes (Content-Length with Transfer-Encoding, duplicates, obfuscated
Transfer-Encoding), a body on GET, and a huge chunked body to a push
endpoint (memory must not grow with it).

Raw sockets throughout: http.client refuses or normalises most of this.
The mirror runs with limits.max_connections 256 and tag_ttl 1h (the
honest pulls are pure cache hits, so no upstream is involved).

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_abuse.py
(about a minute; the file must stay under 3 minutes).
"""

import errno
import hashlib
import http.client
import re
import resource
import select
import socket
import sys
import threading
import time
import unittest

from lib.world import WorldTestCase, dump_log
from lib.images import ACCEPT_ALL

HONEST_MAX_S = 5.0        # each honest request, including connect
HONEST_TIMEOUT_S = 8.0    # socket timeout of the honest client (> HONEST_MAX_S, so
                          # a slow answer is measured, not just an exception)
RECOVER_S = 5.0           # idle-connection row: served again within this long
                          # (before the guard: up to connection_timeout, 60s)
MAX_CONNECTIONS = 256
IDLE_CONNECTIONS = 2000
STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3})")


# -- the honest client --------------------------------------------------------

class Honest(threading.Thread):
    """Pulls manifest + blob until stopped; records outcomes with times.

    results: list of (t_start, t_end, ok, what) per request; `what` is a
    short description of the failure (or the path when ok)."""

    def __init__(self, port, manifest_path, manifest_digest, blob_path, blob_digest):
        super().__init__(daemon=True)
        self.port = port
        self.paths = ((manifest_path, manifest_digest, True), (blob_path, blob_digest, False))
        self.results = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()

    def _one(self, path, digest, is_manifest):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HONEST_TIMEOUT_S)
        try:
            conn.request("GET", path, headers={"Accept": ACCEPT_ALL, "User-Agent": "honest"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                return False, "status %d for %s" % (r.status, path)
            got = "sha256:" + hashlib.sha256(body).hexdigest()
            if got != digest:
                return False, "wrong bytes for %s: %s" % (path, got)
            if is_manifest and r.getheader("Docker-Content-Digest") != digest:
                return False, "wrong Docker-Content-Digest for %s" % path
            return True, path
        finally:
            conn.close()

    def run(self):
        while not self.stop_ev.is_set():
            for path, digest, is_manifest in self.paths:
                t0 = time.monotonic()
                try:
                    ok, what = self._one(path, digest, is_manifest)
                except (OSError, http.client.HTTPException) as e:
                    ok, what = False, "%s: %r" % (path, e)
                with self.lock:
                    self.results.append((t0, time.monotonic(), ok, what))
            self.stop_ev.wait(0.05)

    def stop(self):
        self.stop_ev.set()
        self.join(HONEST_TIMEOUT_S * 3)

    def since(self, t):
        with self.lock:
            return [r for r in self.results if r[0] >= t]


# -- raw socket helpers -------------------------------------------------------

def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(port, data, timeout=5.0, limit=4 << 20):
    """Send data, read until the server closes or `timeout` passes without
    a byte.  Returns the bytes read (b"" if the server closed at once)."""
    s = connect(port, timeout)
    out = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while len(out) < limit:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def responses(raw):
    """The responses in raw, in order, as (status, headers dict, body).
    Walks status line, headers, Content-Length body (or chunked body), so
    pipelined answers are split where they really are; stops at anything
    that does not parse (a cut connection)."""
    out = []
    pos = 0
    while pos < len(raw):
        m = STATUS_RE.match(raw, pos)
        head_end = raw.find(b"\r\n\r\n", pos)
        if m is None or head_end < 0:
            break
        headers = {}
        for line in raw[pos:head_end].split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        pos = head_end + 4
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    n = int(raw[pos:eol].split(b";")[0], 16)
                except ValueError:
                    break
                body += raw[eol + 2:eol + 2 + n]
                pos = eol + 2 + n + 2
                if n == 0:
                    break
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                n = 0
            body = raw[pos:pos + n]
            pos += n
        out.append((int(m.group(1)), headers, body))
    return out


def statuses(raw):
    """Status codes of the responses in raw, in order."""
    return [r[0] for r in responses(raw)]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def req(target, method="GET", version="HTTP/1.1", headers=b"Host: 127.0.0.1\r\n", close=True):
    if isinstance(target, str):
        target = target.encode("latin-1")
    return (method.encode() + b" " + target + b" " + version.encode() + b"\r\n" + headers +
            (b"Connection: close\r\n" if close else b"") + b"\r\n")


# -- the test -----------------------------------------------------------------

class AbuseTest(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        # 2000 idle sockets here, and the mirror inherits the limit too.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        super().setUpClass()
        cls.img = cls.w.fx["alpine"]
        cls.m = cls.w.mirror(extra={"tag_ttl": "1h",
                                    "limits": {"max_connections": MAX_CONNECTIONS}})
        cls.manifest_path = "/v2/library/alpine/manifests/%s" % cls.img.tag
        cls.blob = cls.img.blobs[-1]
        cls.blob_path = "/v2/library/alpine/blobs/%s" % cls.blob
        # warm the cache: afterwards every honest request is a cache hit
        r = cls.m.get(cls.manifest_path, {"Accept": ACCEPT_ALL})
        assert r.status == 200, r
        r = cls.m.get(cls.blob_path)
        assert r.status == 200, r

    def setUp(self):
        super().setUp()
        self.assertTrue(self.m.alive, "the mirror died in an earlier row")
        # the class's mirror is not one of the test's own (self.mirror()), so
        # check it here the way WorldTestCase checks those
        self.addCleanup(self._check_class_mirror)
        self.honest = None
        self.start_honest(self.m)
        # the honest client is up and served before the abuse starts
        self.wait_served(time.monotonic(), 10)

    def start_honest(self, m):
        """(Re)start the honest client against mirror m."""
        if self.honest is not None:
            self.honest.stop()
        self.honest = Honest(m.port, self.manifest_path, self.img.digest, self.blob_path,
                             self.blob)
        self.honest.start()
        self.addCleanup(self.honest.stop)

    def _check_class_mirror(self):
        reports = self.m.sanitizer_reports()
        if self._failed() or reports or not self.m.alive:
            dump_log(self.m, self.id())
        self.assertEqual(reports, [], "sanitizer report in the mirror log")

    # -- checks ----------------------------------------------------------------
    def wait_served(self, since, timeout):
        """Wait until the honest client completed a full pull (manifest and
        blob) that started after `since`; returns the time it ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok_paths = {r[3] for r in self.honest.since(since) if r[2]}
            if self.manifest_path in ok_paths and self.blob_path in ok_paths:
                return time.monotonic()
            time.sleep(0.05)
        self.fail("the honest client was not served within %.0fs; last results: %r" % (
            timeout, self.honest.since(since)[-6:]))

    def assertHonestServed(self, t0):
        """Since t0: at least one full pull, no failure, every request fast."""
        self.wait_served(t0, HONEST_MAX_S * 2)
        rs = self.honest.since(t0)
        bad = [r for r in rs if not r[2]]
        self.assertEqual(bad, [], "honest client failures during the row")
        slow = [r for r in rs if r[1] - r[0] >= HONEST_MAX_S]
        self.assertEqual(slow, [], "honest requests slower than %.0fs" % HONEST_MAX_S)

    def assertAlive(self):
        self.assertTrue(self.m.alive, "the mirror process died")
        r = exchange(self.m.port, req("/v2/"), timeout=5)
        self.assertEqual(statuses(r)[:1], [200], r[:300])

    def assertNoServerError(self, raw, what, allowed=(501, 505)):
        for st in statuses(raw):
            self.assertTrue(st < 500 or st in allowed, "%s: status %d: %r" % (what, st, raw[:300]))

    # -- the rows (called by the generated test_* methods) ----------------------
    def row_slowloris(self):
        # 200 connections (below the 256 limit) that each send a request
        # head one byte at a time, slowly, for ~6 s.
        socks = []
        try:
            for _ in range(200):
                s = connect(self.m.port)
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            payload = b"X-Slow: " + b"a" * 20
            for i in range(len(payload)):
                for s in list(socks):
                    try:
                        s.send(payload[i:i + 1])
                    except OSError:
                        socks.remove(s)   # the server may cut slow clients: fine
                time.sleep(0.3)
        finally:
            for s in socks:
                s.close()

    def row_one_huge_header(self):
        for size in (64 << 10, 1 << 20):
            raw = exchange(self.m.port, req(self.manifest_path,
                                            headers=b"Host: x\r\nX-Big: " + b"a" * size + b"\r\n"))
            st = statuses(raw)
            # refused (431/413/400) or the connection cut: never served, never 5xx
            self.assertTrue(st == [] or st[0] in (400, 413, 431), (size, raw[:200]))

    def row_many_headers(self):
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 40) for i in range(5000))
        raw = exchange(self.m.port, req(self.manifest_path, headers=b"Host: x\r\n" + many))
        st = statuses(raw)
        self.assertTrue(st == [] or st[0] in (400, 413, 431), raw[:200])

    def row_oversized_url(self):
        for target in ("/v2/" + "a/" * 40000 + "manifests/1",
                       self.manifest_path + "?x=" + "a" * (1 << 20),
                       "/v2/library/alpine/manifests/" + "a" * 70000):
            raw = exchange(self.m.port, req(target))
            st = statuses(raw)
            self.assertTrue(st == [] or st[0] in (400, 404, 413, 414, 431), raw[:200])

    def row_pipelined_garbage_after_a_valid_request(self):
        garbage = bytes(range(256)) * 64 + b"\r\n\r\n" + b"\xff" * 4096
        raw = exchange(self.m.port, req("/v2/", close=False) + garbage)
        st = statuses(raw)
        self.assertGreaterEqual(len(st), 1, raw[:300])
        self.assertEqual(st[0], 200, raw[:300])      # the valid request is answered
        for s in st[1:]:
            self.assertIn(s, (400, 413, 414, 431, 501, 505), raw[:600])
        # and the same with a manifest GET first (a response with a body)
        raw = exchange(self.m.port, req(self.manifest_path, close=False,
                                        headers=b"Host: x\r\nAccept: " + ACCEPT_ALL.encode() +
                                        b"\r\n") + b"\x00\x01GARBAGE \r\n\r\n")
        self.assertEqual(statuses(raw)[:1], [200], raw[:300])

    def row_invalid_utf8_nul_and_traversal_paths(self):
        targets = [b"/v2/library/alp\xffine/manifests/3.19", b"/v2/\xc3\x28/manifests/1",
                   b"/v2/library/alpine/manifests/\xed\xa0\x80", b"/v2/%00/manifests/1",
                   b"/v2/library/alpine/manifests/3.19%00", b"/v2/%2e%2e/%2e%2e/etc/passwd",
                   b"/v2/library/%2e%2e/alpine/manifests/3.19", b"/v2/../../etc/passwd",
                   b"/v2/library/alpine/blobs/sha256:../../../../etc/passwd",
                   b"/v2/library/alpine/blobs/..%2f..%2f..%2fetc%2fpasswd",
                   b"/../../../../etc/passwd", b"/v2/library/alpine/manifests/..",
                   b"/v2/./library/alpine/manifests/3.19", b"/v2//library/alpine/manifests/3.19",
                   b"/v2/library/alpine/manifests/3.19?ns=%ff%fe", b"/v2/x/tags/list?last=%00",
                   b"/api/v1/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd"]
        for t in targets:
            raw = exchange(self.m.port, req(t))
            st = statuses(raw)
            self.assertNoServerError(raw, t)
            self.assertNotIn(b"root:", raw, t)
            # only an exact, valid /v2/ path may be answered 200; none of these is
            self.assertTrue(st == [] or st[0] >= 400, (t, raw[:300]))

    def row_absolute_form_request_targets(self):
        for t in (b"http://evil.example/v2/", b"http://evil.example/v2/library/alpine/manifests/3.19",
                  b"http://127.0.0.1:1/v2/library/alpine/blobs/sha256:" + b"a" * 64,
                  b"https://evil.example:443/", b"//evil.example/v2/"):
            raw = exchange(self.m.port, req(t))
            self.assertNoServerError(raw, t)
        # nothing went anywhere: the mirror talks to configured upstreams only,
        # and none of these names one (the netns has no other route anyway)
        self.assertNotIn("evil.example", "".join(
            str(e.get("upstream", "")) + str(e.get("url", "")) for e in self.m.log_json()))

    def row_connect_method(self):
        for data in (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
                     b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
                     b"CONNECT /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"):
            raw = exchange(self.m.port, data)
            st = statuses(raw)
            # never a tunnel: no 2xx (MHD may also answer 400/405/501 or close)
            self.assertTrue(st == [] or st[0] >= 400, raw[:300])
            self.assertNoServerError(raw, data)

    def row_http10_without_host(self):
        raw = exchange(self.m.port, b"GET /v2/ HTTP/1.0\r\n\r\n")
        self.assertIn(statuses(raw)[:1], ([200], [400]), raw[:300])
        raw = exchange(self.m.port, b"GET " + self.manifest_path.encode() +
                       b" HTTP/1.0\r\nAccept: " + ACCEPT_ALL.encode() + b"\r\n\r\n")
        self.assertIn(statuses(raw)[:1], ([200], [400]), raw[:300])
        # HTTP/1.1 without Host: RFC 9112 3.2 says 400 (finding H4), with
        # an OCI error body, and the connection ends (a pipelined request
        # after it is not answered)
        raw = exchange(self.m.port, b"GET /v2/ HTTP/1.1\r\n\r\n" + req("/v2/"))
        rs = responses(raw)
        self.assertEqual([r[0] for r in rs], [400], raw[:600])
        self.assertIn(b'"errors"', rs[0][2], raw[:600])
        # HTTP/0.9-style and junk versions
        for data in (b"GET /v2/\r\n\r\n", b"GET /v2/ HTTP/1.10\r\nHost: x\r\n\r\n",
                     b"GET /v2/ HTTP/2.0\r\nHost: x\r\n\r\n"):
            self.assertNoServerError(exchange(self.m.port, data), data)

    def row_request_smuggling_shapes(self):
        smuggled = b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n"
        shapes = [
            # CL.TE and TE.CL
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 4\r\n\r\n5c\r\n" + smuggled + b"\r\n0\r\n\r\n",
            # GET with both
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
            # duplicate and conflicting Content-Length
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n"
            b"hello" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n\r\nhello" + smuggled,
            # obfuscated Transfer-Encoding
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
            b"0\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
            # bare LF line ends and a negative / huge length
            b"POST /v2/ HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + smuggled,
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            # a chunk size that overflows
            b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ]
        for data in shapes:
            raw = exchange(self.m.port, data, timeout=3)
            self.assertNoServerError(raw, data[:80])
            # a write to the read-only mirror is never accepted
            if data.startswith(b"POST"):
                for st in statuses(raw)[:1]:
                    self.assertNotIn(st, (200, 201, 202, 204), (data[:80], raw[:300]))

    def row_a_body_on_get(self):
        # The body must be read as a body, not as the start of the next
        # request: the second, pipelined request is answered normally.
        for body in (b"0123456789", b"GET /v2/_catalog HTTP/1.1\r\n\r\n", b"x" * 100000):
            data = (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) +
                    body + req(self.manifest_path, headers=b"Host: x\r\nAccept: " +
                               ACCEPT_ALL.encode() + b"\r\n"))
            raw = exchange(self.m.port, data)
            st = statuses(raw)
            self.assertNoServerError(raw, body[:20])
            self.assertTrue(st, raw[:300])
            if st[0] == 200:
                # served: then the pipelined request must be the manifest
                self.assertEqual(st[1:2], [200], (body[:20], raw[:600]))
                self.assertIn(self.img.digest.encode(), raw, body[:20])
            else:
                self.assertIn(st[0], (400, 413), raw[:300])
        # chunked body on GET
        raw = exchange(self.m.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                       b"\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        self.assertIn(statuses(raw)[:1], ([200], [400], [413]), raw[:300])

    def row_a_huge_chunked_body_to_a_push_endpoint(self):
        before = rss_kib(self.m.pid)
        s = connect(self.m.port, timeout=10)
        sent = 0
        answer = b""
        chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
        try:
            s.sendall(b"POST /v2/library/alpine/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/octet-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            deadline = time.monotonic() + 20
            while sent < (256 << 20) and time.monotonic() < deadline:
                r, w, _ = select.select([s], [s], [], 1.0)
                if r:
                    data = s.recv(65536)
                    if not data:
                        break           # the server closed: done
                    answer += data
                    if b"\r\n\r\n" in answer:
                        break           # answered: done
                if w:
                    try:
                        sent += s.send(chunk)
                    except OSError as e:
                        if e.errno in (errno.EPIPE, errno.ECONNRESET):
                            break
                        raise
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
        self.assertLess(sent, 256 << 20, "the server read a 256 MiB push body to the end")
        st = statuses(answer)
        self.assertTrue(st == [] or st[0] in (405, 413, 400), answer[:300])
        grew = rss_kib(self.m.pid) - before
        self.assertLess(grew, 64 << 10, "RSS grew by %d KiB while %d bytes were pushed" % (
            grew, sent))

    # -- the rows with their own acceptance rule ------------------------------
    def metric(self, m, name):
        """The value of a counter/gauge without labels in m's /metrics."""
        for line in m.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no %s in /metrics" % name)

    def assert_over_limit_closed(self, m, n_open, n_closed):
        """Open n_open idle connections to m (after the warm-up requests'
        connections are gone): exactly n_closed of them must be closed by the
        server within 5 s, m stays up, and /metrics must count exactly those
        refusals; then, all closed, the honest client must be served within
        3 s."""
        time.sleep(0.5)     # the warm-up connections are closed on the server side too
        socks = []
        try:
            for _ in range(n_open):
                socks.append(connect(m.port, timeout=5))
            deadline = time.monotonic() + 5
            closed = set()
            while time.monotonic() < deadline and len(closed) < n_closed:
                r, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.2)
                for s in r:
                    try:
                        if s.recv(4096) == b"":
                            closed.add(s)
                    except OSError:
                        closed.add(s)
            self.assertEqual(len(closed), n_closed, "over-limit connections not closed within 5s")
            self.assertTrue(m.alive)
        finally:
            for s in socks:
                s.close()
        # Counted before the honest client comes: connecting while the server
        # has not yet seen all those closes, it could be refused too.
        time.sleep(0.5)
        self.assertEqual(self.metric(m, "ocimirror_http_connections_refused_total"), n_closed)
        t = time.monotonic()
        self.start_honest(m)
        self.wait_served(t, 3)

    def test_a_slow_request_head_is_cut_at_header_timeout(self):
        """Slowloris (finding H3): connections that send a request head one
        byte at a time, each byte well inside connection_timeout, are
        closed once limits.header_timeout has passed since they connected;
        the honest client is served all along."""
        m = self.mirror(extra={"tag_ttl": "1h", "limits": {
            "header_timeout": "2s", "connection_timeout": "30s"}})
        self.assertEqual(m.get(self.manifest_path, {"Accept": ACCEPT_ALL}).status, 200)
        self.assertEqual(m.get(self.blob_path).status, 200)
        self.start_honest(m)
        self.wait_served(time.monotonic(), 10)
        t0 = time.monotonic()
        socks = {}
        for _ in range(20):
            s = connect(m.port)
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            socks[s] = None                       # time it was cut
        payload = b"X-Slow: " + b"a" * 40         # 48 bytes, one per 0.25 s: 12 s
        try:
            for i in range(len(payload)):
                now = time.monotonic() - t0
                for s in socks:
                    if socks[s] is not None:
                        continue
                    try:
                        s.send(payload[i:i + 1])
                        r, _, _ = select.select([s], [], [], 0)
                        if r and s.recv(4096) == b"":
                            socks[s] = now
                    except OSError:
                        socks[s] = now
                if all(v is not None for v in socks.values()):
                    break
                time.sleep(0.25)
        finally:
            for s in socks:
                s.close()
        cut = sorted(v for v in socks.values() if v is not None)
        sys.stderr.write("\n  slow heads cut after %s s\n" % (
            ", ".join("%.1f" % v for v in cut[:3] + cut[-3:])))
        self.assertEqual(len(cut), 20, "slow connections still open after %.0fs" % (
            time.monotonic() - t0))
        self.assertGreaterEqual(cut[0], 1.5, "cut before header_timeout")
        self.assertLess(cut[-1], 6.0, "cut long after header_timeout (2s)")
        self.assertGreaterEqual(self.metric(m, "ocimirror_http_header_timeouts_total"), 20)
        self.assertHonestServed(t0)

    def test_a_kept_alive_connection_may_idle_past_header_timeout(self):
        """The head deadline is for a request in the making: after a
        response, a kept-alive connection may wait for its next request up
        to connection_timeout (here 6s), longer than header_timeout (1s)."""
        m = self.mirror(extra={"tag_ttl": "1h", "limits": {
            "header_timeout": "1s", "connection_timeout": "6s"}})
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
        try:
            conn.request("GET", "/v2/")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            sock = conn.sock
            time.sleep(2.5)
            conn.request("GET", "/v2/")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertIs(conn.sock, sock, "the connection was not kept alive")
        finally:
            conn.close()
        # an idle fresh connection, though, is cut at header_timeout
        s = connect(m.port, timeout=10)
        t = time.monotonic()
        try:
            self.assertEqual(s.recv(1), b"")
        except ConnectionResetError:
            pass
        finally:
            s.close()
        self.assertLess(time.monotonic() - t, 4.0)

    def test_connections_beyond_max_connections_are_closed_at_once(self):
        """limits.max_connections 32, 100 idle connections: the 68 beyond
        the cap are closed as soon as they are accepted (not queued, not
        left hanging), counted in /metrics; once they go the honest client
        is served at once."""
        m = self.mirror(extra={"tag_ttl": "1h", "limits": {"max_connections": 32}})
        self.assertEqual(m.get(self.manifest_path, {"Accept": ACCEPT_ALL}).status, 200)
        self.assertEqual(m.get(self.blob_path).status, 200)
        self.assert_over_limit_closed(m, 100, 68)
        self.assertEqual(statuses(exchange(m.port, req("/v2/")))[:1], [200])

    def test_max_connections_is_capped_to_the_descriptor_limit(self):
        """Started with a hard descriptor limit of 320 (prlimit; the soft one
        cannot be raised past it), the default max_connections 4096 could
        not be honoured: the mirror says so at start-up and serves at most
        (320 - 128) / 3 = 64 connections — of 100 idle ones the 36 beyond
        are closed at once, never an EMFILE stall — and the honest client
        is served once they go."""
        m = self.mirror(extra={"tag_ttl": "1h"}, argv_prefix=["prlimit", "--nofile=320:320", "--"])
        with open("/proc/%d/limits" % m.pid) as f:
            self.assertIn("320", [l for l in f if l.startswith("Max open files")][0])
        with open(m.log_path, errors="replace") as f:
            self.assertIn("serving at most 64 connections", f.read())
        self.assertEqual(m.get(self.manifest_path, {"Accept": ACCEPT_ALL}).status, 200)
        self.assertEqual(m.get(self.blob_path).status, 200)
        self.assert_over_limit_closed(m, 100, 36)

    def test_max_connections_per_ip_caps_one_address(self):
        """limits.max_connections_per_ip 4 (libmicrohttpd's per-address
        limit): a fifth connection from 127.0.0.1 is closed at once, and
        one of the four free again is served."""
        m = self.mirror(extra={"limits": {"max_connections_per_ip": 4}})
        time.sleep(0.5)     # the harness's readiness probe is closed on both sides
        socks = [connect(m.port) for _ in range(4)]
        try:
            time.sleep(0.3)
            raw = exchange(m.port, req("/v2/"), timeout=3)
            self.assertEqual(statuses(raw), [], raw[:300])
        finally:
            for s in socks:
                s.close()
        time.sleep(0.3)
        self.assertEqual(statuses(exchange(m.port, req("/v2/")))[:1], [200])

    def test_thousands_of_idle_connections(self):
        """2000 idle connections against max_connections 256, on a mirror of
        its own (default timeouts).  While they are open the honest client
        is served or refused cleanly; it never gets a wrong answer.  After
        they close it is served again within RECOVER_S (finding H1: before
        the connection guard, libmicrohttpd at its own limit could stall
        for a whole connection_timeout)."""
        m = self.mirror(extra={"tag_ttl": "1h", "limits": {
            "max_connections": MAX_CONNECTIONS}})
        self.assertEqual(m.get(self.manifest_path, {"Accept": ACCEPT_ALL}).status, 200)
        self.assertEqual(m.get(self.blob_path).status, 200)
        self.start_honest(m)
        self.wait_served(time.monotonic(), 10)
        t0 = time.monotonic()
        socks = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                try:
                    socks.append(connect(m.port, timeout=2))
                except OSError:
                    break   # the backlog is full: that is the server's right
            self.assertGreater(len(socks), MAX_CONNECTIONS, "could not open the idle connections")
            time.sleep(3)   # the honest client runs against the full server
            self.assertTrue(m.alive, "the mirror died with %d idle connections" % len(socks))
        finally:
            for s in socks:
                s.close()
        t_closed = time.monotonic()
        for (a, b, ok, what) in self.honest.since(t0):
            if not ok:
                self.assertRegex(what, r"Refused|Reset|RemoteDisconnected|BrokenPipe|timed out",
                                 "not a clean refusal: " + what)
        t_served = self.wait_served(t_closed, RECOVER_S)
        sys.stderr.write("\n  idle-connection row: %d connections, honest client served again "
                         "%.1fs after they closed\n" % (len(socks), t_served - t_closed))
        t1 = time.monotonic()
        time.sleep(1)
        self.assertHonestServed(t1)
        self.assertTrue(m.alive)
        self.assertEqual(statuses(exchange(m.port, req("/v2/")))[:1], [200])

    def test_a_request_with_both_content_length_and_transfer_encoding_closes_the_connection(self):
        """RFC 9112 6.3: a server that processes a request carrying both
        Content-Length and Transfer-Encoding MUST close the connection after
        responding (or reject it).  libmicrohttpd 0.9.75 went on reading the
        connection, so what a front proxy that trusts Content-Length sees as
        body was answered as a second request (smuggling; finding H2).  Now:
        400 with an OCI error, Connection: close, nothing after it."""
        smuggled = b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n"
        for method in (b"GET", b"POST"):
            raw = exchange(self.m.port, method + b" /v2/ HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
                           smuggled, timeout=3)
            rs = responses(raw)
            self.assertEqual([r[0] for r in rs], [400], raw[:600])
            self.assertEqual(rs[0][1].get("connection", "").lower(), "close", raw[:600])
            self.assertIn(b'"errors"', rs[0][2], raw[:600])


def _make_row_test(name):
    def test(self):
        t0 = time.monotonic()
        getattr(self, "row_" + name)()
        self.assertAlive()
        self.assertHonestServed(t0)
    test.__name__ = "test_" + name
    test.__doc__ = "row: " + name.replace("_", " ")
    return test


# The table: every row but the idle-connection one runs the same way.
ROWS = [
    "slowloris",
    "one_huge_header",
    "many_headers",
    "oversized_url",
    "pipelined_garbage_after_a_valid_request",
    "invalid_utf8_nul_and_traversal_paths",
    "absolute_form_request_targets",
    "connect_method",
    "http10_without_host",
    "request_smuggling_shapes",
    "a_body_on_get",
    "a_huge_chunked_body_to_a_push_endpoint",
]
for _name in ROWS:
    setattr(AbuseTest, "test_" + _name, _make_row_test(_name))


if __name__ == "__main__":
    unittest.main(verbosity=2)
