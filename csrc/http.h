/* http.h - HTTP/1.1 request parsing (RFC 9112, http.c) and the response side (http_response.c):
 * types shared by http.c, http_response.c, conn.c and static.c.
 *
 * parse_http() works on a view of the connection's buffer: every string in
 * mg_request points into that buffer, nothing is copied or malloc'ed.  It is
 * called each time bytes arrive; it first looks for the end of the head
 * (CRLF CRLF) in the new bytes only, so a request that arrives one byte per
 * packet costs O(n) in all, then parses the complete head in one pass.
 */
#ifndef MINGINX_HTTP_H
#define MINGINX_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "internal.h"
#include "cache.h"

typedef struct {
    const char *p;
    uint32_t len;
} mg_str;

/* ASCII case folding for the parser and the response side (locale-free,
 * unlike tolower()). */
static inline int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c | 0x20 : c;
}

/* a[0..alen) equals the lower-case literal lit, ignoring ASCII case */
static inline int eq_ci(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lit[i])
            return 0;
    return 1;
}

/* Header fields the server acts on, resolved to ids while parsing so a lookup
 * is req->hdr[MG_H_...], never a strcasecmp() scan of the field list. */
typedef enum {
    MG_H_OTHER = 0,
    MG_H_HOST,
    MG_H_CONNECTION,
    MG_H_CONTENT_LENGTH,
    MG_H_TRANSFER_ENCODING,
    MG_H_EXPECT,
    MG_H_ACCEPT_ENCODING,
    MG_H_IF_MODIFIED_SINCE,
    MG_H_IF_NONE_MATCH,
    MG_H_IF_MATCH,
    MG_H_IF_UNMODIFIED_SINCE,
    MG_H_RANGE,
    MG_H_IF_RANGE,
    MG_H_UPGRADE,
    MG_H_MAX
} mg_hdr_id;

typedef enum {
    MG_M_OTHER = 0, /* a valid token we do not implement: 501 */
    MG_M_GET,
    MG_M_HEAD,
    MG_M_POST,
    MG_M_PUT,
    MG_M_DELETE,
    MG_M_OPTIONS,
    MG_M_PATCH,
    MG_M_TRACE,
    MG_M_CONNECT,
    MG_M_MAX
} mg_method_id;

typedef struct {
    mg_str name, value;
    int id; /* mg_hdr_id */
} mg_header;

/* The four forms of request-target (RFC 9112 section 3.2). */
typedef enum {
    MG_FORM_ORIGIN = 0, /* /path?query */
    MG_FORM_ABSOLUTE,   /* http://authority/path?query: the authority replaces Host */
    MG_FORM_AUTHORITY,  /* host:port, CONNECT only: no path at all */
    MG_FORM_ASTERISK,   /* "*", OPTIONS only: the server as a whole */
    MG_FORM_MAX
} mg_target_form;

/* Every field is defined after every parse_http() call that returns
 * MG_PARSE_OK: it resets them all first, so nothing can point into the bytes
 * of an earlier request in a reused buffer.  path is the target's path
 * ("/..." for origin- and absolute-form, "*" for asterisk-form, empty for
 * authority-form); handlers never see the last two (conn.c answers them). */
typedef struct mg_request_s {
    mg_str method, target, path, query;
    int target_form;   /* mg_target_form */
    int method_id;     /* mg_method_id */
    int minor_version; /* HTTP/1.<minor> */
    int header_len;    /* bytes of the head, CRLFCRLF included */
    int keep_alive;
    int expect_continue;
    int chunked;            /* Transfer-Encoding: chunked */
    int64_t content_length; /* -1 when absent */
    int num_headers;
    int16_t hdr[MG_H_MAX]; /* index of the first field with that id, -1 if none */
    mg_header headers[MG_MAX_HEADERS];
} mg_request;

/* tchar (RFC 9110 5.6.2): 1 for the bytes of a token (methods, field names, codings);
 * the request parser and the checker of a handler's fields (response.c) share this one table. */
MG_HIDDEN extern const unsigned char mg_tchar[256];

/* Parse results (negative) beside the HTTP statuses (positive). */
#define MG_PARSE_OK         0
#define MG_PARSE_INCOMPLETE (-1)

/* Look for the end of the head in buf[0..len); *scanned remembers how far an
 * earlier call got.  Returns the head length, 0 if not there yet, or a
 * negated HTTP status when the bytes so far can be no head: -414, -431 (a
 * limit broken), -400 (a first byte that starts no request line, or a whole
 * request line that is not one), -505 (a whole request line of HTTP/2+). */
MG_HIDDEN int http_find_head_end(const char *buf, size_t len, size_t *scanned);
/* Parse a complete head of head_len bytes.  Returns MG_PARSE_OK or an HTTP
 * error status (400, 414, 431, 501, 505).  memo: the worker's (internal.h), or NULL. */
MG_HIDDEN int parse_http(const char *buf, size_t head_len, mg_request *req, mg_host_memo *memo);
/* The header-name matcher: the plain version (a table scan, kept for readers
 * and as the reference the tests compare against) and the fast one. */
MG_HIDDEN int header_id_plain(const char *name, size_t len);
MG_HIDDEN int header_id(const char *name, size_t len);

/* Chunked transfer coding (RFC 9112 section 7.1), decoded in place. */
typedef struct {
    uint64_t max_body; /* set by the caller: 413 past this many decoded bytes */
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    uint64_t total;     /* decoded bytes so far, the chunk being read included */
    int hex_digits;
    int ext_or_trailer_bytes;
} mg_chunked;
/* Consume buf[0..*len): on return buf[0..*len) holds the decoded data.
 * Returns 1 when the last chunk and trailers are done (*consumed tells how far
 * into the input that was), 0 if it needs more, 400 on malformed input, 413
 * as soon as a chunk's size line says the body would pass max_body (the
 * size is final then, so whole and byte-by-byte input get the same answer). */
MG_HIDDEN int chunked_decode(mg_chunked *d, char *buf, size_t *len, size_t *consumed);

MG_HIDDEN const char *http_reason(int status);
/* v in base 10 or 16 into out (at least 20 bytes), no terminator; returns the length.
 * The responses' number formatter: no printf on the request path. */
MG_HIDDEN int format_u64(char *out, uint64_t v, int base);
/* HTTP-date -> time_t, or -1. */
MG_HIDDEN time_t http_parse_date(const char *s, size_t len);
MG_HIDDEN int etag_list_matches(mg_str list, const char *etag, size_t etag_len, int weak);
MG_HIDDEN int accepts_gzip(mg_str v);
MG_HIDDEN int parse_range(mg_str v, int64_t size, int64_t *start, int64_t *len);
/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of t into out (30 bytes:
 * the date and a NUL); returns its length, always 29.  A t outside years
 * 1..9999 is clamped into them.  Locale-free, unlike strftime's %a and %b. */
MG_HIDDEN int http_date(char *out, time_t t);

/* ----------------------------------------------- connection buffers (conn.c) */
/* Two lifetimes, each pooled per worker and held only while a request is in
 * flight (an idle keep-alive connection gives both back):
 *   mg_reqbuf  the connection's input buffer (co->conn->rb): bytes read from
 *              the socket, a request head and maybe its body, and what follows
 *              (the next request, pipelined);
 *   mg_xstate  one request's own state (co->xs): its parsed head (views into
 *              the input buffer), its path, its head's out area, the static
 *              scratch entry and the Python call.  HTTP/2 will hold one per
 *              stream, beside one input buffer per connection. */
struct mg_reqbuf {
    mg_reqbuf *next_free;
    size_t len;                /* bytes in data */
    size_t scanned;            /* how far the head-end search got */
    char data[MG_REQBUF_DATA]; /* bytes read from the socket */
};

struct mg_xstate {
    mg_xstate *next_free;
    mg_reqbuf *orphan_rb; /* an orphaned call's input buffer (its req's views point into it) */
    mg_request req;
    char path[4096];   /* the decoded, normalised path */
    char out[2048];    /* the response head being built */
    mg_centry scratch; /* the file, when the open-file cache is off or full */
    mg_pycall call;    /* the request as Python sees it (pycall.c) */
    char scratch_path[4096 + 32];
};

/* --------------------------------------------------- responses (static.c) */
/* The static-file middleware: answer req from the document root, through
 * the request's exchange (exchange.h).  Returns an mg_mw_result. */
struct mg_exchange;
MG_HIDDEN int static_serve(struct mg_exchange *x, mg_request *req);
/* Beside a handler: answer as static_serve() if the path names a file under
 * the root (or a directory with an index.html), whatever the method; else
 * MG_MW_PASS without answering (the handler's turn). */
MG_HIDDEN int static_try(struct mg_exchange *x, mg_request *req);

#endif /* MINGINX_HTTP_H */
