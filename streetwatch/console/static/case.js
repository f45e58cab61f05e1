// streetwatch console, one case: the sensor series as a chart and the GPS track over the zones,
// drawn here as inline SVG from the package's data/ files (no chart library, no map tiles).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f6feb", "#cf222e", "#1a7f37", "#8250df", "#b7791f", "#0a7ea4"];

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function timeLabel(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
}

function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(t);
  return out;
}

// The geomagnetic field (magnitude bold, x/y/z faint) of each sensor over time, occupancy as
// shaded bands, and the violation's window marked.
function drawSeries(target, data, window) {
  const W = 900, H = 280, L = 56, R = 16, T = 16, B = 40;
  const series = Object.entries(data.series || {});
  const all = [];
  for (const [, s] of series) {
    for (const p of s.field_ut || []) all.push(Date.parse(p.ts));
    for (const p of s.occupancy || []) all.push(Date.parse(p.ts));
  }
  if (!all.length) return false;
  let t0 = Math.min(...all), t1 = Math.max(...all);
  const marks = [];
  if (window) {
    for (const [name, key] of [["start", "start"], ["opened", "opened_at"], ["end", "end"]]) {
      const at = window[key] && Date.parse(window[key].utc);
      if (at) { marks.push([name, at]); t0 = Math.min(t0, at); t1 = Math.max(t1, at); }
    }
  }
  if (t1 === t0) t1 = t0 + 1000;
  const values = [];
  for (const [, s] of series) {
    for (const p of s.field_ut || []) values.push(p.magnitude, p.x, p.y, p.z);
  }
  let v0 = values.length ? Math.min(...values) : 0, v1 = values.length ? Math.max(...values) : 1;
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const pad = (v1 - v0) * 0.08; v0 -= pad; v1 += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "sensor series" });
  root.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#d9dde3" }));
  for (const v of ticks(v0, v1, 5)) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eef0f3" }));
    root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7280" }, v.toFixed(0)));
  }
  for (const t of ticks(t0 / 1000, t1 / 1000, 6)) {
    root.append(svg("text", { x: x(t * 1000), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#6b7280" }, timeLabel(t * 1000)));
  }
  root.append(svg("text", { x: 12, y: T + 10, "font-size": 11, fill: "#6b7280" }, "µT"));
  const legend = [];
  series.forEach(([device, s], i) => {
    const colour = COLOURS[i % COLOURS.length];
    // occupancy: shaded from each "occupied" to the next state
    const occ = (s.occupancy || []).map((p) => [Date.parse(p.since || p.ts), p.occupied]).sort((a, b) => a[0] - b[0]);
    occ.forEach(([at, occupied], k) => {
      if (!occupied) return;
      const until = k + 1 < occ.length ? occ[k + 1][0] : t1;
      root.append(svg("rect", { class: "occupied", x: x(at), y: T, width: Math.max(1, x(until) - x(at)), height: H - T - B, fill: colour, opacity: 0.08 }));
    });
    const field = (s.field_ut || []).map((p) => [Date.parse(p.ts), p]).sort((a, b) => a[0] - b[0]);
    for (const [axis, width, opacity] of [["x", 1, 0.35], ["y", 1, 0.35], ["z", 1, 0.35], ["magnitude", 2, 1]]) {
      if (!field.length) break;
      const d = field.map(([t, p], k) => `${k ? "L" : "M"}${x(t).toFixed(1)},${y(p[axis]).toFixed(1)}`).join("");
      root.append(svg("path", { class: `series ${axis}`, d, fill: "none", stroke: colour, "stroke-width": width, opacity, "stroke-dasharray": axis === "magnitude" ? "" : "3 2" }));
    }
    legend.push(`${device}: |B| (solid), x/y/z (dashed), occupied (shaded)`);
  });
  for (const [name, at] of marks) {
    root.append(svg("line", { x1: x(at), x2: x(at), y1: T, y2: H - B, stroke: "#cf222e", "stroke-dasharray": "4 3" }));
    root.append(svg("text", { x: x(at) + 3, y: T + 12, "font-size": 11, fill: "#cf222e" }, name));
  }
  target.replaceChildren(root, sw.el("div", { class: "legend" }, legend.join(" · ")));
  return true;
}

// Lon/lat on an equirectangular plot (x scaled by cos(latitude): metres look square).
function drawTrack(target, track, geo, location) {
  const W = 900, H = 520, P = 24;
  const lines = [], points = [];
  for (const f of track.features || []) {
    if (f.geometry.type === "LineString") lines.push(f);
    else if (f.geometry.type === "Point") points.push(f);
  }
  const coords = [];
  for (const f of lines) coords.push(...f.geometry.coordinates);
  for (const f of points) coords.push(f.geometry.coordinates);
  if (!coords.length) return false;
  const shapes = [...(geo.zones || []).map((z) => z.polygon), ...(geo.routes || []).map((r) => r.line)];
  const extent = [...coords];
  const near = (p) => coords.some((c) => Math.abs(c[0] - p[0]) < 0.02 && Math.abs(c[1] - p[1]) < 0.02);
  for (const shape of shapes) if (shape.some(near)) extent.push(...shape);
  if (location && location.wgs84) extent.push([location.wgs84.lon, location.wgs84.lat]);
  let [x0, x1] = [Math.min(...extent.map((c) => c[0])), Math.max(...extent.map((c) => c[0]))];
  let [y0, y1] = [Math.min(...extent.map((c) => c[1])), Math.max(...extent.map((c) => c[1]))];
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const spanX = Math.max((x1 - x0) * k, 1e-5), spanY = Math.max(y1 - y0, 1e-5);
  const scale = Math.min((W - 2 * P) / spanX, (H - 2 * P) / spanY);
  const ox = (W - spanX * scale) / 2, oy = (H - spanY * scale) / 2;
  const px = (c) => [ox + (c[0] - x0) * k * scale, H - oy - (c[1] - y0) * scale];
  const path = (cs, close) => cs.map((c, i) => `${i ? "L" : "M"}${px(c)[0].toFixed(1)},${px(c)[1].toFixed(1)}`).join("") + (close ? "Z" : "");
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "GPS track" });
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fafbfc" }));
  for (const z of geo.zones || []) {
    if (!z.polygon.some(near)) continue;
    const colour = z.kind === "restricted" ? "#cf222e" : z.kind === "shopfront" ? "#b7791f" : "#8250df";
    root.append(svg("path", { class: "zone", d: path(z.polygon, true), fill: colour, "fill-opacity": 0.12, stroke: colour, "stroke-width": 1.5 }));
    const [cx, cy] = px(z.polygon[0]);
    root.append(svg("text", { x: cx + 4, y: cy - 4, "font-size": 11, fill: colour }, `${z.id} (${z.kind})`));
  }
  for (const r of geo.routes || []) {
    const metres = Math.max(1, (r.buffer_m / 111320) * scale * 2);
    root.append(svg("path", { class: "route", d: path(r.line, false), fill: "none", stroke: "#1a7f37", "stroke-opacity": 0.18, "stroke-width": metres, "stroke-linecap": "round", "stroke-linejoin": "round" }));
    root.append(svg("path", { d: path(r.line, false), fill: "none", stroke: "#1a7f37", "stroke-dasharray": "6 4" }));
  }
  lines.forEach((f, i) => {
    const colour = COLOURS[i % COLOURS.length];
    root.append(svg("path", { class: "track", d: path(f.geometry.coordinates, false), fill: "none", stroke: colour, "stroke-width": 2.5 }));
    const cs = f.geometry.coordinates;
    const [sx, sy] = px(cs[0]), [ex, ey] = px(cs[cs.length - 1]);
    root.append(svg("circle", { cx: sx, cy: sy, r: 5, fill: "#fff", stroke: colour, "stroke-width": 2 }, svg("title", {}, "start")));
    root.append(svg("circle", { cx: ex, cy: ey, r: 5, fill: colour }, svg("title", {}, "end")));
    root.append(svg("text", { x: ex + 7, y: ey + 4, "font-size": 12, fill: colour }, f.properties.device_id));
  });
  for (const f of points) {
    const [cx, cy] = px(f.geometry.coordinates);
    const when = f.properties.ts && f.properties.ts.utc ? timeLabel(Date.parse(f.properties.ts.utc)) : "";
    const speed = f.properties.speed_kmh !== undefined ? ` · ${f.properties.speed_kmh} km/h` : "";
    root.append(svg("circle", { class: "fix", cx, cy, r: 2, fill: "#1d2330", opacity: 0.5 }, svg("title", {}, `${f.properties.device_id} ${when}${speed}`)));
  }
  if (location && location.wgs84) {
    const [lx, ly] = px([location.wgs84.lon, location.wgs84.lat]);
    root.append(svg("path", { d: `M${lx - 7},${ly - 7}L${lx + 7},${ly + 7}M${lx - 7},${ly + 7}L${lx + 7},${ly - 7}`, stroke: "#cf222e", "stroke-width": 3 }, svg("title", {}, "where the violation was")));
  }
  const metres = Math.pow(10, Math.floor(Math.log10((W / 4) / scale * 111320)));
  const bar = (metres / 111320) * scale;
  root.append(svg("line", { x1: P, x2: P + bar, y1: H - P / 2, y2: H - P / 2, stroke: "#1d2330", "stroke-width": 2 }));
  root.append(svg("text", { x: P + bar + 6, y: H - P / 2 + 4, "font-size": 11, fill: "#1d2330" }, `${metres} m`));
  target.replaceChildren(root, sw.el("div", { class: "legend" }, "WGS-84 · track (solid; ○ start, ● end) · zones and route corridors from the site's devices.yaml · ✕ the violation"));
  return true;
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const node of document.querySelectorAll("time[datetime]")) {
    const when = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      node.title = node.getAttribute("datetime");
      node.textContent = when.toLocaleString(undefined, { hour12: false });
    }
  }
  const holder = document.getElementById("case-data");
  if (!holder) return;
  const info = JSON.parse(holder.textContent);
  const jobs = [];
  if (info.data["sensor_series.json"]) {
    jobs.push(getJSON(info.data["sensor_series.json"]).then((data) => {
      if (drawSeries(document.getElementById("series-chart"), data, info.time_window)) {
        document.getElementById("series").hidden = false;
      }
    }));
  }
  if (info.data["gps_track.geojson"]) {
    jobs.push(getJSON(info.data["gps_track.geojson"]).then((track) => {
      if (drawTrack(document.getElementById("track-plot"), track, info.geo, info.location)) {
        document.getElementById("track").hidden = false;
      }
    }));
  }
  for (const result of await Promise.allSettled(jobs)) {
    if (result.status === "rejected") console.warn(result.reason);
  }
  document.body.dataset.chartsDrawn = "true";
});

// ---- decisions ----
// The decisions panel: each button posts its decision to the case's events endpoint with a
// fresh Idempotency-Key (kept for a retry after a network error, so a decision that did reach
// the box is not applied twice), then reloads the page to show the new state and timeline.
function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // randomUUID needs a secure context; plain http may not be one
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setupDecisions() {
  const panel = document.getElementById("decisions");
  if (!panel) return;
  const error = document.getElementById("decision-error");
  let key = newKey();
  for (const button of panel.querySelectorAll("button.decision")) {
    button.addEventListener("click", async () => {
      const event = button.dataset.event;
      const body = { event };
      const reason = document.getElementById("decision-reason").value.trim();
      const note = document.getElementById("decision-note").value.trim();
      if (reason) body.reason = reason;
      if (note) body.note = note;
      if (event === "notified") body.how = document.getElementById("decision-how").value;
      if (event === "rejected" && !reason) {
        error.textContent = "say why it is rejected (reason)";
        return;
      }
      error.textContent = "";
      for (const b of panel.querySelectorAll("button.decision")) b.disabled = true;
      let response;
      try {
        response = await fetch(`/api/v1/cases/${encodeURIComponent(panel.dataset.case)}/events`, {
          method: "POST",
          credentials: "same-origin",
          headers: {
            "Content-Type": "application/json",
            "X-CSRF-Token": sw.csrf(),
            "Idempotency-Key": key,
          },
          body: JSON.stringify(body),
        });
      } catch (e) {
        error.textContent = `not sent (${e.message}); try again`;
        for (const b of panel.querySelectorAll("button.decision")) b.disabled = false;
        return;
      }
      key = newKey();
      if (response.ok) {
        location.reload();
        return;
      }
      let detail = response.statusText;
      try {
        const data = await response.json();
        detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      } catch (e) { /* not JSON */ }
      error.textContent = `${response.status}: ${detail}`;
      for (const b of panel.querySelectorAll("button.decision")) b.disabled = false;
    });
  }
}

document.addEventListener("DOMContentLoaded", setupDecisions);
