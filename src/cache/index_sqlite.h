/* index_sqlite.h — the SQLite backend's handle, shared by its two files
 * and nothing else:
 *   index_sqlite.c       the statements and the queries (the ops table)
 *   index_sqlite_open.c  open / check / close / rebuild, the tags.log file
 * Callers use index.h; index.c reaches the backend through
 * om_index_sqlite_open (index_backend.h) and the ops table.
 */
#ifndef OM_INDEX_SQLITE_H
#define OM_INDEX_SQLITE_H

#include "cache/index_private.h"

#include <pthread.h>

#define OM_INDEX_SQLITE_PATH_MAX 4096

/* The cached statements, indexed by id; their texts are SQL_TEXT[] in
 * index_sqlite.c, in the same order.  If you add a statement: add the id
 * here AND its text there, in the same place. */
enum om_index_sqlite_stmt {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_REPO_ADD, S_REPO_EXISTS,
    S_TAG_GET, S_TAG_PUT, S_TAG_CHECKED, S_TAG_PULLED, S_TAGS_LIST,
    S_MANIFEST_GET, S_MANIFEST_PUT, S_MANIFEST_REPO, S_CHILD_PUT, S_MANIFEST_PULLED,
    S_BLOB_PUT, S_BLOB_REPO, S_BLOB_PULLED, S_BLOB_SIZE, S_MEMBER,
    S_CATALOG,
    S_ROUTE_GET, S_ROUTE_PUT,
    S_NEG_GET, S_NEG_PUT, S_NEG_DEL,
    S_REF_GET, S_REF_PUT,
    S_COUNTS,
    S__COUNT
};

struct om_index_sqlite {
    struct om_index base;              /* first: ops = om_index_sqlite__ops, st borrowed */
    pthread_mutex_t mu;
    sqlite3 *db;                       /* owned; closed in om_index_sqlite__close */
    sqlite3_stmt *stmt[S__COUNT];      /* owned; finalized in om_index_sqlite__close */
    int log_fd;                        /* tags.log, O_APPEND; owned */
    bool log_need_nl;                  /* the log ends in a torn line */
    char db_path[OM_INDEX_SQLITE_PATH_MAX];
    char log_path[OM_INDEX_SQLITE_PATH_MAX];
};

/* The handle behind an om_index this backend opened (base is its first
 * member).  Borrowed, like base. */
static inline struct om_index_sqlite *om_index_sqlite__of(struct om_index *base)
{
    return (struct om_index_sqlite *)base;
}

/* ---- index_sqlite.c ---- */

extern const struct om_index_ops om_index_sqlite__ops;
/* Prepare every statement into ix->stmt[] (logged on failure). */
int om_index_sqlite__prepare(struct om_index_sqlite *ix);

/* ---- index_sqlite_open.c ---- */

/* ops->close and ops->rebuild. */
void om_index_sqlite__close(struct om_index *base);
int om_index_sqlite__rebuild(struct om_index *base, size_t *n_manifests, size_t *n_tags);
/* Append one tag record to tags.log with a single write(2); the caller
 * holds ix->mu.  Strings are borrowed. */
int om_index_sqlite__log_append(struct om_index_sqlite *ix, const char *repo, const char *tag,
                                const om_digest *d, const char *media_type, uint64_t size,
                                int64_t t);

#endif
