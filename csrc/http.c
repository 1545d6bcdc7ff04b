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
 *   - every line, of the head and of a chunked body, ends in CRLF: a lone LF,
 *     which section 2.2 lets a recipient accept, is a 400 (a front end that
 *     keeps it inside a value would see other fields: parse_request_line).
 * Tested by tests/test_http_parse.py, each rule whole and byte by byte.
 */
#include "http.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- char classes */

/* DIGIT and ALPHA, the bytes every table below admits, as designated initialisers */
#define ALNUM_ONES                                                                                           \
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,       \
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,       \
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,       \
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,       \
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,       \
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,       \
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,

/* tchar (RFC 9110 section 5.6.2): "!#$%&'*+-.^_`|~" DIGIT ALPHA */
const unsigned char mg_tchar[256] = {['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
                                     ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
                                     ['`'] = 1, ['|'] = 1, ['~'] = 1, ALNUM_ONES};

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

/* The first byte of [p, end) that is not a value byte (the CR ending the
 * line, usually), or end; skip_target likewise for target bytes.  The byte
 * loops cost about ten instructions a byte, a fifth of a keep-alive request's
 * parse (bench/per_request.py); with SSE2, which every x86-64 has, 16 bytes
 * are classified at once, as picohttpparser does with SSE4.2: "c <= lim"
 * unsigned is "saturating c - lim == 0".  Only whole blocks inside
 * [p, end) are loaded; the tail goes byte by byte. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline const char *skip_class(const char *p, const char *end, char lim, int tab_ok)
{
    const __m128i below = _mm_set1_epi8(lim), del = _mm_set1_epi8(0x7f);
    const __m128i tab = _mm_set1_epi8(tab_ok ? '\t' : 0x7f), zero = _mm_setzero_si128();
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i bad = _mm_cmpeq_epi8(_mm_subs_epu8(x, below), zero);
        bad = _mm_andnot_si128(_mm_cmpeq_epi8(x, tab), bad);
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, del));
        int m = _mm_movemask_epi8(bad);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
    return p;
}
#else
static inline const char *skip_class(const char *p, const char *end, char lim, int tab_ok)
{
    (void)end;
    (void)lim;
    (void)tab_ok;
    return p;
}
#endif

static const char *skip_value(const char *p, const char *end)
{
    p = skip_class(p, end, 0x1f, 1);
    while (p < end && is_value_char((unsigned char)*p))
        p++;
    return p;
}

static const char *skip_target(const char *p, const char *end)
{
    p = skip_class(p, end, 0x20, 0);
    while (p < end && is_target_char((unsigned char)*p))
        p++;
    return p;
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

/* Unaligned loads (memcpy compiles to one mov). */
static inline uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t load4(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* name[0..len) equals lit, a literal of that same length made of lower-case
 * letters and '-', ignoring ASCII case: eq_ci without its strlen(), which
 * header_id's switch has already settled, and a word at a time instead of a
 * byte (a byte loop was 70 instructions for "Host", bench/per_request.py).
 * A letter of lit has bit 0x40 set, '-' has not; (lit & 0x40) >> 1 is then a
 * mask with 0x20 under each letter, and name | mask == lit holds for a byte
 * exactly when it is the letter in either case (0x20 is the case bit), or
 * for '-' when it is '-'.  Words overlap rather than run past the end: len
 * is 4 to 19. */
static inline int eq_ci_len(const char *name, const char *lit, size_t len)
{
    if (len < 8) {
        uint32_t a = load4(lit), b = load4(lit + len - 4);
        return ((load4(name) | ((a & 0x40404040u) >> 1)) == a) &
            ((load4(name + len - 4) | ((b & 0x40404040u) >> 1)) == b);
    }
    for (size_t i = 0; i + 8 < len; i += 8) {
        uint64_t a = load8(lit + i);
        if ((load8(name + i) | ((a & 0x4040404040404040ull) >> 1)) != a)
            return 0;
    }
    uint64_t a = load8(lit + len - 8);
    return (load8(name + len - 8) | ((a & 0x4040404040404040ull) >> 1)) == a;
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
    case 4:
        if (c0 == 'h')
            CAND("host", MG_H_HOST);
        break;
    case 5:
        if (c0 == 'r')
            CAND("range", MG_H_RANGE);
        break;
    case 6:
        if (c0 == 'e')
            CAND("expect", MG_H_EXPECT);
        break;
    case 7:
        if (c0 == 'u')
            CAND("upgrade", MG_H_UPGRADE);
        break;
    case 8:
        if (c0 == 'i')
            lower((unsigned char)name[3]) == 'm' ? CAND("if-match", MG_H_IF_MATCH)
                                                 : CAND("if-range", MG_H_IF_RANGE);
        break;
    case 10:
        if (c0 == 'c')
            CAND("connection", MG_H_CONNECTION);
        break;
    case 13:
        if (c0 == 'i')
            CAND("if-none-match", MG_H_IF_NONE_MATCH);
        break;
    case 14:
        if (c0 == 'c')
            CAND("content-length", MG_H_CONTENT_LENGTH);
        break;
    case 15:
        if (c0 == 'a')
            CAND("accept-encoding", MG_H_ACCEPT_ENCODING);
        break;
    case 17:
        if (c0 == 'i')
            CAND("if-modified-since", MG_H_IF_MODIFIED_SINCE);
        else if (c0 == 't')
            CAND("transfer-encoding", MG_H_TRANSFER_ENCODING);
        break;
    case 19:
        if (c0 == 'i')
            CAND("if-unmodified-since", MG_H_IF_UNMODIFIED_SINCE);
        break;
    default: break;
    }
#undef CAND
    return (cand && eq_ci_len(name, cand, len)) ? id : MG_H_OTHER; /* each case's len is its strlen */
}

static int method_id(const char *m, size_t len)
{
    /* methods are case-sensitive (RFC 9110 section 9.1) */
#define M(lit, mid)                                                                                          \
    if (len == sizeof(lit) - 1 && memcmp(m, lit, len) == 0)                                                  \
    return mid
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

/* ------------------------------------------------------- the request line */

/* request-line = method SP request-target SP HTTP-version CRLF, the line that
 * begins at buf, within [buf, end).  MG_PARSE_OK with the views and *after just
 * past its CRLF, or 400 (a line too long for its target: 414).  Every line of a
 * head ends in CRLF: a bare LF, which RFC 9112 section 2.2 lets a server accept,
 * is a 400 here, as gunicorn, llhttp's strict mode and Apache's
 * HttpProtocolOptions Strict answer it: a front end that keeps a bare LF inside
 * a field value ("Dummy: x\nContent-Length: 23") would otherwise see one head
 * where we see another (docs/conformance.md, bare-lf-*). */
static inline int parse_request_line(const char *buf, const char *end, mg_str *method, mg_str *target,
                                     int *major, int *minor, const char **after)
{
    const char *p = buf;
    const char *m = p;
    while (p < end && mg_tchar[(unsigned char)*p])
        p++;
    if (p == m || p == end || *p != ' ')
        return 400;
    *method = (mg_str){m, (uint32_t)(p - m)};
    p++;
    const char *t = p;
    p = skip_target(p, end);
    if (p == t || p == end || *p != ' ')
        return (p - buf > MG_MAX_REQUEST_LINE) ? 414 : 400;
    *target = (mg_str){t, (uint32_t)(p - t)};
    p++;
    if (end - p < 10)
        return 400;
    *major = *minor = 1;
    if (load8(p) != load8("HTTP/1.1")) { /* the version nearly every request has, in one compare */
        if (memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
            return 400;
        *major = p[5] - '0';
        *minor = p[7] - '0';
    }
    p += 8;
    if (p[0] != '\r' || p[1] != '\n')
        return 400; /* a bare CR, a bare LF, or more after the version */
    *after = p + 2;
    return MG_PARSE_OK;
}


/* ---------------------------------------------------- finding the head end */

/* Does the LF at buf[i] end an empty line ("\n\n" or "\n\r\n")? */
static inline int ends_head(const char *buf, size_t i)
{
    return (i >= 1 && buf[i - 1] == '\n') || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n');
}

int http_find_head_end(const char *buf, size_t len, size_t *scanned)
{
    size_t i = *scanned;

#if defined(__SSE2__)
    /* 16 bytes at a time: the mask of their LFs, each one checked in order,
     * then the tail (under 16 bytes) byte by byte.  One memchr() per line,
     * as below, is a libc call per line: 137 instructions for wrk's
     * three-line head, this 100 (bench/per_request.py). */
    const __m128i lf = _mm_set1_epi8('\n');
    for (; i + 16 <= len; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(buf + i));
        for (unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, lf)); m; m &= m - 1) {
            size_t j = i + (size_t)__builtin_ctz(m);
            if (ends_head(buf, j)) {
                *scanned = j + 1;
                return (int)(j + 1);
            }
        }
    }
    for (; i < len; i++) {
        if (buf[i] == '\n' && ends_head(buf, i)) {
            *scanned = i + 1;
            return (int)(i + 1);
        }
    }
#else
    /* memchr from line to line (libc's is vectorised): a byte loop here was
     * 9% of a keep-alive request's instructions (bench/per_request.py) */
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - buf);
        if (ends_head(buf, i)) {
            *scanned = i + 1;
            return (int)(i + 1);
        }
        i++;
    }
#endif
    *scanned = len;
    /* Not complete yet (a head split over reads: never on the keep-alive fast
     * path).  What is here may already be a head no more bytes can mend: each
     * connection waiting for the rest holds a slot for up to --header-timeout,
     * so it is answered now, as nginx answers (a TLS ClientHello on the plain
     * port is a 400 at once, not a 408 ten seconds later). */
    if (len > 0 && !mg_tchar[(unsigned char)buf[0]])
        return -400; /* no request line begins so: 0x16 (TLS), 0x80 (SSLv2), a space... */
    const char *nl = memchr(buf, '\n', len < MG_MAX_REQUEST_LINE + 1 ? len : MG_MAX_REQUEST_LINE + 1);
    if (!nl && len > MG_MAX_REQUEST_LINE)
        return -414;
    if (nl) { /* the request line is whole: "GET / HTTP/5.6", a PROXY preamble, a bare CR */
        mg_str method, target;
        int major, minor;
        const char *after;
        int st = parse_request_line(buf, nl + 1, &method, &target, &major, &minor, &after);
        if (st == MG_PARSE_OK && major != 1)
            st = 505;
        if (st != MG_PARSE_OK)
            return -st;
    }
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
    int count, chunked_at; /* codings seen; index of "chunked", -1 if none */
    int unknown, twice;
} te_codings;

static int te_coding(const char *el, size_t len, void *ctx)
{
    te_codings *t = ctx;
    if (len == 0)
        return 0; /* empty list elements are allowed and ignored */
    if (eq_ci(el, len, "chunked")) {
        if (t->chunked_at >= 0)
            t->twice = 1; /* chunked applied twice */
        t->chunked_at = t->count;
    } else {
        t->unknown = 1;
    }
    t->count++;
    return 0;
}

static int content_length_value(mg_str v, int64_t *out)
{
    /* Content-Length = 1*DIGIT, in one field line.  RFC 9110 8.6 lets a
     * recipient accept a list of identical values ("5, 5") or two identical
     * fields; like nginx we reject both (RFC 9112 6.3 p5: 400 and close), so
     * no two parsers on the path can disagree on which one counts. */
    const char *p = v.p, *end = v.p + v.len;
    int64_t n = 0;
    if (*out >= 0 || p == end)
        return 400; /* a second Content-Length field, or an empty one */
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return 400;
        if (n > (INT64_MAX - 9) / 10)
            return 400;
        n = n * 10 + (*p - '0');
    }
    *out = n;
    return 0;
}

static inline int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* unreserved / sub-delims (RFC 3986 section 2): the bytes of a reg-name besides pct-encoded */
static const unsigned char regname_chars[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, ALNUM_ONES};

/* A table, not strchr per byte: the Host check runs on every request (it
 * was 7% of a keep-alive request's instructions, bench/per_request.py). */
static inline int is_regname_char(unsigned char c)
{
    return regname_chars[c];
}

/* authority = uri-host [ ":" port ] (RFC 9110 section 4.2.1 and 7.2, RFC 3986
 * section 3.2), checked exactly: uri-host is an IP-literal in brackets, or a
 * reg-name / IPv4address (unreserved, sub-delims, "%" HEXDIG HEXDIG); port is
 * *DIGIT.  No userinfo: "user@host" is deprecated and a recipient should treat
 * it as an error (RFC 9110 section 4.2.4).  need_host: an http URI must not
 * have an empty host (section 4.2.1); need_port: CONNECT's authority-form
 * always names a port (RFC 9112 section 3.2.3).  The port module mirrors this
 * regular expression by regular expression (pyport/http.py _AUTHORITY).
 * Tested by tests/test_request_safety.py test_authority_grammar. */
static int authority_ok(const char *p, size_t n, int need_host, int need_port)
{
    size_t i = 0;
    if (n > 0 && p[0] == '[') {
        /* IP-literal: IPv6address / IPvFuture, checked for their alphabet */
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!is_regname_char((unsigned char)p[i]) && p[i] != ':')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        while (i < n && p[i] != ':') {
            while (i < n && is_regname_char((unsigned char)p[i]))
                i++;
            if (i == n || p[i] == ':')
                break;
            if (p[i] != '%' || n - i < 3 || !is_hex((unsigned char)p[i + 1]) ||
                !is_hex((unsigned char)p[i + 2]))
                return 0;
            i += 3;
        }
        if (i == 0 && need_host)
            return 0;
    }
    if (i == n)
        return !need_port;
    if (p[i] != ':')
        return 0;
    if (++i == n && need_port)
        return 0;
    for (; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

/* Is v the host the memo holds?  Up to 16 bytes, the usual, in two
 * overlapping words (a memcmp() call is a fifth of the check it saves). */
static inline int host_known(const mg_host_memo *memo, mg_str v)
{
    if (!memo || v.len != memo->len || v.len == 0)
        return 0;
    if (v.len >= 8 && v.len <= 16)
        return load8(v.p) == load8(memo->host) && load8(v.p + v.len - 8) == load8(memo->host + v.len - 8);
    return memcmp(v.p, memo->host, v.len) == 0;
}

/* Point the Host field at the absolute-form target's authority: RFC 9112
 * section 3.2.2 says a server MUST ignore the received Host and use the
 * target's, so every reader of req->hdr[MG_H_HOST] (handlers, logs) sees the
 * one host this request is answered for.  A request without Host (HTTP/1.0)
 * gets one.  Returns 0 or 431 (no room for the field). */
static int host_from_target(mg_request *req, mg_str authority)
{
    int i = req->hdr[MG_H_HOST];
    if (i < 0) {
        if (req->num_headers == MG_MAX_HEADERS)
            return 431;
        i = req->num_headers++;
        req->headers[i].name = (mg_str){"Host", 4};
        req->headers[i].id = MG_H_HOST;
        req->hdr[MG_H_HOST] = (int16_t)i;
    }
    req->headers[i].value = authority;
    return 0;
}

/* Is there neither '?' nor '#' in t[0..n)?  1 if so, 0 if there is one, -1
 * when this cannot tell (no SSE2, or a block would read past head_end; the
 * target is followed by its version and line end, so a short one never
 * does).  A plain origin-form target is the whole path: two memchr() calls
 * less, a tenth of a keep-alive request's parse (bench/per_request.py). */
static inline int target_plain(const char *t, size_t n, const char *head_end)
{
#if defined(__SSE2__)
    const __m128i q = _mm_set1_epi8('?'), hash = _mm_set1_epi8('#');
    for (size_t k = 0; k < n; k += 16) {
        if (head_end - (t + k) < 16)
            return -1;
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(t + k));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, hash)));
        if (n - k < 16)
            m &= (1u << (n - k)) - 1; /* lanes past the target */
        if (m)
            return 0;
    }
    return 1;
#else
    (void)t;
    (void)n;
    (void)head_end;
    return -1;
#endif
}

/* Split the target into path and query by its form (RFC 9112 section 3.2).
 * head_end: the end of the head the target is in.  Returns 0, 400, or 431. */
static int parse_target(mg_request *req, const char *head_end)
{
    const char *t = req->target.p;
    uint32_t n = req->target.len;
    const char *path = t, *end = t + n;

    if (t[0] == '/' && req->method_id != MG_M_CONNECT && target_plain(t, n, head_end) == 1) {
        req->path = req->target; /* origin-form, no query: query stays "" */
        return 0;
    }

    if (memchr(t, '#', n))
        return 400; /* a fragment is never sent (RFC 9110 section 4.2.4), in any form */
    if (req->method_id == MG_M_CONNECT) {
        /* CONNECT takes the authority-form and only it (RFC 9112 section 3.2.3) */
        if (!authority_ok(t, n, 1, 1))
            return 400;
        req->target_form = MG_FORM_AUTHORITY;
        return 0; /* path and query stay empty: conn.c answers 501 before any middleware */
    }
    if (n == 1 && t[0] == '*') {
        if (req->method_id != MG_M_OPTIONS)
            return 400; /* asterisk-form is for OPTIONS only (section 3.2.4) */
        req->target_form = MG_FORM_ASTERISK;
        req->path = req->target;
        return 0;
    }
    if (t[0] != '/') {
        /* absolute-form (RFC 9112 section 3.2.2): servers must accept it */
        size_t skip = 0;
        if (n >= 7 && eq_ci(t, 7, "http://"))
            skip = 7;
        else if (n >= 8 && eq_ci(t, 8, "https://"))
            skip = 8;
        else
            return 400; /* authority-form is CONNECT's; anything else is not a target */
        const char *auth = t + skip, *auth_end = auth;
        while (auth_end < end && *auth_end != '/' && *auth_end != '?')
            auth_end++;
        if (!authority_ok(auth, (size_t)(auth_end - auth), 1, 0))
            return 400; /* empty host, userinfo, or bytes no authority has */
        int r = host_from_target(req, (mg_str){auth, (uint32_t)(auth_end - auth)});
        if (r)
            return r;
        req->target_form = MG_FORM_ABSOLUTE;
        if (auth_end == end && req->method_id == MG_M_OPTIONS) {
            /* "OPTIONS http://h:1" is how a proxy passes on "OPTIONS *" (section 3.2.4) */
            req->target_form = MG_FORM_ASTERISK;
            req->path = (mg_str){"*", 1};
            return 0;
        }
        if (auth_end == end || *auth_end == '?') {
            /* an empty path is "/" (RFC 9110 section 4.2.3) */
            req->path = (mg_str){"/", 1};
            if (auth_end < end)
                req->query = (mg_str){auth_end + 1, (uint32_t)(end - auth_end - 1)};
            return 0;
        }
        path = auth_end;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    req->path = (mg_str){path, (uint32_t)((q ? q : end) - path)};
    req->query = q ? (mg_str){q + 1, (uint32_t)(end - q - 1)} : (mg_str){"", 0};
    return 0;
}

int parse_http(const char *buf, size_t head_len, mg_request *req, mg_host_memo *memo)
{
    const char *p = buf, *end = buf + head_len;

    /* Every field, views included, is reset before anything else: a request
     * buffer is reused across connections, and a field left from the last
     * parse would show one client another's bytes (tests/test_request_safety.py
     * test_connect_never_sees_another_clients_request). */
    memset(req, 0, offsetof(mg_request, headers));
    req->method = req->target = req->path = req->query = (mg_str){"", 0};
    req->content_length = -1;
    req->header_len = (int)head_len;
    memset(req->hdr, 0xff, sizeof(req->hdr)); /* all -1 */

    const char *after;
    int major, minor;
    int st = parse_request_line(buf, end, &req->method, &req->target, &major, &minor, &after);
    if (st != MG_PARSE_OK)
        return st;
    req->method_id = method_id(req->method.p, req->method.len);
    p = after;
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
    int semantic = 0; /* the first field-value error: reported only if the head parses */
    te_codings te = {0, -1, 0, 0};
    conn_tokens ct = {0, 0};
    while (p < end) {
        if (*p == '\r') {
            if (p + 1 < end && p[1] == '\n')
                break;  /* the empty line */
            return 400; /* bare CR */
        }
        if (*p == '\n')
            return 400; /* a bare LF: the empty line ends in CRLF too */
        if (*p == ' ' || *p == '\t')
            return 400; /* obs-fold, or whitespace before the first field */
        const char *name = p;
        while (p < end && mg_tchar[(unsigned char)*p])
            p++;
        if (p == name || p == end || *p != ':')
            return 400; /* empty name, whitespace before the colon, or a bad byte */
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *v = p;
        p = skip_value(p, end);
        if (p == end)
            return 400;
        const char *ve = p;
        if (*p != '\r' || p + 1 >= end || p[1] != '\n')
            return 400; /* a bare CR, a bare LF (parse_request_line says why), NUL or a control byte */
        p += 2;
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
            if (host_known(memo, h->value))
                break;
            if (!authority_ok(h->value.p, h->value.len, 0, 0))
                r = 400;
            else if (memo && h->value.len <= MG_HOST_MEMO) {
                memcpy(memo->host, h->value.p, h->value.len);
                memo->len = h->value.len;
            }
            break;
        case MG_H_CONTENT_LENGTH: r = content_length_value(h->value, &req->content_length); break;
        case MG_H_TRANSFER_ENCODING:
            te_seen = 1;
            r = for_each_list_element(h->value, te_coding, &te);
            break;
        case MG_H_CONNECTION: for_each_list_element(h->value, connection_token, &ct); break;
        case MG_H_EXPECT:
            if (eq_ci(h->value.p, h->value.len, "100-continue"))
                req->expect_continue = 1;
            else
                r = 417;
            break;
        default: break;
        }
        if (r && !semantic)
            semantic = r;
    }
    /* A head that does not parse is 400 whatever its fields say; only a
     * well-formed one gets the more specific answer. */
    if (semantic)
        return semantic;

    if (req->minor_version == 1 && hosts == 0)
        return 400; /* RFC 9112 section 3.2: MUST respond 400 */
    if (hosts > 1)
        return 400;
    if (te_seen) {
        /* Transfer-Encoding with Content-Length is a smuggling attempt or a
         * broken intermediary: reject and close (RFC 9112 section 6.3). */
        if (req->content_length >= 0)
            return 400;
        if (req->minor_version == 0)
            return 400; /* HTTP/1.0 has no transfer codings (section 6.1) */
        if (te.twice)
            return 400;
        /* chunked not final: the length cannot be known, and 6.3 p4's MUST
         * (400, close) wins over 6.1's SHOULD (501 for a coding we lack) */
        if (te.chunked_at < 0 || te.chunked_at != te.count - 1)
            return 400; /* chunked must be there, and the final coding (an empty field too is 400) */
        if (te.unknown)
            return 501; /* "gzip, chunked": framed, but a coding we do not implement */
        req->chunked = 1;
    }
    req->keep_alive = req->minor_version == 1 ? !ct.close : (ct.keep_alive && !ct.close);
    return parse_target(req, end);
}

/* ------------------------------------------------------ chunked decoding */

/* RFC 9112 section 7.1, byte by byte, so a line split across reads is judged
 * exactly as a whole one:
 *
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   ext-name   = token;  ext-val = token / quoted-string
 *   last-chunk = 1*("0") [ chunk-ext ] CRLF,  then trailer-section CRLF
 *
 * Line ends follow the head parser: every line ends in CRLF (section 7.1
 * writes CRLF; the lone LF that section 2.2 lets a recipient accept is a 400
 * here, as in the head, parse_request_line says why).  A bare LF is where
 * parsers disagree ("2;\nxx\r\n" is a 2-byte chunk to one and an extension
 * running to the CRLF to another).  Trailer fields
 * are field lines exactly as the head parser reads them (token name, colon,
 * no obs-fold, no CTL or bare CR in the value); their values are dropped.
 * Extensions and trailers together are limited to MG_MAX_CHUNK_EXT bytes per
 * message (CR and LF not counted), the size to 16 hex digits and 2^63 - 1.
 * pyport/http.py Chunked is the same machine; tests/test_request_safety.py
 * runs every case on both engines, whole and one byte per send. */
enum {
    CH_SIZE = 0,     /* hex digits of the chunk size */
    CH_SIZE_BWS,     /* whitespace after the size: only ";" may follow */
    CH_EXT_NAME0,    /* after ";": BWS, then the first byte of ext-name */
    CH_EXT_NAME,     /* inside ext-name */
    CH_EXT_NAME_BWS, /* whitespace after ext-name: "=" or ";" */
    CH_EXT_VAL0,     /* after "=": BWS, then a token or a quoted-string */
    CH_EXT_TOKEN,    /* inside a token ext-val */
    CH_EXT_QUOTED,   /* inside a quoted-string */
    CH_EXT_QPAIR,    /* after a backslash in a quoted-string */
    CH_EXT_VAL_END,  /* right after an ext-val: ";", BWS or CR */
    CH_EXT_BWS,      /* whitespace after an ext-val: only ";" may follow */
    CH_SIZE_LF,      /* the LF after the size line's CR */
    CH_DATA,         /* chunk data */
    CH_DATA_CR,      /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER,       /* start of a trailer line (or the final empty line) */
    CH_TRAILER_NAME,  /* field-name up to its colon */
    CH_TRAILER_VALUE, /* field-value up to the line end */
    CH_TRAILER_LF,    /* the LF after a trailer line's CR */
    CH_END_LF,        /* the LF after the final empty line's CR */
    CH_DONE,
    CH_MAX
};

#define MG_MAX_CHUNK_EXT 4096 /* bytes of extensions and trailers per message */

/* qdtext / quoted-pair bytes (RFC 9110 section 5.6.4) */
static inline int is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c != 0x7f);
}

static inline int is_qpair_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* the states whose bytes are extension or trailer bytes */
static const unsigned char COUNTED[CH_MAX] = {
    [CH_SIZE_BWS] = 1,      [CH_EXT_NAME0] = 1, [CH_EXT_NAME] = 1,   [CH_EXT_NAME_BWS] = 1,
    [CH_EXT_VAL0] = 1,      [CH_EXT_TOKEN] = 1, [CH_EXT_QUOTED] = 1, [CH_EXT_QPAIR] = 1,
    [CH_EXT_VAL_END] = 1,   [CH_EXT_BWS] = 1,   [CH_TRAILER] = 1,    [CH_TRAILER_NAME] = 1,
    [CH_TRAILER_VALUE] = 1,
};

int chunked_decode(mg_chunked *d, char *buf, size_t *len, size_t *consumed)
{
    size_t in = 0, out = 0, n = *len;
    int bad = 0;

    while (in < n && !bad && d->state != CH_DONE) {
        unsigned char c = (unsigned char)buf[in];
        int ws = c == ' ' || c == '\t';
        if (d->state == CH_DATA) {
            size_t take = n - in;
            if (take > d->remaining)
                take = (size_t)d->remaining;
            memmove(buf + out, buf + in, take);
            out += take;
            in += take;
            d->remaining -= take;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        /* every byte of an extension (from its first ";" or BWS) or of a
         * trailer line counts toward the limit; line ends do not */
        if (c != '\r' && c != '\n' && (COUNTED[d->state] || (d->state == CH_SIZE && (c == ';' || ws))) &&
            ++d->ext_or_trailer_bytes > MG_MAX_CHUNK_EXT)
            return 400;
        int after_size = d->remaining ? CH_DATA : CH_TRAILER;
        switch (d->state) {
        case CH_SIZE: {
            int v = (c >= '0' && c <= '9') ? c - '0'
                : (c >= 'a' && c <= 'f')   ? c - 'a' + 10
                : (c >= 'A' && c <= 'F')   ? c - 'A' + 10
                                           : -1;
            if (v >= 0) {
                /* 16 digits at most, leading zeros included, and the value fits int64 */
                if (++d->hex_digits > 16 || d->remaining > (UINT64_C(1) << 59) - 1)
                    return 400;
                d->remaining = d->remaining * 16 + (uint64_t)v;
                break;
            }
            if (d->hex_digits == 0) {
                bad = 1;
                break;
            }
            /* the size is complete: does this chunk fit what is left? */
            d->total += d->remaining;
            if (d->total > d->max_body)
                return 413;
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (ws)
                d->state = CH_SIZE_BWS;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                bad = 1; /* a bare LF too: every line of the coding ends in CRLF */
            break;
        }
        case CH_SIZE_BWS:
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (!ws)
                bad = 1;
            break;
        case CH_EXT_NAME0:
            if (mg_tchar[c])
                d->state = CH_EXT_NAME;
            else if (!ws)
                bad = 1;
            break;
        case CH_EXT_NAME:
            if (mg_tchar[c])
                break;
            if (c == '=')
                d->state = CH_EXT_VAL0;
            else if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (ws)
                d->state = CH_EXT_NAME_BWS;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                bad = 1; /* a lone LF among them: see above */
            break;
        case CH_EXT_NAME_BWS:
            if (c == '=')
                d->state = CH_EXT_VAL0;
            else if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (!ws)
                bad = 1; /* BWS is only ever followed by "=" or ";" */
            break;
        case CH_EXT_VAL0:
            if (c == '"')
                d->state = CH_EXT_QUOTED;
            else if (mg_tchar[c])
                d->state = CH_EXT_TOKEN;
            else if (!ws)
                bad = 1;
            break;
        case CH_EXT_TOKEN:
            if (mg_tchar[c])
                break;
            __attribute__((fallthrough));
        case CH_EXT_VAL_END:
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (ws)
                d->state = CH_EXT_BWS;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                bad = 1;
            break;
        case CH_EXT_QUOTED:
            if (c == '"')
                d->state = CH_EXT_VAL_END;
            else if (c == '\\')
                d->state = CH_EXT_QPAIR;
            else if (!is_qdtext(c))
                bad = 1;
            break;
        case CH_EXT_QPAIR:
            if (is_qpair_char(c))
                d->state = CH_EXT_QUOTED;
            else
                bad = 1;
            break;
        case CH_EXT_BWS:
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (!ws)
                bad = 1; /* no whitespace before the line end (section 7.1.1) */
            break;
        case CH_SIZE_LF:
            if (c == '\n')
                d->state = after_size;
            else
                bad = 1;
            break;
        case CH_DATA_CR:
            if (c == '\r')
                d->state = CH_DATA_LF;
            else
                bad = 1; /* chunk-data CRLF, a bare LF included */
            if (d->state == CH_SIZE) {
                d->hex_digits = 0;
                d->remaining = 0;
            }
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                bad = 1;
                break;
            }
            d->state = CH_SIZE;
            d->hex_digits = 0;
            d->remaining = 0;
            break;
        case CH_TRAILER:
            if (c == '\r')
                d->state = CH_END_LF;
            else if (mg_tchar[c])
                d->state = CH_TRAILER_NAME;
            else
                bad = 1; /* obs-fold (SP/HTAB first), a CTL, or a bad name byte */
            break;
        case CH_TRAILER_NAME:
            if (c == ':')
                d->state = CH_TRAILER_VALUE;
            else if (!mg_tchar[c])
                bad = 1; /* whitespace before the colon too (RFC 9112 section 5.1) */
            break;
        case CH_TRAILER_VALUE:
            if (c == '\r')
                d->state = CH_TRAILER_LF;
            else if (!is_value_char(c))
                bad = 1;
            break;
        case CH_TRAILER_LF:
            if (c == '\n')
                d->state = CH_TRAILER;
            else
                bad = 1; /* a bare CR, also when it ended the last read */
            break;
        case CH_END_LF:
            if (c == '\n')
                d->state = CH_DONE;
            else
                bad = 1;
            break;
        default: abort(); /* CH_DATA and CH_DONE are handled above */
        }
        if (!bad)
            in++;
    }
    *len = out;
    *consumed = in;
    if (bad)
        return 400;
    return d->state == CH_DONE ? 1 : 0;
}

/* ------------------------------------------- the parser through cffi */

int mg_parse_request(const char *buf, size_t len, mg_parse_result *out)
{
    static __thread mg_request req;    /* ~4 KiB: not on a coroutine stack */
    static __thread mg_host_memo memo; /* as a worker's: the tests parse through it */
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
    int st = parse_http(buf + skip, (size_t)end, &req, &memo);
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
        out->path_len = (int)req.path.len;
        out->query_len = (int)req.query.len;
    }
    return st;
}

int mg_header_id(const char *name, size_t len, int plain)
{
    if (len == 0)
        return MG_H_OTHER;
    return plain ? header_id_plain(name, len) : header_id(name, len);
}

/* ------------------------------------------ the chunked decoder through cffi */

int mg_chunked_decode_split(const char *in, size_t len, size_t step, char *out, size_t *out_len,
                            size_t *consumed)
{
    mg_chunked d = {0};
    char *buf = malloc(len ? len : 1); /* the unconsumed input, as in the request buffer */
    size_t have = 0, fed = 0, used = 0, outn = 0;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    d.max_body = UINT64_MAX;
    for (;;) {
        size_t take = (step && len - fed > step) ? step : len - fed;
        memcpy(buf + have, in + fed, take);
        have += take;
        fed += take;
        size_t n = have, c = 0;
        r = chunked_decode(&d, buf, &n, &c);
        if (r > 1)
            break;
        memcpy(out + outn, buf, n); /* decoded bytes are at the front */
        outn += n;
        memmove(buf, buf + c, have - c);
        have -= c;
        used += c;
        if (r == 1 || fed == len)
            break;
    }
    free(buf);
    *out_len = outn;
    *consumed = used;
    return r;
}
