/* h1.c - the exchange over HTTP/1.1: the only file that writes HTTP/1.1 (status line, framing, chunking, keep-alive).
 *
 * Theory of operation.  exchange_respond() writes the whole head into one
 * buffer in a fixed order, as nginx's ngx_http_header_filter and h2o's
 * flatten_headers do: the status line, Server, Date (a cached line per
 * second, mg_date_cache), the fields (the server's own, then --header's,
 * then a handler's checked block), the framing and Connection.  The framing
 * is decided here from the response's state, never from its fields:
 *
 *   no body (1xx, 204, 304)             none (RFC 9110 8.6, 6.4.1)
 *   a known length                      Content-Length
 *   unknown, HEAD                       none (the length is not known)
 *   unknown, HTTP/1.1                   Transfer-Encoding: chunked
 *   unknown, HTTP/1.0                   none: the close ends the body (keep-alive off)
 *
 * The head is not sent by itself: it leaves with the first body piece (one
 * sendmsg), the first piece of a file (under TCP_CORK), or at the end.  A
 * file's 200 keep-alive head is kept (mg_head_memo, exchange_respond_memo)
 * and reused with its Date rewritten once a second; a small file's kept head
 * sits right before its bytes, so head and body are one send() of one buffer
 * (bench/per_request.py: building that head was a fifth of a keep-alive
 * request's instructions).
 */
#include "exchange.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "cache.h"
#include "http.h"
#include "response.h"

#define SERVER_LINE "Server: minginx-cffi\r\n"

/* The framing of a response's body. */
typedef enum {
    MG_FRAME_NONE = 0, /* no body and no framing field (1xx, 204, 304, a HEAD of a stream) */
    MG_FRAME_LENGTH,   /* Content-Length: length */
    MG_FRAME_CHUNKED,  /* Transfer-Encoding: chunked */
    MG_FRAME_CLOSE,    /* the body ends when the connection closes (HTTP/1.0 stream) */
    MG_FRAME_MAX
} mg_framing;

/* ------------------------------------------------------------- the Date */

void date_set(mg_date_cache *d, time_t now)
{
    d->sec = now;
    memcpy(d->line, "Date: ", 6);
    int n = http_date(d->line + 6, now);
    memcpy(d->line + 6 + n, "\r\n", 2);
    d->len = 6 + n + 2;
}

/* ------------------------------------------------------------- the head */

static void status_line(mg_buf *b, int status, const char *reason, size_t reason_len)
{
    if (status == 200 && !(reason && reason_len)) { /* nearly every response */
        buf_put(b, "HTTP/1.1 200 OK\r\n", 17);
        return;
    }
    buf_put(b, "HTTP/1.1 ", 9);
    buf_u64(b, (uint64_t)(unsigned)status, 10);
    buf_put(b, " ", 1);
    if (reason && reason_len)
        buf_put(b, reason, reason_len);
    else
        buf_str(b, http_reason(status));
    buf_put(b, "\r\n", 2);
}

static void field_line(mg_buf *b, const char *name, size_t nl, const char *value, size_t vl)
{
    buf_put(b, name, nl);
    buf_put(b, ": ", 2);
    buf_put(b, value, vl);
    buf_put(b, "\r\n", 2);
}

static void field_lines(mg_buf *b, const mg_field *f, int n)
{
    for (int i = 0; i < n; i++)
        field_line(b, f[i].name, f[i].name_len, f[i].value, f[i].value_len);
}

/* A block fields_check() wrote: n "name\0value\0" pairs, well formed. */
static void block_lines(mg_buf *b, const char *p, size_t len, int n)
{
    const char *end = p + len;
    for (int i = 0; i < n && p < end; i++) {
        size_t nl = strlen(p);
        const char *v = p + nl + 1;
        size_t vl = strlen(v);
        field_line(b, p, nl, v, vl);
        p = v + vl + 1;
    }
}

static int choose_framing(mg_exchange *x, const mg_head *h)
{
    if (status_has_no_body(h->status))
        return MG_FRAME_NONE;
    if (h->length >= 0)
        return MG_FRAME_LENGTH;
    if (x->head_only)
        return MG_FRAME_NONE;
    if (x->minor_version >= 1)
        return MG_FRAME_CHUNKED;
    x->keep_alive = 0; /* HTTP/1.0 has no chunked coding: the close ends the body */
    return MG_FRAME_CLOSE;
}

/* Status, head bytes, the request count: the access log's fields, kept here once. */
static void account(mg_exchange *x, int status, size_t head_len)
{
    x->status = status;
    x->head_bytes = head_len;
    if (x->co) {
        x->co->status = status;
        x->co->head_bytes = head_len;
        x->w->stats.requests++;
    }
}

/* The buffer the head goes into: the request's out area (co->xs) unless the
 * exchange was given one (exchange_init_mem, exchange_init_detached). */
static mg_buf *out_buf(mg_exchange *x)
{
    mg_buf *b = &x->_out;
    if (!b->p && !b->_heap)
        buf_fixed(b, x->co->xs->out, sizeof(x->co->xs->out));
    return b;
}

static int respond(mg_exchange *x, const mg_head *h, size_t *date_at)
{
    mg_worker *w = x->w;
    mg_buf *b = out_buf(x);

    /* A graceful stop began while this request was in flight: its response is the
     * connection's last, and says so (RFC 9112 section 9.6: a server that means to
     * close sends "close"), not a keep-alive the drain then breaks. */
    if (MG_UNLIKELY(w->stopping))
        x->keep_alive = 0;

    if (h->block_len) {
        /* a handler's head may be larger than the fixed area: grow */
        size_t need = 256 + h->reason_len + h->block_len + 2 * (size_t)h->block_n;
        if (b->cap - b->len < need && !b->_heap) {
            buf_growable(b);
            if (buf_reserve(b, need) < 0) {
                mg_log("minginx-cffi: out of memory for a response head; closing");
                return -1;
            }
        }
    }
    int framing = choose_framing(x, h);
    status_line(b, h->status, h->reason, h->reason_len);
    buf_put(b, SERVER_LINE, sizeof(SERVER_LINE) - 1);
    date_refresh(&w->date, w->wall_sec);
    *date_at = b->len;
    buf_put(b, w->date.line, (size_t)w->date.len);
    field_lines(b, h->fields, h->nfields);
    field_lines(b, h->added, h->nadded);
    if (h->block_len)
        block_lines(b, h->block, h->block_len, h->block_n);
    switch (framing) {
    case MG_FRAME_NONE:
    case MG_FRAME_CLOSE: break;
    case MG_FRAME_LENGTH:
        buf_put(b, "Content-Length: ", 16);
        buf_u64(b, (uint64_t)h->length, 10);
        buf_put(b, "\r\n", 2);
        break;
    case MG_FRAME_CHUNKED: buf_put(b, "Transfer-Encoding: chunked\r\n", 28); break;
    default: mg_log("minginx-cffi: respond: framing %d is not an mg_framing", framing); abort();
    }
    if (x->keep_alive)
        buf_put(b, "Connection: keep-alive\r\n\r\n", 26);
    else
        buf_put(b, "Connection: close\r\n\r\n", 21);
    x->_framing = framing;
    x->_head = b->p;
    x->_head_len = b->len;
    x->_memo = NULL;
    account(x, h->status, b->len);
    if (MG_UNLIKELY(b->err)) {
        /* a head that did not fit is never sent: the connection closes instead */
        mg_log("minginx-cffi: a response head did not fit in %zu bytes; closing", b->cap);
        x->_head = NULL;
        return -1;
    }
    return 0;
}

int exchange_respond(mg_exchange *x, const mg_head *h)
{
    size_t date_at;
    return respond(x, h, &date_at);
}

/* Keep the head just written as memo's (see exchange_respond_memo). */
static void memo_keep(mg_exchange *x, mg_head_memo *m, char *room, size_t date_at)
{
    size_t len = x->_head_len;
    if (room && len <= MG_HEAD_ROOM) {
        m->head = room - len;
        m->in_room = 1;
    } else if (!(m->head = malloc(len))) {
        return;
    }
    memcpy(m->head, x->_head, len);
    m->len = (int)len;
    m->date_at = (int)date_at;
    m->sec = x->w->date.sec;
}

/* That head is the same bytes for every 200 keep-alive response of the
 * representation but its Date line (status line, Server, Date, the file's
 * fields, --header fields, Content-Length, Connection): nginx caches its
 * Date string the same way, and h2o its whole header block.  A send that
 * blocks halfway must not see the Date change under it: while one is parked
 * (busy), a new second builds its head afresh instead. */
/* A new second for a kept head: its Date rewritten, unless a send from it is
 * parked (or the line is not the kept length).  1: the head is current. */
static int memo_redate(mg_head_memo *m, const mg_date_cache *d)
{
    if (m->busy || d->len != MG_DATE_LINE_LEN)
        return 0;
    memcpy(m->head + m->date_at, d->line, MG_DATE_LINE_LEN);
    m->sec = d->sec;
    return 1;
}

/* A kept head apart from its file's bytes (a large file, a long head): copied
 * into the out area to be sent from there, so no Date rewrite can reach it. */
static __attribute__((noinline)) void memo_copy(mg_exchange *x, mg_head_memo *m)
{
    mg_buf *b = out_buf(x);
    buf_put(b, m->head, (size_t)m->len);
    x->_head = b->p;
    x->_memo = NULL;
}

/* Build the head afresh; keep it in m when it is a 200 keep-alive one and m
 * has none yet. */
static __attribute__((noinline)) int respond_keep(mg_exchange *x, const mg_head *h, mg_head_memo *m,
                                                  char *room)
{
    size_t date_at;
    int r = respond(x, h, &date_at);
    if (r == 0 && m && !m->head && h->status == 200 && x->keep_alive && x->w->date.len == MG_DATE_LINE_LEN)
        memo_keep(x, m, room, date_at);
    return r;
}

/* exchange_respond_memo's other cases: a new second, a kept head apart from
 * its file's bytes, none kept yet, or not a 200 keep-alive. */
static __attribute__((noinline)) int respond_memo_slow(mg_exchange *x, const mg_head *h, mg_head_memo *m,
                                                       char *room)
{
    mg_worker *w = x->w;
    if (m && m->head && h->status == 200 && x->keep_alive) {
        date_refresh(&w->date, w->wall_sec);
        if (m->sec == w->date.sec || memo_redate(m, &w->date)) {
            x->_framing = MG_FRAME_LENGTH;
            x->_head_len = (size_t)m->len;
            x->_head = m->head;
            x->_memo = m;
            if (!m->in_room)
                memo_copy(x, m);
            account(x, 200, (size_t)m->len);
            return 0;
        }
    }
    return respond_keep(x, h, m, room);
}

int exchange_respond_memo(mg_exchange *x, const mg_head *h, mg_head_memo *m, char *room)
{
    mg_worker *w = x->w;

    /* the common case, in a few loads: its kept head, in its file's room, of
     * the second the worker's clock says (w->wall_sec, read once a wakeup) */
    if (MG_UNLIKELY(w->stopping))
        x->keep_alive = 0; /* the last response of a graceful stop (respond says why) */
    if (MG_LIKELY(m && m->head && m->in_room && h->status == 200 && x->keep_alive && m->sec == w->wall_sec &&
                  w->date.sec == w->wall_sec)) {
        x->_framing = MG_FRAME_LENGTH;
        x->_head_len = (size_t)m->len;
        x->_head = m->head;
        x->_memo = m;
        account(x, 200, (size_t)m->len);
        return 0;
    }
    return respond_memo_slow(x, h, m, room);
}

void exchange_memo_free(mg_head_memo *m)
{
    if (!m->in_room)
        free(m->head);
    m->head = NULL;
    m->in_room = 0;
}

/* ------------------------------------------------------------- the body */

/* exchange_body, but for a kept head right before its piece. */
static __attribute__((noinline)) int body_send(mg_exchange *x, const void *piece, size_t len, int last)
{
    struct iovec iov[4];
    int n = 0;
    char size_line[24];
    int chunked = x->_framing == MG_FRAME_CHUNKED;

    if (x->head_only || x->_framing == MG_FRAME_NONE)
        len = 0;
    if (MG_UNLIKELY(!x->co)) { /* detached: the bytes gather after the head */
        if (len)
            buf_put(&x->_out, piece, len);
        x->_head = NULL;
        return x->_out.err ? -1 : 0;
    }
    if (x->_head)
        iov[n++] = (struct iovec){(void *)x->_head, x->_head_len};
    if (len && chunked) {
        size_t k = (size_t)format_u64(size_line, len, 16);
        size_line[k++] = '\r';
        size_line[k++] = '\n';
        iov[n++] = (struct iovec){size_line, k};
        iov[n++] = (struct iovec){(void *)piece, len};
        iov[n++] = last ? (struct iovec){"\r\n0\r\n\r\n", 7} : (struct iovec){"\r\n", 2};
    } else if (len) {
        iov[n++] = (struct iovec){(void *)piece, len};
    } else if (chunked && last) {
        iov[n++] = (struct iovec){"0\r\n\r\n", 5};
    }
    mg_head_memo *m = x->_memo; /* the head is a kept one (a HEAD request's) */
    x->_head = NULL;
    x->_memo = NULL;
    if (n == 0)
        return 0; /* a send of 0 bytes would park for a writability that never comes */
    if (m)
        m->busy++;
    ssize_t r = n == 1 ? send_async(x->co, iov[0].iov_base, iov[0].iov_len) : sendv_async(x->co, iov, n);
    if (m)
        m->busy--;
    return r < 0 ? -1 : 0;
}

int exchange_body(mg_exchange *x, const void *piece, size_t len, int last)
{
    mg_head_memo *m = x->_memo;
    const char *head = x->_head;
    if (MG_LIKELY(m && head && len && head + x->_head_len == (const char *)piece && !x->head_only)) {
        /* a kept head right before its file's bytes: one send() of one buffer,
         * busy so that a new second does not rewrite its Date under a parked send */
        size_t n = x->_head_len + len;
        x->_head = NULL;
        x->_memo = NULL;
        m->busy++;
        ssize_t r = send_async(x->co, head, n);
        m->busy--;
        return r < 0 ? -1 : 0;
    }
    return body_send(x, piece, len, last);
}

int exchange_file(mg_exchange *x, int fd, off_t off, size_t len)
{
    mg_coroutine *co = x->co;
    if (x->head_only || len == 0 || !co)
        return exchange_end(x);
    /* TCP_CORK around the head and the first piece of the file, so they
     * leave in full segments together; then uncork and send the rest.
     * Holding the cork for the whole of a large file, as nginx's tcp_nopush
     * does, halves the throughput on loopback (1 MiB: 2.6 GB/s corked
     * throughout, 5-6 GB/s uncorked after the first 256 KiB, the way
     * lighttpd does it; bench/run.py --workload 1mib). */
    size_t head_len = x->_head ? x->_head_len : 0;
    size_t first = len;
    if (first > MG_CORK_BYTES - head_len)
        first = MG_CORK_BYTES - head_len;
    set_cork(co, 1);
    if (x->_head && exchange_body(x, NULL, 0, 0) < 0)
        return -1;
    ssize_t n = sendfile_async(co, fd, off, first);
    set_cork(co, 0);
    if (n == (ssize_t)first && first < len) {
        ssize_t m = sendfile_async(co, fd, off + (off_t)first, len - first);
        n = m < 0 ? m : n + m;
    }
    if (n != (ssize_t)len)
        return -1; /* reset by the peer, or the file shrank: the length was promised */
    return 0;
}

/* RFC 9110 15.2: never to an HTTP/1.0 client (the caller checks). */
int exchange_continue(mg_exchange *x)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (send_async(x->co, cont, sizeof(cont) - 1) < 0)
        return -1;
    x->co->log_sent0 = x->co->conn->sent; /* an interim response: not this response's bytes */
    return 0;
}

/* ------------------------------------------------------------ exchanges */

static void init(mg_exchange *x, mg_coroutine *co, mg_worker *w, char *mem, size_t cap)
{
    x->co = co;
    x->w = w;
    x->keep_alive = 0;
    x->head_only = 0;
    x->minor_version = 1;
    x->status = 0;
    x->head_bytes = 0;
    x->_framing = MG_FRAME_NONE;
    buf_fixed(&x->_out, mem, cap);
    x->_head = NULL;
    x->_head_len = 0;
    x->_memo = NULL;
}

void exchange_init_mem(mg_exchange *x, mg_coroutine *co, char *mem, size_t cap)
{
    int keep_alive = x->keep_alive, head_only = x->head_only, minor = x->minor_version;
    exchange_release(x);
    init(x, co, co->worker, mem, cap);
    x->keep_alive = keep_alive;
    x->head_only = head_only;
    x->minor_version = minor;
}

void exchange_init_detached(mg_exchange *x, mg_worker *w, char *mem, size_t cap)
{
    init(x, NULL, w, mem, cap);
}

const char *exchange_bytes(const mg_exchange *x, size_t *len)
{
    *len = x->_out.err ? 0 : x->_out.len;
    return x->_out.err ? NULL : x->_out.p;
}

/* ------------------------------------------------------------ test hooks */

/* What a handler's head becomes, without a worker or a coroutine: the status
 * check, fields_check(), then the status line and the field lines into out
 * (no Server, Date, framing or Connection: those are the server's own).
 * For tests/fuzz_response.py and tests/test_response_writer.py. */
int mg_test_head(int status, const char *reason, size_t reason_len, const char *block, size_t block_len,
                 int n, char *out, size_t out_cap, size_t *out_len, int64_t *length, int *close)
{
    mg_fields_info info;
    const char *why = NULL;
    mg_buf b, checked;
    int r;

    *out_len = 0;
    if ((r = head_check_status(status, reason, reason_len, &why)) < 0)
        return r;
    buf_growable(&checked);
    r = fields_check(&checked, block, block_len, n, &info, &why);
    if (r < 0) {
        buf_free(&checked);
        return r;
    }
    buf_fixed(&b, out, out_cap);
    status_line(&b, status, reason, reason_len);
    block_lines(&b, checked.p, checked.len, info.kept);
    buf_free(&checked);
    if (b.err)
        return -ENOSPC;
    *out_len = b.len;
    *length = info.length;
    *close = info.close;
    return 0;
}

/* --header's fields as the text mg_static_fields hands Python ("Name: value"
 * lines), from fields_check()'s block. */
void h1_field_text(mg_buf *b, const char *block, size_t len, int n)
{
    block_lines(b, block, len, n);
}
