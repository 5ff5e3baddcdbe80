/* reply.h — small builders for libmicrohttpd responses: the OCI error
 * JSON (built with jansson, never by hand), copied bodies, body-less HEAD
 * answers that still carry the real Content-Length, and the headers every
 * answer carries.  Each returns a new response owned by the caller (NULL
 * when out of memory). */
#ifndef OM_HTTP_REPLY_H
#define OM_HTTP_REPLY_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

/* An OCI error JSON response: {"errors":[{"code","message","detail"}]}. */
struct MHD_Response *om_http_error(const char *code, const char *message, const char *detail);
/* A JSON/text body copied into the response. */
struct MHD_Response *om_http_body(const char *content_type, const void *buf, size_t len);
/* A body-less response that still announces Content-Length: len (HEAD). */
struct MHD_Response *om_http_head(const char *content_type, uint64_t len);
/* Headers every answer carries. */
void om_http_common_headers(struct MHD_Response *r);

#endif
