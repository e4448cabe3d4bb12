// Minimal live page: health and each site's queue snapshot, refreshed every second.
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

refresh();
setInterval(refresh, 1000);
