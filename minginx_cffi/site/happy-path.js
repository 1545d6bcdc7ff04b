// The happy path, live: sends one request, fetches the trace of the connection that carried
// it (GET /_minginx/trace) and replays its steps on the diagram, each with the function that
// records it.  happy-path.html?auto sends one at load; &pace=ms sets the replay's speed.
"use strict";

const PORT = "minginx_cffi/pyport/";
// A step's name (its first word: the JSON's event names, and the trace's printed words such
// as "pipe read into fd_batch" or "recv_async -> 87 bytes") -> [diagram node, C file, C
// function, port file, port function, what happens].  Every function is one that exists:
// tests/test_happy_path_page.py looks each one up.
const STEPS = {
  accept: ["acceptor", "csrc/acceptor.c", "accept_batch", PORT + "acceptor.py", "Acceptor._accept_batch",
    "the main thread's accept4() returned the connection's fd"],
  dispatch: ["pipe", "csrc/acceptor.c", "dispatch", PORT + "acceptor.py", "Acceptor.dispatch",
    "round-robin: the fd is written down one worker's pipe"],
  fd_batch: ["fdbatch", "csrc/worker.c", "accept_from_pipe", PORT + "worker.py", "Worker._accept_from_pipe",
    "the worker's wait returned for its pipe; it read the fd into fd_batch"],
  coroutine_create: ["coroutine", "csrc/coroutine.c", "coroutine_create", PORT + "coroutine.py", "coroutine_create",
    "a stack from the pool (guard page below), a context to start on it"],
  add_to_ready: ["ready", "csrc/worker.c", "add_to_ready", PORT + "worker.py", "Worker.add_to_ready",
    "onto the ready queue"],
  schedule: ["sched", "csrc/worker.c", "schedule", PORT + "worker.py", "Worker.schedule",
    "the scheduler swaps onto the coroutine's stack: it runs"],
  trampoline_start: ["coroutine", "csrc/coroutine.c", "trampoline_body", PORT + "coroutine.py", "trampoline_start",
    "the coroutine's first frame, which calls its entry"],
  entry: ["coroutine", "csrc/conn.c", "conn_entry", PORT + "conn.py", "conn_entry",
    "the connection's life begins: read, parse, answer, again"],
  recv_async: ["coroutine", "csrc/io.c", "recv_async", PORT + "io.py", "recv_async",
    "recv() on the socket: bytes, or EAGAIN and a yield"],
  send_async: ["coroutine", "csrc/io.c", "send_async", PORT + "io.py", "send_async", "the response head (and body)"],
  sendfile_async: ["coroutine", "csrc/io.c", "sendfile_async", PORT + "io.py", "sendfile_async",
    "the file's bytes, zero-copy"],
  yield: ["coroutine", "csrc/coroutine.c", "coroutine_yield", PORT + "io.py", "io_park",
    "registers saved; back to the scheduler until the fd is ready"],
  wake_fd: ["worker", "csrc/worker.c", "wake_fd", PORT + "worker.py", "Worker.wake_fd",
    "the wait reported the socket: the coroutine waiting on it is queued again"],
  parse_http: ["handler", "csrc/http.c", "parse_http", PORT + "http.py", "parse_http", "the request head, parsed in place"],
  static_serve: ["handler", "csrc/static.c", "static_serve", PORT + "static.py", "static_serve",
    "the path confined to the root, the file opened (or cached)"],
  run_python: ["handler", "csrc/pycall.c", "run_python", PORT + "worker.py", "call_python",
    "the Python handler, on the worker's own stack"],
  wake_python: ["handler", "csrc/pycall.c", "drain_posts", PORT + "worker.py", "Worker.drain_posts",
    "a handler thread answered: the coroutine is queued again"],
  handler_done: ["handler", "csrc/conn.c", "conn_entry", PORT + "conn.py", "conn_entry",
    "the response is sent: its status"],
  park: ["worker", "csrc/worker.c", "worker_park", PORT + "worker.py", "Worker.park",
    "idle past 100 ms: the coroutine ends, the worker keeps the socket"],
  finished: ["coroutine", "csrc/coroutine.c", "trampoline_body", PORT + "coroutine.py", "trampoline_start",
    "the entry returned: finished = 1, back to the scheduler"],
  coroutine_destroy: ["sched", "csrc/coroutine.c", "coroutine_destroy", PORT + "coroutine.py", "coroutine_destroy",
    "the scheduler sees finished: the stack goes back to the pool"],
  unpark: ["worker", "csrc/worker.c", "unpark", PORT + "worker.py", "Worker._unpark",
    "input on a parked connection: a coroutine again"],
  submit: ["worker", "csrc/uring.c", "uring_wait_op", "", "", "io_uring: an SQE queued for this coroutine; it yields"],
  complete: ["worker", "csrc/uring.c", "uring_reap", "", "", "io_uring: its CQE came (as wake_fd does for epoll)"],
};
// printed words whose first word is not the step's name (minginx_cffi/trace.py describe)
const ALIASES = {pipe: "fd_batch", handler: "handler_done"};
const YIELD_REASONS = ["ready", "read", "write", "python"];
const URING_OPS = {6: "POLL_ADD", 9: "SENDMSG", 26: "SEND", 27: "RECV"};
// how deep the coroutine's stack is after each step (the diagram's frames)
const DEPTH = {coroutine_create: 1, trampoline_start: 2, entry: 3, recv_async: 4, send_async: 4,
  sendfile_async: 4, yield: 4, handler_done: 3, park: 3, finished: 1, coroutine_destroy: 0};

const params = new URLSearchParams(location.search);
const PACE = Math.max(10, Number(params.get("pace")) || 350);
let engine = "cffi";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function stepKey(name) {
  const word = name.split(/[\s(]/)[0];
  return ALIASES[word] || word;
}

function words(e) {
  if (e.event.indexOf(" ") >= 0) return e.event;  // already in words
  switch (e.event) {
    case "dispatch": return "dispatch -> worker " + e.arg;
    case "fd_batch": return "pipe read into fd_batch";
    case "schedule": return "schedule -> the coroutine runs";
    case "yield": return "yield (" + (YIELD_REASONS[e.arg] || e.arg) + ")";
    case "handler_done": return "handler done (" + e.arg + ")";
    case "finished": return "finished = 1";
    case "park": return "park (after " + e.arg + " request" + (e.arg === 1 ? "" : "s") + ")";
    case "submit": return "submit " + (URING_OPS[e.arg] || "op " + e.arg);
    case "complete": return "complete (res " + e.arg + ")";
    default: return e.event;
  }
}

function sameEvent(a, b) {
  return a.t_us === b.t_us && a.event === b.event && a.fd === b.fd && a.arg === b.arg;
}

// The steps to replay, from two traces of one connection taken before and after the request:
// the connection's opening (accept .. entry), then everything after the first trace's own
// answer, up to the coroutine_destroy that ended the reader's request's coroutine.  null if
// the browser sent the request, or one of the traces, over another connection.
function plan(before, after) {
  if (after.worker !== before.worker || after.coroutine !== before.coroutine || after.fd !== before.fd) return null;
  const ev = after.events;
  const last = before.events[before.events.length - 1];
  let p = -1;
  for (let i = ev.length - 1; i >= 0 && last; i--) if (sameEvent(ev[i], last)) { p = i; break; }
  if (p < 0) return null;
  const next = (from, name) => { for (let i = from; i < ev.length; i++) if (stepKey(ev[i].event) === name) return i; return -1; };
  const h1 = next(p + 1, "handler_done");  // the first trace's own answer
  const h2 = h1 < 0 ? -1 : next(h1 + 1, "handler_done");  // the reader's request
  if (h2 < 0) return null;
  let end = next(h2 + 1, "coroutine_destroy");
  if (end < 0) end = ev.length - 1;
  const entry = next(0, "entry");
  const opening = entry >= 0 && entry < h1 && ev[0].event === "accept" && after.skipped === 0 ? ev.slice(0, entry + 1) : [];
  const between = h1 + 1 - opening.length + after.skipped;
  return {opening: opening, between: between, request: ev.slice(h1 + 1, end + 1), status: ev[h2].arg};
}

function fnCell(file, fn, cls) {
  const td = el("td", {"class": cls});
  if (fn) {
    const c = el("code", {"class": "fn", "data-file": file, "data-fn": fn}, file.replace(PORT, "pyport/") + ": " + fn);
    td.appendChild(c);
  } else {
    td.textContent = "\u2014";
  }
  return td;
}

function row(body, n, e, t0, next) {
  const key = stepKey(e.event);
  let s = STEPS[key] || [null, "", "", "", "", ""];
  if (key === "accept" && !(next && stepKey(next.event) === "dispatch"))  // --accept reuseport: the worker's own
    s = ["worker", "csrc/worker.c", "worker_accept", "", "", "the worker's own accept4() (--accept reuseport)"];
  const tr = el("tr", {"class": "step", "data-step": key, "data-node": s[0] || ""});
  tr.appendChild(el("td", {}, String(n)));
  tr.appendChild(el("td", {"class": "t"}, "+" + ((e.t_us - t0) / 1000).toFixed(3) + " ms"));
  const what = el("td", {});
  what.appendChild(el("b", {}, words(e)));
  if (s[5]) what.appendChild(el("div", {"class": "hint"}, s[5]));
  tr.appendChild(what);
  tr.appendChild(fnCell(s[1], s[2], "col-cffi"));
  tr.appendChild(fnCell(s[3], s[4], "col-python"));
  body.appendChild(tr);
  return tr;
}

function light(tr, i, total) {
  document.querySelectorAll(".node.on").forEach(n => n.classList.remove("on"));
  document.querySelectorAll("tr.step.on").forEach(n => n.classList.remove("on"));
  tr.classList.add("lit", "on");
  const node = document.getElementById("n-" + tr.dataset.node);
  if (node) node.classList.add("on", "seen");
  const key = tr.dataset.step;
  if (key in DEPTH) document.getElementById("stack").dataset.depth = String(DEPTH[key]);
  const fn = tr.querySelector(".col-" + engine + " code");
  document.getElementById("now").textContent = "step " + (i + 1) + " of " + total + ": " +
    tr.querySelector("b").textContent + (fn ? "  \u2014  " + fn.textContent : "");
}

async function replay(p) {
  const body = document.querySelector("#steps tbody");
  body.textContent = "";
  document.getElementById("steps").removeAttribute("data-done");
  document.querySelectorAll(".node").forEach(n => n.classList.remove("on", "seen"));
  const t0 = (p.opening[0] || p.request[0]).t_us;
  const rows = [];
  let n = 0;
  p.opening.forEach((e, i) => rows.push(row(body, ++n, e, t0, p.opening[i + 1])));
  if (p.opening.length && p.between > 0) {
    const tr = el("tr", {"class": "gap"});
    const td = el("td", {"colspan": "5"}, "\u2026 " + p.between + " steps: this connection's earlier requests " +
      "(the page's own files), and the trace request sent just before yours \u2026");
    tr.appendChild(td);
    body.appendChild(tr);
  }
  p.request.forEach((e, i) => rows.push(row(body, ++n, e, t0, p.request[i + 1])));
  for (let i = 0; i < rows.length; i++) {
    light(rows[i], i, rows.length);
    await sleep(PACE);
  }
  document.getElementById("steps").setAttribute("data-done", String(rows.length));
  document.getElementById("status").textContent = "Done: " + rows.length + " steps; /index.html was answered " +
    p.status + ". The connection stays open, parked: your next request unparks it.";
}

async function send() {
  const button = document.getElementById("send");
  const status = document.getElementById("status");
  button.disabled = true;
  try {
    for (let attempt = 1; attempt <= 3; attempt++) {
      status.textContent = "Sending GET /index.html\u2026";
      const before = await getJSON("/_minginx/trace");
      if (!before.enabled) {
        status.textContent = "Tracing is off on this server: start it with --trace (the demo site records by default).";
        return;
      }
      const r = await fetch("/index.html", {cache: "no-store"});
      await r.text();
      // idle past the park delay (100 ms): the coroutine that answered ends
      status.textContent = "Answered " + r.status + "; waiting for the connection to park\u2026";
      await sleep(400);
      const after = await getJSON("/_minginx/trace");
      const p = plan(before, after);
      if (p) {
        document.getElementById("wi").textContent = String(after.worker);
        status.textContent = "The trace of worker " + after.worker + ", coroutine " + after.coroutine + ", fd " +
          after.fd + ":";
        await replay(p);
        return;
      }
      status.textContent = "Your browser used another connection for one of the requests; sending again\u2026";
    }
    status.textContent = "The browser kept changing connections; press the button again.";
  } catch (e) {
    status.textContent = "The request failed: " + e.message + " (is the server running with --stats?)";
  } finally {
    button.disabled = false;
  }
}

async function init() {
  try {
    const s = await getJSON("/_minginx/stats");
    engine = s.engine === "python" ? "python" : "cffi";
    document.getElementById("engine").textContent = s.engine === "python" ? "python (the port)" : "cffi (C)";
    document.getElementById("io").textContent = s.io || "epoll";
    document.getElementById("nworkers").textContent = String(s.workers.length);
    document.getElementById("waitcall").textContent = s.io === "uring" ? "io_uring_enter" : "epoll_wait";
    document.getElementById("policy").textContent = "ready_head, " + s.policy;
    document.body.dataset.engine = engine;
  } catch (e) {
    document.getElementById("status").textContent = "No /_minginx/stats here: start the server with --stats.";
    return;
  }
  const button = document.getElementById("send");
  button.disabled = false;
  button.addEventListener("click", send);
  if (params.has("auto")) button.click();
}

init();
