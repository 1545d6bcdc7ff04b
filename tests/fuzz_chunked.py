"""Fuzz the chunked decoder through cffi with atheris (make fuzz).

The invariant, first. For every input, fed to the C decoder as the connection
loop feeds it (whole, and `step` bytes at a time, unconsumed bytes presented
again with the next ones):
  - it never crashes, and answers 1 (done), 0 (needs more) or 400 (bad), nothing else;
  - decoded bytes <= consumed bytes <= input bytes;
  - the read boundaries change nothing: the same answer whole and split, and when
    done the same decoded bytes and the same consumed count (a rejection may come
    before the end of the offending line in one and after it in the other: 400
    against "needs more" agrees);
and, differential: the port's decoder (pyport/http.py Chunked), fed the same way,
gives the same answer and, when done, the same decoded bytes and consumed count.

The first input byte picks the split (0: whole, else 1..31 bytes per read); the rest
is the chunked body.

    python tests/fuzz_chunked.py -max_total_time=60 tests/fuzz_chunked_corpus

The C side is the test hook `mg_chunked_decode_split` (declared in csrc/minginx.h by
the merger of issue 12; until then this harness says so and exits 0):
    int mg_chunked_decode_split(const char *in, size_t len, size_t step,
                                char *out, size_t *out_len, size_t *consumed);
    Decodes in[0..len) as conn.c's read_body does, fed step bytes at a time (0: all at
    once); returns chunked_decode's last answer (1, 0, 400) or -ENOMEM; out (len bytes
    at least) gets the decoded bytes, *consumed the input bytes used.
Crashes and disagreements found become cases in tests/test_framing_corpus.py.

The fuzz target for the handler response path (issue 12) is left for later.
"""

import sys

import atheris

with atheris.instrument_imports():
    from minginx_cffi._native import ffi, lib
    from minginx_cffi.pyport.http import Chunked

DECODE = getattr(lib, "mg_chunked_decode_split", None)


def c_decode(data, step):
    out = ffi.new("char[]", max(1, len(data)))
    out_len, consumed = ffi.new("size_t *"), ffi.new("size_t *")
    st = DECODE(data, len(data), step, out, out_len, consumed)
    assert st in (0, 1, 400), (data, step, st)
    if st == 400:
        return st, None, None
    assert out_len[0] <= consumed[0] <= len(data), (data, step, out_len[0], consumed[0])
    return st, ffi.buffer(out, out_len[0])[:], consumed[0]


def port_decode(data, step):
    dec, pending, out, fed, used_total = Chunked(2**63), b"", b"", 0, 0
    while True:
        take = len(data) - fed if step == 0 else min(step, len(data) - fed)
        pending += data[fed : fed + take]
        fed += take
        st, got, used = dec.decode(pending)
        if st == 400:
            return st, None, None
        out += got
        used_total += used
        pending = pending[used:]
        if st == 1 or fed == len(data):
            return st, out, used_total


def same(a, b):
    """Two answers agree: the status, and when done the decoded bytes and consumed count.
    One decoder may reject a line before its end where the other waits for the end of
    the line first (400 against 0): both reject it once it is whole, so that agrees."""
    if {a[0], b[0]} == {0, 400}:
        return True
    if a[0] != b[0]:
        return False
    return a[0] != 1 or a[1:] == b[1:]


def check(data):
    if not data:
        return
    step, body = data[0] % 32, data[1:]
    whole = c_decode(body, 0)
    split = c_decode(body, step)
    assert same(whole, split), ("read boundaries change the C answer", body, step, whole, split)
    port = port_decode(body, step)
    assert same(whole, port), ("C and the port disagree", body, step, whole, port)


def TestOneInput(data):
    check(data)


if __name__ == "__main__":
    if DECODE is None:
        print("fuzz_chunked: lib has no mg_chunked_decode_split yet (issue 12 merger adds it); skipped")
        sys.exit(0)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
