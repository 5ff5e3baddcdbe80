"""Security of the mirror's upstream client, through the real ocimirror binary:
where credentials go, which redirects are followed, which hosts are ever
contacted, what reaches the log, and how a 429 is waited out.  And the
upstreams a public mirror relies on: several URLs of one upstream (failover
when one stops, back-off, health per URL) and a pool of accounts (pulls
spread over them, an account answered 429 skipped until its window ends).

No real registry here: each test starts scripted fakes from lib.fakeupstream
(threads in this process, HTTPS with leaves from a lib.pki CA): a registry,
a token service, a "CDN" on another port, a plain-HTTP trap and a bare TCP
connection counter — and one ocimirror (lib.mirror.Mirror, fresh storage)
whose only upstream, `fakereg.test`, is the fake registry, configured with a
username and password.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_upstream_security.py
"""

import atexit
import hashlib
import http.client
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.fakeupstream import (ConnCounter, FakeCDN, FakeRegistry, FakeServer,  # noqa: E402
                              FakeTokenService, basic_header)
from lib.mirror import Mirror                 # noqa: E402
from lib.pki import CA                        # noqa: E402
from lib.world import artifacts_dir, dump_log  # noqa: E402

UPSTREAM = "fakereg.test"
USER = "alice"
PASSWORD = "pw-Zq8-never-log-me"
ACCEPT = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json")


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


_mirrors = []       # every mirror started, stopped at exit whatever happened


def _stop_all():
    for m in _mirrors:
        try:
            m.kill9()
        except Exception as e:      # cleanup goes on for the others
            sys.stderr.write("stopping a mirror: %r\n" % (e,))


atexit.register(_stop_all)


class UpstreamSecurityTest(unittest.TestCase):
    """One CA for the file; fakes and a mirror per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # ctest's timeout sends SIGTERM: exit through atexit, which stops the
        # mirrors (they run in their own sessions and would outlive us).
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        cls.dir = tempfile.mkdtemp(prefix="om-upsec-")
        cls.ca = CA(os.path.join(cls.dir, "pki"))
        cls.leaf = cls.ca.issue("fakes")
        # w<pid>-<n>: the name artifacts_dir() removes on the next run, so a
        # log never mixes runs (the log test reads the whole file).
        cls.log_dir = os.path.join(artifacts_dir(), "w%d-1" % os.getpid())
        os.makedirs(cls.log_dir, exist_ok=True)
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("OM_E2E_KEEP") != "1":
            shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    # -- setup helpers -----------------------------------------------------
    def fake(self, server):
        """Start a fake (FakeServer or ConnCounter), stopped after the test."""
        server.start()
        self.addCleanup(server.stop)
        return server

    def registry(self):
        return self.fake(FakeRegistry(tls=self.leaf))

    def mirror(self, reg, extra=None, upstream=None):
        """A mirror whose one upstream is reg, with alice's credentials (or
        the upstream mapping given)."""
        type(self).n += 1
        work = os.path.join(self.dir, "m%d" % self.n)
        cfg = {
            "storage": {"path": os.path.join(work, "storage")},
            "upstreams": [upstream or {"name": UPSTREAM, "url": reg.url,
                                       "ca_file": self.ca.ca_file,
                                       "username": USER, "password": PASSWORD}],
            "search_order": [UPSTREAM],
            "tag_ttl": "2s",
            "negative_ttl": "2s",
            "retries": {"max": 3, "backoff": "100ms"},
            "log": {"level": "debug", "format": "json"},
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

    # -- assertions --------------------------------------------------------
    def assertErrorJSON(self, r, statuses):
        self.assertIn(r.status, statuses, r)
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
        return errs

    def assertBlob(self, r, digest):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sha256(r.body), digest, "wrong bytes for %s" % digest)

    def assertNotCached(self, m, digest):
        hexd = digest.split(":", 1)[1]
        path = os.path.join(m.storage, "blobs", "sha256", hexd[:2], hexd)
        self.assertFalse(os.path.exists(path), "%s was cached" % digest)

    def get_blob(self, m, repo, digest):
        try:
            return m.get("/v2/%s/%s/blobs/%s" % (UPSTREAM, repo, digest))
        except http.client.IncompleteRead as e:
            self.fail("the mirror cut a blob answer short (it streamed bytes it then "
                      "refused): %r" % (e,))

    def get_manifest(self, m, repo, ref, query=""):
        return m.get("/v2/%s/%s/manifests/%s%s" % (UPSTREAM, repo, ref, query), {"Accept": ACCEPT})

    # -- redirects ---------------------------------------------------------
    def test_redirect_to_another_host_does_not_carry_credentials(self):
        """The registry's blob GETs answer 307 to a CDN on another port; the
        CDN must see no Authorization header, for either kind of upstream
        credentials (Basic, and a bearer token got with them)."""
        reg = self.registry()
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        cdn = self.fake(FakeCDN(tls=self.leaf))
        reg.auth["basic/"] = ("basic", USER, PASSWORD)
        reg.auth["team/"] = ("bearer", tokens)
        reg.blob_location = cdn.location
        m = self.mirror(reg)
        for repo in ("basic/app", "team/app"):
            with self.subTest(repo=repo):
                img = reg.add_image(repo, "v1")
                cdn.put(img)
                for d in (img.config_digest, img.layer_digest):
                    self.assertBlob(self.get_blob(m, repo, d), d)
                # The registry was asked with credentials (so there were some
                # to leak) and redirected; the CDN served without any.
                redirected = [q for q in reg.requests(r"/v2/%s/blobs/" % repo, "GET")
                              if q.header("authorization")]
                self.assertGreaterEqual(len(redirected), 2, reg.requests())
                served = cdn.requests(r"/cdn/sha256:(%s|%s)" % (img.config_digest[7:],
                                                                 img.layer_digest[7:]))
                self.assertGreaterEqual(len(served), 2, cdn.requests())
                for q in served:
                    self.assertIsNone(q.header("authorization"), q)
                    self.assertIsNone(q.header("proxy-authorization"), q)
                    self.assertNotIn(PASSWORD, repr(q.headers))

    def test_https_to_http_downgrade_redirect_is_refused(self):
        """A 307 from the https registry to an http URL is not followed: the
        plain-HTTP host sees nothing, the client gets a clean OCI error, and
        nothing is cached (the next request asks the registry again)."""
        reg = self.registry()
        trap = self.fake(FakeServer("http-trap", lambda req: (200, [], b"should never be asked")))
        reg.auth["team/"] = ("basic", USER, PASSWORD)
        img = reg.add_image("team/app", "v1")
        reg.blob_location = lambda d: "%s/cdn/%s" % (trap.url, d)
        m = self.mirror(reg)
        for attempt in (1, 2):
            r = self.get_blob(m, "team/app", img.layer_digest)
            self.assertErrorJSON(r, range(400, 600))
            self.assertNotCached(m, img.layer_digest)
            asked = reg.requests(r"/blobs/" + img.layer_digest, "GET")
            self.assertGreaterEqual(len(asked), attempt, "attempt %d did not reach the registry" % attempt)
        # A manifest redirected the same way is refused too.
        reg.script("GET", r"/manifests/v1$", 0, 302, [("Location", trap.url + "/m")])
        r = self.get_manifest(m, "team/app", "v1")
        self.assertErrorJSON(r, range(400, 600))
        self.assertNotCached(m, img.digest)
        self.assertEqual(trap.requests(), [], "the http host was contacted")

    # -- token auth ----------------------------------------------------------
    def test_token_realm_gets_credentials_but_registry_gets_only_the_token(self):
        reg = self.registry()
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        reg.auth["team/"] = ("bearer", tokens)
        img = reg.add_image("team/app", "v1")
        m = self.mirror(reg)
        r = self.get_manifest(m, "team/app", "v1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, img.manifest)
        for d in (img.config_digest, img.layer_digest):
            self.assertBlob(self.get_blob(m, "team/app", d), d)

        asked = tokens.requests(r"^/token")
        self.assertTrue(asked, "no token was requested")
        for q in asked:
            self.assertEqual(q.header("authorization"), basic_header(USER, PASSWORD), q)
            query = parse_qs(q.path.partition("?")[2])
            self.assertEqual(query.get("scope"), ["repository:team/app:pull"], q)
            self.assertEqual(query.get("service"), [tokens.service], q)
        issued = set(tokens.tokens())
        bearer_seen = 0
        for q in reg.requests():
            auth = q.header("authorization")
            if auth is None:
                continue
            self.assertTrue(auth.startswith("Bearer "), "registry got %r" % (q,))
            self.assertIn(auth[7:], issued, q)
            self.assertNotIn(PASSWORD, auth)
            bearer_seen += 1
        self.assertGreaterEqual(bearer_seen, 3, reg.requests())

    def test_token_realm_redirect_to_another_host_does_not_carry_credentials(self):
        """The realm answers 307 to a token host on another port: the realm
        got alice's Basic credentials, the other host gets none, and the
        token it issues works."""
        reg = self.registry()
        tokens2 = self.fake(FakeTokenService(tls=self.leaf, name="tokens2"))
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        tokens.redirect_to = tokens2.url + "/token2"
        tokens.valid = lambda tok, repo: tokens2.valid(tok, repo)
        reg.auth["team/"] = ("bearer", tokens)
        img = reg.add_image("team/app", "v1")
        m = self.mirror(reg)
        r = self.get_manifest(m, "team/app", "v1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, img.manifest)
        self.assertTrue(tokens.requests(), "the realm was not asked")
        for q in tokens.requests():
            self.assertEqual(q.header("authorization"), basic_header(USER, PASSWORD), q)
        self.assertTrue(tokens2.requests(r"^/token2\?"), "the redirect was not followed")
        for q in tokens2.requests():
            self.assertIsNone(q.header("authorization"), q)

    def test_token_realm_redirect_from_https_to_http_is_refused(self):
        reg = self.registry()
        trap = self.fake(FakeServer("http-trap", lambda req: (200, [], b'{"token":"x"}')))
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        tokens.redirect_to = trap.url + "/token"
        reg.auth["team/"] = ("bearer", tokens)
        reg.add_image("team/app", "v1")
        m = self.mirror(reg)
        r = self.get_manifest(m, "team/app", "v1")
        self.assertErrorJSON(r, range(400, 600))
        self.assertTrue(tokens.requests(), "the realm was not asked")
        self.assertEqual(trap.requests(), [], "the http host was contacted")

    # -- the log -------------------------------------------------------------
    def test_credentials_never_appear_in_the_log(self):
        """Basic and bearer pulls, a CDN redirect with a pre-signed query, a
        refused downgrade and a refused token: the debug log names none of
        the password, its Basic encoding, any token, or the signature."""
        reg = self.registry()
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        cdn = self.fake(FakeCDN(tls=self.leaf))
        reg.auth["basic/"] = ("basic", USER, PASSWORD)
        reg.auth["team/"] = ("bearer", tokens)
        reg.blob_location = cdn.location
        m = self.mirror(reg)
        for repo in ("basic/app", "team/app"):
            img = reg.add_image(repo, "v1")
            cdn.put(img)
            self.assertEqual(self.get_manifest(m, repo, "v1").status, 200)
            self.assertBlob(self.get_blob(m, repo, img.layer_digest), img.layer_digest)
        # A downgrade refused, and a token service that refuses: both log.
        down = reg.add_image("team/down", "v1")
        reg.blob_location = lambda d: "http://127.0.0.1:1/cdn/%s?sig=%s" % (d, FakeCDN.SIG)
        self.assertErrorJSON(self.get_blob(m, "team/down", down.layer_digest), range(400, 600))
        tokens.users = {USER: "another password"}
        reg.add_image("team/other", "v1")
        self.assertGreaterEqual(self.get_manifest(m, "team/other", "v1").status, 400)

        m.stop()
        log = m.log_text()
        # The log is at debug level and did record these events.
        self.assertIn("upstream redirect", log)
        self.assertIn("redirect refused", log)
        self.assertIn("token request failed", log)
        secrets_ = [PASSWORD, basic_header(USER, PASSWORD)[6:], FakeCDN.SIG] + tokens.tokens()
        self.assertGreaterEqual(len(tokens.tokens()), 1)
        for s in secrets_:
            self.assertNotIn(s, log, "a secret reached the log")

    # -- 429 and Retry-After ---------------------------------------------------
    def test_retry_after_is_honoured_on_429(self):
        reg = self.registry()
        img = reg.add_image("team/app", "v1")
        reg.script("GET", r"/manifests/v1$", 1, 429, [("Retry-After", "1")])
        m = self.mirror(reg)
        t0 = time.monotonic()
        r = self.get_manifest(m, "team/app", "v1")
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, img.manifest)
        asked = reg.requests(r"/manifests/v1$", "GET")
        self.assertEqual(len(asked), 2, asked)
        gap = asked[1].t - asked[0].t
        # The configured backoff is 100 ms: only Retry-After explains >= 1 s.
        self.assertGreaterEqual(gap, 1.0, "retried %.3f s after a 429 with Retry-After: 1" % gap)
        self.assertLess(took, 10, "the client waited %.1f s" % took)

    def test_ratelimit_remaining_is_recorded(self):
        """Docker Hub's ratelimit-remaining, as the admin API reports it per
        upstream (docs/admin-api.md, GET /api/v1/upstreams).  Skipped while
        the binary has no such endpoint: nothing else shows the value."""
        reg = self.registry()
        reg.add_image("team/app", "v1")
        reg.manifest_headers = [("ratelimit-limit", "100;w=21600"),
                                ("ratelimit-remaining", "57;w=21600")]
        m = self.mirror(reg)
        self.assertEqual(self.get_manifest(m, "team/app", "v1").status, 200)
        r = m.get("/api/v1/upstreams")
        if r.status == 404:
            self.skipTest("GET /api/v1/upstreams answers 404: ratelimit-remaining is kept in "
                          "om_upstream_stats but nothing exposes it yet")
        self.assertEqual(r.status, 200, r)
        ups = {u.get("name"): u for u in r.json().get("upstreams", [])}
        self.assertIn(UPSTREAM, ups, r)
        self.assertEqual(ups[UPSTREAM].get("ratelimit_remaining"), 57, ups[UPSTREAM])

    def test_an_upstream_tag_list_is_paged_only_within_itself(self):
        """The upstream pages its tag list with Link rel="next" (as
        distribution 3, Docker Hub and quay do): the mirror follows it and
        merges the pages, but a next link that leaves the repository's list
        (here: another repository's tags) is not followed."""
        reg = self.registry()
        reg.add_image("team/app", "v1")

        def pager(q):
            if "last" not in q:
                return ["v1", "b"], '</v2/team/app/tags/list?last=b&n=2>; rel="next"'
            if q["last"] == "b":
                return ["c", "d"], '</v2/team/secret/tags/list?last=d>; rel="next"'
            return ["never"], None
        reg.tag_lists["team/app"] = pager
        reg.tag_lists["team/secret"] = lambda q: (["secret"], None)
        m = self.mirror(reg)
        r = m.get("/v2/%s/team/app/tags/list" % UPSTREAM)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sorted(r.json().get("tags") or []), ["b", "c", "d", "v1"], r)
        asked = [q.path for q in reg.requests(r"/tags/list", "GET")]
        self.assertEqual(asked, ["/v2/team/app/tags/list", "/v2/team/app/tags/list?last=b&n=2"])

    def test_when_every_upstream_fails_the_error_names_the_first_and_lists_the_rest(self):
        """A name searched on three upstreams, none of them reachable (two
        refuse connections, one answers 503): 503 UNAVAILABLE whose message
        gives the first upstream's error in full and names the other two,
        not just the last one tried."""
        reg = self.registry()
        reg.script("GET", r"/manifests/", 0, 503)
        dead = []
        for _ in range(2):
            c = self.fake(ConnCounter())
            dead.append(c.port)
            c.stop()            # its port now refuses connections
        ups = [{"name": "first.example", "url": "https://127.0.0.1:%d" % dead[0],
                "ca_file": self.ca.ca_file},
               {"name": "second.example", "url": "https://127.0.0.1:%d" % dead[1],
                "ca_file": self.ca.ca_file},
               {"name": UPSTREAM, "url": reg.url, "ca_file": self.ca.ca_file}]
        m = self.mirror(reg, extra={"upstreams": ups,
                                    "search_order": ["first.example", "second.example", UPSTREAM]})
        r = m.get("/v2/team/app/manifests/v1", {"Accept": ACCEPT})
        errs = self.assertErrorJSON(r, (503,))
        msg = errs[0]["message"]
        self.assertEqual(errs[0]["code"], "UNAVAILABLE", r)
        self.assertTrue(msg.startswith("upstream first.example: "), msg)
        self.assertIn("also failed: second.example, %s" % UPSTREAM, msg)

    # -- several URLs of one upstream ------------------------------------------
    def upstream_view(self, m):
        r = m.get("/api/v1/upstreams")
        self.assertEqual(r.status, 200, r)
        ups = {u["name"]: u for u in r.json()["upstreams"]}
        return ups[UPSTREAM]

    def metric(self, m, name, **labels):
        """The value of one series of /metrics (None when absent)."""
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in m.get("/metrics").text.splitlines():
            if line.startswith(name + "{"):
                got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return None

    def test_an_upstream_with_two_urls_fails_over_when_the_first_is_stopped(self):
        """urls: [first, second], the second a mirror of the first (the same
        content, the same token service).  With the first stopped, pulls go
        on through the second at once; the first is skipped while it backs
        off, shown failing per URL in the admin API and /metrics, and used
        again once it is back and its back-off is over.  Whatever URL serves
        it, content is verified by digest."""
        first, second = self.registry(), self.registry()
        second.images = first.images
        tokens = self.fake(FakeTokenService(tls=self.leaf, users={USER: PASSWORD}))
        first.auth["team/"] = second.auth["team/"] = ("bearer", tokens)
        imgs = [first.add_image("team/app", "v%d" % i) for i in range(4)]
        m = self.mirror(first, upstream={"name": UPSTREAM, "urls": [first.url, second.url],
                                         "ca_file": self.ca.ca_file, "username": USER,
                                         "password": PASSWORD})

        def pull(img):
            r = self.get_manifest(m, "team/app", img.tag)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, img.manifest)
            for d in (img.config_digest, img.layer_digest):
                self.assertBlob(self.get_blob(m, "team/app", d), d)

        pull(imgs[0])
        self.assertEqual(second.requests(r"^/v2/team/"), [], "the first URL serves while it is up")
        port, first_url = first.port, first.url
        first.stop()
        t0 = time.monotonic()
        pull(imgs[1])
        self.assertLess(time.monotonic() - t0, 5, "the failover waited")
        self.assertTrue(second.requests(r"^/v2/team/app/manifests/v1$", "GET"))
        # The second URL is one of the upstream's origins: it got the token.
        self.assertTrue(all(q.header("authorization", "").startswith("Bearer ")
                            for q in second.requests(r"^/v2/team/app/blobs/", "GET")))
        up = self.upstream_view(m)
        self.assertEqual([u["url"] for u in up["urls"]], [first_url, second.url])
        bad, good = up["urls"]
        self.assertIs(bad["healthy"], False, bad)
        self.assertGreaterEqual(bad["errors"], 1, bad)
        self.assertIsNotNone(bad["backoff_until_ms"], bad)
        self.assertIsNotNone(bad["last_error"], bad)
        self.assertIs(good["healthy"], True, good)
        self.assertIsNone(good["backoff_until_ms"], good)
        self.assertEqual(up["url"], first_url)
        tried = bad["requests"]
        # While it backs off, the first URL is not tried at all.
        pull(imgs[2])
        self.assertEqual(self.upstream_view(m)["urls"][0]["requests"], tried)
        self.assertEqual(self.metric(m, "ocimirror_upstream_url_up", upstream=UPSTREAM,
                                     url=first_url), 0)
        self.assertEqual(self.metric(m, "ocimirror_upstream_url_up", upstream=UPSTREAM,
                                     url=second.url), 1)
        self.assertGreater(self.metric(m, "ocimirror_upstream_url_backoff_seconds",
                                       upstream=UPSTREAM, url=first_url), 0)
        self.assertGreaterEqual(self.metric(m, "ocimirror_upstream_url_errors_total",
                                            upstream=UPSTREAM, url=first_url), 1)
        # Verified by digest on the mirror of it too: bytes that do not match
        # are never served whole, nor cached.
        liar = imgs[3]
        second.before = lambda req: (
            (200, [("Content-Type", "application/octet-stream")],
             b"\0" * len(liar.blobs[liar.layer_digest]))
            if req.method == "GET" and req.path.endswith(liar.layer_digest) else None)
        try:
            r = m.get("/v2/%s/team/app/blobs/%s" % (UPSTREAM, liar.layer_digest))
            self.assertNotEqual(r.status, 200, "wrong bytes were served as the blob")
        except (http.client.IncompleteRead, ConnectionError):
            pass                            # cut before its last byte: right
        self.assertNotCached(m, liar.layer_digest)
        second.before = None
        # Back, and once its back-off is over, the first URL is first again.
        first.start(port=port)
        deadline = time.monotonic() + 10
        while self.upstream_view(m)["urls"][0]["backoff_until_ms"] is not None:
            self.assertLess(time.monotonic(), deadline, "the back-off never ended")
            time.sleep(0.2)
        first.clear()
        self.assertBlob(self.get_blob(m, "team/app", liar.layer_digest), liar.layer_digest)
        self.assertTrue(first.requests(r"/blobs/" + liar.layer_digest), "the first URL was not probed")
        self.assertIs(self.upstream_view(m)["urls"][0]["healthy"], True)

    # -- a pool of accounts -------------------------------------------------------
    def test_a_credential_pool_spreads_pulls_and_skips_an_account_answered_429(self):
        """credentials: two accounts.  Pulls are spread over both (each gets
        its own token from the realm, with its own Basic credentials); when
        one account is answered 429 (its pull limit) the request goes on with
        the other at once, and the limited one is skipped until its window
        ends — shown per account (never a secret) in the admin API and
        /metrics."""
        reg = self.registry()
        users = {"puller-a": "pw-A-never-log-1", "puller-b": "pw-B-never-log-2"}
        tokens = self.fake(FakeTokenService(tls=self.leaf, users=users))
        reg.auth["team/"] = ("bearer", tokens)
        limited = set()
        reg.before = lambda req: (
            (429, [("Content-Type", "application/json"), ("ratelimit-remaining", "0;w=3600")],
             b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull limit reached"}]}')
            if tokens.user_of(req) in limited else None)
        creds = []
        for u, pw in users.items():
            path = os.path.join(self.dir, "%s-%d.pw" % (u, self.n))
            with open(path, "w") as f:
                f.write(pw + "\n")
            creds.append({"username": u, "password_file": path})
        m = self.mirror(reg, upstream={"name": UPSTREAM, "url": reg.url, "ca_file": self.ca.ca_file,
                                       "credentials": creds},
                        extra={"retries": {"max": 1, "backoff": "100ms"}})
        imgs = [reg.add_image("team/app", "v%d" % i) for i in range(6)]

        def pull(img):
            r = self.get_manifest(m, "team/app", img.tag)
            self.assertEqual(r.status, 200, r)
            for d in (img.config_digest, img.layer_digest):
                self.assertBlob(self.get_blob(m, "team/app", d), d)

        for img in imgs[:2]:
            pull(img)
        seen = {tokens.user_of(q) for q in reg.requests(r"^/v2/team/app/")}
        self.assertEqual(seen - {None}, set(users), "pulls were not spread over the accounts")
        realm_users = {q.header("authorization") for q in tokens.requests(r"^/token")}
        self.assertEqual(realm_users, {basic_header(u, p) for u, p in users.items()})
        limited.add("puller-b")
        since = time.monotonic()
        for img in imgs[2:]:
            pull(img)
        b_after = [q for q in reg.requests(r"^/v2/team/app/")
                   if q.t >= since and tokens.user_of(q) == "puller-b"]
        self.assertEqual(len(b_after), 1, "the limited account was not skipped: %r" % b_after)
        accts = {a["username"]: a for a in self.upstream_view(m)["accounts"]}
        self.assertEqual(set(accts), set(users))
        b, a = accts["puller-b"], accts["puller-a"]
        self.assertEqual(b["rate_limited"], 1, b)
        self.assertEqual(b["ratelimit_remaining"], 0, b)
        self.assertGreater(b["limited_until_ms"], time.time() * 1000 + 3000 * 1000, b)
        self.assertEqual(a["rate_limited"], 0, a)
        self.assertIsNone(a["limited_until_ms"], a)
        self.assertGreater(a["requests"], b["requests"], accts)
        self.assertEqual(self.metric(m, "ocimirror_upstream_account_limited", upstream=UPSTREAM,
                                     account="puller-b"), 1)
        self.assertEqual(self.metric(m, "ocimirror_upstream_account_limited", upstream=UPSTREAM,
                                     account="puller-a"), 0)
        self.assertEqual(self.metric(m, "ocimirror_upstream_account_rate_limited_total",
                                     upstream=UPSTREAM, account="puller-b"), 1)
        shown = m.get("/metrics").text + m.get("/api/v1/upstreams").text
        m.stop()
        shown += m.log_text()
        for pw in users.values():
            self.assertNotIn(pw, shown, "a pool password was shown")

    # -- which hosts are contacted -------------------------------------------
    def test_a_lying_upstream_gets_an_error_that_says_what_happened(self):
        """Error codes that fit (issue 10, 4): a valid index over the entry
        limit is "too many entries", an oversized WWW-Authenticate is not
        "Out of memory", a token service answering nonsense is not the
        manifest's fault (MANIFEST_INVALID)."""
        import json
        tok = self.fake(FakeServer("tok", lambda req: (200, [("Content-Type", "text/html")],
                                                       b"<html>not a token</html>"), tls=self.leaf))
        big = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                         "digest": "sha256:%064x" % i, "size": 100}
                                        for i in range(5000)]}).encode()

        def handler(req):
            p = req.path
            chal = 'Bearer realm="%s/token",service="x",scope="repository:%s:pull"'
            if "/hugeauth/" in p:
                return (401, [("WWW-Authenticate", chal % (tok.url, "a" * 200000))], b"{}")
            if "/bigauth/" in p:
                return (401, [("WWW-Authenticate", chal % (tok.url, "a" * 20000))], b"{}")
            if "/badtoken/" in p:
                return (401, [("WWW-Authenticate", chal % (tok.url, "badtoken"))],
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"x"}]}')
            if "/bigindex/" in p and "/manifests/" in p:
                return (200, [("Content-Type", "application/vnd.oci.image.index.v1+json"),
                              ("Docker-Content-Digest", sha256(big))], big)
            return (404, [], b'{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}')
        reg = self.fake(FakeServer("reg", handler, tls=self.leaf))
        m = self.mirror(reg)
        cases = {
            "bigindex": (502, "MANIFEST_INVALID", "too many entries (5000 > 4096)"),
            "hugeauth": (503, "UNAVAILABLE", "headers are over libcurl's limit"),
            "bigauth": (503, "UNAVAILABLE", "a response header line over 8192 bytes"),
            "badtoken": (503, "UNAVAILABLE", "token service answer unusable: malformed"),
        }
        for repo, (status, code, msg) in cases.items():
            with self.subTest(repo=repo):
                r = self.get_manifest(m, repo, "1")
                errs = self.assertErrorJSON(r, (status,))
                self.assertEqual(errs[0]["code"], code, r)
                self.assertIn(msg, errs[0]["message"], r)
                self.assertNotIn("Out of memory", errs[0]["message"])
                self.assertNotIn("not JSON", errs[0]["message"])

    def test_a_name_cannot_make_the_mirror_contact_an_unconfigured_host(self):
        """Names and ?ns= values that name 127.0.0.1:PORT or localhost:PORT,
        where PORT listens and counts connections: none may arrive, every
        answer is a clean OCI error (404 NAME_UNKNOWN for ?ns=; the path
        prefix cases are held to 404 in the next test), and an unknown ns
        does not fall through to the configured upstream either."""
        reg = self.registry()
        reg.add_image("x/y", "1")
        counter = self.fake(ConnCounter())
        m = self.mirror(reg)
        for method, path, strict in self.unconfigured_host_cases(counter.port):
            with self.subTest(method=method, path=path):
                r = m.get(path, {"Accept": ACCEPT}, method=method)
                if strict:
                    self.assertEqual(r.status, 404, r)
                else:
                    self.assertIn(r.status, (400, 404), r)
                if method == "GET":
                    errs = self.assertErrorJSON(r, (400, 404))
                    self.assertIn(errs[0]["code"],
                                  ("NAME_UNKNOWN",) if strict else ("NAME_UNKNOWN", "NAME_INVALID"), r)
        time.sleep(0.3)         # a connection attempt in flight would land by now
        self.assertEqual(counter.connections, 0, "the mirror connected to port %d" % counter.port)
        self.assertEqual(reg.requests(r"^/v2/.+"), [],
                         "an unknown ns fell through to the configured upstream")

    def test_a_host_and_port_path_prefix_is_answered_404_name_unknown(self):
        """A well-formed host:port prefix that is no configured upstream is
        NAME_UNKNOWN (the router decides), not NAME_INVALID."""
        reg = self.registry()
        counter = self.fake(ConnCounter())
        m = self.mirror(reg)
        for method, path, strict in self.unconfigured_host_cases(counter.port):
            if strict or method != "GET":
                continue
            r = m.get(path, {"Accept": ACCEPT}, method=method)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(self.assertErrorJSON(r, (404,))[0]["code"], "NAME_UNKNOWN", r)
        self.assertEqual(counter.connections, 0)

    @staticmethod
    def unconfigured_host_cases(port):
        """(method, path, strict): strict cases must be 404 NAME_UNKNOWN."""
        hp = "127.0.0.1:%d" % port
        digest = "sha256:" + "a" * 64
        return [
            ("GET", "/v2/%s/x/manifests/1" % hp, False),
            ("HEAD", "/v2/%s/x/manifests/1" % hp, False),
            ("GET", "/v2/%s/x/blobs/%s" % (hp, digest), False),
            ("GET", "/v2/%s/x/tags/list" % hp, False),
            ("GET", "/v2/localhost:%d/x/manifests/1" % port, False),
            ("GET", "/v2/x/y/manifests/1?ns=%s" % hp, True),
            ("HEAD", "/v2/x/y/manifests/1?ns=%s" % hp, True),
            ("GET", "/v2/x/y/blobs/%s?ns=%s" % (digest, hp), True),
            ("GET", "/v2/x/y/tags/list?ns=%s" % hp, True),
            ("GET", "/v2/x/y/manifests/1?ns=localhost:%d" % port, True),
        ]


if __name__ == "__main__":
    unittest.main(verbosity=2)
