/*
 * netsync.c - the network sync service (see netsync.h): QUIC endpoints on
 * the loop, one ds_sync_server per incoming stream, sync jobs that dial
 * peers and drive a ds_sync_client into the peer's replica, the periodic
 * and retry timers, and the in-process runner used by `ds peer sync`
 * without a daemon.  Bytes are pumped under the stream's flow control: a
 * machine is asked for more only while the stream holds less than
 * QUEUE_HIGH unsent bytes, so memory stays bounded however large a sync.
 * The subscriber's machine holds decoded pages for up to CLIENT_HOLD_MS
 * to apply up to DS_SYNC_APPLY_BATCH_NODES per replica transaction: one
 * commit (and fsync) per batch instead of one per 100-node page.  A second
 * thread (the machine's apply_thread) writes each batch while this one
 * receives and decodes the next.
 */
#include "daemon/netsync.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "core/syncproto.h"
#include "core/util.h"
#include "daemon/home.h"
#include "daemon/log.h"
#include "io/mem.h"
#include "io/quic.h"

#define QUEUE_HIGH (1u << 20)           /* unsent bytes per stream before we wait */
#define PAGE_SLACK (128u << 10)         /* a typical page, beyond the budget */
#define CLIENT_PAGE_NODES 100          /* asked of the publisher: one txn per page */
#define CLIENT_PAGE_BYTES (2u << 20)
#define CLIENT_HOLD_MS 50               /* a page waits this long for its batch, at most */
#define BUSY_RETRY_MS 200               /* a peer synced by another job: wait */
#define KEEP_JOBS 16
#define LOCK_WAIT_MS 5000               /* peers/.lock for the final bookkeeping */
#define CLOSE_LOCK_WAIT_MS 1000         /* the same, while the daemon stops */

/* ---- structures ----------------------------------------------------------- */

typedef enum { CONN_SERVER = 1, CONN_CLIENT } conn_role;

typedef struct job job;
typedef struct sstream sstream;

/* What a connection's data pointer points at. */
typedef struct nconn {
    conn_role role;
    ds_netsync *ns;
    ds_quic_conn *c;
    /* server */
    char peer[DS_NODE_ID_HEX + 1];
    int authorized;
    /* client */
    job *j;
} nconn;

struct sstream {
    sstream *next;
    nconn *nc;
    int64_t sid;
    ds_sync_server *m;
    ds_share_cfg share_cfg;
    ds_share_set share;
    struct stat share_sb; /* share.json as loaded (share_sb_ok: it existed) */
    int share_sb_ok;
    int limited;          /* answered RateLimited: not counted as active */
    int fin_sent;
};

struct job {
    job *next;
    ds_netsync *ns;
    uint64_t id;
    int full, periodic, done;
    int skip_addrless;    /* a peer without an address is SKIPPED, not FAILED */
    ds_netsync_peer *peers;
    size_t n, cur;
    /* the peer being synced */
    int active;           /* cur is DIALING or SYNCING */
    int cancelled;        /* cur was removed or unsubscribed: record nothing */
    char addrs[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t naddrs, addr_i;
    int64_t deadline;     /* dialing gives up at this (monotonic ms) */
    ds_store *replica;
    nconn *nc;            /* the current connection, or NULL */
    int64_t sid;
    ds_sync_client *cl;
    uv_timer_t timer;
    int timer_closed;
    uv_getaddrinfo_t gai;
    int resolving;        /* gai is pending (until on_resolved runs, even if cancelled) */
    int close_deferred;   /* ds_netsync_close met it resolving: on_resolved closes it */
    size_t resolve_cur;   /* the peer it resolves for */
    int64_t last_progress;
    char stopped_by[16];  /* what stopped the job before its end (job_stop), or "" */
};

typedef struct retry_ent {
    char id[DS_NODE_ID_HEX + 1];
    uint32_t failures;
    int64_t due;          /* monotonic ms; 0 = none */
} retry_ent;

struct ds_netsync {
    uv_loop_t *loop;
    ds_ctx *ctx;
    ds_netsync_opts o;
    char listen[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nlisten;
    char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nbound;
    int daemon_mode;      /* log to the daemon log */
    int have_identity;
    uint8_t sk[64];
    ds_cursor_seal seal;             /* the served syncs' cursors (from sk) */
    ds_quic_endpoint *servers[DS_NETSYNC_MAX_LISTEN];
    size_t nservers;
    ds_quic_endpoint *dial4, *dial6;
    sstream *streams;
    uv_timer_t srv_timer, periodic, retry_timer;
    job *jobs;
    uint64_t next_job;
    uint32_t instance;    /* random, told with every job: job numbers restart
                             with each daemon, and a poll must not mistake
                             another daemon's job for its own */
    retry_ent retry[DS_NETSYNC_MAX_PEERS];
    size_t nretry;
    int closing;
    int pending_closes;   /* while closing; also endpoints being retired */
    int relisten;         /* bind again once the retired endpoints are closed */
    void (*done)(void *);
    void *done_ud;
    ds_netsync_progress_fn progress;
    void *progress_ud;
};

static ds_netsync_progress_fn g_progress;
static void *g_progress_ud;

void ds_netsync_set_progress(ds_netsync_progress_fn fn, void *ud)
{
    g_progress = fn;
    g_progress_ud = ud;
}

#define NLOG(ns, lvl, ...)                                                                     \
    do {                                                                                       \
        if ((ns)->daemon_mode && ds_log_enabled(lvl))                                          \
            ds_log(lvl, __VA_ARGS__);                                                          \
    } while (0)

static int64_t now_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

/* The same clock as read at the start of this loop iteration: for the
 * per-packet path, where a clock read per call shows up in profiles and
 * millisecond staleness does not matter (it only stamps progress). */
static int64_t loop_ms(ds_netsync *ns)
{
    return (int64_t)uv_now(ns->loop);
}

static void fmt_err(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_err(char *out, size_t cap, const char *fmt, ...)
{
    if (!out || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

static void sockaddr_text(const struct sockaddr *sa, char out[DS_ADDR_MAX])
{
    char h[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof h);
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof h);
        port = ntohs(a->sin6_port);
    }
    ds_addr_format(h, port, out);
}

/* ---- peers.json helpers --------------------------------------------------- */

/* The peer's publish flag (0 when unknown or on any error). */
static int peer_may_pull(ds_netsync *ns, const char *id)
{
    ds_peers_cfg cfg;
    char err[512];
    if (ds_peers_cfg_load(ns->ctx->home, &cfg, err, sizeof err) != 0) {
        NLOG(ns, DS_LOG_WARN, "sync: cannot read peers.json: %s", err);
        return 0;
    }
    const ds_peer *p = ds_peers_find(&cfg, id);
    int r = p && p->publish;
    ds_peers_cfg_free(&cfg);
    return r;
}

/* ---- server side ---------------------------------------------------------- */

static void srv_arm(ds_netsync *ns);

static size_t active_syncs(ds_netsync *ns, const char *peer)
{
    size_t n = 0;
    for (sstream *s = ns->streams; s; s = s->next)
        if (!s->limited && s->m && strcmp(s->nc->peer, peer) == 0 &&
            ds_sync_server_state(s->m) == DS_SYNCS_RUNNING)
            n++;
    return n;
}

static void sstream_free(sstream *s)
{
    if (s->m)
        ds_sync_server_free(s->m);
    ds_share_set_free(&s->share);
    ds_share_cfg_free(&s->share_cfg);
    free(s);
}

static void sstream_unlink(ds_netsync *ns, sstream *s)
{
    for (sstream **pp = &ns->streams; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

/* Once no sync runs any more, the daemon hands the memory the syncs freed
 * back to the kernel (io/mem.h keeps it in the process while they run). */
static void release_if_idle(ds_netsync *ns)
{
    if (!ns->daemon_mode || ns->streams)
        return;
    for (job *j = ns->jobs; j; j = j->next)
        if (j->active)
            return;
    ds_mem_release();
}

/* share.json's identity and times: 0, or -1 when it does not exist. */
static int share_file_stat(ds_netsync *ns, struct stat *sb)
{
    char *path = ds_path_join(ns->ctx->home, "share.json");
    int rc = path && stat(path, sb) == 0 ? 0 : -1;
    free(path);
    return rc;
}

/* Before pages are built: if share.json changed since the stream loaded
 * it (ds peer unshare, or an edit) and a project the stream serves is no
 * longer shared, the sync ends with an ERROR instead: no page is built
 * from the old share set once the user has stopped sharing (a node
 * written after an unshare must never leave).  More shared is fine: the
 * next sync has it. */
static void srv_check_share(ds_netsync *ns, sstream *s)
{
    struct stat sb;
    int ok = share_file_stat(ns, &sb) == 0;
    if (ok && s->share_sb_ok && sb.st_ino == s->share_sb.st_ino &&
        sb.st_dev == s->share_sb.st_dev && sb.st_size == s->share_sb.st_size &&
        sb.st_mtim.tv_sec == s->share_sb.st_mtim.tv_sec &&
        sb.st_mtim.tv_nsec == s->share_sb.st_mtim.tv_nsec)
        return;
    if (!s->share.n)      /* nothing served: nothing to hold back */
        return;
    ds_share_cfg c = { 0 };
    ds_share_set now = { 0 };
    char err[512];
    int still = ds_share_cfg_load(ns->ctx->home, &c, err, sizeof err) == 0 &&
                ds_share_cfg_set(&c, &now) == 0;
    for (size_t i = 0; still && i < s->share.n; i++)
        still = ds_share_set_contains(&now, s->share.roots[i]);
    ds_share_set_free(&now);
    ds_share_cfg_free(&c);
    if (still) {
        s->share_sb = sb;
        s->share_sb_ok = ok;
        return;
    }
    if (ds_sync_server_abort(s->m, "Publisher stopped sharing a project during the sync; "
                                   "sync again"))
        NLOG(ns, DS_LOG_INFO, "sync: ending the sync of %.12s...: a project is no longer shared",
             s->nc->peer);
}

/* Moves bytes from the machine to the stream while it has room.  Frees
 * the stream record once the machine is finished and FIN is queued. */
static void srv_pump(ds_netsync *ns, sstream *s)
{
    if (!s->fin_sent)
        srv_check_share(ns, s);
    while (!s->fin_sent) {
        size_t q = ds_quic_stream_queued(s->nc->c, s->sid);
        if (q >= QUEUE_HIGH)
            break;
        /* Pages are built in one buffer sized for the budget (plus the
         * page that may cross it), which the stream then takes as is. */
        ds_buf out = { 0 };
        int fin = 0;
        int rc = ds_buf_reserve(&out, QUEUE_HIGH - q + PAGE_SLACK);
        if (!rc)
            rc = ds_sync_server_send(s->m, &out, QUEUE_HIGH - q, &fin, now_ms());
        if (rc) {
            ds_buf_free(&out);
            NLOG(ns, DS_LOG_WARN, "sync: serving %.12s...: %s", s->nc->peer, ds_strerror(rc));
            ds_quic_conn_close(s->nc->c, DS_QUIC_APP_INTERNAL, "internal error");
            return;
        }
        if (out.len && out.cap - out.len > out.len + PAGE_SLACK) {
            /* Mostly unused (the end of the sync): keep only the bytes. */
            uint8_t *p = realloc(out.data, out.len);
            if (p)
                out.data = p;
        }
        if (out.len || fin) {
            rc = ds_quic_stream_write_take(s->nc->c, s->sid, out.data, out.len, fin);
            if (rc) {
                ds_buf_free(&out);
                break;
            }
            out.data = NULL;
        }
        ds_buf_free(&out);
        if (fin) {
            s->fin_sent = 1;
            uint64_t nodes = 0, pages = 0, bytes = 0;
            ds_sync_server_counts(s->m, &nodes, &pages, &bytes);
            NLOG(ns, DS_LOG_INFO, "sync: served %.12s...: %llu nodes in %llu pages (%s)",
                 s->nc->peer, (unsigned long long)nodes, (unsigned long long)pages,
                 ds_sync_server_state(s->m) == DS_SYNCS_DONE ? "done" : "ended with an error");
        }
        if (!out.len && !fin)
            break;
    }
    if (s->fin_sent) {
        sstream_unlink(ns, s);
        sstream_free(s);
        release_if_idle(ns);
    }
    srv_arm(ns);
}

static void srv_timer_cb(uv_timer_t *t)
{
    ds_netsync *ns = t->data;
    int64_t now = now_ms();
    sstream *s = ns->streams;
    while (s) {
        sstream *next = s->next;
        if (s->m && ds_sync_server_expiry(s->m) <= now) {
            ds_sync_server_handle_expiry(s->m, now);
            if (ds_sync_server_state(s->m) != DS_SYNCS_RUNNING) {
                /* Timed out: nothing more will come; drop the connection. */
                NLOG(ns, DS_LOG_INFO, "sync: %.12s... stalled; closing", s->nc->peer);
                sstream_unlink(ns, s);
                ds_quic_conn *c = s->nc->c;
                sstream_free(s);
                ds_quic_conn_close(c, DS_QUIC_APP_TIMEOUT, "timeout");
            } else {
                srv_pump(ns, s);
            }
        }
        s = next;
    }
    srv_arm(ns);
}

static void srv_arm(ds_netsync *ns)
{
    if (ns->closing)
        return;
    int64_t e = INT64_MAX;
    for (sstream *s = ns->streams; s; s = s->next)
        if (s->m) {
            int64_t x = ds_sync_server_expiry(s->m);
            if (x < e)
                e = x;
        }
    if (e == INT64_MAX) {
        uv_timer_stop(&ns->srv_timer);
        return;
    }
    int64_t d = e - now_ms();
    uv_timer_start(&ns->srv_timer, srv_timer_cb, d > 0 ? (uint64_t)d : 0, 0);
}

static void srv_stream_open(ds_netsync *ns, nconn *nc, int64_t sid)
{
    sstream *s = calloc(1, sizeof *s);
    if (!s) {
        ds_quic_conn_close(nc->c, DS_QUIC_APP_INTERNAL, "out of memory");
        return;
    }
    s->nc = nc;
    s->sid = sid;
    char err[512] = "";
    ds_store *st = NULL;
    /* Looked at before it is read: a change after this shows (srv_check_share). */
    s->share_sb_ok = share_file_stat(ns, &s->share_sb) == 0;
    int rc = ds_share_cfg_load(ns->ctx->home, &s->share_cfg, err, sizeof err);
    const char *unavailable = NULL;
    if (!ns->have_identity) {
        rc = DS_ERR_INVALID;       /* between an identity change and the new listener */
        unavailable = "its identity is being replaced";
        snprintf(err, sizeof err, "%s", unavailable);
    } else if (rc) {
        unavailable = "its share.json cannot be read";
    } else if ((rc = ds_share_cfg_set(&s->share_cfg, &s->share))) {
        unavailable = "out of memory";
    } else if ((rc = ds_ctx_store(ns->ctx, 1, &st))) {
        unavailable = "its store cannot be opened";
    }
    if (rc)
        NLOG(ns, DS_LOG_ERROR, "sync: cannot serve %.12s...: %s", nc->peer,
             err[0] ? err : ns->ctx->error.message);
    /* Authorization is looked up again per stream: a `ds peer add
     * --no-publish` takes effect on the next sync. */
    nc->authorized = peer_may_pull(ns, nc->peer);
    uint32_t maxc = ns->o.max_concurrent ? ns->o.max_concurrent : 4;
    s->limited = nc->authorized && active_syncs(ns, nc->peer) >= maxc;
    /* A publisher that cannot serve still answers, with ERROR Internal
     * (after NotAuthorized: an unknown peer learns nothing of it). */
    ds_sync_server_cfg cfg = {
        .store = st, .share = &s->share, .seal = &ns->seal, .authorized = nc->authorized,
        .rate_limited = s->limited, .peer_id = nc->peer, .unavailable = unavailable,
    };
    rc = ds_sync_server_new(&s->m, &cfg, now_ms());
    if (rc) {
        sstream_free(s);
        ds_quic_conn_close(nc->c, DS_QUIC_APP_INTERNAL, "internal error");
        return;
    }
    if (!nc->authorized)
        NLOG(ns, DS_LOG_INFO, "sync: %.12s... is not authorized (publish is off or unknown)",
             nc->peer);
    else if (s->limited)
        NLOG(ns, DS_LOG_INFO, "sync: %.12s... rate limited (%u syncs running)", nc->peer,
             maxc);
    s->next = ns->streams;
    ns->streams = s;
    srv_arm(ns);
}

static sstream *srv_find(ds_netsync *ns, nconn *nc, int64_t sid)
{
    for (sstream *s = ns->streams; s; s = s->next)
        if (s->nc == nc && s->sid == sid)
            return s;
    return NULL;
}

static void srv_conn_gone(ds_netsync *ns, nconn *nc)
{
    sstream *s = ns->streams;
    int freed = 0;
    while (s) {
        sstream *next = s->next;
        if (s->nc == nc) {
            sstream_unlink(ns, s);
            sstream_free(s);
            freed = 1;
        }
        s = next;
    }
    if (freed)                        /* a connection that served nothing freed nothing */
        release_if_idle(ns);
    srv_arm(ns);
}

/* ---- client side: jobs ---------------------------------------------------- */

static void job_next(job *j);
static void dial_next(job *j);
static void client_finish(job *j, int err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(job *j, ds_netsync_peer *p)
{
    ds_netsync *ns = j->ns;
    if (ns->progress)
        ns->progress(p, ns->progress_ud);
}

static void job_timer_cb(uv_timer_t *t);

static void job_arm(job *j, int64_t at)
{
    int64_t d = at - now_ms();
    uv_timer_start(&j->timer, job_timer_cb, d > 0 ? (uint64_t)d : 0, 0);
}

static int peer_busy(ds_netsync *ns, const job *self, const char *id)
{
    for (job *o = ns->jobs; o; o = o->next)
        if (o != self && o->active && strcmp(o->peers[o->cur].id, id) == 0)
            return 1;
    return 0;
}

/* Detaches and closes the job's connection (its on_closed is ignored). */
static void drop_conn(job *j, const char *why)
{
    if (!j->nc)
        return;
    nconn *nc = j->nc;
    j->nc = NULL;
    nc->j = NULL;
    ds_quic_conn_close(nc->c, 0, why);
}

static void retry_note(ds_netsync *ns, const char *id, int ok);

/* Records the outcome of the current peer in meta.json and peers.json
 * (waiting at most |lock_wait_ms| for peers/.lock) and logs it. */
static void record_peer(job *j, int lock_wait_ms)
{
    ds_netsync *ns = j->ns;
    ds_netsync_peer *p = &j->peers[j->cur];
    p->finished_ms = now_ms();
    int ok = p->state == DS_NETSYNC_DONE;
    char when[32];
    ds_ops_iso8601(ns->ctx->now_ms(), 0, when);
    char err[1024] = "";
    uint8_t cur[DS_CURSOR_LEN];
    int has = 0;
    if (j->replica) {
        uint64_t n;
        if (ds_store_node_count(j->replica, &n) == 0)
            p->replica_nodes = n;
        if (ds_sync_cursor_get(j->replica, cur, &has) != 0)
            has = 0;
    }
    int fd = -1;
    /* A cancelled peer is being removed or unsubscribed by a request that
     * holds the peers lock right now, in this same loop: waiting for it
     * would stall the daemon for LOCK_WAIT_MS, and there is nothing to
     * record for a peer that is going away. */
    if (!j->cancelled && ds_peers_lock(ns->ctx->home, lock_wait_ms, &fd, err, sizeof err) == 0) {
        ds_peers_cfg cfg;
        if (ds_peers_cfg_load(ns->ctx->home, &cfg, err, sizeof err) == 0) {
            const ds_peer *pe = ds_peers_find(&cfg, p->id);
            if (pe) {
                if (j->replica && (ok || p->nodes_new))
                    ds_replica_meta_write(ns->ctx->home, p->id, pe->name,
                                          ok ? when : pe->last_sync, p->replica_nodes,
                                          has ? cur : NULL, err, sizeof err);
                if (ds_peers_set_result(&cfg, p->id, when, ok, ok ? "ok" : p->message,
                                        p->addr[0] ? p->addr : NULL, p->path) == 0)
                    ds_peers_cfg_save(ns->ctx->home, &cfg, err, sizeof err);
            }
            ds_peers_cfg_free(&cfg);
        }
        ds_peers_unlock(fd);
    }
    if (err[0])
        NLOG(ns, DS_LOG_WARN, "sync: recording the result for %s: %s", p->label, err);
    if (ok)
        NLOG(ns, DS_LOG_INFO, "sync: %s via %s (%s): %llu nodes received, %llu new",
             p->label, p->addr, p->path ? p->path : "?", (unsigned long long)p->nodes_received,
             (unsigned long long)p->nodes_new);
    else
        NLOG(ns, DS_LOG_WARN, "sync: %s failed: %s", p->label, p->message);
}

/* Records the outcome of the current peer, then moves on to the next. */
static void finish_peer(job *j)
{
    ds_netsync *ns = j->ns;
    ds_netsync_peer *p = &j->peers[j->cur];
    int ok = p->state == DS_NETSYNC_DONE;
    record_peer(j, LOCK_WAIT_MS);
    /* A failed periodic sync is retried with backoff; any success (a
     * manual one too) ends the backoff of that peer. */
    if (j->periodic || ok)
        retry_note(ns, p->id, ok);
    if (j->cl) {
        ds_sync_client_free(j->cl);
        j->cl = NULL;
    }
    drop_conn(j, ok ? "done" : "failed");
    j->replica = NULL;
    j->active = 0;
    int cancelled = j->cancelled;
    j->cancelled = 0;
    report(j, p);
    j->cur++;
    /* Cancelled from inside a request that holds the peers lock: the next
     * peer starts on the next loop turn, once the request is over. */
    if (cancelled)
        job_arm(j, now_ms());
    else
        job_next(j);
    release_if_idle(ns);
}

static void client_finish(job *j, int err, const char *code, const char *fmt, ...)
{
    ds_netsync_peer *p = &j->peers[j->cur];
    p->state = err ? DS_NETSYNC_FAILED : DS_NETSYNC_DONE;
    p->err = err;
    snprintf(p->code, sizeof p->code, "%s", code ? code : "");
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->message, sizeof p->message, fmt, ap);
        va_end(ap);
    }
    finish_peer(j);
}

static void tried_add(ds_netsync_peer *p, const char *addr, const char *why)
{
    size_t l = strlen(p->tried);
    snprintf(p->tried + l, sizeof p->tried - l, "%s%s%s%s%s", l ? ", " : "", addr,
             why ? " (" : "", why ? why : "", why ? ")" : "");
}

static void client_check(job *j);

/* Moves the client machine's output to the stream and checks its state. */
static void client_pump(job *j)
{
    if (!j->cl || !j->nc)
        return;
    ds_netsync_peer *p = &j->peers[j->cur];
    for (;;) {
        size_t q = ds_quic_stream_queued(j->nc->c, j->sid);
        if (q >= QUEUE_HIGH)
            break;
        ds_buf out = { 0 };
        int fin = 0;
        int rc = ds_sync_client_send(j->cl, &out, QUEUE_HIGH - q, &fin, now_ms());
        if (!rc && (out.len || fin))
            rc = ds_quic_stream_write(j->nc->c, j->sid, out.data, out.len, fin);
        size_t sent = out.len;
        ds_buf_free(&out);
        if (rc) {
            client_finish(j, rc, NULL, "sync with %s failed: %s", p->label, ds_strerror(rc));
            return;
        }
        if (!sent)
            break;
    }
    client_check(j);
}

/* Copies the machine's progress and finishes the peer when it is over. */
static void client_check(job *j)
{
    ds_netsync_peer *p = &j->peers[j->cur];
    ds_sync_progress pr;
    ds_sync_client_progress(j->cl, &pr);
    int moved = pr.pages != p->pages;
    p->pages = pr.pages;
    p->nodes_received = pr.nodes_received;
    p->nodes_new = pr.nodes_new;
    p->bytes = pr.bytes;
    ds_sync_state st = ds_sync_client_state(j->cl);
    if (st == DS_SYNCS_DONE) {
        client_finish(j, 0, NULL, NULL);
        return;
    }
    if (st == DS_SYNCS_FAILED) {
        const char *code = "", *msg = "";
        int e = ds_sync_client_error(j->cl, &code, &msg);
        if (e == DS_ERR_TIMEOUT) { /* a stalled publisher: say what was kept, as for a lost connection */
            client_finish(j, e, code,
                          "%s; the %llu nodes received (%llu new) were kept, the next sync "
                          "continues from there",
                          msg && msg[0] ? msg : ds_strerror(e), (unsigned long long)p->nodes_received,
                          (unsigned long long)p->nodes_new);
            return;
        }
        client_finish(j, e ? e : DS_ERR_PROTO, code, "%s",
                      msg && msg[0] ? msg : ds_strerror(e ? e : DS_ERR_PROTO));
        return;
    }
    if (moved)
        report(j, p);
    job_arm(j, ds_sync_client_expiry(j->cl));
}

static void client_connected(job *j)
{
    ds_netsync_peer *p = &j->peers[j->cur];
    p->state = DS_NETSYNC_SYNCING;
    p->path = ds_quic_conn_path_kind(j->nc->c);
    int rc = ds_quic_stream_open(j->nc->c, &j->sid);
    if (rc) {
        client_finish(j, rc, NULL, "cannot open a stream to %s: %s", p->label, ds_strerror(rc));
        return;
    }
    ds_sync_client_cfg cfg = {
        .replica = j->replica, .full = j->full, .page_nodes = CLIENT_PAGE_NODES,
        .page_bytes = CLIENT_PAGE_BYTES,
        .hold_ms = CLIENT_HOLD_MS, .apply_thread = 1,
    };
    rc = ds_sync_client_new(&j->cl, &cfg, now_ms());
    if (rc) {
        client_finish(j, rc, NULL, "cannot start the sync with %s: %s", p->label,
                      ds_strerror(rc));
        return;
    }
    report(j, p);
    client_pump(j);
}

static ds_quic_endpoint *dialer(ds_netsync *ns, int family, char *err, size_t errlen);
static void job_handle_closed(uv_handle_t *h);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    job *j = req->data;
    j->resolving = 0;
    ds_netsync *ns = j->ns;
    if (j->close_deferred) {   /* closing: gai was the last thing using the job */
        uv_freeaddrinfo(res);
        uv_close((uv_handle_t *)&j->timer, job_handle_closed);
        return;
    }
    /* Cancelled (the peer was removed, its replica replaced): the job has
     * moved on, and waits for this callback before it resolves again. */
    if (ns->closing || j->done || !j->active || j->resolve_cur != j->cur ||
        status == UV_EAI_CANCELED) {
        uv_freeaddrinfo(res);
        return;
    }
    ds_netsync_peer *p = &j->peers[j->cur];
    const char *a = j->addrs[j->addr_i];
    if (status != 0 || !res) {
        tried_add(p, a, "cannot resolve the host name");
        uv_freeaddrinfo(res);
        j->addr_i++;
        dial_next(j);
        return;
    }
    char err[256] = "";
    ds_quic_endpoint *ep = dialer(ns, res->ai_family, err, sizeof err);
    uint8_t pk[DS_NODE_ID_LEN];
    ds_quic_conn *c = NULL;
    int rc = ep ? ds_node_id_parse(p->id, pk) : DS_ERR_IO;
    if (!rc)
        rc = ds_quic_connect(ep, res->ai_addr, pk, &c);
    uv_freeaddrinfo(res);
    if (rc || !c) {
        tried_add(p, a, err[0] ? err : ds_strerror(rc ? rc : DS_ERR_IO));
        j->addr_i++;
        dial_next(j);
        return;
    }
    nconn *nc = calloc(1, sizeof *nc);
    if (!nc) {
        ds_quic_conn_close(c, DS_QUIC_APP_INTERNAL, "out of memory");
        client_finish(j, DS_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    nc->role = CONN_CLIENT;
    nc->ns = ns;
    nc->c = c;
    nc->j = j;
    ds_quic_conn_set_data(c, nc);
    j->nc = nc;
    /* This address gets an equal share of the time left, at least 1 s. */
    int64_t now = now_ms(), left = j->deadline - now;
    size_t rest = j->naddrs - j->addr_i;
    int64_t slice = rest ? left / (int64_t)rest : left;
    if (slice < 1000)
        slice = left < 1000 ? left : 1000;
    job_arm(j, now + slice);
}

/* Tries the next address of the current peer, or gives up. */
static void dial_next(job *j)
{
    ds_netsync_peer *p = &j->peers[j->cur];
    int64_t now = now_ms();
    if (j->addr_i >= j->naddrs || now >= j->deadline) {
        for (size_t i = j->addr_i; i < j->naddrs; i++)
            tried_add(p, j->addrs[i], "not tried: out of time");
        client_finish(j, DS_ERR_TIMEOUT, NULL, "cannot reach %s (tried %s)", p->label, p->tried);
        return;
    }
    char host[DS_ADDR_MAX], port[8];
    uint16_t pn;
    const char *why;
    if (ds_addr_parse(j->addrs[j->addr_i], 0, host, &pn, &why) != 0) {
        tried_add(p, j->addrs[j->addr_i], why);
        j->addr_i++;
        dial_next(j);
        return;
    }
    snprintf(port, sizeof port, "%u", (unsigned)pn);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    j->gai.data = j;
    j->resolving = 1;
    j->resolve_cur = j->cur;
    int rc = uv_getaddrinfo(j->ns->loop, &j->gai, on_resolved, host, port, &hints);
    if (rc) {
        j->resolving = 0;
        tried_add(p, j->addrs[j->addr_i], uv_strerror(rc));
        j->addr_i++;
        dial_next(j);
    }
}

/* Starts the current peer: addresses, replica, first dial. */
static void start_peer(job *j)
{
    ds_netsync *ns = j->ns;
    ds_netsync_peer *p = &j->peers[j->cur];
    p->started_ms = now_ms();
    p->state = DS_NETSYNC_DIALING;
    j->active = 1;
    j->addr_i = 0;
    j->naddrs = 0;
    ds_peers_cfg cfg;
    char err[1024] = "";
    int rc = ds_peers_cfg_load(ns->ctx->home, &cfg, err, sizeof err);
    if (rc) {
        client_finish(j, rc, NULL, "%s", err);
        return;
    }
    const ds_peer *pe = ds_peers_find(&cfg, p->id);
    if (!pe) {
        ds_peers_cfg_free(&cfg);
        client_finish(j, DS_ERR_NOTFOUND, NULL, "%s is no longer a peer", p->label);
        return;
    }
    char sid[DS_PEER_SHORT_ID + 1];
    snprintf(p->label, sizeof p->label, "%s", ds_peer_label(pe, sid));
    for (size_t i = 0; i < pe->naddrs; i++)
        snprintf(j->addrs[j->naddrs++], DS_ADDR_MAX, "%s", pe->addrs[i]);
    ds_peers_cfg_free(&cfg);
    if (!j->naddrs && j->skip_addrless) {
        /* A sync of every subscribed peer passes over a peer known only
         * for ds peer import: nothing to dial, and nothing is recorded
         * (its last sync result stays as it was). */
        p->state = DS_NETSYNC_SKIPPED;
        p->finished_ms = p->started_ms;
        snprintf(p->message, sizeof p->message,
                 "no address known (add one with ds peer add %s --addr HOST:PORT)", p->label);
        NLOG(ns, DS_LOG_INFO, "sync: skipping %s: %s", p->label, p->message);
        j->active = 0;
        report(j, p);
        j->cur++;
        job_next(j);
        return;
    }
    if (!j->naddrs) {
        client_finish(j, DS_ERR_NOTFOUND, NULL,
                      "no address known for %s: add one with ds peer add %s --addr HOST:PORT "
                      "(or add the ticket printed by ds peer ticket on its machine)",
                      p->label, p->label);
        return;
    }
    rc = ds_ops_replica(ns->ctx, p->id, p->label, 1, &j->replica);
    if (rc) {
        const ds_op_error *e = &ns->ctx->error;
        if (e->hint[0])   /* damaged: the message names the peer, the hint the repair */
            client_finish(j, rc, NULL, "%s. %s", e->message, e->hint);
        else
            client_finish(j, rc, NULL, "cannot open the replica of %s: %s", p->label,
                          e->message[0] ? e->message : ds_strerror(rc));
        return;
    }
    uint32_t to = ns->o.connect_timeout_ms ? ns->o.connect_timeout_ms : DS_NETSYNC_DIAL_TIMEOUT_MS;
    j->deadline = now_ms() + to;
    report(j, p);
    dial_next(j);
}

/* Starts the next pending peer, or completes the job. */
static void job_next(job *j)
{
    ds_netsync *ns = j->ns;
    if (ns->closing)
        return;
    while (j->cur < j->n && j->peers[j->cur].state != DS_NETSYNC_PENDING)
        j->cur++;
    if (j->cur >= j->n) {
        j->done = 1;
        uv_timer_stop(&j->timer);
        return;
    }
    if (peer_busy(ns, j, j->peers[j->cur].id)) {
        job_arm(j, now_ms() + BUSY_RETRY_MS);
        return;
    }
    if (j->resolving) {   /* a cancelled look-up has not called back yet: gai is in use */
        job_arm(j, now_ms() + 20);
        return;
    }
    start_peer(j);
}

static void job_timer_cb(uv_timer_t *t)
{
    job *j = t->data;
    if (j->done || j->ns->closing)
        return;
    if (!j->active) {
        job_next(j);
        return;
    }
    ds_netsync_peer *p = &j->peers[j->cur];
    if (p->state == DS_NETSYNC_DIALING) {
        if (j->resolving)
            return;
        /* No handshake within this address's share of the time. */
        tried_add(p, j->addrs[j->addr_i], "no answer");
        drop_conn(j, "timeout");
        j->addr_i++;
        dial_next(j);
        return;
    }
    if (p->state == DS_NETSYNC_SYNCING && j->cl) {
        ds_sync_client_handle_expiry(j->cl, now_ms());
        client_pump(j);
    }
}

/* ---- connection callbacks --------------------------------------------------- */

static int on_accept(ds_quic_conn *c, const uint8_t peer_pk[DS_NODE_PK_LEN], void *ud)
{
    ds_netsync *ns = ud;
    if (ns->closing)
        return 1;
    nconn *nc = calloc(1, sizeof *nc);
    if (!nc)
        return 1;
    nc->role = CONN_SERVER;
    nc->ns = ns;
    nc->c = c;
    ds_hex_encode(peer_pk, DS_NODE_PK_LEN, nc->peer);
    ds_quic_conn_set_data(c, nc);
    char ra[DS_ADDR_MAX] = "?";
    struct sockaddr_storage ss;
    if (ds_quic_conn_remote(c, &ss) == 0)
        sockaddr_text((struct sockaddr *)&ss, ra);
    NLOG(ns, DS_LOG_INFO, "sync: connection from %.12s... at %s (%s)", nc->peer, ra,
         ds_quic_conn_path_kind(c));
    return 0;
}

static void on_connected(ds_quic_conn *c, void *ud)
{
    nconn *nc = ds_quic_conn_get_data(c);
    if (!nc || nc->role != CONN_CLIENT || !nc->j)
        return;
    job *j = nc->j;
    ds_netsync_peer *p = &j->peers[j->cur];
    snprintf(p->addr, sizeof p->addr, "%s", j->addrs[j->addr_i]);
    client_connected(j);
}

static void on_stream_open(ds_quic_conn *c, int64_t sid, void *ud)
{
    ds_netsync *ns = ud;
    nconn *nc = ds_quic_conn_get_data(c);
    if (!nc || nc->role != CONN_SERVER)
        return;
    srv_stream_open(ns, nc, sid);
}

static void on_stream_data(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len,
                           int fin, void *ud)
{
    ds_netsync *ns = ud;
    nconn *nc = ds_quic_conn_get_data(c);
    if (!nc)
        return;
    if (nc->role == CONN_SERVER) {
        sstream *s = srv_find(ns, nc, sid);
        if (!s) {
            /* Data before on_stream_open (if the transport skips it). */
            srv_stream_open(ns, nc, sid);
            s = srv_find(ns, nc, sid);
        }
        if (!s)
            return;
        if (ds_sync_server_recv(s->m, data, len, fin, loop_ms(ns)) != 0) {
            ds_quic_conn_close(c, DS_QUIC_APP_INTERNAL, "out of memory");
            return;
        }
        srv_pump(ns, s);
        return;
    }
    job *j = nc->j;
    if (!j || !j->cl || sid != j->sid)
        return;
    int rc = ds_sync_client_recv(j->cl, data, len, fin, loop_ms(ns));
    if (rc) {
        ds_netsync_peer *p = &j->peers[j->cur];
        client_finish(j, rc, NULL, "sync with %s failed: %s", p->label, ds_strerror(rc));
        return;
    }
    client_pump(j);
}

static void on_stream_writable(ds_quic_conn *c, int64_t sid, void *ud)
{
    ds_netsync *ns = ud;
    nconn *nc = ds_quic_conn_get_data(c);
    if (!nc)
        return;
    if (nc->role == CONN_SERVER) {
        sstream *s = srv_find(ns, nc, sid);
        if (s)
            srv_pump(ns, s);
    } else if (nc->j && nc->j->cl && sid == nc->j->sid) {
        client_pump(nc->j);
    }
}

static void on_closed(ds_quic_conn *c, int err, const char *reason, void *ud)
{
    ds_netsync *ns = ud;
    nconn *nc = ds_quic_conn_get_data(c);
    ds_quic_conn_set_data(c, NULL);
    if (!nc)
        return;
    if (nc->role == CONN_SERVER) {
        srv_conn_gone(ns, nc);
        free(nc);
        return;
    }
    job *j = nc->j;
    free(nc);
    if (!j || j->done || ns->closing)
        return;
    j->nc = NULL;
    ds_netsync_peer *p = &j->peers[j->cur];
    const char *why = reason && reason[0] ? reason : ds_strerror(err ? err : DS_ERR_IO);
    if (p->state == DS_NETSYNC_DIALING) {
        if (err == DS_ERR_CRYPTO)
            tried_add(p, j->addrs[j->addr_i], "the node there is not this peer (key mismatch)");
        else if (err == DS_ERR_PROTO)
            tried_add(p, j->addrs[j->addr_i], "not a ds sync endpoint");
        else
            tried_add(p, j->addrs[j->addr_i], why);
        j->addr_i++;
        dial_next(j);
        return;
    }
    if (p->state == DS_NETSYNC_SYNCING) {
        /* Stream bytes that arrived before the close were already fed. */
        if (j->cl && ds_sync_client_state(j->cl) != DS_SYNCS_RUNNING) {
            client_check(j);
            return;
        }
        client_finish(j, err ? err : DS_ERR_PROTO, NULL,
                      "the connection to %s (%s) was lost during the sync: %s; the %llu "
                      "nodes received (%llu new) were kept, the next sync continues from "
                      "there",
                      p->label, p->addr, why, (unsigned long long)p->nodes_received,
                      (unsigned long long)p->nodes_new);
    }
}

static const ds_quic_callbacks callbacks = {
    .on_accept = on_accept,
    .on_connected = on_connected,
    .on_stream_open = on_stream_open,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_closed = on_closed,
};

/* ---- endpoints ---------------------------------------------------------------- */

static int load_identity(ds_netsync *ns, char *err, size_t errlen)
{
    if (ns->have_identity)
        return 0;
    ds_identity id;
    int rc = ds_peers_identity_load(ns->ctx->home, &id, err, errlen);
    if (rc == DS_ERR_NOTFOUND)
        fmt_err(err, errlen, "this node has no identity yet: run ds peer init");
    if (rc)
        return rc;
    memcpy(ns->sk, id.sk, sizeof ns->sk);
    ds_identity_wipe(&id);
    uint8_t nonce[DS_CURSOR_NONCE_LEN];
    ns->ctx->random_buf(nonce, sizeof nonce);
    ds_cursor_seal_init(&ns->seal, ns->sk, nonce);
    ns->have_identity = 1;
    return 0;
}

static ds_quic_endpoint *dialer(ds_netsync *ns, int family, char *err, size_t errlen)
{
    ds_quic_endpoint **slot = family == AF_INET6 ? &ns->dial6 : &ns->dial4;
    if (*slot)
        return *slot;
    if (load_identity(ns, err, errlen) != 0)
        return NULL;
    /* The dial's own timer gives each address its share of the connect
     * timeout; QUIC's handshake limit must not end one sooner.  The
     * keep-alive makes a subscriber whose publisher went silent send
     * something: if the publisher restarted, its stateless reset ends the
     * sync at once instead of at the no-progress timeout. */
    ds_quic_config qc = {
        .identity_sk = ns->sk, .alpn = DS_SYNC_ALPN,
        .handshake_timeout_ms = ns->o.connect_timeout_ms ? ns->o.connect_timeout_ms
                                                         : DS_NETSYNC_DIAL_TIMEOUT_MS,
        .keep_alive_ms = DS_NETSYNC_KEEP_ALIVE_MS,
    };
    ds_quic_endpoint *ep = NULL;
    int rc = ds_quic_endpoint_new(&ep, ns->loop, &qc, &callbacks, ns);
    if (!rc)
        rc = ds_quic_endpoint_bind(ep, family == AF_INET6 ? "::" : "0.0.0.0", 0);
    if (rc) {
        fmt_err(err, errlen, "cannot create a local %s endpoint: %s",
                family == AF_INET6 ? "IPv6" : "IPv4", ds_strerror(rc));
        if (ep)
            ds_quic_endpoint_free(ep);
        return NULL;
    }
    *slot = ep;
    return ep;
}

static int want_listen(ds_netsync *ns)
{
    if (!ns->nlisten)
        return 0;
    if (ns->o.listen_always)
        return 1;
    ds_peers_cfg cfg;
    char err[256];
    if (ds_peers_cfg_load(ns->ctx->home, &cfg, err, sizeof err) != 0)
        return 0;
    int any = 0;
    for (size_t i = 0; i < cfg.n; i++)
        any |= cfg.peers[i].publish;
    ds_peers_cfg_free(&cfg);
    return any;
}

/* An endpoint closed (a new identity, a failed listen): freed once its connections
 * have reported on_closed. */
typedef struct retired {
    ds_netsync *ns;
    ds_quic_endpoint *ep;
} retired;

static void close_step(ds_netsync *ns);

static void retired_closed(void *ud)
{
    retired *r = ud;
    ds_netsync *ns = r->ns;
    ds_quic_endpoint_free(r->ep);
    free(r);
    ns->pending_closes--;
    if (ns->closing) {
        close_step(ns);
    } else if (ns->pending_closes == 0 && ns->relisten) {
        /* The old sockets are released: listen again (with the new key). */
        ns->relisten = 0;
        char err[512] = "";
        if (ds_netsync_refresh(ns, err, sizeof err) != 0)
            NLOG(ns, DS_LOG_ERROR, "sync: %s", err);
    }
}

static void retire(ds_netsync *ns, ds_quic_endpoint *ep)
{
    retired *r = malloc(sizeof *r);
    ns->pending_closes++;
    if (!r) {                 /* leak the small struct rather than the socket */
        ds_quic_endpoint_close(ep, NULL, NULL);
        ns->pending_closes--;
        return;
    }
    r->ns = ns;
    r->ep = ep;
    ds_quic_endpoint_close(ep, retired_closed, r);
}

/* identity.key was replaced (ds peer init --force): every endpoint still
 * presents the old key.  They are closed (their connections end, a sync
 * running on one fails and is retried as usual) and the next dial or
 * listen uses the new key. */
static void rekey(ds_netsync *ns)
{
    for (size_t i = 0; i < ns->nservers; i++)
        retire(ns, ns->servers[i]);
    ns->nservers = ns->nbound = 0;
    if (ns->dial4)
        retire(ns, ns->dial4);
    if (ns->dial6)
        retire(ns, ns->dial6);
    ns->dial4 = ns->dial6 = NULL;
    sodium_memzero(ns->sk, sizeof ns->sk);
    ds_cursor_seal_wipe(&ns->seal);
    ns->have_identity = 0;
    ns->relisten = 1;
    NLOG(ns, DS_LOG_WARN, "sync: the identity changed: connections made with the old NodeId are "
                          "closed; new ones use the new NodeId");
}

int ds_netsync_refresh(ds_netsync *ns, char *err, size_t errlen)
{
    ds_identity id;
    char e2[512];
    int have = ds_peers_identity_load(ns->ctx->home, &id, e2, sizeof e2) == 0;
    if (have && ns->have_identity &&
        sodium_memcmp(id.sk, ns->sk, sizeof ns->sk) != 0)
        rekey(ns);
    if (have)
        ds_identity_wipe(&id);
    /* Without an identity there is nothing to listen with yet; while old
     * endpoints close, their ports are still taken (retried then). */
    if (have && !ns->nservers && ns->pending_closes > 0)
        ns->relisten = 1;
    if (!have || ns->nservers || ns->pending_closes > 0 || !want_listen(ns))
        return 0;
    int rc = load_identity(ns, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < ns->nlisten; i++) {
        char host[DS_ADDR_MAX];
        uint16_t port;
        const char *why;
        if (ds_addr_parse(ns->listen[i], DS_QUIC_DEFAULT_PORT, host, &port, &why) != 0) {
            fmt_err(err, errlen, "the listen address \"%s\" %s", ns->listen[i], why);
            return DS_ERR_INVALID;
        }
        ds_quic_config qc = { .identity_sk = ns->sk, .alpn = DS_SYNC_ALPN };
        ds_quic_endpoint *ep = NULL;
        rc = ds_quic_endpoint_new(&ep, ns->loop, &qc, &callbacks, ns);
        if (!rc)
            rc = ds_quic_endpoint_bind(ep, host, port);
        if (rc) {
            fmt_err(err, errlen, "cannot listen on %s: %s", ns->listen[i],
                    rc == DS_ERR_IO ? "the address is in use or not available here"
                                    : ds_strerror(rc));
            /* All or nothing: the addresses bound so far are released too,
             * so that the next refresh binds them all again.  A bind that
             * failed may have left a handle open: the endpoint is closed,
             * and freed once that handle is. */
            if (ep)
                retire(ns, ep);
            for (size_t k = 0; k < ns->nservers; k++)
                retire(ns, ns->servers[k]);
            ns->nservers = ns->nbound = 0;
            return rc;
        }
        ns->servers[ns->nservers++] = ep;
        struct sockaddr_storage ss;
        if (ds_quic_endpoint_addr(ep, &ss) == 0)
            sockaddr_text((struct sockaddr *)&ss, ns->bound[ns->nbound++]);
        else
            snprintf(ns->bound[ns->nbound++], DS_ADDR_MAX, "%s", ns->listen[i]);
        NLOG(ns, DS_LOG_INFO, "sync: accepting peer connections on %s",
             ns->bound[ns->nbound - 1]);
    }
    return 0;
}

void ds_netsync_bound(ds_netsync *ns, char out[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX], size_t *n)
{
    *n = ns->nbound;
    for (size_t i = 0; i < ns->nbound; i++)
        snprintf(out[i], DS_ADDR_MAX, "%s", ns->bound[i]);
}

/* ---- periodic sync and retries ------------------------------------------------ */

/* Every subscribed peer that has an address (the first |max|: ds peer add
 * keeps at most DS_OPS_MAX_SUBSCRIBED subscribed; more need a hand-edited
 * peers.json, and are logged). */
static size_t sync_targets(ds_netsync *ns, char (*ids)[DS_NODE_ID_HEX + 1], size_t max,
                           int only_due, int64_t now)
{
    ds_peers_cfg cfg;
    char err[256];
    size_t n = 0, left_out = 0;
    if (ds_peers_cfg_load(ns->ctx->home, &cfg, err, sizeof err) != 0)
        return 0;
    for (size_t i = 0; i < cfg.n; i++) {
        const ds_peer *p = &cfg.peers[i];
        if (!p->subscribe || !p->naddrs)
            continue;
        if (only_due) {
            int due = 0;
            for (size_t k = 0; k < ns->nretry; k++)
                if (strcmp(ns->retry[k].id, p->node_id) == 0 && ns->retry[k].due &&
                    ns->retry[k].due <= now)
                    due = 1;
            if (!due)
                continue;
        }
        if (n == max) {
            left_out++;
            continue;
        }
        snprintf(ids[n++], DS_NODE_ID_HEX + 1, "%s", p->node_id);
    }
    ds_peers_cfg_free(&cfg);
    if (left_out)
        NLOG(ns, DS_LOG_WARN,
             "sync: %zu subscribed peers left out: a sync takes at most %d "
             "(unsubscribe some: ds peer add NAME --no-subscribe)",
             left_out, DS_NETSYNC_MAX_PEERS);
    return n;
}

static int start_job(ds_netsync *ns, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                     int skip_addrless, int periodic, uint64_t *id);

static void retry_arm(ds_netsync *ns);

/* A periodic or retry job that has not finished: a new one would only
 * queue behind it (a sync slower than the interval piled jobs up). */
static int periodic_running(const ds_netsync *ns)
{
    for (const job *j = ns->jobs; j; j = j->next)
        if (j->periodic && !j->done)
            return 1;
    return 0;
}

static void retry_cb(uv_timer_t *t)
{
    ds_netsync *ns = t->data;
    if (periodic_running(ns)) {   /* look again once it may have ended */
        uv_timer_start(&ns->retry_timer, retry_cb, BUSY_RETRY_MS * 5, 0);
        return;
    }
    int64_t now = now_ms();
    char ids[DS_NETSYNC_MAX_PEERS][DS_NODE_ID_HEX + 1];
    size_t n = sync_targets(ns, ids, DS_NETSYNC_MAX_PEERS, 1, now);
    for (size_t k = 0; k < ns->nretry; k++)
        if (ns->retry[k].due && ns->retry[k].due <= now)
            ns->retry[k].due = 0;
    if (n) {
        uint64_t id;
        NLOG(ns, DS_LOG_INFO, "sync: retrying %zu peer%s", n, n == 1 ? "" : "s");
        start_job(ns, (const char (*)[DS_NODE_ID_HEX + 1])ids, n, 0, 0, 1, &id);
    }
    retry_arm(ns);
}

static void retry_arm(ds_netsync *ns)
{
    if (ns->closing)
        return;
    int64_t e = INT64_MAX;
    for (size_t k = 0; k < ns->nretry; k++)
        if (ns->retry[k].due && ns->retry[k].due < e)
            e = ns->retry[k].due;
    if (e == INT64_MAX) {
        uv_timer_stop(&ns->retry_timer);
        return;
    }
    int64_t d = e - now_ms();
    uv_timer_start(&ns->retry_timer, retry_cb, d > 0 ? (uint64_t)d : 0, 0);
}

static void retry_note(ds_netsync *ns, const char *id, int ok)
{
    retry_ent *r = NULL;
    for (size_t k = 0; k < ns->nretry; k++)
        if (strcmp(ns->retry[k].id, id) == 0)
            r = &ns->retry[k];
    if (!r) {
        if (ok || ns->nretry >= DS_NETSYNC_MAX_PEERS)
            return;
        r = &ns->retry[ns->nretry++];
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", id);
    }
    if (ok) {
        r->failures = 0;
        r->due = 0;
    } else {
        int64_t base = DS_NETSYNC_RETRY_BASE_MS;
        const char *env = getenv("DS_SYNC_RETRY_BASE_MS"); /* tests shorten it */
        if (env && env[0] && atol(env) > 0)
            base = atol(env);
        int64_t cap = ns->o.interval_s ? (int64_t)ns->o.interval_s * 1000 : DS_NETSYNC_RETRY_MAX_MS;
        if (cap > DS_NETSYNC_RETRY_MAX_MS)
            cap = DS_NETSYNC_RETRY_MAX_MS;
        int64_t d = base;
        for (uint32_t i = 0; i < r->failures && d < cap; i++)
            d *= 2;
        if (d > cap)
            d = cap;
        r->failures++;
        r->due = now_ms() + d;
        NLOG(ns, DS_LOG_INFO, "sync: will retry %.12s... in %lld ms (failure %u)", id,
             (long long)d, r->failures);
    }
    retry_arm(ns);
}

void ds_netsync_info_get(ds_netsync *ns, ds_netsync_info *out)
{
    memset(out, 0, sizeof *out);
    out->interval_s = ns->o.interval_s;
    out->next_periodic_ms = ns->o.interval_s && uv_is_active((uv_handle_t *)&ns->periodic)
                                ? (int64_t)uv_timer_get_due_in(&ns->periodic)
                                : -1;
    out->next_retry_ms = -1;
    int64_t now = now_ms();
    for (size_t k = 0; k < ns->nretry; k++) {
        if (!ns->retry[k].due)
            continue;
        int64_t in = ns->retry[k].due > now ? ns->retry[k].due - now : 0;
        if (out->next_retry_ms < 0 || in < out->next_retry_ms)
            out->next_retry_ms = in;
        out->retries++;
    }
    for (const job *j = ns->jobs; j; j = j->next)
        if (!j->done)
            out->jobs_active++;
}

static void periodic_cb(uv_timer_t *t)
{
    ds_netsync *ns = t->data;
    if (periodic_running(ns)) {
        NLOG(ns, DS_LOG_INFO, "sync: the previous periodic sync is still running; skipping "
                              "this one");
        return;
    }
    char ids[DS_NETSYNC_MAX_PEERS][DS_NODE_ID_HEX + 1];
    size_t n = sync_targets(ns, ids, DS_NETSYNC_MAX_PEERS, 0, 0);
    if (n) {
        uint64_t id;
        start_job(ns, (const char (*)[DS_NODE_ID_HEX + 1])ids, n, 0, 0, 1, &id);
    }
}

/* ---- jobs ------------------------------------------------------------------------ */

static job *find_job(ds_netsync *ns, uint64_t id)
{
    for (job *j = ns->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void job_free_cb(uv_handle_t *h)
{
    job *j = h->data;
    free(j->peers);
    free(j);
}

/* Drops finished jobs beyond the KEEP_JOBS newest. */
static void jobs_trim(ds_netsync *ns)
{
    size_t kept = 0;
    job **pp = &ns->jobs;
    while (*pp) {
        job *j = *pp;
        if (j->done && !j->resolving && ++kept > KEEP_JOBS) {
            *pp = j->next;
            uv_close((uv_handle_t *)&j->timer, job_free_cb);
            continue;
        }
        pp = &j->next;
    }
}

static int start_job(ds_netsync *ns, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                     int skip_addrless, int periodic, uint64_t *out)
{
    if (n > DS_NETSYNC_MAX_PEERS || ns->closing)
        return DS_ERR_INVALID;
    job *j = calloc(1, sizeof *j);
    if (!j || (n && !(j->peers = calloc(n, sizeof *j->peers)))) {
        free(j);
        return DS_ERR_NOMEM;
    }
    j->ns = ns;
    j->id = ++ns->next_job;
    j->full = full;
    j->skip_addrless = skip_addrless;
    j->periodic = periodic;
    j->n = n;
    for (size_t i = 0; i < n; i++) {
        ds_netsync_peer *p = &j->peers[i];
        snprintf(p->id, sizeof p->id, "%s", ids[i]);
        snprintf(p->label, sizeof p->label, "%.8s", ids[i]);
        p->full = full;
        if (!ds_node_id_valid(p->id)) {
            p->state = DS_NETSYNC_FAILED;
            p->err = DS_ERR_INVALID;
            snprintf(p->message, sizeof p->message, "'%.64s' is not a NodeId", ids[i]);
        }
    }
    uv_timer_init(ns->loop, &j->timer);
    j->timer.data = j;
    j->next = ns->jobs;
    ns->jobs = j;
    *out = j->id;
    jobs_trim(ns);
    /* Start on the next loop turn: the caller's reply goes out first. */
    job_arm(j, now_ms());
    return 0;
}

int ds_netsync_sync(ds_netsync *ns, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                    int skip_addrless, uint64_t *job_id)
{
    return start_job(ns, ids, n, full, skip_addrless, 0, job_id);
}

static const char *state_name(ds_netsync_state s)
{
    switch (s) {
    case DS_NETSYNC_PENDING: return "pending";
    case DS_NETSYNC_DIALING: return "connecting";
    case DS_NETSYNC_SYNCING: return "syncing";
    case DS_NETSYNC_DONE: return "done";
    case DS_NETSYNC_SKIPPED: return "skipped";
    default: return "failed";
    }
}

static void pack_peer(msgpack_packer *pk, const ds_netsync_peer *p)
{
    int64_t end = p->finished_ms ? p->finished_ms : now_ms();
    int64_t el = p->started_ms ? end - p->started_ms : 0;
    msgpack_pack_map(pk, 16);
    ds_pack_cstr(pk, "node_id");
    ds_pack_cstr(pk, p->id);
    ds_pack_cstr(pk, "label");
    ds_pack_cstr(pk, p->label);
    ds_pack_cstr(pk, "state");
    ds_pack_cstr(pk, state_name(p->state));
    ds_pack_cstr(pk, "full");
    if (p->full)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    ds_pack_cstr(pk, "pages");
    msgpack_pack_uint64(pk, p->pages);
    ds_pack_cstr(pk, "nodes_received");
    msgpack_pack_uint64(pk, p->nodes_received);
    ds_pack_cstr(pk, "nodes_new");
    msgpack_pack_uint64(pk, p->nodes_new);
    ds_pack_cstr(pk, "bytes");
    msgpack_pack_uint64(pk, p->bytes);
    ds_pack_cstr(pk, "replica_nodes");
    msgpack_pack_uint64(pk, p->replica_nodes);
    ds_pack_cstr(pk, "elapsed_ms");
    msgpack_pack_int64(pk, el);
    ds_pack_cstr(pk, "addr");
    ds_pack_cstr(pk, p->addr[0] ? p->addr : NULL);
    ds_pack_cstr(pk, "path");
    ds_pack_cstr(pk, p->path);
    ds_pack_cstr(pk, "tried");
    ds_pack_cstr(pk, p->tried[0] ? p->tried : NULL);
    ds_pack_cstr(pk, "code");
    ds_pack_cstr(pk, p->code[0] ? p->code : NULL);
    ds_pack_cstr(pk, "error");
    ds_pack_cstr(pk, p->state == DS_NETSYNC_FAILED ? p->message : NULL);
    ds_pack_cstr(pk, "reason");     /* why a peer was skipped */
    ds_pack_cstr(pk, p->state == DS_NETSYNC_SKIPPED ? p->message : NULL);
}

static void pack_job(msgpack_packer *pk, const job *j)
{
    msgpack_pack_map(pk, 5);
    ds_pack_cstr(pk, "job");
    msgpack_pack_uint64(pk, j->id);
    ds_pack_cstr(pk, "instance");
    msgpack_pack_uint32(pk, j->ns->instance);
    ds_pack_cstr(pk, "done");
    if (j->done)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    ds_pack_cstr(pk, "stopped_by");
    ds_pack_cstr(pk, j->stopped_by[0] ? j->stopped_by : NULL);
    ds_pack_cstr(pk, "peers");
    msgpack_pack_array(pk, j->n);
    for (size_t i = 0; i < j->n; i++)
        pack_peer(pk, &j->peers[i]);
}

uint32_t ds_netsync_instance(const ds_netsync *ns)
{
    return ns->instance;
}

int ds_netsync_job_pack(ds_netsync *ns, uint64_t id, msgpack_packer *pk)
{
    job *j = find_job(ns, id);
    if (!j)
        return DS_ERR_NOTFOUND;
    pack_job(pk, j);
    return 0;
}

/* Stops the current peer's machine, if any, so that its progress says
 * exactly what the replica got: the batches being written go in and are
 * counted; nothing more does. */
static void client_stop(job *j)
{
    if (!j->cl)
        return;
    ds_netsync_peer *p = &j->peers[j->cur];
    ds_sync_client_stop(j->cl);
    ds_sync_progress pr;
    ds_sync_client_progress(j->cl, &pr);
    p->pages = pr.pages;
    p->nodes_received = pr.nodes_received;
    p->nodes_new = pr.nodes_new;
    p->bytes = pr.bytes;
}

/* Stops job |j| at once: the peer being synced or dialed ends failed
 * with |why| (what was written stays, with its cursor, so the next sync
 * continues from there), and so do the peers not started yet.  Each is
 * recorded as any failed attempt.  |cause| is what the job reply says
 * stopped it.  The job is done when this returns. */
static void job_stop(job *j, const char *cause, const char *why)
{
    if (j->done)
        return;
    snprintf(j->stopped_by, sizeof j->stopped_by, "%s", cause);
    for (size_t i = j->cur + (j->active ? 1 : 0); i < j->n; i++) {
        ds_netsync_peer *q = &j->peers[i];
        if (q->state != DS_NETSYNC_PENDING)
            continue;
        q->state = DS_NETSYNC_FAILED;
        q->err = DS_ERR_CANCELLED;
        snprintf(q->code, sizeof q->code, "interrupted");
        snprintf(q->message, sizeof q->message, "not synced: %s", why);
    }
    if (!j->active) {          /* queued, or between two peers */
        job_next(j);           /* nothing is pending now: the job is done */
        return;
    }
    ds_netsync_peer *p = &j->peers[j->cur];
    if (j->resolving)          /* its callback still runs: resolving stays set until then */
        uv_cancel((uv_req_t *)&j->gai);
    client_stop(j);
    if (p->state == DS_NETSYNC_SYNCING)
        client_finish(j, DS_ERR_CANCELLED, "interrupted",
                      "%s: the %llu nodes received (%llu new) were kept, the next sync "
                      "continues from there", why, (unsigned long long)p->nodes_received,
                      (unsigned long long)p->nodes_new);
    else
        client_finish(j, DS_ERR_CANCELLED, "interrupted", "%s while connecting", why);
}

int ds_netsync_job_stop(ds_netsync *ns, uint64_t id, const char *cause, const char *why)
{
    job *j = find_job(ns, id);
    if (!j)
        return DS_ERR_NOTFOUND;
    job_stop(j, cause, why);
    return 0;
}

void ds_netsync_cancel_peer(ds_netsync *ns, const char *id, const char *why)
{
    for (job *j = ns->jobs; j; j = j->next) {
        if (j->done || !j->active || strcmp(j->peers[j->cur].id, id) != 0)
            continue;
        if (j->resolving)   /* its callback still runs: resolving stays set until then */
            uv_cancel((uv_req_t *)&j->gai);
        j->cancelled = 1;
        client_finish(j, DS_ERR_NOTFOUND, NULL, "the sync with %s stopped: %s",
                      j->peers[j->cur].label, why);
    }
}

/* ---- lifecycle -------------------------------------------------------------------- */

int ds_netsync_new(ds_netsync **out, uv_loop_t *loop, ds_ctx *ctx, const ds_netsync_opts *o,
                   char *err, size_t errlen)
{
    *out = NULL;
    ds_netsync *ns = calloc(1, sizeof *ns);
    if (!ns)
        return DS_ERR_NOMEM;
    ns->loop = loop;
    ns->ctx = ctx;
    ns->o = *o;
    ns->daemon_mode = ctx->daemon != NULL;
    while (!ns->instance)
        ctx->random_buf(&ns->instance, sizeof ns->instance);
    for (size_t i = 0; i < o->nlisten && i < DS_NETSYNC_MAX_LISTEN; i++) {
        char host[DS_ADDR_MAX];
        uint16_t port;
        const char *why;
        if (ds_addr_parse(o->listen[i], DS_QUIC_DEFAULT_PORT, host, &port, &why) != 0) {
            fmt_err(err, errlen, "the listen address \"%s\" %s", o->listen[i], why);
            free(ns);
            return DS_ERR_INVALID;
        }
        ds_addr_format(host, port, ns->listen[ns->nlisten++]);
    }
    memset(ns->o.listen, 0, sizeof ns->o.listen);
    uv_timer_init(loop, &ns->srv_timer);
    uv_timer_init(loop, &ns->periodic);
    uv_timer_init(loop, &ns->retry_timer);
    ns->srv_timer.data = ns->periodic.data = ns->retry_timer.data = ns;
    int rc = ds_netsync_refresh(ns, err, errlen);
    if (rc) {
        ds_netsync_close(ns, NULL, NULL);
        return rc;
    }
    if (o->interval_s)
        uv_timer_start(&ns->periodic, periodic_cb, (uint64_t)o->interval_s * 1000,
                       (uint64_t)o->interval_s * 1000);
    if (o->sync_at_start) {
        char ids[DS_NETSYNC_MAX_PEERS][DS_NODE_ID_HEX + 1];
        size_t n = sync_targets(ns, ids, DS_NETSYNC_MAX_PEERS, 0, 0);
        uint64_t id;
        if (n)
            start_job(ns, (const char (*)[DS_NODE_ID_HEX + 1])ids, n, 0, 0, 1, &id);
    }
    *out = ns;
    return 0;
}

static void ep_closed(void *ud)
{
    ds_netsync *ns = ud;
    ns->pending_closes--;
    close_step(ns);
}

static void handle_closed(uv_handle_t *h)
{
    ds_netsync *ns = h->data;
    ns->pending_closes--;
    close_step(ns);
}

static void job_handle_closed(uv_handle_t *h)
{
    job *j = h->data;
    ds_netsync *ns = j->ns;
    free(j->peers);
    free(j);
    ns->pending_closes--;
    close_step(ns);
}

static void close_step(ds_netsync *ns)
{
    if (ns->pending_closes > 0)
        return;
    for (size_t i = 0; i < ns->nservers; i++)
        ds_quic_endpoint_free(ns->servers[i]);
    if (ns->dial4)
        ds_quic_endpoint_free(ns->dial4);
    if (ns->dial6)
        ds_quic_endpoint_free(ns->dial6);
    while (ns->streams) {
        sstream *s = ns->streams;
        ns->streams = s->next;
        sstream_free(s);
    }
    sodium_memzero(ns->sk, sizeof ns->sk);
    ds_cursor_seal_wipe(&ns->seal);
    void (*done)(void *) = ns->done;
    void *ud = ns->done_ud;
    free(ns);
    if (done)
        done(ud);
}

void ds_netsync_close(ds_netsync *ns, void (*done)(void *ud), void *ud)
{
    if (!ns)
        return;
    ns->closing = 1;
    ns->done = done;
    ns->done_ud = ud;
    ns->pending_closes++;     /* held until everything has been asked */
    for (job *j = ns->jobs; j; j = j->next) {
        if (j->cl) {
            client_stop(j);
            ds_sync_client_free(j->cl);
            j->cl = NULL;
        }
        if (!j->done && j->active && !j->cancelled) {
            /* Stopped mid-sync: what was written stays, with its cursor;
             * the peer's last result says so (a client polling the job
             * learns it from its instance number being gone). */
            ds_netsync_peer *p = &j->peers[j->cur];
            int syncing = p->state == DS_NETSYNC_SYNCING;
            p->state = DS_NETSYNC_FAILED;
            p->err = DS_ERR_IO;
            if (syncing)
                snprintf(p->message, sizeof p->message,
                         "interrupted: the daemon stopped during the sync; the %llu nodes "
                         "received (%llu new) were kept, the next sync continues from there",
                         (unsigned long long)p->nodes_received,
                         (unsigned long long)p->nodes_new);
            else
                snprintf(p->message, sizeof p->message,
                         "interrupted: the daemon stopped while connecting");
            record_peer(j, CLOSE_LOCK_WAIT_MS);
            j->active = 0;
            j->done = 1;
        }
        if (j->nc) {
            j->nc->j = NULL;
            j->nc = NULL;
        }
        if (j->resolving)
            uv_cancel((uv_req_t *)&j->gai);
    }
    ds_quic_endpoint *eps[DS_NETSYNC_MAX_LISTEN + 2];
    size_t ne = 0;
    for (size_t i = 0; i < ns->nservers; i++)
        eps[ne++] = ns->servers[i];
    if (ns->dial4)
        eps[ne++] = ns->dial4;
    if (ns->dial6)
        eps[ne++] = ns->dial6;
    for (size_t i = 0; i < ne; i++) {
        ns->pending_closes++;
        ds_quic_endpoint_close(eps[i], ep_closed, ns);
    }
    uv_timer_t *ts[] = { &ns->srv_timer, &ns->periodic, &ns->retry_timer };
    for (size_t i = 0; i < 3; i++) {
        ns->pending_closes++;
        uv_close((uv_handle_t *)ts[i], handle_closed);
    }
    while (ns->jobs) {
        job *j = ns->jobs;
        ns->jobs = j->next;
        ns->pending_closes++;
        if (j->resolving) {
            /* A look-up already running on the thread pool cannot be
             * cancelled, and its request lives in the job: the job is
             * freed only after on_resolved has run. */
            j->close_deferred = 1;
            uv_timer_stop(&j->timer);
            continue;
        }
        uv_close((uv_handle_t *)&j->timer, job_handle_closed);
    }
    ns->pending_closes--;
    close_step(ns);
}

/* ---- in process --------------------------------------------------------------------- */

/* SIGINT, SIGTERM and SIGHUP stop an in-process sync cleanly: the batch
 * being written is finished, the publisher gets a CONNECTION_CLOSE (so
 * its slot for us is free at once), and the result is recorded. */
const int ds_netsync_stop_signals[DS_NETSYNC_NSTOP_SIGNALS] = { SIGINT, SIGTERM, SIGHUP };
#define RUN_NSIG DS_NETSYNC_NSTOP_SIGNALS

typedef struct run_state {
    int closed;
    ds_netsync *ns;
    uint64_t job;
    uv_signal_t sig[RUN_NSIG];
    size_t nsig;          /* handles initialized (to close) */
    int signo;            /* the signal that stopped the job, or 0 */
} run_state;

static void run_closed(void *ud)
{
    ((run_state *)ud)->closed = 1;
}

const char *ds_netsync_signal_name(int signo)
{
    switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    }
    return "a signal";
}

static void run_signal(uv_signal_t *h, int signo)
{
    run_state *rs = h->data;
    /* A second signal acts as usual (it ends the process at once), in
     * case stopping ever takes long. */
    for (size_t i = 0; i < rs->nsig; i++)
        uv_signal_stop(&rs->sig[i]);
    if (rs->signo)
        return;
    rs->signo = signo;
    char why[64];
    const char *name = ds_netsync_signal_name(signo);
    snprintf(why, sizeof why, "interrupted by %s", name);
    ds_netsync_job_stop(rs->ns, rs->job, name, why);
}

static void run_handle_closed(uv_handle_t *h)
{
    (void)h;
}

int ds_netsync_run(ds_ctx *ctx, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                   int skip_addrless, const ds_netsync_opts *o, ds_netsync_progress_fn progress,
                   void *ud, msgpack_packer *pk)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc)
        return DS_ERR_IO;
    ds_netsync_opts oo = *o;
    oo.nlisten = 0;
    oo.listen_always = 0;
    oo.sync_at_start = 0;
    oo.interval_s = 0;
    ds_netsync *ns = NULL;
    char err[256];
    rc = ds_netsync_new(&ns, &loop, ctx, &oo, err, sizeof err);
    uint64_t id = 0;
    run_state rs = { .ns = ns };
    /* The handlers go in before the job starts, so that a signal during
     * its first step (a host name look-up starts at once) is not missed;
     * libuv runs run_signal from the loop, once rs.job is set. */
    for (size_t i = 0; !rc && i < RUN_NSIG; i++) {
        if (uv_signal_init(&loop, &rs.sig[i]) != 0)
            break;
        rs.nsig++;
        rs.sig[i].data = &rs;
        (void)uv_signal_start_oneshot(&rs.sig[i], run_signal, ds_netsync_stop_signals[i]);
        /* Not what keeps the loop alive: a loop turn whose timer ends the
         * job must not then wait for a signal. */
        uv_unref((uv_handle_t *)&rs.sig[i]);
    }
    if (!rc) {
        ns->progress = progress ? progress : g_progress;
        ns->progress_ud = progress ? ud : g_progress_ud;
        rc = start_job(ns, ids, n, full, skip_addrless, 0, &id);
        rs.job = id;
    }
    if (!rc) {
        job *j = find_job(ns, id);
        /* Bounded: every step has a timeout (dial deadline, sync machine
         * expiry), so the job always ends. */
        while (!j->done && uv_run(&loop, UV_RUN_ONCE))
            ;
        if (!j->done) {
            /* The loop ran dry without finishing: should not happen. */
            for (size_t i = j->cur; i < j->n; i++)
                if (j->peers[i].state != DS_NETSYNC_DONE &&
                    j->peers[i].state != DS_NETSYNC_SKIPPED) {
                    j->peers[i].state = DS_NETSYNC_FAILED;
                    snprintf(j->peers[i].message, sizeof j->peers[i].message,
                             "the sync stopped unexpectedly");
                }
            j->done = 1;
        }
        pack_job(pk, j);
    }
    for (size_t i = 0; i < rs.nsig; i++)
        uv_close((uv_handle_t *)&rs.sig[i], run_handle_closed);
    if (ns)
        ds_netsync_close(ns, run_closed, &rs);
    /* Closing waits for a host name look-up still running on the thread
     * pool, whose request lives in the job (a stop while resolving):
     * usually milliseconds, at most the resolver's own timeout. */
    for (int i = 0; i < 1000 && !rs.closed; i++)
        if (!uv_run(&loop, UV_RUN_ONCE))
            break;
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++)
        ;
    uv_loop_close(&loop);
    return rc;
}

/* ---- listen addresses (tickets) ------------------------------------------------------ */

void ds_netsync_listen_addrs(const ds_netsync *ns, char out[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX],
                             size_t *n, int *always)
{
    *n = ns->nlisten;
    for (size_t i = 0; i < ns->nlisten; i++)
        snprintf(out[i], DS_ADDR_MAX, "%s", ns->listen[i]);
    if (always)
        *always = ns->o.listen_always;
}
