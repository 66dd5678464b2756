/*
 * msgread.c - bounded MessagePack reader, see msgread.h.  Follows the
 * MessagePack specification's type bytes; every multi-byte length is
 * checked against the remaining input before use.
 */
#include "core/msgread.h"

#include <stdlib.h>
#include <string.h>

#include "ds/error.h"

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Header of a length-prefixed or container value: returns the header
 * size, fills *len (payload bytes or element count). */
static int header(const ds_mr *r, ds_mr_type *t, size_t *hlen, uint64_t *len)
{
    if (r->p >= r->end) return DS_ERR_TRUNCATED;
    uint8_t b = r->p[0];
    size_t left = ds_mr_left(r);
    int n = 0;
    *len = 0;
    if (b <= 0x7f || b >= 0xe0) { *t = DS_MR_INT; *hlen = 1; return 0; }
    if ((b & 0xf0) == 0x80) { *t = DS_MR_MAP; *hlen = 1; *len = b & 15; return 0; }
    if ((b & 0xf0) == 0x90) { *t = DS_MR_ARRAY; *hlen = 1; *len = b & 15; return 0; }
    if ((b & 0xe0) == 0xa0) { *t = DS_MR_STR; *hlen = 1; *len = b & 31; return 0; }
    switch (b) {
    case 0xc0: *t = DS_MR_NIL; *hlen = 1; return 0;
    case 0xc2: case 0xc3: *t = DS_MR_BOOL; *hlen = 1; return 0;
    case 0xc4: *t = DS_MR_BIN; n = 1; break;
    case 0xc5: *t = DS_MR_BIN; n = 2; break;
    case 0xc6: *t = DS_MR_BIN; n = 4; break;
    case 0xc7: *t = DS_MR_EXT; n = 1; break;
    case 0xc8: *t = DS_MR_EXT; n = 2; break;
    case 0xc9: *t = DS_MR_EXT; n = 4; break;
    case 0xca: *t = DS_MR_FLOAT; *hlen = 5; return 0;
    case 0xcb: *t = DS_MR_FLOAT; *hlen = 9; return 0;
    case 0xcc: case 0xd0: *t = DS_MR_INT; *hlen = 2; return 0;
    case 0xcd: case 0xd1: *t = DS_MR_INT; *hlen = 3; return 0;
    case 0xce: case 0xd2: *t = DS_MR_INT; *hlen = 5; return 0;
    case 0xcf: case 0xd3: *t = DS_MR_INT; *hlen = 9; return 0;
    case 0xd4: *t = DS_MR_EXT; *hlen = 2; *len = 1; return 0;
    case 0xd5: *t = DS_MR_EXT; *hlen = 2; *len = 2; return 0;
    case 0xd6: *t = DS_MR_EXT; *hlen = 2; *len = 4; return 0;
    case 0xd7: *t = DS_MR_EXT; *hlen = 2; *len = 8; return 0;
    case 0xd8: *t = DS_MR_EXT; *hlen = 2; *len = 16; return 0;
    case 0xd9: *t = DS_MR_STR; n = 1; break;
    case 0xda: *t = DS_MR_STR; n = 2; break;
    case 0xdb: *t = DS_MR_STR; n = 4; break;
    case 0xdc: *t = DS_MR_ARRAY; n = 2; break;
    case 0xdd: *t = DS_MR_ARRAY; n = 4; break;
    case 0xde: *t = DS_MR_MAP; n = 2; break;
    case 0xdf: *t = DS_MR_MAP; n = 4; break;
    default: *t = DS_MR_INVALID; return DS_ERR_MALFORMED;   /* 0xc1 */
    }
    if (left < (size_t)n + 1) return DS_ERR_TRUNCATED;
    *len = be(r->p + 1, n);
    *hlen = (size_t)n + 1 + (*t == DS_MR_EXT ? 1 : 0);
    return 0;
}

ds_mr_type ds_mr_peek(const ds_mr *r)
{
    if (r->p >= r->end) return DS_MR_END;
    ds_mr_type t;
    size_t h;
    uint64_t l;
    if (header(r, &t, &h, &l) == DS_ERR_MALFORMED) return DS_MR_INVALID;
    return t;
}

/* Consumes a value of type |want| whose payload follows the header. */
static int take(ds_mr *r, ds_mr_type want, const uint8_t **payload, uint64_t *len)
{
    ds_mr_type t;
    size_t h;
    int rc = header(r, &t, &h, len);
    if (rc) return rc;
    if (t != want) return DS_ERR_MALFORMED;
    if (ds_mr_left(r) < h) return DS_ERR_TRUNCATED;
    if (t == DS_MR_STR || t == DS_MR_BIN || t == DS_MR_EXT) {
        if (ds_mr_left(r) - h < *len) return DS_ERR_TRUNCATED;
        *payload = r->p + h;
        r->p += h + *len;
    } else {
        *payload = r->p;
        r->p += h;
    }
    return 0;
}

static int container(ds_mr *r, ds_mr_type want, uint32_t *count)
{
    const uint8_t *pl;
    uint64_t n;
    const uint8_t *save = r->p;
    int rc = take(r, want, &pl, &n);
    if (rc) return rc;
    /* Each element needs at least one byte: reject impossible counts now. */
    uint64_t min = want == DS_MR_MAP ? 2 * n : n;
    if (min > ds_mr_left(r)) { r->p = save; return DS_ERR_TRUNCATED; }
    *count = (uint32_t)n;
    return 0;
}

int ds_mr_map(ds_mr *r, uint32_t *count) { return container(r, DS_MR_MAP, count); }
int ds_mr_array(ds_mr *r, uint32_t *count) { return container(r, DS_MR_ARRAY, count); }

int ds__mr_str_any(ds_mr *r, const char **s, uint32_t *len)
{
    const uint8_t *pl;
    uint64_t n;
    int rc = take(r, DS_MR_STR, &pl, &n);
    if (rc) return rc;
    *s = (const char *)pl;
    *len = (uint32_t)n;
    return 0;
}

int ds_mr_bin(ds_mr *r, const uint8_t **b, uint32_t *len)
{
    uint64_t n;
    int rc = take(r, DS_MR_BIN, b, &n);
    if (rc) return rc;
    *len = (uint32_t)n;
    return 0;
}

static int read_int(ds_mr *r, int *neg, uint64_t *mag)
{
    ds_mr_type t;
    size_t h;
    uint64_t l;
    int rc = header(r, &t, &h, &l);
    if (rc) return rc;
    if (t != DS_MR_INT) return DS_ERR_MALFORMED;
    if (ds_mr_left(r) < h) return DS_ERR_TRUNCATED;
    uint8_t b = r->p[0];
    int64_t sv = 0;
    *neg = 0;
    if (b <= 0x7f) { *mag = b; }
    else if (b >= 0xe0) { *neg = 1; sv = (int8_t)b; }
    else if (b >= 0xcc && b <= 0xcf) { *mag = be(r->p + 1, (int)h - 1); }
    else {
        uint64_t raw = be(r->p + 1, (int)h - 1);
        switch (b) {
        case 0xd0: sv = (int8_t)raw; break;
        case 0xd1: sv = (int16_t)raw; break;
        case 0xd2: sv = (int32_t)raw; break;
        default: sv = (int64_t)raw; break;
        }
        if (sv < 0) *neg = 1; else *mag = (uint64_t)sv;
    }
    if (*neg) *mag = (uint64_t)(-(sv + 1)) + 1;   /* magnitude without overflow */
    r->p += h;
    return 0;
}

int ds_mr_uint(ds_mr *r, uint64_t *v)
{
    const uint8_t *save = r->p;
    int neg;
    uint64_t mag;
    int rc = read_int(r, &neg, &mag);
    if (rc) return rc;
    if (neg) { r->p = save; return DS_ERR_MALFORMED; }
    *v = mag;
    return 0;
}

int ds_mr_int(ds_mr *r, int64_t *v)
{
    const uint8_t *save = r->p;
    int neg;
    uint64_t mag;
    int rc = read_int(r, &neg, &mag);
    if (rc) return rc;
    if (!neg && mag > (uint64_t)INT64_MAX) { r->p = save; return DS_ERR_MALFORMED; }
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int ds_mr_double(ds_mr *r, double *v)
{
    if (r->p >= r->end) return DS_ERR_TRUNCATED;
    uint8_t b = r->p[0];
    if (b == 0xca || b == 0xcb) {
        size_t h = b == 0xca ? 5 : 9;
        if (ds_mr_left(r) < h) return DS_ERR_TRUNCATED;
        uint64_t raw = be(r->p + 1, (int)h - 1);
        if (b == 0xca) {
            uint32_t r32 = (uint32_t)raw;
            float f;
            memcpy(&f, &r32, 4);
            *v = f;
        } else {
            memcpy(v, &raw, 8);
        }
        r->p += h;
        return 0;
    }
    int64_t i;
    int rc = ds_mr_int(r, &i);
    if (rc) return rc;
    *v = (double)i;
    return 0;
}

int ds_mr_bool(ds_mr *r, int *v)
{
    if (r->p >= r->end) return DS_ERR_TRUNCATED;
    if (r->p[0] != 0xc2 && r->p[0] != 0xc3) return DS_ERR_MALFORMED;
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

int ds_mr_nil(ds_mr *r)
{
    if (r->p >= r->end) return DS_ERR_TRUNCATED;
    if (r->p[0] != 0xc0) return DS_ERR_MALFORMED;
    r->p++;
    return 0;
}

static int skip(ds_mr *r, int depth)
{
    if (depth > DS_MR_MAX_DEPTH) return DS_ERR_MALFORMED;
    ds_mr_type t;
    size_t h;
    uint64_t len;
    int rc = header(r, &t, &h, &len);
    if (rc) return rc;
    if (ds_mr_left(r) < h) return DS_ERR_TRUNCATED;
    switch (t) {
    case DS_MR_STR: case DS_MR_BIN: case DS_MR_EXT:
        if (ds_mr_left(r) - h < len) return DS_ERR_TRUNCATED;
        r->p += h + len;
        return 0;
    case DS_MR_ARRAY: case DS_MR_MAP: {
        uint64_t n = t == DS_MR_MAP ? 2 * len : len;
        r->p += h;
        if (n > ds_mr_left(r)) return DS_ERR_TRUNCATED;
        for (uint64_t i = 0; i < n; i++) {
            rc = skip(r, depth + 1);
            if (rc) return rc;
        }
        return 0;
    }
    default:
        r->p += h;
        return 0;
    }
}

int ds__mr_skip_any(ds_mr *r)
{
    const uint8_t *save = r->p;
    int rc = skip(r, 0);
    if (rc) r->p = save;
    return rc;
}

int ds_mr_strdup(ds_mr *r, size_t max, char **out)
{
    const uint8_t *save = r->p;
    const char *s;
    uint32_t n;
    int rc = ds_mr_str(r, &s, &n);
    if (rc) return rc;
    if (n > max || memchr(s, 0, n)) { r->p = save; return DS_ERR_MALFORMED; }
    char *c = malloc((size_t)n + 1);
    if (!c) { r->p = save; return DS_ERR_NOMEM; }
    memcpy(c, s, n);
    c[n] = 0;
    free(*out);
    *out = c;
    return 0;
}
