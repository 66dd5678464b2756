/*
 * distill.h - the distiller interface: turns a chunk of a session (a run
 * of parsed, already redacted turns) into self-contained insight texts.
 *
 * Three implementations share this ops table: the built-in extractive
 * distiller (core, offline, deterministic), a command distiller (pipes
 * the formatted chunk to a configured program) and an HTTP distiller
 * (Anthropic Messages API or an OpenAI-compatible endpoint).  The latter
 * two live in io/ because they spawn processes or open sockets.
 */
#ifndef DS_DISTILL_H
#define DS_DISTILL_H

#include <stddef.h>
#include "core/transcript.h"

typedef struct ds_insight {
    char *content;       /* self-contained text, names what it is about */
    char *kind;          /* "decision" | "fix" | "conclusion" | "qa" | ... */
    double confidence;   /* 0..1 */
} ds_insight;

typedef struct ds_distill_input {
    const ds_turn *turns;
    size_t count;
    const char *project;     /* canonical project path ("" if none) */
    const char *session_id;
} ds_distill_input;

typedef struct ds_distiller ds_distiller;
struct ds_distiller {
    const char *name;        /* "extractive" | "command" | "http" */
    /* Produces insights into a malloc'd array (*out, *count); the caller
     * frees it with ds_insights_free.  Returns 0 or a negative DS_ERR_*
     * (DS_ERR_TIMEOUT, DS_ERR_IO, DS_ERR_PROTO for unusable output...).
     * Zero insights is a valid result. */
    int (*distill)(ds_distiller *d, const ds_distill_input *in,
                   ds_insight **out, size_t *count);
    /* Frees the distiller itself. */
    void (*destroy)(ds_distiller *d);
};

void ds_insights_free(ds_insight *v, size_t count);

/* Formats |in| as plain text for an external distiller ("User: ...",
 * "Assistant: ...", "Tool (name): ..."), malloc'd, NUL-terminated. */
char *ds_distill_format(const ds_distill_input *in);

/* Parses an external distiller's output (implemented in core/distill.c):
 * a JSON array of {content, kind?, confidence?} objects (or strings), an
 * object {"insights": [...]}, either optionally inside a ```json fence; or
 * plain text where each paragraph or "- " / "* " / "1. " bullet is one
 * insight.  Empty or blank output gives zero insights.  *out is malloc'd
 * (free with ds_insights_free); at most 256 insights of at most 16 KiB.
 * Returns 0, DS_ERR_INVALID (bad arguments), DS_ERR_NOMEM, or DS_ERR_PROTO
 * (output that looks like JSON but is malformed or of an unknown shape,
 * a JSON array with no usable element, NUL bytes or invalid UTF-8); on
 * error *out is NULL and *count 0. */
int ds_distill_parse_output(const char *text, size_t len, ds_insight **out, size_t *count);

/* The built-in extractive distiller.  Returns 0 or DS_ERR_NOMEM. */
int ds_distiller_extractive_new(ds_distiller **out);

#endif
