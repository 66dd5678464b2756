/*
 * mcp.c - "ds mcp": the Model Context Protocol server over stdio.  The
 * MCP stdio transport is newline-delimited JSON-RPC 2.0: one JSON object
 * per line on stdin, one reply line per request on stdout, logs on
 * stderr.  This file reads bounded lines, parses them with jansson,
 * answers the lifecycle (initialize, ping) and the tools methods, and
 * turns each tool call into one request of the shared dispatch table
 * (ds_ops_call), so that a tool does exactly what the matching ds
 * command does.  Tool input only ever becomes MessagePack request
 * parameters: no shell, no command line, no child process (the original
 * server built shell commands from tool input).  Protocol violations get
 * JSON-RPC errors; failures of a well-formed tool call (empty query,
 * unknown node id) are tool results with isError, which the model sees.
 * Design notes: docs/mcp.md.
 */
#include "cli/mcp.h"

#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/home.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
    RPC_NOT_INITIALIZED = -32002, /* implementation-defined server error */
};

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

/* Newest first: the answer when the client asks for a version we lack. */
static const char *const supported_versions[] = { DS_MCP_LATEST_VERSION, "2025-03-26",
                                                  "2024-11-05" };

static const char instructions[] =
    "Datasphere is the user's long-term memory of earlier AI coding sessions, notes and "
    "documents, shared with chosen peers. Search it with datasphere_query before solving a "
    "problem that may have been met before; explore a hit with datasphere_related; save "
    "durable facts and decisions with datasphere_add.";

/* ---- Tool descriptions ---------------------------------------------------- */

#define STR_OR_NULL "{\"type\":[\"string\",\"null\"]}"
#define NODE_SCHEMA                                                                        \
    "{\"type\":\"object\",\"properties\":{"                                                \
    "\"id\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"},"                      \
    "\"score\":{\"type\":\"number\"},\"store\":" STR_OR_NULL ",\"project\":" STR_OR_NULL   \
    ",\"namespace\":" STR_OR_NULL ",\"source\":" STR_OR_NULL ",\"timestamp\":{\"type\":\"string\"}}," \
    "\"required\":[\"id\",\"content\",\"store\",\"project\"]}"
/* Peers' replicas that could not be opened or read, left out of a search. */
#define WARNINGS_SCHEMA                                                                    \
    "\"warnings\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"       \
    "\"peer\":{\"type\":\"string\"},\"path\":{\"type\":\"string\"},"                       \
    "\"message\":{\"type\":\"string\"},\"hint\":" STR_OR_NULL "}}}"
#define LIMIT_SCHEMA(what)                                                                  \
    "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100,\"default\":5,"          \
    "\"description\":\"number of " what ", 1 to 100 (default 5)\"}"

static const char tools_json[] =
    "["
    "{\"name\":\"datasphere_query\",\"title\":\"Search Datasphere memory\","
    "\"description\":\"Full-text search (BM25) of the user's long-term memory: knowledge from "
    "earlier coding sessions, notes and added files, in the local store and in replicas of "
    "peers' shared projects. Returns the best hits first, each with id, content, score (0..1), "
    "store ('local' or the peer it came from), project, namespace, source and timestamp.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\",\"description\":\"words to search for\"},"
    LIMIT_SCHEMA("hits") ","
    "\"namespace\":{\"type\":\"string\",\"description\":\"only nodes of this namespace (e.g. "
    "personal)\"},"
    "\"project\":{\"type\":\"string\",\"description\":\"only nodes of this project directory "
    "(and paths beneath it)\"},"
    "\"peer\":{\"type\":\"string\",\"description\":\"only nodes from this peer (name or node "
    "id)\"}},"
    "\"required\":[\"query\"],\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"results\":{\"type\":\"array\","
    "\"items\":" NODE_SCHEMA "}," WARNINGS_SCHEMA "},\"required\":[\"results\"]},"
    "\"annotations\":{\"readOnlyHint\":true,\"openWorldHint\":false}},"

    "{\"name\":\"datasphere_related\",\"title\":\"Find related knowledge\","
    "\"description\":\"Nodes similar to a given node (by id, as returned by datasphere_query; "
    "a unique prefix of at least 4 hex digits is enough). Returns origin (the node itself) and "
    "results, best first, with id, content, score, store, project, namespace, source and "
    "timestamp.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"node_id\":{\"type\":\"string\",\"description\":\"id of the node, or a unique prefix of "
    "it\"}," LIMIT_SCHEMA("related nodes") "},"
    "\"required\":[\"node_id\"],\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"origin\":" NODE_SCHEMA ","
    "\"results\":{\"type\":\"array\",\"items\":" NODE_SCHEMA "}," WARNINGS_SCHEMA "},"
    "\"required\":[\"origin\",\"results\"]},"
    "\"annotations\":{\"readOnlyHint\":true,\"openWorldHint\":false}},"

    "{\"name\":\"datasphere_add\",\"title\":\"Remember something\","
    "\"description\":\"Save a piece of knowledge (a fact, decision, fix or convention worth "
    "remembering across sessions) as a new note node. Returns its id, source, project, "
    "namespace and timestamp.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"content\":{\"type\":\"string\",\"description\":\"the text to remember\"},"
    "\"source\":{\"type\":\"string\",\"default\":\"note\",\"description\":\"a short label "
    "(tag) naming where it comes from; the node's source becomes '<source>:<UTC time>'\"},"
    "\"namespace\":{\"type\":\"string\",\"default\":\"personal\",\"description\":\"namespace of "
    "the node\"},"
    "\"project\":{\"type\":\"string\",\"description\":\"existing project directory the note "
    "belongs to (default: the server's working directory)\"}},"
    "\"required\":[\"content\"],\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},"
    "\"source\":" STR_OR_NULL ",\"project\":" STR_OR_NULL ",\"namespace\":" STR_OR_NULL ","
    "\"timestamp\":{\"type\":\"string\"},\"store\":{\"type\":\"string\"}},"
    "\"required\":[\"id\"]},"
    "\"annotations\":{\"readOnlyHint\":false,\"destructiveHint\":false,"
    "\"idempotentHint\":false,\"openWorldHint\":false}}"
    "]";

/* How each argument becomes a request parameter. */
typedef enum {
    ARG_STR,      /* string -> string */
    ARG_LIMIT,    /* integer 1..DS_MCP_MAX_LIMIT -> unsigned */
    ARG_STR_LIST, /* string -> array of one string ("tags") */
} arg_kind;

typedef struct tool_arg {
    const char *name;  /* argument of the tool */
    const char *param; /* parameter of the request */
    arg_kind kind;
    int required;
} tool_arg;

#define MAX_TOOL_ARGS 5

typedef struct tool {
    const char *name;
    const char *op;            /* request of ds_ops_call */
    int pass_cwd;              /* send the server's cwd as "cwd" */
    json_t *(*shape)(const msgpack_object *reply);
    tool_arg args[MAX_TOOL_ARGS];
} tool;

static json_t *shape_hits(const msgpack_object *reply);
static json_t *shape_note(const msgpack_object *reply);

static const tool tools[] = {
    { "datasphere_query", "query", 1, shape_hits,
      { { "query", "text", ARG_STR, 1 },
        { "limit", "limit", ARG_LIMIT, 0 },
        { "namespace", "namespace", ARG_STR, 0 },
        { "project", "project", ARG_STR, 0 },
        { "peer", "peer", ARG_STR, 0 } } },
    { "datasphere_related", "related", 0, shape_hits,
      { { "node_id", "id", ARG_STR, 1 }, { "limit", "limit", ARG_LIMIT, 0 } } },
    { "datasphere_add", "note", 1, shape_note,
      { { "content", "text", ARG_STR, 1 },
        { "source", "tags", ARG_STR_LIST, 0 },
        { "namespace", "namespace", ARG_STR, 0 },
        { "project", "project", ARG_STR, 0 } } },
};

/* ---- Session state and output -------------------------------------------- */

typedef struct mcp {
    ds_ctx *ctx;
    const char *cwd;
    FILE *out;
    int initialized; /* "initialize" has been answered */
} mcp;

/* Writes |msg| (consumed; NULL means out of memory) as one line. */
static int send_msg(mcp *m, json_t *msg)
{
    if (!msg)
        return DS_ERR_NOMEM;
    char *s = json_dumps(msg, DUMP_FLAGS);
    json_decref(msg);
    if (!s)
        return DS_ERR_NOMEM;
    int ok = fputs(s, m->out) >= 0 && fputc('\n', m->out) != EOF && fflush(m->out) == 0;
    free(s);
    return ok ? 0 : DS_ERR_IO;
}

/* The last resort when a reply could not be built. */
static int send_oom(mcp *m)
{
    static const char line[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                               "\"message\":\"Internal error: out of memory\"}}\n";
    return fputs(line, m->out) >= 0 && fflush(m->out) == 0 ? 0 : DS_ERR_IO;
}

/* |id| is borrowed (NULL: null); |result| is consumed. */
static int reply_result(mcp *m, json_t *id, json_t *result)
{
    if (!result)
        return DS_ERR_NOMEM;
    return send_msg(m, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                                 "result", result));
}

/* |id| is borrowed (NULL: null); |data| (may be NULL) is consumed. */
static int reply_error(mcp *m, json_t *id, int code, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int reply_error(mcp *m, json_t *id, int code, json_t *data, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:i,s:s}", "code", code, "message", text);
    if (err && data && json_object_set_new(err, "data", data) != 0) {
        json_decref(err);
        err = NULL;
    } else if (!err) {
        json_decref(data);
    }
    if (!err)
        return DS_ERR_NOMEM;
    return send_msg(m, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                                 "error", err));
}

/* ---- Tools ------------------------------------------------------------------ */

static json_t *shape_hits(const msgpack_object *reply)
{
    json_t *res = json_array();
    json_t *obj = json_object();
    const msgpack_object *arr = cli_get(reply, "results");
    int bad = !res || !obj;
    for (uint32_t i = 0; !bad && i < cli_len(arr); i++) {
        json_t *n = cli_node_json(cli_at(arr, i));
        bad = !n || json_array_append_new(res, n) != 0;
    }
    const msgpack_object *origin = cli_get(reply, "origin");
    if (!bad && origin) {
        json_t *o = cli_node_json(origin);
        bad = !o || json_object_set_new(obj, "origin", o) != 0;
    }
    if (!bad) {
        bad = json_object_set_new(obj, "results", res) != 0;
        res = NULL;
    }
    /* Peer replicas left out of the search (damaged): {peer, path,
     * message, hint}, only when there are any. */
    const msgpack_object *ws = cli_get(reply, "warnings");
    json_t *wa = !bad && cli_len(ws) ? json_array() : NULL;
    bad = bad || (cli_len(ws) && !wa);
    for (uint32_t i = 0; wa && !bad && i < cli_len(ws); i++) {
        const msgpack_object *w = cli_at(ws, i);
        json_t *o = json_pack("{s:o,s:o,s:o,s:o}", "peer", cli_json_str(cli_get(w, "peer")),
                              "path", cli_json_str(cli_get(w, "path")), "message",
                              cli_json_str(cli_get(w, "message")), "hint",
                              cli_json_str(cli_get(w, "hint")));
        bad = !o || json_array_append_new(wa, o) != 0;
    }
    if (wa && !bad) {
        bad = json_object_set_new(obj, "warnings", wa) != 0;
        wa = NULL;
    }
    json_decref(wa);
    json_decref(res);
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *shape_note(const msgpack_object *reply)
{
    char iso[32];
    ds_ops_iso8601(cli_i64(cli_get(reply, "timestamp")), 1, iso);
    return json_pack("{s:o,s:o,s:o,s:o,s:s,s:s}", "id", cli_json_str(cli_get(reply, "id")),
                     "source", cli_json_str(cli_get(reply, "source")), "project",
                     cli_json_str(cli_get(reply, "project")), "namespace",
                     cli_json_str(cli_get(reply, "namespace")), "timestamp", iso, "store",
                     "local");
}

static const tool *find_tool(const char *name)
{
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        if (strcmp(tools[i].name, name) == 0)
            return &tools[i];
    return NULL;
}

static const tool_arg *find_arg(const tool *t, const char *name)
{
    for (size_t i = 0; i < MAX_TOOL_ARGS && t->args[i].name; i++)
        if (strcmp(t->args[i].name, name) == 0)
            return &t->args[i];
    return NULL;
}

/* The value of argument |a| in |args|, NULL when absent or null. */
static json_t *arg_value(json_t *args, const tool_arg *a)
{
    json_t *v = args ? json_object_get(args, a->name) : NULL;
    return json_is_null(v) ? NULL : v;
}

/* Checks |args| against the tool's arguments; on failure writes a
 * sentence to |why| and returns -1. */
static int check_args(const tool *t, json_t *args, char *why, size_t whylen)
{
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        if (!find_arg(t, key)) {
            char names[128] = "";
            for (size_t i = 0; i < MAX_TOOL_ARGS && t->args[i].name; i++) {
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", t->args[i].name);
            }
            snprintf(why, whylen, "%s has no argument '%.100s' (it takes %s)", t->name, key,
                     names);
            return -1;
        }
    }
    for (size_t i = 0; i < MAX_TOOL_ARGS && t->args[i].name; i++) {
        const tool_arg *a = &t->args[i];
        v = arg_value(args, a);
        if (!v) {
            if (a->required) {
                snprintf(why, whylen, "%s needs the argument '%s'", t->name, a->name);
                return -1;
            }
            continue;
        }
        if (a->kind == ARG_LIMIT) {
            double d = json_is_integer(v) ? (double)json_integer_value(v)
                       : json_is_real(v)  ? json_real_value(v)
                                          : 0.0;
            /* Range first: the cast below is defined only for small values. */
            if (!json_is_number(v) || d < 1 || d > DS_MCP_MAX_LIMIT ||
                d != (double)(long long)d) {
                snprintf(why, whylen, "'%s' must be a whole number from 1 to %d", a->name,
                         DS_MCP_MAX_LIMIT);
                return -1;
            }
        } else if (!json_is_string(v)) {
            snprintf(why, whylen, "'%s' must be a string", a->name);
            return -1;
        }
    }
    return 0;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

/* Packs the request parameters of a checked tool call into |sb|. */
static int pack_params(const mcp *m, const tool *t, json_t *args, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t n = t->pass_cwd && m->cwd ? 1 : 0;
    for (size_t i = 0; i < MAX_TOOL_ARGS && t->args[i].name; i++)
        n += arg_value(args, &t->args[i]) != NULL;
    int rc = msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < MAX_TOOL_ARGS && t->args[i].name; i++) {
        const tool_arg *a = &t->args[i];
        json_t *v = arg_value(args, a);
        if (!v)
            continue;
        rc |= pack_str(&pk, a->param, strlen(a->param));
        if (a->kind == ARG_LIMIT) {
            double d = json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
            rc |= msgpack_pack_uint64(&pk, (uint64_t)d);
        } else {
            if (a->kind == ARG_STR_LIST)
                rc |= msgpack_pack_array(&pk, 1);
            rc |= pack_str(&pk, json_string_value(v), json_string_length(v));
        }
    }
    if (t->pass_cwd && m->cwd) {
        rc |= pack_str(&pk, "cwd", 3);
        rc |= pack_str(&pk, m->cwd, strlen(m->cwd));
    }
    return rc ? DS_ERR_NOMEM : 0;
}

/* A tool result carrying one text block; |structured| (consumed, may be
 * NULL) is added as structuredContent. */
static json_t *tool_result(const char *text, json_t *structured, int is_error)
{
    json_t *r = json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text", text,
                          "isError", is_error);
    if (r && structured && json_object_set_new(r, "structuredContent", structured) != 0) {
        json_decref(r);
        return NULL;
    }
    if (!r)
        json_decref(structured);
    return r;
}

static json_t *tool_error(const ds_op_error *e)
{
    char text[sizeof e->message + sizeof e->hint + 64];
    snprintf(text, sizeof text, "Error (%s): %s%s%s", e->code[0] ? e->code : "internal",
             e->message[0] ? e->message : "the request failed", e->hint[0] ? "\nHint: " : "",
             e->hint);
    return tool_result(text, NULL, 1);
}

/* Runs tool |t| with checked |args|; returns the tool result or NULL when
 * out of memory. */
static json_t *run_tool(mcp *m, const tool *t, json_t *args)
{
    msgpack_sbuffer req, rep;
    msgpack_sbuffer_init(&req);
    msgpack_sbuffer_init(&rep);
    msgpack_unpacked params, reply;
    msgpack_unpacked_init(&params);
    msgpack_unpacked_init(&reply);
    json_t *result = NULL;
    size_t off = 0;
    if (pack_params(m, t, args, &req) != 0 ||
        msgpack_unpack_next(&params, req.data, req.size, &off) != MSGPACK_UNPACK_SUCCESS)
        goto out;
    int rc = ds_ops_call(m->ctx, t->op, &params.data, &rep);
    if (rc) {
        if (!m->ctx->error.code[0])
            ds_ops_fail(m->ctx, rc, DS_OPS_E_INTERNAL, NULL, "%s", ds_strerror(rc));
        result = tool_error(&m->ctx->error);
        goto out;
    }
    off = 0;
    if (msgpack_unpack_next(&reply, rep.data, rep.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        reply.data.type != MSGPACK_OBJECT_MAP) {
        ds_op_error e = { .code = DS_OPS_E_INTERNAL };
        snprintf(e.message, sizeof e.message, "malformed reply to '%s'", t->op);
        result = tool_error(&e);
        goto out;
    }
    json_t *obj = t->shape(&reply.data);
    char *text = obj ? json_dumps(obj, DUMP_FLAGS) : NULL;
    if (text)
        result = tool_result(text, obj, 0);
    else
        json_decref(obj);
    free(text);
out:
    msgpack_unpacked_destroy(&reply);
    msgpack_unpacked_destroy(&params);
    msgpack_sbuffer_destroy(&rep);
    msgpack_sbuffer_destroy(&req);
    return result;
}

/* ---- Methods ---------------------------------------------------------------- */

static int do_initialize(mcp *m, json_t *id, json_t *params)
{
    if (m->initialized)
        return reply_error(m, id, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: the session is already initialized");
    json_t *pv = params ? json_object_get(params, "protocolVersion") : NULL;
    if (!json_is_object(params) || !json_is_string(pv))
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL,
                           "Invalid params: initialize needs {protocolVersion, capabilities, "
                           "clientInfo} with protocolVersion a string");
    const char *version = supported_versions[0];
    for (size_t i = 0; i < sizeof supported_versions / sizeof supported_versions[0]; i++)
        if (strcmp(json_string_value(pv), supported_versions[i]) == 0)
            version = supported_versions[i];
    json_t *ci = json_object_get(params, "clientInfo");
    const char *cname = json_string_value(json_object_get(ci, "name"));
    const char *cver = json_string_value(json_object_get(ci, "version"));
    fprintf(stderr, "ds mcp: client %.100s %.50s asked for protocol %.50s, using %s\n",
            cname ? cname : "(unnamed)", cver ? cver : "", json_string_value(pv), version);
    json_t *res = json_pack("{s:s,s:{s:{}},s:{s:s,s:s,s:s},s:s}", "protocolVersion", version,
                            "capabilities", "tools", "serverInfo", "name", "datasphere", "title",
                            "Datasphere", "version", DS_VERSION, "instructions", instructions);
    int rc = reply_result(m, id, res);
    if (rc == 0)
        m->initialized = 1;
    return rc;
}

static int do_tools_list(mcp *m, json_t *id, json_t *params)
{
    json_t *cursor = params ? json_object_get(params, "cursor") : NULL;
    if (cursor && !json_is_string(cursor) && !json_is_null(cursor))
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL,
                           "Invalid params: cursor must be a string");
    json_error_t jerr;
    json_t *list = json_loads(tools_json, 0, &jerr);
    if (!list) {
        /* A programmer error in tools_json; the unit test catches it. */
        fprintf(stderr, "ds mcp: bad tool table: %s (column %d)\n", jerr.text, jerr.column);
        return reply_error(m, id, RPC_INTERNAL_ERROR, NULL, "Internal error: bad tool table");
    }
    return reply_result(m, id, json_pack("{s:o}", "tools", list));
}

static int do_tools_call(mcp *m, json_t *id, json_t *params)
{
    json_t *name = params ? json_object_get(params, "name") : NULL;
    if (!json_is_string(name))
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL,
                           "Invalid params: tools/call needs {name, arguments} with name a string");
    const tool *t = find_tool(json_string_value(name));
    if (!t)
        return reply_error(m, id, RPC_INVALID_PARAMS,
                           json_pack("{s:[s,s,s]}", "tools", tools[0].name, tools[1].name,
                                     tools[2].name),
                           "Unknown tool: %.200s", json_string_value(name));
    json_t *args = json_object_get(params, "arguments");
    if (json_is_null(args))
        args = NULL;
    if (args && !json_is_object(args))
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL,
                           "Invalid params: arguments of %s must be an object", t->name);
    char why[400];
    if (check_args(t, args, why, sizeof why) != 0)
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL, "Invalid params: %s", why);
    json_t *res = run_tool(m, t, args);
    if (!res)
        return reply_error(m, id, RPC_INTERNAL_ERROR, NULL, "Internal error: out of memory");
    return reply_result(m, id, res);
}

static int handle_request(mcp *m, json_t *id, const char *method, json_t *params)
{
    if (strcmp(method, "initialize") == 0)
        return do_initialize(m, id, params);
    if (strcmp(method, "ping") == 0)
        return reply_result(m, id, json_object());
    int list = strcmp(method, "tools/list") == 0;
    if (!list && strcmp(method, "tools/call") != 0)
        return reply_error(m, id, RPC_METHOD_NOT_FOUND, NULL, "Method not found: %.200s", method);
    if (!m->initialized)
        return reply_error(m, id, RPC_NOT_INITIALIZED, NULL,
                           "Server not initialized: send initialize first");
    if (params && !json_is_object(params))
        return reply_error(m, id, RPC_INVALID_PARAMS, NULL,
                           "Invalid params: params of %s must be an object", method);
    return list ? do_tools_list(m, id, params) : do_tools_call(m, id, params);
}

/* Notifications are never answered.  notifications/initialized and
 * notifications/cancelled (calls run to completion before the next line
 * is read, so there is nothing to cancel) need no action. */
static void handle_notification(const char *method)
{
    if (strncmp(method, "notifications/", 14) != 0)
        fprintf(stderr, "ds mcp: ignoring notification '%.200s'\n", method);
}

static int handle_message(mcp *m, json_t *msg)
{
    if (json_is_array(msg))
        return reply_error(m, NULL, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: batches are not supported (MCP 2025-06-18 removed "
                           "JSON-RPC batching); send one message per line");
    if (!json_is_object(msg))
        return reply_error(m, NULL, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: a message must be a JSON object");
    json_t *id = json_object_get(msg, "id");
    if (id && !json_is_string(id) && !json_is_integer(id))
        return reply_error(m, NULL, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: id must be a string or an integer");
    const char *ver = json_string_value(json_object_get(msg, "jsonrpc"));
    if (!ver || strcmp(ver, "2.0") != 0)
        return reply_error(m, id, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: \"jsonrpc\" must be \"2.0\"");
    json_t *method = json_object_get(msg, "method");
    if (!method) {
        /* A response: this server sends no requests, nothing waits for it. */
        if (id && (json_object_get(msg, "result") || json_object_get(msg, "error")))
            return 0;
        return reply_error(m, id, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: \"method\" is missing");
    }
    if (!json_is_string(method))
        return reply_error(m, id, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: \"method\" must be a string");
    json_t *params = json_object_get(msg, "params");
    if (json_is_null(params))
        params = NULL;
    if (params && !json_is_object(params) && !json_is_array(params))
        return reply_error(m, id, RPC_INVALID_REQUEST, NULL,
                           "Invalid Request: \"params\" must be an object");
    if (!id) {
        handle_notification(json_string_value(method));
        return 0;
    }
    return handle_request(m, id, json_string_value(method), params);
}

static int handle_line(mcp *m, const char *line, size_t len)
{
    while (len > 0 && line[len - 1] == '\r')
        len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len)
        return 0; /* blank line */
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!msg)
        return reply_error(m, NULL, RPC_PARSE_ERROR,
                           json_pack("{s:s,s:I}", "detail", jerr.text, "position",
                                     (json_int_t)jerr.position),
                           "Parse error: %s", jerr.text);
    int rc = handle_message(m, msg);
    json_decref(msg);
    return rc;
}

/* ---- Input ------------------------------------------------------------------ */

typedef struct line_buf {
    char *p;
    size_t len, cap;
    int too_long; /* the line exceeded DS_MCP_MAX_LINE (rest discarded) */
    int oom;      /* the buffer could not grow (rest discarded) */
} line_buf;

/* Reads one line without its '\n'.  Returns 1 (a line, possibly the last
 * one without a newline), 0 at end of input, DS_ERR_IO on a read error. */
static int read_line(FILE *in, line_buf *b)
{
    b->len = 0;
    b->too_long = b->oom = 0;
    int c, any = 0;
    while ((c = getc_unlocked(in)) != EOF) {
        any = 1;
        if (c == '\n')
            return 1;
        if (b->too_long || b->oom)
            continue;
        if (b->len == DS_MCP_MAX_LINE) {
            b->too_long = 1;
            continue;
        }
        if (b->len == b->cap) {
            size_t ncap = b->cap ? b->cap * 2 : 4096;
            if (ncap > DS_MCP_MAX_LINE)
                ncap = DS_MCP_MAX_LINE;
            char *np = realloc(b->p, ncap);
            if (!np) {
                b->oom = 1;
                continue;
            }
            b->p = np;
            b->cap = ncap;
        }
        b->p[b->len++] = (char)c;
    }
    if (ferror(in))
        return DS_ERR_IO;
    return any;
}

int ds_mcp_serve(ds_ctx *ctx, const char *cwd, FILE *in, FILE *out)
{
    mcp m = { .ctx = ctx, .cwd = cwd, .out = out, .initialized = 0 };
    line_buf b = { 0 };
    int rc;
    while ((rc = read_line(in, &b)) == 1) {
        if (b.too_long) {
            fprintf(stderr, "ds mcp: discarded a message longer than %u bytes\n",
                    DS_MCP_MAX_LINE);
            rc = reply_error(&m, NULL, RPC_PARSE_ERROR, NULL,
                             "Parse error: message longer than %u bytes (one line)",
                             DS_MCP_MAX_LINE);
        } else if (b.oom) {
            rc = DS_ERR_NOMEM;
        } else {
            rc = handle_line(&m, b.p, b.len);
        }
        if (rc == DS_ERR_NOMEM)
            rc = send_oom(&m);
        if (rc)
            break;
    }
    free(b.p);
    return rc < 0 ? rc : 0;
}

/* ---- The command ------------------------------------------------------------ */

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void real_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

int cmd_mcp(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = { CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (sodium_init() < 0)
        return cli_fail("cannot initialize libsodium");
    char *home = NULL;
    int rc = ds_home_resolve(c->home_opt, &home);
    if (rc == DS_ERR_INVALID)
        return cli_fail("cannot find the home directory: set HOME or DS_HOME, or use --home DIR");
    if (rc)
        return cli_fail("cannot determine the home directory: %s", ds_strerror(rc));
    ds_ctx ctx;
    rc = ds_ctx_init(&ctx, home, real_now_ms, real_random);
    if (rc) {
        free(home);
        return cli_fail("%s", ds_strerror(rc));
    }
    char *cwd = getcwd(NULL, 0); /* NULL is tolerated: notes then have no project */
    /* A client that goes away must end the server with EPIPE, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "ds mcp: waiting for MCP messages (JSON-RPC, one per line) on stdin; "
                        "this command is meant to be started by an MCP client such as Claude "
                        "Code (see ds mcp --help). Press Ctrl-D to end.\n");
    fprintf(stderr, "ds mcp: Datasphere MCP server %s on stdio, home %s\n", DS_VERSION, home);
    rc = ds_mcp_serve(&ctx, cwd, stdin, stdout);
    ds_ctx_free(&ctx);
    free(cwd);
    free(home);
    if (rc == DS_ERR_IO)
        return cli_fail("mcp: the client closed the connection or a read failed");
    if (rc)
        return cli_fail("mcp: %s", ds_strerror(rc));
    return CLI_OK;
}
