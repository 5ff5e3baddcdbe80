/* route.h — a requested repository name (+ the client's ?ns=) → which
 * upstream(s) to ask and under which remote name.  Pure: no I/O.
 *
 * Order (DESIGN.md "Routing a name"):
 *   1. ns=<registry> names a configured upstream or alias → that upstream;
 *      an ns that names no configured upstream → OM_ERR_NOTFOUND (the mirror
 *      never contacts a host that is not configured).  If the name also
 *      starts with a prefix naming the same upstream (a path-prefixed mirror
 *      plus ns), the prefix is stripped.
 *   2. first path component is an upstream name or alias → that upstream,
 *      the rest is the remote name ("quay.io/coreos/etcd").  A first
 *      component that looks like a host (contains '.' or ':' or is
 *      "localhost") but is not configured → OM_ERR_NOTFOUND.
 *   3. rewrite rules, first match wins; the target is re-routed through
 *      step 2 (so it must start with a configured upstream) — one level only.
 *   4. otherwise a search over config->search_order (OM_ROUTE_SEARCH): the
 *      caller probes candidates in order, caches the winner and negatively
 *      caches misses.
 *   5. Docker Hub names with one component get "library/" — applied to
 *      every candidate whose upstream is Docker Hub, in every step.
 *
 * The canonical name of a cached repository is "<upstream name>/<remote>",
 * e.g. "docker.io/library/nginx".
 */
#ifndef OM_ROUTE_H
#define OM_ROUTE_H

#include "core/config.h"

typedef enum {
    OM_ROUTE_FIXED,    /* exactly one candidate */
    OM_ROUTE_SEARCH,   /* try candidates in order */
} om_route_kind;

typedef enum {
    OM_WHY_NS,         /* ?ns= */
    OM_WHY_PREFIX,     /* explicit host prefix or alias */
    OM_WHY_REWRITE,    /* a rewrite rule matched */
    OM_WHY_SEARCH,     /* search order */
} om_route_why;

struct om_route_candidate {
    size_t upstream;                       /* index into cfg->upstreams */
    char remote[OM_NAME_MAX + 1];          /* name on that upstream */
    char canonical[OM_NAME_MAX + 1];       /* "<upstream name>/<remote>" */
};

struct om_route {
    om_route_kind kind;
    om_route_why why;
    int rewrite_index;                     /* when why == OM_WHY_REWRITE, else -1 */
    size_t n;
    struct om_route_candidate c[OM_MAX_UPSTREAMS];
};

/* name: a valid repository name (already checked by om_ref_name_valid).
 * ns: NULL or the raw ns value (already percent-decoded); "" counts as NULL.
 * Returns OM_OK; OM_ERR_NOTFOUND for an unknown ns or host prefix, or an
 * empty search order;
 * OM_ERR_INVALID if a rewrite produced an invalid or over-long name (or a
 * target whose first component is not a configured upstream), or if a
 * remote name with "library/" or a canonical name would exceed OM_NAME_MAX.
 * On any error out->n == 0; out->why still says which step decided. */
int om_route_resolve(struct om_route *out, const struct om_config *cfg,
                     const char *name, const char *ns);

/* A human sentence for logs and the route explainer, e.g.
 * "explicit prefix quay.io" / "ns=docker.io" / "rewrite ^coredns$" /
 * "search order". Static storage. */
const char *om_route_why_str(om_route_why why);

#endif
