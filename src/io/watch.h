/*
 * watch.h - recursive file-system watching on libuv.  Linux inotify is
 * not recursive, so there is one uv_fs_event_t per directory; a
 * subdirectory created later gets its own watcher (and its files are
 * reported, since they may have appeared before the watcher did).  At
 * start every regular file already under the roots is reported once with
 * |catchup| set, so the caller can catch up with what changed while it
 * was not running.  A root that does not exist yet is waited for: its
 * nearest existing ancestor is watched until it appears.
 *
 * Symbolic links are not followed.  Depth and the number of watched
 * directories are bounded (DS_WATCH_MAX_DEPTH, DS_WATCH_MAX_DIRS).
 */
#ifndef DS_WATCH_H
#define DS_WATCH_H

#include <stddef.h>
#include <sys/stat.h>
#include <uv.h>

#define DS_WATCH_MAX_DEPTH 8
#define DS_WATCH_MAX_DIRS 8192

typedef struct ds_watch ds_watch;

/* Called on the loop thread for a regular file that was created or
 * changed (|st| its lstat), or (|st| NULL) that disappeared.  |catchup|
 * is 1 for the reports of the start-up scan.  |path| is valid during the
 * call only. */
typedef void (*ds_watch_cb)(void *ud, const char *path, const struct stat *st, int catchup);

/* Starts watching |roots| (absolute paths; copied).  The catch-up reports
 * are made before this returns.  Returns 0, DS_ERR_INVALID or
 * DS_ERR_NOMEM; a root that cannot be watched (missing, unreadable) is
 * not an error: a missing one is waited for, see ds_watch_dirs. */
int ds_watch_start(ds_watch **out, uv_loop_t *loop, const char *const *roots, size_t nroots,
                   ds_watch_cb cb, void *ud);
/* Number of directories being watched. */
size_t ds_watch_dirs(const ds_watch *w);
/* Closes every handle; |done| (optional) is called once they are all
 * closed and the watch is freed.  No callback is made after this call. */
void ds_watch_stop(ds_watch *w, void (*done)(void *ud), void *ud);

#endif
