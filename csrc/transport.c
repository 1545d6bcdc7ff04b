/* transport.c - the plain socket transport: a connection's bytes as the kernel's socket calls move them.
 *
 * The first (and so far only) mg_transport (internal.h): each call tries
 * once on the non-blocking socket and says -EAGAIN rather than wait; io.c
 * does the waiting.  A TLS transport would be a second table beside this
 * one (recv/sendv over SSL_read/SSL_write, sendfile NULL, pending =
 * SSL_pending, shutdown sending close_notify), chosen per connection.
 * These are the only calls in the engine of recv, send, sendmsg, sendfile
 * and shutdown on a connection (uring.c's SQEs aside: the io_uring backend
 * moves a raw transport's bytes itself).
 */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* recv(2), send(2) and sendmsg(2) through syscall(2).  glibc's wrappers are
 * cancellation points: each turns asynchronous cancellation on and off around
 * the system call (__pthread_enable/disable_asynccancel); with the wrappers
 * themselves that was about 120 instructions of a keep-alive request's 2,000,
 * syscall() 20 (bench/per_request.py), for threads nobody cancels (a worker
 * stops through w->stopping).  syscall() is no cancellation point; the result
 * is the same, -1 with errno on failure.  Under ASan the libc calls stay: its
 * interceptors check the buffers passed to them. */
#if defined(__SANITIZE_ADDRESS__) || !defined(SYS_recvfrom) || !defined(SYS_sendto) || !defined(SYS_sendmsg)
#define sock_recv(fd, buf, len, flags) recv(fd, buf, len, flags)
#define sock_send(fd, buf, len, flags) send(fd, buf, len, flags)
#define sock_sendmsg(fd, msg, flags)   sendmsg(fd, msg, flags)
#else
#define sock_recv(fd, buf, len, flags) ((ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL))
#define sock_send(fd, buf, len, flags) ((ssize_t)syscall(SYS_sendto, fd, buf, len, flags, NULL, 0))
#define sock_sendmsg(fd, msg, flags)   ((ssize_t)syscall(SYS_sendmsg, fd, msg, flags))
#endif

/* A read shorter than the room it had took all there was: until epoll
 * reports input again (every arrival is a new edge; wake_fd() clears
 * drained) a recv could only say EAGAIN, so io.c does not make it.  (nginx
 * keeps the same: rev->ready.) */
static ssize_t plain_recv(mg_coroutine *co, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = sock_recv(co->conn->fd, buf, len, 0);
        if (n > 0) {
            if ((size_t)n < len)
                co->conn->drained = 1;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            co->conn->drained = 1;
            return -EAGAIN;
        }
        return -errno;
    }
}

static ssize_t plain_sendv(mg_coroutine *co, const struct iovec *iov, int iovcnt)
{
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away gives EPIPE, never SIGPIPE.
         * One buffer goes through send(): the kernel then has no iovec
         * array to copy in. */
        ssize_t n;
        if (iovcnt == 1) {
            n = sock_send(co->conn->fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
            n = sock_sendmsg(co->conn->fd, &msg, MSG_NOSIGNAL);
        }
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t plain_sendfile(mg_coroutine *co, int file_fd, off_t *offset, size_t count)
{
    for (;;) {
        ssize_t n = sendfile(co->conn->fd, file_fd, offset, count);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* TCP_CORK holds partial frames back until uncorked, so the header and the
 * first bytes of the file leave in one segment. */
static void plain_cork(mg_coroutine *co, int on)
{
    (void)setsockopt(co->conn->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

static int plain_shutdown(mg_coroutine *co)
{
    return shutdown(co->conn->fd, SHUT_WR) < 0 ? -errno : 0;
}

static ssize_t plain_send_early(int fd, const void *buf, size_t len)
{
    /* Read what the client already sent (with TCP_DEFER_ACCEPT its request is
     * there): a close with unread input is a RST, which can make the client's
     * TCP drop the answer before its application reads it.  Bounded: what is in
     * the socket now, at most 64 KiB. */
    char sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (r < (ssize_t)sizeof(sink))
            break;
    }
    ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        (void)shutdown(fd, SHUT_WR); /* our FIN after the answer, before the close */
    return n < 0 ? -errno : n;
}

/* The plain socket's table; sendfile_fn is its one variable part. */
#define PLAIN_TRANSPORT(name_, sendfile_fn)                                                                  \
    {                                                                                                        \
        .name = (name_),                                                                                     \
        .recv = plain_recv,                                                                                  \
        .sendv = plain_sendv,                                                                                \
        .sendfile = (sendfile_fn),                                                                           \
        .cork = plain_cork,                                                                                  \
        .shutdown = plain_shutdown,                                                                          \
        .pending = NULL,                                                                                     \
        .send_early = plain_send_early,                                                                      \
        .free = NULL,                                                                                        \
        .raw = 1,                                                                                            \
    }

const mg_transport mg_transport_plain = PLAIN_TRANSPORT("plain", plain_sendfile);

/* The same without sendfile, so the tests reach io.c's pread fallback (the
 * path a TLS transport takes): MINGINX_TEST_NO_SENDFILE=1 (testhooks.c). */
const mg_transport mg_transport_plain_nosendfile = PLAIN_TRANSPORT("plain-nosendfile", NULL);
