"""The program around the cache: the command line, the embedded defaults,
TLS serving, the log format, and a graceful SIGTERM.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_lifecycle.py
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from lib.mirror import mirror_bin
from lib.world import WorldTestCase
from lib.images import ACCEPT_ALL


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, timeout=20, **kw):
    return subprocess.run([mirror_bin()] + args, capture_output=True, text=True,
                          timeout=timeout, **kw)


class CommandLineTest(unittest.TestCase):
    """No upstream needed: everything here runs inside the loopback-only
    namespace, so the embedded defaults (the real registries) resolve to
    nothing and nothing leaves the machine."""

    def setUp(self):
        if os.environ.get("OM_IN_NETNS") != "1":
            self.skipTest("must run inside scripts/netns-run (the defaults name real registries)")
        self.dir = tempfile.mkdtemp(prefix="om-cli-")

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_version_prints_the_version(self):
        r = run(["version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^ocimirror \d+\.\d+\.\d+")

    def test_unknown_command_fails_with_usage(self):
        r = run(["frobnicate"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("usage", r.stderr)

    def test_check_config_prints_the_effective_config_with_secrets_redacted(self):
        pw = self.write("pw", "s3cret-from-file\n")
        cfg = self.write("c.yaml", f"""
listen: "127.0.0.1:5999"
storage:
  path: "{self.dir}/data"
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    aliases: [index.docker.io]
    username: alice
    password: hunter2-secret
  - name: quay.io
    url: https://quay.io
    username: bob
    password_file: "{pw}"
tag_ttl: 10s
""")
        r = run(["check-config", "-c", cfg])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("hunter2-secret", r.stdout)
        self.assertNotIn("s3cret-from-file", r.stdout)
        self.assertIn("redacted", r.stdout)
        self.assertIn("127.0.0.1:5999", r.stdout)
        self.assertIn("quay.io", r.stdout)
        # The printed config is itself a valid config.
        again = self.write("again.yaml", r.stdout)
        r2 = run(["check-config", "-c", again])
        self.assertEqual(r2.returncode, 0, r2.stderr)

    def test_help_lists_every_option_of_every_command(self):
        import re
        r = run(["help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout
        self.assertEqual(run(["serve", "--help"]).stdout, text)
        for cmd in ("prefetch", "gc", "fsck", "client-config"):
            own = run([cmd, "--help"])
            self.assertEqual(own.returncode, 0, own.stderr)
            usage = own.stdout.split("\n\n")[0]
            opts = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))
            self.assertTrue(opts, usage)
            for o in sorted(opts):
                with self.subTest(command=cmd, option=o):
                    self.assertIn(o, text)
        for o in ("-c", "--config", "--listen", "--storage", "--help", "check-config", "version"):
            self.assertIn(o, text)

    def test_a_bad_listen_value_says_what_is_wrong_with_it(self):
        cases = {"127.0.0.1:99999": "the port must be a number from 1 to 65535",
                 "::1:5000": "an IPv6 address needs brackets",
                 "localhost": "it has no port"}
        for value, why in cases.items():
            with self.subTest(listen=value):
                r = run(["serve", "--listen", value, "--storage", os.path.join(self.dir, "d")])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("--listen %s is not" % value, r.stderr)
                self.assertIn(why, r.stderr)
        cfg = self.write("l.yaml", "listen: \"0.0.0.0:70000\"\n")
        r = run(["check-config", "-c", cfg])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(":1:9:", r.stderr)
        self.assertIn("the port must be a number from 1 to 65535", r.stderr)

    def test_an_unknown_key_is_an_error_naming_its_line(self):
        cfg = self.write("bad.yaml", "listen: \"127.0.0.1:5999\"\n\ntag_tll: 5m\n")
        r = run(["check-config", "-c", cfg])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(":3:", r.stderr)
        self.assertIn("tag_tll", r.stderr)
        self.assertIn('(did you mean "tag_ttl"?)', r.stderr)

    def test_a_bad_value_is_an_error_naming_its_line(self):
        cfg = self.write("bad.yaml", "listen: \"127.0.0.1:5999\"\ntag_ttl: soon\n")
        r = run(["check-config", "-c", cfg])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(":2:", r.stderr)
        r = run(["serve", "-c", cfg])
        self.assertNotEqual(r.returncode, 0, "serve must refuse a bad config too")

    def test_serve_runs_on_the_embedded_defaults(self):
        port = free_port()
        p = subprocess.Popen([mirror_bin(), "serve", "--listen", "127.0.0.1:%d" % port,
                              "--storage", os.path.join(self.dir, "data")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=self.dir)
        try:
            deadline = time.monotonic() + 10
            status = None
            while time.monotonic() < deadline and status is None:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/v2/")
                    r = c.getresponse()
                    status = r.status
                    self.assertEqual(r.getheader("Docker-Distribution-API-Version"),
                                     "registry/2.0")
                    r.read()
                    c.close()
                except OSError:
                    time.sleep(0.1)
            self.assertEqual(status, 200)
            # A name on the default upstreams: they are unreachable in this
            # namespace, so the mirror answers a clean error, quickly.
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/v2/nginx/manifests/latest")
            r = c.getresponse()
            body = json.loads(r.read())
            self.assertIn(r.status, (503, 404))
            self.assertIn("errors", body)
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            out, err = p.communicate(timeout=40)
        self.assertEqual(p.returncode, 0, err[-3000:])
        self.assertIn("<embedded defaults>", err)
        self.assertTrue(os.path.isdir(os.path.join(self.dir, "data")))
        # A name that does not resolve is not retried: the resolver did
        # (an offline search paid every upstream's backoff, 3.5-4.5 s).
        retries = [l for l in err.splitlines() if "upstream retry" in l and "resolve" in l]
        self.assertEqual(retries, [], "\n".join(retries[:5]))

    def start_serve(self, port, storage):
        p = subprocess.Popen([mirror_bin(), "serve", "--listen", "127.0.0.1:%d" % port,
                              "--storage", storage],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=self.dir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v2/")
                ok = c.getresponse().status == 200
                c.close()
                if ok:
                    return p
            except OSError:
                pass
            if p.poll() is not None:
                break
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=20)
        self.fail("the first server did not start")

    def test_a_second_server_on_one_port_is_refused(self):
        port = free_port()
        first = self.start_serve(port, os.path.join(self.dir, "a"))
        try:
            r = run(["serve", "--listen", "127.0.0.1:%d" % port,
                     "--storage", os.path.join(self.dir, "b")])
            self.assertEqual(r.returncode, 1, r.stderr[-2000:])
            self.assertIn("cannot listen on 127.0.0.1:%d (Address already in use)" % port, r.stderr)
            self.assertIsNone(first.poll(), "the first server must keep running")
        finally:
            os.killpg(first.pid, signal.SIGTERM)
            first.communicate(timeout=40)
        # and a restart right after binds the port again (SO_REUSEADDR)
        again = self.start_serve(port, os.path.join(self.dir, "a"))
        os.killpg(again.pid, signal.SIGTERM)
        again.communicate(timeout=40)
        self.assertEqual(again.returncode, 0)

    def test_a_second_server_on_one_storage_directory_is_refused(self):
        storage = os.path.join(self.dir, "data")
        first = self.start_serve(free_port(), storage)
        try:
            r = run(["serve", "--listen", "127.0.0.1:%d" % free_port(), "--storage", storage])
            self.assertEqual(r.returncode, 1, r.stderr[-2000:])
            self.assertIn("is in use by another ocimirror (pid %d)" % first.pid, r.stderr)
            # gc and fsck still work beside the owner.
            r = run(["gc", "--storage", storage, "--dry-run"])
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            r = run(["fsck", "--storage", storage])
            self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
            self.assertIsNone(first.poll(), "the first server must keep running")
        finally:
            os.killpg(first.pid, signal.SIGTERM)
            first.communicate(timeout=40)
        self.assertEqual(first.returncode, 0)
        # Once it stopped (or died: the kernel drops the lock), the next one starts.
        again = self.start_serve(free_port(), storage)
        os.killpg(again.pid, signal.SIGKILL)
        again.communicate(timeout=20)
        again = self.start_serve(free_port(), storage)
        os.killpg(again.pid, signal.SIGTERM)
        again.communicate(timeout=40)


class ServingTest(WorldTestCase):

    def test_tls_serving_uses_the_configured_certificate(self):
        m = self.w.mirror(tls=True)
        self.assertTrue(m.url.startswith("https://"))
        img = self.w.fx["alpine"]
        r = m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Docker-Content-Digest"], img.digest)
        # Plain HTTP to the TLS port is not answered as if it were a registry.
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                data = s.recv(100)
            except (socket.timeout, ConnectionResetError):
                data = b""
        self.assertNotIn(b"registry/2.0", data)

    def test_json_log_has_one_line_per_request_with_its_fields(self):
        m = self.w.mirror()
        m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        m.get("/v2/NoSuch/manifests/x")
        time.sleep(0.3)
        reqs = [e for e in m.log_json() if e.get("msg") == "request"]
        self.assertGreaterEqual(len(reqs), 3)
        for e in reqs:
            for k in ("ts", "level", "method", "path", "status", "bytes", "ms", "cache",
                      "upstream", "repo"):
                self.assertIn(k, e, e)
        hits = [e for e in reqs if e["path"].endswith("/manifests/3.19")]
        # A line is written when its response is done, so two quick requests
        # may log in either order.
        self.assertEqual(sorted(e["cache"] for e in hits), ["hit", "miss"])
        for e in hits:
            self.assertEqual(e["upstream"], "docker.io")
            self.assertEqual(e["repo"], "docker.io/library/alpine")
        self.assertTrue(any(e["status"] == "400" and e["path"] == "/v2/NoSuch/manifests/x"
                            for e in reqs))

    def test_log_lines_say_what_happened(self):
        m = self.w.mirror()
        img = self.w.fx["alpine"]
        self.pull(m, img, name="alpine")            # search order
        self.pull(m, img, name="alpine")            # hits
        m.get("/v2/nosuch/thing/manifests/1", {"Accept": ACCEPT_ALL})       # 404
        self.w.reg["quay"].stop()
        r = m.get("/v2/quay.io/coreos/etcd/manifests/v3.5.0", {"Accept": ACCEPT_ALL})  # 503
        self.assertEqual(r.status, 503, r)
        time.sleep(0.3)
        log = m.log_json()
        reqs = [e for e in log if e.get("msg") == "request"]
        by_status = {}
        for e in reqs:
            by_status.setdefault(e["status"], set()).add(e["outcome"])
        self.assertEqual(by_status.get("503"), {"error"}, by_status)
        self.assertEqual(by_status.get("404"), {"refused"}, by_status)
        self.assertEqual(by_status.get("200"), {"ok"}, by_status)
        # Hits reached by the search order say where they come from, like
        # explicit-prefix hits.
        hits = [e for e in reqs if e["cache"] == "hit" and "/blobs/" in e["path"]]
        self.assertTrue(hits)
        for e in hits:
            self.assertEqual((e["upstream"], e["repo"], e["route"]),
                             ("docker.io", "docker.io/library/alpine", "search order"), e)
        # A failed search names every upstream tried with its answer.
        found = [e for e in log if e.get("msg") == "search found no manifest"
                 and e.get("name") == "nosuch/thing"]
        self.assertEqual(len(found), 1, found)
        for up in ("docker.io: no such repository", "registry.k8s.io: no such repository",
                   "quay.io: no such repository"):
            self.assertIn(up, found[0]["tried"])

    def test_text_log_is_one_line_per_request(self):
        m = self.w.mirror(extra={"log": {"format": "text", "level": "info"}})
        m.get("/v2/library/alpine/manifests/3.19", {"Accept": ACCEPT_ALL})
        time.sleep(0.3)
        lines = [l for l in m.log_text().splitlines() if " request " in l]
        self.assertTrue(lines)
        self.assertRegex(lines[-1], r"^\d{4}-\d\d-\d\dT\S+ INFO request method=GET "
                                    r"path=/v2/library/alpine/manifests/3\.19 .*status=200")

    def test_sigterm_lets_a_running_transfer_finish_and_refuses_new_connections(self):
        m = self.w.mirror(extra={"limits": {"shutdown_grace": "30s"}})
        big = self.w.fx["big"]
        layer = [d for d in big.blobs if d in big.layer_bytes][0]
        want = hashlib.sha256(big.layer_bytes[layer]).hexdigest()
        got = {}

        def slow_reader():
            c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=60)
            c.request("GET", "/v2/quay.io/big/blob/blobs/" + layer)
            r = c.getresponse()
            got["status"] = r.status
            h = hashlib.sha256()
            n = 0
            while True:
                chunk = r.read(256 * 1024)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                if n == len(chunk):
                    got["started"] = time.monotonic()
                time.sleep(0.02)   # ~12 MB/s: a few seconds for 32 MiB
            got["sha"] = h.hexdigest()
            got["n"] = n
            c.close()

        t = threading.Thread(target=slow_reader)
        t.start()
        deadline = time.monotonic() + 20
        while "started" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("started", got)
        os.kill(m.pid, signal.SIGTERM)
        time.sleep(0.5)
        refused = False
        try:
            c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=3)
            c.request("GET", "/v2/")
            c.getresponse().read()
        except OSError:
            refused = True
        self.assertTrue(refused, "new connections must be refused after SIGTERM")
        t.join(60)
        self.assertEqual(got.get("status"), 200)
        self.assertEqual(got.get("n"), len(big.layer_bytes[layer]))
        self.assertEqual(got.get("sha"), want)
        rc = m.proc.wait(timeout=40)
        self.assertEqual(rc, 0, m.log_tail())


if __name__ == "__main__":
    unittest.main(verbosity=2)
