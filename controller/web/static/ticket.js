// A citizen's ticket page: status, people ahead and estimated wait, refreshed every 5 s.
"use strict";

const STATUS_TEXT = {
  waiting: "Menunggu dipanggil",
  called: "DIPANGGIL — silakan menuju loket",
  serving: "Sedang dilayani",
  done: "Selesai. Terima kasih!",
  skipped: "Terlewat: silakan hubungi petugas",
};

async function refresh() {
  const token = location.pathname.split("/").pop();
  const r = await fetch(`/api/tickets/${encodeURIComponent(token)}`, { cache: "no-store" });
  if (r.status === 404) {
    document.getElementById("status").textContent = "Tiket tidak ditemukan (mungkin dari hari lain).";
    return;
  }
  const t = await r.json();
  document.getElementById("label").textContent = t.ticket;
  document.getElementById("status").textContent = STATUS_TEXT[t.status] || t.status;
  let detail = "";
  if (t.status === "waiting") {
    detail = `Di depan Anda: ${t.ahead} orang`;
    if (t.wait_min !== null) detail += ` · perkiraan tunggu ${t.wait_min} menit`;
  } else if (t.counter) {
    detail = `Loket ${t.counter}`;
  }
  document.getElementById("detail").textContent = detail;
}

refresh().catch(() => {});
setInterval(() => refresh().catch(() => {}), 5000);
