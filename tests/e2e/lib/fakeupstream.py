"""fakeupstream — small scripted upstream servers for the mirror's security
tests (Python 3.11 standard library only), run as threads inside the test
process: a registry, a token service, a "CDN", a plain-HTTP trap, and a bare
TCP listener that only counts connections.

    srv = FakeServer('cdn', handler, tls=(cert, key))   # or tls=None: plain HTTP
    srv.start(); srv.url; srv.port; srv.requests(path_re=...); srv.stop()
    srv.start(port=P)                       # again on the port it had (a restart)
    handler(req) -> (status, [(header, value)...], body bytes)

Every request is recorded (Recorded: t = time.monotonic() when it arrived,
method, path with query, headers as a case-insensitive dict) before the
handler runs, so a test can assert what a host saw, and when.

    reg = FakeRegistry(tls=(cert, key))     # FakeServer with a registry handler
    reg.add_image('team/app', 'v1')          # -> FakeImage: manifest + 2 blobs
    reg.auth['team/'] = ('bearer', token_service)   # or ('basic', user, password)
    reg.blob_location = lambda digest: 'https://127.0.0.1:P/cdn/..'   # 307 there
    reg.script('GET', r'/manifests/v1$', 1, 429, [('Retry-After', '1')])
    reg.before = lambda req: None or (status, headers, body)   # answers first
    tok = FakeTokenService(tls=..., users={'alice': 'pw'})   # issues tokens reg accepts
    tok.user_of(req)                        # the user a request's bearer token was issued to
    cdn = FakeCDN(tls=...); cdn.put(image)  # serves /cdn/<digest>?sig=...
    c = ConnCounter(); c.start(); c.port; c.connections; c.stop()

Nothing here listens anywhere but 127.0.0.1.  TLS handshakes happen in the
handler threads (do_handshake_on_connect=False), so one stuck client never
blocks the accept loop.  stop() shuts the listener and waits for it (5 s).
"""

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time
from urllib.parse import parse_qs

__all__ = ["FakeServer", "FakeRegistry", "FakeTokenService", "FakeCDN", "FakeImage",
           "ConnCounter", "Recorded", "basic_header"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def basic_header(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def _digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Recorded:
    def __init__(self, t, method, path, headers):
        self.t = t
        self.method = method
        self.path = path
        self.headers = headers          # lower-case name -> value (last wins)

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "<%s %s auth=%r>" % (self.method, self.path, self.header("authorization"))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10                        # an idle keep-alive connection ends

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.conns_lock:
                self.server.conns.discard(self.connection)

    def _serve(self):
        srv = self.server.owner
        rec = Recorded(time.monotonic(), self.command, self.path,
                       {k.lower(): v for k, v in self.headers.items()})
        srv._record(rec)
        try:
            status, headers, body = srv.handler(rec)
        except Exception as e:          # a bug in a handler must show, not hang
            status, headers, body = 500, [], ("handler error: %r" % (e,)).encode()
        self.send_response(status)
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            self.send_header(k, v)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    do_GET = _serve
    do_HEAD = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *a, **kw):
        self.conns = set()              # open client connections, shut by stop()
        self.conns_lock = threading.Lock()
        super().__init__(*a, **kw)


class FakeServer:
    """One listening HTTP(S) server on 127.0.0.1 (ephemeral port)."""

    def __init__(self, name, handler=None, tls=None):
        self.name = name
        self.handler = handler or (lambda req: (404, [], b'{"errors":[]}'))
        self.tls = tls
        self._lock = threading.Lock()
        self._requests = []
        self._httpd = None
        self._thread = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, port=0):
        httpd = _Server(("127.0.0.1", port), _Handler)
        httpd.owner = self
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                           do_handshake_on_connect=False)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-" + self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and end every open connection (a keep-alive one
        must not go on being served: stopped means down)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            with self._httpd.conns_lock:
                conns = list(self._httpd.conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- addresses ---------------------------------------------------------
    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    # -- what it saw -------------------------------------------------------
    def _record(self, rec):
        with self._lock:
            self._requests.append(rec)

    def requests(self, path_re=None, method=None):
        with self._lock:
            reqs = list(self._requests)
        return [r for r in reqs
                if (path_re is None or re.search(path_re, r.path)) and
                (method is None or r.method == method)]

    def clear(self):
        with self._lock:
            self._requests = []


class FakeImage:
    """An OCI image: a config blob, one layer, and the manifest naming them."""

    def __init__(self, repo, tag, layer_size=100000):
        self.repo = repo
        self.tag = tag
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "fake": repo + ":" + tag}).encode()
        layer = os.urandom(layer_size)
        self.blobs = {_digest(config): config, _digest(layer): layer}
        self.config_digest = _digest(config)
        self.layer_digest = _digest(layer)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": self.layer_digest, "size": len(layer)}],
        }, separators=(",", ":")).encode()
        self.digest = _digest(self.manifest)
        self.media_type = OCI_MANIFEST


def _error(status, code, message):
    return (status, [("Content-Type", "application/json")],
            json.dumps({"errors": [{"code": code, "message": message}]}).encode())


class FakeRegistry(FakeServer):
    """A registry serving FakeImages, with per-repository-prefix auth, an
    optional blob redirect, and scripted answers that take precedence.

    auth: {repo prefix: ('basic', user, password) | ('bearer', FakeTokenService)}
    blob_location: None or f(digest) -> Location for a 307 on blob GETs
    manifest_headers: extra (name, value)s on manifest answers
    tag_lists: {repo: f(query dict) -> (tags, Link header value or None)}
    for GET /v2/<repo>/tags/list (a repo not in it: 404 NAME_UNKNOWN)
    before: None or f(req) -> None | (status, headers, body): asked after
    auth (a request that passed it), before the content is served
    script(method, path_re, times, status, headers): answer status instead,
    `times` times (0 = always); checked before anything else."""

    def __init__(self, tls=None, name="registry"):
        super().__init__(name, self._handle, tls)
        self.images = {}                # (repo, tag or digest) -> FakeImage
        self.auth = {}
        self.blob_location = None
        self.manifest_headers = []      # extra (name, value)s on manifest answers
        self.tag_lists = {}             # repo -> pager, see the class doc
        self.before = None              # see the class doc
        self._scripts = []

    def add_image(self, repo, tag, **kw):
        img = FakeImage(repo, tag, **kw)
        self.images[(repo, tag)] = img
        self.images[(repo, img.digest)] = img
        return img

    def script(self, method, path_re, times, status, headers=()):
        with self._lock:
            self._scripts.append({"method": method, "re": re.compile(path_re), "left": times,
                                  "forever": times == 0, "status": status,
                                  "headers": list(headers)})

    def _scripted(self, req):
        with self._lock:
            for s in self._scripts:
                if s["method"] == req.method and s["re"].search(req.path) and \
                        (s["forever"] or s["left"] > 0):
                    s["left"] -= 1
                    return s
        return None

    def _challenge(self, repo, req):
        for prefix, rule in self.auth.items():
            if not repo.startswith(prefix):
                continue
            got = req.header("authorization") or ""
            if rule[0] == "basic":
                if got == basic_header(rule[1], rule[2]):
                    return None
                return (401, [("WWW-Authenticate", 'Basic realm="fake"'),
                              ("Content-Type", "application/json")],
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"credentials required"}]}')
            tokens = rule[1]
            if got.startswith("Bearer ") and tokens.valid(got[7:], repo):
                return None
            chal = 'Bearer realm="%s",service="%s",scope="repository:%s:pull"' % (
                tokens.realm, tokens.service, repo)
            return (401, [("WWW-Authenticate", chal), ("Content-Type", "application/json")],
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}')
        return None

    def _handle(self, req):
        s = self._scripted(req)
        if s is not None:
            code = "TOOMANYREQUESTS" if s["status"] == 429 else "UNAVAILABLE"
            status, headers, body = _error(s["status"], code, "scripted")
            return status, s["headers"] + headers, body
        path = req.path.split("?", 1)[0]
        if path == "/v2/":
            return (200, [("Docker-Distribution-API-Version", "registry/2.0")], b"{}")
        m = re.match(r"^/v2/(.+)/tags/list$", path)
        if m:
            return self._tag_list(m.group(1), req)
        m = re.match(r"^/v2/(.+)/(manifests|blobs)/([^/]+)$", path)
        if not m:
            return _error(404, "NAME_UNKNOWN", "no such route")
        repo, kind, ref = m.groups()
        denied = self._challenge(repo, req)
        if denied is not None:
            return denied
        early = self.before(req) if self.before is not None else None
        if early is not None:
            return early
        if kind == "manifests":
            img = self.images.get((repo, ref))
            if img is None:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return (200, [("Content-Type", img.media_type), ("Docker-Content-Digest", img.digest)] +
                    list(self.manifest_headers), img.manifest)
        for (r, _), img in self.images.items():
            if r == repo and ref in img.blobs:
                if self.blob_location is not None and req.method == "GET":
                    return (307, [("Location", self.blob_location(ref))], b"")
                return (200, [("Content-Type", "application/octet-stream"),
                              ("Docker-Content-Digest", ref)], img.blobs[ref])
        return _error(404, "BLOB_UNKNOWN", "blob unknown")

    def _tag_list(self, repo, req):
        denied = self._challenge(repo, req)
        if denied is not None:
            return denied
        pager = self.tag_lists.get(repo)
        if pager is None:
            return _error(404, "NAME_UNKNOWN", "repository name not known to registry")
        query = {k: v[0] for k, v in parse_qs(req.path.partition("?")[2]).items()}
        tags, link = pager(query)
        headers = [("Content-Type", "application/json")] + ([("Link", link)] if link else [])
        return 200, headers, json.dumps({"name": repo, "tags": tags}).encode()


class FakeTokenService(FakeServer):
    """A Docker-Hub-like token service at /token: with Basic credentials it
    checks them against `users` (wrong → 401); anonymous gets a token too.
    Tokens are random and remembered with their scope; the registry asks
    valid().  redirect_to: None, or a URL the realm answers with 307 (the
    query is kept), to test realm redirects."""

    def __init__(self, tls=None, users=None, service="fake-registry", name="tokens"):
        super().__init__(name, self._handle, tls)
        self.users = dict(users or {})
        self.service = service
        self.issued = {}                # token -> scope
        self.issued_to = {}             # token -> user (None: anonymous)
        self.redirect_to = None

    @property
    def realm(self):
        return self.url + "/token"

    def valid(self, token, repo):
        with self._lock:
            scope = self.issued.get(token)
        return scope == "repository:%s:pull" % repo

    def tokens(self):
        with self._lock:
            return list(self.issued)

    def user_of(self, req):
        """The user the request's bearer token was issued to, or None."""
        got = req.header("authorization") or ""
        with self._lock:
            return self.issued_to.get(got[7:]) if got.startswith("Bearer ") else None

    def _handle(self, req):
        path, _, query = req.path.partition("?")
        if self.redirect_to is not None and path == "/token":
            return (307, [("Location", self.redirect_to + ("?" + query if query else ""))], b"")
        if path not in ("/token", "/token2"):
            return _error(404, "NOT_FOUND", "no such path")
        auth = req.header("authorization")
        if auth is not None and auth not in {basic_header(u, p) for u, p in self.users.items()}:
            return (401, [("Content-Type", "application/json")], b'{"details":"bad credentials"}')
        scope = (parse_qs(query).get("scope") or [""])[0]
        tok = "tok-" + secrets.token_hex(16)
        user = next((u for u, p in self.users.items() if auth == basic_header(u, p)), None)
        with self._lock:
            self.issued[tok] = scope
            self.issued_to[tok] = user
        body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300}).encode()
        return (200, [("Content-Type", "application/json")], body)


class FakeCDN(FakeServer):
    """Serves blobs at /cdn/<digest>?sig=...; location(digest) builds the
    pre-signed-looking URL a registry redirects to."""

    SIG = "presigned-SIGSECRET-0123456789"

    def __init__(self, tls=None, name="cdn"):
        super().__init__(name, self._handle, tls)
        self.blobs = {}

    def put(self, img):
        self.blobs.update(img.blobs)

    def location(self, digest):
        return "%s/cdn/%s?sig=%s" % (self.url, digest, self.SIG)

    def _handle(self, req):
        path = req.path.split("?", 1)[0]
        m = re.match(r"^/cdn/(sha256:[0-9a-f]{64})$", path)
        if not m or m.group(1) not in self.blobs:
            return (404, [], b"not here")
        return (200, [("Content-Type", "application/octet-stream")], self.blobs[m.group(1)])


class ConnCounter:
    """A bare TCP listener on 127.0.0.1 that counts accepted connections and
    closes them at once (it never speaks HTTP or TLS)."""

    def __init__(self):
        self.connections = 0
        self._sock = None
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        s.settimeout(0.05)
        self._sock = s
        self._thread = threading.Thread(target=self._run, name="conncounter", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.connections += 1
            c.close()

    @property
    def port(self):
        return self._sock.getsockname()[1]

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
