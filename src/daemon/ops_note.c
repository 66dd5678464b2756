/*
 * ops_note.c - the "note" request: one piece of text typed by the user
 * becomes one knowledge node.  The source is "<tag or note>:<UTC time>",
 * tags go into the metadata as JSON ({"tags": [...]}, built with jansson)
 * and the project is the canonical path of the given project or, by
 * default, of the client's working directory.
 */
#include "daemon/ops.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "daemon/home.h"

/* Builds {"tags": [...]} from the "tags" parameter; *out stays NULL when
 * there are no tags.  *first receives a malloc'd copy of the first tag. */
static int note_tags(ds_ctx *ctx, const msgpack_object *params, char **out, char **first)
{
    *out = NULL;
    *first = NULL;
    const msgpack_object *tags = ds_ops_get(params, "tags");
    if (!tags)
        return 0;
    if (tags->type != MSGPACK_OBJECT_ARRAY)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "parameter 'tags' must be an array of strings");
    if (tags->via.array.size == 0)
        return 0;
    if (tags->via.array.size > 64)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "too many tags (at most 64)");
    json_t *arr = json_array();
    int rc = arr ? 0 : ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    for (uint32_t i = 0; !rc && i < tags->via.array.size; i++) {
        /* Validate each tag like a name parameter. */
        msgpack_object_kv kv = { .key = { .type = MSGPACK_OBJECT_STR,
                                          .via.str = { .size = 3, .ptr = "tag" } },
                                 .val = tags->via.array.ptr[i] };
        msgpack_object one = { .type = MSGPACK_OBJECT_MAP, .via.map = { .size = 1, .ptr = &kv } };
        char *tag = NULL;
        rc = ds_ops_get_name(ctx, &one, "tag", NULL, &tag);
        if (!rc && !tag)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL, "a tag is empty");
        if (rc)
            break;
        if (json_array_append_new(arr, json_string(tag)) != 0)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        if (!rc && i == 0)
            *first = tag;
        else
            free(tag);
    }
    if (!rc) {
        json_t *obj = json_pack("{s:o}", "tags", arr);
        arr = NULL;
        *out = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (!*out)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    json_decref(arr);
    if (rc) {
        free(*first);
        *first = NULL;
    }
    return rc;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
            return 0;
    return 1;
}

int op_note(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *text = NULL, *ns = NULL, *project = NULL, *cwd = NULL, *pparam = NULL;
    char *meta = NULL, *tag = NULL;
    ds_node n;
    ds_node_init(&n);
    int rc = ds_ops_get_str(ctx, params, "text", 0, &text);
    if (!rc && (!text || is_blank(text)))
        rc = ds_ops_fail(ctx, DS_ERR_EMPTY, DS_OPS_E_INVALID,
                         "Usage: ds note TEXT, e.g. ds note \"use -j2 on this box\"",
                         "empty note: give the text to remember");
    if (!rc && strlen(text) > DS_NODE_MAX_CONTENT)
        rc = ds_ops_fail(ctx, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE,
                         "For long text, put it in a file and run ds add FILE.",
                         "note too long (%zu bytes; the limit is %u)", strlen(text),
                         DS_NODE_MAX_CONTENT);
    if (!rc)
        rc = ds_ops_get_name(ctx, params, "namespace", "personal", &ns);
    if (!rc)
        rc = note_tags(ctx, params, &meta, &tag);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "project", 0, &pparam);
    if (!rc && pparam) {
        if (!pparam[0] || ds_path_canonical(cwd, pparam, &project) != 0)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                             "The project must be an existing directory.",
                             "project %s: %s", pparam,
                             pparam[0] ? strerror(errno) : "empty path");
    } else if (!rc && cwd) {
        if (ds_path_canonical(NULL, cwd, &project) != 0)
            project = strdup(cwd);
        if (!project)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    if (rc)
        goto out;

    int64_t now = ctx->now_ms();
    char iso[32], source[DS_OPS_MAX_NAME + 40];
    ds_ops_iso8601(now, 0, iso);
    snprintf(source, sizeof source, "%s:%s", tag ? tag : "note", iso);

    uint8_t rnd[DS_ID_LEN];
    ctx->random_buf(rnd, sizeof rnd);
    ds_uuid_from_random(n.id, rnd);
    rc = ds_node_set_content(&n, text, strlen(text));
    if (!rc)
        rc = ds_node_set_str(&n.source, source);
    if (!rc)
        rc = ds_node_set_str(&n.project, project ? project : "");
    if (!rc)
        rc = ds_node_set_str(&n.ns, ns);
    if (!rc && meta)
        rc = ds_node_set_str(&n.metadata, meta);
    if (rc) {
        rc = ds_ops_fail_store(ctx, rc, "saving the note");
        goto out;
    }
    n.source_type = DS_SOURCE_NOTE;
    n.timestamp = now;
    n.confidence = 1.0;

    ds_store *st;
    rc = ds_ctx_store(ctx, 1, &st);
    if (rc)
        goto out;
    rc = ds_store_put(st, &n);
    if (rc) {
        rc = ds_ops_fail_store(ctx, rc, "saving the note");
        goto out;
    }
    char id[DS_UUID_STRLEN + 1];
    ds_uuid_format(n.id, id);
    msgpack_pack_map(reply, 5);
    ds_pack_cstr(reply, "id");
    ds_pack_cstr(reply, id);
    ds_pack_cstr(reply, "source");
    ds_pack_cstr(reply, n.source);
    ds_pack_cstr(reply, "project");
    ds_pack_cstr(reply, n.project);
    ds_pack_cstr(reply, "namespace");
    ds_pack_cstr(reply, n.ns);
    ds_pack_cstr(reply, "timestamp");
    msgpack_pack_int64(reply, n.timestamp);
out:
    ds_node_free(&n);
    free(text);
    free(ns);
    free(project);
    free(cwd);
    free(pparam);
    free(meta);
    free(tag);
    return rc;
}
