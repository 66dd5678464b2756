/*
 * fuzz_node.c - libFuzzer target for the node decoder (store records and
 * sync frames carry this encoding, and peers are untrusted).  Any input
 * must decode or be rejected without crashing or leaking; whatever
 * decodes must re-encode and decode to the same node.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ds/node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_node n, m;
    if (ds_node_decode(data, size, &n) != 0) {
        if (n.content || n.source || n.project || n.ns || n.metadata) abort();
        return 0;
    }
    if (!n.content || !n.source || !n.project || !n.ns) abort();
    if (strlen(n.content) != n.content_len) abort();
    uint8_t *buf;
    size_t len;
    if (ds_node_encode(&n, &buf, &len) != 0) abort();
    if (ds_node_decode(buf, len, &m) != 0) abort();
    if (memcmp(n.id, m.id, DS_ID_LEN) || strcmp(n.content, m.content) ||
        strcmp(n.source, m.source) || strcmp(n.project, m.project) || strcmp(n.ns, m.ns) ||
        n.timestamp != m.timestamp || n.source_type != m.source_type ||
        n.chunk_index != m.chunk_index || memcmp(n.hash, m.hash, DS_HASH_LEN))
        abort();
    free(buf);
    ds_node_free(&n);
    ds_node_free(&m);
    return 0;
}
