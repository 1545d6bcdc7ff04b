/* io.c - the coroutine's system calls: recv_async, send_async, sendfile_async, TCP_CORK.
 *
 * Each tries the call first (sockets are non-blocking).  EINTR: try again.
 * EAGAIN: park on the fd (coroutine_yield, back to schedule()) until wake_fd()
 * or a timer puts us back on the ready queue, then try again.  The results
 * follow the kernel's style: bytes moved, or -errno.
 *
 * Under --io uring (w->uring set) recv_async, sendv_async and io_park go to
 * uring.c instead: the call is submitted and the coroutine waits for its
 * completion.  sendfile stays sendfile(2), whose EAGAIN io_park polls.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
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

/* Park until the fd is ready for `reason`.  Returns 0 to retry the call, or
 * -ETIMEDOUT when the wait itself is over (the coroutine's timer fired). */
int io_park(mg_coroutine *co, int reason)
{
    if (co->worker->uring)
        return uring_poll(co, reason);
    if (co->timed_out)
        return -ETIMEDOUT;
    co->woken_by = 0;
    coroutine_yield_io(co, reason); /* a read's wait: "recv_async -> EAGAIN, yield (read)" */
    return 0;
}

/* The step of a call that returned n (bytes, or -errno), with the trace on. */
static __attribute__((noinline, cold)) void trace_io(mg_coroutine *co, int event, ssize_t n)
{
    trace_push(&co->worker->ring, co->worker->index, event, co->id, co->fd, n > INT_MAX ? INT_MAX : (int)n);
}

/* One read that never waits: bytes, 0 at EOF, -EAGAIN, or -errno.
 * co->drained remembers that the socket is empty: a read shorter than the
 * room it had took all there was, and until epoll reports input again
 * (every arrival is a new edge; wake_fd() clears drained) a recv could only
 * say EAGAIN, so it is not made.  (nginx keeps the same: rev->ready.) */
static inline ssize_t recv_once(mg_coroutine *co, void *buf, size_t len)
{
    if (co->drained)
        return -EAGAIN;
    for (;;) {
        ssize_t n = sock_recv(co->fd, buf, len, 0);
        if (n > 0) {
            if ((size_t)n < len)
                co->drained = 1;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            co->drained = 1;
            return -EAGAIN;
        }
        return -errno;
    }
}

ssize_t recv_nowait(mg_coroutine *co, void *buf, size_t len)
{
    ssize_t n = recv_once(co, buf, len);
    /* EAGAIN: its step is the wait's (io_park), if the caller waits */
    if (MG_UNLIKELY(co->worker->trace) && n != -EAGAIN)
        trace_io(co, MG_EV_RECV_ASYNC, n);
    return n;
}

ssize_t recv_async(mg_coroutine *co, void *buf, size_t len)
{
    if (co->worker->uring)
        return uring_recv(co, buf, len);
    for (;;) {
        ssize_t n = recv_nowait(co, buf, len);
        if (n != -EAGAIN)
            return n;
        int r = io_park(co, MG_YIELD_READ);
        if (r < 0)
            return r;
        co->drained = 0; /* woken: try the read again */
    }
}

/* Send every byte of iov[0..iovcnt) (the iovec array is consumed). */
static inline __attribute__((always_inline)) ssize_t sendv_all(mg_coroutine *co, struct iovec *iov,
                                                               int iovcnt)
{
    size_t total = 0;
    int progressed = 1; /* arm the send timer afresh only after progress */

    if (co->worker->uring)
        return uring_sendv(co, iov, iovcnt);
    for (;;) {
        /* an empty piece is already sent: waiting for EPOLLOUT to send
         * nothing would park until the send timeout */
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            break;
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        /* MSG_NOSIGNAL: a peer that went away gives EPIPE, never SIGPIPE.
         * One buffer goes through send(): the kernel then has no iovec
         * array to copy in. */
        ssize_t n = iovcnt == 1 ? sock_send(co->fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL)
                                : sock_sendmsg(co->fd, &msg, MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            co->worker->stats.bytes_out += (uint64_t)n;
            co->sent += (uint64_t)n;
            progressed = 1;
            size_t left = (size_t)n;
            while (iovcnt > 0 && left >= iov->iov_len) {
                left -= iov->iov_len;
                iov++;
                iovcnt--;
            }
            if (iovcnt > 0) {
                iov->iov_base = (char *)iov->iov_base + left;
                iov->iov_len -= left;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (progressed)
            timer_set(co, MG_TIMER_SEND); /* no progress for send_timeout: give up */
        progressed = 0;
        int r = io_park(co, MG_YIELD_WRITE);
        if (r < 0)
            return r;
    }
    if (co->timer_class == MG_TIMER_SEND)
        timer_clear(co);
    return (ssize_t)total;
}

ssize_t sendv_async(mg_coroutine *co, struct iovec *iov, int iovcnt)
{
    ssize_t n = sendv_all(co, iov, iovcnt);
    if (MG_UNLIKELY(co->worker->trace))
        trace_io(co, MG_EV_SEND_ASYNC, n);
    return n;
}

ssize_t send_async(mg_coroutine *co, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return sendv_async(co, &iov, 1);
}

static inline __attribute__((always_inline)) ssize_t sendfile_all(mg_coroutine *co, int file_fd, off_t offset,
                                                                  size_t count)
{
    mg_worker *w = co->worker;
    size_t left = count, since_yield = 0;
    int progressed = 1;

    while (left > 0) {
        ssize_t n = sendfile(co->fd, file_fd, &offset, left < MG_SENDFILE_CHUNK ? left : MG_SENDFILE_CHUNK);
        if (n > 0) {
            left -= (size_t)n;
            since_yield += (size_t)n;
            w->stats.bytes_out += (uint64_t)n;
            co->sent += (uint64_t)n;
            progressed = 1;
            /* A fast reader on loopback can take a large file without the
             * socket ever filling up: let the other coroutines have a turn. */
            if (since_yield >= MG_SEND_SLICE && w->ready_head) {
                since_yield = 0;
                coroutine_yield(co, MG_YIELD_READY);
            }
            continue;
        }
        if (n == 0)
            break; /* the file got shorter under us: the caller sees a short count */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        since_yield = 0;
        if (progressed)
            timer_set(co, MG_TIMER_SEND);
        progressed = 0;
        int r = io_park(co, MG_YIELD_WRITE);
        if (r < 0)
            return r;
    }
    if (co->timer_class == MG_TIMER_SEND)
        timer_clear(co);
    return (ssize_t)(count - left);
}

ssize_t sendfile_async(mg_coroutine *co, int file_fd, off_t offset, size_t count)
{
    ssize_t n = sendfile_all(co, file_fd, offset, count);
    if (MG_UNLIKELY(co->worker->trace))
        trace_io(co, MG_EV_SENDFILE_ASYNC, n);
    return n;
}

/* TCP_CORK holds partial frames back until uncorked, so the header and the
 * first bytes of the file leave in one segment. */
void set_cork(int fd, int on)
{
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}
