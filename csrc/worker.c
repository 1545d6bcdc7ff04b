/* worker.c - a worker thread's loop: epoll, the dispatch pipe, fd_batch, the ready queue, timers.
 *
 * Theory of operation.  Each worker owns an epoll instance whose set holds
 * the read end of its dispatch pipe and every connection it serves.  One turn
 * of the loop:
 *
 *   schedule()      run the coroutines on the ready queue (RDY_FIFO: oldest
 *                   first; RDY_LIFO: newest first) until each has yielded;
 *   epoll_wait()    sleep until an fd is ready or the nearest timer is due
 *                   (timeout 0 when something is still runnable);
 *   pipe readable   read new connection fds into fd_batch, coroutine_create()
 *                   one for each and add_to_ready() it;
 *   socket ready    wake_fd(): the coroutine parked on that fd goes back on
 *                   the ready queue;
 *   timers          coroutines whose deadline passed are woken with
 *                   timed_out set, so their recv_async() returns -ETIMEDOUT.
 *
 * Parking.  A keep-alive connection waiting for its next request needs no
 * coroutine: once it has waited MG_PARK_DELAY_MS as one (lazy parking, the
 * idle list below), worker_park() keeps its fd in park_table with a small mg_parked
 * (its deadline, its id, its request count) and its coroutine ends, stack
 * and all, back to the pool.  Input (or a hang-up) on a parked fd unparks it:
 * coroutine_create_as() from the pool and add_to_ready(), and conn_entry goes
 * on between requests.  A parked connection whose deadline passes (keep-alive
 * timeout, or the graceful stop's drain) is closed here; so is every one left
 * when the loop ends.  It still counts against --max-connections.
 *
 * The waiting itself is the worker's backend (w->be: epoll.c, or uring.c
 * under --io uring), chosen once in worker_alloc; the loop below sees only
 * epoll_events either way.  Under epoll, sockets are registered once,
 * edge-triggered, for both directions.  That is safe because a coroutine
 * only parks after its recv/send returned EAGAIN: any byte that arrives
 * after that makes a new edge.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <malloc.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "http.h"
#include "cache.h"
#include "response.h"
#include "exchange.h"

#define MG_CMD_STOP (-1) /* dispatch-pipe command: graceful stop */
#define MG_CMD_EXIT (-2) /* dispatch-pipe command: leave now */

static void orphan_pending(mg_worker *w);
static void unpark(mg_worker *w, mg_parked *p, uint32_t events);

int64_t mg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ ready queue */

/* Queue a coroutine: at the head under RDY_LIFO (the one just woken runs next,
 * its data still in cache), at the tail under RDY_FIFO.  A coroutine that
 * yields MG_YIELD_READY to let the others run goes to the tail under either
 * policy (add_to_ready_tail): under LIFO it would otherwise run again at
 * once and starve the rest (a 1 MiB sendfile against nine others did, in
 * bench/run.py --workload 1mib). */
static void ready_insert(mg_worker *w, mg_coroutine *co, int at_head)
{
    TRACE(w, MG_EV_ADD_TO_READY, co, co->conn->fd, 0);
    co->waiting = MG_YIELD_READY; /* queued: wake_fd() leaves it alone */
    co->next_ready = NULL;
    if (at_head || !w->ready_tail) {
        co->next_ready = w->ready_head;
        w->ready_head = co;
        if (!w->ready_tail)
            w->ready_tail = co;
    } else {
        w->ready_tail->next_ready = co;
        w->ready_tail = co;
    }
    if (++w->ready_len > w->stats.ready_max)
        w->stats.ready_max = w->ready_len;
}

void add_to_ready(mg_worker *w, mg_coroutine *co)
{
    ready_insert(w, co, w->policy == RDY_LIFO);
}

void add_to_ready_tail(mg_worker *w, mg_coroutine *co)
{
    ready_insert(w, co, 0);
}

static mg_coroutine *ready_pop(mg_worker *w)
{
    mg_coroutine *co = w->ready_head;
    if (co) {
        w->ready_head = co->next_ready;
        if (!w->ready_head)
            w->ready_tail = NULL;
        w->ready_len--;
        co->next_ready = NULL;
    }
    return co;
}

/* Run what is ready.  At most as many resumptions as were queued on entry:
 * a coroutine that yields MG_YIELD_READY (a long sendfile letting others go)
 * must not keep the loop from epoll_wait. */
void schedule(mg_worker *w)
{
    uint64_t budget = w->ready_len;
    mg_coroutine *co;

    while (budget-- > 0 && (co = ready_pop(w)) != NULL) {
        coroutine_resume(w, co);
        if (co->finished)
            coroutine_destroy(co);
    }
}

void wake_fd(mg_worker *w, int fd, uint32_t events)
{
    if (fd < 0 || fd >= w->fd_table_size)
        return;
    mg_coroutine *co = w->fd_table[fd]; /* (the listener is never in the table) */
    if (!co) {
        mg_parked *p = w->park_table[fd];
        if (p && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            unpark(w, p, events);
        return;
    }
    co->woken_by |= (int)events;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        co->conn->drained = 0; /* new input (or EOF): the next read is worth a system call */
    int want = co->waiting == MG_YIELD_READ ? (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
        : co->waiting == MG_YIELD_WRITE     ? (EPOLLOUT | EPOLLHUP | EPOLLERR)
                                            : 0;
    if (co->waiting == MG_YIELD_PYTHON && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && co->xs &&
        co->xs->call._pending) {
        /* parked in a deferred call: an ASGI app hears http.disconnect (tests/test_asgi.py:
         * test_a_client_leaving_a_parked_request_is_http_disconnect) */
        mg_py_gone(w->srv->cfg.app_id, w->index, co->xs->call.id);
    }
    if (events & (uint32_t)want) {
        w->stats.wakeups++;
        TRACE(w, MG_EV_WAKE_FD, co, fd, (int)events);
        add_to_ready(w, co);
    }
}

/* ---------------------------------------------------------------- parking */

/* Into the parked list, in deadline order: almost always at the tail (every
 * keep-alive deadline is now + the same duration), so the walk is short. */
static void park_link(mg_worker *w, mg_parked *p)
{
    mg_parked *after = w->park_tail;
    while (after && after->deadline_ms > p->deadline_ms)
        after = after->prev;
    p->prev = after;
    p->next = after ? after->next : w->park_head;
    if (p->next)
        p->next->prev = p;
    else
        w->park_tail = p;
    if (after)
        after->next = p;
    else
        w->park_head = p;
}

/* Out of the list and the table; the caller closes or resumes the fd and frees p. */
static void park_unlink(mg_worker *w, mg_parked *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        w->park_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        w->park_tail = p->prev;
    w->park_table[p->fd] = NULL;
    w->stats.parked--;
}

/* A parked connection is over: its deadline passed, or the worker ends. */
static void park_close(mg_worker *w, mg_parked *p)
{
    park_unlink(w, p);
    w->be->unpark(w, p->fd, p->id); /* (uring: its poll would hold the socket open) */
    transport_free(p->tp, p->tp_ctx);
    close(p->fd); /* also removes it from the epoll set */
    free(p);
}

int worker_park(mg_coroutine *co)
{
    mg_worker *w = co->worker;
    if (co->conn->fd < 0 || co->conn->fd >= w->fd_table_size || co->conn->rb || co->xs || co->body_buf)
        return -1;
    /* bytes the transport holds (TLS: decrypted, not read yet) would get no
     * edge to unpark it: such a connection waits as a coroutine */
    if (co->conn->tp->pending && co->conn->tp->pending(co) > 0)
        return -1;
    mg_parked *p = malloc(sizeof(*p));
    if (!p)
        return -1; /* it waits as a coroutine, as before */
    if (w->be->park(w, co->conn->fd, co->id) < 0) {
        free(p); /* --io uring: no poll, no parking */
        return -1;
    }
    p->fd = co->conn->fd;
    p->tp = co->conn->tp; /* the transport and its state outlive the coroutine */
    p->tp_ctx = co->conn->tp_ctx;
    co->conn->tp_ctx = NULL;
    p->id = co->id;
    p->requests = co->conn->requests;
    /* the deadline goes on: the keep-alive timer armed after the last request
     * (or, for a coroutine made at an unpark, the parked one's, drain included) */
    if (co->conn->park_deadline_ms)
        p->deadline_ms = co->conn->park_deadline_ms;
    else
        p->deadline_ms = co->timer_class != MG_TIMER_NONE ? co->deadline_ms : INT64_MAX;
    TRACE(w, MG_EV_PARK, co, co->conn->fd, (int)co->conn->requests);
    park_link(w, p);
    w->park_table[p->fd] = p;
    w->fd_table[p->fd] = NULL;
    w->stats.parked++;
    co->conn->fd = -1; /* the coroutine's end (coroutine_destroy) leaves the socket open */
    return 0;
}

/* Input on a parked connection: a coroutine for it again, from the pool. */
static void unpark(mg_worker *w, mg_parked *p, uint32_t events)
{
    int fd = p->fd;
    park_unlink(w, p);
    if (MG_UNLIKELY(w->trace))
        trace_push(&w->ring, w->index, MG_EV_UNPARK, p->id, fd, (int)events);
    mg_coroutine *co = coroutine_create_as(w, conn_entry, NULL, fd, p->id);
    if (!co) {
        mg_log("minginx-cffi: coroutine_create (unpark): %s", strerror(errno));
        transport_free(p->tp, p->tp_ctx);
        close(fd);
        free(p);
        return;
    }
    co->conn->tp = p->tp;
    co->conn->tp_ctx = p->tp_ctx;
    co->conn->requests = p->requests; /* conn_entry: between requests, not a first one */
    co->conn->park_deadline_ms = p->deadline_ms;
    free(p);
    w->stats.wakeups++;
    add_to_ready(w, co);
}

/* ------------------------------------------------------- lazy parking */

/* A keep-alive connection that finds no next request waits as a coroutine
 * first (MG_YIELD_READ, as it did before parking existed) on the worker's
 * idle list, and is parked only once it has waited MG_PARK_DELAY_MS.  A busy
 * keep-alive client (wrk, a browser loading a page, an API client in a
 * loop) sends its next request long before that, so it never pays a park,
 * an unpark and a coroutine_create per request; an idle one costs a stack
 * for 100 ms and then 0.06 KiB, as before.  Why 100 ms: parking costs about
 * 800 instructions (a quarter of a request), which is noise against a wait
 * of 100 ms, while a stack held that long by a burst of idle connections is
 * still given back within the same second as the pools' trim (MG_POOL_TRIM_MS);
 * and it is far below any keep-alive timeout (tests run 1 s ones).
 * The list is in idle_since order: every entry waits the same delay, so
 * linking appends and the sweep takes from the head (as the timer classes).
 * Tested by tests/test_park.py (test_a_busy_keepalive_connection_is_never_parked). */
void worker_idle_link(mg_coroutine *co)
{
    mg_worker *w = co->worker;
    co->idle_since_ms = w->now_ms;
    co->conn->park_due = 0;
    co->idle_linked = 1;
    co->idle_next = NULL;
    co->idle_prev = w->idle_tail;
    if (w->idle_tail)
        w->idle_tail->idle_next = co;
    else
        w->idle_head = co;
    w->idle_tail = co;
}

void worker_idle_unlink(mg_coroutine *co)
{
    if (!co->idle_linked)
        return;
    mg_worker *w = co->worker;
    if (co->idle_prev)
        co->idle_prev->idle_next = co->idle_next;
    else
        w->idle_head = co->idle_next;
    if (co->idle_next)
        co->idle_next->idle_prev = co->idle_prev;
    else
        w->idle_tail = co->idle_prev;
    co->idle_prev = co->idle_next = NULL;
    co->idle_linked = 0;
}

/* Idle past the delay: resumed with park_due set, the coroutine reads once
 * more (input may have come while it sat on the ready queue, whose edge
 * wake_fd() then left alone) and parks at that read's EAGAIN (conn.c recv_more). */
static void idle_sweep(mg_worker *w)
{
    while (w->idle_head && w->idle_head->idle_since_ms + MG_PARK_DELAY_MS <= w->now_ms) {
        mg_coroutine *co = w->idle_head;
        worker_idle_unlink(co);
        if (co->waiting != MG_YIELD_READ)
            continue; /* already on its way (queued by input or a timer) */
        co->conn->park_due = 1;
        add_to_ready(w, co);
    }
}

/* Every parked connection closed (the loop is over). */
static void park_close_all(mg_worker *w)
{
    while (w->park_head)
        park_close(w, w->park_head);
}

/* After a burst: pooled stacks and request buffers beyond MG_POOL_KEEP go back
 * to the kernel, so the RSS falls with the load (the pools refill as needed). */
static void pools_trim(mg_worker *w)
{
    if (w->now_ms < w->pool_trim_ms)
        return;
    w->pool_trim_ms = w->now_ms + MG_POOL_TRIM_MS;
    if (w->stack_pool_len > MG_POOL_KEEP)
        coroutine_pool_trim(w, MG_POOL_KEEP);
    if (w->reqbuf_pool_len > MG_POOL_KEEP || w->xstate_pool_len > MG_POOL_KEEP) {
        reqbuf_pool_trim(w, MG_POOL_KEEP);
        xstate_pool_trim(w, MG_POOL_KEEP);
        malloc_trim(0); /* freed buffers sit amid the heap: give their pages back */
    }
}

/* ----------------------------------------------------------------- timers */

void timer_clear(mg_coroutine *co)
{
    if (co->timer_class == MG_TIMER_NONE)
        return;
    mg_timer_list *l = &co->worker->timers[co->timer_class];
    if (co->timer_prev)
        co->timer_prev->timer_next = co->timer_next;
    else
        l->head = co->timer_next;
    if (co->timer_next)
        co->timer_next->timer_prev = co->timer_prev;
    else
        l->tail = co->timer_prev;
    co->timer_prev = co->timer_next = NULL;
    co->timer_class = MG_TIMER_NONE;
}

/* (Re)arm the coroutine's timer: now + the class's duration.  Every timer in a
 * class has the same duration, so the tail is always the latest deadline. */
void timer_set(mg_coroutine *co, int cls)
{
    mg_worker *w = co->worker;
    mg_timer_list *l = &w->timers[cls];

    timer_clear(co);
    co->timed_out = 0;
    if (l->duration_ms <= 0)
        return; /* this timeout is switched off */
    co->timer_class = cls;
    co->deadline_ms = w->now_ms + l->duration_ms;
    co->timer_prev = l->tail;
    co->timer_next = NULL;
    if (l->tail)
        l->tail->timer_next = co;
    else
        l->head = co;
    l->tail = co;
}

static int timers_next_timeout(mg_worker *w)
{
    if (w->ready_head)
        return 0;
    int64_t best = -1;
    for (int c = 1; c < MG_TIMER_MAX; c++) {
        mg_coroutine *h = w->timers[c].head;
        if (h && (best < 0 || h->deadline_ms < best))
            best = h->deadline_ms;
    }
    if (w->idle_head && (best < 0 || w->idle_head->idle_since_ms + MG_PARK_DELAY_MS < best))
        best = w->idle_head->idle_since_ms + MG_PARK_DELAY_MS;
    if (w->park_head && w->park_head->deadline_ms != INT64_MAX &&
        (best < 0 || w->park_head->deadline_ms < best))
        best = w->park_head->deadline_ms;
    if ((w->stack_pool_len > MG_POOL_KEEP || w->reqbuf_pool_len > MG_POOL_KEEP ||
         w->xstate_pool_len > MG_POOL_KEEP) &&
        (best < 0 || w->pool_trim_ms < best))
        best = w->pool_trim_ms; /* a burst is over: trim its pools on time */
    if (w->accept_resume_ms && (best < 0 || w->accept_resume_ms < best))
        best = w->accept_resume_ms;
    int log_due = alog_tick(w, 0); /* pending access-log lines wait no longer than this */
    if (log_due >= 0 && (best < 0 || w->now_ms + log_due < best))
        best = w->now_ms + log_due;
    if (best < 0)
        return -1;
    int64_t d = best - w->now_ms;
    /* CLOCK_MONOTONIC_COARSE ticks in jiffies: add 1 ms so we do not wake a
     * hair early and spin once. */
    return d <= 0 ? 0 : (int)(d > 60000 ? 60000 : d + 1);
}

static void timers_expire(mg_worker *w)
{
    idle_sweep(w);
    /* parked connections past their keep-alive (or drain) deadline: closed */
    while (w->park_head && w->park_head->deadline_ms <= w->now_ms) {
        w->stats.timeouts++;
        park_close(w, w->park_head);
    }
    for (int c = 1; c < MG_TIMER_MAX; c++) {
        mg_timer_list *l = &w->timers[c];
        while (l->head && l->head->deadline_ms <= w->now_ms) {
            mg_coroutine *co = l->head;
            timer_clear(co);
            co->timed_out = 1;
            w->stats.timeouts++;
            if (c == MG_TIMER_PYTHON && co->waiting == MG_YIELD_PYTHON && co->xs && co->xs->call._pending) {
                /* the round is given up (pycall.c: 504, orphaned): an ASGI app still
                 * holding the request hears http.disconnect, here on the worker's own
                 * stack (tests/test_atk_handlers.py) */
                mg_py_gone(w->srv->cfg.app_id, w->index, co->xs->call.id);
            }
            if (co->waiting == MG_YIELD_READ || co->waiting == MG_YIELD_WRITE ||
                (c == MG_TIMER_PYTHON && co->waiting == MG_YIELD_PYTHON))
                add_to_ready(w, co); /* a deferred round: pycall.c gives it up (504) */
        }
    }
}

/* --------------------------------------------------------- dispatch pipe */

/* Stop watching the listener (a stop, or accept4 out of fds).  (--io uring
 * has nothing to undo: uring.c control_polls derives its listener poll from
 * listen_fd and accept_resume_ms at each wait.) */
static void listener_unwatch(mg_worker *w)
{
    w->be->unlisten(w, w->listen_fd);
}

static void begin_graceful_stop(mg_worker *w)
{
    w->stopping = 1;
    if (w->listen_fd >= 0 && !w->accept_resume_ms)
        listener_unwatch(w); /* accept no more */
    w->listen_fd = -1;
    /* Idle keep-alive connections have nothing in flight, but a client may be
     * sending its next request on one right now: closed at once, that request
     * would be lost (the client sees a reset; RFC 9112 section 9.3.1 lets it
     * retry, but wrk, ab and many scripts count an error).  So each gets
     * MG_DRAIN_IDLE_MS more to send one, which is answered with "Connection:
     * close" (conn_entry: keep_alive is off while stopping), and then closes
     * as at its keep-alive timeout.  A client hammering the server through a
     * reload (SIGHUP: the old processes stop gracefully) never loses a request:
     * each of its connections is told to close by a response.
     * tests/test_process.py: test_reload_under_wrk_loses_no_request. */
    /* Queued ones too (MG_YIELD_READY: woken by a blank line, or unparked in
     * this very epoll batch): they are between requests all the same, and
     * would otherwise wait (or park) until their keep-alive deadline, holding
     * the stop until --grace (tests/test_atk_park_asgi.py:
     * test_blank_lines_dripped_during_a_graceful_stop_do_not_hold_it). */
    int64_t drain = w->now_ms + MG_DRAIN_IDLE_MS;
    for (mg_coroutine *co = w->all; co; co = co->next) {
        /* (park_deadline_ms: unparked in this batch, conn_entry not yet begun) */
        if (!(co->idle || co->conn->park_deadline_ms) || co->timed_out ||
            (co->waiting != MG_YIELD_READ && co->waiting != MG_YIELD_READY))
            continue;
        if (co->timer_class == MG_TIMER_NONE || co->deadline_ms > drain)
            timer_set(co, MG_TIMER_DRAIN);
        if (co->conn->park_deadline_ms > drain)
            co->conn->park_deadline_ms = drain; /* unparked: the deadline it parks again with */
    }
    /* parked ones too: min(deadline, now + drain) keeps the list in order */
    for (mg_parked *p = w->park_head; p; p = p->next)
        if (p->deadline_ms > drain)
            p->deadline_ms = drain;
}

/* The connections open in this process, every worker's (--max-connections is
 * their total): coroutines and parked connections.  Each worker keeps its own
 * counts; another's are read as Python reads them (racy, untorn words), so two
 * workers admitting at the same moment may pass the limit by one each.  O(workers),
 * and only with --max-connections set. */
static int64_t server_conns_open(const mg_server *srv)
{
    int64_t n = 0;
    for (int i = 0; i < srv->nworkers; i++) {
        const mg_worker *o = srv->workers[i];
        n += __atomic_load_n(&o->stats.coroutines_alive, __ATOMIC_RELAXED) +
            (int64_t)__atomic_load_n(&o->stats.parked, __ATOMIC_RELAXED);
    }
    return n;
}

/* A new connection for this worker: from the dispatch pipe, or its own accept. */
static void accept_from_pipe(mg_worker *w, int fd)
{
    w->stats.connections++;
    TRACE(w, MG_EV_FD_BATCH, (mg_coroutine *)NULL, fd, 0);
    /* a parked connection is still open: it counts */
    if (w->max_conns > 0 && server_conns_open(w->srv) >= w->max_conns) {
        /* over --max-connections: say so and close, never stall */
        static const char body[] = "Too many connections";
        static const mg_field fields[] = {MG_FIELD_LIT("Content-Type", "text/plain"),
                                          MG_FIELD_LIT("Retry-After", "1")};
        char busy_mem[256];
        mg_exchange busy; /* detached: no coroutine, its bytes sent at once (the transport's send_early) */
        exchange_init_detached(&busy, w, busy_mem, sizeof(busy_mem));
        mg_head h = {.status = 503, .fields = fields, .nfields = 2, .length = sizeof(body) - 1};
        size_t len = 0;
        const char *bytes = NULL;
        if (exchange_respond(&busy, &h) == 0 && exchange_body(&busy, body, sizeof(body) - 1, 1) == 0)
            bytes = exchange_bytes(&busy, &len);
        size_t head_len = busy.head_bytes;
        ssize_t sent = bytes ? w->tp->send_early(fd, bytes, len) : -1;
        if (w->alog)
            alog_rejected(w, fd, 503, sent > (ssize_t)head_len ? (uint64_t)(sent - (ssize_t)head_len) : 0);
        close(fd);
        w->stats.rejected++;
        return;
    }
    if (fd >= w->fd_table_size) {
        mg_log("minginx-cffi: fd %d is above the fd table (%d); closing it", fd, w->fd_table_size);
        close(fd);
        return;
    }
    mg_coroutine *co = coroutine_create(w, conn_entry, NULL, fd);
    if (!co) {
        mg_log("minginx-cffi: coroutine_create: %s", strerror(errno));
        close(fd);
        return;
    }
    int r = w->be->add(w, fd);
    if (r < 0) {
        mg_log("minginx-cffi: epoll_ctl(ADD): %s", strerror(-r));
        coroutine_destroy(co);
        return;
    }
    add_to_ready(w, co);
}

/* --accept reuseport: accept on this worker's own listener (the kernel spreads
 * connections over the workers' sockets), pausing 100 ms when out of fds. */
static void worker_accept(mg_worker *w)
{
    for (int i = 0; i < 128; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN) {
                mg_log("minginx-cffi: accept4 (worker %d): %s; pausing accepts for 100 ms", w->index,
                       strerror(errno));
                listener_unwatch(w);
                w->accept_resume_ms = w->now_ms + 100;
            }
            return;
        }
        TRACE(w, MG_EV_ACCEPT, (mg_coroutine *)NULL, fd, 0);
        /* TCP_NODELAY comes from the listener (server.py: _tune_listener) */
        accept_from_pipe(w, fd);
    }
}

int mg_worker_listen(mg_worker *w, int listen_fd)
{
    int r = w->be->listen(w, listen_fd);
    if (r == 0)
        w->listen_fd = listen_fd;
    return r;
}

/* The pipe carries 4-byte records (fds, or a negative command).  Writes of
 * 4 bytes are atomic (< PIPE_BUF), so reads always return whole records. */
static void read_dispatch_pipe(mg_worker *w)
{
    for (;;) {
        size_t want = (size_t)w->fd_batch_len * sizeof(int);
        ssize_t n = read(w->pipe_r, w->fd_batch, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                mg_log("minginx-cffi: read(dispatch pipe): %s", strerror(errno));
            return;
        }
        if (n == 0)
            return;
        int count = (int)(n / (ssize_t)sizeof(int));
        for (int i = 0; i < count; i++) {
            int v = w->fd_batch[i];
            if (v >= 0)
                accept_from_pipe(w, v);
            else if (v == MG_CMD_STOP)
                begin_graceful_stop(w);
            else if (v == MG_CMD_EXIT)
                w->exiting = 1;
        }
        if (n < (ssize_t)want)
            return;
    }
}

/* -------------------------------------------------------------- lifecycle */

mg_worker *worker_alloc(mg_server *srv, int policy, int stack_size, int *err)
{
    mg_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        *err = -ENOMEM;
        return NULL;
    }
    w->srv = srv;
    w->policy = policy;
    w->pipe_r = w->pipe_w = w->listen_fd = w->post_fd = -1; /* (w->epfd: the backend's init) */
    pthread_mutex_init(&w->post_lock, NULL);
    long ps = sysconf(_SC_PAGESIZE);
    w->stack_size = ((size_t)stack_size + (size_t)ps - 1) & ~((size_t)ps - 1);
    w->now_ms = mg_now_ms();
    w->wall_sec = time(NULL);
    /* bench/run.py --workload ideas switches the seed's ideas off one at a time */
    w->no_stack_pool = getenv("MINGINX_NO_STACK_POOL") != NULL;
    w->no_buffer_pool = getenv("MINGINX_NO_BUFFER_POOL") != NULL;
    w->tp = mg_test_no_sendfile() ? &mg_transport_plain_nosendfile : &mg_transport_plain;
    w->fd_batch_len = MG_FD_BATCH;
    if (getenv("MINGINX_FD_BATCH")) {
        int n = atoi(getenv("MINGINX_FD_BATCH"));
        w->fd_batch_len = n >= 1 && n <= MG_FD_BATCH ? n : MG_FD_BATCH;
    }

    struct rlimit rl;
    rlim_t lim = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        lim = rl.rlim_cur;
    if (lim > (1u << 24) || lim == RLIM_INFINITY)
        lim = 1u << 24;
    w->fd_table_size = (int)lim;
    w->fd_table = calloc((size_t)lim, sizeof(*w->fd_table));
    w->park_table = calloc((size_t)lim, sizeof(*w->park_table));
    w->stack_pool = calloc(MG_STACK_POOL_MAX, sizeof(void *));
    if (!w->fd_table || !w->park_table || !w->stack_pool)
        goto fail_nomem;

    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        goto fail;
    w->pipe_r = p[0];
    w->pipe_w = p[1];
    /* deferred Python rounds come back through this (pycall.c: mg_call_post) */
    w->post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->post_fd < 0)
        goto fail;
    /* the backend, once: the only place that asks which (redis ae.c includes one ae_<api>.c) */
    w->be = srv && srv->cfg.io == MG_IO_URING ? &mg_backend_uring : &mg_backend_epoll;
    int r = w->be->init(w);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    return w;

fail_nomem:
    errno = ENOMEM;
fail:
    *err = -errno;
    mg_worker_free(w);
    return NULL;
}

mg_worker *mg_worker_new(mg_server *srv, int *err)
{
    if (srv->nworkers >= MG_MAX_WORKERS) {
        *err = -E2BIG;
        return NULL;
    }
    mg_worker *w = worker_alloc(srv, srv->cfg.policy, srv->cfg.stack_size, err);
    if (!w)
        return NULL;
    w->timers[MG_TIMER_HEADER].duration_ms = srv->cfg.header_timeout_ms;
    w->timers[MG_TIMER_KEEPALIVE].duration_ms = srv->cfg.keepalive_timeout_ms;
    w->timers[MG_TIMER_SEND].duration_ms = srv->cfg.send_timeout_ms;
    w->timers[MG_TIMER_LINGER].duration_ms = 2000;
    w->timers[MG_TIMER_PYTHON].duration_ms = srv->cfg.handler_timeout_ms;
    w->timers[MG_TIMER_DRAIN].duration_ms = MG_DRAIN_IDLE_MS;
    w->max_conns = srv->cfg.max_connections;
    w->fast_switch = srv->cfg.switch_mode == MG_SWITCH_FAST && MG_FAST_SWITCH_AVAILABLE;
    w->trace = srv->cfg.trace;
    if (w->trace && trace_ring_init(&w->ring) < 0) {
        *err = -ENOMEM;
        mg_worker_free(w);
        return NULL;
    }
    int r = file_cache_init(w, srv->cfg.open_file_cache);
    if (r < 0) {
        *err = r;
        mg_worker_free(w);
        return NULL;
    }
    w->index = srv->nworkers;
    w->alog = srv->alog;
    srv->workers[srv->nworkers++] = w;
    return w;
}

void mg_worker_free(mg_worker *w)
{
    if (!w)
        return;
    orphan_pending(w);
    while (w->all)
        coroutine_destroy(w->all);
    if (w->park_table)
        park_close_all(w);
    alog_tick(w, 1); /* a worker that never ran its loop to the end */
    free(w->alog_buf);
    /* No thread posts any more (the caller joined the handler threads): what
     * was posted after the loop ended, or is queued for its last ABORT, is
     * only orphans now. */
    drain_posts(w);
    while (w->py_orphans) {
        mg_pycall *c = w->py_orphans;
        w->py_orphans = c->_next_post;
        pycall_free_orphan(w, c);
    }
    coroutine_pool_drain(w);
    reqbuf_pool_drain(w);
    file_cache_free(w);
    if (w->be)
        w->be->free(w);
    if (w->pipe_r >= 0)
        close(w->pipe_r);
    if (w->pipe_w >= 0)
        close(w->pipe_w);
    if (w->post_fd >= 0)
        close(w->post_fd);
    pthread_mutex_destroy(&w->post_lock);
    free(w->fd_table);
    free(w->park_table);
    free(w->stack_pool);
    if (w->altstack)
        munmap(w->altstack, MG_ALTSTACK_SIZE);
    trace_ring_free(&w->ring);
    free(w);
}

/* Coroutines about to be destroyed whose deferred round a handler thread
 * still holds give their request buffers up to it (freed on its post). */
static void orphan_pending(mg_worker *w)
{
    for (mg_coroutine *co = w->all; co; co = co->next)
        if (co->xs && co->xs->call._pending && !co->xs->call._orphan)
            pycall_orphan(co);
}

int mg_worker_run(mg_worker *w)
{
    /* Signals are for the main thread (Python's handlers run there). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT); /* serve's FAILED_STOP (minginx_cffi/_master.py) */
    sigaddset(&set, SIGUSR2); /* serve's QUIT_NOW */
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    coroutine_thread_enter(w);

    w->now_ms = mg_now_ms();
    w->wall_sec = time(NULL);
    struct mg_server *srv = w->srv;
    if (srv->shared_stats && w->index < srv->shared_nworkers)
        w->shared = &srv->shared_stats[srv->shared_slot * srv->shared_nworkers + w->index];
    while (!w->exiting) {
        schedule(w);
        if (w->py_head || w->py_orphans)
            run_python(w); /* handlers run here, on this thread's own stack */
        /* graceful: also wait for deferred rounds, orphans included (the
         * server cuts this short after --grace) */
        if (w->stopping && w->stats.coroutines_alive == 0 && w->py_inflight == 0 && !w->park_head)
            break;
        if (w->shared)
            stats_publish(w); /* once per iteration, never per request */
        int timeout = timers_next_timeout(w);
        /* the backend: readiness (epoll) or completions (uring.c), as epoll_events */
        int n = w->be->wait(w, timeout);
        w->now_ms = mg_now_ms();
        w->wall_sec = time(NULL); /* the Date line's clock: once a wakeup, as nginx's ngx_time_update */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            mg_log("minginx-cffi: %s: %s", w->be->wait_call, strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            int fd = w->events[i].data.fd;
            if (fd == w->pipe_r)
                read_dispatch_pipe(w);
            else if (fd == w->post_fd)
                drain_posts(w);
            else if (fd == w->listen_fd)
                worker_accept(w);
            else
                wake_fd(w, fd, w->events[i].events);
        }
        timers_expire(w);
        pools_trim(w);
        if (MG_UNLIKELY(w->accept_resume_ms) && w->now_ms >= w->accept_resume_ms) {
            w->accept_resume_ms = 0;
            if (w->listen_fd >= 0)
                mg_worker_listen(w, w->listen_fd);
        }
    }
    /* Whatever is left is cut off: the grace period is over. */
    w->ready_head = w->ready_tail = NULL;
    w->py_head = w->py_tail = NULL;
    w->ready_len = 0;
    orphan_pending(w);
    w->be->drain(w); /* --io uring: no SQE may name a stack or buffer freed below */
    while (w->all)
        coroutine_destroy(w->all);
    park_close_all(w);
    alog_tick(w, 1); /* every line written so far goes to the writer */
    if (w->shared)
        stats_publish(w); /* the final counts, for the master's table */
    coroutine_thread_leave(w);
    return 0;
}

int mg_worker_stop(mg_worker *w, int graceful)
{
    int cmd = graceful ? MG_CMD_STOP : MG_CMD_EXIT;
    for (;;) {
        if (write(w->pipe_w, &cmd, sizeof(cmd)) == (ssize_t)sizeof(cmd))
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        struct pollfd pfd = {.fd = w->pipe_w, .events = POLLOUT};
        if (poll(&pfd, 1, 1000) <= 0)
            return -EAGAIN;
    }
}

void mg_worker_stats(mg_worker *w, mg_stats *out)
{
    /* Another thread is updating these: each 64-bit field is read untorn on
     * the platforms we build for; the set as a whole is a snapshot in motion. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    memcpy(out, &w->stats, sizeof(*out));
}
