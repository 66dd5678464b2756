/*
 * quic.h - the QUIC endpoint (ngtcp2 + wolfSSL, statically linked) on a
 * libuv loop: mutual TLS 1.3 with self-signed Ed25519 certificates made
 * from the node identity, NodeId pinning, ALPN checked on both sides,
 * no session tickets, bidirectional streams with auto-tuned flow
 * control, a closing period that re-sends CONNECTION_CLOSE.
 *
 * Datagrams travel over a "path" (ds_quic_path): direct UDP (built in,
 * with GSO/GRO where the kernel has them); a relayed path and hole
 * punching plug in as further implementations of ds_quic_path_ops
 * without changing connections.  The endpoint always reports which kind
 * of path a connection uses.  See docs/transport.md.
 *
 * Threading: everything runs on the loop thread.  Callbacks may call any
 * function here except ds_quic_endpoint_free; work they ask for inside a
 * packet's processing (closing, writing) is carried out right after it.
 */
#ifndef DS_QUIC_H
#define DS_QUIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define DS_QUIC_DEFAULT_PORT 7979
#define DS_NODE_PK_LEN 32

/* Application close codes carried in CONNECTION_CLOSE (QUIC application
 * error space).  Codes from 0x100 up are free for the protocols on top. */
#define DS_QUIC_APP_OK 0x0u            /* clean close -> on_closed err 0 */
#define DS_QUIC_APP_UNAUTHORIZED 0x1u  /* listener rejected the peer -> DS_ERR_UNAUTHORIZED */
#define DS_QUIC_APP_PROTO 0x2u         /* protocol violation -> DS_ERR_PROTO */
#define DS_QUIC_APP_INTERNAL 0x3u      /* the closing side failed (out of memory, ...) -> DS_ERR_IO */
#define DS_QUIC_APP_TIMEOUT 0x4u       /* the closing side waited too long for us -> DS_ERR_TIMEOUT */

typedef struct ds_quic_endpoint ds_quic_endpoint;
typedef struct ds_quic_conn ds_quic_conn;
typedef struct ds_quic_path ds_quic_path;

/* ---- Paths ---------------------------------------------------------------
 * A datagram path.  The direct UDP path is built in (ds_quic_endpoint_bind);
 * others (relay) fill in a ds_quic_path and register it with
 * ds_quic_endpoint_add_path.  Contracts:
 *  - send: transmits |len| bytes of |buf| to |to| as datagrams of |seg|
 *    bytes each (the last may be shorter; seg == len for one datagram).
 *    Returns the number of bytes taken (whole datagrams), which is less
 *    than |len| (possibly 0) only when the path is full for now: it then
 *    calls ds_quic_path_writable() once it can take more.  A negative
 *    DS_ERR_* means the datagrams are dropped (QUIC treats them as lost).
 *    send must not deliver to any endpoint synchronously: a path queues
 *    and delivers from a loop callback.
 *  - close: stops the path's I/O and releases it; calls |done| (from a
 *    loop callback, never synchronously) once its handles are closed.
 *    After close, the endpoint never touches |p| again.
 * Received datagrams are handed to ds_quic_endpoint_recv(). */
typedef struct ds_quic_path_ops {
    const char *kind;                     /* "direct" | "relay" */
    int (*send)(ds_quic_path *p, const struct sockaddr *to, const uint8_t *buf, size_t len,
                size_t seg);
    void (*close)(ds_quic_path *p, void (*done)(ds_quic_path *p));
} ds_quic_path_ops;

struct ds_quic_path {
    const ds_quic_path_ops *ops;
    /* The path's local address.  Each path needs a distinct one (QUIC
     * tells paths apart by their address pair): a relay path uses a
     * virtual address of its own. */
    struct sockaddr_storage local;
    int gso;                              /* 1: send takes several datagrams at once */
    int listening;                        /* 1: accept new connections arriving here */
    void *impl;                           /* the implementation's state */
    /* Owned by the endpoint once added: */
    ds_quic_endpoint *ep;
    ds_quic_path *next;
    int closing;
};

/* Registers |p| (ops, local, gso, listening, impl filled in) with |ep|,
 * which then owns it: ds_quic_endpoint_close closes it.  Returns 0 or
 * DS_ERR_INVALID (endpoint closing, missing ops). */
int ds_quic_endpoint_add_path(ds_quic_endpoint *ep, ds_quic_path *p);
/* A path delivers what it received from |from|: |len| bytes holding
 * datagrams of |seg| bytes each (GRO; the last may be shorter; seg == len
 * for one datagram).  Never fails: bad datagrams are dropped. */
void ds_quic_endpoint_recv(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *from,
                           const uint8_t *buf, size_t len, size_t seg);
/* A path that returned a short count from send can take data again. */
void ds_quic_path_writable(ds_quic_path *p);
/* The network answered a datagram sent on |p| to |to| with "unreachable"
 * (an ICMP port, host or network unreachable, or administratively
 * prohibited), described by |why|.  Dialer connections on |p| to |to|
 * that have not received a single packet yet end at once with
 * DS_ERR_UNREACHABLE instead of waiting for the handshake timeout; any
 * other connection ignores it (ICMP is unauthenticated: it may only cut
 * short a dial that has heard nothing from its peer). */
void ds_quic_endpoint_unreachable(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *to,
                                  const char *why);

/* ---- Endpoint --------------------------------------------------------- */

typedef struct ds_quic_callbacks {
    /* Listener side: a peer completed the handshake with certificate
     * key |peer_pk| and the right ALPN.  Return 0 to keep the connection,
     * non-zero to close it (DS_QUIC_APP_UNAUTHORIZED; the dialer sees
     * DS_ERR_UNAUTHORIZED).  May be NULL (accept all). */
    int (*on_accept)(ds_quic_conn *c, const uint8_t peer_pk[DS_NODE_PK_LEN], void *ud);
    /* Dialer side: handshake confirmed (the peer accepted us). */
    void (*on_connected)(ds_quic_conn *c, void *ud);
    /* The peer opened stream |sid|. */
    void (*on_stream_open)(ds_quic_conn *c, int64_t sid, void *ud);
    /* In-order stream data (|data| valid during the call); |fin| set when
     * the peer finished its side (possibly with len 0). */
    void (*on_stream_data)(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len,
                           int fin, void *ud);
    /* Data queued on |sid| was acknowledged: there is room to write more. */
    void (*on_stream_writable)(ds_quic_conn *c, int64_t sid, void *ud);
    /* The connection is gone: err 0 for a clean close, else a DS_ERR_*
     * (DS_ERR_TIMEOUT: handshake or idle timeout; DS_ERR_UNREACHABLE: the
     * network reported the peer's address unreachable during the dial
     * (ds_quic_endpoint_unreachable); DS_ERR_CRYPTO: pinning
     * or TLS failure; DS_ERR_IO: the peer sent a stateless reset (it
     * restarted and no longer knows the connection);
     * DS_ERR_PROTO: ALPN mismatch or protocol error;
     * DS_ERR_UNAUTHORIZED: the listener rejected us) and a reason.
     * Every connection ends with exactly one on_closed, also listener-side
     * connections that failed before on_accept (ds_quic_conn_established
     * tells them apart).  Always called from a loop callback of its own,
     * never from inside another API call.  The conn pointer is invalid
     * after this returns. */
    void (*on_closed)(ds_quic_conn *c, int err, const char *reason, void *ud);
    /* Diagnostics (bind failures, dropped datagrams); may be NULL. */
    void (*on_log)(int is_error, const char *msg, void *ud);
} ds_quic_callbacks;

typedef struct ds_quic_config {
    const uint8_t *identity_sk;           /* libsodium Ed25519 secret key (64 bytes) */
    const char *alpn;                     /* e.g. "ds-sync/1" (1..255 bytes) */
    uint32_t idle_timeout_ms;             /* 0: 30000 */
    uint32_t handshake_timeout_ms;        /* 0: 10000 */
    /* 0: off.  A connection that has received nothing for this long sends
     * a PING.  A dialer waiting on a silent peer uses it to learn soon
     * that the peer restarted (its stateless reset answers the PING). */
    uint32_t keep_alive_ms;
    /* 1: every new dialer must first answer a Retry (tests).  0: only
     * once 32 handshakes are under way (see docs/transport.md). */
    int retry_always;
} ds_quic_config;

/* Creates an endpoint (nothing bound yet): builds the self-signed Ed25519
 * certificate from |cfg->identity_sk| and both TLS contexts.  |cfg| and
 * |cb| are copied.  Returns 0, DS_ERR_INVALID (missing key/ALPN, ALPN
 * too long), DS_ERR_CRYPTO (a key whose public half does not match its
 * seed, certificate/TLS context failure) or DS_ERR_NOMEM.  On failure
 * nothing is allocated.  Free with ds_quic_endpoint_free. */
int ds_quic_endpoint_new(ds_quic_endpoint **out, uv_loop_t *loop, const ds_quic_config *cfg,
                         const ds_quic_callbacks *cb, void *ud);
/* Binds a direct UDP path to |host|:|port| ("0.0.0.0", "::", "127.0.0.1";
 * port 0 = any) that accepts connections, and starts receiving.  "::" is
 * IPv6-only: bind "0.0.0.0" as well for both families.  May be called
 * more than once.  Dialers need not bind: ds_quic_connect opens an
 * ephemeral path of the dialed family.  Returns 0, DS_ERR_INVALID (bad
 * host) or DS_ERR_IO (message through on_log). */
int ds_quic_endpoint_bind(ds_quic_endpoint *ep, const char *host, uint16_t port);
/* The address of the first bound path (for tests using port 0).  0 or
 * DS_ERR_NOTFOUND (nothing bound). */
int ds_quic_endpoint_addr(ds_quic_endpoint *ep, struct sockaddr_storage *out);
/* 1 if the first direct path sends with GSO. */
int ds_quic_endpoint_gso(ds_quic_endpoint *ep);
/* Stateless resets this endpoint has sent: answers to packets for one of
 * its connection IDs that no connection holds (a peer still talking to
 * this node's previous process).  The reset key is derived from the
 * identity, so a restarted node's resets are accepted by its peers. */
uint64_t ds_quic_endpoint_resets_sent(ds_quic_endpoint *ep);
/* Retry packets sent (address validation of new dialers). */
uint64_t ds_quic_endpoint_retries_sent(ds_quic_endpoint *ep);
/* Connections the endpoint holds (live, and closing or draining ones). */
size_t ds_quic_endpoint_conn_count(ds_quic_endpoint *ep);
/* Closes every connection (one CONNECTION_CLOSE each, closing period
 * skipped; each gets its on_closed) and every path; |done| (may be NULL)
 * runs once all handles are closed (before this returns if nothing was
 * ever bound or dialed).  Idempotent. */
void ds_quic_endpoint_close(ds_quic_endpoint *ep, void (*done)(void *ud), void *ud);
/* Frees |ep|: after |done| ran, or when nothing was ever bound or dialed. */
void ds_quic_endpoint_free(ds_quic_endpoint *ep);

/* ---- Connections --------------------------------------------------------- */

/* Dials |addr| (IPv4 or IPv6) over a direct path of that family (bound
 * on demand), expecting the peer's key |expect_pk| (the NodeId).
 * Completion or failure arrives through on_connected / on_closed; *out
 * is valid until on_closed returns.  Returns 0, DS_ERR_INVALID (endpoint
 * closing, bad address), DS_ERR_IO (no socket), DS_ERR_CRYPTO or
 * DS_ERR_NOMEM. */
int ds_quic_connect(ds_quic_endpoint *ep, const struct sockaddr *addr,
                    const uint8_t expect_pk[DS_NODE_PK_LEN], ds_quic_conn **out);
/* The same over a given path (e.g. a relay path added with
 * ds_quic_endpoint_add_path); |addr| is the peer's address on it. */
int ds_quic_connect_via(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *addr,
                        const uint8_t expect_pk[DS_NODE_PK_LEN], ds_quic_conn **out);

/* Opens a bidirectional stream (after on_connected / on_accept).
 * Returns 0, DS_ERR_INVALID (not established / closing) or DS_ERR_BUSY
 * (the peer's stream limit is reached for now). */
int ds_quic_stream_open(ds_quic_conn *c, int64_t *sid);
/* Queues |len| bytes (copied) on stream |sid|, then FIN if |fin|.
 * Returns 0, DS_ERR_INVALID (unknown stream, FIN already queued, conn
 * closing) or DS_ERR_NOMEM. */
int ds_quic_stream_write(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin);
/* The same without the copy: on success the stream owns |data| (a malloc
 * block, freed once acknowledged or with the stream; at once when |len|
 * is 0).  On failure the caller still owns it. */
int ds_quic_stream_write_take(ds_quic_conn *c, int64_t sid, uint8_t *data, size_t len, int fin);
/* Bytes queued on |sid| and not yet acknowledged by the peer: callers
 * keep this bounded (write more in on_stream_writable). */
size_t ds_quic_stream_queued(ds_quic_conn *c, int64_t sid);
/* Graceful close with an application error code (DS_QUIC_APP_*) and
 * reason; on_closed follows.  No-op on a conn already closing. */
void ds_quic_conn_close(ds_quic_conn *c, uint64_t app_error, const char *reason);

void ds_quic_conn_set_data(ds_quic_conn *c, void *data);
void *ds_quic_conn_get_data(ds_quic_conn *c);
/* Bytes sent on |c| and not yet acknowledged (0 once everything sent was
 * acknowledged: nothing would be retransmitted). */
uint64_t ds_quic_conn_in_flight(ds_quic_conn *c);
/* The peer's key (once the handshake verified it; NULL before), the
 * remote address, and the kind of path ("direct" / "relay"). */
const uint8_t *ds_quic_conn_peer_pk(ds_quic_conn *c);
int ds_quic_conn_remote(ds_quic_conn *c, struct sockaddr_storage *out);
const char *ds_quic_conn_path_kind(ds_quic_conn *c);
/* 1 once on_connected ran (dialer) or on_accept kept it (listener). */
int ds_quic_conn_established(ds_quic_conn *c);
/* 1 for a connection this endpoint dialed. */
int ds_quic_conn_is_dialer(ds_quic_conn *c);

#endif
