/*
 * redact.c - secret redaction: one left-to-right pass over the text that
 * tries, only at word boundaries, a few hand-written matchers (known token
 * prefixes, JWTs, PEM private key blocks, "Bearer <token>", URL passwords
 * and NAME=value / name: value assignments whose name ends in a secret
 * word) and copies everything else unchanged.  Every matcher either
 * consumes what it scans or is bounded or memoized, so the pass is linear
 * in the input.  Placeholders (empty, None, null, ${VAR}, <token>, ...)
 * are not secrets and stay.  See redact.h for the types.
 */
#include "core/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ds/error.h"

#define NONE SIZE_MAX
#define NAME_TAIL 64          /* bytes of a long name looked at */

static const char *const type_names[DS_REDACT_NTYPES] = {
    "aws-key", "aws-secret", "github-token", "gitlab-token", "slack-token",
    "openai-key", "anthropic-key", "private-key", "jwt", "bearer", "secret",
};

const char *ds_redact_type_name(ds_redact_type t)
{
    if ((unsigned)t >= DS_REDACT_NTYPES) return "unknown";
    return type_names[t];
}

/* ---- character classes (ASCII only; bytes >= 0x80 are never word chars) */

static int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return is_upper(c) || is_lower(c); }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int is_word(int c) { return is_alnum(c) || c == '_'; }
static int is_b64url(int c) { return is_word(c) || c == '-'; }
static int is_b64(int c) { return is_alnum(c) || c == '+' || c == '/' || c == '='; }
static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }
static int is_compound(int c) { return is_word(c) || c == '-' || c == '.'; }
static int to_lower(int c) { return is_upper(c) ? c + 32 : c; }

typedef struct scan {
    const unsigned char *s;
    size_t n;
    size_t noval_until;        /* unquoted values starting before this are rejected */
    size_t unterminated[3];    /* per quote kind: no closing quote from here to line end */
    size_t unterminated_eol[3];
    size_t fail_until[128];    /* per first char: a failed token run ends here */
} scan;

static int has_prefix(const scan *sc, size_t i, const char *p)
{
    size_t k = strlen(p);
    return sc->n - i >= k && memcmp(sc->s + i, p, k) == 0;
}

static size_t run(const scan *sc, size_t i, int (*cls)(int))
{
    while (i < sc->n && cls(sc->s[i])) i++;
    return i;
}

/* ---- known token shapes, tried at a word boundary ---------------------- */

static int try_pem(const scan *sc, size_t i, size_t *end);

/* Tries the fixed-shape matchers at |i|; on success sets *end, *type. */
static int try_token(scan *sc, size_t i, size_t *end, ds_redact_type *type)
{
    const unsigned char *s = sc->s;
    size_t e;
    int c0 = s[i];
    /* A run that failed to match also fails from any later start inside
     * it (shorter, same end): remembering its end keeps the pass linear on
     * inputs like "sk-sk-sk-..." or "eyJ-eyJ-...". */
    if (c0 < 128 && i < sc->fail_until[c0]) return 0;
    switch (c0) {
    case 'A':
        if (has_prefix(sc, i, "AKIA") || has_prefix(sc, i, "ASIA")) {
            e = i + 4;
            while (e < sc->n && e - i < 20 && (is_upper(s[e]) || is_digit(s[e]))) e++;
            if (e - i == 20 && (e == sc->n || !is_word(s[e]))) {
                *end = e; *type = DS_REDACT_AWS_KEY;
                return 1;
            }
        }
        return 0;
    case 'g':
        if (has_prefix(sc, i, "github_pat_")) {
            e = run(sc, i + 11, is_word);
            if (e - (i + 11) >= 22) { *end = e; *type = DS_REDACT_GITHUB_TOKEN; return 1; }
            sc->fail_until['g'] = e;
        } else if (has_prefix(sc, i, "gh") && sc->n - i > 4 && s[i + 3] == '_' &&
                   strchr("pousr", s[i + 2]) && s[i + 2]) {
            e = run(sc, i + 4, is_alnum);
            if (e - (i + 4) >= 20) { *end = e; *type = DS_REDACT_GITHUB_TOKEN; return 1; }
        } else if (has_prefix(sc, i, "glpat-")) {
            e = i + 6;
            while (e < sc->n && (is_b64url(s[e]) || s[e] == '.')) e++;
            while (e > i + 6 && (s[e - 1] == '.' || s[e - 1] == '-')) e--;
            if (e - (i + 6) >= 20) { *end = e; *type = DS_REDACT_GITLAB_TOKEN; return 1; }
            sc->fail_until['g'] = e;
        }
        return 0;
    case 'x':
        if (has_prefix(sc, i, "xox") && sc->n - i > 5 && s[i + 3] &&
            strchr("bpars", s[i + 3]) && s[i + 4] == '-') {
            e = i + 5;
            while (e < sc->n && (is_alnum(s[e]) || s[e] == '-')) e++;
            while (e > i + 5 && s[e - 1] == '-') e--;
            if (e - (i + 5) >= 10) { *end = e; *type = DS_REDACT_SLACK_TOKEN; return 1; }
            sc->fail_until['x'] = e;
        }
        return 0;
    case 'h':
        if (has_prefix(sc, i, "hooks.slack.com/services/")) {
            e = i + 25;
            while (e < sc->n && (is_b64url(s[e]) || s[e] == '/')) e++;
            if (e - (i + 25) >= 8) { *end = e; *type = DS_REDACT_SLACK_TOKEN; return 1; }
            sc->fail_until['h'] = e;
        }
        return 0;
    case 's':
        if (has_prefix(sc, i, "sk-")) {
            int ant = has_prefix(sc, i, "sk-ant-");
            size_t b = i + (ant ? 7 : 3);
            int digit = 0, alpha = 0;
            for (e = b; e < sc->n && is_b64url(s[e]); e++) {
                digit |= is_digit(s[e]);
                alpha |= is_alpha(s[e]);
            }
            if (e - b >= 20 && digit && alpha) {
                *end = e;
                *type = ant ? DS_REDACT_ANTHROPIC_KEY : DS_REDACT_OPENAI_KEY;
                return 1;
            }
            sc->fail_until['s'] = e;
        }
        return 0;
    case 'e':
        if (has_prefix(sc, i, "eyJ")) {
            size_t a = run(sc, i, is_b64url);
            sc->fail_until['e'] = a;
            if (a - i < 10 || a >= sc->n || s[a] != '.') return 0;
            size_t b = run(sc, a + 1, is_b64url);
            if (b - (a + 1) < 10 || b >= sc->n || s[b] != '.') return 0;
            size_t c = run(sc, b + 1, is_b64url);
            if (c - (b + 1) < 8) return 0;
            sc->fail_until['e'] = 0;
            *end = c; *type = DS_REDACT_JWT;
            return 1;
        }
        return 0;
    case '-':
        if (try_pem(sc, i, end)) { *type = DS_REDACT_PRIVATE_KEY; return 1; }
        return 0;
    default:
        return 0;
    }
}

/* "-----BEGIN <label with PRIVATE KEY>-----" at |i|, then the body up to
 * and including the matching END line.  A block cut short (a bounded tool
 * output) is redacted up to the end of its base64 body.  Literal "\n"
 * escapes (a key inside a JSON string) count as line breaks. */
static int try_pem(const scan *sc, size_t i, size_t *end)
{
    const unsigned char *s = sc->s;
    if (!has_prefix(sc, i, "-----BEGIN ")) return 0;
    size_t j = i + 11, lab = j;
    while (j < sc->n && j - lab < 48 && (is_upper(s[j]) || is_digit(s[j]) || s[j] == ' ')) j++;
    if (!has_prefix(sc, j, "-----")) return 0;
    int priv = 0;
    for (size_t k = lab; k + 11 <= j && !priv; k++)
        priv = memcmp(s + k, "PRIVATE KEY", 11) == 0;
    if (!priv) return 0;
    j += 5;
    size_t body = 0;
    while (j < sc->n) {
        int c = s[j];
        if (c == '-' && has_prefix(sc, j, "-----")) {
            if (!has_prefix(sc, j, "-----END ")) break;
            size_t k = j + 9;
            while (k < sc->n && k - j < 60 && (is_upper(s[k]) || is_digit(s[k]) || s[k] == ' ')) k++;
            if (!has_prefix(sc, k, "-----") || body < 16) break;
            *end = k + 5;
            return 1;
        }
        if (is_b64(c)) body++;
        else if (!(is_space(c) || c == '\\' || c == ':' || c == ',' || c == '-')) break;
        j++;
    }
    if (body < 32) return 0;
    /* unterminated: stop before trailing blanks and "\n" escapes */
    while (j > i) {
        if (is_space(s[j - 1]) || s[j - 1] == '\\') j--;
        else if ((s[j - 1] == 'n' || s[j - 1] == 'r') && j - 2 > i && s[j - 2] == '\\') j -= 2;
        else break;
    }
    *end = j;
    return 1;
}

/* ---- placeholders and assignment names --------------------------------- */

static int ieq(const unsigned char *v, size_t n, const char *w)
{
    if (strlen(w) != n) return 0;
    for (size_t k = 0; k < n; k++)
        if (to_lower(v[k]) != w[k]) return 0;
    return 1;
}

/* 1 if the value |v|/|n| is not a secret: empty, a reference or template,
 * a null-ish word, a mask, an ALL_CAPS_NAME or (|unquoted|) a dotted
 * identifier path such as self.password or process.env.TOKEN. */
static int is_placeholder(const unsigned char *v, size_t n, int unquoted)
{
    const char *starts = unquoted ? "$<{[%!|>*&#(" : "$<{[%";
    static const char *const words[] = {
        "none", "null", "nil", "undefined", "true", "false", "...", "redacted", NULL,
    };
    if (n == 0 || (v[0] && strchr(starts, v[0]))) return 1;
    for (int k = 0; words[k]; k++)
        if (ieq(v, n, words[k])) return 1;
    int mask = 1, caps = 1, under = 0;
    for (size_t k = 0; k < n; k++) {
        int c = v[k];
        if (!c || !strchr("xX*.-", c)) mask = 0;
        if (c == '_') under = 1;
        else if (!is_upper(c)) caps = 0;
    }
    if (mask || (caps && under)) return 1;
    if (unquoted) {
        size_t k = 0, segs = 0;
        while (k < n) {
            if (!(is_alpha(v[k]) || v[k] == '_')) return 0;
            while (k < n && is_word(v[k])) k++;
            segs++;
            if (k == n) break;
            if (v[k] != '.') return 0;
            k++;
            if (k == n) return 0;
        }
        return segs >= 2;
    }
    return 0;
}

/* 1 if |v| already holds a marker (a value that was redacted inside, e.g.
 * a multi-line key that a first pass replaced). */
static int has_marker(const unsigned char *v, size_t n)
{
    for (const unsigned char *p = v; (p = memchr(p, '[', n - (size_t)(p - v))) != NULL; p++)
        if (n - (size_t)(p - v) >= 10 && memcmp(p, "[REDACTED:", 10) == 0) return 1;
    return 0;
}

static int seg_eq(const char *seg, size_t len, const char *w)
{
    return strlen(w) == len && memcmp(seg, w, len) == 0;
}

static int seg_ends(const char *seg, size_t len, const char *w)
{
    size_t k = strlen(w);
    return len >= k && memcmp(seg + len - k, w, k) == 0;
}

/* Classifies the name |p|/|n|: -1 when it does not name a secret, else the
 * type of its value.  The name's last word decides (max_tokens, token_type
 * or tokenizer are not secret names); words split on non-alphanumerics and
 * camelCase humps. */
static int classify_name(const unsigned char *p, size_t n)
{
    if (n > NAME_TAIL) {
        p += n - NAME_TAIL;
        n = NAME_TAIL;
    }
    char low[NAME_TAIL];
    size_t start[NAME_TAIL + 1], len[NAME_TAIL + 1], ns = 0;
    for (size_t k = 0; k < n; k++) {
        int c = p[k];
        low[k] = (char)to_lower(c);
        if (!is_alnum(c)) continue;
        int hump = k > 0 && is_upper(c) && is_lower(p[k - 1]);
        if (k == 0 || !is_alnum(p[k - 1]) || hump) {
            start[ns] = k;
            len[ns] = 0;
            ns++;
        }
        len[ns - 1]++;
    }
    if (ns == 0) return -1;
    size_t last = ns - 1;
    const char *w = low + start[last];
    size_t wl = len[last];
    static const char *const tails[] = { "value", "base", "b64", "hex", "raw", "str", NULL };
    for (int k = 0; tails[k] && last > 0; k++)
        if (seg_eq(w, wl, tails[k])) {
            last--;
            w = low + start[last];
            wl = len[last];
            break;
        }
    const char *pw = last >= 1 ? low + start[last - 1] : "";
    size_t pl = last >= 1 ? len[last - 1] : 0;
    if (seg_eq(w, wl, "key") && seg_eq(pw, pl, "access") && last >= 2 &&
        seg_eq(low + start[last - 2], len[last - 2], "secret"))
        return DS_REDACT_AWS_SECRET;
    if (seg_eq(w, wl, "secretaccesskey")) return DS_REDACT_AWS_SECRET;
    static const char *const ends[] = {
        "password", "passwd", "passphrase", "secret", "token", "apikey",
        "privatekey", "secretkey", "credential", "credentials", NULL,
    };
    for (int k = 0; ends[k]; k++)
        if (seg_ends(w, wl, ends[k])) return DS_REDACT_SECRET;
    if (seg_eq(w, wl, "pass") || (seg_eq(w, wl, "pwd") && ns > 1)) return DS_REDACT_SECRET;
    static const char *const keyed[] = {
        "api", "secret", "private", "access", "encryption", "signing",
        "client", "master", "auth", NULL,
    };
    if (seg_eq(w, wl, "key"))
        for (int k = 0; keyed[k]; k++)
            if (seg_eq(pw, pl, keyed[k])) return DS_REDACT_SECRET;
    return -1;
}

static int quote_kind(int c)
{
    return c == '"' ? 0 : c == '\'' ? 1 : c == '`' ? 2 : -1;
}

/* Ends an unquoted value: blanks, quotes, separators, closing brackets,
 * '&' (URL queries) and escape sequences such as a literal "\n". */
static int ends_value(const scan *sc, size_t k)
{
    int c = sc->s[k];
    if (is_space(c) || strchr("\"'`,;)]}&<", c)) return 1;
    return c == '\\' && k + 1 < sc->n && strchr("nrt\"'", sc->s[k + 1]) && sc->s[k + 1];
}

/* Finds the value of an assignment to a secret name.  |nm| is where the
 * (possibly dotted or dashed) name starts, |ie| where its last word ends,
 * |lead| whether only blanks or '-' precede the name on its line.  Forms:
 * NAME=v, NAME := v, 'name' => v, "name": v, name: v (line start only),
 * --name v.  On success sets the value span [*vs, *ve) and its *type. */
static int try_assign(scan *sc, size_t nm, size_t ie, int lead,
                      size_t *vs, size_t *ve, int *type)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n, j = ie;
    if (j < n && (s[j] == '.' || s[j] == '-')) return 0;
    int dashes = 0;
    while (nm < ie && s[nm] == '-') { nm++; dashes++; }
    if (nm == ie) return 0;
    int quoted = 0;
    if (nm > 0 && quote_kind(s[nm - 1]) >= 0 && j < n) {
        int q = s[nm - 1];
        if (s[j] == q) { j++; quoted = 1; }
        else if (s[j] == '\\' && j + 1 < n && s[j + 1] == q) { j += 2; quoted = 1; }
    }
    size_t sp = j;
    while (j < n && j - sp < 8 && (s[j] == ' ' || s[j] == '\t')) j++;
    if (j >= n) return 0;
    if (s[j] == '=') {
        if (j + 1 < n && s[j + 1] == '=') return 0;
        j += (j + 1 < n && s[j + 1] == '>') ? 2 : 1;
    } else if (s[j] == ':') {
        if (j + 1 < n && s[j + 1] == ':') return 0;
        if (j + 1 < n && s[j + 1] == '=') j += 2;
        else if (quoted || lead) j++;
        else return 0;
    } else if (dashes == 2 && !quoted && j > sp && s[j] != '-') {
        /* "--password value": the blanks are the operator */
    } else {
        return 0;
    }
    int t = classify_name(s + nm, ie - nm);
    if (t < 0) return 0;
    sp = j;
    while (j < n && j - sp < 8 && (s[j] == ' ' || s[j] == '\t')) j++;
    if (j >= n) return 0;

    int esc = s[j] == '\\' && j + 1 < n && quote_kind(s[j + 1]) >= 0;
    int qk = quote_kind(s[j + esc]);
    if (qk >= 0) {
        int q = s[j + esc];
        size_t cs = j + esc + 1, k = cs;
        if (cs < n && s[cs] && strchr("$<{[%", s[cs])) return 0;
        if (cs >= sc->unterminated[qk] && cs < sc->unterminated_eol[qk]) return 0;
        while (k < n && s[k] != q && s[k] != '\n') k++;
        if (k >= n || s[k] != q) {
            sc->unterminated[qk] = cs;
            sc->unterminated_eol[qk] = k;
            return 0;
        }
        size_t ke = k;
        if (esc && ke > cs && s[ke - 1] == '\\') ke--;
        if (ke == cs || is_placeholder(s + cs, ke - cs, 0) || has_marker(s + cs, ke - cs))
            return 0;
        *vs = cs; *ve = ke; *type = t;
        return 1;
    }
    if ((s[j] && strchr("$<{[%!|>*&#(", s[j])) || j < sc->noval_until) return 0;
    size_t k = j;
    while (k < n && !ends_value(sc, k)) {
        if (s[k] == '(' || s[k] == '[') { sc->noval_until = k; return 0; }
        k++;
    }
    if (k == j) return 0;
    if (is_placeholder(s + j, k - j, 1)) { sc->noval_until = k; return 0; }
    *vs = j; *ve = k; *type = t;
    return 1;
}

/* "Bearer <token>" with |i| at the word Bearer (any case); the token must
 * look random (a digit and a letter, or long and mixed case). */
static int try_bearer(const scan *sc, size_t i, size_t *vs, size_t *ve)
{
    const unsigned char *s = sc->s;
    if (!ieq(s + i, 6, "bearer")) return 0;
    size_t j = i + 6, sp = j;
    while (j < sc->n && j - sp < 4 && (s[j] == ' ' || s[j] == '\t')) j++;
    if (j == sp) return 0;
    int digit = 0, alpha = 0, up = 0, lo = 0;
    size_t k = j;
    while (k < sc->n && (is_b64url(s[k]) || strchr(".~+/=", s[k])) && s[k]) {
        digit |= is_digit(s[k]);
        alpha |= is_alpha(s[k]);
        up += is_upper(s[k]);
        lo += is_lower(s[k]);
        k++;
    }
    size_t len = k - j;
    if (!((len >= 16 && digit && alpha) || (len >= 24 && up >= 2 && lo >= 2)))
        return 0;
    if (is_placeholder(s + j, len, 0)) return 0;
    *vs = j; *ve = k;
    return 1;
}

/* "scheme://user:password@" with |i| at the ':' of "://".  The user name
 * cannot hold '=' or quotes, so only a token can match inside it; neither
 * part holds '[' or ']' (not allowed unencoded), so a marker never joins
 * a password on a second pass. */
static int try_url_password(const scan *sc, size_t i, size_t *vs, size_t *ve)
{
    const unsigned char *s = sc->s;
    size_t j = i + 3, k;
    for (k = j; k < sc->n && k - j < 128; k++) {
        int c = s[k];
        if (c <= ' ' || c == 0x7f || strchr("/?#@:=\"'`<>[]", c)) break;
    }
    if (k >= sc->n || s[k] != ':') return 0;
    j = ++k;
    for (; k < sc->n && k - j < 256; k++) {
        int c = s[k];
        if (c <= ' ' || c == 0x7f || strchr("/?#@\"'`<>[]", c)) break;
    }
    if (k >= sc->n || s[k] != '@' || k == j || is_placeholder(s + j, k - j, 0)) return 0;
    *vs = j; *ve = k;
    return 1;
}

/* 1 if [i, end) holds more than blanks and "\n"-style escapes. */
static int substantive(const scan *sc, size_t i, size_t end)
{
    for (; i < end; i++) {
        int c = sc->s[i];
        if (c == '\\' && i + 1 < end && strchr("nrt", sc->s[i + 1]) && sc->s[i + 1]) i++;
        else if (!is_space(c)) return 1;
    }
    return 0;
}

/* ---- the pass ----------------------------------------------------------- */

static int put_marker(ds_buf *b, ds_redact_type t, ds_redact_stats *st)
{
    int rc = ds_buf_append(b, "[REDACTED:", 10);
    if (!rc) rc = ds_buf_append(b, type_names[t], strlen(type_names[t]));
    if (!rc) rc = ds_buf_append(b, "]", 1);
    st->count[t]++;
    st->total++;
    return rc;
}

int ds_redact(const char *text, size_t len, char **out, size_t *outlen,
              ds_redact_stats *stats)
{
    if (!out || !outlen) return DS_ERR_INVALID;
    *out = NULL;
    *outlen = 0;
    if (!text && len) return DS_ERR_INVALID;
    ds_redact_stats local;
    ds_redact_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);

    scan sc;
    memset(&sc, 0, sizeof sc);
    sc.s = (const unsigned char *)(text ? text : "");
    sc.n = len;
    for (int k = 0; k < 3; k++) sc.unterminated[k] = NONE;
    const unsigned char *s = sc.s;
    ds_buf b = {0};
    int rc = ds_buf_reserve(&b, len + 64);
    size_t i = 0, emitted = 0;
    size_t cstart = 0;            /* start of the current dotted/dashed name */
    int line_lead = 1, cstart_lead = 1;
    size_t pv_pos = NONE, pv_end = 0;
    ds_redact_type pv_type = DS_REDACT_SECRET;

    while (!rc && i < len) {
        int c = s[i];
        size_t e = 0, vs = 0, ve = 0;
        ds_redact_type t = DS_REDACT_SECRET;
        int found = 0, pending = 0, rest = 0;

        if (i == pv_pos) {
            /* a value: a known token type wins over the generic one; what
             * it leaves of the value is redacted too unless it is blank */
            pv_pos = NONE;
            if (!try_token(&sc, i, &e, &t)) {
                e = pv_end;
                t = pv_type;
            } else if (e < pv_end && substantive(&sc, e, pv_end)) {
                rest = 1;
            }
            found = 1;
        } else {
            /* the end of a redaction is a boundary, as after the marker */
            int bnd = i == emitted || !is_word(s[i - 1]);
            if (bnd && strchr("Agxhse-", c) && c && try_token(&sc, i, &e, &t)) {
                found = 1;
            } else if (bnd && is_word(c)) {
                size_t ie = run(&sc, i, is_word);
                int at;
                if (try_assign(&sc, cstart, ie, cstart_lead, &vs, &ve, &at)) {
                    pending = 1;
                    pv_type = (ds_redact_type)at;
                } else if (ie - i == 6 && try_bearer(&sc, i, &vs, &ve)) {
                    pending = 1;
                    pv_type = DS_REDACT_BEARER;
                } else {
                    line_lead = 0;
                    i = ie;
                    continue;
                }
            } else if (c == ':' && has_prefix(&sc, i, "://") &&
                       try_url_password(&sc, i, &vs, &ve)) {
                /* no jump: the user name is scanned too (it may be a token) */
                pv_pos = vs;
                pv_end = ve;
                pv_type = DS_REDACT_SECRET;
            }
        }
        if (pending) {
            pv_pos = vs;
            pv_end = ve;
            i = vs;
            line_lead = cstart_lead = 0;
            cstart = i;
            continue;
        }
        if (found) {
            rc = ds_buf_append(&b, s + emitted, i - emitted);
            if (!rc) rc = put_marker(&b, t, st);
            emitted = i = e;
            line_lead = cstart_lead = 0;
            cstart = i;
            if (pv_pos != NONE && e > pv_pos) pv_pos = e < pv_end ? e : NONE;
            if (rest) pv_pos = i;
            continue;
        }
        if (c == '\n') line_lead = 1;
        else if (!(c == ' ' || c == '\t' || c == '\r' || c == '-')) line_lead = 0;
        if (!is_compound(c)) {
            cstart = i + 1;
            cstart_lead = line_lead;
        }
        i++;
    }
    if (!rc) rc = ds_buf_append(&b, s + emitted, len - emitted);
    if (!rc) rc = ds_buf_append(&b, "", 1);
    if (rc) {
        ds_buf_free(&b);
        memset(st, 0, sizeof *st);
        return rc;
    }
    *out = (char *)b.data;
    *outlen = b.len - 1;
    return 0;
}
