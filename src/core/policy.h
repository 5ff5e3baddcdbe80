/* policy.h — the content policy (policy.allow / policy.deny): which
 * canonical repository names ("docker.io/library/nginx") the mirror may
 * serve.  Pure: no I/O, no clock; compiled once, then read by any thread.
 *
 * Patterns are over canonical names, component by component ('/'):
 *   `**`  a whole component: any number of components, zero included
 *         (registry.k8s.io followed by "/" and `**` matches
 *         registry.k8s.io/pause, registry.k8s.io/a/b/c and registry.k8s.io);
 *   `*`   inside a component: any run of characters but '/' ("*" is exactly
 *         one component, "ng*" any component starting with "ng");
 *   anything else matches itself, exactly (canonical names are lowercase).
 * A pattern is 1..OM_POLICY_PATTERN_MAX bytes of [a-z0-9._:*-] and '/', no
 * empty component, no `**` glued to other characters, at most
 * OM_POLICY_COMPONENTS_MAX components; om_policy_pattern_why() says what is
 * wrong with one (config check, fuzzing).
 *
 * The verdict: a name matching any deny pattern is denied (deny wins); else
 * with an empty allow list everything is allowed, otherwise only a name
 * matching an allow pattern.  om_policy_check() says which rule decided.
 *
 * Lifetime: om_policy_new() returns one reference; the server swaps the
 * live policy on SIGHUP (server.c) and a request holds a reference from
 * dispatch to completion (om_policy_ref / om_policy_unref, atomic), so
 * requests in flight finish under the policy they started with.
 */
#ifndef OM_POLICY_H
#define OM_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define OM_POLICY_PATTERN_MAX 512     /* bytes in one pattern */
#define OM_POLICY_COMPONENTS_MAX 64   /* '/'-separated components in one pattern */
#define OM_POLICY_RULES_MAX 1024      /* entries of allow, and of deny */

struct om_policy;

typedef enum {
    OM_POLICY_ALLOWED,      /* no deny matched; allow empty or one matched */
    OM_POLICY_DENIED,       /* a deny pattern matched (rule = it) */
    OM_POLICY_NOT_ALLOWED,  /* allow non-empty and none matched */
} om_policy_verdict;

/* NULL when s[0..len) is a valid pattern, else what is wrong with it: a
 * phrase in static storage that reads after the pattern ("has an empty
 * component"). */
const char *om_policy_pattern_why(const char *s, size_t len);

/* Does canonical name `name` (NUL-terminated) match pattern `pat` (valid,
 * NUL-terminated)?  Time O(components(pat) * components(name) * length). */
bool om_policy_match(const char *pat, const char *name);

/* Compile allow[0..n_allow) and deny[0..n_deny) (each valid; copied).
 * OM_ERR_INVALID for an invalid pattern or too many, OM_ERR_NOMEM.
 * Both empty is fine (everything allowed).  *out holds one reference. */
int om_policy_new(struct om_policy **out, const char *const *allow, size_t n_allow,
                  const char *const *deny, size_t n_deny);
struct om_policy *om_policy_ref(struct om_policy *p);   /* NULL-safe; returns p */
void om_policy_unref(struct om_policy *p);              /* NULL-safe */

/* Are there any rules at all?  (false: every name allowed, no work.) */
bool om_policy_active(const struct om_policy *p);

/* The verdict for canonical name `name`; *rule (may be NULL) gets the
 * pattern that decided (the deny or allow pattern; NULL for "allow is
 * empty" or "not in allow"), valid while p is.  A NULL policy allows all. */
om_policy_verdict om_policy_check(const struct om_policy *p, const char *name,
                                  const char **rule);

/* The verdict as the sentence a client reads in its 403 and the UI shows:
 * `denied by policy.deny "PATTERN"`, `not in policy.allow`,
 * `allowed by policy.allow "PATTERN"`, `allowed (policy.allow is empty)`.
 * Returns buf. */
const char *om_policy_explain(om_policy_verdict v, const char *rule, char *buf, size_t len);

#endif
