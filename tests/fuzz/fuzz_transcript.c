/*
 * fuzz_transcript.c - libFuzzer target for the transcript parser, which
 * reads files that other programs write while we read them.  Any input
 * must parse without crashing or leaking; every turn's strings must be
 * NUL-terminated valid UTF-8 within the caps; |consumed| must stop after
 * the last complete line (all input with |final|); and parsing in two
 * calls resumed at |consumed| must give the same turns as one call.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/transcript.h"

/* 1 if |s| is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, len, lo = 0x80, hi = 0xBF;
        if (c < 0x80) { s++; continue; }
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; lo = c == 0xE0 ? 0xA0 : 0x80; hi = c == 0xED ? 0x9F : 0xBF; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; lo = c == 0xF0 ? 0x90 : 0x80; hi = c == 0xF4 ? 0x8F : 0xBF; }
        else return 0;
        if (s[1] < lo || s[1] > hi) return 0;
        for (unsigned k = 2; k < len; k++)
            if (s[k] < 0x80 || s[k] > 0xBF) return 0;
        s += len;
    }
    return 1;
}

static void check(const ds_transcript_batch *b, const uint8_t *data, size_t size, int final)
{
    if (b->consumed > size) abort();
    if (final && b->consumed != size) abort();
    if (!final) {
        if (b->consumed && data[b->consumed - 1] != '\n') abort();
        if (memchr(data + b->consumed, '\n', size - b->consumed)) abort();
    }
    if (b->count && !b->turns) abort();
    for (size_t k = 0; k < b->count; k++) {
        const ds_turn *t = &b->turns[k];
        if ((unsigned)t->kind > DS_TURN_TOOL_RESULT) abort();
        if (!t->text || !t->cwd || !t->session_id || !t->uuid || !t->tool_name) abort();
        size_t n = strlen(t->text);
        if (n == 0 || n > DS_TRANSCRIPT_MAX_TEXT) abort();
        if (!valid_utf8((const unsigned char *)t->text) || !valid_utf8((const unsigned char *)t->cwd) ||
            !valid_utf8((const unsigned char *)t->session_id) || !valid_utf8((const unsigned char *)t->uuid) ||
            !valid_utf8((const unsigned char *)t->tool_name))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    ds_transcript_batch all, a, b;
    if (ds_transcript_parse(buf, size, 1, &all) != 0) abort();
    check(&all, data, size, 1);
    if (ds_transcript_parse(buf, size, 0, &a) != 0) abort();
    check(&a, data, size, 0);
    if (ds_transcript_parse(buf + a.consumed, size - a.consumed, 1, &b) != 0) abort();
    check(&b, data + a.consumed, size - a.consumed, 1);
    if (a.count + b.count != all.count || a.skipped + b.skipped != all.skipped) abort();
    for (size_t k = 0; k < all.count; k++) {
        const ds_turn *t = k < a.count ? &a.turns[k] : &b.turns[k - a.count];
        if (t->kind != all.turns[k].kind || strcmp(t->text, all.turns[k].text) ||
            t->timestamp_ms != all.turns[k].timestamp_ms)
            abort();
    }
    ds_transcript_batch_free(&all);
    ds_transcript_batch_free(&a);
    ds_transcript_batch_free(&b);
    return 0;
}
