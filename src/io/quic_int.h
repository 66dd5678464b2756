/*
 * quic_int.h - internals shared by the QUIC endpoint's files: the TLS
 * side (quic_tls.c: certificate from the identity, contexts, pinning),
 * the endpoint and connections (quic.c), and the direct UDP path
 * (udp_path.c).  Not part of any public interface.
 */
#ifndef DS_QUIC_INT_H
#define DS_QUIC_INT_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "io/quic.h"

#define DS_QUIC_ALPN_MAX 255

/* Per-endpoint TLS state: our certificate and key (DER) and one context
 * per role. */
typedef struct ds_quic_tls {
    WOLFSSL_CTX *client;
    WOLFSSL_CTX *server;
    uint8_t alpn_wire[DS_QUIC_ALPN_MAX + 1]; /* the ALPN as one string */
    size_t alpn_len;
} ds_quic_tls;

/* What the verify callback needs from a connection. */
typedef struct ds_quic_pin {
    int is_server;                 /* listener: learn any key */
    uint8_t expect[DS_NODE_PK_LEN]; /* dialer: the pinned key */
    uint8_t peer[DS_NODE_PK_LEN];  /* the key seen in the peer's certificate */
    int have_peer;                 /* peer[] is valid (and matched, on a dialer) */
    int mismatch;                  /* dialer: a certificate with another key */
} ds_quic_pin;

/* Builds the certificate from the libsodium secret key |sk| and both
 * contexts.  0, DS_ERR_CRYPTO or DS_ERR_NOMEM; nothing to free on error. */
int ds_quic_tls_init(ds_quic_tls *t, const uint8_t sk[64], const char *alpn);
void ds_quic_tls_free(ds_quic_tls *t);
/* A QUIC TLS session for one connection.  |app_data| is the
 * ngtcp2_crypto_conn_ref the ngtcp2 helper reads back.  NULL on failure. */
WOLFSSL *ds_quic_tls_session(ds_quic_tls *t, int is_server, ds_quic_pin *pin, void *app_data);
/* 1 if the session negotiated exactly our ALPN. */
int ds_quic_tls_alpn_ok(ds_quic_tls *t, WOLFSSL *ssl);

/* ---- Endpoint and connection state (quic.c, quic_conn.c) ---- */

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#define DS_QUIC_CIDLEN 18       /* our connection IDs */
#define DS_QUIC_MAX_SCIDS 16    /* CIDs of ours alive at once per connection */
#define DS_QUIC_TXBUF 65536     /* one GSO batch */
#define DS_QUIC_MAX_CONNS 1024
/* Stateless resets (quic.c send_reset): sent only for a packet of at
 * least MIN_TRIGGER bytes (a short header with our CID, a packet number
 * and an AEAD tag), at most MAX bytes long, at most PER_S per second. */
#define DS_QUIC_RESET_MIN_TRIGGER (1 + DS_QUIC_CIDLEN + 1 + 16)
#define DS_QUIC_RESET_MAX (1 + DS_QUIC_CIDLEN + 1 + 16 + 4)
#define DS_QUIC_RESETS_PER_S 100
/* Address validation (quic.c accept_initial): once this many handshakes
 * of dialers are under way, a new dialer must first answer a Retry
 * (RFC 9000, 8.1.2); its token is good for TTL. */
#define DS_QUIC_RETRY_HALF_OPEN 32
#define DS_QUIC_RETRY_TOKEN_TTL (10 * NGTCP2_SECONDS)

struct ds_quic_endpoint {
    uv_loop_t *loop;
    ds_quic_callbacks cb;
    void *ud;
    uint32_t idle_ms, hs_ms, keep_alive_ms;
    ds_quic_tls tls;
    uint8_t reset_secret[32];     /* stateless reset tokens, derived from the identity */
    uint64_t reset_window;        /* start of the current second of resets */
    unsigned resets;              /* resets sent in it */
    uint64_t resets_sent;         /* all resets sent (ds_quic_endpoint_resets_sent) */
    uint8_t retry_secret[32];     /* Retry tokens (random per process) */
    int retry_always;             /* every new dialer gets a Retry first */
    uint64_t retries_sent;
    ds_quic_path *paths;          /* every path, newest first */
    ds_quic_path *primary;        /* the first bound one */
    ds_quic_conn *conns;          /* live and lingering connections */
    size_t nconns;
    uv_prepare_t prep;            /* deferred flush of written streams */
    int prep_init, prep_active;
    int handles;                  /* open uv handles (paths, timers, prep) */
    int in_recv;                  /* inside ds_quic_endpoint_recv */
    int closing, close_pending, done_called;
    void (*done)(void *ud);
    void *done_ud;
};

typedef struct qchunk {
    struct qchunk *next;
    size_t len;
    uint8_t *data;                 /* inl (a copy), or own (a taken buffer) */
    uint8_t *own;
    uint8_t inl[];
} qchunk;

/* One stream's send side: chunks queued by the application and kept
 * until acknowledged (ngtcp2 references them for retransmission). */
typedef struct qstream {
    struct qstream *next;
    int64_t id;
    qchunk *head, *tail;          /* unacknowledged chunks, oldest first */
    uint64_t head_off;            /* stream offset of head->data[0] */
    qchunk *cur;                  /* chunk holding the next unsent byte (NULL: none) */
    size_t cur_off;
    uint64_t written, sent, acked;
    int fin_queued, fin_sent, blocked, write_closed, ack_evt;
} qstream;

enum { DS_QC_HANDSHAKE, DS_QC_OPEN, DS_QC_CLOSING, DS_QC_DRAINING, DS_QC_DEAD };

struct ds_quic_conn {
    ds_quic_endpoint *ep;
    ds_quic_conn *next, *prev;
    ngtcp2_conn *qc;
    WOLFSSL *ssl;
    ngtcp2_crypto_conn_ref ref;
    ds_quic_pin pin;
    uv_timer_t timer;
    int is_server, state, established, busy, dirty, notified, freeing, doomed, ack_evt;
    int heard;                    /* a packet arrived for it (ICMP may not end it) */
    int reset_rx;                 /* the peer sent a stateless reset */
    ngtcp2_cid cids[DS_QUIC_MAX_SCIDS]; /* ours, as the peer addresses us */
    size_t ncids;
    ngtcp2_cid odcid;             /* listener: the dialer's first DCID */
    int has_odcid;
    qstream *streams;
    /* A close asked for while ngtcp2 was busy with this connection. */
    int close_req;
    ngtcp2_connection_close_error close_ccerr;
    int close_err;
    char close_reason[128];
    /* The outcome, reported by on_closed. */
    int err;
    char reason[256];
    uint64_t deadline;            /* end of the closing/draining period */
    /* Datagrams not yet taken by a full path. */
    uint8_t *tx;
    size_t tx_len, tx_off, tx_seg;
    ds_quic_path *tx_path;
    struct sockaddr_storage tx_to;
    int blocked;
    /* The CONNECTION_CLOSE packet, re-sent during the closing period. */
    uint8_t close_pkt[1500];
    size_t close_pkt_len;
    ds_quic_path *close_path;
    struct sockaddr_storage close_to;
    uint64_t close_rx;
    const char *kind;             /* the current path's kind (static string) */
    void *data;
};

/* quic.c */
uint64_t ds_quic_now(void);
void ds_quic_log(ds_quic_endpoint *ep, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ds_quic_schedule_flush(ds_quic_endpoint *ep);
void ds_quic_unlink_conn(ds_quic_endpoint *ep, ds_quic_conn *c);
void ds_quic_handle_closed(ds_quic_endpoint *ep); /* a handle of ep closed */
/* quic_conn.c */
/* Listener: |hd| is the dialer's first Initial; |odcid| the DCID of its
 * Initial before a Retry (NULL: no Retry).  Dialer: |hd| NULL. */
ds_quic_conn *ds_quic_conn_new(ds_quic_endpoint *ep, ds_quic_path *p, const struct sockaddr *remote,
                               const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                               const uint8_t *expect_pk);
/* The network reported the peer unreachable: ends a dial that has heard
 * nothing yet (see ds_quic_endpoint_unreachable); 1 if it ended it. */
int ds_quic_conn_unreachable(ds_quic_conn *c, const char *why);
void ds_quic_conn_read(ds_quic_conn *c, ds_quic_path *p, const struct sockaddr *from,
                       const uint8_t *pkt, size_t len);
void ds_quic_conn_after_read(ds_quic_conn *c);
void ds_quic_conn_flush(ds_quic_conn *c);
/* Closes at once for the endpoint's shutdown (one CONNECTION_CLOSE). */
void ds_quic_conn_shutdown(ds_quic_conn *c);
socklen_t ds_quic_salen(const struct sockaddr *sa);

/* Opens the direct UDP path bound to |addr| (owned by |ep| once added). */
int ds_quic_udp_path_open(ds_quic_endpoint *ep, uv_loop_t *loop, const struct sockaddr *addr,
                          int listening, ds_quic_path **out, char *err, size_t errlen);

#endif
