/*
 * frame.h - sans-IO length-prefixed framing: each frame is a 4-byte
 * big-endian payload length followed by the payload.  Used by the
 * daemon's Unix-socket IPC and, later, by the sync protocol over QUIC
 * streams, so it knows nothing about sockets or what payloads mean.
 *
 * The decoder is fed arbitrary pieces of a byte stream (one byte at a
 * time, several frames at once) and hands back complete payloads.  A
 * hard maximum frame size is checked as soon as the length prefix is
 * known, before anything is allocated, and memory grows only with the
 * bytes actually received.  Zero-length frames are rejected: every
 * protocol built on this sends at least one encoded value.
 */
#ifndef DS_FRAME_H
#define DS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define DS_FRAME_HDR_LEN 4
#define DS_FRAME_MAX_DEFAULT (16u * 1024 * 1024)

/* Writes the length prefix of a |len|-byte payload into |hdr|.  Returns
 * 0, DS_ERR_INVALID (|len| is 0) or DS_ERR_TOOLARGE (|len| > |max|). */
int ds_frame_header(uint8_t hdr[DS_FRAME_HDR_LEN], size_t len, uint32_t max);

/* Appends one frame (prefix + |len| payload bytes) to |out|.  Returns 0,
 * DS_ERR_INVALID, DS_ERR_TOOLARGE (nothing appended) or DS_ERR_NOMEM. */
int ds_frame_encode(ds_buf *out, const void *payload, size_t len, uint32_t max);

typedef struct ds_frame_dec {
    uint32_t max;            /* largest accepted payload */
    uint8_t hdr[DS_FRAME_HDR_LEN];
    size_t hdr_have;         /* prefix bytes received so far */
    uint32_t need;           /* payload length, once the prefix is complete */
    ds_buf body;             /* payload bytes received so far */
    int ready;               /* a complete frame was returned last time */
    int error;               /* sticky: 0 or the DS_ERR_* that broke the stream */
} ds_frame_dec;

/* Initializes |d| for payloads of at most |max| bytes (0: the default
 * DS_FRAME_MAX_DEFAULT).  Allocates nothing. */
void ds_frame_dec_init(ds_frame_dec *d, uint32_t max);
/* Frees what |d| holds; |d| may be initialized again afterwards. */
void ds_frame_dec_free(ds_frame_dec *d);

/* Feeds up to |len| bytes at |data|.  Consumption stops right after the
 * first frame that completes: *used says how many bytes were taken (feed
 * the rest in the next call), and *frame / *frame_len point at the
 * payload (NULL / 0 when no frame completed).  The payload stays valid
 * until the next call on |d| and points either into |data| (when the
 * whole frame was in it) or into |d|'s own buffer.
 * Returns 0; DS_ERR_TOOLARGE (length prefix above the maximum),
 * DS_ERR_MALFORMED (zero length prefix) or DS_ERR_NOMEM, after which the
 * stream is unusable and every further call returns the same error. */
int ds_frame_dec_feed(ds_frame_dec *d, const uint8_t *data, size_t len, size_t *used,
                      const uint8_t **frame, size_t *frame_len);

/* 1 when no partial frame is buffered (a clean place for a stream to end). */
int ds_frame_dec_idle(const ds_frame_dec *d);

#endif
