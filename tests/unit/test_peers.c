/*
 * test_peers.c - the P2P home files: identity.key (0600, no overwrite
 * without force, damaged file, a readable one set back to 0600 with a
 * warning), share.json and peers.json (round trip,
 * extra fields kept, every malformed shape refused with the file name
 * and the problem), NodeId validation before path use, replicas
 * (create, open, meta.json, delete) and the peers/.lock bounded wait.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ds/error.h"
#include "daemon/peers.h"

static char err[1024];

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *ID1 = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *ID2 = "2222222222222222222222222222222222222222222222222222222222222222";

static void identity_file(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    ds_identity a, b, c;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    assert_int_equal(ds_identity_from_seed(&a, seed), 0);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), DS_ERR_NOTFOUND);
    assert_int_equal(ds_peers_identity_save(home, &a, 0, err, sizeof err), 0);
    char p[4096];
    snprintf(p, sizeof p, "%s/identity.key", home);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_string_equal(a.node_id, b.node_id);
    seed[0] ^= 1;
    assert_int_equal(ds_identity_from_seed(&c, seed), 0);
    assert_int_equal(ds_peers_identity_save(home, &c, 0, err, sizeof err), DS_ERR_EXISTS);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_string_equal(a.node_id, b.node_id);          /* unchanged */
    assert_int_equal(ds_peers_identity_save(home, &c, 1, err, sizeof err), 0);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_string_equal(c.node_id, b.node_id);
    write_file(home, "identity.key", "garbage\n");
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), DS_ERR_MALFORMED);
    assert_non_null(strstr(err, "identity.key"));
}

static char warned[1024];
static int nwarned;

static void catch_warning(const char *msg)
{
    snprintf(warned, sizeof warned, "%s", msg);
    nwarned++;
}

/* An identity.key other users may read is set back to 0600 on load, with
 * one warning that says what happened and what to do. */
static void identity_mode(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    ds_identity a, b;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    assert_int_equal(ds_identity_from_seed(&a, seed), 0);
    assert_int_equal(ds_peers_identity_save(home, &a, 0, err, sizeof err), 0);
    char p[4096];
    snprintf(p, sizeof p, "%s/identity.key", home);
    ds_peers_set_warn(catch_warning);
    nwarned = 0;
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_int_equal(nwarned, 0);                    /* 0600: nothing to say */
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_string_equal(a.node_id, b.node_id);       /* still used */
    assert_int_equal(nwarned, 1);
    assert_non_null(strstr(warned, "identity.key was readable by other users (mode 0644); "
                                   "ds set it to 0600"));
    assert_non_null(strstr(warned, "ds peer init --force"));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(ds_peers_identity_load(home, &b, err, sizeof err), 0);
    assert_int_equal(nwarned, 1);                    /* repaired: once */
    ds_peers_set_warn(NULL);
}

static void share_file(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    ds_share_cfg c;
    assert_int_equal(ds_share_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(ds_share_cfg_add(&c, "/a/proj"), 0);
    assert_int_equal(ds_share_cfg_add(&c, "/a/proj"), DS_ERR_EXISTS);
    assert_int_equal(ds_share_cfg_add(&c, "/b"), 0);
    assert_int_equal(ds_share_cfg_save(home, &c, err, sizeof err), 0);
    ds_share_cfg_free(&c);
    /* extra fields survive a rewrite; trailing slashes are dropped */
    write_file(home, "share.json",
               "{\"comment\": \"mine\", \"shared_projects\": [\"/a/proj/\", \"/b\"]}");
    assert_int_equal(ds_share_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.paths[0], "/a/proj");
    ds_share_set set;
    assert_int_equal(ds_share_cfg_set(&c, &set), 0);
    assert_true(ds_share_set_contains(&set, "/a/proj/x"));
    assert_false(ds_share_set_contains(&set, "/a/proj-x"));
    ds_share_set_free(&set);
    /* the listed path a path lies beneath, by the share set's rule */
    assert_string_equal(ds_share_cfg_covering(&c, "/a/proj/x/y"), "/a/proj");
    assert_string_equal(ds_share_cfg_covering(&c, "/a/proj"), "/a/proj");
    assert_null(ds_share_cfg_covering(&c, "/a/proj-x"));
    assert_null(ds_share_cfg_covering(&c, "/a"));
    assert_int_equal(ds_share_cfg_remove(&c, "/a/proj"), 0);
    assert_null(ds_share_cfg_covering(&c, "/a/proj/x"));
    assert_int_equal(ds_share_cfg_remove(&c, "/a/proj"), DS_ERR_NOTFOUND);
    assert_int_equal(ds_share_cfg_save(home, &c, err, sizeof err), 0);
    ds_share_cfg_free(&c);
    char p[4096];
    snprintf(p, sizeof p, "%s/share.json", home);
    char *text = ds_test_read_file(p, NULL);
    assert_non_null(strstr(text, "\"comment\": \"mine\""));
    assert_null(strstr(text, "/a/proj"));
    free(text);

    static const struct { const char *text, *needle; } bad[] = {
        { "{\"shared_projects\": [", "(line 1)" },
        { "[1, 2]", "expected a JSON object" },
        { "{\"shared_projects\": \"/a\"}", "must be a list" },
        { "{\"shared_projects\": [\"/a\", 3]}", "entry 2" },
        { "{\"shared_projects\": [\"rel/path\"]}", "not an absolute path" },
        { "\n\n{\"shared_projects\": [] ,, }", "(line 3)" },
        { "", "(line " },
        /* a NUL: said as such, with where (not jansson's flag name) */
        { "{\"shared_projects\":\n [\"/a\\u0000b\"]}",
          "contains a NUL character (written \\u0000), which no path or name may hold "
          "(line 2, column" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(home, "share.json", bad[i].text);
        err[0] = 0;
        assert_int_equal(ds_share_cfg_load(home, &c, err, sizeof err), DS_ERR_MALFORMED);
        assert_non_null(strstr(err, p));
        if (!strstr(err, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
        assert_null(strstr(err, "JSON_ALLOW_NUL"));
    }
    /* a raw NUL byte too */
    static const char raw[] = "{\"shared_projects\": [\"/a\0b\"]}";
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fwrite(raw, 1, sizeof raw - 1, f);
    fclose(f);
    assert_int_equal(ds_share_cfg_load(home, &c, err, sizeof err), DS_ERR_MALFORMED);
    if (!strstr(err, "contains a NUL character, which no path or name may hold (line 1, column"))
        fail_msg("raw NUL: '%s'", err);
}

static void peers_file(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    ds_peers_cfg c;
    int created;
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(ds_peers_cfg_set_self(&c, ID2), 0);
    assert_int_equal(ds_peers_upsert(&c, ID1, "alice", -1, -1, &created), 0);
    assert_true(created);
    const ds_peer *p = ds_peers_find(&c, ID1);
    assert_non_null(p);
    assert_true(p->subscribe);
    assert_false(p->publish);
    assert_null(p->last_sync);
    /* update: only the flags given change */
    assert_int_equal(ds_peers_upsert(&c, ID1, NULL, -1, 1, &created), 0);
    assert_false(created);
    p = ds_peers_find_name(&c, "alice");
    assert_non_null(p);
    assert_true(p->publish && p->subscribe);
    assert_int_equal(ds_peers_upsert(&c, ID2, "alice", -1, -1, NULL), DS_ERR_EXISTS);
    assert_int_equal(ds_peers_upsert(&c, "../etc", "x", -1, -1, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_peers_upsert(&c, ID2, "local", -1, -1, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_peers_upsert(&c, ID2, NULL, 0, -1, NULL), 0);
    assert_int_equal(ds_peers_set_last_sync(&c, ID1, "2026-01-07T10:30:00Z"), 0);
    char sid[DS_PEER_SHORT_ID + 1];
    assert_string_equal(ds_peer_label(ds_peers_find(&c, ID2), sid), "22222222");
    assert_int_equal(ds_peers_cfg_save(home, &c, err, sizeof err), 0);
    ds_peers_cfg_free(&c);

    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 2);
    p = ds_peers_lookup(&c, "alice");
    assert_string_equal(p->node_id, ID1);
    assert_string_equal(p->last_sync, "2026-01-07T10:30:00Z");
    assert_false(ds_peers_find(&c, ID2)->subscribe);
    assert_int_equal(ds_peers_remove(&c, ID2), 0);
    assert_int_equal(ds_peers_remove(&c, ID2), DS_ERR_NOTFOUND);
    ds_peers_cfg_free(&c);

    char path[4096];
    snprintf(path, sizeof path, "%s/peers.json", home);
    static const struct { const char *text, *needle; } bad[] = {
        { "{\"peers\": {", "(line 1)" },
        { "{\"node_id\": \"abc\"}", "\"node_id\" must be a NodeId" },
        { "{\"peers\": []}", "keyed by NodeId" },
        { "{\"peers\": {\"../../x\": {}}}", "is not a NodeId" },
        { "{\"peers\": {\"1111111111111111111111111111111111111111111111111111111111111111\": 5}}",
          "expected an object" },
        { "{\"peers\": {\"1111111111111111111111111111111111111111111111111111111111111111\": "
          "{\"publish\": \"yes\"}}}", "must be true or false" },
        { "{\"peers\": {\"1111111111111111111111111111111111111111111111111111111111111111\": "
          "{\"name\": 7}}}", "\"name\" must be a string" },
        { "{\"peers\": {\"1111111111111111111111111111111111111111111111111111111111111111\": "
          "{\"name\": \"a\"}, \"2222222222222222222222222222222222222222222222222222222222222222\": "
          "{\"name\": \"a\"}}}", "two peers are named" },
        { "{\"peers\": {}, \"peers\": {}}", "duplicate" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(home, "peers.json", bad[i].text);
        err[0] = 0;
        assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), DS_ERR_MALFORMED);
        assert_non_null(strstr(err, path));
        if (!strstr(err, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
    }
    /* extra fields kept */
    write_file(home, "peers.json",
               "{\"node_id\": null, \"x-extra\": 1, \"peers\": {\"1111111111111111111111111111"
               "111111111111111111111111111111111111\": {\"name\": \"bob\", \"note\": \"hi\"}}}");
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(ds_peers_upsert(&c, ID1, NULL, -1, 1, NULL), 0);
    assert_int_equal(ds_peers_cfg_save(home, &c, err, sizeof err), 0);
    ds_peers_cfg_free(&c);
    char *text = ds_test_read_file(path, NULL);
    assert_non_null(strstr(text, "\"x-extra\": 1"));
    assert_non_null(strstr(text, "\"note\": \"hi\""));
    free(text);
}

/* New names are checked strictly; peers.json entries an older version
 * accepted still load. */
static void peer_names(void **state)
{
    (void)state;
    const char *why;
    static const char *const bad[] = { "-dash", "-", ".", "..", "local", "LOCAL", "Local",
                                       "", "a b", "a/b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ds_peer_name_check(bad[i], &why) != DS_ERR_INVALID)
            fail_msg("name '%s' accepted", bad[i]);
    assert_int_equal(ds_peer_name_check("-x", &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "starts with '-'"));
    assert_int_equal(ds_peer_name_check("LOCAL", &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "reserved"));
    static const char *const good[] = { "alice", "build-box", "a.b", "x-", "local2", ".hidden",
                                        "deadbeef" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (ds_peer_name_check(good[i], &why) != 0)
            fail_msg("name '%s' refused: %s", good[i], why);

    const char *home = ds_test_tmpdir();
    write_file(home, "peers.json",
               "{\"peers\": {\"1111111111111111111111111111111111111111111111111111111111111111\""
               ": {\"name\": \"-dash\"}, \"2222222222222222222222222222222222222222222222222222"
               "222222222222\": {\"name\": \"..\"}, \"33333333333333333333333333333333333333333"
               "33333333333333333333333\": {\"name\": \"LOCAL\"}}}");
    ds_peers_cfg c;
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(ds_peers_lookup(&c, "-dash")->node_id, ID1);
    assert_string_equal(ds_peers_lookup(&c, "..")->node_id, ID2);
    /* ...but they cannot be given to a peer anew */
    assert_int_equal(ds_peers_upsert(&c, ID1, "LOCAL", -1, -1, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_peers_upsert(&c, ID2, ".", -1, -1, NULL), DS_ERR_INVALID);
    ds_peers_cfg_free(&c);
}

/* A peer is found by name, NodeId, or a unique NodeId prefix of at least
 * 8 hex digits (what `ds peer list` shows for an unnamed peer). */
static void peer_resolve(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    write_file(home, "peers.json",
               "{\"peers\": {"
               "\"abcdef0011111111111111111111111111111111111111111111111111111111\": {},"
               "\"abcdef0022222222222222222222222222222222222222222222222222222222\": "
               "{\"name\": \"bob\"},"
               "\"1234567811111111111111111111111111111111111111111111111111111111\": {},"
               "\"9999999911111111111111111111111111111111111111111111111111111111\": "
               "{\"name\": \"12345678\"}}}");
    ds_peers_cfg c;
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    const ds_peer *p;
    char m[256];
    /* the 8-hex label of an unnamed peer; any case; pasted whitespace */
    assert_int_equal(ds_peers_resolve(&c, "abcdef001", &p, m, sizeof m), 0);
    assert_string_equal(p->node_id,
                        "abcdef0011111111111111111111111111111111111111111111111111111111");
    assert_int_equal(ds_peers_resolve(&c, " ABCDEF0022\n", &p, m, sizeof m), 0);
    assert_string_equal(p->name, "bob");
    assert_int_equal(ds_peers_resolve(&c, "\tbob ", &p, m, sizeof m), 0);
    assert_string_equal(p->name, "bob");
    assert_int_equal(ds_peers_resolve(
                         &c, "abcdef0011111111111111111111111111111111111111111111111111111111",
                         &p, m, sizeof m), 0);
    /* an exact name wins over a NodeId prefix */
    assert_int_equal(ds_peers_resolve(&c, "12345678", &p, m, sizeof m), 0);
    assert_string_equal(p->node_id,
                        "9999999911111111111111111111111111111111111111111111111111111111");
    assert_int_equal(ds_peers_resolve(&c, "123456781", &p, m, sizeof m), 0);
    assert_string_equal(p->node_id,
                        "1234567811111111111111111111111111111111111111111111111111111111");
    /* ambiguous: both named */
    assert_int_equal(ds_peers_resolve(&c, "abcdef00", &p, m, sizeof m), DS_ERR_AMBIGUOUS);
    assert_null(p);
    assert_non_null(strstr(m, "abcdef00 abcdef0011111111"));
    assert_non_null(strstr(m, "bob abcdef0022222222"));
    assert_null(ds_peers_lookup(&c, "abcdef00"));
    /* too short, not hex, unknown */
    assert_int_equal(ds_peers_resolve(&c, "abcdef0", &p, m, sizeof m), DS_ERR_NOTFOUND);
    assert_int_equal(ds_peers_resolve(&c, "abcdef0g1", &p, m, sizeof m), DS_ERR_NOTFOUND);
    assert_int_equal(ds_peers_resolve(&c, "ffffffff", &p, m, sizeof m), DS_ERR_NOTFOUND);
    assert_int_equal(ds_peers_resolve(&c, "", &p, NULL, 0), DS_ERR_NOTFOUND);
    ds_peers_cfg_free(&c);
}

/* Addresses and tickets: the parser's messages, listen addresses, the
 * NodeId's key check, and the oldest addresses dropped past the limit. */
static void addrs_and_tickets(void **state)
{
    (void)state;
    char host[DS_ADDR_MAX];
    uint16_t port;
    const char *why;
    assert_int_equal(ds_addr_parse("127.0.0.1", 0, host, &port, &why), DS_ERR_INVALID);
    assert_string_equal(why, "has no port");     /* callers add what is expected */
    assert_int_equal(ds_addr_parse("127.0.0.1:5,127.0.0.1:6", 0, host, &port, &why),
                     DS_ERR_INVALID);
    assert_non_null(strstr(why, "','"));
    assert_null(strstr(why, "IPv6"));
    /* several ':' without brackets: not HOST:PORT, whatever it meant */
    assert_int_equal(ds_addr_parse("1.2.3.4:80:80", 0, host, &port, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "has more than one ':', so it is not HOST:PORT"));
    assert_non_null(strstr(why, "write [ADDR]:PORT"));
    assert_null(strstr(why, "is an IPv6 address"));
    assert_int_equal(ds_addr_parse("localhost:4000", 0, host, &port, &why), 0);
    /* A host name of 253 characters is the longest: formatted again it
     * comes back whole (fuzz_config found 290+ cut short). */
    char longhost[300], out[DS_ADDR_MAX];
    memset(longhost, 'a', 253);
    strcpy(longhost + 253, ":4000");
    assert_int_equal(ds_addr_parse(longhost, 0, host, &port, &why), 0);
    ds_addr_format(host, port, out);
    assert_string_equal(out, longhost);
    memset(longhost, 'a', 254);
    strcpy(longhost + 254, ":4000");
    assert_int_equal(ds_addr_parse(longhost, 0, host, &port, &why), DS_ERR_INVALID);
    assert_string_equal(why, "has a host name longer than 253 characters");
    longhost[254] = 0;                           /* no port: the default applies */
    assert_int_equal(ds_addr_parse(longhost, 7979, host, &port, &why), DS_ERR_INVALID);

    /* listen: IP literals only, one spelling each */
    static const char *const nolisten[] = { "localhost:4000", "256.1.1.1:4000", "example.org",
                                            "1.2.3:5", "[::1", "0.0.0.0:0" };
    for (size_t i = 0; i < sizeof nolisten / sizeof nolisten[0]; i++)
        if (ds_listen_addr_parse(nolisten[i], 7979, host, &port, &why) != DS_ERR_INVALID)
            fail_msg("listen address '%s' accepted", nolisten[i]);
    assert_int_equal(ds_listen_addr_parse("localhost:4000", 7979, host, &port, &why),
                     DS_ERR_INVALID);
    assert_string_equal(why, "is not an IP address");
    assert_int_equal(ds_listen_addr_parse("0.0.0.0", 7979, host, &port, &why), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 7979);
    assert_int_equal(ds_listen_addr_parse("[0:0::0]:5", 7979, host, &port, &why), 0);
    assert_string_equal(host, "::");
    assert_int_equal(ds_listen_addr_parse("[::1]:7979", 7979, host, &port, &why), 0);
    assert_int_equal(ds_listen_addr_parse("127.0.0.1:4000", 7979, host, &port, &why), 0);

    /* a NodeId must be an Ed25519 public key */
    ds_identity id;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    assert_int_equal(ds_identity_from_seed(&id, seed), 0);
    static const char ZERO[] = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_true(ds_node_id_is_key(id.node_id));
    assert_false(ds_node_id_is_key(ZERO));
    assert_false(ds_node_id_is_key("xyz"));

    char t[DS_TICKET_MAX], nid[DS_NODE_ID_HEX + 1], ta[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t n;
    snprintf(t, sizeof t, "ds1:%s@127.0.0.1:7979,[::1]:7979", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), 0);
    assert_string_equal(nid, id.node_id);
    assert_int_equal(n, 2);
    snprintf(t, sizeof t, "ds1:%s", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), 0);
    assert_int_equal(n, 0);
    snprintf(t, sizeof t, "ds1:%s@", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "no address after '@'"));
    snprintf(t, sizeof t, "ds1:%s@1.2.3.4:5", ZERO);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "Ed25519"));
    /* more addresses than a peer keeps: the limit is said */
    int tl = snprintf(t, sizeof t, "ds1:%s", id.node_id);
    for (int i = 0; i <= DS_PEER_MAX_ADDRS; i++)
        tl += snprintf(t + tl, sizeof t - (size_t)tl, "%c10.0.0.%d:1", i ? ',' : '@', i + 1);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "more than 8 addresses"));
    /* another version: said so, not "not a NodeId" */
    assert_int_equal(ds_ticket_version_len("ds1:abc"), 4);
    assert_int_equal(ds_ticket_version_len("ds12:abc"), 5);
    assert_int_equal(ds_ticket_version_len("dsx:abc"), 0);
    assert_int_equal(ds_ticket_version_len("alice"), 0);
    snprintf(t, sizeof t, "ds2:%s", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "unknown version 'ds2:': this ds reads only ds1: tickets"));

    /* pasted arguments */
    char b1[] = " \t ds1:abc \r\n", b2[] = "\n", b3[] = "x";
    assert_string_equal(ds_str_trim(b1), "ds1:abc");
    assert_string_equal(ds_str_trim(b2), "");
    assert_string_equal(ds_str_trim(b3), "x");

    /* past DS_PEER_MAX_ADDRS the oldest go, and the caller is told which */
    const char *home = ds_test_tmpdir();
    ds_peers_cfg c;
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(ds_peers_upsert(&c, ID1, NULL, -1, -1, NULL), 0);
    char abuf[DS_PEER_MAX_ADDRS + 2][DS_ADDR_MAX];
    const char *av[DS_PEER_MAX_ADDRS + 2];
    for (size_t i = 0; i < DS_PEER_MAX_ADDRS + 2; i++) {
        snprintf(abuf[i], DS_ADDR_MAX, "10.0.0.%zu:1", i + 1);
        av[i] = abuf[i];
    }
    char dropped[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t added, nd = 99;
    assert_int_equal(ds_peers_add_addrs(&c, ID1, av, DS_PEER_MAX_ADDRS, &added, dropped, &nd),
                     0);
    assert_int_equal(added, DS_PEER_MAX_ADDRS);
    assert_int_equal(nd, 0);
    assert_int_equal(ds_peers_add_addrs(&c, ID1, av + DS_PEER_MAX_ADDRS, 2, &added, dropped, &nd),
                     0);
    assert_int_equal(added, 2);
    assert_int_equal(nd, 2);
    assert_string_equal(dropped[0], "10.0.0.1:1");
    assert_string_equal(dropped[1], "10.0.0.2:1");
    const ds_peer *p = ds_peers_find(&c, ID1);
    assert_int_equal(p->naddrs, DS_PEER_MAX_ADDRS);
    assert_string_equal(p->addrs[DS_PEER_MAX_ADDRS - 1], "10.0.0.10:1");
    /* a known address is no change and drops nothing */
    assert_int_equal(ds_peers_add_addrs(&c, ID1, av + 5, 1, &added, dropped, &nd), 0);
    assert_int_equal(added, 0);
    assert_int_equal(nd, 0);
    assert_int_equal(ds_peers_add_addrs(&c, ID1, av, DS_PEER_MAX_ADDRS + 1, &added, NULL, NULL),
                     DS_ERR_INVALID);
    ds_peers_cfg_free(&c);
}

/* Addresses that parse but can never work are refused saying what to
 * write instead: an IPv4-mapped IPv6 address (IPv6 sockets are V6ONLY)
 * and a zone id; tickets go through the same parser.  A peers.json that
 * an older version wrote with a mapped address still loads. */
static void addr_refusals(void **state)
{
    (void)state;
    char host[DS_ADDR_MAX];
    uint16_t port;
    const char *why;
    assert_int_equal(ds_addr_parse("[::ffff:127.0.0.1]:4000", 0, host, &port, &why),
                     DS_ERR_INVALID);
    assert_non_null(strstr(why, "IPv4-mapped IPv6 address"));
    assert_non_null(strstr(why, "write 127.0.0.1:4000 instead"));
    assert_int_equal(ds_addr_parse("[::FFFF:7f00:1]:5", 0, host, &port, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "write 127.0.0.1:5 instead"));
    assert_int_equal(ds_listen_addr_parse("[::ffff:127.0.0.1]:4000", 7979, host, &port, &why),
                     DS_ERR_INVALID);
    assert_non_null(strstr(why, "write 127.0.0.1:4000 instead"));
    assert_int_equal(ds_listen_addr_parse("[::ffff:0.0.0.0]", 7979, host, &port, &why),
                     DS_ERR_INVALID);
    assert_non_null(strstr(why, "write 0.0.0.0 instead"));   /* the default port applies */
    assert_int_equal(ds_addr_parse("[::ffff:10.0.0.1]", 0, host, &port, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "write 10.0.0.1:PORT instead"));   /* a port is due */
    /* zone ids: said as such, not "not an IPv6 address" */
    assert_int_equal(ds_addr_parse("[fe80::1%lo]:4000", 0, host, &port, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "zone ids (%lo) are not supported"));
    assert_null(strstr(why, "not an IPv6 address"));
    assert_int_equal(ds_listen_addr_parse("[fe80::1%eth0]", 7979, host, &port, &why),
                     DS_ERR_INVALID);
    assert_non_null(strstr(why, "zone ids (%eth0) are not supported"));
    /* still accepted: plain IPv6, IPv4, names; other IPv6 forms */
    assert_int_equal(ds_addr_parse("[::1]:4000", 0, host, &port, &why), 0);
    assert_int_equal(ds_addr_parse("[2001:db8::ffff:7f00:1]:4000", 0, host, &port, &why), 0);
    assert_int_equal(ds_addr_parse("127.0.0.1:4000", 0, host, &port, &why), 0);
    assert_int_equal(ds_listen_addr_parse("[::]:4000", 7979, host, &port, &why), 0);

    /* tickets: the address and the parser's reason */
    ds_identity id;
    uint8_t seed[32];
    ds_test_random(seed, sizeof seed);
    assert_int_equal(ds_identity_from_seed(&id, seed), 0);
    char t[DS_TICKET_MAX], nid[DS_NODE_ID_HEX + 1], ta[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t n;
    snprintf(t, sizeof t, "ds1:%s@[::1]:7979,[::ffff:127.0.0.1]:7979", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "'[::ffff:127.0.0.1]:7979'"));
    assert_non_null(strstr(why, "IPv4-mapped IPv6 address: write 127.0.0.1:7979 instead"));
    snprintf(t, sizeof t, "ds1:%s@[fe80::1%%lo]:7979", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "zone ids (%lo) are not supported"));
    snprintf(t, sizeof t, "ds1:%s@127.0.0.1", id.node_id);
    assert_int_equal(ds_ticket_parse(t, nid, ta, &n, &why), DS_ERR_INVALID);
    assert_non_null(strstr(why, "has no port"));

    /* peers.json from an older version holding a mapped address: loads */
    const char *home = ds_test_tmpdir();
    char text[512];
    snprintf(text, sizeof text, "{\"peers\": {\"%s\": {\"addrs\": [\"[::ffff:10.0.0.1]:5\"]}}}\n",
             ID1);
    write_file(home, "peers.json", text);
    ds_peers_cfg c;
    assert_int_equal(ds_peers_cfg_load(home, &c, err, sizeof err), 0);
    assert_int_equal(ds_peers_find(&c, ID1)->naddrs, 1);
    /* but a new one is refused */
    const char *mapped[] = { "[::ffff:10.0.0.2]:5" };
    assert_int_equal(ds_peers_add_addrs(&c, ID1, mapped, 1, NULL, NULL, NULL), DS_ERR_INVALID);
    ds_peers_cfg_free(&c);
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(int *)ud)++;
    return 0;
}

static void replicas(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    uint8_t seed[DS_EPOCH_LEN] = { 1 };
    ds_store *st;
    assert_int_equal(ds_replica_open(home, ID1, 0, seed, &st), DS_ERR_NOTFOUND);
    assert_int_equal(ds_replica_open(home, "../x", 1, seed, &st), DS_ERR_INVALID);
    assert_int_equal(ds_replica_open(home, "ABCD", 1, seed, &st), DS_ERR_INVALID);
    assert_int_equal(ds_replica_open(home, ID1, 1, seed, &st), 0);
    ds_node n;
    ds_test_make_node(&n, "replica note", "/a/proj");
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
    ds_store_close(st);
    assert_true(ds_replica_exists(home, ID1));
    assert_int_equal(ds_replica_meta_write(home, ID1, "alice", "2026-01-01T00:00:00Z", 1, NULL,
                                           err, sizeof err), 0);
    char p[4096];
    snprintf(p, sizeof p, "%s/peers/%s/meta.json", home, ID1);
    char *text = ds_test_read_file(p, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"node_count\": 1"));
    assert_non_null(strstr(text, "\"sync_cursor\": null"));
    free(text);
    assert_int_equal(ds_replica_open(home, ID1, 0, NULL, &st), 0);
    int cnt = 0;
    assert_int_equal(ds_store_iter(st, 0, 0, count_cb, &cnt), 0);
    assert_int_equal(cnt, 1);
    ds_store_close(st);
    assert_int_equal(ds_replica_delete(home, ID1), 0);
    assert_false(ds_replica_exists(home, ID1));
    assert_int_equal(ds_replica_delete(home, ID1), 0);
    assert_int_equal(ds_replica_delete(home, "../../.."), DS_ERR_INVALID);
}

static void lock_wait(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    int a, b;
    assert_int_equal(ds_peers_lock(home, 1000, &a, err, sizeof err), 0);
    /* a second open file description conflicts, even in this process */
    assert_int_equal(ds_peers_lock(home, 120, &b, err, sizeof err), DS_ERR_TIMEOUT);
    assert_non_null(strstr(err, "peers/.lock"));
    ds_peers_unlock(a);
    assert_int_equal(ds_peers_lock(home, 0, &b, err, sizeof err), 0);
    ds_peers_unlock(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(identity_file),
        cmocka_unit_test(identity_mode),
        cmocka_unit_test(share_file),
        cmocka_unit_test(peers_file),
        cmocka_unit_test(peer_names),
        cmocka_unit_test(peer_resolve),
        cmocka_unit_test(addrs_and_tickets),
        cmocka_unit_test(addr_refusals),
        cmocka_unit_test(replicas),
        cmocka_unit_test(lock_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
