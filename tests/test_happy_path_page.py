"""The demo site's happy-path page in a real browser: headless Chromium clicks "send a
request", and the page replays the trace of the connection that carried it, on each engine.

Chromium is driven over --remote-debugging-pipe (the DevTools protocol, JSON messages ended
by a NUL, on fds 3 and 4): the page waits in real time for its connection to park, which
--dump-dom's virtual time would skip."""

import base64
import fcntl
import json
import os
import re
import subprocess

import pytest

from conftest import CHROMIUM, ENGINES, chromium_args, engine_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The happy path's steps, in the order the replay must light them (one of each at least)
IN_ORDER = ["accept", "dispatch", "coroutine_create", "schedule", "handler_done", "coroutine_destroy"]


class DevTools:
    """Just enough of the DevTools protocol: one page, commands answered in order."""

    def __init__(self, tmp_path):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # above 4, so that "exec 3<&" cannot overwrite the other one (bash: dash takes one digit)
        to_r, from_w = [self._high(fd) for fd in (to_r, from_w)]
        args = [
            *chromium_args(tmp_path / "profile"),
            "--window-size=1000,1900",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # make test-asan's runtime
        # the browser reads commands from fd 3 and writes answers to fd 4
        self.proc = subprocess.Popen(
            ["bash", "-c", 'exec 3<&%d 4>&%d; exec "$@"' % (to_r, from_w), "bash"] + args,
            pass_fds=(to_r, from_w),
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "chromium.err", "w"),
            env=env,
        )
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        self.events = []  # the names of the events read while waiting for an answer
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    @staticmethod
    def _high(fd):
        # PyPy 3.9's fcntl lacks the name F_DUPFD_CLOEXEC (Linux: 1030)
        high = fcntl.fcntl(fd, getattr(fcntl, "F_DUPFD_CLOEXEC", 1030), 10)
        os.close(fd)
        return high

    def call(self, method, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                assert "error" not in answer, answer
                return answer["result"]
            self.events.append(answer.get("method"))

    def _read(self):
        while b"\0" not in self._buf:
            chunk = os.read(self._from_r, 1 << 16)
            assert chunk, "Chromium closed its DevTools pipe"
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def navigate(self, url):
        """Open url and return once its load event has fired."""
        self.events = []
        self.call("Page.navigate", url=url)
        while "Page.loadEventFired" not in self.events:
            self.events.append(self._read().get("method"))

    def js(self, expression):
        """The value of expression (a promise is awaited)."""
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def close(self):
        os.close(self._to_w)
        os.close(self._from_r)
        self.proc.kill()
        self.proc.wait(timeout=10)


def until(condition):
    """A promise of condition's value once it is true, polled in the page; after 20 s, of
    its value then (the assertions after say what is missing)."""
    return (
        """new Promise(resolve => {
  const t0 = Date.now();
  (function poll() {
    const v = (%s);
    if (v || Date.now() - t0 > 20000) resolve(v);
    else setTimeout(poll, 50);
  })();
})"""
        % condition
    )


LIT = """Array.from(document.querySelectorAll("#steps tr.step.lit")).map(tr => ({
  step: tr.dataset.step, node: tr.dataset.node, text: tr.querySelector("b").textContent,
  fns: Array.from(tr.querySelectorAll("code.fn")).map(c => [c.dataset.file, c.dataset.fn])}))"""


def defined(path, fn):
    """fn is defined in path (a C function, or a Python function or Class.method)."""
    with open(os.path.join(REPO, path)) as f:
        src = f.read()
    if path.endswith(".c"):
        return re.search(r"^[A-Za-z_].*\b%s\(" % re.escape(fn), src, re.M) is not None
    *cls, name = fn.split(".")
    if cls and not re.search(r"^class %s\b" % re.escape(cls[0]), src, re.M):
        return False
    return re.search(r"^\s*def %s\(" % re.escape(name), src, re.M) is not None


@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("name", ENGINES)
def test_happy_path_page_replays_the_request(name, tmp_path):
    from minginx_cffi import Server

    opts = engine_options(name)
    srv = Server(port=0, workers=2, stats=True, trace="record", **opts).start()  # the demo site
    browser = DevTools(tmp_path)
    try:
        browser.call("Page.enable")
        browser.navigate("http://127.0.0.1:%d/happy-path.html?pace=40" % srv.port)
        # the button is enabled once the page has read /_minginx/stats
        assert browser.js(until('document.getElementById("send").disabled === false'))
        assert browser.js('document.getElementById("engine").textContent') == (
            "python (the port)" if name == "python" else "cffi (C)"
        )
        assert browser.js('document.getElementById("io").textContent') == opts.get("io", "epoll")
        box = browser.js(
            "(r => [r.x + r.width / 2, r.y + r.height / 2])"
            '(document.getElementById("send").getBoundingClientRect())'
        )
        for kind in ("mousePressed", "mouseReleased"):  # a click, as a reader's
            browser.call(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1
            )
        done = browser.js(until('document.getElementById("steps").getAttribute("data-done")'))
        status = browser.js('document.getElementById("status").textContent')
        assert done, status
        lit = browser.js(LIT)
        if os.environ.get("MINGINX_SHOW_STEPS"):
            print(name, [s["text"] for s in lit])
        steps = [s["step"] for s in lit]
        assert len(lit) == int(done)  # all of them lit
        # the happy path, in order, and the wait for input between schedule and the end
        at = 0
        for step in IN_ORDER:
            assert step in steps[at:], (step, steps)
            at = steps.index(step, at) + 1
        first_schedule = steps.index("schedule")
        last_destroy = len(steps) - 1 - steps[::-1].index("coroutine_destroy")
        assert {"yield", "recv_async"} & set(steps[first_schedule:last_destroy]), steps
        assert "handler done (200)" in [s["text"] for s in lit] or any(
            s["step"] == "handler_done" and "200" in s["text"] for s in lit
        )
        assert steps[-1] == "coroutine_destroy"  # the request's coroutine, ended by its park
        if name == "cffi-uring":
            assert "submit" in steps and "complete" in steps
        for s in lit:
            assert s["node"], s  # every step has its place on the diagram
            c_fns = [f for f in s["fns"] if f[0].startswith("csrc/")]
            assert c_fns, s  # and its C function
            for path, fn in s["fns"]:
                assert defined(path, fn), (path, fn)
        # the diagram: each element the replay went through is marked
        seen = browser.js('Array.from(document.querySelectorAll(".node.seen")).map(n => n.id)')
        assert {"n-acceptor", "n-pipe", "n-fdbatch", "n-ready", "n-sched", "n-coroutine", "n-handler"} <= set(
            seen
        )
        # MINGINX_SCREENSHOT=1 refreshes docs/happy-path.png (the C engine's); otherwise tmp
        if os.environ.get("MINGINX_SCREENSHOT") and name == "cffi":
            shot = os.path.join(REPO, "docs", "happy-path.png")
        else:
            shot = str(tmp_path / "happy-path.png")
        png = base64.b64decode(
            browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        with open(shot, "wb") as f:
            f.write(png)
        assert len(png) > 10000
    finally:
        browser.close()
        srv.shutdown()
