/*
 * index_worker.c - the index worker: a second thread that tokenizes new
 * documents into the store's posting buffer while the writing thread
 * encodes nodes and updates the B-trees.  Ingest spends about as long on
 * each half, and the halves touch different memory, so on two cores a
 * write transaction takes about as long as the slower half instead of
 * their sum.
 *
 * The writer hands documents over in batches (their text copied); the
 * worker indexes them strictly in submission order, so the buffer, and
 * therefore every segment, is exactly what indexing on one thread would
 * produce.  The worker never touches LMDB: whenever the writer needs the
 * buffer (to write a segment, remove a buffered document, commit, abort)
 * it drains the worker first.  When the thread cannot be started, or the
 * store was opened with no_index_thread, documents are indexed at once on
 * the writer's thread.
 */
#include "core/store_int.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"

#define BATCH_DOCS 128
#define BATCH_TEXT (256u << 10)

typedef struct job { uint64_t seq; size_t off, len; } job;

typedef struct batch {
    struct batch *next;
    job jobs[BATCH_DOCS];
    size_t njobs;
    char *text;
    size_t text_len, text_cap;
} batch;

typedef struct ds_iworker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* work arrived, or the worker went idle */
    batch *head, *tail;            /* handed over, not yet indexed */
    batch *spare;                  /* indexed, for reuse */
    batch *filling;                /* the writer's, not yet handed over */
    int busy, stop;
    int rc;                        /* first error since the last drain */
    uint64_t total_len;            /* lengths indexed since the last drain */
} ds_iworker;

static void batch_free(batch *b)
{
    while (b) {
        batch *n = b->next;
        free(b->text);
        free(b);
        b = n;
    }
}

static void *worker_main(void *arg)
{
    ds_store *st = arg;
    ds_iworker *w = st->iw;
    ds_tokenizer_prefault(st->tok);               /* this thread will use it most */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head) break;                      /* stop, nothing left */
        batch *b = w->head;
        w->head = b->next;
        if (!w->head) w->tail = NULL;
        w->busy = 1;
        int failed = w->rc;
        pthread_mutex_unlock(&w->mu);
        int rc = 0;
        uint64_t sum = 0;
        for (size_t i = 0; i < b->njobs && !rc && !failed; i++) {
            uint32_t dl;
            rc = ds__pb_add_doc(st, b->jobs[i].seq, b->text + b->jobs[i].off, b->jobs[i].len, &dl);
            sum += dl;
        }
        pthread_mutex_lock(&w->mu);
        if (rc && !w->rc) w->rc = rc;
        w->total_len += sum;
        b->njobs = 0;
        b->text_len = 0;
        b->next = w->spare;
        w->spare = b;
        w->busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts the worker; leaves st->iw NULL (index inline) when it cannot. */
static void start(ds_store *st)
{
    ds_iworker *w = calloc(1, sizeof *w);
    if (!w) return;
    if (pthread_mutex_init(&w->mu, NULL) != 0) { free(w); return; }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return;
    }
    st->iw = w;
    /* The worker takes no signals: the process's handlers (the daemon's
     * event loop) keep running on the threads that expect them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&w->th, NULL, worker_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        st->iw = NULL;
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        st->no_iworker = 1;
    }
}

static void hand_over(ds_iworker *w)
{
    batch *b = w->filling;
    if (!b || !b->njobs) return;
    w->filling = NULL;
    pthread_mutex_lock(&w->mu);
    b->next = NULL;
    if (w->tail) w->tail->next = b; else w->head = b;
    w->tail = b;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int ds__iw_ready(ds_store *st)
{
    if (!st->iw && !st->no_iworker) start(st);
    return st->iw != NULL;
}

int ds__iw_submit(ds_store *st, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    *doclen = 0;
    if (!ds__iw_ready(st)) return ds__pb_add_doc(st, seq, content, len, doclen);
    ds_iworker *w = st->iw;
    batch *b = w->filling;
    if (!b) {
        pthread_mutex_lock(&w->mu);
        b = w->spare;
        if (b) w->spare = b->next;
        pthread_mutex_unlock(&w->mu);
        if (!b && !(b = calloc(1, sizeof *b))) return DS_ERR_NOMEM;
        b->next = NULL;
        w->filling = b;
    }
    if (b->text_cap - b->text_len < len) {
        size_t nc = b->text_cap ? b->text_cap : BATCH_TEXT;
        while (nc - b->text_len < len) nc *= 2;
        char *t = realloc(b->text, nc);
        if (!t) return DS_ERR_NOMEM;
        b->text = t;
        b->text_cap = nc;
    }
    if (len) memcpy(b->text + b->text_len, content, len);
    b->jobs[b->njobs++] = (job){ seq, b->text_len, len };
    b->text_len += len;
    if (b->njobs == BATCH_DOCS || b->text_len >= BATCH_TEXT) hand_over(w);
    return 0;
}

void ds__iw_kick(ds_store *st)
{
    if (st->iw) hand_over(st->iw);
}

int ds__iw_drain(ds_store *st, uint64_t *total_len)
{
    *total_len = 0;
    ds_iworker *w = st->iw;
    if (!w) return 0;
    hand_over(w);
    pthread_mutex_lock(&w->mu);
    while (w->head || w->busy) pthread_cond_wait(&w->cv, &w->mu);
    int rc = w->rc;
    *total_len = w->total_len;
    w->rc = 0;
    w->total_len = 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void ds__iw_stop(ds_store *st)
{
    ds_iworker *w = st->iw;
    if (!w) return;
    hand_over(w);
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    batch_free(w->spare);
    batch_free(w->filling);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    st->iw = NULL;
}
