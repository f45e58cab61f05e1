// Overview: renders GET /api/v1/overview (the page carries the first answer) and polls it.
"use strict";
(() => {
  const data = document.getElementById("overview-data");
  const pollMs = Number(data.dataset.pollMs) || 3000;
  const $ = (id) => document.getElementById(id);
  const PILL = { ok: "ok", warn: "warn", stale: "warn", down: "bad", silent: "off", waiting: "off", off: "off" };
  let updated = null;

  const text = (id, value) => { $(id).textContent = value; };
  const bytes = (n) => {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  };
  const count = (n) => (n === null || n === undefined ? "–" : n.toLocaleString());
  const rate = (d) => {
    if (d.rate === null || d.rate === undefined) return "–";
    return `${d.rate.toFixed(d.rate >= 10 || d.rate === 0 ? 0 : 1)} ${d.rate_unit}`;
  };

  function status(o) {
    const pill = $("ov-status");
    pill.textContent = !o.running ? "no pipeline" : o.healthy ? "healthy" : "unhealthy";
    pill.className = `pill ${!o.running ? "off" : o.healthy ? "ok" : "bad"}`;
    const box = $("ov-problems");
    box.hidden = o.problems.length === 0;
    box.replaceChildren(sw.el("strong", { class: "bad" }, "Needs attention"),
      sw.el("ul", {}, ...o.problems.map((p) => sw.el("li", {}, p))));
  }

  function cards(o) {
    text("ov-broker", o.broker || "–");
    $("ov-broker").className = `figure ${o.broker === "connected" ? "ok" : o.broker ? "bad" : ""}`;
    const dead = o.devices.reduce((sum, d) => sum + d.dead_letters, 0) + o.unrouted_dead_letters;
    text("ov-broker-note", `${count(dead)} dead letter${dead === 1 ? "" : "s"} in the journal`);
    const s = o.storage;
    text("ov-disk", s ? bytes(s.free_bytes) : "–");
    $("ov-disk").className = `figure ${s && s.full ? "bad" : ""}`;
    text("ov-disk-note", s && s.min_free_bytes !== null
      ? `${s.full ? "below" : "floor"} ${bytes(s.min_free_bytes)}${s.full ? ": new evidence refused" : ""}` : "");
    text("ov-feed", count(o.feed_backlog));
    $("ov-feed").className = `figure ${o.feed_backlog > 0 ? "warn" : ""}`;
    text("ov-sink", o.sink_backlog === null ? "no sink" : count(o.sink_backlog));
    text("ov-cases-total", count(o.cases_today.total));
    text("ov-escalated", count(o.escalated_open));
    $("ov-escalated").className = `figure ${o.escalated_open > 0 ? "warn" : ""}`;
  }

  function devices(o) {
    $("devices").tBodies[0].replaceChildren(...o.devices.map((d) => sw.el("tr", { "data-device": d.id },
      sw.el("td", {}, sw.el("div", { class: "id" }, d.id), d.name ? sw.el("div", { class: "name" }, d.name) : null),
      sw.el("td", {}, d.kind),
      sw.el("td", {}, sw.el("span", { class: `pill ${PILL[d.health] || ""}` }, d.health),
        sw.el("span", { class: "detail" }, d.detail)),
      sw.el("td", { title: d.last_message || "" }, d.last_message ? sw.ago(d.last_message) : "never"),
      sw.el("td", { class: "num" }, rate(d)),
      sw.el("td", { class: `num ${d.dead_letters ? "warn" : ""}` }, count(d.dead_letters)),
    )));
    const unrouted = $("ov-unrouted");
    unrouted.hidden = !o.unrouted_dead_letters;
    unrouted.textContent = `${count(o.unrouted_dead_letters)} dead letter${o.unrouted_dead_letters === 1 ? "" : "s"} on topics no device publishes on`;
  }

  function casesToday(o) {
    const c = o.cases_today;
    const table = $("cases-today");
    $("cases-none").hidden = c.total > 0;
    table.hidden = c.total === 0;
    table.tHead.replaceChildren(sw.el("tr", {}, sw.el("th", {}, "rule"),
      ...c.states.map((s) => sw.el("th", { class: "num" }, s.replace(/_/g, " "))),
      sw.el("th", { class: "num" }, "total")));
    table.tBodies[0].replaceChildren(...c.by_rule.map((r) => sw.el("tr", {},
      sw.el("td", {}, r.rule_id),
      ...c.states.map((s) => {
        const n = r.by_state[s] || 0;
        return sw.el("td", { class: `num ${n ? "" : "zero"}` }, n);
      }),
      sw.el("td", { class: "num" }, sw.el("strong", {}, r.total)))));
  }

  // the field's figures (GET /api/v1/stats): per rule and in total, refreshed every 30 s
  const minutes = (s) => (s === null || s === undefined ? "–" : `${(s / 60).toFixed(1)} min`);
  function figures(f) {
    const rows = [...f.rules, f.total];
    $("figures").tBodies[0].replaceChildren(...rows.map((r) => {
      const days = Object.keys(r.per_day).length || 1;
      const share = r.within_deadline_share;
      return sw.el("tr", { "data-rule": r.rule_id || "total" },
        sw.el("td", {}, r.rule_id ? r.rule_id : sw.el("strong", {}, "total")),
        sw.el("td", { class: "num" }, count(r.opened)),
        sw.el("td", { class: "num" }, (r.opened / days).toFixed(1)),
        sw.el("td", { class: "num" }, count(r.cleared_by_box)),
        sw.el("td", { class: "num" }, count(r.rectified)),
        sw.el("td", { class: "num" }, minutes(r.disposal_p50_s)),
        sw.el("td", { class: "num" }, minutes(r.disposal_p90_s)),
        sw.el("td", { class: "num" }, share === null ? "–" : `${Math.round(share * 100)}%`),
        sw.el("td", { class: `num ${r.escalations ? "warn" : ""}` }, count(r.escalations)),
        sw.el("td", { class: "num" }, count(r.repeats)),
        sw.el("td", { class: "num" }, count(r.rejected)));
    }));
  }
  const loadFigures = async () => figures(await sw.api("GET", "/api/v1/stats?days=30"));
  sw.every(30000, loadFigures);

  function render(o) {
    status(o);
    cards(o);
    devices(o);
    casesToday(o);
    updated = o.at;
    text("ov-updated", `updated ${sw.ago(updated)}`);
  }

  render(JSON.parse(data.textContent));
  setTimeout(() => sw.every(pollMs, async () => render(await sw.api("GET", "/api/v1/overview"))), pollMs);
  setInterval(() => { if (updated) text("ov-updated", `updated ${sw.ago(updated)}`); }, 1000);
})();
