/* admin_events.c — GET /api/v1/events: the recent events ring
 * (core/events.h) as JSON, optionally grouped by pull.
 *
 *   ?limit=1..1000 (100)   rows answered
 *   ?kind=fetch|evict|error|prefetch|gc
 *   ?group=pull            one row per pull of one image instead of one
 *                          row per blob
 *
 * Every event is data: a stable `code` and its `values` (docs/admin-api.md
 * lists them); `message` is the same in English for people reading the
 * JSON.  The web UI renders code and values in the reader's language.
 *
 * Grouping: a client pulling a 30-layer image makes 30 blob events (each
 * fetched, or each failed when the upstream breaks), which would fill the
 * dashboard with one image.  With group=pull, blob events of the same code
 * and repository that follow each other within PULL_GAP_MS (the gap
 * between two blobs of one pull, not the length of the pull) become one
 * row: its `count` of blobs, `bytes` summed, `t_ms` the newest and
 * `first_ms` the oldest, and `events` listing each blob (newest first).
 * The registry API gives a blob request no image, so "one pull" is "one
 * burst of blobs of one repository": two tags of one repository pulled at
 * the same moment share a row.  A group is never split by `limit`: limit
 * counts rows, and a row holds every member still in the ring.
 */
#include "admin/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"

#define EVENTS_DEFAULT 100
#define PULL_GAP_MS 60000

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? om_json_str(s) : json_null();
}

/* A value that looks like an integer but is not one is sent as a string:
 * the API never answers a malformed number. */
static void add_value(void *ud, const char *key, const char *value, bool number)
{
    json_t *obj = ud;
    char *end = NULL;
    long long v = 0;
    if (number && value[0] != '\0') {
        v = strtoll(value, &end, 10);
        if (end != NULL && *end == '\0') {
            om_json_set(obj, key, json_integer((json_int_t)v));
            return;
        }
    }
    om_json_set(obj, key, om_json_str(value));
}

static json_t *values_json(const struct om_event *e)
{
    json_t *o = json_object();
    if (o != NULL)
        om_event_values(e, add_value, o);
    return o;
}

/* One event as the API's object (a new reference; NULL on allocation
 * failure). */
static json_t *event_json(const struct om_event *e)
{
    json_t *o = json_object();
    om_json_set(o, "t_ms", json_integer(e->t_ms));
    om_json_set(o, "kind", json_string(om_event_kind_str(e->kind)));
    om_json_set(o, "code", str_or_null(e->code));
    om_json_set(o, "repository", str_or_null(e->repository));
    om_json_set(o, "digest", str_or_null(e->digest));
    om_json_set(o, "message", str_or_null(e->message));
    om_json_set(o, "bytes", om_json_u64(e->bytes));
    om_json_set(o, "values", values_json(e));
    return o;
}

static bool groupable(const struct om_event *e)
{
    return strcmp(e->code, "blob_fetched") == 0 || strcmp(e->code, "blob_failed") == 0 ||
           strcmp(e->code, "blob_digest_mismatch") == 0;
}

/* A row of the grouped answer: its members are ev[head], next[head], ...
 * (newest first). */
struct row {
    size_t head, tail, count;
    uint64_t bytes;
    int64_t first_ms;
};

static json_t *row_json(const struct om_event *ev, const size_t *next, const struct row *r)
{
    const struct om_event *e = &ev[r->head];
    json_t *o = event_json(e), *members;
    if (o == NULL || r->count == 1) {
        om_json_set(o, "count", json_integer(1));
        return o;
    }
    members = json_array();
    for (size_t i = r->head; members != NULL && i != SIZE_MAX; i = next[i])
        json_array_append_new(members, json_pack("{s:I, s:o, s:o}", "t_ms", (json_int_t)ev[i].t_ms,
                                                 "digest", str_or_null(ev[i].digest), "bytes",
                                                 om_json_u64(ev[i].bytes)));
    om_json_set(o, "digest", json_null());
    om_json_set(o, "bytes", om_json_u64(r->bytes));
    om_json_set(o, "count", om_json_u64(r->count));
    om_json_set(o, "first_ms", json_integer(r->first_ms));
    om_json_set(o, "events", members);
    return o;
}

/* Rows of n newest-first events (those of `kind` when not ""), at most
 * limit, into arr. */
static int grouped(const struct om_event *ev, size_t n, const char *kind, size_t limit,
                   json_t *arr)
{
    int err = OM_ERR_NOMEM;
    struct row *rows = calloc(limit, sizeof(*rows));   /* freed below */
    size_t *next = calloc(n ? n : 1, sizeof(*next));   /* freed below */
    size_t nrows = 0;

    if (rows == NULL || next == NULL)
        goto done;
    for (size_t i = 0; i < n; i++) {
        const struct om_event *e = &ev[i];
        if (kind[0] != '\0' && strcmp(kind, om_event_kind_str(e->kind)) != 0)
            continue;
        next[i] = SIZE_MAX;
        bool merged = false;
        if (groupable(e)) {
            /* The newest row of the same key is the last one made with it
             * (events come newest first); join it while the burst goes on. */
            for (size_t k = nrows; k-- > 0;) {
                const struct om_event *h = &ev[rows[k].head];
                if (h->kind != e->kind || strcmp(h->code, e->code) != 0 ||
                    strcmp(h->repository, e->repository) != 0)
                    continue;
                if (rows[k].first_ms - e->t_ms <= PULL_GAP_MS) {
                    next[rows[k].tail] = i;
                    rows[k].tail = i;
                    rows[k].count++;
                    rows[k].bytes += e->bytes;
                    rows[k].first_ms = e->t_ms;
                    merged = true;
                }
                break;
            }
        }
        if (!merged && nrows < limit)
            rows[nrows++] = (struct row){.head = i, .tail = i, .count = 1, .bytes = e->bytes,
                                         .first_ms = e->t_ms};
    }
    for (size_t k = 0; k < nrows; k++)
        json_array_append_new(arr, row_json(ev, next, &rows[k]));
    err = OM_OK;
done:
    free(rows);
    free(next);
    return err;
}

enum MHD_Result om_admin_events(struct om_req *req)
{
    struct om_server *srv = req->srv;
    struct om_event *ev = NULL;
    uint64_t limit = EVENTS_DEFAULT;
    char kind[16], group[16];
    json_t *arr = NULL;
    size_t n;
    enum MHD_Result ret;
    int err;

    if (om_admin_arg_uint(req, "limit", 1, OM_EVENTS_MAX, EVENTS_DEFAULT, &limit) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                                    "limit: 1..1000");
    err = om_admin_arg(req, "kind", kind, sizeof(kind));
    if (err == OM_ERR_NOTFOUND)
        kind[0] = '\0';
    else if (err != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", "bad kind");
    err = om_admin_arg(req, "group", group, sizeof(group));
    if (err == OM_ERR_NOTFOUND)
        group[0] = '\0';
    else if (err != OM_OK || (group[0] != '\0' && strcmp(group, "pull") != 0))
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "group: pull (or absent)");
    ev = calloc(OM_EVENTS_MAX, sizeof(*ev)); /* freed below */
    if (ev == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
    /* Filter after copying: the kind filter must not shorten the window
     * below `limit` matches when older matches exist. */
    n = srv->events != NULL ? om_events_recent(srv->events, ev, OM_EVENTS_MAX) : 0;
    arr = json_array();
    if (arr != NULL && group[0] != '\0') {
        if (grouped(ev, n, kind, (size_t)limit, arr) != OM_OK) {
            json_decref(arr);
            arr = NULL;
        }
    } else {
        for (size_t i = 0, shown = 0; arr != NULL && i < n && shown < limit; i++) {
            if (kind[0] != '\0' && strcmp(kind, om_event_kind_str(ev[i].kind)) != 0)
                continue;
            json_array_append_new(arr, event_json(&ev[i]));
            shown++;
        }
    }
    free(ev);
    if (arr == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
    ret = om_admin_reply_json(req, MHD_HTTP_OK, json_pack("{s:o}", "events", arr));
    return ret;
}
