"""config.OPTIONS, walked row by row: each option reaches the CLI, the Config, and every
engine that has it (the C engine's mg_config as mg_server_config reads it back, the port's
cfg), or is refused by the engine that lacks it with one line.  Adding a row without its
consumer fails here."""

import os

import click
import pytest

from minginx_cffi import _native, config
from minginx_cffi._minginx import ffi
from minginx_cffi.app import App, make_dispatch
from minginx_cffi.cli import serve_command
from minginx_cffi.config import OPTIONS, Config, ConfigError, from_cli
from minginx_cffi.pyport import Engine as PortEngine
from minginx_cffi.server import Server, ServerError


@pytest.fixture
def root(tmp_path):
    (tmp_path / "404.html").write_text("not here\n")
    return tmp_path


def uring_ok():
    try:
        _native.uring_probe()
        return True
    except OSError:
        return False


def sample(row, root):
    """A value of the row other than its default (the CLI's text for it, the value)."""
    if row.kind is bool:
        return None, not row.default
    if row.kind is int:
        v = {"workers": 3, "stack_size": 131072, "port": 8081}.get(row.name)
        if v is None:
            v = min(row.hi, (row.default or 1) * 2 + 1)
        return str(v), v
    if row.kind is float:
        v = row.default + 1.5
        return str(v), v
    if row.kind == "choice":
        v = [c for c in row.choices if c != (row.default if row.cli_default == "same" else row.cli_default)][
            0
        ]
        return v, v
    if row.kind == "flag":
        return None, True
    if row.kind == "fd":
        return "5", 5
    values = {
        "root": str(root),
        "host": "127.0.0.2",
        "root_path": "/api",
        "uds": str(root / "sock"),
        "pid_file": str(root / "pid"),
        "user": "nobody",
        "group": "nogroup",
        "access_log": str(root / "access.log"),
        "header": ("X-Test: 1",),
        "error_page": ("404=/404.html",),
        "forwarded_allow_ips": "10.0.0.0/8",
        "reload_dir": (str(root),),
        "reload_include": ("*.cfg",),
        "reload_exclude": ("skip_*",),
        "app": "myapp:app",
        "wsgi": "myapp:app",
        "asgi": "myapp:app",
    }
    v = values[row.name]
    return (v[0] if isinstance(v, tuple) else v), v


def engine_rows(engine):
    return [row for row in OPTIONS if row.engine_arg and engine in row.engines]


def c_held(name, eng):
    """What the C engine holds for a row without a field of its own."""
    c = eng.c_config()
    return {
        "root": lambda: ffi.string(c.root).decode(),
        "threads": lambda: len(eng.bridge.pool.threads) if eng.bridge and eng.bridge.pool else 0,
        "access_log": lambda: ffi.string(c.access_log_path).decode() if c.access_log_path else None,
        "header": lambda: ffi.string(c.add_headers) if c.add_headers else b"",
        "error_page": lambda: c.error_pages_n,
        "forwarded_allow_ips": lambda: [c.forwarded_allow[i].prefix for i in range(c.forwarded_allow_n)],
    }[name]()


def port_held(name, eng):
    """What the port holds for a row it keeps under another key."""
    cfg = eng.cfg
    return {
        "threads": lambda: len(eng.pool.threads) if eng.pool is not None else 0,
        "header": lambda: cfg["add_headers"],
        "error_page": lambda: len(cfg["error_pages"]),
        "forwarded_allow_ips": lambda: (cfg["forwarded_allow"], cfg["forwarded_allow_all"]),
    }.get(name, lambda: cfg[name])()


def held(engine, row, cfg, root):
    """The value the engine made from cfg holds for row."""
    dispatch = make_dispatch(App())
    log_fd = os.open(os.devnull, os.O_WRONLY) if cfg.access_log else None
    try:
        if engine == "cffi":
            eng = _native.Engine(cfg, dispatch, access_log_fd=log_fd)
            try:
                if row.c is not None:
                    return getattr(eng.c_config(), row.c)
                return c_held(row.name, eng)
            finally:
                eng.stop_pool(5)
                eng.free()
        eng = PortEngine(cfg, dispatch, access_log_fd=log_fd)
        try:
            return port_held(row.name, eng)
        finally:
            eng.stop_pool(5)
            eng.free()
    finally:
        if log_fd is not None:
            os.close(log_fd)


@pytest.mark.parametrize("engine", config.ENGINE_NAMES)
@pytest.mark.parametrize("row", [r for r in OPTIONS if r.engine_arg], ids=lambda r: r.name)
def test_each_row_reaches_the_engines_that_have_it(row, engine, root):
    """The engine made from a Config with the row's value holds something else than the
    one made from the default: the row reaches it.  Or the engine lacks the row and the
    Config says so in one line, naming the flag."""
    _, value = sample(row, root)
    if row.name == "io" and value == "uring" and not uring_ok():
        pytest.skip("io_uring is not available here")
    base = dict(root=str(root), engine=engine, app=App())
    if engine not in row.engines:
        with pytest.raises(ConfigError) as e:
            Config(**dict(base, **{row.name: value}))
        assert "\n" not in str(e.value) and "--" + row.shown in str(e.value), e.value
        return
    if row.name == "root":
        base["root"] = str(root.parent)
    default = held(engine, row, Config(**base), root)
    given = held(engine, row, Config(**dict(base, **{row.name: value})), root)
    assert given != default, (row.name, given)
    if row.c is not None and engine == "cffi":
        assert given == _native._c_value(row, Config(**dict(base, **{row.name: value})))


def test_every_engine_row_is_read_by_each_engine_that_has_it():
    """The port's cfg and the C engine's fields cover the table: no row is dropped."""
    for row in engine_rows("cffi"):
        assert row.c is not None or row.name in (
            "root",
            "threads",
            "access_log",
            "header",
            "error_page",
            "forwarded_allow_ips",
        ), row.name


#: non-engine rows: what a Server made with the row's value shows of it
SERVER_ATTR = {
    "host": "host",
    "port": "port",
    "workers": "nworkers",
    "engine": "engine",
    "defer_accept": "defer_accept",
    "grace": "grace",
    "root_path": "root_path",
    "processes": "processes",
    "fd": "fd",
    "uds": "uds",
    "user": "user",
    "group": "group",
    "pid_file": "pid_file",
    "reuse_port": "reuse_port",
}


#: rows only the master process reads (their behaviour: tests/test_reload.py)
MASTER_ROWS = {"reload", "reload_dir", "reload_include", "reload_exclude"}


@pytest.mark.parametrize("row", [r for r in OPTIONS if not r.engine_arg], ids=lambda r: r.name)
def test_each_server_row_reaches_the_server(row, root):
    _, value = sample(row, root)
    if row.name in MASTER_ROWS:
        import minginx_cffi._master as master

        with open(master.__file__) as f:
            assert "config.%s" % row.name in f.read(), row.name
        kw = {row.name: value} if row.name == "reload" else {"reload": True, row.name: value}
        assert Config(root=str(root), **kw).values()[row.name] == value
        return
    if row.name in ("app", "wsgi", "asgi"):
        srv = Server(root=str(root), **{row.name: _hello_for(row.name)})
        assert getattr(srv, row.name) is not None
        return
    if row.name == "log_level":
        import logging

        before = logging.getLogger("minginx_cffi").level
        try:
            Server(root=str(root), log_level=value)
            assert logging.getLogger("minginx_cffi").level == logging.getLevelName(value.upper())
        finally:
            logging.getLogger("minginx_cffi").setLevel(before)
        return
    if row.name == "no_access_log":
        srv = Server(root=str(root), access_log=str(root / "a.log"), no_access_log=True)
        assert srv.access_log is None
        return
    kw = {row.name: value}
    if row.name == "fd":
        kw = {"fd": value}
    srv = Server(root=str(root), **kw)
    assert getattr(srv, SERVER_ATTR[row.name]) == value


def _hello_for(kind):
    if kind == "app":
        return App()

    if kind == "wsgi":

        def wsgi(environ, start_response):
            start_response("200 OK", [])
            return [b""]

        return wsgi

    async def asgi(scope, receive, send):
        pass

    return asgi


@pytest.mark.parametrize("row", [r for r in OPTIONS if r.cli], ids=lambda r: r.name)
def test_each_cli_flag_fills_its_row(row, root):
    """serve FLAG VALUE, parsed by the real click command, is the row's value in the Config."""
    text, value = sample(row, root)
    flag = row.cli_flag
    if row.kind is bool:
        args = ["--%s%s" % ("" if value else "no-", row.shown)]
    elif text is None:
        args = [flag]
    else:
        args = [flag, text]
    if row.name.startswith("reload_"):
        args += ["--reload"]  # they go with it
    ctx = serve_command.make_context(
        "serve", list(args) + ([] if row.name == "root" else ["--root", str(root)])
    )
    options = from_cli(ctx.params)
    if row.name in ("app", "wsgi", "asgi", "user", "group", "fd", "uds"):
        assert options[row.name] == value  # checked (imported, bound) by the server processes
        return
    if row.name == "no_access_log":
        assert options["access_log"] is None
        return
    cfg = Config(**options)
    got = cfg.values()[row.name]  # as given (Config.threads is 0 without an app)
    assert got == value, (row.name, got)


def test_the_cli_has_a_flag_for_each_row_and_no_other():
    names = {p.name for p in serve_command.params if p.name != "help"}
    assert names == {r.name for r in OPTIONS if r.cli}


OTHER_SWITCH = "ucontext" if _native.DEFAULT_SWITCH == "fast" else "fast"


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(send_timeout=-1), "send-timeout must be a number between 0 and 86400, not -1"),
        (dict(send_timeout=float("nan")), "send-timeout must be a number between 0 and 86400"),
        (dict(send_timeout=0.0001), "send-timeout must be 0 (no limit) or at least 0.001 s"),
        (dict(policy="random"), "policy must be one of: fifo, lifo"),
        (dict(workers=0), "workers must be an integer between 1 and"),
        (dict(header=["X-A"]), "--header 'X-A': expected 'NAME: VALUE'"),
        (dict(engine="python", stack_size=1 << 20), "--stack-size is for the cffi engine"),
        # the switch that is not the default (make test-asan's default is "fast")
        (dict(engine="python", switch=OTHER_SWITCH), "--switch is for the cffi engine"),
        (dict(fd=3, uds="/tmp/x"), "give one of --fd or --uds, not both"),
    ],
)
def test_a_bad_value_is_one_line_from_every_entry(settings, message, root):
    """Config, Server() and the CLI all say the same line: it is checked in one place."""
    with pytest.raises(ConfigError) as e:
        Config(root=str(root), **settings)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ServerError) as e2:
        Server(root=str(root), **settings)
    assert str(e2.value) == str(e.value)


def test_a_config_is_frozen_and_replace_checks_again(root):
    cfg = Config(root=str(root), workers=2)
    with pytest.raises(AttributeError):
        cfg.workers = 3
    assert cfg.replace(workers=3).nworkers == 3 and cfg.nworkers == 2
    with pytest.raises(ConfigError):
        cfg.replace(workers=-1)
    with pytest.raises(TypeError):
        Config(no_such_setting=1)


def test_server_takes_a_config(root):
    cfg = Config(root=str(root), port=0, workers=1)
    srv = Server(cfg).start()
    try:
        assert srv.config is cfg and srv.nworkers == 1
    finally:
        srv.shutdown()
    assert Server(cfg, grace=0.5).grace == 0.5  # keywords change the config's


def test_max_connections_is_shared_over_the_processes(root):
    assert Config(root=str(root), workers=4, max_connections=10).max_connections_per_process == 10
    assert Config(root=str(root), processes=4, max_connections=10).max_connections_per_process == 3
    assert Config(root=str(root), workers=4, max_connections=0).max_connections_per_process == 0


def test_click_ranges_come_from_the_table():
    params = {p.name: p for p in serve_command.params}
    for row in OPTIONS:
        if row.cli and row.kind in (int, float):
            t = params[row.name].type
            assert isinstance(t, (click.IntRange, click.FloatRange)) and (t.min, t.max) == (row.lo, row.hi)


def handler_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("minginx-handler-")]


def test_a_failed_mg_server_new_leaves_no_handler_thread_nor_bridge(tmp_path):
    """mg_server_new fails (the root went away after the Config checked it): the handler
    pool's threads the bridge started must stop, and the bridge leave the registry."""
    from minginx_cffi import _bridge

    root = tmp_path / "gone"
    root.mkdir()
    cfg = Config(root=str(root), app=App(), threads=3)
    root.rmdir()
    before, bridges = len(handler_threads()), dict(_bridge._BRIDGES)
    with pytest.raises(OSError) as e:
        _native.Engine(cfg, make_dispatch(App()))
    assert "mg_server_new" in str(e.value)
    assert len(handler_threads()) == before
    assert _bridge._BRIDGES == bridges
