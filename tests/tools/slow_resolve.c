/*
 * slow_resolve.c - an LD_PRELOAD library for tests: getaddrinfo() of one
 * host name takes a set time, so a test can stop a sync while the look-up
 * is still running on libuv's thread pool (a cancel that cannot cancel).
 *
 *   DS_TEST_SLOW_HOST  the host name to slow down (others resolve as usual)
 *   DS_TEST_SLOW_MS    how long its look-up takes, 1 to 60000 ms (default 2000)
 *   DS_TEST_SLOW_MARK  a file created when such a look-up starts, for the
 *                      test to wait on
 *
 * The slowed look-up then fails with EAI_NONAME.  Nothing else changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

__attribute__((visibility("default"))) int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    const char *slow = getenv("DS_TEST_SLOW_HOST");
    if (node && slow && strcmp(node, slow) == 0) {
        const char *mark = getenv("DS_TEST_SLOW_MARK");
        if (mark) {
            int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (fd >= 0)
                close(fd);
        }
        const char *v = getenv("DS_TEST_SLOW_MS");
        long ms = v ? strtol(v, NULL, 10) : 2000;
        if (ms < 1 || ms > 60000)
            ms = 2000;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return EAI_NONAME;
    }
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real)
        return EAI_SYSTEM;
    return real(node, service, hints, res);
}
