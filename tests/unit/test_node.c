/*
 * test_node.c - node codec: round trip, forward compatibility (unknown
 * keys skipped), and rejection of malformed, truncated and hostile input.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "core/msgread.h"
#include "core/node_int.h"
#include "core/util.h"

static void make(ds_node *n)
{
    ds_test_make_node(n, "LMDB readers never block writers.", "/a/proj");
    assert_int_equal(ds_node_set_str(&n->metadata, "{\"tags\":[\"db\"]}"), 0);
    n->chunk_index = 7;
    n->confidence = 0.75;
    n->timestamp = -5;   /* before the epoch must survive too */
}

static void roundtrip(void **state)
{
    (void)state;
    ds_node a, b;
    make(&a);
    uint8_t *buf;
    size_t len;
    assert_int_equal(ds_node_encode(&a, &buf, &len), 0);
    assert_int_equal(ds_node_decode(buf, len, &b), 0);
    assert_memory_equal(a.id, b.id, DS_ID_LEN);
    assert_string_equal(a.content, b.content);
    assert_int_equal(a.content_len, b.content_len);
    assert_string_equal(a.source, b.source);
    assert_string_equal(a.project, b.project);
    assert_string_equal(a.ns, b.ns);
    assert_string_equal(a.metadata, b.metadata);
    assert_int_equal(a.source_type, b.source_type);
    assert_int_equal(a.timestamp, b.timestamp);
    assert_int_equal(a.chunk_index, b.chunk_index);
    assert_true(a.confidence == b.confidence);
    assert_memory_equal(a.hash, b.hash, DS_HASH_LEN);
    free(buf);
    ds_node_free(&a);
    ds_node_free(&b);
}

static void truncated_everywhere(void **state)
{
    (void)state;
    ds_node a, b;
    make(&a);
    uint8_t *buf;
    size_t len;
    assert_int_equal(ds_node_encode(&a, &buf, &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = ds_node_decode(buf, cut, &b);
        assert_true(rc == DS_ERR_TRUNCATED || rc == DS_ERR_MALFORMED);
        assert_null(b.content);
    }
    /* Trailing garbage is rejected too. */
    uint8_t *big = malloc(len + 1);
    memcpy(big, buf, len);
    big[len] = 0xc0;
    assert_int_equal(ds_node_decode(big, len + 1, &b), DS_ERR_MALFORMED);
    free(big);
    free(buf);
    ds_node_free(&a);
}

/* Packs a map with the given extra manipulations. */
static size_t pack_custom(uint8_t *out, size_t cap, int variant)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint8_t id[16] = { 1, 2, 3 };
    int extra = variant == 1;
    msgpack_pack_map(&pk, 5 + extra);
#define KEY(s) msgpack_pack_str(&pk, strlen(s)), msgpack_pack_str_body(&pk, s, strlen(s))
    KEY("id");
    if (variant == 2) { msgpack_pack_bin(&pk, 3); msgpack_pack_bin_body(&pk, id, 3); }
    else { msgpack_pack_bin(&pk, 16); msgpack_pack_bin_body(&pk, id, 16); }
    KEY("content");
    if (variant == 3) { msgpack_pack_str(&pk, 3); msgpack_pack_str_body(&pk, "a\0b", 3); }
    else if (variant == 4) { msgpack_pack_str(&pk, 2); msgpack_pack_str_body(&pk, "\xc3\x28", 2); }
    else if (variant == 5) msgpack_pack_int(&pk, 5);
    else KEY("hello world");
    KEY("source"); KEY("note:x");
    KEY("source_type");
    if (variant == 6) KEY("bogus");
    else if (variant == 7) KEY("not");                 /* a prefix of a name */
    else if (variant == 8) { msgpack_pack_str(&pk, 5); msgpack_pack_str_body(&pk, "note\0", 5); }
    else if (variant == 9) msgpack_pack_int(&pk, 2);
    else if (variant == 10) KEY("notes");
    else if (variant == 11) KEY("session-and-then-some");
    else KEY("note");
    KEY("timestamp"); msgpack_pack_int64(&pk, 42);
    if (extra) { KEY("future_field"); msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 1); KEY("x"); }
#undef KEY
    assert_true(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void forward_compat_and_bad_fields(void **state)
{
    (void)state;
    uint8_t buf[512];
    ds_node n;
    size_t len = pack_custom(buf, sizeof buf, 0);
    assert_int_equal(ds_node_decode(buf, len, &n), 0);
    assert_string_equal(n.ns, "personal");      /* defaults for optional fields */
    assert_string_equal(n.project, "");
    ds_node_free(&n);
    len = pack_custom(buf, sizeof buf, 1);
    assert_int_equal(ds_node_decode(buf, len, &n), 0);   /* unknown key skipped */
    ds_node_free(&n);
    for (int v = 2; v <= 10; v++) {
        len = pack_custom(buf, sizeof buf, v);
        assert_int_equal(ds_node_decode(buf, len, &n), DS_ERR_MALFORMED);
    }
    len = pack_custom(buf, sizeof buf, 11);                 /* a type name is short */
    assert_int_equal(ds_node_decode(buf, len, &n), DS_ERR_TOOLARGE);
}

static void hostile_sizes(void **state)
{
    (void)state;
    ds_node n;
    /* A map claiming 2^32-1 entries in five bytes: must not allocate. */
    const uint8_t huge_map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(ds_node_decode(huge_map, sizeof huge_map, &n), DS_ERR_TRUNCATED);
    /* A string claiming 4 GiB. */
    const uint8_t huge_str[] = { 0x81, 0xa2, 'i', 'd', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x' };
    assert_int_equal(ds_node_decode(huge_str, sizeof huge_str, &n), DS_ERR_MALFORMED);
    /* Not a map at all; the reserved byte 0xc1. */
    const uint8_t arr[] = { 0x90 };
    assert_int_equal(ds_node_decode(arr, 1, &n), DS_ERR_MALFORMED);
    const uint8_t c1[] = { 0xc1 };
    assert_int_equal(ds_node_decode(c1, 1, &n), DS_ERR_MALFORMED);
    assert_int_equal(ds_node_decode(NULL, 0, &n), DS_ERR_TRUNCATED);
    /* Deep nesting in an unknown field is bounded. */
    uint8_t deep[200];
    size_t i = 0;
    deep[i++] = 0x81; deep[i++] = 0xa1; deep[i++] = 'z';
    while (i < sizeof deep - 1) deep[i++] = 0x91;
    deep[i++] = 0xc0;
    assert_int_equal(ds_node_decode(deep, sizeof deep, &n), DS_ERR_MALFORMED);
}

static void msgread_ints(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int64_t vals[] = { 0, 1, 127, 128, -1, -32, -33, 255, 65536, -70000, INT64_MIN, INT64_MAX };
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) msgpack_pack_int64(&pk, vals[i]);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    ds_mr r;
    ds_mr_init(&r, sb.data, sb.size);
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        int64_t v;
        assert_int_equal(ds_mr_int(&r, &v), 0);
        assert_true(v == vals[i]);
    }
    int64_t v;
    assert_int_equal(ds_mr_int(&r, &v), DS_ERR_MALFORMED);   /* does not fit */
    uint64_t u;
    assert_int_equal(ds_mr_uint(&r, &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(ds_mr_left(&r), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void uuids(void **state)
{
    (void)state;
    uint8_t r[16], id[16], back[16];
    memset(r, 0xff, sizeof r);
    ds_uuid_from_random(id, r);
    char s[37];
    ds_uuid_format(id, s);
    assert_string_equal(s, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    assert_int_equal(ds_uuid_parse(s, back), 0);
    assert_memory_equal(id, back, 16);
    assert_int_equal(ds_uuid_parse("ffffffff-ffff-4fff-bfff-fffffffffff", back), DS_ERR_INVALID);
    assert_int_equal(ds_uuid_parse("ffffffffxffff-4fff-bfff-ffffffffffff", back), DS_ERR_INVALID);
    assert_int_equal(ds_uuid_parse("gfffffff-ffff-4fff-bfff-ffffffffffff", back), DS_ERR_INVALID);
}

/* UTF-8 validation, whose ASCII fast path takes eight bytes at a time:
 * a bad or NUL byte is found at every offset and alignment. */
static void utf8_validation(void **state)
{
    (void)state;
    char buf[64];
    for (size_t len = 1; len < 40; len++) {
        memset(buf, 'a', len);
        assert_true(ds_utf8_valid(buf, len));
        for (size_t at = 0; at < len; at++) {
            static const unsigned char bad[] = { 0x00, 0x80, 0xff, 0xc0, 0xf8 };
            for (size_t b = 0; b < sizeof bad; b++) {
                memset(buf, 'a', len);
                buf[at] = (char)bad[b];
                assert_false(ds_utf8_valid(buf, len));
            }
        }
    }
    static const char *const good[] = { "caf\xc3\xa9 au lait, tr\xc3\xa8s bon",
                                         "\xe2\x82\xac and \xf0\x9f\x98\x80 after eight bytes" };
    for (size_t i = 0; i < 2; i++) assert_true(ds_utf8_valid(good[i], strlen(good[i])));
    static const char *const badseq[] = {
        "eight ok\xc3",                    /* truncated at the end */
        "eight ok\xe2\x82",
        "eight ok\xc0\xaf",               /* overlong */
        "eight ok\xed\xa0\x80",           /* surrogate */
        "eight ok\xf4\x90\x80\x80",       /* above U+10FFFF */
        "eight ok\xc3\x28 more text",     /* bad continuation */
    };
    for (size_t i = 0; i < sizeof badseq / sizeof *badseq; i++)
        assert_false(ds_utf8_valid(badseq[i], strlen(badseq[i])));
    assert_true(ds_utf8_valid("", 0));
}

/* The publisher's project peek: the same answer as a full decode, "" for
 * no project, and an error (never a crash) for any truncation or
 * trailing byte. */
/* ds_node_decode_prefix: the node at the front of a longer buffer, its
 * length, and the same errors as ds_node_decode for a cut or an
 * oversized node. */
static void decode_prefix(void **state)
{
    (void)state;
    ds_node a, b;
    make(&a);
    uint8_t *buf;
    size_t len, used = 99;
    assert_int_equal(ds_node_encode(&a, &buf, &len), 0);
    uint8_t *two = malloc(2 * len + 1);
    memcpy(two, buf, len);
    memcpy(two + len, buf, len);
    two[2 * len] = 0xc1;                /* not even valid msgpack after them */
    assert_int_equal(ds_node_decode_prefix(two, 2 * len + 1, &b, &used), 0);
    assert_int_equal(used, len);
    assert_memory_equal(b.id, a.id, DS_ID_LEN);
    assert_string_equal(b.content, a.content);
    assert_string_equal(b.project, a.project);
    ds_node_free(&b);
    assert_int_equal(ds_node_decode_prefix(two + len, len + 1, &b, &used), 0);
    assert_int_equal(used, len);
    ds_node_free(&b);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = ds_node_decode_prefix(two, cut, &b, &used);
        assert_true(rc == DS_ERR_TRUNCATED || rc == DS_ERR_MALFORMED);
        assert_int_equal(used, 0);
    }
    assert_int_equal(ds_node_decode_prefix(two + 2 * len, 1, &b, &used), DS_ERR_MALFORMED);
    free(two);
    free(buf);
    /* A node whose content alone is over the record limit: too large, as
     * ds_node_decode says, not truncated. */
    size_t big = DS_NODE_MAX_ENCODED + 64;
    uint8_t *huge = malloc(big + 16);
    size_t i = 0;
    huge[i++] = 0x81;
    huge[i++] = 0xa7;
    memcpy(huge + i, "content", 7);
    i += 7;
    huge[i++] = 0xdb;
    ds_put_be32(huge + i, (uint32_t)big);
    i += 4;
    memset(huge + i, 'x', big);
    assert_int_equal(ds_node_decode_prefix(huge, i + big, &b, &used), DS_ERR_TOOLARGE);
    assert_int_equal(ds_node_decode(huge, i + big, &b), DS_ERR_TOOLARGE);
    free(huge);
    ds_node_free(&a);
}

static void assert_same_node(const ds_node *a, const ds_node *b)
{
    assert_memory_equal(a->id, b->id, DS_ID_LEN);
    assert_int_equal(a->content_len, b->content_len);
    assert_memory_equal(a->content, b->content, a->content_len + 1);
    assert_string_equal(a->source, b->source);
    assert_string_equal(a->project, b->project);
    assert_string_equal(a->ns, b->ns);
    if (a->metadata || b->metadata) assert_string_equal(a->metadata, b->metadata);
    assert_int_equal(a->source_type, b->source_type);
    assert_int_equal(a->timestamp, b->timestamp);
    assert_int_equal(a->chunk_index, b->chunk_index);
    assert_true(a->confidence == b->confidence);
    assert_memory_equal(a->hash, b->hash, DS_HASH_LEN);
}

/* Decoding into a string block gives the node ds_node_decode gives, takes
 * at most the encoded length plus DS_NODE_ARENA_EXTRA (defaults filled
 * in, a key given twice), and fails cleanly when the block is short. */
static void decode_arena(void **state)
{
    (void)state;
    uint8_t bufs[4][512];
    size_t lens[4];
    ds_node a;
    make(&a);
    uint8_t *enc;
    assert_int_equal(ds_node_encode(&a, &enc, &lens[0]), 0);
    assert_true(lens[0] <= sizeof bufs[0]);
    memcpy(bufs[0], enc, lens[0]);
    free(enc);
    ds_node_free(&a);
    lens[1] = pack_custom(bufs[1], sizeof bufs[1], 0);      /* no project, no namespace */
    lens[2] = pack_custom(bufs[2], sizeof bufs[2], 1);      /* a field from a newer writer */
    /* "project" twice: the last one counts */
    static const uint8_t twice[] = {
        0x87, 0xa2, 'i', 'd', 0xc4, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        0xa7, 'c', 'o', 'n', 't', 'e', 'n', 't', 0xa0,
        0xa6, 's', 'o', 'u', 'r', 'c', 'e', 0xa1, 's',
        0xab, 's', 'o', 'u', 'r', 'c', 'e', '_', 't', 'y', 'p', 'e', 0xa4, 'n', 'o', 't', 'e',
        0xa7, 'p', 'r', 'o', 'j', 'e', 'c', 't', 0xa2, '/', 'a',
        0xa7, 'p', 'r', 'o', 'j', 'e', 'c', 't', 0xa2, '/', 'b',
        0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 0x01,
    };
    memcpy(bufs[3], twice, sizeof twice);
    lens[3] = sizeof twice;
    for (int v = 0; v < 4; v++) {
        ds_node ref, got;
        size_t used = 0;
        assert_int_equal(ds_node_decode(bufs[v], lens[v], &ref), 0);
        size_t cap = lens[v] + DS_NODE_ARENA_EXTRA;
        char *block = malloc(cap);
        ds_strarena ar = { block, cap };
        assert_int_equal(ds__node_decode_arena(bufs[v], lens[v], &got, &used, &ar), 0);
        assert_int_equal(used, lens[v]);
        assert_same_node(&ref, &got);
        assert_true(got.content >= block && got.content < block + cap);
        assert_true(got.ns >= block && got.ns < block + cap);
        if (v == 3) assert_string_equal(got.project, "/b");
        /* too short by one byte of what it took: an error, nothing kept */
        size_t took = cap - ar.left;
        ds_strarena small = { block, took - 1 };
        assert_int_equal(ds__node_decode_arena(bufs[v], lens[v], &got, &used, &small),
                         DS_ERR_NOMEM);
        assert_null(got.content);
        assert_null(got.project);
        assert_int_equal(used, 0);
        free(block);
        ds_node_free(&ref);
    }
}

static void peek_project(void **state)
{
    (void)state;
    ds_node a;
    make(&a);
    uint8_t *buf;
    size_t len;
    assert_int_equal(ds_node_encode(&a, &buf, &len), 0);
    const char *p;
    size_t pl;
    assert_int_equal(ds_node_peek_project(buf, len, &p, &pl), 0);
    assert_int_equal(pl, strlen("/a/proj"));
    assert_memory_equal(p, "/a/proj", pl);
    assert_true(p > (const char *)buf && p < (const char *)buf + len);   /* points into buf */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = ds_node_peek_project(buf, cut, &p, &pl);
        assert_true(rc == DS_ERR_TRUNCATED || rc == DS_ERR_MALFORMED);
        assert_int_equal(pl, 0);
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0xc0;
    assert_int_equal(ds_node_peek_project(longer, len + 1, &p, &pl), DS_ERR_MALFORMED);
    free(longer);
    free(buf);
    /* Without a project (an older writer): "". */
    static const uint8_t noproj[] = { 0x81, 0xa2, 'i', 'd', 0x01 };
    assert_int_equal(ds_node_peek_project(noproj, sizeof noproj, &p, &pl), 0);
    assert_int_equal(pl, 0);
    assert_string_equal(p, "");
    /* Not a map, and a project that is not a string. */
    static const uint8_t notmap[] = { 0x91, 0x01 };
    assert_int_equal(ds_node_peek_project(notmap, sizeof notmap, &p, &pl), DS_ERR_MALFORMED);
    static const uint8_t intproj[] = { 0x81, 0xa7, 'p', 'r', 'o', 'j', 'e', 'c', 't', 0x05 };
    assert_int_equal(ds_node_peek_project(intproj, sizeof intproj, &p, &pl), DS_ERR_MALFORMED);
    ds_node_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),
        cmocka_unit_test(truncated_everywhere),
        cmocka_unit_test(forward_compat_and_bad_fields),
        cmocka_unit_test(hostile_sizes),
        cmocka_unit_test(msgread_ints),
        cmocka_unit_test(uuids),
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(peek_project),
        cmocka_unit_test(decode_prefix),
        cmocka_unit_test(decode_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
