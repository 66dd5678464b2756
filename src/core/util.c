/*
 * util.c - small shared helpers: hex coding, BLAKE2b hashing through
 * libsodium, path-boundary matching, UTF-8 validation, byte buffers.
 */
#include "core/util.h"

#include <stdlib.h>
#include <sodium.h>

#include "ds/error.h"

void ds_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ds_hex_decode(const char *hex, uint8_t *out, size_t outlen)
{
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0) return DS_ERR_INVALID;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0) return DS_ERR_INVALID;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * outlen] == 0 ? 0 : DS_ERR_INVALID;
}

void ds_hash(const void *data, size_t len, uint8_t *out, size_t outlen)
{
    crypto_generichash(out, outlen, data, len, NULL, 0);
}

int ds_path_within(const char *path, const char *root)
{
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/') rl--;   /* tolerate a trailing slash */
    if (rl == 1 && root[0] == '/') return path[0] == '/';
    if (rl == 0 || strncmp(path, root, rl) != 0) return 0;
    return path[rl] == 0 || path[rl] == '/';
}

int ds_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    const uint64_t hi = UINT64_C(0x8080808080808080), lo = UINT64_C(0x0101010101010101);
    size_t i = 0;
    while (i < len) {
        /* Eight ASCII bytes, none of them NUL, at a time. */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & hi) || ((w - lo) & ~w & hi)) break;
            i += 8;
        }
        if (i == len) break;
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == 0) return 0;
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        if ((c & 0xe0) == 0xc0) { n = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        if (len - i <= n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
        i += n + 1;
    }
    return 1;
}

void ds_sort_by_prefix(ds_prefix_ent *v, ds_prefix_ent *tmp, size_t n)
{
    if (n < 2) return;
    for (int shift = 0; shift < 64; shift += 8) {
        size_t count[256] = { 0 };
        for (size_t i = 0; i < n; i++) count[(v[i].prefix >> shift) & 0xff]++;
        if (count[(v[0].prefix >> shift) & 0xff] == n) continue;   /* all equal here */
        size_t pos = 0;
        for (int b = 0; b < 256; b++) { size_t c = count[b]; count[b] = pos; pos += c; }
        for (size_t i = 0; i < n; i++) tmp[count[(v[i].prefix >> shift) & 0xff]++] = v[i];
        memcpy(v, tmp, n * sizeof *v);
    }
}

int ds_buf_reserve(ds_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->len < extra) {
        if (ncap > SIZE_MAX / 2) return DS_ERR_NOMEM;
        ncap *= 2;
    }
    uint8_t *p = realloc(b->data, ncap);
    if (!p) return DS_ERR_NOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int ds_buf_append(ds_buf *b, const void *p, size_t n)
{
    int rc = ds_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ds_buf_free(ds_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
