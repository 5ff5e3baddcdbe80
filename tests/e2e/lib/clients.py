"""Drive the real container clients of this machine against a registry mirror.

The four clients are skopeo, podman, containerd + ctr and dockerd + docker
(Debian's packages). Each one pulls through a mirror on 127.0.0.1 and reports
the digest it ended up with, so a test can compare it with the fixture.

Why it is built this way:
- Every client gets its own temporary directory for everything it would
  otherwise keep in a system location: image store, state, sockets, configs,
  signature policy, auth file, temp files. A new client object therefore has a
  truly fresh store, and runs never share a cache. The directory is removed
  when the client is closed (after unmounting anything left under it).
- Every process is started in its own session (start_new_session=True) and
  stopped by process group with bounded waits. The daemons (containerd,
  dockerd) also get a private mount namespace (unshare --mount), so a mount
  they make cannot outlive them or leak into the caller's namespace.
- The fallbacks real clients have (podman's primary location, containerd's
  `server`, Docker's fallback to Docker Hub) point at a refused loopback port
  or at nothing, and all of this runs inside the loopback-only network
  namespace of scripts/netns-run: a mirror failure fails fast and visibly and
  no byte leaves the machine. `require_netns()` refuses to run otherwise.
- A failing client raises ClientError with the command line, exit status and
  the tail of its output and daemon log: the exact error text is what tells
  which quirk of the mirror the client did not accept.

Python 3.11 standard library only.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# Upper bounds for every wait in this module, in seconds.
COMMAND_TIMEOUT = 180.0
DAEMON_START_TIMEOUT = 60.0
DAEMON_STOP_TIMEOUT = 20.0

# A loopback port nothing listens on: the "real registry" of every client
# config, so that a fallback is refused at once instead of leaving the machine.
REFUSED = "127.0.0.1:1"

DOCKER_CLI = "/usr/bin/docker"  # Debian's CLI, same release as Debian's dockerd

# Keep at most this much of a command's output or a log in an error message.
_TAIL_CHARS = 6000


class ClientError(Exception):
    """A client command or daemon failed; str() carries everything needed to see why."""

    def __init__(self, what, argv=None, rc=None, output="", log=""):
        self.what = what
        self.argv = list(argv) if argv else []
        self.rc = rc
        self.output = output
        self.log = log
        parts = [what]
        if self.argv:
            parts.append("command: " + " ".join(self.argv))
        if rc is not None:
            parts.append(f"exit status: {rc}")
        # The daemon log first and shorter: the command's own error text is
        # what matters most, so it comes last, where a reader looks first.
        if log:
            parts.append("daemon log (tail):\n" + _tail(log, _TAIL_CHARS // 2))
        if output:
            parts.append("output (tail):\n" + _tail(output))
        super().__init__("\n".join(parts))


@dataclasses.dataclass
class Result:
    """One finished command."""
    argv: list
    rc: int
    out: str
    err: str
    seconds: float
    out_bytes: bytes = b""     # stdout undecoded (a digest is over exact bytes)

    @property
    def output(self):
        return self.out + ("\n" if self.out and self.err else "") + self.err


@dataclasses.dataclass
class PullResult:
    """What a client pulled: the manifest (or index) digest it recorded for the image."""
    image: str
    digest: str
    seconds: float
    output: str
    repo_digests: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CopyResult:
    """What `skopeo copy ... dir:DEST` produced, re-checked after the copy."""
    ref: str
    digest: str            # sha256 of the manifest bytes the registry serves for ref
    manifest: bytes        # those bytes (skopeo inspect --raw)
    dest_dir: str
    dir_manifest_digest: str   # sha256 of DEST/manifest.json
    blobs: list            # digests of every blob file in DEST, each re-hashed
    instance_manifests: list   # digests of DEST/<hex>.manifest.json (copy --all of an index)
    seconds: float
    output: str


def _tail(text, n=_TAIL_CHARS):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= n else "...\n" + text[-n:]


def sha256_digest(data):
    """'sha256:<hex>' of bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def require_netns():
    """Refuse to drive a client outside the loopback-only namespace.

    Clients fall back to real registries when a mirror fails; outside
    scripts/netns-run that fallback could leave the machine."""
    # /sys/class/net shows the namespace /sys was mounted in, not ours, so
    # trust the marker netns-run exports.
    if os.environ.get("OM_IN_NETNS") != "1":
        raise ClientError("refusing to run a real client outside scripts/netns-run "
                          "(OM_IN_NETNS is not 1)")


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_stat(pid):
    """(ppid, pgid, start time) of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[2]), int(rest[19])


def _all_stats():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st:
                out[int(name)] = st
    return out


def _descendants(pid):
    """[(pid, start time)] of every live descendant of pid (a daemon may start
    helpers in their own sessions); the start time tells a reused pid apart."""
    stats = _all_stats()
    children = {}
    for p, st in stats.items():
        children.setdefault(st[0], []).append(p)
    found, todo = [], [pid]
    while todo and len(found) < 10000:
        for c in children.get(todo.pop(), []):
            found.append((c, stats[c][2]))
            todo.append(c)
    return found


def _kill_leftovers(pgid, family=()):
    """SIGKILL what is left of a finished command's process group, and of the
    given (pid, start time) descendants, touching only processes that are
    still the ones we started (same group, same start time)."""
    for st in _all_stats().values():
        if st[1] == pgid:
            _killpg(pgid, signal.SIGKILL)
            break
    for p, start in family:
        st = _read_stat(p)
        if st and st[2] == start:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run(argv, *, env=None, timeout=COMMAND_TIMEOUT, check=True, what=None):
    """Run a command in its own session with a bounded wait; kill its group on timeout.

    Returns a Result; raises ClientError on timeout, or on a non-zero exit when check."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise ClientError(f"{what or argv[0]}: timed out after {timeout:.0f}s", argv, None,
                          (out + err).decode("utf-8", "replace"))
    finally:
        # Anything the command left behind in its group goes with it.
        _kill_leftovers(proc.pid)
    res = Result(list(argv), proc.returncode, out.decode("utf-8", "replace"),
                 err.decode("utf-8", "replace"), time.monotonic() - start, out)
    if check and res.rc != 0:
        raise ClientError(f"{what or argv[0]} failed", argv, res.rc, res.output)
    return res


def _mounts_under(path):
    """Mount points at or below path, deepest first (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                mp = fields[4].encode().decode("unicode_escape")  # \040 etc.
                if mp == path or mp.startswith(path + "/"):
                    found.append(mp)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def remove_tree(path):
    """Unmount anything left below path, then delete it (never across a mount)."""
    if not path or not os.path.exists(path):
        return
    for mp in _mounts_under(path):
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    if _mounts_under(path):
        raise ClientError(f"cannot clean {path}: still mounted: {_mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def _write_policy(path):
    """A signature policy that accepts anything: the tests check digests, not signatures."""
    return _write(path, json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))


def _copy_log(src, log_dir, name):
    """Keep a daemon's log in log_dir: name, or name-2, name-3 ... so that a
    second daemon of the same kind (a second round) does not overwrite it."""
    if not (log_dir and src and os.path.exists(src)):
        return
    os.makedirs(log_dir, exist_ok=True)
    base, ext = os.path.splitext(name)
    dst = os.path.join(log_dir, name)
    n = 1
    while os.path.exists(dst) and n < 1000:
        n += 1
        dst = os.path.join(log_dir, f"{base}-{n}{ext}")
    shutil.copyfile(src, dst)


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class _Workdir:
    """A temporary directory owned by one client; closing it removes it."""

    def __init__(self, prefix):
        # Short paths under /tmp: unix socket paths are limited to 107 bytes.
        self.path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")

    def sub(self, *parts):
        return os.path.join(self.path, *parts)

    def close(self):
        remove_tree(self.path)
        self.path = None


# --------------------------------------------------------------------------
# skopeo

def cert_dir_from_ca(ca_file, cert_dir):
    """A containers-style cert dir (DIR/ca.crt) for --src-cert-dir / --cert-dir."""
    os.makedirs(cert_dir, exist_ok=True)
    shutil.copyfile(ca_file, os.path.join(cert_dir, "ca.crt"))
    return cert_dir


def _skopeo_setup(work):
    """Global skopeo flags and env that keep it off the system's configs."""
    policy = _write_policy(work.sub("policy.json"))
    regconf = _write(work.sub("registries.conf"), "unqualified-search-registries = []\n")
    auth = _write(work.sub("auth.json"), "{}\n", 0o600)
    regd = work.sub("registries.d")
    os.makedirs(regd, exist_ok=True)
    tmp = work.sub("tmp")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=regconf, REGISTRY_AUTH_FILE=auth,
               TMPDIR=tmp, HOME=work.path)
    flags = ["--policy", policy, "--registries.d", regd, "--tmpdir", tmp]
    return flags, env


def _docker_ref(ref):
    return ref if ref.startswith("docker://") else "docker://" + ref


def skopeo_inspect_raw(ref, tls_verify=False, ca_dir=None, timeout=COMMAND_TIMEOUT, creds=None):
    """The manifest bytes the registry serves for ref (`skopeo inspect --raw`);
    creds "USER:PASSWORD" for a registry that wants Basic auth."""
    require_netns()
    work = _Workdir("om-skopeo-")
    try:
        flags, env = _skopeo_setup(work)
        argv = ["skopeo", *flags, "inspect", "--raw"] + (["--creds", creds] if creds else [])
        argv += ["--cert-dir", ca_dir] if ca_dir else [f"--tls-verify={'true' if tls_verify else 'false'}"]
        argv.append(_docker_ref(ref))
        return run(argv, env=env, timeout=timeout, what="skopeo inspect --raw").out_bytes
    finally:
        work.close()


def verify_dir_layout(dest_dir):
    """Re-hash every blob of a skopeo `dir:` layout against its file name.

    Returns (dir_manifest_digest, blob digests, instance manifest digests)."""
    blobs, instances = [], []
    for name in sorted(os.listdir(dest_dir)):
        path = os.path.join(dest_dir, name)
        if name in ("manifest.json", "version") or name.startswith("signature-"):
            continue
        if name.endswith(".manifest.json"):
            want = "sha256:" + name[:-len(".manifest.json")]
            got = file_digest(path)
            if got != want:
                raise ClientError(f"{path}: instance manifest hashes to {got}, named {want}")
            instances.append(got)
            continue
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            got = file_digest(path)
            if got != "sha256:" + name:
                raise ClientError(f"{path}: blob hashes to {got}")
            blobs.append(got)
    return file_digest(os.path.join(dest_dir, "manifest.json")), blobs, instances


def skopeo_copy(ref, dest_dir, tls_verify=False, all_platforms=False, ca_dir=None,
                timeout=COMMAND_TIMEOUT, debug=False, creds=None):
    """`skopeo copy docker://REF dir:DEST`; REF is 'HOST:PORT/name:tag' (or docker://...).

    skopeo checks every blob's digest as it copies; the result is re-checked here
    (verify_dir_layout) and carries the manifest digest from `skopeo inspect --raw`."""
    require_netns()
    if os.path.exists(dest_dir) and os.listdir(dest_dir):
        raise ClientError(f"skopeo_copy: {dest_dir} is not empty")
    work = _Workdir("om-skopeo-")
    try:
        flags, env = _skopeo_setup(work)
        argv = ["skopeo", *flags] + (["--debug"] if debug else []) + ["copy"]
        if all_platforms:
            argv.append("--all")
        if creds:
            argv += ["--src-creds", creds]
        argv += ["--src-cert-dir", ca_dir] if ca_dir else [f"--src-tls-verify={'true' if tls_verify else 'false'}"]
        argv += [_docker_ref(ref), "dir:" + dest_dir]
        res = run(argv, env=env, timeout=timeout, what="skopeo copy")
    finally:
        work.close()
    manifest = skopeo_inspect_raw(ref, tls_verify=tls_verify, ca_dir=ca_dir, timeout=timeout,
                                  creds=creds)
    dir_digest, blobs, instances = verify_dir_layout(dest_dir)
    return CopyResult(ref=ref, digest=sha256_digest(manifest), manifest=manifest, dest_dir=dest_dir,
                      dir_manifest_digest=dir_digest, blobs=blobs, instance_manifests=instances,
                      seconds=res.seconds, output=res.output)


# --------------------------------------------------------------------------
# podman

def podman_registries_conf(mirror, registries=("docker.io",), *, path_prefixed=True,
                           primary=REFUSED, insecure=True):
    """registries.conf text sending each registry in `registries` to the mirror.

    mirror is 'HOST:PORT'. With path_prefixed the mirror location is
    'HOST:PORT/<registry>' (podman then asks for /v2/<registry>/<repo>/...);
    otherwise the mirror root (what a plain registry can serve). The primary
    location is a refused loopback port, so that a mirror failure fails fast."""
    lines = ["unqualified-search-registries = []", "short-name-mode = \"disabled\"", ""]
    for reg in registries:
        loc = f"{mirror}/{reg}" if path_prefixed else mirror
        lines += [
            "[[registry]]",
            f"prefix = \"{reg}\"",
            f"location = \"{primary}\"",
            f"insecure = {'true' if insecure else 'false'}",
            "[[registry.mirror]]",
            f"location = \"{loc}\"",
            f"insecure = {'true' if insecure else 'false'}",
            "",
        ]
    return "\n".join(lines)


class Podman:
    """podman with its own storage, configs and policy in a temp dir (no daemon)."""

    def __init__(self, registries_conf_text, ca_dir=None):
        require_netns()
        self.work = _Workdir("om-podman-")
        w = self.work
        self.root, self.runroot = w.sub("root"), w.sub("runroot")
        tmp = w.sub("tmp")
        for d in (self.root, self.runroot, tmp):
            os.makedirs(d, exist_ok=True)
        self.registries_conf = _write(w.sub("registries.conf"), registries_conf_text)
        storage = _write(w.sub("storage.conf"),
                         "[storage]\ndriver = \"vfs\"\n"
                         f"graphroot = \"{self.root}\"\nrunroot = \"{self.runroot}\"\n")
        containers = _write(w.sub("containers.conf"),
                            "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n"
                            f"image_copy_tmp_dir = \"{tmp}\"\n")
        self.policy = _write_policy(w.sub("policy.json"))
        auth = _write(w.sub("auth.json"), "{}\n", 0o600)
        self.ca_dir = ca_dir
        self.env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=self.registries_conf,
                        CONTAINERS_STORAGE_CONF=storage, CONTAINERS_CONF=containers,
                        REGISTRY_AUTH_FILE=auth, TMPDIR=tmp, HOME=w.path)
        self.flags = ["--root", self.root, "--runroot", self.runroot, "--storage-driver", "vfs",
                      "--events-backend", "none", "--cgroup-manager", "cgroupfs"]

    def podman(self, *args, timeout=COMMAND_TIMEOUT, check=True, what=None):
        return run(["podman", *self.flags, *args], env=self.env, timeout=timeout, check=check,
                   what=what or "podman " + args[0])

    def login(self, host, user, password, tls_verify=False):
        """`podman login HOST` into this podman's own auth file."""
        return self.podman("login", f"--tls-verify={'true' if tls_verify else 'false'}",
                           "-u", user, "-p", password, host, what="podman login")

    def pull(self, image, timeout=COMMAND_TIMEOUT, debug=False):
        args = ["pull", "--signature-policy", self.policy]
        if self.ca_dir:
            args += ["--cert-dir", self.ca_dir]
        if debug:
            args = ["--log-level", "debug"] + args
        res = self.podman(*args, image, timeout=timeout, what="podman pull")
        insp = self.podman("image", "inspect", image, what="podman image inspect")
        info = json.loads(insp.out)[0]
        return PullResult(image=image, digest=info.get("Digest", ""), seconds=res.seconds,
                          output=res.output, repo_digests=info.get("RepoDigests") or [])

    def close(self):
        if self.work:
            self.work.close()
            self.work = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def podman_pull(image, registries_conf_text, ca_dir=None, timeout=COMMAND_TIMEOUT, debug=False):
    """Pull image with a fresh podman store configured by registries_conf_text."""
    with Podman(registries_conf_text, ca_dir=ca_dir) as p:
        return p.pull(image, timeout=timeout, debug=debug)


# --------------------------------------------------------------------------
# daemons

def _unix_http_ok(sock_path, path, timeout=2.0):
    """True when an HTTP server answers 2xx on a unix socket (dockerd's /_ping)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = s.recv(64)
        return data.startswith(b"HTTP/1.") and data[9:10] == b"2"
    except OSError:
        return False


def _unix_connect_ok(sock_path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(sock_path)
        return True
    except OSError:
        return False


class _Daemon:
    """A daemon in its own session and mount namespace, logging to a file."""

    name = "daemon"

    def __init__(self, prefix, log_dir=None, log_name=None):
        require_netns()
        self.work = _Workdir(prefix)
        self.log_dir = log_dir
        self.log_path = self.work.sub(log_name or f"{self.name}.log")
        self.proc = None
        self._log = None
        self.start_seconds = None

    def _start(self, argv, ready, timeout):
        """Spawn argv and wait until ready(); on any failure clean up everything
        (the caller never gets an object to close)."""
        try:
            self._spawn(argv)
            self._wait_ready(ready, timeout)
        except BaseException:
            self.close()
            raise

    def _spawn(self, argv):
        # unshare --mount: mounts the daemon makes stay in its own namespace and
        # vanish with it; the daemon is still the process we started (exec).
        full = ["unshare", "--mount", "--propagation", "private", *argv]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, ready, timeout):
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ClientError(f"{self.name} exited with status {self.proc.returncode} while starting",
                                  self.proc.args, self.proc.returncode, log=self.log())
            if ready():
                self.start_seconds = time.monotonic() - start
                return
            time.sleep(0.05)
        raise ClientError(f"{self.name} not ready after {timeout:.0f}s", self.proc.args, log=self.log())

    def log(self):
        return _read_text(self.log_path) if self.log_path else ""

    def stop(self):
        """SIGTERM the group, wait (bounded), then SIGKILL the group and any descendant
        that started its own session (dockerd's containerd)."""
        if self.proc is None:
            if self._log:
                self._log.close()
                self._log = None
            return
        pid = self.proc.pid
        family = _descendants(pid)
        _killpg(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=DAEMON_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _killpg(pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Helpers in other sessions: give them a moment to follow their parent, then kill.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                (_read_stat(p) or (0, 0, -1))[2] == start for p, start in family):
            time.sleep(0.05)
        _kill_leftovers(pid, family)
        self.proc = None
        self._log.close()
        self._log = None

    def close(self):
        try:
            self.stop()
        finally:
            _copy_log(self.log_path, self.log_dir, os.path.basename(self.log_path))
            if self.work:
                self.work.close()
                self.work = None
            helper = getattr(self, "containerd", None)
            if helper is not None:
                helper.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# containerd + ctr

def containerd_hosts_toml(mirror_url, fallback="http://" + REFUSED, ca_file=None, skip_verify=False):
    """hosts.toml text for one registry: try the mirror, then a refused fallback.

    mirror_url carries its scheme (http://127.0.0.1:PORT for plain HTTP). The
    fallback `server` is a refused loopback port so that a mirror failure fails
    fast instead of reaching the real registry."""
    lines = [f"server = \"{fallback}\"", "", f"[host.\"{mirror_url}\"]",
             "  capabilities = [\"pull\", \"resolve\"]"]
    if ca_file:
        lines.append(f"  ca = \"{ca_file}\"")
    if skip_verify:
        lines.append("  skip_verify = true")
    return "\n".join(lines) + "\n"


def write_hosts_dir(hosts_dir, registries, mirror_url, **kw):
    """DIR/<registry>/hosts.toml for every registry; returns DIR."""
    for reg in registries:
        _write(os.path.join(hosts_dir, reg, "hosts.toml"), containerd_hosts_toml(mirror_url, **kw))
    return hosts_dir


class Containerd(_Daemon):
    """containerd with its own root, state and socket; CRI and exotic snapshotters off."""

    name = "containerd"
    NAMESPACE = "test"
    DISABLED = [
        "io.containerd.grpc.v1.cri",
        "io.containerd.internal.v1.opt",          # would create /opt/containerd
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.overlayfs",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]

    def __init__(self, log_dir=None, start_timeout=DAEMON_START_TIMEOUT, log_name=None):
        super().__init__("om-ctrd-", log_dir, log_name)
        w = self.work
        self.sock = w.sub("containerd.sock")
        disabled = ", ".join(f"\"{p}\"" for p in self.DISABLED)
        self.config = _write(w.sub("config.toml"), f"""version = 2
root = "{w.sub('root')}"
state = "{w.sub('state')}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{self.sock}"

[ttrpc]
  address = "{w.sub('containerd.sock.ttrpc')}"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
""")
        self._start(["containerd", "--config", self.config], self._ready, start_timeout)

    def _ready(self):
        if not _unix_connect_ok(self.sock):
            return False
        res = run(["ctr", "--address", self.sock, "version"], timeout=10, check=False)
        return res.rc == 0

    def ctr(self, *args, timeout=COMMAND_TIMEOUT, check=True, what=None, debug=False):
        argv = ["ctr", "--address", self.sock, "-n", self.NAMESPACE] + (["--debug"] if debug else [])
        try:
            return run(argv + list(args), timeout=timeout, check=check, what=what or "ctr " + args[0])
        except ClientError as e:
            e.log = self.log()
            raise ClientError(e.what, e.argv, e.rc, e.output, e.log) from None

    def pull(self, image, hosts_dir, platform=None, all_platforms=False, timeout=COMMAND_TIMEOUT,
             debug=False):
        """`ctr image pull --hosts-dir DIR --snapshotter native IMAGE` (fully qualified name)."""
        args = ["image", "pull", "--hosts-dir", hosts_dir, "--snapshotter", "native"]
        if platform:
            args += ["--platform", platform]
        if all_platforms:
            args.append("--all-platforms")
        res = self.ctr(*args, image, timeout=timeout, what="ctr image pull", debug=debug)
        return PullResult(image=image, digest=self.image_digest(image), seconds=res.seconds,
                          output=res.output)

    def image_digest(self, image):
        """The target digest containerd recorded for image (`ctr image ls`)."""
        res = self.ctr("image", "ls", what="ctr image ls")
        for line in res.out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3 and cols[0] == image:
                return cols[2]
        raise ClientError(f"ctr image ls does not list {image}", output=res.output)


# --------------------------------------------------------------------------
# dockerd + docker

class Dockerd(_Daemon):
    """dockerd with registry-mirrors, everything in a temp dir, no networking, vfs.

    It runs on a Containerd of ours (--containerd): the one dockerd would
    start itself has its opt plugin on (it creates /opt/containerd) and takes
    a second longer to stop. Docker sends only Docker Hub images to
    registry-mirrors (paths like library/x, no ns)."""

    name = "dockerd"

    def __init__(self, mirrors, insecure_registries=None, log_dir=None,
                 start_timeout=DAEMON_START_TIMEOUT, extra_config=None, debug=True):
        super().__init__("om-dockerd-", log_dir)
        w = self.work
        self.containerd = None
        try:
            self.containerd = Containerd(log_dir=log_dir, start_timeout=start_timeout,
                                         log_name="containerd-for-dockerd.log")
        except BaseException:
            self.close()
            raise
        self.sock = w.sub("docker.sock")
        if insecure_registries is None:
            insecure_registries = [m.split("://", 1)[-1].rstrip("/") for m in mirrors]
        cfg = {"registry-mirrors": list(mirrors), "insecure-registries": list(insecure_registries),
               "max-concurrent-downloads": 3}
        cfg.update(extra_config or {})
        self.config = _write(w.sub("daemon.json"), json.dumps(cfg, indent=2))
        self.cli_config = w.sub("cli")
        _write(os.path.join(self.cli_config, "config.json"), "{}\n", 0o600)
        argv = ["dockerd", "--config-file", self.config, "--data-root", w.sub("data"),
                "--exec-root", w.sub("exec"), "--pidfile", w.sub("docker.pid"),
                "-H", "unix://" + self.sock, "--containerd", self.containerd.sock, "--bridge=none", "--iptables=false",
                "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--storage-driver", "vfs"]
        if debug:
            argv.append("--debug")
        self._start(argv, lambda: _unix_http_ok(self.sock, "/_ping"), start_timeout)

    def docker(self, *args, timeout=COMMAND_TIMEOUT, check=True, what=None):
        env = dict(os.environ, DOCKER_CONFIG=self.cli_config, HOME=self.work.path)
        env.pop("DOCKER_HOST", None)
        try:
            return run([DOCKER_CLI, "-H", "unix://" + self.sock, *args], env=env, timeout=timeout,
                       check=check, what=what or "docker " + args[0])
        except ClientError as e:
            raise ClientError(e.what, e.argv, e.rc, e.output, self.log()) from None

    def pull(self, image, timeout=COMMAND_TIMEOUT):
        """`docker pull IMAGE`; the digest is the one in the image's RepoDigests."""
        log_start = os.path.getsize(self.log_path)
        try:
            res = self.docker("pull", image, timeout=timeout, what="docker pull")
        except ClientError as e:
            # The CLI shows only the last endpoint's error (Docker Hub's, which
            # the namespace makes unreachable); the mirror's error is in the log.
            tried = [line for line in self.log()[log_start:].splitlines()
                     if "Attempting next endpoint" in line or "level=error" in line]
            raise ClientError(e.what + "; endpoints tried (dockerd log):\n" + "\n".join(tried[-10:]),
                              e.argv, e.rc, e.output) from None
        insp = self.docker("image", "inspect", image, what="docker image inspect")
        repo_digests = json.loads(insp.out)[0].get("RepoDigests") or []
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        repo = repo.split("@", 1)[0]
        digest = ""
        for rd in repo_digests:
            name, _, dg = rd.partition("@")
            if name in (repo, "docker.io/" + repo, "docker.io/library/" + repo):
                digest = dg
        return PullResult(image=image, digest=digest, seconds=res.seconds, output=res.output,
                          repo_digests=repo_digests)


def ctr_pull(image, hosts_dir, log_dir=None, **kw):
    """Pull image with a fresh containerd (started and stopped around the pull)."""
    with Containerd(log_dir=log_dir) as c:
        return c.pull(image, hosts_dir, **kw)


def docker_pull(image, mirrors, log_dir=None, **kw):
    """Pull image with a fresh dockerd using registry-mirrors `mirrors` (URLs)."""
    with Dockerd(mirrors, log_dir=log_dir) as d:
        return d.pull(image, **kw)
