/*
 * test_identity.c - Ed25519 identity: deterministic keys from a seed,
 * NodeId text and validation, the identity.key codec (round trip and
 * rejection of damaged files), and streaming Ed25519ph signatures that
 * fail on any changed byte or another key.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "ds/error.h"
#include "core/identity.h"

static void keys_from_seed(void **state)
{
    (void)state;
    uint8_t seed[32];
    memset(seed, 7, sizeof seed);
    ds_identity a, b, c;
    assert_int_equal(ds_identity_from_seed(&a, seed), 0);
    assert_int_equal(ds_identity_from_seed(&b, seed), 0);
    assert_memory_equal(a.pk, b.pk, 32);
    assert_string_equal(a.node_id, b.node_id);
    assert_int_equal(strlen(a.node_id), 64);
    assert_true(ds_node_id_valid(a.node_id));
    seed[0] ^= 1;
    assert_int_equal(ds_identity_from_seed(&c, seed), 0);
    assert_string_not_equal(a.node_id, c.node_id);
    uint8_t pk[32];
    assert_int_equal(ds_node_id_parse(a.node_id, pk), 0);
    assert_memory_equal(pk, a.pk, 32);
    ds_identity_wipe(&c);
    for (size_t i = 0; i < sizeof c.sk; i++)
        assert_int_equal(c.sk[i], 0);
}

static void node_id_validation(void **state)
{
    (void)state;
    char id[80];
    memset(id, 'a', 64);
    id[64] = 0;
    assert_true(ds_node_id_valid(id));
    id[10] = 'A';                       /* uppercase refused */
    assert_false(ds_node_id_valid(id));
    id[10] = 'g';
    assert_false(ds_node_id_valid(id));
    id[10] = 'a';
    id[63] = 0;                         /* 63 digits */
    assert_false(ds_node_id_valid(id));
    id[63] = 'a';
    id[64] = 'a';                       /* 65 digits */
    id[65] = 0;
    assert_false(ds_node_id_valid(id));
    assert_false(ds_node_id_valid(""));
    assert_false(ds_node_id_valid(NULL));
    assert_false(ds_node_id_valid("../../etc/passwd"));
    uint8_t pk[32];
    assert_int_equal(ds_node_id_parse("abc", pk), DS_ERR_INVALID);
}

static void file_codec(void **state)
{
    (void)state;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    ds_identity a, b;
    assert_int_equal(ds_identity_from_seed(&a, seed), 0);
    char buf[DS_IDENTITY_FILE_MAX];
    size_t len;
    ds_identity_encode(&a, buf, &len);
    assert_true(len > 64 && len < sizeof buf);
    assert_int_equal(buf[len - 1], '\n');
    assert_int_equal(ds_identity_decode(buf, len, &b), 0);
    assert_memory_equal(a.sk, b.sk, 64);
    assert_string_equal(a.node_id, b.node_id);
    /* without the final newline, and with CRLF */
    assert_int_equal(ds_identity_decode(buf, len - 1, &b), 0);
    char crlf[DS_IDENTITY_FILE_MAX + 1];
    memcpy(crlf, buf, len - 1);
    memcpy(crlf + len - 1, "\r\n", 2);
    assert_int_equal(ds_identity_decode(crlf, len + 1, &b), 0);
    /* every truncation and every single-byte change of the framing fails */
    for (size_t cut = 0; cut + 1 < len; cut++)
        assert_true(ds_identity_decode(buf, cut, &b) < 0);
    char bad[DS_IDENTITY_FILE_MAX];
    memcpy(bad, buf, len);
    bad[len - 5] = 'Z';
    assert_int_equal(ds_identity_decode(bad, len, &b), DS_ERR_MALFORMED);
    memcpy(bad, buf, len);
    bad[13] = '2';                      /* ds-identity-v2 */
    assert_int_equal(ds_identity_decode(bad, len, &b), DS_ERR_VERSION);
    memcpy(bad, buf, len);
    memcpy(bad + len, "x", 1);          /* trailing garbage */
    assert_int_equal(ds_identity_decode(bad, len + 1, &b), DS_ERR_MALFORMED);
    assert_int_equal(ds_identity_decode("hello", 5, &b), DS_ERR_MALFORMED);
}

static void sign_verify(void **state)
{
    (void)state;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    ds_identity a, other;
    assert_int_equal(ds_identity_from_seed(&a, seed), 0);
    seed[3] ^= 0x40;
    assert_int_equal(ds_identity_from_seed(&other, seed), 0);
    uint8_t msg[3000];
    ds_test_random(msg, sizeof msg);
    uint8_t sig[64];
    ds_signer s;
    ds_signer_init(&s);
    ds_signer_update(&s, msg, 1000);
    ds_signer_update(&s, msg + 1000, 2000);
    assert_int_equal(ds_signer_final(&s, &a, sig), 0);
    /* the same bytes in other pieces verify */
    ds_signer_init(&s);
    for (size_t i = 0; i < sizeof msg; i += 7)
        ds_signer_update(&s, msg + i, sizeof msg - i < 7 ? sizeof msg - i : 7);
    assert_int_equal(ds_signer_verify(&s, a.pk, sig), 0);
    /* another key, a changed byte, a changed signature: all fail */
    ds_signer_init(&s);
    ds_signer_update(&s, msg, sizeof msg);
    assert_int_equal(ds_signer_verify(&s, other.pk, sig), DS_ERR_CRYPTO);
    msg[1500] ^= 1;
    ds_signer_init(&s);
    ds_signer_update(&s, msg, sizeof msg);
    assert_int_equal(ds_signer_verify(&s, a.pk, sig), DS_ERR_CRYPTO);
    msg[1500] ^= 1;
    sig[10] ^= 1;
    ds_signer_init(&s);
    ds_signer_update(&s, msg, sizeof msg);
    assert_int_equal(ds_signer_verify(&s, a.pk, sig), DS_ERR_CRYPTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_from_seed),
        cmocka_unit_test(node_id_validation),
        cmocka_unit_test(file_codec),
        cmocka_unit_test(sign_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
