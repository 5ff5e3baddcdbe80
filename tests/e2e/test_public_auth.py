"""Running a public mirror: who may pull (access.anonymous, access.htpasswd_file:
Basic auth against bcrypt and SHA-512 entries, the file reloaded when it
changes, failed logins limited per address) and what may be pulled
(policy.allow / policy.deny, checked before any upstream contact, reloaded on
SIGHUP; a bad new file keeps the old policy).

Upstream contact is counted at the registries' logs: a refused name must cost
zero requests there.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_public_auth.py
"""

import base64
import http.client
import os
import shutil
import signal
import subprocess
import time
import unittest

from lib.world import WorldTestCase
from lib.images import ACCEPT_ALL

HTPASSWD = shutil.which("htpasswd")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}


def htpasswd_line(flag, user, password):
    out = subprocess.run([HTPASSWD, "-nb", flag, user, password], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] + "\n"


def wait_for(fn, timeout=8.0, step=0.1):
    """fn() until truthy or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
    return v


@unittest.skipUnless(HTPASSWD, "htpasswd (apache2-utils) not installed")
class AuthTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.pw = os.path.join(self.w.dir, "htpasswd-%s" % self.id().rsplit(".", 1)[1])
        with open(self.pw, "w") as f:
            f.write("# users of the test\n")
            f.write(htpasswd_line("-B", "alice", "alice-pw"))   # bcrypt
            f.write(htpasswd_line("-5", "carol", "carol-pw"))   # SHA-512 crypt
        self.m = self.mirror(extra={"access": {"anonymous": False, "htpasswd_file": self.pw}})

    def get_from(self, src, path, headers):
        """GET from source address src (loopback 127/8: another client)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.m.port, timeout=30,
                                          source_address=(src, 0))
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def test_anonymous_false_needs_credentials_and_checks_them(self):
        r = self.m.get("/v2/")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.headers.get("WWW-Authenticate"), 'Basic realm="ocimirror"')
        self.assertEqual(r.json()["errors"][0]["code"], "UNAUTHORIZED")
        r = self.m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        self.assertEqual(r.status, 401, r)
        self.assertEqual(self.m.get("/healthz").status, 200)

        self.assertEqual(self.m.get("/v2/", basic("alice", "alice-pw")).status, 200)
        self.assertEqual(self.m.get("/v2/", basic("carol", "carol-pw")).status, 200)
        img = self.w.fx["alpine"]
        r = self.m.get("/v2/library/alpine/manifests/3.19",
                       dict(basic("alice", "alice-pw"), Accept=ACCEPT_ALL))
        self.assertManifest(r, img)
        # the second one comes from the memory of good logins
        self.assertEqual(self.m.get("/v2/", basic("alice", "alice-pw")).status, 200)

        for user, pw in (("alice", "wrong"), ("carol", "alice-pw"), ("nobody", "x")):
            r = self.m.get("/v2/", basic(user, pw))
            self.assertEqual(r.status, 401, (user, r))
            self.assertEqual(r.json()["errors"][0]["code"], "UNAUTHORIZED")
        log = self.m.log_text()
        self.assertIn("login failed", log)
        self.assertNotIn("alice-pw", log)
        # the user is in the request log line
        self.assertTrue(any(e.get("user") == "alice" for e in self.m.log_json()
                            if e.get("msg") == "request" or e.get("path") == "/v2/"))
        metrics = self.m.get("/metrics").text
        self.assertIn('ocimirror_auth_rejected_total{reason="missing"}', metrics)
        self.assertRegex(metrics, r"ocimirror_auth_failures_total [1-9]")

    def test_changed_file_is_reloaded_without_restart(self):
        self.assertEqual(self.m.get("/v2/", basic("dave", "dave-pw")).status, 401)
        with open(self.pw, "a") as f:
            f.write(htpasswd_line("-B", "dave", "dave-pw"))
        # wait on the metric, not by retrying dave (that would trip the limiter)
        # (a /v2/ request without credentials is what looks at the file)
        self.assertTrue(wait_for(lambda: self.m.get("/v2/").status == 401 and
                                 "ocimirror_auth_users 3" in self.m.get("/metrics").text),
                        "the file was not reloaded")
        self.assertEqual(self.m.get("/v2/", basic("dave", "dave-pw")).status, 200)
        # a broken file keeps the users loaded before
        with open(self.pw, "a") as f:
            f.write("eve:$apr1$abcdefgh$0123456789abcdef012345\n")
        self.assertTrue(wait_for(lambda: self.m.get("/v2/").status == 401 and
                                 "cannot be used" in self.m.log_text()))
        self.assertEqual(self.m.get("/v2/", basic("dave", "dave-pw")).status, 200)
        self.assertNotIn("0123456789abcdef012345", self.m.log_text())

    def test_the_prefetcher_logs_in_as_itself(self):
        m = self.mirror(extra={
            "access": {"anonymous": False, "htpasswd_file": self.pw},
            "prefetch": {"images": ["docker.io/library/alpine:3.19"],
                         "platforms": ["linux/amd64"], "retries": 1}})
        self.assertTrue(wait_for(lambda: "prefetch: image done" in m.log_text() or
                                 "prefetch: image failed" in m.log_text(), timeout=30))
        self.assertIn("prefetch: image done", m.log_text())
        # nobody else is that user
        r = m.get("/v2/", basic("ocimirror prefetch", "0" * 64))
        self.assertEqual(r.status, 401)

    def test_check_config_reads_the_htpasswd_file(self):
        bad = os.path.join(self.w.dir, "bad-htpasswd")
        with open(bad, "w") as f:
            f.write(htpasswd_line("-B", "alice", "x") + "bob:$apr1$abcdefgh$0123456789abcdef012345\n")
        cfg = os.path.join(self.w.dir, "bad.yaml")
        with open(cfg, "w") as f:
            f.write("access:\n  htpasswd_file: %s\n" % bad)
        r = subprocess.run([self.m.binary, "check-config", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("%s:2: user \"bob\"" % bad, r.stderr)
        self.assertNotIn("0123456789abcdef012345", r.stderr)

    def test_failed_logins_limit_that_address_only(self):
        bad = basic("alice", "not-it")
        statuses = [self.get_from("127.0.0.2", "/v2/", bad)[0] for _ in range(5)]
        self.assertEqual(statuses, [401] * 5)
        st, hdrs, _ = self.get_from("127.0.0.2", "/v2/", basic("alice", "alice-pw"))
        self.assertEqual(st, 429)
        self.assertTrue(int(hdrs.get("Retry-After", "0")) > 0, hdrs)
        # another address is served
        self.assertEqual(self.get_from("127.0.0.1", "/v2/", basic("alice", "alice-pw"))[0], 200)
        self.assertIn('ocimirror_auth_rejected_total{reason="rate_limited"} 1',
                      self.m.get("/metrics").text)


class PolicyTest(WorldTestCase):

    POLICY = {"allow": ["docker.io/library/*", "registry.k8s.io/**"],
              "deny": ["docker.io/library/shared", "registry.k8s.io/kube-*"]}

    def setUp(self):
        super().setUp()
        self.m = self.mirror(extra={"policy": dict(self.POLICY)})
        for r in self.w.reg.values():
            r.reset_counts()

    def manifest(self, name, ref):
        return self.m.get("/v2/%s/manifests/%s" % (name, ref), {"Accept": ACCEPT_ALL})

    def upstream_requests(self, key, repo):
        return self.w.reg[key].count(None, r"^/v2/%s/" % repo)

    def assertDenied(self, r, text):
        self.assertEqual(r.status, 403, r)
        err = r.json()["errors"][0]
        self.assertEqual(err["code"], "DENIED")
        self.assertIn(text, err["message"])

    def test_refused_names_cost_nothing_upstream(self):
        self.assertDenied(self.manifest("docker.io/library/shared", "1"),
                          'denied by policy.deny "docker.io/library/shared"')
        self.assertDenied(self.manifest("quay.io/coreos/etcd", "v3.5.0"), "not in policy.allow")
        # `*` is one component: docker.io/team/app is not under docker.io/library/*
        self.assertDenied(self.manifest("docker.io/team/app", "1"), "not in policy.allow")
        # deny wins over registry.k8s.io/**
        self.assertDenied(self.manifest("registry.k8s.io/kube-apiserver", "v1.28.0"),
                          'policy.deny "registry.k8s.io/kube-*"')
        self.assertDenied(self.m.get("/v2/quay.io/coreos/etcd/tags/list"), "not in policy.allow")
        self.assertEqual(self.upstream_requests("hub", "library/shared"), 0)
        self.assertEqual(self.upstream_requests("hub", "team/app"), 0)
        self.assertEqual(self.upstream_requests("quay", "coreos/etcd"), 0)
        self.assertEqual(self.upstream_requests("k8s", "kube-apiserver"), 0)
        # `**` covers nested names; allowed names are served
        self.assertManifest(self.manifest("registry.k8s.io/coredns/coredns", "v1.11.1"),
                            self.w.fx["coredns"])
        self.assertManifest(self.manifest("alpine", "3.19"), self.w.fx["alpine"])
        self.assertRegex(self.m.get("/metrics").text, r"ocimirror_policy_denied_total [5-9]")

    def test_search_skips_a_candidate_the_policy_refuses(self):
        # "shared" is on docker.io (refused) and registry.k8s.io (allowed):
        # the search must not ask docker.io at all.
        self.assertManifest(self.manifest("shared", "1"), self.w.fx["shared_k8s"])
        self.assertEqual(self.upstream_requests("hub", "library/shared"), 0)
        r = self.m.get("/api/v1/route?name=shared").json()
        self.assertEqual(r["candidates"][0]["policy"]["verdict"], "denied")
        self.assertTrue(r["policy"]["allowed"], r)
        r = self.m.get("/api/v1/route?name=quay.io/coreos/etcd").json()
        self.assertEqual(r["policy"]["verdict"], "not_allowed")

    def test_sighup_denies_a_cached_image_and_a_bad_file_keeps_the_policy(self):
        img = self.w.fx["alpine"]
        self.assertManifest(self.manifest("library/alpine", "3.19"), img)
        layer = img.layers[0]
        self.assertEqual(self.m.get("/v2/library/alpine/blobs/%s" % layer).status, 200)
        self.assertIn("docker.io/library/alpine",
                      self.m.get("/v2/_catalog").json()["repositories"])
        for r in self.w.reg.values():
            r.reset_counts()
        self.m.config["policy"] = {"allow": list(self.POLICY["allow"]),
                                   "deny": self.POLICY["deny"] + ["docker.io/library/alpine"]}
        self.m.write_config()
        os.kill(self.m.pid, signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.manifest("library/alpine", "3.19").status == 403))
        self.assertDenied(self.manifest("library/alpine", img.digest), "docker.io/library/alpine")
        self.assertDenied(self.m.get("/v2/library/alpine/blobs/%s" % layer),
                          "docker.io/library/alpine")
        self.assertNotIn("docker.io/library/alpine",
                         self.m.get("/v2/_catalog").json()["repositories"])
        self.assertEqual(self.upstream_requests("hub", "library/alpine"), 0)
        # a bad file: the old policy stays, the log says why
        self.m.config["policy"] = {"allow": ["Docker.io//x"], "deny": []}
        self.m.write_config()
        os.kill(self.m.pid, signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reload failed" in self.m.log_text()))
        self.assertDenied(self.manifest("library/alpine", "3.19"), "docker.io/library/alpine")
        self.assertTrue(self.m.alive)


if __name__ == "__main__":
    unittest.main()
