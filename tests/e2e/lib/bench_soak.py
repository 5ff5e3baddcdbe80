"""The soak: many concurrent clients against one running mirror for a fixed
time, mixing cache hits, misses and Range requests, every answer checked
byte for byte; the mirror's RSS and open file descriptors sampled from
/proc/PID while it runs.  Used by bench/soak.py (10 minutes, by hand) and
tests/e2e/test_soak.py (60 seconds, in CI).

    from lib.bench_soak import Soak
    s = Soak(world, mirror, seconds=60, clients=200, log=print)
    res = s.run()             # dict, see Soak.run()
    res['errors'], res['rss'], res['fds'], res['counts']

What the clients do (each a thread with one keep-alive connection,
reconnecting after an error; weights in ACTIONS):
  hit     an image cached before the run (or pulled during it): the
          manifest by tag or by digest (an index: one platform's manifest
          too), then 1-3 of its blobs; digests and bytes checked.
  miss    an image that is not cached yet: the pool pushed before the run
          and never pulled, then the images a pusher thread pushes to the
          upstreams during the run (one every `push_every` s, some with a
          4 MiB layer); a whole pull.  Several clients often pick the same
          fresh image: coalesced downloads.  When none is left: a hit.
  range   Range requests (bytes=a-b, bytes=a-, bytes=-n) on blobs of
          cached images, and on fresh ones (answered from a download in
          flight); the 206, Content-Range and bytes checked.
  head    HEAD of a manifest by tag or of a blob.
  missing a tag that does not exist: 404 MANIFEST_UNKNOWN is the right
          answer (exercises the upstream round trip and negative answers).

Every answer that is not exactly right (status, digest header, bytes,
Content-Range), every exception and every timeout is an error.

Sampling: RSS and fds (split into client connections, other sockets and
files) every `sample_every` s; and every `checkpoint_every` s a quiescent
checkpoint: the clients finish what they are doing and wait (connections
kept), and with nothing in flight the fds are exactly the client
connections + the upstream handle pools + the idle files.  Samples under
load also count one blob fd per response in flight (11 to 190 of them
with 200 clients), so the flatness of fds is judged at the checkpoints.

Also here: proc_status(pid), fd_count(pid), reset_hwm(pid) — used by
bench/bench.py too — and flatness(), the check "RSS and fds flat after
warm-up".
"""

import http.client
import os
import re
import random
import statistics
import threading
import time

from .images import ACCEPT_ALL, make_image, make_layer, _single, sha256_digest
from .world import canonical_name

__all__ = ["Soak", "proc_status", "fd_count", "fd_kinds", "reset_hwm", "flatness", "is_sanitized",
           "summary", "idle_problems"]

ACTIONS = (("hit", 40), ("miss", 20), ("range", 25), ("head", 10), ("missing", 5))


# ---------------------------------------------------------------------------
# /proc

def proc_status(pid):
    """{'VmRSS': KiB, 'VmHWM': KiB, 'Threads': n, ...} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.strip()
            if v.endswith(" kB"):
                out[k] = int(v[:-3])
            elif v.isdigit():
                out[k] = int(v)
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _tcp_inodes(pid):
    """{socket inode: local port} for the TCP sockets of pid's network
    namespace, listening sockets left out."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] != "0A":      # TCP_LISTEN
                        out[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    return out


def fd_kinds(pid, listen_port=None):
    """{'files': non-socket fds, 'clients': TCP sockets whose local port is
    listen_port (connections of our clients), 'sockets': every other socket
    (upstream connections, libcurl's wake-up socketpairs, the listener)}."""
    tcp = _tcp_inodes(pid) if listen_port else {}
    out = {"files": 0, "clients": 0, "sockets": 0}
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, name))
        except OSError:
            continue        # closed while we looked
        if not target.startswith("socket:["):
            out["files"] += 1
        elif listen_port and tcp.get(target[8:-1]) == listen_port:
            out["clients"] += 1
        else:
            out["sockets"] += 1
    return out


# index.db files a mirror may open after the start without growing: -wal
# and -shm of the admin view's and GC's connections (see idle_problems).
SQLITE_LAZY_FDS = 4


def file_targets(pid):
    """The non-socket fds of pid: {fd: what it points at}."""
    out = {}
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        if not target.startswith("socket:["):
            out[int(name)] = target
    return out


def reset_hwm(pid):
    """Reset VmHWM (peak RSS) to the current RSS (Linux >= 4.0)."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


def is_sanitized(binary):
    """Was the binary built with AddressSanitizer?"""
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"AddressSanitizer" in data


def flatness(samples, warmup_s, window=1, agg="median"):
    """samples [(t, value)]: those at t >= warmup_s, grouped into windows of
    `window` consecutive samples, each window replaced by its `agg` ("median"
    or "min").  For fds use window > 1 and "min": one sample also counts
    the responses in flight at that instant (each holds a blob fd); the
    floor of a window is what stays open whatever is in flight, and a leak
    raises it.  Returns the median of those values, their min and max, the
    largest deviation from the median (a fraction) and the drift (median of
    the last third minus median of the first third, a fraction of the
    median)."""
    post = [v for t, v in samples if t >= warmup_s]
    f = min if agg == "min" else statistics.median
    if window > 1:
        post = [f(post[i:i + window]) for i in range(0, len(post), window)
                if len(post[i:i + window]) * 2 > window]
    if len(post) < 3:
        return {"n": len(post), "median": None, "min": None, "max": None, "dev": None,
                "drift": None, "window": window, "agg": agg}
    med = statistics.median(post)
    k = max(1, len(post) // 3)
    first, last = statistics.median(post[:k]), statistics.median(post[-k:])
    dev = max(abs(v - med) for v in post) / med if med else 0.0
    return {"n": len(post), "median": med, "min": min(post), "max": max(post), "dev": dev,
            "drift": (last - first) / med if med else 0.0, "window": window, "agg": agg}


# ---------------------------------------------------------------------------
# the soak

class SoakError(Exception):
    pass


class _Pool:
    """Images by state, shared by the client threads."""

    def __init__(self, seed):
        self.lock = threading.Lock()
        self.cached = []          # Images pulled completely (hits)
        self.fresh = []           # pushed, not pulled completely yet (misses)
        self.rng = random.Random(seed)

    def add_cached(self, img):
        with self.lock:
            if img not in self.cached:
                self.cached.append(img)
            if img in self.fresh:
                self.fresh.remove(img)

    def add_fresh(self, img):
        with self.lock:
            self.fresh.append(img)

    def pick(self, rng, fresh):
        with self.lock:
            lst = self.fresh if fresh else self.cached
            if not lst:
                return None
            # newest fresh images first: several clients pick the same one
            # (coalesced downloads); cached ones uniformly
            return lst[-1 - min(len(lst) - 1, int(rng.expovariate(0.7)))] if fresh else rng.choice(lst)


class Soak:
    def __init__(self, world, mirror, seconds=60, clients=200, warmup_s=None, sample_every=None,
                 push_every=1.0, pool=12, seed=1, log=None, timeout=60, fd_window=5,
                 actions=None, checkpoint_every=None):
        self.w = world
        self.m = mirror
        self.seconds = seconds
        self.clients = clients
        self.warmup_s = warmup_s if warmup_s is not None else max(10.0, seconds * 0.2)
        self.sample_every = sample_every or (1.0 if seconds <= 120 else 2.0)
        self.fd_window = fd_window
        self.checkpoint_every = checkpoint_every or (10.0 if seconds <= 120 else 30.0)
        self.gate = threading.Condition()
        self.gate_open = True
        self.active = 0           # client actions in flight (under self.gate)
        self.quiet = []           # samples taken at checkpoints
        # {action: weight}; default ACTIONS.  A diagnostic knob: one action
        # alone shows which kind of request a growth comes from.
        self.actions = dict(actions) if actions else dict(ACTIONS)
        self.push_every = push_every
        self.pool_n = pool
        self.seed = seed
        self.log = log or (lambda s: None)
        self.timeout = timeout
        self.pool = _Pool(seed)
        self.errors = []
        self.err_lock = threading.Lock()
        self.counts = {}
        self.count_lock = threading.Lock()
        self.samples = []          # (t, rss KiB, fds, threads, requests so far,
                                   #  client sockets, other sockets, files)
        self.n_pushed = 0
        self.stop = threading.Event()
        self.t0 = None

    # -- setup -------------------------------------------------------------
    def _new_image(self, i, big=False):
        reg = ("hub", "k8s", "quay")[i % 3]
        repo = ("soak/img%04d" if reg != "k8s" else "soak-img%04d") % i
        rng = random.Random(self.seed * 100003 + i)
        if big:
            layers = [make_layer(rng, [("data/big.bin", 4 * 1024 * 1024)], level=0),
                      make_layer(rng, [("etc/x%d" % i, 3000)])]
            return _single("soak%d" % i, repo, "v1", reg, "oci" if i % 2 else "docker", layers)
        kind = ("docker", "oci", "docker", "oci-index")[i % 4]
        return make_image("soak%d" % i, repo, "v1", reg, kind, seed=rng.getrandbits(32),
                          n_layers=2, files_per_layer=3)

    def prepare(self):
        """Cache the World's fixtures through the mirror (the hits), push the
        pool of not-yet-cached images (the first misses)."""
        for key, img in sorted(self.w.fx.items()):
            self._pull(self._conn(), img, full=True)
            self.pool.add_cached(img)
        for i in range(self.pool_n):
            img = self._new_image(i, big=(i % 4 == 1))
            self.w.push(img)
            self.pool.add_fresh(img)
        self.n_pushed = self.pool_n
        for r in self.w.reg.values():
            r.reset_counts()

    # -- helpers -----------------------------------------------------------
    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.m.port, timeout=self.timeout)

    def _count(self, k):
        with self.count_lock:
            self.counts[k] = self.counts.get(k, 0) + 1

    def _error(self, action, msg):
        with self.err_lock:
            self.errors.append("t=%.1fs %s: %s" % (time.monotonic() - (self.t0 or time.monotonic()),
                                                    action, msg))

    def _req(self, conn, method, path, headers=None):
        h = {"User-Agent": "om-soak"}
        h.update(headers or {})
        conn.request(method, path, headers=h)
        r = conn.getresponse()
        body = r.read()
        self._count("requests")
        return r, body

    def _manifest(self, conn, name, img, by_digest, head=False):
        ref = img.digest if by_digest else img.tag
        r, body = self._req(conn, "HEAD" if head else "GET", "/v2/%s/manifests/%s" % (name, ref),
                            {"Accept": ACCEPT_ALL})
        if r.status != 200:
            raise SoakError("manifest %s:%s → %d %r" % (name, ref, r.status, body[:200]))
        if r.getheader("Docker-Content-Digest") != img.digest:
            raise SoakError("manifest %s:%s digest header %s, want %s" % (
                name, ref, r.getheader("Docker-Content-Digest"), img.digest))
        if head:
            if r.getheader("Content-Length") != str(len(img.manifest_bytes)):
                raise SoakError("HEAD manifest %s: Content-Length %s" % (name, r.getheader("Content-Length")))
        elif body != img.manifest_bytes:
            raise SoakError("manifest %s:%s: bytes differ" % (name, ref))

    def _blob(self, conn, name, img, d):
        r, body = self._req(conn, "GET", "/v2/%s/blobs/%s" % (name, d))
        if r.status != 200:
            raise SoakError("blob %s → %d %r" % (d, r.status, body[:200]))
        if sha256_digest(body) != d:
            raise SoakError("blob %s: %d bytes hash to %s" % (d, len(body), sha256_digest(body)))

    def _pull(self, conn, img, full, rng=None):
        """Manifest (by tag or digest), for an index one platform (all with
        full), then all blobs (full) or 1-3 of them."""
        rng = rng or random
        name = canonical_name(img)
        self._manifest(conn, name, img, by_digest=rng.random() < 0.3)
        targets = [img]
        if img.children:
            kids = list(img.children.values())
            targets = kids if full else [rng.choice(kids)]
            for c in targets:
                self._manifest(conn, name, c, by_digest=True)
        for c in targets:
            ds = list(c.blobs) if full else rng.sample(c.blobs, min(len(c.blobs), rng.randint(1, 3)))
            for d in ds:
                self._blob(conn, name, img, d)

    def _range(self, conn, img, rng):
        name = canonical_name(img)
        d = rng.choice(img.blobs)
        data = img.layer_bytes[d]
        n = len(data)
        kind = rng.random()
        if kind < 0.7:
            a = rng.randrange(n)
            b = min(n - 1, a + rng.randint(0, 256 * 1024))
            hdr, first, last = "bytes=%d-%d" % (a, b), a, b
        elif kind < 0.85:
            a = rng.randrange(n)
            hdr, first, last = "bytes=%d-" % a, a, n - 1
        else:
            k = rng.randint(1, n)
            hdr, first, last = "bytes=-%d" % k, n - k, n - 1
        r, body = self._req(conn, "GET", "/v2/%s/blobs/%s" % (name, d), {"Range": hdr})
        want_cr = "bytes %d-%d/%d" % (first, last, n)
        if r.status != 206 or r.getheader("Content-Range") != want_cr:
            raise SoakError("Range %s of %s (%d bytes) → %d, Content-Range %r (want %r) %r" % (
                hdr, d, n, r.status, r.getheader("Content-Range"), want_cr, body[:120]))
        if body != data[first:last + 1]:
            raise SoakError("Range %s of %s: bytes differ" % (hdr, d))

    def _head(self, conn, img, rng):
        name = canonical_name(img)
        if rng.random() < 0.5:
            self._manifest(conn, name, img, by_digest=False, head=True)
            return
        d = rng.choice(img.blobs)
        r, _ = self._req(conn, "HEAD", "/v2/%s/blobs/%s" % (name, d))
        if r.status != 200 or r.getheader("Content-Length") != str(len(img.layer_bytes[d])):
            raise SoakError("HEAD blob %s → %d, Content-Length %s" % (d, r.status, r.getheader("Content-Length")))

    def _missing(self, conn, img, rng):
        name = canonical_name(img)
        tag = "no-such-tag-%d" % rng.randrange(50)
        r, body = self._req(conn, "GET", "/v2/%s/manifests/%s" % (name, tag), {"Accept": ACCEPT_ALL})
        if r.status != 404 or b"MANIFEST_UNKNOWN" not in body:
            raise SoakError("missing tag %s:%s → %d %r" % (name, tag, r.status, body[:200]))

    # -- threads -----------------------------------------------------------
    def _client(self, idx):
        rng = random.Random(self.seed * 7919 + idx)
        names = list(self.actions)
        weights = [self.actions[a] for a in names]
        conn = self._conn()
        deadline = self.t0 + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not self._enter():
                break
            action = rng.choices(names, weights)[0]
            try:
                if action == "miss":
                    img = self.pool.pick(rng, fresh=True)
                    if img is None:
                        action = "hit"
                    else:
                        self._pull(conn, img, full=True, rng=rng)
                        self.pool.add_cached(img)
                if action == "range":
                    fresh = rng.random() < 0.2
                    img = self.pool.pick(rng, fresh=fresh) or self.pool.pick(rng, fresh=False)
                    self._range(conn, img, rng)
                elif action == "hit":
                    self._pull(conn, self.pool.pick(rng, fresh=False), full=False, rng=rng)
                elif action == "head":
                    self._head(conn, self.pool.pick(rng, fresh=False), rng)
                elif action == "missing":
                    self._missing(conn, self.pool.pick(rng, fresh=False), rng)
                self._count(action)
            except Exception as e:  # every failure is counted, then go on
                self._error(action, "%s: %s" % (type(e).__name__, e))
                conn.close()
                conn = self._conn()
                self.stop.wait(0.05)
            finally:
                self._leave()
        conn.close()

    # -- quiescent checkpoints ---------------------------------------------
    # Every checkpoint_every seconds the sampler closes the gate: clients
    # finish the action they are in and wait (keeping their connections);
    # once none is in flight, the mirror's fds are exactly the client
    # connections, the upstream handle pools and its idle files, and a leak
    # of any kind can only raise that.  Then the gate opens again (all 200
    # clients at once: a burst, which is fine to have too).
    def _enter(self):
        """Wait for the gate (bounded by the deadline); count us in flight."""
        deadline = self.t0 + self.seconds
        with self.gate:
            while not self.gate_open:
                if self.stop.is_set() or time.monotonic() >= deadline:
                    return False
                self.gate.wait(0.2)
            self.active += 1
        return True

    def _leave(self):
        with self.gate:
            self.active -= 1
            self.gate.notify_all()

    def _checkpoint(self):
        """Close the gate, wait for no request in flight (at most `timeout`
        s), let the mirror close what those requests held, sample, reopen."""
        t = time.monotonic()
        with self.gate:
            self.gate_open = False
            ok = self.gate.wait_for(lambda: self.active == 0, timeout=self.timeout)
        try:
            if not ok:
                self._error("checkpoint", "requests still in flight after %d s" % self.timeout)
                return
            time.sleep(0.3)
            self._sample()
            s = self.samples.pop()
            self.quiet.append(s)
            self.log("soak t=%5.1fs QUIESCENT rss=%6d KiB fds=%4d (clients %d, other sockets %d, "
                     "files %d) after %.2f s pause" % (s[0], s[1], s[2], s[5], s[6], s[7],
                                                      time.monotonic() - t))
        finally:
            with self.gate:
                self.gate_open = True
                self.gate.notify_all()

    def _pusher(self):
        deadline = self.t0 + self.seconds - 2
        i = self.pool_n
        while not self.stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                img = self._new_image(i, big=(i % 5 == 0))
                self.w.push(img)
                self.pool.add_fresh(img)
                self.n_pushed += 1
            except Exception as e:
                self._error("push", "%s: %s" % (type(e).__name__, e))
            i += 1
            self.stop.wait(max(0.0, self.push_every - (time.monotonic() - t)))

    def _downloads_in_flight(self):
        """ocimirror_downloads_in_flight from /metrics (0 if unreadable)."""
        try:
            for line in self.m.get("/metrics", timeout=5).text.splitlines():
                if line.startswith("ocimirror_downloads_in_flight "):
                    return int(float(line.split()[1]))
        except OSError:
            pass
        return 0

    def _sample(self):
        st = proc_status(self.m.pid)
        k = fd_kinds(self.m.pid, self.m.port)
        with self.count_lock:
            reqs = self.counts.get("requests", 0)
        self.samples.append((time.monotonic() - self.t0, st["VmRSS"],
                             k["files"] + k["clients"] + k["sockets"], st.get("Threads", 0), reqs,
                             k["clients"], k["sockets"], k["files"]))

    def _sampler(self):
        deadline = self.t0 + self.seconds
        next_cp = self.t0 + self.checkpoint_every
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if time.monotonic() >= next_cp and time.monotonic() < deadline - 1:
                    self._checkpoint()
                    next_cp = time.monotonic() + self.checkpoint_every
                self._sample()
                s = self.samples[-1]
                self.log("soak t=%5.1fs rss=%6d KiB fds=%4d (clients %d, other sockets %d, "
                         "files %d) threads=%3d requests=%d errors=%d" % (
                             s[0], s[1], s[2], s[5], s[6], s[7], s[3], s[4], len(self.errors)))
            except (OSError, KeyError) as e:
                self._error("sample", "mirror gone? %r" % (e,))
                self.stop.set()
            self.stop.wait(self.sample_every)

    def run(self):
        """Run the soak; returns {'errors': [..], 'counts': {...}, 'samples':
        [(t, rss KiB, fds, threads, requests, client sockets, other sockets,
        files)] while the
        clients ran, 'initial': the same just before they started (idle),
        'final': the same one second after they stopped, 'rss': flatness, 'fds':
        flatness, 'pushed': n, 'upstream_blob_gets': n, 'seconds': s,
        'clients': n, 'warmup_s': s, 'alive': bool}."""
        self.t0 = time.monotonic()
        self._sample()            # idle, before any client connects
        initial = self.samples.pop()
        self.initial_files = file_targets(self.m.pid)
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                   for i in range(self.clients)]
        threads.append(threading.Thread(target=self._pusher, daemon=True))
        sampler = threading.Thread(target=self._sampler, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        end = self.t0 + self.seconds + self.timeout + 30   # bounded join
        for t in threads:
            t.join(max(0.1, end - time.monotonic()))
        stuck = sum(1 for t in threads if t.is_alive())
        self.stop.set()
        sampler.join(self.sample_every + 5)
        if stuck:
            self._error("join", "%d client threads still running %d s after the end" % (
                stuck, self.timeout + 30))
        alive = self.m.alive
        during = list(self.samples)
        final = None
        if alive:
            # the final, idle sample: once no download is in flight (at most
            # 10 s) and the clients' connections are gone (the mirror sees
            # them close at its next poll; at most 5 s)
            try:
                # (a download a client started and left holds its ingest
                # file until it commits)
                for _ in range(100):
                    if self._downloads_in_flight() == 0:
                        break
                    time.sleep(0.1)
                for _ in range(50):
                    time.sleep(0.1)
                    if fd_kinds(self.m.pid, self.m.port)["clients"] == 0:
                        break
                self._sample()
                final = self.samples.pop()
                self.final_files = file_targets(self.m.pid)
            except (OSError, KeyError):
                alive = False
        up_gets = sum(r.count("GET", r"/blobs/", settle=0.3) for r in self.w.reg.values())
        return {
            "errors": list(self.errors),
            "counts": dict(self.counts),
            "samples": during,
            "initial": initial,
            "quiescent": list(self.quiet),
            "fds": flatness([(q[0], q[2]) for q in self.quiet], self.warmup_s),
            "final": final,
            "new_files": sorted("%d -> %s" % (fd, t) for fd, t in
                                getattr(self, "final_files", {}).items()
                                if getattr(self, "initial_files", {}).get(fd) != t),
            "rss": flatness([(s[0], s[1]) for s in during], self.warmup_s),
            # fds: at the quiescent checkpoints (the flatness that counts);
            # under load (window medians) for the record
            "fds_median": flatness([(s[0], s[2]) for s in during], self.warmup_s,
                                   window=self.fd_window),
            "max_files": max((s[7] for s in during), default=None),
            "max_other_sockets": max((s[6] for s in during), default=None),
            "pushed": self.n_pushed,
            "upstream_blob_gets": up_gets,
            "seconds": self.seconds,
            "clients": self.clients,
            "warmup_s": self.warmup_s,
            "alive": alive,
        }


def idle_problems(res, socket_slack):
    """What is wrong with the idle fds after the run compared with before:
    client connections left open, file fds that did not go away, more
    other sockets than the slack allows.  [] when all is well."""
    ini, fin = res.get("initial"), res.get("final")
    if not ini or not fin:
        return ["no idle sample before or after the run"]
    out = []
    if fin[5] != 0:
        out.append("%d client connections still open 5 s after the clients closed them" % fin[5])
    # SQLite opens a connection's -wal and -shm files at its first read, not
    # when the connection opens: the admin view's connection at the first
    # /metrics or /api call, GC's at its first run (gc_interval after the
    # start).  Those few are not growth; any other new file is.
    new = res.get("new_files") or []
    lazy = [f for f in new if re.search(r"/index\.db(-wal|-shm)?$", f)]
    if fin[7] > ini[7] + min(len(lazy), SQLITE_LAZY_FDS):
        out.append("file fds: %d idle before the run, %d after (new: %s)" % (
            ini[7], fin[7], ", ".join(new or ["?"])))
    if fin[6] > ini[6] + socket_slack:
        out.append("other sockets: %d idle before the run, %d after (slack %d)" % (
            ini[6], fin[6], socket_slack))
    return out


def summary(res):
    """A few lines for humans."""
    c = res["counts"]
    rss, fds = res["rss"], res["fds"]

    def fl(f, unit):
        if f["median"] is None:
            return "too few samples"
        return "median %d %s, min %d, max %d, largest deviation %.1f%%, drift %+.1f%% (%d samples)" % (
            f["median"], unit, f["min"], f["max"], f["dev"] * 100, f["drift"] * 100, f["n"])
    lines = [
        "soak: %d clients for %d s (warm-up %d s): %d requests (%.0f/s), %d errors; mirror %s" % (
            res["clients"], res["seconds"], res["warmup_s"], c.get("requests", 0),
            c.get("requests", 0) / max(1, res["seconds"]), len(res["errors"]),
            "alive" if res["alive"] else "DEAD"),
        "actions: " + ", ".join("%s %d" % (k, c.get(k, 0)) for k, _ in ACTIONS),
        "images pushed during/before the run: %d; blob GETs that reached the upstreams: %d" % (
            res["pushed"], res["upstream_blob_gets"]),
        "RSS after warm-up: " + fl(rss, "KiB"),
        "fds after warm-up, at the quiescent checkpoints: " + fl(fds, "fds"),
        "fds after warm-up, under load (medians of %d-sample windows): " % res["fds_median"]["window"] +
        fl(res["fds_median"], "fds"),
        "most fds seen: %s files (blob fds of responses in flight, index, log), %s other sockets "
        "(upstream connections, libcurl wake-up socketpairs)" % (res["max_files"], res["max_other_sockets"]),
    ]
    ini, fin = res.get("initial"), res.get("final")
    if ini and fin:
        lines.append("idle before the clients: %d fds (%d client connections, %d other sockets, "
                     "%d files), RSS %d KiB" % (ini[2], ini[5], ini[6], ini[7], ini[1]))
        lines.append("idle after them:        %d fds (%d client connections, %d other sockets, "
                     "%d files), RSS %d KiB" % (fin[2], fin[5], fin[6], fin[7], fin[1]))
    for e in res["errors"][:10]:
        lines.append("error: " + e)
    return "\n".join(lines)
