// The status page's script: polls /status and /history every 2 s and draws them; buttons POST
// the admin actions with the token typed in the header (kept for the tab only).
"use strict";
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];
const $ = (s) => document.querySelector(s);
const tokenInput = $("#token");
tokenInput.value = sessionStorage.getItem("smpp-proxy-token") || "";
tokenInput.addEventListener("change", () => { sessionStorage.setItem("smpp-proxy-token", tokenInput.value.trim()); refresh(); });
let previous = null;

function headers() {
  const t = tokenInput.value.trim();
  return t ? { Authorization: "Bearer " + t } : {};
}

async function get(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function say(text, error) {
  const m = $("#message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

async function act(path) {
  try {
    const r = await fetch(path, { method: "POST", headers: headers() });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    say(body.message || "done");
  } catch (e) {
    say(String(e.message || e), true);
  }
  refresh();
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(td, label, path) {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.action = label;
  b.addEventListener("click", () => act(path));
  td.appendChild(b);
}

function upstreams(status) {
  const body = $("#upstreams tbody");
  body.replaceChildren();
  for (const u of status.upstreams) {
    const row = body.insertRow();
    row.dataset.upstream = u.name;
    cell(row, u.name);
    cell(row, u.state, "state " + u.state);
    cell(row, u.sessions_bound + "/" + u.sessions);
    cell(row, (u.share * 100).toFixed(0) + "%", "num");
    cell(row, u.rtt_ms.toFixed(1), "num");
    cell(row, u.rate.toFixed(0), "num");
    cell(row, u.inflight, "num");
    cell(row, u.throttled, "num");
    cell(row, u.link_errors, "num");
    const td = cell(row, "");
    const name = encodeURIComponent(u.name);
    if (u.state === "draining" || u.state === "paused") {
      button(td, "enable", "/upstreams/" + name + "/enable");
    } else {
      button(td, "drain", "/upstreams/" + name + "/drain");
      button(td, "pause", "/upstreams/" + name + "/pause");
    }
  }
}

function groups(status) {
  const body = $("#groups tbody");
  body.replaceChildren();
  for (const g of status.groups) {
    const row = body.insertRow();
    row.dataset.group = g.name;
    cell(row, g.name);
    cell(row, g.strategy);
    cell(row, g.active || "-");
    cell(row, g.members.join(", "));
    const td = cell(row, "");
    if (g.strategy === "failover") button(td, "failback", "/groups/" + encodeURIComponent(g.name) + "/failback");
  }
}

function total(map, ok) {
  return Object.entries(map || {}).reduce((n, [status, count]) => n + ((status === "ESME_ROK") === ok ? count : 0), 0);
}

function clients(status, at) {
  const body = $("#clients tbody");
  body.replaceChildren();
  $("#clients-hidden").hidden = status.clients.length > 0;
  const before = previous && new Map(previous.status.clients.map((c) => [c.system_id, c]));
  const seconds = previous ? (at - previous.at) / 1000 : 0;
  for (const c of status.clients) {
    const row = body.insertRow();
    row.dataset.client = c.system_id;
    const old = before && before.get(c.system_id);
    const rate = (ok) => (old && seconds > 0 ? (total(c.submits, ok) - total(old.submits, ok)) / seconds : 0);
    cell(row, c.system_id);
    cell(row, c.binds, "num");
    cell(row, rate(true).toFixed(0), "num");
    cell(row, rate(false).toFixed(1), "num");
    cell(row, c.outbox, "num");
    cell(row, c.outbox_oldest_age || 0, "num");
    const td = cell(row, "");
    if (c.binds > 0) button(td, "unbind", "/clients/" + encodeURIComponent(c.system_id) + "/unbind");
  }
}

function chart(id, history, value) {
  const el = $(id);
  const svg = el.querySelector("svg");
  const legend = el.querySelector(".legend");
  const names = [...new Set(history.samples.flatMap((s) => s.upstreams.map((u) => u.name)))];
  const now = Date.now();
  // The last 15 minutes, or since the first sample when the proxy is younger than that.
  const first = history.samples.length ? history.samples[0].t : now;
  const from = Math.min(Math.max(first, now - 15 * 60 * 1000), now - 1000);
  let max = 0;
  for (const s of history.samples) for (const u of s.upstreams) max = Math.max(max, value(u));
  max = max > 0 ? max * 1.1 : 1;
  svg.replaceChildren();
  legend.replaceChildren();
  names.forEach((name, i) => {
    const points = history.samples
      .filter((s) => s.t >= from)
      .map((s) => [s.t, s.upstreams.find((u) => u.name === name)])
      .filter(([, u]) => u)
      .map(([t, u]) => ((t - from) / (now - from) * 300).toFixed(1) + "," + (140 - (value(u) / max) * 136).toFixed(1));
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.dataset.upstream = name;
    svg.appendChild(line);
    const key = document.createElement("span");
    key.innerHTML = '<i style="background:' + COLORS[i % COLORS.length] + '"></i>';
    key.append(name);
    legend.appendChild(key);
  });
}

function events(history) {
  const list = $("#events");
  list.replaceChildren();
  for (const e of [...history.events].reverse()) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date(e.t).toLocaleTimeString();
    li.append(time, e.what);
    list.appendChild(li);
  }
  if (!history.events.length) list.innerHTML = '<li class="muted">none yet</li>';
}

async function refresh() {
  try {
    const [status, history] = await Promise.all([get("/status"), get("/history")]);
    const at = Date.now();
    $("#meta").textContent = "node " + status.node_id + " · " + status.version + " (" + status.commit + ") · " +
      status.upstreams.filter((u) => u.state === "available" || u.state === "slow-start").length + "/" + status.upstreams.length + " upstreams in rotation";
    upstreams(status);
    groups(status);
    clients(status, at);
    chart("#chart-share", history, (u) => u.share * 100);
    chart("#chart-rate", history, (u) => u.rate);
    chart("#chart-rtt", history, (u) => u.rtt_ms);
    events(history);
    previous = { status, at };
    document.body.dataset.updated = String(at);
  } catch (e) {
    say("cannot read the proxy's status: " + (e.message || e), true);
  }
}

refresh();
setInterval(refresh, 2000);
