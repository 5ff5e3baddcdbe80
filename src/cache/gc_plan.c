/* gc_plan.c — the eviction planner (see gc_plan.h for the model).
 *
 * Design: everything is index arithmetic on the snapshot arrays; nothing
 * here touches SQLite or the disk, so the selection rules are unit tested
 * on hand-built graphs.  Cost: O(images × closure) to count references
 * (closures are small: an index, a few platform manifests, their layers),
 * O(images log images) to order them, O(nodes) memory for the counters.
 *
 * Walks use a "stamp" per node instead of clearing a visited array per
 * closure: node n is visited in walk k when stamp[n] == k.
 *
 * If you change a rule here, change the re-checks in index_gc.c
 * (om_index_gc_evict) that enforce it on the live index, and docs/gc.md.
 */
#include "cache/gc_plan.h"

#include <stdlib.h>
#include <string.h>

#define GC_MAX_ELEMS ((size_t)1 << 31) /* indexes are uint32_t */

/* ---- graph building --------------------------------------------------- */

/* Make room for one more element of size `elem` in *arr (capacity *cap). */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return OM_OK;
    if (n >= GC_MAX_ELEMS)
        return OM_ERR_TOOBIG;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, ncap * elem); /* owned by the graph */
    if (p == NULL)
        return OM_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return OM_OK;
}

int om_gc_graph_add_node(struct om_gc_graph *g, struct om_gc_node **out)
{
    int err = grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof(*g->nodes));
    if (err != OM_OK)
        return err;
    *out = &g->nodes[g->n_nodes++];
    memset(*out, 0, sizeof(**out));
    return OM_OK;
}

int om_gc_graph_add_edge(struct om_gc_graph *g, uint32_t child)
{
    int err = grow((void **)&g->edges, &g->cap_edges, g->n_edges, sizeof(*g->edges));
    if (err != OM_OK)
        return err;
    g->edges[g->n_edges++] = child;
    return OM_OK;
}

int om_gc_graph_add_image(struct om_gc_graph *g, struct om_gc_image **out)
{
    int err = grow((void **)&g->images, &g->cap_images, g->n_images, sizeof(*g->images));
    if (err != OM_OK)
        return err;
    *out = &g->images[g->n_images++];
    memset(*out, 0, sizeof(**out));
    return OM_OK;
}

int om_gc_graph_add_stray(struct om_gc_graph *g, struct om_gc_stray **out)
{
    int err = grow((void **)&g->strays, &g->cap_strays, g->n_strays, sizeof(*g->strays));
    if (err != OM_OK)
        return err;
    *out = &g->strays[g->n_strays++];
    memset(*out, 0, sizeof(**out));
    return OM_OK;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct om_gc_node *)a)->digest.str,
                  ((const struct om_gc_node *)b)->digest.str);
}

void om_gc_graph_sort_nodes(struct om_gc_graph *g)
{
    size_t w = 0;

    if (g->n_nodes == 0)
        return;
    qsort(g->nodes, g->n_nodes, sizeof(*g->nodes), node_cmp);
    for (size_t r = 1; r < g->n_nodes; r++) {
        struct om_gc_node *keep = &g->nodes[w], *dup = &g->nodes[r];
        if (strcmp(keep->digest.str, dup->digest.str) == 0) {
            keep->manifest = keep->manifest || dup->manifest;
            keep->present = keep->present || dup->present;
            keep->size = keep->size > dup->size ? keep->size : dup->size;
            keep->recent = keep->recent > dup->recent ? keep->recent : dup->recent;
            continue;
        }
        g->nodes[++w] = *dup;
    }
    g->n_nodes = w + 1;
}

long om_gc_graph_find(const struct om_gc_graph *g, const char *s)
{
    size_t lo = 0, hi = g->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->nodes[mid].digest.str, s);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

void om_gc_graph_free(struct om_gc_graph *g)
{
    if (g == NULL)
        return;
    free(g->nodes);
    free(g->edges);
    free(g->images);
    free(g->strays);
    memset(g, 0, sizeof(*g));
}

/* ---- planning --------------------------------------------------------- */

struct frame {
    uint32_t node;
    uint32_t next; /* next child to visit */
};

/* Scratch shared by the walks; all arrays n_nodes long, owned here. */
struct walker {
    const struct om_gc_graph *g;
    uint32_t *stamp;        /* visited in walk k when stamp[n] == k */
    uint32_t cur;           /* the current walk's k (0 = never used) */
    struct frame *stack;
    uint32_t *order;        /* the last closure, parent first */
    size_t n_order;
};

static int walker_init(struct walker *w, const struct om_gc_graph *g)
{
    size_t n = g->n_nodes ? g->n_nodes : 1;
    memset(w, 0, sizeof(*w));
    w->g = g;
    w->stamp = calloc(n, sizeof(*w->stamp));   /* freed in walker_free */
    w->stack = calloc(n, sizeof(*w->stack));   /* freed in walker_free */
    w->order = calloc(n, sizeof(*w->order));   /* freed in walker_free */
    return (w->stamp && w->stack && w->order) ? OM_OK : OM_ERR_NOMEM;
}

static void walker_free(struct walker *w)
{
    free(w->stamp);
    free(w->stack);
    free(w->order);
}

/* Closure of root into w->order, parent first: reverse DFS post-order,
 * which is a topological order of the manifest DAG (a cycle, impossible
 * with content addressing, would only make the order arbitrary). */
static void closure(struct walker *w, uint32_t root)
{
    const struct om_gc_graph *g = w->g;
    size_t sp = 0;

    w->cur++;
    w->n_order = 0;
    w->stamp[root] = w->cur;
    w->stack[sp++] = (struct frame){root, 0};
    while (sp > 0) {
        struct frame *f = &w->stack[sp - 1];
        const struct om_gc_node *n = &g->nodes[f->node];
        if (f->next < n->n_children) {
            uint32_t c = g->edges[n->first_child + f->next++];
            if (w->stamp[c] != w->cur) {
                w->stamp[c] = w->cur;
                w->stack[sp++] = (struct frame){c, 0}; /* sp <= n_nodes: each node once */
            }
            continue;
        }
        w->order[w->n_order++] = f->node;
        sp--;
    }
    for (size_t i = 0, j = w->n_order; i + 1 < j; i++, j--) {
        uint32_t t = w->order[i];
        w->order[i] = w->order[j - 1];
        w->order[j - 1] = t;
    }
}

/* refs[n] = number of images whose closure holds n. */
static void count_refs(struct walker *w, uint32_t *refs)
{
    for (size_t i = 0; i < w->g->n_images; i++) {
        closure(w, w->g->images[i].root);
        for (size_t k = 0; k < w->n_order; k++)
            refs[w->order[k]]++;
    }
}

/* qsort_r comparator over image indexes: least recently used first, ties
 * broken by root digest so a plan is deterministic. */
static int image_lru_cmp(const void *a, const void *b, void *ud)
{
    const struct om_gc_graph *g = ud;
    const struct om_gc_image *x = &g->images[*(const uint32_t *)a];
    const struct om_gc_image *y = &g->images[*(const uint32_t *)b];
    if (x->last_used != y->last_used)
        return x->last_used < y->last_used ? -1 : 1;
    return strcmp(g->nodes[x->root].digest.str, g->nodes[y->root].digest.str);
}

/* Plan state for take_image(). */
struct planner {
    struct walker w;
    uint32_t *refs;       /* per node; owned */
    bool *pinned;         /* per node: listed by a manifest that stays; owned */
    struct om_gc_plan *out;
    size_t cap_victims, cap_freed;
};

/* Evict image i: decrement refs over its closure and record the nodes that
 * become free (see the file comment of gc_plan.h). */
static int take_image(struct planner *pl, uint32_t i, int64_t cutoff)
{
    const struct om_gc_graph *g = pl->w.g;
    struct om_gc_plan *out = pl->out;
    struct om_gc_victim v = {.image = i, .first = (uint32_t)out->n_freed};
    int err;

    closure(&pl->w, g->images[i].root);
    for (size_t k = 0; k < pl->w.n_order; k++)
        pl->refs[pl->w.order[k]]--;
    for (size_t k = 0; k < pl->w.n_order; k++) {
        uint32_t n = pl->w.order[k];
        const struct om_gc_node *nd = &g->nodes[n];
        if (pl->refs[n] > 0)
            continue; /* another image holds it, and so its children */
        if (nd->recent >= cutoff || pl->pinned[n]) {
            /* It stays although nothing holds it: whatever it lists stays
             * referenced by its row, so cannot be freed either. */
            for (uint32_t c = 0; c < nd->n_children; c++) {
                pl->pinned[g->edges[nd->first_child + c]] = true;
            }
            continue;
        }
        if ((err = grow((void **)&out->freed, &pl->cap_freed, out->n_freed,
                        sizeof(*out->freed))) != OM_OK)
            return err;
        out->freed[out->n_freed++] = n;
        v.n++;
        if (nd->present)
            v.bytes += nd->size;
    }
    if ((err = grow((void **)&out->victims, &pl->cap_victims, out->n_victims,
                    sizeof(*out->victims))) != OM_OK)
        return err;
    out->victims[out->n_victims++] = v;
    out->evict_bytes += v.bytes;
    return OM_OK;
}

static int planner_init(struct planner *pl, const struct om_gc_graph *g, struct om_gc_plan *out)
{
    size_t n = g->n_nodes ? g->n_nodes : 1;
    int err;

    memset(pl, 0, sizeof(*pl));
    memset(out, 0, sizeof(*out));
    pl->out = out;
    for (size_t i = 0; i < g->n_images; i++) {
        if (g->images[i].root >= g->n_nodes)
            return OM_ERR_INVALID; /* a loader bug: every root is a node */
    }
    for (size_t k = 0; k < g->n_nodes; k++) {
        if ((size_t)g->nodes[k].first_child + g->nodes[k].n_children > g->n_edges)
            return OM_ERR_INVALID;
    }
    for (size_t e = 0; e < g->n_edges; e++) {
        if (g->edges[e] >= g->n_nodes)
            return OM_ERR_INVALID;
    }
    if ((err = walker_init(&pl->w, g)) != OM_OK)
        return err;
    pl->refs = calloc(n, sizeof(*pl->refs));     /* freed in planner_free */
    pl->pinned = calloc(n, sizeof(*pl->pinned)); /* freed in planner_free */
    if (pl->refs == NULL || pl->pinned == NULL)
        return OM_ERR_NOMEM;
    count_refs(&pl->w, pl->refs);
    return OM_OK;
}

static void planner_free(struct planner *pl)
{
    walker_free(&pl->w);
    free(pl->refs);
    free(pl->pinned);
}

static uint64_t sub_sat(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

int om_gc_plan_make(const struct om_gc_graph *g, const struct om_gc_plan_params *p,
                    struct om_gc_plan *out)
{
    struct planner pl;
    uint32_t *order = NULL;
    size_t cap_orphans = 0, cap_strays = 0;
    uint64_t projected;
    int err;

    if ((err = planner_init(&pl, g, out)) != OM_OK)
        goto done;
    /* Orphans first: they go anyway, and may make eviction unnecessary. */
    for (size_t n = 0; n < g->n_nodes; n++) {
        const struct om_gc_node *nd = &g->nodes[n];
        if (pl.refs[n] != 0 || nd->manifest || nd->recent >= p->cutoff)
            continue;
        if ((err = grow((void **)&out->orphans, &cap_orphans, out->n_orphans,
                        sizeof(*out->orphans))) != OM_OK)
            goto done;
        out->orphans[out->n_orphans++] = (uint32_t)n;
        if (nd->present)
            out->orphan_bytes += nd->size;
    }
    for (size_t s = 0; s < g->n_strays; s++) {
        if (g->strays[s].changed >= p->cutoff)
            continue;
        if ((err = grow((void **)&out->strays, &cap_strays, out->n_strays,
                        sizeof(*out->strays))) != OM_OK)
            goto done;
        out->strays[out->n_strays++] = (uint32_t)s;
        out->stray_bytes += g->strays[s].size;
    }
    projected = sub_sat(p->used, out->orphan_bytes + out->stray_bytes);

    if (p->used > p->evict_above && projected > p->evict_to && g->n_images > 0) {
        order = malloc(g->n_images * sizeof(*order)); /* freed below */
        if (order == NULL) {
            err = OM_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < g->n_images; i++)
            order[i] = (uint32_t)i;
        qsort_r(order, g->n_images, sizeof(*order), image_lru_cmp, (void *)g);
        for (size_t k = 0; k < g->n_images && projected > p->evict_to; k++) {
            const struct om_gc_image *im = &g->images[order[k]];
            if (im->last_used >= p->cutoff) {
                /* In use right now (and so is everything after it). */
                out->n_kept_recent = g->n_images - k;
                break;
            }
            if ((err = take_image(&pl, order[k], p->cutoff)) != OM_OK)
                goto done;
            projected = sub_sat(projected, out->victims[out->n_victims - 1].bytes);
        }
    }
    out->used_after = projected;
done:
    free(order);
    planner_free(&pl);
    if (err != OM_OK)
        om_gc_plan_free(out);
    return err;
}

int om_gc_plan_one(const struct om_gc_graph *g, uint32_t image, int64_t cutoff,
                   struct om_gc_plan *out)
{
    struct planner pl;
    int err;

    if (image >= g->n_images) {
        memset(out, 0, sizeof(*out));
        return OM_ERR_INVALID;
    }
    if ((err = planner_init(&pl, g, out)) == OM_OK)
        err = take_image(&pl, image, cutoff);
    planner_free(&pl);
    if (err != OM_OK)
        om_gc_plan_free(out);
    return err;
}

void om_gc_plan_free(struct om_gc_plan *p)
{
    if (p == NULL)
        return;
    free(p->victims);
    free(p->freed);
    free(p->orphans);
    free(p->strays);
    memset(p, 0, sizeof(*p));
}
