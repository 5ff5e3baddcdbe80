"""faultproxy — a deterministic fault-injecting TLS reverse proxy in front of
one upstream registry (Python 3.11 standard library only).

Why a separate process: the proxy copies 32 MiB blobs while the test process
hashes bodies and polls; keeping them apart keeps the GIL out of the timing
of stalls and throttles, and lets the proxy be killed by process group like
every other e2e process.

Run by hand:
    python3 -m lib.faultproxy --listen 127.0.0.1:0 --upstream https://127.0.0.1:P \
        --ca CA.pem --cert leaf.pem --key leaf.key \
        [--wrong-cert wrong.pem --wrong-key wrong.key] [--control 127.0.0.1:0]
It prints one JSON line {"port": N, "control_port": M} on stdout once both
sockets listen, then logs one line per request on stderr.

From a test, use the FaultProxy class at the bottom:
    with FaultProxy(upstream_url, ca_file, cert, key, wrong_cert, wrong_key, log_path) as p:
        p.add_rule('reset', path=r'/blobs/', times=1, after=65536)
        ... p.url is https://127.0.0.1:<port> ...
        p.applied(rule_id), p.matched(rule_id), p.requests(path_re=..., method=...)
        p.refuse() / p.accept(); p.set_cert('wrong') / p.set_cert('good'); p.clear()

Rules (first match wins; a rule whose `times` is used up no longer matches):
    {"id": str, "path": regex searched in the request path+query,
     "method": regex matched against the method (default any),
     "times": N (0 or absent = always),
     "action": one of
       reset      send headers and `after` body bytes, then close with
                  SO_LINGER 0 (TCP RST, no TLS close_notify)
       truncate   send headers (full Content-Length) and `after` body bytes,
                  then close cleanly (FIN)
       corrupt    forward the whole body with the byte at body offset
                  `offset` inverted (XOR 0xff)
       stall      send headers and `after` body bytes (before_headers: true
                  → stall before any byte), wait `seconds` (released early by
                  clear() or stop), then send the rest
       throttle   forward the body at `rate` bytes/s
       status     answer `status` (500/502/503/429, ...) with an OCI error
                  JSON body without asking the upstream; `retry_after` adds
                  Retry-After
       badlength  forward with Content-Length = real + `delta` (delta > 0:
                  body ends early, connection closed; delta < 0: only the
                  first real+delta bytes are sent, then the connection closes)
       rewrite    replace the body with the upstream body + `append`
                  (default b"\\n"), Content-Length adjusted, every other header
                  (Docker-Content-Digest) kept: the digest no longer matches
       drop       read the request, close the connection without answering
       hang       wait `seconds` before even asking the upstream (released
                  early by clear() or stop), then forward: any method, HEAD
                  included — an upstream (or its token service) that does
                  not answer
    }
Body faults (reset, truncate, corrupt, stall, throttle, badlength, rewrite)
apply only to GET answers with status 200 or 206 and a body; other answers
pass through untouched and do not use up `times`.  `status`, `drop` and `hang`
apply to any matching request.  A rule counts `matched` (requests that
matched while it was live) and `applied` (faults injected).

Global modes: listen on/off (off: the listening socket is closed so
connects are refused, and open client connections are shut), and the
certificate presented ("good" = leaf with 127.0.0.1/localhost SANs, "wrong"
= a leaf from the same CA for another name only).

Control API (plain HTTP on 127.0.0.1, separate port):
    GET    /state             {"rules": [...with counts], "listening", "cert", "requests": n}
    GET    /log               [{"t","method","path","range","status","rule","action","sent",
                                "authorization"}]  (t: when the request arrived; sent:
                                body bytes sent; authorization: the header was present)
    PUT    /rules             body: JSON list of rules (replaces; counts reset)
    POST   /rules             body: one rule (appended) → {"id"}
    DELETE /rules             clear all rules, release stalled responses
    POST   /mode              {"listen": bool?, "cert": "good"|"wrong"?}
    DELETE /log               forget the request log
"""

import argparse
import atexit
import http.client
import http.server
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host",
}
BODY_ACTIONS = {"reset", "truncate", "corrupt", "stall", "throttle", "badlength", "rewrite"}
ALL_ACTIONS = BODY_ACTIONS | {"status", "drop", "hang"}
CHUNK = 64 * 1024
MAX_BUFFERED = 64 * 1024 * 1024   # bodies without Content-Length are read whole, up to this
MAX_LOG = 20000


class Abort(Exception):
    """The fault closed the client connection; stop handling it."""


class State:
    """Rules, counts, modes and the request log; every access under `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []          # list of dicts (with matched/applied counters)
        self.next_id = 1
        self.log = []
        self.cert_mode = "good"
        self.release = threading.Event()   # set → stalled responses go on now
        self.stopping = threading.Event()

    def _norm(self, rule):
        r = dict(rule)
        action = r.get("action")
        if action not in ALL_ACTIONS:
            raise ValueError("unknown action %r" % (action,))
        if not r.get("id"):
            r["id"] = "r%d" % self.next_id
            self.next_id += 1
        r["path"] = r.get("path") or ""
        re.compile(r["path"])
        if r.get("method"):
            re.compile(r["method"])
        r["times"] = int(r.get("times") or 0)
        r["matched"] = 0
        r["applied"] = 0
        return r

    def set_rules(self, rules):
        with self.lock:
            self.rules = [self._norm(r) for r in rules]
            self._release_stalls()

    def add_rule(self, rule):
        with self.lock:
            r = self._norm(rule)
            self.rules.append(r)
            return r["id"]

    def clear(self):
        with self.lock:
            self.rules = []
            self._release_stalls()

    def _release_stalls(self):
        self.release.set()
        self.release = threading.Event()

    def pick(self, method, target):
        """The live rule for this request (marked matched), or None."""
        with self.lock:
            for r in self.rules:
                if r["times"] and r["applied"] >= r["times"]:
                    continue
                if r.get("method") and not re.fullmatch(r["method"], method):
                    continue
                if not re.search(r["path"], target):
                    continue
                r["matched"] += 1
                return r
            return None

    def try_apply(self, rule):
        """Use up one of the rule's `times`; False when another request got
        the last one first."""
        with self.lock:
            if rule["times"] and rule["applied"] >= rule["times"]:
                return False
            rule["applied"] += 1
            return True

    def record(self, entry):
        with self.lock:
            if len(self.log) < MAX_LOG:
                self.log.append(entry)

    def snapshot(self):
        with self.lock:
            return {
                "rules": [dict(r) for r in self.rules],
                "cert": self.cert_mode,
                "requests": len(self.log),
            }


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """One client connection (keep-alive); TLS is set up in this thread so a
    slow handshake never blocks the accept loop."""

    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    sys_version = ""
    timeout = 60

    def setup(self):
        proxy = self.server
        raw = self.request
        raw.settimeout(10)
        ctx = proxy.ctx_wrong if proxy.state.cert_mode == "wrong" else proxy.ctx_good
        try:
            self.request = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            raw.close()
            proxy.logline("tls handshake failed: %s" % e)
            raise Abort() from e
        self.request.settimeout(self.timeout)
        proxy.track(self.request, True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.track(self.request, False)

    def log_message(self, fmt, *args):  # the per-request line is logged in _serve
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except Abort:
            self.close_connection = True
        except (ConnectionError, ssl.SSLError, socket.timeout, BrokenPipeError) as e:
            self.server.logline("client connection error: %r" % (e,))
            self.close_connection = True

    # every method goes through the same path
    def do_GET(self):
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # ---- helpers that end the connection the way a fault wants ----

    def _rst(self):
        s = self.connection
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            s.close()   # SSLSocket.close does not send close_notify
        except OSError:
            pass
        raise Abort()

    def _fin(self):
        s = self.connection
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
        raise Abort()

    def _send_head(self, status, reason, headers):
        lines = ["HTTP/1.1 %d %s\r\n" % (status, reason)]
        for k, v in headers:
            lines.append("%s: %s\r\n" % (k, v))
        lines.append("\r\n")
        self.connection.sendall("".join(lines).encode("latin-1"))

    def _serve(self):
        proxy = self.server
        st = proxy.state
        t0 = time.time()
        method = self.command
        target = self.path
        entry = {"t": t0, "method": method, "path": target,
                 "range": self.headers.get("Range"), "status": None,
                 "rule": None, "action": None, "sent": 0,
                 "authorization": bool(self.headers.get("Authorization"))}
        # Recorded as it arrives (the entry fills in as it is served): a
        # test that got the mirror's answer must see every request the
        # mirror made for it, also one whose relay is still finishing.
        st.record(entry)
        try:
            self._serve_inner(entry)
        finally:
            proxy.logline("%s %s range=%s -> %s rule=%s action=%s sent=%d %.3fs" % (
                method, target, entry["range"], entry["status"], entry["rule"],
                entry["action"], entry["sent"], time.time() - t0))

    def _serve_inner(self, entry):
        proxy = self.server
        st = proxy.state
        method = self.command
        n = int(self.headers.get("Content-Length") or 0)
        req_body = self.rfile.read(n) if n > 0 else None

        rule = st.pick(method, self.path)
        if rule is not None:
            entry["rule"] = rule["id"]
        action = rule["action"] if rule else None

        if action == "hang" and st.try_apply(rule):
            entry["action"] = "hang"
            self._stall(rule)
        if action == "drop" and st.try_apply(rule):
            entry["action"] = "drop"
            self._fin()
        if action == "status" and st.try_apply(rule):
            entry["action"] = "status"
            code = int(rule.get("status", 503))
            body = json.dumps({"errors": [{"code": "UNAVAILABLE" if code != 429 else "TOOMANYREQUESTS",
                                           "message": "injected by faultproxy rule %s" % rule["id"],
                                           "detail": None}]}).encode()
            hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Docker-Distribution-API-Version", "registry/2.0")]
            if rule.get("retry_after") is not None:
                hdrs.append(("Retry-After", str(rule["retry_after"])))
            self._send_head(code, http.client.responses.get(code, "Error"), hdrs)
            if method != "HEAD":
                self.connection.sendall(body)
                entry["sent"] = len(body)
            entry["status"] = code
            return

        # forward to the upstream
        up = proxy.upstream_conn()
        try:
            hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            hdrs["Host"] = proxy.upstream_netloc
            try:
                up.request(method, self.path, body=req_body, headers=hdrs)
                resp = up.getresponse()
            except (OSError, http.client.HTTPException) as e:
                entry["status"] = 502
                body = json.dumps({"errors": [{"code": "UNAVAILABLE",
                                               "message": "faultproxy: upstream: %s" % e}]}).encode()
                self._send_head(502, "Bad Gateway", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body)))])
                self.connection.sendall(body)
                return
            entry["status"] = resp.status
            self._relay(resp, rule, entry)
        finally:
            up.close()

    def _relay(self, resp, rule, entry):
        st = self.server.state
        method = self.command
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        clen = resp.getheader("Content-Length")
        has_body = method != "HEAD" and resp.status not in (204, 304) and resp.status >= 200
        body_fault = (rule is not None and rule["action"] in BODY_ACTIONS and has_body
                      and method == "GET" and resp.status in (200, 206))
        if body_fault and not st.try_apply(rule):
            body_fault = False
        action = rule["action"] if body_fault else None
        entry["action"] = action

        buffered = None
        if has_body and (clen is None or action == "rewrite"):
            # chunked or unknown length, or a body we must rewrite: read it whole
            buffered = resp.read(MAX_BUFFERED + 1)
            if len(buffered) > MAX_BUFFERED:
                raise Abort()
            if action == "rewrite":
                app = rule.get("append", "\n")
                buffered += app.encode() if isinstance(app, str) else bytes(app)
            out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
            out_headers.append(("Content-Length", str(len(buffered))))
            real_len = len(buffered)
        else:
            real_len = int(clen) if clen is not None else 0

        send_len = real_len   # bytes of body we will send
        if action == "badlength":
            delta = int(rule.get("delta", 100))
            fake = max(0, real_len + delta)
            out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
            out_headers.append(("Content-Length", str(fake)))
            send_len = min(real_len, fake)
        if not has_body and method == "HEAD":
            pass   # HEAD: headers as the upstream sent them, Content-Length included

        if action == "stall" and rule.get("before_headers"):
            self._stall(rule)
        self._send_head(resp.status, resp.reason or "OK", out_headers)
        if not has_body:
            return

        after = int(rule.get("after", 0)) if rule else 0
        if action in ("reset", "truncate", "stall"):
            limit = min(after, send_len)
        else:
            limit = send_len
        corrupt_at = int(rule.get("offset", 0)) if action == "corrupt" else -1
        rate = float(rule.get("rate", 0)) if action == "throttle" else 0.0

        sent = 0
        src_read = 0
        t_start = time.monotonic()

        def next_chunk(want):
            nonlocal src_read
            if buffered is not None:
                c = buffered[src_read:src_read + want]
            else:
                c = resp.read(want)
            src_read += len(c)
            return c

        def pump(upto):
            nonlocal sent
            while sent < upto:
                want = min(CHUNK, upto - sent)
                if rate:
                    want = min(want, max(1, int(rate / 20)))
                c = next_chunk(want)
                if not c:
                    break
                if corrupt_at >= 0 and sent <= corrupt_at < sent + len(c):
                    b = bytearray(c)
                    b[corrupt_at - sent] ^= 0xFF
                    c = bytes(b)
                self.connection.sendall(c)
                sent += len(c)
                entry["sent"] = sent
                if rate:
                    due = t_start + sent / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

        pump(limit)
        if action == "reset":
            self._rst()
        if action == "truncate":
            self._fin()
        if action == "stall":
            if not rule.get("before_headers"):
                self._stall(rule)
            pump(send_len)
        if action == "badlength":
            # the client was promised a different length: this connection
            # cannot carry another response
            self._fin()
        if sent < send_len:
            # the upstream ended early: pass the breakage on
            self._rst()

    def _stall(self, rule):
        st = self.server.state
        with st.lock:
            ev = st.release
        deadline = time.monotonic() + float(rule.get("seconds", 10))
        while not st.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or ev.wait(min(left, 0.1)):
                break


class Proxy:
    """The accept loop (own loop, so listening can be switched off and on),
    the TLS contexts and the upstream connection factory."""

    def __init__(self, listen, upstream, ca, cert, key, wrong_cert, wrong_key, log=sys.stderr):
        self.state = State()
        self.listen_host, port = listen.rsplit(":", 1)
        self.port = int(port)
        u = urllib.parse.urlsplit(upstream)
        if u.scheme not in ("https", "http"):
            raise ValueError("upstream must be http(s)://host:port")
        self.upstream_scheme = u.scheme
        self.upstream_host = u.hostname
        self.upstream_port = u.port or (443 if u.scheme == "https" else 80)
        self.upstream_netloc = u.netloc
        self.up_ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self.ctx_good = self._server_ctx(cert, key)
        self.ctx_wrong = self._server_ctx(wrong_cert, wrong_key) if wrong_cert else self.ctx_good
        self.log = log
        self.log_lock = threading.Lock()
        self.lsock = None
        self.lsock_lock = threading.Lock()
        self.conns = set()
        self._open_listener()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    @staticmethod
    def _server_ctx(cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        # No session resumption: every connection shows its certificate
        # again, so switching to the wrong one takes effect at once.
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        return ctx

    def logline(self, msg):
        with self.log_lock:
            try:
                self.log.write("%.3f %s\n" % (time.time(), msg))
                self.log.flush()
            except (OSError, ValueError):
                pass

    def upstream_conn(self):
        if self.upstream_scheme == "https":
            return http.client.HTTPSConnection(self.upstream_host, self.upstream_port,
                                               context=self.up_ctx, timeout=60)
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)

    def _open_listener(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.listen_host, self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        with self.lsock_lock:
            self.lsock = s

    def set_listening(self, on):
        with self.lsock_lock:
            cur = self.lsock
        if on and cur is None:
            for _ in range(100):   # the port may linger briefly after close
                try:
                    self._open_listener()
                    break
                except OSError:
                    time.sleep(0.05)
        elif not on and cur is not None:
            with self.lsock_lock:
                self.lsock = None
            # shutdown() takes a listening socket out of LISTEN at once, even
            # while the accept thread still holds it in select(); close()
            # alone would leave it accepting (then resetting) until then
            try:
                cur.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            cur.close()
            self.drop_connections()   # a refusing upstream has no open connections either

    def drop_connections(self):
        with self.lsock_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def listening(self):
        with self.lsock_lock:
            return self.lsock is not None

    def track(self, sock, add):
        with self.lsock_lock:
            if add:
                self.conns.add(sock)
            else:
                self.conns.discard(sock)

    def _accept_loop(self):
        while not self.state.stopping.is_set():
            with self.lsock_lock:
                s = self.lsock
            if s is None:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([s], [], [], 0.1)
                if not r:
                    continue
                conn, addr = s.accept()
            except (OSError, ValueError):
                continue   # closed under us by set_listening(False)
            threading.Thread(target=self._handle, args=(conn, addr), daemon=True).start()

    def _handle(self, conn, addr):
        try:
            ProxyHandler(conn, addr, self)
        except Abort:
            pass
        except Exception as e:  # never let one connection kill the proxy
            self.logline("handler error: %r" % (e,))
            try:
                conn.close()
            except OSError:
                pass

    def start(self):
        self.thread.start()

    def stop(self):
        self.state.stopping.set()
        self.set_listening(False)


def make_control_server(proxy, listen):
    st = proxy.state

    class Control(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n > 1 << 20:
                raise ValueError("control body too large")
            return json.loads(self.rfile.read(n) or b"null")

        def do_GET(self):
            if self.path == "/state":
                snap = st.snapshot()
                snap["listening"] = proxy.listening()
                snap["port"] = proxy.port
                self._reply(200, snap)
            elif self.path == "/log":
                with st.lock:
                    self._reply(200, list(st.log))
            else:
                self._reply(404, {"error": "no such endpoint"})

        def do_PUT(self):
            try:
                if self.path == "/rules":
                    st.set_rules(self._body() or [])
                    self._reply(200, st.snapshot())
                else:
                    self._reply(404, {"error": "no such endpoint"})
            except (ValueError, re.error, TypeError) as e:
                self._reply(400, {"error": str(e)})

        def do_POST(self):
            try:
                if self.path == "/rules":
                    self._reply(200, {"id": st.add_rule(self._body())})
                elif self.path == "/mode":
                    m = self._body() or {}
                    if "cert" in m:
                        if m["cert"] not in ("good", "wrong"):
                            raise ValueError("cert must be good or wrong")
                        with st.lock:
                            changed = st.cert_mode != m["cert"]
                            st.cert_mode = m["cert"]
                        if changed:   # kept-alive connections would skip the handshake
                            proxy.drop_connections()
                    if "listen" in m:
                        proxy.set_listening(bool(m["listen"]))
                    self._reply(200, {"listening": proxy.listening(), "cert": st.cert_mode})
                else:
                    self._reply(404, {"error": "no such endpoint"})
            except (ValueError, re.error, TypeError) as e:
                self._reply(400, {"error": str(e)})

        def do_DELETE(self):
            if self.path == "/rules":
                st.clear()
                self._reply(200, {})
            elif self.path == "/log":
                with st.lock:
                    st.log = []
                self._reply(200, {})
            else:
                self._reply(404, {"error": "no such endpoint"})

    host, port = listen.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Control)
    srv.daemon_threads = True
    return srv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ca", help="CA bundle that verifies the upstream")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--wrong-cert")
    ap.add_argument("--wrong-key")
    ap.add_argument("--control", default="127.0.0.1:0")
    ap.add_argument("--rules", help="JSON file with an initial rule list")
    ap.add_argument("--parent-pid", type=int, default=0,
                    help="exit when this process is gone (the test was killed)")
    a = ap.parse_args(argv)

    proxy = Proxy(a.listen, a.upstream, a.ca, a.cert, a.key, a.wrong_cert, a.wrong_key)
    if a.rules:
        with open(a.rules) as f:
            proxy.state.set_rules(json.load(f))
    ctl = make_control_server(proxy, a.control)
    proxy.start()
    threading.Thread(target=ctl.serve_forever, daemon=True).start()

    def on_term(signum, frame):
        proxy.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sys.stdout.write(json.dumps({"port": proxy.port, "control_port": ctl.server_address[1]}) + "\n")
    sys.stdout.flush()
    proxy.logline("faultproxy listening on %s:%d → %s" % (proxy.listen_host, proxy.port, a.upstream))
    while True:
        time.sleep(1)
        if a.parent_pid and not _alive(a.parent_pid):
            proxy.logline("parent %d gone: exiting" % a.parent_pid)
            proxy.stop()
            return


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# ---------------------------------------------------------------------------
# Test-side helpers


class FaultProxy:
    """Start lib.faultproxy as its own process (own session, stopped by
    process group) and drive it through its control port.  Certificates
    come from the test CA: ca.issue('faultproxy') for the good one,
    ca.issue('faultproxy-wrong', sans=('wrong.invalid',)) for the wrong one."""

    def __init__(self, upstream_url, ca_file, cert, key, wrong_cert=None, wrong_key=None,
                 log_path=None):
        self.args = [sys.executable, "-u", "-m", "lib.faultproxy", "--listen", "127.0.0.1:0",
                     "--upstream", upstream_url, "--ca", ca_file, "--cert", cert, "--key", key,
                     "--parent-pid", str(os.getpid())]
        if wrong_cert:
            self.args += ["--wrong-cert", wrong_cert, "--wrong-key", wrong_key]
        self.log_path = log_path
        self.proc = None
        self.port = None
        self.control_port = None
        self.url = None

    def start(self, timeout=15):
        sp = subprocess
        libdir = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.dirname(libdir) + os.pathsep + env.get("PYTHONPATH", "")
        logf = open(self.log_path, "ab") if self.log_path else sp.DEVNULL
        try:
            self.proc = sp.Popen(self.args, stdout=sp.PIPE, stderr=logf, env=env,
                                 cwd=os.path.dirname(libdir), start_new_session=True)
        finally:
            if self.log_path:
                logf.close()
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else b""
        if not line:
            self.stop()
            raise RuntimeError("faultproxy did not start (see %s)" % self.log_path)
        atexit.register(self.stop)   # SIGTERM of the test → world's sys.exit → here
        info = json.loads(line)
        self.port = info["port"]
        self.control_port = info["control_port"]
        self.url = "https://127.0.0.1:%d" % self.port
        self.host_port = "127.0.0.1:%d" % self.port
        return self

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- control ----

    def _call(self, method, path, obj=None):
        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.control_port, path),
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def set_rules(self, rules):
        return self._call("PUT", "/rules", rules)

    def add_rule(self, action, path="", times=0, method=None, **params):
        rule = dict(params, action=action, path=path, times=times)
        if method:
            rule["method"] = method
        return self._call("POST", "/rules", rule)["id"]

    def clear(self):
        self._call("DELETE", "/rules")

    def state(self):
        return self._call("GET", "/state")

    def rule(self, rule_id):
        for r in self.state()["rules"]:
            if r["id"] == rule_id:
                return r
        raise KeyError(rule_id)

    def applied(self, rule_id):
        return self.rule(rule_id)["applied"]

    def matched(self, rule_id):
        return self.rule(rule_id)["matched"]

    def log(self):
        return self._call("GET", "/log")

    def clear_log(self):
        self._call("DELETE", "/log")

    def requests(self, path_re=None, method=None, with_range=None):
        out = []
        for e in self.log():
            if path_re and not re.search(path_re, e["path"]):
                continue
            if method and e["method"] != method:
                continue
            if with_range is not None and bool(e.get("range")) != with_range:
                continue
            out.append(e)
        return out

    def refuse(self):
        self._call("POST", "/mode", {"listen": False})

    def accept(self):
        self._call("POST", "/mode", {"listen": True})

    def set_cert(self, mode):
        self._call("POST", "/mode", {"cert": mode})


if __name__ == "__main__":
    main()
