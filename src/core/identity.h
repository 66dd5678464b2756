/*
 * identity.h - this node's Ed25519 identity (P2P spec, "identity.key"):
 * the keypair, its NodeId (the public key as 64 lowercase hex digits),
 * the identity.key file codec, and streaming Ed25519ph signatures for
 * export files.  Sans-IO: the caller supplies the 32 seed bytes (drawn
 * with randombytes_buf by the daemon layer) and reads/writes the file.
 * All cryptography is libsodium's; nothing here is hand-written crypto.
 *
 * identity.key is one line of text: "ds-identity-v1 ed25519 <seed hex>\n".
 * The keypair is re-derived from the seed, so the file cannot hold a
 * public key that does not match its secret.
 */
#ifndef DS_IDENTITY_H
#define DS_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sodium.h>

#define DS_NODE_ID_LEN 32                  /* public key bytes */
#define DS_NODE_ID_HEX 64                  /* its hex length */
#define DS_IDENTITY_SEED_LEN 32
#define DS_SIG_LEN 64
#define DS_IDENTITY_FILE_MAX 256           /* identity.key is never larger */

typedef struct ds_identity {
    uint8_t pk[DS_NODE_ID_LEN];
    uint8_t sk[64];                        /* libsodium secret key (seed + pk) */
    char node_id[DS_NODE_ID_HEX + 1];      /* hex of pk, NUL-terminated */
} ds_identity;

/* Derives the keypair from |seed| (32 bytes).  Returns 0 or DS_ERR_CRYPTO. */
int ds_identity_from_seed(ds_identity *id, const uint8_t seed[DS_IDENTITY_SEED_LEN]);
/* Wipes the secret key. */
void ds_identity_wipe(ds_identity *id);

/* Writes the identity.key text of |id| into |out| (room for
 * DS_IDENTITY_FILE_MAX bytes); *len receives its length. */
void ds_identity_encode(const ds_identity *id, char *out, size_t *len);
/* Parses identity.key text.  Returns 0, DS_ERR_MALFORMED (not an identity
 * file, bad hex), DS_ERR_VERSION (another format version) or DS_ERR_CRYPTO. */
int ds_identity_decode(const char *text, size_t len, ds_identity *id);

/* 1 if |s| is exactly 64 lowercase hex digits (a NodeId), else 0.  Check
 * this before a NodeId is ever used in a path. */
int ds_node_id_valid(const char *s);
/* Decodes a valid NodeId into its 32 public-key bytes: 0 or DS_ERR_INVALID. */
int ds_node_id_parse(const char *s, uint8_t pk[DS_NODE_ID_LEN]);

/* Streaming Ed25519ph (libsodium crypto_sign_init/update/final_*). */
typedef struct ds_signer {
    crypto_sign_state st;
} ds_signer;

void ds_signer_init(ds_signer *s);
void ds_signer_update(ds_signer *s, const void *data, size_t len);
/* Signs everything fed so far with |id|.  0 or DS_ERR_CRYPTO. */
int ds_signer_final(ds_signer *s, const ds_identity *id, uint8_t sig[DS_SIG_LEN]);
/* Checks |sig| over everything fed so far against public key |pk|.
 * 0, or DS_ERR_CRYPTO when the signature does not verify. */
int ds_signer_verify(ds_signer *s, const uint8_t pk[DS_NODE_ID_LEN], const uint8_t sig[DS_SIG_LEN]);

#endif
