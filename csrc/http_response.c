/* http_response.c - the response side of HTTP: reason phrases, numbers, dates, and the request fields a response is chosen by.
 *
 * http.c reads a request; this file holds what the answer is built from:
 * status reasons and IMF-fixdates (RFC 9110 section 5.6.7), entity-tag
 * matching (section 13.1), content negotiation for gzip (section 12.5.3)
 * and byte ranges (section 14.2).  Declarations are in http.h.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- misc */

/* The reason phrases of the IANA HTTP Status Code Registry: RFC 9110 section 15
 * and the registered extras (102, 103, 207, 208, 226, 421-429, 431, 451, 506-511).
 * 418 is "(Unused)" there (RFC 9110 15.5.19); a handler that sends it means the
 * teapot, and nginx, Python's http.HTTPStatus and curl users all say so.  306
 * (Unused) and unregistered codes get an empty phrase (RFC 9112 4 allows it; the
 * SP before it stays).  pyport/http.py REASONS is the same table (checked by
 * tests/test_atk_response.py). */
const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    default: return ""; /* RFC 9112 4: the reason-phrase may be empty; the SP stays */
    }
}

int format_u64(char *out, uint64_t v, int base)
{
    char tmp[24];
    int i = 0, n = 0;
    if (base == 10) { /* division by a constant: a multiply, not a div per digit */
        do {
            tmp[i++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (i > 0)
            out[n++] = tmp[--i];
        return n;
    }
    do {
        tmp[i++] = "0123456789abcdef"[v % (uint64_t)base];
        v /= (uint64_t)base;
    } while (v);
    while (i > 0)
        out[n++] = tmp[--i];
    return n;
}

/* IMF-fixdate has a 4-digit year (RFC 9110 section 5.6.7): years 1 to 9999. */
#define MG_DATE_MIN ((time_t)-62135596800LL) /* Mon, 01 Jan 0001 00:00:00 GMT */
#define MG_DATE_MAX ((time_t)253402300799LL) /* Fri, 31 Dec 9999 23:59:59 GMT */

int http_date(char *out, time_t t)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    _Static_assert(sizeof(time_t) == 8, "the date range below needs a 64-bit time_t");
    struct tm tm;

    /* A time outside what the format can say (a file's mtime can be any
     * 64-bit value: year 10000, 2^62 s, far before year 1) is clamped to
     * the nearest one it can, so the result is always 29 valid bytes; an
     * unclamped year 10000 made 30 bytes and cut the "T" of GMT, and a
     * failed gmtime_r left tm undefined and indexed days[] with it.
     * Tested by tests/test_request_safety.py test_far_mtime_dates. */
    if (t < MG_DATE_MIN)
        t = MG_DATE_MIN;
    if (t > MG_DATE_MAX)
        t = MG_DATE_MAX;
    if (!gmtime_r(&t, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
        abort(); /* cannot happen for a year in 1..9999: a broken libc */
    int n = snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n != 29)
        abort();
    return n;
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
        if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || b[19] != ':' || b[22] != ':' ||
            memcmp(b + 25, " GMT", 4) != 0)
            return -1;
        day = digits(b + 5, 2), mon = month_index(b + 8), year = digits(b + 12, 4);
        hh = digits(b + 17, 2), mm = digits(b + 20, 2), ss = digits(b + 23, 2);
    } else if (comma) {
        /* Sunday, 06-Nov-94 08:49:37 GMT */
        const char *p = comma + 1;
        if (strlen(p) != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' ||
            p[16] != ':' || memcmp(p + 19, " GMT", 4) != 0)
            return -1;
        day = digits(p + 1, 2), mon = month_index(p + 4), year = digits(p + 8, 2);
        hh = digits(p + 11, 2), mm = digits(p + 14, 2), ss = digits(p + 17, 2);
        if (year >= 0)
            year += year < 70 ? 2000
                              : 1900; /* RFC 9110: a 2-digit year more than 50 years ahead is in the past */
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
    if (day < 1 || day > 31 || mon < 0 || year < 1970 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 ||
        ss > 60)
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
            return 0; /* not an entity-tag list: no match */
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q)
            return 0;
        size_t n = (size_t)(q - p + 1); /* with both quotes */
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
            return 0; /* "-" alone */
        if (a >= 0 && b >= 0 && b < a)
            return 0; /* invalid range-spec: the whole field is ignored */
        ranges++;
        int64_t s, l;
        if (a < 0) { /* suffix: the last b bytes */
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
