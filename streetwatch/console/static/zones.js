// streetwatch console: the zone editor. A camera's zones are drawn on its latest frame (pixel
// polygons); GPS and drone zones on a plot of their coordinates ([lon, lat]), with the bays,
// shop frontages and routes for reference, over map tiles when the site names a tile server.
"use strict";
(() => {
  const KIND_COLOURS = {
    shopfront: "#f59e0b", no_parking: "#ef4444", fire_lane: "#d946ef",
    sidewalk: "#3b82f6", restricted: "#8b5cf6", geofence: "#10b981",
  };
  const HANDLE = 6;        // corner handle radius, canvas pixels on screen
  const NEAR = 9;          // how close (screen pixels) a click must be to grab a corner
  const MAP_W = 960, MAP_H = 640;

  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("zones-data").textContent);
  const canvas = $("zone-canvas");
  const g = canvas.getContext("2d");
  const editable = data.can_edit;

  const state = {
    target: null,       // "camera:<id>" or "map"
    zones: [],          // {id, kind, merchant, polygon, owner}
    version: null,      // the devices.yaml version the editor loaded
    selected: -1,
    drawing: null,      // corners of the polygon being drawn
    drag: null,         // {zone, corner}
    dirty: new Set(),   // devices whose zones changed
    frame: null,        // camera: {image, width, height}
    geo: null,          // map: {bounds, points, shapes, devices, tiles}
    ready: false,
    saved: 0,
    loads: 0,
    keepStatus: false,  // the next frame keeps the status line (a save's outcome)
  };
  window.zoneEditor = state;

  // ---- coordinates -------------------------------------------------------------------------

  function screenScale() {
    const rect = canvas.getBoundingClientRect();
    return rect.width ? canvas.width / rect.width : 1;
  }
  function eventPoint(event) {
    const rect = canvas.getBoundingClientRect();
    const s = canvas.width / rect.width;
    return [(event.clientX - rect.left) * s, (event.clientY - rect.top) * s];
  }
  // zone coordinates (pixels or [lon, lat]) <-> canvas pixels
  function toCanvas(p) {
    if (state.target !== "map") return p;
    const m = mercator(p[0], p[1]);
    const b = state.geo.view;
    return [(m[0] - b.x0) * b.scale, (m[1] - b.y0) * b.scale];
  }
  function fromCanvas(c) {
    if (state.target !== "map") {
      const x = Math.round(Math.min(Math.max(c[0], 0), canvas.width));
      const y = Math.round(Math.min(Math.max(c[1], 0), canvas.height));
      return [x, y];
    }
    const b = state.geo.view;
    const [lon, lat] = unmercator(c[0] / b.scale + b.x0, c[1] / b.scale + b.y0);
    return [Math.round(lon * 1e7) / 1e7, Math.round(lat * 1e7) / 1e7];
  }
  function mercator(lon, lat) {   // web mercator, world = [0, 1] x [0, 1]
    const s = Math.sin((lat * Math.PI) / 180);
    return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
  }
  function unmercator(x, y) {
    const lon = x * 360 - 180;
    const lat = (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI;
    return [lon, lat];
  }
  function fitView(points) {
    const ms = points.map((p) => mercator(p[0], p[1]));
    let x0 = Math.min(...ms.map((m) => m[0])), x1 = Math.max(...ms.map((m) => m[0]));
    let y0 = Math.min(...ms.map((m) => m[1])), y1 = Math.max(...ms.map((m) => m[1]));
    const span = Math.max(x1 - x0, (y1 - y0) * (MAP_W / MAP_H), 2e-7);
    const scale = (MAP_W / span) / 1.15;
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    return { scale, x0: cx - MAP_W / 2 / scale, y0: cy - MAP_H / 2 / scale };
  }

  // ---- loading -----------------------------------------------------------------------------

  async function load(target) {
    const seq = ++state.loads;  // a later load (the operator switched again) wins
    state.target = target;
    state.geo = null;
    state.selected = -1;
    state.drawing = null;
    state.dirty.clear();
    state.ready = false;
    showProblems([]);
    status("loading …");
    if (target === "map") {
      const body = await sw.api("GET", "/api/v1/geozones");
      if (seq !== state.loads) return;
      state.version = body.version;
      state.zones = [];
      for (const d of body.devices) {
        for (const z of d.zones) state.zones.push({ ...z, owner: d.device_id });
      }
      const all = [];
      state.zones.forEach((z) => all.push(...z.polygon));
      body.points.forEach((p) => all.push([p.lon, p.lat]));
      body.shapes.forEach((s) => all.push(...s.points));
      if (!all.length) all.push([121.4737, 31.2304]);
      state.geo = { ...body, view: fitView(all), tileCache: {} };
      canvas.width = MAP_W;
      canvas.height = MAP_H;
      const owner = $("zone-owner");
      owner.replaceChildren(...body.devices.map((d) => sw.el("option", { value: d.device_id },
        `${d.device_id}${d.name ? " · " + d.name : ""} (${d.kind})`)));
      $("zone-owner-row").hidden = false;
      $("zone-legend").textContent = body.devices.length
        ? "Grey: shop frontages and approved routes; dots: bays and fixed devices (reference only)."
        : "No GPS or drone devices on this site: nothing to draw here.";
      state.ready = true;
      status(body.tiles ? "map tiles from the site's tile server" : "plain coordinate plot");
      redraw();
      return;
    }
    const id = target.slice("camera:".length);
    const body = await sw.api("GET", `/api/v1/cameras/${encodeURIComponent(id)}/zones`);
    if (seq !== state.loads) return;
    state.version = body.version;
    state.zones = body.zones.map((z) => ({ ...z, owner: id }));
    $("zone-owner-row").hidden = true;
    const live = body.live_zones;
    $("zone-legend").textContent = live === null
      ? "This camera does not run on this box: zones are saved to devices.yaml only."
      : `The running camera uses: ${live.join(", ") || "no zones"}.`;
    const size = body.frame || guessSize(state.zones);
    canvas.width = size.width;
    canvas.height = size.height;
    state.frame = null;
    state.ready = true;
    redraw();
    loadFrame(id, body.frame !== null);
  }

  function guessSize(zones) {
    let w = 640, h = 360;
    zones.forEach((z) => z.polygon.forEach(([x, y]) => { w = Math.max(w, x); h = Math.max(h, y); }));
    return { width: Math.ceil(w), height: Math.ceil(h) };
  }

  function loadFrame(id, expected) {
    const target = state.target;
    const image = new Image();
    image.onload = () => {
      if (state.target !== target) return;
      if (canvas.width !== image.naturalWidth || canvas.height !== image.naturalHeight) {
        canvas.width = image.naturalWidth;
        canvas.height = image.naturalHeight;
      }
      state.frame = image;
      if (!state.keepStatus) status(`latest frame ${new Date().toLocaleTimeString()}`);
      state.keepStatus = false;
      redraw();
    };
    image.onerror = () => {
      if (state.target !== target) return;
      status(expected ? "frame not loaded; retrying …" : "waiting for the camera's first frame …");
      setTimeout(() => loadFrame(id, expected), 2000);
    };
    image.src = `/api/v1/cameras/${encodeURIComponent(id)}/frame.jpg?t=${Date.now()}`;
  }

  // ---- drawing -----------------------------------------------------------------------------

  function redraw() {
    if (!state.ready) return;
    const s = screenScale();
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (state.target === "map") drawMap(s);
    else if (state.frame) g.drawImage(state.frame, 0, 0);
    else {
      g.fillStyle = "#d1d5db";
      g.fillRect(0, 0, canvas.width, canvas.height);
    }
    state.zones.forEach((z, i) => drawZone(z, i === state.selected, s));
    if (state.drawing) drawOpen(state.drawing, s);
    renderList();
  }

  function drawZone(zone, selected, s) {
    const colour = KIND_COLOURS[zone.kind] || "#6b7280";
    const pts = zone.polygon.map(toCanvas);
    if (pts.length < 2) return;
    g.beginPath();
    pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
    g.closePath();
    g.fillStyle = colour + (selected ? "55" : "33");
    g.fill();
    g.lineWidth = (selected ? 3 : 2) * s;
    g.strokeStyle = colour;
    g.stroke();
    const [lx, ly] = labelAt(pts);
    g.font = `${Math.round(13 * s)}px system-ui, sans-serif`;
    const text = zone.id;
    const w = g.measureText(text).width + 8 * s;
    g.fillStyle = "rgba(17, 24, 39, 0.75)";
    g.fillRect(lx - w / 2, ly - 10 * s, w, 20 * s);
    g.fillStyle = "#fff";
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(text, lx, ly);
    if (selected && editable) pts.forEach(([x, y]) => handle(x, y, colour, s));
  }

  function labelAt(pts) {
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    return [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2];
  }

  function handle(x, y, colour, s) {
    g.beginPath();
    g.arc(x, y, HANDLE * s, 0, 2 * Math.PI);
    g.fillStyle = "#fff";
    g.fill();
    g.lineWidth = 2 * s;
    g.strokeStyle = colour;
    g.stroke();
  }

  function drawOpen(points, s) {
    const pts = points.map(toCanvas);
    g.beginPath();
    pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
    g.lineWidth = 2 * s;
    g.setLineDash([6 * s, 4 * s]);
    g.strokeStyle = "#facc15";
    g.stroke();
    g.setLineDash([]);
    pts.forEach(([x, y]) => handle(x, y, "#facc15", s));
  }

  function drawMap(s) {
    const labels = [];  // a label that would overlap one already drawn is left out (zoom in)
    const label = (text, x, y) => {
      const w = g.measureText(text).width, h = 12 * s;
      const box = [x, y - h / 2, x + w, y + h / 2];
      if (labels.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) return;
      labels.push(box);
      g.textBaseline = "middle";
      g.fillText(text, x, y);
    };
    g.fillStyle = "#f8fafc";
    g.fillRect(0, 0, canvas.width, canvas.height);
    if (state.geo.tiles) drawTiles();
    drawGrid(s);
    for (const shape of state.geo.shapes) {
      const pts = shape.points.map(toCanvas);
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      if (shape.what === "shopfront") {
        g.closePath();
        g.fillStyle = "rgba(107, 114, 128, 0.15)";
        g.fill();
      }
      g.setLineDash(shape.what === "route" ? [8 * s, 5 * s] : []);
      g.lineWidth = 1.5 * s;
      g.strokeStyle = "#6b7280";
      g.stroke();
      g.setLineDash([]);
      const [x, y] = pts[0];
      g.font = `${Math.round(11 * s)}px system-ui, sans-serif`;
      g.fillStyle = "#4b5563";
      g.textAlign = "left";
      label(shape.label, x + 3 * s, y - 9 * s);
    }
    for (const point of state.geo.points) {
      const [x, y] = toCanvas([point.lon, point.lat]);
      g.beginPath();
      g.arc(x, y, 4 * s, 0, 2 * Math.PI);
      g.fillStyle = point.what === "bay" ? "#d946ef" : "#111827";
      g.fill();
      g.font = `${Math.round(11 * s)}px system-ui, sans-serif`;
      g.fillStyle = "#111827";
      g.textAlign = "left";
      label(point.label, x + 6 * s, y);
    }
  }

  function drawGrid(s) {
    const nw = fromCanvas([0, 0]), se = fromCanvas([canvas.width, canvas.height]);
    const span = Math.max(se[0] - nw[0], nw[1] - se[1]);
    const step = Math.pow(10, Math.floor(Math.log10(span / 4)));
    g.lineWidth = 1;
    g.strokeStyle = "rgba(148, 163, 184, 0.35)";
    g.font = `${Math.round(10 * s)}px ui-monospace, monospace`;
    g.fillStyle = "#94a3b8";
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    for (let lon = Math.ceil(nw[0] / step) * step; lon < se[0]; lon += step) {
      const [x] = toCanvas([lon, nw[1]]);
      g.beginPath(); g.moveTo(x, 0); g.lineTo(x, canvas.height); g.stroke();
      g.textAlign = "left"; g.textBaseline = "bottom";
      g.fillText(lon.toFixed(digits), x + 2, canvas.height - 2);
    }
    for (let lat = Math.ceil(se[1] / step) * step; lat < nw[1]; lat += step) {
      const [, y] = toCanvas([nw[0], lat]);
      g.beginPath(); g.moveTo(0, y); g.lineTo(canvas.width, y); g.stroke();
      g.textAlign = "left"; g.textBaseline = "bottom";
      g.fillText(lat.toFixed(digits), 2, y - 2);
    }
  }

  function drawTiles() {
    const v = state.geo.view;
    const z = Math.max(0, Math.min(19, Math.floor(Math.log2((v.scale * 1) / 256))));
    const n = 2 ** z, px = v.scale / n;  // canvas pixels per tile
    const tx0 = Math.floor(v.x0 * n), ty0 = Math.floor(v.y0 * n);
    const tx1 = Math.floor((v.x0 + canvas.width / v.scale) * n);
    const ty1 = Math.floor((v.y0 + canvas.height / v.scale) * n);
    for (let tx = tx0; tx <= tx1; tx++) {
      for (let ty = ty0; ty <= ty1; ty++) {
        if (tx < 0 || ty < 0 || tx >= n || ty >= n) continue;
        const url = state.geo.tiles.replace("{z}", z).replace("{x}", tx).replace("{y}", ty)
          .replace("{s}", "a");
        let tile = state.geo.tileCache[url];
        if (!tile) {
          tile = state.geo.tileCache[url] = new Image();
          tile.onload = redraw;
          tile.src = url;
        }
        if (tile.complete && tile.naturalWidth) {
          g.drawImage(tile, (tx / n - v.x0) * v.scale, (ty / n - v.y0) * v.scale, px, px);
        }
      }
    }
  }

  // ---- the list and the form ---------------------------------------------------------------

  function renderList() {
    const list = $("zone-list");
    list.replaceChildren(...state.zones.map((z, i) => sw.el("li",
      { class: i === state.selected ? "selected" : "", "data-zone": z.id, onclick: () => select(i) },
      sw.el("span", { class: "swatch", style: `background:${KIND_COLOURS[z.kind] || "#6b7280"}` }),
      z.id, state.target === "map" ? sw.el("span", { class: "muted" }, z.owner) : null,
      sw.el("span", { class: "kind" }, z.kind))));
    if (!state.zones.length) list.append(sw.el("li", { class: "muted" }, "no zones"));
    const zone = state.zones[state.selected];
    $("zone-form").hidden = !zone;
    if (zone) {
      const active = document.activeElement;
      if (active !== $("zone-id")) $("zone-id").value = zone.id;
      $("zone-kind").value = zone.kind;
      $("zone-merchant").value = zone.merchant || "";
      if (state.target === "map") $("zone-owner").value = zone.owner;
    }
    for (const id of ["zone-id", "zone-kind", "zone-merchant", "zone-owner"]) {
      $(id).disabled = !editable || (id === "zone-owner" && zone && !zone.fresh);
    }
    if (editable) {
      $("zone-delete").disabled = !zone;
      $("zone-close").disabled = !(state.drawing && state.drawing.length >= 3);
      $("zone-save").disabled = !state.dirty.size;
    }
  }

  function select(index) {
    state.selected = index;
    redraw();
  }

  function changed(zone) {
    state.dirty.add(zone.owner);
    showProblems([]);
    status("unsaved changes");
  }

  function edit(field, value) {
    const zone = state.zones[state.selected];
    if (!zone) return;
    if (field === "owner") {
      state.dirty.add(zone.owner);
      zone.owner = value;
    } else {
      zone[field] = value || (field === "merchant" ? null : value);
    }
    changed(zone);
    redraw();
  }

  // ---- mouse -------------------------------------------------------------------------------

  function cornerAt(c) {
    const zone = state.zones[state.selected];
    if (!zone) return -1;
    const r = NEAR * screenScale();
    return zone.polygon.findIndex((p) => {
      const [x, y] = toCanvas(p);
      return Math.hypot(x - c[0], y - c[1]) <= r;
    });
  }

  function zoneAt(c) {
    for (let i = state.zones.length - 1; i >= 0; i--) {
      if (inside(c, state.zones[i].polygon.map(toCanvas))) return i;
    }
    return -1;
  }

  function inside([x, y], pts) {
    let hit = false;
    for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
      const [xi, yi] = pts[i], [xj, yj] = pts[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  function startDrawing() {
    state.selected = -1;
    state.drawing = [];
    status("drawing: click the corners");
    redraw();
  }

  function addCorner(c) {
    const pts = state.drawing;
    const r = NEAR * screenScale();
    if (pts.length) {
      const last = toCanvas(pts[pts.length - 1]);
      if (Math.hypot(last[0] - c[0], last[1] - c[1]) <= r / 2) return;  // a double-click's second click
      const first = toCanvas(pts[0]);
      if (pts.length >= 3 && Math.hypot(first[0] - c[0], first[1] - c[1]) <= r) {
        finishDrawing();
        return;
      }
    }
    pts.push(fromCanvas(c));
    redraw();
  }

  function finishDrawing() {
    const pts = state.drawing;
    state.drawing = null;
    if (!pts || pts.length < 3) {
      status("a zone needs three corners or more");
      redraw();
      return;
    }
    const taken = new Set(state.zones.map((z) => z.id));
    let n = state.zones.length + 1;
    while (taken.has(`zone-${n}`)) n++;
    const owner = state.target === "map"
      ? $("zone-owner").value || (state.geo.devices[0] || {}).device_id
      : state.target.slice("camera:".length);
    const kind = state.target === "map" ? "geofence" : "no_parking";
    const zone = { id: `zone-${n}`, kind, merchant: null, polygon: pts, owner, fresh: true };
    state.zones.push(zone);
    state.selected = state.zones.length - 1;
    changed(zone);
    redraw();
    $("zone-id").focus();
    $("zone-id").select();
  }

  canvas.addEventListener("mousedown", (event) => {
    if (!state.ready || event.button !== 0) return;
    const c = eventPoint(event);
    if (!editable) {
      select(zoneAt(c));
      return;
    }
    if (state.drawing) {
      addCorner(c);
      return;
    }
    const corner = cornerAt(c);
    if (corner >= 0) {
      state.drag = { zone: state.selected, corner };
      return;
    }
    const hit = zoneAt(c);
    if (hit >= 0) {
      select(hit);
      return;
    }
    startDrawing();
    addCorner(c);
  });
  canvas.addEventListener("mousemove", (event) => {
    if (!state.drag) return;
    const zone = state.zones[state.drag.zone];
    zone.polygon[state.drag.corner] = fromCanvas(eventPoint(event));
    changed(zone);
    redraw();
  });
  window.addEventListener("mouseup", () => { state.drag = null; });
  canvas.addEventListener("dblclick", (event) => {
    event.preventDefault();
    if (state.drawing) finishDrawing();
  });
  canvas.addEventListener("wheel", (event) => {
    if (state.target !== "map" || !state.ready) return;
    event.preventDefault();
    const c = eventPoint(event);
    const at = fromCanvas(c);
    const v = state.geo.view;
    v.scale *= event.deltaY < 0 ? 1.25 : 0.8;
    const m = mercator(at[0], at[1]);
    v.x0 = m[0] - c[0] / v.scale;
    v.y0 = m[1] - c[1] / v.scale;
    redraw();
  }, { passive: false });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "Escape" && state.drawing) {
      state.drawing = null;
      status("drawing cancelled");
      redraw();
    } else if (event.key === "Enter" && state.drawing) {
      finishDrawing();
    } else if ((event.key === "Delete" || event.key === "Backspace") && !typing && editable) {
      removeSelected();
    }
  });
  window.addEventListener("resize", redraw);
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty.size) event.preventDefault();
  });

  function removeSelected() {
    const zone = state.zones[state.selected];
    if (!zone) return;
    state.zones.splice(state.selected, 1);
    state.selected = -1;
    changed(zone);
    redraw();
  }

  // ---- saving ------------------------------------------------------------------------------

  async function save() {
    const button = $("zone-save");
    button.disabled = true;
    showProblems([]);
    status("checking and saving …");
    const owners = [...state.dirty];
    try {
      for (const owner of owners) {
        const zones = state.zones.filter((z) => z.owner === owner).map((z) => {
          const out = { id: z.id, kind: z.kind, polygon: z.polygon };
          if (z.merchant) out.merchant = z.merchant;
          return out;
        });
        const url = state.target === "map"
          ? `/api/v1/geozones/${encodeURIComponent(owner)}`
          : `/api/v1/cameras/${encodeURIComponent(owner)}/zones`;
        const saved = await sw.api("PUT", url, { zones, version: state.version });
        state.version = saved.version;
        state.dirty.delete(owner);
        state.saved += 1;
        status(saved.applied ? "saved · applied to the running box" : "saved to devices.yaml");
      }
      state.zones.forEach((z) => delete z.fresh);
      const note = $("zone-status").textContent;
      if (state.target !== "map") {
        state.keepStatus = true;
        await load(state.target);
      }
      status(note);
    } catch (error) {
      const problems = (error.data && error.data.problems) || [];
      if (error.status === 409) {
        showProblems([error.message], true);
      } else {
        showProblems(problems.length ? problems : [error.message]);
      }
      status(`not saved (${error.status || "error"})`);
      button.disabled = false;
    }
    renderList();
  }

  function showProblems(problems, reload, heading) {
    const box = $("zone-problems");
    box.replaceChildren();
    if (!problems.length) return;
    box.append(sw.el("strong", {},
      heading || (reload ? "Not saved:" : "Not saved — devices.yaml would have these problems:")));
    box.append(sw.el("ul", {}, ...problems.map((p) => sw.el("li", {}, p))));
    if (reload) {
      box.append(sw.el("button", { type: "button", onclick: () => load(state.target) }, "Reload"));
    }
  }

  function loadFailed(error) {
    showProblems([error.message], false, "Could not load the zones:");
    status("not loaded");
  }

  function status(text) {
    $("zone-status").textContent = text;
  }

  // ---- wiring ------------------------------------------------------------------------------

  const target = $("zone-target");
  const fromHash = () => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    return [...target.options].some((o) => o.value === wanted) ? wanted : null;
  };
  const open = (value) => {
    if (value === state.target) return;
    if (state.dirty.size && !confirm("Discard the unsaved changes?")) {
      target.value = state.target;
      return;
    }
    target.value = value;
    history.replaceState(null, "", `#${value}`);
    load(value).catch(loadFailed);
  };
  target.value = fromHash() || target.value;
  target.addEventListener("change", () => open(target.value));
  window.addEventListener("hashchange", () => { if (fromHash()) open(fromHash()); });
  $("zone-id").addEventListener("input", (e) => edit("id", e.target.value.trim()));
  $("zone-kind").addEventListener("change", (e) => edit("kind", e.target.value));
  $("zone-merchant").addEventListener("change", (e) => edit("merchant", e.target.value));
  $("zone-owner").addEventListener("change", (e) => edit("owner", e.target.value));
  if (editable) {
    $("zone-new").addEventListener("click", startDrawing);
    $("zone-close").addEventListener("click", finishDrawing);
    $("zone-delete").addEventListener("click", removeSelected);
    $("zone-save").addEventListener("click", save);
  }
  load(target.value).catch(loadFailed);
})();
