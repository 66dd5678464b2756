/*
 * redact.h - secret redaction for text that leaves the user's hands
 * (distilled, stored or sent to a distiller): API keys, tokens, private
 * keys, bearer credentials and secret-looking assignments are replaced by
 * typed markers "[REDACTED:<type>]".  A single linear-time hand-written
 * scanner, no regex; redacting twice gives the same text as once.
 *
 * Assignments: NAME=v, NAME := v, 'name' => v, "name": v, --name v, and
 * name: v only at the start of a line (YAML) so prose stays.  The name's
 * last word decides (password, passwd, passphrase, pass, secret, token,
 * apikey, credential(s), private/secret/api/access/client... key), so
 * max_tokens, token_type, tokenizer or DB_PASSWORD_FILE are not secret
 * names.  Only the value is replaced; a known token type found there wins
 * (GITHUB_TOKEN=[REDACTED:github-token]).  Not secrets, left as they are:
 * empty values, None/null/nil/true/false/undefined, ${VAR}, $VAR, <token>,
 * {{ tmpl }}, %s, masks (****, xxxx), ALL_CAPS_NAMES, and in unquoted
 * values code (calls, subscripts, dotted paths such as self.password).
 */
#ifndef DS_REDACT_H
#define DS_REDACT_H

#include <stddef.h>

typedef enum {
    DS_REDACT_AWS_KEY = 0,   /* "aws-key": AKIA/ASIA + 16 [A-Z0-9] */
    DS_REDACT_AWS_SECRET,    /* "aws-secret": value of aws_secret_access_key = ... */
    DS_REDACT_GITHUB_TOKEN,  /* "github-token": ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ */
    DS_REDACT_GITLAB_TOKEN,  /* "gitlab-token": glpat- */
    DS_REDACT_SLACK_TOKEN,   /* "slack-token": xox[bpars]-, hooks.slack.com/services/ */
    DS_REDACT_OPENAI_KEY,    /* "openai-key": sk-..., sk-proj-... */
    DS_REDACT_ANTHROPIC_KEY, /* "anthropic-key": sk-ant-... */
    DS_REDACT_PRIVATE_KEY,   /* "private-key": PEM "-----BEGIN ... PRIVATE KEY-----" block */
    DS_REDACT_JWT,           /* "jwt": eyJ... three base64url segments */
    DS_REDACT_BEARER,        /* "bearer": token after "Bearer " */
    DS_REDACT_SECRET,        /* "secret": value of NAME=..., name: ..., URL password */
    DS_REDACT_NTYPES
} ds_redact_type;

typedef struct ds_redact_stats {
    size_t count[DS_REDACT_NTYPES];  /* replacements by type */
    size_t total;                    /* sum of count[] */
} ds_redact_stats;

/* Returns the marker name of |t| ("aws-key", ...), or "unknown". */
const char *ds_redact_type_name(ds_redact_type t);

/* Copies |len| bytes of |text| to a new malloc'd, NUL-terminated buffer
 * (*out, length *outlen) with every secret replaced by "[REDACTED:<type>]";
 * all other bytes are copied unchanged (the input need not be valid UTF-8
 * nor NUL-free).  |stats| (optional, may be NULL) is zeroed then filled.
 * The caller frees *out.  Returns 0, DS_ERR_INVALID (|out| or |outlen|
 * NULL, or |text| NULL with |len| > 0) or DS_ERR_NOMEM; on error *out is
 * NULL. */
int ds_redact(const char *text, size_t len, char **out, size_t *outlen,
              ds_redact_stats *stats);

#endif
