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

/* The built-in extractive distiller.  Returns 0 or DS_ERR_NOMEM. */
int ds_distiller_extractive_new(ds_distiller **out);

#endif
