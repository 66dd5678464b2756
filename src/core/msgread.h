/*
 * msgread.h - a bounded, zero-copy MessagePack reader for untrusted
 * input (store records, sync frames, export files).
 *
 * msgpack-c's unpacker allocates memory in proportion to the container
 * sizes an input *claims*, before checking that the bytes exist, so a
 * five-byte hostile frame can demand gigabytes.  This reader never
 * allocates: it walks the buffer, checks every length against the bytes
 * that remain, limits nesting depth, and reports truncation and type
 * errors distinctly.  Encoding still uses msgpack-c's packer.
 */
#ifndef DS_MSGREAD_H
#define DS_MSGREAD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DS_MR_MAX_DEPTH 32

typedef struct ds_mr {
    const uint8_t *p;
    const uint8_t *end;
} ds_mr;

typedef enum {
    DS_MR_NIL, DS_MR_BOOL, DS_MR_INT, DS_MR_FLOAT, DS_MR_STR, DS_MR_BIN,
    DS_MR_ARRAY, DS_MR_MAP, DS_MR_EXT, DS_MR_INVALID, DS_MR_END
} ds_mr_type;

static inline void ds_mr_init(ds_mr *r, const void *buf, size_t len)
{
    r->p = (const uint8_t *)buf;
    r->end = len ? r->p + len : r->p;   /* (NULL, 0) is an empty input; NULL + 0 is UB */
}
static inline size_t ds_mr_left(const ds_mr *r) { return (size_t)(r->end - r->p); }

/* Type of the next value without consuming it (DS_MR_END at the end). */
ds_mr_type ds_mr_peek(const ds_mr *r);

/* Each reader consumes one value of the named type and returns 0,
 * DS_ERR_TRUNCATED (input ends inside the value) or DS_ERR_MALFORMED
 * (another type, or an invalid byte).  On error nothing is consumed. */
int ds_mr_map(ds_mr *r, uint32_t *count);
int ds_mr_array(ds_mr *r, uint32_t *count);
static inline int ds_mr_str(ds_mr *r, const char **s, uint32_t *len); /* not NUL-terminated */
int ds_mr_bin(ds_mr *r, const uint8_t **b, uint32_t *len);
int ds_mr_uint(ds_mr *r, uint64_t *v);    /* non-negative integer */
int ds_mr_int(ds_mr *r, int64_t *v);      /* any integer fitting int64 */
int ds_mr_double(ds_mr *r, double *v);    /* float32/64, or an integer */
int ds_mr_bool(ds_mr *r, int *v);
int ds_mr_nil(ds_mr *r);
/* Reads a string into a malloc'd NUL-terminated copy, replacing *out
 * (freed).  DS_ERR_MALFORMED for more than |max| bytes or an embedded NUL. */
int ds_mr_strdup(ds_mr *r, size_t max, char **out);
/* Skips one value of any type (containers recursively, depth-limited). */
static inline int ds_mr_skip(ds_mr *r);
/* 1 if the |len| bytes at |s| equal the C string |key|, else 0.  Inline
 * so that a literal key's strlen and memcmp fold into a few compares:
 * decoders call this once per key and candidate. */
static inline int ds_mr_key_eq(const char *s, uint32_t len, const char *key)
{
    size_t kl = strlen(key);
    return kl == len && memcmp(s, key, kl) == 0;
}

/* ---- inline fast paths ------------------------------------------------
 * Records and frames are mostly short strings, binaries and small
 * integers, read once per key: those forms are decoded here, inline; any
 * other form, and every error, goes to the general out-of-line reader. */
int ds__mr_str_any(ds_mr *r, const char **s, uint32_t *len);
int ds__mr_skip_any(ds_mr *r);

/* The payload length and header size of a fixstr, str8, str16 or bin8 at
 * the reader's position; 0 if it is none of these (or truncated). */
static inline int ds__mr_short(const ds_mr *r, size_t *h, size_t *n, int want_str)
{
    size_t left = ds_mr_left(r);
    if (left == 0) return 0;
    uint8_t b = r->p[0];
    if ((b & 0xe0) == 0xa0) { *h = 1; *n = b & 31; }
    else if (b == 0xd9 && left >= 2) { *h = 2; *n = r->p[1]; }
    else if (b == 0xda && left >= 3) { *h = 3; *n = (size_t)r->p[1] << 8 | r->p[2]; }
    else if (b == 0xc4 && !want_str && left >= 2) { *h = 2; *n = r->p[1]; }
    else return 0;
    return left - *h >= *n;
}

static inline int ds_mr_str(ds_mr *r, const char **s, uint32_t *len)
{
    size_t h, n;
    if (!ds__mr_short(r, &h, &n, 1)) return ds__mr_str_any(r, s, len);
    *s = (const char *)r->p + h;
    *len = (uint32_t)n;
    r->p += h + n;
    return 0;
}

static inline int ds_mr_skip(ds_mr *r)
{
    size_t h, n;
    if (r->p < r->end) {
        uint8_t b = r->p[0];
        if (b < 0x80 || b >= 0xe0) {            /* positive or negative fixint */
            r->p++;
            return 0;
        }
    }
    if (!ds__mr_short(r, &h, &n, 0)) return ds__mr_skip_any(r);
    r->p += h + n;
    return 0;
}

#endif
