/* index_gc_lease.c — the cluster's GC leader lease (index_gc.h:
 * om_index_gc_lead/unlead/lost/leading on a Redis-backed connection).
 *
 * P lock:gc = holder (SET NX PX GC_LEASE_MS); a thread renews it every
 * GC_RENEW_MS with a script that extends only our own value; a renewal
 * that finds another value (or none), or that could not reach Redis for a
 * whole lease time, marks the lease lost and the engine stops between
 * steps.  unlead joins the thread and releases only our own value.
 */
#include "cache/index_gc_redis.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct om_redis_script S_RENEW = {
    .name = "gc_lease_renew",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
           "return 0\n",
};

static struct om_redis_script S_RELEASE = {
    .name = "gc_lease_release",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
           "return 0\n",
};

/* No KEYS (the keys are built from the prefix, as the member script);
 * ARGV prefix expect_last_used('' = no check) cutoff root('' = none) ntags
 * since, then ntags (repo, tag) pairs, then the nodes, parent first.
 * Returns {touched, tags_deleted, repos_deleted, deleted per node...}. */

void om_gc_redis__lease_scripts_init(void)
{
    if (S_RENEW.sha[0] == '\0') {
        om_redis_script_init(&S_RENEW);
        om_redis_script_init(&S_RELEASE);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the GC leader lease ------------------------------------------------------------ */

static int lease_call(struct om_gc_redis *rx, const struct om_redis_script *s, long long *v)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    om_redis_cmd_init(&c, s, 1);
    om_redis_arg_str(&c, GC_LEASE_KEY);
    om_redis_arg_str(&c, rx->holder);
    om_redis_arg_i64(&c, GC_LEASE_MS);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) == OM_OK)
        err = om_redis_reply_int(rp, s->name, v);
    om_redis_replies_free(&rp, 1);
    return err;
}

static void *renew_thread(void *arg)
{
    struct om_gc_redis *rx = arg;
    int64_t last_ok = mono_ms();

    pthread_mutex_lock(&rx->mu);
    while (!rx->stop) {
        struct timespec ts;
        int64_t wake = mono_ms() + GC_RENEW_MS;
        ts.tv_sec = (time_t)(wake / 1000);
        ts.tv_nsec = (long)(wake % 1000) * 1000000L;
        pthread_cond_timedwait(&rx->cond, &rx->mu, &ts);
        if (rx->stop)
            break;
        pthread_mutex_unlock(&rx->mu);
        long long v = 0;
        int err = lease_call(rx, &S_RENEW, &v);
        if (err == OM_OK && v == 1) {
            last_ok = mono_ms();
        } else if ((err == OM_OK && v == 0) || mono_ms() - last_ok >= GC_LEASE_MS) {
            om_log(OM_LOG_WARN, "gc: lost the cluster's gc lease; stopping this run");
            atomic_store(&rx->lost, true);
            atomic_store(&rx->leading, false);
            pthread_mutex_lock(&rx->mu);
            break;
        }
        pthread_mutex_lock(&rx->mu);
    }
    pthread_mutex_unlock(&rx->mu);
    return NULL;
}

int om_gc_redis__lead(struct om_gc_redis *rx, bool *leader, char *holder_out, size_t holder_sz)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    *leader = false;
    if (rx->renewing)
        return OM_ERR_INVALID; /* a lead without its unlead */
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "SET");
    om_redis_arg_str(&c, GC_LEASE_KEY);
    om_redis_arg_str(&c, rx->holder);
    om_redis_arg_str(&c, "NX");
    om_redis_arg_str(&c, "PX");
    om_redis_arg_i64(&c, GC_LEASE_MS);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_ok(rp, "gc: lease")) != OM_OK)
        goto done;
    if (rp->type == REDIS_REPLY_NIL) { /* someone else's */
        om_redis_replies_free(&rp, 1);
        if (holder_out != NULL && holder_sz > 0) {
            om_redis_cmd_init(&c, NULL, 0);
            om_redis_arg_str(&c, "GET");
            om_redis_arg_str(&c, GC_LEASE_KEY);
            if (om_redis_exec(rx->r, &c, 1, &rp) != OM_OK ||
                om_redis_reply_copy(rp, "gc: lease holder", holder_out, holder_sz) != OM_OK)
                holder_out[0] = '\0';
        }
        goto done;
    }
    atomic_store(&rx->lost, false);
    rx->stop = false;
    if (pthread_create(&rx->renewer, NULL, renew_thread, rx) != 0) {
        long long v = 0;
        (void)lease_call(rx, &S_RELEASE, &v);
        err = OM_ERR_NOMEM;
        goto done;
    }
    rx->renewing = true;
    atomic_store(&rx->leading, true);
    *leader = true;
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

void om_gc_redis__unlead(struct om_gc_redis *rx)
{
    long long v = 0;

    if (!rx->renewing)
        return;
    pthread_mutex_lock(&rx->mu);
    rx->stop = true;
    pthread_cond_signal(&rx->cond);
    pthread_mutex_unlock(&rx->mu);
    pthread_join(rx->renewer, NULL);
    rx->renewing = false;
    atomic_store(&rx->leading, false);
    if (lease_call(rx, &S_RELEASE, &v) != OM_OK)
        om_log(OM_LOG_INFO, "gc: could not release the gc lease; it expires in %d s",
               GC_LEASE_MS / 1000);
}

bool om_gc_redis__lost(struct om_gc_redis *rx)
{
    return atomic_load(&rx->lost);
}

bool om_gc_redis__leading(struct om_gc_redis *rx)
{
    return atomic_load(&rx->leading);
}
