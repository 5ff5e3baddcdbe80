/* test.h — a minimal table-friendly unit test harness.
 *
 *   static void test_ref__name_accepts_nested(void) { CHECK(...); }
 *   int main(void) { RUN(test_ref__name_accepts_nested); return test_done(); }
 *
 * CHECK records a failure and goes on; test_done() prints
 * "N passed, N failed" and returns the exit status.
 */
#ifndef OM_TEST_H
#define OM_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures_;
static int test_checks_;
static int test_cases_passed_;
static int test_cases_failed_;

#define CHECK(cond)                                                            \
    do {                                                                       \
        test_checks_++;                                                        \
        if (!(cond)) {                                                         \
            test_failures_++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        test_checks_++;                                                        \
        if (a_ != b_) {                                                        \
            test_failures_++;                                                  \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n",        \
                    __FILE__, __LINE__, #a, a_, #b, b_);                       \
        }                                                                      \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        test_checks_++;                                                        \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                 \
            test_failures_++;                                                  \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n",          \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)",                \
                    b_ ? b_ : "(null)");                                       \
        }                                                                      \
    } while (0)

#define RUN(fn)                                                                \
    do {                                                                       \
        int before_ = test_failures_;                                          \
        fn();                                                                  \
        if (test_failures_ == before_) {                                       \
            test_cases_passed_++;                                              \
        } else {                                                               \
            test_cases_failed_++;                                              \
            fprintf(stderr, "FAIL %s\n", #fn);                                 \
        }                                                                      \
    } while (0)

static inline int test_done(void)
{
    printf("%d passed, %d failed\n", test_cases_passed_, test_cases_failed_);
    return test_cases_failed_ == 0 && test_cases_passed_ > 0 ? 0 : 1;
}

#endif
