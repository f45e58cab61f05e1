// Live: each camera's newest analysed frame (annotated JPEG), fetched again as soon as the last
// one is shown (at most every FRAME_MS), and its figures and tracks from GET /api/v1/cameras.
"use strict";
(() => {
  const FRAME_MS = 250;
  const STATS_MS = 1000;
  const RETRY_MS = 1000;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const cards = new Map([...document.querySelectorAll("section.cam")].map((c) => [c.dataset.camera, c]));

  const dwell = (s) => {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  };

  async function frames(card) {
    const img = card.querySelector("img.live");
    const waiting = card.querySelector(".waiting");
    const stamp = card.querySelector(".stamp");
    let url = null;
    for (;;) {
      if (document.hidden) { await sleep(500); continue; }
      const started = performance.now();
      try {
        const response = await fetch(img.dataset.src, { credentials: "same-origin", cache: "no-cache" });
        if (!response.ok) {
          let detail = response.statusText;
          try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
          waiting.textContent = detail;
          waiting.hidden = false;
          await sleep(RETRY_MS);
          continue;
        }
        const index = response.headers.get("X-Frame-Index");
        if (index !== img.dataset.frameIndex) {
          const next = URL.createObjectURL(await response.blob());
          img.src = next;
          try { await img.decode(); } catch (e) { /* shown when it loads */ }
          if (url) URL.revokeObjectURL(url);
          url = next;
          img.dataset.frameIndex = index;
          img.dataset.shown = String(Number(img.dataset.shown || 0) + 1);
          waiting.hidden = true;
          const ts = response.headers.get("X-Frame-Ts");
          stamp.textContent = `frame ${index}${ts ? " · " + new Date(ts).toLocaleTimeString() : ""}`;
          stamp.hidden = false;
        }
      } catch (e) {
        console.warn(e);
        await sleep(RETRY_MS);
        continue;
      }
      await sleep(Math.max(0, FRAME_MS - (performance.now() - started)));
    }
  }

  function show(camera) {
    const card = cards.get(camera.id);
    if (!card) return;
    const set = (name, value) => { card.querySelector(`[data-f="${name}"]`).textContent = value; };
    set("fps", camera.fps === null ? "–" : camera.fps.toFixed(1));
    set("detect_ms", camera.detect_ms === null ? "–" : camera.detect_ms.toFixed(0));
    set("tracks", camera.tracks.length);
    card.querySelector("ul.zones").replaceChildren(...camera.zones.map((z) => sw.el("li", { "data-zone": z.id },
      sw.el("span", { class: "swatch area", style: `color: ${z.colour}; border-color: ${z.colour}` }),
      z.id, sw.el("span", { class: "kind" }, z.kind.replace(/_/g, " ")))));
    const body = card.querySelector("table.tracks tbody");
    body.replaceChildren(...camera.tracks.map((t) => sw.el("tr", {},
      sw.el("td", {}, t.id), sw.el("td", {}, t.subject),
      sw.el("td", { class: "num" }, dwell(t.dwell_s)), sw.el("td", {}, t.zones.join(", ") || "–"))));
    if (camera.tracks.length === 0) {
      body.append(sw.el("tr", {}, sw.el("td", { colspan: "4", class: "muted" }, "nothing tracked")));
    }
  }

  if (cards.size === 0) return;
  for (const card of cards.values()) frames(card);
  sw.every(STATS_MS, async () => { for (const camera of await sw.api("GET", "/api/v1/cameras")) show(camera); });
})();
