/*
 * fuzz_exchange.c - libFuzzer target for the export file reader (files
 * arrive from other people on USB sticks and in mail): any input is
 * verified or refused without crashing, leaking or reading out of
 * bounds; a refusal always says where and what, and an accepted file's
 * header is consistent.  The seed corpus holds real small exports.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/exchange.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_import_info info;
    int rc = ds_import_verify(data, size, &info);
    if (rc) {
        if (rc > 0 || !info.err_what)
            abort();
        if (info.err_offset > size)
            abort();
        return 0;
    }
    if (!ds_node_id_valid(info.node_id) || info.pages == 0 || info.full == info.has_since)
        abort();
    /* Any strict prefix of an accepted file is refused. */
    if (ds_import_verify(data, size - 1, &info) == 0)
        abort();
    return 0;
}
