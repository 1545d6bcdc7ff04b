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
(
    MG_H_OTHER,
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
) = range(14)
HEADER_NAMES = {
    b"host": MG_H_HOST,
    b"connection": MG_H_CONNECTION,
    b"content-length": MG_H_CONTENT_LENGTH,
    b"transfer-encoding": MG_H_TRANSFER_ENCODING,
    b"expect": MG_H_EXPECT,
    b"accept-encoding": MG_H_ACCEPT_ENCODING,
    b"if-modified-since": MG_H_IF_MODIFIED_SINCE,
    b"if-none-match": MG_H_IF_NONE_MATCH,
    b"if-match": MG_H_IF_MATCH,
    b"if-unmodified-since": MG_H_IF_UNMODIFIED_SINCE,
    b"range": MG_H_RANGE,
    b"if-range": MG_H_IF_RANGE,
    b"upgrade": MG_H_UPGRADE,
}
METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT"}


def header_id(name):
    """The pre-hashed lookup: one dict probe (C: a switch on length and first byte)."""
    return HEADER_NAMES.get(name.lower(), MG_H_OTHER)


# request-line = method SP request-target SP HTTP-version CRLF.  Every line of a head ends
# in CRLF: a bare LF (RFC 9112 2.2 lets a server accept it) is a 400, as C's (csrc/http.c
# parse_request_line says why: request smuggling past a front end that keeps one in a value)
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/(\d)\.(\d)\r\n")
# its first two parts, for a line it does not match (_broken_line_status)
_METHOD_SP = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ ")
_TARGET_BYTES = re.compile(rb"[\x21-\x7e\x80-\xff]*")
# field-line = field-name ":" OWS field-value OWS CRLF
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r\n")
# authority = uri-host [ ":" port ]: IP-literal, or reg-name / IPv4address (C: authority_ok)
_REGNAME = rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})"
_IP_LITERAL = rb"\[[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
_HOST_OK = re.compile(rb"(?:" + _IP_LITERAL + rb"|" + _REGNAME + rb"*)(?::\d*)?\Z")
_URI_AUTHORITY = re.compile(rb"(?:" + _IP_LITERAL + rb"|" + _REGNAME + rb"+)(?::\d*)?\Z")
_CONNECT_AUTHORITY = re.compile(rb"(?:" + _IP_LITERAL + rb"|" + _REGNAME + rb"+):\d+\Z")


# request-target forms (RFC 9112 section 3.2; C: mg_target_form)
MG_FORM_ORIGIN, MG_FORM_ABSOLUTE, MG_FORM_AUTHORITY, MG_FORM_ASTERISK = range(4)


class Request:
    """Views of one parsed request head (C: mg_request).  Every field is set
    at creation, so none is ever missing whatever path the parse took."""

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "target_form",
        "minor_version",
        "header_len",
        "keep_alive",
        "expect_continue",
        "chunked",
        "content_length",
        "headers",
        "hdr",
    )

    def __init__(self):
        self.method = self.target = self.path = self.query = b""
        self.target_form = MG_FORM_ORIGIN
        self.minor_version = self.header_len = 0
        self.keep_alive = self.expect_continue = self.chunked = False
        self.content_length = -1
        self.headers = []
        self.hdr = {}

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
    # not complete yet: bytes no more bytes can mend are answered now (C says why)
    n = len(buf)
    if n and buf[0] not in _TCHAR:
        return -400  # no request line begins so: 0x16 (TLS), 0x80 (SSLv2), a space...
    nl = buf.find(b"\n", 0, MG_MAX_REQUEST_LINE + 1)
    if n > MG_MAX_REQUEST_LINE and nl < 0:
        return -414
    if nl >= 0:  # the request line is whole: "GET / HTTP/5.6", a PROXY preamble, a bare CR
        st = request_line_status(buf, nl + 1)
        if st:
            return -st
    if n > MG_MAX_REQUEST_LINE + MG_MAX_HEADER_BYTES:
        return -431
    return 0


def request_line_status(buf, line_end):
    """0 for a request line buf[:line_end] (CRLF included) that parse_http would take,
    else its status: 400, 414, or 505 (HTTP/2 and up), in C's order."""
    m = _REQUEST_LINE.match(buf, 0, line_end)
    if m is not None:
        return 0 if m.group(3) == b"1" else 505
    return _broken_line_status(buf, line_end)


def _list(value):
    return [v.strip(b" \t") for v in value.split(b",")]


def _broken_line_status(buf, head_len):
    """A request line _REQUEST_LINE does not match, read from its start as C does
    (csrc/http.c parse_http): 400 for a method that is not a token, whatever follows;
    a target that stops at a byte that is not SP, 414 if that byte is past the limit,
    else 400; anything else (the version) 400."""
    m = _METHOD_SP.match(buf, 0, head_len)
    if m is None:
        return 400
    p = _TARGET_BYTES.match(buf, m.end(), head_len).end()
    if p == m.end() or p == head_len or buf[p] != 0x20:
        return 414 if p > MG_MAX_REQUEST_LINE else 400
    return 400


def parse_http(buf, head_len):
    """Parse buf[:head_len]; returns (status, Request).  status 0 = OK, else an HTTP status."""
    m = _REQUEST_LINE.match(buf, 0, head_len)
    if m is None:
        return _broken_line_status(buf, head_len), None
    req = Request()
    req.method = m.group(1)
    req.target = m.group(2)
    p = m.end()
    if p > MG_MAX_REQUEST_LINE + 2:
        return 414, None
    if head_len - p > MG_MAX_HEADER_BYTES + 2:
        return 431, None
    if m.group(3) != b"1":
        return 505, None
    req.minor_version = 1 if m.group(4) != b"0" else 0
    req.header_len = head_len
    headers = []
    hdr = {}
    if buf[head_len - 2 : head_len] != b"\r\n":
        return 400, None  # the empty line is CRLF too (a head that ended at LF LF)
    end = head_len - 2
    field = _FIELD.match
    while p < end:
        f = field(buf, p, head_len)
        if f is None:
            return 400, None  # obs-fold, bare CR, NUL/CTL, whitespace before the colon...
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
    for _name, value, hid in headers if hdr else ():
        if hid == MG_H_HOST:
            hosts += 1
            if not _HOST_OK.match(value):
                return 400, None
        elif hid == MG_H_CONTENT_LENGTH:
            # 1*DIGIT in one field line; a list or a second field, even of the same
            # value, is 400 as in nginx (RFC 9110 8.6 allows either; C: content_length_value)
            if content_length >= 0 or not value.isdigit() or not value.isascii():
                return 400, None
            n = int(value)
            if n > 2**63 - 1:
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
        if not lowered or lowered[-1] != b"chunked":
            return 400, None  # chunked not final: 9112 6.3 p4's MUST before 6.1's 501
        if any(c != b"chunked" for c in lowered):
            return 501, None
        req.chunked = True
    req.content_length = content_length
    req.expect_continue = expect
    req.keep_alive = (not close) if req.minor_version == 1 else (keep and not close)
    st = _parse_target(req)
    return st, (req if st == 0 else None)


def _parse_target(req):
    """Split the target by its form (C: parse_target).  Returns 0, 400 or 431."""
    t = req.target
    if b"#" in t:
        return 400  # a fragment is never sent, in any form
    if req.method == b"CONNECT":
        # authority-form, CONNECT's only form; conn_entry answers 501
        if not _CONNECT_AUTHORITY.match(t):
            return 400
        req.target_form = MG_FORM_AUTHORITY
        return 0
    if t == b"*":
        if req.method != b"OPTIONS":
            return 400
        req.target_form = MG_FORM_ASTERISK
        req.path = t
        return 0
    if t[:1] != b"/":
        low = t[:8].lower()
        if low.startswith(b"http://"):
            skip = 7
        elif low.startswith(b"https://"):
            skip = 8
        else:
            return 400
        rest = t[skip:]
        cut = min([i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0] or [len(rest)])
        authority = rest[:cut]
        if not _URI_AUTHORITY.match(authority):
            return 400
        # RFC 9112 section 3.2.2: the target's authority replaces Host
        i = req.hdr.get(MG_H_HOST)
        if i is None:
            if len(req.headers) == MG_MAX_HEADERS:
                return 431
            req.hdr[MG_H_HOST] = i = len(req.headers)
            req.headers.append((b"Host", authority, MG_H_HOST))
        else:
            req.headers[i] = (req.headers[i][0], authority, MG_H_HOST)
        req.target_form = MG_FORM_ABSOLUTE
        t = rest[cut:]
        if not t and req.method == b"OPTIONS":
            req.target_form = MG_FORM_ASTERISK  # how a proxy passes on "OPTIONS *"
            req.path = b"*"
            return 0
        if t[:1] != b"/":
            t = b"/" + t  # an empty path is "/"
    path, _, query = t.partition(b"?")
    req.path, req.query = path, query
    return 0


# The chunked decoder's states (C: the CH_* enum in csrc/http.c), read there
# for the grammar and the reasons.
(
    CH_SIZE,
    CH_SIZE_BWS,
    CH_EXT_NAME0,
    CH_EXT_NAME,
    CH_EXT_NAME_BWS,
    CH_EXT_VAL0,
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QPAIR,
    CH_EXT_VAL_END,
    CH_EXT_BWS,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
) = range(21)
MG_MAX_CHUNK_EXT = 4096
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_WS = frozenset(b" \t")
_QDTEXT = frozenset(
    [9, 32, 0x21] + list(range(0x23, 0x5C)) + list(range(0x5D, 0x7F)) + list(range(0x80, 0x100))
)
_QPAIR = frozenset([9] + list(range(0x20, 0x7F)) + list(range(0x80, 0x100)))
_VALUE = frozenset([9] + list(range(0x20, 0x7F)) + list(range(0x80, 0x100)))
_COUNTED = frozenset(
    [
        CH_SIZE_BWS,
        CH_EXT_NAME0,
        CH_EXT_NAME,
        CH_EXT_NAME_BWS,
        CH_EXT_VAL0,
        CH_EXT_TOKEN,
        CH_EXT_QUOTED,
        CH_EXT_QPAIR,
        CH_EXT_VAL_END,
        CH_EXT_BWS,
        CH_TRAILER,
        CH_TRAILER_NAME,
        CH_TRAILER_VALUE,
    ]
)
# (state, byte class) -> next state, for the states with no arithmetic: data as
# in h11's _state.py.  A class is the byte itself for ; = " \ : CR LF, else
# "t" (tchar), "w" (SP / HTAB), "q"/"v" (membership tests below).
_NEXT = {
    CH_SIZE_BWS: {b";": CH_EXT_NAME0, "w": CH_SIZE_BWS},
    CH_EXT_NAME0: {"t": CH_EXT_NAME, "w": CH_EXT_NAME0},
    CH_EXT_NAME: {
        "t": CH_EXT_NAME,
        b"=": CH_EXT_VAL0,
        b";": CH_EXT_NAME0,
        "w": CH_EXT_NAME_BWS,
        b"\r": CH_SIZE_LF,
    },
    CH_EXT_NAME_BWS: {b"=": CH_EXT_VAL0, b";": CH_EXT_NAME0, "w": CH_EXT_NAME_BWS},
    CH_EXT_VAL0: {b'"': CH_EXT_QUOTED, "t": CH_EXT_TOKEN, "w": CH_EXT_VAL0},
    CH_EXT_TOKEN: {"t": CH_EXT_TOKEN, b";": CH_EXT_NAME0, "w": CH_EXT_BWS, b"\r": CH_SIZE_LF},
    CH_EXT_VAL_END: {b";": CH_EXT_NAME0, "w": CH_EXT_BWS, b"\r": CH_SIZE_LF},
    CH_EXT_BWS: {b";": CH_EXT_NAME0, "w": CH_EXT_BWS},
    CH_DATA_CR: {b"\r": CH_DATA_LF},
    CH_DATA_LF: {b"\n": CH_SIZE},
    CH_TRAILER: {b"\r": CH_END_LF, "t": CH_TRAILER_NAME},
    CH_TRAILER_NAME: {"t": CH_TRAILER_NAME, b":": CH_TRAILER_VALUE},
    CH_TRAILER_VALUE: {b"\r": CH_TRAILER_LF, "v": CH_TRAILER_VALUE},
    CH_TRAILER_LF: {b"\n": CH_TRAILER},
    CH_END_LF: {b"\n": CH_DONE},
}


class Chunked:
    """The chunked transfer coding (RFC 9112 7.1), decoded incrementally (C: chunked_decode).

    Byte by byte outside chunk data, the same machine as C, so a line split
    across reads is judged exactly as a whole one."""

    def __init__(self, max_body):
        self.max_body = max_body  # 413 as soon as a size line says the body passes it
        self.total = 0
        self.state = CH_SIZE
        self.remaining = 0
        self.hex_digits = 0
        self.extra = 0  # extension and trailer bytes so far (C: ext_or_trailer_bytes)

    def decode(self, data):
        """Consume data; returns (status, decoded bytes, bytes consumed): 1 done, 0 more,
        400 bad, 413 too large."""
        out = []
        p = 0
        n = len(data)
        nxt = _NEXT
        while p < n and self.state != CH_DONE:
            st = self.state
            if st == CH_DATA:
                take = min(self.remaining, n - p)
                out.append(data[p : p + take])
                p += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = CH_DATA_CR
                continue
            c = data[p]
            ws = c in _WS
            if c not in (13, 10) and (st in _COUNTED or (st == CH_SIZE and (c == 59 or ws))):
                self.extra += 1
                if self.extra > MG_MAX_CHUNK_EXT:
                    return 400, b"".join(out), p
            new = None
            if st == CH_SIZE:
                v = _HEX.get(c)
                if v is not None:
                    self.hex_digits += 1
                    if self.hex_digits > 16 or self.remaining > (1 << 59) - 1:
                        return 400, b"".join(out), p
                    self.remaining = self.remaining * 16 + v
                    new = CH_SIZE
                elif self.hex_digits:
                    self.total += self.remaining  # the size is complete: does it fit?
                    if self.total > self.max_body:
                        return 413, b"".join(out), p
                    if c == 59:
                        new = CH_EXT_NAME0
                    elif ws:
                        new = CH_SIZE_BWS
                    elif c == 13:
                        new = CH_SIZE_LF
            elif st == CH_SIZE_LF:
                if c == 10:
                    new = CH_DATA if self.remaining else CH_TRAILER
            elif st == CH_EXT_QUOTED:
                new = (
                    CH_EXT_VAL_END
                    if c == 34
                    else CH_EXT_QPAIR
                    if c == 92
                    else CH_EXT_QUOTED
                    if c in _QDTEXT
                    else None
                )
            elif st == CH_EXT_QPAIR:
                new = CH_EXT_QUOTED if c in _QPAIR else None
            else:
                row = nxt[st]
                b = bytes((c,))
                new = row.get(b)
                if new is None:
                    if c in _TCHAR:
                        new = row.get("t")
                    elif ws:
                        new = row.get("w")
                    if new is None and c in _VALUE:
                        new = row.get("v")
            if new is None:
                return 400, b"".join(out), p
            if new == CH_SIZE and st != CH_SIZE:
                self.hex_digits = 0
                self.remaining = 0
            self.state = new
            p += 1
        return (1 if self.state == CH_DONE else 0), b"".join(out), p


# The IANA registry's reason phrases, 418 "I'm a teapot" included, unknown codes
# none: csrc/http_response.c http_reason (the same table, checked by
# tests/test_atk_response.py).
REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}


def http_reason(status):
    return REASONS.get(status, "")  # RFC 9112 4: an empty reason-phrase is valid


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_DATE_MIN = -62135596800  # Mon, 01 Jan 0001 00:00:00 GMT
_DATE_MAX = 253402300799  # Fri, 31 Dec 9999 23:59:59 GMT


def http_date(t):
    """IMF-fixdate, locale-free, always 29 characters: a time outside years
    1..9999 (a 4-digit year, RFC 9110 5.6.7) is clamped into them (C: http_date)."""
    tm = time.gmtime(min(max(int(t), _DATE_MIN), _DATE_MAX))
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[tm.tm_wday],
        tm.tm_mday,
        _MONTHS[tm.tm_mon - 1],
        tm.tm_year,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )


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
