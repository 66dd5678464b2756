/*
 * daemon.c - the daemon process: detaching (double fork, setsid, stdio
 * on /dev/null, a readiness pipe back to `ds start`), the single-instance
 * lock, the PID file, the libuv loop that serves IPC requests through the
 * ops dispatch table and runs session ingestion, and the signals
 * (SIGTERM/SIGINT: orderly shutdown; SIGHUP: reopen the log and reload
 * the configuration, except its "sync" section, applied at start only).
 * Also `ds stop`.  Nothing here polls: an idle daemon sleeps in epoll
 * until a client, a file event or a signal.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "daemon/config.h"
#include "daemon/home.h"
#include "daemon/ingestd.h"
#include "daemon/log.h"
#include "daemon/netsync.h"
#include "daemon/ops.h"
#include "io/ipc.h"
#include "io/quic.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

struct ds_daemon {
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    int signals_started;
    ds_ipc_server *ipc;
    ds_ingestd *ingestd;
    ds_netsync *netsync;
    ds_ctx ctx;
    int ctx_ready;
    ds_config cfg;
    const char *user_home;
    char *home, *cfg_path, *pid_path, *sock_path, *log_path;
    int config_present;
    int lock_fd;
    int foreground;
    pid_t pid;
    int64_t started_ms;
    uint64_t requests;
    int stopping;
    int pending;              /* services still shutting down */
};

/* ---- Small helpers -------------------------------------------------------- */

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void real_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A PID from the start of file |path|, or 0. */
static pid_t read_pid_file(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || v <= 1 || v > 0x7fffffffL)
        return 0;
    return (pid_t)v;
}

static char *home_file(const char *home, const char *name)
{
    return ds_path_join(home, name);
}

/* Opens the lock file and tries to take the lock.  Returns the fd with
 * the lock held (>= 0), -1 when another process holds it, -2 on error
 * (errno set).  With |create| == 0 a missing file means "not running":
 * -3. */
static int try_lock(const char *lock_path, int create)
{
    int fd = open(lock_path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return !create && errno == ENOENT ? -3 : -2;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        errno = e;
        return e == EWOULDBLOCK ? -1 : -2;
    }
}

/* The PID of the lock holder: the pid file, else the lock file. */
static pid_t holder_pid(const char *home)
{
    char *pp = home_file(home, DS_DAEMON_PID_FILE), *lp = home_file(home, DS_DAEMON_LOCK_FILE);
    pid_t pid = 0;
    if (pp && lp) {
        pid = read_pid_file(lp);
        if (!pid)
            pid = read_pid_file(pp);
    }
    free(pp);
    free(lp);
    return pid;
}

int ds_daemon_probe(const char *home, pid_t *pid)
{
    *pid = 0;
    char *lp = home_file(home, DS_DAEMON_LOCK_FILE);
    if (!lp)
        return 0;
    int fd = try_lock(lp, 0);
    free(lp);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (fd == -1) {
        *pid = holder_pid(home);
        return 1;
    }
    return 0;
}

/* Writes "PID\n" to |path| through a temporary file and rename, 0644. */
static int write_pid_file(const char *path, pid_t pid)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 8);
    if (!tmp)
        return DS_ERR_NOMEM;
    snprintf(tmp, n + 8, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(tmp);
        return DS_ERR_IO;
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)pid);
    int ok = fchmod(fd, 0644) == 0 && write(fd, buf, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok)
        ok = rename(tmp, path) == 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return ok ? 0 : DS_ERR_IO;
}

/* ---- Readiness pipe --------------------------------------------------------
 * The daemon writes "P <pid>\n" at once, then "OK\n" when it accepts
 * connections or "E <message>\n" when it gives up. */

static void ready_write(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last "E ..." message, for the foreground (no pipe). */
static char run_err[1100];

static void ready_write(int fd, const char *fmt, ...)
{
    char buf[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    for (int i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    if (buf[0] == 'E' && buf[1] == ' ')
        snprintf(run_err, sizeof run_err, "%.*s", n - 2, buf + 2);
    if (fd < 0)
        return;
    buf[n++] = '\n';
    ssize_t w;
    do
        w = write(fd, buf, (size_t)n);
    while (w < 0 && errno == EINTR);
}

/* Sends the last "E ..." message (kept in run_err) to |fd| and closes it. */
static void report_failure(int fd)
{
    if (fd < 0)
        return;
    ready_write(fd, "E %s", run_err[0] ? run_err : "the daemon could not start");
    close(fd);
}

/* ---- The running daemon --------------------------------------------------- */

static int handle_request(void *ud, const char *op, const msgpack_object *params,
                          msgpack_sbuffer *out)
{
    ds_daemon *d = ud;
    d->requests++;
    DS_LOGD("request %s", op);
    int rc = ds_ops_call(&d->ctx, op, params, out);
    if (rc && ds_log_enabled(DS_LOG_DEBUG))
        ds_log(DS_LOG_DEBUG, "request %s failed: %s: %s", op, d->ctx.error.code,
               d->ctx.error.message);
    return rc;
}

static void ipc_log(void *ud, int is_error, const char *msg)
{
    if (is_error)
        DS_LOGE("%s", msg);
    else
        DS_LOGW("%s", msg);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void service_stopped(void *ud)
{
    ds_daemon *d = ud;
    if (--d->pending > 0)
        return;
    if (d->signals_started) {
        /* After a failed start drain_loop may have closed them already
         * (ingestion reports its stop from inside drain_loop). */
        close_walk_cb((uv_handle_t *)&d->sig_term, NULL);
        close_walk_cb((uv_handle_t *)&d->sig_int, NULL);
        close_walk_cb((uv_handle_t *)&d->sig_hup, NULL);
        d->signals_started = 0;
    }
    /* Nothing is left to keep the loop alive: uv_run returns. */
}

static void begin_shutdown(ds_daemon *d, const char *why)
{
    if (d->stopping) {
        DS_LOGI("%s: already shutting down", why);
        return;
    }
    d->stopping = 1;
    DS_LOGI("%s: shutting down", why);
    d->pending = 1;          /* held until both services have been asked */
    if (d->ipc) {
        d->pending++;
        ds_ipc_server_close(d->ipc, service_stopped, d);
        d->ipc = NULL;
    }
    if (d->ingestd) {
        d->pending++;
        ds_ingestd *ing = d->ingestd;
        d->ingestd = NULL;
        d->ctx.ingestd = NULL;
        ds_ingestd_stop(ing, service_stopped, d);
    }
    if (d->netsync) {
        d->pending++;
        ds_netsync *ns = d->netsync;
        d->netsync = NULL;
        d->ctx.netsync = NULL;
        ds_netsync_close(ns, service_stopped, d);
    }
    service_stopped(d);
}

/* The sync options: `ds start` flags over config.json's "sync" section. */
static void netsync_opts(const ds_daemon *d, const ds_netsync_start_flags *f,
                         ds_netsync_opts *o)
{
    static char deflisten[32];
    memset(o, 0, sizeof *o);
    if (f && f->nlisten) {
        for (size_t i = 0; i < f->nlisten && i < DS_NETSYNC_MAX_LISTEN; i++)
            o->listen[o->nlisten++] = f->listen[i];
        o->listen_always = 1;
    } else if (d->cfg.sync_listen) {
        o->listen[o->nlisten++] = d->cfg.sync_listen;
        o->listen_always = 1;
    } else {
        snprintf(deflisten, sizeof deflisten, "0.0.0.0:%u", (unsigned)DS_QUIC_DEFAULT_PORT);
        o->listen[o->nlisten++] = deflisten;
    }
    o->sync_at_start = (f && f->sync_at_start) || d->cfg.sync_at_start;
    o->interval_s = f && f->interval_s ? f->interval_s : d->cfg.sync_interval_s;
    o->max_concurrent = d->cfg.sync_max_concurrent;
    o->connect_timeout_ms = d->cfg.sync_connect_timeout_ms;
    const char *env = getenv("DS_SYNC_CONNECT_TIMEOUT_MS"); /* tests shorten the wait */
    if (env && atol(env) >= 100 && atol(env) <= 600000)
        o->connect_timeout_ms = (uint32_t)atol(env);
}

/* Appends to a listen failure |err| where the addresses came from and,
 * for an address that cannot be bound, what to do. */
static void listen_err_source(const ds_daemon *d, const ds_netsync_start_flags *f, int rc,
                              char *err, size_t errlen)
{
    size_t n = strlen(err);
    if (n >= errlen)
        return;
    const char *fix = rc == DS_ERR_IO ? "; pick another port (or an address of this machine), "
                                        "or stop the program that uses it"
                                      : "";
    if (f && f->nlisten)
        snprintf(err + n, errlen - n, " (the address comes from --listen%s)", fix);
    else if (d->cfg.sync_listen)
        snprintf(err + n, errlen - n, " (the address comes from sync.listen in %s%s)",
                 d->cfg_path, fix);
    else
        snprintf(err + n, errlen - n, " (the default listen address, used while some peer "
                                      "has publish on; set another with sync.listen in %s or "
                                      "ds start --listen)",
                 d->cfg_path);
}

/* The sync service was asked to listen (--listen or sync.listen, or the
 * default address while some peer has publish on) but has no key to
 * listen with: it starts listening once `ds peer init` has made one.  Say
 * so in the log rather than run silently deaf. */
static void log_not_listening(ds_daemon *d, const ds_netsync_opts *no)
{
    char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nb = 0;
    ds_netsync_bound(d->netsync, bound, &nb);
    if (nb || !no->nlisten)
        return;
    ds_identity id;
    char why[512] = "";
    int rc = ds_peers_identity_load(d->home, &id, why, sizeof why);
    if (rc == 0) {
        ds_identity_wipe(&id);
        return;               /* listening is not wanted yet (no peer publishes) */
    }
    if (!no->listen_always) {
        ds_peers_cfg pc;
        char perr[256];
        int publish = 0;
        if (ds_peers_cfg_load(d->home, &pc, perr, sizeof perr) == 0) {
            for (size_t i = 0; i < pc.n; i++)
                publish |= pc.peers[i].publish;
            ds_peers_cfg_free(&pc);
        }
        if (!publish)
            return;
    }
    char addrs[DS_NETSYNC_MAX_LISTEN * DS_ADDR_MAX + 8] = "";
    for (size_t i = 0; i < no->nlisten; i++) {
        size_t l = strlen(addrs);
        snprintf(addrs + l, sizeof addrs - l, "%s%s", i ? ", " : "", no->listen[i]);
    }
    DS_LOGW("sync: not accepting peer connections on %s yet: %s; listening starts once "
            "ds peer init has made an identity",
            addrs, rc == DS_ERR_NOTFOUND ? "this node has no identity yet (run: ds peer init)"
                                         : why);
}

/* Names the sync settings of |nc| that differ from the running ones
 * (|run|) into |out| (", "-separated; "" when none). */
static void sync_changes(const ds_config *run, const ds_config *nc, char *out, size_t len)
{
    out[0] = '\0';
    const char *ra = run->sync_listen ? run->sync_listen : "";
    const char *na = nc->sync_listen ? nc->sync_listen : "";
    int ch[5] = {
        strcmp(ra, na) != 0,
        run->sync_interval_s != nc->sync_interval_s,
        !run->sync_at_start != !nc->sync_at_start,
        run->sync_max_concurrent != nc->sync_max_concurrent,
        run->sync_connect_timeout_ms != nc->sync_connect_timeout_ms,
    };
    static const char *const names[5] = { "sync.listen", "sync.interval", "sync.at_start",
                                          "sync.max_concurrent", "sync.connect_timeout_ms" };
    for (size_t i = 0; i < 5; i++) {
        size_t l = strlen(out);
        if (ch[i])
            snprintf(out + l, len - l, "%s%s", l ? ", " : "", names[i]);
    }
}

static void reload(ds_daemon *d)
{
    if (ds_log_reopen() != 0)
        DS_LOGE("cannot reopen the log %s: %s", d->log_path ? d->log_path : "(stderr)",
                strerror(errno));
    ds_config nc;
    char err[1024];
    int present = access(d->cfg_path, F_OK) == 0;
    int rc = ds_config_load(&nc, d->cfg_path, d->user_home, err, sizeof err);
    if (rc) {
        DS_LOGE("configuration reload failed, keeping the previous configuration: %s", err);
        ds_config_free(&nc);
        return;
    }
    if (d->ingestd) {
        rc = ds_ingestd_reload(d->ingestd, &nc);
        if (rc) {
            DS_LOGE("session ingestion could not apply the new configuration (%s); keeping "
                    "the previous one", ds_strerror(rc));
            ds_config_free(&nc);
            return;
        }
    }
    ds_log_set_limits(nc.log_max_bytes, nc.log_keep);
    ds_log_set_level((ds_log_level)nc.log_level);
    /* The sync service keeps what it started with (its sockets are bound,
     * its timers set): the "sync" section is not applied until the next
     * ds start, so d->cfg keeps the running values and a later SIGHUP
     * compares against them again. */
    char changed[160];
    sync_changes(&d->cfg, &nc, changed, sizeof changed);
    free(nc.sync_listen);
    nc.sync_listen = d->cfg.sync_listen;
    d->cfg.sync_listen = NULL;
    nc.sync_interval_s = d->cfg.sync_interval_s;
    nc.sync_at_start = d->cfg.sync_at_start;
    nc.sync_max_concurrent = d->cfg.sync_max_concurrent;
    nc.sync_connect_timeout_ms = d->cfg.sync_connect_timeout_ms;
    ds_config_free(&d->cfg);
    d->cfg = nc;
    d->config_present = present;
    DS_LOGI("configuration reloaded from %s%s (%zu watched director%s)", d->cfg_path,
            present ? "" : " (no file: defaults)", nc.nwatch, nc.nwatch == 1 ? "y" : "ies");
    if (changed[0])
        DS_LOGW("sync settings (%s) changed in %s take effect at the next ds start: SIGHUP "
                "does not apply the \"sync\" section (ds stop, then ds start)",
                changed, d->cfg_path);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ds_daemon *d = h->data;
    if (signum == SIGHUP) {
        DS_LOGI("SIGHUP: reopening the log and reloading the configuration");
        reload(d);
    } else {
        begin_shutdown(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

static int start_signal(ds_daemon *d, uv_signal_t *h, int signum)
{
    int rc = uv_signal_init(&d->loop, h);
    if (rc)
        return rc;
    h->data = d;
    return uv_signal_start(h, on_signal, signum);
}

static void daemon_free(ds_daemon *d)
{
    if (d->ctx_ready)
        ds_ctx_free(&d->ctx);
    ds_config_free(&d->cfg);
    free(d->home);
    free(d->cfg_path);
    free(d->pid_path);
    free(d->sock_path);
    free(d->log_path);
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* releases the lock */
    free(d);
}

static void drain_loop(ds_daemon *d)
{
    uv_walk(&d->loop, close_walk_cb, NULL);
    for (int i = 0; i < 100 && uv_run(&d->loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    if (uv_loop_close(&d->loop) != 0)
        DS_LOGW("some event-loop handles were still open at exit");
}

/* Runs the daemon in this process until it is stopped.  |ready_fd| (or
 * -1) receives the readiness report.  Returns 0 after a clean shutdown. */
static int run(const char *home, int foreground, int ready_fd,
               const ds_netsync_start_flags *flags)
{
    char err[1200];
    ds_daemon *d = calloc(1, sizeof *d);
    if (!d) {
        ready_write(ready_fd, "E out of memory");
        return DS_ERR_NOMEM;
    }
    d->lock_fd = -1;
    d->foreground = foreground;
    d->pid = getpid();
    d->user_home = ds_user_home();
    d->home = strdup(home);
    d->cfg_path = home_file(home, DS_CONFIG_FILE);
    d->pid_path = home_file(home, DS_DAEMON_PID_FILE);
    d->sock_path = home_file(home, DS_IPC_SOCKET);
    d->log_path = foreground ? NULL : home_file(home, DS_DAEMON_LOG_FILE);
    char *lock_path = home_file(home, DS_DAEMON_LOCK_FILE);
    int rc = 0;
    if (!d->home || !d->cfg_path || !d->pid_path || !d->sock_path || !lock_path ||
        (!foreground && !d->log_path)) {
        free(lock_path);
        ready_write(ready_fd, "E out of memory");
        daemon_free(d);
        return DS_ERR_NOMEM;
    }

    /* 1. The lock: from here on this process is the daemon of |home|. */
    d->lock_fd = try_lock(lock_path, 1);
    if (d->lock_fd < 0) {
        int e = errno;
        pid_t other = d->lock_fd == -1 ? holder_pid(home) : 0;
        if (d->lock_fd == -1 && other)
            ready_write(ready_fd, "E the Datasphere daemon is already running (pid %ld)",
                        (long)other);
        else if (d->lock_fd == -1)
            ready_write(ready_fd, "E the Datasphere daemon is already running");
        else
            ready_write(ready_fd, "E cannot open the lock file %s: %s", lock_path, strerror(e));
        free(lock_path);
        rc = d->lock_fd == -1 ? DS_ERR_EXISTS : DS_ERR_IO;
        d->lock_fd = -1;
        daemon_free(d);
        return rc;
    }
    free(lock_path);
    /* From here on a failure is reported only after the lock is released
     * and the event loop drained: when 'ds start' says the start failed,
     * no daemon of this home is left, and an immediate retry can start. */
    int report_fd = ready_fd;
    ready_fd = -1;
    run_err[0] = '\0';
    {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld\n", (long)d->pid);
        /* The PID in the lock file is a convenience only: ignore failures. */
        if (ftruncate(d->lock_fd, 0) == 0 && pwrite(d->lock_fd, buf, (size_t)n, 0) != n)
            DS_LOGD("cannot write the PID into the lock file");
    }

    /* 2. Configuration and log. */
    d->config_present = access(d->cfg_path, F_OK) == 0;
    rc = ds_config_load(&d->cfg, d->cfg_path, d->user_home, err, sizeof err);
    if (rc) {
        ready_write(ready_fd, "E %s", err);
        daemon_free(d);
        report_failure(report_fd);
        return rc;
    }
    ds_log_set_level((ds_log_level)d->cfg.log_level);
    if (d->log_path && ds_log_open(d->log_path, d->cfg.log_max_bytes, d->cfg.log_keep) != 0) {
        ready_write(ready_fd, "E cannot open the log %s: %s", d->log_path, strerror(errno));
        daemon_free(d);
        report_failure(report_fd);
        return DS_ERR_IO;
    }
    DS_LOGI("starting: ds %s (protocol %d), pid %ld, home %s", DS_VERSION, DS_IPC_PROTOCOL,
            (long)d->pid, home);
    if (!d->config_present)
        DS_LOGI("no %s: using the defaults", d->cfg_path);

    /* 3. The store (created on first start) and the request context. */
    if (sodium_init() < 0) {
        ready_write(ready_fd, "E cannot initialize libsodium");
        goto fail_log;
    }
    rc = ds_ctx_init(&d->ctx, home, real_now_ms, real_random);
    if (rc) {
        ready_write(ready_fd, "E %s", ds_strerror(rc));
        goto fail_log;
    }
    d->ctx_ready = 1;
    d->ctx.daemon = d;
    ds_store *st;
    rc = ds_ctx_store(&d->ctx, 1, &st);
    if (rc) {
        DS_LOGE("%s", d->ctx.error.message);
        ready_write(ready_fd, "E %s", d->ctx.error.message);
        goto fail_log;
    }
    d->started_ms = real_now_ms();

    /* 4. Loop, signals, socket, ingestion. */
    rc = uv_loop_init(&d->loop);
    if (rc) {
        ready_write(ready_fd, "E cannot create the event loop: %s", uv_strerror(rc));
        goto fail_log;
    }
    signal(SIGPIPE, SIG_IGN);
    if ((rc = start_signal(d, &d->sig_term, SIGTERM)) != 0 ||
        (rc = start_signal(d, &d->sig_int, SIGINT)) != 0 ||
        (rc = start_signal(d, &d->sig_hup, SIGHUP)) != 0) {
        ready_write(ready_fd, "E cannot install signal handlers: %s", uv_strerror(rc));
        goto fail_loop;
    }
    d->signals_started = 1;
    /* We hold the lock, so a socket file left behind is stale. */
    if (unlink(d->sock_path) == 0)
        DS_LOGI("removed a stale socket %s", d->sock_path);
    rc = ds_ipc_server_start(&d->ipc, &d->loop, d->sock_path, handle_request, ipc_log, d, err,
                             sizeof err);
    if (rc) {
        DS_LOGE("%s", err);
        ready_write(ready_fd, "E %s", err);
        goto fail_loop;
    }
    rc = ds_ingestd_start(&d->ingestd, &d->loop, &d->ctx, &d->cfg);
    if (rc) {
        DS_LOGE("cannot start session ingestion: %s", ds_strerror(rc));
        ready_write(ready_fd, "E cannot start session ingestion: %s (see %s)", ds_strerror(rc),
                    d->log_path ? d->log_path : "the messages above");
        d->ingestd = NULL;
        goto fail_loop;
    }
    d->ctx.ingestd = d->ingestd;

    /* Network sync: accepts peers' syncs when some peer may pull from us
     * (or --listen was given), runs --sync / --sync-interval jobs.  A bind
     * failure is fatal only for an address the user asked for. */
    {
        ds_netsync_opts no;
        netsync_opts(d, flags, &no);
        rc = ds_netsync_new(&d->netsync, &d->loop, &d->ctx, &no, err, sizeof err);
        if (rc && rc != DS_ERR_NOMEM)
            listen_err_source(d, flags, rc, err, sizeof err);
        if (rc && no.listen_always) {
            DS_LOGE("%s", err);
            ready_write(ready_fd, "E %s", err);
            d->netsync = NULL;
            goto fail_loop;
        }
        if (rc) {
            DS_LOGW("network sync is off: %s", err);
            d->netsync = NULL;
            no.nlisten = 0;
            rc = ds_netsync_new(&d->netsync, &d->loop, &d->ctx, &no, err, sizeof err);
            if (rc)
                d->netsync = NULL;
        }
        d->ctx.netsync = d->netsync;
        if (d->netsync)
            log_not_listening(d, &no);
    }

    /* 5. The PID file, then tell `ds start`. */
    if (write_pid_file(d->pid_path, d->pid) != 0) {
        int e = errno;
        DS_LOGE("cannot write %s: %s", d->pid_path, strerror(e));
        ready_write(ready_fd, "E cannot write %s: %s", d->pid_path, strerror(e));
        goto fail_loop;
    }
    DS_LOGI("ready: listening on %s; watching %zu director%s", d->sock_path, d->cfg.nwatch,
            d->cfg.nwatch == 1 ? "y" : "ies");
    ready_write(report_fd, "OK");
    if (report_fd >= 0)
        close(report_fd);
    if (foreground)
        fprintf(stderr, "Datasphere daemon running in the foreground (pid %ld, home %s).\n"
                        "Stop it with Ctrl-C or 'ds stop'.\n",
                (long)d->pid, home);

    uv_run(&d->loop, UV_RUN_DEFAULT);

    /* Stopped: every service has closed its handles. */
    drain_loop(d);
    if (read_pid_file(d->pid_path) == d->pid)
        unlink(d->pid_path);
    unlink(d->sock_path);
    DS_LOGI("stopped (served %llu requests)", (unsigned long long)d->requests);
    ds_log_close();
    daemon_free(d);
    return 0;

fail_loop:
    if (d->netsync) {
        d->ctx.netsync = NULL;
        ds_netsync_close(d->netsync, NULL, NULL);
        d->netsync = NULL;
    }
    if (d->ingestd) {
        d->pending++;
        ds_ingestd_stop(d->ingestd, service_stopped, d);
        d->ingestd = NULL;
    }
    if (d->ipc) {
        ds_ipc_server_close(d->ipc, NULL, NULL);
        d->ipc = NULL;
    }
    drain_loop(d);
    unlink(d->sock_path);
fail_log:
    DS_LOGE("startup failed");
    ds_log_close();
    daemon_free(d);
    report_failure(report_fd);
    return rc ? rc : DS_ERR_IO;
}

void ds_daemon_info_get(const ds_daemon *d, ds_daemon_info *out)
{
    memset(out, 0, sizeof *out);
    out->pid = d->pid;
    out->started_ms = d->started_ms;
    out->requests = d->requests;
    out->config_path = d->cfg_path;
    out->config_present = d->config_present;
    out->log_path = d->log_path;
    out->socket_path = d->sock_path;
}

/* ---- ds start --------------------------------------------------------------- */

/* Reads the readiness report until "OK", "E ..." or the deadline. */
static int wait_ready(int fd, pid_t *pid, const char *home, char *err, size_t errlen)
{
    char buf[2048];
    size_t have = 0;
    int64_t deadline = mono_ms() + DS_DAEMON_READY_TIMEOUT_MS;
    for (;;) {
        /* Complete lines first. */
        char *nl;
        while ((nl = memchr(buf, '\n', have)) != NULL) {
            *nl = '\0';
            if (buf[0] == 'P' && buf[1] == ' ')
                *pid = (pid_t)strtol(buf + 2, NULL, 10);
            else if (strcmp(buf, "OK") == 0)
                return 0;
            else if (buf[0] == 'E' && buf[1] == ' ') {
                set_err(err, errlen, "%s", buf + 2);
                return strstr(buf, "already running") ? DS_ERR_EXISTS : DS_ERR_IO;
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        int left = (int)(deadline - mono_ms());
        if (left <= 0) {
            set_err(err, errlen,
                    "the daemon (pid %ld) did not report readiness within %d s; it may still be "
                    "starting: see %s/%s",
                    (long)*pid, DS_DAEMON_READY_TIMEOUT_MS / 1000, home, DS_DAEMON_LOG_FILE);
            return DS_ERR_TIMEOUT;
        }
        struct pollfd pfd = { fd, POLLIN, 0 };
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (have >= sizeof buf - 1)
            have = 0; /* an over-long line: drop it */
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            set_err(err, errlen, "the daemon exited during startup without saying why: see %s/%s",
                    home, DS_DAEMON_LOG_FILE);
            return DS_ERR_IO;
        }
        have += (size_t)n;
    }
}

int ds_daemon_start(const char *home, int foreground, pid_t *pid, char *err, size_t errlen)
{
    return ds_daemon_start_ex(home, foreground, NULL, pid, err, errlen);
}

int ds_daemon_start_ex(const char *home, int foreground, const ds_netsync_start_flags *flags,
                       pid_t *pid, char *err, size_t errlen)
{
    *pid = 0;
    int rc = ds_home_ensure(home);
    if (rc) {
        set_err(err, errlen, "cannot create the home directory %s: %s", home,
                rc == DS_ERR_IO ? strerror(errno) : ds_strerror(rc));
        return rc;
    }
    /* A bad configuration fails here, in the terminal. */
    char *cfg_path = home_file(home, DS_CONFIG_FILE);
    if (!cfg_path)
        return DS_ERR_NOMEM;
    ds_config cfg;
    char cerr[1024];
    rc = ds_config_load(&cfg, cfg_path, ds_user_home(), cerr, sizeof cerr);
    ds_config_free(&cfg);
    free(cfg_path);
    if (rc) {
        set_err(err, errlen, "%s", cerr);
        return rc;
    }
    if (ds_daemon_probe(home, pid) == 1) {
        if (*pid)
            set_err(err, errlen, "the Datasphere daemon is already running (pid %ld)", (long)*pid);
        else
            set_err(err, errlen, "the Datasphere daemon is already running");
        return DS_ERR_EXISTS;
    }
    if (foreground) {
        *pid = getpid();
        rc = run(home, 1, -1, flags);
        if (rc == DS_ERR_EXISTS)
            *pid = holder_pid(home);
        if (rc)
            set_err(err, errlen, "%s", run_err[0] ? run_err : "the daemon could not start");
        return rc;
    }

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        set_err(err, errlen, "cannot create a pipe: %s", strerror(errno));
        return DS_ERR_IO;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) {
        set_err(err, errlen, "cannot fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return DS_ERR_IO;
    }
    if (child == 0) {
        /* First child: new session, then fork again so that the daemon is
         * not a session leader and can never acquire a terminal. */
        close(p[0]);
        if (setsid() < 0)
            _exit(1);
        pid_t gc = fork();
        if (gc < 0) {
            ready_write(p[1], "E cannot fork: %s", strerror(errno));
            _exit(1);
        }
        if (gc > 0)
            _exit(0);
        signal(SIGPIPE, SIG_IGN);
        ready_write(p[1], "P %ld", (long)getpid());
        umask(077);
        if (chdir("/") != 0)
            _exit(1);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
            dup2(nul, STDOUT_FILENO);
            dup2(nul, STDERR_FILENO);
            if (nul > STDERR_FILENO)
                close(nul);
        }
        rc = run(home, 0, p[1], flags);
        exit(rc ? 1 : 0);
    }
    close(p[1]);
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    rc = wait_ready(p[0], pid, home, err, errlen);
    close(p[0]);
    if (rc == DS_ERR_EXISTS)
        *pid = holder_pid(home);
    return rc;
}

/* ---- ds stop ---------------------------------------------------------------- */

/* Removes daemon.pid and daemon.sock (caller holds the lock).  1 if any
 * existed. */
static int remove_stale(const char *home)
{
    char *pp = home_file(home, DS_DAEMON_PID_FILE), *sp = home_file(home, DS_IPC_SOCKET);
    int any = 0;
    if (pp && unlink(pp) == 0)
        any = 1;
    if (sp && unlink(sp) == 0)
        any = 1;
    free(pp);
    free(sp);
    return any;
}

/* Waits up to |ms| for the lock to become free; returns the locked fd or
 * -1 on timeout. */
static int wait_unlocked(const char *lock_path, int ms)
{
    int64_t deadline = mono_ms() + ms;
    for (;;) {
        int fd = try_lock(lock_path, 0);
        if (fd >= 0)
            return fd;
        if (fd == -3)
            return -2; /* the file is gone: nothing holds it any more */
        if (mono_ms() >= deadline)
            return -1;
        sleep_ms(50);
    }
}

int ds_daemon_stop(const char *home, int timeout_ms, ds_daemon_stop_result *res, char *err,
                   size_t errlen)
{
    memset(res, 0, sizeof *res);
    char *lock_path = home_file(home, DS_DAEMON_LOCK_FILE);
    if (!lock_path)
        return DS_ERR_NOMEM;
    int fd = try_lock(lock_path, 0);
    if (fd == -2) {
        set_err(err, errlen, "cannot open %s: %s", lock_path, strerror(errno));
        free(lock_path);
        return DS_ERR_IO;
    }
    if (fd >= 0 || fd == -3) {
        res->cleaned = fd >= 0 ? remove_stale(home) : 0;
        if (fd >= 0)
            close(fd);
        free(lock_path);
        set_err(err, errlen, "the Datasphere daemon is not running (home %s)", home);
        return DS_ERR_NOTFOUND;
    }
    pid_t pid = holder_pid(home);
    res->pid = pid;
    if (pid <= 1) {
        set_err(err, errlen,
                "a process holds %s but its PID is unknown (%s/%s is missing); stop it by hand",
                lock_path, home, DS_DAEMON_PID_FILE);
        free(lock_path);
        return DS_ERR_INVALID;
    }
    if (kill(pid, SIGTERM) != 0) {
        set_err(err, errlen, "cannot signal the daemon (pid %ld): %s", (long)pid, strerror(errno));
        free(lock_path);
        return errno == ESRCH ? DS_ERR_INVALID : DS_ERR_IO;
    }
    fd = wait_unlocked(lock_path, timeout_ms);
    if (fd == -1) {
        res->killed = 1;
        kill(pid, SIGKILL);
        fd = wait_unlocked(lock_path, 5000);
    }
    free(lock_path);
    if (fd == -1) {
        set_err(err, errlen, "the daemon (pid %ld) is still running after SIGKILL", (long)pid);
        return DS_ERR_TIMEOUT;
    }
    if (fd >= 0) {
        res->cleaned = remove_stale(home);
        close(fd);
    }
    return 0;
}
