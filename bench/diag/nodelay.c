/*
 * Diagnostic shim, not part of any product build (see docs/benchmarks.md, "TCP_NODELAY").
 *
 * LD_PRELOADed into pgwarden-dcs, it sets TCP_NODELAY on every accepted socket. tonic
 * ignores Server::tcp_nodelay(true) when it is given its own incoming stream
 * (serve_with_incoming_shutdown, as raft/src/node.rs does), so the peer service answers
 * with Nagle on, and small replies wait for the peer's delayed ACK (40 ms on Linux).
 * With this shim the benchmark shows what the one-line fix in node.rs would give.
 *
 * With PGWARDEN_DIAG_NOSYNC=1 in the environment it also turns fsync, fdatasync and
 * sync_file_range into no-ops, to measure how much of a write's latency is spent making
 * it durable. Never run a real cluster like that.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
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

static int nosync(void)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("PGWARDEN_DIAG_NOSYNC");
        on = v != NULL && v[0] == '1';
    }
    return on;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (nosync())
        return 0;
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (nosync())
        return 0;
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
{
    static int (*real)(int, off_t, off_t, unsigned int);
    if (nosync())
        return 0;
    if (!real)
        real = (int (*)(int, off_t, off_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    return real(fd, offset, nbytes, flags);
}
