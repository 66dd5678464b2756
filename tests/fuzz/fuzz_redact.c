/*
 * fuzz_redact.c - libFuzzer target for secret redaction: it must succeed
 * on any bytes, be idempotent, leave text without secrets untouched and
 * always NUL-terminate.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/redact.h"
/* properties: success, idempotent, untouched when no redaction, NUL-terminated */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *a, *b; size_t la, lb; ds_redact_stats s1, s2;
    if (ds_redact((const char *)data, size, &a, &la, &s1)) abort();
    if (a[la]) abort();
    if (s1.total == 0 && (la != size || memcmp(a, data, size))) abort();
    if (ds_redact(a, la, &b, &lb, &s2)) abort();
    if (s2.total || la != lb || memcmp(a, b, la)) abort();
    free(a); free(b);
    return 0;
}
