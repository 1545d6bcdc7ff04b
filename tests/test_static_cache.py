"""nginx-style static serving: conditional requests, ranges, pre-compressed gzip, the
open-file and small-file caches."""

import gzip
import os
import shutil
import subprocess
import time

import pytest

from conftest import Conn, wait_for

TEXT = b"".join(b"line %05d of a compressible text file\n" % i for i in range(2000))  # ~76 KiB


@pytest.fixture
def root(tmp_path):
    (tmp_path / "big.txt").write_bytes(TEXT)
    (tmp_path / "small.txt").write_bytes(TEXT[:3000])
    (tmp_path / "app.js").write_bytes(TEXT[:5000])
    gz = gzip.compress(TEXT[:5000])
    (tmp_path / "app.js.gz").write_bytes(gz)
    (tmp_path / "big.txt.gz").write_bytes(gzip.compress(TEXT))
    (tmp_path / "pic.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 8)
    now = time.time()
    os.utime(tmp_path / "app.js", (now - 100, now - 100))
    os.utime(tmp_path / "big.txt", (now - 100, now - 100))
    return tmp_path


@pytest.fixture(params=["cache", "nocache"])
def srv(request, make_server, root):
    if request.param == "cache":
        return make_server(root=str(root))
    return make_server(root=str(root), open_file_cache=0, small_file_cache=0)


def get(srv, path, headers=None, method="GET"):
    c = Conn(srv.port)
    try:
        return c.request(method, path, headers)
    finally:
        c.close()


# -------------------------------------------------------------- validators


def test_every_file_has_etag_and_last_modified(srv):
    for path in ("/big.txt", "/small.txt", "/pic.png"):
        r = get(srv, path)
        assert r.status == 200 and r.header("etag") and r.header("last-modified")
        assert r.header("accept-ranges") == "bytes"


def test_if_none_match_gives_304_without_body(srv):
    r = get(srv, "/small.txt")
    etag = r.header("etag")
    c = Conn(srv.port)
    r2 = c.request("GET", "/small.txt", {"If-None-Match": etag})
    assert r2.status == 304 and r2.body == b"" and r2.header("etag") == etag
    assert r2.header("content-length") is None
    # the connection is still in step: the 304 carried no body
    assert c.request("GET", "/small.txt").body == TEXT[:3000]
    assert get(srv, "/small.txt", {"If-None-Match": '"x", W/' + etag}).status == 304  # weak comparison
    assert get(srv, "/small.txt", {"If-None-Match": "*"}).status == 304
    assert get(srv, "/small.txt", {"If-None-Match": '"other"'}).status == 200


def test_if_modified_since(srv):
    lm = get(srv, "/big.txt").header("last-modified")
    assert get(srv, "/big.txt", {"If-Modified-Since": lm}).status == 304
    assert get(srv, "/big.txt", {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 200
    assert get(srv, "/big.txt", {"If-Modified-Since": "not a date"}).status == 200
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    assert get(srv, "/big.txt", {"If-Modified-Since": future}).status == 304


def test_if_none_match_takes_precedence_over_if_modified_since(srv):
    lm = get(srv, "/big.txt").header("last-modified")
    r = get(srv, "/big.txt", {"If-None-Match": '"nope"', "If-Modified-Since": lm})
    assert r.status == 200  # RFC 9110 13.2.2: IMS is ignored when INM is present


def test_if_match_and_if_unmodified_since_give_412(srv):
    etag = get(srv, "/big.txt").header("etag")
    assert get(srv, "/big.txt", {"If-Match": '"nope"'}).status == 412
    assert get(srv, "/big.txt", {"If-Match": etag}).status == 200
    assert get(srv, "/big.txt", {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 412


def test_head_304(srv):
    etag = get(srv, "/pic.png").header("etag")
    r = get(srv, "/pic.png", {"If-None-Match": etag}, method="HEAD")
    assert r.status == 304


# ------------------------------------------------------------------ ranges


@pytest.mark.parametrize("path,data", [("/big.txt", TEXT), ("/small.txt", TEXT[:3000])])
@pytest.mark.parametrize(
    "spec,sl",
    [
        ("bytes=0-99", slice(0, 100)),
        ("bytes=100-", slice(100, None)),
        ("bytes=-50", slice(-50, None)),
        ("bytes=0-0", slice(0, 1)),
        ("bytes=10-999999999", slice(10, None)),
        ("bytes=-999999999", slice(0, None)),
    ],
)
def test_single_range_206(srv, path, data, spec, sl):
    r = get(srv, path, {"Range": spec})
    want = data[sl]
    assert r.status == 206, spec
    assert r.body == want
    start = sl.start if sl.start is None or sl.start >= 0 else len(data) + sl.start
    start = start or 0
    assert r.header("content-range") == "bytes %d-%d/%d" % (start, start + len(want) - 1, len(data))


BLOB = os.urandom(600 * 1024 + 7)  # larger than the corked first piece (256 KiB) twice over


@pytest.mark.parametrize(
    "spec,sl",
    [
        (None, slice(None)),
        ("bytes=1000-", slice(1000, None)),  # the corked piece starts inside
        ("bytes=262000-262200", slice(262000, 262201)),  # straddles 256 KiB
        ("bytes=-300000", slice(-300000, None)),
    ],
)
def test_large_file_exact_across_the_corked_piece(make_server, tmp_path, spec, sl):
    """The head and the first piece go corked, the rest in sendfile chunks: every byte once."""
    (tmp_path / "blob.bin").write_bytes(BLOB)
    srv = make_server(root=str(tmp_path))
    c = Conn(srv.port)
    try:
        for _ in range(2):  # keep-alive: the second response must start where the first ended
            r = c.request("GET", "/blob.bin", {"Range": spec} if spec else None)
            assert r.status == (206 if spec else 200)
            assert r.body == BLOB[sl]
    finally:
        c.close()


def test_unsatisfiable_range_416(srv):
    r = get(srv, "/small.txt", {"Range": "bytes=999999-"})
    assert r.status == 416
    assert r.header("content-range") == "bytes */3000"


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=abc", "bytes="])
def test_multi_or_invalid_range_gives_full_200(srv, spec):
    r = get(srv, "/small.txt", {"Range": spec})
    assert r.status == 200 and r.body == TEXT[:3000]


def test_if_range(srv):
    r = get(srv, "/big.txt")
    etag, lm = r.header("etag"), r.header("last-modified")
    assert get(srv, "/big.txt", {"Range": "bytes=0-9", "If-Range": etag}).status == 206
    assert get(srv, "/big.txt", {"Range": "bytes=0-9", "If-Range": '"old"'}).status == 200
    assert get(srv, "/big.txt", {"Range": "bytes=0-9", "If-Range": lm}).status == 206
    assert (
        get(srv, "/big.txt", {"Range": "bytes=0-9", "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"}).status
        == 200
    )


def test_head_ignores_range(srv):
    r = get(srv, "/big.txt", {"Range": "bytes=0-9"}, method="HEAD")
    assert r.status == 200 and r.header("content-length") == str(len(TEXT))


# ------------------------------------------------------------- gzip_static


def test_gzip_static_when_accepted(srv):
    r = get(srv, "/app.js", {"Accept-Encoding": "gzip, deflate, br"})
    assert r.status == 200
    assert r.header("content-encoding") == "gzip"
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("content-type").startswith("text/javascript")
    assert gzip.decompress(r.body) == TEXT[:5000]


@pytest.mark.parametrize("ae", [None, "identity", "gzip;q=0", "deflate, br", "*;q=0", "gzip;q=0.000, *"])
def test_plain_when_gzip_not_acceptable(srv, ae):
    r = get(srv, "/app.js", {"Accept-Encoding": ae} if ae else None)
    assert r.header("content-encoding") is None
    assert r.body == TEXT[:5000]
    assert r.header("vary") == "Accept-Encoding"  # on every compressible file either way


def test_star_accepts_gzip(srv):
    r = get(srv, "/app.js", {"Accept-Encoding": "*"})
    assert r.header("content-encoding") == "gzip"


def test_gz_older_than_file_is_not_used(make_server, root):
    now = time.time()
    os.utime(root / "app.js.gz", (now - 1000, now - 1000))
    srv = make_server(root=str(root))
    r = get(srv, "/app.js", {"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") is None and r.body == TEXT[:5000]


def test_no_vary_on_images(srv):
    assert get(srv, "/pic.png", {"Accept-Encoding": "gzip"}).header("vary") is None


def test_no_gzip_static_flag(make_server, root):
    srv = make_server(root=str(root), gzip_static=False)
    r = get(srv, "/app.js", {"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") is None and r.header("vary") is None


def test_gzip_etag_differs_and_ranges_apply_to_it(srv):
    plain = get(srv, "/big.txt")
    gz = get(srv, "/big.txt", {"Accept-Encoding": "gzip"})
    assert plain.header("etag") != gz.header("etag")
    r = get(srv, "/big.txt", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert r.status == 206 and r.body == gz.body[:10]


# ------------------------------------------------------------------ caches


def test_edit_is_seen_within_about_a_second(make_server, root):
    srv = make_server(root=str(root))
    assert get(srv, "/small.txt").body == TEXT[:3000]
    (root / "small.txt").write_bytes(b"edited, same length? no\n")
    assert wait_for(lambda: get(srv, "/small.txt").body == b"edited, same length? no\n", timeout=2.5)
    # an edit that keeps the length
    (root / "small.txt").write_bytes(b"EDITED, SAME LENGTH? NO\n")
    assert wait_for(lambda: get(srv, "/small.txt").body == b"EDITED, SAME LENGTH? NO\n", timeout=2.5)


def test_delete_gives_404_within_about_a_second(make_server, root):
    srv = make_server(root=str(root))
    assert get(srv, "/big.txt").status == 200
    os.unlink(root / "big.txt")
    os.unlink(root / "big.txt.gz")
    assert wait_for(lambda: get(srv, "/big.txt").status == 404, timeout=2.5)


def test_new_gz_is_picked_up(make_server, root):
    srv = make_server(root=str(root))
    assert get(srv, "/small.txt", {"Accept-Encoding": "gzip"}).header("content-encoding") is None
    (root / "small.txt.gz").write_bytes(gzip.compress(TEXT[:3000]))
    assert wait_for(
        lambda: get(srv, "/small.txt", {"Accept-Encoding": "gzip"}).header("content-encoding") == "gzip",
        timeout=2.5,
    )


def test_cache_hits_are_counted(make_server, root):
    srv = make_server(root=str(root), workers=1)
    c = Conn(srv.port)
    for _ in range(20):
        assert c.request("GET", "/small.txt").status == 200
    st = srv.stats()[0]
    assert st["cache_misses"] == 1 and st["cache_hits"] == 19 and st["cache_entries"] == 1


def test_cache_eviction_keeps_serving(make_server, tmp_path):
    for i in range(40):
        (tmp_path / ("f%d.txt" % i)).write_bytes(b"file %d\n" % i)
    srv = make_server(root=str(tmp_path), workers=1, open_file_cache=8)
    c = Conn(srv.port)
    for rnd in range(3):
        for i in range(40):
            assert c.request("GET", "/f%d.txt" % i).body == b"file %d\n" % i
    assert srv.stats()[0]["cache_entries"] <= 8


def test_the_memo_of_the_last_path_follows_the_cache(make_server, tmp_path):
    """static.c remembers the last path a worker resolved and its cache entry; an entry
    evicted (a cache of one) must take the memo with it, and a memo hit counts as a hit.
    Under make test-asan a memo that outlived its entry is a use after free."""
    (tmp_path / "a.txt").write_bytes(b"file a\n")
    (tmp_path / "b.txt").write_bytes(b"file b\n")
    srv = make_server(root=str(tmp_path), workers=1, open_file_cache=1)
    c = Conn(srv.port)
    for name in "aabaabb":
        assert c.request("GET", "/%s.txt" % name).body == b"file %s\n" % name.encode()
    st = srv.stats()[0]
    assert (st["cache_misses"], st["cache_hits"], st["cache_entries"]) == (4, 3, 1)


def test_file_with_trailing_slash_is_404(srv):
    assert get(srv, "/small.txt/").status == 404


# --------------------------------------------------------- with real curl


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_curl_compressed_and_range(srv):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # make test-asan's runtime
    url = "http://127.0.0.1:%d/app.js" % srv.port
    out = subprocess.run(["curl", "-sS", "--compressed", url], capture_output=True, timeout=30, env=env)
    assert out.returncode == 0 and out.stdout == TEXT[:5000]
    out = subprocess.run(
        ["curl", "-sS", "-r", "0-99", "http://127.0.0.1:%d/big.txt" % srv.port],
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 0 and out.stdout == TEXT[:100]


def test_the_open_file_cache_closes_what_it_evicts_and_what_it_holds_at_shutdown(make_server, tmp_path):
    """An entry leaves the cache (evicted, stale, or at shutdown) with the cache's own
    reference; its fds close then, or when its last user lets go.  (The port kept the cache's
    reference on every evicted entry: one fd leaked per eviction, and a server's whole cache
    at shutdown, until the test process ran out of select()'s 1024.)"""
    for i in range(40):
        (tmp_path / ("f%02d.txt" % i)).write_bytes(b"x" * (i + 1))

    def open_fds():
        return len(os.listdir("/proc/self/fd"))  # the server runs in this process

    srv = make_server(root=str(tmp_path), workers=1, open_file_cache=2)
    c = Conn(srv.port)
    assert c.request("GET", "/f00.txt").status == 200
    before = open_fds()
    for i in range(40):
        assert c.request("GET", "/f%02d.txt" % i).body == b"x" * (i + 1)
    assert open_fds() - before <= 2  # the two entries the cache may hold, no more
    c.close()
    srv.shutdown()
    assert wait_for(lambda: open_fds() < before - 1)  # the listener and the held entries too
