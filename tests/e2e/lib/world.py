"""The e2e world: a CA, a token service, three upstream registries with the
standard fixtures pushed, and any number of ocimirror instances pointed at
them.  The contract is notes/world-api.md; in short:

    with World() as w:
        w.reg['hub'] / w.reg['k8s'] / w.reg['quay']   (lib.registry.Registry)
        w.tokens                                      (lib.tokensvc.TokenService)
        w.ca_file, w.fx['alpine'] ...                 (lib.images.Image)
        m = w.mirror(tls=False, upstream_url={'quay': url}, extra={...},
                     storage=path)
        m.get('/v2/library/alpine/manifests/3.19', {'Accept': ACCEPT_ALL})

Extras beyond the contract: w.push(image) pushes a new image to its
registry (as the 'pusher' user), w.pusher(regname), w.dir (temp dir,
removed on close unless OM_E2E_KEEP=1), w.log_dir (artifacts), and
WorldTestCase, a unittest base class that shares one World per test class,
stops every mirror a test started and prints its log when the test fails.

Layout: data under a temp dir; logs under
tests/e2e/artifacts/<test file>/w<pid>-<n>/ (git-ignored); those of
finished runs are removed when the next run of that file starts.
"""

import atexit
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

from .pki import CA
from .tokensvc import TokenService
from .registry import Registry
from .images import fixtures, Pusher, ACCEPT_ALL, sha256_digest
from .mirror import Mirror, deep_merge

__all__ = ["World", "WorldTestCase", "artifacts_dir", "UPSTREAM_NAMES", "canonical_name"]

E2E_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUSHER = ("pusher", "pusher-secret")
# registry key -> (upstream name in the mirror config, aliases)
UPSTREAM_NAMES = {
    "hub": ("docker.io", ["index.docker.io", "registry-1.docker.io"]),
    "k8s": ("registry.k8s.io", ["k8s.gcr.io"]),
    "quay": ("quay.io", []),
}


def canonical_name(img):
    """'docker.io/library/alpine' for w.fx['alpine']: the explicit-prefix
    name under which the mirror serves (and stores) an Image."""
    return UPSTREAM_NAMES[img.registry][0] + "/" + img.repo


_open_worlds = []
_artifacts_cleaned = set()
_world_seq = [0]
_lock = threading.Lock()


def _test_file_name():
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None) or "interactive"
    return os.path.splitext(os.path.basename(f))[0]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def artifacts_dir():
    """tests/e2e/artifacts/<test file>/.  The first time per process, the
    world directories of earlier runs (w<pid>-<n>, pid gone) are removed;
    those of a run still going on beside us are left alone."""
    d = os.path.join(E2E_DIR, "artifacts", _test_file_name())
    with _lock:
        os.makedirs(d, exist_ok=True)
        if d not in _artifacts_cleaned:
            _artifacts_cleaned.add(d)
            for sub in os.listdir(d):
                p = os.path.join(d, sub)
                if not os.path.isdir(p):
                    continue
                m = re.match(r"^w(\d+)-\d+$", sub)
                if m and _pid_alive(int(m.group(1))):
                    continue
                shutil.rmtree(p, ignore_errors=True)
    return d


def _close_all():
    for w in list(_open_worlds):
        try:
            w.close()
        except Exception as e:  # cleanup must go on for the others
            sys.stderr.write("e2e cleanup: %r\n" % (e,))


atexit.register(_close_all)


def _install_sigterm():
    # ctest's timeout (and a human's kill) send SIGTERM: turn it into an exit
    # so atexit stops the registries and mirrors (their own sessions would
    # otherwise outlive us).
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class World:
    def __init__(self, hub_auth=True, name=None):
        _install_sigterm()
        with _lock:
            _world_seq[0] += 1
            seq = _world_seq[0]
        self.name = name or "w%d-%d" % (os.getpid(), seq)
        self.dir = tempfile.mkdtemp(prefix="om-e2e-")
        self.log_dir = os.path.join(artifacts_dir(), self.name)
        os.makedirs(self.log_dir, exist_ok=True)
        self.reg = {}
        self.tokens = None
        self.mirrors = []
        self._closed = False
        self._pushers = {}
        _open_worlds.append(self)
        try:
            self._build(hub_auth)
        except BaseException:
            self.close()
            raise

    def _build(self, hub_auth):
        t0 = time.monotonic()
        self.ca = CA(os.path.join(self.dir, "pki"))
        self.ca_file = self.ca.cert
        fx_holder = {}
        # Fixture generation (~1 s for the 32 MiB layer) overlaps the starts.
        gen = threading.Thread(target=lambda: fx_holder.update(fixtures()), daemon=True)
        gen.start()
        hub_dir = os.path.join(self.dir, "reg-hub")
        hub_data = os.path.join(hub_dir, "data")
        if hub_auth:
            self.tokens = TokenService(os.path.join(self.dir, "tokensvc"), self.log_dir,
                                       self.ca, storage_root=hub_data).start()
        self.reg["hub"] = Registry("hub", hub_dir, self.log_dir, self.ca,
                                   token_service=self.tokens)
        self.reg["k8s"] = Registry("k8s", os.path.join(self.dir, "reg-k8s"), self.log_dir, self.ca)
        self.reg["quay"] = Registry("quay", os.path.join(self.dir, "reg-quay"), self.log_dir, self.ca)
        errors = []

        def start(r):
            try:
                r.start()
            except Exception as e:
                errors.append(e)
        ts = [threading.Thread(target=start, args=(r,)) for r in self.reg.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        if errors:
            raise errors[0]
        gen.join(120)
        self.fx = fx_holder
        if not self.fx:
            raise RuntimeError("fixture generation failed")
        # One pushing thread per registry; 'big' alone on its own thread.
        groups = {}
        for key, img in self.fx.items():
            groups.setdefault(img.registry if key != "big" else "big", []).append(img)

        def push(imgs):
            try:
                for img in imgs:
                    self.push(img)
            except Exception as e:
                errors.append(e)
        ts = [threading.Thread(target=push, args=(imgs,)) for imgs in groups.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        if errors:
            raise errors[0]
        for r in self.reg.values():
            r.reset_counts()
        if self.tokens:
            self.tokens.reset_counts()
        self.setup_seconds = time.monotonic() - t0
        with open(os.path.join(self.log_dir, "world.json"), "w") as f:
            json.dump({"dir": self.dir, "setup_seconds": self.setup_seconds,
                       "registries": {k: r.url for k, r in self.reg.items()},
                       "tokens": self.tokens.url if self.tokens else None,
                       "fixtures": {k: {"ref": i.ref, "registry": i.registry, "digest": i.digest}
                                    for k, i in self.fx.items()}}, f, indent=1)

    # -- upstream helpers --------------------------------------------------
    def pusher(self, regname):
        with _lock:     # pushing threads share one Pusher per registry
            if regname not in self._pushers:
                r = self.reg[regname]
                user = PUSHER if r.tokens is not None else (None, None)
                self._pushers[regname] = Pusher(r.url, self.ca_file, user[0], user[1])
            return self._pushers[regname]

    def push(self, image, registry=None, repo=None, tag=None):
        """Push an Image (from lib.images) to its registry (or `registry`)."""
        self.pusher(registry or image.registry).push_image(image, repo=repo, tag=tag)

    def upstream_config(self, key, url=None):
        name, aliases = UPSTREAM_NAMES[key]
        u = {"name": name, "url": url or self.reg[key].url}
        if aliases:
            u["aliases"] = list(aliases)
        u["ca_file"] = self.ca_file
        return u

    # -- mirrors -----------------------------------------------------------
    def mirror_config(self, upstream_url=None, extra=None, storage=None, tls=False):
        """The config dict w.mirror() writes (see the module doc)."""
        upstream_url = upstream_url or {}
        cfg = {
            "storage": {"path": storage},
            "upstreams": [self.upstream_config(k, upstream_url.get(k))
                          for k in ("hub", "k8s", "quay")],
            "search_order": ["docker.io", "registry.k8s.io", "quay.io"],
            "tag_ttl": "2s",
            "negative_ttl": "2s",
            "log": {"level": "debug", "format": "json"},
        }
        if tls:
            cert, key = self.ca.issue("mirror-%d" % (len(self.mirrors) + 1))
            cfg["tls"] = {"cert": cert, "key": key}
        return deep_merge(cfg, extra or {})

    def mirror(self, upstream_url=None, extra=None, tls=False, storage=None, start=True,
               binary=None, argv_prefix=()):
        """Start ocimirror against the world's registries (see the module doc)."""
        n = len(self.mirrors) + 1
        workdir = os.path.join(self.dir, "mirror-%d" % n)
        os.makedirs(workdir, exist_ok=True)
        storage = storage or os.path.join(workdir, "storage")
        cfg = self.mirror_config(upstream_url, extra, storage, tls)
        m = Mirror(cfg, workdir, os.path.join(self.log_dir, "mirror-%d.log" % n),
                   ca_file=self.ca_file, tls=tls, binary=binary, argv_prefix=argv_prefix)
        self.mirrors.append(m)
        if start:
            m.start()
        return m

    # -- lifecycle ---------------------------------------------------------
    def close(self):
        if self._closed:
            return
        self._closed = True
        for m in self.mirrors:
            try:
                m.stop(timeout=15)
            except Exception as e:
                sys.stderr.write("e2e: stopping mirror: %r\n" % (e,))
        for r in self.reg.values():
            r.stop()
        if self.tokens:
            self.tokens.stop()
        for p in self._pushers.values():
            p.close()
        if os.environ.get("OM_E2E_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _open_worlds:
            _open_worlds.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def ensure_upstreams_running(self):
        """Restart any registry a test stopped (for shared worlds)."""
        for r in self.reg.values():
            if not r.running:
                r.start()


class WorldTestCase(unittest.TestCase):
    """One World per test class (cls.w); self.mirror(**opts) starts a mirror
    that is stopped after the test, with its log tail printed on failure.
    Registries a test stopped are started again after it.

    After each test the test also fails if one of its mirrors died on its own
    (a test that expects an exit clears m.unexpected_exits) or if its log
    holds a sanitizer report (ASan/UBSan/LSan builds)."""

    world_kwargs = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.w = World(**cls.world_kwargs)

    @classmethod
    def tearDownClass(cls):
        w = getattr(cls, "w", None)
        if w is not None:
            w.close()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self._test_mirrors = []
        self.addCleanup(self._after_test)

    def mirror(self, **opts):
        m = self.w.mirror(**opts)
        self._test_mirrors.append(m)
        return m

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        return outcome is not None and not getattr(outcome, "success", True)

    def _after_test(self):
        failed = self._failed()
        problems = []
        for m in self._test_mirrors:
            rc = m.stop(timeout=15)
            if m.unexpected_exits:
                problems.append("%s: the mirror died during the test (exit status %s)" % (
                    m.log_path, m.unexpected_exits))
            elif rc not in (0, None):   # None: not running (never started, kill9()ed)
                sys.stderr.write("warning: %s: the mirror exited with %s on SIGTERM\n" % (m.log_path, rc))
            problems += ["%s: sanitizer report:\n%s" % (m.log_path, r) for r in m.sanitizer_reports()]
            if failed or problems:
                dump_log(m, self.id())
        self.w.ensure_upstreams_running()
        if problems:
            self.fail("\n".join(problems))

    # -- assertions shared by the test files ------------------------------
    def pull(self, m, img, name=None, ref=None, query="", platforms=None,
             accept=ACCEPT_ALL):
        """A full pull through mirror m as a client does it: the manifest by
        tag (or ref), for an index each child by digest (only `platforms`
        if given), then every blob; every status, digest and body checked.
        name defaults to canonical_name(img).  Returns the manifest Resp."""
        name = name or canonical_name(img)
        q = ("?" + query) if query else ""
        r = m.get("/v2/%s/manifests/%s%s" % (name, ref or img.tag, q), {"Accept": accept})
        self.assertManifest(r, img)
        todo = [img]
        if img.children:
            todo = []
            for plat, child in img.children.items():
                if platforms and plat not in platforms:
                    continue
                rc = m.get("/v2/%s/manifests/%s%s" % (name, child.digest, q), {"Accept": accept})
                self.assertManifest(rc, child)
                todo.append(child)
        for c in todo:
            for d in c.blobs:
                rb = m.get("/v2/%s/blobs/%s%s" % (name, d, q))
                self.assertBlob(rb, d)
        return r

    def assertManifest(self, r, img, head=False):
        """r is 200 with img's digest, media type, length and (GET) bytes."""
        self.assertEqual(r.status, 200, "manifest of %r: %r" % (img, r))
        self.assertEqual(r.headers.get("Docker-Content-Digest"), img.digest, r)
        ct = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        self.assertEqual(ct, img.media_type, r)
        self.assertEqual(r.headers.get("Content-Length"), str(len(img.manifest_bytes)), r)
        if not head:
            self.assertEqual(r.body, img.manifest_bytes, "manifest bytes differ for %r" % (img,))

    def assertBlob(self, r, digest):
        self.assertEqual(r.status, 200, "blob %s: %r" % (digest, r))
        got = sha256_digest(r.body)
        self.assertEqual(got, digest, "blob %s: body of %d bytes hashes to %s" % (
            digest, len(r.body), got))
        dcd = r.headers.get("Docker-Content-Digest")
        if dcd is not None:
            self.assertEqual(dcd, digest, r)
        self.assertIsNone(r.headers.get("Content-Encoding"), r)

    def assertErrorJSON(self, resp, status=None, codes=None):
        """resp is an OCI error: {"errors":[{"code","message",...}]}, with the
        status (int or tuple of ints) and one of the codes if given."""
        if status is not None:
            ok = resp.status in status if isinstance(status, (tuple, list, set)) else resp.status == status
            self.assertTrue(ok, "status %d, want %s: %r" % (resp.status, status, resp))
        try:
            doc = resp.json()
        except ValueError:
            self.fail("error body is not JSON: %r" % (resp,))
        self.assertIsInstance(doc, dict, resp)
        errs = doc.get("errors")
        self.assertIsInstance(errs, list, resp)
        self.assertGreater(len(errs), 0, resp)
        for e in errs:
            self.assertIsInstance(e.get("code"), str, resp)
            self.assertIsInstance(e.get("message"), str, resp)
        if codes is not None:
            codes = (codes,) if isinstance(codes, str) else tuple(codes)
            self.assertIn(errs[0]["code"], codes, resp)
        return errs


def dump_log(m, title, n=12000):
    sys.stderr.write("\n----- mirror log (%s) for %s: %s -----\n%s\n----- end of mirror log -----\n" % (
        m.log_path, title, "tail" if n else "", m.log_tail(n)))
