// The rules page: a card per loaded rule with its live situations (refreshed every 2 s), the
// last reload's result, and a backtest form per rule. Cards are made once per rule and updated
// in place, so a refresh never clears what the operator typed or a backtest's results.
"use strict";
(() => {
  const list = document.getElementById("rules");
  const reloadBox = document.getElementById("reload");
  const canBacktest = list.dataset.canBacktest === "yes";
  const maxHours = Number(list.dataset.maxHours) || 24;
  const cards = new Map();

  // 8s, 4m05s, 30m, 1h02m: as rule files write durations
  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 3600) return s % 60 ? `${Math.floor(s / 60)}m${pad(s % 60)}s` : `${s / 60}m`;
    const m = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)}h` + (m ? `${pad(m)}m` : "");
  }
  const time = (iso) => new Date(iso).toLocaleString();

  function showReload(reload, running) {
    if (!running || !reload) {
      reloadBox.className = "card reload";
      reloadBox.dataset.ok = "";
      reloadBox.replaceChildren(sw.el("span", { class: "muted" },
        "No run: the rules as they stand in the folder; no live situations."));
      return;
    }
    reloadBox.className = `card reload ${reload.ok ? "ok" : "bad"}`;
    reloadBox.dataset.ok = reload.ok ? "yes" : "no";
    const when = reload.at ? `${sw.ago(reload.at)} (${time(reload.at)})` : "never";
    if (reload.ok) {
      reloadBox.replaceChildren(sw.el("div", {},
        sw.el("b", { class: "ok" }, "✓ Rules loaded"), ` · ${reload.rules} rules · last reload ${when}`));
      return;
    }
    reloadBox.replaceChildren(
      sw.el("div", {}, sw.el("b", { class: "bad" }, "✗ The last reload failed"),
        ` ${when}; the previous ${reload.rules} rules keep running. Fix:`),
      sw.el("ul", {}, ...reload.problems.map((p) => sw.el("li", { class: "problem" },
        p.file ? sw.el("code", {}, `${p.file}:${p.line}`) : null, p.file ? " " : null,
        p.file ? p.message : p.text))),
    );
  }

  function situationRow(s) {
    const fill = sw.el("div", {});
    fill.style.width = `${(100 * s.progress).toFixed(1)}%`;
    const who = `${s.subject} #${s.subject_id}` + (s.zone ? ` in ${s.zone}` : "") + ` · ${s.device}`;
    const dwell = s.opened ? `${duration(s.dwell_s)} · opened` : `${duration(s.dwell_s)} / ${duration(s.needed_s)}`;
    return sw.el("div", { class: `situation${s.opened ? " opened" : ""}`, title: `since ${time(s.since)}` },
      sw.el("span", { class: "who" }, who),
      sw.el("div", { class: "bar", role: "progressbar", "aria-valuenow": s.progress.toFixed(2) }, fill),
      sw.el("span", { class: "dwell" }, dwell));
  }

  function makeCard(rule) {
    const parts = {
      head: sw.el("div", { class: "rule-head" }),
      condition: sw.el("p", { class: "condition" }),
      facts: sw.el("div", { class: "facts" }),
      title: sw.el("h3", {}),
      situations: sw.el("div", { class: "situations" }),
      result: sw.el("div", { class: "backtest-result" }),
      status: sw.el("span", { class: "muted backtest-status" }),
    };
    const hours = sw.el("input", { type: "number", name: "hours", value: "1", min: "0.5",
      max: String(maxHours), step: "0.5", required: "", "aria-label": "hours" });
    const button = sw.el("button", { type: "submit", class: "primary" }, "Backtest");
    if (!canBacktest) {
      button.disabled = true;
      button.title = "operators and admins may backtest";
    }
    const form = sw.el("form", { class: "backtest" },
      sw.el("label", {}, "Replay the last ", hours, " hours"), button, parts.status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      parts.status.className = "muted backtest-status";
      parts.status.textContent = "replaying…";
      try {
        const result = await sw.api("POST", `/api/v1/rules/${encodeURIComponent(rule.id)}/backtest`,
          { hours: Number(hours.value) });
        showResult(parts, result, Number(hours.value));
        parts.status.textContent = "";
      } catch (e) {
        parts.status.className = "error backtest-status";
        parts.status.textContent = e.message;
      } finally {
        button.disabled = !canBacktest;
      }
    });
    const card = sw.el("section", { class: "card rule", "data-rule": rule.id },
      parts.head, parts.condition, parts.facts, parts.title, parts.situations, form, parts.result);
    return { card, parts };
  }

  function showResult(parts, r, hours) {
    const summary = sw.el("p", { class: "backtest-summary" },
      sw.el("b", {}, `${r.opened_total} would have opened`),
      ` in the last ${hours} h · ${r.items} items replayed from the ${r.source}`
      + (r.readings ? ` (${r.readings} readings, ${r.observations} observations)` : "")
      + (r.truncated ? " · window cut to its newest part" : "")
      + (r.before_window ? ` · ${r.before_window} already open before it` : "")
      + ` · ${r.elapsed_s.toFixed(1)} s`);
    const rows = r.opened.map((v) => sw.el("tr", {},
      sw.el("td", {}, time(v.opened_at)),
      sw.el("td", {}, `${v.subject} #${v.subject_id}`),
      sw.el("td", {}, v.zone || "-"),
      sw.el("td", {}, v.devices.join(", "))));
    const table = sw.el("table", { class: "backtest-table" },
      sw.el("thead", {}, sw.el("tr", {},
        sw.el("th", {}, "opened at"), sw.el("th", {}, "subject"),
        sw.el("th", {}, "zone"), sw.el("th", {}, "devices"))),
      sw.el("tbody", {}, ...(rows.length ? rows : [sw.el("tr", {},
        sw.el("td", { colspan: "4", class: "muted" }, "nothing would have opened"))])));
    const more = r.opened_total > r.opened.length
      ? sw.el("p", { class: "muted" }, `and ${r.opened_total - r.opened.length} more`) : null;
    parts.result.replaceChildren(summary, table, ...(more ? [more] : []));
  }

  function update(entry, rule) {
    const p = entry.parts;
    p.head.replaceChildren(
      sw.el("h2", {}, rule.name),
      sw.el("code", {}, rule.id),
      sw.el("span", { class: "pill" }, rule.category),
      sw.el("span", { class: `pill sev-${rule.severity}` }, rule.severity),
      sw.el("span", { class: "muted file" }, rule.line ? `${rule.file}:${rule.line}` : rule.file));
    p.condition.textContent = rule.condition;
    const fact = (label, value) => sw.el("span", {}, sw.el("b", {}, `${label} `), value);
    p.facts.replaceChildren(
      fact("dwell", duration(rule.dwell_s)),
      fact("cooldown", rule.cooldown_s ? duration(rule.cooldown_s) : "none"),
      fact("one case per", rule.dedup),
      fact("schedule", rule.schedule),
      sw.el("span", { class: `pill ${rule.schedule_active ? "ok" : "warn"}` },
        rule.schedule_active ? "active now" : "outside its schedule"));
    const shown = rule.situations.length;
    p.title.textContent = `Live situations (${rule.situations_total})`
      + (rule.situations_total > shown ? ` · the ${shown} nearest to opening` : "");
    p.situations.replaceChildren(...(shown
      ? rule.situations.map(situationRow)
      : [sw.el("p", { class: "muted empty" }, "nobody in its zones now")]));
  }

  async function refresh() {
    const view = await sw.api("GET", "/api/v1/rules");
    showReload(view.reload, view.running);
    const seen = new Set();
    let previous = null;
    for (const rule of view.rules) {
      seen.add(rule.id);
      let entry = cards.get(rule.id);
      if (!entry) {
        entry = makeCard(rule);
        cards.set(rule.id, entry);
      }
      update(entry, rule);
      // keep the server's order: each card right after the one before it
      const want = previous ? previous.nextSibling : list.firstChild;
      if (want !== entry.card) list.insertBefore(entry.card, want);
      previous = entry.card;
    }
    for (const [id, entry] of cards) {
      if (!seen.has(id)) {
        entry.card.remove();
        cards.delete(id);
      }
    }
    list.dataset.loaded = "yes";
  }

  sw.every(2000, refresh);
})();
