/* response.c - the one output buffer (mg_buf) and the one checker of a handler's status and fields.
 *
 * Theory of operation.  What a handler hands over is checked in one place,
 * protocol-neutrally, before any protocol sees it: fields_check() validates
 * every byte of its fields (RFC 9110 5.1, 5.5, 5.6.2) so that no CR, LF or
 * NUL from a handler can start a line of its own, strips the whitespace a
 * field value may not begin or end with, drops the fields the server owns
 * (framing, connection management, Date, Server) and leaves the rest as a
 * field block the exchange's protocol module serializes (h1.c for HTTP/1.1;
 * exchange.h).  The framing is the protocol's, decided from the declared
 * length, never copied from a handler's list.
 * Tested by tests/test_hostile_handlers.py.
 */
#include "response.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* ------------------------------------------------------------ the buffer */

void buf_fixed(mg_buf *b, char *mem, size_t cap)
{
    *b = (mg_buf){.p = mem, .len = 0, .cap = cap, ._heap = 0, .err = 0};
}

void buf_growable(mg_buf *b)
{
    *b = (mg_buf){.p = NULL, .len = 0, .cap = 0, ._heap = 1, .err = 0};
}

int buf_reserve(mg_buf *b, size_t extra)
{
    if (MG_LIKELY(b->cap - b->len >= extra))
        return 0;
    if (!b->_heap || extra > SIZE_MAX / 2 - b->len) {
        b->err = 1;
        return b->_heap ? -ENOMEM : -ENOSPC;
    }
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->err = 1;
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void buf_free(mg_buf *b)
{
    if (b->_heap)
        free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf_put(mg_buf *b, const void *s, size_t n)
{
    if (MG_UNLIKELY(b->cap - b->len < n) && buf_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void buf_str(mg_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

void buf_u64(mg_buf *b, uint64_t v, int base)
{
    char tmp[24];
    size_t n = (size_t)format_u64(tmp, v, base);
    buf_put(b, tmp, n);
}

void buf_printf(mg_buf *b, const char *fmt, ...)
{
    for (int tries = 0; tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        if (buf_reserve(b, (size_t)n + 1) < 0)
            return;
    }
    b->err = 1;
}

/* ---------------------------------------------- checking a handler's head */

/* Field names are tokens: mg_tchar (http.c), the one table the request parser uses too. */

/* The bytes of a reason phrase (RFC 9112 4) and of a field value (RFC 9110
 * 5.5): HTAB, SP, VCHAR, obs-text; that is, no CTL but HTAB.  CR, LF and NUL
 * are what would let a handler start a line of its own. */
static int text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (MG_UNLIKELY(c < 0x20 ? c != '\t' : c == 0x7f))
            return 0;
    }
    return 1;
}

/* Handlers' statuses: 200..599.  RFC 9110 15 defines 100..599 (three
 * digits, the first 1-5); a 1xx is interim, not an answer, and the server
 * owns those it sends (100 Continue), so a handler's final status is 2xx-5xx.
 * (The engine accepted 200..999 before; 600..999 are not HTTP statuses.) */
int head_check_status(int status, const char *reason, size_t reason_len, const char **why)
{
    if (status < 200 || status > 599) {
        *why = "the status is not a final HTTP status (200..599)";
        return -EINVAL;
    }
    if (!text_ok(reason, reason_len)) {
        *why = "the reason phrase holds a control character (CR, LF, NUL ...)";
        return -EINVAL;
    }
    return 0;
}

/* A Content-Length value: 1*DIGIT (RFC 9110 8.6), at most 18 digits. */
static int64_t parse_length(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 18)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

/* Does a Connection value list the "close" option (RFC 9112 9.6)? */
static int lists_close(const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == 5 && strncasecmp(v + s, "close", 5) == 0)
            return 1;
    }
    return 0;
}

int fields_check(mg_buf *b, const char *block, size_t len, int n, mg_fields_info *info, const char **why)
{
    const char *p = block, *end = block + len;
    info->length = -1;
    info->close = 0;
    info->kept = 0;
    for (int i = 0; i < n; i++) {
        const char *name = p;
        const char *nend = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
        const char *value = nend ? nend + 1 : end;
        const char *vend = value < end ? memchr(value, '\0', (size_t)(end - value)) : NULL;
        if (!nend || !vend) {
            *why = "the header list is malformed";
            return -EINVAL;
        }
        p = vend + 1;
        size_t nl = (size_t)(nend - name), vl = (size_t)(vend - value);
        if (nl == 0) {
            *why = "a header name is empty";
            return -EINVAL;
        }
        for (size_t k = 0; k < nl; k++) {
            if (!mg_tchar[(unsigned char)name[k]]) {
                *why = "a header name is not a token (CR, LF, NUL, ':', space ...)";
                return -EINVAL;
            }
        }
        if (!text_ok(value, vl)) {
            *why = "a header value holds a control character (CR, LF, NUL ...)";
            return -EINVAL;
        }
        /* RFC 9110 5.5: a field value has no leading or trailing whitespace
         * (the OWS around it belongs to the line), so it is stripped, as h11
         * does; pyport/response.py handler_fields strips the same bytes. */
        while (vl && (*value == ' ' || *value == '\t'))
            value++, vl--;
        while (vl && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
            vl--;
        /* the fields the server owns: framing and connection management
         * (RFC 9110 7.6.1), Date and Server (nginx drops a backend's too) */
        switch (nl) {
        case 14:
            if (eq_ci(name, nl, "content-length")) {
                int64_t v = parse_length(value, vl);
                if (v < 0) {
                    *why = "Content-Length is not a number";
                    return -EINVAL;
                }
                /* RFC 9110 8.6 lets a recipient take identical duplicates;
                 * as the sender we take them too and send one. */
                if (info->length >= 0 && info->length != v) {
                    *why = "two different Content-Length values";
                    return -EINVAL;
                }
                info->length = v;
                continue;
            }
            break;
        case 17:
            if (eq_ci(name, nl, "transfer-encoding")) {
                *why = "Transfer-Encoding from a handler (the server frames the body)";
                return -EINVAL;
            }
            break;
        case 10:
            if (eq_ci(name, nl, "connection")) {
                info->close |= lists_close(value, vl);
                continue;
            }
            if (eq_ci(name, nl, "keep-alive"))
                continue;
            break;
        case 16:
            if (eq_ci(name, nl, "proxy-connection"))
                continue;
            break;
        case 2:
            if (eq_ci(name, nl, "te"))
                continue;
            break;
        case 7:
            if (eq_ci(name, nl, "trailer") || eq_ci(name, nl, "upgrade"))
                continue;
            break;
        case 4:
            if (eq_ci(name, nl, "date"))
                continue;
            break;
        case 6:
            if (eq_ci(name, nl, "server"))
                continue;
            break;
        default: break;
        }
        if (buf_reserve(b, nl + vl + 2) < 0) {
            *why = "out of memory";
            return -ENOMEM;
        }
        buf_put(b, name, nl);
        buf_put(b, "", 1);
        buf_put(b, value, vl);
        buf_put(b, "", 1);
        info->kept++;
    }
    if (p != end) {
        *why = "a header name or value holds a NUL";
        return -EINVAL;
    }
    return 0;
}
