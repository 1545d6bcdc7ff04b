/* exchange.h - the protocol-neutral response: how every answer (static files, stats, error pages, the 503, Python handlers) is given.
 *
 * Theory of operation.  A request is answered through an exchange, in the
 * shape asgi.py's reply already has:
 *
 *   exchange_respond(x, &head)        status and fields (an mg_head), once
 *   exchange_body(x, piece, n, last)  body pieces, any number
 *   exchange_file(x, fd, off, len)    or a range of a file
 *   exchange_end(x)                   the body is over
 *
 * The fields are name/value pairs (mg_field), never wire bytes: the server's
 * own are trusted, a handler's come as the block fields_check() (response.c)
 * validated.  The exchange keeps the response's status, head bytes, the
 * request count and so the access log's fields in one place
 * (exchange_respond).  The protocol module behind it writes the wire format:
 * h1.c for HTTP/1.1 (status line, Server, Date, framing, chunking,
 * Connection/keep-alive) is the only file that writes HTTP/1.1 bytes, so an
 * HTTP/2 stream can later be an exchange that static.c, stats.c and pycall.c
 * answer unchanged (h2o: h2o_start_response()/h2o_send() over each
 * protocol's final output stream).
 *
 * Every call returns 0, or -1 when the connection is broken (the peer is
 * gone, a send failed, a head did not fit): the caller then stops and the
 * connection closes.
 */
#ifndef MINGINX_EXCHANGE_H
#define MINGINX_EXCHANGE_H

#include <sys/types.h>
#include <time.h>
#include "internal.h"
#include "response.h"

/* One header field.  Trusted fields (the server's own) are not checked. */
typedef struct mg_field {
    const char *name;
    const char *value;
    uint32_t name_len, value_len; /* bytes */
} mg_field;
#define MG_FIELD_LIT(n, v) {(n), (v), sizeof(n) - 1, sizeof(v) - 1}

/* What a response starts with.  The framing (Content-Length or not) is the
 * protocol's, decided from length and the status, never from the fields. */
typedef struct {
    int status;
    const char *reason; /* NULL or empty: the standard phrase (HTTP/1.1's only) */
    size_t reason_len;
    const mg_field *fields; /* the server's own */
    int nfields;
    const mg_field *added; /* --header's (front.c), checked once at start */
    int nadded;
    const char *block; /* a handler's fields, as fields_check() left them ("name\0value\0" each) */
    size_t block_len;
    int block_n;
    int64_t length; /* body bytes; -1: not known before the end (a stream) */
} mg_head;

#define MG_DATE_LINE_LEN 37 /* every IMF-fixdate Date line in years 1000-9999 (mg_date_cache) */

/* A kept 200 keep-alive head of one file representation (cache.h mg_file):
 * built by the protocol module (h1.c) and reused by it, only its Date
 * rewritten once a second.  Zeroed: none yet; exchange_memo_free() frees it. */
typedef struct {
    char *head;
    int len;
    int date_at; /* offset of the Date line in head */
    int in_room; /* head sits right before the file's data (MG_HEAD_ROOM): not malloc'd */
    int busy;    /* sends in progress straight from head */
    time_t sec;  /* the second its Date says */
} mg_head_memo;

/* What a middleware of the chain (conn.c) did with a request. */
typedef enum {
    MG_MW_BROKEN = -1, /* the connection broke (or must close now without more) */
    MG_MW_DONE = 0,    /* answered; x->keep_alive says whether another request may follow */
    MG_MW_PASS = 1,    /* not mine: the next middleware's */
    MG_MW_MAX
} mg_mw_result;

typedef struct mg_exchange {
    mg_coroutine *co; /* NULL: detached, the bytes stay in the buffer (exchange_bytes) */
    mg_worker *w;
    int keep_alive;    /* in: the client and server allow it; respond may clear it */
    int head_only;     /* a HEAD: fields and length as for GET, no body bytes */
    int minor_version; /* HTTP/1.<minor> of the request */
    int status;        /* of the response (0: none yet) */
    size_t head_bytes; /* bytes of its head (the access log's body_bytes_sent is the rest) */
    /* the protocol module's (h1.c) */
    int _framing;
    mg_buf _out;       /* where the head is written: the request buffer's out area, or the caller's */
    const char *_head; /* the head still to send (in _out, or a memo's), NULL once sent */
    size_t _head_len;
    mg_head_memo *_memo; /* _head is this memo's: busy while it is being sent */
} mg_exchange;

/* A request's exchange on co: its head goes into co->xs->out (set at the
 * first respond: a request answered without one never touches it). */
static inline void exchange_init(mg_exchange *x, mg_coroutine *co, int keep_alive, int head_only,
                                 int minor_version)
{
    x->co = co;
    x->w = co->worker;
    x->keep_alive = keep_alive;
    x->head_only = head_only;
    x->minor_version = minor_version;
    x->status = 0;
    x->head_bytes = 0;
    x->_framing = 0; /* MG_FRAME_NONE (response.h may not be read yet here) */
    x->_head = NULL; /* a body before a respond sends no stale head */
    x->_head_len = 0;
    x->_memo = NULL;
    x->_out.p = NULL; /* and not _heap: the out area, at the first respond */
    x->_out._heap = 0;
}
/* The same writing its head into mem (when co->xs is not ours: a handler timed out). */
MG_HIDDEN void exchange_init_mem(mg_exchange *x, mg_coroutine *co, char *mem, size_t cap);
/* A detached exchange: no coroutine, nothing sent; the response's bytes gather
 * in mem (worker.c's 503 for a connection it turns away). */
MG_HIDDEN void exchange_init_detached(mg_exchange *x, mg_worker *w, char *mem, size_t cap);
/* Give back a head buffer grown for a large handler head. */
static inline void exchange_release(mg_exchange *x)
{
    if (MG_UNLIKELY(x->_out._heap))
        buf_free(&x->_out);
}

MG_HIDDEN int exchange_respond(mg_exchange *x, const mg_head *h);
/* exchange_respond for a file's representation: a 200 keep-alive head is kept
 * in memo (before room, a small file's data with MG_HEAD_ROOM bytes ahead of
 * it, when it fits) and reused.  memo NULL: respond as usual. */
MG_HIDDEN int exchange_respond_memo(mg_exchange *x, const mg_head *h, mg_head_memo *memo, char *room);
MG_HIDDEN void exchange_memo_free(mg_head_memo *memo);
/* A piece of the body (none for a HEAD, 204, 304); last: it ends the body. */
MG_HIDDEN int exchange_body(mg_exchange *x, const void *piece, size_t len, int last);
/* [off, off + len) of an open file as the whole body: -1 also if the file gave fewer bytes. */
MG_HIDDEN int exchange_file(mg_exchange *x, int fd, off_t off, size_t len);
static inline int exchange_end(mg_exchange *x)
{
    return exchange_body(x, NULL, 0, 1);
}
/* 100 Continue before a request body is read. */
MG_HIDDEN int exchange_continue(mg_exchange *x);
/* A detached exchange's bytes, and how many of them are its head. */
MG_HIDDEN const char *exchange_bytes(const mg_exchange *x, size_t *len);

/* The Date field of the current second; wall: the caller's time(NULL), 0: read it. */
MG_HIDDEN void date_set(mg_date_cache *d, time_t now);
static inline void date_refresh(mg_date_cache *d, time_t wall)
{
    time_t now = wall ? wall : time(NULL);
    if (MG_UNLIKELY(now != d->sec))
        date_set(d, now);
}
/* fields_check()'s block of n fields as HTTP/1.1 field lines (mg_static_fields' answer). */
MG_HIDDEN void h1_field_text(mg_buf *b, const char *block, size_t len, int n);

/* An error page (static.c): the --error-page file for the status, else a
 * small built-in HTML page, with fields of the server's own (Allow, Content-Range). */
MG_HIDDEN int send_error(mg_exchange *x, int status);
MG_HIDDEN int send_error_fields(mg_exchange *x, int status, const mg_field *extra, int nextra);

#endif /* MINGINX_EXCHANGE_H */
