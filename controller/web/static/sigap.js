// Live page: health and each site's queue snapshot, refreshed every second (public);
// after the web login (session cookie), the alerts and the devices (login only).
"use strict";

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  return { status: r.status, body: await r.json() };
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function renderQueue(site, q) {
  const box = el("div", { class: "site", "data-site": site.id }, el("h2", {}, site.name));
  const services = el("div", { class: "grid services" });
  for (const [code, s] of Object.entries(q.services)) {
    services.append(el("div", { class: "card service", "data-service": code },
      el("div", {}, `${code} · ${s.name}`),
      el("div", { class: "big waiting" }, String(s.waiting)),
      el("div", {}, `menunggu · terakhir ${s.last || "—"}`)));
  }
  const counters = el("div", { class: "grid counters" });
  for (const [id, c] of Object.entries(q.counters)) {
    counters.append(el("div", { class: "card counter" + (c.open ? "" : " paused"), "data-counter": id },
      el("div", {}, `Loket ${id}`),
      el("div", { class: "big serving" }, c.serving || "—")));
  }
  const calls = el("ol", { class: "calls" });
  for (const call of q.calls) calls.append(el("li", {}, `${call.ticket} → loket ${call.counter}`));
  box.append(el("h3", {}, "Layanan"), services, el("h3", {}, "Loket"), counters, el("h3", {}, "Panggilan terakhir"), calls);
  return box;
}

async function refresh() {
  try {
    const h = await getJSON("/api/health");
    const pill = document.getElementById("health");
    pill.textContent = h.status === 200 ? "sehat" : `gangguan: ${h.body.failing || "?"}`;
    pill.className = "pill " + (h.status === 200 ? "ok" : "bad");
    const sites = (await getJSON("/api/sites")).body.filter((s) => s.queue);
    const root = document.getElementById("sites");
    const boxes = [];
    for (const s of sites) {
      const q = await getJSON(`/api/queues/${encodeURIComponent(s.id)}`);
      if (q.status === 200) boxes.push(renderQueue(s, q.body));
    }
    root.replaceChildren(...boxes);
  } catch (e) {
    document.getElementById("health").textContent = "controller tidak terjangkau";
  }
}

// ---------------------------------------------------------------- web login
// The session itself is an HttpOnly cookie the page never sees; `session` holds who
// is logged in and the anti-CSRF value that ack/resolve must send (X-Sigap-CSRF).
let session = null;
let shown = { alerts: null, devices: null };

function showSession(s) {
  session = s;
  shown = { alerts: null, devices: null };
  document.getElementById("login").hidden = !!s;
  document.getElementById("ops").hidden = !s;
  document.getElementById("account").hidden = !s;
  document.getElementById("who").textContent = s ? `${s.user} (${s.role})` : "";
  if (!s) {
    document.querySelector("#alerts").replaceChildren();
    document.querySelector("#devices tbody").replaceChildren();
  }
}

async function checkSession() {
  const r = await fetch("/api/me", { cache: "no-store" });
  showSession(r.status === 200 ? await r.json() : null);
  if (session) await refreshOps();
}

async function login(ev) {
  ev.preventDefault();
  const form = ev.target;
  const err = document.getElementById("login-error");
  err.textContent = "";
  const r = await fetch("/api/login", { method: "POST", body: new URLSearchParams(new FormData(form)) });
  if (r.status === 200) {
    form.reset();
    showSession(await r.json());
    await refreshOps();
  } else if (r.status === 429) {
    err.textContent = `Terlalu banyak percobaan; coba lagi dalam ${r.headers.get("Retry-After") || "60"} detik.`;
  } else {
    err.textContent = "Nama pengguna atau kata sandi salah.";
  }
}

async function logout() {
  await fetch("/api/logout", { method: "POST" });
  showSession(null);
}

const mayAct = () => session && (session.role === "operator" || session.role === "admin");
const LEVEL_TEXT = { offline: "luring" };
const STATE_TEXT = { open: "terbuka", acknowledged: "ditanggapi", resolved: "selesai" };

function when(t) {
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString("id-ID");
}

async function alertAction(id, action) {
  const r = await fetch(`/api/alerts/${id}/${action}`, {
    method: "POST",
    headers: { "X-Sigap-CSRF": session.csrf },
  });
  if (r.status === 401) return showSession(null);
  await refreshOps();
}

function renderAlerts(list) {
  const items = list.map((a) => {
    const li = el("li", { class: a.state, "data-alert": String(a.id) },
      el("span", { class: "state" }, STATE_TEXT[a.state] || a.state),
      el("span", {}, `${a.sensor || a.kind} · ${LEVEL_TEXT[a.level] || a.level || a.kind} · sejak ${when(a.opened)}`),
      el("span", {}, a.acked_by ? `oleh ${a.acked_by}` : ""));
    if (mayAct()) {
      if (a.state === "open") {
        const b = el("button", { type: "button", class: "ack" }, "Tanggapi");
        b.addEventListener("click", () => alertAction(a.id, "ack"));
        li.append(b);
      }
      const b = el("button", { type: "button", class: "resolve" }, "Selesaikan");
      b.addEventListener("click", () => alertAction(a.id, "resolve"));
      li.append(b);
    }
    return li;
  });
  if (!items.length) items.push(el("li", { class: "none" }, "Tidak ada peringatan aktif."));
  document.getElementById("alerts").replaceChildren(...items);
}

function renderDevices(list) {
  document.querySelector("#devices tbody").replaceChildren(...list.map((d) => {
    const status = d.online ? "daring" : d.sleeping ? "tidur" : "luring";
    return el("tr", { "data-device": d.id, class: d.known ? "" : "unknown" },
      el("td", {}, d.id), el("td", {}, d.role || "tak dikenal"), el("td", {}, d.site || "—"),
      el("td", { class: "status " + (d.online ? "online" : "offline") }, status),
      el("td", {}, d.last_seen || "—"), el("td", {}, d.fw || "—"), el("td", {}, d.rssi == null ? "—" : String(d.rssi)));
  }));
}

// Re-render only what changed, so a button is not replaced under the pointer.
async function refreshOps() {
  if (!session) return;
  for (const [key, url, render] of [["alerts", "/api/alerts?state=active", renderAlerts],
                                    ["devices", "/api/devices", renderDevices]]) {
    const r = await fetch(url, { cache: "no-store" });
    if (r.status === 401) return showSession(null);  // the session expired
    if (r.status !== 200) continue;
    const text = await r.text();
    if (text !== shown[key]) {
      shown[key] = text;
      render(JSON.parse(text));
    }
  }
}

document.getElementById("login").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", logout);

refresh();
setInterval(refresh, 1000);
checkSession().catch(() => showSession(null));
setInterval(() => refreshOps().catch(() => {}), 2000);
