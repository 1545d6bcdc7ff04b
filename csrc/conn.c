/* conn.c - a connection's life: the coroutine entry that reads, parses and answers requests.
 *
 * conn_entry() is the seed's `entry`: trampoline_start() calls it on the
 * coroutine's own stack, and when it returns the connection is over
 * (trampoline_start sets finished = 1, schedule() calls coroutine_destroy(),
 * which closes the socket).
 *
 *   for each request on the connection:
 *     read until parse_http() has a whole head     (recv_async yields on EAGAIN)
 *     read and discard a request body, if any      (never parsed as a request)
 *     the static-file middleware answers           (send_async, sendfile_async)
 *     keep the bytes after this request: they are the next one (pipelining)
 *
 * Between requests an idle connection hands its request buffer back to the
 * worker's pool, and its coroutine too, once the socket has had nothing to
 * read for MG_PARK_DELAY_MS (lazy parking: a busy keep-alive connection keeps
 * both, worker.c idle_sweep): worker_park() keeps only the fd and a few bytes
 * (mg_parked), and conn_entry returns.  When input comes, wake_fd() makes a new coroutine for
 * the fd (same id, co->conn->requests > 0) and conn_entry goes on as the old one
 * would have: waiting for a next request on a keep-alive connection.  So
 * 10,000 idle keep-alive connections hold no stack at all (nginx's design;
 * docs/walkthrough.md weighs the trade).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "http.h"
#include "response.h"
#include "exchange.h"

/* ------------------------------------------------------ the buffer pool */

mg_reqbuf *reqbuf_get(mg_worker *w)
{
    mg_reqbuf *rb = w->reqbuf_pool;
    if (rb) {
        w->reqbuf_pool = rb->next_free;
        w->reqbuf_pool_len--;
    } else {
        rb = malloc(sizeof(*rb)); /* only while the pool warms up */
        if (!rb)
            return NULL;
    }
    rb->next_free = NULL;
    rb->len = 0;
    rb->scanned = 0;
    return rb;
}

void reqbuf_put(mg_worker *w, mg_reqbuf *rb)
{
    if (w->reqbuf_pool_len >= MG_REQBUF_POOL_MAX || w->no_buffer_pool) {
        free(rb);
        return;
    }
    rb->next_free = w->reqbuf_pool;
    w->reqbuf_pool = rb;
    w->reqbuf_pool_len++;
}

void reqbuf_pool_trim(mg_worker *w, int keep)
{
    while (w->reqbuf_pool_len > keep) {
        mg_reqbuf *rb = w->reqbuf_pool;
        w->reqbuf_pool = rb->next_free;
        w->reqbuf_pool_len--;
        free(rb);
    }
}

mg_xstate *xstate_get(mg_worker *w)
{
    mg_xstate *xs = w->xstate_pool;
    if (xs) {
        w->xstate_pool = xs->next_free;
        w->xstate_pool_len--;
    } else {
        xs = malloc(sizeof(*xs)); /* only while the pool warms up */
        if (!xs)
            return NULL;
        buf_growable(&xs->call._out);
        xs->call._pending = 0; /* worker.c: orphan_pending reads these of any one */
        xs->call._orphan = 0;
    }
    xs->next_free = NULL;
    xs->orphan_rb = NULL;
    return xs;
}

void xstate_put(mg_worker *w, mg_xstate *xs)
{
    if (w->xstate_pool_len >= MG_REQBUF_POOL_MAX || w->no_buffer_pool) {
        buf_free(&xs->call._out);
        free(xs);
        return;
    }
    xs->next_free = w->xstate_pool;
    w->xstate_pool = xs;
    w->xstate_pool_len++;
}

void xstate_pool_trim(mg_worker *w, int keep)
{
    while (w->xstate_pool_len > keep) {
        mg_xstate *xs = w->xstate_pool;
        w->xstate_pool = xs->next_free;
        w->xstate_pool_len--;
        buf_free(&xs->call._out);
        free(xs);
    }
}

void reqbuf_pool_drain(mg_worker *w)
{
    reqbuf_pool_trim(w, 0);
    xstate_pool_trim(w, 0);
}

/* The request's own state, taken once a request needs it (a head to parse,
 * or answer) and kept while the connection keeps its input buffer. */
static inline mg_xstate *conn_xstate(mg_coroutine *co)
{
    if (MG_UNLIKELY(!co->xs))
        co->xs = xstate_get(co->worker);
    return co->xs;
}

/* ----------------------------------------------------------- addresses */

/* Once per connection: the addresses do not change while it lives.  Python
 * handlers (pycall.c) and the access log both read them from here. */
void conn_addresses(mg_coroutine *co)
{
    if (co->conn->addr_known)
        return;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    co->conn->peer[0] = '\0';
    if (getpeername(co->conn->fd, (struct sockaddr *)&sa, &sl) == 0) {
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &in->sin_addr, co->conn->peer, sizeof(co->conn->peer));
            co->conn->peer_port = ntohs(in->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, co->conn->peer, sizeof(co->conn->peer));
            co->conn->peer_port = ntohs(in6->sin6_port);
        } else if (sa.ss_family == AF_UNIX) {
            /* --uds: a proxy's unnamed socket, no address; nginx's $remote_addr says "unix:" */
            co->conn->peer_unix = 1;
            strcpy(co->conn->peer, "unix:");
        }
    }
    sl = sizeof(sa);
    if (getsockname(co->conn->fd, (struct sockaddr *)&sa, &sl) == 0 &&
        (sa.ss_family == AF_INET || sa.ss_family == AF_INET6))
        co->conn->server_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                               : ((struct sockaddr_in *)&sa)->sin_port);
    co->conn->addr_known = 1;
}

const char *conn_client_addr(mg_coroutine *co)
{
    int port, https;
    const char *client = conn_client(co, &port, &https); /* proxy headers applied */
    if (client[0])
        return client;
    return co->conn->peer_unix ? "unix:" : "-"; /* as nginx writes a Unix-socket client's $remote_addr */
}

/* The access log's line for this request (a no-op with the log off). */
static inline void log_request(mg_coroutine *co, mg_request *req)
{
    if (MG_UNLIKELY(co->worker->alog != NULL))
        alog_request(co, req, co->status);
}

/* ------------------------------------------------------------- reading */

/* Read more bytes into the request buffer (recv_async).  Between two
 * requests the coroutine waits on the worker's idle list holding its buffer
 * (a busy keep-alive connection's next request comes soon: no pool round
 * trip per request); once idle past MG_PARK_DELAY_MS (worker.c idle_sweep)
 * the buffer goes back to the pool and the coroutine parks.  A connection
 * that waits for its first request gives the buffer back while it waits.
 * Returns bytes read (0 = the peer closed), -EINPROGRESS when parked (the
 * coroutine must end, leaving the socket to the worker), or -errno. */
static ssize_t recv_more(mg_coroutine *co)
{
    mg_worker *w = co->worker;
    for (;;) {
        if (!co->conn->rb && !(co->conn->rb = reqbuf_get(w)))
            return -ENOMEM;
        mg_reqbuf *rb = co->conn->rb;
        size_t room = sizeof(rb->data) - rb->len;
        if (room == 0)
            return -ENOBUFS;
        ssize_t n;
        if (rb->len > 0) {
            /* mid-request: wait for the rest holding the buffer */
            n = recv_async(co, rb->data + rb->len, room);
        } else {
            /* idle: recv_async's two halves */
            n = recv_nowait(co, rb->data, room);
            if (n == -EAGAIN) {
                /* (timed out: its keep-alive deadline came with the sweep; io_park says so) */
                int lazy = co->idle && co->conn->requests > 0 && !co->timed_out;
                /* park_deadline_ms: unparked, and still no request (a blank line woke
                 * it): parked again at once, its old deadline kept; waiting the delay
                 * as a coroutine, it would hold a fresh keep-alive timeout, and a
                 * blank line every 50 ms would keep it so (tests/test_atk_park_asgi.py:
                 * test_blank_lines_dripped_on_an_unparked_connection_do_not_extend_the_keepalive) */
                if (!lazy || co->conn->park_due || co->conn->park_deadline_ms) {
                    /* a long wait ahead: no buffer held meanwhile; and idle past
                     * the delay, no stack either: parked */
                    reqbuf_put(w, rb);
                    co->conn->rb = NULL;
                    if (co->xs) { /* (no request in flight: nothing views it) */
                        xstate_put(w, co->xs);
                        co->xs = NULL;
                    }
                    if (lazy && worker_park(co) == 0)
                        return -EINPROGRESS;
                }
                if (lazy)
                    worker_idle_link(co);
                int r = io_park(co, MG_YIELD_READ);
                if (lazy)
                    worker_idle_unlink(co);
                if (r < 0)
                    return r;
                co->conn->drained = 0;
                continue;
            }
            co->conn->park_due = 0; /* input after all: the delay starts afresh at the next wait */
        }
        if (n > 0)
            rb->len += (size_t)n;
        return n;
    }
}

/* Drop the first n bytes of the buffer, keeping what follows. */
static void buffer_consume(mg_reqbuf *rb, size_t from, size_t n)
{
    size_t rest = rb->len - from - n;
    if (rest) /* (a lone request leaves none: no call) */
        memmove(rb->data + from, rb->data + from + n, rest);
    rb->len -= n;
}

/* Append n bytes to the coroutine's body buffer (malloc'ed, doubling). */
static int body_append(mg_coroutine *co, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 16384;
        while (c < *len + n)
            c *= 2;
        char *nb = realloc(co->body_buf, c);
        if (!nb)
            return -ENOMEM;
        co->body_buf = nb;
        *cap = c;
    }
    memcpy(co->body_buf + *len, p, n);
    *len += n;
    return 0;
}

/* One read of a request body, under its own timeout: the header timeout is
 * armed afresh before every read, so a body may take as long as it needs
 * while it keeps coming, and one that stops for header_timeout is answered
 * 408 (RFC 9110 section 15.5.9), not dropped in silence.  nginx's
 * client_body_timeout works the same way ("only for a period between two
 * successive read operations").
 * Returns 0 (bytes arrived), 408, or -errno (-ECONNRESET when the peer closed). */
static int body_recv(mg_coroutine *co)
{
    timer_set(co, MG_TIMER_HEADER);
    ssize_t n = recv_more(co);
    if (n > 0)
        return 0;
    if (n == -ETIMEDOUT)
        return 408;
    return n == 0 ? -ECONNRESET : (int)n;
}

/* Read the request body that follows a head of head_len bytes.  With keep,
 * it is kept for a handler: in place in the request buffer when it fits
 * (then the caller drops head_len + *body_len bytes afterwards), else in
 * co->body_buf; without keep it is thrown away.  Either way the bytes after
 * the body stay in the buffer: they are the next request.
 * Returns 0, an HTTP status to answer with (400, 408, 413, 500), or -errno. */
static int read_body(mg_exchange *x, mg_request *req, size_t head_len, int keep, const char **body,
                     size_t *body_len, int *in_place)
{
    mg_coroutine *co = x->co;
    mg_reqbuf *rb = co->conn->rb;
    int64_t max = co->worker->srv ? co->worker->srv->cfg.max_body : 0;

    *body = NULL;
    *body_len = 0;
    *in_place = 0;
    if (!req->chunked && req->content_length <= 0)
        return 0;
    if (!req->chunked && req->content_length > max)
        return 413;
    /* 100 Continue only to HTTP/1.1: a server MUST NOT send a 1xx response
     * to an HTTP/1.0 client (RFC 9110 section 15.2), and section 10.1.1 has
     * it ignore a 100-continue expectation received in HTTP/1.0. */
    if (req->expect_continue && req->minor_version >= 1 && rb->len == head_len) {
        if (exchange_continue(x) < 0)
            return -EPIPE;
    }

    if (!req->chunked) {
        uint64_t left = (uint64_t)req->content_length;
        if (keep && head_len + left <= sizeof(rb->data)) {
            /* it fits: read it in place, behind the head */
            while (rb->len < head_len + left) {
                int r = body_recv(co);
                if (r)
                    return r;
            }
            *body = rb->data + head_len;
            *body_len = (size_t)left;
            *in_place = 1;
            return 0;
        }
        size_t len = 0, cap = 0;
        for (;;) {
            size_t have = rb->len - head_len;
            size_t take = have < left ? have : (size_t)left;
            if (keep && take && body_append(co, &len, &cap, rb->data + head_len, take) < 0)
                return 500;
            buffer_consume(rb, head_len, take);
            left -= take;
            if (left == 0)
                break;
            int r = body_recv(co);
            if (r)
                return r;
        }
        *body = co->body_buf;
        *body_len = len;
        return 0;
    }

    mg_chunked dec = {.max_body = (uint64_t)max};
    size_t len = 0, cap = 0;
    for (;;) {
        size_t n = rb->len - head_len, consumed = 0;
        int r = chunked_decode(&dec, rb->data + head_len, &n, &consumed);
        if (r > 1)
            return r; /* 400, or 413 as soon as a size line passes max_body */
        if (keep && n && body_append(co, &len, &cap, rb->data + head_len, n) < 0)
            return 500;
        /* decoded bytes are at the front; drop them and what was consumed */
        buffer_consume(rb, head_len, consumed);
        if (r == 1)
            break;
        int rr = body_recv(co);
        if (rr)
            return rr;
    }
    *body = co->body_buf;
    *body_len = len;
    return 0;
}

/* Close after answering an error: stop sending, then read and drop what the
 * client still sends for a moment, so the kernel does not answer it with a
 * RST that could destroy our response before the client reads it. */
static void lingering_close(mg_coroutine *co)
{
    shutdown_async(co); /* (TLS: close_notify, then FIN) */
    timer_set(co, MG_TIMER_LINGER);
    size_t total = 0;
    for (;;) {
        if (co->conn->rb)
            co->conn->rb->len = 0;
        ssize_t n = recv_more(co);
        if (n <= 0)
            break;
        total += (size_t)n;
        if (total > (1u << 20))
            break;
    }
}

/* --------------------------------------------------------------- entry */

void conn_entry(mg_coroutine *co)
{
    mg_worker *w = co->worker;
    int first = co->conn->requests == 0; /* else an unparked connection, between requests */

    TRACE(w, MG_EV_ENTRY, co, co->conn->fd, 0);
    /* the log needs the peer's address even if it resets the connection before
     * its line is made (getpeername then fails: ENOTCONN): take it now */
    if (MG_UNLIKELY(w->alog != NULL))
        conn_addresses(co);
    for (;;) {
        /* -- a request head -- */
        co->idle = 1;
        co->conn->client_known = 0; /* a new request: its client is the peer until request_client */
        /* Stopping (the response just sent was begun before the stop, with the
         * "Connection" it had then): not the keep-alive timeout but the drain an
         * idle connection gets at the stop (worker.c begin_graceful_stop), then
         * the close.  RFC 9112 section 9.3.1: "Connections can be closed at any
         * time, with or without intention"; section 9.6: a sender SHOULD say
         * "close" when it intends to close, which the request that may come in
         * the drain is answered with (keep_alive below), and a close at once
         * would risk that request being lost (tests/test_shutdown_keepalive.py).
         * A keep-alive timeout shorter than the drain stays (as there). */
        int wait = first ? MG_TIMER_HEADER : MG_TIMER_KEEPALIVE;
        /* A connection's first wait too, when the stop came before its coroutine
         * began (accepted in the stop's own batch: begin_graceful_stop only sees
         * coroutines that wait); its header_timeout starts with its first byte. */
        if (MG_UNLIKELY(w->stopping) &&
            (w->timers[wait].duration_ms <= 0 || w->timers[wait].duration_ms > MG_DRAIN_IDLE_MS))
            wait = MG_TIMER_DRAIN;
        timer_set(co, wait);
        int head = 0;
        /* a request begun on a keep-alive connection gets header_timeout from
         * its first byte, armed only if its head is not whole at once: most
         * heads come in one read, and a timer_set per request is not free */
        int header_timer_due = 0;
        for (;;) {
            mg_reqbuf *rb = co->conn->rb;
            if (rb && rb->len > 0) {
                if (co->idle) {
                    /* RFC 9112 section 2.2: empty lines before a request-line are ignored */
                    size_t skip = 0;
                    while (skip < rb->len && (rb->data[skip] == '\r' || rb->data[skip] == '\n'))
                        skip++;
                    if (skip)
                        buffer_consume(rb, 0, skip);
                    if (rb->len > 0) {
                        co->idle = 0; /* a request has begun: it has header_timeout to finish */
                        co->status = 0;
                        co->head_bytes = 0;
                        co->log_sent0 = co->conn->sent;
                        if (MG_UNLIKELY(w->alog != NULL))
                            co->log_start_us = alog_now_us();
                        header_timer_due = !first || wait == MG_TIMER_DRAIN;
                    }
                }
                if (rb->len > 0 && (head = http_find_head_end(rb->data, rb->len, &rb->scanned)) != 0)
                    break;
            }
            if (header_timer_due) {
                timer_set(co, MG_TIMER_HEADER);
                header_timer_due = 0;
            }
            ssize_t n = recv_more(co);
            if (n == -EINPROGRESS)
                return; /* parked: the fd waits in the worker's tables, no coroutine */
            if (n == 0 || n == -ECONNRESET) {
                /* closed between requests: nothing to log; mid-head: nginx's line,
                 * 400 with what came of the request line (tests/test_atk_logs.py) */
                if (!co->idle && co->conn->rb) {
                    co->status = 400;
                    /* the request's last step; no text: it has no request line parsed,
                     * and trace_req may still be the previous request's */
                    TRACE_TEXT(w, MG_EV_HANDLER_DONE, co, co->status, "");
                    log_request(co, NULL);
                }
                return;
            }
            if (n == -ETIMEDOUT) {
                if (!co->idle && co->conn->rb && conn_xstate(co)) {
                    mg_exchange x;
                    exchange_init(&x, co, 0, 0, 1);
                    send_error(&x, 408);
                    TRACE_TEXT(w, MG_EV_HANDLER_DONE, co, co->status, ""); /* (as above) */
                    log_request(co, NULL);
                    lingering_close(co);
                }
                return;
            }
            if (n < 0)
                return;
        }
        first = 0;
        co->conn->requests++;
        co->conn->park_deadline_ms = 0; /* a request: a keep-alive wait after it starts afresh */
        timer_clear(co);

        mg_reqbuf *rb = co->conn->rb;
        if (!conn_xstate(co))
            return; /* out of memory: the connection closes, as for a buffer */
        mg_request *req = &co->xs->req;
        int status = head < 0 ? -head : parse_http(rb->data, (size_t)head, req, &w->host_memo);
        if (MG_UNLIKELY(w->trace))
            trace_parse(co, req, status);
        if (status != MG_PARSE_OK) {
            /* A head we cannot read: its framing is unknown, so nothing after
             * it can be trusted as the next request.  Answer and close. */
            mg_exchange x;
            exchange_init(&x, co, 0, 0, 1);
            send_error(&x, status);
            TRACE_TEXT(w, MG_EV_HANDLER_DONE, co, status, co->trace_req);
            log_request(co, NULL);
            lingering_close(co);
            return;
        }

        /* -- THE CLIENT, once per request: with --proxy-headers, a trusted
         * peer's X-Forwarded-For / Forwarded (front.c); handlers and the
         * access log read it through conn_client() -- */
        mg_server *srv = w->srv;
        if (srv->cfg.proxy_headers)
            request_client(co, req);

        /* -- the body, if any: kept for a Python handler, else read and discarded -- */
        /* --keepalive-timeout 0 is keep-alive off, as nginx's keepalive_timeout 0 */
        int keep_alive = req->keep_alive && !w->stopping && w->timers[MG_TIMER_KEEPALIVE].duration_ms > 0;
        int python = srv->cfg.app_id >= 0;
        mg_exchange x; /* the request's answer (exchange.h) */
        exchange_init(&x, co, keep_alive, req->method_id == MG_M_HEAD, req->minor_version);
        const char *body;
        size_t body_len;
        int in_place;
        int bst = read_body(&x, req, (size_t)head, python, &body, &body_len, &in_place);
        timer_clear(co);
        if (bst != 0) {
            if (bst > 0) {
                x.keep_alive = 0;
                send_error(&x, bst);
            } else if (bst == -ECONNRESET) {
                co->status = 400; /* a client gone mid-body: nginx logs 400 ("client
                                     * prematurely closed connection"), not 499 */
            }
            /* the request's last step, as for the others (tests/test_atk_trace.py) */
            TRACE_TEXT(w, MG_EV_HANDLER_DONE, co, co->status, co->trace_req);
            log_request(co, req);
            if (bst > 0)
                lingering_close(co);
            return;
        }

        /* -- targets without a path, answered before any middleware sees them --
         * CONNECT asks us to be a tunnel, which this server is not: 501, as
         * for any method it does not implement (RFC 9110 sections 9.3.6 and
         * 15.6.2).  "OPTIONS *" asks about the server itself (section 9.3.7):
         * the static files' OPTIONS answer, whatever the path, is that. */
        int r = MG_MW_PASS;
        if (req->target_form == MG_FORM_AUTHORITY)
            r = send_error(&x, 501);
        else if (req->target_form == MG_FORM_ASTERISK)
            r = static_serve(&x, req);

        /* -- the middleware chain: the static files, a Python handler --
         * With a handler and a root, nginx's "try_files $uri $uri/ @app": a
         * path naming a file under the root (or a directory with an index)
         * is answered from disk, everything else goes to the handler; what
         * the handler passes on (an App's unknown path) is 404. */
        if (r == MG_MW_PASS && MG_UNLIKELY(srv->cfg.stats_endpoint))
            r = stats_serve(&x, req);
        if (r == MG_MW_PASS && python && srv->cfg.static_files)
            r = static_try(&x, req);
        if (r == MG_MW_PASS && python)
            r = python_request(&x, req, body, body_len);
        if (r == MG_MW_PASS)
            r = srv->cfg.static_files && !python ? static_serve(&x, req) : send_error(&x, 404);
        exchange_release(&x);
        keep_alive = x.keep_alive;
        free(co->body_buf);
        co->body_buf = NULL;
        TRACE_TEXT(w, MG_EV_HANDLER_DONE, co, co->status, co->trace_req);
        /* a handler that timed out took the request buffer with it (pycall_orphan):
         * its bytes are no longer ours to read, so that line says "-" for them */
        log_request(co, co->conn->rb == rb ? req : NULL);
        if (in_place)
            head += (int)body_len; /* the body was read in place: it goes with the head */
        if (r < 0)
            return;
        if (!keep_alive) {
            if (rb->len > (size_t)head)
                lingering_close(co); /* pipelined requests we will not answer */
            return;
        }

        /* -- pipelining: the bytes after this request start the next -- */
        buffer_consume(rb, 0, (size_t)head);
        rb->scanned = 0;
    }
}
