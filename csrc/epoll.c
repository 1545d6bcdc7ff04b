/* epoll.c - the epoll backend (the seed's, and the default): readiness, not completions.
 *
 * Theory of operation.  A worker's epoll set holds its dispatch pipe, its
 * post eventfd, its --accept reuseport listener and every connection it
 * serves.  Connections are registered once, edge-triggered, for both
 * directions (epoll_add): a coroutine only waits (epoll_poll, io.c's
 * io_park) after its call said EAGAIN, so any byte that comes after that
 * makes a new edge, and wake_fd() (worker.c) puts it back on the ready
 * queue.  A parked connection stays in the set as it is: its next input is
 * an edge like any other, which wake_fd finds in park_table; close() takes
 * it out.  So parking, unparking and the hang-up watch of a deferred Python
 * round cost nothing here (wake_fd hears a hang-up), and nothing is ever in
 * flight at the loop's end.
 *
 * The worker calls these through w->be (internal.h, struct mg_backend),
 * chosen once in worker_alloc, as uring.c's; epoll has no recv or sendv of
 * its own: io.c makes the call through the connection's transport.
 */
#include "internal.h"

#include <errno.h>
#include <unistd.h>

static int epoll_init(mg_worker *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->pipe_r};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->pipe_r, &ev) < 0)
        return -errno;
    ev.data.fd = w->post_fd;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->post_fd, &ev) < 0)
        return -errno;
    return 0;
}

static void epoll_free(mg_worker *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    w->epfd = -1;
}

static int epoll_wait_events(mg_worker *w, int timeout_ms)
{
    return epoll_wait(w->epfd, w->events, MG_MAX_EVENTS, timeout_ms);
}

static int epoll_add(mg_worker *w, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* The listener is level-triggered: worker_accept takes at most 128 a turn. */
static int epoll_listen(mg_worker *w, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void epoll_unlisten(mg_worker *w, int fd)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* io_park: wait for the edge (wake_fd) or the timer (timers_expire). */
static int epoll_poll(mg_coroutine *co, int reason)
{
    if (co->timed_out)
        return -ETIMEDOUT;
    co->woken_by = 0;
    coroutine_yield_io(co, reason); /* a read's wait: "recv_async -> EAGAIN, yield (read)" */
    return 0;
}

static int epoll_park(mg_worker *w, int fd, uint64_t id)
{
    MG_UNUSED(w);
    MG_UNUSED(fd);
    MG_UNUSED(id);
    return 0; /* it stays in the set: its next edge finds it in park_table */
}

static void epoll_unpark(mg_worker *w, int fd, uint64_t id)
{
    MG_UNUSED(w);
    MG_UNUSED(fd);
    MG_UNUSED(id); /* close() takes it out of the set */
}

static void epoll_hangup_nop(mg_coroutine *co)
{
    MG_UNUSED(co); /* wake_fd hears the hang-up of a coroutine waiting for Python */
}

static void epoll_drain(mg_worker *w)
{
    MG_UNUSED(w); /* nothing is in flight: epoll only ever said "ready" */
}

const mg_backend mg_backend_epoll = {
    .name = "epoll",
    .wait_call = "epoll_wait",
    .init = epoll_init,
    .free = epoll_free,
    .wait = epoll_wait_events,
    .add = epoll_add,
    .listen = epoll_listen,
    .unlisten = epoll_unlisten,
    .poll = epoll_poll,
    .park = epoll_park,
    .unpark = epoll_unpark,
    .watch_hangup = epoll_hangup_nop,
    .unwatch_hangup = epoll_hangup_nop,
    .recv = NULL,
    .sendv = NULL,
    .drain = epoll_drain,
};
