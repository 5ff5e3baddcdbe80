/* gc.c — keeping the cache inside its quota: eviction of the least
 * recently pulled images, orphan and stale-ingest cleanup (see gc.h for the
 * API, docs/gc.md for the user's view).
 *
 * One run (om_gc_run_env), the same for the background thread, POST
 * /api/v1/gc and `ocimirror gc`:
 *   1. Snapshot the index (index_gc.c: nodes, edges, images, LRU keys).
 *   2. Walk the store: the real usage (the byte total of the store module
 *      is only a running counter, and another process — `ocimirror gc`
 *      beside the server — may have removed files), each node's file size,
 *      and the files the index does not know ("strays").
 *   3. Plan (gc_plan.c): orphans and old strays always; eviction when usage
 *      is above the high water mark, least recently used image first, down
 *      to the low water mark.
 *   4. Execute, one index transaction per image (index_gc.c re-checks each
 *      step on the live rows), then unlink the files whose rows went.
 *   5. Remove ingest files nobody wrote to for OM_GC_INGEST_STALE_MS, and
 *      have the store abort what it keeps of such downloads itself (S3:
 *      multipart uploads that old, with no part as recent;
 *      om_store_clean_stale).
 *
 * Why this never removes content being downloaded or served:
 *   - A download in progress lives in ingest/<random> and is renamed into
 *     blobs/ only when complete and verified; GC removes only committed
 *     files and ingest files idle for an hour (a live download writes
 *     continuously and the connection timeout kills stalled ones).
 *   - A committed file is removed by unlink(2).  A client being served
 *     holds an open descriptor (sendfile from the content file, or the
 *     download's dup()'d ingest descriptor that survives the rename), and
 *     an unlinked file stays readable through open descriptors until the
 *     last one closes: the transfer finishes with the right bytes.  The
 *     space is reclaimed then.
 *   - The grace period (min(10 min, gc_interval)): nothing touched more
 *     recently is removed and no image used more recently is evicted.  This
 *     covers the windows in which content is in the store but not (yet)
 *     referenced: a blob committed before its manifest is recorded, a
 *     layer fetched right after its manifest, a blob pulled by digest.
 *   - Everything is re-checked in the index transaction that deletes it: an
 *     image a client pulled after the snapshot is skipped; a blob a newly
 *     recorded manifest lists is kept.  What remains is a window of
 *     microseconds between the index commit and the unlink, in which a
 *     concurrent re-fetch can find the file "already present"; the index
 *     then names a missing file and the next request fetches it again
 *     (v2_manifest.c already treats a vanished manifest as a miss).
 *
 * This file is the engine only: it runs on what a struct om_gc_env names
 * and keeps no state between calls.  Who calls it: the service a server
 * runs (gc_service.c: the thread, POST /api/v1/gc and /api/v1/evict, with
 * GC's own index connection), the command (cli/gc_cli.c, with `report`
 * set) and the unit tests.
 */
#include "cache/gc.h"

#include "cache/gc_plan.h"
#include "cache/index_gc.h"
#include "cache/store.h"
#include "core/events.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GC_PATH_MAX 4096
#define GC_ORPHAN_BATCH 256          /* orphan rows deleted per transaction */

/* ---- small helpers ----------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t file_changed_ms(const struct stat *sb)
{
    int64_t m = (int64_t)sb->st_mtim.tv_sec * 1000 + sb->st_mtim.tv_nsec / 1000000;
    int64_t c = (int64_t)sb->st_ctim.tv_sec * 1000 + sb->st_ctim.tv_nsec / 1000000;
    return m > c ? m : c; /* ctime moves on rename: the commit time */
}

/* When object d last changed (its commit): the file's times, or, for a
 * store without local files, what the store says (a HEAD).  false when it
 * is gone or cannot be asked. */
static bool object_changed_ms(struct om_store *st, const om_digest *d, int64_t *out)
{
    struct om_store_stat ss;
    struct stat sb;
    int fd = -1;
    bool ok = false;

    if (om_store_open_blob(st, d, &fd, NULL) == OM_OK) {
        ok = fstat(fd, &sb) == 0;
        if (ok)
            *out = file_changed_ms(&sb);
        close(fd);
    } else if (!(om_store_caps(st) & OM_STORE_CAN_SENDFILE) &&
               om_store_stat(st, d, &ss) == OM_OK && ss.mtime_ms >= 0) {
        *out = ss.mtime_ms;
        ok = true;
    }
    return ok;
}

/* pct % of n without overflow. */
static uint64_t percent_of(uint64_t n, unsigned pct)
{
    return n / 100 * pct + n % 100 * pct / 100;
}

const char *om_gc_format_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < OM_ARRAY_LEN(unit)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", n);
    else
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

static bool aborted(const struct om_gc_env *e)
{
    return (e->abort != NULL && atomic_load(e->abort)) ||
           (e->abort2 != NULL && atomic_load(e->abort2)) || om_index_gc_lost(e->db);
}

uint64_t om_gc_grace_ms(const struct om_config *cfg)
{
    uint64_t g = cfg->gc_interval_ms < OM_GC_GRACE_MAX_MS ? cfg->gc_interval_ms
                                                          : OM_GC_GRACE_MAX_MS;
    if (cfg->storage_redirect && cfg->storage_redirect_ttl_ms > g)
        g = cfg->storage_redirect_ttl_ms; /* a presigned URL handed out must still work */
    if (cfg->cluster_redis != NULL && g < OM_GC_CLUSTER_GRACE_MIN_MS)
        g = OM_GC_CLUSTER_GRACE_MIN_MS; /* another replica's pulls reach Redis in batches */
    return g;
}

/* Take the cluster's GC lease for this run (index_gc.h); *lead false: the
 * caller does nothing (logged here). */
static int lead(const struct om_gc_env *e, bool *leader, char *holder, size_t holder_sz)
{
    int err = om_index_gc_lead(e->db, leader, holder, holder_sz);
    if (err == OM_ERR_UNAVAILABLE || err == OM_ERR_TIMEOUT) {
        /* Redis down (logged once by redis.c): no leader can be chosen, so
         * nobody runs; the next round tries again. */
        om_log(OM_LOG_INFO, "gc: skipped: the cluster's redis is unavailable");
        *leader = false;
        err = OM_OK;
    } else if (err != OM_OK)
        om_log(OM_LOG_WARN, "gc: cannot take the cluster's gc lease: %s", om_strerror(err));
    else if (!*leader)
        om_log_kv(OM_LOG_INFO, "gc: skipped: another replica holds the gc lease", "holder",
                  holder[0] ? holder : "?", NULL);
    return err;
}

void om_gc_water_marks(const struct om_config *cfg, uint64_t *high, uint64_t *low)
{
    *high = *low = 0;
    if (cfg->storage_max_size) {
        *high = percent_of(cfg->storage_max_size, cfg->storage_high_water);
        *low = percent_of(cfg->storage_max_size, cfg->storage_low_water);
    }
}

/* ---- step 2: the store walk ------------------------------------------- */

struct walk_ud {
    struct om_gc_graph *g;
    struct om_store *st;
    uint64_t used;
    int err;
};

static int walk_cb(void *ud, const om_digest *d, uint64_t size)
{
    struct walk_ud *w = ud;
    long i = om_gc_graph_find(w->g, d->str);
    struct om_gc_stray *s;
    int64_t changed = 0;

    w->used += size;
    if (i >= 0) {
        w->g->nodes[i].present = true;
        w->g->nodes[i].size = size;
        return 0;
    }
    /* Unknown to the index: its age decides (a commit whose index row is
     * not written yet is seconds old). */
    if (!object_changed_ms(w->st, d, &changed))
        return 0; /* removed meanwhile */
    if ((w->err = om_gc_graph_add_stray(w->g, &s)) == OM_OK) {
        s->digest = *d;
        s->size = size;
        s->changed = changed;
    }
    return w->err != OM_OK ? 1 : 0;
}

/* ---- step 4: executing the plan --------------------------------------- */

/* Remove a committed object, adding its size to *bytes when it went. */
static bool remove_object(const struct om_gc_env *e, const om_digest *d, uint64_t *bytes)
{
    uint64_t size = 0;
    if (!om_store_has(e->store, d, &size) || om_store_remove(e->store, d) != OM_OK)
        return false; /* already gone (another GC), or an error logged by the store */
    *bytes += size;
    return true;
}

struct victim_done {
    bool touched;
    uint64_t objects, bytes;
};

/* Delete the index rows of `nodes` (parent first) for the image rooted at
 * root, then the files of those whose rows went. */
static int execute(const struct om_gc_env *e, const struct om_gc_evict_req *req,
                   struct victim_done *done)
{
    struct om_gc_evict_out out;
    bool *deleted = NULL;
    int err;

    memset(done, 0, sizeof(*done));
    if (req->n_nodes > 0 &&
        (deleted = calloc(req->n_nodes, sizeof(*deleted))) == NULL) /* freed below */
        return OM_ERR_NOMEM;
    err = om_index_gc_evict(e->db, req, deleted, &out);
    if (err == OM_OK) {
        done->touched = out.touched;
        for (size_t i = 0; i < req->n_nodes; i++) {
            if (deleted[i] && remove_object(e, &req->nodes[i], &done->bytes))
                done->objects++;
        }
    }
    free(deleted);
    return err;
}

/* The digests of plan->freed[first..first+n), malloc'd (caller frees). */
static om_digest *digests_of(const struct om_gc_graph *g, const uint32_t *idx, size_t n)
{
    om_digest *v = calloc(n ? n : 1, sizeof(*v)); /* owned by the caller */
    if (v != NULL) {
        for (size_t i = 0; i < n; i++)
            v[i] = g->nodes[idx[i]].digest;
    }
    return v;
}

static void note_eviction(const struct om_gc_env *e, const struct om_gc_image *im,
                          const om_digest *root, const struct victim_done *vd, int64_t now,
                          const char *why)
{
    char name[OM_NAME_MAX + OM_TAG_MAX + 2], size[32], idle[32], msg[256], objs[24];
    int64_t idle_s = im->last_used > 0 && now > im->last_used ? (now - im->last_used) / 1000 : 0;

    snprintf(name, sizeof(name), "%s%s%s", im->repo[0] ? im->repo : "(no repository)",
             im->tag[0] ? ":" : "", im->tag);
    snprintf(idle, sizeof(idle), "%" PRId64, idle_s);
    snprintf(objs, sizeof(objs), "%" PRIu64, vd->objects);
    om_gc_format_bytes(vd->bytes, size, sizeof(size));
    snprintf(msg, sizeof(msg), "evicted %s (%s; idle %" PRId64 " s): %" PRIu64 " objects, %s",
             name, why, idle_s, vd->objects, size);
    if (!e->dry_run) {
        if (e->events != NULL)
            om_events_add_kv(e->events, OM_EV_EVICT, "image_evicted", im->repo, root->str,
                             vd->bytes, msg, "tag", im->tag,
                             "why", strcmp(why, "evicted on request") == 0 ? "request" : "lru",
                             "#idle_s", idle, "#objects", objs, NULL);
        om_log_kv(OM_LOG_INFO, "gc: image evicted", "image", name, "digest", root->str, "why",
                  why, "idle_s", idle, "objects", objs, "freed", size, NULL);
    }
    if (e->report != NULL)
        fprintf(e->report, "%s %s %s  %" PRIu64 " objects, %s (idle %" PRId64 " s)\n",
                e->dry_run ? "would evict" : "evicted", name, root->str, vd->objects, size,
                idle_s);
}

static int run_victims(const struct om_gc_env *e, const struct om_gc_graph *g,
                       const struct om_gc_plan *plan, int64_t now, int64_t cutoff,
                       struct om_gc_result *res)
{
    int err = OM_OK;

    for (size_t k = 0; k < plan->n_victims && !aborted(e); k++) {
        const struct om_gc_victim *v = &plan->victims[k];
        const struct om_gc_image *im = &g->images[v->image];
        const om_digest *root = &g->nodes[im->root].digest;
        struct victim_done vd = {0};
        om_digest *nodes = NULL;

        if (e->dry_run) {
            vd.objects = v->n;
            vd.bytes = v->bytes;
            note_eviction(e, im, root, &vd, now, "least recently used");
            res->evicted_images++;
            res->removed_blobs += vd.objects;
            res->evicted_bytes += vd.bytes;
            continue;
        }
        if ((nodes = digests_of(g, plan->freed + v->first, v->n)) == NULL) {
            err = OM_ERR_NOMEM;
            break;
        }
        struct om_gc_evict_req req = {
            .root = root, .expect_last_used = im->last_used, .nodes = nodes,
            .n_nodes = v->n, .cutoff = cutoff, .now = now,
        };
        err = execute(e, &req, &vd);
        free(nodes);
        if (err != OM_OK)
            break;
        if (vd.touched) {
            res->skipped_touched++;
            om_log_kv(OM_LOG_DEBUG, "gc: image used while GC ran; kept", "repo", im->repo,
                      "digest", root->str, NULL);
            continue;
        }
        note_eviction(e, im, root, &vd, now, "least recently used");
        res->evicted_images++;
        res->removed_blobs += vd.objects;
        res->evicted_bytes += vd.bytes;
    }
    return err;
}

static int run_orphans(const struct om_gc_env *e, const struct om_gc_graph *g,
                       const struct om_gc_plan *plan, int64_t now, int64_t cutoff,
                       struct om_gc_result *res)
{
    char size[32];
    int err = OM_OK;

    for (size_t k = 0; k < plan->n_orphans && err == OM_OK && !aborted(e);
         k += GC_ORPHAN_BATCH) {
        size_t n = plan->n_orphans - k < GC_ORPHAN_BATCH ? plan->n_orphans - k : GC_ORPHAN_BATCH;
        struct victim_done vd = {0};
        om_digest *nodes = NULL;

        if (e->dry_run) {
            for (size_t i = 0; i < n; i++) {
                const struct om_gc_node *nd = &g->nodes[plan->orphans[k + i]];
                if (e->report != NULL)
                    fprintf(e->report, "would remove orphan %s  %s\n", nd->digest.str,
                            om_gc_format_bytes(nd->size, size, sizeof(size)));
            }
            res->orphan_blobs += n;
            continue;
        }
        if ((nodes = digests_of(g, plan->orphans + k, n)) == NULL) {
            err = OM_ERR_NOMEM;
            break;
        }
        struct om_gc_evict_req req = {.nodes = nodes, .n_nodes = n, .cutoff = cutoff, .now = now};
        err = execute(e, &req, &vd);
        free(nodes);
        res->orphan_blobs += vd.objects;
        res->orphan_bytes += vd.bytes;
    }
    if (e->dry_run)
        res->orphan_bytes = plan->orphan_bytes;
    return err;
}

/* Files the index does not know, old enough: re-checked one by one (the
 * index may have recorded one since the snapshot). */
static int run_strays(const struct om_gc_env *e, const struct om_gc_graph *g,
                      const struct om_gc_plan *plan, int64_t cutoff, struct om_gc_result *res)
{
    char size[32];
    int err = OM_OK;

    for (size_t k = 0; k < plan->n_strays && !aborted(e); k++) {
        const struct om_gc_stray *s = &g->strays[plan->strays[k]];
        bool known = true, old = false;
        int64_t changed = 0;

        if (e->dry_run) {
            res->orphan_blobs++;
            res->orphan_bytes += s->size;
            if (e->report != NULL)
                fprintf(e->report, "would remove unindexed %s  %s\n", s->digest.str,
                        om_gc_format_bytes(s->size, size, sizeof(size)));
            continue;
        }
        if ((err = om_index_gc_known(e->db, &s->digest, &known)) != OM_OK)
            break;
        if (known)
            continue;
        old = object_changed_ms(e->store, &s->digest, &changed) && changed < cutoff;
        uint64_t bytes = 0;
        if (old && remove_object(e, &s->digest, &bytes)) {
            res->orphan_blobs++;
            res->orphan_bytes += bytes;
            om_log_kv(OM_LOG_DEBUG, "gc: removed a stored object the index does not know",
                      "digest", s->digest.str, NULL);
        }
    }
    return err;
}

/* ---- step 5: stale ingest files ---------------------------------------- */

static uint64_t stale_ms(const struct om_gc_env *e)
{
    return e->ingest_stale_ms ? e->ingest_stale_ms : OM_GC_INGEST_STALE_MS;
}

static int clean_ingest(const struct om_gc_env *e, int64_t now, struct om_gc_result *res)
{
    char path[GC_PATH_MAX], size[32];
    DIR *dir = NULL;
    int err = OM_OK;
    int n = snprintf(path, sizeof(path), "%s/ingest", om_store_root(e->store));

    if (n < 0 || (size_t)n >= sizeof(path))
        return OM_ERR_TOOBIG;
    if ((dir = opendir(path)) == NULL) {
        if (errno != ENOENT) {
            om_log(OM_LOG_WARN, "gc: cannot read %s: %s", path, strerror(errno));
            err = OM_ERR_IO;
        }
        goto done;
    }
    for (struct dirent *de; (de = readdir(dir)) != NULL && !aborted(e);) {
        struct stat sb;
        int64_t mtime;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        /* mtime only: a download in progress writes continuously. */
        mtime = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        if (now - mtime < (int64_t)stale_ms(e))
            continue;
        if (!e->dry_run && unlinkat(dirfd(dir), de->d_name, 0) != 0) {
            if (errno != ENOENT)
                om_log(OM_LOG_WARN, "gc: cannot remove %s/%s: %s", path, de->d_name,
                       strerror(errno));
            continue;
        }
        res->removed_ingest++;
        res->ingest_bytes += (uint64_t)sb.st_size;
        if (e->report != NULL)
            fprintf(e->report, "%s stale ingest file %s  %s (idle %" PRId64 " min)\n",
                    e->dry_run ? "would remove" : "removed", de->d_name,
                    om_gc_format_bytes((uint64_t)sb.st_size, size, sizeof(size)),
                    (now - mtime) / 60000);
    }
done:
    if (dir != NULL)
        closedir(dir);
    return err;
}

/* ---- one run ------------------------------------------------------------ */

static void summary(const struct om_gc_env *e, const struct om_gc_result *r, int err)
{
    char used[32], after[32], freed[32], max[32], ev[24], rb[24], ing[24], fb[24];
    bool did = r->evicted_images + r->removed_blobs + r->removed_ingest > 0;

    om_gc_format_bytes(r->used_before, used, sizeof(used));
    om_gc_format_bytes(r->used_after, after, sizeof(after));
    om_gc_format_bytes(r->freed_bytes, freed, sizeof(freed));
    if (r->max_size)
        om_gc_format_bytes(r->max_size, max, sizeof(max));
    else
        snprintf(max, sizeof(max), "unlimited");
    snprintf(ev, sizeof(ev), "%" PRIu64, r->evicted_images);
    snprintf(rb, sizeof(rb), "%" PRIu64, r->removed_blobs);
    snprintf(ing, sizeof(ing), "%" PRIu64, r->removed_ingest);
    snprintf(fb, sizeof(fb), "%" PRIu64, r->freed_bytes);
    om_log_kv(err != OM_OK ? OM_LOG_WARN : did && !e->dry_run ? OM_LOG_INFO : OM_LOG_DEBUG,
              e->dry_run ? "gc: dry run finished" : "gc: run finished",
              "result", err != OM_OK ? om_strerror(err) : "ok", "evicted_images", ev,
              "removed_blobs", rb, "freed_bytes", fb, "removed_ingest", ing, "used", used,
              "now", after, "max", max, NULL);
    if (e->events != NULL && !e->dry_run && (did || err != OM_OK)) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "gc%s: evicted %" PRIu64 " images, removed %" PRIu64
                 " objects and %" PRIu64 " stale ingest files; %s → %s of %s",
                 err != OM_OK ? " (failed)" : "", r->evicted_images, r->removed_blobs,
                 r->removed_ingest, used, after, max);
        char ub[24], ua[24], mx[24];
        snprintf(ub, sizeof(ub), "%" PRIu64, r->used_before);
        snprintf(ua, sizeof(ua), "%" PRIu64, r->used_after);
        snprintf(mx, sizeof(mx), "%" PRIu64, r->max_size);
        om_events_add_kv(e->events, OM_EV_GC, err != OM_OK ? "gc_failed" : "gc_finished", NULL,
                         NULL, r->freed_bytes, msg, "#images", ev, "#objects", rb, "#ingest",
                         ing, "#used_before", ub, "#used_after", ua, "#max_size", mx,
                         "error", err != OM_OK ? om_err_code_name(err) : NULL, NULL);
    }
    if (e->report != NULL) {
        fprintf(e->report,
                "%s: %" PRIu64 " images evicted, %" PRIu64 " objects removed (%s), "
                "%" PRIu64 " stale ingest files removed; used %s → %s of %s",
                e->dry_run ? "dry run" : "gc", r->evicted_images, r->removed_blobs, freed,
                r->removed_ingest, used, after, max);
        if (r->max_size) {
            char hi[32], lo[32];
            fprintf(e->report, " (high %s, low %s)",
                    om_gc_format_bytes(r->high_bytes, hi, sizeof(hi)),
                    om_gc_format_bytes(r->low_bytes, lo, sizeof(lo)));
        }
        fprintf(e->report, "\n");
        if (r->kept_recent > 0)
            fprintf(e->report, "%" PRIu64 " images kept: used within the grace period\n",
                    r->kept_recent);
        fprintf(e->report,
                "evicted_images=%" PRIu64 " removed_blobs=%" PRIu64 " freed_bytes=%" PRIu64
                " used_before=%" PRIu64 " used_after=%" PRIu64 " removed_ingest=%" PRIu64
                " dry_run=%s\n",
                r->evicted_images, r->removed_blobs, r->freed_bytes, r->used_before,
                r->used_after, r->removed_ingest, e->dry_run ? "true" : "false");
    }
}

int om_gc_run_env(const struct om_gc_env *e, struct om_gc_result *res)
{
    const struct om_config *cfg = e->cfg;
    struct om_gc_graph g = {0};
    struct om_gc_plan plan = {0};
    struct walk_ud w = {.g = &g, .st = e->store};
    int64_t now = e->now ? e->now : wall_ms();
    int64_t cutoff = now - (int64_t)om_gc_grace_ms(cfg);
    int64_t t0 = mono_ms();
    bool leader = false;
    int err, walk;

    memset(res, 0, sizeof(*res));
    res->dry_run = e->dry_run;
    res->started_ms = now;
    res->max_size = cfg->storage_max_size;
    om_gc_water_marks(cfg, &res->high_bytes, &res->low_bytes);
    if ((err = lead(e, &leader, res->leader, sizeof(res->leader))) != OM_OK)
        return err;
    if (!leader) {
        res->not_leader = true;
        if (e->report != NULL)
            fprintf(e->report, "gc: skipped: another replica holds the gc lease (%s)\n",
                    res->leader[0] ? res->leader : "?");
        return OM_OK;
    }
    if ((err = om_index_gc_load(e->db, &g)) != OM_OK)
        goto done;
    walk = om_store_walk(e->store, walk_cb, &w);
    if (w.err != OM_OK || walk < 0) {
        err = w.err != OM_OK ? w.err : walk;
        goto done;
    }
    res->used_before = w.used;
    struct om_gc_plan_params p = {
        .used = w.used,
        .evict_above = cfg->storage_max_size ? res->high_bytes : UINT64_MAX,
        .evict_to = res->low_bytes,
        .cutoff = cutoff,
    };
    if ((err = om_gc_plan_make(&g, &p, &plan)) != OM_OK)
        goto done;
    res->kept_recent = plan.n_kept_recent;
    if (plan.n_kept_recent > 0 && plan.used_after > p.evict_to)
        om_log(OM_LOG_WARN, "gc: still over the quota after this run: the %zu images left were"
               " all used within the last %" PRIu64 " ms; keeping them", plan.n_kept_recent,
               om_gc_grace_ms(cfg));
    if ((err = run_victims(e, &g, &plan, now, cutoff, res)) != OM_OK)
        goto done;
    if ((err = run_orphans(e, &g, &plan, now, cutoff, res)) != OM_OK)
        goto done;
    if ((err = run_strays(e, &g, &plan, cutoff, res)) != OM_OK)
        goto done;
    err = clean_ingest(e, now, res);
    int uerr = om_store_clean_stale(e->store, stale_ms(e), e->dry_run,
                                    &res->aborted_uploads);
    if (uerr != OM_OK)
        om_log(OM_LOG_WARN, "gc: cannot clean the store's stale uploads: %s", om_strerror(uerr));
    else if (e->report != NULL && res->aborted_uploads > 0)
        fprintf(e->report, "%s %" PRIu64 " stale multipart upload(s) in the bucket\n",
                e->dry_run ? "would abort" : "aborted", res->aborted_uploads);
done:
    res->removed_blobs += res->orphan_blobs;
    res->freed_bytes = res->evicted_bytes + res->orphan_bytes;
    res->used_after = res->used_before > res->freed_bytes ? res->used_before - res->freed_bytes : 0;
    res->duration_ms = mono_ms() - t0;
    if (err == OM_OK && om_index_gc_lost(e->db))
        err = OM_ERR_TIMEOUT; /* stopped early: the lease went to another replica */
    om_index_gc_unlead(e->db);
    summary(e, res, err);
    om_gc_plan_free(&plan);
    om_gc_graph_free(&g);
    return err;
}

int om_gc_evict_env(const struct om_gc_env *e, const char *name, const char *reference,
                    uint64_t *freed)
{
    struct om_gc_graph g = {0};
    struct om_gc_plan plan = {0};
    struct walk_ud w = {.g = &g, .st = e->store};
    struct victim_done vd = {0};
    om_digest root, *nodes = NULL;
    bool is_tag = false;
    long image = -1, r;
    int64_t now = e->now ? e->now : wall_ms();
    bool leader = false;
    char holder[128];
    int err, walk;

    *freed = 0;
    if ((err = lead(e, &leader, holder, sizeof(holder))) != OM_OK)
        return err;
    if (!leader) /* a holder named: another replica runs GC; none: Redis is down */
        return holder[0] ? OM_ERR_TOOMANY : OM_ERR_UNAVAILABLE;
    if ((err = om_index_gc_resolve(e->db, name, reference, &root, &is_tag)) != OM_OK)
        goto done;
    if ((err = om_index_gc_load(e->db, &g)) != OM_OK)
        goto done;
    walk = om_store_walk(e->store, walk_cb, &w);
    if (w.err != OM_OK || walk < 0) {
        err = w.err != OM_OK ? w.err : walk;
        goto done;
    }
    if ((r = om_gc_graph_find(&g, root.str)) < 0) {
        err = OM_ERR_NOTFOUND;
        goto done;
    }
    for (size_t i = 0; i < g.n_images && image < 0; i++) {
        if (g.images[i].root == (uint32_t)r)
            image = (long)i;
    }
    if (image < 0) {
        /* Part of another image (a platform manifest of a cached index): it
         * stands alone for this request; what that image uses stays. */
        struct om_gc_image *im;
        if ((err = om_gc_graph_add_image(&g, &im)) != OM_OK)
            goto done;
        im->root = (uint32_t)r;
        image = (long)(g.n_images - 1);
    }
    /* The request's own name in messages, not the snapshot's pick. */
    snprintf(g.images[image].repo, sizeof(g.images[image].repo), "%s", name);
    snprintf(g.images[image].tag, sizeof(g.images[image].tag), "%s", is_tag ? reference : "");
    if ((err = om_gc_plan_one(&g, (uint32_t)image, INT64_MAX, &plan)) != OM_OK)
        goto done;
    const struct om_gc_victim *v = &plan.victims[0];
    if (e->dry_run) {
        vd.objects = v->n;
        vd.bytes = v->bytes;
    } else {
        if ((nodes = digests_of(&g, plan.freed + v->first, v->n)) == NULL) {
            err = OM_ERR_NOMEM;
            goto done;
        }
        struct om_gc_evict_req req = {
            .root = &root, .expect_last_used = INT64_MAX, .repo = name,
            .tag = is_tag ? reference : NULL, .nodes = nodes, .n_nodes = v->n,
            .cutoff = INT64_MAX, .now = now,
        };
        if ((err = execute(e, &req, &vd)) != OM_OK)
            goto done;
    }
    note_eviction(e, &g.images[image], &root, &vd, now, "evicted on request");
    *freed = vd.bytes;
done:
    om_index_gc_unlead(e->db);
    free(nodes);
    om_gc_plan_free(&plan);
    om_gc_graph_free(&g);
    return err;
}
