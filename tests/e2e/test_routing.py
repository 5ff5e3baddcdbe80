"""Routing through ocimirror: which upstream a requested name reaches
(bare Docker Hub names, explicit host prefixes and aliases, ?ns=, the
default coredns rewrite, the search order with Docker Hub's 401-for-missing)
and that what comes back is byte for byte what was pushed upstream.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_routing.py
"""

import unittest

import hashlib

from lib.world import WorldTestCase
from lib.images import (make_image, ACCEPT_ALL, MT_DOCKER_MANIFEST, MT_DOCKER_LIST,
                        MT_OCI_MANIFEST, MT_OCI_INDEX)


class RoutingTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.m = self.mirror()
        for r in self.w.reg.values():
            r.reset_counts()

    # -- helpers -----------------------------------------------------------
    def manifest(self, name, ref, accept=ACCEPT_ALL, query="", method="GET"):
        q = ("?" + query) if query else ""
        return self.m.get("/v2/%s/manifests/%s%s" % (name, ref, q), {"Accept": accept},
                          method=method)

    def upstream_saw(self, reg, path_re, status=None):
        """Requests (any method) the registry logged for paths matching."""
        return self.w.reg[reg].count(None, path_re, status=status)

    # -- Docker Hub names --------------------------------------------------
    def test_bare_name_goes_to_docker_hub_library(self):
        img = self.w.fx["alpine"]
        self.assertManifest(self.manifest("alpine", "3.19"), img)
        self.assertGreaterEqual(self.upstream_saw("hub", r"^/v2/library/alpine/manifests/"), 1)
        self.assertEqual(self.upstream_saw("k8s", r"/manifests/"), 0)
        self.assertEqual(self.upstream_saw("quay", r"/manifests/"), 0)

    def test_library_prefixed_name_goes_to_docker_hub(self):
        img = self.w.fx["alpine"]
        self.assertManifest(self.manifest("library/alpine", "3.19"), img)
        self.assertGreaterEqual(self.upstream_saw("hub", r"^/v2/library/alpine/manifests/"), 1)

    def test_docker_io_prefix_goes_to_docker_hub(self):
        img = self.w.fx["alpine"]
        self.assertManifest(self.manifest("docker.io/library/alpine", "3.19"), img)
        self.assertGreaterEqual(self.upstream_saw("hub", r"^/v2/library/alpine/manifests/"), 1)

    def test_index_docker_io_alias_adds_library_to_a_one_component_name(self):
        img = self.w.fx["alpine"]
        self.assertManifest(self.manifest("index.docker.io/alpine", "3.19"), img)
        self.assertGreaterEqual(self.upstream_saw("hub", r"^/v2/library/alpine/manifests/"), 1)

    def test_two_component_hub_name_goes_to_docker_hub(self):
        self.assertManifest(self.manifest("team/app", "1"), self.w.fx["app"])

    def test_each_manifest_media_type_is_served_with_its_own_accept(self):
        cases = [("alpine", MT_DOCKER_MANIFEST), ("multi", MT_DOCKER_LIST),
                 ("apiserver", MT_OCI_MANIFEST), ("ocimulti", MT_OCI_INDEX),
                 ("etcd", MT_OCI_MANIFEST)]
        from lib.world import canonical_name
        for key, mt in cases:
            img = self.w.fx[key]
            self.assertEqual(img.media_type, mt)
            with self.subTest(fixture=key, accept="own type"):
                self.assertManifest(self.manifest(canonical_name(img), img.tag, accept=mt), img)
            with self.subTest(fixture=key, accept="all four"):
                self.assertManifest(self.manifest(canonical_name(img), img.tag), img)
            with self.subTest(fixture=key, accept="by digest"):
                self.assertManifest(self.manifest(canonical_name(img), img.digest), img)

    def test_index_children_are_served_by_digest(self):
        for key in ("multi", "ocimulti"):
            img = self.w.fx[key]
            self.assertEqual(sorted(img.platforms), ["linux/amd64", "linux/arm64/v8"])
            with self.subTest(fixture=key):
                self.pull(self.m, img, name=img.repo)

    # -- search order ------------------------------------------------------
    def test_name_missing_on_docker_hub_is_found_on_k8s_by_search_order(self):
        img = self.w.fx["apiserver"]
        self.assertManifest(self.manifest("kube-apiserver", "v1.28.0"), img)
        # Docker Hub said 401 (no such repository, like the real one) and the
        # search went on to registry.k8s.io.
        self.assertGreaterEqual(self.upstream_saw(
            "hub", r"^/v2/library/kube-apiserver/manifests/", status=401), 1)
        self.assertGreaterEqual(self.upstream_saw(
            "k8s", r"^/v2/kube-apiserver/manifests/", status=200), 1)
        self.assertEqual(self.upstream_saw("quay", r"/manifests/"), 0)
        # and the blobs come from there too
        self.pull(self.m, img, name="kube-apiserver")

    def test_search_decision_is_kept_for_later_requests(self):
        img = self.w.fx["apiserver"]
        self.assertManifest(self.manifest("kube-apiserver", "v1.28.0"), img)
        self.w.reg["hub"].reset_counts()
        self.assertManifest(self.manifest("kube-apiserver", img.digest), img)
        self.assertManifest(self.manifest("kube-apiserver", "v1.28.0"), img)
        self.assertEqual(self.upstream_saw("hub", r"/kube-apiserver/"), 0,
                         "the route to registry.k8s.io should have been cached")

    def test_same_short_name_on_two_upstreams_keeps_both_apart(self):
        hub, k8s = self.w.fx["shared_hub"], self.w.fx["shared_k8s"]
        self.assertNotEqual(hub.digest, k8s.digest)
        self.pull(self.m, hub, name="shared")                 # search order: hub first
        self.pull(self.m, k8s, name="registry.k8s.io/shared")
        self.pull(self.m, hub, name="docker.io/library/shared")
        self.assertManifest(self.manifest("shared", "1"), hub)
        # Both are cached under their own canonical names: with both
        # upstreams down each still answers with its own content.
        self.w.reg["hub"].stop()
        self.w.reg["k8s"].stop()
        self.assertManifest(self.manifest("registry.k8s.io/shared", "1"), k8s)
        self.assertManifest(self.manifest("docker.io/library/shared", "1"), hub)
        self.assertManifest(self.manifest("registry.k8s.io/shared", k8s.digest), k8s)
        self.assertManifest(self.manifest("shared", hub.digest), hub)
        r = self.m.get("/v2/_catalog")
        self.assertEqual(r.status, 200, r)
        repos = r.json()["repositories"]
        self.assertIn("docker.io/library/shared", repos)
        self.assertIn("registry.k8s.io/shared", repos)

    def test_name_on_no_upstream_is_manifest_unknown_after_asking_every_upstream(self):
        r = self.manifest("nosuch", "1")
        self.assertErrorJSON(r, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
        self.assertGreaterEqual(self.upstream_saw(
            "hub", r"^/v2/library/nosuch/manifests/1", status=401), 1)
        self.assertGreaterEqual(self.upstream_saw("k8s", r"^/v2/nosuch/manifests/1"), 1)
        self.assertGreaterEqual(self.upstream_saw("quay", r"^/v2/nosuch/manifests/1"), 1)
        # HEAD gets the same status (and no body)
        r = self.manifest("nosuch", "1", method="HEAD")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.body, b"")

    def test_missing_tag_of_an_existing_repository_is_manifest_unknown(self):
        r = self.manifest("docker.io/library/alpine", "no-such-tag")
        self.assertErrorJSON(r, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))

    # -- aliases, prefixes, rewrites ---------------------------------------
    def test_k8s_gcr_io_alias_goes_to_registry_k8s_io(self):
        img = self.w.fx["pause"]
        self.assertManifest(self.manifest("k8s.gcr.io/pause", "3.9"), img)
        self.assertGreaterEqual(self.upstream_saw("k8s", r"^/v2/pause/manifests/"), 1)
        self.assertEqual(self.upstream_saw("hub", r"/manifests/"), 0)

    def test_registry_k8s_io_prefix_goes_to_registry_k8s_io(self):
        img = self.w.fx["pause"]
        self.pull(self.m, img, name="registry.k8s.io/pause")
        self.assertEqual(self.upstream_saw("hub", r"/manifests/"), 0)

    def test_quay_io_prefix_goes_to_quay(self):
        img = self.w.fx["etcd"]
        self.pull(self.m, img, name="quay.io/coreos/etcd")
        self.assertGreaterEqual(self.upstream_saw("quay", r"^/v2/coreos/etcd/manifests/"), 1)
        self.assertEqual(self.upstream_saw("hub", r"/manifests/"), 0)
        self.assertEqual(self.upstream_saw("k8s", r"/manifests/"), 0)

    def test_bare_coredns_is_rewritten_to_registry_k8s_io_coredns_coredns(self):
        img = self.w.fx["coredns"]
        self.pull(self.m, img, name="coredns")
        self.assertGreaterEqual(self.upstream_saw("k8s", r"^/v2/coredns/coredns/manifests/"), 1)
        self.assertEqual(self.upstream_saw("hub", r"/manifests/"), 0)

    # -- ?ns= ------------------------------------------------------------------
    def test_ns_docker_io_routes_manifests_and_blobs_to_docker_hub(self):
        img = self.w.fx["alpine"]
        self.pull(self.m, img, name="library/alpine", query="ns=docker.io")
        self.assertGreaterEqual(self.upstream_saw("hub", r"^/v2/library/alpine/"), 1)

    def test_ns_docker_io_on_a_cold_blob(self):
        img = self.w.fx["app"]
        layer = img.layers[-1]
        r = self.m.get("/v2/team/app/blobs/%s?ns=docker.io" % layer)
        self.assertBlob(r, layer)
        self.assertEqual(self.upstream_saw("hub", r"^/v2/team/app/blobs/" + layer, status=200), 1)

    def test_ns_quay_io_routes_to_quay(self):
        img = self.w.fx["etcd"]
        self.pull(self.m, img, name="coreos/etcd", query="ns=quay.io")
        self.assertEqual(self.upstream_saw("hub", r"/manifests/"), 0)

    def test_ns_naming_an_unknown_registry_is_refused(self):
        r = self.manifest("library/alpine", "3.19", query="ns=evil.example.com")
        self.assertErrorJSON(r, 404)
        r = self.m.get("/v2/library/alpine/blobs/%s?ns=evil.example.com" % self.w.fx["alpine"].layers[0])
        self.assertErrorJSON(r, 404)
        for reg in self.w.reg:
            self.assertEqual(self.upstream_saw(reg, r"/alpine/"), 0)

    def test_unknown_host_prefix_is_name_unknown(self):
        r = self.manifest("evil.example.com/x", "1")
        self.assertErrorJSON(r, 404, "NAME_UNKNOWN")
        r = self.m.get("/v2/evil.example.com/x/blobs/sha256:" + "a" * 64)
        self.assertErrorJSON(r, 404)
        r = self.manifest("localhost/x", "1")
        self.assertErrorJSON(r, 404)
        for reg in self.w.reg:
            self.assertEqual(self.upstream_saw(reg, r"/x/"), 0)

    def test_digest_header_and_bytes_equal_the_pushed_manifest_for_every_fixture(self):
        from lib.world import canonical_name
        for key, img in sorted(self.w.fx.items()):
            with self.subTest(fixture=key):
                r = self.manifest(canonical_name(img), img.tag)
                self.assertManifest(r, img)
                h = self.manifest(canonical_name(img), img.tag, method="HEAD")
                self.assertManifest(h, img, head=True)
                self.assertEqual(h.body, b"")


class MissesAreNotRepositoryMissesTest(WorldTestCase):
    """A miss of an object is not a miss of the repository (issue 10, 1).
    With the default negative_ttl (1 min), one request for something a
    repository does not have must not turn the whole name away: only an
    answer about the repository (Docker Hub's 401, NAME_UNKNOWN, a 404 of
    the tag list) makes "not on this upstream"."""

    NEG = {"negative_ttl": "60s"}

    def setUp(self):
        super().setUp()
        self.m = self.mirror(extra=self.NEG)
        for r in self.w.reg.values():
            r.reset_counts()

    def manifest(self, name, ref, method="GET"):
        return self.m.get("/v2/%s/manifests/%s" % (name, ref), {"Accept": ACCEPT_ALL},
                          method=method)

    @staticmethod
    def nonexistent_digest(seed):
        return "sha256:" + hashlib.sha256(b"not pushed anywhere " + seed.encode()).hexdigest()

    def message(self, r):
        return self.assertErrorJSON(r)[0]["message"]

    def test_a_blob_head_that_misses_leaves_the_repository_routable(self):
        img = self.w.fx["app"]
        r = self.m.get("/v2/team/app/blobs/%s" % self.nonexistent_digest("head"), method="HEAD")
        self.assertEqual(r.status, 404, r)
        self.pull(self.m, img, name="team/app")
        r = self.m.get("/v2/team/app/blobs/%s" % self.nonexistent_digest("get"))
        self.assertErrorJSON(r, 404, "BLOB_UNKNOWN")
        self.assertIn("docker.io/team/app has no blob", self.message(r))

    def test_a_tag_that_does_not_exist_yet_leaves_the_other_tags_pullable(self):
        img = self.w.fx["app"]
        r = self.manifest("team/app", "not-yet")
        self.assertErrorJSON(r, 404, "MANIFEST_UNKNOWN")
        self.assertEqual(self.message(r), 'docker.io/team/app has no tag "not-yet"')
        self.pull(self.m, img, name="team/app")

    def test_an_unknown_manifest_digest_leaves_the_tags_pullable(self):
        r = self.manifest("library/alpine", self.nonexistent_digest("manifest"))
        self.assertErrorJSON(r, 404, "MANIFEST_UNKNOWN")
        self.assertIn("docker.io/library/alpine has no manifest sha256:", self.message(r))
        self.pull(self.m, self.w.fx["alpine"], name="alpine")

    def test_a_missing_tag_on_the_second_upstream_routes_the_name_there(self):
        img = self.w.fx["apiserver"]
        r = self.manifest("kube-apiserver", "v0.0.0-missing")
        self.assertErrorJSON(r, 404, "MANIFEST_UNKNOWN")
        self.assertEqual(self.message(r), 'registry.k8s.io/kube-apiserver has no tag "v0.0.0-missing"')
        self.w.reg["hub"].reset_counts()
        self.pull(self.m, img, name="kube-apiserver")
        # The name was routed to registry.k8s.io by the first request:
        # Docker Hub is not asked again.
        self.assertEqual(self.w.reg["hub"].count(None, r"/kube-apiserver/"), 0)

    def test_a_name_on_no_upstream_is_still_remembered_as_missing(self):
        r = self.manifest("nosuch/thing", "1")
        self.assertErrorJSON(r, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
        self.assertEqual(self.message(r),
                         '"nosuch/thing" was not found on docker.io, registry.k8s.io, quay.io')
        for reg in self.w.reg.values():
            reg.reset_counts()
        for ref in ("1", "2", self.nonexistent_digest("nosuch")):
            self.assertErrorJSON(self.manifest("nosuch/thing", ref), 404)
        r = self.m.get("/v2/nosuch/thing/blobs/%s" % self.nonexistent_digest("b"), method="HEAD")
        self.assertEqual(r.status, 404, r)
        for key, reg in self.w.reg.items():
            self.assertEqual(reg.count(None, r"/nosuch/thing/"), 0,
                             "%s was asked again within negative_ttl" % key)

    def test_a_name_with_cached_content_is_never_turned_away_by_a_negative_entry(self):
        img = make_image("later", "team/later", "1", "hub", seed=1001)
        self.assertErrorJSON(self.manifest("team/later", "1"), 404)   # not pushed yet
        self.w.push(img)
        self.pull(self.m, img)                       # docker.io/team/later: explicit
        # Within negative_ttl, the bare name finds what the cache holds.
        self.pull(self.m, img, name="team/later")


if __name__ == "__main__":
    unittest.main(verbosity=2)
