/*
 * quic_conn.c - one QUIC connection of the endpoint: the ngtcp2
 * connection and its wolfSSL session, the ngtcp2 callbacks (handshake
 * checks, streams, connection IDs), the send loop that fills GSO batches
 * of packets, stream send queues kept until acknowledged, the timer
 * armed from ngtcp2_conn_get_expiry, and the ending: closing period
 * (CONNECTION_CLOSE re-sent when packets keep arriving), draining
 * period, timeouts.  on_closed is always delivered from the connection's
 * own timer callback so that it never re-enters the application.
 */
#include <wolfssl/options.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "io/quic_int.h"

#define INIT_STREAM_WINDOW (256u * 1024)
#define INIT_CONN_WINDOW (1024u * 1024)
#define MAX_STREAM_WINDOW (16u * 1024 * 1024)
#define MAX_CONN_WINDOW (32u * 1024 * 1024)
/* Acknowledge at once after this many ack-eliciting packets (ngtcp2's
 * default is 2; the ack delay timer and out-of-order arrival still send
 * one sooner).  A bulk receiver otherwise sends an ACK, and its sender
 * decrypts and processes one, for every two ~1.2 KB packets: on loopback
 * that was ~14 ms of the subscriber's receive thread per 100k-node sync.
 * 8 made a 100k sync ~15% faster (A/B medians 316 -> 268 ms) and raw
 * transfer ~5% faster; 16 was no better, 32 was worse. */
#define ACK_THRESH 8
#define MAX_SEGS 64
#define MAX_VECS 16
#define ALERT_NO_APPLICATION_PROTOCOL 120
#define ALERT_BAD_CERTIFICATE 42

socklen_t ds_quic_salen(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static void conn_timer_cb(uv_timer_t *t);
static void conn_fail(ds_quic_conn *c, int liberr);

/* ---- Ending ---------------------------------------------------------- */

static int app_code_err(uint64_t code)
{
    if (code == DS_QUIC_APP_OK)
        return 0;
    if (code == DS_QUIC_APP_UNAUTHORIZED)
        return DS_ERR_UNAUTHORIZED;
    if (code == DS_QUIC_APP_INTERNAL)
        return DS_ERR_IO;
    if (code == DS_QUIC_APP_TIMEOUT)
        return DS_ERR_TIMEOUT;
    return DS_ERR_PROTO;
}

/* Enters a terminal state: on_closed runs from the timer right away,
 * the connection lingers |linger| ns more (closing/draining period). */
static void conn_end(ds_quic_conn *c, int state, int err, const char *reason, uint64_t linger)
{
    c->state = state;
    c->err = err;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
    c->deadline = ds_quic_now() + linger;
    c->blocked = 0;
    c->tx_len = c->tx_off = 0;
    uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
}

static void send_raw(ds_quic_path *p, const struct sockaddr *to,
                     const uint8_t *buf, size_t len)
{
    if (p && !p->closing)
        (void)p->ops->send(p, to, buf, len, len);
}

/* Writes and sends CONNECTION_CLOSE, then lingers for the closing period. */
static void write_close(ds_quic_conn *c, const ngtcp2_connection_close_error *ccerr, int err,
                        const char *reason)
{
    if (c->state >= DS_QC_CLOSING)
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, NULL, c->close_pkt,
                                                        sizeof c->close_pkt, ccerr, ds_quic_now());
    if (n <= 0) {
        conn_end(c, DS_QC_DEAD, err, reason, 0);
        return;
    }
    c->close_pkt_len = (size_t)n;
    c->close_path = ps.path.user_data;
    memcpy(&c->close_to, ps.path.remote.addr, ps.path.remote.addrlen);
    send_raw(c->close_path, (struct sockaddr *)&c->close_to, c->close_pkt, c->close_pkt_len);
    conn_end(c, DS_QC_CLOSING, err, reason, 3 * ngtcp2_conn_get_pto(c->qc));
}

static void close_app(ds_quic_conn *c, uint64_t code, const char *reason)
{
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_set_application_error(&ccerr, code, (const uint8_t *)reason,
                                                        strlen(reason));
    write_close(c, &ccerr, app_code_err(code), reason);
}

/* Copies a peer's reason phrase, keeping printable ASCII only. */
static void peer_reason(char *out, size_t cap, const char *prefix, const uint8_t *r, size_t n)
{
    size_t k = (size_t)snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        out[k++] = (r[i] >= 0x20 && r[i] < 0x7f) ? (char)r[i] : '?';
    out[k < cap ? k : cap - 1] = 0;
}

/* The peer closed (or reset) the connection: map its error. */
static void enter_draining(ds_quic_conn *c)
{
    if (c->reset_rx) { /* nothing to wait for: the peer has no state left */
        conn_end(c, DS_QC_DEAD, DS_ERR_IO,
                 "the peer no longer knows this connection (stateless reset: it restarted "
                 "or dropped the connection)", 0);
        return;
    }
    ngtcp2_connection_close_error ce;
    ngtcp2_conn_get_connection_close_error(c->qc, &ce);
    int err = DS_ERR_PROTO;
    char reason[256];
    switch (ce.type) {
    case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION:
        err = app_code_err(ce.error_code);
        break;
    case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT:
        if (ce.error_code == NGTCP2_NO_ERROR)
            err = 0;
        else if ((ce.error_code & ~0xffull) == NGTCP2_CRYPTO_ERROR)
            err = (ce.error_code & 0xff) == ALERT_NO_APPLICATION_PROTOCOL ? DS_ERR_PROTO
                                                                          : DS_ERR_CRYPTO;
        break;
    case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE:
        err = DS_ERR_TIMEOUT;
        break;
    default:
        err = DS_ERR_VERSION;
        break;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "peer closed (code 0x%llx): ",
             (unsigned long long)ce.error_code);
    peer_reason(reason, sizeof reason, prefix, ce.reason, ce.reasonlen);
    conn_end(c, DS_QC_DRAINING, err, reason, 3 * ngtcp2_conn_get_pto(c->qc));
}

/* A fatal error from ngtcp2 (read, write or expiry). */
static void conn_fail(ds_quic_conn *c, int liberr)
{
    if (c->state >= DS_QC_CLOSING)
        return;
    ngtcp2_connection_close_error ccerr;
    switch (liberr) {
    case NGTCP2_ERR_DRAINING:
        enter_draining(c);
        return;
    case NGTCP2_ERR_IDLE_CLOSE:
        conn_end(c, DS_QC_DEAD, DS_ERR_TIMEOUT, "idle timeout", 0);
        return;
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
        conn_end(c, DS_QC_DEAD, DS_ERR_TIMEOUT, "handshake timeout", 0);
        return;
    case NGTCP2_ERR_DROP_CONN:
    case NGTCP2_ERR_RETRY:
        conn_end(c, DS_QC_DEAD, DS_ERR_PROTO, "connection dropped", 0);
        return;
    case NGTCP2_ERR_CALLBACK_FAILURE:
        if (c->close_req) { /* our own check failed (ALPN, pinning) */
            c->close_req = 0;
            write_close(c, &c->close_ccerr, c->close_err, c->close_reason);
            return;
        }
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
        write_close(c, &ccerr, DS_ERR_NOMEM, "internal error");
        return;
    case NGTCP2_ERR_CRYPTO: {
        uint8_t alert = ngtcp2_conn_get_tls_alert(c->qc);
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, NULL, 0);
        if (c->pin.mismatch)
            write_close(c, &ccerr, DS_ERR_CRYPTO, "peer key does not match the expected NodeId");
        else if (alert == ALERT_NO_APPLICATION_PROTOCOL)
            write_close(c, &ccerr, DS_ERR_PROTO, "ALPN mismatch");
        else {
            char r[64];
            snprintf(r, sizeof r, "TLS handshake failed (alert %u)", alert);
            write_close(c, &ccerr, DS_ERR_CRYPTO, r);
        }
        return;
    }
    default: {
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
        char r[96];
        snprintf(r, sizeof r, "QUIC error: %s", ngtcp2_strerror(liberr));
        write_close(c, &ccerr, liberr == NGTCP2_ERR_NOMEM ? DS_ERR_NOMEM : DS_ERR_PROTO, r);
        return;
    }
    }
}

/* Remembers a close to be written once ngtcp2 returns (inside callbacks). */
static void request_close(ds_quic_conn *c, int err, const char *reason,
                          const ngtcp2_connection_close_error *ccerr)
{
    if (c->close_req)
        return;
    c->close_req = 1;
    c->close_err = err;
    c->close_ccerr = *ccerr;
    c->close_ccerr.reason = NULL;
    c->close_ccerr.reasonlen = 0;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
}

static void chunk_free(qchunk *k)
{
    free(k->own);
    free(k);
}

static void free_streams(ds_quic_conn *c)
{
    while (c->streams) {
        qstream *s = c->streams;
        c->streams = s->next;
        while (s->head) {
            qchunk *k = s->head;
            s->head = k->next;
            chunk_free(k);
        }
        free(s);
    }
}

static void conn_free_cb(uv_handle_t *h)
{
    ds_quic_conn *c = h->data;
    ds_quic_endpoint *ep = c->ep;
    if (c->qc)
        ngtcp2_conn_del(c->qc);
    if (c->ssl)
        wolfSSL_free(c->ssl);
    free_streams(c);
    free(c->tx);
    free(c);
    ds_quic_handle_closed(ep);
}

static void conn_destroy(ds_quic_conn *c)
{
    if (c->freeing)
        return;
    c->freeing = 1;
    ds_quic_unlink_conn(c->ep, c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_free_cb);
}

void ds_quic_conn_shutdown(ds_quic_conn *c)
{
    if (c->freeing)
        return;
    if (c->state < DS_QC_CLOSING)
        close_app(c, DS_QUIC_APP_OK, "endpoint closed");
    if (c->state < DS_QC_CLOSING)
        conn_end(c, DS_QC_DEAD, 0, "endpoint closed", 0);
    if (c->notified)
        conn_destroy(c);
    /* else the pending timer reports on_closed, then destroys. */
}

/* ---- Streams ----------------------------------------------------------- */

static qstream *stream_find(ds_quic_conn *c, int64_t id)
{
    for (qstream *s = c->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static qstream *stream_add(ds_quic_conn *c, int64_t id)
{
    qstream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = id;
    s->next = c->streams;
    c->streams = s;
    return s;
}

static int stream_pending(const qstream *s)
{
    return !s->blocked && !s->write_closed &&
           (s->sent < s->written || (s->fin_queued && !s->fin_sent));
}

/* Up to |max| vectors from the first unsent byte; *all set when they hold
 * everything not yet sent. */
static size_t stream_vecs(qstream *s, ngtcp2_vec *v, size_t max, int *all)
{
    size_t n = 0;
    uint64_t total = 0;
    qchunk *k = s->cur;
    size_t off = s->cur_off;
    while (k && n < max) {
        v[n].base = k->data + off;
        v[n].len = k->len - off;
        total += v[n].len;
        n++;
        k = k->next;
        off = 0;
    }
    *all = total == s->written - s->sent;
    return n;
}

static void stream_advance(qstream *s, size_t n, int fin)
{
    s->sent += n;
    s->cur_off += n;
    while (s->cur && s->cur_off >= s->cur->len) {
        s->cur_off -= s->cur->len;
        s->cur = s->cur->next;
    }
    if (fin && s->sent == s->written)
        s->fin_sent = 1;
}

int ds_quic_stream_open(ds_quic_conn *c, int64_t *sid)
{
    if (!c || c->state != DS_QC_OPEN || c->freeing)
        return DS_ERR_INVALID;
    int64_t id;
    int rv = ngtcp2_conn_open_bidi_stream(c->qc, &id, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
        return DS_ERR_BUSY;
    if (rv != 0)
        return DS_ERR_INVALID;
    if (!stream_add(c, id)) {
        ngtcp2_conn_shutdown_stream(c->qc, id, DS_QUIC_APP_PROTO);
        return DS_ERR_NOMEM;
    }
    *sid = id;
    return 0;
}

/* Queues |len| bytes: a copy, or |take| itself (which the stream then
 * owns) when given. */
static int stream_queue(ds_quic_conn *c, int64_t sid, const uint8_t *data, uint8_t *take,
                        size_t len, int fin)
{
    if (!c || c->state != DS_QC_OPEN || c->freeing)
        return DS_ERR_INVALID;
    qstream *s = stream_find(c, sid);
    if (!s || s->fin_queued || s->write_closed)
        return DS_ERR_INVALID;
    if (len) {
        qchunk *k = malloc(sizeof *k + (take ? 0 : len));
        if (!k)
            return DS_ERR_NOMEM;
        k->next = NULL;
        k->len = len;
        k->own = take;
        k->data = take ? take : k->inl;
        if (!take && data)
            memcpy(k->inl, data, len);
        if (s->tail)
            s->tail->next = k;
        else {
            s->head = k;
            s->head_off = s->written;
        }
        s->tail = k;
        if (!s->cur) {
            s->cur = k;
            s->cur_off = 0;
        }
        s->written += len;
    } else {
        free(take);
    }
    if (fin)
        s->fin_queued = 1;
    c->dirty = 1;
    ds_quic_schedule_flush(c->ep);
    return 0;
}

int ds_quic_stream_write(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin)
{
    return stream_queue(c, sid, data, NULL, len, fin);
}

int ds_quic_stream_write_take(ds_quic_conn *c, int64_t sid, uint8_t *data, size_t len, int fin)
{
    return stream_queue(c, sid, NULL, data, len, fin);
}

size_t ds_quic_stream_queued(ds_quic_conn *c, int64_t sid)
{
    qstream *s = c ? stream_find(c, sid) : NULL;
    return s ? (size_t)(s->written - s->acked) : 0;
}

/* ---- ngtcp2 callbacks ---------------------------------------------------- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((ds_quic_conn *)ref->user_data)->qc;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    randombytes_buf(dest, len);
}

static int cb_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    if (c->ncids >= DS_QUIC_MAX_SCIDS)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    uint8_t b[NGTCP2_MAX_CIDLEN];
    randombytes_buf(b, cidlen);
    ngtcp2_cid_init(cid, b, cidlen);
    if (ngtcp2_crypto_generate_stateless_reset_token(token, c->ep->reset_secret,
                                                     sizeof c->ep->reset_secret, cid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    c->cids[c->ncids++] = *cid;
    return 0;
}

/* The peer answered with a stateless reset: it no longer knows this
 * connection (it restarted, or dropped the connection's state). */
static int cb_recv_reset(ngtcp2_conn *qc, const ngtcp2_pkt_stateless_reset *sr, void *ud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    (void)sr;
    c->reset_rx = 1;
    return 0;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    for (size_t i = 0; i < c->ncids; i++) {
        if (ngtcp2_cid_eq(&c->cids[i], cid)) {
            c->cids[i] = c->cids[--c->ncids];
            break;
        }
    }
    return 0;
}

/* Handshake complete: check what TLS cannot (ALPN present and ours, the
 * peer's key learned), then the listener asks the application. */
static int cb_handshake_completed(ngtcp2_conn *qc, void *ud)
{
    ds_quic_conn *c = ud;
    ds_quic_endpoint *ep = c->ep;
    (void)qc;
    ngtcp2_connection_close_error ccerr;
    if (!ds_quic_tls_alpn_ok(&ep->tls, c->ssl)) {
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &ccerr, ALERT_NO_APPLICATION_PROTOCOL, NULL, 0);
        request_close(c, DS_ERR_PROTO, "ALPN mismatch", &ccerr);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    if (!c->pin.have_peer) {
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ALERT_BAD_CERTIFICATE,
                                                                    NULL, 0);
        request_close(c, DS_ERR_CRYPTO, "peer certificate not verified", &ccerr);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    if (c->is_server) {
        int rc = ep->cb.on_accept ? ep->cb.on_accept(c, c->pin.peer, ep->ud) : 0;
        if (c->close_req) /* the application closed it from on_accept */
            c->doomed = 1;
        else if (rc != 0) {
            ngtcp2_connection_close_error_set_application_error(&ccerr, DS_QUIC_APP_UNAUTHORIZED,
                                                                NULL, 0);
            request_close(c, DS_ERR_UNAUTHORIZED, "rejected by the listener", &ccerr);
            c->doomed = 1;
        } else {
            c->state = DS_QC_OPEN;
            c->established = 1;
        }
    }
    return 0;
}

/* Dialer: the server confirmed the handshake, i.e. accepted our key. */
static int cb_handshake_confirmed(ngtcp2_conn *qc, void *ud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    if (c->is_server || c->doomed || c->state != DS_QC_HANDSHAKE)
        return 0;
    c->state = DS_QC_OPEN;
    c->established = 1;
    if (c->ep->cb.on_connected)
        c->ep->cb.on_connected(c, c->ep->ud);
    return 0;
}

static int cb_stream_open(ngtcp2_conn *qc, int64_t sid, void *ud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    if (!stream_find(c, sid) && !stream_add(c, sid))
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (!c->doomed && c->state == DS_QC_OPEN && !c->close_req && c->ep->cb.on_stream_open)
        c->ep->cb.on_stream_open(c, sid, c->ep->ud);
    return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t sid, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud)
{
    ds_quic_conn *c = ud;
    (void)offset;
    (void)sud;
    if (!c->doomed && c->state == DS_QC_OPEN && !c->close_req && c->ep->cb.on_stream_data)
        c->ep->cb.on_stream_data(c, sid, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0,
                                 c->ep->ud);
    /* Consumed at once: give the credit back (ngtcp2 auto-tunes the
     * window size up to max_stream_window / max_window). */
    ngtcp2_conn_extend_max_stream_offset(qc, sid, len);
    ngtcp2_conn_extend_max_offset(qc, len);
    return 0;
}

static int cb_acked(ngtcp2_conn *qc, int64_t sid, uint64_t offset, uint64_t len, void *ud,
                    void *sud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    (void)offset;
    (void)sud;
    qstream *s = stream_find(c, sid);
    if (!s)
        return 0;
    s->acked += len;
    while (s->head && s->head_off + s->head->len <= s->acked && s->head != s->cur) {
        qchunk *k = s->head;
        s->head = k->next;
        s->head_off += k->len;
        if (s->tail == k)
            s->tail = NULL;
        chunk_free(k);
    }
    s->ack_evt = 1;
    c->ack_evt = 1;
    return 0;
}

static int cb_stream_close(ngtcp2_conn *qc, uint32_t flags, int64_t sid, uint64_t code, void *ud,
                           void *sud)
{
    ds_quic_conn *c = ud;
    (void)flags;
    (void)code;
    (void)sud;
    /* A stream the peer opened is done: let it open another one. */
    if (!ngtcp2_conn_is_local_stream(qc, sid)) {
        if (ngtcp2_is_bidi_stream(sid))
            ngtcp2_conn_extend_max_streams_bidi(qc, 1);
        else
            ngtcp2_conn_extend_max_streams_uni(qc, 1);
    }
    for (qstream **pp = &c->streams; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == sid) {
            qstream *s = *pp;
            *pp = s->next;
            while (s->head) {
                qchunk *k = s->head;
                s->head = k->next;
                chunk_free(k);
            }
            free(s);
            break;
        }
    }
    return 0;
}

static int cb_extend_stream(ngtcp2_conn *qc, int64_t sid, uint64_t max, void *ud, void *sud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    (void)max;
    (void)sud;
    qstream *s = stream_find(c, sid);
    if (s)
        s->blocked = 0;
    return 0;
}

static int cb_stop_sending(ngtcp2_conn *qc, int64_t sid, uint64_t code, void *ud, void *sud)
{
    ds_quic_conn *c = ud;
    (void)qc;
    (void)code;
    (void)sud;
    qstream *s = stream_find(c, sid);
    if (s)
        s->write_closed = 1;
    return 0;
}

/* ---- Creation ---------------------------------------------------------------- */

static void fill_callbacks(ngtcp2_callbacks *cb, int is_server)
{
    memset(cb, 0, sizeof *cb);
    if (is_server)
        cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    else {
        cb->client_initial = ngtcp2_crypto_client_initial_cb;
        cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    }
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->update_key = ngtcp2_crypto_update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = cb_rand;
    cb->get_new_connection_id = cb_new_cid;
    cb->remove_connection_id = cb_remove_cid;
    cb->recv_stateless_reset = cb_recv_reset;
    cb->handshake_completed = cb_handshake_completed;
    cb->handshake_confirmed = cb_handshake_confirmed;
    cb->stream_open = cb_stream_open;
    cb->recv_stream_data = cb_recv_stream_data;
    cb->acked_stream_data_offset = cb_acked;
    cb->stream_close = cb_stream_close;
    cb->extend_max_stream_data = cb_extend_stream;
    cb->stream_stop_sending = cb_stop_sending;
}

static void debug_printf(void *ud, const char *fmt, ...)
{
    (void)ud;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

ds_quic_conn *ds_quic_conn_new(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *remote,
                               const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                               const uint8_t *expect_pk)
{
    int is_server = hd != NULL;
    ds_quic_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->tx = malloc(DS_QUIC_TXBUF);
    if (!c->tx)
        goto fail_tx;
    c->ep = ep;
    c->kind = p->ops->kind;
    c->is_server = is_server;
    c->pin.is_server = is_server;
    if (expect_pk)
        memcpy(c->pin.expect, expect_pk, DS_NODE_PK_LEN);
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;

    ngtcp2_callbacks cbs;
    fill_callbacks(&cbs, is_server);
    ngtcp2_settings st;
    ngtcp2_settings_default(&st);
    st.initial_ts = ds_quic_now();
    st.handshake_timeout = (uint64_t)ep->hs_ms * NGTCP2_MILLISECONDS;
    st.max_window = MAX_CONN_WINDOW;
    st.max_stream_window = MAX_STREAM_WINDOW;
    st.ack_thresh = ACK_THRESH;
    if (getenv("DS_QUIC_DEBUG"))
        st.log_printf = debug_printf;
    ngtcp2_transport_params tp;
    ngtcp2_transport_params_default(&tp);
    tp.initial_max_stream_data_bidi_local = INIT_STREAM_WINDOW;
    tp.initial_max_stream_data_bidi_remote = INIT_STREAM_WINDOW;
    tp.initial_max_stream_data_uni = INIT_STREAM_WINDOW;
    tp.initial_max_data = INIT_CONN_WINDOW;
    tp.initial_max_streams_bidi = 100;
    tp.initial_max_streams_uni = 0;
    tp.max_idle_timeout = (uint64_t)ep->idle_ms * NGTCP2_MILLISECONDS;
    tp.active_connection_id_limit = 4;

    uint8_t b[DS_QUIC_CIDLEN];
    ngtcp2_cid scid, dcid;
    randombytes_buf(b, sizeof b);
    ngtcp2_cid_init(&scid, b, sizeof b);
    ngtcp2_path path;
    path.local.addr = (ngtcp2_sockaddr *)&p->local;
    path.local.addrlen = ds_quic_salen((struct sockaddr *)&p->local);
    path.remote.addr = (ngtcp2_sockaddr *)remote;
    path.remote.addrlen = ds_quic_salen(remote);
    path.user_data = p;
    int rv;
    if (is_server) {
        /* Only a server announces the token of its first connection ID
         * here; the others go out with NEW_CONNECTION_ID (cb_new_cid). */
        if (ngtcp2_crypto_generate_stateless_reset_token(tp.stateless_reset_token,
                                                         ep->reset_secret,
                                                         sizeof ep->reset_secret, &scid) != 0)
            goto fail_qc;
        tp.stateless_reset_token_present = 1;
        if (odcid) { /* after a Retry: both IDs are authenticated (RFC 9000, 7.3) */
            tp.original_dcid = *odcid;
            tp.retry_scid = hd->dcid;
            tp.retry_scid_present = 1;
        } else {
            tp.original_dcid = hd->dcid;
        }
        c->odcid = hd->dcid;
        c->has_odcid = 1;
        rv = ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, &path, hd->version, &cbs, &st, &tp,
                                    NULL, c);
    } else {
        randombytes_buf(b, sizeof b);
        ngtcp2_cid_init(&dcid, b, sizeof b);
        rv = ngtcp2_conn_client_new(&c->qc, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cbs, &st,
                                    &tp, NULL, c);
    }
    if (rv != 0)
        goto fail_qc;
    c->cids[c->ncids++] = scid;
    if (ep->keep_alive_ms)
        ngtcp2_conn_set_keep_alive_timeout(c->qc, (uint64_t)ep->keep_alive_ms * NGTCP2_MILLISECONDS);
    c->ssl = ds_quic_tls_session(&ep->tls, is_server, &c->pin, &c->ref);
    if (!c->ssl)
        goto fail_ssl;
    ngtcp2_conn_set_tls_native_handle(c->qc, c->ssl);
    if (uv_timer_init(ep->loop, &c->timer) != 0)
        goto fail_timer;
    c->timer.data = c;
    ep->handles++;
    c->next = ep->conns;
    if (ep->conns)
        ep->conns->prev = c;
    ep->conns = c;
    ep->nconns++;
    return c;
fail_timer:
    wolfSSL_free(c->ssl);
fail_ssl:
    ngtcp2_conn_del(c->qc);
fail_qc:
    free(c->tx);
fail_tx:
    free(c);
    return NULL;
}

/* ---- Reading ------------------------------------------------------------------ */

void ds_quic_conn_read(ds_quic_conn *c, ds_quic_path *p, const struct sockaddr *from,
                       const uint8_t *pkt, size_t len)
{
    if (c->freeing)
        return;
    if (c->state == DS_QC_CLOSING) {
        /* The peer did not get our CONNECTION_CLOSE: send it again, with
         * exponential backoff in the number of packets received. */
        c->close_rx++;
        if ((c->close_rx & (c->close_rx - 1)) == 0)
            send_raw(c->close_path, (struct sockaddr *)&c->close_to, c->close_pkt,
                     c->close_pkt_len);
        return;
    }
    if (c->state >= DS_QC_DRAINING)
        return;
    c->heard = 1;
    ngtcp2_path path;
    path.local.addr = (ngtcp2_sockaddr *)&p->local;
    path.local.addrlen = ds_quic_salen((struct sockaddr *)&p->local);
    path.remote.addr = (ngtcp2_sockaddr *)from;
    path.remote.addrlen = ds_quic_salen(from);
    path.user_data = p;
    c->busy++;
    int rv = ngtcp2_conn_read_pkt(c->qc, &path, NULL, pkt, len, ds_quic_now());
    c->busy--;
    if (rv != 0) {
        conn_fail(c, rv);
        return;
    }
    const ngtcp2_path *cur = ngtcp2_conn_get_path(c->qc);
    if (cur && cur->user_data)
        c->kind = ((ds_quic_path *)cur->user_data)->ops->kind;
    c->dirty = 1;
}

int ds_quic_conn_unreachable(ds_quic_conn *c, const char *why)
{
    if (c->freeing || c->is_server || c->heard || c->state >= DS_QC_CLOSING)
        return 0;
    /* Nothing to send a CONNECTION_CLOSE to: the dial just ends. */
    conn_end(c, DS_QC_DEAD, DS_ERR_UNREACHABLE, why, 0);
    return 1;
}

/* Work deferred while ngtcp2 was busy: closes asked for inside callbacks,
 * then writable notifications. */
void ds_quic_conn_after_read(ds_quic_conn *c)
{
    if (c->freeing || c->state >= DS_QC_CLOSING)
        return;
    if (c->close_req) {
        c->close_req = 0;
        write_close(c, &c->close_ccerr, c->close_err, c->close_reason);
        return;
    }
    if (!c->ack_evt)
        return;
    c->ack_evt = 0;
    int64_t ids[32];
    size_t n = 0;
    for (qstream *s = c->streams; s && n < 32; s = s->next) {
        if (s->ack_evt && !s->write_closed) {
            s->ack_evt = 0;
            ids[n++] = s->id;
        }
    }
    for (size_t i = 0; i < n && c->state == DS_QC_OPEN; i++)
        if (c->ep->cb.on_stream_writable)
            c->ep->cb.on_stream_writable(c, ids[i], c->ep->ud);
}

/* ---- Writing ------------------------------------------------------------------- */

static void conn_arm(ds_quic_conn *c)
{
    ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->qc), now = ds_quic_now();
    if (exp == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ms = exp > now ? (exp - now + 999999) / 1000000 : 0;
    uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* Sends |len| bytes at c->tx + c->tx_off; 0 when all went, 1 when the
 * path is full (the rest waits for ds_quic_path_writable). */
static int tx_send(ds_quic_conn *c)
{
    ds_quic_path *p = c->tx_path;
    size_t left = c->tx_len - c->tx_off;
    if (!p || p->closing) {
        c->tx_len = c->tx_off = 0;
        return 0;
    }
    int n = p->ops->send(p, (struct sockaddr *)&c->tx_to, c->tx + c->tx_off, left, c->tx_seg);
    if (n < 0 || (size_t)n >= left) {
        c->tx_len = c->tx_off = 0;
        return 0;
    }
    c->tx_off += (size_t)n;
    c->blocked = 1;
    return 1;
}

static qstream *next_stream(ds_quic_conn *c)
{
    for (qstream *s = c->streams; s; s = s->next)
        if (stream_pending(s))
            return s;
    return NULL;
}

void ds_quic_conn_flush(ds_quic_conn *c)
{
    c->dirty = 0;
    if (c->freeing || c->state >= DS_QC_CLOSING || c->blocked || c->busy)
        return;
    if (c->tx_len > c->tx_off && tx_send(c))
        return;
    for (qstream *s = c->streams; s; s = s->next)
        s->blocked = 0;
    ngtcp2_tstamp ts = ds_quic_now();
    size_t pmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
    size_t maxpk = DS_QUIC_TXBUF / pmax;
    size_t quantum = ngtcp2_conn_get_send_quantum(c->qc) / pmax;
    if (maxpk > MAX_SEGS)
        maxpk = MAX_SEGS;
    if (quantum < 1)
        quantum = 1;
    if (maxpk > quantum)
        maxpk = quantum;
    int done = 0;
    unsigned guard = 0;
    while (!done) {
        size_t off = 0, npk = 0, seg = 0;
        ds_quic_path *bpath = NULL;
        ngtcp2_path_storage ps;
        ngtcp2_path_storage_zero(&ps);
        while (npk < maxpk && ++guard < 100000) {
            qstream *s = next_stream(c);
            ngtcp2_vec v[MAX_VECS];
            size_t nv = 0;
            int all = 0;
            int64_t sid = -1;
            uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
            if (s) {
                sid = s->id;
                nv = stream_vecs(s, v, MAX_VECS, &all);
                if (s->fin_queued && all)
                    flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
            }
            ngtcp2_ssize ndata = -1;
            ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->qc, &ps.path, NULL, c->tx + off, pmax,
                                                       &ndata, flags, sid, v, nv, ts);
            if (n < 0) {
                if (n == NGTCP2_ERR_WRITE_MORE) {
                    stream_advance(s, (size_t)ndata, flags & NGTCP2_WRITE_STREAM_FLAG_FIN);
                    continue;
                }
                if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
                    s->blocked = 1;
                    continue;
                }
                if (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
                    s->write_closed = 1;
                    continue;
                }
                conn_fail(c, (int)n);
                return;
            }
            if (s && ndata >= 0)
                stream_advance(s, (size_t)ndata, flags & NGTCP2_WRITE_STREAM_FLAG_FIN);
            if (n == 0) {
                done = 1;
                break;
            }
            ds_quic_path *pp = ps.path.user_data;
            if (npk > 0 && (pp != bpath || (size_t)n > seg ||
                            memcmp(&c->tx_to, ps.path.remote.addr, ps.path.remote.addrlen) != 0)) {
                /* Another path (migration probe) or a bigger datagram (PMTU
                 * probe) cannot join this GSO batch: send it, restart. */
                c->tx_path = bpath;
                c->tx_seg = seg;
                c->tx_len = off;
                c->tx_off = 0;
                if (tx_send(c))
                    goto out; /* the new datagram is lost; ngtcp2 recovers it */
                memmove(c->tx, c->tx + off, (size_t)n);
                off = 0;
                npk = 0;
            }
            if (npk == 0) {
                bpath = pp;
                memcpy(&c->tx_to, ps.path.remote.addr, ps.path.remote.addrlen);
                seg = (size_t)n;
            }
            off += (size_t)n;
            npk++;
            if ((size_t)n < seg)
                break; /* a short datagram ends a GSO batch */
        }
        if (npk == 0)
            break;
        c->tx_path = bpath;
        c->tx_seg = seg;
        c->tx_len = off;
        c->tx_off = 0;
        if (tx_send(c))
            break;
        if (guard >= 100000)
            break;
    }
out:
    /* Pacing only once the handshake is over: ngtcp2 0.12 paces
     * handshake packets with its 333 ms initial RTT otherwise. */
    if (ngtcp2_conn_get_handshake_completed(c->qc))
        ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
    conn_arm(c);
}

static void conn_timer_cb(uv_timer_t *t)
{
    ds_quic_conn *c = t->data;
    ds_quic_endpoint *ep = c->ep;
    if (c->freeing)
        return;
    if (c->state >= DS_QC_CLOSING) {
        if (!c->notified) {
            c->notified = 1;
            if (ep->cb.on_closed)
                ep->cb.on_closed(c, c->err, c->reason, ep->ud);
            if (c->freeing)
                return;
        }
        uint64_t now = ds_quic_now();
        if (ep->closing || now >= c->deadline)
            conn_destroy(c);
        else
            uv_timer_start(&c->timer, conn_timer_cb, (c->deadline - now + 999999) / 1000000, 0);
        return;
    }
    int rv = ngtcp2_conn_handle_expiry(c->qc, ds_quic_now());
    if (rv != 0) {
        conn_fail(c, rv);
        return;
    }
    ds_quic_conn_flush(c);
}

/* ---- Public accessors ---------------------------------------------------------- */

void ds_quic_conn_close(ds_quic_conn *c, uint64_t app_error, const char *reason)
{
    if (!c || c->freeing || c->state >= DS_QC_CLOSING)
        return;
    if (!reason)
        reason = "";
    if (c->busy) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_connection_close_error_set_application_error(&ccerr, app_error, NULL, 0);
        request_close(c, app_code_err(app_error), reason, &ccerr);
        return;
    }
    close_app(c, app_error, reason);
}

void ds_quic_conn_set_data(ds_quic_conn *c, void *data) { c->data = data; }
void *ds_quic_conn_get_data(ds_quic_conn *c) { return c->data; }
int ds_quic_conn_established(ds_quic_conn *c) { return c->established; }
int ds_quic_conn_is_dialer(ds_quic_conn *c) { return !c->is_server; }

const uint8_t *ds_quic_conn_peer_pk(ds_quic_conn *c)
{
    return c->pin.have_peer ? c->pin.peer : NULL;
}

int ds_quic_conn_remote(ds_quic_conn *c, struct sockaddr_storage *out)
{
    const ngtcp2_path *p = ngtcp2_conn_get_path(c->qc);
    if (!p || !p->remote.addrlen || p->remote.addrlen > sizeof *out)
        return DS_ERR_NOTFOUND;
    memset(out, 0, sizeof *out);
    memcpy(out, p->remote.addr, p->remote.addrlen);
    return 0;
}

uint64_t ds_quic_conn_in_flight(ds_quic_conn *c)
{
    if (c->freeing || c->state >= DS_QC_CLOSING)
        return 0;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->qc, &st);
    return st.bytes_in_flight;
}

const char *ds_quic_conn_path_kind(ds_quic_conn *c)
{
    return c->kind;
}
