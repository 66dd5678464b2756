/*
 * peers.c - identity.key, share.json, peers.json, replicas and the
 * peers/.lock lock (see peers.h).  Every file write is temp + fsync +
 * rename; JSON documents are validated completely on load so that the
 * rest of the program can trust their shape.
 */
#include "daemon/peers.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ds/error.h"
#include "core/util.h"
#include "daemon/home.h"
#include "daemon/log.h"

static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- files -------------------------------------------------------------- */

/* Writes |len| bytes to |path| through a temporary file in the same
 * directory.  With |no_clobber| an existing |path| is left alone and
 * DS_ERR_EXISTS returned (link() is atomic about it). */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                        int no_clobber, char *err, size_t errlen)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp)
        return DS_ERR_NOMEM;
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return seterr(err, errlen, DS_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    const uint8_t *p = data;
    size_t left = len;
    int e = 0;
    if (fchmod(fd, mode) != 0)
        e = errno;
    while (!e && left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            e = w < 0 ? errno : EIO;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    int rc = 0;
    if (!e) {
        if (no_clobber) {
            if (link(tmp, path) != 0) {
                e = errno;
                rc = e == EEXIST ? DS_ERR_EXISTS : DS_ERR_IO;
            }
        } else if (rename(tmp, path) != 0) {
            e = errno;
            rc = DS_ERR_IO;
        }
    } else {
        rc = DS_ERR_IO;
    }
    unlink(tmp);
    free(tmp);
    if (rc == DS_ERR_IO)
        seterr(err, errlen, rc, "%s: cannot write: %s", path, strerror(e));
    else if (rc == DS_ERR_EXISTS)
        seterr(err, errlen, rc, "%s already exists", path);
    return rc;
}

/* Where warnings about a secret file ds repaired go (NULL: the log). */
static void (*warn_fn)(const char *msg);

void ds_peers_set_warn(void (*fn)(const char *msg))
{
    warn_fn = fn;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (warn_fn)
        warn_fn(msg);
    else
        DS_LOGW("%s", msg);
}

/* A secret file (open as |fd|) that other users may read or write is set
 * back to 0600, with a warning: the repair makes it a one-time message.
 * When the mode cannot be changed, that is said (once per process). */
static void private_mode(int fd, const char *path)
{
    static atomic_int chmod_failed;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !(sb.st_mode & 077))
        return;
    unsigned mode = (unsigned)(sb.st_mode & 07777);
    const char *how = sb.st_mode & 044 ? "readable" : "writable";
    if (fchmod(fd, 0600) == 0)
        warn("%s was %s by other users (mode %04o); ds set it to 0600. If someone else "
             "could have read it, make a new identity: ds peer init --force",
             path, how, mode);
    else if (!atomic_exchange(&chmod_failed, 1))
        warn("%s is %s by other users (mode %04o) and ds could not set it to 0600: %s. "
             "Run: chmod 600 %s; if someone else could have read it, make a new identity: "
             "ds peer init --force",
             path, how, mode, strerror(errno), path);
}

/* Reads |path| (at most |cap| - 1 bytes) into |buf|; with |secret| its
 * mode is checked first (private_mode). */
static int read_small(const char *path, char *buf, size_t cap, size_t *len, int secret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DS_ERR_NOTFOUND : DS_ERR_IO;
    if (secret)
        private_mode(fd, path);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return DS_ERR_IO;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got == cap) {
            close(fd);
            return DS_ERR_TOOLARGE;
        }
    }
    close(fd);
    *len = got;
    return 0;
}

/* ---- identity.key ------------------------------------------------------- */

int ds_peers_identity_load(const char *home, ds_identity *id, char *err, size_t errlen)
{
    char *path = ds_path_join(home, "identity.key");
    if (!path)
        return DS_ERR_NOMEM;
    char buf[DS_IDENTITY_FILE_MAX];
    size_t len = 0;
    int rc = read_small(path, buf, sizeof buf, &len, 1);
    if (rc == DS_ERR_NOTFOUND)
        seterr(err, errlen, rc, "%s: no identity yet", path);
    else if (rc == DS_ERR_TOOLARGE)
        rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: not an identity file (too large)", path);
    else if (rc)
        seterr(err, errlen, rc, "%s: cannot read: %s", path, strerror(errno));
    if (!rc) {
        rc = ds_identity_decode(buf, len, id);
        if (rc == DS_ERR_VERSION)
            seterr(err, errlen, rc, "%s: written by a newer version of ds", path);
        else if (rc)
            rc = seterr(err, errlen, DS_ERR_MALFORMED,
                        "%s: not a valid identity file (line 1)", path);
    }
    sodium_memzero(buf, sizeof buf);
    free(path);
    return rc;
}

int ds_peers_identity_save(const char *home, const ds_identity *id, int force, char *err,
                           size_t errlen)
{
    if (ds_home_ensure(home) != 0)
        return seterr(err, errlen, DS_ERR_IO, "%s: cannot create the home directory: %s", home,
                      strerror(errno));
    char *path = ds_path_join(home, "identity.key");
    if (!path)
        return DS_ERR_NOMEM;
    char buf[DS_IDENTITY_FILE_MAX];
    size_t len;
    ds_identity_encode(id, buf, &len);
    int rc = write_atomic(path, buf, len, 0600, !force, err, errlen);
    sodium_memzero(buf, sizeof buf);
    free(path);
    return rc;
}

/* ---- JSON helpers ------------------------------------------------------- */

/* Loads |name| in |home|: *root NULL (and 0) when the file is missing. */
static int load_json(const char *home, const char *name, json_t **root, char *err, size_t errlen)
{
    *root = NULL;
    char *path = ds_path_join(home, name);
    if (!path)
        return DS_ERR_NOMEM;
    struct stat sb;
    int rc = 0;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            rc = seterr(err, errlen, DS_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: not a regular file", path);
    } else if (sb.st_size > 16 * 1024 * 1024) {
        rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: too large (more than 16 MiB)", path);
    } else {
        json_error_t je;
        *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        /* jansson names its own flag for "\u0000" and says "control
         * character 0x0" for a raw NUL byte: say what is in the file. */
        if (!*root && (strstr(je.text, "JSON_ALLOW_NUL") ||
                       (strncmp(je.text, "control character 0x0", 21) == 0 &&
                        (je.text[21] == ' ' || je.text[21] == '\0'))))
            rc = seterr(err, errlen, DS_ERR_MALFORMED,
                        "%s: the file contains a NUL character%s, which no path or name may "
                        "hold (line %d, column %d)",
                        path, je.text[0] == '\\' ? " (written \\u0000)" : "", je.line,
                        je.column);
        else if (!*root)
            rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: %s (line %d)", path, je.text,
                        je.line);
        else if (!json_is_object(*root)) {
            rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: expected a JSON object (line 1)",
                        path);
            json_decref(*root);
            *root = NULL;
        }
    }
    free(path);
    return rc;
}

static int save_json(const char *home, const char *name, json_t *root, char *err,
                     size_t errlen)
{
    if (ds_home_ensure(home) != 0)
        return seterr(err, errlen, DS_ERR_IO, "%s: cannot create the home directory: %s", home,
                      strerror(errno));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    char *path = ds_path_join(home, name);
    int rc = DS_ERR_NOMEM;
    if (text && path) {
        size_t n = strlen(text);
        char *t2 = realloc(text, n + 2);
        if (t2) {
            text = t2;
            text[n] = '\n';
            text[n + 1] = '\0';
            rc = write_atomic(path, text, n + 1, 0600, 0, err, errlen);
        }
    }
    free(text);
    free(path);
    return rc;
}

/* ---- share.json --------------------------------------------------------- */

void ds_share_cfg_free(ds_share_cfg *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->paths[i]);
    free(c->paths);
    json_decref(c->root);
    memset(c, 0, sizeof *c);
}

/* Re-reads the path list from the document. */
static int share_rebuild(ds_share_cfg *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->paths[i]);
    free(c->paths);
    c->paths = NULL;
    c->n = 0;
    json_t *arr = json_object_get(c->root, "shared_projects");
    size_t n = json_array_size(arr);
    if (n && !(c->paths = calloc(n, sizeof *c->paths)))
        return DS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        char *p = strdup(json_string_value(json_array_get(arr, i)));
        if (!p)
            return DS_ERR_NOMEM;
        size_t l = strlen(p);
        while (l > 1 && p[l - 1] == '/')
            p[--l] = '\0';
        c->paths[c->n++] = p;
    }
    return 0;
}

int ds_share_cfg_load(const char *home, ds_share_cfg *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int rc = load_json(home, "share.json", &c->root, err, errlen);
    if (rc)
        return rc;
    if (!c->root && !(c->root = json_object()))
        return DS_ERR_NOMEM;
    json_t *arr = json_object_get(c->root, "shared_projects");
    const char *bad = NULL;
    size_t bad_i = 0;
    if (!arr) {
        if (json_object_set_new(c->root, "shared_projects", json_array()))
            rc = DS_ERR_NOMEM;
    } else if (!json_is_array(arr)) {
        bad = "\"shared_projects\" must be a list of paths";
    } else {
        for (size_t i = 0; !bad && i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);
            bad_i = i + 1;
            if (!json_is_string(v))
                bad = "entry %zu of \"shared_projects\" is not a string";
            else if (json_string_value(v)[0] != '/')
                bad = "entry %zu of \"shared_projects\" is not an absolute path";
        }
    }
    if (bad) {
        char *path = ds_path_join(home, "share.json");
        char what[128];
        snprintf(what, sizeof what, bad, bad_i);
        rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: %s", path ? path : "share.json", what);
        free(path);
    }
    if (!rc)
        rc = share_rebuild(c);
    if (rc) {
        json_decref(c->root);
        c->root = NULL;
        ds_share_cfg_free(c);
    }
    return rc;
}

int ds_share_cfg_save(const char *home, const ds_share_cfg *c, char *err, size_t errlen)
{
    return save_json(home, "share.json", c->root, err, errlen);
}

int ds_share_cfg_add(ds_share_cfg *c, const char *path)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->paths[i], path) == 0)
            return DS_ERR_EXISTS;
    json_t *arr = json_object_get(c->root, "shared_projects");
    if (json_array_append_new(arr, json_string(path)) != 0)
        return DS_ERR_NOMEM;
    return share_rebuild(c);
}

int ds_share_cfg_remove(ds_share_cfg *c, const char *path)
{
    json_t *arr = json_object_get(c->root, "shared_projects");
    int found = 0;
    /* c->paths[i] mirrors arr[i] (trailing slashes dropped). */
    for (size_t i = c->n; i-- > 0;)
        if (strcmp(c->paths[i], path) == 0) {
            json_array_remove(arr, i);
            found = 1;
        }
    if (!found)
        return DS_ERR_NOTFOUND;
    return share_rebuild(c);
}

const char *ds_share_cfg_covering(const ds_share_cfg *c, const char *path)
{
    for (size_t i = 0; path && i < c->n; i++)
        if (ds_path_within(path, c->paths[i]))
            return c->paths[i];
    return NULL;
}

int ds_share_cfg_set(const ds_share_cfg *c, ds_share_set *out)
{
    return ds_share_set_init(out, (const char *const *)c->paths, c->n);
}

/* ---- peers.json --------------------------------------------------------- */

void ds_peers_cfg_free(ds_peers_cfg *c)
{
    free(c->peers);
    json_decref(c->root);
    memset(c, 0, sizeof *c);
}

static int peers_rebuild(ds_peers_cfg *c)
{
    free(c->peers);
    c->peers = NULL;
    c->n = 0;
    json_t *obj = json_object_get(c->root, "peers");
    size_t n = json_object_size(obj);
    if (n && !(c->peers = calloc(n, sizeof *c->peers)))
        return DS_ERR_NOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        ds_peer *p = &c->peers[c->n++];
        snprintf(p->node_id, sizeof p->node_id, "%s", k);
        p->name = json_string_value(json_object_get(v, "name"));
        json_t *s = json_object_get(v, "subscribe"), *pb = json_object_get(v, "publish");
        p->subscribe = s ? json_is_true(s) : 1;
        p->publish = pb ? json_is_true(pb) : 0;
        p->last_sync = json_string_value(json_object_get(v, "last_sync"));
        json_t *a = json_object_get(v, "addrs");
        for (size_t i = 0; i < json_array_size(a) && p->naddrs < DS_PEER_MAX_ADDRS; i++)
            if (json_is_string(json_array_get(a, i)))
                p->addrs[p->naddrs++] = json_string_value(json_array_get(a, i));
        p->last_attempt = json_string_value(json_object_get(v, "last_attempt"));
        p->last_result = json_string_value(json_object_get(v, "last_result"));
        p->last_addr = json_string_value(json_object_get(v, "last_addr"));
        p->last_path = json_string_value(json_object_get(v, "last_path"));
    }
    return 0;
}

static int addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX],
                      uint16_t *port, const char **why, int allow_mapped);

/* Checks the network fields of a peer entry: "" or a problem in |what|. */
static void check_net_fields(const char *k, json_t *v, char *what, size_t wl)
{
    json_t *a = json_object_get(v, "addrs");
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) > DS_PEER_MAX_ADDRS) {
            snprintf(what, wl, "peer %.12s...: \"addrs\" must be a list of at most %d "
                     "\"host:port\" strings", k, DS_PEER_MAX_ADDRS);
            return;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *e = json_array_get(a, i);
            char host[DS_ADDR_MAX];
            uint16_t port;
            const char *why = "is not a string";
            /* IPv4-mapped addresses were accepted before: a peers.json
             * holding one still loads (dialing it fails, saying why). */
            if (!json_is_string(e) ||
                addr_parse(json_string_value(e), 0, host, &port, &why, 1)) {
                snprintf(what, wl, "peer %.12s...: address \"%.80s\" %s", k,
                         json_is_string(e) ? json_string_value(e) : "?", why);
                return;
            }
        }
    }
    static const char *strs[] = { "last_attempt", "last_result", "last_addr", "last_path" };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        json_t *f = json_object_get(v, strs[i]);
        if (f && !json_is_null(f) && !json_is_string(f)) {
            snprintf(what, wl, "peer %.12s...: \"%s\" must be a string or null", k, strs[i]);
            return;
        }
    }
}

/* The name rules; |strict| for a new name, else those of peers.json
 * entries (which an older version may have written). */
static int name_check(const char *name, int strict, const char **why)
{
    size_t n = strlen(name);
    *why = NULL;
    if (n == 0)
        *why = "is empty";
    else if (n > DS_PEER_NAME_MAX)
        *why = "is longer than 64 characters";
    else if (strict ? strcasecmp(name, "local") == 0 : strcmp(name, "local") == 0)
        *why = "is reserved (it labels this node's own store)";
    else if (ds_node_id_valid(name))
        *why = "looks like a NodeId";
    else if (strict && name[0] == '-')
        *why = "starts with '-' (it would read as an option)";
    else if (strict && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
        *why = "is not allowed ('.' and '..' read as directories)";
    for (size_t i = 0; !*why && i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            *why = "may contain only letters, digits, '-', '_' and '.'";
    }
    return *why ? DS_ERR_INVALID : 0;
}

int ds_peer_name_check(const char *name, const char **why)
{
    return name_check(name, 1, why);
}

int ds_peers_cfg_load(const char *home, ds_peers_cfg *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int rc = load_json(home, "peers.json", &c->root, err, errlen);
    if (rc)
        return rc;
    if (!c->root && !(c->root = json_object()))
        return DS_ERR_NOMEM;
    char what[256] = "";
    json_t *self = json_object_get(c->root, "node_id");
    json_t *obj = json_object_get(c->root, "peers");
    if (self && !json_is_null(self) &&
        !(json_is_string(self) && ds_node_id_valid(json_string_value(self))))
        snprintf(what, sizeof what, "\"node_id\" must be a NodeId (64 lowercase hex digits)");
    else if (!obj) {
        if (json_object_set_new(c->root, "peers", json_object()))
            rc = DS_ERR_NOMEM;
    } else if (!json_is_object(obj)) {
        snprintf(what, sizeof what, "\"peers\" must be an object keyed by NodeId");
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) {
            const char *why;
            json_t *name = json_object_get(v, "name");
            json_t *sub = json_object_get(v, "subscribe"), *pub = json_object_get(v, "publish");
            json_t *ls = json_object_get(v, "last_sync");
            if (!ds_node_id_valid(k))
                snprintf(what, sizeof what,
                         "peer \"%.80s\" is not a NodeId (64 lowercase hex digits)", k);
            else if (!json_is_object(v))
                snprintf(what, sizeof what, "peer %.12s...: expected an object", k);
            else if (name && !json_is_null(name) && !json_is_string(name))
                snprintf(what, sizeof what, "peer %.12s...: \"name\" must be a string", k);
            else if (json_is_string(name) &&
                     name_check(json_string_value(name), 0, &why) != 0)
                snprintf(what, sizeof what, "peer %.12s...: the name \"%.64s\" %s", k,
                         json_string_value(name), why);
            else if ((sub && !json_is_boolean(sub)) || (pub && !json_is_boolean(pub)))
                snprintf(what, sizeof what,
                         "peer %.12s...: \"subscribe\" and \"publish\" must be true or false",
                         k);
            else if (ls && !json_is_null(ls) && !json_is_string(ls))
                snprintf(what, sizeof what,
                         "peer %.12s...: \"last_sync\" must be a time string or null", k);
            else
                check_net_fields(k, v, what, sizeof what);
            if (what[0])
                break;
        }
    }
    if (!rc && !what[0])
        rc = peers_rebuild(c);
    for (size_t i = 0; !rc && !what[0] && i < c->n; i++)
        for (size_t j = i + 1; c->peers[i].name && j < c->n; j++)
            if (c->peers[j].name && strcmp(c->peers[i].name, c->peers[j].name) == 0) {
                snprintf(what, sizeof what, "two peers are named \"%.64s\"", c->peers[i].name);
                break;
            }
    if (what[0]) {
        char *path = ds_path_join(home, "peers.json");
        rc = seterr(err, errlen, DS_ERR_MALFORMED, "%s: %s", path ? path : "peers.json", what);
        free(path);
    }
    if (rc)
        ds_peers_cfg_free(c);
    return rc;
}

int ds_peers_cfg_save(const char *home, const ds_peers_cfg *c, char *err, size_t errlen)
{
    return save_json(home, "peers.json", c->root, err, errlen);
}

int ds_peers_cfg_set_self(ds_peers_cfg *c, const char *node_id)
{
    if (!ds_node_id_valid(node_id))
        return DS_ERR_INVALID;
    if (json_object_get(c->root, "node_id"))
        return json_object_set_new(c->root, "node_id", json_string(node_id)) ? DS_ERR_NOMEM : 0;
    /* New key: put it first, as in the spec's example. */
    json_t *nr = json_object();
    const char *k;
    json_t *v;
    int rc = !nr || json_object_set_new(nr, "node_id", json_string(node_id));
    json_object_foreach(c->root, k, v) {
        rc |= json_object_set(nr, k, v);
    }
    if (rc) {
        json_decref(nr);
        return DS_ERR_NOMEM;
    }
    json_decref(c->root);
    c->root = nr;
    return peers_rebuild(c);
}

const ds_peer *ds_peers_find(const ds_peers_cfg *c, const char *id)
{
    for (size_t i = 0; id && i < c->n; i++)
        if (strcmp(c->peers[i].node_id, id) == 0)
            return &c->peers[i];
    return NULL;
}

const ds_peer *ds_peers_find_name(const ds_peers_cfg *c, const char *name)
{
    for (size_t i = 0; name && i < c->n; i++)
        if (c->peers[i].name && strcmp(c->peers[i].name, name) == 0)
            return &c->peers[i];
    return NULL;
}

int ds_peers_resolve(const ds_peers_cfg *c, const char *arg, const ds_peer **out,
                     char *matches, size_t mlen)
{
    *out = NULL;
    if (matches && mlen)
        matches[0] = '\0';
    char a[DS_NODE_ID_HEX + 2];
    /* Room for a name or a NodeId, and the whitespace a paste brings. */
    char buf[DS_PEER_NAME_MAX + 16];
    if (strlen(arg) >= sizeof buf)
        return DS_ERR_NOTFOUND;
    strcpy(buf, arg);
    const char *name = ds_str_trim(buf);
    size_t n = strlen(name);
    if (n == 0 || n > DS_PEER_NAME_MAX)
        return DS_ERR_NOTFOUND;
    if ((*out = ds_peers_find_name(c, name)))
        return 0;
    if (n < DS_PEER_SHORT_ID || n > DS_NODE_ID_HEX)
        return DS_ERR_NOTFOUND;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return DS_ERR_NOTFOUND;
        a[i] = ch;
    }
    a[n] = '\0';
    size_t hits = 0, used = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (strncmp(c->peers[i].node_id, a, n) != 0)
            continue;
        if (!hits++)
            *out = &c->peers[i];
        char sid[DS_PEER_SHORT_ID + 1];
        if (matches && used < mlen)
            used += (size_t)snprintf(matches + used, mlen - used, "%s%s %.16s...",
                                     hits > 1 ? ", " : "", ds_peer_label(&c->peers[i], sid),
                                     c->peers[i].node_id);
    }
    if (hits > 1) {
        *out = NULL;
        return DS_ERR_AMBIGUOUS;
    }
    return hits ? 0 : DS_ERR_NOTFOUND;
}

const ds_peer *ds_peers_lookup(const ds_peers_cfg *c, const char *id_or_name)
{
    const ds_peer *p;
    return ds_peers_resolve(c, id_or_name, &p, NULL, 0) == 0 ? p : NULL;
}

int ds_peers_upsert(ds_peers_cfg *c, const char *id, const char *name, int subscribe,
                    int publish, int *created)
{
    if (created)
        *created = 0;
    if (!ds_node_id_valid(id))
        return DS_ERR_INVALID;
    const char *why;
    if (name && ds_peer_name_check(name, &why) != 0)
        return DS_ERR_INVALID;
    const ds_peer *other = ds_peers_find_name(c, name);
    if (other && strcmp(other->node_id, id) != 0)
        return DS_ERR_EXISTS;
    json_t *obj = json_object_get(c->root, "peers");
    json_t *v = json_object_get(obj, id);
    int rc = 0;
    if (!v) {
        v = json_pack("{s:o, s:b, s:b, s:n}", "name", name ? json_string(name) : json_null(),
                      "subscribe", subscribe < 0 ? 1 : subscribe, "publish",
                      publish < 0 ? 0 : publish, "last_sync");
        if (!v || json_object_set_new(obj, id, v))
            return DS_ERR_NOMEM;
        if (created)
            *created = 1;
    } else {
        if (name)
            rc |= json_object_set_new(v, "name", json_string(name));
        if (subscribe >= 0)
            rc |= json_object_set_new(v, "subscribe", json_boolean(subscribe));
        if (publish >= 0)
            rc |= json_object_set_new(v, "publish", json_boolean(publish));
        if (rc)
            return DS_ERR_NOMEM;
    }
    return peers_rebuild(c);
}

int ds_peers_remove(ds_peers_cfg *c, const char *id)
{
    json_t *obj = json_object_get(c->root, "peers");
    if (!id || json_object_del(obj, id) != 0)
        return DS_ERR_NOTFOUND;
    return peers_rebuild(c);
}

int ds_peers_set_last_sync(ds_peers_cfg *c, const char *id, const char *iso)
{
    json_t *v = json_object_get(json_object_get(c->root, "peers"), id);
    if (!v)
        return DS_ERR_NOTFOUND;
    if (json_object_set_new(v, "last_sync", iso ? json_string(iso) : json_null()))
        return DS_ERR_NOMEM;
    return peers_rebuild(c);
}

int ds_peers_add_addrs(ds_peers_cfg *c, const char *id, const char *const *addrs, size_t n,
                       size_t *added, char (*dropped)[DS_ADDR_MAX], size_t *ndropped)
{
    if (added)
        *added = 0;
    if (ndropped)
        *ndropped = 0;
    json_t *v = json_object_get(json_object_get(c->root, "peers"), id);
    if (!v)
        return DS_ERR_NOTFOUND;
    if (n > DS_PEER_MAX_ADDRS)
        return DS_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        char host[DS_ADDR_MAX];
        uint16_t port;
        const char *why;
        if (ds_addr_parse(addrs[i], 0, host, &port, &why) != 0)
            return DS_ERR_INVALID;
    }
    json_t *a = json_object_get(v, "addrs");
    if (!json_is_array(a)) {
        a = json_array();
        if (!a || json_object_set_new(v, "addrs", a))
            return DS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        /* Stored in canonical form, so "[::1]:7" and "::1" forms compare. */
        char host[DS_ADDR_MAX], canon[DS_ADDR_MAX];
        uint16_t port;
        const char *why;
        ds_addr_parse(addrs[i], 0, host, &port, &why);
        ds_addr_format(host, port, canon);
        int dup = 0;
        for (size_t j = 0; j < json_array_size(a); j++) {
            const char *have = json_string_value(json_array_get(a, j));
            if (have && strcmp(have, canon) == 0)
                dup = 1;
        }
        if (dup)
            continue;
        while (json_array_size(a) >= DS_PEER_MAX_ADDRS) {
            /* At most |n| <= DS_PEER_MAX_ADDRS older ones go. */
            const char *old = json_string_value(json_array_get(a, 0));
            if (dropped && ndropped && *ndropped < DS_PEER_MAX_ADDRS)
                snprintf(dropped[(*ndropped)++], DS_ADDR_MAX, "%s", old ? old : "?");
            json_array_remove(a, 0);
        }
        if (json_array_append_new(a, json_string(canon)))
            return DS_ERR_NOMEM;
        if (added)
            (*added)++;
    }
    return peers_rebuild(c);
}

static int set_str_or_null(json_t *v, const char *key, const char *s)
{
    return json_object_set_new(v, key, s ? json_string(s) : json_null());
}

int ds_peers_set_result(ds_peers_cfg *c, const char *id, const char *when, int ok,
                        const char *result, const char *addr, const char *path)
{
    json_t *v = json_object_get(json_object_get(c->root, "peers"), id);
    if (!v)
        return DS_ERR_NOTFOUND;
    int rc = set_str_or_null(v, "last_attempt", when);
    rc |= set_str_or_null(v, "last_result", result);
    rc |= set_str_or_null(v, "last_addr", addr);
    rc |= set_str_or_null(v, "last_path", path);
    if (ok)
        rc |= set_str_or_null(v, "last_sync", when);
    if (rc)
        return DS_ERR_NOMEM;
    return peers_rebuild(c);
}

/* ---- addresses and tickets ----------------------------------------------- */

static int host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

/* A *why built for one address (it quotes part of it): valid until the
 * next such message on this thread. */
static _Thread_local char why_buf[2 * DS_ADDR_MAX + 256];

const char *ds_addr_expect(const char *why)
{
    /* The reasons below that name the form to write ("expected :PORT",
     * "write [ADDR]:PORT", "give a global IPv6 address") need no more. */
    if (!why || strstr(why, "expected") || strstr(why, "write ") || strstr(why, "give "))
        return "";
    return " (expected HOST:PORT or [IPv6]:PORT)";
}

static int addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX],
                      uint16_t *port, const char **why, int allow_mapped)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    host[0] = '\0';
    *port = 0;
    size_t n = s ? strlen(s) : 0;
    if (n == 0)
        return *why = "is empty", DS_ERR_INVALID;
    if (n >= DS_ADDR_MAX)
        return *why = "is too long", DS_ERR_INVALID;
    if (strchr(s, ','))
        return *why = "holds a ',' (one address at a time)", DS_ERR_INVALID;
    const char *ps = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return *why = "has no closing ']'", DS_ERR_INVALID;
        size_t hl = (size_t)(close - s - 1);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        struct in6_addr a6;
        const char *zone = strchr(host, '%');
        if (zone) {
            /* fe80::1%eth0: a zone id picks the interface of a link-local
             * address; neither the listener nor the dialer passes it on. */
            snprintf(why_buf, sizeof why_buf,
                     "has a zone id: zone ids (%s) are not supported; give a global IPv6 "
                     "address or an IPv4 one",
                     zone);
            return *why = why_buf, DS_ERR_INVALID;
        }
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return *why = "is not an IPv6 address in brackets", DS_ERR_INVALID;
        if (IN6_IS_ADDR_V4MAPPED(&a6) && !allow_mapped) {
            /* [::ffff:1.2.3.4]: IPv6 sockets are V6ONLY, so such an address
             * is never reached; the IPv4 address is. */
            char v4[32];
            /* the port as given; none: the default applies, or one is due */
            const char *pt = close[1] == ':' ? close + 2 : default_port ? "" : "PORT";
            if (!inet_ntop(AF_INET, &a6.s6_addr[12], v4, sizeof v4))
                snprintf(v4, sizeof v4, "the IPv4 address");
            snprintf(why_buf, sizeof why_buf,
                     "is an IPv4-mapped IPv6 address: write %s%s%.*s instead", v4,
                     *pt ? ":" : "", DS_ADDR_MAX, pt);
            return *why = why_buf, DS_ERR_INVALID;
        }
        if (close[1] == ':')
            ps = close + 2;
        else if (close[1] != '\0')
            return *why = "has text after ']' (expected :PORT)", DS_ERR_INVALID;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            return *why = "has more than one ':', so it is not HOST:PORT (an IPv6 address "
                          "goes in brackets: write [ADDR]:PORT)",
                   DS_ERR_INVALID;
        size_t hl = colon ? (size_t)(colon - s) : n;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (hl == 0)
            return *why = "has no host", DS_ERR_INVALID;
        /* DNS's limit; it also keeps any "host:port" within DS_ADDR_MAX,
         * so formatting the address again never cuts the host short. */
        if (hl > DS_HOST_MAX)
            return *why = "has a host name longer than 253 characters", DS_ERR_INVALID;
        for (size_t i = 0; i < hl; i++)
            if (!host_char_ok(host[i]))
                return *why = "has a character a host name cannot hold", DS_ERR_INVALID;
        if (colon)
            ps = colon + 1;
    }
    if (!ps) {
        if (!default_port)
            return *why = "has no port", DS_ERR_INVALID;
        *port = default_port;
        return 0;
    }
    if (!*ps)
        return *why = "has an empty port", DS_ERR_INVALID;
    unsigned long v = 0;
    for (const char *q = ps; *q; q++) {
        if (*q < '0' || *q > '9' || q - ps > 5)
            return *why = "has a port that is not a number from 1 to 65535", DS_ERR_INVALID;
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v == 0 || v > 65535)
        return *why = "has a port out of range (1-65535)", DS_ERR_INVALID;
    *port = (uint16_t)v;
    return 0;
}

int ds_addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX], uint16_t *port,
                  const char **why)
{
    return addr_parse(s, default_port, host, port, why, 0);
}

int ds_listen_addr_parse(const char *s, uint16_t default_port, char host[DS_ADDR_MAX],
                         uint16_t *port, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    int rc = ds_addr_parse(s, default_port, host, port, why);
    if (rc)
        return rc;
    /* One spelling per address ("[0::0]" is "[::]"), so duplicates show. */
    unsigned char a[sizeof(struct in6_addr)];
    int af = strchr(host, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(af, host, a) != 1 || !inet_ntop(af, a, host, DS_ADDR_MAX))
        return *why = "is not an IP address", DS_ERR_INVALID;
    return 0;
}

void ds_addr_format(const char *host, uint16_t port, char out[DS_ADDR_MAX])
{
    if (strchr(host, ':'))
        snprintf(out, DS_ADDR_MAX, "[%.*s]:%u", DS_ADDR_MAX - 10, host, (unsigned)port);
    else
        snprintf(out, DS_ADDR_MAX, "%.*s:%u", DS_ADDR_MAX - 10, host, (unsigned)port);
}

int ds_ticket_format(const char *node_id, const char *const *addrs, size_t n, char *out,
                     size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "%s%s", DS_TICKET_PREFIX, node_id);
    for (size_t i = 0; len < cap && i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%c%s", i ? ',' : '@', addrs[i]);
    return len < cap ? 0 : DS_ERR_TOOLARGE;
}

char *ds_str_trim(char *s)
{
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r')))
        s[--n] = '\0';
    return s;
}

int ds_node_id_is_key(const char *id)
{
    uint8_t pk[DS_NODE_ID_LEN];
    return ds_node_id_parse(id, pk) == 0 && crypto_core_ed25519_is_valid_point(pk) == 1;
}

size_t ds_ticket_version_len(const char *s)
{
    if (strncmp(s, "ds", 2) != 0 || s[2] < '0' || s[2] > '9')
        return 0;
    size_t i = 2;
    while (i < 12 && s[i] >= '0' && s[i] <= '9')
        i++;
    return s[i] == ':' ? i + 1 : 0;
}

int ds_ticket_parse(const char *s, char node_id[DS_NODE_ID_HEX + 1],
                    char addrs[DS_PEER_MAX_ADDRS][DS_ADDR_MAX], size_t *n, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *n = 0;
    size_t pl = strlen(DS_TICKET_PREFIX);
    size_t vl = ds_ticket_version_len(s);
    if (vl && (vl != pl || strncmp(s, DS_TICKET_PREFIX, pl) != 0)) {
        snprintf(why_buf, sizeof why_buf,
                 "has an unknown version '%.*s': this ds reads only " DS_TICKET_PREFIX
                 " tickets (update ds, or add the peer by its NodeId with --addr HOST:PORT)",
                 (int)vl, s);
        return *why = why_buf, DS_ERR_INVALID;
    }
    if (strncmp(s, DS_TICKET_PREFIX, pl) != 0)
        return *why = "does not start with " DS_TICKET_PREFIX, DS_ERR_INVALID;
    s += pl;
    if (strlen(s) < DS_NODE_ID_HEX)
        return *why = "is too short to hold a NodeId", DS_ERR_INVALID;
    for (size_t i = 0; i < DS_NODE_ID_HEX; i++) {
        char ch = s[i];
        node_id[i] = (char)(ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch);
    }
    node_id[DS_NODE_ID_HEX] = '\0';
    if (!ds_node_id_valid(node_id))
        return *why = "does not hold a valid NodeId", DS_ERR_INVALID;
    if (!ds_node_id_is_key(node_id))
        return *why = "holds a NodeId that is not a valid Ed25519 public key", DS_ERR_INVALID;
    s += DS_NODE_ID_HEX;
    if (*s == '\0')
        return 0;
    if (*s != '@')
        return *why = "has text after the NodeId (expected '@' and addresses)", DS_ERR_INVALID;
    s++;
    if (*s == '\0')
        return *why = "has no address after '@' (expected ds1:<NodeId>@HOST:PORT,...)",
               DS_ERR_INVALID;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t l = end ? (size_t)(end - s) : strlen(s);
        if (*n >= DS_PEER_MAX_ADDRS) {
            snprintf(why_buf, sizeof why_buf,
                     "holds more than %d addresses, the most a peer keeps: give at most %d",
                     DS_PEER_MAX_ADDRS, DS_PEER_MAX_ADDRS);
            return *why = why_buf, DS_ERR_INVALID;
        }
        if (l == 0 || l >= DS_ADDR_MAX)
            return *why = "holds an empty or over-long address", DS_ERR_INVALID;
        char a[DS_ADDR_MAX], host[DS_ADDR_MAX];
        uint16_t port;
        memcpy(a, s, l);
        a[l] = '\0';
        const char *w;
        if (ds_addr_parse(a, 0, host, &port, &w) != 0) {
            char aw[400];
            snprintf(aw, sizeof aw, "%s", w);   /* w may point into why_buf */
            snprintf(why_buf, sizeof why_buf, "holds the address '%.299s', which %.399s%s", a,
                     aw, ds_addr_expect(aw));
            return *why = why_buf, DS_ERR_INVALID;
        }
        ds_addr_format(host, port, addrs[(*n)++]);
        if (!end)
            break;
        s = end + 1;
        if (!*s)
            return *why = "ends with ','", DS_ERR_INVALID;
    }
    return 0;
}

const char *ds_peer_label(const ds_peer *p, char buf[DS_PEER_SHORT_ID + 1])
{
    if (p->name)
        return p->name;
    memcpy(buf, p->node_id, DS_PEER_SHORT_ID);
    buf[DS_PEER_SHORT_ID] = '\0';
    return buf;
}

/* ---- replicas ----------------------------------------------------------- */

/* home/peers/<id>[/sub], after validating |id|; NULL on a bad id or OOM. */
char *ds_replica_path(const char *home, const char *id, const char *sub)
{
    if (!ds_node_id_valid(id))
        return NULL;
    size_t n = strlen(home) + 7 + DS_NODE_ID_HEX + (sub ? strlen(sub) + 1 : 0) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/peers/%s%s%s", home, id, sub ? "/" : "", sub ? sub : "");
    return p;
}

int ds_replica_exists(const char *home, const char *id)
{
    char *p = ds_replica_path(home, id, NULL);
    struct stat sb;
    int r = p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
    free(p);
    return r;
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return DS_ERR_IO;
}

int ds_replica_open(const char *home, const char *id, int create, const uint8_t *epoch_seed,
                    ds_store **out)
{
    *out = NULL;
    if (!ds_node_id_valid(id))
        return DS_ERR_INVALID;
    char *peers = ds_path_join(home, "peers");
    char *dir = ds_replica_path(home, id, NULL);
    char *db = ds_replica_path(home, id, "db");
    int rc = peers && dir && db ? 0 : DS_ERR_NOMEM;
    if (!rc && !create && !ds_replica_exists(home, id))
        rc = DS_ERR_NOTFOUND;
    if (!rc && create) {
        if (ds_home_ensure(home) != 0 || ensure_dir(peers) || ensure_dir(dir))
            rc = DS_ERR_IO;
    }
    if (!rc) {
        ds_store_opts o = { .epoch_seed = epoch_seed, .no_create = !create };
        rc = ds_store_open(out, db, &o);
    }
    free(peers);
    free(dir);
    free(db);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int ds_replica_delete(const char *home, const char *id)
{
    char *dir = ds_replica_path(home, id, NULL);
    if (!dir)
        return ds_node_id_valid(id) ? DS_ERR_NOMEM : DS_ERR_INVALID;
    struct stat sb;
    int rc = 0;
    if (lstat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            rc = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : DS_ERR_IO;
        else
            rc = unlink(dir) == 0 ? 0 : DS_ERR_IO;
    } else if (errno != ENOENT) {
        rc = DS_ERR_IO;
    }
    free(dir);
    return rc;
}

int ds_replica_meta_write(const char *home, const char *id, const char *name,
                          const char *last_sync, uint64_t node_count, const uint8_t *cursor,
                          char *err, size_t errlen)
{
    char *path = ds_replica_path(home, id, "meta.json");
    if (!path)
        return ds_node_id_valid(id) ? DS_ERR_NOMEM : DS_ERR_INVALID;
    char hex[2 * DS_CURSOR_LEN + 1];
    if (cursor)
        ds_hex_encode(cursor, DS_CURSOR_LEN, hex);
    json_t *o = json_pack("{s:s, s:o, s:o, s:I, s:o}", "node_id", id, "name",
                          name ? json_string(name) : json_null(), "last_sync",
                          last_sync ? json_string(last_sync) : json_null(), "node_count",
                          (json_int_t)node_count, "sync_cursor",
                          cursor ? json_string(hex) : json_null());
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    int rc = DS_ERR_NOMEM;
    char *t2 = text ? realloc(text, strlen(text) + 2) : NULL;
    if (t2) {
        text = t2;
        size_t n = strlen(text);
        text[n] = '\n';
        text[n + 1] = '\0';
        rc = write_atomic(path, text, n + 1, 0600, 0, err, errlen);
    }
    free(text);
    json_decref(o);
    free(path);
    return rc;
}

/* ---- lock --------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ds_peers_lock(const char *home, int timeout_ms, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    char *peers = ds_path_join(home, "peers");
    char *path = ds_path_join(home, "peers/.lock");
    int rc = peers && path ? 0 : DS_ERR_NOMEM;
    if (!rc && (ds_home_ensure(home) != 0 || ensure_dir(peers) != 0))
        rc = seterr(err, errlen, DS_ERR_IO, "%s: cannot create: %s", peers, strerror(errno));
    int f = -1;
    if (!rc) {
        f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (f < 0)
            rc = seterr(err, errlen, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    while (!rc) {
        if (flock(f, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            rc = seterr(err, errlen, DS_ERR_IO, "%s: cannot lock: %s", path, strerror(errno));
            break;
        }
        int64_t now = mono_ms();
        if (now >= deadline) {
            rc = seterr(err, errlen, DS_ERR_TIMEOUT,
                        "%s is held by another ds process; gave up after %d s", path,
                        (timeout_ms + 999) / 1000);
            break;
        }
        int64_t wait = deadline - now < 50 ? deadline - now : 50;
        struct timespec ts = { 0, (long)wait * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (rc && f >= 0)
        close(f);
    else if (!rc)
        *fd = f;
    free(peers);
    free(path);
    return rc;
}

void ds_peers_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}
