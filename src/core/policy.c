/* policy.c — compile and match policy.allow / policy.deny (policy.h). */
#include "core/policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/om.h"

struct comp {
    const char *s;
    size_t len;
};

/* A compiled pattern: its components, and the literal text before its
 * first '*' — a name that does not start with it cannot match, which is
 * what settles most patterns of a long list in a few byte compares. */
struct rule {
    char *s;                /* owned copy */
    size_t prefix_len;
    struct comp *pc;        /* owned; into s */
    size_t np;
};

struct om_policy {
    atomic_uint refs;
    struct rule *allow, *deny;   /* owned */
    size_t n_allow, n_deny;
};

static bool pat_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == ':' || c == '*';
}

const char *om_policy_pattern_why(const char *s, size_t len)
{
    size_t comps = 0;

    if (len == 0)
        return "is empty";
    if (len > OM_POLICY_PATTERN_MAX)
        return "is longer than 512 bytes";
    for (size_t i = 0; i < len;) {
        size_t n = 0, stars = 0;
        while (i + n < len && s[i + n] != '/') {
            char c = s[i + n];
            if (c >= 'A' && c <= 'Z')
                return "has an upper-case letter (canonical names are lower-case)";
            if (!pat_char(c))
                return "has a character that is not in a repository name, '*' or '/'";
            stars += c == '*';
            n++;
        }
        if (n == 0)
            return "has an empty component (a leading, trailing or doubled '/')";
        if (stars >= 2 && !(n == 2 && stars == 2)) {
            /* "**" only as a whole component; "a**" or "***" mean nothing clear */
            for (size_t k = 0; k + 1 < n; k++)
                if (s[i + k] == '*' && s[i + k + 1] == '*')
                    return "has '**' inside a component (write it as a whole component: a/**/b)";
        }
        if (++comps > OM_POLICY_COMPONENTS_MAX)
            return "has more than 64 components";
        i += n;
        if (i < len) {           /* at a '/' */
            i++;
            if (i == len)
                return "has an empty component (a leading, trailing or doubled '/')";
        }
    }
    return NULL;
}

/* One component: `*` any run of non-'/' characters.  Greedy with one
 * backtrack point (the classic wildcard match): linear-ish, no recursion. */
static bool seg_match(const char *p, size_t pl, const char *s, size_t sl)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;

    while (si < sl) {
        if (pi < pl && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pl && p[pi] == s[si]) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pl && p[pi] == '*')
        pi++;
    return pi == pl;
}

/* Split s into at most max components; returns the count, or max + 1 when
 * there are more. */
static size_t split(const char *s, struct comp *out, size_t max)
{
    size_t n = 0;

    for (;;) {
        size_t l = strcspn(s, "/");
        if (n == max)
            return max + 1;
        out[n++] = (struct comp){s, l};
        if (s[l] == '\0')
            return n;
        s += l + 1;
    }
}

#define NAME_COMPS_MAX (OM_NAME_MAX / 2 + 2)

/* Pattern components pc[0..np) against name components nc[0..nn). */
static bool match_comps(const struct comp *pc, size_t np, const struct comp *nc, size_t nn)
{
    /* ok[j]: pattern components i.. match name components j.. — computed
     * from the last pattern component back to the first. */
    bool ok[NAME_COMPS_MAX + 2], next[NAME_COMPS_MAX + 2];

    for (size_t j = 0; j <= nn; j++)
        next[j] = j == nn;
    for (size_t i = np; i-- > 0;) {
        bool globstar = pc[i].len == 2 && pc[i].s[0] == '*' && pc[i].s[1] == '*';
        ok[nn] = globstar && next[nn];
        for (size_t j = nn; j-- > 0;) {
            if (globstar)
                ok[j] = next[j] || ok[j + 1];
            else
                ok[j] = next[j + 1] && seg_match(pc[i].s, pc[i].len, nc[j].s, nc[j].len);
        }
        memcpy(next, ok, (nn + 1) * sizeof(bool));
    }
    return next[0];
}

bool om_policy_match(const char *pat, const char *name)
{
    struct comp pc[OM_POLICY_COMPONENTS_MAX + 1], nc[NAME_COMPS_MAX + 1];
    size_t np = split(pat, pc, OM_POLICY_COMPONENTS_MAX);
    size_t nn = split(name, nc, NAME_COMPS_MAX);

    if (np > OM_POLICY_COMPONENTS_MAX || nn > NAME_COMPS_MAX)
        return false;
    return match_comps(pc, np, nc, nn);
}

/* A name split once, for every rule of a check. */
struct split_name {
    const char *s;
    size_t len, nn;
    struct comp nc[NAME_COMPS_MAX + 1];
};

static bool rule_match(const struct rule *r, const struct split_name *n)
{
    /* "a/(star)(star)" also matches "a" itself: compare the prefix without
     * its trailing '/' when the name ends there */
    size_t pl = r->prefix_len;
    if (pl > n->len && !(pl == n->len + 1 && r->s[n->len] == '/'))
        return false;
    if (memcmp(r->s, n->s, pl <= n->len ? pl : n->len) != 0)
        return false;
    return match_comps(r->pc, r->np, n->nc, n->nn);
}

static void free_rules(struct rule *l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++) {
        free(l[i].s);
        free(l[i].pc);
    }
    free(l);
}

static int compile_rules(struct rule **out, const char *const *src, size_t n)
{
    struct comp tmp[OM_POLICY_COMPONENTS_MAX + 1];

    *out = calloc(n ? n : 1, sizeof(struct rule));
    if (*out == NULL)
        return OM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        struct rule *r = &(*out)[i];
        if (om_policy_pattern_why(src[i], strlen(src[i])) != NULL)
            return OM_ERR_INVALID;
        if ((r->s = strdup(src[i])) == NULL)
            return OM_ERR_NOMEM;
        r->np = split(r->s, tmp, OM_POLICY_COMPONENTS_MAX);
        if ((r->pc = malloc(r->np * sizeof(struct comp))) == NULL)
            return OM_ERR_NOMEM;
        memcpy(r->pc, tmp, r->np * sizeof(struct comp));
        r->prefix_len = strcspn(r->s, "*");
    }
    return OM_OK;
}

int om_policy_new(struct om_policy **out, const char *const *allow, size_t n_allow,
                  const char *const *deny, size_t n_deny)
{
    struct om_policy *p;
    int err;

    *out = NULL;
    if (n_allow > OM_POLICY_RULES_MAX || n_deny > OM_POLICY_RULES_MAX)
        return OM_ERR_INVALID;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return OM_ERR_NOMEM;
    atomic_init(&p->refs, 1);
    p->n_allow = n_allow;
    p->n_deny = n_deny;
    if ((err = compile_rules(&p->allow, allow, n_allow)) != OM_OK ||
        (err = compile_rules(&p->deny, deny, n_deny)) != OM_OK) {
        om_policy_unref(p);
        return err;
    }
    *out = p;
    return OM_OK;
}

struct om_policy *om_policy_ref(struct om_policy *p)
{
    if (p != NULL)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void om_policy_unref(struct om_policy *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    free_rules(p->allow, p->n_allow);
    free_rules(p->deny, p->n_deny);
    free(p);
}

bool om_policy_active(const struct om_policy *p)
{
    return p != NULL && (p->n_allow > 0 || p->n_deny > 0);
}

om_policy_verdict om_policy_check(const struct om_policy *p, const char *name,
                                  const char **rule)
{
    const char *dummy;
    struct split_name n;

    if (rule == NULL)
        rule = &dummy;
    *rule = NULL;
    if (p == NULL || (p->n_allow == 0 && p->n_deny == 0))
        return OM_POLICY_ALLOWED;
    n.s = name;
    n.len = strlen(name);
    n.nn = split(name, n.nc, NAME_COMPS_MAX);
    if (n.nn > NAME_COMPS_MAX) /* longer than any valid name: nothing matches */
        n.nn = 0, n.len = 0;
    for (size_t i = 0; i < p->n_deny; i++) {
        if (n.nn > 0 && rule_match(&p->deny[i], &n)) {
            *rule = p->deny[i].s;
            return OM_POLICY_DENIED;
        }
    }
    if (p->n_allow == 0)
        return OM_POLICY_ALLOWED;
    for (size_t i = 0; i < p->n_allow; i++) {
        if (n.nn > 0 && rule_match(&p->allow[i], &n)) {
            *rule = p->allow[i].s;
            return OM_POLICY_ALLOWED;
        }
    }
    return OM_POLICY_NOT_ALLOWED;
}

const char *om_policy_explain(om_policy_verdict v, const char *rule, char *buf, size_t len)
{
    switch (v) {
    case OM_POLICY_DENIED:
        snprintf(buf, len, "denied by policy.deny \"%s\"", rule ? rule : "?");
        break;
    case OM_POLICY_NOT_ALLOWED:
        snprintf(buf, len, "not in policy.allow");
        break;
    default:
        if (rule != NULL)
            snprintf(buf, len, "allowed by policy.allow \"%s\"", rule);
        else
            snprintf(buf, len, "allowed (policy.allow is empty)");
        break;
    }
    return buf;
}
