/*
 * bench_sync.c - loads synthetic nodes straight into a home's local store,
 * so that scripts/bench-sync.sh and tests/cli/test_netsync.sh can give a
 * publisher 100k nodes in seconds instead of minutes of `ds note` calls.
 *
 *   bench_sync load HOME PROJECT COUNT [BYTES] [TAG]
 *
 * Writes COUNT nodes of about BYTES bytes of content (default 300) whose
 * project is PROJECT (an absolute path), in transactions of 1000 nodes,
 * creating HOME/db when missing.  Contents are distinct, deterministic
 * word sequences; TAG (default "BENCH") starts each one, so a test can
 * tell nodes of different loads apart.  Prints "loaded N nodes".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "ds/node.h"
#include "ds/store.h"

static const char *words[] = {
    "cursor", "page", "stream", "quic", "lmdb", "index", "peer", "share", "replica",
    "publish", "subscribe", "frame", "token", "search", "daemon", "project", "session",
    "transaction", "sequence", "epoch", "digest", "handshake", "relay", "backoff",
};

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[1], "load") != 0) {
        fprintf(stderr, "usage: %s load HOME PROJECT COUNT [BYTES] [TAG]\n", argv[0]);
        return 2;
    }
    const char *home = argv[2], *project = argv[3];
    long count = strtol(argv[4], NULL, 10);
    long bytes = argc > 5 ? strtol(argv[5], NULL, 10) : 300;
    const char *tag = argc > 6 ? argv[6] : "BENCH";
    if (count < 1 || count > 10000000 || bytes < 32 || bytes > 100000 || project[0] != '/') {
        fprintf(stderr, "bench_sync: bad arguments\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    mkdir(home, 0700);
    char db[4096];
    snprintf(db, sizeof db, "%s/db", home);
    uint8_t seed[DS_EPOCH_LEN];
    randombytes_buf(seed, sizeof seed);
    ds_store_opts o = { .epoch_seed = seed };
    ds_store *st;
    int rc = ds_store_open(&st, db, &o);
    if (rc) {
        fprintf(stderr, "bench_sync: cannot open %s: %s\n", db, ds_strerror(rc));
        return 1;
    }
    enum { BATCH = 1000 };
    ds_node *nodes = calloc(BATCH, sizeof *nodes);
    char *text = malloc((size_t)bytes + 64);
    if (!nodes || !text)
        return 1;
    uint32_t rnd = 2463534242u;
    long done = 0;
    while (!rc && done < count) {
        size_t n = 0;
        for (; n < BATCH && done + (long)n < count; n++) {
            long i = done + (long)n;
            ds_node *nd = &nodes[n];
            ds_node_init(nd);
            uint8_t r[DS_ID_LEN];
            randombytes_buf(r, sizeof r);
            ds_uuid_from_random(nd->id, r);
            int len = snprintf(text, (size_t)bytes + 64, "%s %ld", tag, i);
            while (len < bytes - 16) {
                rnd ^= rnd << 13;
                rnd ^= rnd >> 17;
                rnd ^= rnd << 5;
                len += snprintf(text + len, (size_t)bytes + 64 - (size_t)len, " %s",
                                words[rnd % (sizeof words / sizeof words[0])]);
            }
            char src[64];
            snprintf(src, sizeof src, "bench:%s:%ld", tag, i);
            if (ds_node_set_content(nd, text, (size_t)len) || ds_node_set_str(&nd->source, src) ||
                ds_node_set_str(&nd->project, project) || ds_node_set_str(&nd->ns, "personal")) {
                rc = DS_ERR_NOMEM;
                break;
            }
            nd->source_type = DS_SOURCE_NOTE;
            nd->timestamp = 1700000000000 + i;
            nd->confidence = 1.0;
        }
        if (!rc)
            rc = ds_store_put_many(st, nodes, n);
        for (size_t k = 0; k < n; k++)
            ds_node_free(&nodes[k]);
        done += (long)n;
    }
    ds_store_close(st);
    free(nodes);
    free(text);
    if (rc) {
        fprintf(stderr, "bench_sync: %s\n", ds_strerror(rc));
        return 1;
    }
    printf("loaded %ld nodes\n", done);
    return 0;
}
