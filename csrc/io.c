/* io.c - the coroutine's system calls: recv_async, send_async, sendfile_async, TCP_CORK.
 *
 * Each tries the call first, through the connection's transport (co->conn->tp:
 * transport.c's plain socket), which never waits.  EAGAIN: park on the fd
 * (io_park: the worker's backend, w->be; under epoll coroutine_yield, back
 * to schedule()) until wake_fd() or a timer puts us back on the ready queue,
 * then try again.  The results follow the kernel's style: bytes moved, or
 * -errno; the bytes counted (co->conn->sent, bytes_out) are the transport's, so
 * under TLS they would be plaintext bytes.
 *
 * A completion backend (--io uring) moves a raw transport's bytes itself:
 * recv_async and sendv_async go to w->be->recv / ->sendv (uring.c), which
 * submit the call and wait for its completion.  sendfile stays the
 * transport's, whose EAGAIN io_park polls.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

/* Park until the fd is ready for `reason`.  Returns 0 to retry the call, or
 * -ETIMEDOUT when the wait itself is over (the coroutine's timer fired). */
int io_park(mg_coroutine *co, int reason)
{
    return co->worker->be->poll(co, reason);
}

/* The step of a call that returned n (bytes, or -errno), with the trace on. */
static __attribute__((noinline, cold)) void trace_io(mg_coroutine *co, int event, ssize_t n)
{
    trace_push(&co->worker->ring, co->worker->index, event, co->id, co->conn->fd,
               n > INT_MAX ? INT_MAX : (int)n);
}

/* One read that never waits: bytes, 0 at EOF, -EAGAIN, or -errno.
 * co->conn->drained (set by the transport) says the read would only say EAGAIN:
 * it is not made. */
static inline ssize_t recv_once(mg_coroutine *co, void *buf, size_t len)
{
    if (co->conn->drained)
        return -EAGAIN;
    return co->conn->tp->recv(co, buf, len);
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
    const mg_backend *be = co->worker->be;
    if (be->recv && co->conn->tp->raw)
        return be->recv(co, buf, len);
    for (;;) {
        ssize_t n = recv_nowait(co, buf, len);
        if (n != -EAGAIN)
            return n;
        int r = io_park(co, MG_YIELD_READ);
        if (r < 0)
            return r;
        co->conn->drained = 0; /* woken: try the read again */
    }
}

/* Send every byte of iov[0..iovcnt) (the iovec array is consumed). */
static inline __attribute__((always_inline)) ssize_t sendv_all(mg_coroutine *co, struct iovec *iov,
                                                               int iovcnt)
{
    size_t total = 0;
    int progressed = 1; /* arm the send timer afresh only after progress */

    const mg_backend *be = co->worker->be;
    if (be->sendv && co->conn->tp->raw)
        return be->sendv(co, iov, iovcnt);
    for (;;) {
        /* an empty piece is already sent: waiting for EPOLLOUT to send
         * nothing would park until the send timeout */
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            break;
        ssize_t n = co->conn->tp->sendv(co, iov, iovcnt);
        if (n > 0) {
            total += (size_t)n;
            co->worker->stats.bytes_out += (uint64_t)n;
            co->conn->sent += (uint64_t)n;
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
        if (n != -EAGAIN && n != 0)
            return n;
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

/* A transport without sendfile (TLS): the file is read into a buffer and
 * sent through its sendv, MG_PREAD_CHUNK at a time.  Tested by
 * tests/test_static.py (MINGINX_TEST_NO_SENDFILE). */
#define MG_PREAD_CHUNK (64 * 1024)
static __attribute__((noinline)) ssize_t sendfile_by_pread(mg_coroutine *co, int file_fd, off_t offset,
                                                           size_t count)
{
    char *buf = malloc(count < MG_PREAD_CHUNK ? count : MG_PREAD_CHUNK);
    if (!buf)
        return -ENOMEM;
    size_t left = count;
    ssize_t r = 0;
    while (left > 0) {
        ssize_t n = pread(file_fd, buf, left < MG_PREAD_CHUNK ? left : MG_PREAD_CHUNK, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break; /* the file got shorter under us: the caller sees a short count */
        struct iovec iov = {buf, (size_t)n};
        ssize_t m = sendv_all(co, &iov, 1);
        if (m < 0) {
            r = m;
            break;
        }
        offset += n;
        left -= (size_t)n;
        if (left > 0 && co->worker->ready_head)
            coroutine_yield(co, MG_YIELD_READY); /* a large file lets the others run */
    }
    free(buf);
    return r < 0 ? r : (ssize_t)(count - left);
}

static inline __attribute__((always_inline)) ssize_t sendfile_all(mg_coroutine *co, int file_fd, off_t offset,
                                                                  size_t count)
{
    mg_worker *w = co->worker;
    size_t left = count, since_yield = 0;
    int progressed = 1;

    if (MG_UNLIKELY(!co->conn->tp->sendfile))
        return sendfile_by_pread(co, file_fd, offset, count);
    while (left > 0) {
        ssize_t n =
            co->conn->tp->sendfile(co, file_fd, &offset, left < MG_SENDFILE_CHUNK ? left : MG_SENDFILE_CHUNK);
        if (n > 0) {
            left -= (size_t)n;
            since_yield += (size_t)n;
            w->stats.bytes_out += (uint64_t)n;
            co->conn->sent += (uint64_t)n;
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
        if (n != -EAGAIN)
            return n;
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

/* Hold partial frames back around a head and the first piece of a file
 * (static.c), where the transport has such a thing (TCP_CORK). */
void set_cork(mg_coroutine *co, int on)
{
    if (co->conn->tp->cork)
        co->conn->tp->cork(co, on);
}

int shutdown_async(mg_coroutine *co)
{
    return co->conn->tp->shutdown(co);
}
