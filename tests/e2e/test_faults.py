"""Upstream faults, seen through the mirror.

quay.io is reached through lib.faultproxy (a TLS reverse proxy in front of
the quay registry, certificate from the world's CA), so each test can make
the upstream reset, truncate, corrupt, stall, throttle, answer 5xx/429, lie
about Content-Length, rewrite manifests, refuse connections or present a
certificate for another name.

The one invariant checked everywhere: a client gets either exactly the right
bytes (the fixture's, sha256 equal) or a clean failure — an OCI error JSON
with a 4xx/5xx status, or, for a body already streaming, an aborted
connection.  Never a complete-looking body (full Content-Length) with wrong
bytes.  After each fault, with the fault cleared, the same request must give
the right bytes (nothing poisoned), and once the mirror is stopped every file
under its storage's blobs/sha256/ must hash to its own name.

Each test starts its own mirror (fresh storage), so every object starts
uncached.  Retries are configured short (3 tries, 200 ms backoff) to keep the
file under its time budget.
"""

import hashlib
import re
import json
import http.client
import os
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.faultproxy import FaultProxy          # noqa: E402
from lib.images import ACCEPT_ALL, sha256_digest  # noqa: E402
from lib.mirror import CIDict                   # noqa: E402
from lib.world import WorldTestCase             # noqa: E402

PATIENCE = 8.0        # how long a client of these tests waits for an answer
RECOVER = 4.0         # after a fault is cleared: negative_ttl (2 s) + margin
MIRROR_EXTRA = {"retries": {"max": 3, "backoff": "200ms"}}


class Outcome:
    """What one client saw: status/headers (None if no answer), the body
    bytes that arrived, and how the transfer ended (error None = complete)."""

    def __init__(self, path):
        self.path = path
        self.status = None
        self.headers = CIDict()
        self.body = b""
        self.error = None
        self.elapsed = 0.0

    def json(self):
        return json.loads(self.body)

    @property
    def complete(self):
        return self.status is not None and self.error is None

    def __repr__(self):
        return "<Outcome %s status=%s error=%s len=%d sha=%s %.2fs headers=%r body=%r>" % (
            self.path, self.status, self.error, len(self.body),
            hashlib.sha256(self.body).hexdigest()[:12], self.elapsed,
            self.headers.items(), self.body[:200])


def fetch(m, path, headers=None, timeout=PATIENCE, streamed=False, method="GET"):
    """GET through the mirror on a fresh connection.  streamed=False reads
    the body in one read() like m.get; streamed=True reads 64 KiB at a time
    like a client piping a layer to disk.  Aborted transfers are recorded,
    not raised."""
    out = Outcome(path)
    t0 = time.monotonic()
    conn = m.connection(timeout)
    try:
        hdrs = {"User-Agent": "om-e2e-faults"}
        hdrs.update(headers or {})
        conn.request(method, path, headers=hdrs)
        r = conn.getresponse()
        out.status = r.status
        out.headers = CIDict(r.getheaders())
        buf = bytearray()
        try:
            if streamed:
                while True:
                    c = r.read(65536)
                    if not c:
                        break
                    buf += c
            else:
                buf += r.read()
        except http.client.IncompleteRead as e:
            buf += e.partial
            out.error = "incomplete read"
        out.body = bytes(buf)
        clen = out.headers.get("Content-Length")
        if out.error is None and clen is not None and method != "HEAD" and len(out.body) != int(clen):
            # http.client's read(amt) ends quietly at EOF: count it here
            out.error = "short body: %d of %s bytes" % (len(out.body), clen)
    except (OSError, http.client.HTTPException) as e:
        out.error = repr(e)
    finally:
        conn.close()
        out.elapsed = time.monotonic() - t0
    return out


def verify_storage(tc, m):
    """Stop m and check every blobs/sha256/*/* file hashes to its name.
    Returns the set of digests found."""
    m.stop(timeout=20)
    root = os.path.join(m.storage, "blobs", "sha256")
    found = set()
    if not os.path.isdir(root):
        return found
    for sub in sorted(os.listdir(root)):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            h = hashlib.sha256()
            with open(os.path.join(d, name), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            tc.assertEqual(h.hexdigest(), name, "storage file %s/%s does not hash to its name" % (sub, name))
            tc.assertTrue(name.startswith(sub), "storage file %s in directory %s" % (name, sub))
            found.add("sha256:" + name)
    return found


class Target:
    """One thing a client asks the mirror for, with its right bytes and the
    proxy path regex that catches the mirror's upstream requests for it."""

    def __init__(self, kind, path, want, rule_path, headers=None, digest=None):
        self.kind = kind
        self.streams = "blob" in kind   # a blob may be aborted mid-body; a manifest may not
        self.path = path
        self.want = want
        self.rule_path = rule_path
        self.headers = headers or {}
        self.digest = digest or sha256_digest(want)


class FaultTestCase(WorldTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        w = cls.w
        cert, key = w.ca.issue("faultproxy")
        wcert, wkey = w.ca.issue("faultproxy-wrong", sans=("wrong.invalid",))
        cls.proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key, wcert, wkey,
                               log_path=os.path.join(w.log_dir, "faultproxy.log")).start()
        cls.addClassCleanup(cls.proxy.stop)
        etcd, big = w.fx["etcd"], w.fx["big"]
        cls.etcd, cls.big = etcd, big
        cls.big_layer = big.layers[0]
        cls.t_tag = Target("manifest by tag", "/v2/quay.io/coreos/etcd/manifests/" + etcd.tag,
                           etcd.manifest_bytes, r"^/v2/coreos/etcd/manifests/",
                           {"Accept": ACCEPT_ALL}, etcd.digest)
        cls.t_digest = Target("manifest by digest", "/v2/quay.io/coreos/etcd/manifests/" + etcd.digest,
                              etcd.manifest_bytes, r"^/v2/coreos/etcd/manifests/",
                              {"Accept": ACCEPT_ALL}, etcd.digest)
        layer = etcd.layers[0]
        cls.t_blob = Target("blob", "/v2/quay.io/coreos/etcd/blobs/" + layer,
                            etcd.layer_bytes[layer], r"^/v2/coreos/etcd/blobs/")
        cls.t_big = Target("big blob", "/v2/quay.io/big/blob/blobs/" + cls.big_layer,
                           big.layer_bytes[cls.big_layer], r"^/v2/big/blob/blobs/")

    def setUp(self):
        super().setUp()
        self.proxy.clear()
        self.proxy.set_cert("good")
        self.proxy.accept()
        self.proxy.clear_log()
        self.addCleanup(self.proxy.clear)   # also releases stalled responses

    def start_mirror(self):
        m = self.mirror(upstream_url={"quay": self.proxy.url}, extra=MIRROR_EXTRA)
        self.addCleanup(verify_storage, self, m)
        return m

    # -- the invariant ---------------------------------------------------
    def check_clean(self, out, target, allow_no_answer=False):
        """'ok' (right bytes) or 'failed' (clean failure); fails the test on
        anything else."""
        if out.status is None:
            if allow_no_answer:
                return "failed"
            self.fail("%s: the mirror gave no HTTP answer at all: %r" % (target.kind, out))
        if out.status in (200, 206):
            if out.error is not None:
                self.assertTrue(target.streams, "%s: a manifest answer cut short: %r" % (target.kind, out))
                return "failed"   # aborted mid-body: clean for a streaming client
            sha = hashlib.sha256(out.body).hexdigest()
            self.assertEqual(sha, hashlib.sha256(target.want).hexdigest(),
                             "%s: COMPLETE-LOOKING BODY WITH WRONG BYTES: %r" % (target.kind, out))
            dcd = out.headers.get("Docker-Content-Digest")
            if dcd is not None:
                self.assertEqual(dcd, target.digest, "%s: wrong Docker-Content-Digest: %r" % (target.kind, out))
            return "ok"
        self.assertGreaterEqual(out.status, 400, "%s: unexpected status: %r" % (target.kind, out))
        self.assertIsNone(out.error, "%s: error answer cut short: %r" % (target.kind, out))
        self.assertErrorJSON(out)
        return "failed"

    def expect_ok_soon(self, m, target, timeout=RECOVER, streamed=False):
        """The right bytes within `timeout` (a negative cache may hold a
        failure for negative_ttl); returns the last Outcome."""
        deadline = time.monotonic() + timeout
        while True:
            out = fetch(m, target.path, target.headers, streamed=streamed)
            if self.check_clean(out, target) == "ok":
                return out
            if time.monotonic() > deadline:
                self.fail("%s still failing %.0fs after the fault was cleared: %r" % (
                    target.kind, timeout, out))
            time.sleep(0.3)

    def get_both(self, m, target, timeout=PATIENCE):
        """A whole-body client and a streaming client at the same time
        (blobs: two readers of one in-flight download)."""
        res = {}

        def go(streamed):
            res[streamed] = fetch(m, target.path, target.headers, timeout, streamed=streamed)
        ts = [threading.Thread(target=go, args=(s,)) for s in (False, True)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout + 10)
        return res[False], res[True]


class TestFaultMatrix(FaultTestCase):
    """Every fault against every kind of request: right bytes or a clean
    failure, then right bytes once the fault is gone."""

    def faults(self, target):
        n = len(target.want)
        third = max(1, n // 3)
        last = n - 1
        return [
            # name, rule, expectation: ok | fail | either
            ("reset once", dict(action="reset", times=1, after=third), "ok"),
            ("truncate once", dict(action="truncate", times=1, after=third), "either"),
            ("corrupt last byte once", dict(action="corrupt", times=1, offset=last), "either"),
            ("corrupt middle byte always", dict(action="corrupt", offset=third), "fail"),
            ("stall 1s once", dict(action="stall", times=1, after=third, seconds=1), "ok"),
            ("throttle 256KB/s", dict(action="throttle", rate=256 * 1024), "ok"),
            ("503 twice", dict(action="status", status=503, times=2), "ok"),
            ("502 once", dict(action="status", status=502, times=1), "ok"),
            ("500 always", dict(action="status", status=500), "fail"),
            ("429 once", dict(action="status", status=429, retry_after=1, times=1), "ok"),
            ("content-length +100 always", dict(action="badlength", delta=100), "either"),
            ("content-length -100 always", dict(action="badlength", delta=-min(100, n - 1)), "either"),
            ("drop once", dict(action="drop", times=1), "ok"),
        ] + ([("rewrite always", dict(action="rewrite", append="\n"), "fail")]
             if target.kind != "blob" else [])

    def run_matrix(self, target):
        for name, rule, expect in self.faults(target):
            with self.subTest(fault=name, target=target.kind):
                self.proxy.clear()
                self.proxy.clear_log()
                m = self.start_mirror()
                rid = self.proxy.add_rule(path=target.rule_path, **rule)
                if target.kind == "blob":
                    outs = self.get_both(m, target)
                else:
                    outs = (fetch(m, target.path, target.headers),)
                results = [self.check_clean(o, target) for o in outs]
                applied = self.proxy.applied(rid)
                sys.stderr.write("  %-28s %-18s → %s\n" % (name, target.kind, "; ".join(
                    "%s (%s %s, %d bytes, %.2fs)" % (res, o.status, o.error or "complete", len(o.body), o.elapsed)
                    for res, o in zip(results, outs))))
                self.assertGreater(applied, 0, "the fault %s never fired (the mirror did not ask "
                                   "the upstream the way this test expects?): %r" % (
                                       name, self.proxy.requests()))
                if expect == "ok":
                    self.assertEqual(results, ["ok"] * len(outs),
                                     "%s should be absorbed by the mirror: %r" % (name, outs))
                elif expect == "fail":
                    self.assertEqual(results, ["failed"] * len(outs),
                                     "%s can never give the right bytes: %r" % (name, outs))
                self.proxy.clear()
                self.expect_ok_soon(m, target)
                verify_storage(self, m)

    def test_every_fault_on_a_manifest_by_tag_gives_right_bytes_or_a_clean_failure(self):
        self.run_matrix(self.t_tag)

    def test_every_fault_on_a_manifest_by_digest_gives_right_bytes_or_a_clean_failure(self):
        self.run_matrix(self.t_digest)

    def test_every_fault_on_a_blob_gives_right_bytes_or_a_clean_failure(self):
        self.run_matrix(self.t_blob)


class TestBlobFaults(FaultTestCase):
    def test_a_blob_reset_mid_body_once_is_resumed_with_range_and_the_client_gets_the_right_bytes(self):
        m = self.start_mirror()
        t = self.t_big
        rid = self.proxy.add_rule("reset", path=t.rule_path, times=1, after=4 << 20)
        out = fetch(m, t.path, streamed=True, timeout=30)
        self.assertEqual(self.check_clean(out, t), "ok", out)
        self.assertEqual(self.proxy.applied(rid), 1)
        gets = self.proxy.requests(path_re=t.rule_path, method="GET")
        self.assertGreaterEqual(len(gets), 2, gets)
        self.assertIsNone(gets[0]["range"], gets)
        ranged = [g["range"] for g in gets[1:] if g["range"]]
        self.assertTrue(ranged, "the mirror restarted the download instead of resuming with Range: %r" % gets)
        first = int(ranged[0].split("=", 1)[1].split("-", 1)[0])
        self.assertGreater(first, 0, ranged)
        self.assertLessEqual(first, 4 << 20, ranged)

    def test_a_corrupted_blob_is_never_served_whole_and_a_later_get_gets_the_right_bytes(self):
        m = self.start_mirror()
        t = self.t_big
        self.proxy.add_rule("corrupt", path=t.rule_path, offset=20 << 20)
        a, b = self.get_both(m, t, timeout=30)
        self.assertEqual(self.check_clean(a, t), "failed", a)
        self.assertEqual(self.check_clean(b, t), "failed", b)
        self.proxy.clear()
        self.proxy.clear_log()
        self.expect_ok_soon(m, t, streamed=True)
        self.assertGreaterEqual(len(self.proxy.requests(path_re=t.rule_path, method="GET")), 1,
                                "the corrupt blob was served from somewhere other than the upstream")

    def test_a_corrupted_last_byte_is_never_served_whole(self):
        m = self.start_mirror()
        t = self.t_big
        self.proxy.add_rule("corrupt", path=t.rule_path, offset=len(t.want) - 1)
        out = fetch(m, t.path, streamed=True, timeout=30)
        self.assertEqual(self.check_clean(out, t), "failed", out)
        self.assertGreater(len(out.body), 0, "expected the blob to stream before the digest check: %r" % out)

    def test_a_truncated_blob_is_resumed_or_fails_cleanly(self):
        m = self.start_mirror()
        t = self.t_big
        rid = self.proxy.add_rule("truncate", path=t.rule_path, times=1, after=8 << 20)
        a, b = self.get_both(m, t, timeout=30)
        self.check_clean(a, t)
        self.check_clean(b, t)
        self.assertEqual(self.proxy.applied(rid), 1)
        self.proxy.clear()
        self.expect_ok_soon(m, t, streamed=True)

    def test_503_twice_then_ok_is_retried_into_a_success(self):
        m = self.start_mirror()
        for t in (self.t_blob, self.t_tag):
            with self.subTest(target=t.kind):
                self.proxy.clear()
                self.proxy.clear_log()
                rid = self.proxy.add_rule("status", path=t.rule_path, times=2, status=503)
                out = fetch(m, t.path, t.headers)
                self.assertEqual(self.check_clean(out, t), "ok", out)
                self.assertEqual(self.proxy.applied(rid), 2)
                self.assertGreaterEqual(len(self.proxy.requests(path_re=t.rule_path)), 3)

    def test_429_with_retry_after_is_honoured_and_then_succeeds(self):
        m = self.start_mirror()
        for t in (self.t_blob, self.t_tag):
            with self.subTest(target=t.kind):
                self.proxy.clear()
                self.proxy.clear_log()
                rid = self.proxy.add_rule("status", path=t.rule_path, times=1, status=429, retry_after=1)
                out = fetch(m, t.path, t.headers)
                self.assertEqual(self.check_clean(out, t), "ok", out)
                self.assertEqual(self.proxy.applied(rid), 1)
                self.assertGreaterEqual(out.elapsed, 0.95, "answered before Retry-After: %r" % out)
                log = self.proxy.requests(path_re=t.rule_path)
                i = next(i for i, e in enumerate(log) if e["rule"] == rid and e["status"] == 429)
                self.assertGreater(len(log), i + 1, log)
                gap = log[i + 1]["t"] - log[i]["t"]
                self.assertGreaterEqual(gap, 0.95, "retried %.2fs after a 429 with Retry-After: 1" % gap)


class TestNoUpstreamStarvesTheRest(FaultTestCase):
    """Issue 10, 2: a slow upstream slows only its own names.  quay.io sits
    behind the fault proxy; docker.io does not.  max_downloads 16 is what
    made the old single pool 8 job threads; the defaults give every
    upstream its own lane of jobs_per_upstream (16) jobs."""

    EXTRA = dict(MIRROR_EXTRA, limits={"max_downloads": 16})

    def hang_quay_manifests(self, m, n):
        """n cold manifest requests to quay.io whose answers never come
        (the proxy holds them); the clients give up after 2 s."""
        self.proxy.add_rule("hang", path=r"/manifests/", seconds=60)
        ts = [threading.Thread(target=fetch, args=(m, "/v2/quay.io/coreos/etcd/manifests/hung-%d" % i,
                                                   {"Accept": ACCEPT_ALL}, 2))
              for i in range(n)]
        for t in ts:
            t.start()
        return ts

    def test_a_hung_upstream_fills_only_its_own_lane(self):
        m = self.mirror(upstream_url={"quay": self.proxy.url}, extra=self.EXTRA)
        alpine = self.w.fx["alpine"]
        hub_tag = Target("hub tag", "/v2/docker.io/library/alpine/manifests/3.19",
                         alpine.manifest_bytes, "", {"Accept": ACCEPT_ALL}, alpine.digest)
        self.assertEqual(self.check_clean(fetch(m, hub_tag.path, hub_tag.headers), hub_tag), "ok")
        warmed = time.monotonic()
        ts = self.hang_quay_manifests(m, 24)
        time.sleep(max(0.5, warmed + 2.5 - time.monotonic()))   # tag_ttl 2 s: due now
        # docker.io's revalidation and a cold docker.io image go on at once.
        out = fetch(m, hub_tag.path, hub_tag.headers, timeout=8)
        self.assertEqual(self.check_clean(out, hub_tag), "ok", out)
        self.assertLess(out.elapsed, 5, "docker.io waited behind a hung quay.io: %r" % out)
        app = self.w.fx["app"]
        cold = Target("hub cold", "/v2/docker.io/team/app/manifests/1", app.manifest_bytes, "",
                      {"Accept": ACCEPT_ALL}, app.digest)
        out = fetch(m, cold.path, cold.headers, timeout=8)
        self.assertEqual(self.check_clean(out, cold), "ok", out)
        self.assertLess(out.elapsed, 5, out)
        # /healthz and /metrics name the saturated upstream.
        r = m.get("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body.startswith(b"degraded\n"), r.body)
        self.assertIn(b"upstream quay.io saturated", r.body)
        self.assertNotIn(b"docker.io", r.body)
        metrics = m.get("/metrics").body.decode()
        self.assertIn('ocimirror_upstream_saturated{upstream="quay.io"} 1', metrics)
        self.assertIn('ocimirror_upstream_saturated{upstream="docker.io"} 0', metrics)
        self.assertIn('ocimirror_jobs_running{lane="quay.io"} 16', metrics)
        self.proxy.clear()                     # the hung answers come now
        for t in ts:
            t.join(10)
        deadline = time.monotonic() + 10
        while m.get("/healthz").body != b"ok\n" and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(m.get("/healthz").body, b"ok\n")

    def test_a_cached_tag_of_a_saturated_upstream_is_served_stale_at_once(self):
        m = self.mirror(upstream_url={"quay": self.proxy.url}, extra=self.EXTRA)
        self.assertEqual(self.check_clean(fetch(m, self.t_tag.path, self.t_tag.headers), self.t_tag), "ok")
        warmed = time.monotonic()
        ts = self.hang_quay_manifests(m, 24)
        time.sleep(max(0.5, warmed + 2.5 - time.monotonic()))
        out = fetch(m, self.t_tag.path, self.t_tag.headers, timeout=8)
        self.assertEqual(self.check_clean(out, self.t_tag), "ok", out)
        self.assertLess(out.elapsed, 3, "the revalidation queued behind the hung jobs: %r" % out)
        self.assertIn("Warning", out.headers, out)
        self.proxy.clear()
        for t in ts:
            t.join(10)

    def test_a_revalidation_that_does_not_answer_is_served_stale_after_revalidate_timeout(self):
        extra = dict(MIRROR_EXTRA)
        extra["limits"] = {"revalidate_timeout": "1s"}
        m = self.mirror(upstream_url={"quay": self.proxy.url}, extra=extra)
        self.assertEqual(self.check_clean(fetch(m, self.t_tag.path, self.t_tag.headers), self.t_tag), "ok")
        time.sleep(2.5)
        self.proxy.add_rule("hang", path=r"/manifests/", method="HEAD", seconds=60)
        out = fetch(m, self.t_tag.path, self.t_tag.headers, timeout=20)
        self.assertEqual(self.check_clean(out, self.t_tag), "ok", out)
        self.assertIn("Warning", out.headers, out)
        self.assertLess(out.elapsed, 8, "revalidate_timeout 1s: %r" % out)

    def test_downloads_nobody_reads_do_not_hold_the_slots(self):
        """Clients that hang up leave their downloads running; those must not
        keep a client that waits from getting a slot."""
        m = self.mirror(upstream_url={"quay": self.proxy.url},
                        extra=dict(MIRROR_EXTRA, limits={"max_downloads": 4}))
        self.proxy.add_rule("throttle", path=self.t_big.rule_path, rate=256 * 1024)
        # Four clients start four different cold blobs (each download its
        # own slot, all four slots), throttled so they run for a minute, and
        # hang up after a second.
        big = self.big
        paths = ["/v2/quay.io/big/blob/blobs/" + big.layers[0]]
        for d in self.etcd.layers:
            paths.append("/v2/quay.io/coreos/etcd/blobs/" + d)
        self.proxy.add_rule("throttle", path=r"^/v2/coreos/etcd/blobs/", rate=2048)
        def hang_up_after(path, seconds):
            conn = m.connection(10)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                until = time.monotonic() + seconds
                while time.monotonic() < until and r.read(4096):
                    pass
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()   # unread bytes in flight: the kernel answers RST
        ts = [threading.Thread(target=hang_up_after, args=(p, 1.0)) for p in paths[:4]]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        time.sleep(1.5)   # the downloads notice nobody reads (a tick a second)
        alpine = self.w.fx["alpine"]
        d = alpine.layers[-1]
        t = Target("hub blob", "/v2/docker.io/library/alpine/blobs/" + d, alpine.layer_bytes[d], "")
        out = fetch(m, t.path, timeout=8)
        self.assertEqual(self.check_clean(out, t), "ok", out)
        self.assertLess(out.elapsed, 4, "a waiting client's download queued behind abandoned ones: %r" % out)
        # (docker.io got a slot: quay.io may hold 3 of the 4.)  Once the
        # mirror sees the clients gone (its next writes to them fail), their
        # downloads leave the slots and finish in the background.
        deadline = time.monotonic() + 20
        while True:
            metrics = m.get("/metrics").body.decode()
            if re.search(r"ocimirror_downloads_backgrounded_total [3-9]", metrics) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertRegex(metrics, r"ocimirror_downloads_backgrounded_total [3-9]")
        self.assertIn('ocimirror_upstream_downloads_active{upstream="quay.io"} 0', metrics)
        # and a client that waits gets one of quay.io's own slots again
        cfg = [d for d in self.etcd.blobs if d not in self.etcd.layers][0]
        t = Target("etcd config", "/v2/quay.io/coreos/etcd/blobs/" + cfg, self.etcd.layer_bytes[cfg], "")
        out = fetch(m, t.path, timeout=8)
        self.assertEqual(self.check_clean(out, t), "ok", out)
        self.assertLess(out.elapsed, 5, out)
        self.proxy.clear()


class TestUpstreamDown(FaultTestCase):
    def warm_etcd(self, m):
        """Cache etcd (manifest by tag, every blob) through the proxy."""
        self.assertEqual(self.check_clean(fetch(m, self.t_tag.path, self.t_tag.headers), self.t_tag), "ok")
        for d in self.etcd.blobs:
            t = Target("etcd blob", "/v2/quay.io/coreos/etcd/blobs/" + d, self.etcd.layer_bytes[d], "")
            self.assertEqual(self.check_clean(fetch(m, t.path), t), "ok")
        return time.monotonic()

    def cached_etcd_targets(self):
        yield self.t_digest
        for d in self.etcd.blobs:
            yield Target("etcd blob", "/v2/quay.io/coreos/etcd/blobs/" + d, self.etcd.layer_bytes[d], "")

    def test_an_upstream_answering_500_always_gives_a_clean_error_and_cached_images_are_still_served(self):
        m = self.start_mirror()
        self.warm_etcd(m)
        self.proxy.add_rule("status", path="", status=500)
        big_tag = Target("big by tag", "/v2/quay.io/big/blob/manifests/1", self.big.manifest_bytes, "",
                         {"Accept": ACCEPT_ALL}, self.big.digest)
        big_blob = Target("big blob", self.t_big.path, self.t_big.want, "")
        for t in (big_tag, big_blob):
            out = fetch(m, t.path, t.headers)
            self.assertEqual(self.check_clean(out, t), "failed", out)
            self.assertTrue(out.status >= 500 or out.status == 404, out)
        for t in self.cached_etcd_targets():
            out = fetch(m, t.path, t.headers)
            self.assertEqual(self.check_clean(out, t), "ok", out)
        alpine = self.w.fx["alpine"]
        t = Target("hub image", "/v2/docker.io/library/alpine/manifests/3.19", alpine.manifest_bytes, "",
                   {"Accept": ACCEPT_ALL}, alpine.digest)
        self.assertEqual(self.check_clean(fetch(m, t.path, t.headers), t), "ok")

    def test_a_crowd_on_a_blob_of_an_upstream_answering_503_costs_it_one_round_of_retries(self):
        m = self.start_mirror()
        t = self.t_blob
        self.proxy.add_rule("status", path=t.rule_path, status=503)
        methods = ["HEAD" if i % 2 else "GET" for i in range(40)]
        with ThreadPoolExecutor(len(methods)) as ex:
            outs = list(ex.map(lambda meth: fetch(m, t.path, method=meth), methods))
        for meth, out in zip(methods, outs):
            self.assertEqual(out.status, 503, "%s: %r" % (meth, out))
            if meth == "GET":
                self.assertEqual(self.check_clean(out, t), "failed", out)
        tries = MIRROR_EXTRA["retries"]["max"]
        for meth in ("GET", "HEAD"):
            n = len(self.proxy.requests(path_re=t.rule_path, method=meth))
            self.assertGreaterEqual(n, 1, meth)
            self.assertLessEqual(n, tries, "20 %ss of one blob: one request upstream with its "
                                 "%d tries, not one per client" % (meth, tries))
        self.proxy.clear()
        self.expect_ok_soon(m, t)

    def test_a_tag_past_its_ttl_is_served_stale_with_a_warning_while_the_upstream_answers_500(self):
        m = self.start_mirror()
        warmed = self.warm_etcd(m)
        self.proxy.add_rule("status", path="", status=500)
        time.sleep(max(0.0, warmed + 2.5 - time.monotonic()))   # tag_ttl is 2 s
        self.proxy.clear_log()
        out = fetch(m, self.t_tag.path, self.t_tag.headers)
        self.assertEqual(self.check_clean(out, self.t_tag), "ok", out)
        self.assertTrue(self.proxy.requests(path_re=r"/manifests/"),
                        "the mirror did not check the expired tag with the upstream")
        self.assertIn("Warning", out.headers, "a stale answer should say so in a Warning header: %r" % out)

    def test_wrong_manifest_bytes_for_a_digest_request_are_an_error_and_not_cached(self):
        m = self.start_mirror()
        t = self.t_digest
        rid = self.proxy.add_rule("rewrite", path=t.rule_path, append="\n")
        out = fetch(m, t.path, t.headers)
        self.assertEqual(self.check_clean(out, t), "failed", out)
        self.assertGreater(self.proxy.applied(rid), 0)
        bad = sha256_digest(self.etcd.manifest_bytes + b"\n")
        self.proxy.clear()
        self.proxy.clear_log()
        self.expect_ok_soon(m, t)
        self.assertTrue(self.proxy.requests(path_re=t.rule_path, method="GET"),
                        "the next request did not go upstream: was the bad answer cached?")
        found = verify_storage(self, m)
        self.assertNotIn(bad, found)

    def test_a_stalled_upstream_gives_a_bounded_failure_and_others_are_served_meanwhile(self):
        m = self.start_mirror()
        self.proxy.add_rule("stall", path=self.t_big.rule_path, after=1 << 20, seconds=60)
        self.proxy.add_rule("stall", path=r"^/v2/big/blob/manifests/", before_headers=True, seconds=60)
        stalled = {}

        def slow(key, path, headers):
            stalled[key] = fetch(m, path, headers, timeout=3, streamed=True)
        ts = [threading.Thread(target=slow, args=("blob", self.t_big.path, {})),
              threading.Thread(target=slow, args=("manifest", "/v2/quay.io/big/blob/manifests/1",
                                                  {"Accept": ACCEPT_ALL}))]
        t0 = time.monotonic()
        for th in ts:
            th.start()
        time.sleep(0.5)
        # meanwhile: uncached etcd through the same (stalling) upstream, and a hub image
        alpine = self.w.fx["alpine"]
        others = [self.t_tag, self.t_blob,
                  Target("hub image", "/v2/docker.io/library/alpine/manifests/3.19", alpine.manifest_bytes, "",
                         {"Accept": ACCEPT_ALL}, alpine.digest)]
        for t in others:
            out = fetch(m, t.path, t.headers, timeout=5)
            self.assertEqual(self.check_clean(out, t), "ok", "not served during a stall elsewhere: %r" % out)
            self.assertLess(out.elapsed, 5)
        for th in ts:
            th.join(15)
        self.assertLess(time.monotonic() - t0, 15)
        big_manifest = Target("big by tag", "", self.big.manifest_bytes, "", {}, self.big.digest)
        for key, t in (("blob", self.t_big), ("manifest", big_manifest)):
            out = stalled[key]
            self.assertEqual(self.check_clean(out, t, allow_no_answer=True), "failed",
                             "a 60 s stall cannot finish within 3 s: %r" % out)
            self.assertLess(out.elapsed, 5, out)
        self.proxy.clear()   # releases the stalled responses
        self.expect_ok_soon(m, self.t_big, timeout=20, streamed=True)

    def test_refused_connections_give_a_clean_error(self):
        m = self.start_mirror()
        self.proxy.refuse()
        for t in (self.t_tag, self.t_digest, self.t_blob):
            out = fetch(m, t.path, t.headers)
            self.assertEqual(self.check_clean(out, t), "failed", out)
            self.assertLess(out.elapsed, PATIENCE)
        self.proxy.accept()
        for t in (self.t_tag, self.t_digest, self.t_blob):
            self.expect_ok_soon(m, t)

    def test_a_certificate_for_the_wrong_name_gives_a_clean_error_and_caches_nothing(self):
        m = self.start_mirror()
        self.proxy.set_cert("wrong")
        for t in (self.t_tag, self.t_digest, self.t_blob):
            out = fetch(m, t.path, t.headers)
            self.assertEqual(self.check_clean(out, t), "failed", out)
        self.assertEqual(self.proxy.requests(), [],
                         "a request went through although TLS verification must fail")
        root = os.path.join(m.storage, "blobs", "sha256")
        files = [f for _, _, fs in os.walk(root) for f in fs] if os.path.isdir(root) else []
        self.assertEqual(files, [], "something was cached from an unverified upstream")
        self.proxy.set_cert("good")
        for t in (self.t_tag, self.t_digest, self.t_blob):
            self.expect_ok_soon(m, t)


if __name__ == "__main__":
    unittest.main(verbosity=2)
