"""The admin JSON API (docs/admin-api.md) and /metrics (docs/metrics.md),
checked against what the tests pulled: counts, hit/miss after a second
pull, a repository's tags, image details with platforms, layers and config
fields from the fixtures, the route explainer for bare, prefixed, ns and
rewritten names, upstream health, events, in-flight downloads during a slow
cold download, the admin token (POST without/with a wrong/with the right
token, protect_reads), and the Prometheus text format line by line.

Each test starts its own mirror (fresh storage) so its figures are exact.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_admin_api.py
"""

import json
import math
import os
import re
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.faultproxy import FaultProxy  # noqa: E402
from lib.images import CREATED  # noqa: E402
from lib.world import WorldTestCase, canonical_name  # noqa: E402

TOKEN = "s3cr3t-admin-token"
ZERO_DIGEST = "sha256:" + "0" * 64


def q(s):
    return urllib.parse.quote(s, safe="")


# -- /metrics -------------------------------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def parse_exposition(text):
    """Parse Prometheus text format 0.0.4 strictly enough to catch mistakes.
    Returns (types {family: type}, helps {family: text},
    samples [(name, {labels}, value)]).  Raises ValueError on a bad line."""
    types, helps, samples, order = {}, {}, [], []
    if not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 4 or not METRIC_NAME.fullmatch(parts[2]):
                    raise ValueError("line %d: bad %s line: %r" % (n, parts[1], line))
                fam = parts[2]
                table = helps if parts[1] == "HELP" else types
                if fam in table:
                    raise ValueError("line %d: second %s for %s" % (n, parts[1], fam))
                if parts[1] == "TYPE":
                    if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        raise ValueError("line %d: bad type %r" % (n, parts[3]))
                    if any(s[3] == fam for s in samples):
                        raise ValueError("line %d: TYPE after samples of %s" % (n, fam))
                table[fam] = parts[3]
                if fam not in order:
                    order.append(fam)
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise ValueError("line %d: no metric name: %r" % (n, line))
        name, rest = m.group(0), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            end = rest.index("}")
            body, rest = rest[1:end], rest[end + 1:]
            pos = 0
            while pos < len(body):
                lm = LABEL.match(body, pos)
                if not lm:
                    raise ValueError("line %d: bad labels %r" % (n, body))
                if lm.group(1) in labels:
                    raise ValueError("line %d: label %s twice" % (n, lm.group(1)))
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        fields = rest.split()
        if len(fields) not in (1, 2) or not rest.startswith(" "):
            raise ValueError("line %d: bad sample %r" % (n, line))
        value = float(fields[0])            # accepts NaN, +Inf
        fam = family_of(name, types)
        if fam is None:
            raise ValueError("line %d: sample %s has no TYPE line before it" % (n, name))
        if order[-1] != fam:
            raise ValueError("line %d: %s is not in its family's block" % (n, name))
        samples.append((name, labels, value, fam))
    return types, helps, [(a, b, c) for a, b, c, _ in samples]


def family_of(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return None


def value(samples, name, **labels):
    got = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    if len(got) != 1:
        raise AssertionError("%s%r: %d samples" % (name, labels, len(got)))
    return got[0]




class AdminApiTest(WorldTestCase):

    def api(self, m, path, status=200, headers=None, method="GET", body=None):
        """GET (or method) an admin path, check the status, return the JSON."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        r = m.get(path, headers=headers, method=method, body=body)
        self.assertEqual(r.status, status, "%s %s: %r %s" % (method, path, r, r.body[:500]))
        if method == "HEAD":
            return r
        ct = (r.headers.get("Content-Type") or "")
        self.assertTrue(ct.startswith("application/json"), "%s: Content-Type %r" % (path, ct))
        return r.json()

    def stats_when(self, m, cond, timeout=10):
        """/api/v1/stats once cond(stats) holds.  A request is counted when
        the server has finished it, which may be just after the client has
        read the last byte: poll briefly instead of racing."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.api(m, "/api/v1/stats")
            if cond(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def cache_total(self, s):
        return sum(s["cache"].values())

    def blob_bytes(self, img):
        return sum(len(img.layer_bytes[d]) for d in img.blobs)



    def test_second_pull_turns_every_miss_into_a_hit_in_stats(self):
        m = self.mirror()
        img = self.w.fx["alpine"]
        n_objects = 1 + len(img.blobs)                      # manifest by tag + config + layers
        body_bytes = len(img.manifest_bytes) + self.blob_bytes(img)
        s0 = self.api(m, "/api/v1/stats")
        self.assertEqual(s0["cache"], {"hit": 0, "miss": 0, "stale": 0, "coalesced": 0})
        self.assertIsNone(s0["hit_ratio"]["since_start"])
        self.assertEqual(len(s0["history"]), 60)

        self.pull(m, img)
        s1 = self.stats_when(m, lambda s: self.cache_total(s) >= n_objects)
        self.assertEqual(s1["cache"]["miss"], n_objects, s1["cache"])
        self.assertEqual(s1["cache"]["hit"], 0)
        self.assertEqual(s1["cache_bytes"]["miss"], body_bytes)
        self.assertEqual(s1["bytes_served"], {"cache": 0, "upstream": body_bytes})
        self.assertEqual(s1["hit_ratio"]["since_start"], 0.0)

        self.pull(m, img)
        s2 = self.stats_when(m, lambda s: self.cache_total(s) >= 2 * n_objects
                             and s["downloads"]["completed"] >= len(img.blobs))
        self.assertEqual(s2["cache"]["hit"], n_objects, s2["cache"])
        self.assertEqual(s2["cache"]["miss"], n_objects)
        self.assertEqual(s2["bytes_served"], {"cache": body_bytes, "upstream": body_bytes})
        self.assertAlmostEqual(s2["hit_ratio"]["since_start"], 0.5)
        self.assertAlmostEqual(s2["hit_ratio"]["last_hour"], 0.5)
        hist = s2["history"]
        self.assertEqual(sum(p["hits"] for p in hist), n_objects)
        self.assertEqual(sum(p["misses"] for p in hist), n_objects)
        self.assertEqual(sum(p["bytes_cache"] for p in hist), body_bytes)
        self.assertEqual(sum(p["bytes_upstream"] for p in hist), body_bytes)
        ts = [p["t_ms"] for p in hist]
        self.assertEqual(ts, sorted(ts))
        self.assertTrue(all(b - a == 60000 for a, b in zip(ts, ts[1:])))
        self.assertLessEqual(ts[-1], s2["now_ms"])
        self.assertGreater(ts[-1] + 60000, s2["now_ms"])

        st = s2["storage"]
        self.assertEqual((st["repositories"], st["tags"], st["manifests"], st["blobs"]),
                         (1, 1, 1, len(img.blobs)), st)
        self.assertEqual(st["used_bytes"], body_bytes)
        self.assertEqual(st["quota_bytes"], 0)
        self.assertEqual(s2["inflight"], 0)
        self.assertEqual(s2["downloads"]["completed"], len(img.blobs))
        self.assertGreater(s2["requests"], 2 * n_objects)
        self.assertGreaterEqual(s2["uptime_s"], 0)

    def test_repositories_are_paged_searched_and_filtered_by_upstream(self):
        m = self.mirror()
        keys = ["alpine", "app", "etcd", "apiserver", "shared_hub"]
        for k in keys:
            self.pull(m, self.w.fx[k])
        names = sorted(canonical_name(self.w.fx[k]) for k in keys)

        doc = self.api(m, "/api/v1/repositories")
        self.assertEqual((doc["page"], doc["per_page"], doc["total"]), (1, 50, len(keys)))
        self.assertEqual([r["name"] for r in doc["repositories"]], names)
        by_name = {r["name"]: r for r in doc["repositories"]}
        for k in keys:
            img = self.w.fx[k]
            r = by_name[canonical_name(img)]
            with self.subTest(repo=r["name"]):
                self.assertEqual(r["upstream"], canonical_name(img).split("/")[0])
                self.assertEqual(r["remote"], img.repo)
                self.assertEqual(r["tags"], 1)
                self.assertEqual(r["size_bytes"], len(img.manifest_bytes) + self.blob_bytes(img))
                self.assertEqual(r["pull_count"], 1)
                self.assertLessEqual(abs(r["last_pulled_ms"] - time.time() * 1000), 120000)

        doc = self.api(m, "/api/v1/repositories?per_page=2&page=2")
        self.assertEqual((doc["page"], doc["per_page"], doc["total"]), (2, 2, len(keys)))
        self.assertEqual([r["name"] for r in doc["repositories"]], names[2:4])
        doc = self.api(m, "/api/v1/repositories?per_page=2&page=9")
        self.assertEqual(doc["repositories"], [])
        self.assertEqual(doc["total"], len(keys))

        cases = [
            ("q=ALP", ["docker.io/library/alpine"]),
            ("q=" + q("library/"), ["docker.io/library/alpine", "docker.io/library/shared"]),
            ("upstream=quay.io", ["quay.io/coreos/etcd"]),
            ("upstream=k8s.gcr.io", ["registry.k8s.io/kube-apiserver"]),   # an alias
            ("upstream=docker.io&q=app", ["docker.io/team/app"]),
            ("upstream=docker.io&q=etcd", []),
            ("q=nothing-like-this", []),
            ("sort=pulls&per_page=1", [names[0]]),
        ]
        for query, want in cases:
            with self.subTest(query=query):
                doc = self.api(m, "/api/v1/repositories?" + query)
                self.assertEqual([r["name"] for r in doc["repositories"]], want)
                if "per_page" not in query:
                    self.assertEqual(doc["total"], len(want))

        for bad in ("page=0", "per_page=0", "per_page=501", "page=x", "page=-1", "sort=bogus"):
            with self.subTest(bad=bad):
                r = m.get("/api/v1/repositories?" + bad)
                self.assertErrorJSON(r, 400)

    def test_tags_of_a_repository_carry_digest_platforms_times_and_pulls(self):
        m = self.mirror()
        multi, alpine = self.w.fx["multi"], self.w.fx["alpine"]
        t0 = time.time() * 1000
        self.pull(m, multi)
        self.pull(m, alpine)

        doc = self.api(m, "/api/v1/repositories/%s/tags" % canonical_name(multi))
        self.assertEqual(doc["name"], canonical_name(multi))
        self.assertEqual(doc["total"], 1)
        (t,) = doc["tags"]
        self.assertEqual(t["tag"], multi.tag)
        self.assertEqual(t["digest"], multi.digest)
        self.assertEqual(t["media_type"], multi.media_type)
        self.assertEqual(t["size"], len(multi.manifest_bytes))
        self.assertEqual(sorted(t["platforms"]), sorted(multi.platforms))
        self.assertEqual(t["pull_count"], 1)
        self.assertTrue(t["cached"])
        self.assertFalse(t["stale"])
        for key in ("fetched_ms", "checked_ms", "last_pulled_ms"):
            self.assertGreaterEqual(t[key], t0 - 1000, key)

        # A single-platform image: the platform comes from its config.
        doc = self.api(m, "/api/v1/repositories/%s/tags" % q(canonical_name(alpine)))
        self.assertEqual(doc["tags"][0]["platforms"], ["linux/amd64"])

        # After tag_ttl (2 s in the World's config) the tag is stale: the
        # next pull asks the upstream first.
        time.sleep(2.2)
        doc = self.api(m, "/api/v1/repositories/%s/tags" % canonical_name(alpine))
        self.assertTrue(doc["tags"][0]["stale"])

        self.assertErrorJSON(m.get("/api/v1/repositories/docker.io/library/nope/tags"), 404,
                             "NAME_UNKNOWN")
        self.assertErrorJSON(m.get("/api/v1/repositories/docker.io/library/alpine/nope"), 404)
        self.assertErrorJSON(m.get("/api/v1/repositories/Docker.io/x/tags"), 400, "NAME_INVALID")

    def test_image_details_show_platforms_layers_config_and_pull_commands(self):
        m = self.mirror()
        multi = self.w.fx["multi"]
        self.pull(m, multi, platforms=["linux/amd64"])
        name = canonical_name(multi)
        amd64 = multi.children["linux/amd64"]
        arm = [p for p in multi.platforms if p != "linux/amd64"][0]

        doc = self.api(m, "/api/v1/images/%s@%s" % (name, multi.digest))
        self.assertEqual(doc["kind"], "index")
        self.assertEqual(doc["digest"], multi.digest)
        self.assertEqual(doc["media_type"], multi.media_type)
        self.assertEqual(doc["size"], len(multi.manifest_bytes))
        self.assertEqual(doc["tags"], [multi.tag])
        plats = {p["platform"]: p for p in doc["platforms"]}
        self.assertEqual(sorted(plats), sorted(multi.platforms))
        self.assertEqual(plats["linux/amd64"]["digest"], amd64.digest)
        self.assertTrue(plats["linux/amd64"]["cached"])
        self.assertFalse(plats[arm]["cached"], "only linux/amd64 was pulled")
        self.assertEqual(plats[arm]["digest"], multi.platforms[arm])
        self.assertEqual(doc["layers"], [])
        self.assertIsNone(doc["config"])
        host = m.host_port
        self.assertEqual(doc["pull"]["reference"], "%s/%s@%s" % (host, name, multi.digest))
        self.assertEqual(doc["pull"]["docker"], "docker pull %s/%s@%s" % (host, name, multi.digest))
        self.assertIn("--plain-http", doc["pull"]["ctr"])
        self.assertIn("--tls-verify=false", doc["pull"]["podman"])

        doc = self.api(m, "/api/v1/images/%s@%s?tag=%s" % (name, amd64.digest, multi.tag))
        self.assertEqual(doc["kind"], "manifest")
        self.assertEqual(doc["tags"], [])            # the platform manifest is not tagged
        self.assertEqual([l["digest"] for l in doc["layers"]], amd64.layers)
        self.assertEqual([l["size"] for l in doc["layers"]],
                         [len(amd64.layer_bytes[d]) for d in amd64.layers])
        self.assertTrue(all(l["cached"] for l in doc["layers"]))
        self.assertEqual(doc["layers_size"], sum(len(amd64.layer_bytes[d]) for d in amd64.layers))
        self.assertEqual(doc["layers_cached_size"], doc["layers_size"])
        cfg = doc["config"]
        self.assertEqual(cfg["digest"], amd64.config_digest)
        self.assertTrue(cfg["cached"])
        self.assertEqual((cfg["os"], cfg["architecture"]), ("linux", "amd64"))
        self.assertEqual(cfg["created"], CREATED)
        self.assertEqual(cfg["cmd"], ["/bin/sh"])
        self.assertIsNone(cfg["entrypoint"])
        self.assertIn("OM_FIXTURE=" + amd64.name, cfg["env"])
        self.assertEqual(cfg["labels"], {"org.opencontainers.image.title": amd64.name})
        self.assertEqual(len(cfg["history"]), len(amd64.layers))
        self.assertEqual(cfg["history"][0]["created_by"], "om-e2e layer 0 of " + amd64.name)
        self.assertFalse(cfg["history"][0]["empty_layer"])
        self.assertEqual(doc["pull"]["reference"], "%s/%s:%s" % (host, name, multi.tag))

        # The arm64 platform was never pulled: not in the cache.
        self.assertErrorJSON(m.get("/api/v1/images/%s@%s" % (name, multi.platforms[arm])), 404,
                             "MANIFEST_UNKNOWN")
        self.assertErrorJSON(m.get("/api/v1/images/%s@%s" % (name, ZERO_DIGEST)), 404,
                             "MANIFEST_UNKNOWN")
        self.assertErrorJSON(m.get("/api/v1/images/%s@sha256:abc" % name), 400, "DIGEST_INVALID")
        self.assertErrorJSON(m.get("/api/v1/images/%s" % name), 400)
        self.assertErrorJSON(m.get("/api/v1/images/%s@%s?tag=%s" % (name, multi.digest, q("a b"))),
                             400)

    def test_pull_commands_use_public_url_when_configured(self):
        m = self.mirror(extra={"public_url": "https://mirror.example:8443"})
        alpine = self.w.fx["alpine"]
        self.pull(m, alpine)
        doc = self.api(m, "/api/v1/images/%s@%s" % (canonical_name(alpine), alpine.digest))
        ref = "mirror.example:8443/%s@%s" % (canonical_name(alpine), alpine.digest)
        self.assertEqual(doc["pull"]["reference"], ref)
        self.assertEqual(doc["pull"]["ctr"], "ctr image pull " + ref)
        self.assertEqual(doc["pull"]["podman"], "podman pull " + ref)



    def test_client_config_is_rendered_for_this_mirror(self):
        m = self.mirror()
        doc = self.api(m, "/api/v1/client-config?for=containerd")
        self.assertEqual(doc["for"], "containerd")
        self.assertEqual(doc["mirror"], "http://" + m.host_port)
        self.assertGreaterEqual(len(doc["files"]), 1)
        self.assertTrue(any(m.host_port in f["content"] for f in doc["files"]))
        for bad in ("", "?for=", "?for=bogus"):
            with self.subTest(query=bad):
                self.assertErrorJSON(m.get("/api/v1/client-config" + bad), 400, "UNSUPPORTED")
        m2 = self.mirror(extra={"public_url": "https://mirror.example"})
        doc = self.api(m2, "/api/v1/client-config?for=docker")
        self.assertEqual(doc["mirror"], "https://mirror.example")
        # Every note also as a code with values (the UI translates them).
        self.assertEqual([n["code"] for n in doc["note_codes"]], ["docker_merge", "docker_hub_only"])
        self.assertEqual(doc["note_codes"][1]["values"], {"host": "mirror.example"})
        self.assertEqual(len(doc["note_codes"]), len(doc["notes"]))

    def test_route_explainer_covers_bare_prefixed_ns_rewrite_and_unknown_names(self):
        m = self.mirror(extra={"negative_ttl": "10m"})
        doc = self.api(m, "/api/v1/route?name=alpine")
        self.assertEqual(doc["kind"], "search")
        self.assertEqual(doc["why_code"], "search")
        self.assertEqual([c["upstream"] for c in doc["candidates"]],
                         ["docker.io", "registry.k8s.io", "quay.io"])
        self.assertEqual(doc["candidates"][0]["canonical"], "docker.io/library/alpine")
        self.assertEqual(doc["candidates"][1]["canonical"], "registry.k8s.io/alpine")
        self.assertIsNone(doc["decided"])
        self.assertFalse(any(c["negative"] for c in doc["candidates"]))

        # A bare name found on the second upstream: docker.io is negatively
        # cached, the decision is remembered.
        api = self.w.fx["apiserver"]
        self.pull(m, api, name="kube-apiserver")
        doc = self.api(m, "/api/v1/route?name=kube-apiserver")
        self.assertEqual(doc["kind"], "search")
        self.assertTrue(doc["candidates"][0]["negative"], doc)
        self.assertFalse(doc["candidates"][1]["negative"], doc)
        self.assertEqual(doc["decided"], {"upstream": "registry.k8s.io",
                                          "canonical": "registry.k8s.io/kube-apiserver",
                                          "source": "remembered"})

        cases = [
            ("name=quay.io/coreos/etcd", "fixed", "prefix", "quay.io", "quay.io/coreos/etcd"),
            ("name=k8s.gcr.io/pause", "fixed", "prefix", "registry.k8s.io", "registry.k8s.io/pause"),
            ("name=coreos/etcd&ns=quay.io", "fixed", "ns", "quay.io", "quay.io/coreos/etcd"),
            ("name=nginx&ns=docker.io", "fixed", "ns", "docker.io", "docker.io/library/nginx"),
            ("name=docker.io/library/x&ns=docker.io", "fixed", "ns", "docker.io",
             "docker.io/library/x"),
            ("name=coredns", "fixed", "rewrite", "registry.k8s.io", "registry.k8s.io/coredns/coredns"),
        ]
        for query, kind, why, up, canon in cases:
            with self.subTest(query=query):
                doc = self.api(m, "/api/v1/route?" + query)
                self.assertEqual((doc["kind"], doc["why_code"]), (kind, why), doc)
                # The reason as data, for the UI to say in the reader's language.
                self.assertEqual(doc["why_values"]["upstream"], up, doc)
                if why == "ns":
                    self.assertEqual(doc["why_values"]["ns"], urllib.parse.parse_qs(query)["ns"][0])
                if why == "rewrite":
                    self.assertEqual(doc["why_values"]["target"], "registry.k8s.io/coredns/coredns")
                self.assertEqual(len(doc["candidates"]), 1)
                self.assertEqual(doc["candidates"][0]["canonical"], canon)
                self.assertEqual(doc["decided"]["upstream"], up)
                self.assertEqual(doc["decided"]["canonical"], canon)
                self.assertTrue(doc["why"])
        doc = self.api(m, "/api/v1/route?name=coredns")
        self.assertEqual(doc["rewrite"]["target"], "registry.k8s.io/coredns/coredns")

        for query, why, values in (
                ("name=evil.example.com/x", "prefix",
                 {"reason": "unknown_registry", "registry": "evil.example.com"}),
                ("name=x&ns=nope.example", "ns", {"reason": "unknown_ns", "ns": "nope.example"}),
                ("name=127.0.0.1:5000/x", "prefix",
                 {"reason": "unknown_registry", "registry": "127.0.0.1:5000"})):
            with self.subTest(query=query):
                doc = self.api(m, "/api/v1/route?" + query)
                self.assertEqual(doc["kind"], "none")
                self.assertEqual(doc["why_code"], why)
                self.assertEqual(doc["why_values"], values)
                self.assertEqual(doc["candidates"], [])
                self.assertIsNone(doc["decided"])
        for bad in ("", "name=", "name=UPPER", "name=a//b", "name=" + "a" * 300):
            with self.subTest(bad=bad):
                self.assertErrorJSON(m.get("/api/v1/route?" + bad), 400, "NAME_INVALID")
        # Explaining never contacts an upstream.
        for r in self.w.reg.values():
            r.reset_counts()
        self.api(m, "/api/v1/route?name=never-asked")
        self.assertEqual(sum(r.count("GET", r".") + r.count("HEAD", r".")
                             for r in self.w.reg.values()), 0)

    def test_upstreams_show_health_requests_and_recent_errors(self):
        m = self.mirror()
        doc = self.api(m, "/api/v1/upstreams")
        ups = {u["name"]: u for u in doc["upstreams"]}
        self.assertEqual(list(ups), ["docker.io", "registry.k8s.io", "quay.io"])
        self.assertEqual(ups["docker.io"]["aliases"], ["index.docker.io", "registry-1.docker.io"])
        self.assertEqual(ups["docker.io"]["url"], self.w.reg["hub"].url)
        self.assertTrue(ups["docker.io"]["docker_hub"])
        self.assertEqual([ups[n]["search_position"] for n in ups], [1, 2, 3])
        for u in ups.values():
            self.assertIsNone(u["healthy"])          # never asked yet
            self.assertEqual((u["requests"], u["errors"]), (0, 0))
            self.assertEqual(u["ratelimit_remaining"], -1)

        self.pull(m, self.w.fx["alpine"])
        ups = {u["name"]: u for u in self.api(m, "/api/v1/upstreams")["upstreams"]}
        hub = ups["docker.io"]
        self.assertTrue(hub["healthy"])
        self.assertGreater(hub["requests"], 0)
        self.assertEqual(hub["errors"], 0)
        self.assertIsNotNone(hub["last_ok_ms"])
        self.assertGreaterEqual(hub["latency_ms"], 0)
        self.assertEqual(hub["recent_errors"], [])

        # quay down: a cold pull fails, and the upstream view says why.
        self.w.reg["quay"].stop()
        r = m.get("/v2/quay.io/coreos/etcd/manifests/v3.5.0")
        self.assertGreaterEqual(r.status, 400)
        ups = {u["name"]: u for u in self.api(m, "/api/v1/upstreams")["upstreams"]}
        quay = ups["quay.io"]
        self.assertFalse(quay["healthy"], quay)
        self.assertGreater(quay["errors"], 0)
        self.assertIsNotNone(quay["last_error"])
        self.assertIsNotNone(quay["last_error_ms"])
        self.assertGreaterEqual(len(quay["recent_errors"]), 1)
        self.assertEqual(quay["recent_errors"][0]["t_ms"], quay["last_error_ms"])
        self.assertTrue(ups["docker.io"]["healthy"])

    def test_events_list_fetches_newest_first_with_limit_and_kind(self):
        m = self.mirror()
        etcd = self.w.fx["etcd"]
        self.pull(m, etcd)
        # The fetch event is recorded just after the last byte went out.
        deadline = time.monotonic() + 10
        while True:
            evs = self.api(m, "/api/v1/events")["events"]
            if (sum(e["kind"] == "fetch" for e in evs) >= len(etcd.blobs)
                    or time.monotonic() > deadline):
                break
            time.sleep(0.05)
        fetches = [e for e in evs if e["kind"] == "fetch"]
        self.assertEqual(sorted(e["digest"] for e in fetches), sorted(etcd.blobs))
        for e in fetches:
            self.assertEqual(e["repository"], canonical_name(etcd))
            self.assertEqual(e["bytes"], len(etcd.layer_bytes[e["digest"]]))
        ts = [e["t_ms"] for e in evs]
        self.assertEqual(ts, sorted(ts, reverse=True))
        self.assertEqual(len(self.api(m, "/api/v1/events?limit=1")["events"]), 1)
        only = self.api(m, "/api/v1/events?kind=fetch")["events"]
        self.assertEqual(len(only), len(fetches))
        self.assertEqual(self.api(m, "/api/v1/events?kind=evict")["events"], [])
        for bad in ("limit=0", "limit=1001", "limit=x", "group=tag"):
            self.assertErrorJSON(m.get("/api/v1/events?" + bad), 400)

    def test_events_are_codes_with_values_and_a_pull_is_one_row_when_grouped(self):
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        good = {"Authorization": "Bearer " + TOKEN}
        etcd, alpine = self.w.fx["etcd"], self.w.fx["alpine"]
        self.pull(m, etcd)
        self.pull(m, alpine)
        want = len(etcd.blobs) + len(alpine.blobs)
        deadline = time.monotonic() + 10
        while (len(self.api(m, "/api/v1/events?kind=fetch")["events"]) < want
               and time.monotonic() < deadline):
            time.sleep(0.05)
        raw = self.api(m, "/api/v1/events")["events"]
        for e in raw:
            self.assertEqual((e["kind"], e["code"], e["values"]), ("fetch", "blob_fetched", {}), e)
            self.assertEqual(e["message"], "blob fetched from upstream")
        rows = self.api(m, "/api/v1/events?group=pull")["events"]
        # One row per pulled image, newest first, its blobs counted and summed.
        self.assertEqual([r["repository"] for r in rows],
                         [canonical_name(alpine), canonical_name(etcd)], rows)
        for r, img in zip(rows, (alpine, etcd)):
            self.assertEqual(r["count"], len(img.blobs), r)
            self.assertEqual(r["bytes"], self.blob_bytes(img))
            self.assertIsNone(r["digest"])
            self.assertEqual(sorted(x["digest"] for x in r["events"]), sorted(img.blobs))
            self.assertEqual(r["t_ms"], max(x["t_ms"] for x in r["events"]))
            self.assertEqual(r["first_ms"], min(x["t_ms"] for x in r["events"]))
        self.assertEqual(len(self.api(m, "/api/v1/events?group=pull&limit=1")["events"]), 1)
        self.assertEqual(self.api(m, "/api/v1/events?group=pull&limit=1")["events"][0]["count"],
                         len(alpine.blobs), "a row keeps all of its pull under a limit")
        # An eviction and a GC run say what they did as values.
        self.api(m, "/api/v1/evict", headers=good, method="POST",
                 body={"name": canonical_name(alpine), "reference": alpine.tag})
        stale = os.path.join(m.storage, "ingest", "stale-test")
        with open(stale, "wb") as f:
            f.write(b"x" * 100)
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        self.api(m, "/api/v1/gc", headers=good, method="POST", body="{}")
        ev = {e["code"]: e for e in self.api(m, "/api/v1/events")["events"]}
        evict = ev["image_evicted"]
        self.assertEqual(evict["kind"], "evict")
        self.assertEqual(evict["repository"], canonical_name(alpine))
        self.assertEqual(evict["digest"], alpine.digest)
        self.assertEqual(evict["values"]["tag"], alpine.tag)
        self.assertEqual(evict["values"]["why"], "request")
        self.assertEqual(evict["values"]["objects"], 1 + len(alpine.blobs))
        self.assertIsInstance(evict["values"]["idle_s"], int)
        gc = ev["gc_finished"]
        self.assertEqual(gc["kind"], "gc")
        self.assertEqual(gc["values"]["ingest"], 1, gc)
        for k in ("images", "objects", "used_before", "used_after", "max_size"):
            self.assertIsInstance(gc["values"][k], int, k)



    def test_inflight_shows_a_slow_cold_download_with_progress_and_rate(self):
        w = self.w
        cert, key = w.ca.issue("faultproxy-admin")
        proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                           log_path=os.path.join(w.log_dir, "faultproxy-admin.log")).start()
        self.addCleanup(proxy.stop)
        big = w.fx["big"]
        layer = big.layers[0]
        size = len(big.layer_bytes[layer])
        proxy.add_rule("throttle", path=r"/blobs/" + layer, rate=4 << 20)     # ~8 s
        m = self.mirror(upstream_url={"quay": proxy.url})
        path = "/v2/%s/blobs/%s" % (canonical_name(big), layer)
        result = {}

        def client():
            try:
                result["resp"] = m.get(path, timeout=120)
            except Exception as e:   # reported by the main thread
                result["error"] = e
        t = threading.Thread(target=client, daemon=True)
        t.start()
        self.addCleanup(t.join, 120)

        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and t.is_alive():
            d = self.api(m, "/api/v1/inflight")["downloads"]
            if d and d[0]["bytes"] > 0:
                seen.append(d[0])
                if len(seen) >= 2 and seen[-1]["rate_bps"] > 0:
                    break
            time.sleep(0.3)
        self.assertGreaterEqual(len(seen), 2, "the download was never seen in flight")
        f = seen[-1]
        self.assertEqual(f["digest"], layer)
        self.assertEqual(f["repository"], canonical_name(big))
        self.assertEqual(f["total"], size)
        self.assertGreaterEqual(f["waiters"], 1)
        self.assertGreater(f["bytes"], seen[0]["bytes"])
        self.assertLess(f["bytes"], size)
        self.assertGreater(f["rate_bps"], 0)
        self.assertLess(f["rate_bps"], 64 << 20, "the proxy throttles to 4 MiB/s")
        self.assertAlmostEqual(f["progress"], f["bytes"] / size, places=2)
        self.assertEqual(f["started_ms"], seen[0]["started_ms"])
        s = self.api(m, "/api/v1/stats")
        self.assertEqual(s["inflight"], 1)
        metrics = m.get("/metrics").text
        self.assertRegex(metrics, r"(?m)^ocimirror_downloads_in_flight 1$")

        t.join(120)
        self.assertNotIn("error", result)
        self.assertEqual(result["resp"].status, 200)
        self.assertEqual(len(result["resp"].body), size)
        deadline = time.monotonic() + 10
        while self.api(m, "/api/v1/inflight")["downloads"] and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.api(m, "/api/v1/inflight"), {"downloads": [], "total": 0})



    def test_posts_need_the_admin_token_and_reads_stay_public(self):
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        alpine = self.w.fx["alpine"]
        self.pull(m, alpine)
        for hdrs in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                     {"Authorization": "Bearer " + TOKEN + "x"},
                     {"Authorization": "Bearer " + TOKEN[:-1]}):
            with self.subTest(headers=hdrs):
                r = m.get("/api/v1/gc", headers=hdrs, method="POST", body="{}")
                self.assertErrorJSON(r, 401, "UNAUTHORIZED")
                self.assertIn("Bearer", r.headers.get("WWW-Authenticate", ""))
        good = {"Authorization": "Bearer " + TOKEN}
        gc = self.api(m, "/api/v1/gc", headers=good, method="POST", body="{}")
        for key in ("evicted_images", "removed_blobs", "freed_bytes"):
            self.assertIsInstance(gc[key], int, key)
        self.assertEqual(gc["evicted_images"], 0)          # no quota
        status = self.api(m, "/api/v1/gc")
        self.assertGreaterEqual(status["totals"]["runs"], 1)

        # Reads are public.
        for path in ("/api/v1/stats", "/api/v1/repositories", "/api/v1/upstreams",
                     "/api/v1/events", "/api/v1/inflight", "/api/v1/route?name=x",
                     "/api/v1/prefetch"):
            with self.subTest(path=path):
                self.api(m, path)
        self.assertEqual(m.get("/metrics").status, 200)

        # Prefetch: queued with the token, listed afterwards.
        self.assertErrorJSON(m.get("/api/v1/prefetch", method="POST",
                                   body=json.dumps({"images": ["quay.io/coreos/etcd:v3.5.0"]})),
                             401)
        job = self.api(m, "/api/v1/prefetch", status=202, headers=good, method="POST",
                       body={"images": ["quay.io/coreos/etcd:v3.5.0"], "platforms": ["linux/amd64"]})
        self.assertEqual(job["state"], "queued")
        jobs = self.api(m, "/api/v1/prefetch")["jobs"]
        self.assertIn(job["id"], [j["id"] for j in jobs])
        for bad in ("not json", "[]", {"images": []}, {"images": "x"}, {"images": [1]},
                    {"images": ["UPPER/case"]}, {"images": ["x"], "platforms": "linux"}):
            with self.subTest(body=bad):
                self.assertErrorJSON(m.get("/api/v1/prefetch", headers=good, method="POST",
                                           body=bad if isinstance(bad, str) else json.dumps(bad)),
                                     400)

        # Evict: the image goes, and the views say so.
        name = canonical_name(alpine)
        self.assertErrorJSON(m.get("/api/v1/evict", method="POST",
                                   body=json.dumps({"name": name, "reference": alpine.tag})), 401)
        self.assertErrorJSON(m.get("/api/v1/evict", headers=good, method="POST",
                                   body=json.dumps({"name": name, "reference": "nope"})),
                             404, "MANIFEST_UNKNOWN")
        self.assertErrorJSON(m.get("/api/v1/evict", headers=good, method="POST",
                                   body=json.dumps({"name": name})), 400)
        ev = self.api(m, "/api/v1/evict", headers=good, method="POST",
                      body={"name": name, "reference": alpine.tag})
        self.assertEqual(ev["freed_bytes"], len(alpine.manifest_bytes) + self.blob_bytes(alpine))
        r = m.get("/api/v1/repositories/%s/tags" % name)
        if r.status == 200:                 # the repository may stay, without tags
            self.assertEqual(r.json()["tags"], [])
        else:
            self.assertErrorJSON(r, 404, "NAME_UNKNOWN")
        self.assertErrorJSON(m.get("/api/v1/images/%s@%s" % (name, alpine.digest)), 404)
        s = self.api(m, "/api/v1/stats")
        self.assertEqual(s["evictions"], {"count": 1, "bytes": ev["freed_bytes"]})
        self.assertTrue(any(e["kind"] == "evict" for e in self.api(m, "/api/v1/events")["events"]))

        # Methods an endpoint does not take; unknown endpoints.
        self.assertErrorJSON(m.get("/api/v1/stats", method="POST", headers=good, body="{}"), 405)
        self.assertErrorJSON(m.get("/api/v1/gc", method="DELETE", headers=good), 405)
        self.assertErrorJSON(m.get("/metrics", method="POST", body="{}"), 405)
        self.assertErrorJSON(m.get("/api/v1/nothing"), 404)
        self.assertErrorJSON(m.get("/api/v2/stats"), 404)

    def test_without_a_configured_token_posts_are_denied(self):
        m = self.mirror()
        for path, body in (("/api/v1/gc", "{}"), ("/api/v1/evict", '{"name":"a/b","reference":"1"}'),
                           ("/api/v1/prefetch", '{"images":["alpine"]}')):
            for hdrs in (None, {"Authorization": "Bearer anything"}):
                with self.subTest(path=path, headers=hdrs):
                    self.assertErrorJSON(m.get(path, headers=hdrs, method="POST", body=body), 403,
                                         "DENIED")
        self.api(m, "/api/v1/stats")

    def test_protect_reads_puts_every_read_and_metrics_behind_the_token(self):
        m = self.mirror(extra={"admin": {"token": TOKEN, "protect_reads": True}})
        good = {"Authorization": "Bearer " + TOKEN}
        for path in ("/api/v1/stats", "/api/v1/repositories", "/api/v1/upstreams",
                     "/api/v1/events", "/api/v1/inflight", "/api/v1/route?name=x", "/metrics",
                     "/api/v1/repositories/docker.io/library/x/tags"):
            with self.subTest(path=path):
                self.assertErrorJSON(m.get(path), 401, "UNAUTHORIZED")
                self.assertErrorJSON(m.get(path, headers={"Authorization": "Bearer nope"}), 401)
                self.assertIn(m.get(path, headers=good).status, (200, 404))
        # The registry API and health are not admin reads.
        self.assertEqual(m.get("/v2/").status, 200)
        self.assertEqual(m.get("/healthz").status, 200)


    def test_metrics_are_valid_exposition_and_agree_with_the_api(self):
        m = self.mirror(extra={"storage": {"max_size": "1GiB"}})
        alpine, etcd = self.w.fx["alpine"], self.w.fx["etcd"]
        self.assertEqual(m.get("/v2/docker.io/library/nope/manifests/1").status, 404)
        self.pull(m, alpine)
        self.pull(m, alpine)
        self.pull(m, etcd)
        n_cache = 2 * (1 + len(alpine.blobs)) + 1 + len(etcd.blobs)
        n_blobs = len(alpine.blobs) + len(etcd.blobs)
        # A download is counted complete just after its last byte reached
        # the client: wait for the figures to settle before scraping.
        self.stats_when(m, lambda s: self.cache_total(s) >= n_cache
                        and s["downloads"]["completed"] >= n_blobs)
        r = m.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = r.text
        types, helps, samples = parse_exposition(text)
        self.assertEqual(set(types), set(helps), "every family has HELP and TYPE")
        for fam, typ in types.items():
            with self.subTest(family=fam):
                self.assertTrue(fam.startswith("ocimirror_"), fam)
                if typ == "counter":
                    self.assertTrue(fam.endswith("_total"), fam)
                else:
                    self.assertFalse(fam.endswith("_total"), fam)
        seen = set()
        for name, labels, v in samples:
            key = (name, tuple(sorted(labels.items())))
            self.assertNotIn(key, seen, "duplicate series %r" % (key,))
            seen.add(key)
            if types.get(family_of(name, types)) == "counter":
                self.assertGreaterEqual(v, 0, name)
                self.assertFalse(math.isnan(v), name)

        # Histograms: cumulative buckets ending in +Inf == _count.
        for fam in [f for f, t in types.items() if t == "histogram"]:
            series = {}
            for name, labels, v in samples:
                if name == fam + "_bucket":
                    key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                    series.setdefault(key, []).append((labels["le"], v))
            for key, buckets in series.items():
                with self.subTest(histogram=fam, labels=key):
                    vals = [v for _, v in buckets]
                    self.assertEqual(vals, sorted(vals))
                    self.assertEqual(buckets[-1][0], "+Inf")
                    count = value(samples, fam + "_count", **dict(key))
                    self.assertEqual(buckets[-1][1], count)

        # The figures agree with /api/v1/stats and with what was pulled.
        s = self.api(m, "/api/v1/stats")
        for res in ("hit", "miss", "stale", "coalesced"):
            self.assertEqual(value(samples, "ocimirror_cache_requests_total", result=res),
                             s["cache"][res], res)
        # /api/v1/stats itself is counted after the scrape above; compare the
        # pull's own figures.
        n_alpine = 1 + len(alpine.blobs)
        self.assertEqual(s["cache"]["hit"], n_alpine)
        self.assertEqual(value(samples, "ocimirror_served_bytes_total", source="cache"),
                         len(alpine.manifest_bytes) + self.blob_bytes(alpine))
        self.assertEqual(value(samples, "ocimirror_served_bytes_total", source="upstream"),
                         len(alpine.manifest_bytes) + self.blob_bytes(alpine)
                         + len(etcd.manifest_bytes) + self.blob_bytes(etcd))
        blobs_200 = value(samples, "ocimirror_http_requests_total", endpoint="blob", code="200")
        self.assertEqual(blobs_200, 2 * len(alpine.blobs) + len(etcd.blobs))
        self.assertEqual(value(samples, "ocimirror_http_requests_total", endpoint="manifest",
                               code="200"), 3)
        self.assertGreaterEqual(value(samples, "ocimirror_http_requests_total", endpoint="manifest",
                                      code="404"), 1)
        self.assertEqual(value(samples, "ocimirror_storage_quota_bytes"), 1 << 30)
        self.assertEqual(value(samples, "ocimirror_storage_used_bytes"), s["storage"]["used_bytes"])
        self.assertEqual(value(samples, "ocimirror_cached_repositories"), 2)
        self.assertEqual(value(samples, "ocimirror_downloads_completed_total"),
                         len(alpine.blobs) + len(etcd.blobs))
        self.assertEqual(value(samples, "ocimirror_downloads_in_flight"), 0)
        self.assertGreater(value(samples, "ocimirror_upstream_requests_total", upstream="docker.io"), 0)
        self.assertGreater(value(samples, "ocimirror_upstream_requests_total", upstream="quay.io"), 0)
        self.assertEqual(value(samples, "ocimirror_upstream_errors_total", upstream="quay.io"), 0)
        self.assertEqual(value(samples, "ocimirror_upstream_up", upstream="quay.io"), 1)
        self.assertGreater(value(samples, "ocimirror_upstream_request_duration_seconds_count",
                                 upstream="docker.io"), 0)
        self.assertEqual(value(samples, "ocimirror_evictions_total"), 0)
        self.assertEqual(value(samples, "ocimirror_build_info", version=s["version"]), 1)
        self.assertEqual(m.get("/metrics", method="HEAD").status, 200)

    def test_the_exposition_parser_rejects_what_prometheus_would(self):
        good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\n"
        parse_exposition(good)
        bad = [
            "a_total 1\n",                                                   # no TYPE
            "# TYPE a_total counter\na_total 1",                             # no final newline
            "# TYPE a_total counter\na_total{l=v} 1\n",                      # unquoted label
            "# TYPE a_total counter\na_total{l=\"v\",l=\"w\"} 1\n",          # label twice
            "# TYPE a counter\n# TYPE a counter\na 1\n",                     # TYPE twice
            "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\n",                    # a's block interleaved
            "# TYPE a gauge\na one\n",                                       # bad value
        ]
        for text in bad:
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    parse_exposition(text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
