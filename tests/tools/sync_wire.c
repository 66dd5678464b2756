/*
 * sync_wire - drives ds's real sync state machines over byte streams held
 * in files, so that a test can talk to them with another implementation
 * of docs/protocol.md (tests/cli/ds_wire.py, written from the doc alone)
 * and check that the doc and the code agree.  Test support only; not
 * installed.
 *
 *   sync_wire serve HOME [--peer HEX] [--unauthorized] [--rate-limited]
 *             [--page-nodes N] [--page-bytes N] [--chunk N]
 *       The publisher: HOME's store (HOME/db) and share.json.  Reads the
 *       subscriber's whole stream from stdin (end of input = its FIN),
 *       feeds it |chunk| bytes at a time (default 7, so frames arrive
 *       split), and writes everything the publisher sends, up to its FIN,
 *       to stdout.
 *
 *   sync_wire apply HOME PEER [--full] [--page-nodes N] [--page-bytes N]
 *             --request-out FILE [--chunk N]
 *       The subscriber, writing the replica of PEER (a NodeId) in HOME
 *       (created if needed), asking for pages of N nodes / bytes (default
 *       0: the publisher's).  Writes the request it sends to FILE, then
 *       feeds stdin (the publisher's stream, end of input = its FIN) and
 *       prints one JSON line: state, counts, and the error code and
 *       message when it failed.
 *
 * Exit status: 0 when the machine ended as expected (serve: the
 * publisher finished its stream; apply: DONE), 1 when apply ended FAILED,
 * 2 on a usage or set-up error.  The clock is fake: time stands still,
 * so no timeout can fire.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <sodium.h>

#include "core/syncproto.h"
#include "core/sync.h"
#include "core/util.h"
#include "daemon/home.h"
#include "daemon/peers.h"
#include "ds/error.h"
#include "ds/store.h"

#define NOW_MS 1000000

static int usage(void)
{
    fprintf(stderr,
            "usage: sync_wire serve HOME [--peer HEX] [--unauthorized] [--rate-limited]\n"
            "                 [--page-nodes N] [--page-bytes N] [--chunk N]\n"
            "       sync_wire apply HOME PEER [--full] [--page-nodes N] [--page-bytes N]\n"
            "                 --request-out FILE [--chunk N]\n");
    return 2;
}

static int read_all(FILE *f, ds_buf *b)
{
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (ds_buf_append(b, tmp, n))
            return -1;
    return ferror(f) ? -1 : 0;
}

/* |b|'s bytes from |off| (an empty input has no buffer at all). */
static const uint8_t *bytes_at(const ds_buf *b, size_t off)
{
    static const uint8_t none[1];
    return b->data ? b->data + off : none;
}

static int get_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !*s || *end || v > 0xffffffffUL)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* The options both modes take. */
typedef struct opts {
    uint32_t page_nodes, page_bytes, chunk;
} opts;

/* Takes argv[*i] (and its value) when it is a common option: 1 when it
 * was, 0 when it is not one, -1 when its value is bad. */
static int common_opt(int argc, char **argv, int *i, opts *o)
{
    static const char *const names[] = { "--page-nodes", "--page-bytes", "--chunk" };
    uint32_t *vals[] = { &o->page_nodes, &o->page_bytes, &o->chunk };
    for (int k = 0; k < 3; k++) {
        if (strcmp(argv[*i], names[k]) != 0)
            continue;
        if (*i + 1 >= argc || get_u32(argv[*i + 1], vals[k]) != 0 || (k == 2 && !*vals[k]))
            return -1;
        (*i)++;
        return 1;
    }
    return 0;
}

/* Feeds |in| to a machine's recv, |chunk| bytes at a time (frames arrive
 * split), with the end of the stream on the last piece; stops early when
 * |running| says the machine has ended.  0, or recv's error. */
static int feed(const ds_buf *in, uint32_t chunk, void *m,
                int (*recv)(void *m, const uint8_t *p, size_t n, int fin),
                int (*running)(void *m))
{
    size_t off = 0;
    do {
        size_t n = in->len - off < chunk ? in->len - off : chunk;
        int rc = recv(m, bytes_at(in, off), n, off + n == in->len);
        if (rc)
            return rc;
        off += n;
    } while (off < in->len && running(m));
    return 0;
}

static int server_recv(void *m, const uint8_t *p, size_t n, int fin)
{
    return ds_sync_server_recv(m, p, n, fin, NOW_MS);
}

static int server_running(void *m) { (void)m; return 1; }   /* takes it all */

static int client_recv(void *m, const uint8_t *p, size_t n, int fin)
{
    return ds_sync_client_recv(m, p, n, fin, NOW_MS);
}

static int client_running(void *m) { return ds_sync_client_state(m) == DS_SYNCS_RUNNING; }

/* Prints |s| as a JSON string. */
static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static int serve(int argc, char **argv)
{
    if (argc < 1)
        return usage();
    const char *home = argv[0];
    const char *peer = "0000000000000000000000000000000000000000000000000000000000000000";
    int authorized = 1, limited = 0;
    opts o = { .chunk = 7 };
    for (int i = 1; i < argc; i++) {
        int c = common_opt(argc, argv, &i, &o);
        if (c < 0)
            return usage();
        if (c)
            continue;
        if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
            peer = argv[++i];
        else if (strcmp(argv[i], "--unauthorized") == 0)
            authorized = 0;
        else if (strcmp(argv[i], "--rate-limited") == 0)
            limited = 1;
        else
            return usage();
    }

    char err[512] = "";
    ds_share_cfg cfg;
    if (ds_share_cfg_load(home, &cfg, err, sizeof err)) {
        fprintf(stderr, "sync_wire: %s\n", err);
        return 2;
    }
    ds_share_set share;
    if (ds_share_cfg_set(&cfg, &share)) {
        ds_share_cfg_free(&cfg);
        fprintf(stderr, "sync_wire: cannot build the share set\n");
        return 2;
    }
    ds_share_cfg_free(&cfg);
    char *db = ds_path_join(home, "db");
    ds_store *st = NULL;
    ds_store_opts so = { .no_create = 1 };
    int rc = db ? ds_store_open(&st, db, &so) : DS_ERR_NOMEM;
    free(db);
    if (rc) {
        ds_share_set_free(&share);
        fprintf(stderr, "sync_wire: cannot open %s/db: %s\n", home, ds_strerror(rc));
        return 2;
    }

    ds_buf in = { 0 }, out = { 0 };
    ds_sync_server *s = NULL;
    int status = 2;
    /* Cursors are sealed with a fixed key (every run of the tool opens the
     * cursors of the others, as every process of one node does) and a
     * random first nonce, as ds's publisher does. */
    uint8_t sk[64] = { 0 }, nonce[DS_CURSOR_NONCE_LEN];
    memset(sk, 0x42, 32);
    randombytes_buf(nonce, sizeof nonce);
    ds_cursor_seal seal;
    ds_cursor_seal_init(&seal, sk, nonce);
    ds_sync_server_cfg sc = {
        .store = st, .share = &share, .seal = &seal, .authorized = authorized, .rate_limited = limited,
        .peer_id = peer, .page_nodes = o.page_nodes, .page_bytes = o.page_bytes,
    };
    if (read_all(stdin, &in) || ds_sync_server_new(&s, &sc, NOW_MS)) {
        fprintf(stderr, "sync_wire: out of memory or unreadable input\n");
        goto done;
    }
    /* The request arrives in small pieces, then the subscriber's FIN. */
    if (feed(&in, o.chunk, s, server_recv, server_running))
        goto done;
    /* Everything the publisher sends, as a transport that always has room
     * would take it.  Bounded: each send produces a frame or ends. */
    int fin = 0;
    for (int turns = 0; !fin && turns < 10000000; turns++) {
        out.len = 0;
        if (ds_sync_server_send(s, &out, 1u << 16, &fin, NOW_MS))
            goto done;
        if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len)
            goto done;
        if (!out.len && !fin)
            break;              /* nothing to send and not finished: stuck */
    }
    if (!fin) {
        fprintf(stderr, "sync_wire: the publisher stopped without finishing its stream\n");
        goto done;
    }
    const char *code, *message;
    ds_sync_server_error(s, &code, &message);
    if (code[0])
        fprintf(stderr, "sync_wire: publisher sent ERROR %s: %s\n", code, message);
    status = fflush(stdout) == 0 ? 0 : 2;
done:
    ds_sync_server_free(s);
    free(in.data);
    free(out.data);
    ds_store_close(st);
    ds_share_set_free(&share);
    return status;
}

static int apply(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *home = argv[0], *peer = argv[1], *reqout = NULL;
    int full = 0;
    opts o = { .chunk = 7 };
    for (int i = 2; i < argc; i++) {
        int c = common_opt(argc, argv, &i, &o);
        if (c < 0)
            return usage();
        if (c)
            continue;
        if (strcmp(argv[i], "--full") == 0)
            full = 1;
        else if (strcmp(argv[i], "--request-out") == 0 && i + 1 < argc)
            reqout = argv[++i];
        else
            return usage();
    }
    if (!reqout)
        return usage();

    uint8_t seed[DS_EPOCH_LEN];
    randombytes_buf(seed, sizeof seed);
    ds_store *rep = NULL;
    int rc = ds_replica_open(home, peer, 1, seed, &rep);
    if (rc) {
        fprintf(stderr, "sync_wire: cannot open the replica of %s in %s: %s\n", peer, home,
                ds_strerror(rc));
        return 2;
    }
    ds_buf in = { 0 }, out = { 0 };
    ds_sync_client *c = NULL;
    int status = 2;
    ds_sync_client_cfg cc = { .replica = rep, .full = full, .page_nodes = o.page_nodes,
                              .page_bytes = o.page_bytes };
    if (ds_sync_client_new(&c, &cc, NOW_MS)) {
        fprintf(stderr, "sync_wire: cannot start the subscriber\n");
        goto done;
    }
    int fin = 0;
    if (ds_sync_client_send(c, &out, 1u << 16, &fin, NOW_MS))
        goto done;
    FILE *rf = fopen(reqout, "wb");
    int wrote = rf && fwrite(out.data, 1, out.len, rf) == out.len;
    if (rf && fclose(rf) != 0)
        wrote = 0;
    if (!wrote) {
        fprintf(stderr, "sync_wire: cannot write %s\n", reqout);
        goto done;
    }
    if (read_all(stdin, &in) || feed(&in, o.chunk, c, client_recv, client_running))
        goto done;

    ds_sync_progress p;
    ds_sync_client_progress(c, &p);
    ds_sync_state state = ds_sync_client_state(c);
    const char *code = "", *message = "";
    ds_sync_client_error(c, &code, &message);
    printf("{\"state\": \"%s\", \"pages\": %llu, \"nodes_received\": %llu, \"nodes_new\": %llu, "
           "\"code\": ",
           state == DS_SYNCS_DONE ? "done" : state == DS_SYNCS_FAILED ? "failed" : "running",
           (unsigned long long)p.pages, (unsigned long long)p.nodes_received,
           (unsigned long long)p.nodes_new);
    json_str(code);
    printf(", \"message\": ");
    json_str(message);
    printf("}\n");
    status = state == DS_SYNCS_DONE ? 0 : 1;
done:
    ds_sync_client_free(c);
    free(in.data);
    free(out.data);
    ds_store_close(rep);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "apply") == 0)
        return apply(argc - 2, argv + 2);
    return usage();
}
