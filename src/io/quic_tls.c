/*
 * quic_tls.c - the TLS half of the QUIC endpoint: a self-signed Ed25519
 * certificate made with wolfSSL's cert-gen API from the node's identity
 * key, the client and server wolfSSL contexts configured for QUIC by
 * ngtcp2's helper (mutual TLS 1.3, no session tickets, ALPN offered on
 * both sides), and the verify callback that pins the peer's key.
 *
 * Pinning: there is no CA.  A peer's certificate is "signed by nobody we
 * trust", so wolfSSL reports no-signer for it; the verify callback
 * overrides exactly that error, and only when the certificate's raw
 * Ed25519 key is the expected NodeId (dialer) or is a well-formed
 * Ed25519 key (listener, which learns it).  TLS itself proves the peer
 * holds the private key (CertificateVerify).  See docs/transport.md.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/quic.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include <sodium.h>
#include <string.h>

#include "ds/error.h"
#include "io/quic_int.h"

/* DER SubjectPublicKeyInfo of an Ed25519 key: this prefix + 32 key bytes. */
static const uint8_t ED25519_SPKI_PREFIX[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

#define CERT_MAX 1024
#define KEY_DER_MAX 256

/* Makes the certificate and key DER from |sk| (seed || public key). */
static int make_cert(const uint8_t sk[64], uint8_t *cert, int *cert_len, uint8_t *key_der,
                     int *key_len)
{
    ed25519_key key;
    WC_RNG rng;
    Cert c;
    int rc = DS_ERR_CRYPTO;

    if (wc_ed25519_init(&key) != 0)
        return DS_ERR_CRYPTO;
    if (wc_InitRng(&rng) != 0)
        goto fail_rng;
    if (wc_ed25519_import_private_key(sk, 32, sk + 32, 32, &key) != 0)
        goto fail;
    if (wc_InitCert(&c) != 0)
        goto fail;
    /* The subject carries no meaning (peers are identified by the key);
     * a fixed name keeps the certificate free of identifying strings. */
    strncpy(c.subject.commonName, "datasphere", CTC_NAME_SIZE - 1);
    c.sigType = CTC_ED25519;
    c.daysValid = 3650;
    c.isCA = 0;
    c.selfSigned = 1;
    if (wc_MakeCert_ex(&c, cert, CERT_MAX, ED25519_TYPE, &key, &rng) < 0)
        goto fail;
    int n = wc_SignCert_ex(c.bodySz, c.sigType, cert, CERT_MAX, ED25519_TYPE, &key, &rng);
    if (n <= 0)
        goto fail;
    *cert_len = n;
    n = wc_Ed25519KeyToDer(&key, key_der, KEY_DER_MAX);
    if (n <= 0)
        goto fail;
    *key_len = n;
    rc = 0;
fail:
    wc_FreeRng(&rng);
fail_rng:
    wc_ed25519_free(&key);
    return rc;
}

/* The verify callback: runs for each certificate of the peer's chain,
 * and also when wolfSSL found no error (WOLFSSL_ALWAYS_VERIFY_CB). */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *st)
{
    ds_quic_pin *pin = st ? (ds_quic_pin *)st->userCtx : NULL;
    if (!pin)
        return 0;
    /* Only a lone self-signed leaf is acceptable. */
    if (st->error_depth != 0 || !st->current_cert)
        return 0;
    if (!preverify && st->error != ASN_NO_SIGNER_E && st->error != ASN_SELF_SIGNED_E)
        return 0; /* bad date, bad encoding...: never overridden */
    uint8_t spki[64];
    int len = (int)sizeof spki;
    if (wolfSSL_X509_get_pubkey_buffer(st->current_cert, spki, &len) != WOLFSSL_SUCCESS ||
        len != 44 || memcmp(spki, ED25519_SPKI_PREFIX, sizeof ED25519_SPKI_PREFIX) != 0)
        return 0;
    const uint8_t *pk = spki + 12;
    if (!pin->is_server && sodium_memcmp(pk, pin->expect, DS_NODE_PK_LEN) != 0) {
        pin->mismatch = 1;
        return 0;
    }
    memcpy(pin->peer, pk, DS_NODE_PK_LEN);
    pin->have_peer = 1;
    st->error = 0;
    return 1;
}

static WOLFSSL_CTX *make_ctx(int is_server, const uint8_t *cert, int cert_len,
                             const uint8_t *key_der, int key_len)
{
    WOLFSSL_CTX *ctx =
        wolfSSL_CTX_new(is_server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method());
    if (!ctx)
        return NULL;
    int ok = (is_server ? ngtcp2_crypto_wolfssl_configure_server_context(ctx)
                        : ngtcp2_crypto_wolfssl_configure_client_context(ctx)) == 0 &&
             wolfSSL_CTX_use_certificate_buffer(ctx, cert, cert_len, WOLFSSL_FILETYPE_ASN1) ==
                 WOLFSSL_SUCCESS &&
             wolfSSL_CTX_use_PrivateKey_buffer(ctx, key_der, key_len, WOLFSSL_FILETYPE_ASN1) ==
                 WOLFSSL_SUCCESS &&
             wolfSSL_CTX_set1_curves_list(ctx, "X25519:P-256") == WOLFSSL_SUCCESS;
    if (ok && is_server)
        ok = wolfSSL_CTX_no_ticket_TLSv13(ctx) == 0;
    if (!ok) {
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           verify_cb);
    return ctx;
}

int ds_quic_tls_init(ds_quic_tls *t, const uint8_t sk[64], const char *alpn)
{
    memset(t, 0, sizeof *t);
    size_t alen = alpn ? strlen(alpn) : 0;
    if (!sk || alen == 0 || alen > DS_QUIC_ALPN_MAX)
        return DS_ERR_INVALID;
    /* The secret key must be seed || public key of that seed. */
    uint8_t pk[32], sk2[64];
    if (crypto_sign_seed_keypair(pk, sk2, sk) != 0 || sodium_memcmp(pk, sk + 32, 32) != 0) {
        sodium_memzero(sk2, sizeof sk2);
        return DS_ERR_CRYPTO;
    }
    sodium_memzero(sk2, sizeof sk2);
    memcpy(t->alpn_wire, alpn, alen);
    t->alpn_len = alen;

    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return DS_ERR_CRYPTO;
    uint8_t cert[CERT_MAX], key_der[KEY_DER_MAX];
    int cert_len = 0, key_len = 0;
    int rc = make_cert(sk, cert, &cert_len, key_der, &key_len);
    if (rc)
        goto fail;
    rc = DS_ERR_CRYPTO;
    t->client = make_ctx(0, cert, cert_len, key_der, key_len);
    if (!t->client)
        goto fail;
    t->server = make_ctx(1, cert, cert_len, key_der, key_len);
    if (!t->server)
        goto fail_server;
    sodium_memzero(key_der, sizeof key_der);
    return 0;
fail_server:
    wolfSSL_CTX_free(t->client);
    t->client = NULL;
fail:
    sodium_memzero(key_der, sizeof key_der);
    wolfSSL_Cleanup();
    return rc;
}

void ds_quic_tls_free(ds_quic_tls *t)
{
    if (!t->client)
        return;
    wolfSSL_CTX_free(t->client);
    wolfSSL_CTX_free(t->server);
    t->client = t->server = NULL;
    wolfSSL_Cleanup();
}

WOLFSSL *ds_quic_tls_session(ds_quic_tls *t, int is_server, ds_quic_pin *pin, void *app_data)
{
    WOLFSSL *ssl = wolfSSL_new(is_server ? t->server : t->client);
    if (!ssl)
        return NULL;
    wolfSSL_set_app_data(ssl, app_data);
    wolfSSL_SetCertCbCtx(ssl, pin);
    if (is_server)
        wolfSSL_set_accept_state(ssl);
    else
        wolfSSL_set_connect_state(ssl);
    if (wolfSSL_UseALPN(ssl, (char *)t->alpn_wire, (unsigned)t->alpn_len,
                        WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS) {
        wolfSSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int ds_quic_tls_alpn_ok(ds_quic_tls *t, WOLFSSL *ssl)
{
    char *name = NULL;
    unsigned short len = 0;
    if (wolfSSL_ALPN_GetProtocol(ssl, &name, &len) != WOLFSSL_SUCCESS || !name)
        return 0;
    return len == t->alpn_len && memcmp(name, t->alpn_wire, len) == 0;
}
