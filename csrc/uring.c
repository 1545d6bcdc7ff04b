/* uring.c - the io_uring backend (--io uring): the ring, submissions, completions.
 *
 * Theory of operation.  epoll says "this fd is ready" and the coroutine then
 * makes the system call; io_uring takes the call itself (a submission queue
 * entry, SQE) and says "done, here is the result" (a completion, CQE).  The
 * coroutine API does not change:
 *
 *   This file is mg_backend_uring (internal.h, struct mg_backend), chosen
 *   once per worker in worker_alloc.  recv_async / send_async / sendv_async
 *   (io.c) come here for a raw transport (the plain socket's bytes are the
 *   wire's): uring_recv() / uring_sendv() write an SQE whose user_data is
 *   the coroutine, and uring_wait_op() yields.  io_park() (an idle read
 *   after recv said EAGAIN, sendfile's EAGAIN) becomes uring_poll(): a
 *   one-shot IORING_OP_POLL_ADD, which names no user memory.
 *
 *   uring_wait() is the worker loop's counterpart of epoll_wait(): ONE
 *   io_uring_enter per iteration submits every SQE queued since the last one
 *   and waits (IORING_ENTER_GETEVENTS, IORING_ENTER_EXT_ARG for the nearest
 *   timer).  Then uring_reap() walks the CQEs: a coroutine's completion
 *   stores the result and add_to_ready()s it (the counterpart of wake_fd); a
 *   poll on the dispatch pipe, the post eventfd, the --accept reuseport
 *   listener or a parked connection becomes an epoll_event in w->events, so
 *   the worker loop (worker.c) dispatches both backends with the same code.
 *
 *   Those control fds and parked connections are one-shot polls re-armed
 *   after each completion: level-triggered like their epoll registration, so
 *   a listener with more than worker_accept's 128 waiting is polled again.
 *
 * Memory safety is the point of care.  An SQE in flight may name a buffer
 * (recv), an iovec and msghdr (sendmsg) on the coroutine's stack: the kernel
 * may touch that memory until the CQE arrives.  So a coroutine never leaves
 * uring_wait_op() before its CQE: one woken early (its timer fired) submits
 * IORING_OP_ASYNC_CANCEL for its op and goes on waiting; the op's own CQE
 * (-ECANCELED, or the result if it won the race) ends the wait.  At the end
 * of the loop uring_drain() cancels everything and reaps until no op is in
 * flight, before a stack, a buffer or the ring is freed.  A parked
 * connection's poll carries no pointer: its user_data is the fd and the
 * connection's id, checked against park_table when it completes.
 *
 * No liburing: <linux/io_uring.h> and the three system calls, so building
 * needs nothing new.  The rings are shared memory with the kernel: we own
 * the SQ tail and the CQ head, the kernel the others; smp_store_release /
 * smp_load_acquire (as liburing's barrier.h) order the entries against them.
 *
 * Features, measured on 6.18 (docs/walkthrough.md, "Two backends"):
 * SINGLE_ISSUER|DEFER_TASKRUN (completions are posted only inside our
 * io_uring_enter: no task-work interrupts while coroutines run), falling back
 * to a plain ring on a kernel that refuses them; the flags in force are
 * uring_setup_flags().  sendfile stays sendfile(2), polled on EAGAIN.
 */
#include "internal.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define URING_SQ_ENTRIES 256  /* SQEs per worker: more are flushed with an extra enter */
#define URING_CQ_ENTRIES 4096 /* CQEs; IORING_FEAT_NODROP keeps any overflow in the kernel */

/* user_data: a coroutine pointer (8-aligned) with the low 3 bits saying what it is. */
enum {
    UD_OP = 0,     /* co: its recv/send/poll */
    UD_CANCEL = 1, /* an ASYNC_CANCEL we sent (no pointer; UD_CANCEL_ALL: uring_drain's ANY|ALL) */
    UD_PIPE = 2,   /* the dispatch pipe's poll */
    UD_POST = 3,   /* the post eventfd's poll */
    UD_LISTEN = 4, /* --accept reuseport: the worker's listener */
    UD_PARK = 5,   /* a parked connection: fd << 3, its id's low 32 bits << 32 */
    UD_FORGET = 6, /* an ASYNC_CANCEL of a poll: names no memory, not waited for */
    UD_HUP = 7,    /* a deferred Python round's hang-up watch: as UD_PARK */
    UD_MASK = 7
};
#define UD_CANCEL_ALL (UD_CANCEL | (1u << 3))
_Static_assert(_Alignof(mg_coroutine) >= 8, "user_data keeps a tag in a coroutine pointer's low 3 bits");

#define smp_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define smp_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)

struct mg_uring {
    int fd;
    unsigned setup_flags; /* IORING_SETUP_* in force */
    int enabled;          /* IORING_REGISTER_ENABLE_RINGS done (on the worker's thread) */
    /* submission ring */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_flags, *sq_array;
    unsigned sq_entries;
    struct io_uring_sqe *sqes;
    /* completion ring */
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    /* the mappings */
    void *sq_mem, *cq_mem;
    size_t sq_size, cq_size, sqes_size;
    /* ops that name memory (coroutine ops) plus our cancels, CQE not yet seen */
    uint64_t inflight;
    uint64_t cancels;       /* of which our counted cancels */
    int cancel_all_refused; /* ASYNC_CANCEL_ANY|ALL said -EINVAL (kernels before 5.19) */
    int pipe_armed, post_armed;
    int listen_armed; /* fd the listener poll is armed on, -1: none */
};

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long r = syscall(__NR_io_uring_setup, entries, p);
    return r < 0 ? -errno : (int)r;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, void *arg,
                     size_t argsz)
{
    long r = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return r < 0 ? -errno : (int)r;
}

static int sys_register(int fd, unsigned op, void *arg, unsigned nr)
{
    long r = syscall(__NR_io_uring_register, fd, op, arg, nr);
    return r < 0 ? -errno : (int)r;
}

/* ------------------------------------------------------------------ setup */

static void ring_unmap(struct mg_uring *u)
{
    if (u->sqes && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_size);
    if (u->cq_mem && u->cq_mem != MAP_FAILED && u->cq_mem != u->sq_mem)
        munmap(u->cq_mem, u->cq_size);
    if (u->sq_mem && u->sq_mem != MAP_FAILED)
        munmap(u->sq_mem, u->sq_size);
    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
}

/* io_uring_setup with SINGLE_ISSUER|DEFER_TASKRUN (R_DISABLED: the issuer is
 * the thread that enables it, the worker, not this one), then without them.
 * 0 or -errno (ENOSYS: no io_uring; EPERM: kernel.io_uring_disabled or a
 * seccomp filter; EOPNOTSUPP: a kernel older than 5.11's EXT_ARG). */
static int ring_setup(struct mg_uring *u)
{
    struct io_uring_params p;
    u->fd = -1;
    if (mg_test_no_uring())
        return -ENOSYS; /* tests/test_uring.py: a kernel without io_uring */
    unsigned want = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_R_DISABLED;
    int fd = -EINVAL;
    if (!mg_test_uring_plain()) {
        memset(&p, 0, sizeof(p));
        p.flags = want;
        p.cq_entries = URING_CQ_ENTRIES;
        fd = sys_setup(URING_SQ_ENTRIES, &p);
    }
    if (fd == -EINVAL) { /* before 6.1: no DEFER_TASKRUN */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = URING_CQ_ENTRIES;
        fd = sys_setup(URING_SQ_ENTRIES, &p);
    }
    if (fd < 0)
        return fd;
    u->fd = fd;
    u->setup_flags = p.flags;
    u->enabled = !(p.flags & IORING_SETUP_R_DISABLED);
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
        ring_unmap(u);
        return -EOPNOTSUPP;
    }
    u->sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single)
        u->sq_size = u->cq_size = u->sq_size > u->cq_size ? u->sq_size : u->cq_size;
    u->sq_mem =
        mmap(NULL, u->sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (u->sq_mem == MAP_FAILED)
        goto fail;
    u->cq_mem = single
        ? u->sq_mem
        : mmap(NULL, u->cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
    if (u->cq_mem == MAP_FAILED)
        goto fail;
    u->sqes_size = p.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes =
        mmap(NULL, u->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        goto fail;
    char *sq = u->sq_mem, *cq = u->cq_mem;
    u->sq_head = (unsigned *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->sq_entries = p.sq_entries;
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* slot i of the SQ array always names SQE i: the SQEs are used in ring order */
    for (unsigned i = 0; i < p.sq_entries; i++)
        u->sq_array[i] = i;
    return 0;

fail:;
    int err = -errno;
    ring_unmap(u);
    return err;
}

static int uring_new(mg_worker *w)
{
    struct mg_uring *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    int r = ring_setup(u);
    if (r < 0) {
        free(u);
        return r;
    }
    u->listen_armed = -1;
    w->uring = u;
    return 0;
}

static void uring_free(mg_worker *w)
{
    struct mg_uring *u = w->uring;
    if (!u)
        return;
    if (u->inflight)
        mg_log("minginx-cffi: io_uring: %llu ops still in flight at free", (unsigned long long)u->inflight);
    ring_unmap(u);
    free(u);
    w->uring = NULL;
}

unsigned uring_setup_flags(mg_worker *w)
{
    return w->uring ? w->uring->setup_flags : 0;
}

int mg_io_uring_probe(unsigned *setup_flags)
{
    struct mg_uring u;
    memset(&u, 0, sizeof(u));
    int r = ring_setup(&u);
    if (r < 0)
        return r;
    *setup_flags = u.setup_flags & (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    ring_unmap(&u);
    return 0;
}

/* ------------------------------------------------------------ submission */

static unsigned sq_pending(struct mg_uring *u)
{
    return *u->sq_tail - smp_load_acquire(u->sq_head);
}

/* Enable the ring on the worker's thread (SINGLE_ISSUER: the issuer is the enabler). */
static int ring_enable(struct mg_uring *u)
{
    if (u->enabled)
        return 0;
    int r = sys_register(u->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (r < 0)
        return r;
    u->enabled = 1;
    return 0;
}

/* A zeroed SQE at the tail, published at once (the kernel reads the tail only
 * inside io_uring_enter, which only this thread calls).  A full ring is
 * flushed with an io_uring_enter that only submits.  NULL if even that fails. */
static struct io_uring_sqe *sqe_get(mg_worker *w, uint64_t user_data)
{
    struct mg_uring *u = w->uring;
    for (int tries = 0; sq_pending(u) >= u->sq_entries; tries++) {
        int r = ring_enable(u);
        if (r == 0)
            r = sys_enter(u->fd, sq_pending(u), 0, 0, NULL, 0);
        if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
            return NULL;
        if (tries > 8)
            return NULL;
    }
    unsigned tail = *u->sq_tail;
    struct io_uring_sqe *sqe = &u->sqes[tail & *u->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    sqe->user_data = user_data;
    smp_store_release(u->sq_tail, tail + 1);
    return sqe;
}

static void trace_submit(mg_worker *w, mg_coroutine *co, int fd, int opcode)
{
    if (MG_UNLIKELY(w->trace))
        trace_push(&w->ring, w->index, MG_EV_SUBMIT, co ? co->id : 0, fd, opcode);
}

/* Cancel the op whose user_data is `target` (its own CQE still comes), the
 * cancel's own user_data being ud.  counted: the cancel is in inflight until
 * its CQE (uring_drain waits for it). */
static int submit_cancel_as(mg_worker *w, uint64_t ud, uint64_t target, unsigned flags, int counted)
{
    struct io_uring_sqe *sqe = sqe_get(w, ud);
    if (!sqe)
        return -ENOMEM;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->cancel_flags = flags;
    w->uring->inflight += counted != 0;
    w->uring->cancels += counted != 0;
    return 0;
}

static int submit_cancel(mg_worker *w, uint64_t target, unsigned flags, int counted)
{
    return submit_cancel_as(w, counted ? UD_CANCEL : UD_FORGET, target, flags, counted);
}

/* A one-shot poll; the result is the poll mask (POLLIN ... = EPOLLIN ...). */
static int submit_poll(mg_worker *w, int fd, unsigned events, uint64_t user_data)
{
    struct io_uring_sqe *sqe = sqe_get(w, user_data);
    if (!sqe)
        return -ENOMEM;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = events; /* little-endian hosts: as the kernel reads it */
    return 0;
}

/* The op just queued for co (user_data co) is in flight: yield until its CQE.
 * Woken before it (the timer fired: timers_expire adds a coroutine waiting
 * READ or WRITE to the ready queue), cancel it and keep waiting: the kernel
 * may still be using memory on this stack.  Returns the CQE's res. */
static int32_t uring_wait_op(mg_coroutine *co, int reason, int opcode)
{
    mg_worker *w = co->worker;
    int cancel_sent = 0;
    trace_submit(w, co, co->conn->fd, opcode);
    co->io_pending = 1;
    w->uring->inflight++;
    do {
        /* a poll for input: the idle read's recv said EAGAIN ("recv_async -> EAGAIN,
         * yield (read)"); a wait for a cancelled op's CQE is a plain yield */
        if (opcode == IORING_OP_POLL_ADD && !cancel_sent)
            coroutine_yield_io(co, reason);
        else
            coroutine_yield(co, reason);
        if (co->io_pending && !cancel_sent)
            cancel_sent = submit_cancel(w, (uint64_t)(uintptr_t)co, 0, 1) == 0;
    } while (co->io_pending);
    return co->io_res;
}

/* -ECANCELED because our timer fired is a timeout to the caller. */
static int32_t op_result(mg_coroutine *co, int32_t r)
{
    return r == -ECANCELED && co->timed_out ? -ETIMEDOUT : r;
}

static ssize_t uring_recv(mg_coroutine *co, void *buf, size_t len)
{
    for (;;) {
        if (co->timed_out)
            return -ETIMEDOUT;
        struct io_uring_sqe *sqe = sqe_get(co->worker, (uint64_t)(uintptr_t)co);
        if (!sqe)
            return -ENOMEM;
        sqe->opcode = IORING_OP_RECV;
        sqe->fd = co->conn->fd;
        sqe->addr = (uint64_t)(uintptr_t)buf;
        sqe->len = (unsigned)(len > 0x7fffffff ? 0x7fffffff : len);
        int32_t r = op_result(co, uring_wait_op(co, MG_YIELD_READ, IORING_OP_RECV));
        if (r == -EINTR || r == -EAGAIN)
            continue;
        /* a short read emptied the socket: recv_nowait need not ask again */
        co->conn->drained = r >= 0 && (size_t)r < len;
        TRACE(co->worker, MG_EV_RECV_ASYNC, co, co->conn->fd, r);
        return r;
    }
}

static ssize_t uring_sendv(mg_coroutine *co, struct iovec *iov, int iovcnt)
{
    mg_worker *w = co->worker;
    size_t total = 0;
    int progressed = 1;

    for (;;) {
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            break;
        if (co->timed_out && !progressed)
            return -ETIMEDOUT;
        if (progressed)
            timer_set(co, MG_TIMER_SEND); /* no progress for send_timeout: cancelled */
        progressed = 0;
        /* stays on this stack, with iov[], until the CQE: the kernel reads both */
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        struct io_uring_sqe *sqe = sqe_get(w, (uint64_t)(uintptr_t)co);
        if (!sqe)
            return -ENOMEM;
        int opcode = iovcnt == 1 ? IORING_OP_SEND : IORING_OP_SENDMSG;
        sqe->opcode = (uint8_t)opcode;
        sqe->fd = co->conn->fd;
        sqe->msg_flags = MSG_NOSIGNAL;
        if (iovcnt == 1) {
            sqe->addr = (uint64_t)(uintptr_t)iov->iov_base;
            sqe->len = (unsigned)(iov->iov_len > 0x7fffffff ? 0x7fffffff : iov->iov_len);
        } else {
            sqe->addr = (uint64_t)(uintptr_t)&msg;
            sqe->len = 1;
        }
        int32_t n = op_result(co, uring_wait_op(co, MG_YIELD_WRITE, opcode));
        if (n > 0) {
            total += (size_t)n;
            w->stats.bytes_out += (uint64_t)n;
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
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n < 0)
            return n;
    }
    if (co->timer_class == MG_TIMER_SEND)
        timer_clear(co);
    return (ssize_t)total;
}

/* io_park's uring half: a one-shot poll for readable (MG_YIELD_READ) or
 * writable.  0: try the call again; -ETIMEDOUT. */
static int uring_poll(mg_coroutine *co, int reason)
{
    if (co->timed_out)
        return -ETIMEDOUT;
    co->woken_by = 0;
    unsigned events = reason == MG_YIELD_READ ? POLLIN | POLLRDHUP : POLLOUT;
    if (submit_poll(co->worker, co->conn->fd, events, (uint64_t)(uintptr_t)co) < 0)
        return -ENOMEM;
    int32_t r = op_result(co, uring_wait_op(co, reason, IORING_OP_POLL_ADD));
    if (r == -ETIMEDOUT)
        return r;
    if (r < 0)
        return 0; /* -ECANCELED: resumed for another reason (the idle sweep: park_due); other
                     errors: the call says.  Either way, try the call */
    co->woken_by = r;
    if (r & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))
        co->conn->drained = 0;
    return 0;
}

/* worker_park's hook: the parked fd's poll.  Its user_data is no pointer
 * (mg_parked is freed at park_close, maybe before the cancelled poll's CQE),
 * but fd and id, which uring_reap checks against park_table. */
static uint64_t park_user_data(int fd, uint64_t id)
{
    return ((uint64_t)(uint32_t)id << 32) | ((uint64_t)(uint32_t)fd << 3) | UD_PARK;
}

static int uring_park(mg_worker *w, int fd, uint64_t id)
{
    return submit_poll(w, fd, POLLIN | POLLRDHUP, park_user_data(fd, id));
}

/* A coroutine whose Python round went to a handler thread waits with nothing
 * in flight, so nothing would hear its client leave; under epoll wake_fd
 * does (an ASGI app hears http.disconnect).  This poll for the hang-up is
 * that ear (pycall.c), cancelled when the round is over.  No pointer in its
 * user_data either: fd and id, checked against fd_table. */
static void uring_watch_hangup(mg_coroutine *co)
{
    if (co->io_watch || co->conn->fd < 0)
        return;
    if (submit_poll(co->worker, co->conn->fd, POLLRDHUP,
                    park_user_data(co->conn->fd, co->id) - UD_PARK + UD_HUP) == 0)
        co->io_watch = 1;
}

static void uring_unwatch_hangup(mg_coroutine *co)
{
    if (!co->io_watch)
        return;
    co->io_watch = 0;
    submit_cancel(co->worker, park_user_data(co->conn->fd, co->id) - UD_PARK + UD_HUP, 0, 0);
}

/* park_close's hook: the fd is about to be closed, and a poll holds the file
 * open (no FIN would leave) until it is cancelled. */
static void uring_unpark(mg_worker *w, int fd, uint64_t id)
{
    submit_cancel(w, park_user_data(fd, id), 0, 0);
}

/* ---------------------------------------------------------- completions */

static void control_polls(mg_worker *w)
{
    struct mg_uring *u = w->uring;
    if (!u->pipe_armed && submit_poll(w, w->pipe_r, POLLIN, UD_PIPE) == 0)
        u->pipe_armed = 1;
    if (!u->post_armed && submit_poll(w, w->post_fd, POLLIN, UD_POST) == 0)
        u->post_armed = 1;
    int want = w->accept_resume_ms ? -1 : w->listen_fd; /* paused (EMFILE) or stopping: none */
    if (u->listen_armed >= 0 && u->listen_armed != want) {
        /* the poll would keep a closed listener's socket (and its SO_REUSEPORT
         * share of new connections) alive */
        if (submit_cancel(w, UD_LISTEN, 0, 0) == 0)
            u->listen_armed = -1;
    }
    if (u->listen_armed < 0 && want >= 0 && submit_poll(w, want, POLLIN, UD_LISTEN) == 0)
        u->listen_armed = want;
}

/* Walk the CQEs.  Coroutine ops: the result goes to the coroutine, which goes
 * back on the ready queue (unless a timer already put it there).  Polls of
 * the control fds and parked connections: an epoll_event each in w->events
 * for the worker loop.  quiet (uring_drain): results only, nobody woken. */
static int uring_reap(mg_worker *w, int quiet)
{
    struct mg_uring *u = w->uring;
    unsigned head = *u->cq_head, tail = smp_load_acquire(u->cq_tail);
    int n = 0;

    for (; head != tail && n < MG_MAX_EVENTS; head++) {
        struct io_uring_cqe *cqe = &u->cqes[head & *u->cq_mask];
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        int fd = -1;
        switch (ud & UD_MASK) {
        case UD_OP: {
            mg_coroutine *co = (mg_coroutine *)(uintptr_t)ud;
            if (MG_UNLIKELY(!co->io_pending)) {
                mg_log_at(MG_LOG_CRITICAL,
                          "minginx-cffi: io_uring: a completion for a coroutine "
                          "with nothing in flight");
                abort();
            }
            co->io_pending = 0;
            co->io_res = res;
            u->inflight--;
            TRACE(w, MG_EV_COMPLETE, co, co->conn->fd, res);
            if (!quiet && co->waiting != MG_YIELD_READY) {
                w->stats.wakeups++;
                add_to_ready(w, co);
            }
            continue;
        }
        case UD_CANCEL:
            u->inflight--;
            u->cancels--;
            if (ud == UD_CANCEL_ALL && res == -EINVAL)
                u->cancel_all_refused = 1; /* uring_drain cancels op by op from now on */
            continue;
        case UD_FORGET: continue;
        case UD_PIPE:
            u->pipe_armed = 0;
            fd = w->pipe_r;
            break;
        case UD_POST:
            u->post_armed = 0;
            fd = w->post_fd;
            break;
        case UD_LISTEN:
            if (res == -ECANCELED)
                continue; /* control_polls already disarmed it */
            fd = u->listen_armed;
            u->listen_armed = -1;
            break;
        case UD_PARK: {
            int pfd = (int)((ud >> 3) & 0x1fffffff);
            mg_parked *p = pfd < w->fd_table_size ? w->park_table[pfd] : NULL;
            if (p && (uint32_t)p->id == (uint32_t)(ud >> 32))
                fd = pfd; /* else a stale poll of a closed (and maybe reused) fd */
            break;
        }
        case UD_HUP: {
            int cfd = (int)((ud >> 3) & 0x1fffffff);
            mg_coroutine *co = cfd < w->fd_table_size ? w->fd_table[cfd] : NULL;
            if (quiet || res <= 0 || !co || (uint32_t)co->id != (uint32_t)(ud >> 32))
                continue; /* cancelled, or a stale watch of a closed (maybe reused) fd */
            co->io_watch = 0;
            if (co->waiting == MG_YIELD_PYTHON)
                wake_fd(w, cfd, (uint32_t)res); /* the app hears http.disconnect; nobody is woken */
            else
                co->woken_by |= res;
            continue;
        }
        default:
            mg_log_at(MG_LOG_CRITICAL, "minginx-cffi: io_uring: a completion with user_data %#llx",
                      (unsigned long long)ud);
            abort();
        }
        if (quiet || fd < 0 || res <= 0)
            continue;
        w->events[n].events = (uint32_t)res;
        w->events[n].data.fd = fd;
        n++;
    }
    smp_store_release(u->cq_head, head);
    return n;
}

static int uring_wait(mg_worker *w, int timeout_ms)
{
    struct mg_uring *u = w->uring;
    int r = ring_enable(u);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    control_polls(w);
    struct __kernel_timespec ts = {0};
    struct io_uring_getevents_arg arg = {0};
    unsigned wait_nr = 1;
    if (timeout_ms == 0 || *u->cq_head != smp_load_acquire(u->cq_tail)) {
        wait_nr = 0; /* something to run already: only submit and collect */
    } else if (timeout_ms > 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        arg.ts = (uint64_t)(uintptr_t)&ts;
    }
    r = sys_enter(u->fd, sq_pending(u), wait_nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                  sizeof(arg));
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN) {
        errno = -r;
        return -1;
    }
    return uring_reap(w, 0);
}

/* Cancel, op by op, what the ALL cancel would have: each coroutine's op and
 * hang-up watch, each parked connection's poll, the control polls.  Each
 * cancel is counted: uring_drain waits for its CQE. */
static void cancel_each(mg_worker *w)
{
    struct mg_uring *u = w->uring;
    for (mg_coroutine *co = w->all; co; co = co->next) {
        if (co->io_pending)
            submit_cancel(w, (uint64_t)(uintptr_t)co, 0, 1);
        if (co->io_watch && co->conn->fd >= 0)
            submit_cancel(w, park_user_data(co->conn->fd, co->id) - UD_PARK + UD_HUP, 0, 1);
    }
    for (mg_parked *p = w->park_head; p; p = p->next)
        submit_cancel(w, park_user_data(p->fd, p->id), 0, 1);
    if (u->pipe_armed)
        submit_cancel(w, UD_PIPE, 0, 1);
    if (u->post_armed)
        submit_cancel(w, UD_POST, 0, 1);
    if (u->listen_armed >= 0)
        submit_cancel(w, UD_LISTEN, 0, 1);
}

/* The loop is over: cancel everything still in flight and wait for each
 * CQE, so no op names a stack, a buffer or the ring once they are freed.
 * At least once, with nothing counted in flight too: the polls (parked
 * connections, hang-up watches, the listener) name no memory, but each holds
 * its file open, and the loop may have ended right after park_close queued
 * its cancel and closed the fd; until the ring is freed (never, when a
 * handler thread outlives the grace period) that client would get no FIN.
 * Tested by tests/test_atk_uring.py (test_a_parked_connection_closed_at_a_
 * graceful_stop_gets_its_fin).
 *
 * One IORING_ASYNC_CANCEL_ANY|ALL cancels everything at once, but kernels
 * before 5.19 refuse those flags (-EINVAL, and nothing is cancelled): then
 * each op is cancelled by its user_data (cancel_each).  A new round of
 * cancels goes out only once the last round's CQEs are all back, and after
 * the first two rounds at most every 100 ms: an op that outlives its cancel
 * (-EALREADY: it is completing) is waited for, not spun on.  Tested by
 * tests/test_uring.py (test_a_stop_where_the_kernel_refuses_cancel_all_
 * finishes; MINGINX_TEST_URING_NO_CANCEL_ALL has the kernel refuse it). */
static void uring_drain(mg_worker *w)
{
    struct mg_uring *u = w->uring;
    if (!u || !u->enabled)
        return;
    int64_t started = mg_now_ms(), next_round = started;
    int said = 0, rounds = 0, each_rounds = 0;
    /* MINGINX_TEST_URING_NO_CANCEL_ALL: the kernel refuses the flags for real
     * (an unknown flag is -EINVAL on every kernel) */
    unsigned all =
        IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL | (mg_test_uring_no_cancel_all() ? 1u << 31 : 0);
    do {
        int64_t now = mg_now_ms();
        if (u->cancels == 0 && now >= next_round) {
            if (u->cancel_all_refused) {
                cancel_each(w);
                each_rounds++;
            } else {
                submit_cancel_as(w, UD_CANCEL_ALL, 0, all, 1);
            }
            next_round = now + (++rounds < 2 ? 0 : 100);
        }
        struct __kernel_timespec ts = {.tv_nsec = 100 * 1000000};
        struct io_uring_getevents_arg arg = {.ts = (uint64_t)(uintptr_t)&ts};
        unsigned wait_nr = u->inflight > 0; /* 0: no cancel could be queued (a full ring) */
        int r = sys_enter(u->fd, sq_pending(u), wait_nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                          sizeof(arg));
        while (*u->cq_head != smp_load_acquire(u->cq_tail))
            uring_reap(w, 1);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN) {
            /* the ring is unusable: freeing what it may still write is worse than a leak */
            mg_log("minginx-cffi: io_uring_enter (drain): %s", strerror(-r));
            abort();
        }
        if (!said && u->inflight > 0 && mg_now_ms() - started > 2000) {
            mg_log("minginx-cffi: io_uring: %llu ops not cancelled yet; waiting for them",
                   (unsigned long long)u->inflight);
            said = 1;
        }
        /* refused: the polls that hold files open get their cancels too, once */
    } while (u->inflight > 0 || (u->cancel_all_refused && each_rounds == 0));
}

/* ------------------------------------------------------------ the table */

/* A new connection needs nothing: its first op is its registration. */
static int uring_add(mg_worker *w, int fd)
{
    MG_UNUSED(w);
    MG_UNUSED(fd);
    return 0;
}

/* The listener's poll is derived from w->listen_fd and accept_resume_ms at
 * each wait (control_polls): nothing to do at the time. */
static int uring_listen(mg_worker *w, int fd)
{
    MG_UNUSED(w);
    MG_UNUSED(fd);
    return 0;
}

static void uring_unlisten(mg_worker *w, int fd)
{
    MG_UNUSED(w);
    MG_UNUSED(fd);
}

const mg_backend mg_backend_uring = {
    .name = "uring",
    .wait_call = "io_uring_enter",
    .init = uring_new, /* the ring polls the pipe and the eventfd itself */
    .free = uring_free,
    .wait = uring_wait,
    .add = uring_add,
    .listen = uring_listen,
    .unlisten = uring_unlisten,
    .poll = uring_poll,
    .park = uring_park,
    .unpark = uring_unpark,
    .watch_hangup = uring_watch_hangup,
    .unwatch_hangup = uring_unwatch_hangup,
    .recv = uring_recv,
    .sendv = uring_sendv,
    .drain = uring_drain,
};
