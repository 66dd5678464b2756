/*
 * syncproto.c - the sync session state machines (see syncproto.h and
 * docs/protocol.md).  The publisher waits for one SYNC_REQUEST, checks
 * authorization, then builds one SYNC_RESPONSE page per frame inside
 * send(), so memory is bounded by one page however large the store; any
 * bad input becomes one ERROR frame and the end of the stream.  The
 * subscriber sends its request, applies each page in one replica
 * transaction as it arrives, and succeeds only when the last page
 * (has_more = false) is followed by the end of the stream.  Neither
 * machine reads a clock: "now" is passed in and a timeout fires when no
 * byte moved for timeout_ms.
 */
#include "core/syncproto.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/frame.h"
#include "core/msgread.h"
#include "ds/error.h"

/* A page is at most the byte budget plus one node plus the envelope. */
_Static_assert((uint64_t)DS_SYNC_MAX_PAGE_BYTES + DS_NODE_MAX_ENCODED + 4096 < DS_SYNC_MAX_FRAME,
               "a page must always fit in a frame");

#define MSG_CAP 4200                     /* peer messages are at most 4096 bytes */
#define PEND_PAGES 64                    /* decoded pages held for one transaction, at most */
#define PEND_BYTES (16u << 20)           /* ... and their frames' bytes */
#define RATE_LIMITED_TEXT "Too many concurrent syncs; try again later"

/* ---- shared helpers ------------------------------------------------------ */

static const char *type_name(ds_msg_type t)
{
    switch (t) {
    case DS_MSG_SYNC_REQUEST: return "sync_request";
    case DS_MSG_SYNC_RESPONSE: return "sync_response";
    case DS_MSG_ERROR: return "error";
    case DS_MSG_EXPORT_HEADER: return "export_header";
    case DS_MSG_SIGNATURE: return "signature";
    }
    return "unknown";
}

/* Finds the "v" field of a message map even when the rest of the message
 * does not parse (a future version may change other fields).  Returns 1
 * and *v when found. */
static int peek_version(const uint8_t *buf, size_t len, uint64_t *v)
{
    ds_mr r;
    uint32_t n;
    ds_mr_init(&r, buf, len);
    if (ds_mr_map(&r, &n)) return 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (ds_mr_str(&r, &k, &kl)) return 0;
        if (ds_mr_key_eq(k, kl, "v")) return ds_mr_uint(&r, v) == 0;
        if (ds_mr_skip(&r)) return 0;
    }
    return 0;
}

/* Copies |src| into |dst| (capacity |cap|), replacing control characters
 * so a peer's text cannot drive the user's terminal. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = 0;
}

static int64_t deadline(int64_t last, uint32_t timeout_ms)
{
    return last > INT64_MAX - (int64_t)timeout_ms ? INT64_MAX : last + timeout_ms;
}

/* Describes a framing error of the stream received. */
static void frame_error_text(char *dst, size_t cap, const ds_frame_dec *d, int rc, const char *who)
{
    if (rc == DS_ERR_TOOLARGE)
        snprintf(dst, cap, "%s sent a frame of %" PRIu32 " bytes, above the limit of %" PRIu32 " bytes",
                 who, ds_get_be32(d->hdr), d->max);
    else if (rc == DS_ERR_MALFORMED)
        snprintf(dst, cap, "%s sent a malformed frame (zero length)", who);
    else
        snprintf(dst, cap, "%s", ds_strerror(rc));
}

/* ---- publisher ----------------------------------------------------------- */

typedef enum {
    S_WAIT_REQUEST,      /* nothing decided yet */
    S_SERVING,           /* request accepted: pages are built in send() */
    S_ERROR,             /* an ERROR frame is queued */
    S_DONE,
    S_FAILED,
} s_phase;

struct ds_sync_server {
    ds_sync_server_cfg cfg;
    uint32_t timeout_ms;
    s_phase phase;
    ds_frame_dec dec;
    ds_msg req;                      /* cursor and limits of the next page */
    int have_epoch;
    uint8_t epoch[DS_EPOCH_LEN];     /* the store's, read at the first page */
    int64_t last;                    /* last progress */
    int peer_fin, fin_sent;
    int err;
    char code[32];
    char message[512];
    uint64_t nodes, pages, bytes;
};

/* Queues an ERROR frame (sent by the next send()); the machine fails
 * with |err| once it is out. */
static void server_reply_error(ds_sync_server *s, int err, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->message, sizeof s->message, fmt, ap);
    va_end(ap);
    snprintf(s->code, sizeof s->code, "%s", code);
    s->err = err;
    s->phase = S_ERROR;
}

int ds_sync_server_new(ds_sync_server **out, const ds_sync_server_cfg *cfg, int64_t now_ms)
{
    *out = NULL;
    if (!cfg || (!cfg->unavailable && (!cfg->store || !cfg->share || !cfg->seal)))
        return DS_ERR_INVALID;
    ds_sync_server *s = calloc(1, sizeof *s);
    if (!s) return DS_ERR_NOMEM;
    s->cfg = *cfg;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DS_SYNC_DEFAULT_TIMEOUT_MS;
    s->phase = S_WAIT_REQUEST;
    s->last = now_ms;
    ds_frame_dec_init(&s->dec, DS_SYNC_MAX_REQUEST);
    *out = s;
    return 0;
}

void ds_sync_server_free(ds_sync_server *s)
{
    if (!s) return;
    ds_frame_dec_free(&s->dec);
    ds_msg_free(&s->req);
    free(s);
}

static int server_running(const ds_sync_server *s)
{
    return s->phase == S_WAIT_REQUEST || s->phase == S_SERVING || s->phase == S_ERROR;
}

/* The first event of the stream (a frame, a framing error or the end):
 * the peer is told about authorization and load before anything else.
 * Returns 1 when an ERROR was queued. */
static int server_gate(ds_sync_server *s)
{
    if (!s->cfg.authorized) {
        const char *id = s->cfg.peer_id && s->cfg.peer_id[0] ? s->cfg.peer_id : "(unknown)";
        server_reply_error(s, DS_ERR_UNAUTHORIZED, DS_SYNC_E_NOT_AUTHORIZED,
                           "Peer %s not authorized. Use: ds peer add %s --publish", id, id);
        return 1;
    }
    if (s->cfg.unavailable) {
        server_reply_error(s, DS_ERR_STORE, DS_SYNC_E_INTERNAL, "Publisher cannot serve now: %s",
                           s->cfg.unavailable);
        return 1;
    }
    if (s->cfg.rate_limited) {
        server_reply_error(s, DS_ERR_BUSY, DS_SYNC_E_RATE_LIMITED,
                           "%s", RATE_LIMITED_TEXT);
        return 1;
    }
    return 0;
}

static int server_on_request(ds_sync_server *s, const uint8_t *f, size_t fl)
{
    if (server_gate(s)) return 0;
    ds_msg m;
    int rc = ds_msg_decode(f, fl, &m);
    uint64_t v = DS_SYNC_VERSION;
    if (rc == DS_ERR_NOMEM) return rc;
    if (rc == DS_ERR_VERSION || (rc && peek_version(f, fl, &v) && v != DS_SYNC_VERSION)) {
        if (rc == DS_ERR_VERSION) v = m.version;
        server_reply_error(s, DS_ERR_VERSION, DS_SYNC_E_VERSION,
                           "Unsupported sync protocol version %" PRIu64 "; this publisher speaks version %d",
                           v, DS_SYNC_VERSION);
        return 0;
    }
    if (rc) {
        server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST, "Malformed sync request (%s)",
                           ds_strerror(rc));
        return 0;
    }
    if (m.type != DS_MSG_SYNC_REQUEST)
        server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST, "Expected sync_request, got %s",
                           type_name(m.type));
    else {
        s->req.type = DS_MSG_SYNC_REQUEST;
        s->req.version = DS_SYNC_VERSION;
        /* A cursor that does not open (another layout, epoch, share set
         * or key) makes the publisher start over: never stuck. */
        s->req.has_cursor = m.has_cursor;
        memcpy(s->req.cursor, m.cursor, DS_CURSOR_LEN);
        uint32_t pn = s->cfg.page_nodes ? s->cfg.page_nodes : DS_SYNC_PAGE_NODES;
        uint32_t pb = s->cfg.page_bytes ? s->cfg.page_bytes : DS_SYNC_PAGE_BYTES;
        s->req.max_nodes = m.max_nodes && m.max_nodes < pn ? m.max_nodes : pn;
        s->req.max_bytes = m.max_bytes && m.max_bytes < pb ? m.max_bytes : pb;
        s->phase = S_SERVING;
    }
    ds_msg_free(&m);
    return 0;
}

int ds_sync_server_recv(ds_sync_server *s, const uint8_t *data, size_t len, int fin, int64_t now_ms)
{
    if (!server_running(s) || s->phase == S_ERROR) return 0;
    if (len) s->last = now_ms;
    if (len && s->peer_fin) {
        server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST, "Data after the end of the stream");
        return 0;
    }
    size_t off = 0;
    while (off < len && s->phase == S_WAIT_REQUEST) {
        size_t used;
        const uint8_t *f;
        size_t fl;
        int rc = ds_frame_dec_feed(&s->dec, data + off, len - off, &used, &f, &fl);
        off += used;
        if (rc == DS_ERR_NOMEM) {
            s->phase = S_FAILED;
            s->err = rc;
            snprintf(s->message, sizeof s->message, "%s", ds_strerror(rc));
            return rc;
        }
        if (rc) {
            if (!server_gate(s)) {
                char t[200];
                frame_error_text(t, sizeof t, &s->dec, rc, "Subscriber");
                server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST, "%s", t);
            }
            return 0;
        }
        if (f && (rc = server_on_request(s, f, fl))) {
            s->phase = S_FAILED;
            s->err = rc;
            return rc;
        }
    }
    if (off < len && s->phase == S_SERVING) {
        server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST, "Unexpected data after the request");
        return 0;
    }
    if (fin) {
        s->peer_fin = 1;
        if (s->phase == S_WAIT_REQUEST && !server_gate(s))
            server_reply_error(s, DS_ERR_PROTO, DS_SYNC_E_BAD_REQUEST,
                               ds_frame_dec_idle(&s->dec) ? "Stream ended before a request"
                                                          : "Stream ended inside a frame");
        /* In S_SERVING the subscriber may finish its side early: fine. */
    }
    return 0;
}

/* Appends the queued ERROR frame. */
static int server_emit_error(ds_sync_server *s, ds_buf *out)
{
    ds_buf p = { 0 };
    int rc = ds_msg_encode_error(&p, s->code, s->message);
    if (!rc) rc = ds_frame_encode(out, p.data, p.len, DS_SYNC_MAX_FRAME);
    ds_buf_free(&p);
    return rc;
}

/* Appends one page frame; builds it in place behind a reserved prefix. */
static int server_emit_page(ds_sync_server *s, ds_buf *out, ds_publish_stats *ps)
{
    static const uint8_t zero[DS_FRAME_HDR_LEN];
    size_t at = out->len;
    int rc;
    if (!s->have_epoch) {
        if ((rc = ds_store_epoch(s->cfg.store, s->epoch))) return rc;
        s->have_epoch = 1;
    }
    if ((rc = ds_buf_append(out, zero, sizeof zero))) return rc;
    rc = ds_sync_publish_epoch(s->cfg.store, s->epoch, s->cfg.seal, s->cfg.share, &s->req, out, ps);
    if (!rc) rc = ds_frame_header(out->data + at, out->len - at - DS_FRAME_HDR_LEN, DS_SYNC_MAX_FRAME);
    if (rc) out->len = at;
    return rc;
}

int ds_sync_server_send(ds_sync_server *s, ds_buf *out, size_t budget, int *fin, int64_t now_ms)
{
    *fin = 0;
    size_t start = out->len;
    int rc = 0;
    if (s->phase == S_SERVING) {
        do {
            ds_publish_stats ps;
            if ((rc = server_emit_page(s, out, &ps))) {
                if (rc == DS_ERR_NOMEM) break;
                server_reply_error(s, rc, DS_SYNC_E_INTERNAL, "Publisher could not read its store (%s)",
                                   ds_strerror(rc));
                rc = 0;
                break;
            }
            s->pages++;
            s->nodes += ps.sent;
            s->req.has_cursor = 1;
            memcpy(s->req.cursor, ps.cursor, DS_CURSOR_LEN);
            if (!ps.has_more) {
                s->phase = S_DONE;
                break;
            }
        } while (out->len - start < budget);
    }
    if (s->phase == S_ERROR && !rc) {
        rc = server_emit_error(s, out);
        if (!rc) s->phase = S_FAILED;
    }
    s->bytes += out->len - start;
    if (out->len > start) s->last = now_ms;
    if (rc) return rc;               /* out of memory: nothing lost, call again later */
    if ((s->phase == S_DONE || s->phase == S_FAILED) && !s->fin_sent) {
        *fin = 1;
        s->fin_sent = 1;
    }
    return 0;
}

int ds_sync_server_abort(ds_sync_server *s, const char *message)
{
    if (s->phase != S_SERVING) return 0;
    server_reply_error(s, DS_ERR_STORE, DS_SYNC_E_INTERNAL, "%s", message);
    return 1;
}

int64_t ds_sync_server_expiry(const ds_sync_server *s)
{
    return server_running(s) ? deadline(s->last, s->timeout_ms) : INT64_MAX;
}

void ds_sync_server_handle_expiry(ds_sync_server *s, int64_t now_ms)
{
    if (!server_running(s) || now_ms < ds_sync_server_expiry(s)) return;
    s->phase = S_FAILED;
    s->err = DS_ERR_TIMEOUT;
    s->code[0] = 0;
    snprintf(s->message, sizeof s->message, "No progress for %" PRIu32 " ms", s->timeout_ms);
}

ds_sync_state ds_sync_server_state(const ds_sync_server *s)
{
    return s->phase == S_DONE ? DS_SYNCS_DONE : s->phase == S_FAILED ? DS_SYNCS_FAILED : DS_SYNCS_RUNNING;
}

void ds_sync_server_counts(const ds_sync_server *s, uint64_t *nodes, uint64_t *pages, uint64_t *bytes)
{
    if (nodes) *nodes = s->nodes;
    if (pages) *pages = s->pages;
    if (bytes) *bytes = s->bytes;
}

int ds_sync_server_error(const ds_sync_server *s, const char **code, const char **message)
{
    int failed = s->phase == S_FAILED;
    if (code) *code = failed ? s->code : "";
    if (message) *message = failed ? s->message : "";
    return failed ? s->err : 0;
}

/* ---- subscriber ---------------------------------------------------------- */

typedef enum {
    C_START,             /* request not sent yet */
    C_PAGES,             /* waiting for pages */
    C_LAST,              /* last page applied: only the end of the stream may follow */
    C_DONE,
    C_FAILED,
} c_phase;

/* The apply thread (cfg.apply_thread): applies handed-over batches in
 * order while the machine's thread receives and decodes the next ones.
 * AP_SLOTS slots, used round-robin: while one batch is applied the next
 * waits, fully decoded, so its texts are tokenized while the first one
 * commits (ds_sync_apply_pages_ahead).  Three, not two: with two, the
 * receiving thread had to stop as soon as it had a third batch decoded
 * while the apply thread waited in fdatasync, and both cores went idle
 * (A/B, 7 alternating 100k syncs: medians 387 -> 368 ms, 6 of 7 pairs
 * faster).  The third slot holds up to one more batch (~1 MB). */
enum { AJ_FREE, AJ_QUEUED, AJ_DONE };
#define AP_SLOTS 3

typedef struct ap_job {
    /* Owned by the slot until reaped, and freed then by the receiving
     * thread that allocated them: glibc frees memory of another thread's
     * arena slowly, and the apply thread is the one to keep short. */
    ds_msg pages[PEND_PAGES];
    size_t n, nodes;
    int state;
    int rc;                          /* when DONE: the result ... */
    size_t ins;                      /* ... its new nodes ... */
    int skipped;                     /* ... or not applied, after a failed batch */
} ap_job;

typedef struct applier {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;               /* a job queued, a job done, or stop */
    ds_store *replica;
    ap_job jobs[AP_SLOTS];
    unsigned run;                    /* the slot applied next (apply thread's) */
    uint64_t claim;                  /* ticket for that slot's index work ahead */
    int failed;                      /* a batch failed: later ones are skipped */
    int stop;
} applier;

struct ds_sync_client {
    ds_sync_client_cfg cfg;
    applier *ap;                     /* NULL: apply on the caller's thread */
    unsigned inflight;               /* batches with the applier (0 to AP_SLOTS) ... */
    unsigned fill;                   /* ... the slot the next one goes to */
    int store_failed;                /* a batch could not be applied */
    uint32_t timeout_ms;
    c_phase phase;
    ds_frame_dec dec;
    int has_cursor;
    uint8_t cursor[DS_CURSOR_LEN];
    int64_t last;
    int fin_sent;
    int err;
    char code[32];
    char message[MSG_CAP];
    ds_sync_progress prog;
    /* Pages decoded and validated but not applied yet (see hold_ms). */
    ds_msg pend[PEND_PAGES];
    size_t npend, pend_nodes, pend_bytes;
    int64_t pend_since;              /* arrival of the oldest pending page */
    size_t batch_nodes;
};

static void client_fail(ds_sync_client *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    c->err = err;
    c->phase = C_FAILED;
}

static void client_drop_pending(ds_sync_client *c)
{
    for (size_t i = 0; i < c->npend; i++) ds_msg_free(&c->pend[i]);
    c->npend = c->pend_nodes = c->pend_bytes = 0;
}

/* The batch queued after the one being applied, if any (called by the
 * apply thread before it commits; see ds_sync_apply_pages_ahead). */
static const ds_msg *applier_next(void *ud, size_t *n)
{
    applier *a = ud;
    const ds_msg *pages = NULL;
    pthread_mutex_lock(&a->mu);
    const ap_job *j = &a->jobs[(a->run + 1) % AP_SLOTS];
    if (j->state == AJ_QUEUED) {
        pages = j->pages;
        *n = j->n;
    }
    pthread_mutex_unlock(&a->mu);
    return pages;
}

static void *applier_main(void *arg)
{
    applier *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        ap_job *j = &a->jobs[a->run];
        while (j->state != AJ_QUEUED && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        if (j->state != AJ_QUEUED) break;
        int skip = a->failed;
        uint64_t claim = a->claim, ticket = 0;
        pthread_mutex_unlock(&a->mu);
        size_t ins = 0;
        int rc = skip ? 0 : ds_sync_apply_pages_ahead(a->replica, j->pages, j->n, claim, applier_next, a,
                                                      &ticket, &ins);
        pthread_mutex_lock(&a->mu);
        j->rc = rc;
        j->ins = ins;
        j->skipped = skip;
        j->state = AJ_DONE;
        if (rc) a->failed = 1;
        a->claim = ticket;
        a->run = (a->run + 1) % AP_SLOTS;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Starts the apply thread; NULL when it cannot (the caller then applies
 * on its own thread, with the same results). */
static applier *applier_start(ds_store *replica)
{
    applier *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->replica = replica;
    if (pthread_mutex_init(&a->mu, NULL)) { free(a); return NULL; }
    if (pthread_cond_init(&a->cv, NULL)) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        return NULL;
    }
    /* Signals go to the process's other threads, as with the index worker. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&a->th, NULL, applier_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
        free(a);
        return NULL;
    }
    return a;
}

static void applier_stop(applier *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->th, NULL);
    for (int s = 0; s < AP_SLOTS; s++) {  /* done but not reaped */
        for (size_t i = 0; i < a->jobs[s].n; i++) ds_msg_free(&a->jobs[s].pages[i]);
        a->jobs[s].n = 0;
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int ds_sync_client_new(ds_sync_client **out, const ds_sync_client_cfg *cfg, int64_t now_ms)
{
    *out = NULL;
    if (!cfg || !cfg->replica) return DS_ERR_INVALID;
    ds_sync_client *c = calloc(1, sizeof *c);
    if (!c) return DS_ERR_NOMEM;
    c->cfg = *cfg;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DS_SYNC_DEFAULT_TIMEOUT_MS;
    c->batch_nodes = cfg->batch_nodes ? cfg->batch_nodes : DS_SYNC_APPLY_BATCH_NODES;
    c->last = now_ms;
    if (!cfg->full) {
        int rc = ds_sync_cursor_get(cfg->replica, c->cursor, &c->has_cursor);
        if (rc) { free(c); return rc; }
    }
    ds_frame_dec_init(&c->dec, DS_SYNC_MAX_FRAME);
    if (cfg->apply_thread) c->ap = applier_start(cfg->replica);
    *out = c;
    return 0;
}

void ds_sync_client_free(ds_sync_client *c)
{
    if (!c) return;
    ds_frame_dec_free(&c->dec);
    client_drop_pending(c);
    applier_stop(c->ap);             /* after the batch in flight, if any */
    free(c);
}

/* Accounts one applied batch.  A store error fails the machine (it takes
 * precedence over a protocol error seen later in the stream); returns
 * DS_ERR_NOMEM only for out of memory. */
static int client_applied(ds_sync_client *c, int rc, size_t pages, size_t nodes, size_t ins)
{
    if (rc) {
        c->code[0] = 0;
        c->store_failed = 1;
        if (rc == DS_ERR_NOMEM) client_fail(c, rc, "%s", ds_strerror(rc));
        else client_fail(c, rc, "could not write the replica (%s)", ds_strerror(rc));
        return rc == DS_ERR_NOMEM ? rc : 0;
    }
    c->prog.pages += pages;
    c->prog.nodes_received += nodes;
    c->prog.nodes_new += ins;
    return 0;
}

/* Accounts the applier's finished batches in order, waiting for them
 * while more than |keep| are in flight. */
static int client_reap(ds_sync_client *c, unsigned keep)
{
    int rc = 0;
    applier *a = c->ap;
    while (c->inflight && !rc) {
        ap_job *j = &a->jobs[(c->fill + AP_SLOTS - c->inflight) % AP_SLOTS];    /* the oldest */
        pthread_mutex_lock(&a->mu);
        if (c->inflight > keep)
            while (j->state != AJ_DONE) pthread_cond_wait(&a->cv, &a->mu);
        int done = j->state == AJ_DONE;
        pthread_mutex_unlock(&a->mu);
        if (!done) break;
        /* DONE: the apply thread no longer touches the slot. */
        size_t pages = j->n;
        for (size_t i = 0; i < pages; i++) ds_msg_free(&j->pages[i]);
        j->n = 0;
        if (!j->skipped) rc = client_applied(c, j->rc, pages, j->nodes, j->ins);
        pthread_mutex_lock(&a->mu);
        j->state = AJ_FREE;
        pthread_mutex_unlock(&a->mu);
        c->inflight--;
    }
    return rc;
}

/* Waits for every batch with the applier and accounts them. */
static int client_collect(ds_sync_client *c)
{
    int rc = 0;
    while (c->inflight) {                /* even after an error: none may stay behind */
        int r = client_reap(c, 0);
        if (!rc) rc = r;
    }
    return rc;
}

/* Applies the pending pages in one transaction: at once, or with an
 * applier by handing them over (to a free slot, so batches go in in
 * order and at most AP_SLOTS are in flight). */
static int client_flush(ds_sync_client *c)
{
    if (!c->npend) return 0;
    size_t nodes = c->pend_nodes, n = c->npend;
    if (c->ap) {
        int rc = client_reap(c, AP_SLOTS - 1);
        if (rc || c->store_failed) {    /* nothing goes in after a failed batch */
            client_drop_pending(c);
            return rc;
        }
        applier *a = c->ap;
        ap_job *j = &a->jobs[c->fill];
        pthread_mutex_lock(&a->mu);
        memcpy(j->pages, c->pend, n * sizeof *c->pend);
        j->n = n;
        j->nodes = nodes;
        j->state = AJ_QUEUED;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        memset(c->pend, 0, n * sizeof *c->pend);
        c->npend = c->pend_nodes = c->pend_bytes = 0;
        c->fill = (c->fill + 1) % AP_SLOTS;
        c->inflight++;
        return 0;
    }
    size_t ins = 0;
    int rc = ds_sync_apply_pages(c->cfg.replica, c->pend, n, &ins);
    client_drop_pending(c);
    return client_applied(c, rc, n, nodes, ins);
}

static int client_running(const ds_sync_client *c)
{
    return c->phase == C_START || c->phase == C_PAGES || c->phase == C_LAST;
}

void ds_sync_client_stop(ds_sync_client *c)
{
    client_drop_pending(c);
    /* A batch that fails to go in has failed the machine already. */
    if (c->ap) (void)client_collect(c);
    if (client_running(c)) {
        c->code[0] = 0;
        client_fail(c, DS_ERR_CANCELLED, "stopped before the end");
    }
}

static int client_on_error(ds_sync_client *c, const ds_msg *m)
{
    int err = DS_ERR_PROTO;
    if (strcmp(m->code, DS_SYNC_E_NOT_AUTHORIZED) == 0) err = DS_ERR_UNAUTHORIZED;
    else if (strcmp(m->code, DS_SYNC_E_RATE_LIMITED) == 0) err = DS_ERR_BUSY;
    else if (strcmp(m->code, DS_SYNC_E_VERSION) == 0) err = DS_ERR_VERSION;
    copy_text(c->code, sizeof c->code, m->code);
    if (m->message && m->message[0]) {
        copy_text(c->message, sizeof c->message, m->message);
    } else {
        /* Another implementation may leave the message out (docs/protocol.md). */
        char t[128];
        if (err == DS_ERR_UNAUTHORIZED)
            snprintf(t, sizeof t, "the publisher does not authorize this node");
        else if (err == DS_ERR_BUSY)
            snprintf(t, sizeof t, "%s", RATE_LIMITED_TEXT);
        else if (err == DS_ERR_VERSION)
            snprintf(t, sizeof t, "the publisher does not speak sync protocol version %d",
                     DS_SYNC_VERSION);
        else
            snprintf(t, sizeof t, "the publisher reported an error without a message");
        copy_text(c->message, sizeof c->message, t);
    }
    c->err = err;
    c->phase = C_FAILED;
    return 0;
}

static int client_on_frame(ds_sync_client *c, const uint8_t *f, size_t fl)
{
    ds_msg m;
    int rc = ds_msg_decode(f, fl, &m);
    uint64_t v = DS_SYNC_VERSION;
    if (rc == DS_ERR_NOMEM) {
        client_fail(c, rc, "%s", ds_strerror(rc));
        return rc;
    }
    if (rc == DS_ERR_VERSION || (rc && peek_version(f, fl, &v) && v != DS_SYNC_VERSION)) {
        if (rc == DS_ERR_VERSION) v = m.version;
        client_fail(c, DS_ERR_VERSION,
                    "publisher answered with sync protocol version %" PRIu64 "; this build speaks version %d",
                    v, DS_SYNC_VERSION);
        return 0;
    }
    if (rc) {
        client_fail(c, DS_ERR_PROTO, "malformed message from the publisher (%s)", ds_strerror(rc));
        return 0;
    }
    c->prog.bytes += fl + DS_FRAME_HDR_LEN;
    if (m.type == DS_MSG_ERROR) {
        client_on_error(c, &m);
    } else if (m.type == DS_MSG_SYNC_RESPONSE) {
        /* Decoded and validated: held for a batched transaction (applied
         * now when the batch is full; see ds_sync_client_recv). */
        if (!m.has_more) c->phase = C_LAST;
        if (!c->npend) c->pend_since = c->last;
        c->pend_nodes += m.nnodes;
        c->pend_bytes += fl;
        c->pend[c->npend++] = m;
        if (c->npend == PEND_PAGES || c->pend_nodes >= c->batch_nodes || c->pend_bytes >= PEND_BYTES)
            return client_flush(c);
        return 0;
    } else {
        client_fail(c, DS_ERR_PROTO, "unexpected %s message from the publisher", type_name(m.type));
    }
    ds_msg_free(&m);
    return rc;
}

static int client_recv(ds_sync_client *c, const uint8_t *data, size_t len, int fin, int64_t now_ms)
{
    if (!client_running(c)) return 0;
    if (len) c->last = now_ms;
    if (len && c->phase == C_START) {
        client_fail(c, DS_ERR_PROTO, "publisher sent data before the request");
        return 0;
    }
    if (len && c->phase == C_LAST) {
        client_fail(c, DS_ERR_PROTO, "publisher sent data after the last page");
        return 0;
    }
    size_t off = 0;
    while (off < len && c->phase == C_PAGES) {
        size_t used;
        const uint8_t *f;
        size_t fl;
        int rc = ds_frame_dec_feed(&c->dec, data + off, len - off, &used, &f, &fl);
        off += used;
        if (rc) {
            char t[200];
            frame_error_text(t, sizeof t, &c->dec, rc, "publisher");
            client_fail(c, rc == DS_ERR_NOMEM ? rc : DS_ERR_PROTO, "%s", t);
            return rc == DS_ERR_NOMEM ? rc : 0;
        }
        if (f && (rc = client_on_frame(c, f, fl))) return rc;
    }
    if (off < len && c->phase == C_LAST) {
        client_fail(c, DS_ERR_PROTO, "publisher sent data after the last page");
        return 0;
    }
    if (fin && client_running(c)) {
        if (c->phase == C_LAST) c->phase = C_DONE;
        else if (c->phase == C_PAGES)
            client_fail(c, DS_ERR_PROTO, ds_frame_dec_idle(&c->dec)
                        ? "stream ended before the last page" : "stream ended inside a frame");
        else
            client_fail(c, DS_ERR_PROTO, "stream ended before the request was sent");
    }
    return 0;
}

int ds_sync_client_recv(ds_sync_client *c, const uint8_t *data, size_t len, int fin, int64_t now_ms)
{
    int rc = client_recv(c, data, len, fin, now_ms);
    /* Pending pages are applied now unless they may be held: pages that
     * arrived before whatever ended the machine stay applied, as if each
     * had been written on arrival. */
    int frc = 0;
    if (c->npend && (!c->cfg.hold_ms || c->phase != C_PAGES || now_ms - c->pend_since >= c->cfg.hold_ms))
        frc = client_flush(c);
    /* Once the stream is over, so is the last batch before this returns. */
    if (!frc && c->phase != C_PAGES) frc = client_collect(c);
    return rc ? rc : frc;
}

int ds_sync_client_send(ds_sync_client *c, ds_buf *out, size_t budget, int *fin, int64_t now_ms)
{
    (void)budget;                    /* the request is one small frame */
    *fin = 0;
    if (c->phase == C_START) {
        ds_buf p = { 0 };
        int rc = ds_msg_encode_request(&p, c->has_cursor ? c->cursor : NULL, c->cfg.page_nodes,
                                       c->cfg.page_bytes);
        if (!rc) rc = ds_frame_encode(out, p.data, p.len, DS_SYNC_MAX_FRAME);
        ds_buf_free(&p);
        if (rc) return rc;
        c->phase = C_PAGES;
        c->last = now_ms;
        return 0;
    }
    if (!client_running(c) || c->phase == C_LAST) {
        if (!c->fin_sent) *fin = 1;
        c->fin_sent = 1;
    }
    return 0;
}

int64_t ds_sync_client_expiry(const ds_sync_client *c)
{
    if (!client_running(c)) return INT64_MAX;
    int64_t e = deadline(c->last, c->timeout_ms);
    if (c->npend) {
        int64_t h = deadline(c->pend_since, c->cfg.hold_ms);
        if (h < e) e = h;
    }
    return e;
}

void ds_sync_client_handle_expiry(ds_sync_client *c, int64_t now_ms)
{
    if (!client_running(c)) return;
    if (c->npend && now_ms >= deadline(c->pend_since, c->cfg.hold_ms)) {
        client_flush(c);             /* a failure leaves the machine FAILED */
        if (!client_running(c)) { client_collect(c); return; }
    }
    if (now_ms < deadline(c->last, c->timeout_ms)) return;
    c->code[0] = 0;
    client_fail(c, DS_ERR_TIMEOUT, "no progress from the publisher for %" PRIu32 " ms", c->timeout_ms);
    client_collect(c);               /* a store error there takes precedence */
}

ds_sync_state ds_sync_client_state(const ds_sync_client *c)
{
    return c->phase == C_DONE ? DS_SYNCS_DONE : c->phase == C_FAILED ? DS_SYNCS_FAILED : DS_SYNCS_RUNNING;
}

void ds_sync_client_progress(const ds_sync_client *c, ds_sync_progress *p)
{
    *p = c->prog;
}

int ds_sync_client_error(const ds_sync_client *c, const char **code, const char **message)
{
    int failed = c->phase == C_FAILED;
    if (code) *code = failed ? c->code : "";
    if (message) *message = failed ? c->message : "";
    return failed ? c->err : 0;
}
