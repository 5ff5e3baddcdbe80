"""The pull API as real clients expect it (/work/shared/PROTOCOL.md): ping,
manifests (HEAD/GET, tag/digest, Accept negotiation compared with a real
docker-registry), blobs (HEAD/GET, Range in every form, cached and
uncached), tags/list and _catalog paging, referrers, read-only push
endpoints, and `?ns=` on every endpoint.  Long tag lists (one upstream
fetch for concurrent clients, paging from memory, limits.max_tags, the
stale list when the upstream fails) come from scripted fake upstreams
(lib/fakeupstream.py) behind the quay.io upstream.

One World and one mirror for the whole file (the mirror's cache state
matters in some tests: each such test names the images it uses alone).
"""

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.bench_soak import is_sanitized, proc_status, reset_hwm  # noqa: E402
from lib.fakeupstream import FakeRegistry  # noqa: E402
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

    def follow_pages(self, first_path, key, limit=50, m=None):
        """Follow Link rel=next from first_path (on mirror m, default the
        class's); returns (items, pages)."""
        m = m or self.m
        items, pages, path = [], 0, first_path
        while path is not None:
            pages += 1
            self.assertLess(pages, limit, "paging does not end")
            r = m.get(path)
            self.assertEqual(r.status, 200, r)
            items += r.json().get(key) or []
            link = r.headers.get("Link")
            if link is None:
                path = None
                continue
            mt = LINK_RE.search(link)
            self.assertIsNotNone(mt, "malformed Link header: %r" % link)
            u = urllib.parse.urlsplit(urllib.parse.urljoin(m.url + path, mt.group(1)))
            self.assertIn(u.netloc, ("", m.host_port), "Link points elsewhere: %r" % link)
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

    # -- long tag lists, from a fake quay.io ------------------------------
    def fake_quay(self, **mirror_extra):
        """A scripted registry (TLS from the World's CA) as the mirror's
        quay.io upstream, and a mirror of its own on it → (registry, mirror)."""
        reg = FakeRegistry(tls=self.w.ca.issue("fake-quay"), name="fake-quay").start()
        self.addCleanup(reg.stop)
        extra = {"retries": {"max": 2, "backoff": "100ms"}}
        extra.update(mirror_extra)
        return reg, self.mirror(upstream_url={"quay": reg.url}, extra=extra)

    def tag_requests(self, reg):
        return len(reg.requests(r"/tags/list", "GET"))

    def test_a_100000_tag_list_is_fetched_once_for_40_clients_and_paged_from_memory(self):
        """100,000 tags (as many as limits.max_tags allows by default), in
        random order, in one upstream page that takes a second to come: 40
        clients asking at once share one upstream fetch, and paging through
        the whole list afterwards asks the upstream nothing.  The mirror's
        memory stays small: the list is held compactly, not as 40 JSON trees."""
        tags = ["%d.%d.%d-%d" % (i % 10, i % 37, i % 101, i) for i in range(100000)]
        random.Random(7).shuffle(tags)
        reg, m = self.fake_quay(tag_ttl="60s")

        def pager(q):
            time.sleep(1)               # so that the 40 overlap; not a timing check
            return tags, None
        reg.tag_lists["team/huge"] = pager
        path = "/v2/quay.io/team/huge/tags/list"
        time.sleep(0.5)
        rss0 = proc_status(m.pid)["VmRSS"]
        reset_hwm(m.pid)
        answers = [None] * 40

        def one(i):
            answers[i] = m.get(path, timeout=120)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(180)
        peak = proc_status(m.pid)["VmHWM"]
        want = sorted(tags)
        for r in answers:
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json().get("tags"), want[:10000])
            self.assertIsNotNone(LINK_RE.search(r.headers.get("Link", "")), r)
        self.assertEqual(self.tag_requests(reg), 1, "40 concurrent clients, one upstream fetch")
        got, pages = self.follow_pages(path + "?n=5000", "tags", limit=30, m=m)
        self.assertEqual(pages, 20)
        self.assertEqual(got, want)
        self.assertEqual(self.tag_requests(reg), 1, "paging within tag_ttl asks the upstream")
        if not is_sanitized(m.binary):  # ASan's quarantine keeps freed memory
            self.assertLess((peak - rss0) / 1024, 96,
                            "peak RSS rose by %d MiB for 40 requests of a 1 MB tag list" % (
                                (peak - rss0) // 1024))

    def test_a_tag_list_past_limits_max_tags_is_refused_with_an_error_naming_the_limit(self):
        """limits.max_tags: 1000.  A list of 1000 tags is served whole; one
        of 1001 (over two upstream pages) is 502 UNSUPPORTED naming the
        limit — never a list cut short that looks complete — and a client
        retrying gets the same answer without a new upstream fetch."""
        reg, m = self.fake_quay(tag_ttl="60s", limits={"max_tags": 1000})
        full = ["t%04d" % i for i in range(1000)]
        reg.tag_lists["team/full"] = lambda q: (full, None)

        def pager(q):
            if "last" not in q:
                return full[:600], '</v2/team/over/tags/list?last=t0599&n=600>; rel="next"'
            return full[600:] + ["t9999"], None
        reg.tag_lists["team/over"] = pager
        got, _ = self.follow_pages("/v2/quay.io/team/full/tags/list?n=400", "tags", m=m)
        self.assertEqual(got, full)
        r = m.get("/v2/quay.io/team/over/tags/list")
        errs = self.assertErrorJSON(r, 502, "UNSUPPORTED")
        self.assertIn("limits.max_tags (1000)", errs[0]["message"], r)
        self.assertIn("quay.io/team/over", errs[0]["message"], r)
        asked = self.tag_requests(reg)
        r = m.get("/v2/quay.io/team/over/tags/list?n=10")
        self.assertErrorJSON(r, 502, "UNSUPPORTED")
        self.assertEqual(self.tag_requests(reg), asked, "the refusal is remembered for tag_ttl")
        self.assertIn("tag list refused", m.log_text())

    def test_with_the_upstream_failing_after_tag_ttl_the_last_full_list_is_served_stale(self):
        """The list was fetched once; tag_ttl later the upstream answers 503:
        the whole list fetched before is served (Warning: 110), not only the
        tag the mirror holds (v3).  After a restart (the memory is gone) the
        tags the mirror holds are what is left to list."""
        reg, m = self.fake_quay(tag_ttl="1s")
        tags = ["v%d" % i for i in range(30)]
        reg.tag_lists["team/app"] = lambda q: (tags, None)
        reg.add_image("team/app", "v3")
        path = "/v2/quay.io/team/app/tags/list"
        r = m.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.headers.get("Warning"), r)
        r = m.get("/v2/quay.io/team/app/manifests/v3", {"Accept": ACCEPT_ALL})
        self.assertEqual(r.status, 200, r)
        reg.script("GET", r"/tags/list", 0, 503)
        time.sleep(1.5)
        r = m.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("tags"), sorted(tags), r)
        self.assertIn("110", r.headers.get("Warning", ""), r)
        m.restart()
        r = m.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("tags"), ["v3"], r)
        self.assertIn("110", r.headers.get("Warning", ""), r)

    def test_a_tag_list_whose_later_page_fails_is_not_served_cut_short(self):
        """The first page comes, the second fails (500 after retries):
        503 UNAVAILABLE naming the upstream's answer, not the first page
        passed off as the whole list."""
        reg, m = self.fake_quay()

        def pager(q):
            return (["a", "b"], '</v2/team/half/tags/list?last=b>; rel="next"') if "last" not in q \
                else (["c"], None)
        reg.tag_lists["team/half"] = pager
        reg.script("GET", r"/tags/list\?last=", 0, 500)
        r = m.get("/v2/quay.io/team/half/tags/list")
        errs = self.assertErrorJSON(r, 503, "UNAVAILABLE")
        self.assertIn("later page", errs[0]["message"], r)

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
