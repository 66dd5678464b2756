/*
 * ipc.h - the daemon's local request/reply channel: a Unix stream socket
 * (HOME/daemon.sock, mode 0600) carrying length-prefixed MessagePack
 * frames (core/frame.h).
 *
 *   request  {v: DS_IPC_PROTOCOL, op: "name", params: {...}}
 *   reply    {v, ok: true,  result: {...}}
 *         or {v, ok: false, error: {code, message, hint}}
 *
 * The server runs on the daemon's libuv loop and hands each request to a
 * handler callback (the daemon plugs in the ops dispatch table).  Frames
 * are validated with the bounded reader (core/msgread.h) before
 * msgpack-c's unpacker sees them.  A malformed or oversized frame closes
 * that connection (with a warning through the log callback); the server
 * keeps serving the others.  A request of another protocol version gets
 * an error reply "protocol_mismatch".
 *
 * The client is blocking, with connect and I/O timeouts, for the CLI.
 */
#ifndef DS_IPC_H
#define DS_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include <uv.h>

#define DS_IPC_PROTOCOL 1
#define DS_IPC_MAX_FRAME (16u * 1024 * 1024)
#define DS_IPC_SOCKET "daemon.sock"
#define DS_IPC_MAX_CLIENTS 64
#define DS_IPC_E_PROTOCOL "protocol_mismatch"
#define DS_IPC_E_BAD_REQUEST "bad_request"

/* Runs request |op| with |params| (a map or NULL) and appends exactly one
 * map to |out|: the result, or {error: {code, message, hint}} on failure
 * (the shape ds_ops_call produces).  Returns 0 for a result, negative for
 * an error map.  Called on the loop thread. */
typedef int (*ds_ipc_handler)(void *ud, const char *op, const msgpack_object *params,
                              msgpack_sbuffer *out);
/* Receives warnings (bad frames, dropped clients); may be NULL. */
typedef void (*ds_ipc_log)(void *ud, int is_error, const char *msg);

typedef struct ds_ipc_server ds_ipc_server;

/* Binds |path| (mode 0600; the file must not exist: removing a stale one
 * is the caller's job, under its lock) and starts accepting on |loop|.
 * Returns 0, DS_ERR_INVALID (path longer than a socket address holds),
 * DS_ERR_EXISTS (path in use), DS_ERR_IO or DS_ERR_NOMEM, with a message
 * in |err|.  *out is owned by the caller until ds_ipc_server_close.  After
 * a failure the loop must run once more to release a half-made handle. */
int ds_ipc_server_start(ds_ipc_server **out, uv_loop_t *loop, const char *path,
                        ds_ipc_handler handler, ds_ipc_log log, void *ud, char *err,
                        size_t errlen);
/* Stops accepting, closes every connection (replies not yet written are
 * dropped), removes the socket file and frees |s| once every handle is
 * closed; then calls |done| (may be NULL). */
void ds_ipc_server_close(ds_ipc_server *s, void (*done)(void *ud), void *ud);
/* Requests answered so far, and connections open now. */
uint64_t ds_ipc_server_requests(const ds_ipc_server *s);
size_t ds_ipc_server_clients(const ds_ipc_server *s);

/* ---- Blocking client ------------------------------------------------------ */

typedef struct ds_ipc_client {
    int fd;
    int timeout_ms;    /* per read/write wait */
} ds_ipc_client;

/* Connects to the socket at |path| within |timeout_ms|.  Returns 0,
 * DS_ERR_NOTFOUND (no socket, or nobody listening: no daemon),
 * DS_ERR_TIMEOUT, DS_ERR_INVALID (path too long) or DS_ERR_IO (errno). */
int ds_ipc_connect(ds_ipc_client *c, const char *path, int timeout_ms);
void ds_ipc_client_close(ds_ipc_client *c);

/* Sends one raw, already framed-to-be payload and receives one reply
 * payload into |out| (appended).  Each wait is bounded by the client's
 * timeout.  Returns 0, DS_ERR_TOOLARGE, DS_ERR_TIMEOUT, DS_ERR_PROTO (the
 * peer closed or sent a bad frame), DS_ERR_IO or DS_ERR_NOMEM. */
int ds_ipc_roundtrip(ds_ipc_client *c, const void *payload, size_t len, msgpack_sbuffer *out);

typedef struct ds_ipc_reply {
    msgpack_sbuffer buf;          /* reply bytes: objects point into them */
    msgpack_unpacked up;
    const msgpack_object *reply;  /* the whole reply map */
    const msgpack_object *body;   /* result (ok) or the reply itself (has "error") */
    int ok;
    int64_t peer_v;               /* the daemon's protocol version */
} ds_ipc_reply;

void ds_ipc_reply_init(ds_ipc_reply *r);
void ds_ipc_reply_free(ds_ipc_reply *r);

/* Sends request |op| with |params| (|params_len| bytes of one packed map,
 * or NULL for none) and decodes the reply into |r|.  Returns 0 when a
 * reply of our protocol arrived (r->ok says whether it is a result),
 * DS_ERR_VERSION when the daemon speaks another protocol (r->peer_v),
 * DS_ERR_PROTO for an undecodable reply, or a ds_ipc_roundtrip error. */
int ds_ipc_request(ds_ipc_client *c, const char *op, const void *params, size_t params_len,
                   ds_ipc_reply *r);

/* Validates that |len| bytes at |data| are exactly one well-formed
 * MessagePack value (bounded walk) and unpacks it into |up|.  Returns 0,
 * DS_ERR_MALFORMED or DS_ERR_NOMEM.  Shared by server, client and tests. */
int ds_ipc_unpack(const void *data, size_t len, msgpack_unpacked *up);

#endif
