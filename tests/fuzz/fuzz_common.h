/* fuzz_common.h — what every fuzz target shares.
 *
 * A target is one file tests/fuzz/fuzz_<name>.c defining
 * LLVMFuzzerTestOneInput().  It is built two ways (tests/fuzz/fuzz.cmake):
 *   - with clang -fsanitize=fuzzer,address,undefined: a libFuzzer binary
 *     (scripts/fuzz.sh runs it);
 *   - with any compiler and tests/fuzz/replay_main.c as main(): a plain
 *     program that feeds every file of the seed corpus to the target once,
 *     registered as a unit test, so the seeds (and every crash reproducer
 *     saved into them) are regression tests in the ordinary build too.
 *
 * FUZZ_CHECK is the target's invariant: a broken one prints what was
 * expected and aborts, which libFuzzer reports as a crash and saves the
 * input.  Invariants are what make a fuzzer find logic bugs (a parser that
 * accepts what its grammar forbids, a round trip that loses a byte), not
 * only memory errors.
 *
 * Targets keep their input in a NUL-terminated heap copy (fuzz_strdup)
 * whenever the function under test reads a C string, so ASan sees a read
 * past the input's real end.
 */
#ifndef OM_FUZZ_COMMON_H
#define OM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Like FUZZ_CHECK, with the strings that differ in the message. */
#define FUZZ_CHECK_STREQ(a, b)                                                         \
    do {                                                                               \
        const char *fa_ = (a), *fb_ = (b);                                             \
        if (strcmp(fa_, fb_) != 0) {                                                   \
            fprintf(stderr, "%s:%d: invariant broken: %s == \"%s\", expected \"%s\"\n", \
                    __FILE__, __LINE__, #a, fa_, fb_);                                 \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* A NUL-terminated heap copy of the input (owned by the caller, free()). */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort(); /* out of memory in a fuzzer: nothing sensible to do */
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A heap copy of exactly `size` bytes (no terminator), so a read of one
 * byte too many is an ASan error instead of a silent success.  malloc(0)
 * may return NULL; a 1-byte buffer stands in for it. */
static inline char *fuzz_memdup(const uint8_t *data, size_t size)
{
    char *s = malloc(size > 0 ? size : 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    return s;
}

/* Split the input at the first NUL: the part before it, and after it (or
 * empty).  Targets with two inputs (name + ns, header + size) use this so
 * that every byte string is reachable and seeds stay readable. */
static inline void fuzz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *alen,
                              const uint8_t **b, size_t *blen)
{
    const uint8_t *nul = size > 0 ? memchr(data, '\0', size) : NULL;
    *a = data;
    if (nul == NULL) {
        *alen = size;
        *b = data + size;
        *blen = 0;
    } else {
        *alen = (size_t)(nul - data);
        *b = nul + 1;
        *blen = size - *alen - 1;
    }
}

#endif
