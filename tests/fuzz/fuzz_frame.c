/*
 * fuzz_frame.c - libFuzzer target for the incremental frame decoder
 * (core/frame.h), which sees every byte a peer or an IPC client sends.
 * Input layout: byte 0 picks the maximum frame size, byte 1 the number
 * of split sizes that follow, then the split sizes, then the stream.  The
 * stream is fed in pieces of those sizes and the decoder must agree with
 * a straightforward reference parse of the whole stream: same frames,
 * same bytes, the same error at the same frame, progress on every call,
 * sticky errors, nothing beyond the maximum.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/frame.h"
#include "ds/error.h"

#define MAX_SPLITS 16

/* Reference: the frames of |s| and how the stream ends. */
typedef struct ref {
    size_t nframes;
    size_t consumed;        /* bytes up to the end of the last frame */
    int error;              /* error expected after the frames */
    int idle;               /* ends on a frame boundary */
} ref;

static ref reference(const uint8_t *s, size_t n, uint32_t max)
{
    ref r = { 0, 0, 0, 1 };
    size_t pos = 0;
    while (pos < n) {
        if (n - pos < DS_FRAME_HDR_LEN) { r.idle = 0; break; }
        uint32_t len = ds_get_be32(s + pos);
        if (len == 0) { r.error = DS_ERR_MALFORMED; break; }
        if (len > max) { r.error = DS_ERR_TOOLARGE; break; }
        if (n - pos - DS_FRAME_HDR_LEN < len) { r.idle = 0; break; }
        pos += DS_FRAME_HDR_LEN + len;
        r.nframes++;
        r.consumed = pos;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint32_t max = data[0] >= 0xf0 ? 0 : (uint32_t)(data[0] % 64) * 16 + 1;
    size_t nsplit = data[1] % (MAX_SPLITS + 1);
    if (size < 2 + nsplit) return 0;
    const uint8_t *splits = data + 2;
    const uint8_t *s = data + 2 + nsplit;
    size_t n = size - 2 - nsplit;

    ds_frame_dec d;
    ds_frame_dec_init(&d, max);
    uint32_t effective = max ? max : DS_FRAME_MAX_DEFAULT;
    if (d.max != effective) abort();
    ref r = reference(s, n, effective);

    size_t pos = 0, frames = 0, k = 0, check = 0;   /* check: reference position */
    int err = 0;
    while (pos < n && !err) {
        size_t piece = nsplit ? splits[k++ % nsplit] : 255;
        piece = piece == 255 ? n - pos : piece + 1;
        if (piece > n - pos) piece = n - pos;
        size_t off = 0;
        while (off < piece) {
            size_t used;
            const uint8_t *f;
            size_t fl;
            int rc = ds_frame_dec_feed(&d, s + pos + off, piece - off, &used, &f, &fl);
            if (used > piece - off) abort();
            if (rc) {
                if (f || fl || used) abort();
                err = rc;
                break;
            }
            if (!used) abort();                   /* progress on every call */
            off += used;
            if (f) {
                /* Same bytes as the reference frame at |check|. */
                if (!fl || fl > effective || frames >= r.nframes) abort();
                uint32_t len = ds_get_be32(s + check);
                if (len != fl || memcmp(f, s + check + DS_FRAME_HDR_LEN, fl)) abort();
                check += DS_FRAME_HDR_LEN + fl;
                if (check != pos + off) abort();  /* stops right after the frame */
                frames++;
            }
        }
        pos += off;
    }
    if (frames != r.nframes || check != r.consumed) abort();
    if (err != r.error) abort();
    if (err) {
        /* Sticky: every further call fails the same way, taking nothing. */
        size_t used = 1;
        const uint8_t *f = (const uint8_t *)"";
        size_t fl = 1;
        if (ds_frame_dec_feed(&d, s, n, &used, &f, &fl) != err || used || f || fl) abort();
        if (ds_frame_dec_idle(&d)) abort();
    } else if (ds_frame_dec_idle(&d) != r.idle) {
        abort();
    }
    ds_frame_dec_free(&d);

    /* Re-encoding what was decoded gives back the consumed bytes. */
    ds_buf b = { 0 };
    size_t p = 0;
    for (size_t i = 0; i < r.nframes; i++) {
        uint32_t len = ds_get_be32(s + p);
        if (ds_frame_encode(&b, s + p + DS_FRAME_HDR_LEN, len, effective)) abort();
        p += DS_FRAME_HDR_LEN + len;
    }
    if (b.len != r.consumed || (b.len && memcmp(b.data, s, b.len))) abort();
    ds_buf_free(&b);
    return 0;
}
