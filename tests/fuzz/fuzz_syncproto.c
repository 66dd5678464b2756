/*
 * fuzz_syncproto.c - libFuzzer target for the sync session machines
 * (core/syncproto.h): the input is the byte stream a hostile peer sends,
 * fed both to a publisher (a tiny real store with shared, unshared and
 * sibling-path nodes) and to a subscriber that already sent its request
 * (a real temporary replica).  The stores are created once, under
 * $TMPDIR or /tmp, at the first call.
 *
 * Input layout: byte 0 flags (bit 0 authorized, bit 1 rate limited,
 * bit 2 --full, bit 3 finish the stream at the end, bit 4 the subscriber
 * holds pages for batched transactions), byte 1 the piece
 * size (0xff: whole), then the stream.
 *
 * Checked: no crash or leak; the publisher's output is always a valid
 * frame sequence of SYNC_RESPONSE pages and at most one final ERROR,
 * never an unshared node, finished exactly once; an unauthorized peer
 * hears NotAuthorized and nothing else; a finished stream leaves both
 * machines DONE or FAILED; a failure always has an error and a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/frame.h"
#include "core/syncproto.h"
#include "ds/error.h"

static ds_store *pub, *rep;
static ds_share_set share;
static char base[512];

/* Removes the stores when the fuzzer exits normally. */
static void cleanup(void)
{
    ds_store_close(pub);
    ds_store_close(rep);
    ds_share_set_free(&share);
    const char *sub[] = { "pub", "rep" }, *files[] = { "data.mdb", "lock.mdb" };
    char p[700];
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            snprintf(p, sizeof p, "%s/%s/%s", base, sub[i], files[j]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/%s", base, sub[i]);
        rmdir(p);
    }
    rmdir(base);
}

static void add(const char *content, const char *project, uint8_t idbyte)
{
    ds_node n;
    ds_node_init(&n);
    uint8_t r[DS_ID_LEN];
    memset(r, idbyte, sizeof r);
    ds_uuid_from_random(n.id, r);
    if (ds_node_set_content(&n, content, strlen(content)) || ds_node_set_str(&n.source, "fuzz:note") ||
        ds_node_set_str(&n.project, project) || ds_node_set_str(&n.ns, "personal"))
        abort();
    n.source_type = DS_SOURCE_NOTE;
    n.timestamp = 1700000000000;
    n.confidence = 1.0;
    if (ds_store_put(pub, &n)) abort();
    ds_node_free(&n);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/ds-fuzz-syncproto-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(base)) abort();
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/pub", base);
    snprintf(b, sizeof b, "%s/rep", base);
    ds_store_opts o = { .epoch_seed = (const uint8_t *)"fuzz-publisher-1", .map_size = 64u << 20 };
    if (ds_store_open(&pub, a, &o)) abort();
    o.epoch_seed = (const uint8_t *)"fuzz-replica-001";
    if (ds_store_open(&rep, b, &o)) abort();
    add("shared one", "/a/proj", 1);
    add("CANARY unshared", "/home/secret", 2);
    add("shared two", "/a/proj/sub", 3);
    add("CANARY sibling", "/a/proj-x", 4);
    add("shared three", "/a/proj", 5);
    const char *roots[] = { "/a/proj" };
    if (ds_share_set_init(&share, roots, 1)) abort();
    atexit(cleanup);
}

/* The publisher's whole output must be well-formed. */
static void check_server_output(const ds_buf *out, int authorized, int finished)
{
    ds_frame_dec d;
    ds_frame_dec_init(&d, DS_SYNC_MAX_FRAME);
    size_t off = 0;
    int saw_error = 0, saw_last = 0, frames = 0;
    while (off < out->len) {
        size_t used;
        const uint8_t *f;
        size_t fl;
        if (ds_frame_dec_feed(&d, out->data + off, out->len - off, &used, &f, &fl)) abort();
        off += used;
        if (!f) break;
        if (saw_error || saw_last) abort();             /* nothing after the end */
        frames++;
        ds_msg m;
        if (ds_msg_decode(f, fl, &m)) abort();
        if (m.type == DS_MSG_ERROR) {
            saw_error = 1;
            if (!authorized && strcmp(m.code, DS_SYNC_E_NOT_AUTHORIZED)) abort();
        } else if (m.type == DS_MSG_SYNC_RESPONSE) {
            if (!authorized) abort();
            for (size_t i = 0; i < m.nnodes; i++)
                if (!ds_share_set_contains(&share, m.nodes[i].project)) abort();
            if (!m.has_more) saw_last = 1;
        } else {
            abort();
        }
        ds_msg_free(&m);
    }
    if (!ds_frame_dec_idle(&d)) abort();                /* whole frames only */
    ds_frame_dec_free(&d);
    if (finished && !saw_error && !saw_last) abort();
    if (saw_last && !finished) abort();
}

static void run_server(const uint8_t *s, size_t n, uint8_t flags, size_t piece)
{
    int authorized = flags & 1;
    static ds_cursor_seal seal;                    /* a fixed key, nonce 0 and up */
    static int sealed;
    if (!sealed) {
        uint8_t sk[64] = { 0 }, nonce[DS_CURSOR_NONCE_LEN] = { 0 };
        memset(sk, 0x42, 32);
        ds_cursor_seal_init(&seal, sk, nonce);
        sealed = 1;
    }
    ds_sync_server_cfg cfg = { .store = pub, .share = &share, .seal = &seal,
                               .authorized = authorized,
                               .rate_limited = (flags >> 1) & 1, .page_nodes = 1,
                               .peer_id = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" };
    ds_sync_server *sv;
    if (ds_sync_server_new(&sv, &cfg, 0)) abort();
    ds_buf out = { 0 };
    int fins = 0, fin = 0;
    int64_t now = 1;
    for (size_t off = 0, len; off < n; off += len, now++) {
        len = n - off < piece ? n - off : piece;
        int last = off + len == n;
        if (ds_sync_server_recv(sv, s + off, len, last && (flags & 8), now)) abort();
        if (ds_sync_server_send(sv, &out, 64, &fin, now)) abort();
        fins += fin;
    }
    if (!n && (flags & 8) && ds_sync_server_recv(sv, NULL, 0, 1, now)) abort();
    for (int i = 0; i < 16; i++) {
        if (ds_sync_server_send(sv, &out, 4096, &fin, now)) abort();
        fins += fin;
    }
    ds_sync_state st = ds_sync_server_state(sv);
    if (fins > 1 || (st != DS_SYNCS_RUNNING) != (fins == 1)) abort();
    if ((flags & 8) && st == DS_SYNCS_RUNNING) abort();
    const char *code, *msg;
    int err = ds_sync_server_error(sv, &code, &msg);
    if ((st == DS_SYNCS_FAILED) != (err != 0) || (err && !msg[0])) abort();
    if (st == DS_SYNCS_FAILED && !authorized && err != DS_ERR_UNAUTHORIZED) abort();
    check_server_output(&out, authorized, fins == 1);
    ds_sync_server_handle_expiry(sv, INT64_MAX);
    if (ds_sync_server_state(sv) == DS_SYNCS_RUNNING || ds_sync_server_expiry(sv) != INT64_MAX) abort();
    ds_buf_free(&out);
    ds_sync_server_free(sv);
}

static void run_client(const uint8_t *s, size_t n, uint8_t flags, size_t piece)
{
    ds_store_info info;
    if (ds_store_info_get(rep, &info)) abort();
    if (info.node_count > 2000) {                       /* keep the replica small */
        ds_wtxn *tx;
        if (ds_store_begin(rep, &tx) || ds_wtxn_clear(tx, (const uint8_t *)"fuzz-replica-002") ||
            ds_wtxn_commit(tx))
            abort();
    }
    ds_sync_client_cfg cfg = { .replica = rep, .full = (flags >> 2) & 1 };
    if (flags & 16) {                                   /* pages held for batches */
        cfg.batch_nodes = 5;
        cfg.hold_ms = 3;
    }
    ds_sync_client *c;
    if (ds_sync_client_new(&c, &cfg, 0)) abort();
    ds_buf out = { 0 };
    int fin;
    if (ds_sync_client_send(c, &out, 4096, &fin, 0) || fin || !out.len) abort();
    int64_t now = 1;
    for (size_t off = 0, len; off < n; off += len, now++) {
        len = n - off < piece ? n - off : piece;
        int last = off + len == n;
        if (ds_sync_client_recv(c, s + off, len, last && (flags & 8), now)) abort();
    }
    if (!n && (flags & 8) && ds_sync_client_recv(c, NULL, 0, 1, now)) abort();
    ds_sync_state st = ds_sync_client_state(c);
    if ((flags & 8) && st == DS_SYNCS_RUNNING) abort();
    ds_sync_progress p;
    ds_sync_client_progress(c, &p);
    if (p.nodes_new > p.nodes_received) abort();
    if (st == DS_SYNCS_DONE && !p.pages) abort();
    const char *code, *msg;
    int err = ds_sync_client_error(c, &code, &msg);
    if ((st == DS_SYNCS_FAILED) != (err != 0) || (err && !msg[0])) abort();
    for (const char *q = msg; *q; q++)
        if ((unsigned char)*q < 0x20) abort();          /* sanitized for terminals */
    ds_sync_client_handle_expiry(c, INT64_MAX);
    if (ds_sync_client_state(c) == DS_SYNCS_RUNNING) abort();
    ds_buf_free(&out);
    ds_sync_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) { setup(); ready = 1; }
    if (size < 2) return 0;
    uint8_t flags = data[0];
    size_t piece = data[1] == 0xff ? SIZE_MAX : (size_t)data[1] + 1;
    run_server(data + 2, size - 2, flags, piece);
    run_client(data + 2, size - 2, flags, piece);
    return 0;
}
