"use strict";
(() => {
  const body = document.querySelector("#users tbody");
  const message = document.getElementById("users-message");
  const me = document.getElementById("who-name").textContent;
  const say = (text, kind) => { message.textContent = text; message.className = kind || "muted"; };

  async function load() {
    const users = await sw.api("GET", "/api/v1/users");
    body.replaceChildren(...users.map((u) => sw.el("tr", {},
      sw.el("td", {}, u.name),
      sw.el("td", {}, sw.el("span", { class: "pill" }, u.role)),
      sw.el("td", {}, new Date(u.created).toLocaleString()),
      sw.el("td", {}, new Date(u.password_changed).toLocaleString()),
      sw.el("td", {},
        sw.el("button", { type: "button", onclick: () => reset(u.name) }, "New password"), " ",
        u.name === me ? null :
          sw.el("button", { type: "button", class: "danger", onclick: () => remove(u.name) }, "Remove")),
    )));
  }
  async function reset(name) {
    const password = window.prompt(`New password for ${name}`);
    if (!password) return;
    try { await sw.api("PUT", `/api/v1/users/${encodeURIComponent(name)}/password`, { password }); say(`${name}: password changed`, "ok"); }
    catch (e) { say(e.message, "error"); }
  }
  async function remove(name) {
    if (!window.confirm(`Remove ${name}? Their sessions end at once.`)) return;
    try { await sw.api("DELETE", `/api/v1/users/${encodeURIComponent(name)}`); say(`${name} removed`, "ok"); await load(); }
    catch (e) { say(e.message, "error"); }
  }
  document.getElementById("add-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      await sw.api("POST", "/api/v1/users", {
        name: form.name.value, role: form.role.value, password: form.password.value,
      });
      say(`${form.name.value} added`, "ok");
      form.reset();
      await load();
    } catch (e) { say(e.message, "error"); }
  });
  load();
})();
