/* gc_plan.h — the pure part of GC: which images to evict and which stored
 * objects that frees, computed on an in-memory snapshot of the index (no
 * SQLite, no files; unit tested in tests/unit/test_gc.c).
 *
 * The snapshot (struct om_gc_graph) is filled by index_gc.c and gc.c:
 *   nodes   every manifest and blob the index knows, sorted by digest
 *           (strcmp order), with the size of its file in the store (0 and
 *           present = false when the file is missing) and `recent`, the
 *           last time anything touched it (created, pulled, file written)
 *   edges   manifest → child (config, layers, platform manifests); node i's
 *           children are edges[first_child .. first_child + n_children)
 *   images  one per root: a digest some tag points at (all its tags, in
 *           every repository, make one image), or a manifest that no tag and
 *           no stored manifest refers to (pulled by digest only).  Its
 *           closure is the root and everything reachable from it: for an
 *           index, its platform manifests and their configs and layers.
 *   strays  files in the store the index does not know at all
 *
 * The plan (om_gc_plan_make):
 *   1. refs[n] = the number of images whose closure holds node n.
 *   2. Orphans: blobs no image holds (refs == 0) and strays, if not touched
 *      since the cutoff; they are removed on every run.
 *   3. If usage (minus the orphans) is above p->evict_above, images are
 *      taken least recently used first (ties: by root digest) until usage
 *      is at most p->evict_to.  An image used at or after the cutoff is never
 *      taken.  Taking an image decrements refs over its closure; a node is
 *      freed when refs reaches 0, it was not touched since the cutoff, and no
 *      manifest of the closure that stays (shared or recent) lists it.
 *      Nodes are listed parent first (reverse DFS post-order), the order in
 *      which they can be deleted without ever leaving a child unreferenced
 *      while its parent's row still names it.
 * The executor (gc.c + index_gc.c) re-checks every step against the live
 * index, so a plan made on a stale snapshot can only delete less, never
 * something a client started to use meanwhile.
 */
#ifndef OM_GC_PLAN_H
#define OM_GC_PLAN_H

#include "core/om.h"
#include "core/ref.h"

struct om_gc_node {
    om_digest digest;
    uint64_t size;          /* bytes of its file in the store (0 if missing) */
    int64_t recent;         /* ms: latest of created, last access, file change */
    uint32_t first_child;   /* into om_gc_graph.edges */
    uint32_t n_children;
    bool manifest;          /* a manifest or index (else a blob) */
    bool present;           /* its file is in the store */
};

struct om_gc_image {
    uint32_t root;                 /* node index */
    int64_t last_used;             /* ms: LRU key (last pull, fetch, access) */
    uint32_t n_tags;               /* tags pointing at root (0 = untagged) */
    char repo[OM_NAME_MAX + 1];    /* one repository, for logs ("" unknown) */
    char tag[OM_TAG_MAX + 1];      /* the most recently used tag, "" if none */
};

/* A file in the store the index does not know. */
struct om_gc_stray {
    om_digest digest;
    uint64_t size;
    int64_t changed;        /* ms: latest of its mtime and ctime (commit) */
};

/* All arrays malloc'd, owned by the graph (om_gc_graph_free). */
struct om_gc_graph {
    struct om_gc_node *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *edges;
    size_t n_edges, cap_edges;
    struct om_gc_image *images;
    size_t n_images, cap_images;
    struct om_gc_stray *strays;
    size_t n_strays, cap_strays;
};

/* Growth helpers for the loaders: append one zeroed element and point *out
 * at it.  OM_ERR_NOMEM, or OM_ERR_TOOBIG past 2^31 elements. */
int om_gc_graph_add_node(struct om_gc_graph *g, struct om_gc_node **out);
int om_gc_graph_add_edge(struct om_gc_graph *g, uint32_t child);
int om_gc_graph_add_image(struct om_gc_graph *g, struct om_gc_image **out);
int om_gc_graph_add_stray(struct om_gc_graph *g, struct om_gc_stray **out);
/* Sort nodes by digest and merge duplicates (a digest listed as both a
 * manifest and a blob stays one node, a manifest).  Call before adding edges
 * or images. */
void om_gc_graph_sort_nodes(struct om_gc_graph *g);
/* Index of the node with digest s (a NUL-terminated "sha256:..."), or -1. */
long om_gc_graph_find(const struct om_gc_graph *g, const char *s);
void om_gc_graph_free(struct om_gc_graph *g);

struct om_gc_plan_params {
    uint64_t used;          /* bytes in the store now */
    uint64_t evict_above;   /* evict only when usage is above this (UINT64_MAX: never) */
    uint64_t evict_to;      /* ... down to at most this */
    int64_t cutoff;         /* ms: anything touched at or after this is kept */
};

/* One image to evict and the nodes that frees (plan.freed[first..first+n)). */
struct om_gc_victim {
    uint32_t image;         /* index into graph.images */
    uint32_t first, n;
    uint64_t bytes;         /* sum of the sizes of its freed nodes */
};

/* Arrays malloc'd, owned by the plan (om_gc_plan_free). */
struct om_gc_plan {
    struct om_gc_victim *victims;
    size_t n_victims;
    uint32_t *freed;        /* node indexes, per victim, parent first */
    size_t n_freed;
    uint32_t *orphans;      /* node indexes: blobs no image holds */
    size_t n_orphans;
    uint32_t *strays;       /* indexes into graph.strays old enough to go */
    size_t n_strays;
    uint64_t evict_bytes, orphan_bytes, stray_bytes;
    uint64_t used_after;    /* projected usage once all of it is removed */
    size_t n_kept_recent;   /* images that would have been taken but were used
                               at or after the cutoff */
};

/* Build the plan (see the file comment).  g's nodes must be sorted. */
int om_gc_plan_make(const struct om_gc_graph *g, const struct om_gc_plan_params *p,
                    struct om_gc_plan *out);
/* The plan for evicting exactly one image (an operator's request): no
 * cutoff for the image itself; its nodes are freed when no other image
 * holds them and they were not touched at or after `cutoff` (INT64_MAX:
 * ignore touches).  Orphans and strays are not included. */
int om_gc_plan_one(const struct om_gc_graph *g, uint32_t image, int64_t cutoff,
                   struct om_gc_plan *out);
void om_gc_plan_free(struct om_gc_plan *p);

#endif
