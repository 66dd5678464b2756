/*
 * test_segments.c - the log-structured index: segments written per
 * commit, tiered merges keeping their number logarithmic, deletions
 * (dead records counted against document frequencies, then purged by a
 * merge), compaction once 1/DS_SEG_DEAD_SHARE of the documents are dead
 * (not before, not counting a transaction's own put-and-deleted
 * documents, within the per-segment limit; results then exactly those of
 * a store holding only the live documents), the index worker giving
 * exactly the single-threaded result,
 * the version-2 format (docs tables and ordinals read back what was
 * indexed through merges; merges past the ordinal or seq-span limits are
 * skipped; corrupt segments are errors) and migration of a schema-1
 * store (old term-clustered index).
 */
#include "testutil.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/search.h"
#include "core/store_int.h"
#include "core/tokenize.h"
#include "core/util.h"

static const uint8_t EPOCH[DS_EPOCH_LEN] = "0123456789abcdef";

static ds_store *open_at(const char *dir, int no_thread)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH, .no_index_thread = no_thread };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    return st;
}

typedef struct segstat {
    size_t nseg;
    uint64_t postings_of_term, docs;
    size_t dead;
    uint64_t oldest_id;
} segstat;

/* Reads the index layout directly: segment count, |term|'s physical
 * postings over all segments, documents in all docs tables, dead
 * records. */
static segstat layout(ds_store *st, const char *term)
{
    segstat r = { 0, 0, 0, 0, 0 };
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    ds_segview *segs;
    assert_int_equal(ds__segs_load(st, txn, &segs, &r.nseg), 0);
    if (r.nseg) r.oldest_id = segs[0].id;
    for (size_t i = 0; i < r.nseg; i++) {
        if (i) assert_true(segs[i].first_seq > segs[i - 1].last_seq);   /* disjoint, ordered */
        const uint8_t *p;
        uint32_t n;
        assert_int_equal(ds__seg_find(st, txn, &segs[i], term, strlen(term), &p, &n), 0);
        r.postings_of_term += n;
        r.docs += segs[i].ndocs;
    }
    free(segs);
    MDB_stat ms;
    assert_int_equal(mdb_stat(txn, st->dbi[DBI_DEAD], &ms), 0);
    r.dead = ms.ms_entries;
    mdb_txn_abort(txn);
    return r;
}

static void put_text(ds_store *st, ds_node *n, const char *text)
{
    ds_test_make_node(n, text, "/p");
    assert_int_equal(ds_store_put(st, n), 0);
}

static void merges_keep_segments_few(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { N = 300 };
    char text[96];
    for (int i = 0; i < N; i++) {       /* one transaction per note */
        ds_node n;
        snprintf(text, sizeof text, "shared note number uniq%d %s", i, i % 3 ? "odd" : "third");
        put_text(st, &n, text);
        ds_node_free(&n);
        segstat s = layout(st, "share");
        /* Size-tiered with fan-out F: fewer than F segments per size class
         * (plus the one a commit may add before the next merge). */
        assert_true(s.nseg <= (size_t)DS_SEG_FANOUT * 3 + 1);
        assert_int_equal(s.postings_of_term, i + 1);
    }
    assert_int_equal(ds_test_df(st, "shared"), N);
    assert_int_equal(ds_test_df(st, "third"), N / 3);
    for (int i = 0; i < N; i += 37) {
        snprintf(text, sizeof text, "uniq%d", i);
        assert_int_equal(ds_test_count_hits(st, text), 1);
    }
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    /* share, note, number, odd, third, and N unique words */
    assert_int_equal(info.term_count, N + 5);
    ds_store_close(st);
}

/* Write amplification stays logarithmic: the oldest (largest) segment is
 * rewritten only when a whole tier of its class is full, not every time
 * a few small segments follow it.  Transactions of 8 documents make
 * class-1 segments; over 200 commits the tiers complete at about commit
 * 9 (8 x 8 docs) and every 64 commits after (8 x 64 docs), so the oldest
 * segment changes a handful of times, where a policy that merged "one
 * big segment plus seven small ones" would change it every 7 commits. */
static void merges_do_not_rewrite_big_segments_often(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { COMMITS = 200, PER = 8 };
    char text[96];
    uint64_t oldest = 0;
    int changes = 0;
    for (int c = 0; c < COMMITS; c++) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = 0; i < PER; i++) {
            ds_node n;
            snprintf(text, sizeof text, "tiered note uniq%d", c * PER + i);
            ds_test_make_node(&n, text, "/p");
            assert_int_equal(ds_wtxn_put(tx, &n), 0);
            ds_node_free(&n);
        }
        assert_int_equal(ds_wtxn_commit(tx), 0);
        segstat s = layout(st, "tier");
        assert_int_equal(s.postings_of_term, (uint64_t)(c + 1) * PER);
        if (s.oldest_id != oldest) changes++;
        oldest = s.oldest_id;
        assert_true(s.nseg <= (size_t)DS_SEG_FANOUT * 3 + 1);
    }
    assert_true(changes >= 2);      /* merges did happen */
    assert_true(changes <= 6);
    assert_int_equal(ds_test_df(st, "tiered"), COMMITS * PER);
    ds_store_close(st);
}

/* Terms sharing their first 8 bytes sort by the rest (the segment
 * writer sorts by an 8-byte prefix first); every one must be found. */
static void long_shared_prefixes(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    static const char *const w[] = { "qwertyui9", "qwertyui", "qwertyui10", "qwertyui0",
                                     "qwertyui1", "qwertyuj", "qwertyu", "qwertyui99z" };
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    ds_node n[8];
    for (int i = 0; i < 8; i++) {
        ds_test_make_node(&n[i], w[i], "/p");
        assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(ds_test_count_hits(st, w[i]), 1);
        ds_node_free(&n[i]);
    }
    ds_store_close(st);
}

static void deletes_are_exact_then_purged(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { N = 64 };
    ds_node nodes[N];
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    char text[64];
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof text, "zebra stripes item%d", i);
        ds_test_make_node(&nodes[i], text, "/p");
        assert_int_equal(ds_wtxn_put(tx, &nodes[i]), 0);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    /* Delete just under 1/DS_SEG_DEAD_SHARE of the only committed
     * segment: dead records, exact df, no compaction. */
    int removed = 0;
    for (int i = 0; i < (N / DS_SEG_DEAD_SHARE - 1) * 4; i += 4) {
        assert_int_equal(ds_store_delete(st, nodes[i].id), 0);
        removed++;
    }
    assert_int_equal(ds_test_df(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "item0"), 0);
    assert_int_equal(ds_test_count_hits(st, "item1"), 1);
    segstat s = layout(st, "zebra");
    assert_int_equal(s.dead, removed);
    assert_int_equal(s.postings_of_term, N);          /* still physically there */
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed));   /* zebra, stripe, live items */
    /* One more reaches the share: that commit compacts (rewrites) it. */
    assert_int_equal(ds_store_delete(st, nodes[1].id), 0);
    removed++;
    s = layout(st, "zebra");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.postings_of_term, N - removed);
    assert_int_equal(ds_test_df(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "item1"), 0);
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed));
    ds_node extra;
    put_text(st, &extra, "unrelated words");
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed) + 2);
    for (int i = 0; i < N; i++) ds_node_free(&nodes[i]);
    ds_node_free(&extra);
    ds_store_close(st);
}

static void replace_within_transaction(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    ds_node a;
    ds_test_make_node(&a, "first version apples", "/p");
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);
    assert_int_equal(ds_node_set_content(&a, "second version pears", 20), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);          /* replaces the buffered one */
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_test_count_hits(st, "apples"), 0);
    assert_int_equal(ds_test_count_hits(st, "pears"), 1);
    assert_int_equal(ds_test_df(st, "version"), 1);
    segstat s = layout(st, "version");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.postings_of_term, 1);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.node_count, 1);
    assert_int_equal(info.term_count, 3);              /* second, version, pear */
    ds_node_free(&a);
    ds_store_close(st);
}

enum { RANK_K = 64 };
typedef struct ranked { size_t n; uint8_t id[RANK_K][DS_ID_LEN]; double score[RANK_K]; } ranked;

/* The best RANK_K hits of |text|: ids and scores, best first. */
static ranked top_hits(ds_store *st, const char *text)
{
    ranked r = { 0 };
    ds_query *q;
    assert_int_equal(ds_query_parse(text, strlen(text), &q), 0);
    ds_hit hits[RANK_K];
    assert_int_equal(ds_search_multi(&st, 1, q, NULL, RANK_K, hits, &r.n), 0);
    for (size_t i = 0; i < r.n; i++) {
        memcpy(r.id[i], hits[i].node.id, DS_ID_LEN);
        r.score[i] = hits[i].score;
    }
    ds_hits_free(hits, r.n);
    ds_query_free(q);
    return r;
}

/* |a| and |b| hold the same live nodes (ids and texts, in the same seq
 * order), however differently indexed: the same statistics (nodes, total
 * length, distinct terms, each word's df) and, for each word alone and
 * all of them together, the same hits in the same order with bit-equal
 * scores. */
static void assert_same_search(ds_store *a, ds_store *b, const char *const *words, size_t nw)
{
    ds_store_info ia, ib;
    assert_int_equal(ds_store_info_get(a, &ia), 0);
    assert_int_equal(ds_store_info_get(b, &ib), 0);
    assert_int_equal(ia.node_count, ib.node_count);
    assert_int_equal(ia.total_len, ib.total_len);
    assert_int_equal(ia.term_count, ib.term_count);
    char all[512] = "";
    for (size_t w = 0; w <= nw; w++) {
        const char *text = all;
        if (w < nw) {
            text = words[w];
            assert_true(strlen(all) + strlen(text) + 2 < sizeof all);
            strcat(all, text);
            strcat(all, " ");
            assert_int_equal(ds_test_df(a, text), ds_test_df(b, text));
        }
        ranked ra = top_hits(a, text), rb = top_hits(b, text);
        assert_int_equal(ra.n, rb.n);
        for (size_t i = 0; i < ra.n; i++) {
            assert_memory_equal(ra.id[i], rb.id[i], DS_ID_LEN);
            assert_true(ra.score[i] == rb.score[i]);
        }
    }
}

static void worker_matches_inline(void **state)
{
    (void)state;
    ds_store *a = open_at(ds_test_tmpdir(), 0), *b = open_at(ds_test_tmpdir(), 1);
    static const char *const words[] = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                         "eta", "theta", "iota", "kappa", "lambda", "mu" };
    ds_test_seed(42);
    for (int t = 0; t < 12; t++) {               /* transactions of varied sizes */
        ds_wtxn *ta, *tb;
        assert_int_equal(ds_store_begin(a, &ta), 0);
        assert_int_equal(ds_store_begin(b, &tb), 0);
        for (int i = 0; i < 1 + t * 37; i++) {
            char text[256] = "";
            uint8_t r[12];
            ds_test_random(r, sizeof r);
            for (int w = 0; w < 12; w++) {
                strcat(text, words[r[w] % 12]);
                strcat(text, r[w] & 0x80 ? " " : ", ");
            }
            ds_node na, nb;
            ds_test_make_node(&na, text, "/p");
            ds_node_init(&nb);
            assert_int_equal(ds_node_copy(&nb, &na), 0);
            assert_int_equal(ds_wtxn_put(ta, &na), 0);
            assert_int_equal(ds_wtxn_put(tb, &nb), 0);
            ds_node_free(&na);
            ds_node_free(&nb);
        }
        assert_int_equal(ds_wtxn_commit(ta), 0);
        assert_int_equal(ds_wtxn_commit(tb), 0);
    }
    assert_same_search(a, b, words, sizeof words / sizeof *words);
    ds_store_close(a);
    ds_store_close(b);
}

/* Turns a fresh store into what schema 1 left on disk: the same nodes,
 * the old index tables instead of segments, schema 1. */
static void make_schema1(const char *dir)
{
    static const char *const gone[] = { "segs", "segdata", "dead", "dterm" };
    static const char *const old[] = { "postings", "terms" };
    ds_test_old_layout(dir, 1, gone, 4, old, 2, NULL);
}

static void migrates_schema1(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir, 0);
    ds_node a, b;
    put_text(st, &a, "migration keeps nodes searchable");
    put_text(st, &b, "second node about migration");
    ds_store_close(st);
    make_schema1(dir);
    st = open_at(dir, 0);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.schema, DS_STORE_SCHEMA);
    assert_int_equal(info.node_count, 2);
    assert_int_equal(ds_test_count_hits(st, "migration"), 2);
    assert_int_equal(ds_test_count_hits(st, "searchable"), 1);
    assert_int_equal(ds_test_df(st, "node"), 2);
    ds_node c;
    put_text(st, &c, "written after migration");
    assert_int_equal(ds_test_count_hits(st, "migration"), 3);
    ds_store_close(st);
    /* The old tables are gone. */
    static const char *const old_tables[] = { "postings", "terms" };
    assert_int_equal(ds_test_tables_present(dir, old_tables, 2), 0);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_node_free(&c);
}

/* ---- segment format 2: docs tables and ordinals ------------------------ */

/* A document as the test knows it. */
typedef struct tdoc { uint64_t seq; uint8_t id[DS_ID_LEN]; char *text; int deleted; } tdoc;

typedef struct tcount { const char *term; size_t len; uint32_t tf, ntok; } tcount;

static int tcount_cb(const char *t, size_t l, void *ud)
{
    tcount *c = ud;
    c->ntok++;
    if (c->term && l == c->len && memcmp(t, c->term, l) == 0) c->tf++;
    return 0;
}

/* |term|'s frequency in |text| and the text's length in tokens, capped
 * as the index caps them. */
static void expected(ds_tokenizer *tok, const char *text, const char *term, uint32_t *tf, uint32_t *dl)
{
    tcount c = { term, term ? strlen(term) : 0, 0, 0 };
    assert_int_equal(ds_tokenize(tok, text, strlen(text), tcount_cb, &c), 0);
    *tf = c.tf > 255 ? 255 : c.tf;
    *dl = c.ntok > 65535 ? 65535 : c.ntok;
}

static const tdoc *doc_by_seq(const tdoc *d, size_t n, uint64_t seq)
{
    for (size_t i = 0; i < n; i++) if (d[i].seq == seq) return &d[i];
    return NULL;
}

/* Checks the whole index against |d|: each segment's docs table is
 * strictly increasing within its seq range, lists exactly the documents
 * not yet purged (live ones once each), with their lengths; each posting
 * of each of |terms| points at a document holding the term, with its tf,
 * in increasing ordinal order.  Returns the number of segments. */
static size_t check_index(ds_store *st, const tdoc *d, size_t nd, const char *const *terms, size_t nterms)
{
    ds_tokenizer *tok;
    assert_int_equal(ds_tokenizer_new(&tok), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    ds_segview *segs;
    size_t n;
    assert_int_equal(ds__segs_load(st, txn, &segs, &n), 0);
    int *seen = calloc(nd ? nd : 1, sizeof *seen);
    for (size_t j = 0; j < n; j++) {
        const ds_segview *s = &segs[j];
        assert_true(s->last_seq - s->first_seq <= UINT32_MAX);
        assert_true(s->ndocs <= (st->seg_max_docs ? st->seg_max_docs : DS_SEG_MAX_DOCS));
        for (uint32_t i = 0; i < s->ndocs; i++) {
            uint64_t seq = DS_SEG_DOC_SEQ(s, i);
            assert_true(seq >= s->first_seq && seq <= s->last_seq);
            if (i) assert_true(seq > DS_SEG_DOC_SEQ(s, i - 1));
            const tdoc *t = doc_by_seq(d, nd, seq);
            assert_non_null(t);
            seen[t - d]++;
            uint32_t tf, dl;
            expected(tok, t->text, NULL, &tf, &dl);
            assert_int_equal(DS_SEG_DOC_LEN(s, i), dl);
        }
    }
    for (size_t i = 0; i < nd; i++) {
        if (!d[i].deleted) { assert_int_equal(seen[i], 1); continue; }
        int dead;
        assert_int_equal(ds__dead_has(st, txn, d[i].seq, &dead), 0);
        assert_int_equal(seen[i], dead);      /* purged with its dead record */
    }
    for (size_t k = 0; k < nterms; k++) {
        uint64_t live = 0, want = 0;
        for (size_t j = 0; j < n; j++) {
            const uint8_t *p;
            uint32_t cnt;
            assert_int_equal(ds__seg_find(st, txn, &segs[j], terms[k], strlen(terms[k]), &p, &cnt), 0);
            for (uint32_t i = 0; i < cnt; i++) {
                uint32_t ord = DS_POST_ORD(p + (size_t)i * DS_POSTING_LEN);
                assert_true(ord < segs[j].ndocs);
                if (i) assert_true(ord > DS_POST_ORD(p + (size_t)(i - 1) * DS_POSTING_LEN));
                const tdoc *t = doc_by_seq(d, nd, DS_SEG_DOC_SEQ(&segs[j], ord));
                uint32_t tf, dl;
                expected(tok, t->text, terms[k], &tf, &dl);
                assert_true(tf > 0);
                assert_int_equal(DS_POST_TF(p + (size_t)i * DS_POSTING_LEN), tf);
                live += !t->deleted;
            }
        }
        for (size_t i = 0; i < nd; i++) {
            uint32_t tf, dl;
            if (d[i].deleted) continue;
            expected(tok, d[i].text, terms[k], &tf, &dl);
            want += tf > 0;
        }
        assert_int_equal(live, want);
    }
    free(seen);
    free(segs);
    mdb_txn_abort(txn);
    ds_tokenizer_free(tok);
    return n;
}

static const char *const VOCAB[] = { "apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu" };
#define NVOCAB (sizeof VOCAB / sizeof *VOCAB)

/* A text of 1..12 vocabulary words (repeats give tf > 1). */
static char *random_text(void)
{
    uint8_t r[13];
    ds_test_random(r, sizeof r);
    char *t = calloc(1, 13 * 8);
    for (int w = 0; w < 1 + r[0] % 12; w++) {
        strcat(t, VOCAB[r[w + 1] % NVOCAB]);
        strcat(t, " ");
    }
    return t;
}

/* Commits |per| random documents, recording them in d[*nd..]. */
static void commit_random(ds_store *st, tdoc *d, size_t *nd, int per)
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int i = 0; i < per; i++) {
        ds_node n;
        d[*nd].text = random_text();
        ds_test_make_node(&n, d[*nd].text, "/p");
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        d[*nd].seq = n.seq;
        memcpy(d[*nd].id, n.id, DS_ID_LEN);
        d[*nd].deleted = 0;
        assert_true(d[*nd].seq != 0);
        (*nd)++;
        ds_node_free(&n);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

static void free_docs(tdoc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) free(d[i].text);
    free(d);
}

/* Deletes document |i|. */
static void delete_doc(ds_store *st, tdoc *d, size_t i)
{
    assert_int_equal(ds_store_delete(st, d[i].id), 0);
    d[i].deleted = 1;
}

/* Postings and docs tables read back what was indexed, through merges
 * that drop deleted documents and renumber the rest. */
static void ordinals_survive_merges_with_deletes(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { COMMITS = 40, PER = 6 };
    tdoc *d = calloc(COMMITS * PER + 2, sizeof *d);
    size_t nd = 0;
    ds_test_seed(99);
    /* tf and length caps: 300 x "apple" (tf 255), 70000 tokens (dl 65535) */
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int big = 0; big < 2; big++) {
        size_t words = big ? 70000 : 300;
        char *t = malloc(words * 6 + 1);
        for (size_t w = 0; w < words; w++) memcpy(t + w * 6, big && w % 2 ? "kiwi  " : "apple ", 6);
        t[words * 6] = 0;
        d[nd].text = t;
        ds_node n;
        ds_test_make_node(&n, t, "/p");
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        d[nd].seq = n.seq;
        d[nd++].deleted = 0;
        ds_node_free(&n);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    check_index(st, d, nd, VOCAB, NVOCAB);
    size_t deleted = 0, purged_seen = 0;
    for (int c = 0; c < COMMITS; c++) {
        commit_random(st, d, &nd, PER);
        if (c % 3 == 2) {                    /* delete an older document */
            uint8_t r[2];
            ds_test_random(r, 2);
            size_t i = 2 + ((size_t)r[0] << 8 | r[1]) % (nd - 2);
            if (!d[i].deleted) { delete_doc(st, d, i); deleted++; }
        }
        segstat s = layout(st, "apple");
        if (s.dead < deleted) purged_seen = 1;      /* a merge dropped dead documents */
        assert_true(check_index(st, d, nd, VOCAB, NVOCAB) <= (size_t)DS_SEG_FANOUT * 3 + 1);
    }
    assert_true(deleted >= 5);
    assert_true(purged_seen);
    for (size_t w = 0; w < NVOCAB; w++) {
        uint64_t want = 0;
        for (size_t i = 0; i < nd; i++) want += !d[i].deleted && strstr(d[i].text, VOCAB[w]) != NULL;
        assert_int_equal(ds_test_df(st, VOCAB[w]), want);
    }
    free_docs(d, nd);
    ds_store_close(st);
}

/* A merge whose result would hold more than the ordinal limit (lowered
 * here) is skipped; the segments stay valid and searchable, and merging
 * resumes once the limit allows it. */
static void merge_past_doc_limit_is_skipped(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { COMMITS = 12, PER = 8 };         /* class-1 segments; 8 of them = 64 docs */
    tdoc *d = calloc(COMMITS * PER + PER, sizeof *d);
    size_t nd = 0;
    ds_test_seed(5);
    st->seg_max_docs = 40;
    for (int c = 0; c < COMMITS; c++) {
        commit_random(st, d, &nd, PER);
        assert_int_equal(check_index(st, d, nd, VOCAB, NVOCAB), (size_t)c + 1);   /* no merge */
    }
    st->seg_max_docs = 0;
    commit_random(st, d, &nd, PER);
    size_t n = check_index(st, d, nd, VOCAB, NVOCAB);
    assert_true(n < COMMITS);                /* the tier merged */
    for (size_t w = 0; w < NVOCAB; w++) {
        uint64_t want = 0;
        for (size_t i = 0; i < nd; i++) want += strstr(d[i].text, VOCAB[w]) != NULL;
        assert_int_equal(ds_test_df(st, VOCAB[w]), want);
    }
    free_docs(d, nd);
    ds_store_close(st);
}

/* Docs-table offsets are 32 bits: segments on both sides of a seq gap
 * larger than that never merge together, while those after it still
 * merge among themselves. */
static void merge_across_seq_gap_is_skipped(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir, 0);
    enum { PER = 8 };
    tdoc *d = calloc(20 * PER, sizeof *d);
    size_t nd = 0;
    ds_test_seed(11);
    for (int c = 0; c < 4; c++) commit_random(st, d, &nd, PER);
    ds_store_close(st);
    /* Move the seq counter far ahead. */
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    MDB_txn *txn;
    MDB_dbi meta;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint8_t b[8];
    ds_put_be64(b, d[nd - 1].seq + (1ull << 32) + 7);
    MDB_val k = { 8, "last_seq" }, v = { 8, b };
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    st = open_at(dir, 0);
    size_t n = 0;
    for (int c = 0; c < 12; c++) {
        commit_random(st, d, &nd, PER);
        n = check_index(st, d, nd, VOCAB, NVOCAB);
    }
    assert_true(d[nd - 1].seq > (1ull << 32));
    /* 16 class-1 segments: the 8 oldest after the gap merged. */
    assert_true(n < 16);
    assert_int_equal(ds_test_count_hits(st, "apple pear plum fig kiwi lime date yuzu"), nd < 64 ? nd : 64);
    free_docs(d, nd);
    ds_store_close(st);
}

/* ---- compaction ---------------------------------------------------- */

static void empty_commit(ds_store *st)
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

/* In one transaction, kills documents which[0..k): when |replace|, those
 * at even positions get a new random text (same id, a new seq, recorded
 * at d[*nd..]), the rest are deleted.  Returns how many were replaced. */
static size_t kill_docs(ds_store *st, tdoc *d, size_t *nd, const size_t *which, size_t k, int replace)
{
    ds_node *n = calloc(k, sizeof *n);
    assert_non_null(n);
    for (size_t i = 0; i < k; i++) {
        assert_false(d[which[i]].deleted);
        assert_int_equal(ds_store_get(st, d[which[i]].id, &n[i]), 0);
    }
    ds_wtxn *tx;
    size_t replaced = 0;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (size_t i = 0; i < k; i++) {
        tdoc *t = &d[which[i]];
        t->deleted = 1;
        if (!replace || i % 2) {
            assert_int_equal(ds_wtxn_delete(tx, t->id), 0);
            continue;
        }
        tdoc *r = &d[(*nd)++];
        r->text = random_text();
        assert_int_equal(ds_node_set_content(&n[i], r->text, strlen(r->text)), 0);
        assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        r->seq = n[i].seq;
        memcpy(r->id, t->id, DS_ID_LEN);
        r->deleted = 0;
        replaced++;
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    for (size_t i = 0; i < k; i++) ds_node_free(&n[i]);
    free(n);
    return replaced;
}

/* A fresh store holding only the live documents of |d| (same ids and
 * texts, in the same seq order): what a compacted store must answer
 * like. */
static ds_store *live_only(const tdoc *d, size_t nd)
{
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (size_t i = 0; i < nd; i++) {
        if (d[i].deleted) continue;
        if (i) assert_true(d[i].seq > d[i - 1].seq);
        ds_node n;
        ds_test_make_node(&n, d[i].text, "/p");
        memcpy(n.id, d[i].id, DS_ID_LEN);
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        ds_node_free(&n);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    return st;
}

static size_t live_docs(const tdoc *d, size_t nd)
{
    size_t n = 0;
    for (size_t i = 0; i < nd; i++) n += !d[i].deleted;
    return n;
}

/* A store that stops growing but keeps replacing and deleting: one big
 * segment and a few small ones, which tiered merging leaves alone (no
 * segment is a quarter dead either).  While the dead are fewer than
 * 1/DS_SEG_DEAD_SHARE of the documents nothing is compacted, commit
 * after commit; the commit that reaches the share merges the segments
 * holding them, dropping every dead document (postings, docs-table
 * entries, dead records), and the store then answers exactly like one
 * that only ever held the live documents. */
static void compacts_once_an_eighth_is_dead(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { BIG = 520, SMALL = 3, PER = 8, N0 = BIG + SMALL * PER };
    tdoc *d = calloc(2 * N0, sizeof *d);
    size_t nd = 0;
    ds_test_seed(21);
    /* 65 commits of 8 end in one segment of 520 after a commit. */
    for (int c = 0; c < BIG / PER; c++) commit_random(st, d, &nd, PER);
    empty_commit(st);
    assert_int_equal(layout(st, "pear").nseg, 1);
    for (int c = 0; c < SMALL; c++) commit_random(st, d, &nd, PER);
    segstat s0 = layout(st, "pear");
    assert_int_equal(s0.nseg, 1 + SMALL);
    assert_int_equal(s0.docs, N0);

    /* Just below the share: dead records only, now and at later commits. */
    size_t which[N0], below = (N0 - 1) / DS_SEG_DEAD_SHARE;
    for (size_t k = 0; k < N0; k++) which[k] = k * 37 % N0;   /* spread over all segments */
    size_t replaced = kill_docs(st, d, &nd, which, below, 1);
    segstat s = layout(st, "pear");
    assert_int_equal(s.dead, below);
    assert_int_equal(s.nseg, s0.nseg + 1);                      /* + the replacements */
    assert_int_equal(s.docs, N0 + replaced);
    empty_commit(st);
    segstat s1 = layout(st, "pear");
    assert_int_equal(s1.dead, below);
    assert_int_equal(s1.docs, s.docs);
    assert_int_equal(s1.postings_of_term, s.postings_of_term);
    assert_int_equal(s1.oldest_id, s0.oldest_id);
    check_index(st, d, nd, VOCAB, NVOCAB);

    /* Reaching it (the replacements' segment now counts too): that
     * commit compacts. */
    size_t reach = (N0 + replaced + DS_SEG_DEAD_SHARE - 1) / DS_SEG_DEAD_SHARE;
    assert_true(s1.dead * DS_SEG_DEAD_SHARE < s1.docs && reach * DS_SEG_DEAD_SHARE >= s1.docs);
    kill_docs(st, d, &nd, which + below, reach - below, 1);
    s = layout(st, "pear");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.docs, live_docs(d, nd));
    assert_int_equal(s.postings_of_term, ds_test_df(st, "pear"));   /* no dead posting left */
    assert_true(s.postings_of_term < s1.postings_of_term);
    /* All dead sat in the four first segments: they became one; the
     * replacements' two segments hold none and stay. */
    assert_int_equal(s.nseg, 3);
    assert_true(s.oldest_id != s0.oldest_id);
    check_index(st, d, nd, VOCAB, NVOCAB);
    ds_store *ref = live_only(d, nd);
    assert_same_search(st, ref, VOCAB, NVOCAB);
    /* Nothing dead, nothing more to do. */
    empty_commit(st);
    segstat s2 = layout(st, "pear");
    assert_int_equal(s2.nseg, s.nseg);
    assert_int_equal(s2.oldest_id, s.oldest_id);
    ds_store_close(ref);
    free_docs(d, nd);
    ds_store_close(st);
}

/* Documents a transaction puts and deletes itself are in no committed
 * segment when its commit checks the share: buffered ones leave no dead
 * record, and those it already wrote as a segment of its own (past the
 * buffer limit, forced here) are not counted, so they cannot make that
 * commit compact.  The next commit counts them (their segment is then
 * committed) and compacts. */
static void own_deaths_do_not_compact(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { N0 = 64, KILL = N0 / DS_SEG_DEAD_SHARE - 1, OWN = 8, BUFFERED = 4 };
    tdoc *d = calloc(N0 + OWN + BUFFERED, sizeof *d);
    size_t nd = 0;
    ds_test_seed(22);
    commit_random(st, d, &nd, N0);
    size_t which[KILL];
    for (size_t k = 0; k < KILL; k++) which[k] = k * 9;
    kill_docs(st, d, &nd, which, KILL, 0);
    segstat s0 = layout(st, "pear");
    assert_int_equal(s0.nseg, 1);
    assert_int_equal(s0.dead, KILL);

    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (size_t i = 0; i < OWN + BUFFERED; i++) {
        ds_node n;
        d[nd].text = random_text();
        ds_test_make_node(&n, d[nd].text, "/p");
        if (i == OWN - 1) tx->pending_bytes = (size_t)1 << 40;   /* as if past the buffer limit */
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        d[nd].seq = n.seq;
        memcpy(d[nd].id, n.id, DS_ID_LEN);
        d[nd++].deleted = 1;
        ds_node_free(&n);
    }
    for (size_t i = N0; i < nd; i++) assert_int_equal(ds_wtxn_delete(tx, d[i].id), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    /* KILL + OWN dead of N0 + OWN documents would reach the share. */
    assert_true((KILL + OWN) * DS_SEG_DEAD_SHARE >= N0 + OWN);
    segstat s = layout(st, "pear");
    assert_int_equal(s.dead, KILL + OWN);
    assert_int_equal(s.nseg, 2);
    assert_int_equal(s.oldest_id, s0.oldest_id);
    assert_int_equal(s.docs, N0 + OWN);
    check_index(st, d, nd, VOCAB, NVOCAB);

    empty_commit(st);
    s = layout(st, "pear");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.nseg, 1);
    assert_int_equal(s.docs, N0 - KILL);
    check_index(st, d, nd, VOCAB, NVOCAB);
    ds_store *ref = live_only(d, nd);
    assert_same_search(st, ref, VOCAB, NVOCAB);
    ds_store_close(ref);
    free_docs(d, nd);
    ds_store_close(st);
}

/* The per-segment limit (lowered to 20 documents here): a compaction
 * merges only segments whose live documents fit one segment (all their
 * documents may be more), choosing the adjacent ones holding the most
 * dead; dead elsewhere stay, below the share, and later commits do not
 * try again. */
static void compaction_respects_doc_limit(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { PER = 8, SEGS = 6, N0 = PER * SEGS };
    tdoc *d = calloc(N0, sizeof *d);
    size_t nd = 0;
    ds_test_seed(23);
    st->seg_max_docs = 20;
    for (int c = 0; c < SEGS; c++) commit_random(st, d, &nd, PER);
    segstat s0 = layout(st, "pear");
    assert_int_equal(s0.nseg, SEGS);
    /* Dead per segment 3, 2, 2, 0, 0, 1: 8 of 48, the share.  All six
     * would fit without the limit (40 live); with it, segments 0-2 hold
     * the most dead (7) and their 17 live documents fit, while their 24
     * documents would not. */
    static const size_t which[] = { 0, 3, 6, PER + 1, PER + 5, 2 * PER + 2, 2 * PER + 7, 5 * PER + 4 };
    enum { KILLS = sizeof which / sizeof *which };
    assert_true(KILLS * DS_SEG_DEAD_SHARE >= N0);
    kill_docs(st, d, &nd, which, KILLS, 0);
    segstat s = layout(st, "pear");
    assert_int_equal(s.dead, 1);
    assert_int_equal(s.nseg, SEGS - 2);
    assert_int_equal(s.docs, N0 - (KILLS - 1));
    check_index(st, d, nd, VOCAB, NVOCAB);      /* every segment within the limit */
    MDB_txn *txn;
    ds_segview *segs;
    size_t n;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(ds__segs_load(st, txn, &segs, &n), 0);
    assert_int_equal(n, SEGS - 2);
    assert_int_equal(segs[0].ndocs, 3 * PER - 7);
    uint64_t newest = segs[n - 1].id;
    free(segs);
    mdb_txn_abort(txn);
    ds_store *ref = live_only(d, nd);
    assert_same_search(st, ref, VOCAB, NVOCAB);
    /* One dead of 41 documents: no further compaction. */
    empty_commit(st);
    segstat s2 = layout(st, "pear");
    assert_int_equal(s2.dead, 1);
    assert_int_equal(s2.nseg, s.nseg);
    assert_int_equal(s2.oldest_id, s.oldest_id);
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(ds__segs_load(st, txn, &segs, &n), 0);
    assert_int_equal(segs[n - 1].id, newest);
    free(segs);
    mdb_txn_abort(txn);
    ds_store_close(ref);
    free_docs(d, nd);
    ds_store_close(st);
}

/* A copy of one raw record of |dbi|. */
static uint8_t *raw_get(ds_store *st, int dbi, const void *key, size_t kl, size_t *len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    MDB_val k = { kl, (void *)key }, v;
    assert_int_equal(mdb_get(txn, st->dbi[dbi], &k, &v), 0);
    uint8_t *c = malloc(v.mv_size + 64);
    memcpy(c, v.mv_data, v.mv_size);
    *len = v.mv_size;
    mdb_txn_abort(txn);
    return c;
}

/* Writes (or, when |val| is NULL, deletes) one raw record of |dbi|. */
static void raw_put(ds_store *st, int dbi, const void *key, size_t kl, const void *val, size_t vl)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, 0, &txn), 0);
    MDB_val k = { kl, (void *)key }, v = { vl, (void *)val };
    if (val) assert_int_equal(mdb_put(txn, st->dbi[dbi], &k, &v, 0), 0);
    else assert_int_equal(mdb_del(txn, st->dbi[dbi], &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Loading the segments, and searching, fail with DS_ERR_STORE. */
static void assert_store_error(ds_store *st)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    ds_segview *segs = NULL;
    size_t n;
    assert_int_equal(ds__segs_load(st, txn, &segs, &n), DS_ERR_STORE);
    assert_null(segs);
    mdb_txn_abort(txn);
    ds_query *q;
    assert_int_equal(ds_query_parse("apple pear", 10, &q), 0);
    ds_hit hits[4];
    size_t nh;
    assert_int_equal(ds_search_multi(&st, 1, q, NULL, 4, hits, &nh), DS_ERR_STORE);
    ds_query_free(q);
}

/* Another format version, short headers, bad seq ranges, docs tables of
 * the wrong size or missing, and postings pointing outside the docs
 * table are DS_ERR_STORE, never crashes. */
static void corrupt_segments_are_errors(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    tdoc *d = calloc(8, sizeof *d);
    size_t nd = 0;
    ds_test_seed(3);
    commit_random(st, d, &nd, 8);
    assert_int_equal(check_index(st, d, nd, VOCAB, NVOCAB), 1);
    size_t before = ds_test_count_hits(st, "apple pear");
    assert_true(before > 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    ds_segview *segs;
    size_t n;
    assert_int_equal(ds__segs_load(st, txn, &segs, &n), 0);
    uint64_t id = segs[0].id, first = segs[0].first_seq;
    uint32_t ndocs = segs[0].ndocs;
    free(segs);
    mdb_txn_abort(txn);
    uint8_t sk[8], dk[12], pk[12];
    ds_put_be64(sk, id);
    ds_put_be64(dk, id);
    ds_put_be32(dk + 8, DS_SEG_DOCS_PART);
    ds_put_be64(pk, id);
    ds_put_be32(pk + 8, 1);
    size_t hl, dl, pl;
    uint8_t *hdr = raw_get(st, DBI_SEGS, sk, 8, &hl), *docs = raw_get(st, DBI_SEGDATA, dk, 12, &dl);
    uint8_t bad[128];
    assert_true(hl <= 64 && dl == (size_t)ndocs * DS_DOC_ENT_LEN);
    /* format versions 1 and 3 */
    for (uint32_t ver = 1; ver <= 3; ver += 2) {
        memcpy(bad, hdr, hl);
        memcpy(bad, &ver, 4);
        raw_put(st, DBI_SEGS, sk, 8, bad, hl);
        assert_store_error(st);
    }
    /* short header */
    raw_put(st, DBI_SEGS, sk, 8, hdr, hl - 1);
    assert_store_error(st);
    /* a seq range docs-table offsets cannot cover */
    memcpy(bad, hdr, hl);
    uint64_t last = first + (1ull << 32);
    memcpy(bad + 16, &last, 8);
    raw_put(st, DBI_SEGS, sk, 8, bad, hl);
    assert_store_error(st);
    /* ndocs disagreeing with the docs table */
    memcpy(bad, hdr, hl);
    uint32_t more = ndocs + 1;
    memcpy(bad + 24, &more, 4);
    raw_put(st, DBI_SEGS, sk, 8, bad, hl);
    assert_store_error(st);
    raw_put(st, DBI_SEGS, sk, 8, hdr, hl);
    /* docs table short, long, missing */
    raw_put(st, DBI_SEGDATA, dk, 12, docs, dl - 1);
    assert_store_error(st);
    memset(docs + dl, 0, DS_DOC_ENT_LEN);
    raw_put(st, DBI_SEGDATA, dk, 12, docs, dl + DS_DOC_ENT_LEN);
    assert_store_error(st);
    raw_put(st, DBI_SEGDATA, dk, 12, NULL, 0);
    assert_store_error(st);
    raw_put(st, DBI_SEGDATA, dk, 12, docs, dl);
    assert_int_equal(ds_test_count_hits(st, "apple pear"), before);   /* restored */
    /* postings naming ordinals past the docs table: search and merge fail */
    uint8_t *part = raw_get(st, DBI_SEGDATA, pk, 12, &pl);
    assert_true(pl % DS_POSTING_LEN == 0);
    for (size_t i = 0; i < pl; i += DS_POSTING_LEN) {
        part[i] = (uint8_t)(ndocs >> 16);
        part[i + 1] = (uint8_t)(ndocs >> 8);
        part[i + 2] = (uint8_t)ndocs;
    }
    raw_put(st, DBI_SEGDATA, pk, 12, part, pl);
    ds_query *q;
    assert_int_equal(ds_query_parse("apple pear", 10, &q), 0);
    ds_hit hits[4];
    size_t nh;
    assert_int_equal(ds_search_multi(&st, 1, q, NULL, 4, hits, &nh), DS_ERR_STORE);
    ds_query_free(q);
    int failed = 0;
    for (int c = 0; c < 10 && !failed; c++) {      /* until the tier including it merges */
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = 0; i < 8; i++) {
            ds_node nn;
            ds_test_make_node(&nn, "apple fig", "/p");
            assert_int_equal(ds_wtxn_put(tx, &nn), 0);
            ds_node_free(&nn);
        }
        int rc = ds_wtxn_commit(tx);
        if (rc) { assert_int_equal(rc, DS_ERR_STORE); failed = 1; }
    }
    assert_true(failed);
    free(part);
    free(hdr);
    free(docs);
    free_docs(d, nd);
    ds_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_keep_segments_few),
        cmocka_unit_test(merges_do_not_rewrite_big_segments_often),
        cmocka_unit_test(long_shared_prefixes),
        cmocka_unit_test(deletes_are_exact_then_purged),
        cmocka_unit_test(replace_within_transaction),
        cmocka_unit_test(worker_matches_inline),
        cmocka_unit_test(migrates_schema1),
        cmocka_unit_test(ordinals_survive_merges_with_deletes),
        cmocka_unit_test(merge_past_doc_limit_is_skipped),
        cmocka_unit_test(merge_across_seq_gap_is_skipped),
        cmocka_unit_test(compacts_once_an_eighth_is_dead),
        cmocka_unit_test(own_deaths_do_not_compact),
        cmocka_unit_test(compaction_respects_doc_limit),
        cmocka_unit_test(corrupt_segments_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
