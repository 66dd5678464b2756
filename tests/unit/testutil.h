/*
 * testutil.h - helpers for the cmocka unit tests: temporary directories
 * removed at exit, deterministic "random" bytes, node construction.
 */
#ifndef DS_TESTUTIL_H
#define DS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "ds/node.h"
#include "ds/store.h"

/* A new empty directory under $TMPDIR, removed recursively at exit.
 * The returned string lives until exit. */
const char *ds_test_tmpdir(void);
/* Deterministic pseudo-random bytes (xorshift seeded by ds_test_seed). */
void ds_test_random(uint8_t *out, size_t n);
void ds_test_seed(uint64_t seed);
/* Fills |n| as a note with the given content/project and a fresh id. */
void ds_test_make_node(ds_node *n, const char *content, const char *project);
/* Number of hits (at most 64) of a one-store query for |text|; 0 for a
 * query without terms. */
size_t ds_test_count_hits(ds_store *st, const char *text);
/* Document frequency of the single-term query |word| in |st|. */
uint64_t ds_test_df(ds_store *st, const char *word);
/* Reads a whole file into a malloc'd NUL-terminated buffer, or NULL. */
char *ds_test_read_file(const char *path, size_t *len);
/* Rewrites the closed store in |dir| into an older layout with raw LMDB:
 * drops the tables |drop|, creates the tables |add| (one junk record
 * each), deletes meta key |meta_del| when non-NULL, sets meta.schema to
 * |schema|.  For migration tests. */
void ds_test_old_layout(const char *dir, uint32_t schema, const char *const *drop, size_t ndrop,
                        const char *const *add, size_t nadd, const char *meta_del);
/* Number of the tables |names| that exist in the closed store in |dir|. */
size_t ds_test_tables_present(const char *dir, const char *const *names, size_t n);

/* A cursor seal from a test identity whose seed is 32 bytes of |seed_byte|
 * (nonce 0). */
struct ds_cursor_seal;
void ds_test_seal_make(struct ds_cursor_seal *s, uint8_t seed_byte);
/* The seal of one fixed test identity (the same key in every call; a
 * publisher's sealed cursors open with it). */
struct ds_cursor_seal *ds_test_seal(void);

#endif
