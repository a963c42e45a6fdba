// The sessionstore console: plain JavaScript, no libraries, no build step.
// It calls the native API (/api/v1/...) with the API key one signs in with;
// the key is kept in this tab's sessionStorage only. Every text from the
// store is put in the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_ITEM = "sessionstore.apiKey";
  const TENANTS_ITEM = "sessionstore.tenants";
  const API = "/api/v1";
  const PAGE_SIZE = 50;
  const FACES = { emporix: "Emporix contexts", genesys: "Genesys sessions" };
  const $ = (selector) => document.querySelector(selector);

  const state = {
    key: sessionStorage.getItem(KEY_ITEM),
    caller: null, // {keyId, tenant, scopes, openAccess}
    live: null, // the LiveFeed of the session on screen
    view: null, // the SessionView on screen
    pending: null, // a notice to show once the next view is drawn
  };

  // -- building the page ---------------------------------------------------------

  /** An element: h("a", {href: "#"}, "text", child...). Strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (value === true) el.setAttribute(name, "");
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function show(view) {
    const root = $("#view");
    root.replaceChildren(view);
    root.hidden = false;
    $("#sign-in").hidden = true;
  }

  // -- talking to the API --------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.detail = detail || "";
    }

    /** What went wrong, in words. */
    get words() {
      const d = this.detail ? ` (${this.detail})` : "";
      switch (this.status) {
        case 0: return "sessionstore does not answer: check that it is running and reachable, then try again.";
        case 400: return `The request was refused as malformed${d}.`;
        case 401: return `This API key is not accepted${d}: sign in again.`;
        case 403: return `This API key may not do that${d}.`;
        case 404: return `Not found${d}.`;
        case 405: return `Not allowed here${d}.`;
        case 409: return `Conflict${d}.`;
        case 412: return `Changed meanwhile${d}.`;
        case 413: return `Too large${d}.`;
        case 503: return "The storage is unavailable right now (Redis does not answer). Try again in a moment.";
        default: return `sessionstore answered ${this.status}${d}.`;
      }
    }
  }

  function path(...segments) {
    return segments.map((s) => encodeURIComponent(s)).join("/");
  }

  async function api(url, { method = "GET", body, ifMatch, headers = {}, signal } = {}) {
    const sent = { Accept: "application/json", ...headers };
    if (state.key) sent["X-API-Key"] = state.key;
    if (ifMatch !== undefined) sent["If-Match"] = `"${ifMatch}"`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method, headers: sent, body, cache: "no-store", signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, error.message);
    }
    if (response.ok) return response;
    let detail = "";
    try {
      const problem = await response.json();
      detail = problem.detail || problem.message || problem.description || "";
    } catch (_) { /* not JSON: the status says enough */ }
    const error = new ApiError(response.status, detail);
    if (error.status === 401 && state.caller) signOut(error.words); // the key was revoked meanwhile
    throw error;
  }

  async function json(url, options) {
    return (await api(url, options)).json();
  }

  function tenantUrl(tenant) { return `${API}/tenants/${path(tenant)}`; }
  function sessionsUrl(tenant, ns) { return `${tenantUrl(tenant)}/namespaces/${path(ns)}/sessions`; }
  function sessionUrl(tenant, ns, id) { return `${sessionsUrl(tenant, ns)}/${path(id)}`; }

  // -- notices -------------------------------------------------------------------

  let noticeTimer = 0;

  function notify(text, level = "info", { sticky = false } = {}) {
    const box = $("#notice");
    box.className = `notice ${level}`;
    box.replaceChildren(h("span", {}, text), h("button", { type: "button", class: "close", "aria-label": "close",
      onclick: () => { box.hidden = true; } }, "×"));
    box.hidden = false;
    clearTimeout(noticeTimer);
    if (!sticky) noticeTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  function notifyError(error) {
    if (error.name === "AbortError") return;
    notify(error.words || String(error), error.status === 503 || error.status === 0 ? "warn" : "error",
      { sticky: true });
  }

  function clearNotice() {
    $("#notice").hidden = true;
  }

  // -- signing in ----------------------------------------------------------------

  function may(scope, tenant) {
    const c = state.caller;
    return !!c && c.scopes.includes(scope) && (c.tenant === "*" || c.tenant === tenant);
  }

  async function signIn(key) {
    state.key = key;
    try {
      state.caller = await json(`${API}/whoami`);
    } catch (error) {
      state.key = null;
      state.caller = null;
      throw error;
    }
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    const c = state.caller;
    $("#who-text").textContent = c.openAccess
      ? "open access (no auth file): anyone may do anything"
      : `key ${c.keyId} · ${c.tenant === "*" ? "every tenant" : `tenant ${c.tenant}`} · ${c.scopes.join(", ")}`;
    $("#sign-out").hidden = c.openAccess;
    $("#who").hidden = false;
  }

  function signOut(why) {
    stopLive();
    sessionStorage.removeItem(KEY_ITEM);
    sessionStorage.removeItem(TENANTS_ITEM);
    state.key = null;
    state.caller = null;
    $("#who").hidden = true;
    $("#view").hidden = true;
    $("#view").replaceChildren();
    $("#crumbs").replaceChildren();
    $("#sign-in").hidden = false;
    const error = $("#sign-in-error");
    error.hidden = !why;
    error.textContent = why || "";
    $("#api-key").value = "";
    $("#api-key").focus();
  }

  // -- where we are: #/t/{tenant}/n/{namespace}/s/{session} -----------------------

  function parseHash() {
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    } catch (_) { // a malformed %-escape: start over
      parts = [];
    }
    const where = {};
    for (let i = 0; i + 1 < parts.length; i += 2) where[{ t: "tenant", n: "namespace", s: "session" }[parts[i]]] = parts[i + 1];
    return where;
  }

  function link(where) {
    let out = "#/";
    if (where.tenant !== undefined) out += `t/${path(where.tenant)}`;
    if (where.namespace !== undefined) out += `/n/${path(where.namespace)}`;
    if (where.session !== undefined) out += `/s/${path(where.session)}`;
    return out;
  }

  function namespaceLabel(name, face) {
    return FACES[face] ? [FACES[face], " ", h("code", { class: "muted" }, name)] : [name];
  }

  function crumbs(where) {
    const items = [];
    if (state.caller && state.caller.tenant === "*") items.push(h("a", { href: "#/" }, "Tenants"));
    if (where.tenant !== undefined) items.push(h("a", { href: link({ tenant: where.tenant }) }, `Tenant ${where.tenant}`));
    if (where.namespace !== undefined) {
      const face = Object.keys(FACES).find((f) => where.namespace === `__${f}__`);
      items.push(h("a", { href: link({ tenant: where.tenant, namespace: where.namespace }) },
        ...namespaceLabel(where.namespace, face)));
    }
    if (where.session !== undefined) items.push(h("span", {}, where.session));
    const nav = $("#crumbs");
    nav.replaceChildren(...items.flatMap((item, i) => (i ? [h("span", { class: "sep" }, "›"), item] : [item])));
  }

  async function route() {
    if (!state.caller) return;
    const where = parseHash();
    if (where.session === undefined) {
      stopLive();
      state.view = null;
    }
    if (where.tenant === undefined && state.caller.tenant !== "*") {
      location.replace(link({ tenant: state.caller.tenant }));
      return;
    }
    crumbs(where);
    try {
      if (where.session !== undefined) await sessionView(where);
      else if (where.namespace !== undefined) await sessionsView(where);
      else if (where.tenant !== undefined) await namespacesView(where);
      else tenantsView();
      if (state.pending) notify(state.pending, "ok");
      state.pending = null;
    } catch (error) {
      if (error.status === 401) return;
      show(h("div", { class: "failed" }, h("p", { class: "error" }, error.words || String(error)),
        h("button", { type: "button", onclick: route }, "Try again")));
    }
  }

  // -- tenants, namespaces, sessions ---------------------------------------------

  function rememberTenant(tenant) {
    const known = JSON.parse(sessionStorage.getItem(TENANTS_ITEM) || "[]").filter((t) => t !== tenant);
    sessionStorage.setItem(TENANTS_ITEM, JSON.stringify([tenant, ...known].slice(0, 10)));
  }

  function tenantsView() {
    const input = h("input", { id: "tenant-input", placeholder: "tenant", required: true, spellcheck: "false" });
    const recent = JSON.parse(sessionStorage.getItem(TENANTS_ITEM) || "[]");
    show(h("div", {},
      h("h1", {}, "Tenants"),
      h("p", {}, "This key may act for every tenant. Which one?"),
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = link({ tenant: input.value.trim() }); } },
        input, h("button", { type: "submit" }, "Open")),
      recent.length ? h("div", {}, h("h2", {}, "Opened in this tab"),
        h("ul", { class: "plain" }, recent.map((t) => h("li", {}, h("a", { href: link({ tenant: t }) }, t))))) : null));
    input.focus();
  }

  async function namespacesView({ tenant }) {
    const { namespaces } = await json(`${tenantUrl(tenant)}/namespaces`);
    rememberTenant(tenant);
    const rows = namespaces.map((ns) => h("tr", {},
      h("td", {}, h("a", { class: "ns-link", href: link({ tenant, namespace: ns.name }) },
        ...namespaceLabel(ns.name, ns.face))),
      h("td", {}, ns.ttlSeconds ? duration(ns.ttlSeconds) : "none"),
      h("td", {}, when(ns.createdAt))));
    show(h("div", {},
      h("h1", {}, `Tenant ${tenant}`),
      namespaces.length
        ? h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "Namespace"),
          h("th", {}, "Property TTL"), h("th", {}, "Created"))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No namespaces yet.")));
  }

  async function sessionsView(where, paging) {
    const { tenant, namespace } = where;
    const page = paging || { prefix: "", cursors: [null] };
    const cursor = page.cursors[page.cursors.length - 1];
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (page.prefix) query.set("prefix", page.prefix);
    if (cursor) query.set("cursor", cursor);
    const { sessionIds, nextCursor } = await json(`${sessionsUrl(tenant, namespace)}?${query}`);
    const prefix = h("input", { id: "prefix", value: page.prefix, placeholder: "session id starts with…",
      spellcheck: "false" });
    const again = (next) => sessionsView(where, next).catch(notifyError);
    show(h("div", {},
      h("h1", {}, "Sessions in ", ...namespaceLabel(namespace, Object.keys(FACES).find((f) => namespace === `__${f}__`))),
      h("p", { class: "muted small" }, `${PAGE_SIZE} a page, in the store's order (not sorted).`),
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); again({ prefix: prefix.value, cursors: [null] }); } },
        prefix, h("button", { type: "submit" }, "Filter")),
      sessionIds.length
        ? h("ul", { class: "ids" }, sessionIds.map((id) =>
          h("li", {}, h("a", { class: "session-link", href: link({ tenant, namespace, session: id }) }, id))))
        : h("p", { class: "muted" }, page.prefix ? `No session id starts with “${page.prefix}”.` : "No sessions."),
      h("div", { class: "pager" },
        h("button", { id: "prev-page", type: "button", disabled: page.cursors.length < 2,
          onclick: () => again({ prefix: page.prefix, cursors: page.cursors.slice(0, -1) }) }, "‹ Previous"),
        h("span", { class: "muted" }, `page ${page.cursors.length}`),
        h("button", { id: "next-page", type: "button", disabled: !nextCursor,
          onclick: () => again({ prefix: page.prefix, cursors: [...page.cursors, nextCursor] }) }, "Next ›"))));
  }

  // -- one session -----------------------------------------------------------------

  function when(iso) {
    if (!iso) return "never";
    return iso.replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }

  function duration(seconds) {
    if (seconds % 86400 === 0) return `${seconds / 86400} d`;
    if (seconds % 3600 === 0) return `${seconds / 3600} h`;
    if (seconds % 60 === 0) return `${seconds / 60} min`;
    return `${seconds} s`;
  }

  /** A JSON value as a tree: objects and arrays fold (<details>), scalars coloured by type. */
  function tree(value, depth = 0) {
    if (value === null) return h("span", { class: "j-null" }, "null");
    if (typeof value === "object") {
      const isArray = Array.isArray(value);
      const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
      if (!entries.length) return h("span", { class: "j-punct" }, isArray ? "[]" : "{}");
      const count = isArray ? `${entries.length} item${entries.length === 1 ? "" : "s"}`
        : `${entries.length} key${entries.length === 1 ? "" : "s"}`;
      return h("details", { class: "j-node", open: depth < 3 && entries.length <= 30 },
        h("summary", {}, h("span", { class: "j-punct" }, isArray ? "[…]" : "{…}"), " ", h("span", { class: "muted" }, count)),
        h("ul", { class: "j-children" }, entries.map(([k, v]) =>
          h("li", {}, h("span", { class: isArray ? "j-index" : "j-key" }, isArray ? k : JSON.stringify(k)), ": ",
            tree(v, depth + 1)))));
    }
    if (typeof value === "string") return h("span", { class: "j-str" }, JSON.stringify(value));
    return h("span", { class: typeof value === "number" ? "j-num" : "j-bool" }, String(value));
  }

  /** The JSON an editor holds: {ok, value, message}. */
  function checkJson(text) {
    if (!text.trim()) return { ok: false, message: "empty: write a JSON value (e.g. \"text\", 3, {…})" };
    try {
      JSON.parse(text);
      return { ok: true };
    } catch (error) {
      return { ok: false, message: `not valid JSON: ${error.message}` };
    }
  }

  function pretty(raw) {
    try {
      const compact = JSON.stringify(JSON.parse(raw));
      // pretty-printed only when that keeps every value as it is (e.g. no integer above 2^53)
      return compact === raw.trim() ? JSON.stringify(JSON.parse(raw), null, 2) : raw;
    } catch (_) {
      return raw;
    }
  }

  async function sessionView(where) {
    const url = sessionUrl(where.tenant, where.namespace, where.session);
    if (!(state.view && state.view.url === url)) {
      stopLive();
      state.view = new SessionView(where);
      state.view.follow();
    }
    await state.view.load(); // which shows it
  }

  /** One session: its metadata, its properties as trees, the changes the key may make, and the live panel.
   * Drawn again after every read, in place: an editor being typed in, and the folds of a tree whose value
   * did not change, are left as they are. */
  class SessionView {
    constructor(where) {
      this.where = where;
      this.url = sessionUrl(where.tenant, where.namespace, where.session);
      this.session = undefined; // as last read; null: it does not exist
      this.editors = new Map(); // property name -> {text, version, form}
      this.adding = null; // {name, text, version, form}
      this.confirming = null; // "session" or a property name
      this.flash = new Map(); // property name -> "changed" | "deleted", for a moment
      this.deleted = new Map(); // property name -> its last value, shown struck out for a moment
      this.conflict = null; // {current: version or null, attempted: version}
      this.items = new Map(); // property name -> {li, head, tree, slot, shown}
      this.loading = null;
      this.again = false;
      this.conflictBox = h("div", { id: "conflict", class: "conflict", role: "alert", hidden: true });
      this.meta = h("dl", { class: "meta" });
      this.actions = h("div", { class: "actions" });
      this.addSlot = h("div", {});
      this.list = h("ul", { class: "props" });
      this.empty = h("p", { class: "muted" });
      this.main = h("section", { class: "session" }, h("h1", {}, "Session ", h("code", {}, where.session)),
        this.conflictBox, this.meta, this.actions, this.addSlot, this.list, this.empty);
      this.liveLog = h("ol", { id: "live-log", class: "live-log" });
      this.liveStatus = h("span", { id: "live-status", class: "status" }, "connecting…");
      this.root = h("div", { class: "session-layout" }, this.main, h("aside", { class: "live", "aria-label": "live" },
        h("h2", {}, "Live ", this.liveStatus),
        h("p", { class: "muted small" }, "Every change to this session, through any API and any instance, as it happens."),
        this.liveLog));
    }

    get canWrite() { return may("write", this.where.tenant); }

    get version() { return this.session ? this.session.metadata.version : null; }

    /** Read the session and draw it; reads asked for while one is under way make one more read after it. */
    load() {
      if (this.loading) {
        this.again = true;
        return this.loading;
      }
      this.loading = (async () => {
        try {
          do {
            this.again = false;
            try {
              this.session = await json(this.url);
            } catch (error) {
              if (error.status !== 404) throw error;
              this.session = null;
            }
          } while (this.again);
          this.render();
        } finally {
          this.loading = null;
        }
      })();
      return this.loading;
    }

    refresh() {
      this.load().catch(notifyError);
    }

    render() {
      if (state.view !== this) return;
      if (!this.root.isConnected) show(this.root); // the first read, or the first since an error was shown
      this.renderConflict();
      const s = this.session;
      if (!s) {
        this.meta.replaceChildren();
        this.actions.replaceChildren();
        this.addSlot.replaceChildren();
        this.list.replaceChildren();
        this.items.clear();
        this.empty.id = "missing";
        this.empty.replaceChildren("This session does not exist (or no longer does). ",
          h("a", { href: link({ tenant: this.where.tenant, namespace: this.where.namespace }) }, "Back to the sessions"));
        this.empty.hidden = false;
        return;
      }
      const m = s.metadata;
      // the customer the session is tied to (the native customerId member); else Emporix' or Genesys' own field
      const customer = typeof s.customerId === "string" ? s.customerId
        : typeof s.properties.customerId === "string" ? s.properties.customerId : null;
      this.meta.replaceChildren(
        h("dt", {}, "Version"), h("dd", { id: "meta-version" }, String(m.version)),
        h("dt", {}, "Created"), h("dd", {}, when(m.createdAt)),
        h("dt", {}, "Modified"), h("dd", { id: "meta-modified" }, when(m.modifiedAt)),
        h("dt", {}, "Expires"), h("dd", {}, when(m.expiresAt)),
        ...(customer !== null ? [h("dt", {}, "Customer"), h("dd", { id: "meta-customer" }, customer)] : []));
      this.renderActions();
      const names = new Set([...Object.keys(s.properties), ...this.deleted.keys()]);
      for (const [name, item] of this.items) {
        if (!names.has(name)) {
          item.li.remove();
          this.items.delete(name);
        }
      }
      const sorted = [...names].sort();
      sorted.forEach((name, i) => {
        const item = this.property(name);
        const before = this.list.children[i];
        if (before !== item.li) this.list.insertBefore(item.li, before || null);
      });
      this.empty.id = "";
      this.empty.textContent = "No properties.";
      this.empty.hidden = sorted.length > 0;
    }

    renderConflict() {
      const c = this.conflict;
      this.conflictBox.hidden = !c;
      if (!c) return;
      this.conflictBox.replaceChildren(h("strong", {}, "Changed meanwhile: reload. "),
        c.current === null ? "The session was deleted meanwhile (or has expired); this change was not saved."
          : `The session is now at version ${c.current}; this change was made to version ${c.attempted} and was not saved.`,
        " ", h("button", { type: "button", class: "reload", onclick: () => this.reload() }, "Reload"));
    }

    renderActions() {
      if (!this.canWrite) {
        this.actions.replaceChildren(h("p", { class: "muted small", id: "read-only" },
          "This API key may only read here: no changes can be made."));
        return;
      }
      this.actions.replaceChildren(
        h("button", { id: "add-property", type: "button", disabled: !!this.adding, onclick: () => this.openAdd() }, "Add property"),
        this.confirming === "session"
          ? h("span", { class: "confirm" }, "Delete this session? ",
            h("button", { type: "button", class: "danger confirm-yes", onclick: () => this.deleteSession() }, "Yes, delete it"),
            h("button", { type: "button", onclick: () => this.confirm(null) }, "Cancel"))
          : h("button", { id: "delete-session", type: "button", class: "danger", onclick: () => this.confirm("session") },
            "Delete session"));
      if (!this.adding) this.addSlot.replaceChildren();
      else if (!this.adding.form) {
        this.adding.form = this.addForm();
        this.addSlot.replaceChildren(this.adding.form);
      }
    }

    /** The list item of one property, made or brought up to date. */
    property(name) {
      let item = this.items.get(name);
      if (!item) {
        item = { li: h("li", { class: "prop", "data-name": name }), head: h("div", { class: "prop-head" }),
          tree: h("div", { class: "tree" }), slot: h("div", {}), shown: undefined };
        item.li.append(item.head, item.tree, item.slot);
        this.items.set(name, item);
      }
      const present = name in this.session.properties;
      const value = present ? this.session.properties[name] : this.deleted.get(name);
      const flash = this.flash.get(name);
      item.li.className = `prop${flash ? ` flash-${flash}` : ""}${present ? "" : " gone"}`;
      const text = JSON.stringify(value);
      if (item.shown !== text) { // a new value: a new tree (an unchanged one keeps its folds)
        item.tree.replaceChildren(tree(value));
        item.shown = text;
      }
      const editor = this.editors.get(name);
      const head = [h("span", { class: "prop-name" }, name)];
      if (!present) head.push(h("span", { class: "badge deleted" }, "deleted"));
      else if (this.canWrite && !editor) {
        head.push(h("button", { type: "button", class: "edit", onclick: () => this.openEditor(name) }, "Edit"));
        head.push(this.confirming === name
          ? h("span", { class: "confirm" }, `Delete ${name}? `,
            h("button", { type: "button", class: "danger confirm-yes", onclick: () => this.deleteProperty(name) }, "Yes, delete"),
            h("button", { type: "button", onclick: () => this.confirm(null) }, "Cancel"))
          : h("button", { type: "button", class: "delete danger", onclick: () => this.confirm(name) }, "Delete"));
      }
      item.head.replaceChildren(...head);
      if (!editor || !present) item.slot.replaceChildren();
      else if (!editor.form) {
        editor.form = this.editorForm(name, editor);
        item.slot.replaceChildren(editor.form);
      }
      return item;
    }

    editorForm(name, editor) {
      const area = h("textarea", { rows: Math.min(16, Math.max(3, editor.text.split("\n").length + 1)), spellcheck: "false",
        "aria-label": `new value of ${name}` });
      area.value = editor.text;
      const message = h("p", { class: "check" });
      const save = h("button", { type: "submit", class: "save" }, "Save");
      const base = h("span", { class: "muted small base" });
      const check = () => {
        const result = checkJson(area.value);
        save.disabled = !result.ok;
        message.textContent = result.ok ? "valid JSON" : result.message;
        message.className = `check ${result.ok ? "ok" : "bad"}`;
        base.textContent = `editing version ${editor.version}`;
      };
      editor.check = check;
      area.addEventListener("input", () => { editor.text = area.value; check(); });
      check();
      return h("form", { class: "editor", onsubmit: (e) => { e.preventDefault(); this.saveProperty(name, editor); } },
        area, message,
        h("div", { class: "buttons" }, save,
          h("button", { type: "button", class: "cancel", onclick: () => { this.editors.delete(name); this.render(); } }, "Cancel"),
          base));
    }

    addForm() {
      const a = this.adding;
      const name = h("input", { id: "add-name", placeholder: "property name", spellcheck: "false", "aria-label": "property name" });
      const area = h("textarea", { id: "add-value", rows: 4, spellcheck: "false", placeholder: "its value, as JSON",
        "aria-label": "its value, as JSON" });
      const message = h("p", { class: "check" });
      const save = h("button", { id: "add-save", type: "submit" }, "Add");
      const check = () => {
        const n = name.value;
        let result = checkJson(area.value);
        if (!n) result = { ok: false, message: "give the property a name" };
        else if (n.includes("/") || /[\u0000-\u001f\u007f]/.test(n)) result = { ok: false, message: "a name may not hold '/' or control characters" };
        else if (this.session && n in this.session.properties) result = { ok: false, message: `${n} exists: edit it instead` };
        save.disabled = !result.ok;
        message.textContent = result.ok ? "valid JSON" : result.message;
        message.className = `check ${result.ok ? "ok" : "bad"}`;
      };
      name.addEventListener("input", () => { a.name = name.value; check(); });
      area.addEventListener("input", () => { a.text = area.value; check(); });
      check();
      return h("form", { class: "editor add", onsubmit: (e) => { e.preventDefault(); this.addProperty(); } },
        name, area, message,
        h("div", { class: "buttons" }, save,
          h("button", { type: "button", onclick: () => { this.adding = null; this.render(); } }, "Cancel")));
    }

    confirm(what) {
      this.confirming = what;
      this.render();
    }

    async openEditor(name) {
      const version = this.version;
      let text = JSON.stringify(this.session.properties[name], null, 2);
      try { // the stored text itself: numbers beyond what JavaScript holds exactly stay as they are
        text = pretty(await (await api(`${this.url}/properties/${path(name)}`)).text());
      } catch (error) {
        if (error.status === 401) return;
      }
      this.editors.set(name, { text, version, form: null });
      this.render();
      const editor = this.editors.get(name);
      if (editor && editor.form) editor.form.querySelector("textarea").focus();
    }

    openAdd() {
      this.adding = { name: "", text: "", version: this.version, form: null };
      this.render();
      $("#add-name").focus();
    }

    /** A change sent with If-Match of the version it was made to; a 412 shows the conflict, never overwrites. */
    async change(attempted, send, done) {
      try {
        const response = await send();
        this.conflict = null;
        done();
        const tag = response.headers.get("ETag");
        notify(tag ? `Saved: the session is now at version ${tag.replace(/"/g, "")}.` : "Done.", "ok");
        await this.load();
      } catch (error) {
        if (error.status === 412) await this.conflicted(attempted);
        else notifyError(error);
      }
    }

    async conflicted(attempted) {
      let current = null;
      try { current = (await json(this.url)).metadata.version; } catch (_) { /* deleted, or unreachable */ }
      this.conflict = { current, attempted };
      this.render();
    }

    saveProperty(name, editor) {
      return this.change(editor.version,
        () => api(`${this.url}/properties/${path(name)}`, { method: "PUT", body: editor.text, ifMatch: editor.version }),
        () => this.editors.delete(name));
    }

    addProperty() {
      const a = this.adding;
      return this.change(a.version,
        () => api(`${this.url}/properties/${path(a.name)}`, { method: "PUT", body: a.text, ifMatch: a.version }),
        () => { this.adding = null; });
    }

    deleteProperty(name) {
      const version = this.version;
      this.confirming = null;
      return this.change(version, () => api(`${this.url}/properties/${path(name)}`, { method: "DELETE", ifMatch: version }),
        () => {});
    }

    async deleteSession() {
      const version = this.version;
      this.confirming = null;
      try {
        await api(this.url, { method: "DELETE", ifMatch: version });
      } catch (error) {
        if (error.status === 412) await this.conflicted(version);
        else notifyError(error);
        return;
      }
      state.pending = `Session ${this.where.session} deleted.`;
      location.hash = link({ tenant: this.where.tenant, namespace: this.where.namespace });
    }

    /** After a 412: read the session again; what is being edited is now an edit of the version read. */
    async reload() {
      this.conflict = null;
      try {
        await this.load();
      } catch (error) {
        notifyError(error);
        return;
      }
      if (this.version !== null) {
        for (const editor of this.editors.values()) {
          editor.version = this.version;
          if (editor.check) editor.check();
        }
        if (this.adding) this.adding.version = this.version;
      }
    }

    // -- live --------------------------------------------------------------------

    follow() {
      state.live = new LiveFeed(`${this.url}/events`, {
        status: (text, kind) => {
          this.liveStatus.textContent = text;
          this.liveStatus.className = `status ${kind}`;
        },
        subscribed: (first) => {
          if (!first) this.note("connected again: the session is read anew, in case a change was missed");
          this.refresh();
        },
        event: (change) => this.changed(change),
        ended: (why) => this.note(why),
      });
      state.live.start();
    }

    note(text) {
      this.liveLog.prepend(h("li", { class: "note" }, h("time", {}, clock()), " ", text));
      while (this.liveLog.children.length > 200) this.liveLog.lastChild.remove();
    }

    changed(change) {
      const entry = h("li", { class: "event", "data-received": Date.now() }, h("time", {}, clock()), " ", h("strong", {}, `version ${change.version}`));
      const chips = (names, kind) => names.flatMap((n) => [" ", h("code", { class: `chip ${kind}` }, n)]);
      if (change.changed.length) entry.append(" changed", ...chips(change.changed, "changed"));
      if (change.deleted.length) entry.append(" deleted", ...chips(change.deleted, "deleted"));
      this.liveLog.prepend(entry);
      while (this.liveLog.children.length > 200) this.liveLog.lastChild.remove();
      for (const name of change.changed) this.flash.set(name, "changed");
      for (const name of change.deleted) {
        this.flash.set(name, "deleted");
        if (this.session && name in this.session.properties) this.deleted.set(name, this.session.properties[name]);
      }
      const names = [...change.changed, ...change.deleted];
      setTimeout(() => {
        for (const name of names) {
          this.flash.delete(name);
          this.deleted.delete(name);
        }
        if (this.session) this.render();
      }, 4000);
      this.refresh();
    }
  }

  function clock() {
    const d = new Date();
    return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  /** Follows a text/event-stream with fetch (EventSource cannot send the API key), reconnecting by itself. */
  class LiveFeed {
    constructor(url, on) {
      this.url = url;
      this.on = on;
      this.controller = new AbortController();
      this.stopped = false;
    }

    stop() {
      this.stopped = true;
      this.controller.abort();
    }

    async start() {
      let delay = 1000;
      let first = true;
      while (!this.stopped) {
        this.on.status("connecting…", "connecting");
        let why = "the stream ended";
        try {
          const response = await api(this.url, { headers: { Accept: "text/event-stream" }, signal: this.controller.signal });
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n?/g, "\n");
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = [];
              for (const line of block.split("\n")) {
                if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
                else if (line.startsWith(": subscribed")) {
                  this.on.status("live", "live");
                  this.on.subscribed(first);
                  first = false;
                  delay = 1000;
                } else if (line.startsWith(": stream ended")) why = line.slice(2);
              }
              if (data.length) {
                try { this.on.event(JSON.parse(data.join("\n"))); } catch (_) { /* not a change event */ }
              }
            }
          }
        } catch (error) {
          if (this.stopped || error.name === "AbortError") return;
          why = error.words || String(error);
          if (error.status === 401 || error.status === 403) {
            this.on.status("stopped", "down");
            this.on.ended(why);
            return;
          }
        }
        if (this.stopped) return;
        first = false;
        this.on.ended(`${why}; reconnecting in ${delay / 1000} s`);
        this.on.status(`reconnecting in ${delay / 1000} s…`, "down");
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  function stopLive() {
    if (state.live) state.live.stop();
    state.live = null;
  }

  // -- start -----------------------------------------------------------------------

  async function start() {
    $("#sign-in-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = $("#api-key").value.trim();
      const error = $("#sign-in-error");
      error.hidden = true;
      try {
        await signIn(key);
      } catch (e) {
        error.textContent = e.status === 401 ? "This API key is not known to this server." : e.words;
        error.hidden = false;
        return;
      }
      clearNotice();
      route();
    });
    $("#sign-out").addEventListener("click", () => signOut());
    window.addEventListener("hashchange", () => { clearNotice(); route(); });
    const stored = state.key;
    if (!stored && document.documentElement.dataset.openAccess !== "true") {
      signOut();
      return;
    }
    try {
      await signIn(stored); // with no key: only where the service has no auth file
    } catch (error) {
      signOut(error.words);
      return;
    }
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
