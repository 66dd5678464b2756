/*
 * home.h - the Datasphere home directory (~/.datasphere): where it is and
 * how it comes into being.
 *
 * The home is chosen once per process: the --home option wins over the
 * DS_HOME environment variable, which wins over $HOME/.datasphere.  It is
 * created (mode 0700, parents included) only when something is about to
 * be written, so read-only commands never leave a directory behind.
 */
#ifndef DS_HOME_H
#define DS_HOME_H

#include <stddef.h>

/* Resolves the home directory.  |opt| is the --home value or NULL.
 * A relative path is made absolute against the current directory (it is
 * not required to exist); trailing slashes are dropped.  *out is malloc'd
 * (caller frees).  Returns 0, DS_ERR_INVALID (empty value, or no $HOME
 * and no password entry to fall back on) or DS_ERR_NOMEM. */
int ds_home_resolve(const char *opt, char **out);

/* The user's own home directory: $HOME, else the password entry; NULL
 * when neither is known.  (For "~" in config.json; not the ds home.) */
const char *ds_user_home(void);

/* Creates |home| and any missing parents with mode 0700.  An existing
 * directory is accepted as is.  Returns 0, or DS_ERR_IO with errno set
 * (ENOTDIR when a component is not a directory). */
int ds_home_ensure(const char *home);

/* Joins |dir| and |name| with one '/' into a malloc'd string, or NULL
 * when out of memory. */
char *ds_path_join(const char *dir, const char *name);

/* Makes |path| absolute against |cwd| (when relative) and canonical
 * (realpath).  *out is malloc'd.  Returns 0, DS_ERR_IO with errno set
 * (ENOENT, EACCES, ...) or DS_ERR_NOMEM. */
int ds_path_canonical(const char *cwd, const char *path, char **out);

#endif
