/*
 * test_ipc.c - the daemon's Unix-socket channel: a real server on a libuv
 * loop in a thread, dispatching to the real ops table on a temporary
 * home, and the blocking client.  Covers request/reply, error replies,
 * protocol version mismatches in both directions, garbage and oversized
 * frames (that connection is closed, the server goes on serving), the
 * socket's mode, and connecting where no daemon listens.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

#include "core/frame.h"
#include "daemon/ops.h"
#include "ds/error.h"
#include "io/ipc.h"

typedef struct server {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t tid;
    uv_sem_t ready;
    ds_ipc_server *srv;
    ds_ctx ctx;
    char path[256];
    int start_rc;
    atomic_int warnings;
    atomic_int requests;
} server;

static server S;

static int64_t fake_now(void)
{
    return 1700000000000;
}

static void fake_random(void *buf, size_t len)
{
    ds_test_random(buf, len);
}

static int handler(void *ud, const char *op, const msgpack_object *params, msgpack_sbuffer *out)
{
    server *s = ud;
    atomic_fetch_add(&s->requests, 1);
    return ds_ops_call(&s->ctx, op, params, out);
}

static void on_log(void *ud, int is_error, const char *msg)
{
    server *s = ud;
    atomic_fetch_add(&s->warnings, 1);
}

static void on_stop(uv_async_t *a)
{
    server *s = a->data;
    ds_ipc_server_close(s->srv, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void server_thread(void *arg)
{
    server *s = arg;
    char err[256];
    s->start_rc = ds_ipc_server_start(&s->srv, &s->loop, s->path, handler, on_log, s, err,
                                      sizeof err);
    uv_sem_post(&s->ready);
    if (s->start_rc)
        return;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    memset(&S, 0, sizeof S);
    const char *home = ds_test_tmpdir();
    snprintf(S.path, sizeof S.path, "%s/" DS_IPC_SOCKET, home);
    assert_int_equal(ds_ctx_init(&S.ctx, home, fake_now, fake_random), 0);
    ds_store *st;
    assert_int_equal(ds_ctx_store(&S.ctx, 1, &st), 0);
    assert_int_equal(uv_loop_init(&S.loop), 0);
    assert_int_equal(uv_async_init(&S.loop, &S.stop, on_stop), 0);
    S.stop.data = &S;
    assert_int_equal(uv_sem_init(&S.ready, 0), 0);
    assert_int_equal(uv_thread_create(&S.tid, server_thread, &S), 0);
    uv_sem_wait(&S.ready);
    assert_int_equal(S.start_rc, 0);
    return 0;
}

static int teardown(void **state)
{
    uv_async_send(&S.stop);
    uv_thread_join(&S.tid);
    uv_run(&S.loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&S.loop), 0);
    uv_sem_destroy(&S.ready);
    ds_ctx_free(&S.ctx);
    /* libuv removed the socket file on close. */
    struct stat sb;
    assert_int_not_equal(stat(S.path, &sb), 0);
    return 0;
}

static void connect_ok(ds_ipc_client *c)
{
    assert_int_equal(ds_ipc_connect(c, S.path, 2000), 0);
    c->timeout_ms = 10000;
}

static const msgpack_object *get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* A note (through the socket), then stats: the real dispatch table. */
static void test_request_reply(void **state)
{
    ds_ipc_client c;
    connect_ok(&c);
    msgpack_sbuffer p;
    msgpack_sbuffer_init(&p);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ds_pack_cstr(&pk, "text");
    ds_pack_cstr(&pk, "the daemon answers over its socket");
    ds_pack_cstr(&pk, "project");
    ds_pack_cstr(&pk, S.ctx.home); /* must exist */
    ds_ipc_reply r;
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&c, "note", p.data, p.size, &r), 0);
    assert_true(r.ok);
    assert_non_null(get(r.body, "id"));
    ds_ipc_reply_free(&r);
    msgpack_sbuffer_destroy(&p);

    /* Several requests on one connection. */
    for (int i = 0; i < 3; i++) {
        ds_ipc_reply_init(&r);
        assert_int_equal(ds_ipc_request(&c, "stats", NULL, 0, &r), 0);
        assert_true(r.ok);
        assert_int_equal(r.peer_v, DS_IPC_PROTOCOL);
        const msgpack_object *n = get(r.body, "nodes");
        assert_non_null(n);
        assert_int_equal(n->via.u64, 1);
        ds_ipc_reply_free(&r);
    }
    ds_ipc_client_close(&c);
    assert_true(atomic_load(&S.requests) >= 4);
}

static void test_error_reply(void **state)
{
    ds_ipc_client c;
    connect_ok(&c);
    ds_ipc_reply r;
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&c, "no-such-op", NULL, 0, &r), 0);
    assert_false(r.ok);
    const msgpack_object *e = get(r.body, "error");
    assert_non_null(e);
    assert_true(str_is(get(e, "code"), DS_OPS_E_UNKNOWN_OP));
    ds_ipc_reply_free(&r);

    /* The connection stays usable after an error reply. */
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&c, "stats", NULL, 0, &r), 0);
    assert_true(r.ok);
    ds_ipc_reply_free(&r);
    ds_ipc_client_close(&c);
}

/* Sends |payload| as one frame and returns the roundtrip result; the
 * reply (if any) is unpacked into |up|. */
static int raw_request(ds_ipc_client *c, const void *payload, size_t len, msgpack_sbuffer *out)
{
    msgpack_sbuffer_init(out);
    return ds_ipc_roundtrip(c, payload, len, out);
}

static void test_version_mismatch(void **state)
{
    /* A client of protocol 2 talks to this (protocol 1) daemon. */
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    ds_pack_cstr(&pk, "v");
    msgpack_pack_int(&pk, DS_IPC_PROTOCOL + 1);
    ds_pack_cstr(&pk, "op");
    ds_pack_cstr(&pk, "stats");
    ds_pack_cstr(&pk, "params");
    msgpack_pack_map(&pk, 0);
    ds_ipc_client c;
    connect_ok(&c);
    msgpack_sbuffer out;
    assert_int_equal(raw_request(&c, req.data, req.size, &out), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(ds_ipc_unpack(out.data, out.size, &up), 0);
    const msgpack_object *v = get(&up.data, "v"), *ok = get(&up.data, "ok");
    assert_int_equal(v->via.u64, DS_IPC_PROTOCOL);
    assert_false(ok->via.boolean);
    const msgpack_object *e = get(&up.data, "error");
    assert_true(str_is(get(e, "code"), DS_IPC_E_PROTOCOL));
    const msgpack_object *m = get(e, "message");
    assert_non_null(m);
    char msg[512];
    snprintf(msg, sizeof msg, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    assert_non_null(strstr(msg, "protocol 2"));
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&req);
    ds_ipc_client_close(&c);

    /* This client meets a daemon of protocol 2: the reply is pre-loaded
     * into a socket pair, so no second server is needed. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    msgpack_sbuffer rep;
    msgpack_sbuffer_init(&rep);
    msgpack_packer_init(&pk, &rep, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    ds_pack_cstr(&pk, "v");
    msgpack_pack_int(&pk, 2);
    ds_pack_cstr(&pk, "ok");
    msgpack_pack_true(&pk);
    ds_pack_cstr(&pk, "result");
    msgpack_pack_map(&pk, 0);
    ds_buf framed = { 0 };
    assert_int_equal(ds_frame_encode(&framed, rep.data, rep.size, DS_IPC_MAX_FRAME), 0);
    assert_int_equal(write(sv[1], framed.data, framed.len), (ssize_t)framed.len);
    ds_ipc_client pc = { .fd = sv[0], .timeout_ms = 5000 };
    ds_ipc_reply r;
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&pc, "stats", NULL, 0, &r), DS_ERR_VERSION);
    assert_int_equal(r.peer_v, 2);
    ds_ipc_reply_free(&r);
    ds_ipc_client_close(&pc);
    close(sv[1]);
    ds_buf_free(&framed);
    msgpack_sbuffer_destroy(&rep);
}

/* A bad frame closes that connection only. */
static void expect_closed(const void *payload, size_t len)
{
    int before = atomic_load(&S.warnings);
    ds_ipc_client c;
    connect_ok(&c);
    msgpack_sbuffer out;
    assert_int_equal(raw_request(&c, payload, len, &out), DS_ERR_PROTO);
    assert_int_equal(out.size, 0);
    msgpack_sbuffer_destroy(&out);
    ds_ipc_client_close(&c);
    /* The server logged the warning before it closed the connection. */
    assert_true(atomic_load(&S.warnings) > before);

    /* And keeps serving the next client. */
    connect_ok(&c);
    ds_ipc_reply r;
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&c, "stats", NULL, 0, &r), 0);
    assert_true(r.ok);
    ds_ipc_reply_free(&r);
    ds_ipc_client_close(&c);
}

static void test_garbage_frames(void **state)
{
    expect_closed("\xc1", 1);                             /* never-used byte */
    expect_closed("\x92\x01", 2);                         /* array of 2, one element */
    expect_closed("\xdd\xff\xff\xff\xff", 5);             /* claims 4G elements */
    expect_closed("\xdf\x7f\xff\xff\xff\x01", 6);         /* claims 2G map entries */
    expect_closed("\x81\xa1v\x01\x81", 5);                /* trailing bytes */
    expect_closed("\x93\x01\x02\x03", 4);                 /* not a map */
    expect_closed("\x81\xa2op\xa5stats", 9);              /* no version */
    expect_closed("\x81\xa1v\xa1" "1", 5);                /* version not an integer */
}

static void test_oversized_frames(void **state)
{
    /* A prefix above the maximum: the connection is closed on the prefix. */
    int before = atomic_load(&S.warnings);
    ds_ipc_client c;
    connect_ok(&c);
    uint8_t hdr[4];
    ds_put_be32(hdr, DS_IPC_MAX_FRAME + 1);
    assert_int_equal(send(c.fd, hdr, 4, MSG_NOSIGNAL), 4);
    char buf[16];
    ssize_t n;
    int guard = 0;
    do {
        n = recv(c.fd, buf, sizeof buf, 0);
        if (n < 0)
            usleep(10000);
        assert_true(++guard < 1000); /* at most ~10 s */
    } while (n < 0);
    assert_int_equal(n, 0); /* EOF: closed by the server */
    ds_ipc_client_close(&c);
    assert_true(atomic_load(&S.warnings) > before);

    /* Zero-length frame: also closed. */
    connect_ok(&c);
    memset(hdr, 0, 4);
    assert_int_equal(send(c.fd, hdr, 4, MSG_NOSIGNAL), 4);
    guard = 0;
    do {
        n = recv(c.fd, buf, sizeof buf, 0);
        if (n < 0)
            usleep(10000);
        assert_true(++guard < 1000);
    } while (n < 0);
    assert_int_equal(n, 0);
    ds_ipc_client_close(&c);

    /* The client refuses to send one. */
    connect_ok(&c);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    assert_int_equal(ds_ipc_roundtrip(&c, "x", (size_t)DS_IPC_MAX_FRAME + 1, &out),
                     DS_ERR_TOOLARGE);
    msgpack_sbuffer_destroy(&out);
    ds_ipc_client_close(&c);

    /* Still serving. */
    connect_ok(&c);
    ds_ipc_reply r;
    ds_ipc_reply_init(&r);
    assert_int_equal(ds_ipc_request(&c, "stats", NULL, 0, &r), 0);
    ds_ipc_reply_free(&r);
    ds_ipc_client_close(&c);
}

static void test_socket_mode(void **state)
{
    struct stat sb;
    assert_int_equal(stat(S.path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_no_daemon(void **state)
{
    const char *dir = ds_test_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/none.sock", dir);
    ds_ipc_client c;
    assert_int_equal(ds_ipc_connect(&c, path, 1000), DS_ERR_NOTFOUND);
    /* A stale socket file: bound, then its owner went away. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(ds_ipc_connect(&c, path, 1000), DS_ERR_NOTFOUND);
    /* A second server may not bind over an existing file. */
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ds_ipc_server *s2;
    char err[256];
    assert_int_equal(ds_ipc_server_start(&s2, &loop, path, handler, on_log, &S, err, sizeof err),
                     DS_ERR_EXISTS);
    assert_non_null(strstr(err, path));
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* A path too long for a socket address. */
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(ds_ipc_connect(&c, longp, 1000), DS_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_reply),    cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_version_mismatch), cmocka_unit_test(test_garbage_frames),
        cmocka_unit_test(test_oversized_frames), cmocka_unit_test(test_socket_mode),
        cmocka_unit_test(test_no_daemon),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
