/*
 * chunk.h - splits long text into chunks on heading and paragraph
 * boundaries so that each chunk is a readable, searchable unit.
 */
#ifndef DS_CHUNK_H
#define DS_CHUNK_H

#include <stddef.h>

typedef struct ds_chunk {
    size_t off;   /* byte offset into the text */
    size_t len;   /* byte length */
} ds_chunk;

#define DS_CHUNK_TARGET 1500   /* preferred chunk size in bytes */
#define DS_CHUNK_MAX 4000      /* hard maximum chunk size in bytes */

/* Splits |text| into chunks covering all non-blank content, in order.
 * Boundaries: before Markdown headings (lines starting with '#') and at
 * blank lines, packing paragraphs up to |target| bytes; a paragraph longer
 * than |max| is cut at a line end, else at whitespace, else at a UTF-8
 * character boundary.  Leading/trailing blank lines are trimmed from each
 * chunk; text shorter than |target| yields one chunk (or none if blank).
 * *out is malloc'd (caller frees).  Returns 0, DS_ERR_NOMEM or
 * DS_ERR_INVALID (target == 0 or max < target). */
int ds_chunk_text(const char *text, size_t len, size_t target, size_t max,
                  ds_chunk **out, size_t *count);

#endif
