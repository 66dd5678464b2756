/*
 * daemon.h - the Datasphere daemon's lifecycle: `ds start` (validate the
 * configuration, detach, wait for readiness), the daemon's own life (one
 * libuv loop serving the IPC socket and running session ingestion,
 * signal handling), and `ds stop`.
 *
 * One daemon per home is enforced by an exclusive flock on
 * HOME/daemon.lock held for the daemon's whole life: the kernel releases
 * it when the process dies, so a stale HOME/daemon.pid or daemon.sock
 * left by `kill -9` never blocks the next start.  Files in the home:
 *   daemon.lock  the lock (holds the PID too)
 *   daemon.pid   the PID, written atomically once the daemon is ready (0644)
 *   daemon.sock  the IPC socket (0600)
 *   daemon.log   the log when detached (rotated by size)
 */
#ifndef DS_DAEMON_H
#define DS_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DS_DAEMON_LOCK_FILE "daemon.lock"
#define DS_DAEMON_PID_FILE "daemon.pid"
#define DS_DAEMON_LOG_FILE "daemon.log"
/* How long `ds start` waits for the detached daemon to be ready. */
#define DS_DAEMON_READY_TIMEOUT_MS 10000
/* How long `ds stop` waits after SIGTERM before SIGKILL. */
#define DS_DAEMON_STOP_TIMEOUT_MS 10000

typedef struct ds_daemon ds_daemon;

/* Starts the daemon for |home| (created if missing).  The configuration
 * HOME/config.json is checked first: a bad one fails here, before
 * anything detaches.  With |foreground| the daemon runs in this process
 * (log on stderr) and the call returns when it has stopped; otherwise
 * the process double-forks, and the call returns in the original process
 * once the daemon accepts connections (*pid = its PID) or has failed.
 * Returns 0; DS_ERR_EXISTS (already running: *pid is its PID, 0 when
 * unknown); DS_ERR_INVALID / DS_ERR_MALFORMED / DS_ERR_IO (bad
 * configuration or startup failure); DS_ERR_TIMEOUT (no readiness report
 * in time).  |err| receives a one-line explanation on failure. */
int ds_daemon_start(const char *home, int foreground, pid_t *pid, char *err, size_t errlen);
/* Like ds_daemon_start, with the network sync flags of `ds start`
 * (--listen, --sync, --sync-interval; daemon/netsync.h), which override
 * config.json's "sync" section.  |flags| may be NULL; its strings must
 * stay valid until the call returns. */
struct ds_netsync_start_flags;
int ds_daemon_start_ex(const char *home, int foreground,
                       const struct ds_netsync_start_flags *flags, pid_t *pid, char *err,
                       size_t errlen);

/* 1 when a daemon holds the lock of |home| (*pid = its PID, 0 when the
 * PID cannot be read), 0 when none runs. */
int ds_daemon_probe(const char *home, pid_t *pid);

typedef struct ds_daemon_stop_result {
    pid_t pid;      /* the daemon that was stopped */
    int killed;     /* it ignored SIGTERM and got SIGKILL */
    int cleaned;    /* stale daemon.pid / daemon.sock files were removed */
} ds_daemon_stop_result;

/* Stops the daemon of |home|: SIGTERM to the PID of the lock holder,
 * waiting up to |timeout_ms| for it to exit, then SIGKILL; removes stale
 * pid and socket files.  Returns 0 (stopped), DS_ERR_NOTFOUND (none was
 * running; stale files are still cleaned), DS_ERR_TIMEOUT (still alive
 * after SIGKILL), DS_ERR_INVALID (lock held, PID unknown) or DS_ERR_IO,
 * with a message in |err|. */
int ds_daemon_stop(const char *home, int timeout_ms, ds_daemon_stop_result *res, char *err,
                   size_t errlen);

/* What `ds status` reports about the running daemon (op_status). */
typedef struct ds_daemon_info {
    pid_t pid;
    int64_t started_ms;        /* wall clock, ms since the epoch */
    uint64_t requests;         /* IPC requests received, this one included */
    const char *config_path;   /* HOME/config.json */
    int config_present;        /* the file existed at the last (re)load */
    const char *log_path;      /* NULL in the foreground (stderr) */
    const char *socket_path;
} ds_daemon_info;

/* Fills |out|; strings live as long as |d|.  Loop thread only. */
void ds_daemon_info_get(const ds_daemon *d, ds_daemon_info *out);

#endif
