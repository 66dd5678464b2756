/*
 * udp_path.c - the direct datagram path of the QUIC endpoint: one UDP
 * socket of our own, watched with a uv_poll_t (libuv 1.44's uv_udp_t has
 * neither GSO nor GRO).  Sends a batch of equal-sized datagrams with one
 * sendmsg carrying a UDP_SEGMENT control message (GSO) when the kernel
 * takes it, else with sendmmsg; receives with UDP_GRO, handing each
 * coalesced buffer to the endpoint in one call.  When the socket buffer
 * is full, send takes what it can and the path reports writable later.
 * DS_QUIC_NO_GSO=1 in the environment turns GSO off (for measurements).
 */
#include <errno.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/errqueue.h> /* after <time.h>: it uses struct timespec */

#include "ds/error.h"
#include "io/quic_int.h"

#define RECV_BUF 65536
#define RECV_BATCH 64      /* reads per readiness callback, for fairness */
#define MAX_SEGS 64        /* kernel UDP_MAX_SEGMENTS */

typedef struct udp_path {
    ds_quic_path path;
    uv_poll_t poll;
    int fd;
    int events;
    int want_write;
    void (*done)(ds_quic_path *p);
    uint8_t rbuf[RECV_BUF];
} udp_path;

static socklen_t sa_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static void update_poll(udp_path *u);

static int send_gso(udp_path *u, const struct sockaddr *to, const uint8_t *buf, size_t len,
                    size_t seg)
{
    struct iovec iov = {(void *)buf, len};
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {0};
    m.msg_name = (void *)to;
    m.msg_namelen = sa_len(to);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t s = (uint16_t)seg;
    memcpy(CMSG_DATA(cm), &s, sizeof s);
    ssize_t n;
    do
        n = sendmsg(u->fd, &m, 0);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

static int udp_send(ds_quic_path *p, const struct sockaddr *to, const uint8_t *buf, size_t len,
                    size_t seg)
{
    udp_path *u = p->impl;
    if (seg == 0 || seg > len)
        seg = len;
    if (p->gso && len > seg) {
        int e = send_gso(u, to, buf, len, seg);
        if (e == 0)
            return (int)len;
        if (e == -EAGAIN || e == -EWOULDBLOCK) {
            u->want_write = 1;
            update_poll(u);
            return 0;
        }
        if (e == -EIO || e == -EINVAL || e == -EOPNOTSUPP)
            p->gso = 0; /* the device refused segmentation: per datagram from now on */
        else
            return (int)len; /* unreachable etc.: the datagrams are lost */
    }
    struct mmsghdr msgs[MAX_SEGS];
    struct iovec iovs[MAX_SEGS];
    size_t off = 0;
    while (off < len) {
        unsigned cnt = 0;
        for (size_t o = off; o < len && cnt < MAX_SEGS; o += seg, cnt++) {
            size_t l = len - o < seg ? len - o : seg;
            iovs[cnt].iov_base = (void *)(buf + o);
            iovs[cnt].iov_len = l;
            memset(&msgs[cnt], 0, sizeof msgs[cnt]);
            msgs[cnt].msg_hdr.msg_name = (void *)to;
            msgs[cnt].msg_hdr.msg_namelen = sa_len(to);
            msgs[cnt].msg_hdr.msg_iov = &iovs[cnt];
            msgs[cnt].msg_hdr.msg_iovlen = 1;
        }
        int n;
        do
            n = sendmmsg(u->fd, msgs, cnt, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                u->want_write = 1;
                update_poll(u);
                return (int)off;
            }
            n = 1; /* drop the failing datagram, keep going */
        }
        for (int i = 0; i < n; i++)
            off += iovs[i].iov_len;
    }
    return (int)len;
}

static void recv_some(udp_path *u)
{
    for (int i = 0; i < RECV_BATCH && !u->path.closing; i++) {
        struct sockaddr_storage from;
        struct iovec iov = {u->rbuf, sizeof u->rbuf};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct msghdr m = {0};
        m.msg_name = &from;
        m.msg_namelen = sizeof from;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        ssize_t n = recvmsg(u->fd, &m, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            continue; /* EINTR, or a pending ICMP error reported once (read_errors has it) */
        }
        size_t seg = (size_t)n;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
                int g;
                memcpy(&g, CMSG_DATA(cm), sizeof g);
                if (g > 0 && (size_t)g < seg)
                    seg = (size_t)g;
            }
        }
        if (n > 0)
            ds_quic_endpoint_recv(u->path.ep, &u->path, (struct sockaddr *)&from, u->rbuf,
                                  (size_t)n, seg);
    }
}

/* What an ICMP error says about its destination; NULL when it does not
 * mean "nobody there" (e.g. fragmentation needed, time exceeded). */
static const char *icmp_why(const struct sock_extended_err *ee)
{
    if (ee->ee_origin == SO_EE_ORIGIN_ICMP && ee->ee_type == ICMP_DEST_UNREACH) {
        switch (ee->ee_code) {
        case ICMP_PORT_UNREACH: return "nothing listens on that port";
        case ICMP_HOST_UNREACH: return "host unreachable";
        case ICMP_NET_UNREACH: return "network unreachable";
        case ICMP_PROT_UNREACH: return "the host refuses UDP";
        case ICMP_NET_ANO:
        case ICMP_HOST_ANO:
        case ICMP_PKT_FILTERED: return "blocked by a firewall";
        default: return NULL;
        }
    }
    if (ee->ee_origin == SO_EE_ORIGIN_ICMP6 && ee->ee_type == ICMP6_DST_UNREACH) {
        switch (ee->ee_code) {
        case ICMP6_DST_UNREACH_NOPORT: return "nothing listens on that port";
        case ICMP6_DST_UNREACH_ADDR: return "host unreachable";
        case ICMP6_DST_UNREACH_NOROUTE: return "network unreachable";
        case ICMP6_DST_UNREACH_ADMIN: return "blocked by a firewall";
        default: return NULL;
        }
    }
    return NULL;
}

/* Drains the socket's error queue (IP_RECVERR): each ICMP "unreachable"
 * is reported to the endpoint with the destination of the datagram that
 * caused it; anything else (local errors, PMTU) is dropped. */
static void read_errors(udp_path *u)
{
    for (int i = 0; i < RECV_BATCH && !u->path.closing; i++) {
        struct sockaddr_storage to;
        uint8_t data[64];
        struct iovec iov = {data, sizeof data};
        union {
            char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in6))];
            struct cmsghdr align;
        } ctl;
        struct msghdr m = {0};
        memset(&to, 0, sizeof to);
        m.msg_name = &to;
        m.msg_namelen = sizeof to;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        ssize_t n = recvmsg(u->fd, &m, MSG_ERRQUEUE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: the queue is empty */
        }
        if (to.ss_family != AF_INET && to.ss_family != AF_INET6)
            continue;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
            if (!((cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_RECVERR) ||
                  (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
                continue;
            if (cm->cmsg_len < CMSG_LEN(sizeof(struct sock_extended_err)))
                continue;
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(cm), sizeof ee);
            const char *why = icmp_why(&ee);
            if (why)
                ds_quic_endpoint_unreachable(u->path.ep, &u->path, (struct sockaddr *)&to, why);
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    udp_path *u = h->data;
    if (status < 0) {
        /* A queued ICMP error (POLLERR): libuv has stopped the handle. */
        read_errors(u);
        if (!u->path.closing) {
            recv_some(u);
            u->events = 0;      /* start it again */
            update_poll(u);
        }
        return;
    }
    if (events & UV_WRITABLE) {
        u->want_write = 0;
        update_poll(u);
        ds_quic_path_writable(&u->path);
    }
    if ((events & UV_READABLE) && !u->path.closing)
        recv_some(u);
}

static void update_poll(udp_path *u)
{
    if (u->path.closing)
        return;
    int ev = UV_READABLE | (u->want_write ? UV_WRITABLE : 0);
    if (ev != u->events) {
        u->events = ev;
        uv_poll_start(&u->poll, ev, on_poll);
    }
}

static void on_closed(uv_handle_t *h)
{
    udp_path *u = h->data;
    close(u->fd);
    void (*done)(ds_quic_path *) = u->done;
    if (done)
        done(&u->path); /* identifies the path; it is freed right after */
    free(u);
}

static void udp_close(ds_quic_path *p, void (*done)(ds_quic_path *p))
{
    udp_path *u = p->impl;
    u->done = done;
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, on_closed);
}

static const ds_quic_path_ops UDP_OPS = {"direct", udp_send, udp_close};

int ds_quic_udp_path_open(ds_quic_endpoint *ep, uv_loop_t *loop, const struct sockaddr *addr,
                          int listening, ds_quic_path **out, char *err, size_t errlen)
{
    (void)ep;
    int fam = addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) {
        snprintf(err, errlen, "unsupported address family");
        return DS_ERR_INVALID;
    }
    udp_path *u = calloc(1, sizeof *u);
    if (!u)
        return DS_ERR_NOMEM;
    u->fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (u->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    if (fam == AF_INET6)
        setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(u->fd, addr, sa_len(addr)) != 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        goto fail_fd;
    }
    socklen_t sl = sizeof u->path.local;
    if (getsockname(u->fd, (struct sockaddr *)&u->path.local, &sl) != 0) {
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        goto fail_fd;
    }
    /* Bigger buffers (best effort: capped by the system limits). */
    int bufsz = 4 << 20;
    setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    /* Don't fragment: QUIC does its own path MTU discovery. */
    int pmtu = IP_PMTUDISC_PROBE;
    if (fam == AF_INET)
        setsockopt(u->fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    else
        setsockopt(u->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu);
    setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof one);
    /* ICMP errors (port unreachable, ...) into the error queue, so a dial
     * to a closed port ends at once instead of at its timeout. */
    if (fam == AF_INET)
        setsockopt(u->fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one);
    else
        setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one);
    int segsz = 0;
    socklen_t ol = sizeof segsz;
    u->path.gso = getsockopt(u->fd, SOL_UDP, UDP_SEGMENT, &segsz, &ol) == 0;
    if (getenv("DS_QUIC_NO_GSO")) /* measurement: the per-datagram fallback */
        u->path.gso = 0;

    if (uv_poll_init(loop, &u->poll, u->fd) != 0) {
        snprintf(err, errlen, "uv_poll_init failed");
        goto fail_fd;
    }
    u->poll.data = u;
    u->path.ops = &UDP_OPS;
    u->path.impl = u;
    u->path.listening = listening;
    u->events = UV_READABLE;
    uv_poll_start(&u->poll, UV_READABLE, on_poll);
    *out = &u->path;
    return 0;
fail_fd:
    close(u->fd);
fail:
    free(u);
    return DS_ERR_IO;
}
