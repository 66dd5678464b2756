/*
 * error.h - error codes of the Datasphere library.
 *
 * Every fallible function returns 0 on success or a negative DS_ERR_*
 * code; ds_strerror() gives a short English description.  Error codes of
 * dependencies (LMDB, msgpack, libc) are translated in one place each.
 */
#ifndef DS_ERROR_H
#define DS_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define DS_API __attribute__((visibility("default")))

enum {
    DS_OK = 0,
    DS_ERR_NOMEM = -1,        /* out of memory */
    DS_ERR_INVALID = -2,      /* invalid argument (programmer or user input) */
    DS_ERR_MALFORMED = -3,    /* malformed encoded input */
    DS_ERR_TRUNCATED = -4,    /* encoded input ends early */
    DS_ERR_NOTFOUND = -5,     /* no such record */
    DS_ERR_EXISTS = -6,       /* record already exists */
    DS_ERR_IO = -7,           /* file system error (see errno) */
    DS_ERR_STORE = -8,        /* storage engine error */
    DS_ERR_FULL = -9,         /* store map is full */
    DS_ERR_SCHEMA = -10,      /* store written by a newer version */
    DS_ERR_BUSY = -11,        /* resource locked by another process */
    DS_ERR_AMBIGUOUS = -12,   /* id prefix matches more than one record */
    DS_ERR_TOOLARGE = -13,    /* input exceeds a hard size limit */
    DS_ERR_CRYPTO = -14,      /* cryptographic failure (bad signature, ...) */
    DS_ERR_INJECTED = -15,    /* failure injected by a test */
    DS_ERR_EMPTY = -16,       /* input has nothing usable (e.g. empty query) */
    DS_ERR_BINARY = -17,      /* input is not text */
    DS_ERR_UNAUTHORIZED = -18,/* peer not authorized */
    DS_ERR_PROTO = -19,       /* protocol violation */
    DS_ERR_TIMEOUT = -20,     /* operation timed out */
    DS_ERR_VERSION = -21,     /* incompatible protocol/format version */
    DS_ERR_UNREACHABLE = -22, /* the network said no one is there (ICMP unreachable) */
    DS_ERR_SHORT = -23,       /* store's data file shorter than its database (cut short) */
    DS_ERR_CANCELLED = -24,   /* stopped on request (a signal, a cancel) before the end */
};

/* Returns a static description of |err| (never NULL). */
DS_API const char *ds_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
