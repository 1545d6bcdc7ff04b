// Polls /_minginx/stats every second: per-worker bars, a req/s sparkline, a counters table;
// and shows /_minginx/trace, the steps this page's own connection went through.
"use strict";
const history = [];
let last = null;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw(stats) {
  const total = stats.workers.reduce((a, w) => a + w.requests, 0);
  const now = performance.now();
  if (last) {
    const rps = Math.max(0, (total - last.total) / ((now - last.t) / 1000));
    history.push(rps);
    if (history.length > 60) history.shift();
    document.getElementById("rps").textContent = Math.round(rps).toLocaleString("en");
  }
  last = {total: total, t: now};
  document.getElementById("total").textContent = total.toLocaleString("en");
  document.getElementById("engine").textContent = stats.engine + (stats.io ? " (" + stats.io + ")" : "");
  document.getElementById("policy").textContent = stats.policy;

  const max = Math.max(1, ...history);
  const pts = history.map((v, i) => (i * 600 / 59).toFixed(1) + "," + (78 - v / max * 74).toFixed(1));
  document.getElementById("sparkline").setAttribute("points", pts.join(" "));

  const box = document.getElementById("workers");
  box.textContent = "";
  const most = Math.max(1, ...stats.workers.map(w => w.requests));
  stats.workers.forEach((w, i) => {
    const row = el("div", {"class": "bar-row"});
    row.appendChild(el("span", {"class": "bar-label"}, "worker " + i));
    const bar = el("span", {"class": "bar", "data-worker": String(i)});
    bar.style.width = (w.requests / most * 100).toFixed(1) + "%";
    row.appendChild(bar);
    row.appendChild(el("span", {"class": "bar-value"}, w.requests.toLocaleString("en")));
    box.appendChild(row);
  });

  const body = document.querySelector("#counters tbody");
  body.textContent = "";
  stats.workers.forEach((w, i) => {
    const tr = el("tr");
    [i, w.connections, w.requests, w.switches, w.yields.read + " / " + w.yields.write, w.wakeups,
     w.ready_max, w.coroutines_alive, w.stack_pool, w.cache_hits].forEach(v => tr.appendChild(el("td", {}, String(v))));
    body.appendChild(tr);
  });
}

function showTrace(t) {
  const list = document.getElementById("trace");
  list.textContent = "";
  if (!t.enabled || !t.events.length) {
    list.appendChild(el("li", {}, "Tracing is off for this server: start it with --trace (the demo site records by default)."));
    return;
  }
  const t0 = t.events[0].t_us;
  t.events.forEach(e => {
    const what = describe(e);
    const li = el("li", {"class": "trace-step"});
    li.appendChild(el("code", {}, "+" + ((e.t_us - t0) / 1000).toFixed(3) + " ms"));
    li.appendChild(document.createTextNode("  " + what + "  (worker " + t.worker + ", coroutine " + t.coroutine + ", fd " + e.fd + ")"));
    list.appendChild(li);
  });
  list.appendChild(el("li", {"class": "trace-step now"},
    "\u2026 and now: /_minginx/trace answers with this list (send_async), then handler done GET /_minginx/trace 200"));
}

// A step's words from its named fields, as the server's --trace prints them
// (minginx_cffi/trace.py describe; /_minginx/trace names them: trace.py json_fields).
function describe(e) {
  const request = e.method ? e.method + " " + e.path : "-";
  switch (e.event) {
    case "dispatch": return "dispatch -> worker " + e.worker;
    case "fd_batch": return "pipe read into fd_batch";
    case "schedule": return "schedule -> the coroutine runs";
    case "yield": return "yield (" + (e.reason || e.arg) + ")";
    case "wake_fd": return "wake_fd (" + e.events + ")";
    case "unpark": return "unpark (" + e.events + " on a parked fd) -> coroutine_create";
    case "park": return "park (idle after " + e.requests + " request" + (e.requests === 1 ? "" : "s") + ")";
    case "recv_async":
    case "send_async":
    case "sendfile_async":
      if (e.error === "EAGAIN" && e.event === "recv_async") return "recv_async -> EAGAIN, yield (read)";
      return e.event + " -> " + (e.error || e.bytes + (e.bytes === 1 ? " byte" : " bytes"));
    case "parse_http": return "parse_http " + request + (e.status ? " -> " + e.status : "");
    case "handler_done": return "handler done " + request + " " + e.status;
    case "run_python": return "run_python -> mg_py_batch (" + e.calls + (e.calls === 1 ? " call)" : " calls)");
    case "finished": return "finished = 1";
    case "submit": return "submit (io_uring SQE: " + e.op + ")";
    case "complete": return "complete (io_uring CQE: res " + e.res + ")";
    default: return e.event;
  }
}

async function poll() {
  try {
    const r = await fetch("/_minginx/stats", {cache: "no-store"});
    if (r.ok) draw(await r.json());
  } catch (e) { /* the server may be restarting */ }
}

async function trace() {
  try {
    const r = await fetch("/_minginx/trace", {cache: "no-store"});
    if (r.ok) showTrace(await r.json());
  } catch (e) { }
}

poll();
trace();
setInterval(poll, 1000);
