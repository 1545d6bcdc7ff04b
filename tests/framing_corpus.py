"""The framing corpus: malformed and ambiguous requests, each with the outcome RFC 9110/9112 asks for.

Theory of operation. A Case is the raw bytes of one request (always complete: a
head and, where it declares one, its whole body) and what a server must do with
it: the status of its one final response (or a set of statuses where the RFC
leaves a choice and nginx gives no lead), and whether the connection must close
after it (True), must stay open (False) or may do either (None). The section of
the RFC that decides it is written beside it.

Each case is sent three ways by tests/test_framing_corpus.py (whole, one byte per
send, and followed by a pipelined `GET /hello.txt`), and by
tests/test_nginx_differential.py to Debian's nginx. After a rejected request
nothing more may be answered; after an accepted one the pipelined request must
get its own correct answer: a desync (a body read as a request, a request read
as a body) shows up as a wrong second answer or a hang.

The server under test serves the shared test site (tests/conftest.py site_root)
and, through the App below, /echo (answers with the decoded request body) and
/env (answers with the Host the handler saw, the path and the query). nginx
serves the same root and proxies /echo and /env to one of our servers.

The expectations are written from the RFC, not from what the code does today;
cases that today's engines get wrong carry an `xfail` reason naming the defect
(issue 12) and the modes it fails in.
"""

import socket
import time

H = b"Host: a\r\n"
SECOND = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
SECOND_BODY = b"hello world\n"
ALL_MODES = ("whole", "per_byte", "pipelined")
PAUSE = 1.0  # seconds, see Case.pause_after
CLOSE_WAIT = 1.5  # seconds the server gets to close after its last answer (it closes at once)


class Case:
    def __init__(
        self,
        name,
        data,
        status,
        close,
        rfc,
        body=None,
        xfail=None,
        check=None,
        no_interim=False,
        modes=ALL_MODES,
        pause_after=None,
    ):
        self.name = name
        self.data = data
        self.status = status  # int, a tuple of acceptable ints, or None (no HTTP answer)
        self.close = close  # True must close, False must stay open, None either
        self.rfc = rfc  # the section that decides it
        self.body = body  # the exact response body, where it shows what was read
        self.xfail = xfail or {}  # mode -> (reason, engines), for defects being fixed elsewhere;
        # mode "split" is the in-process decoder test
        self.check = check  # extra predicate on the response (name, fn)
        self.no_interim = no_interim  # no 1xx may be sent
        self.modes = modes
        # Send data[:pause_after], wait for the server to act on it (up to PAUSE s:
        # there is no event to await when the right answer is to send nothing),
        # then the rest: puts a read boundary exactly there, in every mode.
        self.pause_after = pause_after

    def accepts(self, status):
        if isinstance(self.status, tuple):
            return status in self.status
        return status == self.status

    def __repr__(self):
        return "<Case %s>" % self.name


def xf(reason, *modes, engines=None):
    """An xfail reason for the given modes (all three when none are given), on the given
    engines (both when None): mode -> (reason, engines)."""
    return {m: (reason, engines) for m in (modes or ALL_MODES)}


D6 = "issue 12 defect 6, fixed on branch req"
D7 = "issue 12 defect 7, fixed on branch req"
D8 = "issue 12 defect 8, fixed on branch req"
D9 = "issue 12 defect 9, fixed on branch req"
FOUND_TE_NOT_LAST = (
    "found by corpus: chunked not final answers 501 (unknown coding) before 9112 6.3's MUST 400"
)
FOUND_CL_LIST = "found by corpus: a list of equal Content-Length values is accepted; nginx rejects it"


def post(headers, body=b"", target=b"/echo", version=b"HTTP/1.1"):
    return b"POST " + target + b" " + version + b"\r\n" + headers + b"\r\n" + body


def chunked(body):
    return post(H + b"Transfer-Encoding: chunked\r\n", body)


def get(target=b"/hello.txt", headers=H, version=b"HTTP/1.1"):
    return b"GET " + target + b" " + version + b"\r\n" + headers + b"\r\n"


def _location_is_local(resp):
    loc = resp.headers.get("location", "")
    return not (loc.startswith("//") or loc.startswith("/\\") or "://" in loc)


def _saw_target_host(resp):
    return resp.body.startswith(b"host=target.example ")


CASES = [
    # ---------------------------------------------------------------- Content-Length / Transfer-Encoding
    Case(
        "cl-and-te",
        post(H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 6.3 p3 (MAY reject; MUST close)",
    ),
    Case(
        "te-and-cl",
        post(H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 6.3 p3",
    ),
    Case(
        "te-chunked-not-last",
        post(H + b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 6.3 p4: chunked not final, MUST answer 400 and close",
    ),
    Case(
        "te-chunked-twice-list",
        post(H + b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 7: chunked MUST NOT be applied twice",
    ),
    Case(
        "te-chunked-twice-fields",
        post(H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 7 and 9110 5.3 (two field lines are one list)",
    ),
    Case(
        "te-gzip-chunked",
        post(H + b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        501,
        True,
        "9112 6.1: a coding it does not understand, 501",
    ),
    Case(
        "te-xchunked",
        post(H + b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
        (400, 501),
        True,
        "9112 6.1 (unknown coding: 501) / 6.3 p4 (chunked not final: 400)",
    ),
    Case(
        "te-identity",
        post(H + b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"),
        (400, 501),
        True,
        "9112 6.1: identity is no longer a coding",
    ),
    Case(
        "te-empty",
        post(H + b"Transfer-Encoding: \r\n", b"0\r\n\r\n"),
        400,
        True,
        "9112 6.1: Transfer-Encoding = #transfer-coding, at least one",
    ),
    Case(
        "te-in-http10",
        post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"),
        400,
        True,
        "9112 6.1: TE in 1.0 MUST be treated as faulty framing, then close",
    ),
    Case(
        "te-uppercase",
        post(H + b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        200,
        False,
        "9112 7: coding names are case-insensitive",
        body=b"hello",
    ),
    Case(
        "cl-list-same",
        post(H + b"Content-Length: 5, 5\r\n", b"hello"),
        400,
        True,
        "9110 8.6 (MAY accept a list of one value; we reject as nginx does)",
    ),
    Case(
        "cl-list-differ",
        post(H + b"Content-Length: 5, 6\r\n", b"hello!"),
        400,
        True,
        "9112 6.3 p5: invalid Content-Length, 400 and close",
    ),
    Case(
        "cl-fields-same",
        post(H + b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        400,
        True,
        "9110 8.6 (MAY accept identical values; we reject as nginx does)",
    ),
    Case(
        "cl-fields-differ",
        post(H + b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        400,
        True,
        "9112 6.3 p5",
    ),
    Case(
        "cl-plus-sign",
        post(H + b"Content-Length: +5\r\n", b"hello"),
        400,
        True,
        "9110 8.6: Content-Length = 1*DIGIT",
    ),
    Case("cl-minus-sign", post(H + b"Content-Length: -5\r\n", b"hello"), 400, True, "9110 8.6"),
    Case("cl-hex", post(H + b"Content-Length: 0x5\r\n", b"hello"), 400, True, "9110 8.6"),
    Case("cl-inner-space", post(H + b"Content-Length: 5 5\r\n", b"hello"), 400, True, "9110 8.6"),
    Case("cl-empty", post(H + b"Content-Length: \r\n", b""), 400, True, "9110 8.6"),
    Case(
        "cl-overflow",
        post(H + b"Content-Length: 99999999999999999999999\r\n", b""),
        (400, 413),
        True,
        "9110 8.6: MUST anticipate large numerals (no overflow)",
    ),
    Case(
        "cl-leading-zeros",
        post(H + b"Content-Length: 005\r\n", b"hello"),
        200,
        False,
        "9110 8.6: 1*DIGIT",
        body=b"hello",
    ),
    Case(
        "cl-trailing-ows",
        post(H + b"Content-Length: 5 \t\r\n", b"hello"),
        200,
        False,
        "9110 5.5: OWS around a field value is not part of it",
        body=b"hello",
    ),
    Case(
        "cl-over-max-body",
        post(H + b"Content-Length: 2000000\r\n", b""),
        413,
        True,
        "9110 15.5.14: content too large; the body is not read, so close",
    ),
    Case(
        "post-without-length",
        post(H),
        200,
        False,
        "9112 6.3 p7: a request without CL or TE has a body of 0",
        body=b"",
    ),
    Case(
        "get-with-body-static",
        get(headers=H + b"Content-Length: 31\r\n") + b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n",
        200,
        False,
        "9112 6.3 p6: the body is framed by CL and discarded, never a request",
    ),
    # ---------------------------------------------------------------- chunk grammar (9112 7.1)
    Case(
        "chunked-valid",
        chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        200,
        False,
        "9112 7.1",
        body=b"hello world",
    ),
    Case(
        "chunk-size-uppercase-hex",
        chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
        200,
        False,
        "9112 7.1: chunk-size = 1*HEXDIG",
        body=b"0123456789",
    ),
    Case(
        "chunk-size-leading-zeros",
        chunked(b"0005\r\nhello\r\n000\r\n\r\n"),
        200,
        False,
        "9112 7.1",
        body=b"hello",
    ),
    Case("chunk-bad-hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1: chunk-size = 1*HEXDIG"),
    Case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1"),
    Case("chunk-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1"),
    Case("chunk-size-leading-space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1"),
    Case("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1"),
    Case(
        "chunk-size-overflow",
        chunked(b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        (400, 413),
        True,
        "9112 7.1: MUST prevent integer overflow",
    ),
    Case(
        "chunk-data-missing-crlf",
        chunked(b"5\r\nhelloX0\r\n\r\n"),
        400,
        True,
        "9112 7.1: chunk = chunk-size [ext] CRLF chunk-data CRLF",
    ),
    Case("chunk-data-too-long", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400, True, "9112 7.1"),
    Case(
        "chunk-data-lf-only",
        chunked(b"5\r\nhello\n0\r\n\r\n"),
        400,
        True,
        "9112 7.1: chunk-data CRLF; 2.2's MAY for a bare LF is refused, as in the head",
    ),
    Case(
        "chunked-all-lf",
        chunked(b"5\nhello\n0\n\n"),
        400,
        True,
        "9112 7.1: every line of the coding ends in CRLF (a bare LF: 400, as in the head)",
    ),
    Case(
        "trailer-bare-lf",
        chunked(b"0\r\nX-T: 1\n\r\n"),
        400,
        True,
        "9112 7.1.2: trailer fields are field lines, ended by CRLF as in the head",
    ),
    Case(
        "chunk-size-bare-cr", chunked(b"5\rhello\r\n0\r\n\r\n"), 400, True, "9112 2.2: a bare CR is invalid"
    ),
    Case(
        "chunk-ext-valid",
        chunked(b"5;name=value\r\nhello\r\n0;last\r\n\r\n"),
        200,
        False,
        "9112 7.1.1",
        body=b"hello",
    ),
    Case(
        "chunk-ext-quoted",
        chunked(b'5;name="va lue;\\"x"\r\nhello\r\n0\r\n\r\n'),
        200,
        False,
        "9112 7.1.1: chunk-ext-val = token / quoted-string",
        body=b"hello",
    ),
    Case(
        "chunk-ext-bws",
        chunked(b"5 ; name = value\r\nhello\r\n0\r\n\r\n"),
        200,
        False,
        "9112 7.1.1: BWS around ';' and '='",
        body=b"hello",
    ),
    Case(
        "chunk-ext-no-name",
        chunked(b"5;\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "9112 7.1.1: chunk-ext-name = token (not empty)",
    ),
    Case(
        "chunk-ext-bad-name",
        chunked(b"5;na@me\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "9112 7.1.1: chunk-ext-name = token",
    ),
    Case(
        "chunk-ext-bare-lf",
        chunked(b"2;\nxx\r\n0\r\n\r\n"),
        400,
        True,
        "9112 7.1.1 and 2.2: a bare LF inside an extension",
    ),
    Case(
        "chunk-ext-bare-cr",
        chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "9112 2.2: a bare CR is invalid",
    ),
    Case(
        "chunk-ext-unterminated-quote",
        chunked(b'5;a="x\r\nhello\r\n0\r\n\r\n'),
        400,
        True,
        "9110 5.6.4: quoted-string must close",
    ),
    Case(
        "chunk-size-trailing-space",
        chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "9112 7.1.1: BWS only before ';'",
    ),
    Case(
        "trailer-valid",
        chunked(b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n"),
        200,
        False,
        "9112 7.1.2",
        body=b"hello",
    ),
    Case(
        "trailer-content-length-ignored",
        chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
        200,
        False,
        "9112 7.1.2: trailers never change framing",
        body=b"hello",
    ),
    Case(
        "trailer-no-colon",
        chunked(b"5\r\nhello\r\n0\r\nbogus\r\n\r\n"),
        400,
        True,
        '9112 7.1.2 and 5: field-line = field-name ":" ...',
    ),
    Case(
        "trailer-bare-cr",
        chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r2\r\n\r\n"),
        400,
        True,
        "9112 2.2: a bare CR is invalid",
    ),
    Case(
        "trailer-bare-cr-at-read-boundary",
        chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r2\r\n\r\n"),
        400,
        True,
        "9112 2.2: a bare CR is invalid, wherever a read ends",
        pause_after=len(chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r")),
    ),
    Case(
        "trailer-obs-fold",
        chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
        400,
        True,
        "9112 5.2: obs-fold, rejected as in the head",
    ),
    Case(
        "trailer-space-before-colon",
        chunked(b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"),
        400,
        True,
        "9112 5.1: MUST reject whitespace before the colon",
    ),
    Case(
        "trailer-nul",
        chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"),
        400,
        True,
        "9110 5.5: NUL is invalid in a field value",
    ),
    # ---------------------------------------------------------------- field syntax (9112 5, 2.2)
    Case(
        "obs-fold",
        get(headers=H + b"X-A: 1\r\n  2\r\n"),
        400,
        True,
        "9112 5.2: obs-fold in a request, 400 (or replace with SP)",
    ),
    Case("space-before-colon", get(headers=H + b"X-A : 1\r\n"), 400, True, "9112 5.1: MUST reject"),
    Case("tab-before-colon", get(headers=H + b"X-A\t: 1\r\n"), 400, True, "9112 5.1: MUST reject"),
    Case(
        "whitespace-before-first-field",
        b"GET /hello.txt HTTP/1.1\r\n X-A: 1\r\n" + H + b"\r\n",
        400,
        True,
        "9112 2.2: whitespace between start-line and first field, reject",
    ),
    Case(
        "bare-cr-in-value",
        get(headers=H + b"X-A: 1\r2\r\n"),
        400,
        True,
        "9112 2.2: a bare CR MUST be invalid (or replaced)",
    ),
    Case("bare-cr-in-request-line", b"GET /hello.txt\rHTTP/1.1\r\n" + H + b"\r\n", 400, True, "9112 2.2"),
    Case(
        "lf-only-lines",
        b"GET /hello.txt HTTP/1.1\n" + H[:-2] + b"\n\n",
        400,
        True,
        "9112 2.2: a recipient MAY take a bare LF as a line end; every line must end in CRLF here",
    ),
    Case(
        "bare-lf-in-field-line",
        b"GET /hello.txt HTTP/1.1\r\n" + H + b"Dummy: x\nContent-Length: 23\r\n\r\n",
        400,
        True,
        "9112 2.2: a front end that keeps the bare LF in Dummy's value sees no Content-Length",
    ),
    Case(
        "bare-lf-empty-line",
        b"GET /hello.txt HTTP/1.1\r\n" + H + b"\n",
        400,
        True,
        "9112 2.2: the empty line ends in CRLF too",
    ),
    Case("nul-in-name", get(headers=H + b"X-\x00A: 1\r\n"), 400, True, "9110 5.1: field-name = token"),
    Case(
        "nul-in-value",
        get(headers=H + b"X-A: 1\x002\r\n"),
        400,
        True,
        "9110 5.5: NUL MUST be rejected or replaced",
    ),
    Case(
        "nul-in-target",
        b"GET /hello\x00.txt HTTP/1.1\r\n" + H + b"\r\n",
        400,
        True,
        "9112 3.2: request-target grammar",
    ),
    Case("ctl-in-value", get(headers=H + b"X-A: 1\x1b2\r\n"), 400, True, "9110 5.5: field-vchar"),
    Case("bad-char-in-name", get(headers=H + b"X(A): 1\r\n"), 400, True, "9110 5.1: field-name = token"),
    Case("empty-field-name", get(headers=H + b": 1\r\n"), 400, True, "9110 5.1"),
    Case("field-without-colon", get(headers=H + b"X-A 1\r\n"), 400, True, "9112 5"),
    Case(
        "value-ows-trimmed",
        get(headers=b"Host: \t a \t\r\n"),
        200,
        False,
        "9112 5.1: OWS around the value is not part of it",
    ),
    Case(
        "too-many-fields",
        get(headers=H + b"".join(b"X-%d: 1\r\n" % i for i in range(101))),
        431,
        True,
        "9110 15.5.20 / 6585 5",
        modes=("whole", "pipelined"),
    ),
    Case(
        "header-section-too-large",
        get(headers=H + b"X: " + b"v" * 33000 + b"\r\n"),
        431,
        True,
        "6585 5",
        modes=("whole", "pipelined"),
    ),
    # ---------------------------------------------------------------- Host (9112 3.2)
    Case("host-missing-11", get(headers=b""), 400, True, "9112 3.2: MUST answer 400"),
    Case(
        "host-missing-10",
        get(headers=b"Connection: keep-alive\r\n", version=b"HTTP/1.0"),
        200,
        False,
        "9112 3.2: Host is required in 1.1 only",
    ),
    Case(
        "host-twice",
        get(headers=H + b"Host: b\r\n"),
        400,
        True,
        "9112 3.2: more than one Host, MUST answer 400",
    ),
    Case("host-twice-same", get(headers=H + H), 400, True, "9112 3.2"),
    Case(
        "host-list",
        get(headers=b"Host: a, b\r\n"),
        400,
        True,
        '9112 3.2 and 9110 7.2: Host = uri-host [ ":" port ]',
    ),
    Case("host-space", get(headers=b"Host: a b\r\n"), 400, True, "9112 3.2: an invalid Host value, 400"),
    Case("host-slash", get(headers=b"Host: a/b\r\n"), 400, True, "9112 3.2"),
    Case("host-with-port", get(headers=b"Host: a:8080\r\n"), 200, False, "9110 7.2"),
    Case("absolute-form", get(b"http://a/hello.txt"), 200, False, "9112 3.2.2"),
    Case(
        "absolute-form-without-host",
        get(b"http://a/hello.txt", headers=b""),
        400,
        True,
        "9112 3.2: an HTTP/1.1 request without Host, 400",
    ),
    Case(
        "absolute-form-wins-over-host",
        get(b"http://target.example/env", headers=b"Host: other\r\n"),
        200,
        False,
        "9112 3.2.2: MUST ignore Host and use the target's authority",
        check=("the handler sees the target's authority", _saw_target_host),
    ),
    # ---------------------------------------------------------------- request line (9112 3)
    Case(
        "double-space-after-method",
        b"GET  /hello.txt HTTP/1.1\r\n" + H + b"\r\n",
        400,
        True,
        "9112 3 (MAY parse on whitespace; we are strict: 400)",
    ),
    Case("double-space-before-version", b"GET /hello.txt  HTTP/1.1\r\n" + H + b"\r\n", 400, True, "9112 3"),
    Case("tab-separators", b"GET\t/hello.txt\tHTTP/1.1\r\n" + H + b"\r\n", 400, True, "9112 3: SP"),
    Case("version-trailing-space", b"GET /hello.txt HTTP/1.1 \r\n" + H + b"\r\n", 400, True, "9112 3"),
    Case(
        "lowercase-method",
        b"get /hello.txt HTTP/1.1\r\n" + H + b"\r\n",
        501,
        False,
        "9110 9.1: methods are case-sensitive; an unknown one, 501",
    ),
    Case("unknown-method", b"BREW /hello.txt HTTP/1.1\r\n" + H + b"\r\n", 501, False, "9110 9.1 / 15.6.2"),
    Case(
        "bad-char-in-method",
        b"GE(T /hello.txt HTTP/1.1\r\n" + H + b"\r\n",
        400,
        True,
        "9110 9.1: method = token",
    ),
    Case(
        "http-1.2",
        get(version=b"HTTP/1.2"),
        200,
        False,
        "9110 2.5: a higher minor version is handled as the highest we know",
    ),
    Case("http-2.0", get(version=b"HTTP/2.0"), 505, True, "9110 15.6.6"),
    Case(
        "http-0.9",
        b"GET /hello.txt\r\n\r\n",
        400,
        True,
        "9112 3 / 2.3: no HTTP/0.9; an invalid request-line, 400",
    ),
    Case("version-lowercase", get(version=b"http/1.1"), 400, True, "9112 2.3: HTTP-name is case-sensitive"),
    Case(
        "version-two-digits",
        get(version=b"HTTP/1.10"),
        400,
        True,
        '9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT',
    ),
    Case(
        "request-line-too-long",
        get(b"/" + b"a" * 8300),
        414,
        True,
        "9112 3: 414 for a line longer than we parse",
        modes=("whole", "pipelined"),
    ),
    Case("method-only", b"GET\r\n" + H + b"\r\n", 400, True, "9112 3"),
    Case("target-without-slash", get(b"hello.txt"), 400, True, "9112 3.2: origin-form starts with /"),
    Case(
        "fragment-in-target", get(b"/hello.txt#frag"), 400, True, "9112 3.2: no fragment in a request-target"
    ),
    Case("asterisk-get", get(b"*"), 400, True, "9112 3.2.4: asterisk-form is for OPTIONS only"),
    Case(
        "options-asterisk",
        get(b"*").replace(b"GET", b"OPTIONS", 1),
        (200, 204),
        False,
        "9110 9.3.7: OPTIONS * asks about the server",
    ),
    Case(
        "connect-authority",
        b"CONNECT a:1 HTTP/1.1\r\n" + H + b"\r\n",
        (405, 501),
        None,
        "9110 9.3.6: a method we do not implement, 501 (or 405)",
    ),
    Case(
        "connect-ipv6-authority",
        b"CONNECT [::1]:1 HTTP/1.1\r\n" + H + b"\r\n",
        (405, 501),
        None,
        "9110 9.3.6",
    ),
    Case(
        "empty-lines-before-request",
        b"\r\n\r\n\n" + get(),
        200,
        False,
        "9112 2.2: SHOULD ignore empty lines before the request-line",
    ),
    Case(
        "percent-nul-in-path",
        get(b"/hello%00.txt"),
        (400, 404),
        None,
        "9110 4.2.3: a decoded NUL never names a file",
    ),
    Case(
        "dotdot-above-root",
        get(b"/../conftest.py"),
        (400, 404),
        None,
        "RFC 3986 5.2.4: dot-segments cannot climb above the root",
    ),
    Case(
        "open-redirect-double-slash",
        get(b"//evil.example/../sub"),
        301,
        False,
        "9110 10.2.2 with RFC 3986 4.2: a Location of //host is another site",
        check=("Location stays on this site", _location_is_local),
    ),
    # ---------------------------------------------------------------- Expect and connection persistence
    Case(
        "expect-100-http11",
        post(H + b"Content-Length: 5\r\nExpect: 100-continue\r\n", b"hello"),
        200,
        False,
        "9110 10.1.1",
        body=b"hello",
        pause_after=len(post(H + b"Content-Length: 5\r\nExpect: 100-continue\r\n")),
    ),
    Case(
        "expect-100-http10",
        post(
            b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n",
            b"hello",
            version=b"HTTP/1.0",
        ),
        200,
        False,
        "9110 10.1.1: MUST NOT send 100 to an HTTP/1.0 client",
        body=b"hello",
        no_interim=True,
        pause_after=len(
            post(
                b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n",
                version=b"HTTP/1.0",
            )
        ),
    ),
    Case(
        "expect-unknown",
        get(headers=H + b"Expect: tea\r\n"),
        417,
        None,
        "9110 10.1.1: an expectation we cannot meet, 417",
    ),
    Case(
        "connection-close",
        get(headers=H + b"Connection: close\r\n"),
        200,
        True,
        "9112 9.6: close after answering",
    ),
    Case(
        "http10-default-closes",
        get(headers=b"", version=b"HTTP/1.0"),
        200,
        True,
        "9112 9.3: 1.0 without keep-alive closes",
    ),
    Case(
        "connection-close-among-tokens",
        get(headers=H + b"Connection: foo, close\r\n"),
        200,
        True,
        "9110 7.6.1: Connection is a list",
    ),
]
NAMES = [c.name for c in CASES]
assert len(set(NAMES)) == len(NAMES), "case names must be unique"


# --------------------------------------------------------------------- the client


class Resp:
    def __init__(self, status, headers, body):
        self.status = status  # None when the answer was not an HTTP/1.x response
        self.headers = headers  # dict, names lowercased (last one wins)
        self.body = body

    def __repr__(self):
        return "<Resp %s %r %r>" % (self.status, self.headers, self.body[:80])


class Exchange:
    """What came back on one connection: final responses, 1xx seen, and whether it was closed."""

    def __init__(self):
        self.responses = []
        self.interim = []
        self.closed = False
        self.leftover = b""

    @property
    def statuses(self):
        return [r.status for r in self.responses]


def _parse_one(buf, eof):
    """One response from the front of buf: (Resp or None if incomplete, bytes used, is_interim)."""
    if not buf.startswith(b"HTTP/1."):
        if eof:  # not HTTP/1.x (an HTTP/0.9 answer): everything to the close is its body
            return Resp(None, {}, buf), len(buf), False
        return None, 0, False
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, 0, False
    lines = buf[:end].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    p = end + 4
    if status < 200:
        return Resp(status, headers, b""), p, True
    if status in (204, 304):
        return Resp(status, headers, b""), p, False
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            nl = buf.find(b"\r\n", p)
            if nl < 0:
                return None, 0, False
            n = int(buf[p:nl].split(b";")[0], 16)
            if n == 0:
                t = buf.find(b"\r\n\r\n", nl)
                if buf[nl : nl + 4] == b"\r\n\r\n":
                    return Resp(status, headers, body), nl + 4, False
                if t < 0:
                    return None, 0, False
                return Resp(status, headers, body), t + 4, False
            if len(buf) < nl + 2 + n + 2:
                return None, 0, False
            body += buf[nl + 2 : nl + 2 + n]
            p = nl + 2 + n + 2
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < p + n:
            return None, 0, False
        return Resp(status, headers, buf[p : p + n]), p + n, False
    if eof:
        return Resp(status, headers, buf[p:]), len(buf), False
    return None, 0, False


def _send(s, data, per_byte):
    if per_byte:
        for i in range(len(data)):
            s.send(data[i : i + 1])
    else:
        s.sendall(data)


def exchange(port, data, per_byte=False, want=1, wait_close=True, timeout=5.0, pause_after=None):
    """Send data on a fresh connection; read until `want` final responses came and, if
    wait_close, until the server closes (or `timeout` passes with nothing new)."""
    ex = Exchange()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if pause_after is not None:
                _send(s, data[:pause_after], per_byte)
                s.settimeout(PAUSE)
                try:
                    buf = s.recv(65536)  # an interim or early answer, or nothing
                except socket.timeout:
                    pass
                data = data[pause_after:]
            _send(s, data, per_byte)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before we finished: read what was sent
        deadline = time.monotonic() + timeout
        while True:
            eof = False
            try:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                eof = not chunk
            except socket.timeout:
                chunk = b""
            except ConnectionResetError:
                chunk, eof = b"", True
            buf += chunk
            while buf:
                resp, used, interim = _parse_one(buf, eof)
                if resp is None:
                    break
                buf = buf[used:]
                (ex.interim if interim else ex.responses).append(resp)
            if eof:
                ex.closed = True
                break
            if len(ex.responses) >= want:
                if not wait_close:
                    break
                deadline = min(deadline, time.monotonic() + CLOSE_WAIT)
            if time.monotonic() >= deadline:
                break
        ex.leftover = buf
        return ex
    finally:
        s.close()


def outcome(port, case, timeout=5.0):
    """The case with the pipelined GET behind it: (status of the first answer, whether
    the pipelined request was answered correctly). The comparison key for nginx."""
    ex = exchange(
        port, case.data + SECOND, want=2, wait_close=True, timeout=timeout, pause_after=case.pause_after
    )
    first = ex.responses[0].status if ex.responses else None
    first = "none" if first is None else first  # no answer, or not an HTTP/1.x one
    second_ok = (
        len(ex.responses) == 2 and ex.responses[1].status == 200 and ex.responses[1].body == SECOND_BODY
    )
    return first, ("answered" if second_ok else "closed" if len(ex.responses) <= 1 and ex.closed else "other")
