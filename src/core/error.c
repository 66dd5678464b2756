/*
 * error.c - descriptions of the DS_ERR_* codes (see include/ds/error.h).
 */
#include "ds/error.h"

const char *ds_strerror(int err)
{
    switch (err) {
    case DS_OK: return "success";
    case DS_ERR_NOMEM: return "out of memory";
    case DS_ERR_INVALID: return "invalid argument";
    case DS_ERR_MALFORMED: return "malformed data";
    case DS_ERR_TRUNCATED: return "data ends early (truncated)";
    case DS_ERR_NOTFOUND: return "not found";
    case DS_ERR_EXISTS: return "already exists";
    case DS_ERR_IO: return "input/output error";
    case DS_ERR_STORE: return "storage engine error";
    case DS_ERR_FULL: return "store is full";
    case DS_ERR_SCHEMA: return "store was written by a newer version of ds";
    case DS_ERR_BUSY: return "resource is locked by another process";
    case DS_ERR_AMBIGUOUS: return "ambiguous id prefix";
    case DS_ERR_TOOLARGE: return "input too large";
    case DS_ERR_CRYPTO: return "cryptographic check failed";
    case DS_ERR_INJECTED: return "injected failure (test)";
    case DS_ERR_EMPTY: return "nothing usable in input";
    case DS_ERR_BINARY: return "not a text file";
    case DS_ERR_UNAUTHORIZED: return "not authorized";
    case DS_ERR_PROTO: return "protocol error";
    case DS_ERR_TIMEOUT: return "timed out";
    case DS_ERR_VERSION: return "incompatible version";
    case DS_ERR_UNREACHABLE: return "unreachable";
    case DS_ERR_SHORT: return "its data file is shorter than its database (cut short or damaged)";
    case DS_ERR_CANCELLED: return "interrupted before the end";
    default: return "unknown error";
    }
}
