/*
 * fuzz_distill.c - libFuzzer target for the parser of an external
 * distiller's output (a model's reply, or a user's command's stdout):
 * text nobody controls.  Any input gives insights or DS_ERR_PROTO without
 * crashing, leaking or reading out of bounds.  On success there are at
 * most 256 insights, each non-empty valid UTF-8 of at most 16 KiB with no
 * NUL inside, a kind, and a confidence in 0..1; on error nothing is
 * returned.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/distill.h"
#include "core/util.h"
#include "ds/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_insight *v = (ds_insight *)1;
    size_t n = 12345;
    int rc = ds_distill_parse_output((const char *)data, size, &v, &n);
    if (rc) {
        if (rc != DS_ERR_PROTO || v != NULL || n != 0)
            abort();
        return 0;
    }
    if (n > 256 || (n && !v))
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *c = v[i].content;
        if (!c)
            abort();
        size_t len = strlen(c);
        if (len == 0 || len > 16384 || !ds_utf8_valid(c, len))
            abort();
        if (!v[i].kind || !(v[i].confidence >= 0.0 && v[i].confidence <= 1.0))
            abort();
    }
    ds_insights_free(v, n);
    return 0;
}
