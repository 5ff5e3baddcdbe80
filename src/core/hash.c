/* hash.c — see hash.h. */
#include "core/hash.h"

#include <stdlib.h>

#include <openssl/evp.h>

struct om_hash {
    EVP_MD_CTX *ctx;
};

om_hash *om_hash_new(void)
{
    om_hash *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void om_hash_update(om_hash *h, const void *buf, size_t len)
{
    if (len > 0)
        EVP_DigestUpdate(h->ctx, buf, len);
}

void om_hash_final(om_hash *h, om_digest *out)
{
    unsigned char raw[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, raw, &n);
    om_digest_from_sha256(out, raw);
}

void om_hash_free(om_hash *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int om_hash_buf(const void *buf, size_t len, om_digest *out)
{
    om_hash *h = om_hash_new();
    if (h == NULL)
        return OM_ERR_NOMEM;
    om_hash_update(h, buf, len);
    om_hash_final(h, out);
    om_hash_free(h);
    return OM_OK;
}
