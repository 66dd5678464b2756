/*
 * distill_command.c - the command distiller: runs a configured program
 * (argv, never a shell string) once per chunk, writes the formatted chunk
 * to its stdin, collects its stdout (bounded) and the first line of its
 * stderr, and parses the output with ds_distill_parse_output.  The program
 * is started with posix_spawnp (no shell, pipes only on fds 0-2, default
 * signal dispositions), driven with poll against a monotonic deadline,
 * and on timeout killed with SIGKILL by its PID and reaped.  Also home of
 * ds_distiller_last_error, shared with the HTTP distiller.
 */
#include "io/distill_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ds/error.h"
#include "core/util.h"

#define DEFAULT_TIMEOUT_MS 120000
#define DEFAULT_MAX_OUTPUT (4u << 20)
#define MAX_STDERR (64u << 10)

extern char **environ;

typedef struct cmd_distiller {
    ds_distill_io_base base;     /* first member */
    char **argv;                 /* owned copy, NULL-terminated */
    int timeout_ms;
    size_t max_output;
    ds_distill_log_fn log;
    void *log_ud;
} cmd_distiller;

const char *ds_distiller_last_error(const ds_distiller *d)
{
    if (!d || !d->name || (strcmp(d->name, "command") && strcmp(d->name, "http"))) return "";
    return ((const ds_distill_io_base *)d)->last_error;
}

static void set_err(cmd_distiller *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->base.last_error, sizeof c->base.last_error, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes to a pipe without dying of SIGPIPE when the reader is gone:
 * SIGPIPE is blocked in this thread for the write and a pending one is
 * consumed before the mask is restored. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t n)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t w = write(fd, p, n);
    int err = errno;
    if (w < 0 && err == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return w;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Reads what is available on |*fd| into |b| up to |limit| bytes (the rest
 * is drained and dropped when |drop_excess|).  Returns 1 at EOF (fd closed),
 * 0 when more may come, DS_ERR_TOOLARGE past the limit, DS_ERR_IO/NOMEM. */
static int drain(int *fd, ds_buf *b, size_t limit, int drop_excess)
{
    char tmp[16384];
    ssize_t r = read(*fd, tmp, sizeof tmp);
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) return 0;
        close_fd(fd);
        return DS_ERR_IO;
    }
    if (r == 0) {
        close_fd(fd);
        return 1;
    }
    size_t n = (size_t)r;
    if (b->len + n > limit) {
        if (!drop_excess) return DS_ERR_TOOLARGE;
        n = limit > b->len ? limit - b->len : 0;
    }
    return n ? ds_buf_append(b, tmp, n) : 0;
}

/* Kills the child by its PID and reaps it. */
static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

/* First line of |b| (NUL-terminated by the caller), cut to 200 bytes. */
static void first_line(const ds_buf *b, char *out, size_t outlen)
{
    size_t i = 0;
    const char *s = (const char *)b->data;
    while (s && i < b->len && (s[i] == '\n' || s[i] == '\r' || s[i] == ' ')) i++;
    size_t j = 0;
    while (s && i < b->len && s[i] != '\n' && s[i] != '\r' && j + 1 < outlen && j < 200) {
        unsigned char c = (unsigned char)s[i++];
        out[j++] = c < 0x20 ? ' ' : (char)c;
    }
    while (j > 0 && ((unsigned char)out[j - 1] & 0xC0) == 0x80) j--;   /* no cut char */
    out[j] = '\0';
}

/* Runs the program: input on stdin, stdout into |out|, stderr into |err|.
 * *status gets the wait status.  Returns 0 (the program ran to its end),
 * DS_ERR_TIMEOUT, DS_ERR_TOOLARGE, DS_ERR_IO or DS_ERR_NOMEM. */
static int run(cmd_distiller *c, const char *input, size_t inlen, ds_buf *out, ds_buf *err, int *status)
{
    int in_p[2] = { -1, -1 }, out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ok = 0, attr_ok = 0, rc = 0;
    pid_t pid = -1;

    if (pipe2(in_p, O_CLOEXEC) || pipe2(out_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC)) {
        set_err(c, "pipe: %s", strerror(errno));
        rc = DS_ERR_IO;
        goto fail;
    }
    if (posix_spawn_file_actions_init(&fa)) { rc = DS_ERR_NOMEM; goto fail; }
    fa_ok = 1;
    if (posix_spawnattr_init(&attr)) { rc = DS_ERR_NOMEM; goto fail; }
    attr_ok = 1;
    /* dup2 clears O_CLOEXEC on the targets; every other fd we hold is
     * close-on-exec, so the child sees only its three pipes. */
    if (posix_spawn_file_actions_adddup2(&fa, in_p[0], 0) ||
        posix_spawn_file_actions_adddup2(&fa, out_p[1], 1) ||
        posix_spawn_file_actions_adddup2(&fa, err_p[1], 2)) {
        rc = DS_ERR_NOMEM;
        goto fail;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    int e = posix_spawnp(&pid, c->argv[0], &fa, &attr, c->argv, environ);
    if (e) {
        set_err(c, "cannot run %s: %s", c->argv[0], strerror(e));
        pid = -1;
        rc = DS_ERR_IO;
        goto fail;
    }
    close_fd(&in_p[0]);
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    fcntl(in_p[1], F_SETFL, O_NONBLOCK);
    if (inlen == 0) close_fd(&in_p[1]);

    int64_t deadline = now_ms() + c->timeout_ms;
    size_t written = 0;
    while (rc == 0 && (out_p[0] >= 0 || err_p[0] >= 0)) {
        struct pollfd pf[3];
        int np = 0, iw = -1, io = -1, ie = -1;
        if (in_p[1] >= 0) { iw = np; pf[np].fd = in_p[1]; pf[np++].events = POLLOUT; }
        if (out_p[0] >= 0) { io = np; pf[np].fd = out_p[0]; pf[np++].events = POLLIN; }
        if (err_p[0] >= 0) { ie = np; pf[np].fd = err_p[0]; pf[np++].events = POLLIN; }
        int64_t left = deadline - now_ms();
        if (left <= 0) { rc = DS_ERR_TIMEOUT; break; }
        int pr = poll(pf, (nfds_t)np, left > 1000 ? 1000 : (int)left);
        if (pr < 0) {
            if (errno == EINTR) continue;
            set_err(c, "poll: %s", strerror(errno));
            rc = DS_ERR_IO;
            break;
        }
        if (iw >= 0 && pf[iw].revents) {
            if (pf[iw].revents & (POLLERR | POLLHUP)) {
                close_fd(&in_p[1]);   /* the program stopped reading: fine */
            } else {
                ssize_t w = write_nosigpipe(in_p[1], input + written, inlen - written);
                if (w > 0) written += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) close_fd(&in_p[1]);
                if (written == inlen) close_fd(&in_p[1]);
            }
        }
        if (io >= 0 && pf[io].revents) {
            int r = drain(&out_p[0], out, c->max_output, 0);
            if (r == DS_ERR_TOOLARGE) {
                set_err(c, "%s wrote more than %zu bytes", c->argv[0], c->max_output);
                rc = r;
            } else if (r < 0) {
                rc = r;
            }
        }
        if (rc == 0 && ie >= 0 && pf[ie].revents) {
            int r = drain(&err_p[0], err, MAX_STDERR, 1);
            if (r < 0) rc = r;
        }
    }
    close_fd(&in_p[1]);

    /* Output closed: wait for the exit, still bounded by the deadline. */
    while (rc == 0) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) { pid = -1; break; }
        if (w < 0 && errno != EINTR) {
            set_err(c, "waitpid: %s", strerror(errno));
            pid = -1;
            rc = DS_ERR_IO;
            break;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) { rc = DS_ERR_TIMEOUT; break; }
        struct timespec ts = { 0, (left > 10 ? 10 : left) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (rc == DS_ERR_TIMEOUT)
        set_err(c, "%s timed out after %d ms (killed)", c->argv[0], c->timeout_ms);
    if (rc == DS_ERR_NOMEM) set_err(c, "out of memory");
    if (rc == DS_ERR_IO && !c->base.last_error[0]) set_err(c, "reading from %s failed", c->argv[0]);

fail:
    if (pid > 0) kill_and_reap(pid);
    for (int i = 0; i < 2; i++) {
        close_fd(&in_p[i]);
        close_fd(&out_p[i]);
        close_fd(&err_p[i]);
    }
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    if (attr_ok) posix_spawnattr_destroy(&attr);
    return rc;
}

static int cmd_distill(ds_distiller *d, const ds_distill_input *in, ds_insight **out, size_t *count)
{
    cmd_distiller *c = (cmd_distiller *)d;
    ds_buf so = {0}, se = {0};
    int status = 0, rc;

    if (!in || !out || !count) return DS_ERR_INVALID;
    *out = NULL;
    *count = 0;
    c->base.last_error[0] = '\0';

    char *input = ds_distill_format(in);
    if (!input) {
        set_err(c, "out of memory");
        return DS_ERR_NOMEM;
    }
    int64_t t0 = now_ms();
    rc = run(c, input, strlen(input), &so, &se, &status);
    free(input);

    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char line[256];
        first_line(&se, line, sizeof line);
        if (WIFEXITED(status))
            set_err(c, "%s exited with status %d%s%s", c->argv[0], WEXITSTATUS(status),
                    line[0] ? ": " : "", line);
        else
            set_err(c, "%s killed by signal %d%s%s", c->argv[0],
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0, line[0] ? ": " : "", line);
        rc = DS_ERR_IO;
    }
    if (rc == 0) {
        rc = ds_distill_parse_output(so.len ? (const char *)so.data : "", so.len, out, count);
        if (rc == DS_ERR_PROTO)
            set_err(c, "%s: output is malformed JSON or not UTF-8 text", c->argv[0]);
        else if (rc)
            set_err(c, "%s: %s", c->argv[0], ds_strerror(rc));
    }
    if (c->log) {
        char line[DS_DISTILL_ERRLEN + 128];
        if (rc == 0)
            snprintf(line, sizeof line, "distill command %s: %zu turns, %zu bytes out, %zu insights, %lld ms",
                     c->argv[0], in->count, so.len, *count, (long long)(now_ms() - t0));
        else
            snprintf(line, sizeof line, "distill command %s failed: %s", c->argv[0], c->base.last_error);
        c->log(c->log_ud, line);
    }
    ds_buf_free(&so);
    ds_buf_free(&se);
    return rc;
}

static void cmd_destroy(ds_distiller *d)
{
    cmd_distiller *c = (cmd_distiller *)d;
    if (!c) return;
    if (c->argv)
        for (size_t i = 0; c->argv[i]; i++) free(c->argv[i]);
    free(c->argv);
    free(c);
}

int ds_distiller_command_new(const ds_distill_command_config *cfg, ds_distiller **out)
{
    if (!cfg || !out || !cfg->argv || !cfg->argv[0] || !cfg->argv[0][0]) return DS_ERR_INVALID;
    *out = NULL;
    cmd_distiller *c = calloc(1, sizeof *c);
    if (!c) return DS_ERR_NOMEM;
    size_t n = 0;
    while (cfg->argv[n]) n++;
    c->argv = calloc(n + 1, sizeof *c->argv);
    if (!c->argv) goto fail;
    for (size_t i = 0; i < n; i++)
        if (!(c->argv[i] = strdup(cfg->argv[i]))) goto fail;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_output = cfg->max_output ? cfg->max_output : DEFAULT_MAX_OUTPUT;
    c->log = cfg->log;
    c->log_ud = cfg->log_ud;
    c->base.ops.name = "command";
    c->base.ops.distill = cmd_distill;
    c->base.ops.destroy = cmd_destroy;
    *out = &c->base.ops;
    return 0;
fail:
    cmd_destroy(&c->base.ops);
    return DS_ERR_NOMEM;
}
