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
  const reasons = ["ready", "read", "write", "python"];
  t.events.forEach(e => {
    let what = e.event;
    if (e.event === "yield") what = "yield (" + (reasons[e.arg] || e.arg) + ")";
    if (e.event === "handler_done") what = "handler done (" + e.arg + ")";
    if (e.event === "finished") what = "finished = 1";
    const li = el("li", {"class": "trace-step"});
    li.appendChild(el("code", {}, "+" + ((e.t_us - t0) / 1000).toFixed(3) + " ms"));
    li.appendChild(document.createTextNode("  " + what + "  (worker " + t.worker + ", coroutine " + t.coroutine + ", fd " + e.fd + ")"));
    list.appendChild(li);
  });
  list.appendChild(el("li", {"class": "trace-step now"},
    "\u2026 and now: parse_http, then /_minginx/trace answers with this list: handler done (200)"));
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
