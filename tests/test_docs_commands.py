"""Every shell command of README.md and docs/*.md is run here, as a reader would run it.

What is a command (the convention the pages keep):

- a line of an indented code block, or of a fenced block in sh, shell, bash, console or no
  language, whose first word is one of COMMAND_WORDS (a `$ ` prompt is dropped, lines ending
  in a backslash are joined).  In a sh, shell, bash or console block every line must be one:
  a new word fails test_every_command_has_a_rule until it is added here with its rule;
- `A && B` is two commands, A then B;
- the first line of a ```python block of the form `# NAME.py -- COMMAND`: COMMAND, with the
  block saved as NAME.py where it runs;
- inline `code` in prose is a name, not an instruction: it is not run.  A command a reader is
  told to run goes in a block.  Figures regions (tools/render_figures.py) and README's usage
  block are output, and hold no command lines.

How one runs: the first rule of RULES whose pattern matches decides, and a command no rule
matches fails.  SKIP rules say, per command, why it cannot run here (and what runs it
instead); every other rule runs it, bounded:

- a page's commands run in order, in one temporary directory, with `minginx-cffi` meaning
  this tree's `python -m minginx_cffi`;
- a server command (`minginx-cffi serve ...`, `systemd-socket-activate ...`) is started on a
  free port, probed with a real request, and left up for the page's next commands (the
  reader's other terminal) until the page's next server command or its end; then SIGTERM, and
  it must exit 0.  A `--trace` server must have printed the happy path's steps;
- substitutions, so that it runs on a shared CI machine: the port (3094, the default, or the
  one after `127.0.0.1:` or `--port`) becomes the free port, and a server command without
  `--port`, `--fd` or `--uds` gets `--port PORT`; `--host 0.0.0.0` becomes 127.0.0.1;
  `[...]` (optional arguments, in usage notation) is dropped; `<pid>` is the pid of the
  running server's server process (its workers' process; the master only holds the sockets);
  wrk runs 1 s (`-d1s`), ab 200 requests (`-n 200`), strace a second of requests;
  bench/run.py runs one round of 1 s (`--rounds 1 --duration 1`),
  of `--workload pinned` when none is named, of `--only 'minginx-cffi lifo'` when no --only
  is given, writes its results to a temporary directory (`--results`) and never `--readme`;
- a module the command needs and no page defines (`--asgi main:app`, the exercises' app.py)
  is the stand-in in STAND_INS, written beside it; a `--root` naming a directory of the tree
  (minginx_cffi/site) is that directory, any other is made with one file in it;
- `make build` runs in a copy of the tree with a venv of its own, twice: the second time
  after an edit in csrc/ that must not show before it and must show after it.

docs/production.md's commands run in tests/test_production_docs.py, which starts them with
the page's own paths and services (systemd, nginx, logrotate); here they are checked to be
the ones that file picks (test_production_commands_are_run_there), not run twice.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import Conn, free_port, socket_activate_env_args, tool_env, wait_for

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    "docs/" + f for f in os.listdir(os.path.join(TREE, "docs")) if f.endswith(".md")
)
CLI = [sys.executable, "-m", "minginx_cffi"]
COMMAND_WORDS = {
    "minginx-cffi",
    ".venv/bin/pip",
    ".venv/bin/python",
    ".venv/bin/minginx-cffi",
    "python3",
    "python",
    "pip",
    "pytest",
    "make",
    "bench/run.py",
    "curl",
    "wrk",
    "ab",
    "strace",
    "systemd-socket-activate",
    "sudo",
    "systemctl",
    "apt-get",
}
SHELL_LANGS = {"sh", "shell", "bash", "console"}
PRODUCTION = "docs/production.md"

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(TREE, "Makefile")) or "MINGINX_SANITIZED" in os.environ,
    reason="a copy of the tree without the Makefile and bench/ (make test-asan's): the pages' "
    "commands run on the tree itself",
)


# ------------------------------------------------------------------ extraction


class Command:
    def __init__(self, page, line, text, files=None):
        self.page, self.line, self.text = page, line, text
        self.files = files or {}  # NAME.py -> the python block it comes from

    def __repr__(self):
        return "%s:%d: %s" % (self.page, self.line, self.text)


def strip_regions(text):
    """Figures and usage regions blanked (line numbers kept): output, not instructions."""

    def blank(m):
        return "\n" * m.group(0).count("\n")

    text = re.sub(r"<!-- figures:.*?<!-- /figures -->", blank, text, flags=re.S)
    return re.sub(r"<!-- usage:begin.*?<!-- usage:end -->", blank, text, flags=re.S)


def logical_lines(lines):
    """(first line number, text) with backslash continuations joined and `$ ` dropped."""
    out, buf, start = [], "", None
    for n, line in lines:
        if start is None:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.strip()[:-1].strip() + " "
            continue
        text = (buf + line.strip()).strip()
        buf = ""
        if text.startswith("$ "):
            text = text[2:]
        out.append((start, text))
        start = None
    return out


def is_command(text):
    return bool(text) and text.split()[0] in COMMAND_WORDS


def blocks(text):
    """(language or None, [(line number, line)]) of every fenced and indented code block."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append((m.group(1) or None, [(k + 1, lines[k]) for k in range(i + 1, j)]))
            i = j + 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append(("indented", [(k + 1, lines[k][4:]) for k in range(i, j) if lines[k].strip()]))
            i = j
            continue
        i += 1
    return out


def extract(page):
    """The page's commands, in order, and the lines of shell blocks that are not commands."""
    with open(os.path.join(TREE, page), encoding="utf-8") as f:
        text = strip_regions(f.read())
    cmds, strays, files = [], [], {}
    for lang, lines in blocks(text):
        if lang == "python" and lines:
            m = re.match(r"#\s*(\w+\.py)\s+--\s+(.+)$", lines[0][1].strip())
            if m:
                files[m.group(1)] = "\n".join(line for _, line in lines) + "\n"
                cmds.append(Command(page, lines[0][0], m.group(2).strip(), dict(files)))
            continue
        if lang not in (None, "indented") and lang not in SHELL_LANGS:
            continue
        for n, line in logical_lines(lines):
            if not line or line.startswith("#"):
                continue
            if is_command(line):
                for part in line.split(" && "):
                    cmds.append(Command(page, n, part.strip(), dict(files)))
            elif lang in SHELL_LANGS:
                strays.append("%s:%d: %s" % (page, n, line))
    return cmds, strays


# ------------------------------------------------------------------ the session


def http(port, path="/", timeout=20.0):
    c = Conn(port)
    c.sock.settimeout(timeout)
    try:
        return c.request("GET", path)
    finally:
        c.close()


class Session:
    """One page's run: its directory, its running server, its port."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.server = None  # (Command, Popen, stdout path)
        self.env = dict(os.environ, PYTHONPATH=TREE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.ran = []
        self.skipped = []  # (Command, why)

    def subst(self, text):
        text = re.sub(r"\[[^\]]*\]", "", text)
        text = re.sub(r"(127\.0\.0\.1:|localhost:|--port )\d+", lambda m: m.group(1) + str(self.port), text)
        text = re.sub(r"\b3094\b", str(self.port), text)  # the default port, written alone
        text = text.replace("--host 0.0.0.0", "--host 127.0.0.1")
        if self.server is not None and "<pid>" in text:
            text = text.replace("<pid>", str(self.serving_pid()))
        return " ".join(text.split())

    def argv(self, text):
        argv = shlex.split(self.subst(text))
        out = []
        for a in argv:
            out += CLI if a == "minginx-cffi" else [a]
        if out[0] in ("python", "python3"):
            out[0] = sys.executable
        return out

    def run(self, cmd, argv, timeout=60, env=None):
        p = subprocess.run(
            argv, cwd=self.tmp, capture_output=True, text=True, timeout=timeout, env=env or self.env
        )
        assert p.returncode == 0, "%r exited %d:\n%s\n%s" % (
            cmd,
            p.returncode,
            p.stdout[-3000:],
            p.stderr[-3000:],
        )
        self.ran.append(cmd)
        return p.stdout

    def start(self, cmd, argv, probe):
        self.stop()
        for name, body in cmd.files.items():
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(body)
        out_path = os.path.join(self.tmp, "server-%d.out" % cmd.line)
        out, err = open(out_path, "wb"), open(out_path + ".err", "wb")
        p = subprocess.Popen(argv, cwd=self.tmp, stdout=out, stderr=err, env=self.env, start_new_session=True)
        out.close()
        err.close()
        self.server = (cmd, p, out_path)
        try:
            probe(self)
        except BaseException:
            self.stop(check=False)
            raise
        self.ran.append(cmd)

    def serving_pid(self):
        """The pid that serves: the master's one server process (`--processes 1`), whose
        threads are the workers; the master itself only holds the sockets."""
        master = self.server[1].pid
        kids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        kids.append(int(pid))
            except (OSError, ValueError, IndexError):
                pass
        assert len(kids) == 1, (master, kids)
        return kids[0]

    def output(self):
        with open(self.server[2], "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, check=True):
        if self.server is None:
            return
        cmd, p, out_path = self.server
        self.server = None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            code = "killed: no exit 20 s after SIGTERM"
        with open(out_path, "rb") as f:
            out = f.read().decode(errors="replace")
        with open(out_path + ".err", "rb") as f:
            err = f.read().decode(errors="replace")
        if check:
            assert code == 0, "%r: exit %s after SIGTERM\n%s\n%s" % (cmd, code, out[-2000:], err[-2000:])
            if "--trace" in cmd.text:
                steps = ["accept", "coroutine_create", "schedule", "trampoline_start", "coroutine_destroy"]
                missing = [s for s in steps if s not in out]
                assert not missing, "%r printed no %s:\n%s" % (cmd, missing, out[-2000:])


# ------------------------------------------------------------------ the rules


def wait_banner(s):
    assert wait_for(lambda: "serving" in s.output() or s.server[1].poll() is not None, timeout=30)
    assert "serving" in s.output(), "%r did not start:\n%s" % (s.server[0], open(s.server[2] + ".err").read())


STAND_INS = {
    # walkthrough exercise 2's app.py, which the reader writes: an App with a /time route
    "app.py": (
        "import time\n"
        "from minginx_cffi import App\n"
        "app = App()\n"
        "@app.route('/time')\n"
        "def now(request):\n"
        "    return {'time': time.time()}\n"
    ),
    # the ASGI app README's --asgi line names ("your main.py"): the smallest ASGI 3 app
    "main.py": (
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200,\n"
        "                'headers': [(b'content-type', b'text/plain')]})\n"
        "    await send({'type': 'http.response.body', 'body': b'asgi: ' + scope['path'].encode()})\n"
    ),
}


def serve(s, cmd):
    argv = s.argv(cmd.text)
    if not {"--port", "--fd", "--uds"} & set(argv):
        argv += ["--port", str(s.port)]
    stand_in = False
    for opt in ("--app", "--wsgi", "--asgi"):
        if opt in argv:
            module = argv[argv.index(opt) + 1].split(":")[0] + ".py"
            if module not in cmd.files:
                assert module in STAND_INS, "%r: no page defines %s and there is no stand-in" % (cmd, module)
                cmd.files[module] = STAND_INS[module]
                stand_in = True
    if "--root" in argv:
        i = argv.index("--root") + 1
        if os.path.exists(os.path.join(TREE, argv[i])):  # a directory of the tree (minginx_cffi/site)
            argv[i] = os.path.join(TREE, argv[i])
        root = os.path.join(s.tmp, argv[i])
        if not os.path.exists(root):  # the reader's own directory: one file in it
            os.makedirs(root)
            with open(os.path.join(root, "index.html"), "w") as f:
                f.write("<h1>the reader's root</h1>\n")

    def probe(s):
        wait_banner(s)
        if "--app" in argv and "api.py" in cmd.files:
            r = http(s.port, "/users/42")
            assert r.status == 200 and json.loads(r.body) == {"id": 42, "method": "GET"}, r
            assert r.header("X-Served-By") == "minginx-cffi", r.headers
        elif "--asgi" in argv and stand_in:
            r = http(s.port, "/anything")
            assert r.status == 200 and r.body == b"asgi: /anything", r
        r = http(s.port, "/")
        assert r.status == 200 and r.body, r

    s.start(cmd, argv, probe)


def socket_activate(s, cmd):
    argv = s.argv(cmd.text)
    # the tool hands the child a clean environment: name what this tree's python needs
    argv[1:1] = ["-E", "PYTHONPATH"] + socket_activate_env_args()

    def probe(s):
        # it listens at once and starts the server at the first connection
        assert wait_for(lambda: connectable(s.port), timeout=10), cmd
        r = http(s.port, "/")
        assert r.status == 200 and b"minginx" in r.body.lower(), r
        wait_banner(s)

    s.start(cmd, argv, probe)


def connectable(port):
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def python_c(s, cmd):
    assert s.server is not None, "%r: no server runs on this page yet" % cmd
    out = s.run(cmd, s.argv(cmd.text), timeout=30)
    assert "HTTP/1.1 200 OK" in out, out


def curl(s, cmd):
    need("curl")
    assert s.server is not None, "%r: no server runs on this page yet" % cmd
    out = s.run(cmd, s.argv(cmd.text) + ["--max-time", "20", "--fail"], env=tool_env())
    if "/_minginx/stats" in cmd.text:
        stats = json.loads(out)
        assert stats["workers"] and "requests" in json.dumps(stats), out[:500]
    else:
        assert out, cmd


def wrk(s, cmd):
    need("wrk")
    assert s.server is not None, "%r: no server runs on this page yet" % cmd
    argv = [re.sub(r"^-d\d+\w*$", "-d1s", a) for a in s.argv(cmd.text)]
    if not any(a.startswith("-d") for a in argv[1:]):
        argv.insert(1, "-d1s")
    out = s.run(cmd, argv, timeout=60, env=tool_env())
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    assert m and float(m.group(1)) > 0 and "Non-2xx" not in out, out


def strace(s, cmd):
    """`strace -c -f -p <pid>` on the page's server, for a second of requests, then Ctrl-C."""
    need("strace")
    assert s.server is not None and "<pid>" in cmd.text, cmd
    p = subprocess.Popen(
        s.argv(cmd.text), cwd=s.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)  # attached (strace -c prints nothing until the end)
        for _ in range(20):
            assert http(s.port, "/").status == 200
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode in (0, -signal.SIGINT) and "% time" in err and "total" in err, (
        p.returncode,
        out,
        err,
    )
    s.ran.append(cmd)


def ab(s, cmd):
    need("ab")
    assert s.server is not None, "%r: no server runs on this page yet" % cmd
    argv = s.argv(cmd.text)
    if "-n" in argv:
        argv[argv.index("-n") + 1] = "200"
    out = s.run(cmd, argv, timeout=60, env=tool_env())
    assert "Failed requests:        0" in out and "Non-2xx" not in out, out


def bench_run(s, cmd):
    need("wrk")
    argv = [a for a in s.argv(cmd.text) if a != "--readme"]
    if argv[0] == "bench/run.py":
        argv = [sys.executable] + argv
    argv[1] = os.path.join(TREE, argv[1])  # the page's path is the tree's

    def setopt(name, value):
        while name in argv:
            i = argv.index(name)
            del argv[i : i + 2]
        argv.extend([name, value])

    setopt("--rounds", "1")
    setopt("--duration", "1")
    if "--workload" not in argv:
        argv += ["--workload", "pinned"]
    if "--only" not in argv:
        argv += ["--only", "minginx-cffi lifo"]
    results = os.path.join(s.tmp, "results-%d" % cmd.line)
    setopt("--results", results)
    out = s.run(cmd, argv, timeout=120)
    (md,) = [f for f in os.listdir(results) if f.endswith(".md")]
    with open(os.path.join(results, md)) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith("| minginx-cffi")]
    assert rows, out + table
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and "0/0/0/0" in cells, row


def make_build(s, cmd):
    """`make build` in a copy of the tree, in a venv of its own (it pip-installs the tree
    editable): it builds, and it is what an edit in csrc/ needs, as docs/walkthrough.md says:
    the editable install goes on running the old C, `make build` runs the new."""
    need("make")
    copy = os.path.join(s.tmp, "tree")
    os.mkdir(copy)
    for name in (
        "csrc",
        "minginx_cffi",
        "Makefile",
        "pyproject.toml",
        "setup.py",
        "README.md",
        "MANIFEST.in",
        "LICENSE",
    ):
        src = os.path.join(TREE, name)
        if os.path.isdir(src):
            shutil.copytree(
                src,
                os.path.join(copy, name),
                ignore=shutil.ignore_patterns(
                    "*.o", "__pycache__"
                ),  # the built engine too: its first build is quick
            )
        elif os.path.exists(src):
            shutil.copy(src, copy)
    venv = os.path.join(s.tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    py = os.path.join(venv, "bin", "python")
    # this environment's packages (pip, cffi, click, pytest...) seen from the venv, so that the
    # install needs nothing new; the venv's own site-packages come first
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    import site as site_mod

    with open(os.path.join(site, "outer.pth"), "w") as f:
        f.write(
            "\n".join(
                p for p in site_mod.getsitepackages() + [site_mod.getusersitepackages()] if os.path.isdir(p)
            )
            + "\n"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINGINX_WERROR")}
    # pip builds with the setuptools and cffi this environment has ('.[test]' brings them)
    # instead of fetching them into an isolated one: offline, and seconds instead of tens
    if build_tools_here():
        env["PIP_NO_BUILD_ISOLATION"] = "0"

    def build():
        p = subprocess.run(
            ["make", "build", "PYTHON=" + py], cwd=copy, capture_output=True, text=True, timeout=300, env=env
        )
        assert p.returncode == 0, "make build:\n" + p.stdout[-3000:] + p.stderr[-3000:]
        assert "csrc: builds with -Wall -Wextra -Werror" in p.stdout, p.stdout

    def server_header():
        port = free_port()
        p = subprocess.Popen(
            [py, "-m", "minginx_cffi", "serve", "--port", str(port), "--workers", "1"],
            cwd=s.tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            banner = p.stdout.readline().decode()
            assert "serving" in banner, (banner, p.stderr.read1().decode())
            return http(port, "/").header("Server")
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(20) == 0

    build()
    where = subprocess.run(
        [py, "-c", "import minginx_cffi; print(minginx_cffi.__file__)"],
        cwd=s.tmp,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(os.path.join(copy, "minginx_cffi")), where  # the editable install of the copy
    assert server_header() == "minginx-cffi"
    response_c = os.path.join(copy, "csrc", "h1.c")
    with open(response_c) as f:
        text = f.read()
    assert '"Server: minginx-cffi\\r\\n"' in text
    with open(response_c, "w") as f:
        f.write(text.replace('"Server: minginx-cffi\\r\\n"', '"Server: edited-in-csrc\\r\\n"'))
    assert server_header() == "minginx-cffi"  # the edit is not built: the old C runs
    build()
    assert server_header() == "edited-in-csrc"
    s.ran.append(cmd)


class Missing(Exception):
    """A tool the command needs is not installed: the command is skipped, and says so."""


def build_tools_here():
    """Can pip build the tree editable without an isolated build environment?"""
    import importlib.util

    import setuptools

    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return importlib.util.find_spec("cffi") and (version >= (70, 1) or importlib.util.find_spec("wheel"))


def need(tool):
    if shutil.which(tool) is None:
        raise Missing("%s is not installed (.ci/run installs it)" % tool)


def skip(reason):
    def rule(s, cmd):
        s.skipped.append((cmd, reason))

    rule.reason = reason
    return rule


# The first match decides.  SKIP: why the command cannot run here, and what runs it instead.
RULES = [
    (
        r"^(python3 -m venv \.venv|\.venv/bin/pip install (\.|-e '\.\[test\]')"
        r"|\.venv/bin/minginx-cffi serve)$",
        skip(
            "README's set-up on a fresh machine: tests/test_readme_setup.py runs the first line with "
            "Debian's python3 in a copy of the tree and serves; .ci/run runs the second as written"
        ),
    ),
    (
        r"^\.venv/bin/python -m pytest -n auto$",
        skip("the whole suite: .ci/run runs README's line as written"),
    ),
    (
        r"^(python3? -m )?pip install (-e )?('\.\[test\]'|\.)$",
        skip(
            "installs this tree into the running interpreter; .ci/run does `pip install -e '.[test]'` "
            "in a fresh venv and .ci/package installs the sdist and the wheel in fresh venvs and serves"
        ),
    ),
    (
        r"^python3? -m pytest( -n auto)?$",
        skip("the whole suite: this test is part of it, and .ci/run runs it"),
    ),
    (r"^(python3? -m )?pytest tests/\S+$", skip("a file of the suite, which runs it anyway")),
    (r"^make (test|test-asan|fuzz|bench)$", skip("minutes long; .ci/run runs make test-asan and make fuzz")),
    (r"^(sudo|systemctl|apt-get) ", skip("changes the machine (packages, services as root)")),
    (r"^minginx-cffi serve\b", serve),
    (r"^systemd-socket-activate ", socket_activate),
    (r"^python3? -c ", python_c),
    (r"^curl ", curl),
    (r"^wrk ", wrk),
    (r"^ab ", ab),
    (r"^strace ", strace),
    (r"^(python3? )?bench/run\.py\b", bench_run),
    (r"^make build$", make_build),
]


def rule_for(cmd):
    for pattern, rule in RULES:
        if re.search(pattern, cmd.text):
            return rule
    return None


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("page", [p for p in PAGES if p != PRODUCTION])
def test_the_page_runs(page, tmp_path):
    cmds, _ = extract(page)
    s = Session(str(tmp_path))
    try:
        for cmd in cmds:
            rule = rule_for(cmd)
            assert rule is not None, "no rule runs %r (add one to RULES)" % cmd
            try:
                rule(s, cmd)
            except Missing as e:
                s.skipped.append((cmd, str(e)))
        s.stop()
    finally:
        s.stop(check=False)
    assert len(s.ran) + len(s.skipped) == len(cmds)
    for cmd in s.ran:
        print("ran %r" % cmd)
    for cmd, why in s.skipped:
        print("skipped %r: %s" % (cmd, why))


def test_every_command_has_a_rule():
    missing, strays, running = [], [], 0
    for page in PAGES:
        cmds, bad = extract(page)
        strays += bad
        for cmd in cmds:
            rule = rule_for(cmd)
            if rule is None and page != PRODUCTION:
                missing.append(repr(cmd))
            elif rule is not None and not hasattr(rule, "reason") and page != PRODUCTION:
                running += 1
    assert not strays, "lines of shell blocks that are not commands:\n" + "\n".join(strays)
    assert not missing, "documented commands nothing runs:\n" + "\n".join(missing)
    assert running >= 10, running


def test_production_commands_are_run_there():
    """docs/production.md's commands are the ones tests/test_production_docs.py picks from the page."""
    import test_production_docs as prod

    cmds, _ = extract(PRODUCTION)
    picked = [
        line for b in prod.blocks("sh") for line in b.splitlines() if "--uds" in line or "--user" in line
    ]
    # the install line, split at && as extract() splits it, is the venv fixture's
    picked += [part.strip() for part in prod.install_command().split("&&")]
    assert sorted(c.text for c in cmds) == sorted(line.strip() for line in picked), (cmds, picked)


def test_a_broken_command_fails(tmp_path):
    """The runner fails a command that fails (walkthrough exercise 6's once did)."""
    s = Session(str(tmp_path))
    cmd = Command("example.md", 1, "python3 bench/run.py --workload pinned --no-such-option 0")
    with pytest.raises(AssertionError, match="exited 2"):
        bench_run(s, cmd)
    cmd = Command("example.md", 2, "minginx-cffi serve --no-such-option")
    with pytest.raises(AssertionError, match="did not start"):
        serve(s, cmd)
    s.stop(check=False)
    assert rule_for(Command("example.md", 3, "frobnicate --now")) is None


def test_extraction():
    text = (
        "Prose with `minginx-cffi serve --inline` in it.\n\n"
        "    minginx-cffi serve --workers 1\n"
        '    python3 -c "print(1)" \\\n'
        "      --more\n"
        "              ms  who\n\n"
        "```sh\n$ make build && curl -s http://127.0.0.1:3094/\n```\n\n"
        "```python\n# api.py -- minginx-cffi serve --app api:app\napp = 1\n```\n\n"
        "```nginx\nminginx-cffi serve --not-shell\n```\n"
        "<!-- figures:x -->\n    wrk -t2 -c100 -d8s\n<!-- /figures -->\n"
    )
    path = os.path.join(tempfile.mkdtemp(), "x.md")
    with open(path, "w") as f:
        f.write(text)
    global TREE
    old, TREE = TREE, os.path.dirname(path)
    try:
        cmds, strays = extract("x.md")
    finally:
        TREE = old
        shutil.rmtree(os.path.dirname(path))
    assert [c.text for c in cmds] == [
        "minginx-cffi serve --workers 1",
        'python3 -c "print(1)" --more',
        "make build",
        "curl -s http://127.0.0.1:3094/",
        "minginx-cffi serve --app api:app",
    ]
    assert cmds[-1].files == {"api.py": "# api.py -- minginx-cffi serve --app api:app\napp = 1\n"}
    assert not strays
