/* reply.c — small builders for libmicrohttpd responses: the OCI error JSON
 * (built with jansson, never by hand), copied bodies, body-less HEAD answers
 * that still carry the real Content-Length, and the headers every answer
 * carries. */
#include "http/reply.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void om_http_common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Docker-Distribution-API-Version", "registry/2.0");
}

struct MHD_Response *om_http_body(const char *content_type, const void *buf, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)buf, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return NULL;
    if (content_type != NULL)
        MHD_add_response_header(r, "Content-Type", content_type);
    om_http_common_headers(r);
    return r;
}

struct MHD_Response *om_http_error(const char *code, const char *message, const char *detail)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (err != NULL && detail != NULL)
        json_object_set_new(err, "detail", json_string(detail));
    json_t *root = json_pack("{s:[o]}", "errors", err);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    struct MHD_Response *r;
    if (s != NULL) {
        r = om_http_body("application/json", s, strlen(s));
        free(s);
    } else {
        static const char fallback[] = "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"out of memory\"}]}";
        r = om_http_body("application/json", fallback, sizeof(fallback) - 1);
    }
    return r;
}

/* A HEAD answer must carry the Content-Length of the body a GET would get.
 * libmicrohttpd takes the length from the response's size and never calls
 * the reader for HEAD, so a reader that refuses to run is enough. */
static ssize_t never_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls; (void)pos; (void)buf; (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

struct MHD_Response *om_http_head(const char *content_type, uint64_t len)
{
    struct MHD_Response *r = MHD_create_response_from_callback(len, 4096, never_read, NULL, NULL);
    if (r == NULL)
        return NULL;
    if (content_type != NULL)
        MHD_add_response_header(r, "Content-Type", content_type);
    om_http_common_headers(r);
    return r;
}
