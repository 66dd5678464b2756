/*
 * transcript.h - parser for Claude Code session transcripts (JSON Lines,
 * one entry per line, ~/.claude/projects/<encoded>/<session>.jsonl).
 *
 * The parser is incremental and tolerant: it consumes only complete
 * lines (a session is still being written, so a last line without '\n'
 * is left for later unless |final|), skips unknown entry types, sidechain
 * and meta entries and unparsable lines (counted, never fatal), strips
 * <system-reminder> blocks, replaces invalid UTF-8, and bounds very long
 * lines and texts.  Secrets are redacted here (ds_redact) before any text
 * is cut to a gist, since a cut could leave a secret's unrecognisable
 * prefix behind; callers may redact again (it is idempotent).
 */
#ifndef DS_TRANSCRIPT_H
#define DS_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#define DS_TRANSCRIPT_MAX_LINE (8u << 20)   /* longer lines are skipped whole */
#define DS_TRANSCRIPT_MAX_TEXT (64u << 10)  /* text of one turn is cut to this */

typedef enum {
    DS_TURN_USER = 0,        /* the user's own words */
    DS_TURN_ASSISTANT,       /* assistant prose */
    DS_TURN_TOOL_USE,        /* gist of a tool call: "tool_name: key input" */
    DS_TURN_TOOL_RESULT,     /* gist of a tool result (bounded, first lines) */
} ds_turn_kind;

typedef struct ds_turn {
    ds_turn_kind kind;
    char *text;              /* UTF-8, NUL-terminated, never NULL */
    char *cwd;               /* entry's cwd, "" if absent */
    char *session_id;        /* "" if absent */
    char *uuid;              /* entry uuid, "" if absent */
    char *tool_name;         /* for tool turns, else "" */
    int64_t timestamp_ms;    /* 0 if absent or unparsable */
} ds_turn;

typedef struct ds_transcript_batch {
    ds_turn *turns;
    size_t count;
    size_t consumed;         /* bytes of |buf| fully processed (whole lines) */
    size_t skipped;          /* lines skipped: unparsable, unknown, sidechain, meta, too long */
} ds_transcript_batch;

/* Parses the complete lines of |buf|/|len|.  When |final| is non-zero a
 * last line without newline is parsed too.  |out| is initialized by the
 * call.  Returns 0 or DS_ERR_NOMEM (nothing else: bad input is skipped). */
int ds_transcript_parse(const char *buf, size_t len, int final, ds_transcript_batch *out);
void ds_transcript_batch_free(ds_transcript_batch *b);

#endif
