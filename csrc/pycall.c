/* pycall.c - the bridge to Python handlers: a coroutine yields its request, the scheduler runs Python.
 *
 * Theory of operation.  Python must never run on a coroutine's stack (CPython
 * checks its recursion and C stack depth against the thread's own stack), and
 * the C loops must not hold the GIL.  So:
 *
 *   coroutine (conn.c)        python_request(): fill rb->call from the parsed
 *                             request, coroutine_yield(MG_YIELD_PYTHON)
 *   worker loop (worker.c)    after schedule(): run_python() hands every pending
 *                             call to mg_py_batch(), a cffi extern "Python"
 *                             function: the GIL is taken once per batch, on
 *                             the worker thread's own stack
 *   Python (_bridge.py)       runs the handler; mg_call_start() / mg_call_chunk()
 *                             copy the response into the call's output buffer
 *   worker loop               add_to_ready() each coroutine of the batch
 *   coroutine                 sends the output in C (send_async); a streamed
 *                             body asks for the next piece with MG_PY_NEXT
 *
 * Copying the output means Python objects never have to outlive the call.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "http.h"

#define MG_PY_BATCH 64        /* calls handed to Python per GIL acquisition */
#define MG_OUT_INLINE 16384   /* output buffers of this size are pooled */

/* --------------------------------------------------------- output buffers */

static int out_reserve(mg_pycall *c, size_t extra)
{
    size_t need = c->_out_len + extra;
    if (need <= c->_out_cap)
        return 0;
    size_t cap = c->_out_cap ? c->_out_cap : MG_OUT_INLINE;
    while (cap < need)
        cap *= 2;
    char *p = realloc(c->_out, cap);
    if (!p)
        return -ENOMEM;
    c->_out = p;
    c->_out_cap = cap;
    return 0;
}

static void out_put(mg_pycall *c, const void *p, size_t n)
{
    memcpy(c->_out + c->_out_len, p, n);
    c->_out_len += n;
}

static void out_str(mg_pycall *c, const char *s)
{
    out_put(c, s, strlen(s));
}

static void out_dec(mg_pycall *c, uint64_t v, int base)
{
    c->_out_len += (size_t)format_u64(c->_out + c->_out_len, v, base);
}

/* Give a large output buffer back; keep a normal one for the next request. */
static void pycall_release(mg_pycall *c)
{
    if (c->_out_cap > MG_OUT_INLINE) {
        free(c->_out);
        c->_out = NULL;
        c->_out_cap = 0;
    }
    c->_out_len = 0;
}

/* ------------------------------------------------------ the Python side API */

int mg_call_header(mg_pycall *c, int i, const char **name, size_t *name_len, const char **value,
                   size_t *value_len)
{
    mg_coroutine *co = c->_co;
    mg_request *req = &co->rb->req;
    if (i < 0 || i >= req->num_headers)
        return -EINVAL;
    *name = req->headers[i].name.p;
    *name_len = req->headers[i].name.len;
    *value = req->headers[i].value.p;
    *value_len = req->headers[i].value.len;
    return 0;
}

static int no_body_status(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

int mg_call_start(mg_pycall *c, int status, const char *reason, size_t reason_len,
                  const char *headers, size_t headers_len, const char *body, size_t body_len,
                  int flags)
{
    mg_coroutine *co = c->_co;
    mg_worker *w = co->worker;

    if (c->_started || status < 200 || status > 999)
        return -EINVAL;
    c->_out_len = 0;
    if (out_reserve(c, 256 + reason_len + headers_len + body_len + 32) < 0)
        return -ENOMEM;
    int streaming = (flags & MG_RESP_STREAM) && !c->_head_only && !no_body_status(status);
    if (flags & MG_RESP_CLOSE)
        c->_keep_alive = 0;
    /* a streamed body of unknown length: chunked in HTTP/1.1, else ended by close */
    if (streaming && !(flags & MG_RESP_HAS_LENGTH)) {
        if (c->minor_version >= 1)
            c->_chunked = 1;
        else
            c->_keep_alive = 0;
    }

    out_str(c, "HTTP/1.1 ");
    out_dec(c, (uint64_t)status, 10);
    out_str(c, " ");
    if (reason_len)
        out_put(c, reason, reason_len);
    else
        out_str(c, http_reason(status));
    out_str(c, "\r\nServer: minginx-cffi\r\n");
    worker_refresh_date(w);
    out_put(c, w->date_hdr, (size_t)w->date_len);
    out_put(c, headers, headers_len);
    if (!(flags & MG_RESP_HAS_LENGTH) && !no_body_status(status)) {
        if (c->_chunked) {
            out_str(c, "Transfer-Encoding: chunked\r\n");
        } else if (!(flags & MG_RESP_STREAM)) {
            out_str(c, "Content-Length: ");
            out_dec(c, body_len, 10);
            out_str(c, "\r\n");
        }
    }
    out_str(c, c->_keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    c->_started = 1;
    co->status = status;
    c->more = streaming;
    w->stats.requests++;
    if (c->_head_only || no_body_status(status))
        return 0;
    if (streaming)
        return mg_call_chunk(c, body, body_len, 0);
    out_put(c, body, body_len);
    return 0;
}

int mg_call_chunk(mg_pycall *c, const char *data, size_t len, int last)
{
    if (!c->_started)
        return -EINVAL;
    if (out_reserve(c, len + 32) < 0)
        return -ENOMEM;
    if (c->_chunked && len > 0) {
        out_dec(c, len, 16);
        out_str(c, "\r\n");
        out_put(c, data, len);
        out_str(c, "\r\n");
    } else if (len > 0) {
        out_put(c, data, len);
    }
    if (last && c->_chunked)
        out_str(c, "0\r\n\r\n");
    c->more = !last;
    return 0;
}

/* ------------------------------------------------------------- the worker */

/* Called by the worker loop, on the worker thread's own stack. */
void run_python(mg_worker *w)
{
    mg_pycall *batch[MG_PY_BATCH];
    mg_coroutine *cos[MG_PY_BATCH];

    while (w->py_head) {
        int n = 0;
        while (w->py_head && n < MG_PY_BATCH) {
            mg_coroutine *co = w->py_head;
            w->py_head = co->next_ready;
            co->next_ready = NULL;
            cos[n] = co;
            batch[n++] = &co->rb->call;
        }
        w->py_tail = w->py_head ? w->py_tail : NULL;
        w->stats.py_batches++;
        w->stats.py_calls += (uint64_t)n;
        mg_py_batch(w->srv->cfg.app_id, batch, n);   /* takes the GIL once */
        for (int i = 0; i < n; i++)
            add_to_ready(w, cos[i]);
    }
}

/* ------------------------------------------------------- the coroutine side */

static void yield_to_python(mg_coroutine *co, int op)
{
    co->rb->call.op = op;
    coroutine_yield(co, MG_YIELD_PYTHON);
}

int python_request(mg_coroutine *co, mg_request *req, const char *body, size_t body_len,
                   int keep_alive)
{
    mg_worker *w = co->worker;
    mg_pycall *c = &co->rb->call;

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
    c->_chunked = 0;
    c->_keep_alive = keep_alive;
    c->_head_only = req->method_id == MG_M_HEAD;
    c->_out_len = 0;
    c->_co = co;
    if (!co->addr_known) {
        /* once per connection: the addresses do not change while it lives */
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        co->peer[0] = '\0';
        if (getpeername(co->fd, (struct sockaddr *)&sa, &sl) == 0) {
            if (sa.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&sa;
                inet_ntop(AF_INET, &in->sin_addr, co->peer, sizeof(co->peer));
                co->peer_port = ntohs(in->sin_port);
            } else if (sa.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, co->peer, sizeof(co->peer));
                co->peer_port = ntohs(in6->sin6_port);
            }
        }
        sl = sizeof(sa);
        if (getsockname(co->fd, (struct sockaddr *)&sa, &sl) == 0)
            co->server_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                             : ((struct sockaddr_in *)&sa)->sin_port);
        co->addr_known = 1;
    }
    memcpy(c->peer, co->peer, sizeof(c->peer));
    c->peer_port = co->peer_port;
    c->server_port = co->server_port;

    yield_to_python(co, MG_PY_START);
    if (c->fallthrough && !c->_started)
        return 1;
    if (!c->_started) {
        /* the handler failed in a way Python could not even report: 500 */
        send_error(co, 500, 0, c->_head_only);
        return -1;
    }
    for (;;) {
        ssize_t r = send_async(co, c->_out, c->_out_len);
        c->_out_len = 0;
        if (r < 0) {
            if (c->more)
                yield_to_python(co, MG_PY_ABORT);   /* close the iterator */
            pycall_release(c);
            return -1;
        }
        if (!c->more)
            break;
        yield_to_python(co, MG_PY_NEXT);   /* sets more = 0 at the end, or on error */
    }
    pycall_release(c);
    return c->_keep_alive ? 0 : 2;
}
