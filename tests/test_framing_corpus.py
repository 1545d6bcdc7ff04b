"""The framing corpus (tests/framing_corpus.py) against both engines: whole, one byte per send, pipelined.

For each case: the status of the one final answer is the one the RFC asks for;
a case that must close is answered with `Connection: close` and then nothing
more (the pipelined GET behind a rejected request is never answered); a case
that keeps the connection answers the pipelined GET with its own body (no
desync). And the C engine and the Python port give the same status and close
behaviour for every case.
"""

import pytest
from framing_corpus import ALL_MODES, CASES, SECOND, SECOND_BODY, chunked, exchange, outcome

from conftest import ENGINES, engine_options
from minginx_cffi import App, Response

app = App()


@app.route("/echo", methods=["GET", "POST", "PUT"])
def echo(request):
    return Response(request.body, content_type="application/octet-stream")


@app.route("/env")
def env(request):
    return "host=%s path=%s query=%s" % (request.headers.get("host"), request.path, request.query)


def start(site_root, engine, **kw):
    from minginx_cffi import Server

    return Server(
        root=str(site_root), app=app, port=0, workers=1, grace=1, **engine_options(engine), **kw
    ).start()


@pytest.fixture(scope="module", params=ENGINES)
def corpus_server(site_root, request):
    srv = start(site_root, request.param)
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def both_servers(site_root):
    if len(ENGINES) < 2:
        pytest.skip("needs both engines (MINGINX_ENGINES=%s)" % ",".join(ENGINES))
    servers = [start(site_root, e) for e in ENGINES]
    yield servers
    for srv in servers:
        srv.shutdown()


def params(mode):
    return [pytest.param(c, id=c.name) for c in CASES if mode in c.modes]


def mark_known(request, case, mode, engine):
    """A case that today's engines get wrong (a defect being fixed elsewhere): strict xfail."""
    if mode in case.xfail:
        reason, engines = case.xfail[mode]
        if engines is None or engine in engines:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def check_answer(case, resp):
    assert case.accepts(resp.status), "%s: got %s, want %s (RFC %s)" % (
        case.name,
        resp.status,
        case.status,
        case.rfc,
    )
    if case.body is not None:
        assert resp.body == case.body, resp
    if case.check is not None:
        what, fn = case.check
        assert fn(resp), "%s: %s: %r" % (case.name, what, resp)
    if resp.status >= 400 and case.close:
        assert resp.headers.get("connection") == "close", resp


def run_alone(port, case, per_byte):
    ex = exchange(
        port, case.data, per_byte=per_byte, want=1, wait_close=bool(case.close), pause_after=case.pause_after
    )
    assert len(ex.responses) == 1, (case.name, ex.statuses, ex.leftover[:200])
    if case.no_interim:
        assert ex.interim == [], "%s: a 1xx was sent (RFC %s)" % (case.name, case.rfc)
    check_answer(case, ex.responses[0])
    if case.close:
        assert ex.closed, "%s must close the connection (RFC %s)" % (case.name, case.rfc)


@pytest.mark.parametrize("case", params("whole"))
def test_whole(request, corpus_server, case):
    mark_known(request, case, "whole", corpus_server.engine)
    run_alone(corpus_server.port, case, per_byte=False)


@pytest.mark.parametrize("case", params("per_byte"))
def test_one_byte_per_send(request, corpus_server, case):
    mark_known(request, case, "per_byte", corpus_server.engine)
    run_alone(corpus_server.port, case, per_byte=True)


@pytest.mark.parametrize("case", params("pipelined"))
def test_pipelined(request, corpus_server, case):
    mark_known(request, case, "pipelined", corpus_server.engine)
    ex = exchange(
        corpus_server.port, case.data + SECOND, want=2, wait_close=True, pause_after=case.pause_after
    )
    assert ex.responses, (case.name, ex.leftover[:200])
    if case.no_interim:
        assert ex.interim == [], "%s: a 1xx was sent (RFC %s)" % (case.name, case.rfc)
    check_answer(case, ex.responses[0])
    assert ex.closed, "%s: the connection hangs (a body or request left half-read?)" % case.name
    rest = ex.responses[1:]
    if case.close is True or (case.close is None and not rest):
        assert rest == [], "%s: answered after a request that must close: %r" % (case.name, rest)
    else:
        assert len(rest) == 1 and rest[0].status == 200 and rest[0].body == SECOND_BODY, (
            "%s: the pipelined request was not answered right (desync): %r" % (case.name, rest)
        )
    assert ex.leftover == b"", ex.leftover[:200]


def test_corpus_size_and_modes():
    assert len(CASES) >= 60
    for c in CASES:
        assert c.rfc, c.name
        assert set(c.xfail) <= set(ALL_MODES) | {"split"}, c.name


# Where one engine is known wrong (an engine-specific xfail), the engines differ until the fix lands.
KNOWN_ENGINE_SPLITS = {c.name for c in CASES if any(engines is not None for _, engines in c.xfail.values())}


def test_engines_agree(both_servers):
    """C and the port give the same (status, close behaviour) on every case, pipelined."""
    diffs = {}
    for c in CASES:
        got = [outcome(srv.port, c) for srv in both_servers]
        if got[0] != got[1] and c.name not in KNOWN_ENGINE_SPLITS:
            diffs[c.name] = dict(zip(ENGINES, got))
    assert diffs == {}


# ------------------------------------------------------------ the chunked decoders, in process

CHUNKED_CASES = [c for c in CASES if c.data.startswith(chunked(b""))]


def chunked_body(case):
    return case.data.split(b"\r\n\r\n", 1)[1]


def port_decode(data, step):
    """pyport's Chunked fed `step` bytes at a time (0: whole), as its conn loop feeds it:
    unconsumed input is presented again with the next bytes. (status, decoded)."""
    from minginx_cffi.pyport.http import Chunked

    dec, pending, out, fed = Chunked(2**63), b"", b"", 0  # no body limit, as the C hook
    while True:
        take = len(data) - fed if step == 0 else min(step, len(data) - fed)
        pending += data[fed : fed + take]
        fed += take
        st, got, used = dec.decode(pending)
        if st >= 400:
            return st, None
        out += got
        pending = pending[used:]
        if st == 1 or fed == len(data):
            return st, out


def c_decode(data, step):
    """The C decoder through the test hook mg_chunked_decode_split (see fuzz_chunked.py)."""
    from minginx_cffi._native import ffi, lib

    fn = getattr(lib, "mg_chunked_decode_split", None)
    if fn is None:
        pytest.skip("lib has no mg_chunked_decode_split (the hook the merger adds; tests/fuzz_chunked.py)")
    out = ffi.new("char[]", max(1, len(data)))
    out_len, consumed = ffi.new("size_t *"), ffi.new("size_t *")
    st = fn(data, len(data), step, out, out_len, consumed)
    return (st, None) if st >= 400 else (st, ffi.buffer(out, out_len[0])[:])


def expected_decode(case):
    if case.accepts(400) or case.accepts(413):
        return "rejected"
    return case.body


@pytest.mark.parametrize("decode", [port_decode, c_decode], ids=["python", "cffi"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CHUNKED_CASES])
def test_chunked_decoder_every_split(request, decode, case):
    """Every chunked case decoded whole and fed 1, 2, 3 and 7 bytes at a time: the same
    answer everywhere, and the one the corpus expects (read boundaries change nothing)."""
    engine = "python" if decode is port_decode else "cffi"
    for mode in ("split", "whole", "per_byte"):
        if mode in case.xfail:
            mark_known(request, case, mode, engine)
            break
    want = expected_decode(case)
    for step in (0, 1, 2, 3, 7):
        st, out = decode(chunked_body(case), step)
        got = "rejected" if st >= 400 else out
        assert st in (1, 400, 413), (step, st)
        assert got == want, (case.name, step, got, want)
