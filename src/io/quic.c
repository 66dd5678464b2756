/*
 * quic.c - the QUIC endpoint: owns the TLS contexts (quic_tls.c), the
 * datagram paths (direct UDP from udp_path.c, or any other
 * ds_quic_path), and the connections (quic_conn.c).  It routes each
 * received datagram to its connection by destination connection ID,
 * accepts new connections on listening paths, flushes connections once
 * per received batch (or, for application writes, once per loop
 * iteration from a uv_prepare_t started only when there is something to
 * send), and shuts everything down in order.
 */
#include <wolfssl/options.h>

#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "io/quic_int.h"

uint64_t ds_quic_now(void)
{
    return uv_hrtime();
}

void ds_quic_log(ds_quic_endpoint *ep, int is_error, const char *fmt, ...)
{
    if (!ep->cb.on_log)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ep->cb.on_log(is_error, msg, ep->ud);
}

int ds_quic_endpoint_new(ds_quic_endpoint **out, uv_loop_t *loop, const ds_quic_config *cfg,
                         const ds_quic_callbacks *cb, void *ud)
{
    *out = NULL;
    if (!loop || !cfg || !cfg->identity_sk || !cfg->alpn)
        return DS_ERR_INVALID;
    if (sodium_init() < 0)
        return DS_ERR_CRYPTO;
    ds_quic_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep)
        return DS_ERR_NOMEM;
    int rc = ds_quic_tls_init(&ep->tls, cfg->identity_sk, cfg->alpn);
    if (rc) {
        free(ep);
        return rc;
    }
    ep->loop = loop;
    if (cb)
        ep->cb = *cb;
    ep->ud = ud;
    ep->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 30000;
    ep->hs_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : 10000;
    ep->keep_alive_ms = cfg->keep_alive_ms;
    ep->retry_always = cfg->retry_always;
    randombytes_buf(ep->retry_secret, sizeof ep->retry_secret);
    /* The stateless reset key is derived from the identity, so that after
     * a restart this node can still reset the connections its peers hold
     * with its previous process (RFC 9000, 10.3.2: a static key). */
    uint8_t seed[crypto_sign_SEEDBYTES];
    crypto_sign_ed25519_sk_to_seed(seed, cfg->identity_sk);
    crypto_kdf_derive_from_key(ep->reset_secret, sizeof ep->reset_secret, 1, "dsquicsr", seed);
    sodium_memzero(seed, sizeof seed);
    *out = ep;
    return 0;
}

uint64_t ds_quic_endpoint_resets_sent(ds_quic_endpoint *ep)
{
    return ep ? ep->resets_sent : 0;
}

uint64_t ds_quic_endpoint_retries_sent(ds_quic_endpoint *ep)
{
    return ep ? ep->retries_sent : 0;
}

size_t ds_quic_endpoint_conn_count(ds_quic_endpoint *ep)
{
    return ep ? ep->nconns : 0;
}

void ds_quic_endpoint_free(ds_quic_endpoint *ep)
{
    if (!ep)
        return;
    /* Misuse (handles still open) would leave dangling handles in the loop. */
    if (ep->handles > 0)
        return;
    ds_quic_tls_free(&ep->tls);
    sodium_memzero(ep->reset_secret, sizeof ep->reset_secret);
    sodium_memzero(ep->retry_secret, sizeof ep->retry_secret);
    free(ep);
}

/* ---- Flushing ----------------------------------------------------------- */

static void flush_dirty(ds_quic_endpoint *ep)
{
    ds_quic_conn *c = ep->conns;
    while (c) {
        ds_quic_conn *next = c->next;
        if (c->dirty)
            ds_quic_conn_flush(c);
        c = next;
    }
}

static void prep_cb(uv_prepare_t *h)
{
    ds_quic_endpoint *ep = h->data;
    uv_prepare_stop(h);
    ep->prep_active = 0;
    flush_dirty(ep);
}

static int ensure_prep(ds_quic_endpoint *ep)
{
    if (ep->prep_init)
        return 0;
    if (uv_prepare_init(ep->loop, &ep->prep) != 0)
        return DS_ERR_IO;
    ep->prep.data = ep;
    ep->prep_init = 1;
    ep->handles++;
    return 0;
}

void ds_quic_schedule_flush(ds_quic_endpoint *ep)
{
    if (ep->prep_active || ep->closing || !ep->prep_init)
        return;
    ep->prep_active = 1;
    uv_prepare_start(&ep->prep, prep_cb);
}

/* ---- Paths -------------------------------------------------------------- */

int ds_quic_endpoint_add_path(ds_quic_endpoint *ep, ds_quic_path *p)
{
    if (!ep || !p || !p->ops || !p->ops->send || !p->ops->close || ep->closing)
        return DS_ERR_INVALID;
    if (ensure_prep(ep))
        return DS_ERR_IO;
    p->ep = ep;
    p->closing = 0;
    p->next = ep->paths;
    ep->paths = p;
    ep->handles++;
    return 0;
}

int ds_quic_endpoint_bind(ds_quic_endpoint *ep, const char *host, uint16_t port)
{
    if (!ep || !host || ep->closing)
        return DS_ERR_INVALID;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
    } else {
        ds_quic_log(ep, 1, "quic: bad bind address '%s'", host);
        return DS_ERR_INVALID;
    }
    if (ensure_prep(ep))
        return DS_ERR_IO;
    ds_quic_path *p;
    char err[160] = "";
    int rc = ds_quic_udp_path_open(ep, ep->loop, (struct sockaddr *)&ss, 1, &p, err, sizeof err);
    if (rc) {
        ds_quic_log(ep, 1, "quic: cannot listen on %s port %u: %s", host, port, err);
        return rc;
    }
    ds_quic_endpoint_add_path(ep, p);
    if (!ep->primary)
        ep->primary = p;
    return 0;
}

int ds_quic_endpoint_addr(ds_quic_endpoint *ep, struct sockaddr_storage *out)
{
    if (!ep || !ep->primary)
        return DS_ERR_NOTFOUND;
    *out = ep->primary->local;
    return 0;
}

int ds_quic_endpoint_gso(ds_quic_endpoint *ep)
{
    for (ds_quic_path *p = ep->paths; p; p = p->next)
        if (strcmp(p->ops->kind, "direct") == 0 && !p->closing)
            return p->gso;
    return 0;
}

void ds_quic_path_writable(ds_quic_path *p)
{
    ds_quic_endpoint *ep = p->ep;
    if (!ep || ep->closing)
        return;
    ds_quic_conn *c = ep->conns;
    while (c) {
        ds_quic_conn *next = c->next;
        if (c->blocked && c->tx_path == p) {
            c->blocked = 0;
            ds_quic_conn_flush(c);
        }
        c = next;
    }
}

static int same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

void ds_quic_endpoint_unreachable(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *to,
                                  const char *why)
{
    if (!ep || ep->closing || !p || p->closing || !to)
        return;
    for (ds_quic_conn *c = ep->conns; c; c = c->next) {
        const ngtcp2_path *cp = ngtcp2_conn_get_path(c->qc);
        if (!cp || cp->user_data != p || !cp->remote.addrlen ||
            !same_addr((const struct sockaddr *)cp->remote.addr, to))
            continue;
        if (ds_quic_conn_unreachable(c, why))
            ds_quic_log(ep, 0, "quic: dial ended: %s", why);
    }
}

/* ---- Receiving ---------------------------------------------------------------- */

static ds_quic_conn *find_conn(ds_quic_endpoint *ep, const uint8_t *cid, size_t len)
{
    for (ds_quic_conn *c = ep->conns; c; c = c->next) {
        for (size_t i = 0; i < c->ncids; i++)
            if (c->cids[i].datalen == len && memcmp(c->cids[i].data, cid, len) == 0)
                return c;
        if (c->has_odcid && c->odcid.datalen == len && memcmp(c->odcid.data, cid, len) == 0)
            return c;
    }
    return NULL;
}

static void move_to_front(ds_quic_endpoint *ep, ds_quic_conn *c)
{
    if (ep->conns == c)
        return;
    ds_quic_unlink_conn(ep, c);
    c->next = ep->conns;
    if (ep->conns)
        ep->conns->prev = c;
    ep->conns = c;
    ep->nconns++;
}

/* A short-header packet for a connection ID of ours that no connection
 * holds: most likely the peer's connection with this node's previous
 * process (a restart) or one closed and forgotten.  Answer with a
 * stateless reset (RFC 9000, 10.3) so the peer ends it at once rather
 * than at its idle timeout.  The reset is always shorter than the packet
 * that caused it, so two endpoints cannot answer each other forever, and
 * at most DS_QUIC_RESETS_PER_S go out per second. */
static void send_reset(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *from,
                       const ngtcp2_version_cid *vc, size_t len)
{
    if (vc->dcidlen != DS_QUIC_CIDLEN || len < DS_QUIC_RESET_MIN_TRIGGER)
        return;
    uint64_t now = ds_quic_now();
    if (now - ep->reset_window >= NGTCP2_SECONDS) {
        ep->reset_window = now;
        ep->resets = 0;
    }
    if (ep->resets >= DS_QUIC_RESETS_PER_S)
        return;
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (ngtcp2_crypto_generate_stateless_reset_token(token, ep->reset_secret,
                                                     sizeof ep->reset_secret, &cid) != 0)
        return;
    /* As long as a short packet with our connection IDs, never longer
     * than the trigger minus one byte. */
    size_t total = len - 1 < DS_QUIC_RESET_MAX ? len - 1 : DS_QUIC_RESET_MAX;
    uint8_t rnd[DS_QUIC_RESET_MAX], out[DS_QUIC_RESET_MAX];
    size_t rlen = total - NGTCP2_STATELESS_RESET_TOKENLEN;
    randombytes_buf(rnd, rlen);
    ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(out, sizeof out, token, rnd, rlen);
    if (n <= 0)
        return;
    ep->resets++;
    ep->resets_sent++;
    (void)p->ops->send(p, from, out, (size_t)n, (size_t)n);
}

/* A stateless reset carries no connection ID we know (its sender lost
 * the connection's state): it can only be recognized by the token in its
 * last 16 bytes, which ngtcp2 checks when a packet fails to decrypt.  So
 * a short-header packet no connection claims is offered to the
 * connections with that peer address on that path.  1 if one of them
 * took it as its reset. */
static int offer_as_reset(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *from,
                          const uint8_t *pkt, size_t len)
{
    if (len < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN)
        return 0;
    for (ds_quic_conn *c = ep->conns; c; c = c->next) {
        if (c->freeing || c->state >= DS_QC_CLOSING || !c->established)
            continue;
        const ngtcp2_path *cur = ngtcp2_conn_get_path(c->qc);
        if (!cur || cur->user_data != p || !same_addr((const struct sockaddr *)cur->remote.addr, from))
            continue;
        ds_quic_conn_read(c, p, from, pkt, len);
        if (c->reset_rx)
            return 1;
        ds_quic_conn_after_read(c);
    }
    return 0;
}

/* Handshakes of dialers under way (listener side, not yet completed). */
static size_t half_open(ds_quic_endpoint *ep)
{
    size_t n = 0;
    for (ds_quic_conn *c = ep->conns; c; c = c->next)
        n += c->is_server && !c->established && c->state < DS_QC_CLOSING;
    return n;
}

/* A new dialer's Initial.  Its source address is unproven: anyone can
 * put any address in a UDP packet, and each accepted Initial costs a
 * connection's memory and a TLS handshake.  While few handshakes are
 * under way it is accepted at once (ngtcp2 then limits what is sent to
 * the unproven address to 3 times what it received).  Beyond
 * DS_QUIC_RETRY_HALF_OPEN (or always, with retry_always), the dialer
 * gets a Retry first: a token sealed to its address that it must send
 * back, which a forged source address never sees.  A Retry token that
 * does not check out (other address, expired, not ours) gets a
 * CONNECTION_CLOSE with INVALID_TOKEN and no connection. */
static ds_quic_conn *accept_initial(ds_quic_endpoint *ep, ds_quic_path *p,
                                    const struct sockaddr *from, const uint8_t *pkt, size_t len)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0 || hd.type != NGTCP2_PKT_INITIAL)
        return NULL;
    socklen_t flen = ds_quic_salen(from);
    ngtcp2_cid odcid;
    int retried = 0;
    uint8_t out[512];
    if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
        if (ngtcp2_crypto_verify_retry_token(&odcid, hd.token.base, hd.token.len, ep->retry_secret,
                                             sizeof ep->retry_secret, hd.version,
                                             (const ngtcp2_sockaddr *)from, flen, &hd.dcid,
                                             DS_QUIC_RETRY_TOKEN_TTL, ds_quic_now()) != 0) {
            ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
                out, sizeof out, hd.version, &hd.scid, &hd.dcid, NGTCP2_INVALID_TOKEN, NULL, 0);
            if (n > 0)
                (void)p->ops->send(p, from, out, (size_t)n, (size_t)n);
            return NULL;
        }
        retried = 1;
    } else if (ep->retry_always || half_open(ep) >= DS_QUIC_RETRY_HALF_OPEN) {
        /* (A token of another kind, which ds never issues, counts as none.) */
        uint8_t b[DS_QUIC_CIDLEN], token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
        randombytes_buf(b, sizeof b);
        ngtcp2_cid scid;
        ngtcp2_cid_init(&scid, b, sizeof b);
        ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token(
            token, ep->retry_secret, sizeof ep->retry_secret, hd.version,
            (const ngtcp2_sockaddr *)from, flen, &scid, &hd.dcid, ds_quic_now());
        if (tl < 0)
            return NULL;
        ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, sizeof out, hd.version, &hd.scid, &scid,
                                                   &hd.dcid, token, (size_t)tl);
        if (n <= 0)
            return NULL;
        ep->retries_sent++;
        (void)p->ops->send(p, from, out, (size_t)n, (size_t)n);
        return NULL;
    }
    ds_quic_conn *c = ds_quic_conn_new(ep, p, from, &hd, retried ? &odcid : NULL, NULL);
    if (!c)
        ds_quic_log(ep, 1, "quic: cannot accept a connection (out of memory)");
    return c;
}

static void recv_one(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *from,
                     const uint8_t *pkt, size_t len)
{
    ngtcp2_version_cid vc;
    if (ngtcp2_pkt_decode_version_cid(&vc, pkt, len, DS_QUIC_CIDLEN) != 0)
        return; /* garbage or an unsupported version: dropped */
    ds_quic_conn *c = find_conn(ep, vc.dcid, vc.dcidlen);
    if (!c) {
        if (!(pkt[0] & 0x80)) {
            if (!offer_as_reset(ep, p, from, pkt, len))
                send_reset(ep, p, from, &vc, len);
            return;
        }
        if (!p->listening || ep->nconns >= DS_QUIC_MAX_CONNS)
            return;
        c = accept_initial(ep, p, from, pkt, len);
        if (!c)
            return;
    } else {
        move_to_front(ep, c); /* the next datagram is likely for it too */
    }
    ds_quic_conn_read(c, p, from, pkt, len);
    ds_quic_conn_after_read(c);
}

void ds_quic_endpoint_recv(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *from,
                           const uint8_t *buf, size_t len, size_t seg)
{
    if (!ep || ep->closing || p->closing || !len)
        return;
    if (from->sa_family != AF_INET && from->sa_family != AF_INET6)
        return;
    if (seg == 0 || seg > len)
        seg = len;
    ep->in_recv++;
    for (size_t off = 0; off < len && !ep->closing; off += seg)
        recv_one(ep, p, from, buf + off, len - off < seg ? len - off : seg);
    ep->in_recv--;
    if (ep->in_recv)
        return;
    if (ep->close_pending) {
        ep->close_pending = 0;
        ds_quic_endpoint_close(ep, ep->done, ep->done_ud);
        return;
    }
    flush_dirty(ep);
}

/* ---- Connections ------------------------------------------------------------- */

void ds_quic_unlink_conn(ds_quic_endpoint *ep, ds_quic_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (ep->conns == c)
        ep->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    ep->nconns--;
}

int ds_quic_connect_via(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *addr,
                        const uint8_t expect_pk[DS_NODE_PK_LEN], ds_quic_conn **out)
{
    if (!ep || !p || !addr || !expect_pk || ep->closing || p->closing || p->ep != ep)
        return DS_ERR_INVALID;
    if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
        return DS_ERR_INVALID;
    ds_quic_conn *c = ds_quic_conn_new(ep, p, addr, NULL, NULL, expect_pk);
    if (!c)
        return DS_ERR_NOMEM;
    if (out)
        *out = c;
    ds_quic_conn_flush(c); /* the first Initial goes out now */
    return 0;
}

int ds_quic_connect(ds_quic_endpoint *ep, const struct sockaddr *addr,
                    const uint8_t expect_pk[DS_NODE_PK_LEN], ds_quic_conn **out)
{
    if (!ep || !addr || ep->closing)
        return DS_ERR_INVALID;
    int fam = addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6)
        return DS_ERR_INVALID;
    ds_quic_path *p = NULL;
    for (ds_quic_path *q = ep->paths; q; q = q->next)
        if (!q->closing && strcmp(q->ops->kind, "direct") == 0 && q->local.ss_family == fam)
            p = q; /* the oldest: the bound one before ephemeral ones */
    if (!p) {
        struct sockaddr_storage any;
        memset(&any, 0, sizeof any);
        any.ss_family = (sa_family_t)fam;
        if (ensure_prep(ep))
            return DS_ERR_IO;
        char err[160] = "";
        int rc = ds_quic_udp_path_open(ep, ep->loop, (struct sockaddr *)&any, 0, &p, err,
                                       sizeof err);
        if (rc) {
            ds_quic_log(ep, 1, "quic: cannot open a dialing socket: %s", err);
            return rc;
        }
        ds_quic_endpoint_add_path(ep, p);
    }
    return ds_quic_connect_via(ep, p, addr, expect_pk, out);
}

/* ---- Shutdown ----------------------------------------------------------------- */

static void maybe_done(ds_quic_endpoint *ep)
{
    if (ep->closing && ep->handles == 0 && !ep->done_called) {
        ep->done_called = 1;
        if (ep->done)
            ep->done(ep->done_ud);
    }
}

void ds_quic_handle_closed(ds_quic_endpoint *ep)
{
    ep->handles--;
    maybe_done(ep);
}

static void path_closed(ds_quic_path *p)
{
    ds_quic_handle_closed(p->ep);
}

static void prep_closed(uv_handle_t *h)
{
    ds_quic_handle_closed(h->data);
}

void ds_quic_endpoint_close(ds_quic_endpoint *ep, void (*done)(void *ud), void *ud)
{
    if (!ep || ep->closing)
        return;
    ep->done = done;
    ep->done_ud = ud;
    if (ep->in_recv) { /* a callback inside packet processing: finish it first */
        ep->close_pending = 1;
        return;
    }
    ep->closing = 1;
    ds_quic_conn *c = ep->conns;
    while (c) {
        ds_quic_conn *next = c->next;
        ds_quic_conn_shutdown(c);
        c = next;
    }
    /* Conns still to report on_closed keep their (timer) handle; paths
     * go now: nothing is sent any more. */
    ds_quic_path *p = ep->paths;
    ep->paths = NULL;
    ep->primary = NULL;
    while (p) {
        ds_quic_path *next = p->next;
        p->closing = 1;
        p->ops->close(p, path_closed);
        p = next;
    }
    if (ep->prep_init) {
        uv_prepare_stop(&ep->prep);
        ep->prep_active = 0;
        uv_close((uv_handle_t *)&ep->prep, prep_closed);
    }
    maybe_done(ep);
}
