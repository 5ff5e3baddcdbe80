/* hash.h — incremental SHA-256 over OpenSSL's EVP interface (never hand
 * written).  One om_hash per stream of bytes; not shared between threads. */
#ifndef OM_HASH_H
#define OM_HASH_H

#include "core/om.h"
#include "core/ref.h"

typedef struct om_hash om_hash;

/* NULL on allocation failure. Free with om_hash_free. */
om_hash *om_hash_new(void);
void om_hash_update(om_hash *h, const void *buf, size_t len);
/* Finish into a digest; the hash may not be updated afterwards. */
void om_hash_final(om_hash *h, om_digest *out);
void om_hash_free(om_hash *h);

/* One-shot. */
int om_hash_buf(const void *buf, size_t len, om_digest *out);

#endif
