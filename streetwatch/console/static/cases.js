// streetwatch console, the case list: filters apply as they change, the pager keeps them, and
// times read in the browser's own zone.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("case-filters");
  if (!form) return;
  for (const field of form.querySelectorAll("select, input[type=date]")) {
    field.addEventListener("change", () => {
      // a new filter starts at page 1 (the form carries no page)
      form.requestSubmit();
    });
  }
  for (const id of ["page-prev", "page-next"]) {
    const link = document.getElementById(id);
    if (!link) continue;
    const params = new URLSearchParams(window.location.search);
    params.set("page", link.dataset.to);
    link.href = `/cases?${params}`;
  }
  for (const node of document.querySelectorAll("#case-table time")) {
    const when = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      node.title = node.getAttribute("datetime");
      node.textContent = when.toLocaleString(undefined, { hour12: false });
    }
  }
  for (const row of document.querySelectorAll("#case-table tr.case-row")) {
    row.style.cursor = "pointer";
    row.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      window.location = `/cases/${encodeURIComponent(row.dataset.case)}`;
    });
  }
});
