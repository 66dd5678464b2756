/*
 * watch.c - recursive directory watching with one uv_fs_event_t per
 * directory, a catch-up scan at start, watchers added for directories
 * created later, and missing roots waited for through their nearest
 * existing ancestor.  See watch.h.
 */
#include "io/watch.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"

typedef struct dirw {
    uv_fs_event_t h;
    struct ds_watch *w;
    char *path;
    int depth;                  /* 0: a root */
    int waiting;                /* watches an ancestor of missing root |root| */
    size_t root;
    struct dirw *next;
} dirw;

struct ds_watch {
    uv_loop_t *loop;
    ds_watch_cb cb;
    void *ud;
    char **roots;
    size_t nroots;
    dirw *dirs;                 /* open watchers */
    size_t ndirs;               /* real (not waiting) watchers */
    size_t open_handles;
    int stopping;
    void (*done)(void *ud);
    void *done_ud;
};

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] == '/';
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    if (!slash)
        p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}

static void on_close(uv_handle_t *h)
{
    dirw *d = h->data;
    ds_watch *w = d->w;
    free(d->path);
    free(d);
    w->open_handles--;
    if (w->stopping && w->open_handles == 0) {
        void (*done)(void *) = w->done;
        void *ud = w->done_ud;
        for (size_t i = 0; i < w->nroots; i++)
            free(w->roots[i]);
        free(w->roots);
        free(w);
        if (done)
            done(ud);
    }
}

static void unlink_dir(ds_watch *w, dirw *d)
{
    for (dirw **pp = &w->dirs; *pp; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    if (!d->waiting)
        w->ndirs--;
}

static void close_dir(ds_watch *w, dirw *d)
{
    unlink_dir(w, d);
    uv_fs_event_stop(&d->h);
    uv_close((uv_handle_t *)&d->h, on_close);
}

static dirw *find_dir(ds_watch *w, const char *path, int waiting)
{
    for (dirw *d = w->dirs; d; d = d->next)
        if (d->waiting == waiting && strcmp(d->path, path) == 0)
            return d;
    return NULL;
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status);

static dirw *new_watcher(ds_watch *w, const char *path, int depth, int waiting, size_t root)
{
    dirw *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->path = strdup(path);
    if (!d->path || uv_fs_event_init(w->loop, &d->h) != 0) {
        free(d->path);
        free(d);
        return NULL;
    }
    d->h.data = d;
    d->w = w;
    d->depth = depth;
    d->waiting = waiting;
    d->root = root;
    w->open_handles++;
    d->next = w->dirs;
    w->dirs = d;
    if (!waiting)
        w->ndirs++;
    if (uv_fs_event_start(&d->h, on_event, path, 0) != 0) {
        close_dir(w, d);
        return NULL;
    }
    return d;
}

/* Watches directory |path| and everything beneath it, reporting the
 * regular files found (|catchup| tells the callback why). */
static void add_tree(ds_watch *w, const char *path, int depth, int catchup)
{
    if (w->stopping || depth > DS_WATCH_MAX_DEPTH || w->ndirs >= DS_WATCH_MAX_DIRS ||
        find_dir(w, path, 0))
        return;
    if (!new_watcher(w, path, depth, 0, 0))
        return;
    DIR *dir = opendir(path);
    if (!dir)
        return;
    struct dirent *e;
    while (!w->stopping && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *full = join(path, e->d_name);
        if (!full)
            break;
        struct stat sb;
        if (lstat(full, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                add_tree(w, full, depth + 1, catchup);
            else if (S_ISREG(sb.st_mode))
                w->cb(w->ud, full, &sb, catchup);
        }
        free(full);
    }
    closedir(dir);
}

/* Root |i| does not exist: watch its nearest existing ancestor. */
static void wait_for_root(ds_watch *w, size_t i)
{
    char *p = strdup(w->roots[i]);
    if (!p)
        return;
    for (;;) {
        char *slash = strrchr(p, '/');
        if (!slash)
            break;
        if (slash == p)
            slash[1] = '\0';
        else
            *slash = '\0';
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (!find_dir(w, p, 1) || find_dir(w, p, 1)->root != i)
                new_watcher(w, p, 0, 1, i);
            break;
        }
        if (slash == p)
            break;
    }
    free(p);
}

static void setup_root(ds_watch *w, size_t i, int catchup)
{
    struct stat sb;
    if (stat(w->roots[i], &sb) == 0 && S_ISDIR(sb.st_mode))
        add_tree(w, w->roots[i], 0, catchup);
    else
        wait_for_root(w, i);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    dirw *d = h->data;
    ds_watch *w = d->w;
    if (w->stopping || uv_is_closing((uv_handle_t *)h))
        return;
    if (d->waiting) {
        /* Something changed along the way to a missing root: look again. */
        size_t i = d->root;
        close_dir(w, d);
        setup_root(w, i, 0);
        return;
    }
    struct stat sb;
    if (lstat(d->path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        /* The directory itself went away. */
        int root = d->depth == 0;
        const char *p = d->path;
        size_t ri = 0;
        for (size_t i = 0; root && i < w->nroots; i++)
            if (strcmp(w->roots[i], p) == 0)
                ri = i;
        close_dir(w, d);
        if (root)
            wait_for_root(w, ri);
        return;
    }
    if (status < 0 || !filename || !filename[0]) {
        /* Events were lost (queue overflow): rescan this directory. */
        char *path = strdup(d->path);
        int depth = d->depth;
        if (!path)
            return;
        close_dir(w, d);
        add_tree(w, path, depth, 0);
        free(path);
        return;
    }
    char *full = join(d->path, filename);
    if (!full)
        return;
    if (lstat(full, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            add_tree(w, full, d->depth + 1, 0);
        else if (S_ISREG(sb.st_mode))
            w->cb(w->ud, full, &sb, 0);
    } else if (errno == ENOENT || errno == ENOTDIR) {
        dirw *sub = find_dir(w, full, 0);
        if (sub)
            close_dir(w, sub);
        else
            w->cb(w->ud, full, NULL, 0);
    }
    free(full);
}

int ds_watch_start(ds_watch **out, uv_loop_t *loop, const char *const *roots, size_t nroots,
                   ds_watch_cb cb, void *ud)
{
    *out = NULL;
    if (!loop || !cb || (nroots && !roots))
        return DS_ERR_INVALID;
    for (size_t i = 0; i < nroots; i++)
        if (!roots[i] || roots[i][0] != '/')
            return DS_ERR_INVALID;
    ds_watch *w = calloc(1, sizeof *w);
    if (!w)
        return DS_ERR_NOMEM;
    w->loop = loop;
    w->cb = cb;
    w->ud = ud;
    w->roots = calloc(nroots ? nroots : 1, sizeof *w->roots);
    if (!w->roots) {
        free(w);
        return DS_ERR_NOMEM;
    }
    for (size_t i = 0; i < nroots; i++) {
        size_t n = strlen(roots[i]);
        while (n > 1 && roots[i][n - 1] == '/')
            n--;
        w->roots[i] = strndup(roots[i], n);
        if (!w->roots[i]) {
            for (size_t k = 0; k < i; k++)
                free(w->roots[k]);
            free(w->roots);
            free(w);
            return DS_ERR_NOMEM;
        }
        w->nroots = i + 1;
    }
    for (size_t i = 0; i < w->nroots; i++)
        setup_root(w, i, 1);
    *out = w;
    return 0;
}

size_t ds_watch_dirs(const ds_watch *w)
{
    return w ? w->ndirs : 0;
}

void ds_watch_stop(ds_watch *w, void (*done)(void *ud), void *ud)
{
    if (!w) {
        if (done)
            done(ud);
        return;
    }
    w->stopping = 1;
    w->done = done;
    w->done_ud = ud;
    if (w->open_handles == 0) {
        /* Nothing to close: finish at once. */
        for (size_t i = 0; i < w->nroots; i++)
            free(w->roots[i]);
        free(w->roots);
        free(w);
        if (done)
            done(ud);
        return;
    }
    while (w->dirs)
        close_dir(w, w->dirs);
}
