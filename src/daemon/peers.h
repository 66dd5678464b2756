/*
 * peers.h - the P2P files of the home directory (P2P spec, "Storage
 * Layout" and "Configuration Files"): identity.key, share.json,
 * peers.json, the per-peer replicas peers/<node_id>/ with their
 * meta.json, and the peers/.lock write lock.
 *
 * JSON files are read and written with jansson; the parsed document is
 * kept so that fields this version does not know survive a rewrite.  A
 * malformed file gives "<path>: <problem> (line N)" in the caller's error
 * buffer, never a crash, and every write goes to a temporary file that is
 * renamed into place, so a file is never half-written.  A NodeId is
 * validated (64 lowercase hex digits) before it is ever used in a path.
 *
 * Functions return 0 or a negative DS_ERR_*; those taking |err| fill it
 * with a complete sentence on failure.
 */
#ifndef DS_PEERS_H
#define DS_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "ds/store.h"
#include "core/identity.h"
#include "core/sync.h"

#define DS_PEERS_LOCK_TIMEOUT_MS 30000
#define DS_PEER_NAME_MAX 64
#define DS_PEER_SHORT_ID 8              /* hex digits of a label without a name */
#define DS_PEER_MAX_ADDRS 8             /* "addrs" entries per peer */
#define DS_ADDR_MAX 300                 /* "host:port" text, NUL included */
#define DS_HOST_MAX 253                 /* longest host name (DNS) */
#define DS_TICKET_PREFIX "ds1:"
#define DS_TICKET_MAX (4 + DS_NODE_ID_HEX + 1 + DS_PEER_MAX_ADDRS * DS_ADDR_MAX)

/* ---- identity.key ------------------------------------------------------ */

/* Loads |home|/identity.key.  DS_ERR_NOTFOUND when there is none (not an
 * error message worth printing: the caller suggests `ds peer init`),
 * DS_ERR_MALFORMED / DS_ERR_VERSION / DS_ERR_IO with |err| set.  A file
 * other users may read or write (mode & 077) is set back to 0600 first,
 * with a warning through ds_peers_set_warn's function (a failed chmod is
 * a warning too, once per process); the load goes on either way. */
int ds_peers_identity_load(const char *home, ds_identity *id, char *err, size_t errlen);
/* Sends the warnings of this module (one sentence each, no trailing
 * newline) to |fn|, which must not keep |msg|; NULL (the default) logs
 * them (DS_LOGW: the daemon's log).  Set it once, before other threads
 * load files. */
void ds_peers_set_warn(void (*fn)(const char *msg));
/* Writes identity.key (mode 0600, atomically).  Without |force| an existing
 * file is kept and DS_ERR_EXISTS returned.  Creates |home| if needed. */
int ds_peers_identity_save(const char *home, const ds_identity *id, int force, char *err,
                           size_t errlen);

/* ---- share.json -------------------------------------------------------- */

typedef struct ds_share_cfg {
    json_t *root;          /* the document (extra fields kept) */
    char **paths;          /* shared_projects, as listed */
    size_t n;
} ds_share_cfg;

/* Loads |home|/share.json; a missing file is an empty list.  Errors:
 * DS_ERR_MALFORMED (with |err|: path, problem, line), DS_ERR_IO, NOMEM. */
int ds_share_cfg_load(const char *home, ds_share_cfg *c, char *err, size_t errlen);
int ds_share_cfg_save(const char *home, const ds_share_cfg *c, char *err, size_t errlen);
void ds_share_cfg_free(ds_share_cfg *c);
/* Adds canonical |path|: DS_ERR_EXISTS if listed already. */
int ds_share_cfg_add(ds_share_cfg *c, const char *path);
/* Removes |path|: DS_ERR_NOTFOUND if not listed. */
int ds_share_cfg_remove(ds_share_cfg *c, const char *path);
/* The listed path that |path| (canonical, absolute) equals or lies
 * beneath, by the share set's rule (ds_path_within: "/a/p" covers
 * "/a/p/x", not "/a/p-x"); NULL when none.  Points into |c|. */
const char *ds_share_cfg_covering(const ds_share_cfg *c, const char *path);
/* The share set for the sync engine. */
int ds_share_cfg_set(const ds_share_cfg *c, ds_share_set *out);

/* ---- peers.json -------------------------------------------------------- */

typedef struct ds_peer {
    char node_id[DS_NODE_ID_HEX + 1];
    const char *name;      /* NULL when unnamed; points into the document */
    int subscribe, publish;
    const char *last_sync; /* ISO 8601, or NULL (never); into the document */
    /* Network addresses ("host:port", "[v6]:port"), into the document. */
    const char *addrs[DS_PEER_MAX_ADDRS];
    size_t naddrs;
    /* The last network sync attempt (NULL when none): when, "ok" or the
     * error text, the address used and the path kind ("direct"/"relay"). */
    const char *last_attempt, *last_result, *last_addr, *last_path;
} ds_peer;

typedef struct ds_peers_cfg {
    json_t *root;
    ds_peer *peers;        /* rebuilt after each change */
    size_t n;
} ds_peers_cfg;

/* Loads |home|/peers.json (missing: no peers).  Checks every NodeId, the
 * field types and that names are unique.  DS_ERR_MALFORMED with |err|. */
int ds_peers_cfg_load(const char *home, ds_peers_cfg *c, char *err, size_t errlen);
int ds_peers_cfg_save(const char *home, const ds_peers_cfg *c, char *err, size_t errlen);
void ds_peers_cfg_free(ds_peers_cfg *c);
/* This node's NodeId in the file ("node_id"). */
int ds_peers_cfg_set_self(ds_peers_cfg *c, const char *node_id);
/* The peer with NodeId |id|, or the one named |name|; NULL if none. */
const ds_peer *ds_peers_find(const ds_peers_cfg *c, const char *id);
const ds_peer *ds_peers_find_name(const ds_peers_cfg *c, const char *name);
/* Resolves a peer given by name, NodeId or a NodeId prefix of at least
 * DS_PEER_SHORT_ID hex digits (the label of an unnamed peer), in any case;
 * whitespace around |arg| is ignored.  An exact name wins over a prefix.
 * 0 with *out set, DS_ERR_NOTFOUND, or DS_ERR_AMBIGUOUS when the prefix
 * starts several NodeIds (|matches|, optional: their labels, ", "
 * separated). */
int ds_peers_resolve(const ds_peers_cfg *c, const char *arg, const ds_peer **out,
                     char *matches, size_t mlen);
/* ds_peers_resolve's peer, or NULL (not found or ambiguous). */
const ds_peer *ds_peers_lookup(const ds_peers_cfg *c, const char *id_or_name);
/* Adds or updates peer |id|: |name| NULL keeps the name; |subscribe| and
 * |publish| are 0/1, or -1 to keep (new peers: subscribe 1, publish 0).
 * *created (optional) tells whether it is new.  DS_ERR_INVALID (bad id),
 * DS_ERR_EXISTS (another peer has that name), DS_ERR_NOMEM. */
int ds_peers_upsert(ds_peers_cfg *c, const char *id, const char *name, int subscribe,
                    int publish, int *created);
/* DS_ERR_NOTFOUND if absent. */
int ds_peers_remove(ds_peers_cfg *c, const char *id);
int ds_peers_set_last_sync(ds_peers_cfg *c, const char *id, const char *iso);
/* Adds addresses (each checked with ds_addr_parse; duplicates skipped) to
 * peer |id|, keeping at most DS_PEER_MAX_ADDRS (the newest win: older
 * ones are dropped first).  *added (optional) counts the new ones; the
 * addresses dropped to make room go to |dropped| (optional, room for
 * DS_PEER_MAX_ADDRS), their number to *ndropped.  |n| is at most
 * DS_PEER_MAX_ADDRS.  DS_ERR_NOTFOUND (no such peer), DS_ERR_INVALID (a
 * bad address, or too many: nothing changed), DS_ERR_NOMEM. */
int ds_peers_add_addrs(ds_peers_cfg *c, const char *id, const char *const *addrs, size_t n,
                       size_t *added, char (*dropped)[DS_ADDR_MAX], size_t *ndropped);
/* Records a network sync attempt of peer |id| at |when| (ISO 8601):
 * |result| "ok" or an error sentence, |addr| and |path| (NULL: unknown).
 * With |ok| last_sync becomes |when| too.  DS_ERR_NOTFOUND / NOMEM. */
int ds_peers_set_result(ds_peers_cfg *c, const char *id, const char *when, int ok,
                        const char *result, const char *addr, const char *path);

/* ---- addresses and tickets ------------------------------------------------ */

/* Parses "host:port" (host: IPv4 literal, DNS name) or "[IPv6]:port"
 * (also a bare "host" or "[v6]" when |default_port| is non-zero).  |host|
 * receives the host without brackets.  DS_ERR_INVALID with *why set to a
 * phrase ("has no port", "port out of range"...).  Refused with a phrase
 * saying what to write instead: an IPv4-mapped IPv6 address
 * ("[::ffff:127.0.0.1]:5": IPv6 sockets are V6ONLY, so it can never be
 * reached; "write 127.0.0.1:5 instead") and a zone id ("[fe80::1%lo]:5").
 * *why is a static phrase, or (when it quotes the address) a thread-local
 * buffer valid until the next call on this thread. */
int ds_addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX],
                  uint16_t *port, const char **why);
/* What to append to a reason from ds_addr_parse for a user: " (expected
 * HOST:PORT or [IPv6]:PORT)", or "" when the reason already says what to
 * write. */
const char *ds_addr_expect(const char *why);
/* ds_addr_parse for an address to listen on: the host must be an IP
 * address literal (IPv4 dotted quad, or IPv6 in brackets), since nothing
 * is resolved for a bind.  *why as for ds_addr_parse. */
int ds_listen_addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX],
                         uint16_t *port, const char **why);
/* Formats |host|:|port| ("[host]:port" when host holds ':'). */
void ds_addr_format(const char *host, uint16_t port, char out[DS_ADDR_MAX]);
/* Removes leading and trailing whitespace (space, tab, CR, LF...) of |s|
 * in place; returns the first kept character (a pasted NodeId or ticket
 * often carries a newline). */
char *ds_str_trim(char *s);
/* 1 if NodeId |id| (valid hex) is a usable Ed25519 public key (libsodium's
 * crypto_core_ed25519_is_valid_point: on the curve, canonical, not of
 * small order - the all-zero key is not), else 0. */
int ds_node_id_is_key(const char *id);
/* A ticket: "ds1:<NodeId>@<addr>,<addr>..." (no '@' part when n == 0).
 * DS_ERR_TOOLARGE if |cap| is too small. */
int ds_ticket_format(const char *node_id, const char *const *addrs, size_t n, char *out,
                     size_t cap);
/* The length of the version prefix "ds<digits>:" that |s| starts with
 * (4 for "ds1:"), or 0: tells a ticket of any version from a NodeId. */
size_t ds_ticket_version_len(const char *s);
/* Parses a ticket into |node_id| (a valid key) and up to DS_PEER_MAX_ADDRS
 * addresses (each checked by ds_addr_parse; a '@' must be followed by at
 * least one).  DS_ERR_INVALID with *why set (for a bad address it quotes
 * the address and ds_addr_parse's reason; lifetime as there).  Another
 * version ("ds2:...") is refused saying this ds reads ds1: tickets. */
int ds_ticket_parse(const char *s, char node_id[DS_NODE_ID_HEX + 1],
                    char addrs[DS_PEER_MAX_ADDRS][DS_ADDR_MAX], size_t *n, const char **why);
/* A display label: the name, else the first DS_PEER_SHORT_ID hex digits. */
const char *ds_peer_label(const ds_peer *p, char buf[DS_PEER_SHORT_ID + 1]);
/* 0 if |name| is acceptable as a new peer name: 1..64 bytes of letters,
 * digits, '-', '_', '.'; not starting with '-' (it would read as an
 * option), not "." or "..", not "local" in any case, not a NodeId.
 * peers.json entries are checked more leniently on load (names an older
 * version accepted still load). */
int ds_peer_name_check(const char *name, const char **why);

/* ---- replicas ----------------------------------------------------------- */

/* Opens the replica of peer |id| (validated first).  With |create| the
 * directories and store are created (|epoch_seed|: 16 random bytes);
 * without, a missing replica is DS_ERR_NOTFOUND. */
int ds_replica_open(const char *home, const char *id, int create, const uint8_t *epoch_seed,
                    ds_store **out);
/* 1 if peers/<id>/ exists. */
int ds_replica_exists(const char *home, const char *id);
/* home/peers/<id>, or home/peers/<id>/<sub> when |sub| is given;
 * malloc'd, NULL when |id| is not a NodeId or out of memory. */
char *ds_replica_path(const char *home, const char *id, const char *sub);
/* Deletes peers/<id>/ and everything in it (close the store first).
 * 0 also when it did not exist. */
int ds_replica_delete(const char *home, const char *id);
/* Writes peers/<id>/meta.json {node_id, name, last_sync, node_count,
 * sync_cursor (hex or null)} atomically. */
int ds_replica_meta_write(const char *home, const char *id, const char *name,
                          const char *last_sync, uint64_t node_count, const uint8_t *cursor,
                          char *err, size_t errlen);

/* ---- lock --------------------------------------------------------------- */

/* Takes peers/.lock (flock, exclusive), waiting up to |timeout_ms|.
 * *fd receives the lock's descriptor.  DS_ERR_TIMEOUT when another
 * process held it all along, DS_ERR_IO otherwise (|err| set). */
int ds_peers_lock(const char *home, int timeout_ms, int *fd, char *err, size_t errlen);
void ds_peers_unlock(int fd);

#endif
