/*
 * distill_extractive.c - the built-in, offline, deterministic distiller.
 *
 * It turns a chunk of a session into a few self-contained insight texts
 * without any model: prose turns are split into sentences (a splitter that
 * respects code spans, paths and version numbers), each sentence is scored
 * by cue phrases (decisions, fixes and their causes, conclusions), by
 * specificity (identifiers, paths, numbers, code spans) and by length;
 * user questions are paired with the assistant's condensed answer; tool
 * errors that later got fixed are attached to the fix.  Routine chatter
 * ("Let me read the file", "Great!") and tool noise are dropped.  Every
 * insight is prefixed with its subject ("In <project>: Decision: ...",
 * "Fix (<file or command>): ...") and sentences that start with a bare
 * pronoun carry the sentence before them, so an insight reads on its own.
 * Same input, same output: no hashing seeds, no clock, total orderings.
 */
#include "core/distill.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "core/util.h"

#define MAX_INSIGHTS 12         /* per chunk */
#define MAX_INSIGHT_LEN 600     /* bytes, cut at a sentence boundary */
#define MAX_SENTENCE 2000       /* longer sentences are cut (and never cores) */
#define MAX_CORE_SENTENCE 1000  /* raw length beyond which a sentence is a dump */
#define MAX_QUESTION 250
#define MAX_CANDIDATES 512
#define DEDUP_JACCARD_PCT 80

enum { K_NONE = 0, K_FIX, K_DECISION, K_CONCL, K_QA };

static const char *const KIND_NAME[] = { "", "fix", "decision", "conclusion", "qa" };

typedef struct cue {
    const char *phrase;   /* lowercase; matched on word boundaries */
    int kind;
    int weight;           /* 1 weak .. 3 strong */
} cue;

/* Order matters on ties: the first cue of the highest weight names the kind. */
static const cue CUES[] = {
    { "root cause", K_FIX, 3 },        { "caused by", K_FIX, 3 },
    { "the bug was", K_FIX, 3 },       { "the bug is", K_FIX, 3 },
    { "the problem was", K_FIX, 3 },   { "the issue was", K_FIX, 3 },
    { "the error was", K_FIX, 3 },     { "fixed by", K_FIX, 3 },
    { "fixed it by", K_FIX, 3 },       { "the fix is", K_FIX, 3 },
    { "the fix was", K_FIX, 3 },       { "the culprit", K_FIX, 3 },
    { "resolved by", K_FIX, 3 },       { "was failing because", K_FIX, 3 },
    { "failed because", K_FIX, 3 },    { "fails because", K_FIX, 3 },
    { "failing because", K_FIX, 3 },   { "crashed because", K_FIX, 3 },
    { "crashes because", K_FIX, 3 },   { "the problem is", K_FIX, 2 },
    { "the error is", K_FIX, 2 },      { "to fix this", K_FIX, 2 },
    { "the solution", K_FIX, 2 },      { "workaround", K_FIX, 2 },
    { "fixed the issue", K_FIX, 3 },   { "fixed the problem", K_FIX, 3 },
    { "fixed it", K_FIX, 2 },          { "fixes it", K_FIX, 2 },
    { "solved it", K_FIX, 2 },         { "which fixed", K_FIX, 2 },
    { "decided", K_DECISION, 3 },      { "decision:", K_DECISION, 3 },
    { "the decision", K_DECISION, 3 }, { "instead of", K_DECISION, 3 },
    { "going with", K_DECISION, 3 },   { "went with", K_DECISION, 3 },
    { "opted for", K_DECISION, 3 },    { "settled on", K_DECISION, 3 },
    { "chose", K_DECISION, 3 },        { "rather than", K_DECISION, 2 },
    { "go with", K_DECISION, 2 },      { "we'll use", K_DECISION, 2 },
    { "we will use", K_DECISION, 2 },  { "let's use", K_DECISION, 2 },
    { "we should use", K_DECISION, 2 },{ "switch to", K_DECISION, 2 },
    { "switched to", K_DECISION, 2 },  { "chosen", K_DECISION, 2 },
    { "prefer", K_DECISION, 1 },
    { "turns out", K_CONCL, 3 },       { "so the answer is", K_CONCL, 3 },
    { "this works because", K_CONCL, 3 }, { "important:", K_CONCL, 3 },
    { "the trick is", K_CONCL, 3 },    { "the answer is", K_CONCL, 2 },
    { "the issue is", K_CONCL, 2 },    { "works because", K_CONCL, 2 },
    { "note that", K_CONCL, 2 },       { "the reason is", K_CONCL, 2 },
    { "the key is", K_CONCL, 2 },      { "keep in mind", K_CONCL, 2 },
    { "gotcha", K_CONCL, 2 },          { "lesson", K_CONCL, 2 },
    { "is because", K_CONCL, 2 },      { "the reason", K_CONCL, 1 },
    { "this means", K_CONCL, 1 },      { "which means", K_CONCL, 1 },
    { "make sure", K_CONCL, 1 },       { "must", K_CONCL, 1 },
    { "never", K_CONCL, 1 },           { "always", K_CONCL, 1 },
};

static const char *const REASONS[] = { "because", "since", "so that", "due to", "as a result" };

/* Sentence openings that announce an action instead of stating a fact. */
static const char *const INTENT_PREFIX[] = {
    "let me", "now let me", "first, let me", "first let me", "next, let me",
    "now i'll", "now i will", "i'll", "i will", "i'm going to", "i am going to",
    "next, i'll", "now, let me", "let's now", "now let's",
};
static const char *const LETS_ACTION[] = {
    "run", "check", "look", "read", "see", "try", "open", "search", "start",
    "verify", "examine", "find", "update", "add", "write", "create", "fix",
    "edit", "rerun", "inspect", "test", "build", "review", "investigate", "debug",
};
/* Short acknowledgements. */
static const char *const FILLER_PREFIX[] = {
    "great", "perfect", "done", "ok", "okay", "sure", "thanks", "thank you",
    "good", "excellent", "alright", "all right", "awesome", "nice", "got it",
    "i see", "looks good", "yes", "no", "cool", "hmm", "interesting", "now",
};
static const char *const PRONOUNS[] = {
    "it", "this", "that", "these", "those", "they", "them", "which", "its",
    "it's", "that's", "he", "she", "so", "also", "then", "here", "there",
};
static const char *const WH_WORDS[] = {
    "how", "why", "what", "when", "where", "which", "who", "whose",
};
static const char *const ABBREVS[] = {
    "e.g", "i.e", "etc", "vs", "cf", "approx", "mr", "mrs", "dr", "no", "fig", "eq", "al",
};
static const char *const ERROR_WORDS[] = {
    "error", "errors", "failed", "failure", "fail:", "panic", "traceback",
    "exception", "segmentation fault", "assertion", "fatal", "aborted",
    "undefined reference", "no such file",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct sent {
    char *text;          /* normalized (whitespace collapsed), NUL-terminated */
    char *lower;         /* lowercase copy used for matching */
    size_t turn;         /* index of its turn */
    size_t raw_len;      /* length before cutting */
    int user;            /* spoken by the user */
    int kind, weight;    /* strongest cue */
    int reason, spec;    /* carries a reason; specificity 0..5 */
    int intent, filler, pronoun, question;
} sent;

typedef struct svec {
    sent *v;
    size_t n, cap;
} svec;

typedef struct tool_info {
    char *arg;           /* tool input gist without "Name: " (tool_use only) */
    char *error;         /* first error line of a tool result, or NULL */
    int attached;        /* the error was already told by a fix insight */
} tool_info;

typedef struct cand {
    int kind;
    long score;
    size_t pos;          /* sentence index (or turn-derived) for ordering */
    size_t core;         /* core sentence index (SIZE_MAX if none) */
    char *text;          /* built insight */
    double confidence;
    uint64_t *words;     /* sorted word hashes for dedup */
    size_t nwords;
    size_t used[8];      /* sentence indices this insight includes */
    size_t nused;
} cand;

typedef struct ctx {
    const ds_distill_input *in;
    const char *proj;    /* project basename or "" */
    size_t proj_len;
    const char *proj_path;
    svec s;
    size_t *turn_first;  /* first sentence of each turn */
    size_t *turn_count;
    tool_info *tools;
    cand *c;
    size_t nc, capc;
} ctx;

/* ---- small string helpers ---------------------------------------------- */

static int is_word_byte(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

static int starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* |phrase| occurs in |lower| at word boundaries. */
static int has_phrase(const char *lower, const char *phrase)
{
    size_t pl = strlen(phrase);
    for (const char *p = strstr(lower, phrase); p; p = strstr(p + 1, phrase)) {
        if (p > lower && is_word_byte((unsigned char)p[-1])) continue;
        if (is_word_byte((unsigned char)phrase[pl - 1]) && is_word_byte((unsigned char)p[pl]))
            continue;
        return 1;
    }
    return 0;
}

/* Starts with |p| followed by a non-word byte (or the end). */
static int starts_with_word(const char *lower, const char *p)
{
    size_t n = strlen(p);
    return strncmp(lower, p, n) == 0 && !is_word_byte((unsigned char)lower[n]);
}

static int starts_with_any(const char *lower, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (starts_with_word(lower, list[i])) return 1;
    return 0;
}

/* ASCII lowercase; typographic apostrophes become '. */
static char *lower_dup(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xE2 && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0x98 || (unsigned char)s[i + 2] == 0x99)) {
            o[j++] = '\'';
            i += 2;
            continue;
        }
        o[j++] = (char)tolower(c);
    }
    o[j] = '\0';
    return o;
}

/* Largest length <= |max| that does not split a UTF-8 character. */
static size_t utf8_floor(const char *s, size_t len, size_t max)
{
    if (len <= max) return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
    return max;
}

/* Copies |s| cut to at most |max| bytes at a word boundary, with "..." when
 * cut.  The result is malloc'd. */
static char *cut_words(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) return strdup(s);
    if (max < 8) max = 8;
    size_t k = utf8_floor(s, n, max - 3);
    size_t sp = k;
    while (sp > k / 2 && s[sp] != ' ') sp--;
    if (sp > k / 2) k = sp;
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == ',' || s[k - 1] == ';')) k--;
    char *o = malloc(k + 4);
    if (!o) return NULL;
    memcpy(o, s, k);
    memcpy(o + k, "...", 4);
    return o;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- sentence splitting ------------------------------------------------ */

static int is_abbrev(const char *p, size_t start, size_t dot)
{
    size_t b = dot;
    while (b > start && !isspace((unsigned char)p[b - 1]) && p[b - 1] != '(') b--;
    size_t wl = dot - b;
    if (wl == 0 || wl > 6) return 0;
    char w[8];
    for (size_t i = 0; i < wl; i++) w[i] = (char)tolower((unsigned char)p[b + i]);
    w[wl] = '\0';
    for (size_t i = 0; i < NELEM(ABBREVS); i++)
        if (!strcmp(w, ABBREVS[i])) return 1;
    return wl == 1 && isupper((unsigned char)p[b]);   /* initials: "J. Smith" */
}

/* Normalizes p[a..b) (collapsing whitespace, dropping "**") into a new
 * sentence of |turn|.  Returns 0 or DS_ERR_NOMEM. */
static int emit_sentence(svec *sv, const char *p, size_t a, size_t b, size_t turn, int user)
{
    while (a < b && isspace((unsigned char)p[a])) a++;
    while (b > a && isspace((unsigned char)p[b - 1])) b--;
    if (a == b) return 0;
    size_t raw = b - a;
    size_t lim = utf8_floor(p + a, raw, MAX_SENTENCE);
    char *t = malloc(lim + 1);
    if (!t) return DS_ERR_NOMEM;
    size_t j = 0;
    for (size_t i = a; i < a + lim; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '*' && i + 1 < a + lim && p[i + 1] == '*') { i++; continue; }
        if (isspace(c)) {
            if (j && t[j - 1] != ' ') t[j++] = ' ';
            continue;
        }
        t[j++] = (char)c;
    }
    while (j && t[j - 1] == ' ') j--;
    t[j] = '\0';
    if (j == 0) { free(t); return 0; }
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 64;
        sent *nv = realloc(sv->v, cap * sizeof *nv);
        if (!nv) { free(t); return DS_ERR_NOMEM; }
        sv->v = nv;
        sv->cap = cap;
    }
    sent *s = &sv->v[sv->n];
    memset(s, 0, sizeof *s);
    s->text = t;
    s->lower = lower_dup(t);
    if (!s->lower) { free(t); return DS_ERR_NOMEM; }
    s->turn = turn;
    s->raw_len = raw;
    s->user = user;
    sv->n++;
    return 0;
}

/* Splits one paragraph (list markers already removed) into sentences at
 * '.', '!' or '?' followed by whitespace, outside `code spans`, and not
 * after abbreviations: "v1.2.3", "src/a.c" and "e.g. this" stay whole. */
static int split_paragraph(svec *sv, const char *p, size_t len, size_t turn, int user)
{
    size_t start = 0;
    int in_code = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '`') {
            size_t run = 1;
            while (i + run < len && p[i + run] == '`') run++;
            if (in_code || memchr(p + i + run, '`', len - i - run)) in_code = !in_code;
            i += run - 1;
            continue;
        }
        if (in_code || (c != '.' && c != '!' && c != '?')) continue;
        size_t j = i;
        while (j + 1 < len && (p[j + 1] == '.' || p[j + 1] == '!' || p[j + 1] == '?')) j++;
        size_t k = j + 1;
        while (k < len && (p[k] == ')' || p[k] == '"' || p[k] == '\'' || p[k] == '*')) k++;
        if (k < len && !isspace((unsigned char)p[k])) { i = j; continue; }
        if (c == '.' && j == i && is_abbrev(p, start, i)) continue;
        int rc = emit_sentence(sv, p, start, k, turn, user);
        if (rc) return rc;
        start = k;
        i = k > 0 ? k - 1 : 0;
    }
    return emit_sentence(sv, p, start, len, turn, user);
}

/* Length of a list marker ("- ", "* ", "1. ", "> ", "#... ") at |line|. */
static size_t marker_len(const char *line, size_t len)
{
    size_t i = 0;
    if (len >= 2 && (line[0] == '-' || line[0] == '*' || line[0] == '+' || line[0] == '>') &&
        line[1] == ' ')
        return 2;
    while (i < len && line[i] == '#') i++;
    if (i > 0 && i < len && line[i] == ' ') return i + 1;
    i = 0;
    while (i < len && i < 3 && isdigit((unsigned char)line[i])) i++;
    if (i > 0 && i + 1 < len && (line[i] == '.' || line[i] == ')') && line[i + 1] == ' ')
        return i + 2;
    return 0;
}

/* Splits a prose turn into sentences.  Fenced code blocks and table rows
 * are skipped; list items and headings end a sentence; a newline ends a
 * sentence unless the next line continues it in lowercase. */
static int split_turn(svec *sv, const char *text, size_t turn, int user)
{
    ds_buf para = {0};
    int rc = 0, in_fence = 0;
    const char *p = text;

    while (*p && rc == 0) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        const char *line = p;
        p += ll + (nl ? 1 : 0);
        while (ll && (*line == ' ' || *line == '\t')) { line++; ll--; }
        while (ll && isspace((unsigned char)line[ll - 1])) ll--;

        int fence = ll >= 3 && !strncmp(line, "```", 3);
        int boundary = ll == 0 || fence || in_fence || line[0] == '|';
        size_t m = boundary ? 0 : marker_len(line, ll);
        if (!boundary && m == 0 && para.len) {
            /* Soft-wrapped continuation only if it starts in lowercase or
             * the previous line clearly did not end a sentence. */
            unsigned char last = para.data[para.len - 1];
            int cont = islower((unsigned char)line[0]) || last == ',' || last == '(' ||
                       line[0] == '`' || line[0] == '(';
            if (!cont) m = SIZE_MAX;   /* flush, no marker to skip */
        }
        if (boundary || m) {
            if (para.len) rc = split_paragraph(sv, (const char *)para.data, para.len, turn, user);
            para.len = 0;
        }
        if (fence) { in_fence = !in_fence; continue; }
        if (boundary || rc) continue;
        if (m == SIZE_MAX) m = 0;
        if (para.len) rc = ds_buf_append(&para, " ", 1);
        if (rc == 0) rc = ds_buf_append(&para, line + m, ll - m);
        if (rc == 0 && m && line[0] == '#') {   /* a heading is its own sentence */
            rc = split_paragraph(sv, (const char *)para.data, para.len, turn, user);
            para.len = 0;
        }
    }
    if (rc == 0 && para.len) rc = split_paragraph(sv, (const char *)para.data, para.len, turn, user);
    ds_buf_free(&para);
    return rc;
}

/* ---- sentence features ------------------------------------------------- */

static int token_specific(const char *t, size_t n)
{
    int has_alpha = 0, has_digit = 0, has_lower = 0, upper = 0, camel = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '`') return 1;
        if (c == '/' && n > 1) return 1;
        if (c == '_' && n > 1) return 1;
        if (c == ':' && i + 1 < n && t[i + 1] == ':') return 1;
        if (c == '(' && i + 1 < n && t[i + 1] == ')') return 1;
        if (c == '.' && i > 0 && i + 1 < n && isalnum((unsigned char)t[i - 1]) &&
            isalnum((unsigned char)t[i + 1]))
            return 1;
        if (isdigit(c)) has_digit = 1;
        if (isalpha(c)) has_alpha = 1;
        if (islower(c)) has_lower = 1;
        if (isupper(c)) {
            upper++;
            if (has_lower) camel = 1;
        }
    }
    if (n >= 2 && t[0] == '-' && isalpha((unsigned char)t[n - 1])) return 1;  /* --flag */
    if (has_digit) return 1;
    if (camel) return 1;
    return has_alpha && !has_lower && upper >= 2;   /* LMDB, HTTP */
}

static int specificity(const char *s)
{
    int n = 0;
    const char *p = s;
    while (*p && n < 5) {
        while (*p == ' ') p++;
        const char *b = p;
        while (*p && *p != ' ') p++;
        /* strip surrounding punctuation */
        const char *e = p;
        while (b < e && strchr("\"'(,;:", *b)) b++;
        while (e > b && strchr("\"'),;:.!?", e[-1])) e--;
        if (e > b && token_specific(b, (size_t)(e - b))) n++;
    }
    return n;
}

static int first_word_in(const char *lower, const char *const *list, size_t n)
{
    const char *p = lower;
    while (*p == '"' || *p == '(' || *p == '`') p++;
    return starts_with_any(p, list, n);
}

static void analyze(sent *s)
{
    const char *l = s->lower;
    size_t n = strlen(l);

    for (size_t i = 0; i < NELEM(CUES); i++) {
        if (CUES[i].weight > s->weight && has_phrase(l, CUES[i].phrase)) {
            s->weight = CUES[i].weight;
            s->kind = CUES[i].kind;
        }
    }
    for (size_t i = 0; i < NELEM(REASONS); i++)
        if (has_phrase(l, REASONS[i])) s->reason = 1;
    if (s->weight < 2 && s->reason && (has_phrase(l, "error") || has_phrase(l, "fails") ||
                                       has_phrase(l, "failed") || has_phrase(l, "crash"))) {
        s->weight = 2;
        s->kind = K_FIX;
    }
    s->spec = specificity(s->text);
    s->question = n > 0 && l[n - 1] == '?';
    s->pronoun = first_word_in(l, PRONOUNS, NELEM(PRONOUNS));
    /* "... fixed it." leans on the sentence before just as much. */
    static const char *const tails[] = { " it", " this", " that", " them" };
    size_t e = n;
    while (e > 0 && strchr(".!?)\"'", l[e - 1])) e--;
    for (size_t i = 0; i < NELEM(tails); i++) {
        size_t tl = strlen(tails[i]);
        if (e >= tl && !strncmp(l + e - tl, tails[i], tl)) s->pronoun = 1;
    }

    s->intent = starts_with_any(l, INTENT_PREFIX, NELEM(INTENT_PREFIX));
    if (!s->intent && (starts_with(l, "let's ") || starts_with(l, "now let's "))) {
        const char *v = l + (l[0] == 'n' ? 10 : 6);
        s->intent = starts_with_any(v, LETS_ACTION, NELEM(LETS_ACTION));
    }
    s->filler = n < 40 && starts_with_any(l, FILLER_PREFIX, NELEM(FILLER_PREFIX)) &&
                s->weight < 2;
    if (n < 12 && s->spec == 0 && s->weight == 0) s->filler = 1;
}

/* Chatter: announcements of the next action and acknowledgements.  An
 * announcement survives only if it carries a decision with its reason. */
static int is_chatter(const sent *s)
{
    if (s->filler) return 1;
    if (s->intent)
        return !(s->kind == K_DECISION && (s->reason || has_phrase(s->lower, "instead of")));
    return 0;
}

/* ---- tools -------------------------------------------------------------- */

static const char *tool_arg(const ds_turn *t)
{
    const char *x = t->text ? t->text : "";
    size_t n = t->tool_name ? strlen(t->tool_name) : 0;
    if (n && !strncmp(x, t->tool_name, n) && x[n] == ':') x += n + 1;
    while (*x == ' ') x++;
    return x;
}

/* First line of |text| that reports an error ("0 errors" does not). */
static char *find_error_line(const char *text)
{
    char *low = lower_dup(text);
    if (!low) return NULL;
    const char *hit = NULL;
    for (size_t i = 0; i < NELEM(ERROR_WORDS); i++) {
        size_t wl = strlen(ERROR_WORDS[i]);
        for (const char *p = strstr(low, ERROR_WORDS[i]); p; p = strstr(p + 1, ERROR_WORDS[i])) {
            if (p > low && is_word_byte((unsigned char)p[-1])) continue;
            if (is_word_byte((unsigned char)ERROR_WORDS[i][wl - 1]) && is_word_byte((unsigned char)p[wl]))
                continue;
            if ((p - low >= 2 && !strncmp(p - 2, "0 ", 2)) ||
                (p - low >= 3 && !strncmp(p - 3, "no ", 3)))
                continue;
            if (!hit || p < hit) hit = p;
            break;
        }
    }
    char *line = NULL;
    if (hit) {
        size_t off = (size_t)(hit - low);
        size_t b = off, e = off;
        while (b > 0 && text[b - 1] != '\n') b--;
        while (text[e] && text[e] != '\n') e++;
        while (b < e && isspace((unsigned char)text[b])) b++;
        while (e > b && isspace((unsigned char)text[e - 1])) e--;
        size_t n = e - b;
        char *tmp = malloc(n + 1);
        if (tmp) {
            memcpy(tmp, text + b, n);
            tmp[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (tmp[i] == '`') tmp[i] = '\'';
            line = cut_words(tmp, 160);
            free(tmp);
        }
    }
    free(low);
    return line;
}

static int is_edit_tool(const char *name)
{
    return !strcmp(name, "Edit") || !strcmp(name, "Write") || !strcmp(name, "MultiEdit") ||
           !strcmp(name, "NotebookEdit");
}

/* Path shown relative to the project when it lies inside it. */
static char *display_path(ctx *c, const char *path, size_t n)
{
    size_t pl = c->proj_path ? strlen(c->proj_path) : 0;
    if (pl > 1 && n > pl + 1 && !strncmp(path, c->proj_path, pl) && path[pl] == '/') {
        path += pl + 1;
        n -= pl + 1;
    }
    char *o = malloc(n + 1);
    if (!o) return NULL;
    memcpy(o, path, n);
    o[n] = '\0';
    return o;
}

/* First path-like token of a sentence ("src/a.c", "store.c"; with
 * |need_ext| only file names with an extension), or NULL. */
static char *file_in_sentence(ctx *c, const char *s, int need_ext, int *oom)
{
    const char *best = NULL;
    size_t best_n = 0;
    int best_slash = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        const char *b = p;
        while (*p && *p != ' ') p++;
        const char *e = p;
        while (b < e && strchr("\"'`(,;:", *b)) b++;
        while (e > b && strchr("\"'`),;:.!?", e[-1])) e--;
        size_t n = (size_t)(e - b);
        if (n < 3 || n > 200 || memchr(b, '(', n)) continue;
        int slash = memchr(b, '/', n) != NULL;
        int dotext = 0;
        const char *dot = NULL;
        for (const char *q = b; q < e; q++)
            if (*q == '.') dot = q;
        if (dot && dot > b && e - dot >= 2 && e - dot <= 6) {
            dotext = 1;
            for (const char *q = dot + 1; q < e; q++)
                if (!isalpha((unsigned char)*q)) dotext = 0;
        }
        if (!strncmp(b, "http", 4) || (!slash && !dotext) || (need_ext && !dotext)) continue;
        if (!slash && dot - b == 1 && e - dot == 2) continue;   /* "e.g", "i.e" */
        if (!dotext && slash && (b[0] != '/' && b[0] != '.' && !memchr(b, '_', n) &&
                                 !isalpha((unsigned char)b[0])))
            continue;
        if (slash && !dotext && !strchr("/.~", b[0])) {
            /* "readers/writers" is prose, "src/core" is a path: require a
             * lowercase-only path with a known top directory shape. */
            int letters_only = 1;
            for (const char *q = b; q < e; q++)
                if (!islower((unsigned char)*q) && *q != '/' && *q != '_' && *q != '-') letters_only = 0;
            if (!letters_only || memchr(b, '/', n) == b + n - 1) continue;
        }
        if (!best || (slash && dotext && !best_slash)) {
            best = b;
            best_n = n;
            best_slash = slash && dotext;
            if (best_slash) break;
        }
    }
    if (!best) return NULL;
    char *o = display_path(c, best, best_n);
    if (!o) *oom = 1;
    return o;
}

/* The subject of a fix at sentence |si|: a file it names, else the file
 * edited around it (same exchange), else the command whose error it
 * explains.  *err_turn receives the tool result whose error the fix
 * resolves, if any. */
static char *fix_subject(ctx *c, size_t si, size_t *err_turn, int *oom)
{
    const ds_distill_input *in = c->in;
    size_t t = c->s.v[si].turn;
    size_t lo = t, hi = t;
    *err_turn = SIZE_MAX;
    while (lo > 0 && in->turns[lo - 1].kind != DS_TURN_USER) lo--;
    while (hi + 1 < in->count && in->turns[hi + 1].kind != DS_TURN_USER) hi++;

    for (size_t i = t; i-- > lo;)
        if (in->turns[i].kind == DS_TURN_TOOL_RESULT && c->tools[i].error) { *err_turn = i; break; }

    char *f = file_in_sentence(c, c->s.v[si].text, 1, oom);
    if (f || *oom) return f;
    for (size_t d = 1; d <= hi - lo + 1; d++) {
        size_t cand_turns[2] = { t + d, t >= d ? t - d : SIZE_MAX };
        for (int k = 0; k < 2; k++) {
            size_t i = cand_turns[k];
            if (i == SIZE_MAX || i < lo || i > hi) continue;
            const ds_turn *tu = &in->turns[i];
            if (tu->kind == DS_TURN_TOOL_USE && tu->tool_name && is_edit_tool(tu->tool_name)) {
                const char *a = c->tools[i].arg;
                size_t n = strcspn(a, " \n");
                if (n == 0) continue;
                char *o = display_path(c, a, n);
                if (!o) *oom = 1;
                return o;
            }
        }
    }
    f = file_in_sentence(c, c->s.v[si].text, 0, oom);
    if (f || *oom) return f;
    if (*err_turn != SIZE_MAX && *err_turn > 0) {
        const ds_turn *u = &in->turns[*err_turn - 1];
        if (u->kind == DS_TURN_TOOL_USE && c->tools[*err_turn - 1].arg[0]) {
            const char *a = c->tools[*err_turn - 1].arg;
            size_t n = strcspn(a, "\n");
            char *tmp = strndup(a, n);
            if (!tmp) { *oom = 1; return NULL; }
            char *o = cut_words(tmp, 80);
            free(tmp);
            if (!o) *oom = 1;
            return o;
        }
    }
    return NULL;
}

/* ---- candidates --------------------------------------------------------- */

static int push_cand(ctx *c, cand *x)
{
    if (c->nc == c->capc) {
        size_t cap = c->capc ? c->capc * 2 : 32;
        cand *nv = realloc(c->c, cap * sizeof *nv);
        if (!nv) return DS_ERR_NOMEM;
        c->c = nv;
        c->capc = cap;
    }
    c->c[c->nc++] = *x;
    return 0;
}

static int compute_words(cand *x, const char *body)
{
    size_t cap = 16, n = 0;
    uint64_t *w = malloc(cap * sizeof *w);
    if (!w) return DS_ERR_NOMEM;
    const char *p = body;
    while (*p) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        const char *b = p;
        while (*p && isalnum((unsigned char)*p)) p++;
        if (p == b) continue;
        char tmp[64];
        size_t l = (size_t)(p - b) < sizeof tmp ? (size_t)(p - b) : sizeof tmp - 1;
        for (size_t i = 0; i < l; i++) tmp[i] = (char)tolower((unsigned char)b[i]);
        if (n == cap) {
            uint64_t *nw = realloc(w, cap * 2 * sizeof *nw);
            if (!nw) { free(w); return DS_ERR_NOMEM; }
            w = nw;
            cap *= 2;
        }
        w[n++] = fnv1a(tmp, l);
    }
    qsort(w, n, sizeof *w, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || w[u - 1] != w[i]) w[u++] = w[i];
    x->words = w;
    x->nwords = u;
    return 0;
}

/* Jaccard similarity of two sorted, unique word sets, in percent. */
static int jaccard_pct(const cand *a, const cand *b)
{
    size_t i = 0, j = 0, inter = 0;
    while (i < a->nwords && j < b->nwords) {
        if (a->words[i] == b->words[j]) { inter++; i++; j++; }
        else if (a->words[i] < b->words[j]) i++;
        else j++;
    }
    size_t uni = a->nwords + b->nwords - inter;
    return uni ? (int)(inter * 100 / uni) : 100;
}

static double clamp_conf(double x)
{
    return x < 0.5 ? 0.5 : x > 0.9 ? 0.9 : x;
}

/* Appends sentence texts to |b| separated by spaces, the first one without
 * its first |skip| bytes; stops (returning the number appended) before the
 * total would pass |limit|. */
static size_t append_sentences_skip(ctx *c, ds_buf *b, const size_t *idx, size_t n, size_t limit,
                                    size_t skip, int *rc)
{
    size_t done = 0;
    for (size_t i = 0; i < n && *rc == 0; i++) {
        const char *t = c->s.v[idx[i]].text + (i == 0 ? skip : 0);
        size_t tl = strlen(t);
        if (b->len + (done ? 1 : 0) + tl > limit) break;
        if (done) *rc = ds_buf_append(b, " ", 1);
        if (*rc == 0) *rc = ds_buf_append(b, t, tl);
        done++;
    }
    return done;
}

static size_t append_sentences(ctx *c, ds_buf *b, const size_t *idx, size_t n, size_t limit, int *rc)
{
    return append_sentences_skip(c, b, idx, n, limit, 0, rc);
}

/* A sentence that labels itself ("Important: ...", "Note: ...") gives the
 * insight its label; returns the bytes to skip, or 0. */
static size_t own_label(const sent *s, const char **label)
{
    static const char *const own[][2] = {
        { "important: ", "Important" }, { "note: ", "Note" }, { "decision: ", "Decision" },
    };
    for (size_t i = 0; i < NELEM(own); i++)
        if (starts_with(s->lower, own[i][0]) && s->lower[strlen(own[i][0])]) {
            *label = own[i][1];
            return strlen(own[i][0]);
        }
    return 0;
}

static int prefix(ctx *c, ds_buf *b, const char *label, const char *subject)
{
    int rc = 0;
    if (c->proj_len) {
        rc |= ds_buf_append(b, "In ", 3);
        rc |= ds_buf_append(b, c->proj, c->proj_len);
        rc |= ds_buf_append(b, ": ", 2);
    }
    rc |= ds_buf_append(b, label, strlen(label));
    if (subject) {
        rc |= ds_buf_append(b, " (", 2);
        rc |= ds_buf_append(b, subject, strlen(subject));
        rc |= ds_buf_append(b, ")", 1);
    }
    rc |= ds_buf_append(b, ": ", 2);
    return rc ? DS_ERR_NOMEM : 0;
}

/* Finishes |b| into x->text: if nothing of the body fit, the first body
 * sentence is cut at a word boundary. */
static int finish_text(cand *x, ds_buf *b, size_t body_off, const char *first)
{
    int rc = 0;
    if (b->len == body_off) {
        size_t room = MAX_INSIGHT_LEN > body_off + 16 ? MAX_INSIGHT_LEN - body_off : 16;
        char *cut = cut_words(first, room);
        if (!cut) return DS_ERR_NOMEM;
        rc = ds_buf_append(b, cut, strlen(cut));
        free(cut);
    }
    if (rc == 0) rc = ds_buf_append(b, "", 1);
    if (rc) return DS_ERR_NOMEM;
    x->text = (char *)b->data;
    b->data = NULL;
    rc = compute_words(x, x->text + body_off);
    return rc;
}

static int usable_context(const sent *s)
{
    return !is_chatter(s) && !s->question && s->raw_len <= MAX_CORE_SENTENCE && strlen(s->text) >= 12;
}

/* Builds a cue insight around sentence |si|. */
static int cue_candidate(ctx *c, size_t si)
{
    sent *s = &c->s.v[si];
    cand x;
    memset(&x, 0, sizeof x);
    x.kind = s->kind;
    x.core = si;
    x.pos = si;
    x.score = s->weight * 10 + s->spec * 3 + s->reason * 5 + (s->user ? 2 : 0);
    size_t len = strlen(s->text);
    if (len < 30) x.score -= 5;
    else if (len <= 300) x.score += 5;
    x.confidence = clamp_conf(0.45 + 0.1 * s->weight + (s->reason ? 0.1 : 0) +
                              (s->spec >= 2 ? 0.05 : 0));

    /* Sentences around the core that it needs to read on its own. */
    size_t idx[4], n = 0;
    size_t first = c->turn_first[s->turn], end = first + c->turn_count[s->turn];
    if ((s->pronoun || len < 40) && si > first && usable_context(&c->s.v[si - 1]))
        idx[n++] = si - 1;
    idx[n++] = si;
    if (si + 1 < end) {
        const sent *nx = &c->s.v[si + 1];
        int follows = starts_with_word(nx->lower, "because") || starts_with(nx->lower, "this is because") ||
                      starts_with(nx->lower, "that's because") || starts_with(nx->lower, "that is because") ||
                      starts_with_word(nx->lower, "otherwise") || starts_with(nx->lower, "the reason");
        if ((follows || (nx->pronoun && nx->reason && !s->reason)) && usable_context(nx))
            idx[n++] = si + 1;
    }

    size_t err_turn = SIZE_MAX;
    char *subject = NULL;
    int oom = 0;
    if (x.kind == K_FIX) {
        subject = fix_subject(c, si, &err_turn, &oom);
        if (oom) return DS_ERR_NOMEM;
    }
    const char *label = x.kind == K_FIX ? "Fix" : x.kind == K_DECISION ? "Decision" : "Note";
    size_t skip = 0;
    if (x.kind != K_FIX && idx[0] == si) skip = own_label(s, &label);
    ds_buf b = {0};
    int rc = prefix(c, &b, label, subject);
    free(subject);
    size_t body_off = b.len;

    /* The core must fit; context goes only where there is room. */
    size_t corelen = len + (n > 1 ? 1 : 0);
    size_t budget = MAX_INSIGHT_LEN;
    size_t ctx_len = 0;
    for (size_t i = 0; i < n; i++)
        if (idx[i] != si) ctx_len += strlen(c->s.v[idx[i]].text) + 1;
    if (body_off + corelen + ctx_len > budget) {
        /* drop context, keep the core */
        if (idx[0] != si) skip = 0;
        idx[0] = si;
        n = 1;
    }
    size_t put = 0;
    if (rc == 0) put = append_sentences_skip(c, &b, idx, n, budget, skip, &rc);
    if (rc == 0 && put > 0 && err_turn != SIZE_MAX && !c->tools[err_turn].attached) {
        const char *e = c->tools[err_turn].error;
        size_t el = strlen(e);
        if (b.len + el + 16 <= budget) {
            c->tools[err_turn].attached = 1;
            rc |= ds_buf_append(&b, " Error seen: `", 14);
            rc |= ds_buf_append(&b, e, el);
            rc |= ds_buf_append(&b, "`.", 2);
        }
    }
    for (size_t i = 0; i < put && x.nused < NELEM(x.used); i++) x.used[x.nused++] = idx[i];
    if (put == 0) x.used[x.nused++] = si;
    if (rc == 0) rc = finish_text(&x, &b, body_off, s->text + skip);
    ds_buf_free(&b);
    if (rc == 0) rc = push_cand(c, &x);
    if (rc) { free(x.text); free(x.words); }
    return rc;
}

static int informative(const sent *s)
{
    size_t len = strlen(s->text);
    if (is_chatter(s) || s->question || s->raw_len > MAX_CORE_SENTENCE || len < 20) return 0;
    return s->weight >= 1 || s->spec >= 1 || len >= 28;
}

/* Pairs the question of user turn |t| with the assistant's answer. */
static int qa_candidate(ctx *c, size_t t)
{
    const ds_distill_input *in = c->in;
    size_t first = c->turn_first[t], cnt = c->turn_count[t];
    size_t q = SIZE_MAX;
    for (size_t i = first; i < first + cnt; i++)
        if (c->s.v[i].question) { q = i; break; }
    if (q == SIZE_MAX && cnt && first_word_in(c->s.v[first].lower, WH_WORDS, NELEM(WH_WORDS)))
        q = first;
    if (q == SIZE_MAX || strlen(c->s.v[q].text) < 10) return 0;

    /* Answer: the first assistant turn after the question (before the next
     * user turn) that says something informative; its cued sentences first
     * (at most two), then its first informative ones. */
    size_t ans[3], na = 0, ncued = 0;
    size_t a_lo = SIZE_MAX, a_hi = 0;
    for (size_t u = t + 1; u < in->count && in->turns[u].kind != DS_TURN_USER && a_lo == SIZE_MAX; u++) {
        if (in->turns[u].kind != DS_TURN_ASSISTANT) continue;
        for (size_t i = c->turn_first[u]; i < c->turn_first[u] + c->turn_count[u]; i++)
            if (informative(&c->s.v[i])) {
                a_lo = c->turn_first[u];
                a_hi = a_lo + c->turn_count[u];
                break;
            }
    }
    if (a_lo == SIZE_MAX) return 0;
    for (size_t i = a_lo; i < a_hi && ncued < 2; i++) {
        const sent *s = &c->s.v[i];
        if (informative(s) && s->weight >= 2) ans[na++] = i, ncued++;
    }
    for (size_t i = a_lo; i < a_hi && na < 3; i++) {
        int dup = 0;
        for (size_t k = 0; k < na; k++) dup |= ans[k] == i;
        if (!dup && informative(&c->s.v[i])) ans[na++] = i;
    }
    /* document order */
    for (size_t i = 1; i < na; i++)
        for (size_t k = i; k > 0 && ans[k - 1] > ans[k]; k--) {
            size_t tmp = ans[k]; ans[k] = ans[k - 1]; ans[k - 1] = tmp;
        }

    cand x;
    memset(&x, 0, sizeof x);
    x.kind = K_QA;
    x.core = SIZE_MAX;
    x.pos = q;
    int spec = 0;
    for (size_t i = 0; i < na; i++) spec += c->s.v[ans[i]].spec;
    x.score = 25 + (ncued ? 10 : 0) + (spec > 5 ? 5 : spec) * 2;
    x.confidence = clamp_conf(0.6 + (ncued ? 0.15 : 0) + (spec >= 2 ? 0.05 : 0));

    ds_buf b = {0};
    int rc = prefix(c, &b, "Q", NULL);
    size_t body_off = b.len;
    /* The question, with the sentence before it when it leans on a pronoun. */
    ds_buf qb = {0};
    if (q > first && c->s.v[q].pronoun) {
        rc |= ds_buf_append(&qb, c->s.v[q - 1].text, strlen(c->s.v[q - 1].text));
        rc |= ds_buf_append(&qb, " ", 1);
    }
    rc |= ds_buf_append(&qb, c->s.v[q].text, strlen(c->s.v[q].text));
    rc |= ds_buf_append(&qb, "", 1);
    if (rc == 0) {
        char *qt = cut_words((const char *)qb.data, MAX_QUESTION);
        if (!qt) rc = DS_ERR_NOMEM;
        else {
            rc |= ds_buf_append(&b, qt, strlen(qt));
            rc |= ds_buf_append(&b, " A: ", 4);
            free(qt);
        }
    }
    ds_buf_free(&qb);
    size_t ans_off = b.len;
    size_t put = 0;
    if (rc == 0) put = append_sentences(c, &b, ans, na, MAX_INSIGHT_LEN, &rc);
    if (rc == 0 && put == 0) {
        size_t room = MAX_INSIGHT_LEN > ans_off + 16 ? MAX_INSIGHT_LEN - ans_off : 16;
        char *cut = cut_words(c->s.v[ans[0]].text, room);
        if (!cut) rc = DS_ERR_NOMEM;
        else { rc = ds_buf_append(&b, cut, strlen(cut)); free(cut); }
    }
    x.used[x.nused++] = q;
    for (size_t i = 0; i < put; i++) x.used[x.nused++] = ans[i];
    if (rc == 0) rc = ds_buf_append(&b, "", 1);
    if (rc == 0) {
        x.text = (char *)b.data;
        b.data = NULL;
        rc = compute_words(&x, x.text + body_off);
    }
    ds_buf_free(&b);
    if (rc == 0) rc = push_cand(c, &x);
    if (rc) { free(x.text); free(x.words); }
    return rc;
}

/* A tool error that a later run of the same command no longer shows, and
 * no fix sentence explains: keep the error with what the assistant said
 * between the failure and the success. */
static int resolved_error_candidates(ctx *c)
{
    const ds_distill_input *in = c->in;
    for (size_t r = 1; r < in->count; r++) {
        if (in->turns[r].kind != DS_TURN_TOOL_RESULT || !c->tools[r].error) continue;
        const ds_turn *u = &in->turns[r - 1];
        if (u->kind != DS_TURN_TOOL_USE || !c->tools[r - 1].arg[0]) continue;
        size_t ok = SIZE_MAX;
        for (size_t k = r + 1; k + 1 < in->count; k++) {
            if (in->turns[k].kind == DS_TURN_TOOL_USE && in->turns[k + 1].kind == DS_TURN_TOOL_RESULT &&
                !strcmp(c->tools[k].arg, c->tools[r - 1].arg) &&
                !strcmp(in->turns[k].tool_name ? in->turns[k].tool_name : "",
                        u->tool_name ? u->tool_name : "")) {
                if (!c->tools[k + 1].error) ok = k;
                break;
            }
        }
        if (ok == SIZE_MAX) continue;
        size_t ex[2], nex = 0;
        int fix_said = 0;
        for (size_t i = 0; i < c->s.n; i++) {
            const sent *s = &c->s.v[i];
            if (s->turn <= r || s->turn >= ok || in->turns[s->turn].kind != DS_TURN_ASSISTANT) continue;
            if (s->kind == K_FIX && s->weight >= 2) fix_said = 1;
            if (nex < 2 && informative(s)) ex[nex++] = i;
        }
        if (fix_said || nex == 0) continue;
        size_t expl = ex[0];

        cand x;
        memset(&x, 0, sizeof x);
        x.kind = K_FIX;
        x.core = SIZE_MAX;
        x.pos = expl;
        x.score = 18 + c->s.v[expl].spec * 2;
        x.confidence = 0.55;
        char *tmp = strndup(c->tools[r - 1].arg, strcspn(c->tools[r - 1].arg, "\n"));
        char *subj = tmp ? cut_words(tmp, 80) : NULL;
        free(tmp);
        if (!subj) return DS_ERR_NOMEM;
        ds_buf b = {0};
        int rc = prefix(c, &b, "Fix", subj);
        free(subj);
        size_t body_off = b.len;
        const char *e = c->tools[r].error;
        rc |= ds_buf_append(&b, "the error `", 11);
        rc |= ds_buf_append(&b, e, strlen(e));
        rc |= ds_buf_append(&b, "` was resolved. ", 16);
        size_t put = 0;
        if (rc == 0) put = append_sentences(c, &b, ex, nex, MAX_INSIGHT_LEN, &rc);
        for (size_t i = 0; i < put; i++) x.used[x.nused++] = ex[i];
        if (rc == 0) rc = ds_buf_append(&b, "", 1);
        if (rc == 0) {
            x.text = (char *)b.data;
            b.data = NULL;
            rc = compute_words(&x, x.text + body_off);
        }
        ds_buf_free(&b);
        if (rc == 0) rc = push_cand(c, &x);
        if (rc) { free(x.text); free(x.words); return rc; }
    }
    return 0;
}

static int cmp_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return x->kind - y->kind;
}

static int cmp_pos(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return x->kind - y->kind;
}

static int uses(const cand *x, size_t si)
{
    for (size_t i = 0; i < x->nused; i++)
        if (x->used[i] == si) return 1;
    return 0;
}

/* Every sentence |a| tells is told by |b| too. */
static int subset(const cand *a, const cand *b)
{
    for (size_t i = 0; i < a->nused; i++)
        if (!uses(b, a->used[i])) return 0;
    return a->nused > 0;
}

/* ---- the distiller ------------------------------------------------------ */

static void ctx_free(ctx *c)
{
    for (size_t i = 0; i < c->s.n; i++) {
        free(c->s.v[i].text);
        free(c->s.v[i].lower);
    }
    free(c->s.v);
    free(c->turn_first);
    free(c->turn_count);
    if (c->tools)
        for (size_t i = 0; i < c->in->count; i++) {
            free(c->tools[i].arg);
            free(c->tools[i].error);
        }
    free(c->tools);
    for (size_t i = 0; i < c->nc; i++) {
        free(c->c[i].text);
        free(c->c[i].words);
    }
    free(c->c);
}

static void project_name(ctx *c)
{
    const ds_distill_input *in = c->in;
    const char *p = in->project && *in->project ? in->project : NULL;
    for (size_t i = 0; !p && i < in->count; i++)
        if (in->turns[i].cwd && *in->turns[i].cwd) p = in->turns[i].cwd;
    c->proj_path = p;
    c->proj = "";
    c->proj_len = 0;
    if (!p) return;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && p[b - 1] != '/') b--;
    c->proj = p + b;
    c->proj_len = n - b;
    if (c->proj_len > 80) c->proj_len = utf8_floor(c->proj, c->proj_len, 80);
}

static int extractive_run(const ds_distill_input *in, ds_insight **out, size_t *count)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.in = in;
    int rc = 0;

    project_name(&c);
    c.turn_first = calloc(in->count, sizeof *c.turn_first);
    c.turn_count = calloc(in->count, sizeof *c.turn_count);
    c.tools = calloc(in->count, sizeof *c.tools);
    if (!c.turn_first || !c.turn_count || !c.tools) { rc = DS_ERR_NOMEM; goto done; }

    for (size_t t = 0; t < in->count && rc == 0; t++) {
        const ds_turn *tu = &in->turns[t];
        const char *text = tu->text ? tu->text : "";
        c.turn_first[t] = c.s.n;
        if (tu->kind == DS_TURN_USER || tu->kind == DS_TURN_ASSISTANT) {
            rc = split_turn(&c.s, text, t, tu->kind == DS_TURN_USER);
        } else if (tu->kind == DS_TURN_TOOL_USE) {
            c.tools[t].arg = strdup(tool_arg(tu));
            if (!c.tools[t].arg) rc = DS_ERR_NOMEM;
        } else if (tu->kind == DS_TURN_TOOL_RESULT) {
            c.tools[t].arg = strdup("");
            if (!c.tools[t].arg) rc = DS_ERR_NOMEM;
            else if (*text) {
                c.tools[t].error = find_error_line(text);
                /* NULL means "no error" or OOM; OOM only loses the attachment */
            }
        }
        c.turn_count[t] = c.s.n - c.turn_first[t];
    }
    if (rc) goto done;
    for (size_t t = 0; t < in->count; t++)
        if (!c.tools[t].arg && (in->turns[t].kind == DS_TURN_USER || in->turns[t].kind == DS_TURN_ASSISTANT)) {
            c.tools[t].arg = strdup("");
            if (!c.tools[t].arg) { rc = DS_ERR_NOMEM; goto done; }
        }
    for (size_t i = 0; i < c.s.n; i++) analyze(&c.s.v[i]);

    /* Candidates. */
    for (size_t i = 0; i < c.s.n && rc == 0; i++) {
        const sent *s = &c.s.v[i];
        int strong = s->weight >= 2 || (s->weight == 1 && s->reason && s->spec >= 2);
        if (s->kind == K_NONE || !strong || s->question || is_chatter(s) ||
            s->raw_len > MAX_CORE_SENTENCE || strlen(s->text) < 20)
            continue;
        rc = cue_candidate(&c, i);
    }
    for (size_t t = 0; t < in->count && rc == 0; t++)
        if (in->turns[t].kind == DS_TURN_USER && c.turn_count[t]) rc = qa_candidate(&c, t);
    if (rc == 0) rc = resolved_error_candidates(&c);
    if (rc) goto done;

    /* Select, best first: drop near-duplicates and insights whose sentences
     * a kept one already tells; an insight that tells all of a kept one's
     * sentences and more replaces it (Q&A pairs stand apart); cap; then
     * restore chunk order. */
    if (c.nc) qsort(c.c, c.nc, sizeof *c.c, cmp_score);
    size_t keep = 0;
    for (size_t i = 0; i < c.nc && i < MAX_CANDIDATES; i++) {
        cand *x = &c.c[i];
        int drop = 0;
        size_t superseded = 0;
        for (size_t k = 0; k < keep && !drop; k++) {
            const cand *y = &c.c[k];
            if (jaccard_pct(x, y) >= DEDUP_JACCARD_PCT) drop = 1;
            else if (x->core != SIZE_MAX && y->kind == x->kind && uses(y, x->core)) drop = 1;
            else if (x->kind != K_QA && y->kind != K_QA) {
                if (subset(x, y)) drop = 1;
                else if (subset(y, x)) superseded++;
            }
        }
        if (!drop && keep - superseded >= MAX_INSIGHTS) drop = 1;
        if (drop) {
            free(x->text);
            free(x->words);
            x->text = NULL;
            x->words = NULL;
            continue;
        }
        if (superseded) {
            size_t w = 0;
            for (size_t k = 0; k < keep; k++) {
                cand *y = &c.c[k];
                if (y->kind != K_QA && subset(y, x)) {
                    if (y->confidence > x->confidence) x->confidence = y->confidence;
                    free(y->text);
                    free(y->words);
                    continue;
                }
                c.c[w++] = *y;
            }
            for (size_t k = w; k < keep; k++) {   /* vacated slots own nothing */
                c.c[k].text = NULL;
                c.c[k].words = NULL;
            }
            keep = w;
        }
        if (keep != i) {
            c.c[keep] = *x;
            x->text = NULL;
            x->words = NULL;
        }
        keep++;
    }
    for (size_t i = keep; i < c.nc; i++) {
        free(c.c[i].text);
        free(c.c[i].words);
    }
    c.nc = keep;
    if (c.nc) qsort(c.c, c.nc, sizeof *c.c, cmp_pos);

    ds_insight *v = NULL;
    if (c.nc) {
        v = calloc(c.nc, sizeof *v);
        if (!v) { rc = DS_ERR_NOMEM; goto done; }
    }
    for (size_t i = 0; i < c.nc; i++) {
        v[i].kind = strdup(KIND_NAME[c.c[i].kind]);
        if (!v[i].kind) { ds_insights_free(v, i + 1); rc = DS_ERR_NOMEM; goto done; }
        v[i].content = c.c[i].text;
        c.c[i].text = NULL;
        v[i].confidence = c.c[i].confidence;
    }
    *out = v;
    *count = c.nc;
done:
    ctx_free(&c);
    return rc;
}

static int extractive_distill(ds_distiller *d, const ds_distill_input *in,
                              ds_insight **out, size_t *count)
{
    (void)d;
    if (!in || !out || !count || (in->count && !in->turns)) return DS_ERR_INVALID;
    *out = NULL;
    *count = 0;
    if (in->count == 0) return 0;
    return extractive_run(in, out, count);
}

static void extractive_destroy(ds_distiller *d)
{
    free(d);
}

int ds_distiller_extractive_new(ds_distiller **out)
{
    ds_distiller *d = calloc(1, sizeof *d);
    if (!d) return DS_ERR_NOMEM;
    d->name = "extractive";
    d->distill = extractive_distill;
    d->destroy = extractive_destroy;
    *out = d;
    return 0;
}
