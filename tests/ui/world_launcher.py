#!/usr/bin/env python3
"""world_launcher.py — a real mirror with real registries behind it, for the
browser tests (tests/ui/ui.test.mjs), built from the e2e harness
(tests/e2e/lib, used as it is).

    OCIMIRROR_BIN=build/ocimirror scripts/netns-run python3 -u tests/ui/world_launcher.py

What it does:
  1. starts a World (CA, token service, three docker-registry upstreams with
     the standard fixtures) and pushes a few more images: one whose config
     labels hold HTML (the UI must show it as text) and PAGING_REPOS small
     repositories, so the repository browser has more than one page;
  2. puts quay.io behind a fault proxy that throttles the 32 MiB 'big'
     layer, so a test can watch a download in flight;
  3. starts ocimirror (admin token ADMIN_TOKEN, storage quota 1 GiB) and
     pulls the images through it the way a client does (manifest by tag,
     children of an index, every blob), and the paging repositories' tags;
     then makes events of every kind (make_events) so that the page that
     walks every page in Chinese sees each of them rendered: a blob whose
     bytes do not match its digest, a blob the upstream keeps failing, an
     eviction, a GC run, prefetch jobs from the API and from the command
     line (done, failed, cancelled);
  4. prints ONE line on stdout: "OM_WORLD " + JSON {url, token, log,
     images: {key: {name, tag, digest, media_type, platforms, layers,
     sizes}}, big: {...}, paging: {prefix, count}, repositories (how many
     the cache holds), jobs: {api, cli, cancelled: [ids]}};
  5. waits until its stdin closes (or SIGTERM), then stops everything and
     exits 1 if the mirror died or its log holds a sanitizer report.

Python standard library only.  Runs only inside a loopback-only network
namespace (scripts/netns-run), like every e2e test.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from lib.faultproxy import FaultProxy  # noqa: E402
from lib.images import ACCEPT_ALL, make_image  # noqa: E402
from lib.world import World, canonical_name  # noqa: E402

ADMIN_TOKEN = "ui-test-admin-token"
PAGING_REPOS = 60
PAGING_PREFIX = "paging/repo-"
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
PULLED = ["alpine", "app", "multi", "ocimulti", "etcd", "apiserver", "pause", "coredns"]
BIG_RATE = 3 * 1024 * 1024      # bytes/s through the fault proxy: ~11 s for 'big'


def log(msg):
    sys.stderr.write("world_launcher: %s\n" % msg)
    sys.stderr.flush()


def pull(m, img, name):
    """A client's pull of img through mirror m: every status must be 200."""
    def get(path, accept=None):
        r = m.get(path, {"Accept": accept} if accept else None, timeout=60)
        if r.status != 200:
            raise RuntimeError("GET %s -> %d %r" % (path, r.status, r.body[:200]))
        return r
    get("/v2/%s/manifests/%s" % (name, img.tag), ACCEPT_ALL)
    todo = list(img.children.values()) if img.children else [img]
    for c in todo:
        if img.children:
            get("/v2/%s/manifests/%s" % (name, c.digest), ACCEPT_ALL)
        for d in c.blobs:
            get("/v2/%s/blobs/%s" % (name, d))


def admin(m, path, body=None, method=None):
    """An admin API call with the token; the JSON answer (2xx only)."""
    r = m.get(path, {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"},
              method=method or ("POST" if body is not None else "GET"),
              body=json.dumps(body) if body is not None else None, timeout=60)
    if r.status // 100 != 2:
        raise RuntimeError("%s %s -> %d %r" % (method or "POST", path, r.status, r.body[:300]))
    return r.json()


def wait_job(m, job_id, states=("done", "failed", "cancelled"), timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = next(j for j in admin(m, "/api/v1/prefetch")["jobs"] if j["id"] == job_id)
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError("prefetch job %s stuck in %s" % (job_id, job["state"]))
        time.sleep(0.2)


def try_pull(m, img, name):
    """A pull that may fail (a fault is injected): True if every blob came."""
    ok = True
    m.get("/v2/%s/manifests/%s" % (name, img.tag), {"Accept": ACCEPT_ALL}, timeout=60)
    for d in img.blobs:
        try:
            r = m.get("/v2/%s/blobs/%s" % (name, d), timeout=60)
            ok = ok and r.status == 200
        except Exception:       # the mirror cuts a download that went wrong
            ok = False
    return ok


def make_events(w, m, proxy):
    """Events of every kind (see the module doc); returns what the tests
    need to know about them.  What the mirror does not do (an older binary)
    is logged, not fatal: the tests say what is missing."""
    corrupt = make_image("corrupt", "team/corrupt", "1", "quay", "docker", seed=501, n_layers=2)
    failing = make_image("failing", "team/failing", "1", "quay", "docker", seed=502, n_layers=1)
    evictme = make_image("evictme", "team/evictme", "1", "k8s", "docker", seed=503, n_layers=2)
    for img in (corrupt, failing, evictme):
        w.push(img)
    # A blob whose bytes are flipped once: digest mismatch, not cached; the
    # next pull gets it.
    proxy.add_rule("corrupt", path=r"/blobs/" + corrupt.layers[0], times=1, offset=10)
    try_pull(m, corrupt, canonical_name(corrupt))
    if not try_pull(m, corrupt, canonical_name(corrupt)):
        raise RuntimeError("the corrupt image did not arrive on the second pull")
    # A blob whose connection the upstream always breaks before the first
    # byte: the download fails after its resumes.  (A 5xx answer would be
    # "not there", not a failed download.)
    proxy.add_rule("reset", path=r"/blobs/" + failing.layers[0], after=0)
    try_pull(m, failing, canonical_name(failing))
    # An eviction on request, then a GC run with something to remove.
    pull(m, evictme, canonical_name(evictme))
    admin(m, "/api/v1/evict", {"name": canonical_name(evictme), "reference": evictme.tag})
    stale = os.path.join(m.storage, "ingest", "ui-test-stale")
    os.makedirs(os.path.dirname(stale), exist_ok=True)
    with open(stale, "wb") as f:
        f.write(b"x" * 1000)
    old = time.time() - 3 * 3600
    os.utime(stale, (old, old))
    admin(m, "/api/v1/gc", {})
    # Prefetch from the API: one image done, one failed.
    api_job = admin(m, "/api/v1/prefetch", {"images": ["registry.k8s.io/pause:3.9", "quay.io/nope/missing:1"],
                                            "platforms": ["linux/amd64"]})["id"]
    wait_job(m, api_job)
    # From the command line, as the mirror's own job: everything cached.
    run = subprocess.run([os.environ["OCIMIRROR_BIN"], "prefetch", "--mirror", m.url, "--platform",
                          "linux/amd64", "registry.k8s.io/pause:3.9"],
                         env=dict(os.environ, OCIMIRROR_ADMIN_TOKEN=ADMIN_TOKEN),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    cli_job = run.stdout.split("as its prefetch job ", 1)[1].split()[0] if "as its prefetch job " in run.stdout else None
    if run.returncode != 0 or cli_job is None:
        log("ocimirror prefetch did not run as the mirror's job (%d):\n%s\n%s" % (run.returncode, run.stdout, run.stderr))
    # Cancelled: one waiting for its next try (the failing blob), one queued.
    cancelled = []
    try:
        waiting = admin(m, "/api/v1/prefetch", {"images": ["quay.io/team/failing:1"], "platforms": ["linux/amd64"],
                                                "retries": 2, "retry_interval": "1h"})["id"]
        queued = admin(m, "/api/v1/prefetch", {"images": ["registry.k8s.io/pause:3.9"]})["id"]
        wait_job(m, waiting, states=("waiting", "failed"))
        for jid in (queued, waiting):
            admin(m, "/api/v1/prefetch/%s/cancel" % jid, {})
            wait_job(m, jid, states=("cancelled",))
            cancelled.append(jid)
    except (RuntimeError, KeyError) as e:
        log("cancelling prefetch jobs: %s" % e)
    kinds = {e.get("code") for e in admin(m, "/api/v1/events?limit=1000")["events"]}
    want = {"blob_fetched", "blob_failed", "blob_digest_mismatch", "image_evicted", "gc_finished",
            "prefetch_image_done", "prefetch_image_failed", "prefetch_job_finished",
            "prefetch_job_cancelled"}
    if not want <= kinds:
        log("events missing: %s" % sorted(want - kinds))
    return {"api": api_job, "cli": cli_job, "cancelled": cancelled}


def describe(img):
    """What the tests compare the UI with (besides the API itself)."""
    out = {"name": canonical_name(img), "tag": img.tag, "digest": img.digest,
           "media_type": img.media_type, "platforms": dict(img.platforms),
           "layers": list(img.layers), "sizes": {d: len(b) for d, b in img.layer_bytes.items()}}
    if img.children:
        out["children"] = {p: {"digest": c.digest, "layers": list(c.layers)}
                           for p, c in img.children.items()}
    return out


def main():
    t0 = time.monotonic()
    w = World()
    log("world up in %.1f s: %s" % (time.monotonic() - t0, w.log_dir))
    evil = make_image("evil", "team/evil", "1", "k8s", "docker", seed=77, n_layers=1,
                      labels={"evil": EVIL, "org.opencontainers.image.description": "hostile <b>label</b>"})
    w.push(evil)
    paging = [make_image("pg%02d" % i, "%s%02d" % (PAGING_PREFIX, i), "1", "k8s", "docker",
                         seed=1000 + i, n_layers=1, files_per_layer=1) for i in range(PAGING_REPOS)]
    for img in paging:
        w.push(img)

    cert, key = w.ca.issue("faultproxy")
    proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                       log_path=os.path.join(w.log_dir, "faultproxy.log")).start()
    big = w.fx["big"]
    proxy.add_rule("throttle", path=r"/blobs/" + big.layers[0], rate=BIG_RATE)

    m = w.mirror(upstream_url={"quay": proxy.url},
                 extra={"admin": {"token": ADMIN_TOKEN}, "storage": {"max_size": "1GiB"}})
    images = {}
    for key in PULLED:
        img = w.fx[key]
        pull(m, img, canonical_name(img))
        images[key] = describe(img)
    pull(m, evil, canonical_name(evil))
    images["evil"] = describe(evil)
    for img in paging:
        r = m.get("/v2/%s/manifests/%s" % (canonical_name(img), img.tag), {"Accept": ACCEPT_ALL})
        if r.status != 200:
            raise RuntimeError("paging pull %s -> %d" % (img.repo, r.status))
    jobs = make_events(w, m, proxy)
    repositories = m.get("/api/v1/stats").json()["storage"]["repositories"]
    log("mirror ready in %.1f s: %s" % (time.monotonic() - t0, m.url))

    info = {"url": m.url, "token": ADMIN_TOKEN, "log": m.log_path, "images": images,
            "evil": EVIL, "big": describe(big), "repositories": repositories, "jobs": jobs,
            "paging": {"prefix": "registry.k8s.io/" + PAGING_PREFIX, "count": PAGING_REPOS}}
    sys.stdout.write("OM_WORLD " + json.dumps(info) + "\n")
    sys.stdout.flush()

    # Until the test is done with us.
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    problems = []
    rc = m.stop(timeout=15)
    if m.unexpected_exits:
        problems.append("the mirror died during the tests (exit status %s)" % m.unexpected_exits)
    elif rc not in (0, None):
        problems.append("the mirror exited with %s on SIGTERM" % rc)
    problems += ["sanitizer report:\n" + r for r in m.sanitizer_reports()]
    proxy.stop()
    w.close()
    for p in problems:
        log(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
