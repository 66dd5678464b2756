/*
 * node.h - the knowledge node: Datasphere's unit of stored knowledge,
 * its MessagePack codec and UUID helpers.
 *
 * A node is encoded as a self-describing MessagePack map with string keys
 * so that fields can be added later; decoders ignore keys they do not
 * know and reject malformed or truncated input.  The same encoding is
 * used in the LMDB store and on the sync wire.
 */
#ifndef DS_NODE_H
#define DS_NODE_H

#include <stddef.h>
#include <stdint.h>
#include "ds/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_ID_LEN 16
#define DS_HASH_LEN 32
#define DS_UUID_STRLEN 36
/* Hard limits enforced by the decoder (and by writers). */
#define DS_NODE_MAX_CONTENT (1u << 20)   /* 1 MiB of content */
#define DS_NODE_MAX_FIELD 65536u         /* source, project, namespace, metadata */
#define DS_NODE_MAX_ENCODED (DS_NODE_MAX_CONTENT + 4 * DS_NODE_MAX_FIELD + 1024)

typedef enum {
    DS_SOURCE_SESSION = 0,
    DS_SOURCE_FILE = 1,
    DS_SOURCE_NOTE = 2,
} ds_source_type;
#define DS_SOURCE_TYPE_COUNT 3

typedef struct ds_node {
    uint8_t id[DS_ID_LEN];      /* UUID v4 */
    char *content;              /* UTF-8 text, NUL-terminated, no embedded NUL */
    size_t content_len;
    char *source;               /* session id, canonical file path, or tag:time */
    ds_source_type source_type;
    char *project;              /* canonical project path, "" if none */
    char *ns;                   /* namespace, default "personal" */
    int64_t timestamp;          /* milliseconds since the Unix epoch, UTC */
    double confidence;          /* 0..1 */
    char *metadata;             /* optional JSON object text, or NULL */
    uint32_t chunk_index;
    uint8_t hash[DS_HASH_LEN];  /* BLAKE2b-256 of content */
    uint64_t seq;               /* store-local sequence; not encoded */
    /* The content buffer and length |hash| was computed for, set by
     * ds_node_hash (and so ds_node_set_content).  A store put trusts
     * |hash| only while they still equal content/content_len, so a hash
     * from elsewhere (a decoded record, a peer) is always recomputed.
     * Change content only through ds_node_set_content; code that writes
     * content bytes or swaps the buffer itself must call ds_node_hash
     * (a freed buffer's address can come back from malloc). */
    const char *hashed_content;
    size_t hashed_len;
    /* Likewise the content buffer and length ds_node_decode found to be
     * valid UTF-8, so a store put of a decoded node (a peer's) does not
     * check the same bytes again.  Same rules as hashed_content. */
    const char *checked_content;
    size_t checked_len;
} ds_node;

/* Zero |n| so that ds_node_free() is safe on it. */
DS_API void ds_node_init(ds_node *n);
/* Frees the strings owned by |n| and re-initializes it. */
DS_API void ds_node_free(ds_node *n);
/* Deep copy |src| into |dst| (which must be initialized or freed).
 * Returns 0 or DS_ERR_NOMEM. */
DS_API int ds_node_copy(ds_node *dst, const ds_node *src);
/* Replaces field |*field| of a node with a copy of |s| (NULL allowed only
 * for metadata).  Returns 0 or DS_ERR_NOMEM. */
DS_API int ds_node_set_str(char **field, const char *s);
/* Sets content (copied) and its hash.  Returns 0, DS_ERR_NOMEM, or
 * DS_ERR_TOOLARGE above DS_NODE_MAX_CONTENT. */
DS_API int ds_node_set_content(ds_node *n, const char *text, size_t len);
/* Recomputes n->hash from n->content (and records that it did). */
DS_API void ds_node_hash(ds_node *n);
DS_API const char *ds_source_type_name(ds_source_type t);
/* Parses "session" | "file" | "note".  Returns 0 or DS_ERR_INVALID. */
DS_API int ds_source_type_parse(const char *s, ds_source_type *out);

/* Encodes |n| into a newly malloc'd buffer (*out, *outlen); the caller
 * frees it.  Returns 0, DS_ERR_INVALID (missing required field) or
 * DS_ERR_NOMEM. */
DS_API int ds_node_encode(const ds_node *n, uint8_t **out, size_t *outlen);
/* Decodes exactly one node from |buf|/|len| into |out| (initialized by
 * the call; on error |out| holds nothing).  Trailing bytes are an error.
 * Returns 0, DS_ERR_TRUNCATED, DS_ERR_MALFORMED, DS_ERR_TOOLARGE or
 * DS_ERR_NOMEM. */
DS_API int ds_node_decode(const uint8_t *buf, size_t len, ds_node *out);
/* Like ds_node_decode, for a node followed by other bytes: decodes the
 * node at the start of |buf| and sets *used to its encoded length. */
DS_API int ds_node_decode_prefix(const uint8_t *buf, size_t len, ds_node *out, size_t *used);
/* The "project" of an encoded node without decoding the rest: points
 * *project into |buf| (*plen bytes, not NUL-terminated; "" when absent).
 * Checks the map's structure, not its field values.  Returns 0 or
 * DS_ERR_TRUNCATED / DS_ERR_MALFORMED / DS_ERR_TOOLARGE. */
DS_API int ds_node_peek_project(const uint8_t *buf, size_t len, const char **project, size_t *plen);

/* Builds a UUID v4 from 16 caller-supplied random bytes. */
DS_API void ds_uuid_from_random(uint8_t id[DS_ID_LEN], const uint8_t random[DS_ID_LEN]);
/* Formats |id| as 36 lowercase characters plus NUL into |out|. */
DS_API void ds_uuid_format(const uint8_t id[DS_ID_LEN], char out[DS_UUID_STRLEN + 1]);
/* Parses a canonical UUID string.  Returns 0 or DS_ERR_INVALID. */
DS_API int ds_uuid_parse(const char *s, uint8_t id[DS_ID_LEN]);

#ifdef __cplusplus
}
#endif
#endif
