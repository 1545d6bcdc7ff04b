/* http.c - parse_http: a strict, zero-copy HTTP/1.1 request parser (RFC 9112), and chunked decoding.
 *
 * Strictness, and why: a server behind or in front of other HTTP software
 * must read a message's framing exactly as they do, or one request can be
 * smuggled inside another.  So, following RFC 9112:
 *   - whitespace between a field name and its colon is rejected (section 5.1;
 *     picohttpparser does the same, for the same reason);
 *   - obs-fold (a line starting with SP/HTAB) is rejected (section 5.2);
 *   - a bare CR, NUL or other control byte in a field is rejected;
 *   - Content-Length together with Transfer-Encoding is rejected and the
 *     connection closed (section 6.3), as is a list of differing lengths;
 *   - a lone LF is accepted as a line end (section 2.2 allows it).
 * Tested by tests/test_http_parse.py, each rule whole and byte by byte.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------- char classes */

/* tchar (RFC 9110 section 5.6.2): "!#$%&'*+-.^_`|~" DIGIT ALPHA */
static const unsigned char TCHAR[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* field-vchar, SP and HTAB (and obs-text) may appear in a field value */
static inline int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* a request-target byte: visible ASCII or obs-text; never SP, CTL or DEL */
static inline int is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

static inline int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c | 0x20 : c;
}

static int eq_ci(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lit[i])
            return 0;
    return 1;
}

/* ------------------------------------------------------- header matching */

static const struct {
    const char *name;
    int id;
} HEADER_NAMES[] = {
    {"host", MG_H_HOST},
    {"connection", MG_H_CONNECTION},
    {"content-length", MG_H_CONTENT_LENGTH},
    {"transfer-encoding", MG_H_TRANSFER_ENCODING},
    {"expect", MG_H_EXPECT},
    {"accept-encoding", MG_H_ACCEPT_ENCODING},
    {"if-modified-since", MG_H_IF_MODIFIED_SINCE},
    {"if-none-match", MG_H_IF_NONE_MATCH},
    {"if-match", MG_H_IF_MATCH},
    {"if-unmodified-since", MG_H_IF_UNMODIFIED_SINCE},
    {"range", MG_H_RANGE},
    {"if-range", MG_H_IF_RANGE},
    {"upgrade", MG_H_UPGRADE},
};

/* The plain matcher: compare against every known name. */
int header_id_plain(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(HEADER_NAMES) / sizeof(HEADER_NAMES[0]); i++)
        if (eq_ci(name, len, HEADER_NAMES[i].name))
            return HEADER_NAMES[i].id;
    return MG_H_OTHER;
}

/* The fast matcher: the length and the first byte pick at most one
 * candidate, which is then compared once.  Same answers as the plain one
 * (tests/test_http_parse.py checks every name both ways). */
int header_id(const char *name, size_t len)
{
    int c0 = lower((unsigned char)name[0]);
    const char *cand = NULL;
    int id = MG_H_OTHER;

#define CAND(lit, hid) (cand = (lit), id = (hid))
    switch (len) {
    case 4: if (c0 == 'h') CAND("host", MG_H_HOST); break;
    case 5: if (c0 == 'r') CAND("range", MG_H_RANGE); break;
    case 6: if (c0 == 'e') CAND("expect", MG_H_EXPECT); break;
    case 7: if (c0 == 'u') CAND("upgrade", MG_H_UPGRADE); break;
    case 8:
        if (c0 == 'i')
            lower((unsigned char)name[3]) == 'm' ? CAND("if-match", MG_H_IF_MATCH)
                                                 : CAND("if-range", MG_H_IF_RANGE);
        break;
    case 10: if (c0 == 'c') CAND("connection", MG_H_CONNECTION); break;
    case 13: if (c0 == 'i') CAND("if-none-match", MG_H_IF_NONE_MATCH); break;
    case 14: if (c0 == 'c') CAND("content-length", MG_H_CONTENT_LENGTH); break;
    case 15: if (c0 == 'a') CAND("accept-encoding", MG_H_ACCEPT_ENCODING); break;
    case 17:
        if (c0 == 'i')
            CAND("if-modified-since", MG_H_IF_MODIFIED_SINCE);
        else if (c0 == 't')
            CAND("transfer-encoding", MG_H_TRANSFER_ENCODING);
        break;
    case 19: if (c0 == 'i') CAND("if-unmodified-since", MG_H_IF_UNMODIFIED_SINCE); break;
    default: break;
    }
#undef CAND
    return (cand && eq_ci(name, len, cand)) ? id : MG_H_OTHER;
}

static int method_id(const char *m, size_t len)
{
    /* methods are case-sensitive (RFC 9110 section 9.1) */
#define M(lit, mid) if (len == sizeof(lit) - 1 && memcmp(m, lit, len) == 0) return mid
    M("GET", MG_M_GET);
    M("HEAD", MG_M_HEAD);
    M("POST", MG_M_POST);
    M("PUT", MG_M_PUT);
    M("DELETE", MG_M_DELETE);
    M("OPTIONS", MG_M_OPTIONS);
    M("PATCH", MG_M_PATCH);
    M("TRACE", MG_M_TRACE);
    M("CONNECT", MG_M_CONNECT);
#undef M
    return MG_M_OTHER;
}

/* ---------------------------------------------------- finding the head end */

int http_find_head_end(const char *buf, size_t len, size_t *scanned)
{
    size_t i = *scanned;

    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        /* an empty line ends the head: "\n\n" or "\n\r\n" */
        if ((i >= 1 && buf[i - 1] == '\n') || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')) {
            *scanned = i + 1;
            return (int)(i + 1);
        }
    }
    *scanned = len;
    /* Not complete yet: is a limit already broken? */
    const char *nl = memchr(buf, '\n', len < MG_MAX_REQUEST_LINE + 1 ? len : MG_MAX_REQUEST_LINE + 1);
    if (!nl && len > MG_MAX_REQUEST_LINE)
        return -414;
    if (len > MG_MAX_REQUEST_LINE + MG_MAX_HEADER_BYTES)
        return -431;
    return 0;
}

/* ------------------------------------------------------------- parse_http */

/* Split a comma-separated list value and call fn on each trimmed element. */
typedef int (*list_fn)(const char *el, size_t len, void *ctx);
static int for_each_list_element(mg_str v, list_fn fn, void *ctx)
{
    const char *p = v.p, *end = v.p + v.len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        int r = fn(s, (size_t)(t - s), ctx);
        if (r)
            return r;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

typedef struct {
    int close, keep_alive;
} conn_tokens;

static int connection_token(const char *el, size_t len, void *ctx)
{
    conn_tokens *t = ctx;
    if (eq_ci(el, len, "close"))
        t->close = 1;
    else if (eq_ci(el, len, "keep-alive"))
        t->keep_alive = 1;
    return 0;
}

typedef struct {
    int count, chunked_at;   /* codings seen; index of "chunked", -1 if none */
    int unknown, twice;
} te_codings;

static int te_coding(const char *el, size_t len, void *ctx)
{
    te_codings *t = ctx;
    if (len == 0)
        return 0;   /* empty list elements are allowed and ignored */
    if (eq_ci(el, len, "chunked")) {
        if (t->chunked_at >= 0)
            t->twice = 1;   /* chunked applied twice */
        t->chunked_at = t->count;
    } else {
        t->unknown = 1;
    }
    t->count++;
    return 0;
}

static int content_length_value(mg_str v, int64_t *out)
{
    /* 1*DIGIT, or a list of identical values ("5, 5", which a proxy may have
     * made from two fields); anything else is invalid. */
    int64_t first = -1;
    const char *p = v.p, *end = v.p + v.len;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return 400;
        int64_t n = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (n > (INT64_MAX - 9) / 10)
                return 400;
            n = n * 10 + (*p++ - '0');
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (first >= 0 && n != first)
            return 400;
        first = n;
        if (p == end)
            break;
        if (*p++ != ',')
            return 400;
    }
    if (*out >= 0 && *out != first)
        return 400;   /* two Content-Length fields that disagree */
    *out = first;
    return 0;
}

/* uri-host [ ":" port ]: reg-name / IPv4 / IP-literal characters only */
static int host_ok(mg_str v)
{
    for (uint32_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-._~%!$&'()*+,;=:[]", c)))
            return 0;
    }
    return 1;
}

static int parse_target(mg_request *req)
{
    const char *t = req->target.p;
    uint32_t n = req->target.len;
    const char *path = t;

    if (memchr(t, '#', n))
        return 400;   /* a fragment is never sent (RFC 9110 section 4.2.4), in any form */
    if (n == 1 && t[0] == '*') {
        if (req->method_id != MG_M_OPTIONS)
            return 400;
        req->path = req->target;
        req->query = (mg_str){t + 1, 0};
        return 0;
    }
    if (t[0] != '/') {
        /* absolute-form (RFC 9112 section 3.2.2): servers must accept it */
        size_t skip = 0;
        if (n >= 7 && eq_ci(t, 7, "http://"))
            skip = 7;
        else if (n >= 8 && eq_ci(t, 8, "https://"))
            skip = 8;
        else if (req->method_id == MG_M_CONNECT)
            return 0;   /* authority-form; answered 405 by the static files */
        else
            return 400;
        const char *slash = memchr(t + skip, '/', n - skip);
        const char *q = memchr(t + skip, '?', n - skip);
        if (q && (!slash || q < slash))
            slash = NULL;
        const char *auth_end = slash ? slash : q ? q : t + n;
        if (auth_end == t + skip)
            return 400;   /* empty authority: an http URI needs a host */
        path = slash ? slash : NULL;
        if (!path) {
            req->path = (mg_str){"/", 1};
            req->query = q ? (mg_str){q + 1, (uint32_t)(t + n - q - 1)} : (mg_str){t + n, 0};
            return 0;
        }
    }
    const char *end = t + n;
    const char *q = memchr(path, '?', (size_t)(end - path));
    req->path = (mg_str){path, (uint32_t)((q ? q : end) - path)};
    req->query = q ? (mg_str){q + 1, (uint32_t)(end - q - 1)} : (mg_str){end, 0};
    return 0;
}

int parse_http(const char *buf, size_t head_len, mg_request *req)
{
    const char *p = buf, *end = buf + head_len;

    req->num_headers = 0;
    req->content_length = -1;
    req->chunked = 0;
    req->expect_continue = 0;
    req->keep_alive = 0;
    req->header_len = (int)head_len;
    memset(req->hdr, 0xff, sizeof(req->hdr));   /* all -1 */

    /* request-line = method SP request-target SP HTTP-version */
    const char *m = p;
    while (p < end && TCHAR[(unsigned char)*p])
        p++;
    if (p == m || p == end || *p != ' ')
        return 400;
    req->method = (mg_str){m, (uint32_t)(p - m)};
    req->method_id = method_id(m, (size_t)(p - m));
    p++;
    const char *t = p;
    while (p < end && is_target_char((unsigned char)*p))
        p++;
    if (p == t || p == end || *p != ' ')
        return (p - buf > MG_MAX_REQUEST_LINE) ? 414 : 400;
    req->target = (mg_str){t, (uint32_t)(p - t)};
    p++;
    if (end - p < 9 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return 400;
    int major = p[5] - '0', minor = p[7] - '0';
    p += 8;
    if (*p == '\r')
        p++;
    if (p == end || *p != '\n')
        return 400;
    p++;
    if (p - buf > MG_MAX_REQUEST_LINE + 2)
        return 414;
    if (end - p > MG_MAX_HEADER_BYTES + 2)
        return 431;
    if (major != 1)
        return 505;
    /* A higher minor version is read as the highest we implement (RFC 9110
     * section 2.5). */
    req->minor_version = minor > 1 ? 1 : minor;

    /* field-line = field-name ":" OWS field-value OWS */
    int hosts = 0, te_seen = 0;
    int semantic = 0;   /* the first field-value error: reported only if the head parses */
    te_codings te = {0, -1, 0, 0};
    conn_tokens ct = {0, 0};
    while (p < end) {
        if (*p == '\n')
            break;   /* the empty line */
        if (*p == '\r') {
            if (p + 1 < end && p[1] == '\n')
                break;
            return 400;   /* bare CR */
        }
        if (*p == ' ' || *p == '\t')
            return 400;   /* obs-fold, or whitespace before the first field */
        const char *name = p;
        while (p < end && TCHAR[(unsigned char)*p])
            p++;
        if (p == name || p == end || *p != ':')
            return 400;   /* empty name, whitespace before the colon, or a bad byte */
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *v = p;
        while (p < end && is_value_char((unsigned char)*p))
            p++;
        if (p == end)
            return 400;
        const char *ve = p;
        if (*p == '\r') {
            if (p + 1 >= end || p[1] != '\n')
                return 400;   /* bare CR */
            p++;
        }
        if (*p != '\n')
            return 400;   /* NUL or another control byte */
        p++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;

        if (req->num_headers == MG_MAX_HEADERS)
            return 431;
        mg_header *h = &req->headers[req->num_headers];
        h->name = (mg_str){name, (uint32_t)name_len};
        h->value = (mg_str){v, (uint32_t)(ve - v)};
        h->id = header_id(name, name_len);
        if (h->id != MG_H_OTHER && req->hdr[h->id] < 0)
            req->hdr[h->id] = (int16_t)req->num_headers;
        req->num_headers++;

        int r = 0;
        switch (h->id) {
        case MG_H_HOST:
            hosts++;
            if (!host_ok(h->value))
                r = 400;
            break;
        case MG_H_CONTENT_LENGTH:
            r = content_length_value(h->value, &req->content_length);
            break;
        case MG_H_TRANSFER_ENCODING:
            te_seen = 1;
            r = for_each_list_element(h->value, te_coding, &te);
            break;
        case MG_H_CONNECTION:
            for_each_list_element(h->value, connection_token, &ct);
            break;
        case MG_H_EXPECT:
            if (eq_ci(h->value.p, h->value.len, "100-continue"))
                req->expect_continue = 1;
            else
                r = 417;
            break;
        default:
            break;
        }
        if (r && !semantic)
            semantic = r;
    }
    /* A head that does not parse is 400 whatever its fields say; only a
     * well-formed one gets the more specific answer. */
    if (semantic)
        return semantic;

    if (req->minor_version == 1 && hosts == 0)
        return 400;   /* RFC 9112 section 3.2: MUST respond 400 */
    if (hosts > 1)
        return 400;
    if (te_seen) {
        /* Transfer-Encoding with Content-Length is a smuggling attempt or a
         * broken intermediary: reject and close (RFC 9112 section 6.3). */
        if (req->content_length >= 0)
            return 400;
        if (req->minor_version == 0)
            return 400;   /* HTTP/1.0 has no transfer codings (section 6.1) */
        if (te.twice)
            return 400;
        if (te.unknown)
            return 501;
        if (te.chunked_at < 0 || te.chunked_at != te.count - 1)
            return 400;   /* chunked must be there, and the final coding (an empty field too is 400) */
        req->chunked = 1;
    }
    req->keep_alive = req->minor_version == 1 ? !ct.close : (ct.keep_alive && !ct.close);
    return parse_target(req);
}

/* ------------------------------------------------------ chunked decoding */

enum {
    CH_SIZE = 0,      /* hex digits of the chunk size */
    CH_EXT,           /* chunk extension, up to CRLF */
    CH_SIZE_LF,       /* the LF after the size line's CR */
    CH_DATA,          /* chunk data */
    CH_DATA_CR,       /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER,       /* start of a trailer line (or the final empty line) */
    CH_TRAILER_LINE,  /* inside a trailer line */
    CH_TRAILER_LF,
    CH_DONE,
};

#define MG_MAX_CHUNK_EXT 4096   /* bytes of extensions and trailers we skip */

int chunked_decode(mg_chunked *d, char *buf, size_t *len, size_t *consumed)
{
    size_t in = 0, out = 0, n = *len;

    while (in < n) {
        unsigned char c = (unsigned char)buf[in];
        switch (d->state) {
        case CH_SIZE: {
            int v = (c >= '0' && c <= '9') ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (v >= 0) {
                if (++d->hex_digits > 15)
                    return 400;   /* larger than we will ever read */
                d->remaining = d->remaining * 16 + (uint64_t)v;
                in++;
                break;
            }
            if (d->hex_digits == 0)
                return 400;
            if (c == ';' || c == ' ' || c == '\t') {
                d->state = CH_EXT;
                in++;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
                in++;
            } else if (c == '\n') {
                in++;
                d->state = d->remaining ? CH_DATA : CH_TRAILER;
            } else {
                return 400;
            }
            break;
        }
        case CH_EXT:
            if (++d->ext_or_trailer_bytes > MG_MAX_CHUNK_EXT)
                return 400;
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                d->state = d->remaining ? CH_DATA : CH_TRAILER;
            else if (c < 0x20 && c != '\t')
                return 400;
            in++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return 400;
            in++;
            d->state = d->remaining ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t take = n - in;
            if (take > d->remaining)
                take = (size_t)d->remaining;
            memmove(buf + out, buf + in, take);
            out += take;
            in += take;
            d->remaining -= take;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c == '\r') {
                d->state = CH_DATA_LF;
                in++;
                break;
            }
            __attribute__((fallthrough));   /* a lone LF ends the data too */
        case CH_DATA_LF:
            if (c != '\n')
                return 400;
            in++;
            d->state = CH_SIZE;
            d->hex_digits = 0;
            d->remaining = 0;
            break;
        case CH_TRAILER:
            if (c == '\r') {
                d->state = CH_TRAILER_LF;
                in++;
                break;
            }
            if (c == '\n') {
                in++;
                d->state = CH_DONE;
                break;
            }
            d->state = CH_TRAILER_LINE;
            break;
        case CH_TRAILER_LINE:
            if (++d->ext_or_trailer_bytes > MG_MAX_CHUNK_EXT)
                return 400;
            if (c == '\n')
                d->state = CH_TRAILER;
            else if (c == '\r') {
                if (in + 1 < n && buf[in + 1] != '\n')
                    return 400;
            } else if (c < 0x20 && c != '\t')
                return 400;
            in++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return 400;
            in++;
            d->state = CH_DONE;
            break;
        default:
            break;
        }
        if (d->state == CH_DONE)
            break;
    }
    *len = out;
    *consumed = in;
    return d->state == CH_DONE ? 1 : 0;
}

/* ---------------------------------------------------------------- misc */

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int format_u64(char *out, uint64_t v, int base)
{
    char tmp[24];
    int i = 0, n = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % (uint64_t)base];
        v /= (uint64_t)base;
    } while (v);
    while (i > 0)
        out[n++] = tmp[--i];
    return n;
}

int http_date(char *out, time_t t)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    return snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ------------------------------------------- the parser through cffi */

int mg_parse_request(const char *buf, size_t len, mg_parse_result *out)
{
    static __thread mg_request req;   /* ~4 KiB: not on a coroutine stack */
    size_t scanned = 0;

    memset(out, 0, sizeof(*out));
    out->content_length = -1;
    /* RFC 9112 section 2.2: ignore empty lines before the request-line */
    size_t skip = 0;
    while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
        skip++;
    int end = http_find_head_end(buf + skip, len - skip, &scanned);
    if (end == 0) {
        out->status = MG_PARSE_INCOMPLETE;
        return out->status;
    }
    if (end < 0) {
        out->status = -end;
        return out->status;
    }
    int st = parse_http(buf + skip, (size_t)end, &req);
    out->status = st;
    out->header_len = (int)skip + end;
    if (st == MG_PARSE_OK) {
        out->method_len = (int)req.method.len;
        out->target_len = (int)req.target.len;
        out->minor_version = req.minor_version;
        out->num_headers = req.num_headers;
        out->keep_alive = req.keep_alive;
        out->content_length = req.content_length;
        out->chunked = req.chunked;
    }
    return st;
}

int mg_header_id(const char *name, size_t len, int plain)
{
    if (len == 0)
        return MG_H_OTHER;
    return plain ? header_id_plain(name, len) : header_id(name, len);
}

/* ------------------------------------------------ field values we act on */

static int month_index(const char *m)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(months + 3 * i, m, 3) == 0)
            return i;
    return -1;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* RFC 9110 section 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime
 * forms, which a recipient must also accept. */
time_t http_parse_date(const char *s, size_t len)
{
    char b[64];
    if (len == 0 || len >= sizeof(b))
        return -1;
    memcpy(b, s, len);
    b[len] = '\0';
    struct tm tm = {0};
    int day, year, hh, mm, ss, mon;
    const char *comma = memchr(b, ',', len);

    if (comma && comma - b == 3 && len == 29) {
        /* Sun, 06 Nov 1994 08:49:37 GMT */
        if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || b[19] != ':' ||
            b[22] != ':' || memcmp(b + 25, " GMT", 4) != 0)
            return -1;
        day = digits(b + 5, 2), mon = month_index(b + 8), year = digits(b + 12, 4);
        hh = digits(b + 17, 2), mm = digits(b + 20, 2), ss = digits(b + 23, 2);
    } else if (comma) {
        /* Sunday, 06-Nov-94 08:49:37 GMT */
        const char *p = comma + 1;
        if (strlen(p) != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' ||
            p[13] != ':' || p[16] != ':' || memcmp(p + 19, " GMT", 4) != 0)
            return -1;
        day = digits(p + 1, 2), mon = month_index(p + 4), year = digits(p + 8, 2);
        hh = digits(p + 11, 2), mm = digits(p + 14, 2), ss = digits(p + 17, 2);
        if (year >= 0)
            year += year < 70 ? 2000 : 1900;   /* RFC 9110: a 2-digit year more than 50 years ahead is in the past */
    } else if (len == 24) {
        /* Sun Nov  6 08:49:37 1994 */
        if (b[3] != ' ' || b[7] != ' ' || b[10] != ' ' || b[13] != ':' || b[16] != ':' || b[19] != ' ')
            return -1;
        mon = month_index(b + 4);
        day = b[8] == ' ' ? digits(b + 9, 1) : digits(b + 8, 2);
        hh = digits(b + 11, 2), mm = digits(b + 14, 2), ss = digits(b + 17, 2);
        year = digits(b + 20, 4);
    } else {
        return -1;
    }
    if (day < 1 || day > 31 || mon < 0 || year < 1970 || hh < 0 || hh > 23 || mm < 0 || mm > 59 ||
        ss < 0 || ss > 60)
        return -1;
    tm.tm_mday = day;
    tm.tm_mon = mon;
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return timegm(&tm);
}

int64_t mg_parse_http_date(const char *s, size_t len)
{
    return (int64_t)http_parse_date(s, len);
}

/* Does an If-Match / If-None-Match list match our entity-tag?  `weak`
 * selects the weak comparison (W/ prefixes ignored; If-None-Match), else the
 * strong one (a weak tag never matches; If-Match, If-Range). */
int etag_list_matches(mg_str list, const char *etag, size_t etag_len, int weak)
{
    const char *p = list.p, *end = list.p + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            break;
        if (*p == '*')
            return 1;
        int is_weak = 0;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        if (p == end || *p != '"')
            return 0;   /* not an entity-tag list: no match */
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q)
            return 0;
        size_t n = (size_t)(q - p + 1);   /* with both quotes */
        if ((weak || !is_weak) && n == etag_len && memcmp(p, etag, n) == 0)
            return 1;
        p = q + 1;
    }
    return 0;
}

/* Is gzip an acceptable content-coding (RFC 9110 section 12.5.3)?  gzip or
 * x-gzip with q > 0, or "*" with q > 0 when gzip is not listed. */
int accepts_gzip(mg_str v)
{
    int gzip_q = -1, star_q = -1;
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t tlen = (size_t)(p - tok);
        int q = 1;
        /* parameters: only q matters */
        while (p < end && *p != ',') {
            if (*p == ';') {
                p++;
                while (p < end && (*p == ' ' || *p == '\t'))
                    p++;
                if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                    p += 2;
                    /* q=0, q=0.0, q=0.00, q=0.000 are "not acceptable" */
                    q = 0;
                    while (p < end && (*p == '0' || *p == '.'))
                        p++;
                    if (p < end && *p >= '1' && *p <= '9')
                        q = 1;
                    continue;
                }
            }
            p++;
        }
        if (tlen == 0)
            continue;
        if (eq_ci(tok, tlen, "gzip") || eq_ci(tok, tlen, "x-gzip"))
            gzip_q = gzip_q > 0 ? gzip_q : q;
        else if (tlen == 1 && tok[0] == '*')
            star_q = q;
    }
    return gzip_q > 0 || (gzip_q < 0 && star_q > 0);
}

/* Range: bytes=... (RFC 9110 section 14.2).  Returns 0 to ignore the field
 * (not bytes, malformed, or several ranges, which we answer with the whole
 * representation, as the RFC allows), 1 with [*start, *start + *len) for one
 * satisfiable range, or 416 when no range is satisfiable. */
int parse_range(mg_str v, int64_t size, int64_t *start, int64_t *len)
{
    const char *p = v.p, *end = v.p + v.len;
    int satisfiable = 0, ranges = 0;

    if (v.len < 6 || !eq_ci(p, 6, "bytes="))
        return 0;
    p += 6;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        int64_t a = -1, b = -1;
        if (p < end && *p >= '0' && *p <= '9') {
            a = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (a > (INT64_MAX - 9) / 10)
                    return 0;
                a = a * 10 + (*p++ - '0');
            }
        }
        if (p == end || *p != '-')
            return 0;
        p++;
        if (p < end && *p >= '0' && *p <= '9') {
            b = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (b > (INT64_MAX - 9) / 10)
                    return 0;
                b = b * 10 + (*p++ - '0');
            }
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p != ',')
            return 0;
        if (p < end)
            p++;
        if (a < 0 && b < 0)
            return 0;        /* "-" alone */
        if (a >= 0 && b >= 0 && b < a)
            return 0;        /* invalid range-spec: the whole field is ignored */
        ranges++;
        int64_t s, l;
        if (a < 0) {         /* suffix: the last b bytes */
            if (b == 0 || size == 0)
                continue;
            s = b >= size ? 0 : size - b;
            l = size - s;
        } else {
            if (a >= size)
                continue;
            s = a;
            l = (b < 0 || b >= size ? size - 1 : b) - a + 1;
        }
        satisfiable++;
        *start = s;
        *len = l;
    }
    if (ranges == 0)
        return 0;
    if (satisfiable == 0)
        return 416;
    return ranges == 1 ? 1 : 0;
}
