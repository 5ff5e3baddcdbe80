"""`ocimirror client-config`: the generated files work with the real clients.

For a World mirror, the command writes containerd's hosts dir, podman's
registries.conf and Docker's daemon.json; the real clients of this machine
then pull through the mirror with those files.  The files are used as the
product prints them, with one change made here: the fallback (containerd's
`server`, podman's primary `location`) is the real registry in the product
and is pointed at a refused loopback port in the test, so that a mirror
failure fails the test instead of quietly falling back.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_clientcfg.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import clients                          # noqa: E402
from lib.mirror import mirror_bin                # noqa: E402
from lib.world import WorldTestCase              # noqa: E402


def need(*binaries):
    missing = [b for b in binaries if shutil.which(b) is None and not os.path.exists(b)]
    if missing:
        raise unittest.SkipTest("not installed: " + ", ".join(missing))


def client_config(*args, check=True):
    p = subprocess.run([mirror_bin(), "client-config", *args], capture_output=True, text=True,
                       timeout=30, start_new_session=True)
    if check and p.returncode != 0:
        raise AssertionError("client-config %r -> %d\n%s%s" % (args, p.returncode, p.stdout,
                                                                p.stderr))
    return p


class ClientConfigTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="om-clientcfg-")
        self.addCleanup(clients.remove_tree, self.tmp)
        self.logs = os.path.join(self.w.log_dir, self._testMethodName)

    def upstream_host(self, key):
        return self.w.reg[key].url.split("://", 1)[1].rstrip("/")

    # -- containerd -------------------------------------------------------
    def test_ctr_pulls_through_the_generated_hosts_dir_including_an_alias(self):
        need("containerd", "ctr")
        m = self.mirror()
        out = os.path.join(self.tmp, "root")
        client_config("--for", "containerd", "-c", m.config_path, "--mirror", m.url,
                      "--out", out)
        hosts = os.path.join(out, "etc", "containerd", "certs.d")
        self.assertEqual(sorted(os.listdir(hosts)),
                         sorted(["docker.io", "index.docker.io", "registry-1.docker.io",
                                 "registry.k8s.io", "k8s.gcr.io", "quay.io"]))
        for reg, key in (("docker.io", "hub"), ("index.docker.io", "hub"),
                         ("k8s.gcr.io", "k8s"), ("quay.io", "quay")):
            path = os.path.join(hosts, reg, "hosts.toml")
            with open(path) as f:
                text = f.read()
            # The product's fallback is the real registry: the upstream's URL.
            self.assertIn('server = "%s"' % self.w.reg[key].url, text, path)
            self.assertIn('[host."%s"]' % m.url, text, path)
            with open(path, "w") as f:
                f.write(re.sub(r'(?m)^server = ".*"$', 'server = "http://%s"' % clients.REFUSED,
                               text))
        cases = [("docker.io/library/alpine:3.19", "alpine"),
                 ("registry.k8s.io/pause:3.9", "pause"),
                 ("k8s.gcr.io/kube-apiserver:v1.28.0", "apiserver"),
                 ("quay.io/coreos/etcd:v3.5.0", "etcd")]
        with clients.Containerd(log_dir=self.logs) as c:
            for image, key in cases:
                res = c.pull(image, hosts)
                self.assertEqual(res.digest, self.w.fx[key].digest, image)

    # -- podman -------------------------------------------------------------
    def test_podman_pulls_through_the_generated_registries_conf(self):
        need("podman")
        m = self.mirror()
        doc = json.loads(client_config("--for", "podman", "-c", m.config_path, "--mirror",
                                       m.url, "--json").stdout)
        self.assertEqual(doc["for"], "podman")
        (f,) = doc["files"]
        self.assertEqual(f["path"], "/etc/containers/registries.conf.d/ocimirror.conf")
        text = f["content"]
        self.assertIn('location = "%s/docker.io"' % m.host_port, text)
        self.assertIn('location = "%s/quay.io"' % m.host_port, text)
        self.assertIn('location = "%s/k8s.gcr.io"' % m.host_port, text)
        # The primary location is the real registry; point it at a refused port.
        lines, section = [], None
        for line in text.splitlines():
            if line.startswith("[["):
                section = line
            if section == "[[registry]]" and line.startswith("location = "):
                self.assertIn(line, ['location = "%s"' % self.upstream_host(k)
                                     for k in ("hub", "k8s", "quay")])
                line = 'location = "%s"' % clients.REFUSED
            lines.append(line)
        conf = "\n".join(lines) + "\n"
        cases = [("docker.io/library/alpine:3.19", "alpine"),
                 ("quay.io/coreos/etcd:v3.5.0", "etcd"),
                 ("k8s.gcr.io/pause:3.9", "pause")]
        with clients.Podman(conf) as p:
            for image, key in cases:
                res = p.pull(image)
                self.assertEqual(res.digest, self.w.fx[key].digest, image)
        paths = [e.get("path", "") for e in m.log_json() if e.get("msg") == "request"]
        self.assertTrue(any(x.startswith("/v2/k8s.gcr.io/pause/manifests/") for x in paths),
                        paths[-20:])

    # -- docker -------------------------------------------------------------
    def test_dockerd_starts_with_the_generated_daemon_json_and_pulls_through_the_mirror(self):
        need("dockerd", clients.DOCKER_CLI, "containerd")
        m = self.mirror(start=False)
        m.config["public_url"] = m.url   # then no --mirror is needed
        m.start()
        doc = json.loads(client_config("--for", "docker", "-c", m.config_path,
                                       "--json").stdout)
        (f,) = doc["files"]
        self.assertEqual(f["path"], "/etc/docker/daemon.json")
        daemon = json.loads(f["content"])
        self.assertEqual(daemon, {"registry-mirrors": [m.url],
                                  "insecure-registries": [m.host_port]})
        # dockerd runs with exactly these keys (lib.clients adds only its own
        # max-concurrent-downloads).
        with clients.Dockerd(daemon["registry-mirrors"], log_dir=self.logs,
                             extra_config=daemon) as d:
            with open(d.config) as fh:
                used = json.load(fh)
            for k, v in daemon.items():
                self.assertEqual(used[k], v)
            res = d.pull("alpine:3.19")
            self.assertEqual(res.digest, self.w.fx["alpine"].digest)

    # -- the command line ---------------------------------------------------
    def test_no_mirror_url_and_no_public_url_is_a_usage_error(self):
        m = self.mirror(start=False)
        m.write_config()
        p = client_config("--for", "docker", "-c", m.config_path, check=False)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("--mirror", p.stderr)
        for args in (["--for", "rkt", "--mirror", "http://x"],
                     ["--for", "docker", "--mirror", "ftp://x"],
                     ["--for", "docker", "--mirror", "http://x/path"], ["--mirror", "http://x"]):
            p = client_config(*args, check=False)
            self.assertEqual(p.returncode, 2, (args, p.stderr))

    def test_every_kind_prints_its_files_commands_and_notes(self):
        for kind in ("docker", "containerd", "crio", "podman", "k3s", "kubeadm"):
            p = client_config("--for", kind, "--mirror", "https://mirror.example")
            self.assertIn("# ---- ", p.stdout, kind)
            doc = json.loads(client_config("--for", kind, "--mirror", "https://mirror.example",
                                           "--json").stdout)
            self.assertEqual(doc["for"], kind)
            self.assertTrue(doc["files"], kind)
            self.assertTrue(doc["commands"], kind)
            for f in doc["files"]:
                self.assertIn(f["path"].split("/")[-1], p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
