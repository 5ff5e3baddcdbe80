"""Per-client limits of a public mirror (issue 12, part 3), through the real
ocimirror binary: requests_per_second with its burst, concurrent downloads,
bytes per day and upstream fetches per minute, each answered 429
TOOMANYREQUESTS with Retry-After and an OCI error naming the limit, while
another client is served; limits.trusted_proxies: X-Forwarded-For believed
only from a trusted peer; what /metrics, the log and /api/v1/clients show.

Clients are told apart by their source address: every test client binds
127.0.0.2, 127.0.0.3, ... (Linux routes all of 127/8 to lo), while the
harness's own readiness probes come from 127.0.0.1.  The upstream is a
scripted fake registry (lib.fakeupstream, HTTPS from a lib.pki CA) that
records every request, so "zero upstream requests for a refused name" is
counted where it happens.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_public_limits.py
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.fakeupstream import FakeRegistry, basic_header  # noqa: E402
from lib.mirror import Mirror                 # noqa: E402
from lib.pki import CA                        # noqa: E402
from lib.world import artifacts_dir, dump_log  # noqa: E402

UPSTREAM = "fakereg.test"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"

_mirrors = []


def _stop_all():
    for m in _mirrors:
        try:
            m.kill9()
        except Exception as e:
            sys.stderr.write("stopping a mirror: %r\n" % (e,))


atexit.register(_stop_all)


def call(m, path, src="127.0.0.2", headers=None, method="GET", read=True):
    """One request from source address src.  Returns (status, headers, body)
    or, with read=False, (response, connection) with the body unread."""
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=15, source_address=(src, 0))
    h = {"Accept": ACCEPT}
    h.update(headers or {})
    c.request(method, path, headers=h)
    r = c.getresponse()
    if not read:
        return r, c
    body = r.read()
    c.close()
    return r.status, r.headers, body


class PublicLimitsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        cls.dir = tempfile.mkdtemp(prefix="om-limits-")
        cls.ca = CA(os.path.join(cls.dir, "pki"))
        cls.leaf = cls.ca.issue("fakes")
        cls.log_dir = os.path.join(artifacts_dir(), "w%d-1" % os.getpid())
        os.makedirs(cls.log_dir, exist_ok=True)
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("OM_E2E_KEEP") != "1":
            shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    # -- helpers -----------------------------------------------------------
    def registry(self):
        reg = FakeRegistry(tls=self.leaf)
        reg.start()
        self.addCleanup(reg.stop)
        return reg

    def mirror(self, reg, limits, extra=None):
        type(self).n += 1
        work = os.path.join(self.dir, "m%d" % self.n)
        cfg = {
            "storage": {"path": os.path.join(work, "storage")},
            "upstreams": [{"name": UPSTREAM, "url": reg.url, "ca_file": self.ca.ca_file}],
            "search_order": [UPSTREAM],
            "tag_ttl": "1h",
            "retries": {"max": 1, "backoff": "100ms"},
            "log": {"level": "info", "format": "json"},
            "limits": limits,
        }
        cfg.update(extra or {})
        m = Mirror(cfg, work, os.path.join(self.log_dir, "%s-%d.log" % (self._testMethodName, self.n)),
                   ca_file=self.ca.ca_file)
        self.addCleanup(self._stop_mirror, m)
        _mirrors.append(m)
        m.start()
        return m

    def _stop_mirror(self, m):
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            dump_log(m, self.id())
        m.stop(timeout=15)

    def assertLimited(self, resp, limit, client):
        status, headers, body = resp
        self.assertEqual(status, 429, body)
        retry = headers.get("Retry-After")
        self.assertIsNotNone(retry, "429 without Retry-After")
        self.assertRegex(retry, r"^[1-9][0-9]*$")
        err = json.loads(body)["errors"][0]
        self.assertEqual(err["code"], "TOOMANYREQUESTS")
        self.assertIn("limit %s exceeded" % limit, err["message"])
        self.assertIn(client, err["message"])
        return int(retry)

    def rejections(self, m, label):
        text = m.get("/metrics").text
        mt = re.search(r'^ocimirror_limit_rejections_total\{limit="%s"\} (\d+)$' % label, text, re.M)
        self.assertIsNotNone(mt, "no rejections metric for %s" % label)
        return int(mt.group(1))

    def log_text(self, m):
        with open(m.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, m, text):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and text not in self.log_text(m):
            time.sleep(0.05)
        self.assertIn(text, self.log_text(m))

    def log_records(self, m):
        out = []
        with open(m.log_path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def manifest(self, repo, tag="1"):
        return "/v2/%s/%s/manifests/%s" % (UPSTREAM, repo, tag)

    def blob(self, repo, digest):
        return "/v2/%s/%s/blobs/%s" % (UPSTREAM, repo, digest)

    # -- tests -------------------------------------------------------------
    def test_a_burst_is_refused_with_retry_after_while_another_address_is_served(self):
        reg = self.registry()
        m = self.mirror(reg, {"per_client": {"requests_per_second": 1, "burst": 3}})
        for _ in range(3):
            self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)
        retry = self.assertLimited(call(m, "/v2/", src="127.0.0.2"), "requests_per_second",
                                   "client 127.0.0.2")
        self.assertLessEqual(retry, 2)
        for _ in range(5):  # more refusals in the same minute: one log line
            self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 429)
        self.assertEqual(call(m, "/v2/", src="127.0.0.3")[0], 200)
        self.assertGreaterEqual(self.rejections(m, "requests_per_second"), 6)
        clients = m.get("/api/v1/clients").json()
        limited = {c["client"]: c for c in clients["limited"]}
        self.assertIn("127.0.0.2", limited)
        self.assertEqual(limited["127.0.0.2"]["limited_by"], "requests_per_second")
        self.assertNotIn("127.0.0.3", limited)
        by_req = {c["client"]: c["requests_24h"] for c in clients["top_by_requests"]}
        self.assertGreaterEqual(by_req.get("127.0.0.2", 0), 9)
        deadline = time.monotonic() + 10
        while True:  # request lines are written at completion: a bounded wait
            recs = self.log_records(m)
            reqs = [r for r in recs if r.get("msg") == "request" and r.get("status") == "429"]
            if len(reqs) >= 6 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        notes = [r for r in recs if "client limited" in str(r.get("msg", "")) and
                 r.get("client") == "127.0.0.2"]
        self.assertEqual(len(notes), 1, notes)
        self.assertEqual(notes[0].get("limit"), "requests_per_second")
        self.assertTrue(len(reqs) >= 6 and all(r.get("client") == "127.0.0.2" for r in reqs), reqs[:3])
        # the bucket refills: after Retry-After the client is served again
        time.sleep(retry)
        self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)

    def test_forwarded_for_is_believed_only_from_a_trusted_proxy(self):
        reg = self.registry()
        m = self.mirror(reg, {"trusted_proxies": ["127.0.0.4/32", "10.0.0.0/8"],
                              "per_client": {"requests_per_second": 1, "burst": 2}})
        # untrusted peer: a new spoofed address each time changes nothing
        for i in range(2):
            s = call(m, "/v2/", src="127.0.0.2", headers={"X-Forwarded-For": "198.51.100.%d" % i})
            self.assertEqual(s[0], 200)
        self.assertLimited(call(m, "/v2/", src="127.0.0.2",
                                headers={"X-Forwarded-For": "198.51.100.9",
                                         "X-Real-IP": "198.51.100.10"}),
                           "requests_per_second", "client 127.0.0.2")
        # trusted peer: the rightmost untrusted hop is the client
        for _ in range(2):
            s = call(m, "/v2/", src="127.0.0.4",
                     headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.1.2.3"})
            self.assertEqual(s[0], 200)
        self.assertLimited(call(m, "/v2/", src="127.0.0.4",
                                headers={"X-Forwarded-For": "198.51.100.1"}),
                           "requests_per_second", "client 198.51.100.1")
        # another forwarded client through the same proxy is served
        self.assertEqual(call(m, "/v2/", src="127.0.0.4",
                              headers={"X-Forwarded-For": "198.51.100.2"})[0], 200)
        self.assertEqual(call(m, "/v2/", src="127.0.0.4",
                              headers={"X-Real-IP": "198.51.100.3"})[0], 200)
        # a malformed header from the proxy: the proxy itself is the client
        self.assertEqual(call(m, "/v2/", src="127.0.0.4",
                              headers={"X-Forwarded-For": "not-an-address"})[0], 200)
        # the request line is written when the request completes, which may
        # be just after the client has its answer: a bounded wait
        want = {"127.0.0.2", "198.51.100.1", "198.51.100.2", "198.51.100.3", "127.0.0.4"}
        deadline = time.monotonic() + 10
        while True:
            seen = {r.get("client") for r in self.log_records(m) if r.get("msg") == "request"}
            if want <= seen or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(want <= seen, seen)
        self.assertFalse(seen & {"198.51.100.0", "198.51.100.9", "198.51.100.10", "6.6.6.6",
                                 "10.1.2.3"}, seen)

    def test_concurrent_downloads_of_one_client_are_limited(self):
        reg = self.registry()
        img = reg.add_image("team/big", "1", layer_size=48 << 20)
        m = self.mirror(reg, {"per_client": {"downloads": 1}})
        # warm the cache from the harness address
        self.assertEqual(call(m, self.manifest("team/big"), src="127.0.0.1")[0], 200)
        self.assertEqual(call(m, self.blob("team/big", img.layer_digest), src="127.0.0.1")[0], 200)
        # one download held open (body not read: it cannot finish)
        r, conn = call(m, self.blob("team/big", img.layer_digest), src="127.0.0.2", read=False)
        try:
            self.assertEqual(r.status, 200)
            self.assertLimited(call(m, self.blob("team/big", img.config_digest), src="127.0.0.2"),
                               "downloads", "client 127.0.0.2")
            # not a download: a manifest and a HEAD are still answered
            self.assertEqual(call(m, self.manifest("team/big"), src="127.0.0.2")[0], 200)
            self.assertEqual(call(m, self.blob("team/big", img.config_digest), src="127.0.0.2",
                                  method="HEAD")[0], 200)
            self.assertEqual(call(m, self.blob("team/big", img.config_digest),
                                  src="127.0.0.3")[0], 200)
        finally:
            conn.close()
        # the slot comes back when that download ends
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            status = call(m, self.blob("team/big", img.config_digest), src="127.0.0.2")[0]
            if status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200)
        self.assertGreaterEqual(self.rejections(m, "downloads"), 1)

    def test_bytes_per_day_refuse_the_next_blob_but_not_manifests(self):
        reg = self.registry()
        img = reg.add_image("team/app", "1", layer_size=200000)
        m = self.mirror(reg, {"per_client": {"bytes_per_day": "100KiB"}})
        self.assertEqual(call(m, self.manifest("team/app"), src="127.0.0.2")[0], 200)
        s = call(m, self.blob("team/app", img.layer_digest), src="127.0.0.2")
        self.assertEqual(s[0], 200)
        self.assertEqual(len(s[2]), 200000)
        # the bytes are counted when the request completes: a bounded wait
        deadline = time.monotonic() + 10
        resp = None
        while time.monotonic() < deadline:
            resp = call(m, self.blob("team/app", img.config_digest), src="127.0.0.2")
            if resp[0] == 429:
                break
            time.sleep(0.1)
        retry = self.assertLimited(resp, "bytes_per_day", "client 127.0.0.2")
        self.assertTrue(1 <= retry <= 24 * 3600, retry)
        # manifests are small and not refused by bytes_per_day
        self.assertEqual(call(m, self.manifest("team/app"), src="127.0.0.2")[0], 200)
        self.assertEqual(call(m, self.blob("team/app", img.config_digest), src="127.0.0.3")[0], 200)
        self.assertGreaterEqual(self.rejections(m, "bytes_per_day"), 1)
        tops = m.get("/api/v1/clients").json()["top_by_bytes"]
        self.assertEqual(tops[0]["client"], "127.0.0.2")
        self.assertGreaterEqual(tops[0]["bytes_24h"], 200000)

    def test_upstream_fetches_per_minute_refuse_cold_names_before_any_upstream_contact(self):
        reg = self.registry()
        for repo in ("team/a", "team/b", "team/c"):
            reg.add_image(repo, "1")
        m = self.mirror(reg, {"per_client": {"upstream_fetches_per_minute": 2}})
        self.assertEqual(call(m, self.manifest("team/a"), src="127.0.0.2")[0], 200)
        self.assertEqual(call(m, self.manifest("team/b"), src="127.0.0.2")[0], 200)
        retry = self.assertLimited(call(m, self.manifest("team/c"), src="127.0.0.2"),
                                   "upstream_fetches_per_minute", "client 127.0.0.2")
        self.assertTrue(1 <= retry <= 60, retry)
        self.assertEqual(reg.requests(path_re=r"/team/c/"), [],
                         "the refused name reached the upstream")
        # a tag list is upstream work too
        self.assertLimited(call(m, "/v2/%s/team/c/tags/list" % UPSTREAM, src="127.0.0.2"),
                           "upstream_fetches_per_minute", "client 127.0.0.2")
        # cached names are still served, to this client too
        self.assertEqual(call(m, self.manifest("team/a"), src="127.0.0.2")[0], 200)
        self.assertEqual(call(m, self.manifest("team/b"), src="127.0.0.2")[0], 200)
        # another client may fetch the cold one
        self.assertEqual(call(m, self.manifest("team/c"), src="127.0.0.3")[0], 200)
        self.assertEqual(len(reg.requests(path_re=r"/team/c/manifests/")), 1)
        self.assertGreaterEqual(self.rejections(m, "upstream_fetches"), 2)

    def test_the_clients_view_asks_for_the_admin_token_whenever_one_is_set(self):
        """Client addresses are personal data: /api/v1/clients wants the
        token even when other reads are public (no protect_reads)."""
        reg = self.registry()
        m = self.mirror(reg, {"per_client": {"requests_per_second": 50}},
                        extra={"admin": {"token": "tok-limits-1"}})
        self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)
        self.assertEqual(m.get("/api/v1/stats").status, 200)
        s = call(m, "/api/v1/clients", src="127.0.0.1")
        self.assertEqual(s[0], 401, s[2])
        s = call(m, "/api/v1/clients", src="127.0.0.1",
                 headers={"Authorization": "Bearer tok-limits-1"})
        self.assertEqual(s[0], 200, s[2])
        self.assertIn("127.0.0.2", [c["client"] for c in json.loads(s[2])["top_by_requests"]])

    def test_sighup_reloads_the_limits_and_a_bad_file_keeps_them(self):
        reg = self.registry()
        m = self.mirror(reg, {"per_client": {"requests_per_second": 1, "burst": 2}})
        for _ in range(2):
            self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)
        self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 429)
        # a file that does not load: the old limits stay, the log says why
        with open(m.config_path, "a") as f:
            f.write("limits_typo: 1\n")
        os.kill(m.pid, signal.SIGHUP)
        self.wait_log(m, "config not reloaded")
        self.assertEqual(call(m, "/v2/", src="127.0.0.3")[0], 200)
        self.assertEqual(call(m, "/v2/", src="127.0.0.3")[0], 200)
        self.assertEqual(call(m, "/v2/", src="127.0.0.3")[0], 429)
        # a good one: the new burst applies to clients old and new
        m.config["limits"]["per_client"] = {"requests_per_second": 1, "burst": 20}
        m.write_config()
        os.kill(m.pid, signal.SIGHUP)
        self.wait_log(m, "limits and trusted_proxies reloaded")
        for _ in range(15):
            self.assertEqual(call(m, "/v2/", src="127.0.0.4")[0], 200)
            self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)

    def test_per_user_limits_override_per_client_for_an_authenticated_user(self):
        """Needs client authentication (access.htpasswd_file), built apart:
        skipped while the binary does not know the `access` key."""
        pw_file = os.path.join(self.dir, "htpasswd-%d" % os.getpid())
        try:
            hashed = subprocess.run(["openssl", "passwd", "-6", "s3cret"], check=True,
                                    capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            self.skipTest("no openssl passwd: %r" % (e,))
        with open(pw_file, "w") as f:
            f.write("ci:%s\n" % hashed)
        reg = self.registry()
        try:
            m = self.mirror(reg, {"per_client": {"requests_per_second": 1, "burst": 2},
                                  "per_user": {"ci": {"requests_per_second": 100, "burst": 100}}},
                            extra={"access": {"anonymous": True, "htpasswd_file": pw_file}})
        except RuntimeError as e:
            if "access" in str(e):
                self.skipTest("client authentication (access.*) is not in this build")
            raise
        auth = {"Authorization": basic_header("ci", "s3cret")}
        for _ in range(20):
            self.assertEqual(call(m, "/v2/", src="127.0.0.2", headers=auth)[0], 200)
        for _ in range(2):
            self.assertEqual(call(m, "/v2/", src="127.0.0.2")[0], 200)
        self.assertLimited(call(m, "/v2/", src="127.0.0.2"), "requests_per_second",
                           "client 127.0.0.2")
        self.assertEqual(call(m, "/v2/", src="127.0.0.2", headers=auth)[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
