/*
 * node_int.h - node decoding into a caller's string block, for decoders
 * of many nodes at once (a sync page): one allocation per page instead
 * of four or five per node.
 */
#ifndef DS_CORE_NODE_INT_H
#define DS_CORE_NODE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "ds/node.h"

/* A bump allocator over a block the caller owns.  Decoding a node takes
 * at most its encoded length plus DS_NODE_ARENA_EXTRA bytes from it:
 * each string's NUL fits in its own header byte, and the defaults ("",
 * "personal") of absent fields are the extra. */
typedef struct ds_strarena {
    char *p;
    size_t left;
} ds_strarena;

#define DS_NODE_ARENA_EXTRA 16

/* ds_node_decode_prefix with the strings (content, source, project, ns,
 * metadata) placed in |a|: the node then owns no memory, and must never
 * be given to ds_node_free, ds_node_set_str or ds_node_set_content.  On
 * error *out is zeroed (what was taken from |a| stays taken).  Returns
 * as ds_node_decode_prefix, or DS_ERR_NOMEM when |a| is too small. */
int ds__node_decode_arena(const uint8_t *buf, size_t len, ds_node *out, size_t *used,
                          ds_strarena *a);

#endif
