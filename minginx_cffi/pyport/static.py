"""static.py - the static-file middleware and its open-file cache (csrc/static.c + csrc/cache.c).

Same rules as the C: percent-decoding (bad escapes and %00 are 400),
segment-by-segment normalisation (".." above the root is 400, dotfiles 404),
then the file is opened and, unless --follow-symlinks, its real path
(/proc/self/fd/N) must lie inside the root: Python has no openat2, so this
is the C's fallback check, done every time.  Entries keep the fd, the
validators, the prebuilt header block and (small files) the bytes, and are
compared with the file system at most once a second.
"""

import collections
import errno
import os
import stat
import time

from ..trace import EV_STATIC_SERVE
from .h1 import parse_lines
from .http import (
    MG_H_ACCEPT_ENCODING,
    MG_H_IF_MATCH,
    MG_H_IF_MODIFIED_SINCE,
    MG_H_IF_NONE_MATCH,
    MG_H_IF_RANGE,
    MG_H_IF_UNMODIFIED_SINCE,
    MG_H_RANGE,
    accepts_gzip,
    etag_list_matches,
    http_date,
    http_parse_date,
    http_reason,
    parse_range,
)
from .linux import O_PATH

ALLOW = (b"Allow", b"GET, HEAD, OPTIONS")
CTYPE_HTML = (b"Content-Type", b"text/html; charset=utf-8")
MIME = {
    "html": ("text/html; charset=utf-8", 1),
    "htm": ("text/html; charset=utf-8", 1),
    "css": ("text/css; charset=utf-8", 1),
    "js": ("text/javascript; charset=utf-8", 1),
    "mjs": ("text/javascript; charset=utf-8", 1),
    "json": ("application/json", 1),
    "map": ("application/json", 1),
    "txt": ("text/plain; charset=utf-8", 1),
    "md": ("text/markdown; charset=utf-8", 1),
    "csv": ("text/csv; charset=utf-8", 1),
    "xml": ("application/xml", 1),
    "svg": ("image/svg+xml", 1),
    "wasm": ("application/wasm", 1),
    "ico": ("image/x-icon", 1),
    "png": ("image/png", 0),
    "jpg": ("image/jpeg", 0),
    "jpeg": ("image/jpeg", 0),
    "gif": ("image/gif", 0),
    "webp": ("image/webp", 0),
    "avif": ("image/avif", 0),
    "bmp": ("image/bmp", 0),
    "woff": ("font/woff", 0),
    "woff2": ("font/woff2", 0),
    "ttf": ("font/ttf", 1),
    "otf": ("font/otf", 1),
    "pdf": ("application/pdf", 0),
    "zip": ("application/zip", 0),
    "gz": ("application/gzip", 0),
    "tar": ("application/x-tar", 0),
    "mp4": ("video/mp4", 0),
    "webm": ("video/webm", 0),
    "mp3": ("audio/mpeg", 0),
    "ogg": ("audio/ogg", 0),
    "wav": ("audio/wav", 0),
}
_HEX = {("%02x" % i).encode(): i for i in range(256)}
_HEX.update({("%02X" % i).encode(): i for i in range(256)})
_HEX.update({("%x%X" % (i >> 4, i & 15)).encode(): i for i in range(256)})
_HEX.update({("%X%x" % (i >> 4, i & 15)).encode(): i for i in range(256)})


class HTTPStatus(Exception):
    def __init__(self, status):
        self.status = status


PATH_CAP = 4096 - 16  # C: sizeof(co->rb->path) - 16, the decoded path stays shorter


def decode_path(path, serve_dotfiles):
    """(the URL path normalised relative to the root ("" for the root), whether it names a
    directory: ends in "/", "/." or "/.."); raises HTTPStatus.  414 as static.c decode_path
    says it: the decoded path (before normalising) is PATH_CAP bytes or more, found before
    any bad escape that follows it."""
    if not path.startswith(b"/"):
        raise HTTPStatus(400)
    if b"%" in path:
        parts = path.split(b"%")
        out = bytearray(parts[0])
        for part in parts[1:]:
            v = _HEX.get(part[:2])
            if v is None or len(part) < 2 or v == 0:
                raise HTTPStatus(414 if len(out) >= PATH_CAP else 400)
            out.append(v)
            out += part[2:]
        path = bytes(out)
    if len(path) >= PATH_CAP:
        raise HTTPStatus(414)
    is_dir = path.rsplit(b"/", 1)[1] in (b"", b".", b"..")
    segs = []
    for seg in path.split(b"/"):
        if not seg or seg == b".":
            continue
        if seg == b"..":
            if not segs:
                raise HTTPStatus(400)
            segs.pop()
            continue
        if seg[:1] == b"." and not serve_dotfiles and seg != b".well-known":
            raise HTTPStatus(404)
        segs.append(seg)
    return b"/".join(segs), is_dir


def _errno_status(e):
    if e in (errno.EACCES, errno.EPERM):
        return 403
    if e in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return 503
    return 404


class Rep:
    """One representation: the file or its FILE.gz (C: mg_file)."""

    __slots__ = ("fd", "size", "mtime_ns", "dev", "ino", "etag", "data", "fields")

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Entry:
    """An open-file cache entry (C: mg_centry), reference-counted like the C one."""

    __slots__ = (
        "path",
        "plain",
        "gz",
        "checked",
        "refs",
        "dead",
        "scratch",
        "compressible",
        "mtime",
        "last_modified",
        "cache",
    )

    def release(self):
        self.refs -= 1
        if self.refs == 0 and (self.scratch or self.dead):
            self.close()

    def close(self):
        self.plain.close()
        if self.gz is not None:
            self.gz.close()


class FileCache:
    """Per worker, LRU (an OrderedDict), revalidated at most once a second."""

    def __init__(self, worker, size):
        self.w = worker
        self.size = size
        self.enabled = size > 0
        self.entries = collections.OrderedDict()
        cfg = worker.cfg
        self.root_fd = os.open(cfg["root"], O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root_real = os.path.realpath(cfg["root"])
        self.follow = cfg["follow_symlinks"]
        self.gzip_static = cfg["gzip_static"]
        self.small = cfg["small_file_cache"]

    def clear(self):
        for e in self.entries.values():
            e.dead = True
            if e.refs == 0:
                e.close()
        self.entries.clear()
        os.close(self.root_fd)

    def _open_beneath(self, rel, dir_fd=None):
        fd = os.open(
            rel or ".",
            os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY,
            dir_fd=self.root_fd if dir_fd is None else dir_fd,
        )
        if not self.follow:
            real = os.readlink("/proc/self/fd/%d" % fd)
            if real != self.root_real and not real.startswith(self.root_real.rstrip("/") + "/"):
                os.close(fd)
                raise OSError(errno.EXDEV, "outside the root")
        return fd

    def _describe(self, fd, st, e, ctype, is_gz):
        r = Rep()
        r.fd = fd
        r.size = st.st_size
        r.mtime_ns = st.st_mtime_ns
        r.dev, r.ino = st.st_dev, st.st_ino
        nsec = st.st_mtime_ns % 1000000000
        r.etag = ('"%x-%x%s"' % (int(st.st_mtime), st.st_size, (".%x" % nsec) if nsec else "")).encode()
        # the representation's own fields, made once per file (C: cache.c file_describe)
        f = [(b"Content-Type", ctype.encode())]
        if is_gz:
            f.append((b"Content-Encoding", b"gzip"))
        if self.gzip_static and e.compressible:
            f.append((b"Vary", b"Accept-Encoding"))
        f += [
            (b"Last-Modified", e.last_modified.encode()),
            (b"ETag", r.etag),
            (b"Accept-Ranges", b"bytes"),
        ]
        r.fields = f
        r.data = None
        return r

    def _fill(self, rel, dir_request):
        try:
            fd = self._open_beneath(rel)
        except OSError as err:
            raise HTTPStatus(_errno_status(err.errno)) from None
        st = os.fstat(fd)
        path = rel
        if stat.S_ISDIR(st.st_mode):
            if not dir_request:
                os.close(fd)
                raise HTTPStatus(301)
            try:
                ifd = self._open_beneath("index.html", dir_fd=fd)
            except OSError as err:
                raise HTTPStatus(403 if err.errno == errno.ENOENT else _errno_status(err.errno)) from None
            finally:
                os.close(fd)
            fd = ifd
            st = os.fstat(fd)
            path = (rel + "/index.html") if rel else "index.html"
        elif dir_request:
            os.close(fd)
            raise HTTPStatus(404)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise HTTPStatus(403)
        e = Entry()
        e.path = path
        ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        ctype, e.compressible = MIME.get(ext, ("application/octet-stream", 0))
        e.mtime = min(int(st.st_mtime), int(time.time()))  # never after Date (RFC 9110 8.8.2.1)
        e.last_modified = http_date(e.mtime)
        e.plain = self._describe(fd, st, e, ctype, False)
        e.gz = None
        if self.gzip_static and e.compressible:
            try:
                gfd = self._open_beneath(path + ".gz")
                gst = os.fstat(gfd)
                if stat.S_ISREG(gst.st_mode) and gst.st_mtime_ns >= st.st_mtime_ns:
                    e.gz = self._describe(gfd, gst, e, ctype, True)
                else:
                    os.close(gfd)
            except OSError:
                pass
        e.refs = 1
        e.dead = False
        e.checked = self.w.now
        return e

    def _same(self, path, rep):
        try:
            st = os.stat(path, dir_fd=self.root_fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
            rep.dev,
            rep.ino,
            rep.size,
            rep.mtime_ns,
        )

    def _fresh(self, e):
        if self.w.now - e.checked < 1.0:
            return True
        if not self._same(e.path, e.plain):
            return False
        if self.gzip_static and e.compressible:
            if e.gz is not None:
                if not self._same(e.path + ".gz", e.gz):
                    return False
            else:
                try:
                    st = os.stat(e.path + ".gz", dir_fd=self.root_fd)
                    if stat.S_ISREG(st.st_mode) and st.st_mtime_ns >= e.plain.mtime_ns:
                        return False
                except OSError:
                    pass
        e.checked = self.w.now
        return True

    def file_open(self, rel, dir_request):
        key = rel + "/" if dir_request else rel
        stats = self.w.stats
        if self.enabled:
            e = self.entries.get(key)
            if e is not None:
                if self._fresh(e):
                    self.entries.move_to_end(key)
                    e.refs += 1
                    stats["cache_hits"] += 1
                    return e
                del self.entries[key]
                e.dead = True
                if e.refs == 0:
                    e.close()
        stats["cache_misses"] += 1
        e = self._fill(rel, dir_request)
        if not self.enabled:
            e.scratch = True
            return e
        e.scratch = False
        if e.plain.size <= self.small:
            e.plain.data = os.pread(e.plain.fd, e.plain.size, 0)
        if e.gz is not None and e.gz.size <= self.small:
            e.gz.data = os.pread(e.gz.fd, e.gz.size, 0)
        while len(self.entries) >= self.size:
            _, old = self.entries.popitem(last=False)
            old.dead = True
            if old.refs == 0:
                old.close()
        # refs counts the entry's users only, as csrc/cache.c: an entry the cache drops
        # (evicted, stale, cleared) closes at once if nobody uses it, else with its last user
        self.entries[key] = e
        return e


# ---------------------------------------------------------------- responses


# Every answer goes through the request's Exchange (h1.py), as in the C.


_GATEWAY_TIMEOUT_BODY = b"504 Gateway Timeout: the handler did not answer in time\n"


def send_gateway_timeout(x):
    """The 504 for a handler past --handler-timeout (RFC 9110 section 15.6.5; C: pycall.c
    send_gateway_timeout), for App/WSGI and ASGI rounds alike; the connection closes."""
    x.keep_alive = False
    x.respond(
        504,
        [(b"Content-Type", b"text/plain; charset=utf-8")],
        len(_GATEWAY_TIMEOUT_BODY),
        b"Gateway Timeout",
    )
    yield from x.body(_GATEWAY_TIMEOUT_BODY)


def mime_type(path):
    """The Content-Type of a path, by its extension (C: cache.c mime_type)."""
    name = path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return MIME.get(ext, ("application/octet-stream", 0))[0]


def error_pages(pages):
    """--error-page: {status: (Content-Type, body)} (C: front.c front_init)."""
    return {status: (mime_type(path).encode(), bytes(body)) for status, path, body in pages}


# --header fields go on these statuses, as nginx's add_header (C: static.c put_added)
ADDED_HEADER_STATUSES = frozenset((200, 201, 204, 206, 301, 302, 303, 304, 307, 308))


def added_headers(w, status):
    """--header's fields as (name, value) pairs, read once from their lines (h1.py)."""
    cfg = w.cfg
    if not cfg["add_headers"] or status not in ADDED_HEADER_STATUSES:
        return ()
    fields = cfg.get("added_fields")
    if fields is None:
        fields = cfg["added_fields"] = parse_lines(cfg["add_headers"])
    return fields


def send_error(x, status, extra=()):
    """An error page: the --error-page file for the status, else a small HTML page."""
    w = x.w
    fields = [ALLOW] if status == 405 else []
    fields += extra
    page = w.cfg["error_pages"].get(status)
    if page is not None:  # --error-page: its file is the body, the status stays
        fields.append((b"Content-Type", page[0]))
        body = page[1]
    else:
        body = (
            "<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>\n"
            % (status, http_reason(status), status, http_reason(status))
        ).encode()
        fields.append(CTYPE_HTML)
    x.respond(status, fields, len(body))
    yield from x.body(body)


def _preconditions(req, e, rep):
    get_or_head = req.method in (b"GET", b"HEAD")
    v = req.get(MG_H_IF_MATCH)
    if v is not None:
        if not etag_list_matches(v, rep.etag, False):
            return 412
    else:
        v = req.get(MG_H_IF_UNMODIFIED_SINCE)
        if v is not None:
            t = http_parse_date(v)
            if t is not None and e.mtime > t:
                return 412
    v = req.get(MG_H_IF_NONE_MATCH)
    if v is not None:
        if etag_list_matches(v, rep.etag, True):
            return 304 if get_or_head else 412
    elif get_or_head:
        v = req.get(MG_H_IF_MODIFIED_SINCE)
        if v is not None:
            t = http_parse_date(v)
            if t is not None and e.mtime <= t:
                return 304
    return 0


def _if_range_holds(req, e, rep):
    v = req.get(MG_H_IF_RANGE)
    if v is None:
        return True
    if v[:1] == b'"' or v[:2] == b"W/":
        return etag_list_matches(v, rep.etag, False)
    t = http_parse_date(v)
    return t is not None and t == e.mtime


def _send_rep(x, rep, status, start, length):
    fields = rep.fields
    if status == 206:
        fields = fields + [(b"Content-Range", b"bytes %d-%d/%d" % (start, start + length - 1, rep.size))]
    x.respond(status, fields, length, added=added_headers(x.w, status))
    if length == 0:
        yield from x.end()
        return True
    if rep.data is not None:  # one send: head and body
        yield from x.body(rep.data[start : start + length] if status == 206 else rep.data)
        return True
    return (yield from x.file(rep.fd, start, length))


def _serve_entry(x, req, e):
    rep = e.plain
    if e.gz is not None:
        ae = req.get(MG_H_ACCEPT_ENCODING)
        if ae is not None and accepts_gzip(ae):
            rep = e.gz
    pre = _preconditions(req, e, rep)
    if pre == 304:
        w = x.w
        fields = [(b"ETag", rep.etag), (b"Last-Modified", e.last_modified.encode())]
        if w.cfg["gzip_static"] and e.compressible:
            fields.append((b"Vary", b"Accept-Encoding"))
        x.respond(304, fields, -1, added=added_headers(w, 304))
        yield from x.end()
        return True
    if pre:
        yield from send_error(x, pre)
        return True
    rng = req.get(MG_H_RANGE)
    if rng is not None and req.method == b"GET" and _if_range_holds(req, e, rep):
        r, start, length = parse_range(rng, rep.size)
        if r == 1:
            return (yield from _send_rep(x, rep, 206, start, length))
        if r == 416:
            yield from send_error(x, 416, [(b"Content-Range", b"bytes */%d" % rep.size)])
            return True
    return (yield from _send_rep(x, rep, 200, 0, rep.size))


def _static_method(x, req):
    """GET and HEAD go on (None); OPTIONS gets its Allow, the rest 405 or 501 (True)."""
    m = req.method
    if m != b"GET" and m != b"HEAD":
        if m == b"OPTIONS":
            x.respond(200, [ALLOW], 0, added=added_headers(x.w, 200))
            yield from x.end()
            return True
        from .http import METHODS

        yield from send_error(x, 405 if m in METHODS else 501)
        return True
    return None


def static_serve(x, req):
    """Answer req from the root through its exchange.  Returns True if answered (the
    connection goes on as x.keep_alive says), False if it broke."""
    co = x.co
    w = co.worker
    if w.trace:
        w.trace_push(EV_STATIC_SERVE, co, co.fd)
    r = yield from _static_method(x, req)
    if r is not None:
        return r
    try:
        rel, is_dir = decode_path(req.path, w.cfg["serve_dotfiles"])
        e = w.cache.file_open(rel.decode("utf-8", "surrogateescape"), is_dir)
    except HTTPStatus as s:
        if s.status == 301:
            return (yield from _redirect_slash(x, req))
        yield from send_error(x, s.status)
        return True
    co.centry = e
    try:
        return (yield from _serve_entry(x, req, e))
    finally:
        co.centry = None
        e.release()


_URI_PATH_KEEP = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
)
_URI_QUERY_KEEP = _URI_PATH_KEEP | frozenset(b"?%")


def _uri_encode(s, keep):
    return b"".join(bytes((c,)) if c in keep else b"%%%02X" % c for c in s)


def _redirect_slash(x, req):
    """301 to the directory with a slash (C: redirect_slash): Location from the
    decoded, normalised path re-encoded, never the raw target, so it cannot
    start with "//" or "/\\" and point at another host."""
    w = x.w
    body = (
        b"<html><head><title>301 Moved Permanently</title></head>"
        b"<body><h1>301 Moved Permanently</h1></body></html>\n"
    )
    rel, _ = decode_path(req.path, w.cfg["serve_dotfiles"])
    loc = b"/" + _uri_encode(rel, _URI_PATH_KEEP) + b"/"
    if req.query:
        loc += b"?" + _uri_encode(req.query, _URI_QUERY_KEEP)
    x.respond(301, [(b"Location", loc), CTYPE_HTML], len(body), added=added_headers(w, 301))
    yield from x.body(body)
    return True


def static_try(x, req):
    """try_files $uri $uri/ @app (C: static.c static_try, which says why): None when the path
    names no file under the root (nor a directory with an index), without answering; else
    static_serve's answer, whatever the method (a POST to a file is 405)."""
    co = x.co
    w = co.worker
    try:
        rel, is_dir = decode_path(req.path, w.cfg["serve_dotfiles"])
        rel = rel.decode("utf-8", "surrogateescape")
    except HTTPStatus as s:
        if s.status == 400:  # cannot name anything: 400 as nginx, for every location
            yield from send_error(x, s.status)
            return True
        return None  # a dotfile, or too long to be a file name (414): not one of our files
    try:
        e = w.cache.file_open(rel, is_dir)
    except HTTPStatus as s:
        if s.status != 301:
            return None
        try:  # a directory asked without its slash: a file only if it has an index
            w.cache.file_open(rel, True).release()
        except HTTPStatus:
            return None
        if w.trace:
            w.trace_push(EV_STATIC_SERVE, co, co.fd)
        r = yield from _static_method(x, req)
        if r is not None:
            return r
        return (yield from _redirect_slash(x, req))
    co.centry = e
    if w.trace:
        w.trace_push(EV_STATIC_SERVE, co, co.fd)
    try:
        r = yield from _static_method(x, req)
        if r is not None:
            return r
        return (yield from _serve_entry(x, req, e))
    finally:
        co.centry = None
        e.release()
