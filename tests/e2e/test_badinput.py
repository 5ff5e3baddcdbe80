"""Hostile and malformed requests to ocimirror: invalid names, tags and
digests, path traversal, NUL bytes, oversized headers and URLs, write
methods, unknown hosts.  Every answer must be a clean 4xx (an OCI error
JSON wherever the mirror answers itself), nothing may reach a file outside
the store or a host outside the config, and afterwards the same process
still serves a normal pull.

Raw sockets are used where http.client would refuse or normalise the
request.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_badinput.py
"""

import json
import socket
import unittest

from lib.world import WorldTestCase, dump_log
from lib.images import ACCEPT_ALL

HEX64 = "a" * 64


class RawResp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def get(self, k, default=None):
        return self.headers.get(k.lower(), default)

    def __repr__(self):
        return "<RawResp %s %r %r>" % (self.status, self.headers, self.body[:300])


def raw_request(host_port, data, timeout=10):
    """Send raw bytes, read until the server closes (or the one response is
    complete).  Returns RawResp, or None if the server closed without
    answering."""
    host, port = host_port.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server may answer and close before reading it all
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                cl = None
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        cl = int(v.strip())
                if cl is not None and len(body) >= cl:
                    break
            if len(buf) > (8 << 20):
                break
    finally:
        s.close()
    if not buf:
        return None
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawResp(status, headers, body)


def req(method, target, extra_headers=b""):
    return (method.encode() + b" " + (target if isinstance(target, bytes) else target.encode()) +
            b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers + b"\r\n")


class BadInputTest(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.m = cls.w.mirror()
        cls.alpine = cls.w.fx["alpine"]

    def setUp(self):
        super().setUp()
        self.addCleanup(self._dump_if_failed)

    def _dump_if_failed(self):
        if self._failed():
            dump_log(self.m, self.id())

    # -- helpers -----------------------------------------------------------
    def raw(self, data, timeout=10):
        return raw_request(self.m.host_port, data, timeout)

    def assertRawError(self, r, statuses, codes=None, json_required=True):
        self.assertIsNotNone(r, "the mirror closed the connection without an answer")
        self.assertIn(r.status, statuses, r)
        ct = r.get("content-type", "")
        if json_required or "json" in ct:
            self.assertErrorJSON(r, codes=codes)

    def assertErrorJSON(self, r, status=None, codes=None):
        if isinstance(r, RawResp):
            if status is not None:
                self.assertIn(r.status, status if isinstance(status, tuple) else (status,), r)
            try:
                doc = r.json()
            except ValueError:
                self.fail("error body is not JSON: %r" % (r,))
            errs = doc.get("errors") if isinstance(doc, dict) else None
            self.assertIsInstance(errs, list, r)
            self.assertTrue(errs, r)
            for e in errs:
                self.assertIsInstance(e.get("code"), str, r)
                self.assertIsInstance(e.get("message"), str, r)
            if codes is not None:
                codes = (codes,) if isinstance(codes, str) else tuple(codes)
                self.assertIn(errs[0]["code"], codes, r)
            return errs
        return super().assertErrorJSON(r, status, codes)

    def assertStillServing(self):
        self.assertTrue(self.m.alive, "the mirror process died")
        r = self.m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        self.assertManifest(r, self.alpine)

    # -- names, tags, digests --------------------------------------------
    def test_invalid_repository_names_are_refused_with_error_json(self):
        names = ["Alpine", "library/Alpine", "a..b", "%2e%2e/x", "%2E%2E/%2e%2e/etc",
                 "a//b", "a" * 300, "a/" * 130 + "b", "-a", "a-", "a/", "_a", "a/./b",
                 "a/../b", "a%2fb%2f..%2f..", "a%20b", "\u00e4".encode().decode("latin-1")]
        for n in names:
            for kind, ref in (("manifests", "1"), ("blobs", "sha256:" + HEX64),
                              ("tags", "list")):
                with self.subTest(name=n[:40], kind=kind):
                    target = "/v2/%s/%s/%s" % (n, kind, ref)
                    r = self.raw(req("GET", target.encode("latin-1")))
                    self.assertRawError(r, (400, 404),
                                        ("NAME_INVALID", "NAME_UNKNOWN", "MANIFEST_UNKNOWN",
                                         "BLOB_UNKNOWN"))
        self.assertStillServing()

    def test_invalid_tags_are_manifest_unknown(self):
        tags = ["-bad", ".bad", "a" * 129, "bad%20tag", "bad+tag", "%2e%2e", "%2e%2e%2fx",
                "tag%00", "t*"]
        for t in tags:
            with self.subTest(tag=t[:40]):
                r = self.m.get("/v2/library/alpine/manifests/" + t, {"Accept": ACCEPT_ALL})
                self.assertErrorJSON(r, 404, "MANIFEST_UNKNOWN")
        self.assertStillServing()

    def test_invalid_digests_are_digest_invalid(self):
        digests = ["sha256:xyz", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
                   "sha256:", "sha256", "sha256:" + "g" * 64, "sha256:..%2f..%2f..%2fetc%2fpasswd",
                   "sha256:" + "a" * 62 + "%00a"]
        for d in digests:
            with self.subTest(digest=d[:40], kind="blobs"):
                r = self.m.get("/v2/library/alpine/blobs/" + d)
                self.assertErrorJSON(r, 400, "DIGEST_INVALID")
            with self.subTest(digest=d[:40], kind="manifests"):
                # on manifests a reference with ':' is a digest, or else a
                # malformed tag: 400 DIGEST_INVALID or 404 MANIFEST_UNKNOWN
                r = self.m.get("/v2/library/alpine/manifests/" + d, {"Accept": ACCEPT_ALL})
                self.assertErrorJSON(r, (400, 404), ("DIGEST_INVALID", "MANIFEST_UNKNOWN"))
        self.assertStillServing()

    def test_unknown_digest_algorithm_is_refused(self):
        for d in ("md5:" + "a" * 32, "sha1:" + "a" * 40):
            with self.subTest(digest=d):
                r = self.m.get("/v2/library/alpine/blobs/" + d)
                self.assertErrorJSON(r, (400, 404), ("DIGEST_INVALID", "BLOB_UNKNOWN",
                                                     "UNSUPPORTED"))

    # -- traversal, NUL ----------------------------------------------------
    def test_path_traversal_is_refused(self):
        targets = [b"/v2/../../etc/passwd", b"/v2/x/blobs/sha256:../../..",
                   b"/v2/x/blobs/sha256:../../../../../../etc/passwd",
                   b"/v2/x/manifests/../../../../etc/passwd",
                   b"/v2/%2e%2e/%2e%2e/etc/passwd", b"/v2/x/blobs/..%2f..%2f..%2fetc%2fpasswd",
                   b"/../../etc/passwd", b"/v2/library/alpine/manifests/..%2f..%2findex.db"]
        for t in targets:
            with self.subTest(target=t):
                r = self.raw(req("GET", t))
                self.assertIsNotNone(r)
                self.assertGreaterEqual(r.status, 400, r)
                self.assertLess(r.status, 500, r)
                self.assertNotIn(b"root:", r.body)
                if r.status != 400 or "json" in r.get("content-type", ""):
                    self.assertErrorJSON(r)
        self.assertStillServing()

    def test_nul_bytes_in_the_path_are_refused(self):
        for t in (b"/v2/library/alp%00ine/manifests/3.19", b"/v2/library/alpine/manifests/3.19%00",
                  b"/v2/library/alpine/manifests/3.19%00.json",
                  b"/v2/library/alpine/blobs/sha256:%00" + b"a" * 63,
                  b"/v2/library%00/alpine/manifests/3.19"):
            with self.subTest(target=t):
                self.assertRawError(self.raw(req("GET", t)), (400, 404))
        # a raw NUL in the request line: the HTTP layer may answer 400 itself
        # or close; either way no crash
        r = self.raw(req("GET", b"/v2/library/alp\x00ine/manifests/3.19"))
        if r is not None:
            self.assertGreaterEqual(r.status, 400, r)
            self.assertLess(r.status, 500, r)
        self.assertStillServing()

    # -- sizes ---------------------------------------------------------------
    def test_oversized_header_is_refused(self):
        big = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
        r = self.raw(req("GET", "/v2/library/alpine/manifests/3.19", big))
        self.assertRawError(r, (431, 413, 400), json_required=False)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 200) for i in range(400))
        r = self.raw(req("GET", "/v2/library/alpine/manifests/3.19", many))
        self.assertRawError(r, (431, 413, 400), json_required=False)
        self.assertStillServing()

    def test_oversized_url_is_refused(self):
        for target in ("/v2/" + "a/" * 8192 + "manifests/1",
                       "/v2/library/alpine/manifests/3.19?x=" + "a" * 16384,
                       "/v2/library/alpine/manifests/" + "a" * 16384):
            with self.subTest(target=target[:50]):
                r = self.raw(req("GET", target))
                self.assertRawError(r, (414, 431, 400, 404), json_required=False)
        self.assertStillServing()

    def test_oversized_ns_parameter_is_refused(self):
        r = self.m.get("/v2/library/alpine/manifests/3.19?ns=" + "a" * 300, {"Accept": ACCEPT_ALL})
        self.assertErrorJSON(r, (400, 404))

    # -- methods -------------------------------------------------------------
    def test_write_methods_are_unsupported(self):
        d = self.alpine.layers[0]
        cases = [("POST", "/v2/library/alpine/blobs/uploads/"),
                 ("POST", "/v2/library/alpine/blobs/uploads/?digest=sha256:" + HEX64),
                 ("PUT", "/v2/library/alpine/manifests/3.19"),
                 ("PUT", "/v2/library/alpine/blobs/uploads/x?digest=sha256:" + HEX64),
                 ("PATCH", "/v2/library/alpine/blobs/uploads/x"),
                 ("DELETE", "/v2/library/alpine/manifests/" + self.alpine.digest),
                 ("DELETE", "/v2/library/alpine/blobs/" + d),
                 ("DELETE", "/v2/library/alpine/manifests/3.19"),
                 ("PUT", "/v2/docker.io/library/alpine/manifests/evil")]
        for method, path in cases:
            with self.subTest(method=method, path=path):
                r = self.m.get(path, {"Content-Type": "application/octet-stream"},
                               method=method, body=b"{}")
                self.assertErrorJSON(r, 405, "UNSUPPORTED")
        self.assertStillServing()

    def test_unknown_host_prefix_is_not_found(self):
        for path in ("/v2/evil.example.com/x/manifests/1",
                     "/v2/evil.example.com/library/alpine/manifests/3.19",
                     "/v2/10.0.0.1/x/manifests/1",
                     "/v2/evil.example.com/x/blobs/sha256:" + HEX64,
                     "/v2/localhost/x/manifests/1"):
            with self.subTest(path=path):
                r = self.m.get(path, {"Accept": ACCEPT_ALL})
                self.assertErrorJSON(r, 404)
        self.assertStillServing()

    # -- broken HTTP ---------------------------------------------------------
    def test_garbage_and_half_requests_do_not_hurt(self):
        for data in (b"GARBAGE\r\n\r\n", b"GET /v2/ HTTP/9.9\r\n\r\n", b"GET\r\n\r\n",
                     b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                     b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            with self.subTest(data=data):
                try:
                    r = self.raw(data, timeout=5)
                except socket.timeout:
                    r = None    # waiting for more bytes is fine too
                if r is not None:
                    # 505 is the right answer to HTTP/9.9
                    self.assertTrue(r.status < 500 or r.status == 505, r)
        # a TLS hello on the plain port, and requests cut short
        for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET /v2/",
                     b"GET /v2/library/alpine/manifests/3.19 HTTP/1.1\r\nHost: x\r\n"):
            for _ in range(10):
                s = socket.create_connection(("127.0.0.1", self.m.port), timeout=5)
                s.sendall(data)
                s.close()
        self.assertStillServing()

    def test_bad_range_header_is_ignored_or_refused(self):
        d = self.alpine.layers[0]
        path = "/v2/library/alpine/blobs/" + d
        for rng in ("bytes=zzz", "bytes=5-1", "bytes=-", "items=0-1", "bytes=0-1," * 300 + "0-1",
                    "bytes=99999999999999999999999-"):
            with self.subTest(range=rng[:40]):
                r = self.m.get(path, {"Range": rng})
                self.assertIn(r.status, (200, 206, 400, 416), r)
                if r.status == 200:
                    self.assertBlob(r, d)
        self.assertStillServing()

    def test_z_finally_the_mirror_still_serves_a_normal_pull(self):
        # named to run last (unittest sorts by name)
        self.assertStillServing()
        self.pull(self.m, self.alpine, name="library/alpine")


if __name__ == "__main__":
    unittest.main(verbosity=2)
