"""systemd integration: sd_notify readiness, watchdog pings and STOPPING.

The test plays systemd's part: it owns a unix datagram socket, starts
`ocimirror serve` with NOTIFY_SOCKET pointing at it (and WATCHDOG_USEC for
the watchdog), and reads what arrives: READY=1 once the server listens,
WATCHDOG=1 every half interval while /healthz answers, STOPPING=1 on
SIGTERM.  No upstream is ever contacted (the only one configured is a
refused loopback port, and no image is asked for).

Skipped when the binary is built without libsystemd (OM_HAVE_SYSTEMD).
Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_sdnotify.py
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.mirror import Mirror, mirror_bin       # noqa: E402
from lib.world import artifacts_dir             # noqa: E402


def linked_with_libsystemd(binary):
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libsystemd" in out


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []          # (monotonic time, {key: value})

    def wait_for(self, key, value=None, timeout=10.0, count=1):
        """Read until `count` messages carrying key(=value) have arrived;
        returns them (fewer if the time ran out)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [m for _, m in self.messages if key in m and (value is None or m[key] == value)]
            left = deadline - time.monotonic()
            if len(got) >= count or left <= 0:
                return got
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class SdNotifyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not linked_with_libsystemd(mirror_bin()):
            raise unittest.SkipTest("built without libsystemd (OM_HAVE_SYSTEMD)")

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="om-sd-", dir="/tmp")  # short: socket path limit
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.notify = NotifySocket(os.path.join(self.dir, "notify"))
        self.addCleanup(self.notify.close)
        self.logs = os.path.join(artifacts_dir(), self._testMethodName)
        os.makedirs(self.logs, exist_ok=True)

    def start_mirror(self, env):
        cfg = {"storage": {"path": os.path.join(self.dir, "storage")},
               "upstreams": [{"name": "docker.io", "url": "http://127.0.0.1:1"}],
               "log": {"level": "debug", "format": "json"}}
        m = Mirror(cfg, os.path.join(self.dir, "mirror"), os.path.join(self.logs, "mirror.log"))
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            m.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.addCleanup(self.check_and_stop, m)
        return m

    def check_and_stop(self, m):
        m.stop(timeout=15)
        reports = m.sanitizer_reports()
        if reports:
            self.fail("sanitizer report in %s:\n%s" % (m.log_path, reports[0]))

    def test_ready_then_watchdog_pings_then_stopping_on_sigterm(self):
        m = self.start_mirror({"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "1000000"})
        ready = self.notify.wait_for("READY", "1")
        self.assertTrue(ready, "no READY=1")
        self.assertEqual(ready[0].get("MAINPID"), str(m.pid))
        self.assertIn("serving on", ready[0].get("STATUS", ""))
        # A 1 s watchdog: a ping every 0.5 s, each after a /healthz probe.
        pings = self.notify.wait_for("WATCHDOG", "1", timeout=10, count=5)
        self.assertGreaterEqual(len(pings), 5)
        self.assertIn("watchdog: pinging systemd", [e.get("msg") for e in m.log_json()])
        os.killpg(m.pid, signal.SIGTERM)
        self.assertTrue(self.notify.wait_for("STOPPING", "1"), "no STOPPING=1")
        self.assertEqual(m.proc.wait(timeout=15), 0)

    def test_ready_without_a_watchdog_sends_no_pings(self):
        self.start_mirror({"NOTIFY_SOCKET": self.notify.path})
        self.assertTrue(self.notify.wait_for("READY", "1"))
        self.assertEqual(self.notify.wait_for("WATCHDOG", timeout=2), [])

    def test_a_watchdog_meant_for_another_process_is_ignored(self):
        # systemd sets WATCHDOG_PID to the main process; anyone else ignores it.
        self.start_mirror({"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "1000000",
                           "WATCHDOG_PID": "1"})
        self.assertTrue(self.notify.wait_for("READY", "1"))
        self.assertEqual(self.notify.wait_for("WATCHDOG", timeout=2), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
