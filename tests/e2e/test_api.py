"""The pull API as real clients expect it (/work/shared/PROTOCOL.md): ping,
manifests (HEAD/GET, tag/digest, Accept negotiation compared with a real
docker-registry), blobs (HEAD/GET, Range in every form, cached and
uncached), tags/list and _catalog paging, referrers, read-only push
endpoints, and `?ns=` on every endpoint.

One World and one mirror for the whole file (the mirror's cache state
matters in some tests: each such test names the images it uses alone).
"""

import hashlib
import json
import os
import re
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.images import (ACCEPT_ALL, MT_DOCKER_LIST, MT_DOCKER_MANIFEST,  # noqa: E402
                        MT_OCI_INDEX, MT_OCI_MANIFEST, make_image)
from lib.world import WorldTestCase  # noqa: E402

ACCEPT_OCI_ONLY = MT_OCI_MANIFEST + ", " + MT_OCI_INDEX
ACCEPT_DOCKER_ONLY = MT_DOCKER_MANIFEST + ", " + MT_DOCKER_LIST
# Tags of registry.k8s.io/pause after setUpClass; '3.9' is the fixture's.
PAUSE_TAGS = ["3.1", "3.10", "3.8", "3.9", "latest"]
UPSTREAM_OF = {"hub": "docker.io", "k8s": "registry.k8s.io", "quay": "quay.io"}
LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def canonical(img):
    return "%s/%s" % (UPSTREAM_OF[img.registry], img.repo)


class ApiTest(WorldTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        w = cls.w
        pause = w.fx["pause"]
        for tag in PAUSE_TAGS:
            if tag != pause.tag:
                w.push(pause, tag=tag)
        # an image no test pulls before test_range_*_uncached: its own blobs
        cls.cold = make_image("cold", "team/cold", "1", "hub", "docker", seed=4242, n_layers=2)
        w.push(cls.cold)
        cls.m = w.mirror()

    def get(self, path, headers=None, method="GET", body=None, timeout=30):
        return self.m.get(path, headers, method=method, body=body, timeout=timeout)

    def direct(self, regname, path, headers=None, method="GET"):
        """Ask the upstream registry itself (token auth handled) → Resp-like tuple."""
        st, h, body = self.w.pusher(regname).request(method, path, headers=headers)
        return st, h, body

    def manifest_path(self, img, ref=None):
        return "/v2/%s/manifests/%s" % (canonical(img), ref or img.tag)

    def blob_path(self, img, digest):
        return "/v2/%s/blobs/%s" % (canonical(img), digest)

    def follow_pages(self, first_path, key, limit=50):
        """Follow Link rel=next from first_path; returns (items, pages)."""
        items, pages, path = [], 0, first_path
        while path is not None:
            pages += 1
            self.assertLess(pages, limit, "paging does not end")
            r = self.get(path)
            self.assertEqual(r.status, 200, r)
            items += r.json().get(key) or []
            link = r.headers.get("Link")
            if link is None:
                path = None
                continue
            m = LINK_RE.search(link)
            self.assertIsNotNone(m, "malformed Link header: %r" % link)
            u = urllib.parse.urlsplit(urllib.parse.urljoin(self.m.url + path, m.group(1)))
            self.assertIn(u.netloc, ("", self.m.host_port), "Link points elsewhere: %r" % link)
            path = u.path + ("?" + u.query if u.query else "")
        return items, pages

    # -- ping ------------------------------------------------------------
    def test_the_ping_answers_200_with_the_api_version_header_and_a_json_body(self):
        r = self.get("/v2/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Docker-Distribution-API-Version"), "registry/2.0", r)
        json.loads(r.body)
        self.assertIn("json", r.headers.get("Content-Type", ""), r)
        h = self.get("/v2/", method="HEAD")
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.body, b"")

    # -- manifests -------------------------------------------------------
    def test_head_and_get_manifests_by_tag_and_digest_carry_type_digest_and_length(self):
        for key in ("alpine", "multi", "ocimulti", "apiserver", "etcd"):
            img = self.w.fx[key]
            for ref in (img.tag, img.digest):
                for method in ("HEAD", "GET"):
                    with self.subTest(image=key, ref=ref, method=method):
                        r = self.get(self.manifest_path(img, ref), {"Accept": ACCEPT_ALL}, method=method)
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.headers.get("Content-Type"), img.media_type, r)
                        self.assertEqual(r.headers.get("Docker-Content-Digest"), img.digest, r)
                        self.assertEqual(r.headers.get("Content-Length"), str(len(img.manifest_bytes)), r)
                        if method == "HEAD":
                            self.assertEqual(r.body, b"", r)
                        else:
                            self.assertEqual(r.body, img.manifest_bytes, r)

    def test_a_platform_manifest_of_an_index_is_served_by_digest(self):
        img = self.w.fx["multi"]
        for plat, d in img.platforms.items():
            child = img.children[plat]
            r = self.get(self.manifest_path(img, d), {"Accept": ACCEPT_ALL})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, child.manifest_bytes)
            self.assertEqual(r.headers.get("Content-Type"), child.media_type)

    def test_unknown_manifests_and_blobs_are_404_with_the_spec_codes(self):
        alpine = self.w.fx["alpine"]
        r = self.get("/v2/docker.io/library/alpine/manifests/no-such-tag", {"Accept": ACCEPT_ALL})
        self.assertErrorJSON(r, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
        r = self.get("/v2/docker.io/library/alpine/manifests/bad%21tag", {"Accept": ACCEPT_ALL})
        self.assertErrorJSON(r, 404)
        r = self.get(self.blob_path(alpine, "sha256:" + "0" * 64))
        self.assertErrorJSON(r, 404, ("BLOB_UNKNOWN",))

    # Accept negotiation.  What distribution 2.8 does (checked directly below):
    #   Docker schema 2 by digest, any Accept      → 200 schema 2 ("serves it anyway")
    #   Docker schema 2 by tag, Accept without it  → converts to schema 1 (legacy; a
    #                                                mirror must never synthesise that:
    #                                                it serves schema 2 as is)
    #   OCI manifest/index, Accept without its type → 404 MANIFEST_UNKNOWN (tag and digest)
    #   Docker list by tag, Accept schema 2 only   → the linux/amd64 child manifest
    #   Docker list by digest, any Accept          → the list
    def _compare(self, regname, img, ref, accept, mirror_path, direct_path):
        st, h, body = self.direct(regname, direct_path, {"Accept": accept})
        for state in ("first ask", "asked again"):
            for method in ("GET", "HEAD"):
                with self.subTest(image=img.name, ref=ref, accept=accept, state=state, method=method):
                    r = self.get(mirror_path, {"Accept": accept}, method=method)
                    self.assertEqual(r.status, st, "registry said %d %r, mirror %r" % (st, body[:200], r))
                    if st == 200:
                        self.assertEqual(r.headers.get("Content-Type"), h.get("content-type"), r)
                        self.assertEqual(r.headers.get("Docker-Content-Digest"),
                                         h.get("docker-content-digest"), r)
                        if method == "GET":
                            self.assertEqual(r.body, body)
                    elif method == "GET":
                        reg_code = json.loads(body)["errors"][0]["code"]
                        self.assertErrorJSON(r, st, (reg_code,))
            # cache it with a full Accept, then the same question again
            self.get(mirror_path, {"Accept": ACCEPT_ALL})

    def test_a_docker_schema2_image_by_digest_with_only_oci_accepted_is_served_like_the_registry_does(self):
        img = self.w.fx["shared_hub"]
        self._compare("hub", img, img.digest, ACCEPT_OCI_ONLY, self.manifest_path(img, img.digest),
                      "/v2/%s/manifests/%s" % (img.repo, img.digest))

    def test_a_docker_schema2_image_by_tag_with_only_oci_accepted_is_served_as_schema2_never_schema1(self):
        img = self.w.fx["app"]
        st, h, _ = self.direct("hub", "/v2/%s/manifests/%s" % (img.repo, img.tag), {"Accept": ACCEPT_OCI_ONLY})
        self.assertEqual(st, 200)   # distribution converts to schema 1 here; we don't follow
        for _ in range(2):
            r = self.get(self.manifest_path(img), {"Accept": ACCEPT_OCI_ONLY})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("Content-Type"), MT_DOCKER_MANIFEST, r)
            self.assertEqual(r.body, img.manifest_bytes)

    def test_an_oci_manifest_with_only_docker_types_accepted_gets_what_the_registry_answers(self):
        img = self.w.fx["apiserver"]
        for ref in (img.tag, img.digest):
            self._compare("k8s", img, ref, ACCEPT_DOCKER_ONLY, self.manifest_path(img, ref),
                          "/v2/%s/manifests/%s" % (img.repo, ref))

    def test_an_oci_index_with_only_docker_types_accepted_gets_what_the_registry_answers(self):
        img = self.w.fx["ocimulti"]
        for ref in (img.tag, img.digest):
            self._compare("hub", img, ref, ACCEPT_DOCKER_ONLY, self.manifest_path(img, ref),
                          "/v2/%s/manifests/%s" % (img.repo, ref))

    def test_a_docker_manifest_list_with_only_schema2_accepted_gets_what_the_registry_answers(self):
        img = self.w.fx["multi"]
        for ref in (img.tag, img.digest):
            self._compare("hub", img, ref, MT_DOCKER_MANIFEST, self.manifest_path(img, ref),
                          "/v2/%s/manifests/%s" % (img.repo, ref))

    # -- blobs -----------------------------------------------------------
    def _check_blob_headers(self, r, data, digest, method):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Length"), str(len(data)), r)
        self.assertEqual(r.headers.get("Docker-Content-Digest"), digest, r)
        self.assertNotIn("Content-Encoding", r.headers, r)
        if method == "GET":
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), digest.split(":", 1)[1])
        else:
            self.assertEqual(r.body, b"")

    def test_blob_head_and_get_carry_length_and_digest_and_no_content_encoding(self):
        img = self.w.fx["pause"]
        enc = {"Accept-Encoding": "gzip, deflate, br, zstd"}
        for d in img.blobs:
            data = img.layer_bytes[d]
            with self.subTest(blob=d, state="uncached"):
                self._check_blob_headers(self.get(self.blob_path(img, d), enc, "HEAD"), data, d, "HEAD")
                self._check_blob_headers(self.get(self.blob_path(img, d), enc), data, d, "GET")
            with self.subTest(blob=d, state="cached"):
                self._check_blob_headers(self.get(self.blob_path(img, d), enc, "HEAD"), data, d, "HEAD")
                self._check_blob_headers(self.get(self.blob_path(img, d), enc), data, d, "GET")

    def _check_206(self, r, data, first, last):
        size = len(data)
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.headers.get("Content-Range"), "bytes %d-%d/%d" % (first, last, size), r)
        self.assertEqual(r.headers.get("Content-Length"), str(last - first + 1), r)
        self.assertNotIn("Content-Encoding", r.headers, r)
        self.assertEqual(r.body, data[first:last + 1], "wrong bytes for %d-%d" % (first, last))

    def _range_cases(self, img, digest):
        data = img.layer_bytes[digest]
        size = len(data)
        path = self.blob_path(img, digest)
        with self.subTest(range="bytes=N-"):
            self._check_206(self.get(path, {"Range": "bytes=%d-" % (size // 2)}), data, size // 2, size - 1)
        with self.subTest(range="bytes=a-b"):
            self._check_206(self.get(path, {"Range": "bytes=10-99"}), data, 10, 99)
        with self.subTest(range="suffix"):
            self._check_206(self.get(path, {"Range": "bytes=-100"}), data, size - 100, size - 1)
        with self.subTest(range="last byte open"):
            self._check_206(self.get(path, {"Range": "bytes=%d-" % (size - 1)}), data, size - 1, size - 1)
        with self.subTest(range="unsatisfiable"):
            r = self.get(path, {"Range": "bytes=%d-" % size})
            self.assertEqual(r.status, 416, r)
            self.assertEqual(r.headers.get("Content-Range"), "bytes */%d" % size, r)
        with self.subTest(range="multi"):
            r = self.get(path, {"Range": "bytes=0-9,20-29"})
            self.assertIn(r.status, (200, 206), r)
            if r.status == 200:
                self.assertEqual(r.body, data)
            else:
                ct = r.headers.get("Content-Type", "")
                self.assertTrue(ct.startswith("multipart/byteranges"), r)
                m = re.search(r'boundary="?([^";]+)"?', ct)
                self.assertIsNotNone(m, ct)
                parts = parse_byteranges(r.body, m.group(1).encode())
                self.assertEqual([(a, b) for a, b, _ in parts], [(0, 9), (20, 29)], parts)
                for a, b, body in parts:
                    self.assertEqual(body, data[a:b + 1])
        for hdr in ("bytes=" + ",".join(["0-"] * 16), "bytes=0-99,50-149", "bytes=-10,%d-" % (size - 20)):
            with self.subTest(range=hdr[:40], what="overlapping ranges are ignored"):
                # Go's ServeContent and nginx: the whole blob once, not 16 copies.
                r = self.get(path, {"Range": hdr})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers.get("Content-Length"), str(size), r)
                self.assertEqual(r.body, data)

    def test_ranges_on_a_cached_blob(self):
        img = self.w.fx["alpine"]
        d = img.layers[-1]
        r = self.get(self.blob_path(img, d))
        self.assertEqual(r.status, 200)
        self._range_cases(img, d)

    def test_ranges_on_an_uncached_blob(self):
        img = self.cold
        # every case on its own not-yet-cached blob would need 6 images;
        # the first request (bytes=N-) is the one that is truly uncached
        d = img.layers[0]
        data = img.layer_bytes[d]
        size = len(data)
        self._check_206(self.get(self.blob_path(img, d), {"Range": "bytes=%d-" % (size // 3)}),
                        data, size // 3, size - 1)
        d2 = img.layers[1]
        data2 = img.layer_bytes[d2]
        self._check_206(self.get(self.blob_path(img, d2), {"Range": "bytes=-50"}),
                        data2, len(data2) - 50, len(data2) - 1)
        self._range_cases(img, d)

    def test_a_range_far_into_an_uncached_big_blob_is_answered_206(self):
        img = self.w.fx["big"]
        d = img.layers[0]
        data = img.layer_bytes[d]
        first = 30 << 20
        t0 = time.monotonic()
        self._check_206(self.get(self.blob_path(img, d), {"Range": "bytes=%d-" % first}, timeout=60),
                        data, first, len(data) - 1)
        self.assertLess(time.monotonic() - t0, 60)
        r = self.get(self.blob_path(img, d), {"Range": "bytes=%d-" % len(data)})
        self.assertEqual(r.status, 416, r)
        self.assertEqual(r.headers.get("Content-Range"), "bytes */%d" % len(data), r)

    # -- tags/list -------------------------------------------------------
    def test_tags_list_is_complete_and_lexically_sorted(self):
        r = self.get("/v2/registry.k8s.io/pause/tags/list")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc.get("tags"), sorted(PAUSE_TAGS), r)
        self.assertIsInstance(doc.get("name"), str, r)
        # distribution 2.8 itself answers in directory order and ignores n/last:
        # sorting and paging are the mirror's job
        st, _, body = self.direct("k8s", "/v2/pause/tags/list")
        self.assertEqual(sorted(json.loads(body)["tags"]), doc["tags"])

    def test_tags_list_pages_with_n_and_a_next_link(self):
        r = self.get("/v2/registry.k8s.io/pause/tags/list?n=2")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("tags"), sorted(PAUSE_TAGS)[:2], r)
        self.assertIsNotNone(LINK_RE.search(r.headers.get("Link", "")), r)
        tags, pages = self.follow_pages("/v2/registry.k8s.io/pause/tags/list?n=2", "tags")
        self.assertEqual(tags, sorted(PAUSE_TAGS))
        self.assertEqual(pages, 3)

    def test_tags_list_with_n_0_is_empty(self):
        r = self.get("/v2/registry.k8s.io/pause/tags/list?n=0")
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json().get("tags"), r)

    def test_tags_list_last_starts_after_the_given_tag(self):
        want = sorted(PAUSE_TAGS)
        r = self.get("/v2/registry.k8s.io/pause/tags/list?last=3.10")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("tags"), [t for t in want if t > "3.10"], r)
        r = self.get("/v2/registry.k8s.io/pause/tags/list?n=2&last=3.1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("tags"), ["3.10", "3.8"], r)

    def test_tags_list_with_the_upstream_stopped_answers_from_the_cache(self):
        pulled = ["3.8", "latest"]
        for t in pulled:
            r = self.get("/v2/registry.k8s.io/pause/manifests/" + t, {"Accept": ACCEPT_ALL})
            self.assertEqual(r.status, 200, r)
        r = self.get("/v2/registry.k8s.io/pause/tags/list")
        self.assertEqual(r.status, 200, r)
        reg = self.w.reg["k8s"]
        reg.stop()
        try:
            r = self.get("/v2/registry.k8s.io/pause/tags/list", timeout=30)
            self.assertEqual(r.status, 200, r)
            tags = r.json().get("tags") or []
            self.assertEqual(tags, sorted(tags), r)
            for t in pulled:
                self.assertIn(t, tags, r)
            self.assertTrue(set(tags) <= set(PAUSE_TAGS), r)
        finally:
            reg.start()

    # -- catalog ---------------------------------------------------------
    def test_the_catalog_lists_canonical_names_sorted_with_paging(self):
        imgs = [self.w.fx[k] for k in ("alpine", "pause", "etcd", "coredns")]
        for img in imgs:
            r = self.get(self.manifest_path(img), {"Accept": ACCEPT_ALL})
            self.assertEqual(r.status, 200, r)
        r = self.get("/v2/_catalog")
        self.assertEqual(r.status, 200, r)
        repos = r.json().get("repositories")
        self.assertIsInstance(repos, list, r)
        self.assertEqual(repos, sorted(repos), r)
        for img in imgs:
            self.assertIn(canonical(img), repos)
        for name in repos:
            self.assertIn(name.split("/", 1)[0], UPSTREAM_OF.values(), "not a canonical name: %r" % name)
        self.assertNotIn("library/alpine", repos)
        paged, pages = self.follow_pages("/v2/_catalog?n=1", "repositories")
        self.assertEqual(paged, repos)
        # distribution links from a full last page to an empty one: allow that
        self.assertIn(pages, (len(repos), len(repos) + 1))
        r = self.get("/v2/_catalog?n=2")
        self.assertEqual(r.json().get("repositories"), repos[:2], r)
        self.assertIsNotNone(LINK_RE.search(r.headers.get("Link", "")), r)
        after = "docker.io/library/alpine"
        r = self.get("/v2/_catalog?last=" + urllib.parse.quote(after, safe=""))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("repositories"), [x for x in repos if x > after], r)
        r = self.get("/v2/_catalog?n=0")
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json().get("repositories"), r)

    # -- referrers -------------------------------------------------------
    def test_referrers_answer_an_empty_oci_index_when_the_upstream_has_none(self):
        img = self.w.fx["alpine"]
        r = self.get("/v2/%s/referrers/%s" % (canonical(img), img.digest))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), MT_OCI_INDEX, r)
        doc = r.json()
        self.assertEqual(doc.get("schemaVersion"), 2, r)
        self.assertEqual(doc.get("mediaType"), MT_OCI_INDEX, r)
        self.assertEqual(doc.get("manifests"), [], r)
        self.assertNotIn("OCI-Filters-Applied", r.headers, r)

    def test_referrers_filtered_by_artifact_type_say_so(self):
        img = self.w.fx["etcd"]
        r = self.get("/v2/%s/referrers/%s?artifactType=%s" % (
            canonical(img), img.digest, urllib.parse.quote("application/vnd.example.sbom", safe="")))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("OCI-Filters-Applied"), "artifactType", r)
        self.assertEqual(r.json().get("manifests"), [], r)

    def test_referrers_of_a_bad_digest_are_400(self):
        for bad in ("sha256:xyz", "sha256:" + "a" * 63, "md5:" + "a" * 32, "latest"):
            with self.subTest(digest=bad):
                r = self.get("/v2/docker.io/library/alpine/referrers/" + bad)
                self.assertErrorJSON(r, 400)

    # -- read-only -------------------------------------------------------
    def test_push_and_delete_endpoints_answer_405_unsupported(self):
        alpine = self.w.fx["alpine"]
        base = "/v2/docker.io/library/alpine"
        cases = [
            ("POST", base + "/blobs/uploads/", b""),
            ("POST", base + "/blobs/uploads/?digest=" + alpine.blobs[0], alpine.layer_bytes[alpine.blobs[0]]),
            ("PATCH", base + "/blobs/uploads/3f1b5a0e-0000-4000-8000-000000000000", b"abc"),
            ("PUT", base + "/blobs/uploads/3f1b5a0e-0000-4000-8000-000000000000?digest=" + alpine.blobs[0], b"abc"),
            ("PUT", base + "/manifests/pushed", alpine.manifest_bytes),
            ("DELETE", base + "/manifests/" + alpine.digest, None),
            ("DELETE", base + "/blobs/" + alpine.blobs[0], None),
        ]
        for method, path, body in cases:
            with self.subTest(method=method, path=path):
                hdrs = {"Content-Type": alpine.media_type if "/manifests/" in path else "application/octet-stream"}
                r = self.get(path, hdrs, method=method, body=body)
                self.assertErrorJSON(r, 405, ("UNSUPPORTED",))
        r = self.get(base + "/manifests/pushed", {"Accept": ACCEPT_ALL})
        self.assertEqual(r.status, 404, r)

    # -- ?ns= ------------------------------------------------------------
    def test_ns_is_accepted_on_every_endpoint(self):
        for key in ("alpine", "apiserver", "etcd"):
            img = self.w.fx[key]
            ns = UPSTREAM_OF[img.registry]
            repo = img.repo
            q = "?ns=" + ns
            with self.subTest(image=key, endpoint="manifest by tag"):
                for method in ("HEAD", "GET"):
                    r = self.get("/v2/%s/manifests/%s%s" % (repo, img.tag, q), {"Accept": ACCEPT_ALL}, method)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.headers.get("Docker-Content-Digest"), img.digest, r)
            with self.subTest(image=key, endpoint="manifest by digest"):
                r = self.get("/v2/%s/manifests/%s%s" % (repo, img.digest, q), {"Accept": ACCEPT_ALL})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, img.manifest_bytes)
            with self.subTest(image=key, endpoint="blob"):
                d = img.blobs[-1]
                r = self.get("/v2/%s/blobs/%s%s" % (repo, d, q), method="HEAD")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers.get("Content-Length"), str(len(img.layer_bytes[d])), r)
                r = self.get("/v2/%s/blobs/%s%s" % (repo, d, q))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, img.layer_bytes[d])
                r = self.get("/v2/%s/blobs/%s%s" % (repo, d, q), {"Range": "bytes=1-"})
                self.assertEqual(r.status, 206, r)
                self.assertEqual(r.body, img.layer_bytes[d][1:])
            with self.subTest(image=key, endpoint="tags/list"):
                r = self.get("/v2/%s/tags/list%s" % (repo, q))
                self.assertEqual(r.status, 200, r)
                self.assertIn(img.tag, r.json().get("tags") or [], r)
            with self.subTest(image=key, endpoint="referrers"):
                r = self.get("/v2/%s/referrers/%s%s" % (repo, img.digest, q))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json().get("manifests"), [], r)
        with self.subTest(endpoint="ns with an alias"):
            img = self.w.fx["pause"]
            r = self.get("/v2/pause/manifests/%s?ns=k8s.gcr.io" % img.tag, {"Accept": ACCEPT_ALL})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("Docker-Content-Digest"), img.digest, r)
        with self.subTest(endpoint="ns with a Docker Hub short name"):
            img = self.w.fx["alpine"]
            r = self.get("/v2/alpine/manifests/%s?ns=docker.io" % img.tag, {"Accept": ACCEPT_ALL})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("Docker-Content-Digest"), img.digest, r)


def parse_byteranges(body, boundary):
    """[(first, last, bytes)] from a multipart/byteranges body (RFC 9110 14.6)."""
    out = []
    delim = b"--" + boundary
    pos = body.find(delim)
    if pos < 0:
        raise AssertionError("no boundary in multipart body")
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            break
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise AssertionError("truncated part headers")
        headers = body[pos:head_end].decode("latin-1")
        m = re.search(r"(?im)^content-range:\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", headers)
        if not m:
            raise AssertionError("part without Content-Range: %r" % headers)
        a, b = int(m.group(1)), int(m.group(2))
        start = head_end + 4
        data = body[start:start + (b - a + 1)]
        out.append((a, b, data))
        nxt = body.find(b"\r\n" + delim, start + len(data))
        if nxt < 0:
            raise AssertionError("unterminated multipart body")
        pos = nxt + 2
    return out


if __name__ == "__main__":
    unittest.main(verbosity=2)
