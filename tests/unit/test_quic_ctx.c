/*
 * test_quic_ctx.c - the QUIC dependency path is real: the statically
 * linked wolfSSL (built with QUIC) accepts ngtcp2's crypto helper
 * configuration on client and server contexts, and the resulting
 * sessions are QUIC sessions.  Guards against linking Debian's non-QUIC
 * wolfSSL by accident (which fails only at run time).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/quic.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include "testutil.h"

static void client_and_server_contexts(void **state)
{
    (void)state;
    assert_int_equal(wolfSSL_Init(), WOLFSSL_SUCCESS);
    WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    WOLFSSL_CTX *sctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    assert_non_null(cctx);
    assert_non_null(sctx);
    assert_int_equal(ngtcp2_crypto_wolfssl_configure_client_context(cctx), 0);
    assert_int_equal(ngtcp2_crypto_wolfssl_configure_server_context(sctx), 0);
    WOLFSSL *ssl = wolfSSL_new(cctx);
    assert_non_null(ssl);
    assert_true(wolfSSL_is_quic(ssl));
    static const char alpn[] = "ds-sync/1";
    assert_int_equal(wolfSSL_UseALPN(ssl, (char *)alpn, sizeof alpn - 1,
                                     WOLFSSL_ALPN_FAILED_ON_MISMATCH), WOLFSSL_SUCCESS);
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(cctx);
    wolfSSL_CTX_free(sctx);
    wolfSSL_Cleanup();
}

static void ngtcp2_is_the_pinned_version(void **state)
{
    (void)state;
    const ngtcp2_info *info = ngtcp2_version(0);
    assert_non_null(info);
    assert_string_equal(info->version_str, "0.12.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_and_server_contexts),
        cmocka_unit_test(ngtcp2_is_the_pinned_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
