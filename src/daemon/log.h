/*
 * log.h - the daemon's log sink.  Lines go to HOME/daemon.log (rotated by
 * size: daemon.log.1 .. .N) when detached, to stderr in the foreground or
 * in the CLI.  The level is checked before anything is formatted.
 * Thread-safe (the distill worker thread logs too): one mutex guards the
 * file, its size and the rotation.
 */
#ifndef DS_LOG_H
#define DS_LOG_H

#include <stdint.h>

typedef enum { DS_LOG_DEBUG = 0, DS_LOG_INFO, DS_LOG_WARN, DS_LOG_ERROR } ds_log_level;

/* Sends lines to |path| (NULL: stderr), rotating past |max_bytes| and
 * keeping |keep| old files (0: the file is just truncated when it is
 * full).  The file is created 0600 and appended to.  Replaces any earlier
 * destination.  Returns 0 or DS_ERR_IO (errno set; lines keep going to
 * the previous destination) or DS_ERR_NOMEM. */
int ds_log_open(const char *path, uint64_t max_bytes, uint32_t keep);
/* Re-opens the file (SIGHUP, after external rotation).  0 or DS_ERR_IO. */
int ds_log_reopen(void);
/* Changes the rotation limits (after a configuration reload). */
void ds_log_set_limits(uint64_t max_bytes, uint32_t keep);
/* Closes the file; later lines go to stderr. */
void ds_log_close(void);
void ds_log_set_level(ds_log_level level);
int ds_log_enabled(ds_log_level level);
/* Parses "debug" | "info" | "warn" | "error"; 0 or DS_ERR_INVALID. */
int ds_log_level_parse(const char *name, ds_log_level *out);
/* "2026-11-21T10:00:00.123Z INFO message"; newlines in the message
 * become spaces so that one call is one line; long messages are cut at
 * about 4 KiB. */
void ds_log(ds_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define DS_LOGI(...) do { if (ds_log_enabled(DS_LOG_INFO)) ds_log(DS_LOG_INFO, __VA_ARGS__); } while (0)
#define DS_LOGW(...) do { if (ds_log_enabled(DS_LOG_WARN)) ds_log(DS_LOG_WARN, __VA_ARGS__); } while (0)
#define DS_LOGE(...) ds_log(DS_LOG_ERROR, __VA_ARGS__)
#define DS_LOGD(...) do { if (ds_log_enabled(DS_LOG_DEBUG)) ds_log(DS_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
