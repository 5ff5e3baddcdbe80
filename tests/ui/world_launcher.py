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
  4. prints ONE line on stdout: "OM_WORLD " + JSON {url, token, log,
     images: {key: {name, tag, digest, media_type, platforms, layers,
     sizes}}, big: {...}, paging: {prefix, count}};
  5. waits until its stdin closes (or SIGTERM), then stops everything and
     exits 1 if the mirror died or its log holds a sanitizer report.

Python standard library only.  Runs only inside a loopback-only network
namespace (scripts/netns-run), like every e2e test.
"""

import json
import os
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
    log("mirror ready in %.1f s: %s" % (time.monotonic() - t0, m.url))

    info = {"url": m.url, "token": ADMIN_TOKEN, "log": m.log_path, "images": images,
            "evil": EVIL, "big": describe(big),
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
