"""The framing corpus sent to Debian's nginx and to both engines: every difference is documented.

nginx runs from a generated config in a temp dir (127.0.0.1, a free port, our
test site as root, logs and pid there, no daemon, no master, as the current
user); /echo and /env are proxied to one of our servers so that nginx, not the
handler, decides how a request body is framed (proxy_request_buffering reads the
whole body before anything is answered). Each case is compared by its outcome
with the pipelined GET behind it: (status of the first answer, whether the
pipelined request was answered). Any outcome where nginx and we differ must be
in DOCUMENTED, which mirrors the table in docs/conformance.md (checked below).
"""

import os
import re
import subprocess
import time

import pytest
from framing_corpus import CASES, outcome
from test_framing_corpus import start

from conftest import ENGINES, free_port

NGINX = os.environ.get("MINGINX_NGINX", "/usr/sbin/nginx")
DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "conformance.md")

# case name -> (nginx's outcome, ours): kept in sync with docs/conformance.md by
# test_documented_table_matches_the_doc. An outcome is "status/answered|closed".
DOCUMENTED = {}


def load_documented():
    """The table in docs/conformance.md: | `case` | nginx | minginx | RFC | why |."""
    table = {}
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", line)
            if m:
                table[m.group(1)] = (m.group(2), m.group(3))
    return table


DOCUMENTED.update(load_documented())


def fmt(o):
    return "%s/%s" % o


CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    lingering_timeout 200ms;   # close soon after an error: our outcome waits only 1.5 s
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /echo {{ proxy_pass http://127.0.0.1:{upstream}; }}
        location /env {{ proxy_pass http://127.0.0.1:{upstream}; }}
    }}
}}
"""


def wait_listening(port, proc, timeout=10.0):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)  # nginx gives no readiness event; poll the port
    return False


@pytest.fixture(scope="module")
def nginx(site_root, tmp_path_factory):
    if not os.access(NGINX, os.X_OK):
        pytest.skip("nginx not installed at %s (CI installs Debian's nginx-light)" % NGINX)
    upstream = start(site_root, "cffi")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(tmp=tmp, port=port, root=site_root, upstream=upstream.port))
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        if not wait_listening(port, proc):
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            pytest.skip("nginx did not start: %s" % err.strip()[-300:])
        yield port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        upstream.shutdown()


@pytest.fixture(scope="module")
def ours(site_root):
    servers = {e: start(site_root, e) for e in ENGINES}
    yield servers
    for srv in servers.values():
        srv.shutdown()


def test_every_difference_from_nginx_is_documented(nginx, ours):
    undocumented, stale = {}, {}
    for c in CASES:
        theirs = fmt(outcome(nginx, c))
        mine = {e: fmt(outcome(srv.port, c)) for e, srv in ours.items()}
        if len(set(mine.values())) > 1:
            continue  # the engines disagree: test_framing_corpus.test_engines_agree reports it
        mine = next(iter(mine.values()))
        if theirs != mine and DOCUMENTED.get(c.name) != (theirs, mine):
            undocumented[c.name] = (theirs, mine)
        if theirs == mine and c.name in DOCUMENTED:
            stale[c.name] = (theirs, mine)
    assert undocumented == {}, "differences from nginx missing from docs/conformance.md: %r" % undocumented
    assert stale == {}, "documented differences that are gone: update docs/conformance.md: %r" % stale


def test_documented_table_matches_the_doc():
    """Every row names a corpus case and gives both outcomes; the test reads the same table."""
    table = load_documented()
    assert table, "docs/conformance.md has no differences table"
    names = {c.name for c in CASES}
    for name, (theirs, mine) in table.items():
        assert name in names, "docs/conformance.md names an unknown case: %s" % name
        for o in (theirs, mine):
            assert re.fullmatch(r"(\d{3}|none)/(answered|closed|other)", o), (name, o)
    assert table == DOCUMENTED
