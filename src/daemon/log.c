/*
 * log.c - the daemon's log sink (see log.h): one line per call, written
 * with a single write(2) to a file opened O_APPEND, rotated by size
 * (daemon.log -> daemon.log.1 -> ... -> daemon.log.N, the oldest
 * dropped).  A mutex serializes writers and rotation; the level is an
 * atomic read so that disabled levels cost nothing.
 */
#include "daemon/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ds/error.h"

#define LINE_MAX_BYTES 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int min_level = DS_LOG_INFO;
static int fd = -1;          /* -1: stderr */
static char *path;           /* NULL: stderr */
static uint64_t size;        /* bytes in the current file */
static uint64_t max_bytes;   /* 0: never rotate */
static uint32_t keep;

static const char *level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

static int open_file(const char *p, int *out_fd, uint64_t *out_size)
{
    int f = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0)
        return DS_ERR_IO;
    struct stat st;
    *out_size = fstat(f, &st) == 0 ? (uint64_t)st.st_size : 0;
    *out_fd = f;
    return 0;
}

int ds_log_open(const char *p, uint64_t maxb, uint32_t k)
{
    int nfd = -1;
    uint64_t nsize = 0;
    char *np = NULL;
    if (p) {
        np = strdup(p);
        if (!np)
            return DS_ERR_NOMEM;
        if (open_file(np, &nfd, &nsize) != 0) {
            int e = errno;
            free(np);
            errno = e;
            return DS_ERR_IO;
        }
    }
    pthread_mutex_lock(&lock);
    if (fd >= 0)
        close(fd);
    free(path);
    fd = nfd;
    path = np;
    size = nsize;
    max_bytes = maxb;
    keep = k;
    pthread_mutex_unlock(&lock);
    return 0;
}

int ds_log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (path) {
        int nfd;
        uint64_t nsize;
        if (open_file(path, &nfd, &nsize) == 0) {
            close(fd);
            fd = nfd;
            size = nsize;
        } else {
            rc = DS_ERR_IO;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void ds_log_set_limits(uint64_t maxb, uint32_t k)
{
    pthread_mutex_lock(&lock);
    max_bytes = maxb;
    keep = k;
    pthread_mutex_unlock(&lock);
}

void ds_log_close(void)
{
    pthread_mutex_lock(&lock);
    if (fd >= 0)
        close(fd);
    fd = -1;
    free(path);
    path = NULL;
    size = 0;
    pthread_mutex_unlock(&lock);
}

void ds_log_set_level(ds_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int ds_log_enabled(ds_log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

int ds_log_level_parse(const char *name, ds_log_level *out)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (ds_log_level)i;
            return 0;
        }
    return DS_ERR_INVALID;
}

/* Shifts daemon.log.(k-1) -> .k ... daemon.log -> .1 and opens a fresh
 * file.  Called with the lock held.  On failure the old file is kept
 * (and truncated when it cannot be renamed) so that the size stays
 * bounded. */
static void rotate(void)
{
    size_t pl = strlen(path);
    char *from = malloc(pl + 16), *to = malloc(pl + 16);
    if (from && to) {
        if (keep == 0) {
            if (ftruncate(fd, 0) == 0)
                size = 0;
        } else {
            int renamed = 0;
            for (uint32_t i = keep; i >= 1; i--) {
                snprintf(to, pl + 16, "%s.%u", path, i);
                if (i == 1)
                    snprintf(from, pl + 16, "%s", path);
                else
                    snprintf(from, pl + 16, "%s.%u", path, i - 1);
                if (rename(from, to) == 0 && i == 1)
                    renamed = 1;
            }
            int nfd;
            uint64_t nsize;
            if (renamed && open_file(path, &nfd, &nsize) == 0) {
                close(fd);
                fd = nfd;
                size = nsize;
            } else if (ftruncate(fd, 0) == 0) {
                size = 0;
            }
        }
    }
    free(from);
    free(to);
}

void ds_log(ds_log_level level, const char *fmt, ...)
{
    if (!ds_log_enabled(level))
        return;
    if ((unsigned)level > DS_LOG_ERROR)
        level = DS_LOG_ERROR;
    char line[LINE_MAX_BYTES + 64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ %s ", (int)(ts.tv_nsec / 1000000),
                          level_names[level]);
    size_t start = n;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, LINE_MAX_BYTES, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= LINE_MAX_BYTES) {
        m = LINE_MAX_BYTES - 1;
        memcpy(line + n + m - 3, "...", 3);
    }
    n += (size_t)m;
    for (size_t i = start; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';

    pthread_mutex_lock(&lock);
    int out = fd >= 0 ? fd : STDERR_FILENO;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(out, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd >= 0) {
        size += off;
        if (max_bytes && size >= max_bytes)
            rotate();
    }
    pthread_mutex_unlock(&lock);
}
