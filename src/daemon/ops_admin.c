/*
 * ops_admin.c - the store-wide requests: "stats" (what the store holds)
 * and "reset" (delete everything and start a new store epoch, in one
 * transaction, so that peers' sync cursors on the old contents are
 * recognizably stale).  Confirmation is the client's business: the
 * handler does what it is asked.
 */
#include "daemon/ops.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static int count_file(const void *k, size_t kl, const void *v, size_t vl, void *ud)
{
    (*(uint64_t *)ud)++;
    return 0;
}

int op_stats(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    ds_store *st;
    ds_store_info info;
    uint64_t files = 0;
    int rc = ds_ctx_store(ctx, 0, &st), local = 1;
    if (rc == DS_ERR_NOTFOUND && strcmp(ctx->error.code, DS_OPS_E_NO_STORE) == 0) {
        /* Nothing stored here yet: still an error, unless peers' replicas
         * are something to show (a subscriber that only ever synced); the
         * local figures are then zero, epoch and schema nil. */
        ds_op_error saved = ctx->error;
        size_t peers = 0;
        if (ds_ops_peer_count(ctx, &peers) || peers == 0) {
            ctx->error = saved;
            return rc;
        }
        memset(&ctx->error, 0, sizeof ctx->error);
        memset(&info, 0, sizeof info);
        local = 0;
    } else if (rc) {
        return rc;
    } else {
        rc = ds_store_info_get(st, &info);
        if (rc)
            return ds_ops_fail_store(ctx, rc, "reading the store statistics");
        rc = ds_store_aux_iter(st, DS_TABLE_FILES, count_file, &files);
        if (rc)
            return ds_ops_fail_store(ctx, rc, "counting added files");
    }
    char epoch[2 * DS_EPOCH_LEN + 1];
    ds_hex_encode(info.epoch, DS_EPOCH_LEN, epoch);

    msgpack_pack_map(reply, 13);
    ds_pack_cstr(reply, "home");
    ds_pack_cstr(reply, ctx->home);
    ds_pack_cstr(reply, "local_store");
    ds_pack_bool(reply, local);
    ds_pack_cstr(reply, "file_bytes");
    msgpack_pack_uint64(reply, info.file_bytes);
    ds_pack_cstr(reply, "nodes");
    msgpack_pack_uint64(reply, info.node_count);
    ds_pack_cstr(reply, "by_type");
    msgpack_pack_map(reply, DS_SOURCE_TYPE_COUNT);
    for (int t = 0; t < DS_SOURCE_TYPE_COUNT; t++) {
        ds_pack_cstr(reply, ds_source_type_name((ds_source_type)t));
        msgpack_pack_uint64(reply, info.count_by_type[t]);
    }
    ds_pack_cstr(reply, "term_count");
    msgpack_pack_uint64(reply, info.term_count);
    ds_pack_cstr(reply, "total_len");
    msgpack_pack_uint64(reply, info.total_len);
    ds_pack_cstr(reply, "last_seq");
    msgpack_pack_uint64(reply, info.last_seq);
    ds_pack_cstr(reply, "epoch");
    ds_pack_cstr(reply, local ? epoch : NULL);
    ds_pack_cstr(reply, "schema");
    if (local)
        msgpack_pack_uint32(reply, info.schema);
    else
        msgpack_pack_nil(reply);
    ds_pack_cstr(reply, "files");
    msgpack_pack_uint64(reply, files);
    ds_pack_cstr(reply, "stores");
    msgpack_pack_array(reply, local ? 1 : 0);
    if (local)
        ds_pack_cstr(reply, "local");
    ds_pack_cstr(reply, "peers"); /* [{node_id, label, nodes, last_sync, ...}] */
    return ds_ops_pack_peer_stats(ctx, reply);
}

int op_reset(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    ds_store *st;
    int rc = ds_ctx_store(ctx, 0, &st);
    if (rc == DS_ERR_NOTFOUND && strcmp(ctx->error.code, DS_OPS_E_NO_STORE) == 0) {
        /* Nothing to delete, and nothing to create either. */
        memset(&ctx->error, 0, sizeof ctx->error);
        msgpack_pack_map(reply, 3);
        ds_pack_cstr(reply, "existed");
        msgpack_pack_false(reply);
        ds_pack_cstr(reply, "removed");
        msgpack_pack_uint64(reply, 0);
        ds_pack_cstr(reply, "home");
        ds_pack_cstr(reply, ctx->home);
        return 0;
    }
    if (rc)
        return rc;
    ds_store_info info;
    uint8_t epoch[DS_EPOCH_LEN];
    ctx->random_buf(epoch, sizeof epoch);
    /* Counted before the write transaction: LMDB allows one transaction
     * per thread.  The count is what the user was shown and confirmed. */
    rc = ds_store_info_get(st, &info);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "reading the store statistics");
    ds_wtxn *tx;
    rc = ds_store_begin(st, &tx);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "resetting the store");
    rc = ds_wtxn_clear(tx, epoch);
    if (rc) {
        ds_wtxn_abort(tx);
        return ds_ops_fail_store(ctx, rc, "resetting the store");
    }
    rc = ds_wtxn_commit(tx);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "resetting the store");
    char hex[2 * DS_EPOCH_LEN + 1];
    ds_hex_encode(epoch, DS_EPOCH_LEN, hex);
    msgpack_pack_map(reply, 4);
    ds_pack_cstr(reply, "existed");
    msgpack_pack_true(reply);
    ds_pack_cstr(reply, "removed");
    msgpack_pack_uint64(reply, info.node_count);
    ds_pack_cstr(reply, "home");
    ds_pack_cstr(reply, ctx->home);
    ds_pack_cstr(reply, "epoch");
    ds_pack_cstr(reply, hex);
    return 0;
}
