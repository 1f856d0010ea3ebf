// Atelier web UI: live updates over Server-Sent Events, actions against the JSON API, small
// conveniences (local times, elapsed timers, dialogs, markdown preview, keyboard shortcuts).
// Pages are server-rendered and readable without this script. No inline script anywhere:
// the Content-Security-Policy forbids it.
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // ---- talking to the API --------------------------------------------------------------

  async function api(method, url, body) {
    const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      const message = (data && data.error) || text || response.statusText;
      throw new Error(message);
    }
    return data;
  }

  // A form's fields as a JSON body: dotted names nest (`roles.plan.model`), `data-type` says
  // how to read a value (number, json, lines, env = NAME=value lines), `data-optional` leaves an
  // empty field out, `data-whole` makes one textarea's JSON the whole body, and `data-base` is
  // the JSON the fields are laid over (so a settings form sends every setting back).
  function formBody(form) {
    const whole = form.querySelector("[data-whole]");
    if (whole) return JSON.parse(whole.value);
    const body = form.dataset.base ? JSON.parse(form.dataset.base) : {};
    for (const field of form.elements) {
      if (!field.name || field.disabled || field.type === "file") continue;
      if (field.type === "checkbox") { setPath(body, field.name, field.checked); continue; }
      let value = field.value;
      if (field.dataset.optional && value.trim() === "") { dropPath(body, field.name); continue; }
      const type = field.dataset.type;
      if (type === "number") value = value === "" ? null : Number(value);
      else if (type === "json") value = value.trim() === "" ? null : JSON.parse(value);
      else if (type === "lines") value = value.split("\n").map((s) => s.trim()).filter(Boolean);
      else if (type === "env") value = envLines(value);
      setPath(body, field.name, value);
    }
    return body;
  }

  function envLines(text) {
    const out = {};
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const eq = line.indexOf("=");
      if (eq < 1) throw new Error("expected NAME=value, got: " + line.slice(0, 40));
      out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    return out;
  }

  function setPath(obj, path, value) {
    const parts = path.split(".");
    let at = obj;
    for (const part of parts.slice(0, -1)) {
      if (typeof at[part] !== "object" || at[part] === null) at[part] = {};
      at = at[part];
    }
    at[parts[parts.length - 1]] = value;
  }

  function dropPath(obj, path) {
    const parts = path.split(".");
    let at = obj;
    for (const part of parts.slice(0, -1)) {
      if (typeof at[part] !== "object" || at[part] === null) return;
      at = at[part];
    }
    delete at[parts[parts.length - 1]];
  }

  // `{name}` in a form's API path is filled from (and removes) that field of the body.
  function fillPath(template, body) {
    return template.replace(/\{(\w+)\}/g, (_, key) => {
      const value = body[key];
      delete body[key];
      return encodeURIComponent(value == null ? "" : value);
    });
  }

  // Attachments: the files of a form's file inputs, each PUT as base64 to `base` + its name
  // (made plain: letters, digits, `._-`).
  async function upload(form, base) {
    for (const input of form.querySelectorAll('input[type="file"]')) {
      for (const file of Array.from(input.files || [])) {
        const name = file.name.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^\.+/, "").slice(0, 128) || "file";
        const content = await new Promise((resolve, reject) => {
          const reader = new FileReader();
          reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
          reader.onerror = () => reject(new Error("cannot read " + file.name));
          reader.readAsDataURL(file);
        });
        await api("PUT", base + encodeURIComponent(name), { content_base64: content });
      }
    }
  }

  function after(then, data) {
    if (!then || then === "reload") {
      // A page with live regions swaps them; one without (admin, settings) loads again.
      if (document.querySelector("[data-region]")) refresh(true); else location.reload();
      return;
    }
    const target = then.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(data && data[key] != null ? data[key] : ""));
    location.assign(target);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    event.preventDefault();
    const error = form.querySelector(".form-error");
    if (error) error.textContent = "";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      let data = null;
      if (form.dataset.api === "upload") {
        await upload(form, form.dataset.to);
      } else {
        const body = formBody(form);
        const url = fillPath(form.dataset.api, body);
        data = await api(form.dataset.method || "POST", url, form.dataset.method === "DELETE" ? undefined : body);
        if (form.dataset.attachTo && data) await upload(form, fillPath(form.dataset.attachTo, Object.assign({}, data)));
      }
      if (form.dataset.show) {
        const out = document.getElementById(form.dataset.show);
        if (out && data) { out.hidden = false; out.querySelector("code").textContent = data[out.dataset.field]; }
      }
      form.reset();
      const dialog = form.closest("dialog");
      if (dialog) dialog.close();
      after(form.dataset.then, data);
    } catch (e) {
      if (error) error.textContent = e.message; else alert(e.message);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });

  document.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const action = target.closest("[data-action]");
    if (action) {
      if (action.dataset.confirm && !confirm(action.dataset.confirm)) return;
      action.disabled = true;
      try {
        await api(action.dataset.method || "POST", action.dataset.action);
        after(action.dataset.then, null);
      } catch (e) {
        showStatus(e.message, true);
      } finally {
        action.disabled = false;
      }
      return;
    }
    const opener = target.closest("[data-open]");
    if (opener) { const d = document.getElementById(opener.dataset.open); if (d) d.showModal(); return; }
    const closer = target.closest("[data-close]");
    if (closer) { const d = document.getElementById(closer.dataset.close); if (d) d.close(); return; }
    if (target.id === "logout") {
      try { await api("POST", "/api/logout"); } catch (_) { /* signed out anyway */ }
      location.assign("/login");
      return;
    }
    // The link opens the paged transcript without script; with it, the events load here.
    if (target.id === "transcript-earlier") { event.preventDefault(); loadEarlier(target); }
  });

  // ---- live state ----------------------------------------------------------------------

  const statusLine = () => document.getElementById("live-status");
  function showStatus(text, bad) {
    const line = statusLine();
    if (!line) return;
    line.textContent = text;
    line.classList.toggle("bad", !!bad);
  }

  // Fetches this page again and swaps every live region (`[data-region]`, by id) whose content
  // changed — except one the person is typing in. Focus inside a swapped region moves to the
  // same control in its new content, so a keyboard user is not thrown back to the page's top.
  let refreshing = false;
  let again = false;
  async function refresh(force) {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        const response = await fetch(location.href, { headers: { "X-Atelier-Partial": "1" }, credentials: "same-origin" });
        // Gone for this viewer (deleted, or no longer a member): show the page as it is now.
        if (response.status === 404) { location.reload(); return; }
        if (!response.ok) break;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of document.querySelectorAll("[data-region]")) {
          const fresh = region.id && doc.getElementById(region.id);
          if (!fresh || fresh.innerHTML === region.innerHTML) continue;
          const active = document.activeElement;
          const typing = active && region.contains(active) && (active.value || "") !== "" && !force;
          if (typing) continue;
          const replacement = document.importNode(fresh, true);
          region.replaceWith(replacement);
          const focused = active && region.contains(active) && counterpart(region, replacement, active);
          if (focused) focused.focus({ preventScroll: true });
        }
        localTimes(document);
        tick();
        document.dispatchEvent(new CustomEvent("atelier:refreshed"));
      } while (again);
    } catch (e) {
      showStatus("Could not refresh: " + e.message, true);
    } finally {
      refreshing = false;
    }
  }

  // The element of `fresh` (a region's new content) that stands for `old` (inside `region`, the
  // content it replaced): the one with the same id, or the same tag and link, action or name —
  // none when it is gone (never another task's button that took its place) —, else, for an
  // element named by none of those, the one at the same place with the same tag.
  function counterpart(region, fresh, old) {
    if (old.id) return fresh.querySelector("#" + CSS.escape(old.id));
    const names = ["href", "data-action", "name"].filter((name) => old.hasAttribute(name));
    if (names.length) {
      const attributes = names.map((name) => "[" + name + '="' + CSS.escape(old.getAttribute(name)) + '"]');
      return fresh.querySelector(old.localName + attributes.join(""));
    }
    const path = [];
    for (let node = old; node !== region; node = node.parentElement) {
      path.unshift(Array.prototype.indexOf.call(node.parentElement.children, node));
    }
    let node = fresh;
    for (const index of path) node = node && node.children[index];
    return node && node.localName === old.localName ? node : null;
  }

  // Appends transcript lines newer than what the page shows (a running tool call is fetched
  // again, with its result once it has one).
  let appending = false;
  let appendAgain = false;
  async function appendTranscript() {
    const list = document.getElementById("transcript");
    if (!list) return;
    if (appending) { appendAgain = true; return; }
    appending = true;
    try {
      do {
        appendAgain = false;
        const running = list.querySelector("li.running");
        const items = list.querySelectorAll("li[data-last]");
        const last = items.length ? items[items.length - 1].dataset.last : null;
        let url = "/tasks/" + list.dataset.task + "/transcript";
        if (running) url += "?from=" + running.dataset.key;
        else if (last) url += "?from=" + nextKey(last);
        const response = await fetch(url, { credentials: "same-origin" });
        if (!response.ok) break;
        const holder = document.createElement("ol");
        holder.innerHTML = await response.text();
        const stick = nearBottom();
        for (const item of Array.from(holder.children)) {
          const existing = item.dataset.key && list.querySelector('li[data-key="' + item.dataset.key + '"]');
          if (existing) existing.replaceWith(item); else list.appendChild(item);
        }
        const empty = document.getElementById("transcript-empty");
        if (empty && list.children.length) empty.remove();
        localTimes(list);
        if (stick) window.scrollTo(0, document.body.scrollHeight);
      } while (appendAgain);
    } finally {
      appending = false;
    }
  }

  function nextKey(key) {
    const [run, seq] = key.split("-").map(Number);
    return run + "-" + (seq + 1);
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }

  async function loadEarlier(button) {
    const list = document.getElementById("transcript");
    const first = list && list.querySelector("li[data-key]");
    if (!first) return;
    const response = await fetch("/tasks/" + list.dataset.task + "/transcript?before=" + first.dataset.key, { credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.createElement("ol");
    holder.innerHTML = await response.text();
    const more = holder.querySelector("li.earlier");
    if (more) more.remove(); else button.remove();
    list.prepend(...Array.from(holder.children));
    const now = list.querySelector("li[data-key]");
    if (more && now) button.href = "/tasks/" + list.dataset.task + "/events?before=" + now.dataset.key;
    localTimes(list);
  }

  let scheduled = null;
  function schedule(fn) {
    if (scheduled) return;
    scheduled = requestAnimationFrame(() => { scheduled = null; fn(); });
  }

  function follow() {
    const url = document.body.dataset.stream;
    if (!url || !window.EventSource) return;
    const source = new EventSource(url);
    let pendingRefresh = false;
    const onChange = () => {
      if (pendingRefresh) return;
      pendingRefresh = true;
      queueMicrotask(() => { pendingRefresh = false; refresh(false); });
    };
    // A page that shows only some kinds of change says which (`data-refresh-on`).
    const holder = document.querySelector("[data-refresh-on]");
    const only = holder ? holder.dataset.refreshOn.split(" ") : null;
    const changed = (name) => () => { if (!only || only.includes(name)) onChange(); };
    source.addEventListener("task", changed("task"));
    // A run that ends settles its tool calls still shown as running.
    source.addEventListener("run", () => { changed("run")(); appendTranscript(); });
    source.addEventListener("pull_request", changed("pull_request"));
    // What the viewer sees of projects changed (added, settings, memberships, their account).
    source.addEventListener("projects", changed("projects"));
    // A page showing agents' last activity (the inbox's dashboard) refreshes on their
    // transcripts too, at most once a second.
    const activity = document.querySelector("[data-live-activity]");
    let activityDue = null;
    source.addEventListener("transcript", () => {
      appendTranscript();
      if (activity && !activityDue) activityDue = setTimeout(() => { activityDue = null; onChange(); }, 1000);
    });
    source.addEventListener("caught-up", () => { showStatus("", false); });
    source.onopen = () => showStatus("", false);
    source.onerror = () => showStatus("Live updates interrupted: reconnecting…", true);
    window.addEventListener("pagehide", () => { clearTimeout(activityDue); source.close(); });
  }

  // ---- small things --------------------------------------------------------------------

  function localTimes(root) {
    for (const t of root.querySelectorAll("time[data-ms]")) {
      const d = new Date(Number(t.dataset.ms));
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-since]")) {
      const secs = Math.max(0, Math.round((now - Number(el.dataset.since)) / 1000));
      el.textContent = secs < 60 ? secs + " s" : Math.floor(secs / 60) + " min " + (secs % 60) + " s";
    }
  }

  function preview() {
    for (const area of document.querySelectorAll("textarea[data-preview]")) {
      const out = document.getElementById(area.dataset.preview);
      const details = out && out.closest("details");
      if (!details) continue;
      details.addEventListener("toggle", async () => {
        if (!details.open) return;
        const response = await fetch("/preview", {
          method: "POST",
          headers: { "X-CSRF-Token": csrf(), "Content-Type": "text/plain" },
          body: area.value,
          credentials: "same-origin",
        });
        out.innerHTML = response.ok ? await response.text() : "";
      });
    }
  }

  function lazyDetails() {
    for (const details of document.querySelectorAll("details[data-src]")) {
      details.addEventListener("toggle", async () => {
        if (!details.open || details.dataset.loaded) return;
        const response = await fetch(details.dataset.src, { credentials: "same-origin" });
        const target = details.querySelector("div");
        if (response.ok && target) { target.innerHTML = await response.text(); details.dataset.loaded = "1"; }
      });
    }
  }

  // Keyboard: "g i" inbox, "g p" projects, "n" new task (on a board), "/" focuses the first
  // text field the page shows in its main content (the answer box of a question, the feedback
  // at the plan gate, the path of a new project): fields in closed dialogs or folded details
  // are not shown, so not chosen.
  function firstTextField() {
    const fields = document.querySelectorAll(
      'main textarea, main input:not([type]), main input[type="text"], main input[type="search"]');
    for (const field of fields) {
      if (!field.disabled && !field.readOnly && field.getClientRects().length > 0) return field;
    }
    return null;
  }

  let lastKey = "";
  document.addEventListener("keydown", (event) => {
    const el = event.target;
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    if (el instanceof HTMLElement && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName))) return;
    if (lastKey === "g" && event.key === "i") location.assign("/");
    else if (lastKey === "g" && event.key === "p") location.assign("/projects");
    else if (event.key === "n") { const b = document.getElementById("new-task"); if (b) { event.preventDefault(); b.click(); } }
    else if (event.key === "/") { const f = firstTextField(); if (f) { event.preventDefault(); f.focus(); } }
    lastKey = event.key;
  });

  document.addEventListener("DOMContentLoaded", () => {
    // Marks that the script runs (what a test of the pages without script checks is absent).
    document.documentElement.dataset.script = "on";
    localTimes(document);
    tick();
    setInterval(tick, 1000);
    preview();
    lazyDetails();
    follow();
    if (document.getElementById("transcript")) schedule(appendTranscript);
  });
})();
