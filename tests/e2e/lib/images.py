"""Real, deterministic container images for the e2e tests, and a small
pusher that uploads them byte for byte.

Every image is generated from a seed: gzip'd tar layers (mtime 0, fixed
owners) with random file contents, a real image config (architecture, os,
rootfs.diff_ids = sha256 of the uncompressed tar, history, Env/Cmd/Labels),
and a Docker schema 2 manifest, Docker manifest list, OCI manifest or OCI
index.  Manifests are pretty-printed (indent 3, like docker's own) so a
mirror that re-serialises JSON instead of storing bytes changes the digest
and gets caught.

    fx = fixtures()                 # name -> Image, generated once per process
    img = make_image('x', 'library/x', '1', 'hub', kind='oci', seed=7)
    Pusher(reg.url, ca_file, 'pusher', 'pusher-secret').push_image(img)

Image attributes (the contract in notes/world-api.md):
    name, repo, tag, registry, digest, media_type, manifest_bytes,
    blobs [digest...]   config + layers of every platform, no duplicates
    platforms {'linux/amd64': child manifest digest} (indexes only, else {})
    layer_bytes {digest: bytes}   every blob, configs included
    manifests {digest: (media_type, bytes)}   the image's own manifest and,
                                  for an index, every child
    children {platform: Image}   (indexes only) each platform as an Image
"""

import base64
import gzip
import hashlib
import http.client
import io
import json
import random
import re
import ssl
import tarfile
import threading
import urllib.request
from urllib.parse import urlsplit, urlencode

__all__ = ["Image", "fixtures", "make_image", "make_layer", "Pusher",
           "MT_DOCKER_MANIFEST", "MT_DOCKER_LIST", "MT_OCI_MANIFEST", "MT_OCI_INDEX",
           "ALL_MANIFEST_TYPES", "ACCEPT_ALL", "sha256_digest"]

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ALL_MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_OCI_INDEX)
ACCEPT_ALL = ", ".join(ALL_MANIFEST_TYPES)

CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer:
    def __init__(self, data, diff_id):
        self.data = data
        self.digest = sha256_digest(data)
        self.size = len(data)
        self.diff_id = diff_id


def make_layer(rng, files, level=6):
    """A gzip'd tar of `files` [(path, size)] with random contents from rng."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        dirs = set()
        for path, size in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = 0
                    ti.uname = ti.gname = "root"
                    tf.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size = size
            ti.mode = 0o644
            ti.mtime = 0
            ti.uname = ti.gname = "root"
            tf.addfile(ti, io.BytesIO(rng.randbytes(size)))
    tar = buf.getvalue()
    return Layer(gzip.compress(tar, compresslevel=level, mtime=0), sha256_digest(tar))


def _pretty(obj):
    return json.dumps(obj, indent=3).encode()


class Image:
    def __init__(self, name, repo, tag, registry):
        self.name = name
        self.repo = repo
        self.tag = tag
        self.registry = registry
        self.digest = None
        self.media_type = None
        self.manifest_bytes = None
        self.blobs = []
        self.platforms = {}
        self.layer_bytes = {}
        self.manifests = {}
        self.children = {}
        self.config_digest = None
        self.layers = []           # layer digests (single-platform images)

    @property
    def ref(self):
        return "%s:%s" % (self.repo, self.tag)

    @property
    def size(self):
        return len(self.manifest_bytes)

    def blob_size(self, digest):
        return len(self.layer_bytes[digest])

    def __repr__(self):
        return "<Image %s %s:%s@%s %s>" % (self.name, self.repo, self.tag, self.digest, self.registry)


def _single(name, repo, tag, registry, kind, layers, arch="amd64", variant=None,
            labels=None):
    oci = kind == "oci"
    img = Image(name, repo, tag, registry)
    cfg = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "OM_FIXTURE=" + name],
            "Cmd": ["/bin/sh"],
            "Labels": dict({"org.opencontainers.image.title": name}, **(labels or {})),
        },
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": CREATED, "created_by": "om-e2e layer %d of %s" % (i, name)}
                    for i in range(len(layers))],
    }
    if variant:
        cfg["variant"] = variant
    cfg_bytes = _pretty(cfg)
    cfg_digest = sha256_digest(cfg_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG,
                   "size": len(cfg_bytes), "digest": cfg_digest},
        "layers": [{"mediaType": MT_OCI_LAYER if oci else MT_DOCKER_LAYER,
                    "size": l.size, "digest": l.digest} for l in layers],
    }
    if oci:
        manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
    img.media_type = manifest["mediaType"]
    img.manifest_bytes = _pretty(manifest)
    img.digest = sha256_digest(img.manifest_bytes)
    img.config_digest = cfg_digest
    img.layer_bytes[cfg_digest] = cfg_bytes
    img.blobs.append(cfg_digest)
    for l in layers:
        img.layer_bytes[l.digest] = l.data
        if l.digest not in img.blobs:
            img.blobs.append(l.digest)
        img.layers.append(l.digest)
    img.manifests[img.digest] = (img.media_type, img.manifest_bytes)
    return img


def _index(name, repo, tag, registry, kind, platforms):
    """platforms: [(arch, variant or None, [Layer])]."""
    oci = kind == "oci"
    img = Image(name, repo, tag, registry)
    entries = []
    for arch, variant, layers in platforms:
        plat = "linux/" + arch + ("/" + variant if variant else "")
        child = _single("%s-%s" % (name, arch), repo, tag, registry,
                        "oci" if oci else "docker", layers, arch, variant)
        img.children[plat] = child
        img.platforms[plat] = child.digest
        p = {"architecture": arch, "os": "linux"}
        if variant:
            p["variant"] = variant
        entries.append({"mediaType": child.media_type, "size": len(child.manifest_bytes),
                        "digest": child.digest, "platform": p})
        img.manifests.update(child.manifests)
        img.layer_bytes.update(child.layer_bytes)
        for b in child.blobs:
            if b not in img.blobs:
                img.blobs.append(b)
    index = {"schemaVersion": 2,
             "mediaType": MT_OCI_INDEX if oci else MT_DOCKER_LIST,
             "manifests": entries}
    img.media_type = index["mediaType"]
    img.manifest_bytes = _pretty(index)
    img.digest = sha256_digest(img.manifest_bytes)
    img.manifests[img.digest] = (img.media_type, img.manifest_bytes)
    return img


def _small_files(rng, n, lo=200, hi=40000, prefix="usr/share/om"):
    return [("%s/f%03d.bin" % (prefix, i), rng.randint(lo, hi)) for i in range(n)]


def make_image(name, repo, tag, registry, kind="docker", seed=None, n_layers=2,
               base_layers=(), files_per_layer=4, arch_variants=None, labels=None):
    """A new image.  kind: 'docker' | 'oci' (one manifest), 'docker-list' |
    'oci-index' (arch_variants, default [('amd64', None), ('arm64', 'v8')]).
    base_layers: Layers to put first (shared with another image)."""
    rng = random.Random(seed if seed is not None else name)
    if kind in ("docker", "oci"):
        layers = list(base_layers) + [
            make_layer(rng, _small_files(rng, files_per_layer, prefix="opt/%s/l%d" % (name, i)))
            for i in range(n_layers)]
        return _single(name, repo, tag, registry, kind, layers, labels=labels)
    plats = []
    for arch, variant in (arch_variants or [("amd64", None), ("arm64", "v8")]):
        layers = [make_layer(rng, _small_files(rng, files_per_layer,
                                               prefix="opt/%s/%s/l%d" % (name, arch, i)))
                  for i in range(n_layers)]
        plats.append((arch, variant, layers))
    return _index(name, repo, tag, registry,
                  "oci" if kind == "oci-index" else "docker", plats)


_FIXTURES = None
_FIXTURES_LOCK = threading.Lock()


def fixtures():
    """The standard fixtures (see notes/world-api.md), built once per process.
    Returns a fresh dict each call (the Images are shared: don't mutate)."""
    global _FIXTURES
    with _FIXTURES_LOCK:
        if _FIXTURES is None:
            _FIXTURES = _build_fixtures()
        return dict(_FIXTURES)


def _build_fixtures():
    fx = {}
    rng = random.Random(20240101)
    base = make_layer(rng, [("bin/busybox", 180000), ("etc/os-release", 300),
                            ("lib/ld-musl-x86_64.so.1", 60000)])
    fx["alpine"] = make_image("alpine", "library/alpine", "3.19", "hub", "docker",
                              seed=1, n_layers=1, base_layers=[base])
    fx["app"] = make_image("app", "team/app", "1", "hub", "docker", seed=2,
                           n_layers=1, base_layers=[base])
    fx["multi"] = make_image("multi", "library/multi", "1", "hub", "docker-list", seed=3)
    fx["ocimulti"] = make_image("ocimulti", "library/ocimulti", "1", "hub", "oci-index", seed=4)
    fx["shared_hub"] = make_image("shared_hub", "library/shared", "1", "hub", "docker", seed=5)
    fx["shared_k8s"] = make_image("shared_k8s", "shared", "1", "k8s", "docker", seed=6)
    fx["apiserver"] = make_image("apiserver", "kube-apiserver", "v1.28.0", "k8s", "oci",
                                 seed=7, n_layers=2)
    fx["pause"] = make_image("pause", "pause", "3.9", "k8s", "docker", seed=8, n_layers=1,
                             files_per_layer=1)
    fx["coredns"] = make_image("coredns", "coredns/coredns", "v1.11.1", "k8s", "docker",
                               seed=9, n_layers=2)
    fx["etcd"] = make_image("etcd", "coreos/etcd", "v3.5.0", "quay", "oci", seed=10,
                            n_layers=3, files_per_layer=6)
    brng = random.Random(11)
    # Random bytes do not compress; level 0 (stored deflate blocks) is what
    # gzip would choose anyway and saves half a second per process.
    big = make_layer(brng, [("data/big.bin", 32 * 1024 * 1024 - 4096)], level=0)
    fx["big"] = _single("big", "big/blob", "1", "quay", "oci", [big])
    return fx


# -- pushing ----------------------------------------------------------------

_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class Pusher:
    """Uploads images to one registry: monolithic blob uploads (POST, then
    PUT <location>&digest=), manifests by PUT with their media type, bearer
    token auth on a 401 challenge (Basic credentials at the realm).
    One connection per thread; safe to share between threads."""

    def __init__(self, base_url, ca_file, user=None, password=None, timeout=60):
        u = urlsplit(base_url)
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.user, self.password = user, password
        self.timeout = timeout
        self._tokens = {}            # scope -> token
        self._local = threading.local()
        self._all_conns = []         # every thread's connection, for close()
        self._conns_lock = threading.Lock()

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                            timeout=self.timeout)
            self._local.conn = c
            with self._conns_lock:
                self._all_conns.append(c)
        return c

    def _drop_conn(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
        self._local.conn = None

    def _token(self, challenge):
        params = dict(_CHALLENGE_RE.findall(challenge))
        scope = params.get("scope", "")
        if self.user is not None and scope.startswith("repository:"):
            # Ask for push and pull at once: one token serves HEAD, POST, PUT.
            scope = scope.rsplit(":", 1)[0] + ":pull,push"
        if scope in self._tokens:
            return self._tokens[scope]
        q = {"service": params.get("service", "")}
        if scope:
            q["scope"] = scope
        req = urllib.request.Request(params["realm"] + "?" + urlencode(q))
        if self.user is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(
                ("%s:%s" % (self.user, self.password)).encode()).decode())
        with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as r:
            body = json.loads(r.read())
        tok = body.get("token") or body.get("access_token")
        self._tokens[scope] = tok
        return tok

    def _scope_token(self, path):
        m = re.match(r"^/v2/(.+?)/(blobs|manifests|tags)/", path)
        if not m:
            return None
        return self._tokens.get("repository:%s:pull,push" % m.group(1))

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict lower-cased, body) with auth handled."""
        headers = dict(headers or {})
        headers.setdefault("User-Agent", "om-e2e-harness-pusher")
        tok = self._scope_token(path)
        if tok:
            headers["Authorization"] = "Bearer " + tok
        for attempt in range(3):
            try:
                c = self._conn()
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self._drop_conn()
                if attempt == 2:
                    raise
                continue
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if r.status == 401 and "www-authenticate" in hdrs and attempt == 0:
                headers["Authorization"] = "Bearer " + self._token(hdrs["www-authenticate"])
                continue
            return r.status, hdrs, data
        return r.status, hdrs, data

    def blob_exists(self, repo, digest):
        st, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        return st == 200

    def push_blob(self, repo, digest, data):
        if self.blob_exists(repo, digest):
            return
        st, h, body = self.request("POST", "/v2/%s/blobs/uploads/" % repo, b"",
                                   {"Content-Length": "0"})
        if st != 202:
            raise RuntimeError("POST upload %s: %d %r" % (repo, st, body[:300]))
        loc = urlsplit(h["location"])
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + urlencode({"digest": digest})
        st, h, body = self.request("PUT", path, data, {
            "Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        if st != 201:
            raise RuntimeError("PUT blob %s %s: %d %r" % (repo, digest, st, body[:300]))

    def push_manifest(self, repo, ref, media_type, data):
        st, h, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), data, {
            "Content-Type": media_type, "Content-Length": str(len(data))})
        if st != 201:
            raise RuntimeError("PUT manifest %s:%s: %d %r" % (repo, ref, st, body[:500]))
        want = sha256_digest(data)
        got = h.get("docker-content-digest")
        if got != want:
            raise RuntimeError("registry computed %s for %s:%s, expected %s" % (got, repo, ref, want))

    def push_image(self, img, repo=None, tag=None):
        """Blobs, then (for an index) each child by digest, then the image
        under its tag."""
        repo = repo or img.repo
        tag = tag or img.tag
        for d in img.blobs:
            self.push_blob(repo, d, img.layer_bytes[d])
        for d, (mt, data) in img.manifests.items():
            if d != img.digest:
                self.push_manifest(repo, d, mt, data)
        self.push_manifest(repo, tag, img.media_type, img.manifest_bytes)

    def close(self):
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for c in conns:
            c.close()
        self._local = threading.local()
