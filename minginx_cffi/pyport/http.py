"""http.py - parse_http in Python: the same strict HTTP/1.1 rules as csrc/http.c (RFC 9112).

Read it beside csrc/http.c: the same functions, the same limits, the same
answers (tests/test_conformance.py runs on both engines).  Where C walks the
bytes one by one, this file lets compiled regular expressions do the walking,
which is what makes Python fast enough to be a fair comparison.
"""

import calendar
import re
import time

MG_MAX_REQUEST_LINE = 8192
MG_MAX_HEADER_BYTES = 32768
MG_MAX_HEADERS = 100
MG_PARSE_OK = 0

# header ids: the fields the server acts on (csrc/http.h mg_hdr_id)
(MG_H_OTHER, MG_H_HOST, MG_H_CONNECTION, MG_H_CONTENT_LENGTH, MG_H_TRANSFER_ENCODING, MG_H_EXPECT,
 MG_H_ACCEPT_ENCODING, MG_H_IF_MODIFIED_SINCE, MG_H_IF_NONE_MATCH, MG_H_IF_MATCH,
 MG_H_IF_UNMODIFIED_SINCE, MG_H_RANGE, MG_H_IF_RANGE, MG_H_UPGRADE) = range(14)
HEADER_NAMES = {
    b"host": MG_H_HOST, b"connection": MG_H_CONNECTION, b"content-length": MG_H_CONTENT_LENGTH,
    b"transfer-encoding": MG_H_TRANSFER_ENCODING, b"expect": MG_H_EXPECT,
    b"accept-encoding": MG_H_ACCEPT_ENCODING, b"if-modified-since": MG_H_IF_MODIFIED_SINCE,
    b"if-none-match": MG_H_IF_NONE_MATCH, b"if-match": MG_H_IF_MATCH,
    b"if-unmodified-since": MG_H_IF_UNMODIFIED_SINCE, b"range": MG_H_RANGE,
    b"if-range": MG_H_IF_RANGE, b"upgrade": MG_H_UPGRADE,
}
METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT"}


def header_id(name):
    """The pre-hashed lookup: one dict probe (C: a switch on length and first byte)."""
    return HEADER_NAMES.get(name.lower(), MG_H_OTHER)


# request-line = method SP request-target SP HTTP-version
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/(\d)\.(\d)\r?\n")
# field-line = field-name ":" OWS field-value OWS; a lone LF may end a line
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r?\n")
_HOST_OK = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]*\Z")
_CL = re.compile(rb"[ \t]*\d+[ \t]*(?:,[ \t]*\d+[ \t]*)*\Z")


class Request:
    """Views of one parsed request head (C: mg_request)."""

    __slots__ = ("method", "target", "path", "query", "minor_version", "header_len", "keep_alive",
                 "expect_continue", "chunked", "content_length", "headers", "hdr")

    def get(self, hid):
        i = self.hdr.get(hid)
        return None if i is None else self.headers[i][1]


def http_find_head_end(buf, start=0):
    """Length of the head if buf holds one; 0 if not yet; -414/-431 when a limit is broken."""
    i = buf.find(b"\n\r\n", start)
    j = buf.find(b"\n\n", start)
    if i >= 0 and (j < 0 or i + 1 < j):
        return i + 3
    if j >= 0:
        return j + 2
    n = len(buf)
    if n > MG_MAX_REQUEST_LINE and buf.find(b"\n", 0, MG_MAX_REQUEST_LINE + 1) < 0:
        return -414
    if n > MG_MAX_REQUEST_LINE + MG_MAX_HEADER_BYTES:
        return -431
    return 0


def _list(value):
    return [v.strip(b" \t") for v in value.split(b",")]


def parse_http(buf, head_len):
    """Parse buf[:head_len]; returns (status, Request).  status 0 = OK, else an HTTP status."""
    m = _REQUEST_LINE.match(buf, 0, head_len)
    if m is None:
        end = buf.find(b"\n", 0, head_len)
        if end > MG_MAX_REQUEST_LINE:
            return 414, None
        line = buf[:end]
        # a valid-looking line with another version: 505 (C checks the same order)
        v = re.match(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e\x80-\xff]+ HTTP/(\d)\.(\d)\r?$", line)
        if v and v.group(1) != b"1":
            return 505, None
        return 400, None
    req = Request()
    req.method = m.group(1)
    req.target = m.group(2)
    p = m.end()
    if p > MG_MAX_REQUEST_LINE + 2:
        return 414, None
    if m.group(3) != b"1":
        return 505, None
    if head_len - p > MG_MAX_HEADER_BYTES + 2:
        return 431, None
    req.minor_version = 1 if m.group(4) != b"0" else 0
    req.header_len = head_len
    headers = []
    hdr = {}
    end = head_len - (2 if buf[head_len - 2:head_len] == b"\r\n" else 1)
    field = _FIELD.match
    while p < end:
        f = field(buf, p, head_len)
        if f is None:
            return 400, None   # obs-fold, bare CR, NUL/CTL, whitespace before the colon...
        if len(headers) == MG_MAX_HEADERS:
            return 431, None
        name = f.group(1)
        hid = HEADER_NAMES.get(name.lower(), MG_H_OTHER)
        if hid and hid not in hdr:
            hdr[hid] = len(headers)
        headers.append((name, f.group(2), hid))
        p = f.end()
    req.headers = headers
    req.hdr = hdr

    content_length = -1
    hosts = 0
    te_codings = None
    close = keep = False
    expect = False
    for name, value, hid in headers if hdr else ():
        if hid == MG_H_HOST:
            hosts += 1
            if not _HOST_OK.match(value):
                return 400, None
        elif hid == MG_H_CONTENT_LENGTH:
            if not _CL.match(value):
                return 400, None
            vals = {int(v) for v in value.split(b",")}
            if len(vals) != 1:
                return 400, None
            n = vals.pop()
            if n > 2 ** 63 - 1 or (content_length >= 0 and n != content_length):
                return 400, None
            content_length = n
        elif hid == MG_H_TRANSFER_ENCODING:
            te_codings = (te_codings or []) + [c for c in _list(value) if c]
        elif hid == MG_H_CONNECTION:
            for tok in _list(value):
                tok = tok.lower()
                if tok == b"close":
                    close = True
                elif tok == b"keep-alive":
                    keep = True
        elif hid == MG_H_EXPECT:
            if value.lower() != b"100-continue":
                return 417, None
            expect = True
    if req.minor_version == 1 and hosts == 0:
        return 400, None
    if hosts > 1:
        return 400, None
    req.chunked = False
    if te_codings is not None:
        if content_length >= 0 or req.minor_version == 0:
            return 400, None
        lowered = [c.lower() for c in te_codings]
        if lowered.count(b"chunked") > 1:
            return 400, None
        if any(c != b"chunked" for c in lowered):
            return 501, None
        if not lowered or lowered[-1] != b"chunked":
            return 400, None
        req.chunked = True
    req.content_length = content_length
    req.expect_continue = expect
    req.keep_alive = (not close) if req.minor_version == 1 else (keep and not close)
    st = _parse_target(req)
    return st, (req if st == 0 else None)


def _parse_target(req):
    t = req.target
    if b"#" in t:
        return 400   # a fragment is never sent, in any form
    if t == b"*":
        if req.method != b"OPTIONS":
            return 400
        req.path, req.query = t, b""
        return 0
    if t[:1] != b"/":
        low = t[:8].lower()
        if low.startswith(b"http://"):
            skip = 7
        elif low.startswith(b"https://"):
            skip = 8
        elif req.method == b"CONNECT":
            req.path, req.query = t, b""
            return 0
        else:
            return 400
        rest = t[skip:]
        cut = min([i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0] or [len(rest)])
        if cut == 0:
            return 400
        t = rest[cut:] or b"/"
        if t[:1] == b"?":
            t = b"/" + t
    path, _, query = t.partition(b"?")
    req.path, req.query = path, query
    return 0


class Chunked:
    """The chunked transfer coding (RFC 9112 7.1), decoded incrementally (C: mg_chunked)."""

    _SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})([ \t;][^\r\n]*)?\r?\n")

    def __init__(self):
        self.remaining = 0
        self.state = "size"
        self.extra = 0

    def decode(self, data):
        """Consume data; returns (status, decoded bytes, bytes consumed): 1 done, 0 more, 400 bad."""
        out = []
        p = 0
        n = len(data)
        while p < n:
            if self.state == "size":
                nl = data.find(b"\n", p)
                if nl < 0:
                    if n - p > 4096:
                        return 400, b"".join(out), p
                    break
                m = self._SIZE.match(data, p, nl + 1)
                if m is None or m.end() != nl + 1:
                    return 400, b"".join(out), p
                ext = m.group(2) or b""
                if re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", ext):
                    return 400, b"".join(out), p
                self.extra += len(ext)
                if self.extra > 4096:
                    return 400, b"".join(out), p
                self.remaining = int(m.group(1), 16)
                p = nl + 1
                self.state = "data" if self.remaining else "trailer"
            elif self.state == "data":
                take = min(self.remaining, n - p)
                out.append(data[p:p + take])
                p += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if data[p:p + 2] == b"\r\n":
                    p += 2
                elif data[p:p + 1] == b"\n":
                    p += 1
                elif data[p:p + 1] == b"\r" and p + 1 == n:
                    break
                else:
                    return 400, b"".join(out), p
                self.state = "size"
            else:   # trailer lines until an empty one
                nl = data.find(b"\n", p)
                if nl < 0:
                    if n - p > 4096:
                        return 400, b"".join(out), p
                    break
                line = data[p:nl]
                p = nl + 1
                if line in (b"", b"\r"):
                    return 1, b"".join(out), p
                self.extra += len(line)
                if self.extra > 4096 or b"\r" in line[:-1] or re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line.rstrip(b"\r")):
                    return 400, b"".join(out), p
        return 0, b"".join(out), p


REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long",
    416: "Range Not Satisfiable", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


def http_reason(status):
    return REASONS.get(status, "Unknown")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(t):
    """IMF-fixdate, locale-free."""
    tm = time.gmtime(t)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (_DAYS[tm.tm_wday], tm.tm_mday,
                                                    _MONTHS[tm.tm_mon - 1], tm.tm_year,
                                                    tm.tm_hour, tm.tm_min, tm.tm_sec)


_IMF = re.compile(rb"^[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$")
_RFC850 = re.compile(rb"^[A-Z][a-z]+, (\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d):(\d\d):(\d\d) GMT$")
_ASCTIME = re.compile(rb"^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})$")
_MONTH_IX = {m.encode(): i for i, m in enumerate(_MONTHS)}


def http_parse_date(value):
    """IMF-fixdate, RFC 850 or asctime form -> seconds since the epoch, or None."""
    m = _IMF.match(value)
    if m:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850.match(value)
        if m:
            day, mon, y2, hh, mm, ss = m.groups()
            year = str(int(y2) + (2000 if int(y2) < 70 else 1900)).encode()
        else:
            m = _ASCTIME.match(value)
            if not m:
                return None
            mon, day, hh, mm, ss, year = m.groups()
    mi = _MONTH_IX.get(mon)
    d, y, h, mi_, s = int(day), int(year), int(hh), int(mm), int(ss)
    if mi is None or not 1 <= d <= 31 or y < 1970 or h > 23 or mi_ > 59 or s > 60:
        return None
    return calendar.timegm((y, mi + 1, d, h, mi_, s, 0, 0, 0))


_ETAG = re.compile(rb'\s*(W/)?("[^"]*")\s*(?:,|$)')


def etag_list_matches(value, etag, weak):
    """If-Match / If-None-Match list against our tag; weak comparison ignores W/ prefixes."""
    if value.strip() == b"*":
        return True
    p = 0
    while p < len(value):
        m = _ETAG.match(value, p)
        if m is None:
            return False
        if (weak or not m.group(1)) and m.group(2) == etag:
            return True
        p = m.end()
    return False


def accepts_gzip(value):
    gzip_q = star_q = None
    for item in value.split(b","):
        tok, _, params = item.partition(b";")
        tok = tok.strip().lower()
        q = True
        for prm in params.split(b";"):
            k, _, v = prm.strip().partition(b"=")
            if k.lower() == b"q":
                q = v.strip().strip(b"0.") != b""
        if tok in (b"gzip", b"x-gzip"):
            gzip_q = gzip_q or q
        elif tok == b"*":
            star_q = q
    return bool(gzip_q) or (gzip_q is None and bool(star_q))


_RANGE_SPEC = re.compile(rb"\s*(\d*)-(\d*)\s*\Z")


def parse_range(value, size):
    """(0, _, _) ignore, (1, start, length) one range, (416, _, _) unsatisfiable (C: parse_range)."""
    if value[:6].lower() != b"bytes=":
        return 0, 0, 0
    ranges = satisfiable = 0
    start = length = 0
    for spec in value[6:].split(b","):
        m = _RANGE_SPEC.match(spec)
        if m is None:
            return 0, 0, 0
        a, b = m.group(1), m.group(2)
        if not a and not b:
            return 0, 0, 0
        a = int(a) if a else -1
        b = int(b) if b else -1
        if a >= 0 and b >= 0 and b < a:
            return 0, 0, 0
        ranges += 1
        if a < 0:
            if b == 0 or size == 0:
                continue
            s = 0 if b >= size else size - b
            ln = size - s
        else:
            if a >= size:
                continue
            s = a
            ln = (size - 1 if b < 0 or b >= size else b) - a + 1
        satisfiable += 1
        start, length = s, ln
    if ranges == 0:
        return 0, 0, 0
    if satisfiable == 0:
        return 416, 0, 0
    return (1, start, length) if ranges == 1 else (0, 0, 0)
