/*
 * util.h - small helpers shared by the core: hex, hashing, path
 * boundaries, big-endian integers and a growable byte buffer.
 */
#ifndef DS_UTIL_H
#define DS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

void ds_hex_encode(const uint8_t *in, size_t len, char *out); /* out: 2*len+1 */
/* Decodes exactly |outlen| bytes from 2*outlen hex digits; 0 or DS_ERR_INVALID. */
int ds_hex_decode(const char *hex, uint8_t *out, size_t outlen);

/* BLAKE2b with the given output length (16..64) via libsodium. */
void ds_hash(const void *data, size_t len, uint8_t *out, size_t outlen);

/* 1 if |path| equals |root| or lies beneath it (path-boundary aware:
 * "/a/proj" contains "/a/proj/x" but not "/a/proj-x"); root "/" holds all. */
int ds_path_within(const char *path, const char *root);

/* 1 if the |len| bytes at |s| are valid UTF-8 without NUL bytes. */
int ds_utf8_valid(const char *s, size_t len);

/* A sort key: an 8-byte prefix (compared as an unsigned integer) and the
 * index of the item it stands for. */
typedef struct ds_prefix_ent { uint64_t prefix; uint32_t idx; } ds_prefix_ent;
/* Stable LSD radix sort of |v| by prefix, a byte per pass, skipping bytes
 * every key shares; |tmp| has room for |n| entries.  Callers order equal
 * prefixes themselves when the prefix is not the whole key. */
void ds_sort_by_prefix(ds_prefix_ent *v, ds_prefix_ent *tmp, size_t n);

static inline void ds_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline uint64_t ds_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline void ds_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t ds_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

typedef struct ds_buf {
    uint8_t *data;
    size_t len, cap;
} ds_buf;

/* Appends; returns 0 or DS_ERR_NOMEM. */
int ds_buf_append(ds_buf *b, const void *p, size_t n);
int ds_buf_reserve(ds_buf *b, size_t extra);
void ds_buf_free(ds_buf *b);

#endif
