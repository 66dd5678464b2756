/*
 * ops_daemon.c - the "status" request: whether the daemon runs, for how
 * long, what it watches, its ingestion queue, its network sync (where it
 * listens, the periodic schedule) and the node counts.  Run
 * inside the daemon it reports the live services; run in process by the
 * CLI (no daemon reachable) it says running: false and still counts the
 * nodes when a store exists.
 */
#include "daemon/ops.h"

#include <string.h>

#include "daemon/daemon.h"
#include "daemon/ingestd.h"
#include "io/ipc.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

static void key(msgpack_packer *pk, const char *k)
{
    ds_pack_cstr(pk, k);
}

int op_status(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    /* Node counts: a missing store is not an error here. */
    ds_store *st = NULL;
    ds_store_info info;
    int have_store = 0;
    int rc = ds_ctx_store(ctx, 0, &st);
    if (rc == 0) {
        rc = ds_store_info_get(st, &info);
        if (rc)
            return ds_ops_fail_store(ctx, rc, "reading the node counts");
        have_store = 1;
    } else if (rc == DS_ERR_NOTFOUND) {
        memset(&ctx->error, 0, sizeof ctx->error);
    } else {
        return rc;
    }

    int running = ctx->daemon != NULL;
    ds_daemon_info di;
    if (running)
        ds_daemon_info_get(ctx->daemon, &di);
    int sync = running && ctx->netsync;
    size_t n = 6 + (have_store ? 2 : 0) + (running ? 7 : 0) + (sync ? 1 : 0);
    msgpack_pack_map(reply, n);
    key(reply, "running");
    ds_pack_bool(reply, running);
    key(reply, "version");
    ds_pack_cstr(reply, DS_VERSION);
    key(reply, "protocol");
    msgpack_pack_int(reply, DS_IPC_PROTOCOL);
    key(reply, "home");
    ds_pack_cstr(reply, ctx->home);
    key(reply, "store");
    ds_pack_bool(reply, have_store);
    key(reply, "ingest");
    if (running && ctx->ingestd)
        ds_ingestd_status(ctx->ingestd, reply);
    else
        msgpack_pack_nil(reply);
    if (have_store) {
        key(reply, "nodes");
        msgpack_pack_uint64(reply, info.node_count);
        key(reply, "by_type");
        msgpack_pack_map(reply, DS_SOURCE_TYPE_COUNT);
        for (int t = 0; t < DS_SOURCE_TYPE_COUNT; t++) {
            ds_pack_cstr(reply, ds_source_type_name((ds_source_type)t));
            msgpack_pack_uint64(reply, info.count_by_type[t]);
        }
    }
    if (running) {
        int64_t up = ctx->now_ms() - di.started_ms;
        key(reply, "pid");
        msgpack_pack_int64(reply, (int64_t)di.pid);
        key(reply, "started_at");
        msgpack_pack_int64(reply, di.started_ms);
        key(reply, "uptime_s");
        msgpack_pack_int64(reply, up > 0 ? up / 1000 : 0);
        key(reply, "requests");
        msgpack_pack_uint64(reply, di.requests);
        key(reply, "config");
        ds_pack_cstr(reply, di.config_present ? di.config_path : NULL);
        key(reply, "log");
        ds_pack_cstr(reply, di.log_path);
        key(reply, "socket");
        ds_pack_cstr(reply, di.socket_path);
    }
    if (sync) {
        key(reply, "sync");
        ds_ops_pack_sync_status(ctx, reply);
    }
    return 0;
}
