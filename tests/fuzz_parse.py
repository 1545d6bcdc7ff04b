"""Fuzz parse_http through cffi with atheris (make fuzz).

The invariant, first: every input either
  - parses (status 0, with a head length inside the input),
  - asks for more (status -1), or
  - is rejected with an HTTP status the server answers with (400, 414, 417, 431, 501, 505),
and never anything else: no other status, no crash, no sanitizer report.
And a second one, differential: the pure-Python port's parser (pyport/http.py) gives the
same answer (complete / need more / which status) for the same bytes.

    python tests/fuzz_parse.py -max_total_time=60 tests/fuzz_corpus
Crashes found become regression cases in tests/test_fuzz_regressions.py.
"""

import sys

import atheris

with atheris.instrument_imports():
    from minginx_cffi._native import parse_request
    from minginx_cffi.pyport import http as pyhttp

ALLOWED = {0, -1, 400, 414, 417, 431, 501, 505}


def python_status(data):
    """The port's answer for the same bytes, as the C harness computes it (mg_parse_request)."""
    skip = len(data) - len(data.lstrip(b"\r\n"))
    body = data[skip:]
    end = pyhttp.http_find_head_end(body)
    if end == 0:
        return -1, 0
    if end < 0:
        return -end, 0
    status, _ = pyhttp.parse_http(body, end)
    return status, skip + end


def check(data):
    r = parse_request(data)
    st = r["status"]
    assert st in ALLOWED, (data, r)
    if st == 0:
        assert 0 < r["header_len"] <= len(data), (data, r)
    pst, plen = python_status(data)
    assert pst == st, ("C and Python parsers disagree", data, st, pst)
    if st == 0:
        assert plen == r["header_len"], (data, r, plen)


def TestOneInput(data):
    check(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
