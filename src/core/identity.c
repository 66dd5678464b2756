/*
 * identity.c - Ed25519 identity, NodeId text and identity.key codec, and
 * the streaming Ed25519ph signer used by export files (see identity.h).
 * Every cryptographic operation is a libsodium call.
 */
#include "core/identity.h"

#include <stdio.h>
#include <string.h>

#include "ds/error.h"
#include "core/util.h"

static const char MAGIC[] = "ds-identity-v";
static const char KIND[] = " ed25519 ";

int ds_identity_from_seed(ds_identity *id, const uint8_t seed[DS_IDENTITY_SEED_LEN])
{
    memset(id, 0, sizeof *id);
    if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0)
        return DS_ERR_CRYPTO;
    ds_hex_encode(id->pk, DS_NODE_ID_LEN, id->node_id);
    return 0;
}

void ds_identity_wipe(ds_identity *id)
{
    sodium_memzero(id, sizeof *id);
}

void ds_identity_encode(const ds_identity *id, char *out, size_t *len)
{
    char seed[2 * DS_IDENTITY_SEED_LEN + 1];
    /* libsodium's secret key starts with the seed. */
    ds_hex_encode(id->sk, DS_IDENTITY_SEED_LEN, seed);
    int n = snprintf(out, DS_IDENTITY_FILE_MAX, "%s1%s%s\n", MAGIC, KIND, seed);
    sodium_memzero(seed, sizeof seed);
    *len = n > 0 ? (size_t)n : 0;
}

int ds_identity_decode(const char *text, size_t len, ds_identity *id)
{
    memset(id, 0, sizeof *id);
    size_t ml = sizeof MAGIC - 1, kl = sizeof KIND - 1;
    if (len < ml + 1 || memcmp(text, MAGIC, ml) != 0)
        return DS_ERR_MALFORMED;
    if (text[ml] != '1')
        return text[ml] >= '0' && text[ml] <= '9' ? DS_ERR_VERSION : DS_ERR_MALFORMED;
    size_t p = ml + 1;
    if (len - p < kl + 2 * DS_IDENTITY_SEED_LEN || memcmp(text + p, KIND, kl) != 0)
        return DS_ERR_MALFORMED;
    p += kl;
    char hex[2 * DS_IDENTITY_SEED_LEN + 1];
    memcpy(hex, text + p, 2 * DS_IDENTITY_SEED_LEN);
    hex[2 * DS_IDENTITY_SEED_LEN] = '\0';
    p += 2 * DS_IDENTITY_SEED_LEN;
    /* Only a line end (LF or CRLF) may follow. */
    if (p < len && text[p] == '\r')
        p++;
    if (p < len && text[p] == '\n')
        p++;
    if (p != len || !ds_node_id_valid(hex)) {
        sodium_memzero(hex, sizeof hex);
        return DS_ERR_MALFORMED;
    }
    uint8_t seed[DS_IDENTITY_SEED_LEN];
    int rc = ds_hex_decode(hex, seed, sizeof seed) ? DS_ERR_MALFORMED
                                                    : ds_identity_from_seed(id, seed);
    sodium_memzero(hex, sizeof hex);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int ds_node_id_valid(const char *s)
{
    if (!s)
        return 0;
    size_t i = 0;
    for (; i < DS_NODE_ID_HEX; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return s[i] == '\0';
}

int ds_node_id_parse(const char *s, uint8_t pk[DS_NODE_ID_LEN])
{
    if (!ds_node_id_valid(s))
        return DS_ERR_INVALID;
    return ds_hex_decode(s, pk, DS_NODE_ID_LEN) ? DS_ERR_INVALID : 0;
}

void ds_signer_init(ds_signer *s)
{
    crypto_sign_init(&s->st);
}

void ds_signer_update(ds_signer *s, const void *data, size_t len)
{
    crypto_sign_update(&s->st, (const unsigned char *)data, (unsigned long long)len);
}

int ds_signer_final(ds_signer *s, const ds_identity *id, uint8_t sig[DS_SIG_LEN])
{
    return crypto_sign_final_create(&s->st, sig, NULL, id->sk) == 0 ? 0 : DS_ERR_CRYPTO;
}

int ds_signer_verify(ds_signer *s, const uint8_t pk[DS_NODE_ID_LEN], const uint8_t sig[DS_SIG_LEN])
{
    return crypto_sign_final_verify(&s->st, (unsigned char *)sig, pk) == 0 ? 0 : DS_ERR_CRYPTO;
}
