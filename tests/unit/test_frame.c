/*
 * test_frame.c - length-prefixed framing: round trips, byte-by-byte
 * feeding, several frames in one piece, truncated input, and the
 * rejection of oversized and zero-length frames.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "core/frame.h"
#include "ds/error.h"

/* Feeds |len| bytes in pieces of |piece| bytes; collects complete frames
 * (concatenated into |out|, lengths into |lens|).  Returns the decoder's
 * error or 0. */
static int feed_all(ds_frame_dec *d, const uint8_t *data, size_t len, size_t piece, ds_buf *out,
                    size_t *lens, size_t *nframes)
{
    *nframes = 0;
    size_t off = 0;
    int guard = 0;
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;
        const uint8_t *p = data + off;
        size_t left = n;
        while (left > 0) {
            assert_true(++guard < 10000000);
            size_t used;
            const uint8_t *f;
            size_t fl;
            int rc = ds_frame_dec_feed(d, p, left, &used, &f, &fl);
            if (rc)
                return rc;
            assert_true(used <= left);
            if (f) {
                assert_int_equal(ds_buf_append(out, f, fl), 0);
                lens[(*nframes)++] = fl;
            } else {
                assert_true(used == left); /* no frame: everything taken */
            }
            p += used;
            left -= used;
        }
        off += n;
    }
    return 0;
}

static void test_round_trip(void **state)
{
    ds_buf b = { 0 };
    const char *msg = "hello, frame";
    assert_int_equal(ds_frame_encode(&b, msg, strlen(msg), 1024), 0);
    assert_int_equal(b.len, 4 + strlen(msg));
    assert_int_equal(b.data[0], 0);
    assert_int_equal(b.data[3], strlen(msg));

    ds_frame_dec d;
    ds_frame_dec_init(&d, 1024);
    size_t used, fl;
    const uint8_t *f;
    assert_int_equal(ds_frame_dec_feed(&d, b.data, b.len, &used, &f, &fl), 0);
    assert_int_equal(used, b.len);
    assert_non_null(f);
    assert_int_equal(fl, strlen(msg));
    assert_memory_equal(f, msg, fl);
    assert_true(ds_frame_dec_idle(&d));
    ds_frame_dec_free(&d);
    ds_buf_free(&b);
}

static void test_byte_by_byte_and_many(void **state)
{
    /* Three frames of different sizes (one larger than any read piece). */
    size_t sizes[3] = { 1, 300, 70000 };
    ds_buf stream = { 0 }, expect = { 0 };
    for (int i = 0; i < 3; i++) {
        uint8_t *p = malloc(sizes[i]);
        assert_non_null(p);
        for (size_t k = 0; k < sizes[i]; k++)
            p[k] = (uint8_t)(k * 7 + (size_t)i);
        assert_int_equal(ds_frame_encode(&stream, p, sizes[i], 1u << 20), 0);
        assert_int_equal(ds_buf_append(&expect, p, sizes[i]), 0);
        free(p);
    }
    size_t pieces[] = { 1, 2, 3, 5, 4096, stream.len };
    for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
        ds_frame_dec d;
        ds_frame_dec_init(&d, 1u << 20);
        ds_buf got = { 0 };
        size_t lens[8], n;
        assert_int_equal(feed_all(&d, stream.data, stream.len, pieces[pi], &got, lens, &n), 0);
        assert_int_equal(n, 3);
        for (int i = 0; i < 3; i++)
            assert_int_equal(lens[i], sizes[i]);
        assert_int_equal(got.len, expect.len);
        assert_memory_equal(got.data, expect.data, got.len);
        assert_true(ds_frame_dec_idle(&d));
        ds_buf_free(&got);
        ds_frame_dec_free(&d);
    }
    ds_buf_free(&stream);
    ds_buf_free(&expect);
}

static void test_truncated_waits(void **state)
{
    ds_buf b = { 0 };
    assert_int_equal(ds_frame_encode(&b, "abcdef", 6, 64), 0);
    ds_frame_dec d;
    ds_frame_dec_init(&d, 64);
    size_t used, fl;
    const uint8_t *f;
    /* Half the prefix. */
    assert_int_equal(ds_frame_dec_feed(&d, b.data, 2, &used, &f, &fl), 0);
    assert_int_equal(used, 2);
    assert_null(f);
    assert_false(ds_frame_dec_idle(&d));
    /* The rest of the prefix and part of the payload. */
    assert_int_equal(ds_frame_dec_feed(&d, b.data + 2, 5, &used, &f, &fl), 0);
    assert_int_equal(used, 5);
    assert_null(f);
    /* Nothing new: still waiting. */
    assert_int_equal(ds_frame_dec_feed(&d, b.data + 7, 0, &used, &f, &fl), 0);
    assert_null(f);
    assert_false(ds_frame_dec_idle(&d));
    assert_int_equal(ds_frame_dec_feed(&d, b.data + 7, b.len - 7, &used, &f, &fl), 0);
    assert_non_null(f);
    assert_int_equal(fl, 6);
    assert_memory_equal(f, "abcdef", 6);
    ds_frame_dec_free(&d);
    ds_buf_free(&b);
}

static void test_oversized_rejected(void **state)
{
    ds_buf b = { 0 };
    char payload[65] = { 0 };
    assert_int_equal(ds_frame_encode(&b, payload, 65, 64), DS_ERR_TOOLARGE);
    assert_int_equal(b.len, 0);
    uint8_t hdr[4];
    assert_int_equal(ds_frame_header(hdr, 64, 64), 0);
    assert_int_equal(ds_frame_header(hdr, 65, 64), DS_ERR_TOOLARGE);

    /* A claimed 4 GiB frame is refused on the prefix, allocating nothing. */
    ds_frame_dec d;
    ds_frame_dec_init(&d, 64);
    const uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
    size_t used, fl;
    const uint8_t *f;
    assert_int_equal(ds_frame_dec_feed(&d, huge, 4, &used, &f, &fl), DS_ERR_TOOLARGE);
    assert_null(f);
    assert_null(d.body.data);
    /* Sticky. */
    assert_int_equal(ds_frame_dec_feed(&d, (const uint8_t *)"x", 1, &used, &f, &fl),
                     DS_ERR_TOOLARGE);
    assert_false(ds_frame_dec_idle(&d));
    ds_frame_dec_free(&d);

    /* Exactly the maximum passes; one more byte does not. */
    const uint8_t at_max[4] = { 0, 0, 0, 64 }, over[4] = { 0, 0, 0, 65 };
    ds_frame_dec_init(&d, 64);
    assert_int_equal(ds_frame_dec_feed(&d, at_max, 4, &used, &f, &fl), 0);
    ds_frame_dec_free(&d);
    ds_frame_dec_init(&d, 64);
    assert_int_equal(ds_frame_dec_feed(&d, over, 4, &used, &f, &fl), DS_ERR_TOOLARGE);
    ds_frame_dec_free(&d);
    /* Default maximum. */
    ds_frame_dec_init(&d, 0);
    assert_int_equal(d.max, DS_FRAME_MAX_DEFAULT);
    ds_frame_dec_free(&d);
}

static void test_zero_length_rejected(void **state)
{
    ds_buf b = { 0 };
    assert_int_equal(ds_frame_encode(&b, "", 0, 64), DS_ERR_INVALID);
    assert_int_equal(b.len, 0);
    ds_frame_dec d;
    ds_frame_dec_init(&d, 64);
    const uint8_t zero[6] = { 0, 0, 0, 0, 'a', 'b' };
    size_t used, fl;
    const uint8_t *f;
    assert_int_equal(ds_frame_dec_feed(&d, zero, sizeof zero, &used, &f, &fl), DS_ERR_MALFORMED);
    assert_null(f);
    ds_frame_dec_free(&d);
}

static void test_frame_valid_until_next_feed(void **state)
{
    /* A frame split across pieces is returned from the decoder's own
     * buffer; the next frame after it still decodes. */
    ds_buf b = { 0 };
    assert_int_equal(ds_frame_encode(&b, "first", 5, 64), 0);
    assert_int_equal(ds_frame_encode(&b, "second", 6, 64), 0);
    ds_frame_dec d;
    ds_frame_dec_init(&d, 64);
    size_t used, fl;
    const uint8_t *f;
    assert_int_equal(ds_frame_dec_feed(&d, b.data, 6, &used, &f, &fl), 0);
    assert_null(f);
    assert_int_equal(ds_frame_dec_feed(&d, b.data + 6, b.len - 6, &used, &f, &fl), 0);
    assert_non_null(f);
    assert_int_equal(fl, 5);
    assert_memory_equal(f, "first", 5);
    assert_int_equal(used, 3);
    size_t off = 6 + used;
    assert_int_equal(ds_frame_dec_feed(&d, b.data + off, b.len - off, &used, &f, &fl), 0);
    assert_non_null(f);
    assert_int_equal(fl, 6);
    assert_memory_equal(f, "second", 6);
    assert_int_equal(off + used, b.len);
    ds_frame_dec_free(&d);
    ds_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_byte_by_byte_and_many),
        cmocka_unit_test(test_truncated_waits),
        cmocka_unit_test(test_oversized_rejected),
        cmocka_unit_test(test_zero_length_rejected),
        cmocka_unit_test(test_frame_valid_until_next_feed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
