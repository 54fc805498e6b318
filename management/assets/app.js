// The dashboard: signs in with basic auth against the management API and polls it every
// 2.5 seconds. No library, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { auth: sessionStorage.getItem("bb-auth"), tab: "overview", points: [], timer: null, tail: null };
const enc = encodeURIComponent;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function fmt(n) {
  return Number(n || 0).toLocaleString("en-US", { maximumFractionDigits: 1 });
}

async function api(path, options = {}) {
  const response = await fetch("/api" + path, {
    ...options,
    headers: { Authorization: "Basic " + state.auth, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401 && path !== "/whoami") {
    signOut("Your session ended; sign in again.");
    throw new Error("unauthorised");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.reason || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 3000);
}

async function signIn(event) {
  event.preventDefault();
  state.auth = btoa($("username").value + ":" + $("password").value);
  try {
    const me = await api("/whoami");
    sessionStorage.setItem("bb-auth", state.auth);
    start(me);
  } catch (e) {
    $("login-error").textContent = "Sign-in failed: check the user name and password.";
  }
}

function signOut(message) {
  sessionStorage.removeItem("bb-auth");
  state.auth = null;
  clearInterval(state.timer);
  stopTail();
  for (const el of document.querySelectorAll(".tab")) el.hidden = true;
  $("tabs").hidden = $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function start(me) {
  $("login").hidden = true;
  $("tabs").hidden = $("who").hidden = false;
  $("user").textContent = me.name + (me.tags.length ? " · " + me.tags.join(", ") : "");
  show(state.tab);
  refresh();
  state.timer = setInterval(refresh, 2500);
}

function show(tab) {
  state.tab = tab;
  for (const el of document.querySelectorAll(".tab")) el.hidden = el.id !== tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  refresh();
}

async function refresh() {
  if (!state.auth) return;
  try {
    if (state.tab === "overview") await overview();
    if (state.tab === "queues") await queues();
    if (state.tab === "exchanges") await exchanges();
    if (state.tab === "connections") await connections();
    if (state.tab === "deadletters") await deadLetters();
  } catch (e) {
    if (e.message !== "unauthorised") toast(e.message);
  }
}

async function overview() {
  const [o, nodes] = await Promise.all([api("/overview"), api("/nodes")]);
  const t = o.object_totals, q = o.queue_totals, m = o.message_stats;
  $("t-connections").textContent = fmt(t.connections);
  $("t-channels").textContent = fmt(t.channels);
  $("t-queues").textContent = fmt(t.queues);
  $("t-consumers").textContent = fmt(t.consumers);
  $("t-ready").textContent = fmt(q.messages_ready);
  $("t-unacked").textContent = fmt(q.messages_unacknowledged);
  const point = { publish: m.publish_details.rate, deliver: m.deliver_get_details.rate, ack: m.ack_details.rate };
  $("r-publish").textContent = fmt(point.publish);
  $("r-deliver").textContent = fmt(point.deliver);
  $("r-ack").textContent = fmt(point.ack);
  state.points.push(point);
  if (state.points.length > 120) state.points.shift();
  chart();
  const n = nodes[0];
  const mb = (b) => fmt(b / 1048576) + " MiB";
  const facts = [
    ["Node", n.name], ["Version", o.product_name + " " + o.product_version],
    ["Memory", mb(n.mem_used) + " of " + mb(n.mem_limit)], ["Disk free", mb(n.disk_free)],
    ["Uptime", fmt(n.uptime / 60000) + " min"], ["File descriptors", fmt(n.fd_used) + " / " + fmt(n.fd_total)],
    ["Alarms", n.mem_alarm || n.disk_free_alarm ? "on" : "none"], ["Listeners", o.listeners.map((l) => l.protocol + " " + l.port).join(", ")],
  ];
  $("node").innerHTML = facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
}

function chart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = 220;
  canvas.width = w * ratio;
  canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const pad = { l: 48, r: 8, t: 10, b: 20 };
  const max = Math.max(1, ...state.points.flatMap((p) => [p.publish, p.deliver, p.ack])) * 1.15;
  g.strokeStyle = "#e3e6ec";
  g.fillStyle = "#6b7385";
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + ((h - pad.t - pad.b) * i) / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(fmt(max * (1 - i / 4)), 4, y + 4);
  }
  g.fillText("msg/s, last " + Math.round((state.points.length * 2.5) / 60 * 10) / 10 + " min", pad.l, h - 4);
  const styles = getComputedStyle(document.documentElement);
  for (const [key, color] of [["publish", "--publish"], ["deliver", "--deliver"], ["ack", "--ack"]]) {
    g.strokeStyle = styles.getPropertyValue(color).trim();
    g.lineWidth = 2;
    g.beginPath();
    state.points.forEach((p, i) => {
      const x = pad.l + ((w - pad.l - pad.r) * i) / Math.max(1, 119);
      const y = pad.t + (h - pad.t - pad.b) * (1 - p[key] / max);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

async function queues() {
  const filter = $("queue-filter").value.trim();
  const list = await api("/queues" + (filter ? "?name=" + enc(filter) : ""));
  $("queues-empty").hidden = list.length > 0;
  $("queue-rows").innerHTML = list.map((q) => {
    const s = q.message_stats || {};
    const id = esc(JSON.stringify([q.vhost, q.name]));
    return `<tr data-queue="${esc(q.name)}">
      <td><b>${esc(q.name)}</b>${q.durable ? "" : ' <span class="pill">transient</span>'}${q.exclusive ? ' <span class="pill">exclusive</span>' : ""}</td>
      <td>${esc(q.vhost)}</td><td>${esc(q.type)}</td>
      <td class="n ready">${fmt(q.messages_ready)}</td><td class="n">${fmt(q.messages_unacknowledged)}</td>
      <td class="n">${fmt(q.messages)}</td><td class="n">${fmt(q.consumers)}</td>
      <td class="n">${fmt(s.publish_details?.rate)}</td><td class="n">${fmt(s.deliver_get_details?.rate)}</td>
      <td class="actions"><button data-act="get" data-id='${id}'>Get messages</button>
        <button data-act="purge" data-id='${id}'>Purge</button>
        <button data-act="delete" class="danger" data-id='${id}'>Delete</button></td></tr>`;
  }).join("");
}

async function queueAction(act, vhost, name) {
  const path = `/queues/${enc(vhost)}/${enc(name)}`;
  if (act === "purge") {
    if (!confirm(`Purge every ready message of ${name}?`)) return;
    await api(path + "/contents", { method: "DELETE" });
    toast(`Purged ${name}`);
  } else if (act === "delete") {
    if (!confirm(`Delete queue ${name} and its messages?`)) return;
    await api(path, { method: "DELETE" });
    toast(`Deleted ${name}`);
  } else if (act === "get") {
    const got = await api(path + "/get", { method: "POST", body: JSON.stringify({ count: 10, ackmode: "ack_requeue_true", encoding: "auto", truncate: 20000 }) });
    $("messages").hidden = false;
    $("messages-queue").textContent = name;
    $("message-list").innerHTML = got.length ? got.map((m, i) => `<div class="message">
      <div><b>#${i + 1}</b> routing key <code>${esc(m.routing_key)}</code> · exchange <code>${esc(m.exchange || "(default)")}</code> · ${fmt(m.payload_bytes)} bytes${m.redelivered ? " · redelivered" : ""}</div>
      <pre>${esc(m.payload)}</pre></div>`).join("") : '<p class="muted">The queue is empty.</p>';
  }
  await refresh();
}

// Dead letters: the kits' headers (x-dead-reason, x-error, x-attempts, x-original-*) or
// RabbitMQ's x-death for a queue's own dead-lettering.
const BOOKKEEPING = ["x-attempt", "x-dead-reason", "x-error", "x-attempts", "x-last-error", "x-service", "x-dead-at",
  "x-death", "x-first-death-queue", "x-first-death-reason", "x-first-death-exchange", "x-delivery-count",
  "x-original-routing-key", "x-original-exchange"];

function deadInfo(m) {
  const h = m.properties.headers || {};
  const deaths = Array.isArray(h["x-death"]) ? h["x-death"] : [];
  const first = deaths[deaths.length - 1] || {};
  const key = h["x-original-routing-key"] ?? (first["routing-keys"] || [])[0];
  const exchange = h["x-original-routing-key"] !== undefined ? h["x-original-exchange"] ?? "" : first.exchange;
  return {
    reason: h["x-dead-reason"] ?? first.reason ?? "unknown",
    attempts: h["x-attempts"] ?? first.count ?? "?",
    error: h["x-error"] ?? "",
    key, exchange,
  };
}

function isDlq(q, all) {
  return /[._]dlq$/.test(q.name) || all.some((o) => o.vhost === q.vhost && (o.arguments || {})["x-dead-letter-routing-key"] === q.name);
}

async function peek(vhost, name, count) {
  return api(`/queues/${enc(vhost)}/${enc(name)}/get`, { method: "POST", body: JSON.stringify({ count, ackmode: "ack_requeue_true", encoding: "auto", truncate: 50000 }) });
}

async function deadLetters() {
  const all = await api("/queues");
  const dlqs = all.filter((q) => isDlq(q, all));
  $("dlq-empty").hidden = dlqs.length > 0;
  const rows = await Promise.all(dlqs.map(async (q) => {
    const reasons = {};
    if (q.messages_ready > 0) for (const m of await peek(q.vhost, q.name, 20)) {
      const r = deadInfo(m).reason;
      reasons[r] = (reasons[r] || 0) + 1;
    }
    const id = esc(JSON.stringify([q.vhost, q.name]));
    return `<tr data-dlq="${esc(q.name)}"><td><b>${esc(q.name)}</b></td><td>${esc(q.vhost)}</td>
      <td class="n ready">${fmt(q.messages_ready)}</td>
      <td>${Object.entries(reasons).map(([r, n]) => `<span class="pill reason">${esc(r)} × ${n}</span>`).join(" ") || '<span class="muted">none</span>'}</td>
      <td class="actions"><button data-dead="show" data-id='${id}'>Show</button>
        <button data-dead="replay" data-id='${id}'>Replay all</button>
        <button data-dead="purge" class="danger" data-id='${id}'>Purge</button></td></tr>`;
  }));
  $("dlq-rows").innerHTML = rows.join("");
}

async function deadAction(act, vhost, name) {
  if (act === "show") {
    const got = await peek(vhost, name, 20);
    $("dead").hidden = false;
    $("dead-queue").textContent = name;
    $("dead-list").innerHTML = got.length ? got.map((m) => {
      const d = deadInfo(m);
      return `<div class="message dead-letter"><div><span class="pill reason">${esc(d.reason)}</span>
        <b>${esc(m.properties.type || d.key || "?")}</b> · ${esc(String(d.attempts))} attempt(s) · from <code>${esc(d.exchange || "(default)")}</code> / <code>${esc(d.key ?? "?")}</code></div>
        ${d.error ? `<div class="error">${esc(d.error)}</div>` : ""}<pre>${esc(m.payload)}</pre></div>`;
    }).join("") : '<p class="muted">No dead letters.</p>';
  } else if (act === "replay") {
    const q = await api(`/queues/${enc(vhost)}/${enc(name)}`);
    if (!confirm(`Replay ${q.messages_ready} dead letters of ${name} to their routing keys?`)) return;
    let replayed = 0;
    for (let i = 0; i < q.messages_ready; i++) {
      const [m] = await peek(vhost, name, 1);
      if (!m) break;
      const d = deadInfo(m);
      if (d.key === undefined) { toast("A dead letter without its origin stays"); break; }
      const headers = Object.fromEntries(Object.entries(m.properties.headers || {}).filter(([k]) => !BOOKKEEPING.includes(k)));
      const properties = { ...m.properties, headers };
      const sent = await api(`/exchanges/${enc(vhost)}/${enc(d.exchange || "amq.default")}/publish`, { method: "POST",
        body: JSON.stringify({ routing_key: d.key, payload: m.payload, payload_encoding: m.payload_encoding, properties }) });
      if (!sent.routed) { toast(`Nothing is bound to ${d.key} now; it stays`); break; }
      // Published (durably) before it is taken off this queue: at least once, never lost.
      await api(`/queues/${enc(vhost)}/${enc(name)}/get`, { method: "POST", body: JSON.stringify({ count: 1, ackmode: "ack_requeue_false", encoding: "auto" }) });
      replayed++;
    }
    toast(`Replayed ${replayed} from ${name}`);
    $("dead").hidden = true;
  } else if (act === "purge") {
    if (!confirm(`Purge every dead letter of ${name}?`)) return;
    await api(`/queues/${enc(vhost)}/${enc(name)}/contents`, { method: "DELETE" });
    toast(`Purged ${name}`);
    $("dead").hidden = true;
  }
  await refresh();
}

async function exchanges() {
  const [list, bindings] = await Promise.all([api("/exchanges"), api("/bindings")]);
  $("exchange-rows").innerHTML = list.map((e) => {
    const from = bindings.filter((b) => b.vhost === e.vhost && b.source === e.name && e.name !== "");
    const shown = from.slice(0, 6).map((b) => `<code>${esc(b.routing_key || "∅")}</code> → ${esc(b.destination)}`).join("<br>");
    return `<tr><td><b>${esc(e.name || "(AMQP default)")}</b>${e.internal ? ' <span class="pill">internal</span>' : ""}</td>
      <td>${esc(e.vhost)}</td><td>${esc(e.type)}</td><td>${e.durable ? "yes" : "no"}</td>
      <td>${shown}${from.length > 6 ? `<br><span class="muted">and ${from.length - 6} more</span>` : ""}</td></tr>`;
  }).join("");
}

async function connections() {
  const [list, channels] = await Promise.all([api("/connections"), api("/channels")]);
  $("connections-empty").hidden = list.length > 0;
  $("connection-rows").innerHTML = list.map((c) => {
    const cp = c.client_properties || {};
    const client = cp.connection_name || [cp.product, cp.version].filter(Boolean).join(" ") || "unknown client";
    return `<tr><td><b>${esc(client)}</b><br><span class="muted">${esc(c.protocol)}</span></td><td><code>${esc(c.name)}</code></td>
      <td>${esc(c.user)}</td><td>${esc(c.vhost)}</td><td class="n">${fmt(c.channels)}</td>
      <td>${esc(new Date(c.connected_at).toLocaleTimeString())}</td>
      <td class="actions"><button class="danger" data-close='${esc(c.name)}'>Close</button></td></tr>`;
  }).join("");
  $("channel-rows").innerHTML = channels.map((ch) => `<tr><td><code>${esc(ch.name)}</code></td><td>${esc(ch.user)}</td>
    <td class="n">${fmt(ch.consumer_count)}</td><td class="n">${fmt(ch.messages_unacknowledged)}</td><td class="n">${fmt(ch.prefetch_count)}</td></tr>`).join("");
}

async function startTail(event) {
  event.preventDefault();
  stopTail();
  const controller = new AbortController();
  state.tail = controller;
  const pattern = $("tail-pattern").value.trim() || "#";
  $("tail-list").innerHTML = `<li class="muted">Watching <code>${esc(pattern)}</code>…</li>`;
  try {
    const response = await fetch("/api/tail?exchange=events&pattern=" + enc(pattern), {
      headers: { Authorization: "Basic " + state.auth }, signal: controller.signal,
    });
    if (!response.ok) throw new Error((await response.json()).reason);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (frame.startsWith("data: ")) addEvent(JSON.parse(frame.slice(6)));
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") toast(e.message);
  }
}

function addEvent(ev) {
  const list = $("tail-list");
  if (list.firstElementChild?.classList.contains("muted")) list.innerHTML = "";
  let body = ev.payload;
  try { body = JSON.stringify(JSON.parse(ev.payload), null, 2); } catch (_) { /* not JSON: shown as is */ }
  const li = document.createElement("li");
  li.innerHTML = `<span class="key">${esc(ev.routing_key)}</span> <span class="muted">${esc(new Date(ev.at).toLocaleTimeString())} · ${fmt(ev.size)} bytes</span><pre>${esc(body)}</pre>`;
  list.prepend(li);
  while (list.children.length > 200) list.lastElementChild.remove();
}

function stopTail() {
  if (state.tail) state.tail.abort();
  state.tail = null;
}

$("login").addEventListener("submit", signIn);
$("logout").addEventListener("click", () => signOut());
$("tabs").addEventListener("click", (e) => e.target.dataset.tab && show(e.target.dataset.tab));
$("queue-filter").addEventListener("input", () => queues());
$("messages-close").addEventListener("click", () => ($("messages").hidden = true));
$("dead-close").addEventListener("click", () => ($("dead").hidden = true));
$("tail-form").addEventListener("submit", startTail);
$("tail-stop").addEventListener("click", stopTail);
document.addEventListener("click", async (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  try {
    if (b.dataset.act) {
      const [vhost, name] = JSON.parse(b.dataset.id);
      await queueAction(b.dataset.act, vhost, name);
    } else if (b.dataset.dead) {
      const [vhost, name] = JSON.parse(b.dataset.id);
      await deadAction(b.dataset.dead, vhost, name);
    } else if (b.dataset.close && confirm("Close connection " + b.dataset.close + "?")) {
      await api("/connections/" + enc(b.dataset.close), { method: "DELETE", headers: { "X-Reason": "Closed from the Bloodbank dashboard" } });
      toast("Connection closed");
      await refresh();
    }
  } catch (err) {
    if (err.message !== "unauthorised") toast(err.message);
  }
});

if (state.auth) api("/whoami").then(start).catch(() => signOut());
