/*
 * fuzz_config.c - libFuzzer target for the parsers of what users and
 * peers hand us as text: config.json, peers.json, share.json, tickets
 * (pasted from another machine), addresses and durations (CLI args).
 * The first byte picks the parser, the rest is its input.  Any input is
 * accepted or refused without crashing, leaking or reading out of
 * bounds; a refusal always says why; what is accepted is consistent:
 *   - a ticket or address parsed, formatted and parsed again is the same;
 *   - a duration is within 1 s .. 30 days;
 *   - every peer of a loaded peers.json is found by its own NodeId;
 *   - share.json's roots are absolute paths.
 * The files go into a private temporary directory, removed at exit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/peers.h"

enum { P_CONFIG, P_PEERS, P_SHARE, P_TICKET, P_ADDR, P_LISTEN, P_DURATION, P_COUNT };

static char dir[256];
static char cfg_path[300], peers_path[300], share_path[300];

static void cleanup(void)
{
    unlink(cfg_path);
    unlink(peers_path);
    unlink(share_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ds-fuzz-config-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(peers_path, sizeof peers_path, "%s/peers.json", dir);
    snprintf(share_path, sizeof share_path, "%s/share.json", dir);
    atexit(cleanup);
    return 0;
}

static void put_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

/* |data| as a C string (cut at the first NUL, as argv would be). */
static char *cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

static void check_refusal(int rc, const char *err)
{
    if (rc > 0 || !err || !err[0])
        abort();
}

static void fuzz_ticket(const char *s)
{
    char id[DS_NODE_ID_HEX + 1], addrs[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t n = 0;
    const char *why = NULL;
    int rc = ds_ticket_parse(s, id, addrs, &n, &why);
    if (rc) {
        check_refusal(rc, why);
        return;
    }
    if (!ds_node_id_is_key(id) || n > DS_PEER_MAX_ADDRS)
        abort();
    const char *ap[DS_PEER_MAX_ADDRS];
    for (size_t i = 0; i < n; i++)
        ap[i] = addrs[i];
    char out[DS_NODE_ID_HEX + 8 + DS_PEER_MAX_ADDRS * (DS_ADDR_MAX + 1)];
    if (ds_ticket_format(id, ap, n, out, sizeof out))
        abort();
    char id2[DS_NODE_ID_HEX + 1], addrs2[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t n2 = 0;
    if (ds_ticket_parse(out, id2, addrs2, &n2, &why) || strcmp(id, id2) || n != n2)
        abort();
    for (size_t i = 0; i < n; i++)
        if (strcmp(addrs[i], addrs2[i]))
            abort();
}

static void fuzz_addr(const char *s, int listen)
{
    char host[DS_ADDR_MAX], host2[DS_ADDR_MAX], out[DS_ADDR_MAX];
    uint16_t port = 0, port2 = 0;
    const char *why = NULL;
    int (*parse)(const char *, uint16_t, char *, uint16_t *, const char **) =
        listen ? ds_listen_addr_parse : ds_addr_parse;
    int rc = parse(s, 7979, host, &port, &why);
    if (rc) {
        check_refusal(rc, why);
        if (!ds_addr_expect(why))
            abort();
        return;
    }
    if (port == 0 && !listen)
        abort();
    ds_addr_format(host, port, out);
    if (parse(out, 1, host2, &port2, &why) || strcmp(host, host2) || port != port2)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int which = data[0] % P_COUNT;
    data++;
    size--;
    char err[1024] = "";
    switch (which) {
    case P_CONFIG: {
        put_file(cfg_path, data, size);
        ds_config cfg;
        int rc = ds_config_load(&cfg, cfg_path, "/home/fuzz", err, sizeof err);
        if (rc)
            check_refusal(rc, err);
        else if (cfg.idle_seconds == 0 || cfg.log_keep == 0 || cfg.queue_max_attempts == 0)
            abort();
        ds_config_free(&cfg);
        break;
    }
    case P_PEERS: {
        put_file(peers_path, data, size);
        ds_peers_cfg c;
        int rc = ds_peers_cfg_load(dir, &c, err, sizeof err);
        if (rc) {
            check_refusal(rc, err);
            break;
        }
        for (size_t i = 0; i < c.n; i++) {
            if (ds_peers_find(&c, c.peers[i].node_id) != &c.peers[i] ||
                c.peers[i].naddrs > DS_PEER_MAX_ADDRS)
                abort();
        }
        ds_peers_cfg_free(&c);
        break;
    }
    case P_SHARE: {
        put_file(share_path, data, size);
        ds_share_cfg c;
        int rc = ds_share_cfg_load(dir, &c, err, sizeof err);
        if (rc) {
            check_refusal(rc, err);
            break;
        }
        for (size_t i = 0; i < c.n; i++)
            if (!c.paths[i] || c.paths[i][0] != '/')
                abort();
        ds_share_cfg_free(&c);
        break;
    }
    case P_TICKET:
    case P_ADDR:
    case P_LISTEN:
    case P_DURATION: {
        char *s = cstr(data, size);
        if (which == P_TICKET) {
            fuzz_ticket(s);
        } else if (which == P_DURATION) {
            uint32_t secs = 0;
            const char *why = NULL;
            int rc = ds_duration_parse(s, &secs, &why);
            if (rc)
                check_refusal(rc, why);
            else if (secs < 1 || secs > 30u * 86400u)
                abort();
        } else {
            fuzz_addr(s, which == P_LISTEN);
        }
        free(s);
        break;
    }
    }
    return 0;
}
