/* acceptor.c - the main thread's accept loop and dispatch(), plus the server object.
 *
 * The acceptor sleeps in epoll_wait on two fds: the listening socket and a
 * wake-up pipe (Python's signal.set_wakeup_fd writes to it when a signal
 * arrives).  It never spins:
 *   - the listening socket is non-blocking and drained until EAGAIN;
 *   - on EMFILE/ENFILE (out of fds) it takes the socket out of the epoll set
 *     for 100 ms and retries, rather than being woken again at once by the
 *     connection it could not accept.
 * Each accepted fd goes to the next worker round-robin, as 4 bytes down that
 * worker's dispatch pipe (see worker.c: read_dispatch_pipe); the fds one
 * round of accept4 took go down together, one write per worker.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BACKOFF_MS 100

/* --------------------------------------------------------------- server */

mg_server *mg_server_new(const mg_config *cfg, int *err)
{
    mg_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        *err = -ENOMEM;
        return NULL;
    }
    srv->cfg = *cfg;
    srv->root_fd = srv->accept_epfd = -1;
    if (srv->cfg.stack_size < MG_MIN_STACK_SIZE || cfg->policy < 0 || cfg->policy >= RDY_POLICY_MAX) {
        *err = -EINVAL;
        free(srv);
        return NULL;
    }
    srv->root = strdup(cfg->root ? cfg->root : ".");
    srv->cfg.root = srv->root;
    if (!srv->root)
        goto fail;
    srv->root_real = realpath(srv->root, NULL);
    if (!srv->root_real)
        goto fail;
    srv->root_fd = open(srv->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (srv->root_fd < 0)
        goto fail;
    srv->accept_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->accept_epfd < 0)
        goto fail;
    srv->trace = cfg->trace;
    srv->index = -1;
    srv->started_ms = mg_now_ms();
    if (srv->trace && trace_ring_init(&srv->ring) < 0)
        goto fail;
    int r = alog_new(srv);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    r = front_init(srv); /* --header, --error-page, --forwarded-allow-ips */
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    /* SIGPIPE can never kill us: sends use MSG_NOSIGNAL, and sendfile()
     * to a closed socket would raise it, so it is ignored process-wide
     * (CPython does the same at start-up). */
    signal(SIGPIPE, SIG_IGN);
    return srv;

fail:
    *err = -errno;
    mg_server_free(srv);
    return NULL;
}

const mg_config *mg_server_config(const mg_server *srv)
{
    return &srv->cfg;
}

void mg_server_free(mg_server *srv)
{
    if (!srv)
        return;
    alog_free(srv); /* the workers handed their lines over as their loops ended */
    if (srv->root_fd >= 0)
        close(srv->root_fd);
    if (srv->accept_epfd >= 0)
        close(srv->accept_epfd);
    free(srv->root);
    free(srv->root_real);
    front_free(srv);
    trace_ring_free(&srv->ring);
    free(srv);
}

/* ------------------------------------------------------------- dispatch */

/* Write a worker's queued fds down its pipe in one write: one wake-up of the
 * worker for all of them (it reads them into fd_batch).  At most PIPE_BUF
 * bytes, so the write is all or nothing.  Returns 0 or -errno. */
static int pipe_write_fds(mg_worker *w, const int *fds, int n)
{
    for (;;) {
        if (write(w->pipe_w, fds, (size_t)n * sizeof(int)) == (ssize_t)((size_t)n * sizeof(int)))
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Send worker w's queue; if its pipe is full, to the next worker whose pipe
 * is not; if every pipe is full (each worker 16,000 connections behind), shed
 * the connections. */
static void dispatch_flush_one(mg_server *srv, mg_worker *w)
{
    int n = w->dispatch_len, r = -EAGAIN;
    w->dispatch_len = 0;
    for (int k = 0; k < srv->nworkers && r == -EAGAIN; k++)
        r = pipe_write_fds(srv->workers[(w->index + k) % srv->nworkers], w->dispatch_q, n);
    if (r < 0) {
        mg_log("minginx-cffi: dispatch: %s; closing %d connection%s", strerror(-r), n, n > 1 ? "s" : "");
        for (int i = 0; i < n; i++)
            close(w->dispatch_q[i]);
    }
}

/* Send every worker's queue: called when the accept loop has taken all
 * that was waiting. */
void dispatch_flush(mg_server *srv)
{
    for (int i = 0; i < srv->nworkers; i++)
        if (srv->workers[i]->dispatch_len)
            dispatch_flush_one(srv, srv->workers[i]);
}

/* Hand fd to the next worker, round-robin: queued, and sent down the worker's
 * pipe with the others accepted in the same round (dispatch_flush), so a
 * burst of connections costs each worker one wake-up, not one per fd. */
void dispatch(mg_server *srv, int fd)
{
    mg_worker *w = srv->workers[srv->next_worker++ % (unsigned)srv->nworkers];
    /* traced before the write: the worker may read it before we look again */
    if (MG_UNLIKELY(srv->trace))
        trace_push(&srv->ring, -1, MG_EV_DISPATCH, 0, fd, w->index);
    w->dispatch_q[w->dispatch_len++] = fd;
    /* no more than the worker reads at once (MINGINX_FD_BATCH=1: no batching either way) */
    if (w->dispatch_len >= MG_DISPATCH_BATCH || w->dispatch_len >= w->fd_batch_len)
        dispatch_flush_one(srv, w);
}

/* ------------------------------------------------------------- acceptor */

static int listen_in_epoll(mg_server *srv, int listen_fd, int op)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    return epoll_ctl(srv->accept_epfd, op, listen_fd, op == EPOLL_CTL_DEL ? NULL : &ev);
}

/* Returns 1 if the acceptor should back off (out of fds), else 0. */
static int accept_batch(mg_server *srv, int listen_fd)
{
    for (int i = 0; i < 1024; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN: return 0;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM: continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                mg_log("minginx-cffi: accept4: %s; pausing accepts for %d ms", strerror(errno),
                       ACCEPT_BACKOFF_MS);
                return 1;
            default: mg_log("minginx-cffi: accept4: %s", strerror(errno)); return 1;
            }
        }
        if (MG_UNLIKELY(srv->trace))
            trace_push(&srv->ring, -1, MG_EV_ACCEPT, 0, fd, 0);
        /* TCP_NODELAY comes from the listener (server.py: _tune_listener) */
        dispatch(srv, fd);
    }
    return 0;
}

int mg_accept_loop(mg_server *srv, int listen_fd, int wake_fd)
{
    struct epoll_event evs[4];

    if (srv->nworkers == 0)
        return -EINVAL;
    struct epoll_event wev = {.events = EPOLLIN, .data.fd = wake_fd};
    if (epoll_ctl(srv->accept_epfd, EPOLL_CTL_ADD, wake_fd, &wev) < 0 && errno != EEXIST)
        return -errno;
    /* listen_fd < 0 (--accept reuseport): the workers accept; we only wait for a signal */
    if (listen_fd >= 0 && !srv->accept_paused && listen_in_epoll(srv, listen_fd, EPOLL_CTL_ADD) < 0 &&
        errno != EEXIST)
        return -errno;

    for (;;) {
        int n = epoll_wait(srv->accept_epfd, evs, 4, srv->accept_paused ? ACCEPT_BACKOFF_MS : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue; /* a signal's handler wrote to wake_fd: we see it next */
            return -errno;
        }
        if (n == 0 && srv->accept_paused) {
            srv->accept_paused = 0;
            listen_in_epoll(srv, listen_fd, EPOLL_CTL_ADD);
            continue;
        }
        int woken = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == wake_fd) {
                woken = 1; /* its bytes are the caller's: server.py counts a stop per signal */
            } else if (evs[i].data.fd == listen_fd) {
                int back_off = accept_batch(srv, listen_fd);
                dispatch_flush(srv);
                if (back_off) {
                    srv->accept_paused = 1;
                    listen_in_epoll(srv, listen_fd, EPOLL_CTL_DEL);
                }
            }
        }
        if (woken)
            return 0;
    }
}
