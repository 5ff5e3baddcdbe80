"""A test rig for a cluster of ocimirror replicas: one bucket on a Ceph RGW
(lib/ceph.py, started by the caller once per test class), one redis-server
(lib/redisserver.py), N replicas on random loopback ports sharing both
(each its own empty storage.path, its cluster.peer_url its own address),
and haproxy in front (roundrobin).

    c = Cluster(test, ceph, redis, n=3, upstream_url={"quay": proxy.url},
                lease="2s")
    c.replicas[i]                 lib.mirror.Mirror (started)
    c.lb_url / c.lb_host_port     haproxy (c.start_haproxy())
    c.restart(i, empty=True)      the replica again, with a new empty storage.path
    c.token                       the peer token (also in c.token_file)
    Cluster(..., peer_urls={0: url})  replica 0 announces another peer_url (an
                                  unreachable owner that is alive)

Everything is started with setsid and stopped by PID (the replicas through
the test's WorldTestCase, haproxy here); a fresh bucket per Cluster, so
every blob is cold.
"""

import os
import shutil
import signal
import subprocess
import time

from .registry import free_port

__all__ = ["Cluster", "HAProxy", "haproxy_available"]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_available():
    return os.access(HAPROXY, os.X_OK)


class HAProxy:
    """haproxy on a random loopback port, roundrobin over `backends`
    ("host:port" each), its config written here, stopped by its PID."""

    def __init__(self, workdir, log_path, backends):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.log_path = log_path
        self.backends = list(backends)
        self.port = free_port()
        self.proc = None

    @property
    def host_port(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "http://" + self.host_port

    def start(self, timeout=10):
        conf = os.path.join(self.dir, "haproxy.cfg")
        lines = ["global", "  maxconn 512", "defaults", "  mode http",
                 "  timeout connect 2s", "  timeout client 120s", "  timeout server 120s",
                 "frontend fe", "  bind 127.0.0.1:%d" % self.port, "  default_backend be",
                 "backend be", "  balance roundrobin"]
        for i, b in enumerate(self.backends):
            lines.append("  server r%d %s" % (i, b))
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", conf], stdout=logf, stderr=logf,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        import socket
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited with %s (see %s)" % (self.proc.returncode,
                                                                          self.log_path))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not listen")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)   # by PID
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class Cluster:
    seq = 0

    def __init__(self, test, ceph, redis, n=3, upstream_url=None, lease="2s", extra=None,
                 peer_urls=None):
        Cluster.seq += 1
        self.test = test
        self.w = test.w
        self.ceph = ceph
        self.redis = redis
        self.bucket = "om-cl-%d-%d" % (os.getpid(), Cluster.seq)
        ceph.client().create_bucket(self.bucket)
        self.dir = os.path.join(self.w.dir, "cluster-%d" % Cluster.seq)
        os.makedirs(self.dir, exist_ok=True)
        self.token = "peer-secret-%d-%d" % (os.getpid(), Cluster.seq)
        self.token_file = os.path.join(self.dir, "peer.token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.upstream_url = upstream_url or {}
        self.lease = lease
        self.extra = extra or {}
        self.peer_urls = peer_urls or {}   # replica index -> a peer_url of its own (faults)
        self.replicas = []
        self.haproxy = None
        self.restarts = 0
        for i in range(n):
            self.replicas.append(self._start(i))

    def config(self, port, i=None):
        cfg = {
            "listen": "127.0.0.1:%d" % port,
            "storage": {"backend": "s3",
                        "s3": {"endpoint": self.ceph.endpoint, "bucket": self.bucket,
                               "prefix": "mirror", "access_key": self.ceph.access_key,
                               "secret_key": self.ceph.secret_key, "path_style": True,
                               "part_size": "5MiB"}},
            "cluster": {"redis": self.redis.url,
                        "peer_url": self.peer_urls.get(i) or "http://127.0.0.1:%d" % port,
                        "peer_token_file": self.token_file, "lease": self.lease},
        }
        for k, v in self.extra.items():
            cfg[k] = v
        return cfg

    def _start(self, i, port=None):
        self.restarts += 1
        port = port or free_port()
        storage = os.path.join(self.dir, "r%d-%d" % (i, self.restarts))
        return self.test.mirror(upstream_url=self.upstream_url, extra=self.config(port, i),
                                storage=storage)

    def restart(self, i, empty=True):
        """Replica i again on its port; a new empty storage.path when empty."""
        m = self.replicas[i]
        m.stop()
        if empty:
            self.replicas[i] = self._start(i, port=m.port)
        else:
            m.start()
        return self.replicas[i]

    def start_haproxy(self):
        self.haproxy = HAProxy(os.path.join(self.dir, "haproxy"),
                               os.path.join(self.w.log_dir, "haproxy-%d.log" % Cluster.seq),
                               [m.host_port for m in self.replicas]).start()
        self.test.addCleanup(self.haproxy.stop)
        return self.haproxy

    @property
    def lb_url(self):
        return self.haproxy.url

    def metric(self, m, name):
        """The value of an unlabelled metric of replica m (0 when absent)."""
        for line in m.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0
