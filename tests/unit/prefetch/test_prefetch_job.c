/* test_prefetch_job.c — what a job of the server's prefetcher records and
 * says (prefetch/prefetch_job.h): failures as codes with values, the
 * progress log that `ocimirror prefetch` follows with ?since= (its seq
 * numbers, paging, what a follower that fell behind is told), and the job
 * JSON.  (Running jobs is tested end to end: tests/e2e/test_prefetch.py.) */
#include "prefetch/prefetch_job.h"
#include "test.h"

#include <stdlib.h>

static struct om_pf_job *new_job(void)
{
    const char *images[] = {"alpine:3.19", "quay.io/nope/x:1"};
    const char *plats[] = {"linux/amd64"};
    return om_pf_job_new("pf-7", "cli", images, 2, plats, 1, 3, 1500);
}

static void blob(struct om_pf_job *j, unsigned idx, int ev)
{
    struct om_pf_rec r = {.type = OM_PF_REC_BLOB, .image = 0, .a = idx, .b = 9, .ev = ev,
                          .bytes = 100, .total = 100};
    snprintf(r.digest, sizeof(r.digest), "sha256:%064u", idx);
    om_pf_job_log(j, &r);
}

static void test_prefetch_job__a_failure_keeps_its_code_values_and_english(void)
{
    struct om_pf_result res = {0};
    CHECK(om_pf_fail(&res, true, "http_status", "manifests/1: HTTP %d", 404));
    om_pf_fail_arg(&res, "ref", "%s", "quay.io/nope/x:1");
    om_pf_fail_arg(&res, "#status", "%d", 404);
    /* Only the first failure is the one reported. */
    CHECK(!om_pf_fail(&res, false, "network", "later"));
    CHECK_EQ_STR(res.code, "http_status");
    CHECK(res.permanent);
    for (int i = 0; i < 10; i++)
        om_pf_fail_arg(&res, "extra", "%d", i);
    CHECK_EQ_INT(res.n_args, OM_PF_ARGS_MAX);

    struct om_pf_err *e = om_pf_err_from(&res);
    CHECK(e != NULL);
    json_t *o = om_pf_err_json(e);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "code")), "http_status");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "message")), "manifests/1: HTTP 404");
    json_t *v = json_object_get(o, "values");
    CHECK_EQ_INT(json_integer_value(json_object_get(v, "status")), 404);
    CHECK(json_is_integer(json_object_get(v, "status")));
    CHECK_EQ_STR(json_string_value(json_object_get(v, "ref")), "quay.io/nope/x:1");
    json_decref(o);

    struct om_pf_job *j = new_job();
    om_pf_job_add_failure(j, 1, e);
    j->failed = 1;
    json_t *jj = om_pf_job_json(j);
    CHECK_EQ_STR(json_string_value(json_object_get(jj, "kind")), "cli");
    CHECK_EQ_INT(json_integer_value(json_object_get(jj, "retry_interval_ms")), 1500);
    json_t *f0 = json_array_get(json_object_get(jj, "failures"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(f0, "image")), "quay.io/nope/x:1");
    CHECK_EQ_STR(json_string_value(json_object_get(f0, "code")), "http_status");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(jj, "errors"), 0)),
                 "quay.io/nope/x:1: manifests/1: HTTP 404");
    json_decref(jj);
    om_pf_job_free(j);
}

static void test_prefetch_job__a_follower_gets_every_record_once_in_order(void)
{
    struct om_pf_job *j = new_job();
    json_t *doc = om_pf_job_log_json(j, 0);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "log")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "since")), 0);
    CHECK(json_is_false(json_object_get(doc, "more")));
    json_decref(doc);

    struct om_pf_rec start = {.type = OM_PF_REC_IMAGE_START, .image = 0, .a = 1, .b = 3};
    om_pf_job_log(j, &start);
    blob(j, 0, OM_PF_BLOB_CACHED);
    blob(j, 1, OM_PF_BLOB_FETCHED);
    doc = om_pf_job_log_json(j, 0);
    json_t *log = json_object_get(doc, "log");
    CHECK_EQ_INT(json_array_size(log), 3);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(log, 0), "type")), "image_start");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(log, 1), "event")), "cached");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(log, 2), "event")), "fetched");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(log, 2), "seq")), 3);
    uint64_t since = (uint64_t)json_integer_value(json_object_get(doc, "since"));
    CHECK_EQ_INT(since, 3);
    json_decref(doc);
    /* Nothing new: nothing again, the same since. */
    doc = om_pf_job_log_json(j, since);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "log")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "since")), 3);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "dropped")), 0);
    json_decref(doc);

    /* A failed try's record carries its error. */
    struct om_pf_result res = {0};
    om_pf_fail(&res, false, "network", "blob x: Couldn't connect to server");
    om_pf_fail_arg(&res, "#curl", "%d", 7);
    struct om_pf_rec end = {.type = OM_PF_REC_IMAGE_END, .image = 0, .a = 1, .b = 3,
                            .ev = OM_PF_PENDING, .err = om_pf_err_from(&res)};
    om_pf_job_log(j, &end);
    doc = om_pf_job_log_json(j, since);
    json_t *r = json_array_get(json_object_get(doc, "log"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "state")), "retry");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(r, "error"), "code")), "network");
    CHECK_EQ_INT(json_integer_value(json_object_get(
                     json_object_get(json_object_get(r, "error"), "values"), "curl")), 7);
    json_decref(doc);
    om_pf_job_free(j);                         /* frees the record's error too */
}

static void test_prefetch_job__a_follower_that_fell_behind_is_told_what_it_missed(void)
{
    struct om_pf_job *j = new_job();
    for (unsigned i = 0; i < OM_PF_LOG_CAP + 100; i++)
        blob(j, i, OM_PF_BLOB_CACHED);
    json_t *doc = om_pf_job_log_json(j, 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "dropped")), 100);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "log")), OM_PF_LOG_PAGE);
    CHECK(json_is_true(json_object_get(doc, "more")));
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(doc, "log"), 0),
                                                    "seq")), 101);
    uint64_t since = (uint64_t)json_integer_value(json_object_get(doc, "since"));
    CHECK_EQ_INT(since, 100 + OM_PF_LOG_PAGE);
    json_decref(doc);
    /* The next page finishes it. */
    doc = om_pf_job_log_json(j, since);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "log")), OM_PF_LOG_CAP - OM_PF_LOG_PAGE);
    CHECK(json_is_false(json_object_get(doc, "more")));
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "dropped")), 0);
    json_decref(doc);
    /* A dropped log (a job long finished): all counted as missed. */
    om_pf_job_log_drop(j);
    doc = om_pf_job_log_json(j, 10);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "log")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "dropped")), OM_PF_LOG_CAP + 90);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "since")), OM_PF_LOG_CAP + 100);
    json_decref(doc);
    om_pf_job_free(j);
}

int main(void)
{
    RUN(test_prefetch_job__a_failure_keeps_its_code_values_and_english);
    RUN(test_prefetch_job__a_follower_gets_every_record_once_in_order);
    RUN(test_prefetch_job__a_follower_that_fell_behind_is_told_what_it_missed);
    return test_done();
}
