"""The engine's lifecycle over the C library: it checks arguments, calls ``lib``, turns -errno into OSError.

Every other module goes through the classes here; the handler bridge (the
extern "Python" side C calls into) is _bridge.py.  cffi releases the GIL
around each call into C, so ``Worker.run()`` (the worker loop) and
``Engine.accept_loop()`` (the acceptor) run without it.
"""

import errno
import os

from . import procstats as _procstats
from . import trace as _trace
from ._bridge import AsgiBridge, Bridge
from ._minginx import ffi, lib

assert lib.MG_EV_MAX == len(_trace.EVENTS), "minginx.h and trace.py disagree on the events"
assert ffi.sizeof("mg_stats") == _procstats.ENTRY_SIZE and [
    ffi.offsetof("mg_stats", f.split(".")[0]) for f in _procstats.FIELDS if "." not in f
] == [8 * i for i, f in enumerate(_procstats.FIELDS) if "." not in f], (
    "minginx.h's mg_stats and procstats.FIELDS disagree"
)

#: ready-queue policies by name (the CLI's --policy choices)
POLICIES = {"fifo": lib.RDY_FIFO, "lifo": lib.RDY_LIFO}
#: context switches by name (--switch): glibc's swapcontext, or the fast x86-64 one
SWITCHES = {"ucontext": lib.MG_SWITCH_UCONTEXT, "fast": lib.MG_SWITCH_FAST}
#: the default --switch: the seed's swapcontext.  MINGINX_TEST_SWITCH changes it for a test
#: run only: make test-asan sets "fast", as libasan writes a warning on stderr at the first
#: swapcontext of every process, which the tests of the error log's layout would read
#: (tests/test_coroutine.py and test_connections.py still run ucontext by name there)
DEFAULT_SWITCH = os.environ.get("MINGINX_TEST_SWITCH") or "ucontext"
#: access-log line formats by name (--access-log-format)
LOG_FORMATS = {"combined": lib.MG_LOG_COMBINED, "json": lib.MG_LOG_JSON}
#: who accepts (--accept): the main thread through dispatch pipes, or each worker itself
ACCEPT_MODES = {"dispatch": lib.MG_ACCEPT_DISPATCH, "reuseport": lib.MG_ACCEPT_REUSEPORT}
#: how workers do their I/O (--io): epoll readiness, or io_uring completions (csrc/uring.c)
IO_MODES = {"epoll": lib.MG_IO_EPOLL, "uring": lib.MG_IO_URING}
#: the default --io: epoll.  MINGINX_TEST_IO=uring changes it for a test run only: the
#: "cffi-uring" engine of tests/conftest.py sets it, so that every end-to-end test, the CLI's
#: subprocesses included, runs the C engine on io_uring too
DEFAULT_IO = os.environ.get("MINGINX_TEST_IO") or "epoll"


def default_io():
    """Server(io=None)'s backend, read when the server is made (the test fixture sets it)."""
    return os.environ.get("MINGINX_TEST_IO") or "epoll"


DEFAULT_STACK_SIZE = lib.MG_DEFAULT_STACK_SIZE
MIN_STACK_SIZE = lib.MG_MIN_STACK_SIZE
MAX_WORKERS = lib.MG_MAX_WORKERS
ERROR_PAGE_MAX = lib.MG_ERROR_PAGE_MAX
YIELD_REASONS = ("ready", "read", "write", "python")


def _raise_errno(rc, what):
    raise OSError(-rc, "%s: %s" % (what, os.strerror(-rc)))


#: why io_uring_setup failed, for --io uring's one-line message
_URING_WHY = {
    errno.ENOSYS: "the kernel has no io_uring, or a seccomp filter blocks it",
    errno.EPERM: "kernel.io_uring_disabled or a seccomp filter forbids it",
    errno.EOPNOTSUPP: "the kernel's io_uring is older than Linux 5.11 (no EXT_ARG)",
}


def uring_probe():
    """The IORING_SETUP_* flags a ring gets here ("SINGLE_ISSUER|DEFER_TASKRUN", or
    "plain" for the fallback); OSError with the reason when io_uring is unavailable."""
    flags = ffi.new("unsigned *")
    rc = lib.mg_io_uring_probe(flags)
    if rc < 0:
        why = _URING_WHY.get(-rc, os.strerror(-rc))
        raise OSError(-rc, "io_uring_setup: %s (%s)" % (os.strerror(-rc), why))
    names = [name for bit, name in ((4096, "SINGLE_ISSUER"), (8192, "DEFER_TASKRUN")) if flags[0] & bit]
    return "|".join(names) or "plain"


def _check(rc, what):
    if rc < 0:
        _raise_errno(rc, what)
    return rc


def _stats_dict(st):
    """mg_stats as a dict: procstats.FIELDS by name, the yields nested by reason."""
    d = {name: getattr(st, name) for name in _procstats.FIELDS if "." not in name}
    d["yields"] = {reason: st.yields[i] for i, reason in enumerate(YIELD_REASONS)}
    return d


def set_log_level(level):
    """csrc/log.c's threshold (log.set_level): a logging level number."""
    lib.mg_log_set_level(int(level))


class Worker:
    """A worker: epoll set, dispatch pipe, ready queue, coroutines."""

    def __init__(self, handle, owner):
        self._w = handle
        self._owner = owner  # keeps the Engine (and its config strings) alive

    def run(self):
        """The worker loop; returns when the worker has stopped."""
        return _check(lib.mg_worker_run(self._w), "mg_worker_run")

    def stop(self, graceful=True):
        _check(lib.mg_worker_stop(self._w, 1 if graceful else 0), "mg_worker_stop")

    def listen(self, listen_fd):
        """--accept reuseport: accept on this listener in the worker's own loop."""
        _check(lib.mg_worker_listen(self._w, listen_fd), "mg_worker_listen")

    def stats(self):
        st = ffi.new("mg_stats *")
        lib.mg_worker_stats(self._w, st)
        return _stats_dict(st)

    def free(self):
        if self._w is not None:
            lib.mg_worker_free(self._w)
            self._w = None


def _by_time(rec):
    return rec[0]


#: mg_config's enum fields by the row that fills them: the name given -> the C constant
_C_CHOICES = {
    "policy": POLICIES,
    "switch": SWITCHES,
    "accept": ACCEPT_MODES,
    "io": IO_MODES,
    "access_log_format": LOG_FORMATS,
}


def _c_value(row, config):
    """The value config.OPTIONS' row puts into its mg_config field (row.c)."""
    value = getattr(config, row.name)
    if row.name == "max_connections":
        return config.max_connections_per_process  # over its workers (worker.c server_conns_open)
    if row.name in _C_CHOICES:
        return _C_CHOICES[row.name][value]
    if row.kind is float:  # seconds; the C field counts milliseconds (*_ms)
        return config.ms(row.name)
    if row.kind in (bool, "flag"):
        return int(bool(value))
    return int(value)


class Engine:
    """The C server object: configuration, document root, workers, acceptor.

    ``Engine(config, dispatch)``: config is a config.Config (checked); dispatch the
    handler's dispatcher (app.py, wsgi.py, asgi.Runner's) or None; access_log_fd an fd
    to append the access log to (C duplicates it; the caller keeps its own)."""

    def __init__(self, config, dispatch=None, access_log_fd=None):
        from .config import OPTIONS

        self.config = config
        self._root = ffi.new("char[]", os.fsencode(config.root))
        cfg = ffi.new("mg_config *")
        cfg.root = self._root
        # every row the C engine has that fills a field of mg_config
        for row in OPTIONS:
            if row.c is not None:
                setattr(cfg, row.c, _c_value(row, config))
        asgi = getattr(dispatch, "asgi", None)  # an asgi.Runner: its calls are deferred
        # Inline handlers cannot time out (the worker runs them); pooled ones can, every
        # round; an ASGI app until its head only (a stream may wait for events, as SSE does).
        if not (config.threads > 0 or asgi):
            cfg.handler_timeout_ms = 0
        cfg.handler_timeout_head = int(asgi is not None)
        cfg.static_files = int(bool(config.static_files))
        # the access log: C duplicates the fd (the caller keeps its own) and reopens the path
        path = config.access_log if config.access_log not in (None, "-") else None
        self._log_path = ffi.new("char[]", os.fsencode(path)) if path else ffi.NULL
        cfg.access_log = int(access_log_fd is not None)
        cfg.access_log_fd = access_log_fd if access_log_fd is not None else -1
        cfg.access_log_path = self._log_path
        # in front of an app (csrc/front.c copies all of it in mg_server_new)
        keep = self._front = []
        if config.add_headers:
            keep.append(ffi.new("char[]", config.add_headers))
            cfg.add_headers = keep[-1]
        error_pages = config.error_pages
        if error_pages:
            pages = ffi.new("mg_error_page[]", len(error_pages))
            keep.append(pages)
            for i, (status, epath, body) in enumerate(error_pages):
                keep.append(ffi.new("char[]", os.fsencode(epath)))
                keep.append(ffi.new("char[]", body))
                pages[i].status, pages[i].path = status, keep[-2]
                pages[i].body, pages[i].body_len = keep[-1], len(body)
            cfg.error_pages, cfg.error_pages_n = pages, len(error_pages)
        forwarded = config.forwarded_allow
        nets = [n for n in forwarded if n != "*"]
        cfg.forwarded_allow_all = int("*" in forwarded)
        if nets:
            cidrs = ffi.new("mg_cidr[]", len(nets))
            keep.append(cidrs)
            for i, net in enumerate(nets):
                cidrs[i].family = net.version
                cidrs[i].prefix = net.prefixlen
                raw = net.network_address.packed
                ffi.memmove(cidrs[i].addr, raw, len(raw))
            cfg.forwarded_allow, cfg.forwarded_allow_n = cidrs, len(nets)
        self._trace_buf = ffi.new("mg_trace_rec[]", 4096) if config.trace else None
        self._dropped = ffi.new("uint64_t *")
        self._shared = None  # share_stats: the region, as a cffi buffer
        self.workers = []
        # the handler bridge last: its pool threads start with it, and a failure below
        # must stop them (and take the bridge out of the registry) before it raises
        bridge = (
            AsgiBridge(asgi)
            if asgi is not None
            else Bridge(dispatch, config.threads)
            if dispatch is not None
            else None
        )
        cfg.app_id = bridge.app_id if bridge is not None else -1
        self.bridge = bridge
        err = ffi.new("int *")
        self._srv = lib.mg_server_new(cfg, err)
        if self._srv == ffi.NULL:
            self._srv = None
            self._drop_bridge()
            _raise_errno(err[0], "mg_server_new(%s)" % config.root)

    def c_config(self):
        """The mg_config the C server runs with (mg_server_config): tests/test_config.py."""
        return lib.mg_server_config(self._srv)

    def _drop_bridge(self):
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            if bridge.pool is not None:
                bridge.pool.stop(None)
            bridge.unregister()

    def share_stats(self, shared, slot):
        """--processes: publish the workers' counters into slot of a procstats.SharedStats
        (before the workers run; shared must outlive the engine)."""
        self._shared = ffi.from_buffer(shared.region)  # keeps the buffer exported
        _check(
            lib.mg_server_share_stats(
                self._srv, ffi.cast("mg_stats *", self._shared), shared.nslots, shared.nworkers, slot
            ),
            "mg_server_share_stats",
        )

    def add_worker(self):
        err = ffi.new("int *")
        w = lib.mg_worker_new(self._srv, err)
        if w == ffi.NULL:
            _raise_errno(err[0], "mg_worker_new")
        worker = Worker(w, self)
        self.workers.append(worker)
        return worker

    def trace_drain(self):
        """Every trace record written since the last call, in time order:
        (t_us, worker, coroutine, fd, event, arg, text); worker -1 is the acceptor."""
        if self._trace_buf is None:
            return []
        out = []
        buf = self._trace_buf
        for ring in [-1] + list(range(len(self.workers))):
            while True:
                n = lib.mg_trace_drain(self._srv, ring, buf, 4096, self._dropped)
                for i in range(n):
                    r = buf[i]
                    text = ffi.string(r.text).decode("ascii") if r.text[0] != b"\0" else ""
                    out.append((r.t_us, r.worker, r.co, r.fd, r.event, r.arg, text))
                if n < 4096:
                    break
        out.sort(key=_by_time)  # stable: each ring keeps its own order within a tie
        return out

    @property
    def trace_dropped(self):
        return self._dropped[0]

    def accept_loop(self, listen_fd, wake_fd):
        """Accept and dispatch until wake_fd is readable; then return."""
        return _check(lib.mg_accept_loop(self._srv, listen_fd, wake_fd), "accept loop")

    def reopen_log(self):
        """SIGUSR1: the access log's writer flushes, opens the path again and swaps
        (False: no access log to a path)."""
        return lib.mg_server_reopen_log(self._srv) == 0

    def stop_pool(self, timeout=None):
        """Let the handler threads finish what they run; True when none is left running
        (only then may free() run: a handler thread still posts into the workers)."""
        if self.bridge is None or self.bridge.pool is None:
            return True
        return self.bridge.pool.stop(timeout)

    def free(self):
        if not self.stop_pool(0):
            raise RuntimeError("minginx-cffi: engine freed while a handler thread runs")
        for w in self.workers:
            w.free()
        self.workers = []
        if self._srv is not None:
            lib.mg_server_free(self._srv)
            self._srv = None
        if self._shared is not None:
            ffi.release(self._shared)  # the region may be unmapped now
            self._shared = None
        self._drop_bridge()


class RuntimeWorker(Worker):
    """A worker with no thread: the coroutine runtime alone, for its unit tests."""

    def __init__(self, policy="fifo", stack_size=DEFAULT_STACK_SIZE, log_size=4096, switch=DEFAULT_SWITCH):
        err = ffi.new("int *")
        w = lib.mg_test_worker_new(POLICIES[policy], stack_size, err)
        if w == ffi.NULL:
            _raise_errno(err[0], "mg_test_worker_new")
        super().__init__(w, None)
        self.switch = (
            "fast"
            if lib.mg_test_worker_switch(self._w, SWITCHES[switch]) == lib.MG_SWITCH_FAST
            else "ucontext"
        )
        self._log = ffi.new("int[]", log_size)
        self._log_len = ffi.new("int *")
        self._log_size = log_size

    def spawn(self, ident, yields=0):
        _check(
            lib.mg_test_spawn(self._w, ident, yields, self._log, self._log_size, self._log_len),
            "mg_test_spawn",
        )

    def spawn_deep(self, nbytes):
        _check(lib.mg_test_spawn_deep(self._w, nbytes), "mg_test_spawn_deep")

    def run(self):
        """Run until nothing is ready; returns the number of context switches."""
        return lib.mg_test_run(self._w)

    @property
    def log(self):
        return [self._log[i] for i in range(self._log_len[0])]


def static_fields(fields):
    """--header fields [(name bytes, value bytes)] as the C writer checks them
    (csrc/front.c mg_static_fields: response.c head_fields, and none the static
    answers write themselves): their b"Name: value\\r\\n" lines, or ValueError(why)."""
    from ._dispatch import flatten_fields

    block, n = flatten_fields(fields)
    out = ffi.new("char[]", lib.MG_ADD_HEADERS_MAX)
    out_len = ffi.new("size_t *")
    why = ffi.new("const char **")
    rc = lib.mg_static_fields(block, len(block), n, out, lib.MG_ADD_HEADERS_MAX, out_len, why)
    if rc < 0:
        raise ValueError(ffi.string(why[0]).decode("ascii") if why[0] != ffi.NULL else os.strerror(-rc))
    return ffi.unpack(out, out_len[0])


def header_id(name, plain=False):
    """The C parser's id for a header name (0: one the server does not act on)."""
    return lib.mg_header_id(name, len(name), 1 if plain else 0)


def parse_http_date(value):
    """An HTTP-date as seconds since the epoch, or None."""
    t = lib.mg_parse_http_date(value, len(value))
    return None if t < 0 else t


def parse_request(data):
    """Parse one request head with the C parser: a dict, status 0 when complete."""
    res = ffi.new("mg_parse_result *")
    lib.mg_parse_request(data, len(data), res)
    return {
        name: getattr(res, name)
        for name in (
            "status",
            "header_len",
            "method_len",
            "target_len",
            "minor_version",
            "num_headers",
            "keep_alive",
            "content_length",
            "chunked",
            "path_len",
            "query_len",
        )
    }
