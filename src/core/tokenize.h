/*
 * tokenize.h - the text analyzer shared by indexing and querying:
 * UTF-8 aware word splitting, Unicode case folding and English stemming
 * (Snowball via libstemmer), with a small cache of recent stems because
 * natural text repeats a few words very often.
 *
 * Index and query must see identical terms, so this is the only place
 * that turns text into terms.  Not thread-safe: one tokenizer per thread.
 */
#ifndef DS_TOKENIZE_H
#define DS_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#define DS_TERM_MAX 64   /* longest term in bytes; longer words are skipped */

typedef struct ds_tokenizer ds_tokenizer;

/* Called for each term, in text order.  |term| is NUL-terminated and
 * valid only during the call.  Return 0 to continue, non-zero to stop
 * (a negative value is then returned by ds_tokenize). */
typedef int (*ds_term_cb)(const char *term, size_t len, void *ud);

/* Returns 0 or DS_ERR_NOMEM. */
int ds_tokenizer_new(ds_tokenizer **out);
void ds_tokenizer_free(ds_tokenizer *t);

/* Maps the whole stem cache at once (huge pages where the kernel gives
 * them), for a tokenizer about to index a lot: otherwise each of its
 * 1024 pages costs a fault when first read and another, with a TLB flush
 * on every core running the process, when first written.  It changes
 * no content, so another thread may be using |t| meanwhile. */
void ds_tokenizer_prefault(ds_tokenizer *t);

/* Splits |text| (|len| bytes, need not be NUL-terminated, may contain
 * invalid UTF-8, which acts as a separator) into terms: maximal runs of
 * Unicode letters, digits and combining marks; case-folded; stemmed with
 * the English Snowball stemmer.  Returns 0, a negative value from |cb|,
 * or DS_ERR_NOMEM. */
int ds_tokenize(ds_tokenizer *t, const char *text, size_t len, ds_term_cb cb, void *ud);

/* Like ds_term_cb, for ds_tokenize_tagged: |term| is NOT NUL-terminated,
 * and |tag| points to a word of caller state remembered with the cached
 * raw word that produced this term (0 when new: the cache slot was just
 * filled, or the word is too long to cache, in which case the word is
 * forgotten after the call).  The indexer stores "which posting list
 * this term goes to" there, so a frequent word costs one cache probe and
 * no second hash lookup.  Different raw words may map to the same term;
 * each has its own tag.  Tags survive until their slot is reused or
 * ds_tokenizer_clear_tags is called. */
typedef int (*ds_term_tag_cb)(const char *term, size_t len, uint64_t *tag, void *ud);
int ds_tokenize_tagged(ds_tokenizer *t, const char *text, size_t len, ds_term_tag_cb cb, void *ud);
/* Sets every tag back to 0. */
void ds_tokenizer_clear_tags(ds_tokenizer *t);

#endif
