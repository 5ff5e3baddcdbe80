"""Real clients pull through ocimirror: skopeo, podman, containerd's ctr and
Docker, each the way it is configured in the field (a mirror host in the
reference, path-prefixed registries.conf mirrors, hosts.toml with ?ns=,
Docker's registry-mirrors). Every pulled digest must equal the fixture's,
and a second round with fresh client stores must cost the upstreams no blob.

Each test starts its own mirror (empty storage) so the first round really
pulls through, and each client object has its own temporary store.
Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_clients.py
"""

import base64
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest

from lib import clients
from lib.world import WorldTestCase

REGS = ("hub", "k8s", "quay")


def need(*binaries):
    """Skip (with the reason) when a client is not installed here."""
    missing = [b for b in binaries if shutil.which(b) is None and not os.path.exists(b)]
    if missing:
        raise unittest.SkipTest("not installed: " + ", ".join(missing))


def note(text):
    # Timings end up in the ctest output: how long each client takes matters
    # when choosing what to run on every build.
    sys.stderr.write("[clients] %s\n" % text)


class ClientsTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="om-clients-")
        self.addCleanup(clients.remove_tree, self.tmp)
        self.logs = os.path.join(self.w.log_dir, self._testMethodName)

    # -- helpers -----------------------------------------------------------
    def reset_counts(self):
        for r in self.w.reg.values():
            r.reset_counts()

    def upstream_blob_gets(self):
        return {k: self.w.reg[k].count("GET", r"/blobs/") for k in REGS}

    def two_rounds(self, pull_round):
        """pull_round(mirror, round) twice against one fresh mirror: the first
        must fetch from upstream (else the test proves nothing), the second,
        with fresh client stores, must fetch no blob from any upstream."""
        m = self.mirror()
        self.reset_counts()
        pull_round(m, 1)
        first = self.upstream_blob_gets()
        self.assertGreater(sum(first.values()), 0,
                           "round 1 fetched no blob upstream: %r" % first)
        self.reset_counts()
        pull_round(m, 2)
        self.assertEqual(self.upstream_blob_gets(), {k: 0 for k in REGS},
                         "round 2 (fresh client stores) fetched blobs from upstream")
        return m

    def mirror_requests(self, m, path_re):
        """The request events of the mirror's JSON log whose path matches
        path_re (fields method, path, ns, status: see src/server/dispatch.c)."""
        events = [e for e in m.log_json() if e.get("msg") == "request" and "path" in e]
        self.assertTrue(events, "the mirror logged no request events:\n" + m.log_tail(3000))
        return [e for e in events if re.search(path_re, e["path"])]

    # -- skopeo ------------------------------------------------------------
    def test_skopeo_copies_bare_qualified_and_quay_names_with_the_fixture_digests(self):
        need("skopeo")
        cases = [("alpine:3.19", "alpine"),
                 ("docker.io/library/alpine:3.19", "alpine"),
                 ("quay.io/coreos/etcd:v3.5.0", "etcd")]

        def pull_round(m, n):
            for i, (name, key) in enumerate(cases):
                fx = self.w.fx[key]
                res = clients.skopeo_copy("%s/%s" % (m.host_port, name),
                                          os.path.join(self.tmp, "r%d-%d" % (n, i)))
                note("skopeo copy %s (round %d): %.2fs" % (name, n, res.seconds))
                self.assertEqual(res.digest, fx.digest, name)
                self.assertEqual(res.dir_manifest_digest, fx.digest, name)
                self.assertEqual(sorted(res.blobs), sorted(fx.blobs), name)
        self.two_rounds(pull_round)

    def test_skopeo_copies_every_platform_of_a_manifest_list_with_every_digest_checked(self):
        need("skopeo")
        fx = self.w.fx["multi"]

        def pull_round(m, n):
            res = clients.skopeo_copy("%s/multi:1" % m.host_port,
                                      os.path.join(self.tmp, "multi-%d" % n), all_platforms=True)
            note("skopeo copy --all multi:1 (round %d): %.2fs" % (n, res.seconds))
            self.assertEqual(res.digest, fx.digest)
            self.assertEqual(res.dir_manifest_digest, fx.digest)
            self.assertEqual(sorted(res.instance_manifests), sorted(fx.platforms.values()))
            self.assertEqual(sorted(res.blobs), sorted(fx.blobs))
        self.two_rounds(pull_round)

    # -- podman ------------------------------------------------------------
    def test_podman_pulls_through_path_prefixed_mirror_locations(self):
        need("podman")
        cases = [("docker.io/library/alpine:3.19", "alpine"),
                 ("quay.io/coreos/etcd:v3.5.0", "etcd")]

        def pull_round(m, n):
            conf = clients.podman_registries_conf(m.host_port, ["docker.io", "quay.io"])
            with clients.Podman(conf) as p:
                for image, key in cases:
                    res = p.pull(image)
                    note("podman pull %s (round %d): %.2fs" % (image, n, res.seconds))
                    self.assertEqual(res.digest, self.w.fx[key].digest, image)
        m = self.two_rounds(pull_round)
        # podman asked for /v2/<registry>/<repo>/... (the mirror location's path).
        for prefix in ("/v2/docker.io/library/alpine/", "/v2/quay.io/coreos/etcd/"):
            self.assertTrue(self.mirror_requests(m, "^" + re.escape(prefix) + "(manifests|blobs)/"),
                            "mirror saw no request under " + prefix)

    # -- containerd --------------------------------------------------------
    def test_ctr_pulls_through_hosts_toml_and_sends_the_registry_as_ns(self):
        need("containerd", "ctr")
        cases = [("docker.io/library/alpine:3.19", "alpine", "docker.io"),
                 ("registry.k8s.io/pause:3.9", "pause", "registry.k8s.io")]
        url_re = re.compile(r'url="([^"]+)"')

        def pull_round(m, n):
            hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts-%d" % n),
                                            ["docker.io", "registry.k8s.io"], m.url)
            with clients.Containerd(log_dir=self.logs) as c:
                note("containerd start: %.2fs" % c.start_seconds)
                for image, key, ns in cases:
                    res = c.pull(image, hosts, debug=True)
                    note("ctr image pull %s (round %d): %.2fs" % (image, n, res.seconds))
                    self.assertEqual(res.digest, self.w.fx[key].digest, image)
                    # ctr --debug logs every URL it asked: all carry ?ns=<registry>.
                    urls = [u for u in url_re.findall(res.output) if m.host_port in u]
                    self.assertTrue(urls, "no request URL in ctr --debug output:\n" + res.output[-3000:])
                    for u in urls:
                        self.assertIn("ns=" + ns, u, image)
        m = self.two_rounds(pull_round)
        # The mirror saw the ns on every request ctr made (ctr does not ping /v2/).
        for repo, ns in (("library/alpine", "docker.io"), ("pause", "registry.k8s.io")):
            events = self.mirror_requests(m, "^/v2/%s/(manifests|blobs)/" % re.escape(repo))
            self.assertTrue(events, "mirror saw no request for " + repo)
            for e in events:
                self.assertEqual(e.get("ns"), ns, e)

    # -- docker ------------------------------------------------------------
    def test_docker_pulls_hub_images_through_registry_mirrors(self):
        need("dockerd", clients.DOCKER_CLI, "containerd")
        cases = [("alpine:3.19", "alpine"), ("team/app:1", "app")]

        def pull_round(m, n):
            with clients.Dockerd([m.url], log_dir=self.logs) as d:
                note("dockerd start: %.2fs" % d.start_seconds)
                for image, key in cases:
                    res = d.pull(image)
                    note("docker pull %s (round %d): %.2fs" % (image, n, res.seconds))
                    self.assertEqual(res.digest, self.w.fx[key].digest,
                                     "%s: RepoDigests %r" % (image, res.repo_digests))
        m = self.two_rounds(pull_round)
        # Docker asks for Docker Hub paths at the mirror's root, without ns.
        for repo in ("library/alpine", "team/app"):
            events = self.mirror_requests(m, "^/v2/%s/(manifests|blobs)/" % re.escape(repo))
            self.assertTrue(events, "mirror saw no request for " + repo)
            for e in events:
                self.assertIn(e.get("ns"), ("", None), e)

    # -- a big layer, cold mirror -------------------------------------------
    def test_skopeo_and_ctr_pull_a_32_mib_layer_through_a_cold_mirror_at_once(self):
        need("skopeo", "containerd", "ctr")
        big = self.w.fx["big"]
        m = self.mirror()
        # Both clients ask while the mirror is still fetching the layer: they
        # read it as it lands (one upstream GET), and both check its digest.
        results, errors = {}, []

        def skopeo():
            try:
                results["skopeo"] = clients.skopeo_copy(
                    "%s/quay.io/big/blob:1" % m.host_port, os.path.join(self.tmp, "big"))
            except Exception as e:
                errors.append(e)

        hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts"), ["quay.io"], m.url)
        with clients.Containerd(log_dir=self.logs) as c:
            t = threading.Thread(target=skopeo)
            t.start()
            try:
                results["ctr"] = c.pull("quay.io/big/blob:1", hosts)
            finally:
                t.join(clients.COMMAND_TIMEOUT + 10)
        if errors:
            raise errors[0]
        self.assertEqual(results["skopeo"].digest, big.digest)
        self.assertEqual(sorted(results["skopeo"].blobs), sorted(big.blobs))
        self.assertEqual(results["ctr"].digest, big.digest)
        note("32 MiB cold: skopeo %.2fs, ctr %.2fs" % (results["skopeo"].seconds,
                                                       results["ctr"].seconds))
        for layer in big.layers:
            self.assertEqual(self.w.reg["quay"].count("GET", "/blobs/" + layer), 1)

    # -- TLS ---------------------------------------------------------------
    def test_skopeo_podman_and_ctr_verify_a_tls_mirror_with_the_test_ca(self):
        need("skopeo", "podman", "containerd", "ctr")
        m = self.mirror(tls=True)
        alpine = self.w.fx["alpine"]
        certs = clients.cert_dir_from_ca(self.w.ca_file, os.path.join(self.tmp, "certs"))
        res = clients.skopeo_copy("%s/alpine:3.19" % m.host_port, os.path.join(self.tmp, "tls"),
                                  ca_dir=certs)
        self.assertEqual(res.digest, alpine.digest)
        conf = clients.podman_registries_conf(m.host_port, ["docker.io"], insecure=False)
        res = clients.podman_pull("docker.io/library/alpine:3.19", conf, ca_dir=certs)
        self.assertEqual(res.digest, alpine.digest)
        hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts"), ["docker.io"], m.url,
                                        ca_file=self.w.ca_file)
        with clients.Containerd(log_dir=self.logs) as c:
            res = c.pull("docker.io/library/alpine:3.19", hosts)
            self.assertEqual(res.digest, alpine.digest)


# -- credentials (access.anonymous false, access.htpasswd_file) ------------------
# Each client logs in the way its users would; one pull each, a good
# password works and (where cheap to show) a wrong one is refused.

USER, PASSWORD = "alice", "alice-pw"


class ClientsAuthTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        need("htpasswd")
        self.tmp = tempfile.mkdtemp(prefix="om-clients-auth-")
        self.addCleanup(clients.remove_tree, self.tmp)
        self.logs = os.path.join(self.w.log_dir, self._testMethodName)
        pw = os.path.join(self.tmp, "htpasswd")
        clients.run(["htpasswd", "-cbB", pw, USER, PASSWORD], what="htpasswd")
        self.m = self.mirror(extra={"access": {"anonymous": False, "htpasswd_file": pw}})

    def assertUserPulled(self, path_re):
        events = [e for e in self.m.log_json() if e.get("msg") == "request"
                  and re.search(path_re, e.get("path", "")) and e.get("status") == "200"]
        self.assertTrue(events, "no 200 for " + path_re)
        for e in events:
            self.assertEqual(e.get("user"), USER, e)

    def test_skopeo_creds(self):
        need("skopeo")
        fx = self.w.fx["alpine"]
        with self.assertRaises(clients.ClientError):
            clients.skopeo_copy("%s/alpine:3.19" % self.m.host_port, os.path.join(self.tmp, "no"))
        res = clients.skopeo_copy("%s/alpine:3.19" % self.m.host_port, os.path.join(self.tmp, "ok"),
                                  creds="%s:%s" % (USER, PASSWORD))
        self.assertEqual(res.digest, fx.digest)
        self.assertUserPulled(r"^/v2/alpine/manifests/")

    def test_podman_login_then_pull_through_the_mirror_location(self):
        need("podman")
        conf = clients.podman_registries_conf(self.m.host_port, ["docker.io"])
        with clients.Podman(conf) as p:
            with self.assertRaises(clients.ClientError):
                p.login(self.m.host_port, USER, "wrong")
            p.login(self.m.host_port, USER, PASSWORD)
            res = p.pull("docker.io/library/alpine:3.19")
        self.assertEqual(res.digest, self.w.fx["alpine"].digest)
        self.assertUserPulled(r"^/v2/docker.io/library/alpine/manifests/")

    def test_ctr_user_and_hosts_toml_authorization_header(self):
        need("containerd", "ctr")
        fx = self.w.fx["alpine"]
        hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts"), ["docker.io"], self.m.url)
        token = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
        hosts_hdr = os.path.join(self.tmp, "hosts-hdr")
        os.makedirs(os.path.join(hosts_hdr, "registry.k8s.io"))
        with open(os.path.join(hosts_hdr, "registry.k8s.io", "hosts.toml"), "w") as f:
            f.write(clients.containerd_hosts_toml(self.m.url) +
                    '  [host."%s".header]\n    authorization = "Basic %s"\n' % (self.m.url, token))
        with clients.Containerd(log_dir=self.logs) as c:
            args = ["image", "pull", "--hosts-dir", hosts, "--snapshotter", "native",
                    "--user", "%s:%s" % (USER, PASSWORD), "docker.io/library/alpine:3.19"]
            c.ctr(*args, what="ctr image pull --user")
            self.assertEqual(c.image_digest("docker.io/library/alpine:3.19"), fx.digest)
            res = c.pull("registry.k8s.io/pause:3.9", hosts_hdr)
            self.assertEqual(res.digest, self.w.fx["pause"].digest)
        self.assertUserPulled(r"^/v2/library/alpine/manifests/")
        self.assertUserPulled(r"^/v2/pause/manifests/")

    def test_docker_login_then_pull_by_the_mirror_host(self):
        # registry-mirrors get Docker Hub's credentials, never the mirror's:
        # with a password, users pull HOST:PORT/NAME after docker login HOST:PORT.
        need("dockerd", clients.DOCKER_CLI, "containerd")
        with clients.Dockerd([], insecure_registries=[self.m.host_port], log_dir=self.logs) as d:
            with self.assertRaises(clients.ClientError):
                d.docker("login", "-u", USER, "-p", "wrong", self.m.host_port,
                         what="docker login (wrong)")
            d.docker("login", "-u", USER, "-p", PASSWORD, self.m.host_port, what="docker login")
            res = d.pull("%s/library/alpine:3.19" % self.m.host_port)
        self.assertEqual(res.digest, self.w.fx["alpine"].digest, res.repo_digests)
        self.assertUserPulled(r"^/v2/library/alpine/manifests/")


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        unittest.main(verbosity=2)
    finally:
        note("total %.1fs" % (time.monotonic() - t0))
