/*
 * search.h - BM25 full-text search over one or several stores.
 *
 * A query runs in two phases so that many stores (the local store and
 * every peer replica) rank on one scale: first the statistics of all
 * stores are summed (document count, total length, per-term document
 * frequency), then each store is searched with those combined statistics.
 * Scores are BM25 divided by the query's maximum attainable BM25 under
 * the same statistics, so they lie in 0..1 and compare across stores.
 */
#ifndef DS_SEARCH_H
#define DS_SEARCH_H

#include <stddef.h>
#include <stdint.h>
#include "ds/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_query ds_query;

typedef struct ds_search_stats {
    uint64_t doc_count;
    uint64_t total_len;
    size_t nterms;
    uint64_t *df;          /* nterms entries, owned by the stats */
} ds_search_stats;

typedef struct ds_search_filter {
    const char *ns;        /* exact namespace, or NULL */
    const char *project;   /* project path: matches it and paths beneath */
    const uint8_t *exclude_id; /* skip this node (for "related"), or NULL */
} ds_search_filter;

typedef struct ds_hit {
    ds_node node;          /* owned by the hit */
    double score;          /* 0..1 */
    int store_index;       /* which store of a multi-store search */
} ds_hit;

/* Tokenizes |text| into a query.  DS_ERR_EMPTY when it holds no
 * searchable term, DS_ERR_NOMEM. */
DS_API int ds_query_parse(const char *text, size_t len, ds_query **out);
DS_API void ds_query_free(ds_query *q);
DS_API size_t ds_query_nterms(const ds_query *q);
DS_API const char *ds_query_term(const ds_query *q, size_t i);

DS_API int ds_search_stats_init(ds_search_stats *s, const ds_query *q);
DS_API void ds_search_stats_free(ds_search_stats *s);
/* Adds store |st|'s statistics for |q| to |acc|. */
DS_API int ds_search_stats_add(ds_store *st, const ds_query *q, ds_search_stats *acc);
/* Keeps only the |max_terms| most selective terms of |q| (by idf times
 * query frequency under |stats|); |stats| is updated to match. */
DS_API void ds_query_prune(ds_query *q, ds_search_stats *stats, size_t max_terms);

/* Top-|k| hits of |q| in |st| under |stats|, best first, into |hits|
 * (room for k); *nhits receives the count.  Caller frees each hit's node. */
DS_API int ds_search_store(ds_store *st, const ds_query *q, const ds_search_stats *stats,
                           const ds_search_filter *filter, size_t k,
                           ds_hit *hits, size_t *nhits);

/* Fan-out: searches |nstores| stores with combined statistics and merges
 * to the top |k|.  hit.store_index tells which store. */
DS_API int ds_search_multi(ds_store **stores, size_t nstores, const ds_query *q,
                           const ds_search_filter *filter, size_t k,
                           ds_hit *hits, size_t *nhits);
DS_API void ds_hits_free(ds_hit *hits, size_t n);

/* Nodes related to node |id| of |stores[origin]|: a query made from its
 * most selective terms, the node itself excluded. */
DS_API int ds_search_related(ds_store **stores, size_t nstores, size_t origin,
                             const uint8_t id[DS_ID_LEN], size_t k,
                             ds_hit *hits, size_t *nhits);

#ifdef __cplusplus
}
#endif
#endif
