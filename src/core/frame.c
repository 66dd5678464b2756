/*
 * frame.c - length-prefixed framing (see frame.h).  The decoder is a small
 * state machine: collect the 4 prefix bytes, check the length against the
 * maximum, then collect the payload.  When a whole frame sits in the
 * caller's piece it is returned in place, without copying.
 */
#include "core/frame.h"

#include <string.h>

#include "ds/error.h"

int ds_frame_header(uint8_t hdr[DS_FRAME_HDR_LEN], size_t len, uint32_t max)
{
    if (len == 0)
        return DS_ERR_INVALID;
    if (len > max)
        return DS_ERR_TOOLARGE;
    ds_put_be32(hdr, (uint32_t)len);
    return 0;
}

int ds_frame_encode(ds_buf *out, const void *payload, size_t len, uint32_t max)
{
    uint8_t hdr[DS_FRAME_HDR_LEN];
    int rc = ds_frame_header(hdr, len, max);
    if (rc)
        return rc;
    rc = ds_buf_reserve(out, DS_FRAME_HDR_LEN + len);
    if (rc)
        return rc;
    ds_buf_append(out, hdr, sizeof hdr);
    ds_buf_append(out, payload, len);
    return 0;
}

void ds_frame_dec_init(ds_frame_dec *d, uint32_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max ? max : DS_FRAME_MAX_DEFAULT;
}

void ds_frame_dec_free(ds_frame_dec *d)
{
    ds_buf_free(&d->body);
    d->hdr_have = 0;
    d->need = 0;
    d->ready = 0;
}

int ds_frame_dec_idle(const ds_frame_dec *d)
{
    return (d->hdr_have == 0 || d->ready) && !d->error;
}

int ds_frame_dec_feed(ds_frame_dec *d, const uint8_t *data, size_t len, size_t *used,
                      const uint8_t **frame, size_t *frame_len)
{
    *used = 0;
    *frame = NULL;
    *frame_len = 0;
    if (d->error)
        return d->error;
    if (d->ready) {
        /* The previous frame has been handed out: start the next one. */
        d->ready = 0;
        d->hdr_have = 0;
        d->need = 0;
        d->body.len = 0;
        if (d->body.cap > 256 * 1024)
            ds_buf_free(&d->body); /* do not keep a large buffer forever */
    }
    size_t off = 0;
    while (d->hdr_have < DS_FRAME_HDR_LEN && off < len)
        d->hdr[d->hdr_have++] = data[off++];
    if (d->hdr_have < DS_FRAME_HDR_LEN) {
        *used = off;
        return 0;
    }
    if (d->need == 0) {
        uint32_t n = ds_get_be32(d->hdr);
        if (n == 0)
            return d->error = DS_ERR_MALFORMED;
        if (n > d->max)
            return d->error = DS_ERR_TOOLARGE;
        d->need = n;
    }
    size_t want = d->need - d->body.len;
    size_t avail = len - off;
    if (d->body.len == 0 && avail >= want) {
        /* The whole payload is in the caller's piece: no copy. */
        *frame = data + off;
        *frame_len = want;
        *used = off + want;
        d->ready = 1;
        return 0;
    }
    size_t take = avail < want ? avail : want;
    if (take) {
        /* Grows with the bytes received, never to the claimed size at once. */
        if (ds_buf_append(&d->body, data + off, take) != 0)
            return d->error = DS_ERR_NOMEM;
        off += take;
    }
    *used = off;
    if (d->body.len == d->need) {
        *frame = d->body.data;
        *frame_len = d->need;
        d->ready = 1;
    }
    return 0;
}
