/*
 * home.c - locating and creating the Datasphere home directory, plus the
 * two path helpers (join, canonicalize against a given working directory)
 * that the request handlers need because a daemon's working directory is
 * not its client's.
 */
#include "daemon/home.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds/error.h"

char *ds_path_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    int slash = !(dl == 1 && dir[0] == '/');
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

static void strip_trailing_slashes(char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
}

static int absolute(const char *path, char **out)
{
    if (path[0] == '/') {
        *out = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return errno == ENOMEM ? DS_ERR_NOMEM : DS_ERR_IO;
        *out = ds_path_join(cwd, path);
        free(cwd);
    }
    if (!*out)
        return DS_ERR_NOMEM;
    strip_trailing_slashes(*out);
    return 0;
}

const char *ds_user_home(void)
{
    const char *h = getenv("HOME");
    if (h && h[0])
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : NULL;
}

int ds_home_resolve(const char *opt, char **out)
{
    *out = NULL;
    if (opt)
        return opt[0] ? absolute(opt, out) : DS_ERR_INVALID;
    const char *env = getenv("DS_HOME");
    if (env && env[0])
        return absolute(env, out);
    const char *home = ds_user_home();
    if (!home)
        return DS_ERR_INVALID;
    char *base = NULL;
    int rc = absolute(home, &base);
    if (rc)
        return rc;
    *out = ds_path_join(base, ".datasphere");
    free(base);
    return *out ? 0 : DS_ERR_NOMEM;
}

int ds_home_ensure(const char *home)
{
    struct stat sb;
    if (stat(home, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return 0;
        errno = ENOTDIR;
        return DS_ERR_IO;
    }
    if (errno != ENOENT)
        return DS_ERR_IO;
    char *p = strdup(home);
    if (!p)
        return DS_ERR_NOMEM;
    /* mkdir -p: create each missing component in turn. */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return DS_ERR_IO;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    if (stat(home, &sb) != 0)
        return DS_ERR_IO;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return DS_ERR_IO;
    }
    return 0;
}

int ds_path_canonical(const char *cwd, const char *path, char **out)
{
    *out = NULL;
    char *joined = NULL;
    if (path[0] != '/' && cwd && cwd[0]) {
        joined = ds_path_join(cwd, path);
        if (!joined)
            return DS_ERR_NOMEM;
        path = joined;
    }
    char *r = realpath(path, NULL);
    int e = errno;
    free(joined);
    if (!r) {
        errno = e;
        return e == ENOMEM ? DS_ERR_NOMEM : DS_ERR_IO;
    }
    *out = r;
    return 0;
}
