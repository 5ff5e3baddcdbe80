"""The token service process (see tokensvc.py for the protocol).

    python3 tokensvc_main.py CONFIG.json

Serves HTTPS on CONFIG.listen:CONFIG.port (0 = any free port; the chosen
port is written to CONFIG.port_file once the socket listens).  Logs one line
per request to stdout.  Standard library only; signing goes through the
openssl command line.
"""

import base64
import datetime
import json
import os
import re
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib.tokensvc import sign_jwt  # noqa: E402
from lib.pki import cert_der_b64  # noqa: E402

NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
MAX_SCOPES = 16


class State:
    def __init__(self, cfg):
        self.cfg = cfg
        self.x5c = cert_der_b64(cfg["sign_cert"])
        self.lock = threading.Lock()
        self.requests = []          # bounded below
        self.fail_status = 0
        self.delay = 0.0

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)
            if len(self.requests) > 100000:
                del self.requests[:50000]

    def repo_exists(self, name):
        if not NAME_RE.match(name) or len(name) > 255:
            return False
        root = self.cfg["storage_root"]
        return os.path.isdir(os.path.join(root, "docker", "registry", "v2",
                                          "repositories", name, "_manifests"))


STATE = None


def parse_scope(scope):
    """'repository:library/x:pull,push' → (type, name, [actions]); the name may
    carry a port-like colon only in registry hosts, which we do not need."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    typ, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return typ, name, [a for a in actions.split(",") if a]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "om-e2e-tokensvc/1"

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def _send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth_user(self):
        """None = anonymous; False = bad credentials; else the user name."""
        h = self.headers.get("Authorization")
        if not h:
            return None
        if not h.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(h[6:].strip(), validate=True).decode().partition(":")
        except Exception:
            return False
        u = STATE.cfg["users"].get(user)
        if u is None or u.get("password") != pw:
            return False
        return user

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/stats":
            with STATE.lock:
                reqs = list(STATE.requests)
            return self._send_json(200, {"count": len(reqs), "requests": reqs})
        if url.path == "/healthz":
            return self._send_json(200, {})
        if url.path != "/token":
            return self._send_json(404, {"details": "not found"})
        if STATE.delay:
            time.sleep(min(STATE.delay, 120))
        q = parse_qs(url.query, keep_blank_values=True)
        service = (q.get("service") or [""])[0]
        scopes = q.get("scope", [])[:MAX_SCOPES]
        user = self._auth_user()
        entry = {"user": user if isinstance(user, str) else "", "service": service,
                 "scopes": scopes, "granted": [], "status": 200, "t": time.time()}
        if STATE.fail_status:
            entry["status"] = STATE.fail_status
            STATE.record(entry)
            return self._send_json(STATE.fail_status, {"details": "injected failure"})
        if user is False:
            entry["status"] = 401
            STATE.record(entry)
            return self._send_json(401, {"details": "incorrect username or password"},
                                   {"WWW-Authenticate": 'Basic realm="om-e2e"'})
        access = []
        for s in scopes:
            for one in s.split(" "):
                p = parse_scope(one)
                if p is None:
                    continue
                typ, name, actions = p
                granted = []
                ucfg = STATE.cfg["users"].get(user) if user else None
                if ucfg is not None and ucfg.get("access") == "*":
                    granted = actions
                elif typ == "repository":
                    private = name in STATE.cfg.get("private", [])
                    allowed = ucfg is not None and name in ucfg.get("repos", [])
                    if (allowed or not private) and STATE.repo_exists(name):
                        granted = [a for a in actions if a == "pull"]
                if granted:
                    access.append({"type": typ, "name": name, "actions": granted})
        entry["granted"] = access
        now = int(time.time())
        claims = {
            "iss": STATE.cfg["issuer"],
            "sub": user or "",
            "aud": service,
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        tok = sign_jwt(claims, STATE.cfg["sign_key"], STATE.x5c)
        STATE.record(entry)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._send_json(200, {"token": tok, "access_token": tok,
                                     "expires_in": 300, "issued_at": issued})

    def do_POST(self):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 65536)) if n else b""
        if url.path == "/stats/reset":
            with STATE.lock:
                STATE.requests.clear()
            return self._send_json(200, {})
        if url.path == "/control":
            try:
                c = json.loads(body or b"{}")
                STATE.fail_status = int(c.get("fail_status", 0))
                STATE.delay = float(c.get("delay", 0))
            except (ValueError, TypeError) as e:
                return self._send_json(400, {"details": str(e)})
            return self._send_json(200, {})
        return self._send_json(404, {"details": "not found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global STATE
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    STATE = State(cfg)
    srv = Server((cfg.get("listen", "127.0.0.1"), int(cfg.get("port", 0))), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg["tls_cert"], cfg["tls_key"])
    # Handshake in the handler thread, not in accept(), so one slow client
    # cannot stall the others.
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    port = srv.server_address[1]
    tmp = cfg["port_file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, cfg["port_file"])
    print("token service listening on 127.0.0.1:%d" % port, flush=True)
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
