"""P4-like cost of access.*, policy.* and the per-client limits: a warm manifest GET by tag
(/v2/library/alpine/manifests/3.19, a search-order name: every candidate is
checked), `wrk -t2 -c64 -d5s`, with neither, with a 54-pattern allow list and
a deny, with both plus Basic auth (a remembered login), with all that plus
every per-client limit (never reached), and "refused": a limit of one
request a second, so that nearly every request is a 429 (the cost of
refusing).  The figure is
the mirror's CPU time per request (utime+stime from /proc over wrk's request
count), which depends far less on other load than requests/s; 7 rounds,
medians.

Run (the e2e world: registries, token service; loopback only):
  cd tests/e2e && OCIMIRROR_BIN=/tmp/b/ocimirror ../../scripts/netns-run \
      python3 -u ../../bench/p4_access.py
"""
import base64, os, re, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from lib.world import World
from lib.images import ACCEPT_ALL

def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def wrk(m, headers):
    args = ["wrk", "-t2", "-c64", "-d5s"]
    for k, v in headers.items():
        args += ["-H", "%s: %s" % (k, v)]
    c0 = cpu(m.pid)
    out = subprocess.run(args + [m.url + "/v2/library/alpine/manifests/3.19"], capture_output=True, text=True).stdout
    c1 = cpu(m.pid)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    us = (c1 - c0) / n * 1e6   # server CPU us per request
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return us, int(non2xx.group(1)) if non2xx else 0, rate

with World() as w:
    pw = os.path.join(w.dir, "htpasswd")
    subprocess.run(["htpasswd", "-cbB", pw, "alice", "alice-pw"], check=True, capture_output=True)
    allow = ["docker.io/library/*", "registry.k8s.io/**", "quay.io/prometheus/*"] + ["docker.io/x%d/**" % i for i in range(50)]
    confs = {
        "off": {},
        "policy": {"policy": {"allow": allow, "deny": ["docker.io/library/evil"]}},
        "auth+policy": {"policy": {"allow": allow, "deny": ["docker.io/library/evil"]},
                        "access": {"anonymous": False, "htpasswd_file": pw}},
        # everything a public mirror turns on: the above plus every per-client
        # limit (high enough never to refuse: the cost of counting)
        "all": {"policy": {"allow": allow, "deny": ["docker.io/library/evil"]},
                "access": {"anonymous": False, "htpasswd_file": pw},
                "limits": {"per_client": {"requests_per_second": 1000000, "burst": 1000000,
                                          "downloads": 1000, "bytes_per_day": "1TiB",
                                          "upstream_fetches_per_minute": 100000}}},
        # the cost of a refused request: one token a second, so nearly every
        # request of the run is answered 429 (counted as non-2xx)
        "refused": {"limits": {"per_client": {"requests_per_second": 1, "burst": 1}}},
    }
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-pw").decode()}
    res, rates = {}, {}
    for rnd in range(7):
        for name, extra in confs.items():
            extra = dict(extra); extra["log"] = {"level": "warn", "format": "json"}
            m = w.mirror(extra=extra)
            h = {"Accept": ACCEPT_ALL}
            if "access" in extra:
                h.update(auth)
            st = m.get("/v2/library/alpine/manifests/3.19", h).status
            # "refused": the harness's readiness probe took the one token
            assert st == (429 if name == "refused" else 200), (name, st)
            us, bad, rate = wrk(m, h)
            res.setdefault(name, []).append(us)
            rates.setdefault(name, []).append(rate)
            print("round %d %-12s %8.2f us CPU/req %9.0f req/s (non-2xx %d)" % (rnd, name, us, rate, bad),
                  flush=True)
            m.stop()
    for name, v in res.items():
        v.sort()
        r = sorted(rates[name])
        print("%-12s median %8.2f us CPU/req  ratio vs off %.3f   median %9.0f req/s  ratio vs off %.3f"
              % (name, v[3], v[3] / sorted(res["off"])[3], r[3], r[3] / sorted(rates["off"])[3]))
