"""The fuzzer's invariant (tests/fuzz_parse.py) checked on the seed corpus and on every input it
ever failed on: each parses, asks for more, or is rejected with a status; and the C parser and
the Python port's parser agree."""

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = sorted(os.listdir(os.path.join(HERE, "fuzz_corpus")))

# inputs the fuzzer found (see the closing notes): each was a disagreement or a crash once
REGRESSIONS = [
    # C said 417 (bad Expect) before seeing that a later line was malformed (400)
    # absolute-form with an empty authority ("http://?x") was accepted by C
    b"E http://?ec HTTP/1.1\r\nHost:\n\n",
    b"GET http:// HTTP/1.1\r\nHost: a\r\n\r\n",
    # a fragment after an absolute-form query slipped past C
    b"E http://e?c# HTTP/1.1\r\nHost:\n\n",
    # an empty Transfer-Encoding was taken for chunked by C (the port said 400)
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\nHozt: \xb9\r\nX:\r\nX: 2\r\n\r\nQ\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 10\xb0-continue\r\nCoHTTP/1.1\r\nHost: antent-Length: 3\r\n\r\n",
]


@pytest.fixture(scope="module")
def checker():
    # fuzz_parse.py imports atheris only to run the fuzzer; its check() needs neither
    import types

    src = open(os.path.join(HERE, "fuzz_parse.py")).read()
    src = src.replace("import atheris\n", "").replace("with atheris.instrument_imports():\n", "if True:\n")
    src = src.split('if __name__ == "__main__":')[0]
    mod = types.ModuleType("fuzz_parse_noatheris")
    exec(compile(src, "fuzz_parse.py", "exec"), mod.__dict__)
    return mod.check


@pytest.mark.parametrize("name", CORPUS)
def test_seed_corpus_whole_and_every_prefix(checker, name):
    data = open(os.path.join(HERE, "fuzz_corpus", name), "rb").read()
    for i in range(len(data) + 1):
        checker(data[:i])


@pytest.mark.parametrize("data", REGRESSIONS or [b""])
def test_regressions(checker, data):
    checker(data)
