"""A throwaway redis-server for the e2e tests (test_redis.py, lib/cluster.py).

    r = RedisServer(); r.start()          # a unix socket in a temp dir, ~0.1 s
    r.sock; r.url                         # "unix://<sock>?db=0"
    r.command("GET", "om:fl:...")         # one RESP command from the test side
    r.stop(); r.start()                   # same socket, empty (no persistence)
    r.close()                             # stop and remove the directory

Started under setsid, stopped by the PID we started (it rewrites its
command line: never by name).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["REDIS", "RedisServer"]

REDIS = "/usr/bin/redis-server"


class RedisServer:
    """One throwaway redis-server: no persistence, a unix socket only."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="om-e2e-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("port 0\nunixsocket %s\nunixsocketperm 700\nsave \"\"\nappendonly no\n"
                    "dir %s\nlogfile %s/redis.log\n" % (self.sock, self.dir, self.dir))
        self.proc = subprocess.Popen([REDIS, conf], start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.command("PING") == "PONG":
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not come up")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # by PID, never by name
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args):
        """One command in RESP over the socket; a simple reply's text, an
        integer, or a list of bulk strings."""
        s = socket.socket(socket.AF_UNIX)
        try:
            s.settimeout(2)
            s.connect(self.sock)
        except OSError:
            s.close()
            return None
        with s:
            out = "*%d\r\n" % len(args) + "".join(
                "$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)
            s.sendall(out.encode())
            f = s.makefile("rb")
            return self._read(f)

    def _read(self, f):
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind in (b"+", b"-"):
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            return [self._read(f) for _ in range(int(rest))]
        return None

    @property
    def url(self):
        return "unix://%s?db=0" % self.sock
