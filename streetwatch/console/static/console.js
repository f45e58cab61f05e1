// streetwatch console: the few helpers every page shares. No framework, no CDN.
"use strict";
const sw = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },
  // fetch JSON with the session's CSRF token; throws an Error carrying the server's detail
  async api(method, url, body) {
    const init = { method, headers: { "X-CSRF-Token": sw.csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!response.ok) {
      const detail = data && data.detail !== undefined ? data.detail : response.statusText;
      const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  },
  // run fn now and every ms milliseconds while the page is visible
  every(ms, fn) {
    const tick = async () => {
      if (!document.hidden) {
        try { await fn(); } catch (e) { console.warn(e); }
      }
      setTimeout(tick, ms);
    };
    tick();
  },
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },
  ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return `${s.toFixed(0)} s ago`;
    if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
    if (s < 129600) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  },
};
document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      await sw.api("POST", "/logout");
      window.location = "/login";
    });
  }
});
