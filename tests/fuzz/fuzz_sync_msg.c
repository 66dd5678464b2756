/*
 * fuzz_sync_msg.c - libFuzzer target for sync message decoding (payloads
 * arrive from untrusted peers and from export files).  Any input decodes
 * or is rejected; a decoded message re-encodes (requests, errors) and
 * decodes to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_msg m, back;
    int rc = ds_msg_decode(data, size, &m);
    if (rc) {
        if (m.nodes || m.message) abort();
        return 0;
    }
    ds_buf b = { 0 };
    if (m.type == DS_MSG_SYNC_REQUEST) {
        if (ds_msg_encode_request(&b, m.has_cursor ? m.cursor : NULL, m.max_nodes, m.max_bytes)) abort();
        if (ds_msg_decode(b.data, b.len, &back)) abort();
        if (back.max_nodes != m.max_nodes || back.has_cursor != m.has_cursor) abort();
        ds_msg_free(&back);
    } else if (m.type == DS_MSG_ERROR) {
        if (ds_msg_encode_error(&b, m.code, m.message ? m.message : "")) abort();
        if (ds_msg_decode(b.data, b.len, &back)) abort();
        if (strcmp(back.code, m.code)) abort();
        ds_msg_free(&back);
    }
    for (size_t i = 0; i < m.nnodes; i++)
        if (!m.nodes[i].content || strlen(m.nodes[i].content) != m.nodes[i].content_len) abort();
    ds_buf_free(&b);
    ds_msg_free(&m);
    return 0;
}
