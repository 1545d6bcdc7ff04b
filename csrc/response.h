/* response.h - the one output-buffer type and the one checker of a handler's head (response.c). */
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

/* What fields_check() found in a handler's field list. */
typedef struct {
    int64_t length; /* Content-Length, -1 if none */
    int close;      /* "Connection: close" */
    int kept;       /* fields written to the block */
} mg_fields_info;

/* A handler's status and reason: 0, or -EINVAL with *why. */
MG_HIDDEN int head_check_status(int status, const char *reason, size_t reason_len, const char **why);
/* Check and copy a handler's n fields ("name\0value\0" each) into b, in
 * the same form, values stripped, dropping the ones the server owns
 * (info->kept: how many stay).  0, or -EINVAL with *why (b may then hold
 * part of the fields: reset it). */
MG_HIDDEN int fields_check(mg_buf *b, const char *block, size_t len, int n, mg_fields_info *info,
                           const char **why);

/* 1xx, 204 and 304 carry no body (RFC 9110 6.4.1). */
static inline int status_has_no_body(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

#endif /* MINGINX_RESPONSE_H */
