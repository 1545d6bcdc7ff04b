/* pycall.c - the bridge to Python handlers: a coroutine yields its request, the scheduler runs Python.
 *
 * Theory of operation.  Python must never run on a coroutine's stack (CPython
 * checks its recursion and C stack depth against the thread's own stack), and
 * the C loops must not hold the GIL.  So:
 *
 *   coroutine (conn.c)        python_request(): fill co->xs->call from the parsed
 *                             request, coroutine_yield(MG_YIELD_PYTHON)
 *   worker loop (worker.c)    after schedule(): run_python() hands every pending
 *                             call to mg_py_batch(), a cffi extern "Python"
 *                             function: the GIL is taken once per batch, on
 *                             the worker thread's own stack
 *   Python (_bridge.py)       runs the handler; mg_call_start() / mg_call_chunk()
 *                             copy the status, fields and body into the call
 *   worker loop               add_to_ready() each coroutine of the batch
 *   coroutine                 answers through its exchange (exchange_respond,
 *                             exchange_body); a streamed body asks for the
 *                             next piece with MG_PY_NEXT
 *
 * Copying the output means Python objects never have to outlive the call.
 *
 * Deferred rounds (--threads N: a handler thread answers, not the worker's
 * stack).  mg_py_batch sets c->deferred and queues the call; run_python()
 * leaves the coroutine parked (MG_YIELD_PYTHON) with the MG_TIMER_PYTHON
 * timer armed.  The handler thread fills the answer as above and calls
 * mg_call_post(): the call joins the worker's completion list and the
 * worker's eventfd fires; drain_posts() resumes the coroutine.  So nothing a
 * handler thread touches belongs to the worker alone: mg_call_start only
 * checks and copies (the status, the fields through fields_check(), the body
 * pieces: never wire bytes), the coroutine answers through its exchange
 * (exchange.h) on the worker's thread, with the worker's Date and counters,
 * and the call finds the request through the buffer it lives in, never
 * through the coroutine.
 *
 * A round not posted within --handler-timeout: the coroutine wakes on its
 * timer, hands its request buffer and body (which the handler thread still
 * reads and writes) over as an orphan, answers 504 from its own stack and
 * closes.  The late post frees the orphan (after one more round to close a
 * stream's iterator) and the answer is dropped.  Tested by
 * tests/test_threads.py.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "http.h"
#include "response.h"
#include "exchange.h"

#define MG_PY_BATCH   64    /* calls handed to Python per GIL acquisition */
#define MG_OUT_INLINE 16384 /* output buffers of this size are pooled */

/* Give a large output buffer back; keep a normal one for the next request. */
static void pycall_release(mg_pycall *c)
{
    if (c->_out.cap > MG_OUT_INLINE)
        buf_free(&c->_out);
    c->_out.len = 0;
    c->_out.err = 0;
}

/* The request state a call lives in: an orphan's coroutine no longer holds it. */
static mg_xstate *call_xstate(mg_pycall *c)
{
    return (mg_xstate *)(void *)((char *)c - offsetof(mg_xstate, call));
}

/* ------------------------------------------------------ the Python side API */

int mg_call_header(mg_pycall *c, int i, const char **name, size_t *name_len, const char **value,
                   size_t *value_len)
{
    mg_request *req = &call_xstate(c)->req;
    if (i < 0 || i >= req->num_headers)
        return -EINVAL;
    *name = req->headers[i].name.p;
    *name_len = req->headers[i].name.len;
    *value = req->headers[i].value.p;
    *value_len = req->headers[i].value.len;
    return 0;
}

_Static_assert(MG_HEADERS_CAP >= MG_MAX_HEADER_BYTES,
               "the fields without their \": \" and CRLF always fit MG_HEADERS_CAP");

int mg_call_headers(mg_pycall *c, char *out, size_t cap, int lower)
{
    mg_request *req = &call_xstate(c)->req;
    size_t at = 0;
    for (int i = 0; i < req->num_headers; i++) {
        const mg_header *h = &req->headers[i];
        if (cap - at < h->name.len + h->value.len + 2)
            return -ENOSPC;
        if (lower) {
            for (size_t k = 0; k < h->name.len; k++) {
                unsigned char ch = (unsigned char)h->name.p[k];
                out[at + k] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
            }
        } else {
            memcpy(out + at, h->name.p, h->name.len);
        }
        at += h->name.len;
        out[at++] = '\0';
        memcpy(out + at, h->value.p, h->value.len);
        at += h->value.len;
        out[at++] = '\0';
    }
    return (int)at;
}

/* The body bytes that may still go out under the handler's Content-Length.
 * More than it declared is cut (the surplus would read as the next response
 * on a keep-alive connection), and the connection closes after it. */
static size_t within_length(mg_pycall *c, size_t len)
{
    if (c->length < 0 || c->sent + len <= (uint64_t)c->length)
        return len;
    c->error = "the body is longer than its Content-Length: cut to it, connection closed";
    c->_keep_alive = 0;
    return (size_t)((uint64_t)c->length - c->sent);
}

int mg_call_start(mg_pycall *c, int status, const char *reason, size_t reason_len, const char *headers,
                  size_t headers_len, int n, const char *body, size_t body_len, int flags)
{
    mg_buf *out = &c->_out;
    mg_fields_info info;
    int r;

    c->error = NULL;
    if (c->_started) {
        c->error = "the response was already started";
        return -EINVAL;
    }
    if ((r = head_check_status(status, reason, reason_len, &c->error)) < 0)
        return r;
    out->len = 0;
    out->err = 0;
    if (buf_reserve(out, reason_len + headers_len + ((flags & MG_RESP_STREAM) ? 0 : body_len) + 32) < 0)
        return -ENOMEM;
    buf_put(out, reason, reason_len);
    if ((r = fields_check(out, headers, headers_len, n, &info, &c->error)) < 0) {
        out->len = 0;
        return r;
    }
    c->_reason_len = reason_len;
    c->_body_at = out->len;
    c->_nfields = info.kept;

    int no_body = status_has_no_body(status);
    int streaming = (flags & MG_RESP_STREAM) && !c->_head_only && !no_body;
    if (flags & MG_RESP_CLOSE || info.close)
        c->_keep_alive = 0;
    /* the length the exchange frames the body with: the declared one, a
     * single body's own, or -1 for a stream (chunked, or close-delimited) */
    c->length = no_body ? -1 : info.length;
    if (!no_body && c->length < 0 && !(flags & MG_RESP_STREAM))
        c->length = (int64_t)body_len;
    c->sent = 0;
    c->_no_body = no_body || c->_head_only;
    /* a single body that is not its declared length, or a stream whose first
     * piece is already longer: known now, so say close (the surplus is cut
     * and the connection closes after it) */
    if (!c->_no_body && (uint64_t)c->length != body_len &&
        (!(flags & MG_RESP_STREAM) || (c->length >= 0 && body_len > (uint64_t)c->length)))
        c->_keep_alive = 0;
    if (out->err)
        return -ENOMEM;
    c->_started = 1;
    c->_status = status; /* the coroutine responds with it (python_request) */
    c->_fresh = 1;
    c->_last = 0;
    c->more = streaming;
    if (c->_no_body) {
        c->_last = 1;
        return 0;
    }
    return mg_call_chunk(c, body, body_len, !streaming);
}

int mg_call_chunk(mg_pycall *c, const char *data, size_t len, int last)
{
    mg_buf *out = &c->_out;
    if (!c->_started)
        return -EINVAL;
    if (c->_no_body) {
        c->more = 0;
        c->_last = 1;
        return 0;
    }
    size_t n = within_length(c, len);
    int cut = n < len;
    if (buf_reserve(out, n) < 0)
        return -ENOMEM;
    if (n > 0)
        buf_put(out, data, n);
    c->sent += n;
    if (cut) {
        c->more = 0; /* the stream is over: Python closes the iterator */
        return 1;
    }
    if (last && c->length >= 0 && c->sent < (uint64_t)c->length) {
        /* short: the client must see a close, not a following response */
        c->error = "the body is shorter than its Content-Length: connection closed";
        c->_keep_alive = 0;
        c->more = 0;
        return 1;
    }
    c->_last = last; /* ended whole: the exchange ends the body (a chunked one's last chunk) */
    c->more = !last;
    return 0;
}

/* ------------------------------------------------------------- the worker */

/* A round is answered (inline, or posted back): resume its coroutine, or
 * finish with an orphan.  Worker thread only. */
static void call_done(mg_worker *w, mg_pycall *c)
{
    if (MG_UNLIKELY(c->_orphan)) {
        if (c->more) {
            /* a late stream: one more round, in Python, closes its iterator */
            c->op = MG_PY_ABORT;
            c->more = 0;
            c->_next_post = w->py_orphans;
            w->py_orphans = c;
            return;
        }
        pycall_free_orphan(w, c);
        return;
    }
    add_to_ready(w, c->_co);
}

/* Called by the worker loop, on the worker thread's own stack. */
void run_python(mg_worker *w)
{
    mg_pycall *batch[MG_PY_BATCH];

    while (w->py_head || w->py_orphans) {
        int n = 0;
        while (w->py_head && n < MG_PY_BATCH) {
            mg_coroutine *co = w->py_head;
            w->py_head = co->next_ready;
            co->next_ready = NULL;
            batch[n++] = &co->xs->call;
        }
        w->py_tail = w->py_head ? w->py_tail : NULL;
        while (w->py_orphans && n < MG_PY_BATCH) {
            mg_pycall *c = w->py_orphans;
            w->py_orphans = c->_next_post;
            c->_next_post = NULL;
            c->deferred = 0;
            batch[n++] = c;
        }
        w->stats.py_batches++;
        w->stats.py_calls += (uint64_t)n;
        if (MG_UNLIKELY(w->trace))
            for (int i = 0; i < n; i++) /* each call's coroutine: an orphan's is gone */
                if (!batch[i]->_orphan)
                    TRACE(w, MG_EV_RUN_PYTHON, (mg_coroutine *)batch[i]->_co,
                          ((mg_coroutine *)batch[i]->_co)->conn->fd, n);
        mg_py_batch(w->srv->cfg.app_id, batch, n); /* takes the GIL once */
        for (int i = 0; i < n; i++) {
            mg_pycall *c = batch[i];
            if (c->deferred) {
                /* a handler thread has it: park until mg_call_post */
                c->_pending = 1;
                w->py_inflight++;
                if (!c->_orphan) {
                    if (c->op == MG_PY_START || !w->srv->cfg.handler_timeout_head)
                        timer_set(c->_co, MG_TIMER_PYTHON);
                    /* the hang-up came with the request (one edge: EPOLLIN|EPOLLRDHUP,
                     * kept in woken_by since the last io_park): no later event will tell
                     * wake_fd, so tell Python now (tests/test_asgi.py:
                     * test_a_client_that_sends_and_closes_at_once_is_http_disconnect) */
                    if (((mg_coroutine *)c->_co)->woken_by & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                        mg_py_gone(w->srv->cfg.app_id, w->index, c->id);
                    else
                        w->be->watch_hangup(c->_co); /* epoll's wake_fd hears it; uring polls */
                }
            } else {
                call_done(w, c);
            }
        }
    }
}

int mg_call_post(mg_pycall *c)
{
    mg_worker *w = c->_worker;
    pthread_mutex_lock(&w->post_lock);
    int was_empty = w->post_head == NULL;
    c->_next_post = NULL;
    if (w->post_tail)
        ((mg_pycall *)w->post_tail)->_next_post = c;
    else
        w->post_head = c;
    w->post_tail = c;
    pthread_mutex_unlock(&w->post_lock);
    if (was_empty) {
        /* the worker clears the eventfd before it takes the list, so a post
         * that finds the list empty always finds the worker needing a wake */
        uint64_t one = 1;
        while (write(w->post_fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    return 0;
}

int mg_call_post_many(mg_pycall **calls, int n)
{
    for (int i = 0; i < n; i++)
        mg_call_post(calls[i]);
    return 0;
}

void drain_posts(mg_worker *w)
{
    uint64_t count;
    while (read(w->post_fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&w->post_lock);
    mg_pycall *c = w->post_head;
    w->post_head = w->post_tail = NULL;
    pthread_mutex_unlock(&w->post_lock);
    while (c) {
        mg_pycall *next = c->_next_post;
        c->_next_post = NULL;
        c->_pending = 0;
        w->py_inflight--;
        if (!c->_orphan) {
            mg_coroutine *co = c->_co;
            timer_clear(co);
            TRACE(w, MG_EV_WAKE_PYTHON, co, co->conn->fd, c->op);
        }
        call_done(w, c);
        c = next;
    }
}

void pycall_orphan(mg_coroutine *co)
{
    mg_pycall *c = &co->xs->call;
    c->_orphan = 1;
    c->_co = NULL;
    c->_body_buf = co->body_buf; /* c->body may point into it */
    co->body_buf = NULL;
    co->xs->orphan_rb = co->conn->rb; /* the request's views (and c->body) point into it */
    co->conn->rb = NULL;
    co->xs = NULL;
}

void pycall_free_orphan(mg_worker *w, mg_pycall *c)
{
    free(c->_body_buf);
    c->_body_buf = NULL;
    c->_orphan = 0;
    pycall_release(c);
    mg_xstate *xs = call_xstate(c);
    if (xs->orphan_rb)
        reqbuf_put(w, xs->orphan_rb);
    xstate_put(w, xs);
}

/* ------------------------------------------------------- the coroutine side */

/* Returns 0 when Python answered; -ETIMEDOUT when a deferred round outlived
 * --handler-timeout: the call is an orphan now (co->xs and co->conn->rb are gone), and the
 * caller must not touch it again. */
static int yield_to_python(mg_coroutine *co, int op)
{
    mg_pycall *c = &co->xs->call;
    c->op = op;
    c->deferred = 0;
    coroutine_yield(co, MG_YIELD_PYTHON);
    co->worker->be->unwatch_hangup(co); /* the round is over: its hang-up poll too */
    if (MG_LIKELY(!c->_pending))
        return 0;
    mg_worker *w = co->worker;
    w->stats.handler_timeouts++;
    mg_log("minginx-cffi: handler for %.*s %.*s still running after %lld ms (%s): connection closed, "
           "its answer will be dropped",
           c->method_len, c->method, c->path_len, c->path, (long long)w->timers[MG_TIMER_PYTHON].duration_ms,
           op == MG_PY_START ? "504 sent" : "mid-response");
    pycall_orphan(co);
    return -ETIMEDOUT;
}

/* The 504 for a handler that timed out (RFC 9110 section 15.6.5), its head
 * in a buffer of our own: the request buffer went to the handler thread. */
static int send_gateway_timeout(mg_exchange *x)
{
    static const char body[] = "504 Gateway Timeout: the handler did not answer in time\n";
    static const mg_field ctype = MG_FIELD_LIT("Content-Type", "text/plain; charset=utf-8");
    char mem[512];
    exchange_init_mem(x, x->co, mem, sizeof(mem));
    x->keep_alive = 0;
    mg_head h = {.status = 504,
                 .reason = "Gateway Timeout",
                 .reason_len = 15,
                 .fields = &ctype,
                 .nfields = 1,
                 .length = sizeof(body) - 1};
    if (exchange_respond(x, &h) == 0)
        (void)exchange_body(x, body, sizeof(body) - 1, 1);
    return MG_MW_BROKEN;
}

/* The round's answer through the exchange: the head once (the round
 * mg_call_start ran), then the round's body piece; last ends the body. */
static int answer_round(mg_exchange *x, mg_pycall *c)
{
    size_t at = 0;
    if (c->_fresh) {
        c->_fresh = 0;
        if (!c->_keep_alive)
            x->keep_alive = 0;
        mg_head h = {.status = c->_status,
                     .reason = c->_out.p,
                     .reason_len = c->_reason_len,
                     .block = c->_out.p + c->_reason_len,
                     .block_len = c->_body_at - c->_reason_len,
                     .block_n = c->_nfields,
                     .length = c->length};
        at = c->_body_at;
        if (exchange_respond(x, &h) < 0)
            return -1;
    }
    int r = exchange_body(x, c->_out.p + at, c->_out.len - at, !c->more && c->_last);
    c->_out.len = 0;
    return r;
}

int python_request(mg_exchange *x, mg_request *req, const char *body, size_t body_len)
{
    mg_coroutine *co = x->co;
    mg_worker *w = co->worker;
    mg_pycall *c = &co->xs->call;

    c->id = ++w->next_request_id;
    c->worker = w->index;
    c->method = req->method.p;
    c->method_len = (int)req->method.len;
    c->path = req->path.p;
    c->path_len = (int)req->path.len;
    c->query = req->query.p;
    c->query_len = (int)req->query.len;
    c->body = body;
    c->body_len = body_len;
    c->minor_version = req->minor_version;
    c->num_headers = req->num_headers;
    c->fallthrough = 0;
    c->more = 0;
    c->_started = 0;
    c->error = NULL;
    c->length = -1;
    c->sent = 0;
    c->_last = 0;
    c->_no_body = 0;
    c->_keep_alive = x->keep_alive;
    c->_head_only = x->head_only;
    c->_out.len = 0;
    c->_out.err = 0;
    c->_co = co;
    c->_worker = w;
    c->_fresh = 0;
    c->_pending = 0;
    c->_orphan = 0;
    c->_next_post = NULL;
    c->_body_buf = NULL;
    /* the client as the access log sees it too (front.c: request_client) */
    const char *client = conn_client(co, &c->peer_port, &c->https);
    memcpy(c->peer, client, sizeof(c->peer));
    c->server_port = co->conn->server_port;

    if (yield_to_python(co, MG_PY_START) < 0)
        return send_gateway_timeout(x);
    if (c->fallthrough && !c->_started)
        return MG_MW_PASS;
    if (!c->_started) {
        /* the handler failed in a way Python could not even report: 500; unless
         * the client has hung up, when there is nobody to answer (nginx logs 499) */
        if (!(co->woken_by & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
            x->keep_alive = 0;
            send_error(x, 500);
        }
        return MG_MW_BROKEN;
    }
    for (;;) {
        /* a write that did not fit: what the buffer holds is not a response;
         * or a send failed */
        if (c->_out.err || answer_round(x, c) < 0) {
            if (c->more && yield_to_python(co, MG_PY_ABORT) < 0) /* close the iterator */
                return MG_MW_BROKEN;
            pycall_release(c);
            return MG_MW_BROKEN;
        }
        if (!c->more)
            break;
        if (yield_to_python(co, MG_PY_NEXT) < 0) /* sets more = 0 at the end, or on error */
            return MG_MW_BROKEN;                 /* timed out: the call is the pool's until it posts */
        if (MG_UNLIKELY(c->more && c->_out.len == 0 && !c->_out.err)) {
            /* a NEXT that produced nothing yet wants another round: asking
             * again could go on forever (each round is cheap, so it would
             * spin), so the stream is cut.  _dispatch.next_piece never
             * returns an empty piece; this guards the contract itself.
             * Tested by tests/test_atk_response.py (an iterator that raises
             * a BaseException on every __next__). */
            mg_log("minginx-cffi: a streamed response made no progress; closing the connection");
            if (yield_to_python(co, MG_PY_ABORT) < 0)
                return MG_MW_BROKEN;
            pycall_release(c);
            return MG_MW_BROKEN;
        }
    }
    pycall_release(c);
    if (!c->_keep_alive)
        x->keep_alive = 0;
    return MG_MW_DONE;
}
