/*
 * store.c - the LMDB knowledge store (see include/ds/store.h and
 * docs/storage.md).  Nodes are keyed by their store-local sequence
 * number, so new writes append and sync cursors are plain seq ranges; ids
 * and sources map to sequences through sorted runs (runs.c); project
 * lookups are a duplicate-sorted table keyed by the project string.  The
 * search index (index.c) lives in the same environment and is written in
 * the same transaction.
 */
#include "core/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ds/error.h"
#include "core/util.h"

#define DEFAULT_MAP_SIZE (64ull << 30)
#define KEY_HASH_LEN 16
#define STR_KEY_MAX 480      /* longer strings: prefix + marker + hash */
#define STR_KEY_CAP (STR_KEY_MAX + 1)

static const char *dbi_names[DBI_COUNT] = {
    "meta", "nodes", "runs", "rundata", "by_project", "segs", "segdata", "dead", "dterm",
    "rundead", "id_filter", "aux_files", "aux_transcripts", "aux_queue", "aux_cursors",
};
static const unsigned dbi_flags[DBI_COUNT] = {
    [DBI_PROJECT] = MDB_DUPSORT | MDB_DUPFIXED,
};

int ds__lmdb_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return DS_ERR_NOTFOUND;
    case MDB_KEYEXIST: return DS_ERR_EXISTS;
    case MDB_MAP_FULL: return DS_ERR_FULL;
    case ENOMEM: return DS_ERR_NOMEM;
    case EACCES: case ENOENT: case EROFS: case ENOSPC: case EIO: return DS_ERR_IO;
    case EAGAIN: case EBUSY: return DS_ERR_BUSY;
    default: return DS_ERR_STORE;
    }
}

/* Steps |cur| from |op| while its seq key is outside [first, last],
 * counting the records passed. */
static int seqs_outside(MDB_cursor *cur, MDB_cursor_op op, MDB_cursor_op next, uint64_t first,
                        uint64_t last, uint64_t *n)
{
    MDB_val k, d;
    int mrc = mdb_cursor_get(cur, &k, &d, op);
    *n = 0;
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &d, next)) {
        if (k.mv_size != 8) return DS_ERR_STORE;
        uint64_t s = ds_get_be64(k.mv_data);
        if (s >= first && s <= last) break;
        (*n)++;
    }
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : ds__lmdb_err(mrc);
}

int ds__dead_in_range(MDB_txn *txn, MDB_dbi dbi, uint64_t first, uint64_t last, uint64_t *dead)
{
    MDB_stat ms;
    int rc = ds__lmdb_err(mdb_stat(txn, dbi, &ms));
    if (rc) return rc;
    *dead = ms.ms_entries;
    if (!*dead) return 0;
    MDB_cursor *cur;
    if ((rc = ds__lmdb_err(mdb_cursor_open(txn, dbi, &cur)))) return rc;
    uint64_t above = 0, below = 0;
    rc = seqs_outside(cur, MDB_LAST, MDB_PREV, first, last, &above);
    if (!rc && above < *dead) rc = seqs_outside(cur, MDB_FIRST, MDB_NEXT, first, last, &below);
    mdb_cursor_close(cur);
    *dead -= above + below <= *dead ? above + below : *dead;
    return rc;
}

int ds__store_write_check(ds_store *st)
{
    if (st->fail_after > 0 && --st->fail_after == 0) return DS_ERR_INJECTED;
    return 0;
}

void ds_store_fail_after(ds_store *st, int n)
{
    st->fail_after = n > 0 ? n : 0;
}

/* ---- meta -------------------------------------------------------------- */

static int meta_get_u64(ds_store *st, MDB_txn *txn, const char *key, uint64_t *v)
{
    MDB_val k = { strlen(key), (void *)key }, d;
    int rc = mdb_get(txn, st->dbi[DBI_META], &k, &d);
    if (rc == MDB_NOTFOUND) { *v = 0; return 0; }
    if (rc) return ds__lmdb_err(rc);
    if (d.mv_size != 8) return DS_ERR_STORE;
    *v = ds_get_be64(d.mv_data);
    return 0;
}

static int meta_put(ds_store *st, MDB_txn *txn, const char *key, const void *val, size_t len)
{
    MDB_val k = { strlen(key), (void *)key }, d = { len, (void *)val };
    return ds__lmdb_err(mdb_put(txn, st->dbi[DBI_META], &k, &d, 0));
}

static int meta_put_u64(ds_store *st, MDB_txn *txn, const char *key, uint64_t v)
{
    uint8_t b[8];
    ds_put_be64(b, v);
    return meta_put(st, txn, key, b, 8);
}

static const char *type_keys[DS_SOURCE_TYPE_COUNT] = { "count_session", "count_file", "count_note" };

int ds__counters_read(ds_store *st, MDB_txn *txn, ds_counters *c)
{
    int rc;
    if ((rc = meta_get_u64(st, txn, "last_seq", &c->last_seq)) ||
        (rc = meta_get_u64(st, txn, "docs", &c->docs)) ||
        (rc = meta_get_u64(st, txn, "total_len", &c->total_len)) ||
        (rc = meta_get_u64(st, txn, "next_seg", &c->next_seg)) ||
        (rc = meta_get_u64(st, txn, "index_gen", &c->index_gen)))
        return rc;
    for (int i = 0; i < DS_SOURCE_TYPE_COUNT; i++)
        if ((rc = meta_get_u64(st, txn, type_keys[i], &c->by_type[i]))) return rc;
    return 0;
}

static int counters_write(ds_store *st, MDB_txn *txn, const ds_counters *c)
{
    int rc;
    if ((rc = meta_put_u64(st, txn, "last_seq", c->last_seq)) ||
        (rc = meta_put_u64(st, txn, "docs", c->docs)) ||
        (rc = meta_put_u64(st, txn, "total_len", c->total_len)) ||
        (rc = meta_put_u64(st, txn, "next_seg", c->next_seg)) ||
        (rc = meta_put_u64(st, txn, "index_gen", c->index_gen)))
        return rc;
    for (int i = 0; i < DS_SOURCE_TYPE_COUNT; i++)
        if ((rc = meta_put_u64(st, txn, type_keys[i], c->by_type[i]))) return rc;
    return 0;
}

/* ---- the data file ----------------------------------------------------- */

/* LMDB reads pages through a memory map of data.mdb.  Reading a page past
 * the end of the file raises SIGBUS, so a file cut short while a store
 * has it open (truncated by hand, copied over in place, damaged) would
 * kill the process at its next read instead of failing it.  Every
 * transaction the store begins therefore first compares the file's size
 * (fstat) with what the database spans: the two meta pages, which
 * beginning a transaction reads, then every page up to the newest meta
 * page's last one (mdb_env_info), which covers every page a transaction
 * begun now can reach.  A shorter file is DS_ERR_SHORT and is not read.
 * The cost is one fstat per transaction.
 *
 * LMDB itself may leave the file shorter than that: pages a transaction
 * takes from the end of the file and frees again before committing (a
 * large record written, then replaced) are never written (LMDB
 * ITS#7886).  They are free and never read, but would fail the check, so
 * every commit here extends the file over them (fallocate, which never
 * shrinks it; else ftruncate under LMDB's writer lock), holding grow_lock, which a transaction of another thread
 * that meets a short file takes before looking again.
 *
 * Known limits: a file cut short after the check, while a transaction
 * reads it, can still raise SIGBUS (closing that window would take a
 * SIGBUS handler around every read through the map); a process other than
 * the writer's that begins a transaction between an LMDB commit and the
 * extension after it waits up to 20 ms for the extension and, past that,
 * sees a short file (a spurious DS_ERR_SHORT, never a crash), as does
 * every transaction on a store whose last commit, by a
 * ds without this extension, left such pages (docs/storage.md); only the
 * file's size is checked, never its content.  search.c begins its
 * transactions through ds__store_begin too. */

#define SHORT_RECHECKS 4
#define SHORT_RECHECK_NS 5000000L

/* The data file's size and the bytes the database spans.  Without its
 * meta pages, the span last seen (for messages: too short either way). */
static int file_span(ds_store *st, uint64_t *size, uint64_t *need)
{
    struct stat sb;
    if (fstat(st->fd, &sb) != 0) return DS_ERR_IO;
    *size = (uint64_t)sb.st_size;
    *need = 2 * st->psize;                 /* the meta pages */
    if (*size >= *need) {
        MDB_envinfo ei;                    /* reads a meta page: present */
        if (mdb_env_info(st->env, &ei) != 0) return DS_ERR_STORE;
        *need = ((uint64_t)ei.me_last_pgno + 1) * st->psize;
        __atomic_store_n(&st->span, *need, __ATOMIC_RELAXED);
    } else {
        uint64_t seen = __atomic_load_n(&st->span, __ATOMIC_RELAXED);
        if (seen > *need) *need = seen;
    }
    return 0;
}

int ds_store_check(ds_store *st, uint64_t *file_bytes, uint64_t *used_bytes)
{
    uint64_t size = 0, need = 0;
    int rc = file_span(st, &size, &need);
    if (!rc && size < need) {
        /* A commit of another thread may be extending it: wait, look again. */
        pthread_mutex_lock(&st->grow_lock);
        rc = file_span(st, &size, &need);
        pthread_mutex_unlock(&st->grow_lock);
    }
    /* A commit of another process extends the file just after LMDB's
     * commit, outside any lock this process can take: give it a moment
     * (at most SHORT_RECHECKS * SHORT_RECHECK_NS) before calling the
     * file short.  A file really cut short costs only this delay. */
    for (int i = 0; !rc && size < need && i < SHORT_RECHECKS; i++) {
        struct timespec ts = { 0, SHORT_RECHECK_NS };
        nanosleep(&ts, NULL);
        rc = file_span(st, &size, &need);
    }
    if (file_bytes) *file_bytes = size;
    if (used_bytes) *used_bytes = need;
    if (rc) return rc;
    return size < need ? DS_ERR_SHORT : 0;
}

int ds_store_replaced(ds_store *st)
{
    char datafile[4096];
    struct stat open_sb, path_sb;
    if (fstat(st->fd, &open_sb) != 0) return DS_ERR_IO;
    if (snprintf(datafile, sizeof datafile, "%s/data.mdb", st->path) >= (int)sizeof datafile)
        return DS_ERR_INVALID;
    if (stat(datafile, &path_sb) != 0) return 1;
    return path_sb.st_dev != open_sb.st_dev || path_sb.st_ino != open_sb.st_ino;
}

int ds__store_begin(ds_store *st, unsigned flags, MDB_txn **txn)
{
    *txn = NULL;
    int rc = ds_store_check(st, NULL, NULL);
    if (rc) return rc;
    return ds__lmdb_err(mdb_txn_begin(st->env, NULL, flags, txn));
}

/* Commits write transaction |txn|, then extends the file over the pages
 * LMDB left unwritten past its end, if any (above).  An extension that
 * fails leaves the commit done and the store reported as damaged. */
/* Where fallocate fails (a file system without it, no space for the
 * blocks): the file grows with ftruncate (a hole: no space needed) while
 * an LMDB write transaction, begun for it, shuts out every writer of every
 * process, so nothing past |need| can have been written meanwhile. */
static void extend_as_writer(ds_store *st)
{
    MDB_txn *w;
    if (mdb_txn_begin(st->env, NULL, 0, &w) != 0) return;
    uint64_t size, need;
    if (file_span(st, &size, &need) == 0 && size < need &&
        ftruncate(st->fd, (off_t)need) == 0)
        fdatasync(st->fd);
    mdb_txn_abort(w);
}

static int commit_write(ds_store *st, MDB_txn *txn)
{
    pthread_mutex_lock(&st->grow_lock);
    int rc = ds__lmdb_err(mdb_txn_commit(txn));
    uint64_t size, need;
    int fallback = 0;
    if (!rc && file_span(st, &size, &need) == 0 && size < need) {
        /* fallocate only ever grows the file: a writer of another process
         * may have written past |need| since the fstat (ftruncate would
         * cut that off).  The new size is made durable: a store whose
         * size fell back after a crash would read as cut short. */
        if (fallocate(st->fd, 0, (off_t)size, (off_t)(need - size)) == 0)
            fdatasync(st->fd);
        else
            fallback = 1;
    }
    pthread_mutex_unlock(&st->grow_lock);
    if (fallback)   /* not under grow_lock: LMDB's writer lock comes first */
        extend_as_writer(st);
    return rc;
}

/* ---- open / close ------------------------------------------------------ */

static int open_dbis(ds_store *st, MDB_txn *txn, unsigned create)
{
    for (int i = 0; i < DBI_COUNT; i++) {
        int rc = mdb_dbi_open(txn, dbi_names[i], dbi_flags[i] | create, &st->dbi[i]);
        if (rc) return rc;
    }
    return 0;
}

/* First open of a new store: schema and epoch. */
static int init_meta(ds_store *st, MDB_txn *txn, const ds_store_opts *o)
{
    MDB_val k = { 6, "schema" }, d;
    int rc = mdb_get(txn, st->dbi[DBI_META], &k, &d);
    if (rc == 0) return 0;
    if (rc != MDB_NOTFOUND) return ds__lmdb_err(rc);
    if (!o || !o->epoch_seed) return DS_ERR_INVALID;
    uint8_t s[4];
    ds_put_be32(s, DS_STORE_SCHEMA);
    if ((rc = meta_put(st, txn, "schema", s, 4)) ||
        (rc = meta_put(st, txn, "epoch", o->epoch_seed, DS_EPOCH_LEN)))
        return rc;
    ds_counters c = { 0 };
    return counters_write(st, txn, &c);
}

static int check_schema(ds_store *st, MDB_txn *txn, uint32_t *schema)
{
    MDB_val k = { 6, "schema" }, d;
    int rc = mdb_get(txn, st->dbi[DBI_META], &k, &d);
    if (rc) return ds__lmdb_err(rc);
    if (d.mv_size != 4) return DS_ERR_STORE;
    *schema = ds_get_be32(d.mv_data);
    if (*schema > DS_STORE_SCHEMA) return DS_ERR_SCHEMA;
    return 0;
}

/* Schema 1 kept a term-clustered index (tables "postings" and "terms"),
 * schemas 1-3 kept ids and sources in B-trees ("ids", "by_source" and
 * their "_delta" tables), and segments before schema 4 had 8-byte
 * postings.  Nodes are unchanged: drop every derived table, then index
 * every node again and rebuild the runs, in one transaction. */
static int migrate(ds_store *st)
{
    ds_wtxn *tx;
    int rc = ds_store_begin(st, &tx);
    if (rc) return rc;
    static const char *const old[] = { "postings", "terms", "ids", "ids_delta", "by_source",
                                       "by_source_delta" };
    for (size_t i = 0; i < sizeof old / sizeof *old && !rc; i++) {
        MDB_dbi dbi;
        int orc = mdb_dbi_open(tx->txn, old[i], 0, &dbi);
        if (orc == 0) rc = ds__lmdb_err(mdb_drop(tx->txn, dbi, 1));
        else if (orc != MDB_NOTFOUND) rc = ds__lmdb_err(orc);
    }
    static const int derived[] = { DBI_SEGS, DBI_SEGDATA, DBI_DEAD, DBI_DTERM, DBI_RUNS,
                                   DBI_RUNDATA, DBI_RUNDEAD, DBI_IDFILTER };
    for (size_t i = 0; i < sizeof derived / sizeof *derived && !rc; i++)
        rc = ds__lmdb_err(mdb_drop(tx->txn, st->dbi[derived[i]], 0));
    MDB_val tk = { 5, "terms" };
    if (!rc) {
        int drc = mdb_del(tx->txn, st->dbi[DBI_META], &tk, NULL);
        if (drc && drc != MDB_NOTFOUND) rc = ds__lmdb_err(drc);
    }
    tx->c.total_len = 0;
    MDB_cursor *cur = NULL;
    if (!rc) rc = ds__lmdb_err(mdb_cursor_open(tx->txn, st->dbi[DBI_NODES], &cur));
    MDB_val k, d;
    int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    while (!rc && mrc == 0) {
        ds_node n;
        if (k.mv_size != 8) { rc = DS_ERR_STORE; break; }
        uint64_t seq = ds_get_be64(k.mv_data);
        rc = ds_node_decode(d.mv_data, d.mv_size, &n);
        if (rc) { rc = rc == DS_ERR_NOMEM ? rc : DS_ERR_STORE; break; }
        uint32_t dl = 0;
        rc = ds__index_add(tx, seq, n.content, n.content_len, &dl);
        if (!rc) rc = ds__runs_add(tx, n.id, n.source, seq);
        tx->c.total_len += dl;
        ds_node_free(&n);
        if (!rc) mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    if (cur) mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    uint8_t sv[4];
    ds_put_be32(sv, DS_STORE_SCHEMA);
    if (!rc) rc = meta_put(st, tx->txn, "schema", sv, 4);
    if (rc) { ds_wtxn_abort(tx); return rc; }
    return ds_wtxn_commit(tx);
}

int ds_store_open(ds_store **out, const char *dir, const ds_store_opts *opts)
{
    *out = NULL;
    char datafile[4096];
    if (snprintf(datafile, sizeof datafile, "%s/data.mdb", dir) >= (int)sizeof datafile)
        return DS_ERR_INVALID;
    struct stat sb;
    int exists = stat(datafile, &sb) == 0;
    if (!exists) {
        if (opts && opts->no_create) return DS_ERR_NOTFOUND;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) return DS_ERR_IO;
    }
    /* An empty data file is one cut to nothing: LMDB would write a new
     * environment into it, which only creating may do. */
    if (exists && sb.st_size == 0 && opts && opts->no_create) return DS_ERR_SHORT;
    ds_store *st = calloc(1, sizeof *st);
    if (!st) return DS_ERR_NOMEM;
    pthread_mutex_init(&st->grow_lock, NULL);
    int rc = DS_ERR_NOMEM;
    if (!(st->path = strdup(dir))) goto fail_alloc;
    st->no_iworker = opts && opts->no_index_thread;
    st->idf_min_cap = DS_IDF_MIN_CAP;
    if ((rc = ds_tokenizer_new(&st->tok))) goto fail_alloc;
    if ((rc = ds__lmdb_err(mdb_env_create(&st->env)))) goto fail_alloc;
    mdb_env_set_maxdbs(st->env, DBI_COUNT + 4);
    mdb_env_set_mapsize(st->env, opts && opts->map_size ? opts->map_size : DEFAULT_MAP_SIZE);
    /* MDB_NOMETASYNC: one flush per commit instead of two; a system crash
     * (not a process crash) may undo the last commit, never corrupt. */
    if ((rc = mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600))) {
        rc = rc == ENOENT || rc == EACCES ? DS_ERR_IO : ds__lmdb_err(rc);
        /* Not even its two meta pages (LMDB's page is the system's). */
        if (rc == DS_ERR_STORE && exists && sb.st_size > 0 &&
            (uint64_t)sb.st_size < 2 * (uint64_t)sysconf(_SC_PAGESIZE))
            rc = DS_ERR_SHORT;
        goto fail_env;
    }
    int dead;
    mdb_reader_check(st->env, &dead);
    /* mdb_env_open has read both meta pages: the file has them. */
    MDB_stat ms;
    if ((rc = ds__lmdb_err(mdb_env_get_fd(st->env, &st->fd))) ||
        (rc = ds__lmdb_err(mdb_env_stat(st->env, &ms))))
        goto fail_env;
    st->psize = ms.ms_psize;

    /* Fast path: every table exists, a read transaction suffices (and
     * does not wait for a writer in another process). */
    MDB_txn *txn;
    if ((rc = ds__store_begin(st, MDB_RDONLY, &txn))) goto fail_env;
    uint32_t schema = 0;
    int orc = open_dbis(st, txn, 0), krc = DS_ERR_NOTFOUND;
    if (orc == 0 && (rc = check_schema(st, txn, &schema)) == 0 && schema == DS_STORE_SCHEMA &&
        (krc = ds__runs_open(st, txn, 0)) == 0) {
        rc = ds__lmdb_err(mdb_txn_commit(txn));
        if (rc) goto fail_env;
        *out = st;
        return 0;
    }
    mdb_txn_abort(txn);
    if (orc == 0 && rc) goto fail_env;          /* schema problem */
    if (krc != DS_ERR_NOTFOUND) { rc = krc; goto fail_env; }
    if (orc && orc != MDB_NOTFOUND) { rc = ds__lmdb_err(orc); goto fail_env; }

    /* New store, or an older schema: create what is missing, migrate. */
    if ((rc = ds__store_begin(st, 0, &txn))) goto fail_env;
    if ((rc = ds__lmdb_err(open_dbis(st, txn, MDB_CREATE))) ||
        (rc = init_meta(st, txn, opts)) ||
        (rc = check_schema(st, txn, &schema)) ||
        (rc = ds__runs_open(st, txn, 1))) {
        mdb_txn_abort(txn);
        goto fail_env;
    }
    if ((rc = commit_write(st, txn))) goto fail_env;
    if (schema < DS_STORE_SCHEMA) rc = migrate(st);
    if (rc) goto fail_env;
    *out = st;
    return 0;

fail_env:
    mdb_env_close(st->env);
fail_alloc:
    ds_tokenizer_free(st->tok);
    pthread_mutex_destroy(&st->grow_lock);
    free(st->path);
    free(st);
    return rc;
}

void ds_store_close(ds_store *st)
{
    if (!st) return;
    if (st->active) ds_wtxn_abort(st->active);
    ds__iw_stop(st);
    mdb_env_close(st->env);
    ds__postbuf_free(&st->pb);
    free(st->ahead.docs);
    ds_tokenizer_free(st->tok);
    pthread_mutex_destroy(&st->grow_lock);
    free(st->path);
    free(st);
}

const char *ds_store_path(const ds_store *st) { return st->path; }

/* The epoch record: 0, DS_ERR_STORE when absent or malformed, or an
 * LMDB error. */
static int read_epoch(ds_store *st, MDB_txn *txn, uint8_t epoch[DS_EPOCH_LEN])
{
    MDB_val k = { 5, "epoch" }, d;
    int mrc = mdb_get(txn, st->dbi[DBI_META], &k, &d);
    if (mrc == 0 && d.mv_size == DS_EPOCH_LEN) {
        memcpy(epoch, d.mv_data, DS_EPOCH_LEN);
        return 0;
    }
    return mrc && mrc != MDB_NOTFOUND ? ds__lmdb_err(mrc) : DS_ERR_STORE;
}

int ds_store_epoch(ds_store *st, uint8_t epoch[DS_EPOCH_LEN])
{
    MDB_txn *txn;
    int rc = ds__store_begin(st, MDB_RDONLY, &txn);
    if (rc) return rc;
    rc = read_epoch(st, txn, epoch);
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_node_count(ds_store *st, uint64_t *n)
{
    *n = 0;
    MDB_txn *txn;
    int rc = ds__store_begin(st, MDB_RDONLY, &txn);
    if (rc) return rc;
    ds_counters c;
    if (!(rc = ds__counters_read(st, txn, &c))) *n = c.docs;
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_info_get(ds_store *st, ds_store_info *out)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = ds__store_begin(st, MDB_RDONLY, &txn);
    if (rc) return rc;
    ds_counters c;
    rc = ds__counters_read(st, txn, &c);
    if (!rc) read_epoch(st, txn, out->epoch);   /* absent: left zero, as always */
    MDB_val ks = { 6, "schema" }, d;
    if (!rc && mdb_get(txn, st->dbi[DBI_META], &ks, &d) == 0 && d.mv_size == 4)
        out->schema = ds_get_be32(d.mv_data);
    /* Counting distinct terms walks every segment's dictionary: remember
     * the count for as long as the index does not change. */
    if (!rc && !(st->tc_valid && st->tc_gen == c.index_gen)) {
        uint64_t tc;
        if (!(rc = ds__index_term_count(st, txn, &tc))) {
            st->tc_valid = 1;
            st->tc_gen = c.index_gen;
            st->tc_value = tc;
        }
    }
    mdb_txn_abort(txn);
    if (rc) return rc;
    out->last_seq = c.last_seq;
    out->node_count = c.docs;
    out->term_count = st->tc_value;
    out->total_len = c.total_len;
    memcpy(out->count_by_type, c.by_type, sizeof c.by_type);
    char datafile[4096];
    struct stat sb;
    snprintf(datafile, sizeof datafile, "%s/data.mdb", st->path);
    if (stat(datafile, &sb) == 0) out->file_bytes = (uint64_t)sb.st_size;
    return 0;
}

/* ---- write transactions ------------------------------------------------ */

int ds_store_begin(ds_store *st, ds_wtxn **out) { return ds__store_begin_ahead(st, 0, out); }

int ds__store_begin_ahead(ds_store *st, uint64_t ticket, ds_wtxn **out)
{
    *out = NULL;
    if (st->active) return DS_ERR_BUSY;
    if (st->ahead.state == DS_AHEAD_PENDING) {
        if (ticket && ticket == st->ahead.ticket) {
            st->ahead.state = DS_AHEAD_ACTIVE;
            st->ahead.k = 0;
        } else {
            ds__ahead_forget(st);      /* another transaction: the guess is stale */
        }
    }
    ds_wtxn *tx = calloc(1, sizeof *tx);
    int rc = tx ? 0 : DS_ERR_NOMEM;
    if (tx) {
        tx->st = st;
        rc = ds__store_begin(st, 0, &tx->txn);
        if (!rc) rc = ds__counters_read(st, tx->txn, &tx->c);
    }
    if (rc) {
        if (st->ahead.state != DS_AHEAD_NONE) ds__ahead_forget(st);
        if (tx && tx->txn) mdb_txn_abort(tx->txn);
        free(tx);
        return rc;
    }
    tx->first_new_seg = tx->c.next_seg;
    st->active = tx;
    *out = tx;
    return 0;
}

static void wtxn_release(ds_wtxn *tx)
{
    /* The worker must let go of the buffer, unless it is tokenizing the
     * next transaction's guessed documents into it. */
    if (tx->st->ahead.state != DS_AHEAD_PENDING) ds__ahead_forget(tx->st);
    ds__idf_reset(&tx->idf);
    ds__runbuf_free(&tx->rb);
    tx->st->active = NULL;
    free(tx);
}

void ds_wtxn_abort(ds_wtxn *tx)
{
    if (!tx) return;
    mdb_txn_abort(tx->txn);
    wtxn_release(tx);
}

int ds_wtxn_commit(ds_wtxn *tx) { return ds__wtxn_commit_ahead(tx, NULL, 0, NULL); }

int ds__wtxn_commit_ahead(ds_wtxn *tx, const ds_ahead_doc *docs, size_t n, uint64_t *ticket)
{
    uint64_t t = 0;
    int rc = tx->failed;
    if (!rc) rc = ds__index_commit(tx);
    /* The buffer is written: the worker may fill it again while the rest
     * of the transaction is written and synced. */
    if (!rc && n) ds__ahead_start(tx, docs, n, &t);
    if (!rc) rc = ds__runs_commit(tx);
    if (!rc) rc = ds__idf_flush(tx);
    if (!rc) rc = counters_write(tx->st, tx->txn, &tx->c);
    if (rc) {
        mdb_txn_abort(tx->txn);
    } else {
        rc = commit_write(tx->st, tx->txn);
    }
    if (rc && tx->st->ahead.state == DS_AHEAD_PENDING) ds__ahead_forget(tx->st);
    if (ticket) *ticket = rc ? 0 : t;
    wtxn_release(tx);
    return rc;
}

/* Records the first failure: the transaction can then only be aborted. */
static int fail(ds_wtxn *tx, int rc)
{
    if (rc && !tx->failed) tx->failed = rc;
    return rc;
}

static int put_rec(ds_wtxn *tx, int dbi, const void *k, size_t kl, const void *v, size_t vl,
                   unsigned flags)
{
    int rc = ds__store_write_check(tx->st);
    if (rc) return rc;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    return ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[dbi], &key, &val, flags));
}

static int del_rec(ds_wtxn *tx, int dbi, const void *k, size_t kl, const void *v, size_t vl)
{
    int rc = ds__store_write_check(tx->st);
    if (rc) return rc;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    return ds__lmdb_err(mdb_del(tx->txn, tx->st->dbi[dbi], &key, v ? &val : NULL));
}

/* Lookup key of a project string: the string itself and a
 * terminating 0x00 (so "" is a valid key and keys keep the strings'
 * order, which makes time-ordered sources append), or for long strings a
 * prefix, 0x01 and a hash.  Readers compare the decoded string, so two
 * long strings sharing a key can never be confused.  Returns the length. */
static size_t str_key(const char *s, uint8_t out[STR_KEY_CAP])
{
    size_t n = strlen(s);
    if (n < STR_KEY_MAX) {
        memcpy(out, s, n);
        out[n] = 0;
        return n + 1;
    }
    size_t pre = STR_KEY_MAX - 1 - KEY_HASH_LEN;
    memcpy(out, s, pre);
    out[pre] = 1;
    ds_hash(s, n, out + pre + 1, KEY_HASH_LEN);
    return STR_KEY_MAX;
}

/* Reads and decodes the node stored under |seq| within |txn|. */
static int get_by_seq(ds_store *st, MDB_txn *txn, uint64_t seq, ds_node *out)
{
    uint8_t kb[8];
    ds_put_be64(kb, seq);
    MDB_val k = { 8, kb }, d;
    int rc = mdb_get(txn, st->dbi[DBI_NODES], &k, &d);
    if (rc) { ds_node_init(out); return ds__lmdb_err(rc); }
    rc = ds_node_decode(d.mv_data, d.mv_size, out);
    if (rc) return rc == DS_ERR_NOMEM ? rc : DS_ERR_STORE;   /* corrupt record */
    out->seq = seq;
    return 0;
}

/* Removes node |seq| and everything that points at it. */
static int delete_seq(ds_wtxn *tx, uint64_t seq)
{
    ds_node old;
    int rc = get_by_seq(tx->st, tx->txn, seq, &old);
    if (rc) return rc;
    uint8_t sk[8], h[STR_KEY_CAP];
    size_t hl;
    uint32_t dl = 0;
    ds_put_be64(sk, seq);
    if ((rc = ds__index_remove(tx, seq, old.content, old.content_len, &dl))) goto out;
    if ((rc = del_rec(tx, DBI_NODES, sk, 8, NULL, 0))) goto out;
    if ((rc = ds__runs_kill(tx, seq))) goto out;
    hl = str_key(old.project, h);
    if ((rc = del_rec(tx, DBI_PROJECT, h, hl, sk, 8))) goto out;
    if (tx->c.docs) tx->c.docs--;
    tx->c.total_len -= tx->c.total_len >= dl ? dl : tx->c.total_len;
    if (tx->c.by_type[old.source_type]) tx->c.by_type[old.source_type]--;
out:
    ds_node_free(&old);
    return rc;
}

static int validate(const ds_node *n)
{
    if (!n->content || !n->source || !n->ns || (unsigned)n->source_type >= DS_SOURCE_TYPE_COUNT)
        return DS_ERR_INVALID;
    if (n->content_len > DS_NODE_MAX_CONTENT) return DS_ERR_TOOLARGE;
    int checked = n->checked_content == n->content && n->checked_len == n->content_len;
    if ((!checked && !ds_utf8_valid(n->content, n->content_len)) ||
        strlen(n->source) > DS_NODE_MAX_FIELD ||
        (n->project && strlen(n->project) > DS_NODE_MAX_FIELD) ||
        strlen(n->ns) > DS_NODE_MAX_FIELD ||
        (n->metadata && strlen(n->metadata) > DS_NODE_MAX_FIELD))
        return DS_ERR_INVALID;
    return 0;
}

static int put_node(ds_wtxn *tx, ds_node *n, int only_new, int *inserted, const uint8_t *given,
                    size_t givenlen)
{
    if (inserted) *inserted = 0;
    if (tx->failed) return tx->failed;
    int rc = validate(n);
    if (rc) return rc;
    if (!n->project && (rc = ds_node_set_str(&n->project, ""))) return rc;
    uint64_t oldseq;
    int maybe;
    if ((rc = ds__idf_maybe(tx, n->id, &maybe))) return fail(tx, rc);
    rc = maybe ? ds__runs_find_id(tx->st, tx->txn, &tx->rb, n->id, &oldseq) : DS_ERR_NOTFOUND;
    if (rc == 0) {
        if (only_new) return 0;
        if ((rc = delete_seq(tx, oldseq))) return fail(tx, rc);
    } else if (rc != DS_ERR_NOTFOUND) {
        return fail(tx, rc);
    }
    if (tx->c.last_seq >= DS_SEQ_MAX) return fail(tx, DS_ERR_FULL);
    uint64_t seq = tx->c.last_seq + 1;
    /* The hash ds_node_set_content computed is kept; any other (decoded,
     * from a peer, content changed since) is recomputed. */
    if (!n->content || n->hashed_content != n->content || n->hashed_len != n->content_len)
        ds_node_hash(n);
    uint8_t *enc = NULL;
    size_t enclen = givenlen;
    if (!given && (rc = ds_node_encode(n, &enc, &enclen))) return fail(tx, rc);
    uint8_t sk[8], h[STR_KEY_CAP];
    size_t hl;
    uint32_t dl = 0;
    ds_put_be64(sk, seq);
    rc = put_rec(tx, DBI_NODES, sk, 8, given ? given : enc, enclen, MDB_APPEND);
    free(enc);
    if (rc) return fail(tx, rc);
    if ((rc = ds__runs_add(tx, n->id, n->source, seq)) || (rc = ds__idf_add(tx, n->id)))
        return fail(tx, rc);
    hl = str_key(n->project, h);
    if ((rc = put_rec(tx, DBI_PROJECT, h, hl, sk, 8, MDB_APPENDDUP))) return fail(tx, rc);
    if ((rc = ds__index_add(tx, seq, n->content, n->content_len, &dl))) return fail(tx, rc);
    tx->c.last_seq = seq;
    tx->c.docs++;
    tx->c.total_len += dl;
    tx->c.by_type[n->source_type]++;
    n->seq = seq;
    if (inserted) *inserted = 1;
    return 0;
}

int ds_wtxn_put(ds_wtxn *tx, ds_node *n) { return put_node(tx, n, 0, NULL, NULL, 0); }

int ds_wtxn_put_new(ds_wtxn *tx, ds_node *n, int *inserted)
{
    return put_node(tx, n, 1, inserted, NULL, 0);
}

int ds__wtxn_put_new_encoded(ds_wtxn *tx, ds_node *n, const uint8_t *enc, size_t len, int *inserted)
{
    if (!enc || !len || len > DS_NODE_MAX_ENCODED) return DS_ERR_INVALID;
    return put_node(tx, n, 1, inserted, enc, len);
}

int ds_wtxn_delete(ds_wtxn *tx, const uint8_t id[DS_ID_LEN])
{
    if (tx->failed) return tx->failed;
    uint64_t seq;
    int rc = ds__runs_find_id(tx->st, tx->txn, &tx->rb, id, &seq);
    if (rc) return rc == DS_ERR_NOTFOUND ? rc : fail(tx, rc);
    return fail(tx, delete_seq(tx, seq));
}

/* Appends the seqs stored under |h| in duplicate table |dbi| to *seqs. */
static int collect_dups_of(ds_store *st, MDB_txn *txn, int dbi, const uint8_t *h, size_t hl,
                           uint64_t **seqs, size_t *n, size_t *cap)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->dbi[dbi], &cur);
    if (rc) return rc;
    MDB_val k = { hl, (void *)h }, d;
    rc = mdb_cursor_get(cur, &k, &d, MDB_SET);
    while (rc == 0) {
        if (d.mv_size != 8) { rc = EINVAL; break; }
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            uint64_t *p = realloc(*seqs, *cap * sizeof *p);
            if (!p) { rc = ENOMEM; break; }
            *seqs = p;
        }
        (*seqs)[(*n)++] = ds_get_be64(d.mv_data);
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT_DUP);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Collects the seqs stored under |h| in duplicate table |dbi|, in
 * increasing order. */
static int collect_dups(ds_store *st, MDB_txn *txn, int dbi, const uint8_t *h, size_t hl,
                        uint64_t **seqs, size_t *n)
{
    *seqs = NULL;
    *n = 0;
    size_t cap = 0;
    int rc = collect_dups_of(st, txn, dbi, h, hl, seqs, n, &cap);
    if (!rc) return 0;
    free(*seqs);
    *seqs = NULL;
    *n = 0;
    return rc == ENOMEM ? DS_ERR_NOMEM : DS_ERR_STORE;
}

int ds_wtxn_delete_source(ds_wtxn *tx, const char *source, size_t *count)
{
    if (count) *count = 0;
    if (tx->failed) return tx->failed;
    uint64_t *seqs;
    size_t n;
    int rc = ds__runs_source_seqs(tx->st, tx->txn, &tx->rb, source, &seqs, &n);
    if (rc) return fail(tx, rc);
    size_t removed = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        ds_node node;
        rc = get_by_seq(tx->st, tx->txn, seqs[i], &node);
        if (rc) break;
        int match = strcmp(node.source, source) == 0;   /* hash collision guard */
        ds_node_free(&node);
        if (match && !(rc = delete_seq(tx, seqs[i]))) removed++;
    }
    free(seqs);
    if (rc) return fail(tx, rc);
    if (count) *count = removed;
    return 0;
}

int ds_wtxn_clear(ds_wtxn *tx, const uint8_t new_epoch[DS_EPOCH_LEN])
{
    if (tx->failed) return tx->failed;
    ds__ahead_forget(tx->st);             /* every buffered document goes too */
    tx->pending_bytes = 0;
    for (int i = DBI_NODES; i < DBI_COUNT; i++) {
        int rc = ds__store_write_check(tx->st);
        if (!rc) rc = ds__lmdb_err(mdb_drop(tx->txn, tx->st->dbi[i], 0));
        if (rc) return fail(tx, rc);
    }
    ds__idf_reset(&tx->idf);              /* its table is empty now */
    ds__runbuf_reset(&tx->rb);            /* so are the runs */
    ds_counters keep = tx->c;             /* sequences and segment ids never go back */
    memset(&tx->c, 0, sizeof tx->c);
    tx->c.last_seq = keep.last_seq;
    tx->c.next_seg = keep.next_seg;
    tx->c.index_gen = keep.index_gen + 1;
    return fail(tx, meta_put(tx->st, tx->txn, "epoch", new_epoch, DS_EPOCH_LEN));
}

int ds_wtxn_aux_put(ds_wtxn *tx, ds_table t, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    if (tx->failed) return tx->failed;
    if ((unsigned)t >= DS_TABLE_COUNT || klen == 0 || klen > 511) return DS_ERR_INVALID;
    return fail(tx, put_rec(tx, DBI_AUX0 + t, key, klen, val, vlen, 0));
}

int ds_wtxn_aux_del(ds_wtxn *tx, ds_table t, const void *key, size_t klen)
{
    if (tx->failed) return tx->failed;
    if ((unsigned)t >= DS_TABLE_COUNT || klen == 0 || klen > 511) return DS_ERR_INVALID;
    int rc = del_rec(tx, DBI_AUX0 + t, key, klen, NULL, 0);
    return rc == DS_ERR_NOTFOUND ? rc : fail(tx, rc);
}

static int aux_get(ds_store *st, MDB_txn *txn, ds_table t, const void *key, size_t klen,
                   void **val, size_t *vlen)
{
    *val = NULL;
    *vlen = 0;
    if ((unsigned)t >= DS_TABLE_COUNT || klen == 0 || klen > 511) return DS_ERR_INVALID;
    MDB_val k = { klen, (void *)key }, d;
    int rc = mdb_get(txn, st->dbi[DBI_AUX0 + t], &k, &d);
    if (rc) return ds__lmdb_err(rc);
    void *c = malloc(d.mv_size ? d.mv_size : 1);
    if (!c) return DS_ERR_NOMEM;
    memcpy(c, d.mv_data, d.mv_size);
    *val = c;
    *vlen = d.mv_size;
    return 0;
}

int ds_wtxn_aux_get(ds_wtxn *tx, ds_table t, const void *key, size_t klen, void **val, size_t *vlen)
{
    return aux_get(tx->st, tx->txn, t, key, klen, val, vlen);
}

/* ---- one-call conveniences --------------------------------------------- */

int ds_store_put_many(ds_store *st, ds_node *nodes, size_t count)
{
    ds_wtxn *tx;
    int rc = ds_store_begin(st, &tx);
    if (rc) return rc;
    for (size_t i = 0; i < count && !rc; i++) rc = ds_wtxn_put(tx, &nodes[i]);
    if (rc) {
        ds_wtxn_abort(tx);
        for (size_t i = 0; i < count; i++) nodes[i].seq = 0;
        return rc;
    }
    return ds_wtxn_commit(tx);
}

int ds_store_put(ds_store *st, ds_node *n) { return ds_store_put_many(st, n, 1); }

int ds_store_delete(ds_store *st, const uint8_t id[DS_ID_LEN])
{
    ds_wtxn *tx;
    int rc = ds_store_begin(st, &tx);
    if (rc) return rc;
    rc = ds_wtxn_delete(tx, id);
    if (rc) { ds_wtxn_abort(tx); return rc; }
    return ds_wtxn_commit(tx);
}

/* ---- reads ------------------------------------------------------------- */

static int rtxn(ds_store *st, MDB_txn **txn)
{
    return ds__store_begin(st, MDB_RDONLY, txn);
}

int ds_store_get(ds_store *st, const uint8_t id[DS_ID_LEN], ds_node *out)
{
    ds_node_init(out);
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    uint64_t seq;
    rc = ds__runs_find_id(st, txn, NULL, id, &seq);
    if (!rc) rc = get_by_seq(st, txn, seq, out);
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_get_seq(ds_store *st, uint64_t seq, ds_node *out)
{
    ds_node_init(out);
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    rc = get_by_seq(st, txn, seq, out);
    mdb_txn_abort(txn);
    return rc;
}

typedef struct prefix_ctx {
    ds_store *st;
    MDB_txn *txn;
    const char *hex;
    size_t n;
    int found;                     /* distinct live ids */
    uint8_t *id;                   /* the first one */
} prefix_ctx;

/* Walks one run's ids from the prefix's lower bound: 1 ends the walk. */
static int prefix_cb(const uint8_t *kid, uint64_t seq, void *ud)
{
    prefix_ctx *pc = ud;
    (void)seq;
    if (pc->found >= 2) return 1;
    char khex[2 * DS_ID_LEN + 1];
    ds_hex_encode(kid, DS_ID_LEN, khex);
    if (memcmp(khex, pc->hex, pc->n) != 0) return 1;
    if (pc->found && memcmp(kid, pc->id, DS_ID_LEN) == 0) return 0;   /* seen in another run */
    uint64_t live;
    int rc = ds__runs_find_id(pc->st, pc->txn, NULL, kid, &live);
    if (rc == DS_ERR_NOTFOUND) return 0;                               /* deleted */
    if (rc) return rc;
    if (!pc->found) memcpy(pc->id, kid, DS_ID_LEN);
    pc->found++;
    return 0;
}

int ds_store_resolve_prefix(ds_store *st, const char *prefix, uint8_t id[DS_ID_LEN])
{
    char hex[2 * DS_ID_LEN + 1];
    size_t n = 0;
    for (const char *p = prefix; *p; p++) {
        if (*p == '-') continue;
        char c = *p >= 'A' && *p <= 'F' ? (char)(*p - 'A' + 'a') : *p;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n == 2 * DS_ID_LEN)
            return DS_ERR_INVALID;
        hex[n++] = c;
    }
    if (n < 4) return DS_ERR_INVALID;
    uint8_t lo[DS_ID_LEN] = { 0 };
    char pair[3] = { 0 };
    for (size_t i = 0; i < n; i++) {
        pair[0] = hex[i];
        pair[1] = '0';
        uint8_t b;
        ds_hex_decode(pair, &b, 1);
        lo[i / 2] |= i % 2 ? (uint8_t)(b >> 4) : b;
    }
    prefix_ctx pc = { st, NULL, hex, n, 0, id };
    int rc = rtxn(st, &pc.txn);
    if (rc) return rc;
    rc = ds__runs_ids_from(st, pc.txn, lo, prefix_cb, &pc);
    mdb_txn_abort(pc.txn);
    if (rc) return rc;
    if (pc.found == 0) return DS_ERR_NOTFOUND;
    return pc.found > 1 ? DS_ERR_AMBIGUOUS : 0;
}

int ds_store_aux_get(ds_store *st, ds_table t, const void *key, size_t klen, void **val, size_t *vlen)
{
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    rc = aux_get(st, txn, t, key, klen, val, vlen);
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_aux_iter(ds_store *st, ds_table t,
                      int (*cb)(const void *k, size_t kl, const void *v, size_t vl, void *ud),
                      void *ud)
{
    if ((unsigned)t >= DS_TABLE_COUNT) return DS_ERR_INVALID;
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    MDB_cursor *cur;
    if ((rc = ds__lmdb_err(mdb_cursor_open(txn, st->dbi[DBI_AUX0 + t], &cur)))) {
        mdb_txn_abort(txn);
        return rc;
    }
    MDB_val k, d;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    rc = 0;
    while (mrc == 0) {
        int r = cb(k.mv_data, k.mv_size, d.mv_data, d.mv_size, ud);
        if (r) { rc = r < 0 ? r : 0; break; }
        mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    if (mrc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* Walks the node records after |after_seq| (or all, newest first, when
 * |reverse|), handing each record's stored bytes to |cb|. */
static int iter_records(ds_store *st, uint64_t after_seq, int reverse, ds_record_cb cb, void *ud)
{
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    MDB_cursor *cur;
    if ((rc = ds__lmdb_err(mdb_cursor_open(txn, st->dbi[DBI_NODES], &cur)))) {
        mdb_txn_abort(txn);
        return rc;
    }
    uint8_t kb[8];
    MDB_val k = { 8, kb }, d;
    int mrc;
    if (reverse) {
        mrc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
    } else {
        if (after_seq == UINT64_MAX) after_seq--;
        ds_put_be64(kb, after_seq + 1);
        mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    }
    while (mrc == 0) {
        if (k.mv_size != 8) { rc = DS_ERR_STORE; break; }
        int r = cb(ds_get_be64(k.mv_data), d.mv_data, d.mv_size, ud);
        if (r) { rc = r < 0 ? r : 0; break; }
        mrc = mdb_cursor_get(cur, &k, &d, reverse ? MDB_PREV : MDB_NEXT);
    }
    if (!rc && mrc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_iter_records(ds_store *st, uint64_t after_seq, ds_record_cb cb, void *ud)
{
    return iter_records(st, after_seq, 0, cb, ud);
}

typedef struct { ds_node_cb cb; void *ud; } decode_iter;

static int decode_record(uint64_t seq, const uint8_t *rec, size_t len, void *ud)
{
    decode_iter *di = ud;
    ds_node n;
    int rc = ds_node_decode(rec, len, &n);
    if (rc) return rc == DS_ERR_NOMEM ? rc : DS_ERR_STORE;
    n.seq = seq;
    int r = di->cb(&n, di->ud);
    ds_node_free(&n);
    return r;
}

int ds_store_iter(ds_store *st, uint64_t after_seq, int reverse, ds_node_cb cb, void *ud)
{
    decode_iter di = { cb, ud };
    return iter_records(st, after_seq, reverse, decode_record, &di);
}

static int by_key(ds_store *st, const char *s, int is_source, ds_node_cb cb, void *ud)
{
    uint8_t h[STR_KEY_CAP];
    size_t hl = str_key(s, h);
    MDB_txn *txn;
    int rc = rtxn(st, &txn);
    if (rc) return rc;
    uint64_t *seqs;
    size_t n;
    rc = is_source ? ds__runs_source_seqs(st, txn, NULL, s, &seqs, &n)
                   : collect_dups(st, txn, DBI_PROJECT, h, hl, &seqs, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        ds_node node;
        rc = get_by_seq(st, txn, seqs[i], &node);
        if (rc) break;
        const char *v = is_source ? node.source : node.project;
        int r = strcmp(v, s) == 0 ? cb(&node, ud) : 0;
        ds_node_free(&node);
        if (r) { rc = r < 0 ? r : 0; break; }
    }
    free(seqs);
    mdb_txn_abort(txn);
    return rc;
}

int ds_store_by_source(ds_store *st, const char *source, ds_node_cb cb, void *ud)
{
    return by_key(st, source, 1, cb, ud);
}

int ds_store_by_project(ds_store *st, const char *project, ds_node_cb cb, void *ud)
{
    return by_key(st, project, 0, cb, ud);
}
