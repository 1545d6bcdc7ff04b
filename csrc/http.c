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

#include <string.h>

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
