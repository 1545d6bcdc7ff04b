/* response.h - the one output-buffer type and the one response-head writer (response.c). */
#ifndef MINGINX_RESPONSE_H
#define MINGINX_RESPONSE_H

#include "internal.h"

/* ---- mg_buf (declared in minginx.h): bounded, never overflowing ----
 * A write that does not fit (a fixed buffer, or malloc failing) writes
 * nothing and sets b->err; whoever sends the buffer checks err first. */
MG_HIDDEN void buf_fixed(mg_buf *b, char *mem, size_t cap); /* never grows */
MG_HIDDEN void buf_growable(mg_buf *b);                     /* malloc'ed, grows; empty now */
/* Make room for extra more bytes: 0, or -ENOMEM (growable) / -ENOSPC (fixed), err set. */
MG_HIDDEN int buf_reserve(mg_buf *b, size_t extra);
MG_HIDDEN void buf_free(mg_buf *b);
MG_HIDDEN void buf_put(mg_buf *b, const void *s, size_t n);
MG_HIDDEN void buf_str(mg_buf *b, const char *s);
MG_HIDDEN void buf_u64(mg_buf *b, uint64_t v, int base);
MG_HIDDEN void buf_printf(mg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the response head ----
 * Every head (static files, error pages, stats, 503 busy, Python handlers)
 * is written in two calls around the header fields:
 *
 *   head_start(b, w, status, reason)   "HTTP/1.1 S R\r\n", Server, Date
 *   ... fields: trusted lines from the server's own code (buf_put), or a
 *       handler's list through head_fields(), which checks every byte ...
 *   head_finish(b, framing, length, keep_alive)   framing, Connection, CRLF
 *
 * so the status line, Server, Date, the framing and Connection exist once,
 * here (nginx: ngx_http_header_filter; h2o: flatten_headers). */
typedef enum {
    MG_FRAME_NONE = 0, /* no body and no framing field (1xx, 204, 304, a 204 OPTIONS) */
    MG_FRAME_LENGTH,   /* Content-Length: length */
    MG_FRAME_CHUNKED,  /* Transfer-Encoding: chunked */
    MG_FRAME_CLOSE,    /* the body ends when the connection closes (HTTP/1.0 stream) */
    MG_FRAME_MAX
} mg_framing;

/* reason NULL or empty: the standard phrase.  Does not check the status:
 * the server's own codes are right; head_check_status() is for handlers'. */
MG_HIDDEN void head_start(mg_buf *b, mg_worker *w, int status, const char *reason, size_t reason_len);
/* Returns b->len: the head's length, as every head begins its buffer (the access log's
 * body_bytes_sent is the bytes sent less this, as nginx's is). */
MG_HIDDEN size_t head_finish(mg_buf *b, int framing, uint64_t length, int keep_alive);

/* What head_fields() found in a handler's field list. */
typedef struct {
    int64_t length; /* Content-Length, -1 if none */
    int close;      /* "Connection: close" */
} mg_fields_info;

/* A handler's status and reason: 0, or -EINVAL with *why. */
MG_HIDDEN int head_check_status(int status, const char *reason, size_t reason_len, const char **why);
/* Check and copy a handler's n fields ("name\0value\0" each) into b as
 * "name: value\r\n" lines, dropping the ones the server owns.  0, or
 * -EINVAL with *why (b may then hold part of the fields: reset it). */
MG_HIDDEN int head_fields(mg_buf *b, const char *block, size_t len, int n, mg_fields_info *info,
                          const char **why);

/* 1xx, 204 and 304 carry no body (RFC 9110 6.4.1). */
static inline int status_has_no_body(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

#endif /* MINGINX_RESPONSE_H */
