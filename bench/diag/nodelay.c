/*
 * Diagnostic shim, not part of any product build (see docs/benchmarks.md, "TCP_NODELAY").
 *
 * LD_PRELOADed into pgwarden-dcs, it sets TCP_NODELAY on every accepted socket. tonic
 * ignores Server::tcp_nodelay(true) when it is given its own incoming stream
 * (serve_with_incoming_shutdown, as raft/src/node.rs does), so the peer service answers
 * with Nagle on, and small replies wait for the peer's delayed ACK (40 ms on Linux).
 * With this shim the benchmark shows what the one-line fix in node.rs would give.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd)
{
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int fd = real(s, addr, len, flags);
    nodelay(fd);
    return fd;
}

int accept(int s, struct sockaddr *addr, socklen_t *len)
{
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int fd = real(s, addr, len);
    nodelay(fd);
    return fd;
}
