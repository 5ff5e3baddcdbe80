/* index.c — the metadata index's interface: every public function of
 * index.h checks its input here, once for every backend, then calls the
 * backend's operation (ix->ops, index_backend.h).  No SQL here: the SQLite
 * backend is index_sqlite.c / index_sqlite_open.c.
 *
 * Design:
 *   - The checks are the ones the SQLite module always applied, in the same
 *     order and with the same answers (OM_ERR_INVALID, OM_ERR_TOOBIG for an
 *     over-long referrers answer, false from om_index_negative_get), so a
 *     backend receives only input that passed them.  Checks that depend on
 *     what the index holds (OM_ERR_NOTFOUND) stay in the backend.  The
 *     om_index__*_ok predicates are shared with the tags.log replay
 *     (index_rebuild.c) and the side connections (index_gc.c,
 *     index_fsck.c, index_admin.c) through index_backend.h.
 *   - om_index_note_pulls checks note by note inside the backend's one
 *     transaction (a bad note is skipped, not an error):
 *     om_index__pull_note_ok is that check.
 *   - om_index_open opens the SQLite backend; om_index_open_cfg chooses the
 *     backend from the configuration (cluster.redis set: Redis), here and
 *     nowhere else.
 *
 * If you add a query, see index.h: a public function here with its checks,
 * an operation in struct om_index_ops, and an implementation per backend.
 */
#include "cache/index_backend.h"

#include "core/config.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define UPSTREAM_NAME_MAX 255

/* ---- input checks ------------------------------------------------------- */

bool om_index__repo_ok(const char *repo)
{
    /* Canonical names ("<upstream>/<remote>") are built by route.c; here
     * only the size limit that bounds tags.log lines and columns. */
    return repo != NULL && repo[0] != '\0' && strlen(repo) <= OM_NAME_MAX;
}

bool om_index__tag_ok(const char *tag)
{
    return tag != NULL && om_ref_tag_valid(tag, strlen(tag));
}

bool om_index__media_type_ok(const char *mt)
{
    return mt != NULL && strlen(mt) <= OM_MEDIA_TYPE_MAX;
}

bool om_index__digest_ok(const om_digest *d)
{
    om_digest check;
    return d != NULL &&
           om_digest_parse(&check, d->str, strnlen(d->str, sizeof(d->str))) == OM_OK;
}

bool om_index__pull_note_ok(const struct om_pull_note *pn)
{
    return om_index__digest_ok(&pn->digest) &&
           (pn->tag[0] == '\0' || om_index__repo_ok(pn->repo));
}

static bool upstream_ok(const char *u)
{
    return u != NULL && u[0] != '\0' && strlen(u) <= UPSTREAM_NAME_MAX;
}

/* ---- life cycle --------------------------------------------------------- */

int om_index_open(struct om_index **out, struct om_store *st, bool *rebuilt)
{
    int err = om_index_sqlite_open(out, st, rebuilt);
    assert(err != OM_OK || (*out)->ops->version == OM_INDEX_OPS_VERSION);
    return err;
}

int om_index_open_cfg(struct om_index **out, struct om_store *st, const struct om_config *cfg,
                      bool *rebuilt)
{
    int err;

    if (cfg->cluster_redis == NULL)
        return om_index_open(out, st, rebuilt);
    err = om_index_redis_open(out, st, cfg, rebuilt);
    assert(err != OM_OK || (*out)->ops->version == OM_INDEX_OPS_VERSION);
    return err;
}

void om_index_health(struct om_index *ix, struct om_index_health *out)
{
    memset(out, 0, sizeof(*out));
    out->backend = ix->ops->name;
    out->available = true;
    if (ix->ops->version >= 3 && ix->ops->health != NULL) {
        (void)ix->ops->health(ix, out);
        out->backend = ix->ops->name;
    } else {
        snprintf(out->where, sizeof(out->where), "%s", om_store_root(ix->st));
    }
}

void om_index_close(struct om_index *ix)
{
    if (ix == NULL)
        return;
    ix->ops->close(ix);
}

int om_index_rebuild(struct om_index *ix, size_t *n_manifests, size_t *n_tags)
{
    return ix->ops->rebuild(ix, n_manifests, n_tags);
}

/* ---- tags --------------------------------------------------------------- */

int om_index_tag_get(struct om_index *ix, const char *repo, const char *tag,
                     struct om_tag_rec *out)
{
    if (!om_index__repo_ok(repo) || tag == NULL)
        return OM_ERR_INVALID;
    return ix->ops->tag_get(ix, repo, tag, out);
}

int om_index_tag_put(struct om_index *ix, const char *repo, const char *tag,
                     const om_digest *d, const char *media_type, uint64_t size, int64_t now)
{
    if (!om_index__repo_ok(repo) || !om_index__tag_ok(tag) || !om_index__digest_ok(d) ||
        !om_index__media_type_ok(media_type) || size > (uint64_t)INT64_MAX)
        return OM_ERR_INVALID;
    return ix->ops->tag_put(ix, repo, tag, d, media_type, size, now);
}

int om_index_tag_checked(struct om_index *ix, const char *repo, const char *tag, int64_t now)
{
    if (!om_index__repo_ok(repo) || tag == NULL)
        return OM_ERR_INVALID;
    return ix->ops->tag_checked(ix, repo, tag, now);
}

int om_index_tags_list(struct om_index *ix, const char *repo, const char *last,
                       long n, om_index_str_fn fn, void *ud)
{
    if (!om_index__repo_ok(repo) || fn == NULL)
        return OM_ERR_INVALID;
    return ix->ops->tags_list(ix, repo, last, n, fn, ud);
}

/* ---- manifests and blobs ------------------------------------------------ */

int om_index_manifest_get(struct om_index *ix, const om_digest *d, struct om_manifest_rec *out)
{
    if (!om_index__digest_ok(d))
        return OM_ERR_INVALID;
    return ix->ops->manifest_get(ix, d, out);
}

int om_index_manifest_put(struct om_index *ix, const char *repo, const om_digest *d,
                          const char *media_type, uint64_t size,
                          const om_digest *children, size_t n_children, int64_t now)
{
    if ((repo != NULL && !om_index__repo_ok(repo)) || !om_index__digest_ok(d) ||
        !om_index__media_type_ok(media_type) || size > (uint64_t)INT64_MAX ||
        (n_children > 0 && children == NULL))
        return OM_ERR_INVALID;
    for (size_t i = 0; i < n_children; i++) {
        if (!om_index__digest_ok(&children[i]))
            return OM_ERR_INVALID;
    }
    return ix->ops->manifest_put(ix, repo, d, media_type, size, children, n_children, now);
}

int om_index_blob_put(struct om_index *ix, const char *repo, const om_digest *d,
                      uint64_t size, int64_t now)
{
    if ((repo != NULL && !om_index__repo_ok(repo)) || !om_index__digest_ok(d) ||
        size > (uint64_t)INT64_MAX)
        return OM_ERR_INVALID;
    return ix->ops->blob_put(ix, repo, d, size, now);
}

int om_index_blob_size(struct om_index *ix, const om_digest *d, uint64_t *size)
{
    *size = 0;
    if (!om_index__digest_ok(d))
        return OM_ERR_INVALID;
    if (ix->ops->version < 2 || ix->ops->blob_size == NULL)
        return OM_ERR_NOTFOUND; /* a backend that cannot say: nothing to check against */
    return ix->ops->blob_size(ix, d, size);
}

int om_index_member(struct om_index *ix, const char *repo, const om_digest *d)
{
    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d))
        return OM_ERR_INVALID;
    if (ix->ops->version < 3 || ix->ops->member == NULL)
        return OM_ERR_NOTFOUND; /* not known to be held: the upstream is asked */
    return ix->ops->member(ix, repo, d);
}

int om_index_note_pull(struct om_index *ix, const char *repo, const char *tag,
                       const om_digest *d, int64_t now)
{
    if (!om_index__digest_ok(d) || (tag != NULL && !om_index__repo_ok(repo)))
        return OM_ERR_INVALID;
    return ix->ops->note_pull(ix, repo, tag, d, now);
}

int om_index_note_pulls(struct om_index *ix, struct om_pull_note *notes, size_t n)
{
    /* Checked note by note by the backend (om_index__pull_note_ok). */
    return ix->ops->note_pulls(ix, notes, n);
}

/* ---- catalog ------------------------------------------------------------ */

int om_index_catalog(struct om_index *ix, const char *last, long n, om_index_str_fn fn,
                     void *ud)
{
    if (fn == NULL)
        return OM_ERR_INVALID;
    return ix->ops->catalog(ix, last, n, fn, ud);
}

/* ---- route decisions ---------------------------------------------------- */

int om_index_route_get(struct om_index *ix, const char *name, char *upstream_out,
                       size_t upstream_sz, char *canonical_out, size_t canonical_sz)
{
    if (!om_index__repo_ok(name))
        return OM_ERR_INVALID;
    return ix->ops->route_get(ix, name, upstream_out, upstream_sz, canonical_out, canonical_sz);
}

int om_index_route_put(struct om_index *ix, const char *name, const char *upstream,
                       const char *canonical, int64_t now)
{
    if (!om_index__repo_ok(name) || !upstream_ok(upstream) || !om_index__repo_ok(canonical))
        return OM_ERR_INVALID;
    return ix->ops->route_put(ix, name, upstream, canonical, now);
}

bool om_index_negative_get(struct om_index *ix, const char *name, const char *upstream,
                           int64_t now)
{
    if (!om_index__repo_ok(name) || !upstream_ok(upstream))
        return false;
    return ix->ops->negative_get(ix, name, upstream, now);
}

int om_index_negative_put(struct om_index *ix, const char *name, const char *upstream,
                          int64_t until)
{
    if (!om_index__repo_ok(name) || !upstream_ok(upstream))
        return OM_ERR_INVALID;
    return ix->ops->negative_put(ix, name, upstream, until);
}

/* ---- referrers ---------------------------------------------------------- */

int om_index_referrers_get(struct om_index *ix, const char *repo, const om_digest *d,
                           char **json, size_t *len, int64_t *fetched_at)
{
    *json = NULL;
    *len = 0;
    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d))
        return OM_ERR_INVALID;
    return ix->ops->referrers_get(ix, repo, d, json, len, fetched_at);
}

int om_index_referrers_put(struct om_index *ix, const char *repo, const om_digest *d,
                           const char *json, size_t len, int64_t now)
{
    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d) || (json == NULL && len > 0))
        return OM_ERR_INVALID;
    if (len > OM_INDEX_REFERRERS_MAX)
        return OM_ERR_TOOBIG;
    return ix->ops->referrers_put(ix, repo, d, json, len, now);
}

/* ---- counts ------------------------------------------------------------- */

int om_index_counts(struct om_index *ix, struct om_index_counts *out)
{
    return ix->ops->counts(ix, out);
}
