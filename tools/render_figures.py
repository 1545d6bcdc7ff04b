"""The performance figures of README.md and docs/*.md, rendered from bench/results/.

Every figure measured by bench/run.py that the documentation states lives between markers

    <!-- figures:NAME -->
    ...
    <!-- /figures -->

and is written by this script from the committed results, so README, the walkthrough and
the side-by-side page cannot disagree: each workload's figures come from ONE file, the
newest committed bench/results/*.md that measured it (a full run supersedes them all), and
each block names that file, its date and its machine.  NAME is one of RENDER's keys.

    python3 tools/render_figures.py            # rewrite the regions in place
    python3 tools/render_figures.py --check    # exit 1 and a diff if a region differs

tests/test_docs_figures.py runs --check, so a figure edited by hand, or results committed
without rendering them, fail the suite.  `bench/run.py --readme` commits-to-be (git add -f)
its results and runs this script.  Figures from other tools (bench/per_request.py's
callgrind counts, a perf profile) are stated as such where they appear and are not here.
"""

import difflib
import glob
import os
import re
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
DOCS = ["README.md", "docs/benchmarks.md", "docs/walkthrough.md", "docs/side-by-side.md"]
REGION = re.compile(r"(<!-- figures:([a-z0-9-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)
HEAD = re.compile(r"^Measured (\S+) on (.*), with `([^`]*)`\.$")
# the order of README's tables
ORDER = [
    "pinned",
    "c400",
    "1mib",
    "ab",
    "idle10k",
    "idle19k",
    "idle50k",
    "burst",
    "ideas",
    "ideas-churn",
    "port",
    "hello-native",
    "hello-wsgi",
    "fastapi-hello",
    "slow-beside",
]


class Section:
    """One workload's table of one results file."""

    def __init__(self, path, date, machine, command, heading, table):
        self.path, self.date, self.machine, self.command = path, date, machine, command
        self.heading, self.table = heading, table
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
        self.columns = cells[0]
        self.rows = {row[0]: dict(zip(self.columns, row)) for row in cells[2:]}

    @property
    def source(self):
        return "bench/results/%s" % os.path.basename(self.path)

    def num(self, server, column):
        """A figure of the table as a float ("1.74x" -> 1.74, "0.2 / 2.6" -> 0.2)."""
        text = self.rows[server][column]
        return float(re.match(r"[0-9.]+", text).group(0))

    def cpu(self, server):
        return self.num(server, "server CPU us/req")

    def rps(self, server):
        return self.num(server, "median req/s")


def committed():
    """The results files git holds (bench/results is gitignored: results are added with -f);
    outside a git checkout (an unpacked sdist), every file there."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "bench/results/*.md"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = []
    paths = [os.path.join(ROOT, p) for p in out] or glob.glob(os.path.join(RESULTS, "*.md"))
    return sorted(p for p in paths if os.path.exists(p))


def parse(path):
    """{workload: Section} of one results file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    m = HEAD.match(lines[0])
    if not m:
        raise ValueError("%s: no 'Measured DATE on MACHINE, with `COMMAND`.' line" % path)
    out, i = {}, 1
    while i < len(lines):
        if lines[i].startswith("### "):
            heading = lines[i]
            j = i + 1
            while j < len(lines) and not lines[j].startswith("|"):
                j += 1
            k = j
            while k < len(lines) and lines[k].startswith("|"):
                k += 1
            out[heading[4:].split(":", 1)[0]] = Section(path, *m.groups(), heading, lines[j:k])
            i = k
        else:
            i += 1
    return out


def newest():
    """{workload: Section} from the newest committed file that measured each workload."""
    out = {}
    for path in committed():  # oldest first (the names are timestamps): newer ones win
        out.update(parse(path))
    return out


def ratio(a, b):
    return "%.2fx" % (a / b)


def source(*sections):
    """The italic line under a rendered figure: its files, dates and machines."""
    seen = []
    for s in sections:
        text = "%s (measured %s on %s, `%s`)" % (s.source, s.date, s.machine, s.command)
        if text not in seen:
            seen.append(text)
    return "From " + "; ".join(seen) + "."


# ------------------------------------------------------------------ the regions


def bench(r):
    """README's tables, one per workload, each under the line naming its file."""
    out = []
    for wl in ORDER:
        if wl not in r:
            continue
        s = r[wl]
        out += [s.heading, "", source(s), ""] + s.table + [""]
        if wl in NOTES:
            out += [NOTES[wl](r), ""]
    return "\n".join(out)


def pinned_note(r):
    s = r["pinned"]
    bare = s.cpu("bare C loop")
    return (
        "Server CPU per request against the bare loop: `--switch fast` %s, the default "
        "`--switch ucontext` %s, `--io uring` %s (fast) and %s (ucontext); h2o %s, nginx with "
        "`open_file_cache` %s, nginx without it %s. Compare ratios within a table: the tables "
        "come from different sittings of a shared machine. RSS counts the master process too."
        % (
            ratio(s.cpu("minginx-cffi fast"), bare),
            ratio(s.cpu("minginx-cffi lifo"), bare),
            ratio(s.cpu("minginx-cffi uring fast"), bare),
            ratio(s.cpu("minginx-cffi uring"), bare),
            ratio(s.cpu("h2o"), bare),
            ratio(s.cpu("nginx open_file_cache"), bare),
            ratio(s.cpu("nginx"), bare),
        )
    )


NOTES = {
    "pinned": pinned_note,
    "idle10k": lambda r: (
        "An idle keep-alive connection is parked in its worker's fd table, without a "
        'coroutine or a stack (docs/walkthrough.md, "Between requests").'
    ),
    "burst": lambda r: (
        "Pooled stacks and request buffers beyond 32 go back to the kernel once a second "
        "after a burst, then `malloc_trim`; the port, which pools nothing of its own, trims malloc's heap "
        "the same way (tests/test_burst_rss.py)."
    ),
}


def reading(r):
    """README's "Reading it": what the tables say, in words, from the same tables."""
    p, one, ab, idle, churn, port = (r[w] for w in ("pinned", "1mib", "ab", "idle10k", "ideas-churn", "port"))
    return (
        "Reading it: the pinned 6 KiB case is bounded by the client (one core of wrk): the bare "
        "epoll loop answering from memory does about as well as the fast servers, so the "
        "`server CPU us/req` column is the fairer comparison there (the bare loop %.2f, "
        "minginx-cffi %.2f with `--switch fast` and %.2f with the default ucontext, h2o %.2f, "
        "lighttpd %.2f, nginx %.2f, nginx with its `open_file_cache` %.2f). The issue's reference "
        "nginx has no `open_file_cache`; with it nginx does %s more, and minginx-cffi is %s that. "
        "The C engine is %s the pure-Python port in the `port` table (%.2f against %.2f us/req of "
        "server CPU) and %s in the newer pinned table, whose port row has not been measured again "
        "in a `port` run.\n"
        "\n"
        "The 1 MiB file: keeping `TCP_CORK` on for the whole `sendfile` (nginx's `tcp_nopush`) "
        "halves loopback throughput; minginx-cffi corks the head with the first 256 KiB only and "
        "sends the rest in 256 KiB pieces, as lighttpd does (%s nginx). Connection per request: "
        "`ab` is the bottleneck there, and every wake-up of an idle server costs it an IPI; with "
        "`TCP_DEFER_ACCEPT` (the default, as h2o; `--no-defer-accept` is the %s row) the server "
        "wakes once per connection instead of twice; against nginx with `listen ... deferred` it "
        "is %s (%s with `--accept reuseport`, which skips the hop from the acceptor thread to the "
        "worker). 10,000 idle connections cost %s KiB each (nginx: %s): a parked connection keeps "
        "an fd-table entry, no coroutine and no stack. In `ideas-churn` (a new connection, "
        "coroutine and stack per request) the stack pool saves %.0f%% of the server's CPU per "
        "request (%.2f -> %.2f us)."
        % (
            p.cpu("bare C loop"),
            p.cpu("minginx-cffi fast"),
            p.cpu("minginx-cffi lifo"),
            p.cpu("h2o"),
            p.cpu("lighttpd"),
            p.cpu("nginx"),
            p.cpu("nginx open_file_cache"),
            ratio(p.rps("nginx open_file_cache"), p.rps("nginx")),
            ratio(p.rps("minginx-cffi lifo"), p.rps("nginx open_file_cache")),
            ratio(port.rps("minginx-cffi lifo"), port.rps("python port")),
            port.cpu("minginx-cffi lifo"),
            port.cpu("python port"),
            ratio(p.rps("minginx-cffi lifo"), p.rps("python port")),
            one.rows["minginx-cffi lifo"]["vs nginx"],
            ab.rows["minginx-cffi no defer-accept"]["vs nginx"],
            ratio(ab.rps("minginx-cffi lifo"), ab.rps("nginx deferred")),
            ratio(ab.rps("minginx-cffi reuseport"), ab.rps("nginx deferred")),
            idle.rows["minginx-cffi, keep-alive 75 s"]["per connection KiB"],
            idle.rows["nginx"]["per connection KiB"],
            100 * (1 - churn.cpu("minginx-cffi lifo") / churn.cpu("minginx-cffi no stack pool")),
            churn.cpu("minginx-cffi no stack pool"),
            churn.cpu("minginx-cffi lifo"),
        )
        + "\n\n"
        + source(p, port, one, ab, idle, churn)
    )


def handlers(r):
    """README's "Handlers that block": the slow handler beside, and hello world."""
    slow, nat, wsgi, fa = (r[w] for w in ("slow-beside", "hello-native", "hello-wsgi", "fastapi-hello"))
    pool, inline = (
        slow.rows["minginx-cffi slow app, threads 8"],
        slow.rows["minginx-cffi slow app, threads 0"],
    )
    return (
        "With 4 handlers sleeping 2 s on `--workers 1`, static files answer in %s ms (median / "
        "max) and a fast route in %s ms with the pool; with `--threads 0` both wait %s ms for the "
        "four handlers, which run one after another. Hello world: the App is %s granian RSGI "
        "and %s uvicorn with the pool, %s and %s with `--threads 0`; WSGI is %s gunicorn + gevent "
        "with the pool, %s inline. FastAPI hello under `--asgi` is %s uvicorn (uvloop, "
        "httptools) and %s granian ASGI (server CPU %.0f us per request against %.0f and %.0f): "
        "FastAPI itself is most of the cost.\n\n%s"
        % (
            pool["static median / max ms"],
            pool["fast route median / max ms"],
            inline["static median / max ms"],
            nat.rows["minginx-cffi App, threads 8"]["vs granian rsgi"],
            nat.rows["minginx-cffi App, threads 8"]["vs uvicorn asgi"],
            nat.rows["minginx-cffi App, threads 0"]["vs granian rsgi"],
            nat.rows["minginx-cffi App, threads 0"]["vs uvicorn asgi"],
            wsgi.rows["minginx-cffi wsgi, threads 8"]["vs gunicorn gevent"],
            wsgi.rows["minginx-cffi wsgi, threads 0"]["vs gunicorn gevent"],
            fa.rows["minginx-cffi asgi fastapi"]["vs uvicorn fastapi"],
            fa.rows["minginx-cffi asgi fastapi"]["vs granian fastapi"],
            fa.cpu("minginx-cffi asgi fastapi"),
            fa.cpu("uvicorn fastapi"),
            fa.cpu("granian fastapi"),
            source(slow, nat, wsgi, fa),
        )
    )


def uring(r):
    """io_uring against epoll, server CPU per request, pinned (README and the walkthrough)."""
    p = r["pinned"]
    return (
        "Pinned, 6 KiB keep-alive, one sitting: `--io uring` costs %.2f us of server CPU per "
        "request against epoll's %.2f with `--switch fast` (%s), %.2f against %.2f with the "
        "default `--switch ucontext` (%s). %s"
        % (
            p.cpu("minginx-cffi uring fast"),
            p.cpu("minginx-cffi fast"),
            ratio(p.cpu("minginx-cffi uring fast"), p.cpu("minginx-cffi fast")),
            p.cpu("minginx-cffi uring"),
            p.cpu("minginx-cffi lifo"),
            ratio(p.cpu("minginx-cffi uring"), p.cpu("minginx-cffi lifo")),
            source(p),
        )
    )


def policy(r):
    """The walkthrough's FIFO against LIFO."""
    rows = [
        "| workload | FIFO req/s | LIFO req/s | FIFO / LIFO | max latency ms FIFO / LIFO |",
        "|---|---|---|---|---|",
    ]
    used = []
    for wl, what in (("c400", "6 KiB file, 2 workers, unpinned"), ("pinned", "6 KiB file, 1 worker, pinned")):
        s = r[wl]
        used.append(s)
        fifo, lifo = s.rows["minginx-cffi fifo"], s.rows["minginx-cffi lifo"]
        rows.append(
            "| %s, `%s` | %s | %s | %s | %s / %s |"
            % (
                what,
                s.heading.split(": ", 1)[1].split(" /", 1)[0],
                fifo["median req/s"],
                lifo["median req/s"],
                ratio(s.rps("minginx-cffi fifo"), s.rps("minginx-cffi lifo")),
                fifo["avg / max latency ms"].split("/")[1].strip(),
                lifo["avg / max latency ms"].split("/")[1].strip(),
            )
        )
    return "\n".join(rows) + "\n\n" + source(*used)


def park(r):
    """The walkthrough's idle connections, parked."""
    s = r["idle10k"]
    return "10,000 idle connections cost %s KiB each (nginx: %s). %s" % (
        s.rows["minginx-cffi, keep-alive 75 s"]["per connection KiB"],
        s.rows["nginx"]["per connection KiB"],
        source(s),
    )


def defer(r):
    """The walkthrough's TCP_DEFER_ACCEPT, under ab."""
    s = r["ab"]
    return (
        "With `ab` (a new connection per request) that is %s the requests per second of "
        "`--no-defer-accept`. %s"
        % (
            ratio(s.rps("minginx-cffi lifo"), s.rps("minginx-cffi no defer-accept")),
            source(s),
        )
    )


def port(r):
    """docs/side-by-side.md: the C engine against the port."""
    s = r["port"]
    names = [
        ("minginx-cffi lifo", "C engine (lifo)"),
        ("python port", "Python port, 1 worker"),
        ("python port, 2 workers", "Python port, 2 workers"),
        ("python port, no caches", "Python port, caches off (open + sendfile + TCP_CORK per request)"),
    ]
    rows = ["| server | req/s | vs port | server CPU us/req |", "|---|---|---|---|"]
    for key, label in names:
        row = s.rows[key]
        rows.append(
            "| %s | %s | %s | %s |"
            % (label, row["median req/s"], row["vs python port"], row["server CPU us/req"])
        )
    return "%s\n\n%s\n\n%s" % (s.heading.split(": ", 1)[1], "\n".join(rows), source(s))


def interp(r):
    """docs/side-by-side.md, "On PyPy": both engines on both interpreters, one run."""
    out = []
    for wl in ("interp", "interp-hello", "interp-wsgi", "interp-idle"):
        s = r[wl]
        out += [s.heading, ""] + s.table + [""]
    out.append(source(*(r[wl] for wl in ("interp", "interp-hello", "interp-wsgi", "interp-idle"))))
    return "\n".join(out)


RENDER = {
    "bench": bench,
    "reading": reading,
    "handlers": handlers,
    "uring": uring,
    "policy": policy,
    "park": park,
    "defer": defer,
    "port": port,
    "interp": interp,
}


def wrap(text):
    """Prose paragraphs wrapped at 95 columns as the pages' own; tables and headings as they are."""
    out = []
    for para in text.strip("\n").split("\n\n"):
        if para.startswith(("|", "#")):
            out.append(para)
        else:
            out.append(textwrap.fill(para, 95, break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)


def rewrite(doc, results):
    """The document with every figures region rendered anew (ValueError on an unknown NAME)."""

    def one(m):
        name = m.group(2)
        if name not in RENDER:
            raise ValueError("unknown figures region %r (known: %s)" % (name, ", ".join(sorted(RENDER))))
        return m.group(1) + wrap(RENDER[name](results)) + "\n" + m.group(4)

    return REGION.sub(one, doc)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    results = newest()
    bad = 0
    for rel in DOCS:
        path = os.path.join(ROOT, rel)
        with open(path, encoding="utf-8") as f:
            doc = f.read()
        new = rewrite(doc, results)
        if new == doc:
            continue
        if check:
            bad = 1
            sys.stdout.writelines(
                difflib.unified_diff(doc.splitlines(True), new.splitlines(True), rel, rel + " (rendered)")
            )
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print("render_figures: rewrote %s" % rel)
    return bad


if __name__ == "__main__":
    sys.exit(main())
