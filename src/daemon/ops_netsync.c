/*
 * ops_netsync.c - the network sync requests: peer_sync (start a sync job
 * in the daemon, or run it to the end in process when no daemon runs),
 * peer_sync_status (poll a daemon job) and peer_ticket (this node's
 * NodeId and reachable addresses on one line, for `ds peer add TICKET`).
 * The network work itself is daemon/netsync.c.
 */
#include "daemon/ops.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "daemon/config.h"
#include "daemon/home.h"
#include "daemon/netsync.h"
#include "daemon/peers.h"
#include "io/quic.h"

#define ERRLEN 1024

static int peers_fail(ds_ctx *ctx, int rc, const char *err)
{
    if (rc == DS_ERR_NOMEM)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
    return ds_ops_fail(ctx, rc, DS_OPS_E_BAD_CONFIG,
                       "Fix the file by hand, or move it away to start over.", "%s", err);
}

static int need_identity(ds_ctx *ctx, ds_identity *id)
{
    char err[ERRLEN] = "";
    int rc = ds_peers_identity_load(ctx->home, id, err, sizeof err);
    if (rc == DS_ERR_NOTFOUND)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NO_IDENTITY, "Run: ds peer init",
                           "this node has no identity yet");
    return rc ? peers_fail(ctx, rc, err) : 0;
}

/* The in-process options: config.json's sync section, environment for tests. */
static void inproc_opts(ds_ctx *ctx, ds_netsync_opts *o)
{
    memset(o, 0, sizeof *o);
    char *path = ds_path_join(ctx->home, DS_CONFIG_FILE);
    ds_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[256];
    if (path && ds_config_load(&cfg, path, ds_user_home(), err, sizeof err) == 0)
        o->connect_timeout_ms = cfg.sync_connect_timeout_ms;
    ds_config_free(&cfg);
    free(path);
    const char *env = getenv("DS_SYNC_CONNECT_TIMEOUT_MS");
    if (env && atol(env) >= 100 && atol(env) <= 600000)
        o->connect_timeout_ms = (uint32_t)atol(env);
}

int op_peer_sync(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *raw = NULL;
    int full = 0;
    const msgpack_object *fv = ds_ops_get(params, "full");
    if (fv) {
        if (fv->type == MSGPACK_OBJECT_BOOLEAN)
            full = fv->via.boolean;
        else if (fv->type == MSGPACK_OBJECT_POSITIVE_INTEGER && fv->via.u64 <= 1)
            full = (int)fv->via.u64;
        else
            return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                               "parameter 'full' must be true or false");
    }
    int rc = ds_ops_get_str(ctx, params, "id", 0, &raw);
    if (rc)
        return rc;
    ds_identity self;
    rc = need_identity(ctx, &self);
    ds_identity_wipe(&self);
    if (rc) {
        free(raw);
        return rc;
    }
    ds_peers_cfg cfg;
    char err[ERRLEN] = "";
    rc = ds_peers_cfg_load(ctx->home, &cfg, err, sizeof err);
    if (rc) {
        free(raw);
        return peers_fail(ctx, rc, err);
    }
    char ids[DS_NETSYNC_MAX_PEERS][DS_NODE_ID_HEX + 1];
    size_t n = 0;
    if (raw) {
        /* A name, a NodeId or a prefix of one (the label of an unnamed peer). */
        const ds_peer *p;
        rc = ds_ops_find_peer(ctx, &cfg, raw, &p);
        if (!rc && !p->subscribe)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                             "Subscribe first: ds peer add NAME --subscribe",
                             "we do not subscribe to '%.100s'", raw);
        else if (!rc)
            snprintf(ids[n++], sizeof ids[0], "%s", p->node_id);
    } else {
        /* Every subscribed peer.  One without an address (added only for
         * ds peer import) is skipped by the job, as ds start --sync does;
         * when no peer has an address there is nothing to do: an error. */
        size_t dialable = 0, over = 0;
        char noaddr[256] = "";
        int more = 0;
        for (size_t i = 0; i < cfg.n; i++) {
            const ds_peer *p = &cfg.peers[i];
            if (!p->subscribe)
                continue;
            if (n == DS_OPS_MAX_SUBSCRIBED) {   /* only a hand-edited peers.json */
                over++;
                continue;
            }
            snprintf(ids[n++], sizeof ids[0], "%s", p->node_id);
            if (p->naddrs) {
                dialable++;
                continue;
            }
            if (more)
                continue;
            /* Named in the error below, as many as fit. */
            char sid[DS_PEER_SHORT_ID + 1];
            const char *lb = ds_peer_label(p, sid);
            size_t l = strlen(noaddr);
            if (l + strlen(lb) + 8 < sizeof noaddr) {
                snprintf(noaddr + l, sizeof noaddr - l, "%s%s", l ? ", " : "", lb);
            } else {
                snprintf(noaddr + l, sizeof noaddr - l, ", ...");
                more = 1;
            }
        }
        if (over)
            rc = ds_ops_fail(ctx, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE,
                             "Sync some by name (ds peer sync NAME), or unsubscribe some: "
                             "ds peer add NAME --no-subscribe",
                             "%zu peers are subscribed; a sync of every peer takes at most %d",
                             n + over, DS_OPS_MAX_SUBSCRIBED);
        else if (!n)
            rc = ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND,
                             "Add one with: ds peer add TICKET --name NAME (the ticket is "
                             "printed by ds peer ticket on the other machine)",
                             "there are no subscribed peers to sync with");
        else if (!dialable) {
            char hint[512];
            snprintf(hint, sizeof hint,
                     "Add an address with: ds peer add %s --addr HOST:PORT, or add the "
                     "peer's ticket (printed by ds peer ticket on its machine); a peer "
                     "without one gets nodes only through ds peer import",
                     n == 1 ? noaddr : "NAME");
            rc = ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND, hint,
                             n == 1 ? "the only subscribed peer, %s, has no address to sync "
                                      "with"
                                    : "none of the subscribed peers (%s) has an address to "
                                      "sync with",
                             noaddr);
        }
    }
    ds_peers_cfg_free(&cfg);
    int raw_given = raw != NULL;
    free(raw);
    if (rc)
        return rc;
    if (ctx->netsync) {
        uint64_t job;
        rc = ds_netsync_sync(ctx->netsync, (const char (*)[DS_NODE_ID_HEX + 1])ids, n, full,
                             !raw_given, &job);
        if (rc)
            return ds_ops_fail(ctx, rc, rc == DS_ERR_NOMEM ? DS_OPS_E_NOMEM : DS_OPS_E_INTERNAL,
                               NULL, "cannot start the sync: %s", ds_strerror(rc));
        return ds_netsync_job_pack(ctx->netsync, job, reply);
    }
    ds_netsync_opts o;
    inproc_opts(ctx, &o);
    rc = ds_netsync_run(ctx, (const char (*)[DS_NODE_ID_HEX + 1])ids, n, full, !raw_given, &o,
                        NULL, NULL, reply);
    if (rc)
        return ds_ops_fail(ctx, rc, rc == DS_ERR_NOMEM ? DS_OPS_E_NOMEM : DS_OPS_E_IO, NULL,
                           "cannot run the sync: %s", ds_strerror(rc));
    return 0;
}

/* The daemon's job named by params {job, instance?}: 0 and *id, or the
 * reply's error. */
static int job_param(ds_ctx *ctx, const msgpack_object *params, uint64_t *id)
{
    const msgpack_object *jv = ds_ops_get(params, "job");
    if (!jv || jv->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "parameter 'job' (a job number from peer_sync) is required");
    /* The instance of the daemon that started the job (optional): job
     * numbers restart with each daemon. */
    const msgpack_object *iv = ds_ops_get(params, "instance");
    if (iv && (iv->type != MSGPACK_OBJECT_POSITIVE_INTEGER || iv->via.u64 > UINT32_MAX))
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "parameter 'instance' must be the number peer_sync returned");
    if (iv && (!ctx->netsync || ds_netsync_instance(ctx->netsync) != iv->via.u64))
        return ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND,
                           "Run ds peer sync again: it continues from the last page written "
                           "(ds peer list shows the last result).",
                           "sync job %llu was interrupted: the daemon that ran it has stopped",
                           (unsigned long long)jv->via.u64);
    if (!ctx->netsync)
        return ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND,
                           "Sync jobs live in the daemon: start it with ds start.",
                           "no daemon sync job %llu", (unsigned long long)jv->via.u64);
    *id = jv->via.u64;
    return 0;
}

/* Replies with job |id|'s status; |rc| is that of what came before. */
static int job_reply(ds_ctx *ctx, int rc, uint64_t id, msgpack_packer *reply)
{
    if (!rc)
        rc = ds_netsync_job_pack(ctx->netsync, id, reply);
    if (rc)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NOT_FOUND, NULL, "no sync job %llu",
                           (unsigned long long)id);
    return 0;
}

int op_peer_sync_status(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    uint64_t id = 0;
    int rc = job_param(ctx, params, &id);
    return rc ? rc : job_reply(ctx, 0, id, reply);
}

int op_peer_sync_cancel(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    uint64_t id = 0;
    int rc = job_param(ctx, params, &id);
    if (rc)
        return rc;
    /* What stopped it, as the job reply will say: a signal's name from
     * the CLI, or "cancel". */
    char cause[16] = "cancel";
    const msgpack_object *cv = ds_ops_get(params, "cause");
    if (cv) {
        int ok = cv->type == MSGPACK_OBJECT_STR && cv->via.str.size > 0 &&
                 cv->via.str.size < sizeof cause;
        for (uint32_t i = 0; ok && i < cv->via.str.size; i++) {
            char ch = cv->via.str.ptr[i];
            ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-';
        }
        if (!ok)
            return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                               "parameter 'cause' must be 1 to %zu letters, digits, '_' or '-' "
                               "(such as SIGINT)", sizeof cause - 1);
        memcpy(cause, cv->via.str.ptr, cv->via.str.size);
        cause[cv->via.str.size] = 0;
    }
    char why[64];
    if (cv)
        snprintf(why, sizeof why, "interrupted by %s", cause);
    else
        snprintf(why, sizeof why, "cancelled");
    return job_reply(ctx, ds_netsync_job_stop(ctx->netsync, id, cause, why), id, reply);
}

/* Expands a wildcard address (0.0.0.0 / ::) to this machine's interface
 * addresses of that family: non-loopback ones, else loopback. */
static void expand_addr(const char *a, char out[DS_PEER_MAX_ADDRS][DS_ADDR_MAX], size_t *n)
{
    char host[DS_ADDR_MAX];
    uint16_t port;
    const char *why;
    if (ds_addr_parse(a, DS_QUIC_DEFAULT_PORT, host, &port, &why) != 0)
        return;
    int v4 = strcmp(host, "0.0.0.0") == 0, v6 = strcmp(host, "::") == 0;
    if (!v4 && !v6) {
        if (*n < DS_PEER_MAX_ADDRS)
            ds_addr_format(host, port, out[(*n)++]);
        return;
    }
    uv_interface_address_t *ifs = NULL;
    int cnt = 0;
    if (uv_interface_addresses(&ifs, &cnt) != 0)
        cnt = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t before = *n;
        for (int i = 0; i < cnt && *n < DS_PEER_MAX_ADDRS; i++) {
            const uv_interface_address_t *f = &ifs[i];
            if (f->is_internal != pass)
                continue;
            char h[INET6_ADDRSTRLEN];
            if (v4 && f->address.address4.sin_family == AF_INET)
                inet_ntop(AF_INET, &f->address.address4.sin_addr, h, sizeof h);
            else if (v6 && f->address.address6.sin6_family == AF_INET6 &&
                     !IN6_IS_ADDR_LINKLOCAL(&f->address.address6.sin6_addr))
                inet_ntop(AF_INET6, &f->address.address6.sin6_addr, h, sizeof h);
            else
                continue;
            char fa[DS_ADDR_MAX];
            ds_addr_format(h, port, fa);
            int dup = 0;
            for (size_t k = 0; k < *n; k++)
                dup |= strcmp(out[k], fa) == 0;
            if (!dup)
                snprintf(out[(*n)++], DS_ADDR_MAX, "%s", fa);
        }
        if (*n > before)
            break;
    }
    uv_free_interface_addresses(ifs, cnt);
}

/* Whether some peer in peers.json has publish on (the daemon listens on
 * its default address only then): 1 / 0, or the failure recorded. */
static int any_publish(ds_ctx *ctx, int *publish)
{
    ds_peers_cfg pc;
    char err[ERRLEN] = "";
    int rc = ds_peers_cfg_load(ctx->home, &pc, err, sizeof err);
    if (rc)
        return peers_fail(ctx, rc, err);
    *publish = 0;
    for (size_t i = 0; i < pc.n; i++)
        *publish |= pc.peers[i].publish;
    ds_peers_cfg_free(&pc);
    return 0;
}

#define TICKET_NO_PUBLISH "no peer may pull from us yet (the daemon listens once one may: " \
                          "ds peer add ID --publish)"

/* Where this node accepts syncs, or would: |bound| receives the addresses
 * (as configured or bound, before wildcard expansion), *listening whether
 * the daemon accepts syncs on them now, |why| (when not) the reason.
 * Inside the daemon: the addresses bound, else the ones its sync service
 * was started with (--listen, sync.listen or the default); a bind that
 * failed is tried again here, so the answer is current.  Without a
 * daemon: config.json's sync.listen or the default; a config.json that
 * cannot be loaded is an error (the daemon would refuse it too). */
static int ticket_addrs(ds_ctx *ctx, char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX], size_t *nb,
                        int *listening, char *why, size_t whylen)
{
    *nb = 0;
    *listening = 0;
    why[0] = '\0';
    int publish = 0, rc;
    if (ctx->netsync) {
        ds_netsync_bound(ctx->netsync, bound, nb);
        if (*nb) {
            *listening = 1;
            return 0;
        }
        int always = 0;
        ds_netsync_listen_addrs(ctx->netsync, bound, nb, &always);
        if (!always && (rc = any_publish(ctx, &publish)) != 0)
            return rc;
        if (*nb && !always && !publish) {
            snprintf(why, whylen, "%s", TICKET_NO_PUBLISH);
            return 0;
        }
        if (*nb) {
            char nerr[512] = "";
            if (ds_netsync_refresh(ctx->netsync, nerr, sizeof nerr) != 0) {
                snprintf(why, whylen, "%s (free that address, or set another with sync.listen "
                                      "in config.json or ds start --listen and restart the "
                                      "daemon)", nerr);
                return 0;
            }
            size_t n = 0;
            char now[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
            ds_netsync_bound(ctx->netsync, now, &n);
            if (n) {
                memcpy(bound, now, sizeof now);
                *nb = n;
                *listening = 1;
            } else {
                snprintf(why, whylen, "the daemon is not listening yet (its identity just "
                                      "changed, the old connections are closing); run ds peer "
                                      "ticket again in a moment");
            }
            return 0;
        }
        /* Fall through: the daemon's sync service has no listen address. */
    }
    if (ctx->daemon) {
        /* The daemon could not bind its default address when it started
         * and runs without listening (its log says why). */
        snprintf(bound[0], DS_ADDR_MAX, "0.0.0.0:%u", (unsigned)DS_QUIC_DEFAULT_PORT);
        *nb = 1;
        snprintf(why, whylen, "the daemon's network sync is off: it could not listen on %s when "
                              "it started (see %s/daemon.log); restart it (ds stop, then ds "
                              "start), with another address if needed (sync.listen in "
                              "config.json, or ds start --listen)",
                 bound[0], ctx->home);
        return 0;
    }
    /* No daemon: the address it would listen on, from config.json. */
    char *path = ds_path_join(ctx->home, DS_CONFIG_FILE);
    if (!path)
        return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    ds_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[ERRLEN] = "";
    rc = ds_config_load(&cfg, path, ds_user_home(), err, sizeof err);
    free(path);
    if (rc) {
        ds_config_free(&cfg);
        return ds_ops_fail(ctx, rc, rc == DS_ERR_NOMEM ? DS_OPS_E_NOMEM : DS_OPS_E_BAD_CONFIG,
                           "Fix config.json (ds start refuses it as it is), or move it away "
                           "to use the defaults.",
                           "cannot tell which address the daemon listens on: %s", err);
    }
    if (cfg.sync_listen)
        snprintf(bound[0], DS_ADDR_MAX, "%s", cfg.sync_listen);
    else
        snprintf(bound[0], DS_ADDR_MAX, "0.0.0.0:%u", (unsigned)DS_QUIC_DEFAULT_PORT);
    *nb = 1;
    rc = cfg.sync_listen ? 0 : any_publish(ctx, &publish);
    if (!rc)
        snprintf(why, whylen, "the daemon is not running (start it with ds start)%s",
                 cfg.sync_listen || publish
                     ? ""
                     : "; and " TICKET_NO_PUBLISH);
    ds_config_free(&cfg);
    return rc;
}

static void pack_in_s(msgpack_packer *pk, int64_t ms)
{
    if (ms < 0)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, (ms + 999) / 1000);
}

void ds_ops_pack_sync_status(ds_ctx *ctx, msgpack_packer *pk)
{
    char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nb = 0;
    int listening = 0;
    char why[1024] = "";
    ds_identity id;
    char err[ERRLEN] = "";
    int rc = ds_peers_identity_load(ctx->home, &id, err, sizeof err);
    if (rc == DS_ERR_NOTFOUND) {
        snprintf(why, sizeof why, "this node has no identity yet (run ds peer init)");
    } else if (rc) {
        snprintf(why, sizeof why, "%s", err);
    } else {
        ds_identity_wipe(&id);
        ds_op_error saved = ctx->error;
        if (ticket_addrs(ctx, bound, &nb, &listening, why, sizeof why) != 0) {
            snprintf(why, sizeof why, "%s", ctx->error.message);
            nb = 0;
            listening = 0;
        }
        ctx->error = saved;
    }
    ds_netsync_info in;
    ds_netsync_info_get(ctx->netsync, &in);
    msgpack_pack_map(pk, 8);
    ds_pack_cstr(pk, "listening");
    ds_pack_bool(pk, listening);
    ds_pack_cstr(pk, "addrs");
    msgpack_pack_array(pk, nb);
    for (size_t i = 0; i < nb; i++)
        ds_pack_cstr(pk, bound[i]);
    ds_pack_cstr(pk, "why");
    ds_pack_cstr(pk, listening || !why[0] ? NULL : why);
    ds_pack_cstr(pk, "interval_s");
    msgpack_pack_uint32(pk, in.interval_s);
    ds_pack_cstr(pk, "next_sync_in_s");
    pack_in_s(pk, in.next_periodic_ms);
    ds_pack_cstr(pk, "retries");
    msgpack_pack_uint64(pk, in.retries);
    ds_pack_cstr(pk, "next_retry_in_s");
    pack_in_s(pk, in.next_retry_ms);
    ds_pack_cstr(pk, "jobs_active");
    msgpack_pack_uint64(pk, in.jobs_active);
}

int op_peer_ticket(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    (void)params;
    ds_identity id;
    int rc = need_identity(ctx, &id);
    if (rc)
        return rc;
    char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nb = 0;
    int listening = 0;
    char why[1024];
    rc = ticket_addrs(ctx, bound, &nb, &listening, why, sizeof why);
    if (rc) {
        ds_identity_wipe(&id);
        return rc;
    }
    char addrs[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t na = 0;
    for (size_t i = 0; i < nb; i++)
        expand_addr(bound[i], addrs, &na);
    const char *ap[DS_PEER_MAX_ADDRS];
    for (size_t i = 0; i < na; i++)
        ap[i] = addrs[i];
    char ticket[DS_TICKET_MAX];
    rc = ds_ticket_format(id.node_id, ap, na, ticket, sizeof ticket);
    if (rc) {
        ds_identity_wipe(&id);
        return ds_ops_fail(ctx, rc, DS_OPS_E_INTERNAL, NULL, "the ticket does not fit");
    }
    msgpack_pack_map(reply, 5);
    ds_pack_cstr(reply, "node_id");
    ds_pack_cstr(reply, id.node_id);
    ds_pack_cstr(reply, "ticket");
    ds_pack_cstr(reply, ticket);
    ds_pack_cstr(reply, "addrs");
    msgpack_pack_array(reply, na);
    for (size_t i = 0; i < na; i++)
        ds_pack_cstr(reply, addrs[i]);
    ds_pack_cstr(reply, "listening");
    ds_pack_bool(reply, listening);
    /* Why this node does not accept syncs now (null when it does). */
    ds_pack_cstr(reply, "why");
    ds_pack_cstr(reply, listening ? NULL : why);
    ds_identity_wipe(&id);
    return 0;
}
