"""parse_http through cffi: each rule as a named case, run whole, as every prefix, and with trailing bytes."""

import pytest

from minginx_cffi._native import parse_request

INCOMPLETE = -1


def check(data, status):
    """The whole head gives `status`; every proper prefix asks for more; bytes after it change nothing."""
    r = parse_request(data)
    assert r["status"] == status, (data, r)
    for i in range(len(data)):
        p = parse_request(data[:i])
        assert p["status"] in (INCOMPLETE, status), (data[:i], p)
    if status == 0:
        t = parse_request(data + b"GET /next HTTP/1.1\r\n")
        assert t["status"] == 0 and t["header_len"] == r["header_len"]
    return r


OK = [
    ("simple", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("http10 no host", b"GET / HTTP/1.0\r\n\r\n"),
    ("leading empty line", b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("absolute form", b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ("options asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("empty value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n"),
    ("tab in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n"),
    ("obs-text in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"),
    ("chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("http 1.2 read as 1.1", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("unknown method is parsed (501 later)", b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("connect authority-form (501 later)", b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("connect ipv6 (501 later)", b"CONNECT [::1]:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("absolute form, no host field in 1.0", b"GET http://a/x HTTP/1.0\r\n\r\n"),
    ("absolute form, empty path", b"GET http://a:8?x HTTP/1.1\r\nHost: b\r\n\r\n"),
    ("options absolute form, no path", b"OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("host with port", b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
    ("host ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
    ("host pct-encoded", b"GET / HTTP/1.1\r\nHost: a%41\r\n\r\n"),
    ("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
]


@pytest.mark.parametrize("name,data", OK, ids=[n for n, _ in OK])
def test_valid_heads(name, data):
    check(data, 0)


BAD = [
    # every line ends in CRLF: a bare LF is a 400 (csrc/http.c parse_request_line says why)
    ("lf only line ends", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    (
        "bare lf ending a field line",
        b"GET / HTTP/1.1\r\nHost: a\r\nDummy: x\nContent-Length: 23\r\n\r\n",
        400,
    ),
    ("bare lf ending the request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare lf as the empty line", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("no host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad host chars", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("NUL in header name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: 1\r\n\r\n", 400),
    ("control byte in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    ("empty header name", b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400),
    (
        "cl and te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("cl not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\n", 400),
    ("cl negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl plus sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400),
    ("cl conflicting", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    ("cl conflicting list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400),
    ("cl overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    # RFC 9110 8.6 lets a recipient accept identical values; we reject them, as nginx does
    ("identical content-length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
    (
        "two identical content-length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400,
    ),
    # chunked not final: RFC 9112 6.3 p4 MUST 400 (before 6.1's SHOULD 501 for an unknown coding)
    ("unknown transfer-encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("chunked not last", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    (
        "unknown coding before chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    ("chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("te in http 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("version 2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("version 0.9", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("malformed version", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    ("no version", b"GET /\r\nHost: a\r\n\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad method char", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("relative target", b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk not options", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("connect origin-form", b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("connect without port", b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("connect userinfo", b"CONNECT u@a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("authority-form not connect", b"GET a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute form empty host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute form userinfo", b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute form bad port", b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute form still needs host in 1.1", b"GET http://a/ HTTP/1.1\r\n\r\n", 400),
    ("host bad port", b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
    ("host userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    ("host open bracket", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    ("host bad escape", b"GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400),
    ("fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("unknown expectation", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417),
    (
        "too many fields",
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n",
        431,
    ),
]


@pytest.mark.parametrize("name,data,status", BAD, ids=[n for n, _, _ in BAD])
def test_rejected_heads(name, data, status):
    check(data, status)


def test_request_line_over_8k_is_414_before_the_head_ends():
    r = parse_request(b"GET /" + b"a" * 9000)
    assert r["status"] == 414


def test_long_request_line_complete_is_414():
    check(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


def test_header_section_over_32k_is_431():
    big = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"v" * 33000 + b"\r\n\r\n"
    assert parse_request(big)["status"] == 431
    assert parse_request(big[:-4] + b"x" * 8000)["status"] == 431  # before it ends, too


def test_keep_alive_rules():
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")["keep_alive"] == 1
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")["keep_alive"] == 0
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n")["keep_alive"] == 0
    assert parse_request(b"GET / HTTP/1.0\r\n\r\n")["keep_alive"] == 0
    assert parse_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")["keep_alive"] == 1


def test_framing_fields():
    r = parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
    assert r["content_length"] == 12 and r["chunked"] == 0
    r = parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
    assert r["content_length"] == -1 and r["chunked"] == 1
    r = parse_request(b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n")
    assert (r["method_len"], r["target_len"], r["num_headers"], r["minor_version"]) == (3, 6, 3, 1)


KNOWN = [
    "Host",
    "Connection",
    "Content-Length",
    "Transfer-Encoding",
    "Expect",
    "Accept-Encoding",
    "If-Modified-Since",
    "If-None-Match",
    "If-Match",
    "If-Unmodified-Since",
    "Range",
    "If-Range",
    "Upgrade",
]
OTHERS = [
    "X-Host",
    "Hosts",
    "Rang",
    "If-Matchx",
    "Content-Type",
    "Accept",
    "Cookie",
    "User-Agent",
    "If-Rangf",
    "Connectiom",
    "Transfer-Encodinf",
    "a",
    "Content-Lengt",
    "Expecx",
]


@pytest.mark.parametrize("name", KNOWN + OTHERS + [n.upper() for n in KNOWN] + [n.lower() for n in KNOWN])
def test_fast_header_matcher_agrees_with_plain(name):
    from minginx_cffi._native import header_id

    b = name.encode()
    assert header_id(b) == header_id(b, plain=True)
    assert (header_id(b) != 0) == (name.lower() in [k.lower() for k in KNOWN])


def test_known_headers_have_distinct_ids():
    from minginx_cffi._native import header_id

    ids = [header_id(n.encode()) for n in KNOWN]
    assert len(set(ids)) == len(KNOWN) and 0 not in ids


@pytest.mark.parametrize(
    "text,expected",
    [
        (b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 784111777),
        (b"Sun Nov  6 08:49:37 1994", 784111777),
        (b"Sun, 06 Nov 1994 08:49:37 UTC", None),
        (b"Sun, 32 Nov 1994 08:49:37 GMT", None),
        (b"yesterday", None),
        (b"", None),
    ],
)
def test_http_dates(text, expected):
    from minginx_cffi._native import parse_http_date

    assert parse_http_date(text) == expected


@pytest.mark.parametrize(
    "name,data,status", [(n, d, 0) for n, d in OK] + BAD, ids=[n for n, _ in OK] + [n for n, _, _ in BAD]
)
def test_port_agrees(name, data, status):
    """The Python port's parse_http gives every named case the same answer as C."""
    from minginx_cffi.pyport import http as pyhttp

    data = data.lstrip(b"\r\n")  # the port's conn_entry drops empty lines before the head
    end = pyhttp.http_find_head_end(data)
    got = -end if end < 0 else pyhttp.parse_http(data[:end], end)[0]
    assert got == status


# The value and target scans classify 16 bytes at a time (csrc/http.c skip_class):
# every position of a bad byte, in the first block, later blocks and the byte-wise
# tail, and the good bytes that sit at the class edges (HTAB, SP, "!", 0x7e, obs-text).
@pytest.mark.parametrize("bad", [b"\x00", b"\x01", b"\x0b", b"\x1f", b"\x7f", b"\r"])
@pytest.mark.parametrize("at", range(0, 40))
def test_a_bad_value_byte_anywhere_in_a_long_value_is_400(bad, at):
    value = bytearray(b"v" * 40)
    value[at : at + 1] = bad
    r = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + bytes(value) + b"\r\n\r\n")
    assert r["status"] == 400, (bad, at)


@pytest.mark.parametrize("bad", [b"\x00", b"\x09", b"\x1f", b"\x7f"])
@pytest.mark.parametrize("at", range(1, 40))
def test_a_bad_target_byte_anywhere_in_a_long_target_is_400(bad, at):
    target = bytearray(b"/" + b"t" * 40)
    target[at : at + 1] = bad
    r = parse_request(b"GET " + bytes(target) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r["status"] == 400, (bad, at)


def test_edge_bytes_of_both_classes_pass_the_block_scan():
    value = (b"\t !~\x80\xff" * 8)[:40]
    r = check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a" + value + b"b\r\n\r\n", 0)
    target = b"/" + (b"!~\x80\xff%41" * 8)
    r = check(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 0)
    assert r["status"] == 0


# http_find_head_end looks at 16 bytes at a time: the empty line must be found
# wherever it falls against those blocks, CRLF or bare LF, and never early.
@pytest.mark.parametrize("pad", range(0, 34))
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_the_end_of_the_head_at_every_offset(pad, eol):
    head = b"GET / HTTP/1.1\r\nHost: a" + eol + b"X: " + b"p" * pad + eol + eol
    r = check(head, 0 if eol == b"\r\n" else 400)  # found, then refused: a bare LF
    assert r["header_len"] == len(head)


# What no more bytes can mend is answered at once, before the head is whole: each waiting
# connection holds a slot until --header-timeout (nginx answers a TLS ClientHello on a
# plain port with 400 at once).  Prefixes of unfinished heads, C and the port alike.
EARLY = [
    ("tls client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("sslv2 hello", b"\x80\x2e\x01\x00\x02", 400),
    ("a space first", b" GET / HTTP/1.1\r\n", 400),
    ("http/5.6", b"GET / HTTP/5.6\r\nHost: a\r\n", 505),
    ("proxy protocol preamble", b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\n", 400),
    ("bare cr in the request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n", 400),
    ("bare lf ending the request line", b"GET / HTTP/1.1\nHost: a\r\n", 400),
    ("garbage version", b"GET / HTTQ/1.1\r\n", 400),
]


@pytest.mark.parametrize("name,data,status", EARLY, ids=[n for n, _, _ in EARLY])
def test_a_head_no_bytes_can_mend_is_answered_before_it_ends(name, data, status):
    from minginx_cffi.pyport import http as pyhttp

    assert parse_request(data)["status"] == status
    assert pyhttp.http_find_head_end(data) == -status


@pytest.mark.parametrize(
    "data", [b"G", b"GET", b"GET /a", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"GET / HTTP/1.1\r\nHo"]
)
def test_a_good_beginning_still_waits_for_the_rest(data):
    from minginx_cffi.pyport import http as pyhttp

    assert parse_request(data)["status"] == INCOMPLETE
    assert pyhttp.http_find_head_end(data) == 0


# The head-end search tests "LF after LF, or after CR LF" 16 lanes at a time, with
# look-back lanes loaded or shifted in and a last block that overlaps: against the
# port's byte-by-byte search, on heads made of the bytes that matter, at every
# length around the block edges (a seeded generator: the same cases every run).
def test_the_head_end_search_agrees_with_the_port_on_generated_heads():
    import random

    from minginx_cffi.pyport import http as pyhttp

    rng = random.Random(15)
    for _ in range(4000):
        n = rng.randrange(1, 70)
        data = b"G" + bytes(rng.choice(b"a\r\n\n") for _ in range(n))
        end = pyhttp.http_find_head_end(data)
        r = parse_request(data)
        if end > 0:
            assert r["header_len"] == end, data
        else:
            assert r["status"] != 0, data


# An origin-form target without "?" or "#" is the path whole, found 16 bytes at a
# time (csrc/http.c target_plain): a "?" or "#" at every position, in targets that
# end in the first block, later blocks, and the bytes the block scan cannot reach.
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 31, 32, 33, 40])
def test_query_and_fragment_found_at_every_position_of_the_target(n):
    for at in range(1, n):
        target = bytearray(b"/" + b"p" * (n - 1))
        target[at : at + 1] = b"?"
        r = check(b"GET " + bytes(target) + b" HTTP/1.1\r\nHost: a\r\n\r\n", 0)
        assert (r["path_len"], r["query_len"]) == (at, n - at - 1), (n, at)
        target[at : at + 1] = b"#"
        r = parse_request(b"GET " + bytes(target) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert r["status"] == 400, (n, at)
    r = check(b"GET /" + b"p" * (n - 1) + b" HTTP/1.1\r\nHost: a\r\n\r\n", 0)
    assert (r["path_len"], r["query_len"]) == (n, 0)


# A Host that passed its check is remembered (csrc/http.c host_known, per worker;
# the test parser has its own): the same bytes again skip the check, and a value of
# the same length with one byte changed to one no host may have must still be 400,
# at every position, for lengths compared in words (8-16) and by memcmp.
@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 15, 16, 17, 40, 64, 65])
def test_a_remembered_host_never_passes_a_different_one(n):
    good = (b"h" * n)[: n - 3] + b":80" if n > 3 else b"h" * n
    head = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n"
    for at in range(n):
        assert parse_request(head % good)["status"] == 0
        assert parse_request(head % good)["status"] == 0  # the remembered one
        bad = bytearray(good)
        bad[at : at + 1] = b"@"  # userinfo's separator: no Host may hold it
        assert parse_request(head % bytes(bad))["status"] == 400, (n, at, bytes(bad))
