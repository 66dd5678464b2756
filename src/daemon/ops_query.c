/*
 * ops_query.c - the read requests over nodes: "query" (BM25 search over
 * every store), "show" (newest nodes first) and "related" (nodes similar
 * to a given one).  Searches run over the list of stores returned by
 * ds_ops_stores(): the local store and the peer replicas.  A replica that
 * cannot be opened or read is left out with a warning in the reply
 * ({warnings: [...]}); the local store's failure is an error.
 */
#include "daemon/ops.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ds/search.h"

#define QUERY_DEFAULT_LIMIT 5
#define SHOW_DEFAULT_LIMIT 10
#define RELATED_DEFAULT_LIMIT 5

static void pack_hits(msgpack_packer *pk, const ds_hit *hits, size_t n, const char **labels)
{
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        ds_pack_node(pk, &hits[i].node, &hits[i].score, labels[hits[i].store_index]);
}

static int search_error(ds_ctx *ctx, int rc)
{
    return ds_ops_fail_store(ctx, rc, "searching");
}

/* Searches one store alone, to tell which store a failed search failed on. */
typedef struct probe {
    const ds_query *q;
    const ds_search_filter *filter;
    size_t k;
} probe;

static int probe_store(ds_store *st, const probe *pr)
{
    ds_hit *h = calloc(pr->k, sizeof *h);
    size_t n = 0;
    if (!h)
        return DS_ERR_NOMEM;
    int rc = ds_search_multi(&st, 1, pr->q, pr->filter, pr->k, h, &n);
    ds_hits_free(h, n);
    free(h);
    return rc;
}

/* After a search over |stores| failed with |rc|: leaves out (with a
 * warning) every peer replica that fails on its own, except the store at
 * *|keep| (the related search's origin; NULL: none), whose index is
 * updated to its place in the shortened list.  Returns 0 when the search
 * should run again over the *n stores left, else the error, recorded:
 * |rc| when no replica is to blame (the local store, or memory), or the
 * replica's own failure when none is left (as with --peer). */
static int drop_failing(ds_ctx *ctx, ds_store **stores, const char **labels, size_t *n,
                        size_t *keep, const probe *pr, int rc)
{
    if (rc == DS_ERR_NOMEM)
        return search_error(ctx, rc);
    size_t j = 0, dropped = 0;
    for (size_t i = 0; i < *n; i++) {
        int prc = 0;
        int kept = keep && *keep == i;
        if (!kept && strcmp(labels[i], "local") != 0)
            prc = probe_store(stores[i], pr);
        if (prc && prc != DS_ERR_NOMEM) {
            ds_ops_replica_read_failed(ctx, stores[i], labels[i], prc);
            dropped++;
            continue;
        }
        if (kept)
            *keep = j;
        stores[j] = stores[i];
        labels[j] = labels[i];
        j++;
    }
    *n = j;
    if (!dropped)
        return search_error(ctx, rc);
    if (j == 0) {
        const ds_op_warning *w = &ctx->warnings[ctx->nwarnings - 1];
        return ds_ops_fail(ctx, DS_ERR_STORE, w->code, w->hint[0] ? w->hint : NULL, "%s",
                           w->message);
    }
    return 0;
}

/* Before a search: the local store's data file must hold its whole
 * database (ds_store_check; cut short while the process had it open),
 * else the search fails with DS_ERR_SHORT; this says what happened and
 * what to do.  A replica cut short fails its search the same way and is
 * left out with a warning (drop_failing). */
static int check_local(ds_ctx *ctx, ds_store **stores, const char **labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(labels[i], "local") != 0)
            continue;
        uint64_t have = 0, need = 0;
        int rc = ds_store_check(stores[i], &have, &need);
        if (rc == 0)
            return 0;
        if (rc != DS_ERR_SHORT)
            return ds_ops_fail_store(ctx, rc, "checking the knowledge store");
        const char *db = ds_store_path(stores[i]);
        char hint[512];
        snprintf(hint, sizeof hint,
                 "Nothing was changed. Stop the daemon (ds stop), then put back a copy of "
                 "%s or move it away (ds note and ds add start an empty store).", db);
        return ds_ops_fail(ctx, rc, DS_OPS_E_STORE, hint,
                           "the knowledge store %s cannot be read: its data file is %llu "
                           "bytes, shorter than the %llu bytes of its database (cut short "
                           "while open?)",
                           db, (unsigned long long)have, (unsigned long long)need);
    }
    return 0;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
            return 0;
    return 1;
}

int op_query(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *text = NULL, *ns = NULL, *project = NULL;
    ds_query *q = NULL;
    ds_hit *hits = NULL;
    size_t limit = 0, nhits = 0;
    int rc = ds_ops_get_str(ctx, params, "text", 0, &text);
    if (!rc && (!text || is_blank(text)))
        rc = ds_ops_fail(ctx, DS_ERR_EMPTY, DS_OPS_E_EMPTY_QUERY,
                         "Example: ds query \"error handling\"",
                         "empty query: give some words to search for");
    if (!rc) {
        rc = ds_query_parse(text, strlen(text), &q);
        if (rc == DS_ERR_EMPTY)
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_EMPTY_QUERY,
                             "Search for words or numbers; punctuation alone is ignored.",
                             "no searchable words in query '%s'", text);
        else if (rc)
            rc = search_error(ctx, rc);
    }
    if (!rc)
        rc = ds_ops_get_limit(ctx, params, QUERY_DEFAULT_LIMIT, &limit);
    if (!rc)
        rc = ds_ops_get_name(ctx, params, "namespace", NULL, &ns);
    if (!rc)
        rc = ds_ops_get_project_filter(ctx, params, &project);
    ds_store *stores[DS_OPS_MAX_STORES];
    const char *labels[DS_OPS_MAX_STORES];
    size_t nstores = 0;
    if (!rc)
        rc = ds_ops_stores_select(ctx, params, stores, labels, &nstores);
    if (!rc)
        rc = check_local(ctx, stores, labels, nstores);
    if (!rc) {
        hits = calloc(limit, sizeof *hits);
        if (!hits)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    ds_search_filter filter = { .ns = ns, .project = project, .exclude_id = NULL };
    probe pr = { .q = q, .filter = &filter, .k = limit };
    /* Each retry leaves out at least one store. */
    for (size_t tries = 0; !rc && tries <= DS_OPS_MAX_STORES; tries++) {
        int src = ds_search_multi(stores, nstores, q, &filter, limit, hits, &nhits);
        if (!src)
            break;
        rc = drop_failing(ctx, stores, labels, &nstores, NULL, &pr, src);
    }
    if (!rc) {
        msgpack_pack_map(reply, 2);
        ds_pack_cstr(reply, "results");
        pack_hits(reply, hits, nhits, labels);
        ds_pack_cstr(reply, "warnings");
        ds_ops_pack_warnings(ctx, reply);
    }
    if (hits)
        ds_hits_free(hits, nhits);
    free(hits);
    ds_query_free(q);
    free(text);
    free(ns);
    free(project);
    return rc;
}

typedef struct show_acc {
    ds_node *nodes;
    size_t n, cap;
    const char *ns, *project;
    int err;
} show_acc;

static int show_cb(const ds_node *n, void *ud)
{
    show_acc *a = ud;
    if (a->ns && (!n->ns || strcmp(n->ns, a->ns) != 0))
        return 0;
    if (a->project && (!n->project || !ds_path_within(n->project, a->project)))
        return 0;
    int rc = ds_node_copy(&a->nodes[a->n], n);
    if (rc) {
        a->err = rc;
        return rc;
    }
    return ++a->n >= a->cap ? 1 : 0;
}

/* The store "show" lists: the local one, or with {peer} that peer's
 * replica (with {local} too: an error).  A home without a local store
 * but with peers is told about --peer. */
static int show_store(ds_ctx *ctx, const msgpack_object *params, ds_store **st,
                      const char **label)
{
    if (ds_ops_get(params, "peer")) {
        ds_store *stores[DS_OPS_MAX_STORES];
        const char *labels[DS_OPS_MAX_STORES];
        size_t n = 0;
        int rc = ds_ops_stores_select(ctx, params, stores, labels, &n);
        if (!rc) {   /* one replica, or an error */
            *st = stores[0];
            *label = labels[0];
        }
        return rc;
    }
    int rc = ds_ctx_store(ctx, 0, st);
    if (rc == DS_ERR_NOTFOUND && strcmp(ctx->error.code, DS_OPS_E_NO_STORE) == 0) {
        ds_op_error saved = ctx->error;
        size_t peers = 0;
        int prc = ds_ops_peer_count(ctx, &peers);
        ctx->error = saved;
        if (!prc && peers)
            snprintf(ctx->error.hint, sizeof ctx->error.hint, "%s",
                     "This home has peers but no local store: ds show --peer NAME lists "
                     "a peer's replica (names: ds peer list).");
    }
    return rc;
}

int op_show(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    show_acc acc = { 0 };
    char *ns = NULL, *project = NULL;
    size_t limit;
    ds_store *st = NULL;
    const char *label = "local";
    int rc = ds_ops_get_limit(ctx, params, SHOW_DEFAULT_LIMIT, &limit);
    if (!rc)
        rc = ds_ops_get_name(ctx, params, "namespace", NULL, &ns);
    if (!rc)
        rc = ds_ops_get_project_filter(ctx, params, &project);
    if (!rc)
        rc = show_store(ctx, params, &st, &label);
    if (!rc) {
        acc.nodes = calloc(limit, sizeof *acc.nodes);
        acc.cap = limit;
        acc.ns = ns;
        acc.project = project;
        if (!acc.nodes)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    if (!rc) {
        rc = ds_store_iter(st, 0, 1, show_cb, &acc);
        if (!rc && acc.err)
            rc = acc.err;
        if (rc)
            rc = ds_ops_fail_store(ctx, rc, "listing nodes");
    }
    if (!rc) {
        msgpack_pack_map(reply, 1);
        ds_pack_cstr(reply, "results");
        msgpack_pack_array(reply, acc.n);
        for (size_t i = 0; i < acc.n; i++)
            ds_pack_node(reply, &acc.nodes[i], NULL, label);
    }
    for (size_t i = 0; i < acc.n; i++)
        ds_node_free(&acc.nodes[i]);
    free(acc.nodes);
    free(ns);
    free(project);
    return rc;
}

/* Finds the node whose id starts with |prefix| in any of the stores,
 * the local store first, and sets *origin to the first store holding it
 * (a node keeps its id when it is replicated, so one id in several
 * stores is one node); two different ids under the prefix are
 * ambiguous, in one store or across stores.  A replica that cannot be
 * read is left out with a warning (the list shrinks); the local store's
 * failure is an error.  Records the error it returns. */
static int resolve_id(ds_ctx *ctx, ds_store **stores, const char **labels, size_t *n,
                      const char *prefix, uint8_t id[DS_ID_LEN], size_t *origin)
{
    size_t j = 0, searched = *n;
    int found = 0;
    for (size_t i = 0; i < *n; i++) {
        uint8_t cand[DS_ID_LEN];
        int rc = ds_store_resolve_prefix(stores[i], prefix, cand);
        if (rc == DS_ERR_INVALID)
            return ds_ops_fail(ctx, rc, DS_OPS_E_INVALID,
                               "Give at least 4 hexadecimal digits of a node id, as shown by "
                               "ds query.",
                               "'%s' is not a node id or id prefix", prefix);
        if (rc == DS_ERR_AMBIGUOUS || (!rc && found && memcmp(cand, id, DS_ID_LEN) != 0))
            return ds_ops_fail(ctx, DS_ERR_AMBIGUOUS, DS_OPS_E_AMBIGUOUS,
                               "Give more characters of the id.",
                               "id prefix '%s' matches more than one node", prefix);
        if (rc && rc != DS_ERR_NOTFOUND) {
            if (rc == DS_ERR_NOMEM || strcmp(labels[i], "local") == 0)
                return ds_ops_fail_store(ctx, rc, "looking up the id");
            ds_ops_replica_read_failed(ctx, stores[i], labels[i], rc);
            continue;
        }
        if (!rc && !found) {
            memcpy(id, cand, DS_ID_LEN);
            found = 1;
            *origin = j;
        }
        stores[j] = stores[i];
        labels[j] = labels[i];
        j++;
    }
    *n = j;
    if (j == 0 && ctx->nwarnings) {   /* no local store, and no replica could be read */
        const ds_op_warning *w = &ctx->warnings[ctx->nwarnings - 1];
        return ds_ops_fail(ctx, DS_ERR_STORE, w->code, w->hint[0] ? w->hint : NULL, "%s",
                           w->message);
    }
    if (!found)
        return ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND,
                           searched > 1 ? "Neither the local store nor a peer's replica holds "
                                          "it; ids are shown by ds query and ds show."
                                        : "Ids are shown by ds query and ds show.",
                           "no node with an id starting with '%s'", prefix);
    return 0;
}

int op_related(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *prefix = NULL;
    size_t limit, nhits = 0;
    ds_hit *hits = NULL;
    ds_node origin;
    ds_node_init(&origin);
    uint8_t id[DS_ID_LEN];
    int rc = ds_ops_get_str(ctx, params, "id", 0, &prefix);
    if (!rc && (!prefix || !prefix[0]))
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "Usage: ds related ID (ids are shown by ds query and ds show)",
                         "missing node id");
    for (char *p = prefix; !rc && *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    if (!rc)
        rc = ds_ops_get_limit(ctx, params, RELATED_DEFAULT_LIMIT, &limit);
    ds_store *stores[DS_OPS_MAX_STORES];
    const char *labels[DS_OPS_MAX_STORES];
    size_t nstores = 0, origin_store = 0;
    if (!rc)
        rc = ds_ops_stores(ctx, stores, labels, &nstores);
    if (!rc)
        rc = check_local(ctx, stores, labels, nstores);
    if (!rc)
        rc = resolve_id(ctx, stores, labels, &nstores, prefix, id, &origin_store);
    if (!rc) {
        rc = ds_store_get(stores[origin_store], id, &origin);
        if (rc)
            rc = ds_ops_fail_store(ctx, rc, "reading the node");
    }
    if (!rc) {
        hits = calloc(limit, sizeof *hits);
        if (!hits)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    for (size_t tries = 0; !rc && tries <= DS_OPS_MAX_STORES; tries++) {
        int src = ds_search_related(stores, nstores, origin_store, id, limit, hits, &nhits);
        if (src == DS_ERR_EMPTY) {
            nhits = 0; /* a node without searchable words has no relatives */
            break;
        }
        if (!src)
            break;
        /* Find the replica to blame with a search for the node's words;
         * the origin's store (first) is never left out. */
        ds_query *q = NULL;
        int qrc = ds_query_parse(origin.content ? origin.content : "",
                                 origin.content ? origin.content_len : 0, &q);
        if (qrc) {
            rc = search_error(ctx, qrc == DS_ERR_EMPTY ? src : qrc);
            break;
        }
        probe pr = { .q = q, .filter = NULL, .k = limit };
        rc = drop_failing(ctx, stores, labels, &nstores, &origin_store, &pr, src);
        ds_query_free(q);
    }
    if (!rc) {
        msgpack_pack_map(reply, 3);
        ds_pack_cstr(reply, "origin");
        ds_pack_node(reply, &origin, NULL, labels[origin_store]);
        ds_pack_cstr(reply, "results");
        pack_hits(reply, hits, nhits, labels);
        ds_pack_cstr(reply, "warnings");
        ds_ops_pack_warnings(ctx, reply);
    }
    if (hits)
        ds_hits_free(hits, nhits);
    free(hits);
    ds_node_free(&origin);
    free(prefix);
    return rc;
}
