/*
 * ipc.c - the daemon's Unix-socket request/reply channel (see ipc.h).
 *
 * Server: a listening uv_pipe_t; each connection owns a frame decoder
 * and a fixed read buffer, so memory per connection is bounded by the
 * maximum frame plus the replies queued for writing (also bounded: a
 * client that stops reading is dropped).  Requests are answered in
 * order, synchronously on the loop thread, which is where every store
 * write happens.  Client: plain blocking-style socket calls on a
 * non-blocking descriptor, each wait bounded by poll().
 */
#include "io/ipc.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/frame.h"
#include "core/msgread.h"
#include "ds/error.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif
#define DS_IPC_VERSION_STRING DS_VERSION

#define READ_BUF 16384
#define MAX_OP_LEN 64
/* A client whose unread replies exceed this is dropped. */
#define MAX_WRITE_QUEUE (2u * DS_IPC_MAX_FRAME + 1024)

typedef struct conn {
    uv_pipe_t pipe;
    struct ds_ipc_server *srv;
    ds_frame_dec dec;
    struct conn *prev, *next;
    int closing;
    char rbuf[READ_BUF];
} conn;

struct ds_ipc_server {
    uv_pipe_t listener;
    uv_loop_t *loop;
    ds_ipc_handler handler;
    ds_ipc_log log;
    void *ud;
    conn *conns;
    size_t nconns;
    uint64_t requests;
    int closing;
    size_t pending;          /* handles whose close callback is still due */
    void (*done)(void *);
    void *done_ud;
};

typedef struct wreq {
    uv_write_t req;
    uint8_t hdr[DS_FRAME_HDR_LEN];
    char *data;
} wreq;

int ds_ipc_unpack(const void *data, size_t len, msgpack_unpacked *up)
{
    ds_mr r;
    ds_mr_init(&r, data, len);
    if (len == 0 || ds_mr_skip(&r) != 0 || ds_mr_left(&r) != 0)
        return DS_ERR_MALFORMED;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(up, data, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        return DS_ERR_NOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return DS_ERR_MALFORMED;
    return 0;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* ---- Server ------------------------------------------------------------- */

static void slog(ds_ipc_server *s, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void slog(ds_ipc_server *s, int is_error, const char *fmt, ...)
{
    if (!s->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->log(s->ud, is_error, msg);
}

static void maybe_done(ds_ipc_server *s)
{
    if (!s->closing || s->pending > 0)
        return;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    free(s);
    if (done)
        done(ud);
}

static void conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    ds_ipc_server *s = c->srv;
    ds_frame_dec_free(&c->dec);
    free(c);
    s->pending--;
    maybe_done(s);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    ds_ipc_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    s->pending++; /* even before shutdown: the server must outlive this close */
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void write_done(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = req->handle->data;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing) {
        slog(c->srv, 0, "ipc: dropping a client: cannot send the reply: %s", uv_strerror(status));
        conn_close(c);
    }
}

/* Queues |sb|'s bytes (taken over) as one frame. */
static void send_frame(conn *c, msgpack_sbuffer *sb)
{
    if (c->closing) {
        msgpack_sbuffer_destroy(sb);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > MAX_WRITE_QUEUE) {
        slog(c->srv, 0, "ipc: dropping a client that does not read its replies");
        msgpack_sbuffer_destroy(sb);
        conn_close(c);
        return;
    }
    wreq *w = calloc(1, sizeof *w);
    if (!w || ds_frame_header(w->hdr, sb->size, DS_IPC_MAX_FRAME) != 0) {
        free(w);
        msgpack_sbuffer_destroy(sb);
        slog(c->srv, 1, "ipc: cannot send a reply (out of memory or too large); dropping client");
        conn_close(c);
        return;
    }
    w->data = sb->data;
    uv_buf_t bufs[2] = { uv_buf_init((char *)w->hdr, DS_FRAME_HDR_LEN),
                         uv_buf_init(sb->data, (unsigned)sb->size) };
    sb->data = NULL;
    sb->size = sb->alloc = 0;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, bufs, 2, write_done);
    if (rc < 0) {
        free(w->data);
        free(w);
        slog(c->srv, 0, "ipc: dropping a client: %s", uv_strerror(rc));
        conn_close(c);
    }
}

static void pack_error_reply(msgpack_sbuffer *sb, const char *code, const char *message,
                             const char *hint)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, DS_IPC_PROTOCOL);
    pack_str(&pk, "ok");
    msgpack_pack_false(&pk);
    pack_str(&pk, "error");
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "code");
    pack_str(&pk, code);
    pack_str(&pk, "message");
    pack_str(&pk, message);
    pack_str(&pk, "hint");
    if (hint)
        pack_str(&pk, hint);
    else
        msgpack_pack_nil(&pk);
}

static void reply_error(conn *c, const char *code, const char *message, const char *hint)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_error_reply(&sb, code, message, hint);
    send_frame(c, &sb);
}

/* Wraps the handler's output |out| (a result map, or {error: X}) into
 * the reply envelope in |sb|.  0, DS_ERR_MALFORMED or DS_ERR_NOMEM. */
static int wrap_reply(msgpack_sbuffer *sb, int ok, const msgpack_sbuffer *out)
{
    const char *inner = out->data;
    size_t inner_len = out->size;
    if (!ok) {
        /* {error: X} -> X */
        ds_mr r;
        ds_mr_init(&r, out->data, out->size);
        uint32_t n, kl;
        const char *k;
        if (ds_mr_map(&r, &n) != 0 || n != 1 || ds_mr_str(&r, &k, &kl) != 0 ||
            !ds_mr_key_eq(k, kl, "error"))
            return DS_ERR_MALFORMED;
        inner = (const char *)r.p;
        inner_len = ds_mr_left(&r);
    }
    if (inner_len == 0)
        return DS_ERR_MALFORMED;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int e = msgpack_pack_map(&pk, 3);
    e |= msgpack_pack_str(&pk, 1);
    e |= msgpack_pack_str_body(&pk, "v", 1);
    e |= msgpack_pack_int(&pk, DS_IPC_PROTOCOL);
    e |= msgpack_pack_str(&pk, 2);
    e |= msgpack_pack_str_body(&pk, "ok", 2);
    e |= ok ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    const char *key = ok ? "result" : "error";
    e |= msgpack_pack_str(&pk, strlen(key));
    e |= msgpack_pack_str_body(&pk, key, strlen(key));
    e |= msgpack_sbuffer_write(sb, inner, inner_len);
    return e ? DS_ERR_NOMEM : 0;
}

/* Handles one frame.  Returns 0, or an error after which the connection
 * is closed (the frame was not a well-formed request). */
static int handle_frame(conn *c, const uint8_t *f, size_t len)
{
    ds_ipc_server *s = c->srv;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = ds_ipc_unpack(f, len, &up);
    if (rc) {
        msgpack_unpacked_destroy(&up);
        slog(s, 0, "ipc: closing a client connection: %s frame (%zu bytes)",
             rc == DS_ERR_NOMEM ? "out of memory decoding a" : "malformed", len);
        return rc;
    }
    const msgpack_object *req = &up.data;
    const msgpack_object *v = map_get(req, "v");
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        msgpack_unpacked_destroy(&up);
        slog(s, 0, "ipc: closing a client connection: the request is not a map with a "
                   "protocol version 'v'");
        return DS_ERR_PROTO;
    }
    if (v->via.u64 != DS_IPC_PROTOCOL) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the daemon (ds %s, protocol %d) cannot serve a client of protocol %llu",
                 DS_IPC_VERSION_STRING, DS_IPC_PROTOCOL, (unsigned long long)v->via.u64);
        slog(s, 0, "ipc: %s", msg);
        reply_error(c, DS_IPC_E_PROTOCOL, msg,
                    "Run 'ds stop' and start the daemon of the same version as the ds command.");
        msgpack_unpacked_destroy(&up);
        return 0;
    }
    const msgpack_object *op = map_get(req, "op");
    const msgpack_object *params = map_get(req, "params");
    char name[MAX_OP_LEN + 1];
    if (!op || op->type != MSGPACK_OBJECT_STR || op->via.str.size == 0 ||
        op->via.str.size > MAX_OP_LEN || memchr(op->via.str.ptr, 0, op->via.str.size)) {
        reply_error(c, DS_IPC_E_BAD_REQUEST, "the request has no valid 'op' name", NULL);
        msgpack_unpacked_destroy(&up);
        return 0;
    }
    if (params && params->type != MSGPACK_OBJECT_MAP && params->type != MSGPACK_OBJECT_NIL) {
        reply_error(c, DS_IPC_E_BAD_REQUEST, "the request's 'params' is not a map", NULL);
        msgpack_unpacked_destroy(&up);
        return 0;
    }
    memcpy(name, op->via.str.ptr, op->via.str.size);
    name[op->via.str.size] = '\0';

    msgpack_sbuffer out, sb;
    msgpack_sbuffer_init(&out);
    msgpack_sbuffer_init(&sb);
    int hrc = s->handler(s->ud, name, params, &out);
    s->requests++;
    msgpack_unpacked_destroy(&up);
    rc = wrap_reply(&sb, hrc == 0, &out);
    msgpack_sbuffer_destroy(&out);
    if (rc == 0 && sb.size > DS_IPC_MAX_FRAME) {
        msgpack_sbuffer_clear(&sb);
        slog(s, 0, "ipc: the reply to '%s' exceeds %u bytes", name, DS_IPC_MAX_FRAME);
        pack_error_reply(&sb, "too_large", "the reply is larger than the IPC frame limit",
                         "Ask for fewer results (--limit).");
    } else if (rc) {
        msgpack_sbuffer_clear(&sb);
        slog(s, 1, "ipc: cannot build the reply to '%s'", name);
        pack_error_reply(&sb, "internal", "the daemon could not build the reply", NULL);
    }
    send_frame(c, &sb);
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    buf->base = c->rbuf;
    buf->len = sizeof c->rbuf;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            slog(c->srv, 0, "ipc: client read error: %s", uv_strerror((int)nread));
        else if (!ds_frame_dec_idle(&c->dec))
            slog(c->srv, 0, "ipc: a client disconnected in the middle of a frame");
        conn_close(c);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    while (left > 0 && !c->closing) {
        size_t used;
        const uint8_t *f;
        size_t fl;
        int rc = ds_frame_dec_feed(&c->dec, p, left, &used, &f, &fl);
        if (rc) {
            if (rc == DS_ERR_TOOLARGE)
                slog(c->srv, 0, "ipc: closing a client connection: frame larger than %u bytes",
                     DS_IPC_MAX_FRAME);
            else
                slog(c->srv, 0, "ipc: closing a client connection: %s",
                     rc == DS_ERR_MALFORMED ? "empty frame" : ds_strerror(rc));
            conn_close(c);
            return;
        }
        p += used;
        left -= used;
        if (f && handle_frame(c, f, fl) != 0) {
            conn_close(c);
            return;
        }
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    ds_ipc_server *s = l->data;
    if (status < 0) {
        slog(s, 0, "ipc: accept failed: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        slog(s, 1, "ipc: out of memory accepting a client");
        return;
    }
    c->srv = s;
    ds_frame_dec_init(&c->dec, DS_IPC_MAX_FRAME);
    uv_pipe_init(s->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    int rc = uv_accept(l, (uv_stream_t *)&c->pipe);
    if (rc == 0 && s->nconns > DS_IPC_MAX_CLIENTS) {
        slog(s, 0, "ipc: too many clients (%d): refusing one", DS_IPC_MAX_CLIENTS);
        rc = UV_EMFILE;
    } else if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
    }
    if (rc)
        conn_close(c);
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

int ds_ipc_server_start(ds_ipc_server **out, uv_loop_t *loop, const char *path,
                        ds_ipc_handler handler, ds_ipc_log log, void *ud, char *err,
                        size_t errlen)
{
    *out = NULL;
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "the socket path %s is too long (at most %zu bytes): choose a "
                 "shorter home directory", path, sizeof sa.sun_path - 1);
        return DS_ERR_INVALID;
    }
    ds_ipc_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return DS_ERR_NOMEM;
    }
    s->loop = loop;
    s->handler = handler;
    s->log = log;
    s->ud = ud;
    int rc = uv_pipe_init(loop, &s->listener, 0);
    if (rc) {
        free(s);
        snprintf(err, errlen, "cannot create the socket: %s", uv_strerror(rc));
        return DS_ERR_IO;
    }
    s->listener.data = s;
    /* Created 0600 from the start (no window where others may connect). */
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&s->listener, path);
    umask(old);
    if (rc == 0 && chmod(path, 0600) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, uv_strerror(rc));
        /* |s| is freed by the close callback when the loop next runs. */
        uv_close((uv_handle_t *)&s->listener, free_on_close);
        return rc == UV_EADDRINUSE ? DS_ERR_EXISTS : DS_ERR_IO;
    }
    *out = s;
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    ds_ipc_server *s = h->data;
    s->pending--;
    maybe_done(s);
}

void ds_ipc_server_close(ds_ipc_server *s, void (*done)(void *ud), void *ud)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    s->pending++;
    /* libuv removes the socket file when it closes a bound pipe. */
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    while (s->conns)
        conn_close(s->conns);
}

uint64_t ds_ipc_server_requests(const ds_ipc_server *s)
{
    return s ? s->requests : 0;
}

size_t ds_ipc_server_clients(const ds_ipc_server *s)
{
    return s ? s->nconns : 0;
}

/* ---- Client ------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ds_ipc_connect(ds_ipc_client *c, const char *path, int timeout_ms)
{
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return DS_ERR_INVALID;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return DS_ERR_IO;
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN && mono_ms() < deadline) {
            /* The listen backlog is full: the daemon is busy.  Retry. */
            struct timespec ts = { 0, 20 * 1000000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (e == EINPROGRESS) {
            struct pollfd pfd = { fd, POLLOUT, 0 };
            int left = (int)(deadline - mono_ms());
            int pr = left > 0 ? poll(&pfd, 1, left) : 0;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
            close(fd);
            if (pr == 0)
                return DS_ERR_TIMEOUT;
            errno = soerr ? soerr : EIO;
            return soerr == ECONNREFUSED ? DS_ERR_NOTFOUND : DS_ERR_IO;
        }
        close(fd);
        errno = e;
        if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
            return DS_ERR_NOTFOUND;
        return e == EAGAIN ? DS_ERR_TIMEOUT : DS_ERR_IO;
    }
    c->fd = fd;
    return 0;
}

void ds_ipc_client_close(ds_ipc_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd pfd = { fd, ev, 0 };
    for (;;) {
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return DS_ERR_IO;
        return pr == 0 ? DS_ERR_TIMEOUT : 0;
    }
}

static int send_all(ds_ipc_client *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, c->timeout_ms);
            if (rc)
                return rc;
            continue;
        }
        return errno == EPIPE || errno == ECONNRESET ? DS_ERR_PROTO : DS_ERR_IO;
    }
    return 0;
}

int ds_ipc_roundtrip(ds_ipc_client *c, const void *payload, size_t len, msgpack_sbuffer *out)
{
    uint8_t hdr[DS_FRAME_HDR_LEN];
    int rc = ds_frame_header(hdr, len, DS_IPC_MAX_FRAME);
    if (rc)
        return rc == DS_ERR_INVALID ? DS_ERR_INVALID : DS_ERR_TOOLARGE;
    rc = send_all(c, hdr, sizeof hdr);
    if (!rc)
        rc = send_all(c, payload, len);
    if (rc)
        return rc;
    ds_frame_dec dec;
    ds_frame_dec_init(&dec, DS_IPC_MAX_FRAME);
    uint8_t *buf = malloc(65536);
    if (!buf)
        return DS_ERR_NOMEM;
    for (;;) {
        ssize_t n = recv(c->fd, buf, 65536, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = wait_fd(c->fd, POLLIN, c->timeout_ms);
            if (rc)
                break;
            continue;
        }
        if (n <= 0) {
            rc = n == 0 || errno == ECONNRESET ? DS_ERR_PROTO : DS_ERR_IO;
            break;
        }
        size_t used;
        const uint8_t *f;
        size_t fl;
        rc = ds_frame_dec_feed(&dec, buf, (size_t)n, &used, &f, &fl);
        if (rc) {
            rc = rc == DS_ERR_NOMEM ? rc : DS_ERR_PROTO;
            break;
        }
        if (f) {
            /* One reply per request: anything after it is ignored. */
            rc = msgpack_sbuffer_write(out, (const char *)f, fl) ? DS_ERR_NOMEM : 0;
            break;
        }
    }
    free(buf);
    ds_frame_dec_free(&dec);
    return rc;
}

void ds_ipc_reply_init(ds_ipc_reply *r)
{
    memset(r, 0, sizeof *r);
    msgpack_sbuffer_init(&r->buf);
    msgpack_unpacked_init(&r->up);
}

void ds_ipc_reply_free(ds_ipc_reply *r)
{
    msgpack_unpacked_destroy(&r->up);
    msgpack_sbuffer_destroy(&r->buf);
    r->reply = r->body = NULL;
}

int ds_ipc_request(ds_ipc_client *c, const char *op, const void *params, size_t params_len,
                   ds_ipc_reply *r)
{
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    int e = msgpack_pack_map(&pk, 3);
    pack_str(&pk, "v");
    e |= msgpack_pack_int(&pk, DS_IPC_PROTOCOL);
    pack_str(&pk, "op");
    pack_str(&pk, op);
    pack_str(&pk, "params");
    if (params && params_len)
        e |= msgpack_sbuffer_write(&req, params, params_len);
    else
        e |= msgpack_pack_map(&pk, 0);
    int rc = e ? DS_ERR_NOMEM : ds_ipc_roundtrip(c, req.data, req.size, &r->buf);
    msgpack_sbuffer_destroy(&req);
    if (rc)
        return rc;
    rc = ds_ipc_unpack(r->buf.data, r->buf.size, &r->up);
    if (rc)
        return rc == DS_ERR_NOMEM ? rc : DS_ERR_PROTO;
    r->reply = &r->up.data;
    const msgpack_object *v = map_get(r->reply, "v");
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return DS_ERR_PROTO;
    r->peer_v = v->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->via.u64;
    if (v->via.u64 != DS_IPC_PROTOCOL)
        return DS_ERR_VERSION;
    const msgpack_object *ok = map_get(r->reply, "ok");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN)
        return DS_ERR_PROTO;
    r->ok = ok->via.boolean;
    if (r->ok) {
        r->body = map_get(r->reply, "result");
        if (!r->body || r->body->type != MSGPACK_OBJECT_MAP)
            return DS_ERR_PROTO;
    } else {
        const msgpack_object *err = map_get(r->reply, "error");
        if (!err || err->type != MSGPACK_OBJECT_MAP)
            return DS_ERR_PROTO;
        r->body = r->reply;
    }
    return 0;
}
