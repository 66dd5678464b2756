/*
 * cmd_ingest.c - "ds scan" (ingest a project's Claude Code sessions now)
 * and "ds queue" (show and change the ingestion job queue).  scan first
 * asks for the list of the project's session files, then sends one
 * request per file so that progress can be shown on a terminal; the same
 * requests run in the daemon when one is running, in process otherwise.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void progress(int on, size_t i, size_t n, const char *path, size_t len)
{
    if (!on)
        return;
    if (path) {
        const char *base = path;
        for (size_t k = 0; k < len; k++)
            if (path[k] == '/')
                base = path + k + 1;
        fprintf(stderr, "\r\033[K[%zu/%zu] %.*s", i + 1, n, (int)(len - (size_t)(base - path)),
                base);
    } else {
        fputs("\r\033[K", stderr);
    }
    fflush(stderr);
}

int cmd_scan(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        { "project", required_argument, NULL, 'p' },
        CLI_OPT_JSON, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    const char *project = NULL;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":p:jh", lo, NULL)) != -1) {
        if (opt == 'p') {
            project = optarg;
            continue;
        }
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s' (use --project DIR)", argv[optind]);

    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "project", project);
    cli_param_uint(&ps, "list", 1);
    cli_reply lr;
    int rc = cli_call(c, "scan", &ps, &lr);
    if (rc) {
        cli_reply_free(&lr);
        return rc;
    }
    const msgpack_object *files = cli_get(lr.root, "files");
    uint32_t n = cli_len(files);
    size_t pl;
    const char *proj = cli_str(cli_get(lr.root, "project"), &pl);
    json_t *out = c->json ? json_object() : NULL;
    json_t *arr = c->json ? json_array() : NULL;
    if (c->json && (!out || !arr)) {
        cli_reply_free(&lr);
        json_decref(out);
        json_decref(arr);
        return cli_fail("out of memory");
    }
    if (n == 0 && !c->json) {
        fprintf(stderr, "ds: no Claude Code sessions found for %.*s in", (int)pl, proj);
        const msgpack_object *roots = cli_get(lr.root, "roots");
        for (uint32_t i = 0; i < cli_len(roots); i++) {
            size_t rl;
            const char *r = cli_str(cli_at(roots, i), &rl);
            fprintf(stderr, "%s %.*s", i ? "," : "", (int)rl, r);
        }
        fputs("\n", stderr);
    }
    int show = n > 0 && !c->json && isatty(STDERR_FILENO);
    uint64_t nodes = 0, skipped = 0, failed = 0;
    int status = CLI_OK;
    for (uint32_t i = 0; i < n; i++) {
        size_t fl;
        const char *f = cli_str(cli_at(files, i), &fl);
        char *path = strndup(f, fl);
        if (!path) {
            status = cli_fail("out of memory");
            break;
        }
        progress(show, i, n, f, fl);
        cli_params fp = { .n = 0 };
        cli_param_strv(&fp, "files", &path, 1);
        cli_reply r;
        rc = cli_call(c, "scan", &fp, &r);
        progress(show, 0, 0, NULL, 0);
        free(path);
        if (rc) {
            cli_reply_free(&r);
            status = rc;
            break;
        }
        const msgpack_object *fr = cli_at(cli_get(r.root, "files"), 0);
        size_t sl;
        const char *st = cli_str(cli_get(fr, "status"), &sl);
        uint64_t fn = cli_u64(cli_get(fr, "nodes"));
        nodes += fn;
        if (sl == 5 && memcmp(st, "error", 5) == 0) {
            size_t el;
            const char *e = cli_str(cli_get(fr, "error"), &el);
            fprintf(stderr, "ds: %.*s: %.*s\n", (int)fl, f, (int)el, e);
            failed++;
            status = CLI_FAIL;
        } else if (sl == 9 && memcmp(st, "unchanged", 9) == 0) {
            skipped++;
        }
        if (arr) {
            json_t *o = json_object();
            if (o) {
                json_object_set_new(o, "path", cli_json_str(cli_get(fr, "path")));
                json_object_set_new(o, "status", cli_json_str(cli_get(fr, "status")));
                json_object_set_new(o, "nodes", json_integer((json_int_t)fn));
                json_object_set_new(o, "replaced",
                                    json_integer((json_int_t)cli_u64(cli_get(fr, "replaced"))));
                const msgpack_object *e = cli_get(fr, "error");
                if (e)
                    json_object_set_new(o, "error", cli_json_str(e));
            }
            if (!o || json_array_append_new(arr, o) != 0) {
                cli_reply_free(&r);
                status = cli_fail("out of memory");
                break;
            }
        }
        cli_reply_free(&r);
    }
    if (out) {
        json_object_set_new(out, "project", json_stringn(proj, pl));
        json_object_set_new(out, "sessions", json_integer(n));
        json_object_set_new(out, "nodes", json_integer((json_int_t)nodes));
        json_object_set_new(out, "skipped", json_integer((json_int_t)skipped));
        json_object_set_new(out, "failed", json_integer((json_int_t)failed));
        json_object_set_new(out, "files", arr);
        cli_reply_free(&lr);
        int jrc = cli_json_print(out);
        return status ? status : jrc;
    }
    if (n > 0)
        printf("scanned %u session%s of %.*s: %llu new node%s, %llu unchanged, %llu failed\n", n,
               n == 1 ? "" : "s", (int)pl, proj, (unsigned long long)nodes,
               nodes == 1 ? "" : "s", (unsigned long long)skipped, (unsigned long long)failed);
    cli_reply_free(&lr);
    return status;
}

/* ---- queue ---------------------------------------------------------------- */

static void print_time(const char *label, int64_t ms)
{
    char t[32];
    if (ms <= 0) {
        printf("  %-9s -\n", label);
        return;
    }
    cli_local_time(ms, t);
    printf("  %-9s %s\n", label, t);
}

static void print_jobs(const msgpack_object *jobs)
{
    uint32_t n = cli_len(jobs);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *j = cli_at(jobs, i);
        size_t il, pl, sl, el;
        const char *id = cli_str(cli_get(j, "id"), &il);
        const char *path = cli_str(cli_get(j, "path"), &pl);
        const char *state = cli_str(cli_get(j, "state"), &sl);
        const char *err = cli_str(cli_get(j, "error"), &el);
        printf("%.8s  %.*s  %.*s\n", id, (int)sl, state, (int)pl, path);
        printf("  attempts  %llu\n", (unsigned long long)cli_u64(cli_get(j, "attempts")));
        if (sl == 7 && memcmp(state, "pending", 7) == 0)
            print_time("next", cli_i64(cli_get(j, "next")));
        print_time("updated", cli_i64(cli_get(j, "updated")));
        if (el)
            printf("  error     %.*s\n", (int)el, err);
    }
}

int cmd_queue(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        { "all", no_argument, NULL, 'a' },
        CLI_OPT_JSON, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    int all = 0, opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":ajh", lo, NULL)) != -1) {
        if (opt == 'a') {
            all = 1;
            continue;
        }
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    int nargs = argc - optind;
    const char *action = nargs > 0 ? argv[optind] : "status";
    const char *id = nargs > 1 ? argv[optind + 1] : NULL;
    static const char *const actions[] = { "status", "pending", "failed", "retry", "clear" };
    int known = 0;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        known |= strcmp(action, actions[i]) == 0;
    if (!known)
        return cli_usage_error(cmd, "unknown action '%s' (status, pending, failed, retry, clear)",
                               action);
    int retry = strcmp(action, "retry") == 0;
    if (nargs > (retry ? 2 : 1))
        return cli_usage_error(cmd, "too many arguments");
    if (retry && !id && !all)
        return cli_usage_error(cmd, "retry needs a job ID or --all");
    if (retry && id && all)
        return cli_usage_error(cmd, "give either a job ID or --all, not both");
    if (all && !retry)
        return cli_usage_error(cmd, "--all goes with retry");

    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "action", action);
    cli_param_str(&ps, "id", id);
    if (all)
        cli_param_uint(&ps, "all", 1);
    cli_reply r;
    int rc = cli_call(c, "queue", &ps, &r);
    if (rc) {
        cli_reply_free(&r);
        return rc;
    }
    const msgpack_object *counts = cli_get(r.root, "counts");
    const msgpack_object *jobs = cli_get(r.root, "jobs");
    uint64_t changed = cli_u64(cli_get(r.root, "changed"));
    static const char *const states[] = { "pending", "processing", "done", "failed" };
    if (c->json) {
        json_t *o = json_object(), *cj = json_object(), *ja = json_array();
        if (!o || !cj || !ja) {
            json_decref(o);
            json_decref(cj);
            json_decref(ja);
            cli_reply_free(&r);
            return cli_fail("out of memory");
        }
        for (size_t i = 0; i < 4; i++)
            json_object_set_new(cj, states[i],
                                json_integer((json_int_t)cli_u64(cli_get(counts, states[i]))));
        for (uint32_t i = 0; i < cli_len(jobs); i++) {
            const msgpack_object *j = cli_at(jobs, i);
            json_t *jo = json_object();
            if (!jo)
                continue;
            json_object_set_new(jo, "id", cli_json_str(cli_get(j, "id")));
            json_object_set_new(jo, "path", cli_json_str(cli_get(j, "path")));
            json_object_set_new(jo, "state", cli_json_str(cli_get(j, "state")));
            json_object_set_new(jo, "attempts",
                                json_integer((json_int_t)cli_u64(cli_get(j, "attempts"))));
            json_object_set_new(jo, "next", json_integer(cli_i64(cli_get(j, "next"))));
            json_object_set_new(jo, "updated", json_integer(cli_i64(cli_get(j, "updated"))));
            json_object_set_new(jo, "error", cli_json_str(cli_get(j, "error")));
            json_array_append_new(ja, jo);
        }
        json_object_set_new(o, "counts", cj);
        json_object_set_new(o, "jobs", ja);
        json_object_set_new(o, "changed", json_integer((json_int_t)changed));
        cli_reply_free(&r);
        return cli_json_print(o);
    }
    if (strcmp(action, "status") == 0) {
        for (size_t i = 0; i < 4; i++)
            printf("%-11s %llu\n", states[i],
                   (unsigned long long)cli_u64(cli_get(counts, states[i])));
    } else if (strcmp(action, "pending") == 0 || strcmp(action, "failed") == 0) {
        if (cli_len(jobs) == 0)
            printf("no %s jobs\n", action);
        print_jobs(jobs);
    } else if (retry) {
        printf("%llu job%s back to pending\n", (unsigned long long)changed,
               changed == 1 ? "" : "s");
    } else {
        printf("removed %llu done or failed job%s\n", (unsigned long long)changed,
               changed == 1 ? "" : "s");
    }
    cli_reply_free(&r);
    return CLI_OK;
}
