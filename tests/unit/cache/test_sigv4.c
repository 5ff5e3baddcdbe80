/* test_sigv4.c — the SigV4 signer and presigner (cache/store_s3_sign.c)
 * against AWS's published vectors: the signature test suite (get-vanilla
 * and its neighbours: service "service", 20150830T123600Z, AKIDEXAMPLE),
 * the S3 documentation's GET Object example (header signing) and its
 * presigned-URL example (query signing); then what libcurl's
 * CURLOPT_AWS_SIGV4 sends for the requests the store makes (a sorted,
 * %-encoded query, x-amz-content-sha256 given by us), captured on a
 * loopback socket: the same signature as ours, so the canonical query we
 * hand libcurl is the one S3 computes. */
#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cache/store_s3.h"

#define SUITE_DATE "20150830T123600Z"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct om_s3_key suite_key = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                           "us-east-1", "service"};

/* Sign a suite request (host example.amazonaws.com, x-amz-date, empty
 * body) and return the signature part. */
static const char *suite_sig(const char *method, const char *uri, const struct om_s3_param *q,
                             size_t nq, const struct om_s3_param *extra, size_t nextra)
{
    static char auth[1024];
    char query[2048];
    struct om_s3_param h[8] = {{"host", "example.amazonaws.com"}, {"x-amz-date", SUITE_DATE}};
    size_t nh = 2;

    for (size_t i = 0; i < nextra && nh < OM_ARRAY_LEN(h); i++)
        h[nh++] = extra[i];
    CHECK_EQ_INT(om_s3_canonical_query(q, nq, query, sizeof(query)), OM_OK);
    struct om_s3_sign_req r = {.method = method, .canonical_uri = uri, .canonical_query = query,
                               .headers = h, .n_headers = nh, .payload_hash = EMPTY_SHA,
                               .amz_date = SUITE_DATE};
    CHECK_EQ_INT(om_s3_sign(&suite_key, &r, auth, sizeof(auth)), OM_OK);
    const char *s = strstr(auth, "Signature=");
    return s != NULL ? s + 10 : "";
}

static void test_sigv4__get_vanilla_matches_the_suite(void)
{
    char auth[1024];
    const struct om_s3_param h[] = {{"host", "example.amazonaws.com"}, {"x-amz-date", SUITE_DATE}};
    struct om_s3_sign_req r = {.method = "GET", .canonical_uri = "/", .canonical_query = "",
                               .headers = h, .n_headers = 2, .payload_hash = EMPTY_SHA,
                               .amz_date = SUITE_DATE};
    CHECK_EQ_INT(om_s3_sign(&suite_key, &r, auth, sizeof(auth)), OM_OK);
    CHECK_EQ_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                       "aws4_request, SignedHeaders=host;x-amz-date, "
                       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void test_sigv4__the_suites_query_path_and_method_cases_match(void)
{
    const struct om_s3_param order_key[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    const struct om_s3_param order_value[] = {{"Param1", "value2"}, {"Param1", "value1"}};
    const struct om_s3_param utf8[] = {{"\xe1\x88\xb4", "bar"}};
    const char *unres = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const struct om_s3_param q_unres[] = {{unres, unres}};
    char uri[128];

    CHECK_EQ_STR(suite_sig("GET", "/", order_key, 2, NULL, 0),
                 "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    CHECK_EQ_STR(suite_sig("GET", "/", order_value, 2, NULL, 0),
                 "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694");
    CHECK_EQ_STR(suite_sig("GET", "/", utf8, 1, NULL, 0),
                 "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
    CHECK_EQ_STR(suite_sig("GET", "/", q_unres, 1, NULL, 0),
                 "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197");
    snprintf(uri, sizeof(uri), "/%s", unres);
    CHECK_EQ_STR(suite_sig("GET", uri, NULL, 0, NULL, 0),
                 "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
    CHECK_EQ_STR(suite_sig("POST", "/", NULL, 0, NULL, 0),
                 "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

/* docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html:
 * GET /test.txt with Range: bytes=0-9. */
static void test_sigv4__the_s3_get_object_example_matches(void)
{
    const struct om_s3_key k = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                "us-east-1", "s3"};
    /* any order, any case: the signer sorts and lowercases the names */
    const struct om_s3_param h[] = {{"X-Amz-Date", "20130524T000000Z"},
                                    {"Range", "bytes=0-9"},
                                    {"x-amz-content-sha256", EMPTY_SHA},
                                    {"host", "examplebucket.s3.amazonaws.com"}};
    struct om_s3_sign_req r = {.method = "GET", .canonical_uri = "/test.txt",
                               .canonical_query = "", .headers = h, .n_headers = 4,
                               .payload_hash = EMPTY_SHA, .amz_date = "20130524T000000Z"};
    char auth[1024];
    CHECK_EQ_INT(om_s3_sign(&k, &r, auth, sizeof(auth)), OM_OK);
    CHECK_EQ_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                       "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                       "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

/* docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html */
static void test_sigv4__the_s3_presigned_url_example_matches(void)
{
    const struct om_s3_key k = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                "us-east-1", "s3"};
    char url[2048];
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "https://examplebucket.s3.amazonaws.com",
                               "examplebucket.s3.amazonaws.com", "/test.txt", "20130524T000000Z",
                               86400, url, sizeof(url)),
                 OM_OK);
    CHECK_EQ_STR(url, "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-"
                      "SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
                      "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-"
                      "SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f99533"
                      "0da4c265957d157751f604d404");
}

static void test_sigv4__presign_refuses_bad_lifetimes_and_small_buffers(void)
{
    const struct om_s3_key k = {"AK", "SK", "us-east-1", "s3"};
    char url[2048], tiny[64];
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "http://h", "h", "/b/k", "20130524T000000Z", 0, url,
                               sizeof(url)),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "http://h", "h", "/b/k", "20130524T000000Z", 604801,
                               url, sizeof(url)),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "http://h", "h", "/b/k", "2013", 60, url, sizeof(url)),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "http://h", "h", "/b/k", "20130524T000000Z", 604800,
                               url, sizeof(url)),
                 OM_OK);
    CHECK_EQ_INT(om_s3_presign(&k, "GET", "http://h", "h", "/b/k", "20130524T000000Z", 60, tiny,
                               sizeof(tiny)),
                 OM_ERR_TOOBIG);
    CHECK_EQ_STR(tiny, ""); /* never a truncated URL */
}

static void test_sigv4__uri_encoding_keeps_only_unreserved_bytes(void)
{
    static const struct {
        const char *in;
        bool slash;
        const char *out;
    } cases[] = {
        {"abcXYZ019-_.~", false, "abcXYZ019-_.~"},
        {"a b", false, "a%20b"},
        {"a/b", false, "a%2Fb"},
        {"a/b", true, "a/b"},
        {"+=&?#%", false, "%2B%3D%26%3F%23%25"},
        {"\xe1\x88\xb4", false, "%E1%88%B4"},
        {"", false, ""},
    };
    char out[64];
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        CHECK_EQ_INT(om_s3_uri_encode(cases[i].in, strlen(cases[i].in), cases[i].slash, out,
                                      sizeof(out)),
                     OM_OK);
        CHECK_EQ_STR(out, cases[i].out);
    }
    /* a byte short of room: refused, never cut */
    CHECK_EQ_INT(om_s3_uri_encode("a b", 3, false, out, 5), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_s3_uri_encode("a b", 3, false, out, 6), OM_OK);
    CHECK_EQ_INT(om_s3_uri_encode("abc", 3, false, out, 3), OM_ERR_TOOBIG);
}

static void test_sigv4__canonical_queries_are_sorted_and_encoded(void)
{
    const struct om_s3_param p[] = {{"uploadId", "a/b+c"}, {"partNumber", "12"}};
    const struct om_s3_param uploads[] = {{"uploads", NULL}};
    const struct om_s3_param list[] = {{"prefix", "p/blobs/sha256/"}, {"list-type", "2"},
                                       {"continuation-token", "1x+/="}, {"max-keys", "1000"}};
    char q[256];
    CHECK_EQ_INT(om_s3_canonical_query(p, 2, q, sizeof(q)), OM_OK);
    CHECK_EQ_STR(q, "partNumber=12&uploadId=a%2Fb%2Bc");
    CHECK_EQ_INT(om_s3_canonical_query(uploads, 1, q, sizeof(q)), OM_OK);
    CHECK_EQ_STR(q, "uploads=");
    CHECK_EQ_INT(om_s3_canonical_query(list, 4, q, sizeof(q)), OM_OK);
    CHECK_EQ_STR(q, "continuation-token=1x%2B%2F%3D&list-type=2&max-keys=1000&prefix=p%2Fblobs%2F"
                    "sha256%2F");
    CHECK_EQ_INT(om_s3_canonical_query(NULL, 0, q, sizeof(q)), OM_OK);
    CHECK_EQ_STR(q, "");
    CHECK_EQ_INT(om_s3_canonical_query(p, 2, q, 10), OM_ERR_TOOBIG);
    CHECK_EQ_STR(q, "");
}

static void test_sigv4__header_values_are_trimmed_and_folded(void)
{
    /* "get-header-value-trim": blanks around and inside a value fold; the
     * signature of two spellings of one value is the same. */
    const struct om_s3_param a[] = {{"my-header1", " value1"}, {"my-header2", "\"a   b   c\""}};
    const struct om_s3_param b[] = {{"My-Header1", "value1  "}, {"My-Header2", "\"a b c\""}};
    char sa[80], sb[80];
    snprintf(sa, sizeof(sa), "%s", suite_sig("GET", "/", NULL, 0, a, 2));
    snprintf(sb, sizeof(sb), "%s", suite_sig("GET", "/", b, 0, b, 2));
    CHECK(sa[0] != '\0');
    CHECK_EQ_STR(sa, sb);
    CHECK_EQ_STR(sa, "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

/* ---- what libcurl sends ------------------------------------------------- */

struct capture {
    int lfd;
    unsigned short port;
    char req[8192];
};

static void *capture_main(void *arg)
{
    struct capture *c = arg;
    int fd = accept(c->lfd, NULL, NULL);
    size_t got = 0;
    if (fd < 0)
        return NULL;
    while (got + 1 < sizeof(c->req) && strstr(c->req, "\r\n\r\n") == NULL) {
        ssize_t n = recv(fd, c->req + got, sizeof(c->req) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        c->req[got] = '\0';
    }
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)!write(fd, ok, sizeof(ok) - 1);
    close(fd);
    return NULL;
}

static size_t drop(char *p, size_t s, size_t n, void *ud)
{
    (void)p, (void)ud;
    return s * n;
}

/* libcurl signs `query` (canonical, as store_s3_req.c builds it) with a
 * fixed date; our signer must produce the same Authorization. */
static void curl_agrees(const char *method, const char *path, const char *query,
                        const char *payload)
{
    struct capture c = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    pthread_t th;
    char url[512], hdr[128], resolve[128], want[1024];
    c.lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c.lfd >= 0 && bind(c.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
          listen(c.lfd, 1) == 0 && getsockname(c.lfd, (struct sockaddr *)&sa, &sl) == 0);
    c.port = ntohs(sa.sin_port);
    pthread_create(&th, NULL, capture_main, &c);

    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL, *rl = NULL;
    snprintf(url, sizeof(url), "http://bucket.example:%u%s%s%s", c.port, path,
             query[0] ? "?" : "", query);
    snprintf(resolve, sizeof(resolve), "bucket.example:%u:127.0.0.1", c.port);
    rl = curl_slist_append(rl, resolve);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", payload);
    hl = curl_slist_append(hl, hdr);
    hl = curl_slist_append(hl, "X-Amz-Date: " SUITE_DATE);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, rl);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(h, CURLOPT_USERNAME, "AKIDEXAMPLE");
    curl_easy_setopt(h, CURLOPT_PASSWORD, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, drop);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CHECK_EQ_INT(curl_easy_perform(h), CURLE_OK);
    curl_easy_cleanup(h);
    curl_slist_free_all(hl);
    curl_slist_free_all(rl);
    pthread_join(th, NULL);
    close(c.lfd);

    char host[64];
    snprintf(host, sizeof(host), "bucket.example:%u", c.port);
    const struct om_s3_key k = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                "us-east-1", "s3"};
    const struct om_s3_param sh[] = {{"host", host},
                                     {"x-amz-content-sha256", payload},
                                     {"x-amz-date", SUITE_DATE}};
    struct om_s3_sign_req r = {.method = method, .canonical_uri = path, .canonical_query = query,
                               .headers = sh, .n_headers = 3, .payload_hash = payload,
                               .amz_date = SUITE_DATE};
    CHECK_EQ_INT(om_s3_sign(&k, &r, want, sizeof(want)), OM_OK);
    char line[1100];
    snprintf(line, sizeof(line), "Authorization: %s\r\n", want);
    if (strstr(c.req, line) == NULL)
        fprintf(stderr, "libcurl sent:\n%s\nwe sign:\n%s\n", c.req, line);
    CHECK(strstr(c.req, line) != NULL);
}

static void test_sigv4__libcurl_signs_what_we_sign(void)
{
    const struct om_s3_param part[] = {{"partNumber", "3"}, {"uploadId", "2~a.b_c-d+/="}};
    const struct om_s3_param list[] = {{"list-type", "2"}, {"prefix", "pre/blobs/sha256/"},
                                       {"continuation-token", "a+b/c="}};
    char q[512];

    curl_agrees("GET", "/", "", EMPTY_SHA);
    curl_agrees("POST", "/pre/blobs/sha256/ab/ab00", "uploads=", EMPTY_SHA);
    CHECK_EQ_INT(om_s3_canonical_query(part, 2, q, sizeof(q)), OM_OK);
    curl_agrees("PUT", "/pre/blobs/sha256/ab/ab00", q,
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    CHECK_EQ_INT(om_s3_canonical_query(list, 3, q, sizeof(q)), OM_OK);
    curl_agrees("GET", "/", q, "UNSIGNED-PAYLOAD");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_sigv4__get_vanilla_matches_the_suite);
    RUN(test_sigv4__the_suites_query_path_and_method_cases_match);
    RUN(test_sigv4__the_s3_get_object_example_matches);
    RUN(test_sigv4__the_s3_presigned_url_example_matches);
    RUN(test_sigv4__presign_refuses_bad_lifetimes_and_small_buffers);
    RUN(test_sigv4__uri_encoding_keeps_only_unreserved_bytes);
    RUN(test_sigv4__canonical_queries_are_sorted_and_encoded);
    RUN(test_sigv4__header_values_are_trimmed_and_folded);
    RUN(test_sigv4__libcurl_signs_what_we_sign);
    curl_global_cleanup();
    return test_done();
}
