/* index_admin.h — the index queries behind the admin API and the web UI:
 * repositories paged with substring search and an upstream filter (with
 * per-repository tag count, size, last pull and pull count), one
 * repository's tags with their records, the tags that point at a digest.
 *
 * Read-only.  SQLite: on a connection of its own: the admin view opens a second
 * SQLite connection to <storage>/index.db (WAL mode lets it read while the
 * pull path writes, and its queries never hold the index mutex the pull
 * path waits on).  One mutex serialises the admin connection; every call
 * is one short transaction, so what a call returns is one consistent
 * snapshot.  Times are Unix milliseconds.
 */
#ifndef OM_INDEX_ADMIN_H
#define OM_INDEX_ADMIN_H

#include "cache/index.h"

struct om_index_admin;

#define OM_INDEX_ADMIN_PAGE_MAX 500     /* rows per call */
#define OM_INDEX_ADMIN_QUERY_MAX 255    /* bytes in a search string */

/* Open a read-only connection to the index database at db_path (which
 * om_index_open has created).  *out owned by the caller
 * (om_index_admin_close). */
int om_index_admin_open(struct om_index_admin **out, const char *db_path);
/* The admin view of an open index, whatever its backend: for SQLite a
 * read-only connection to <storage>/index.db as above; for Redis the
 * index's own connection (index_redis_admin.c; the same answers, computed
 * from the key schema).  ix is borrowed and must outlive the view.  *out
 * owned by the caller (om_index_admin_close). */
int om_index_admin_open_index(struct om_index_admin **out, struct om_index *ix);
void om_index_admin_close(struct om_index_admin *ia);

typedef enum {
    OM_REPO_SORT_NAME,     /* name, byte order (default) */
    OM_REPO_SORT_PULLED,   /* last pulled, newest first; then name */
    OM_REPO_SORT_PULLS,    /* pull count, most first; then name */
    OM_REPO_SORT_SIZE,     /* size, largest first; then name */
} om_repo_sort;

struct om_repo_query {
    const char *q;         /* substring of the name, case-insensitive; NULL/"" = any */
    const char *upstream;  /* names starting with "<upstream>/"; NULL/"" = any */
    om_repo_sort sort;
    uint64_t offset;       /* rows to skip */
    size_t limit;          /* 1..OM_INDEX_ADMIN_PAGE_MAX */
};

struct om_repo_row {
    char name[OM_NAME_MAX + 1];   /* canonical: "<upstream>/<remote>" */
    uint64_t tags;
    uint64_t size_bytes;          /* manifests + blobs recorded for the repository
                                     (shared content counts in each repository) */
    int64_t last_pulled;          /* newest tag pull, 0 = never */
    uint64_t pull_count;          /* tag pulls (a client resolving a tag) */
};

/* Fill rows[0..*n) (rows has room for q->limit) and *total (all matching
 * repositories).  OM_ERR_INVALID for a bad query (limit, over-long q). */
int om_index_admin_repos(struct om_index_admin *ia, const struct om_repo_query *q,
                         struct om_repo_row *rows, size_t *n, uint64_t *total);

typedef enum {
    OM_TAG_SORT_NAME,      /* tag, byte order (default) */
    OM_TAG_SORT_FETCHED,   /* fetched at, newest first; then tag */
    OM_TAG_SORT_PULLED,    /* last pulled, newest first; then tag */
} om_tag_sort;

struct om_tag_row {
    char tag[OM_TAG_MAX + 1];
    om_digest digest;
    char media_type[OM_MEDIA_TYPE_MAX + 1];
    uint64_t size;                /* the manifest's size */
    int64_t fetched_at, checked_at, last_pulled;   /* last_pulled 0 = never */
    uint64_t pull_count;
};

/* One repository's tags, paged like om_index_admin_repos.
 * OM_ERR_NOTFOUND when the repository is not known. */
int om_index_admin_tags(struct om_index_admin *ia, const char *repo, om_tag_sort sort,
                        uint64_t offset, size_t limit, struct om_tag_row *rows, size_t *n,
                        uint64_t *total);

/* Tags of repo pointing at digest d, in byte order: up to max names of
 * OM_TAG_MAX + 1 bytes each, written to out[i].  *n gets the count. */
int om_index_admin_digest_tags(struct om_index_admin *ia, const char *repo, const om_digest *d,
                               char (*out)[OM_TAG_MAX + 1], size_t max, size_t *n);

/* What the cache holds, for the dashboard (om_index_counts on the admin
 * connection, so a dashboard poll never waits on the pull path's mutex). */
struct om_index_admin_counts {
    uint64_t repos, tags, manifests, blobs;
    uint64_t manifest_bytes, blob_bytes;
};
int om_index_admin_counts(struct om_index_admin *ia, struct om_index_admin_counts *out);

#endif
