// capigate inspector: reads the admin API with the session cookie and draws four views.
// No library, no build step. Every value is put in the page as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const OVERVIEW_POLL_MS = 10000;
const SILENT_DROP = "ios_app_id_without_prefix";
const PAGE = 50;

const state = {
  view: "requests",
  sources: [],
  dedupeDays: 30,
  requests: { rows: [], next: null, older: false, open: new Set(), seen: 0, shown: null, params: {} },
  detailBoxes: new Set(), // open request details, their stored events' states read again on every poll
  events: { rows: [], next: null, older: false, open: new Set(), seen: 0, shown: null, params: {} },
  attemptBoxes: new Map(), // event id -> its open attempts panel, redrawn from the API on every poll
  pinned: null, // {kind: "request" | "event", id}: opened from a link
  lag: new Map(), // destination -> [[time, seconds]] sampled while the page is open
  replays: new Map(), // destination -> what a replay queued, and what became of it
  lastOverview: 0,
  lastQuality: 0,
};

// --- small helpers -------------------------------------------------------------------------

// Bidirectional controls (U+202E "right-to-left override" and its kin) reorder the text
// around them: a client's value could make the page show another than the one stored. They
// are shown as escapes; right-to-left letters are left as they are.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function shown(value) {
  return String(value).replace(BIDI_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(shown(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const child of children.flat()) {
    if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { "X-Capigate-Inspector": "1", Accept: "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) {
    window.location.reload(); // the session ended: back to the login form
    throw new Error("logged out");
  }
  if (response.status >= 500) {
    // The store away (503): the caller keeps what it shows, the badge says why. An error body
    // read as an empty page blanked the tables under a green "live" (a trial).
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).message || message;
    } catch (_) {
      /* not JSON */
    }
    throw new Unavailable(message);
  }
  return response;
}

class Unavailable extends Error {}

function setLive(state, why) {
  const live = document.getElementById("live");
  live.classList.toggle("down", state !== "live");
  live.textContent = state;
  live.title = why || "";
}

function failed(err) {
  if (err.message === "logged out") return;
  setLive(err instanceof Unavailable ? "unavailable" : "offline", err.message);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function stamp(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}
// A time of today as its clock; any other with its full date: a date without its year is ambiguous.
function dayTime(ms) {
  return new Date(ms).toDateString() === new Date().toDateString() ? clock(ms) : stamp(ms);
}
function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}
const plural = (n, word) => `${n} ${noun(n, word)}`;
// The word alone, agreeing with n (the number shown beside it, in bold, by the caller).
const noun = (n, word) => `${word}${n === 1 ? "" : "s"}`;

// The characters capigate/logs.py escapes (_CONTROLS): C0 and C1 controls, DEL, the line and
// paragraph separators, and the format characters but the zero-width (non-)joiner.
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\u{110bd}\u{110cd}\u{13430}-\u{1343f}\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0001}\u{e0020}-\u{e007f}]/gu;
const SHORT_ESCAPES = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

// A source id as the logs write it (escape_control, and quoted as a test tag is when it holds a
// space or a quote): "px\x00demo", "\" com.example.demo\"". Shown raw, px\x00demo read as
// px▯demo and a leading space was invisible, the configured id seeming unknown (a trial).
function shownId(id) {
  if (id === null || id === undefined) return id;
  const text = String(id).replace(CONTROLS, (c) => {
    if (SHORT_ESCAPES[c]) return SHORT_ESCAPES[c];
    const n = c.codePointAt(0);
    const hex = n.toString(16);
    return n < 0x100 ? `\\x${hex.padStart(2, "0")}` : n <= 0xffff ? `\\u${hex.padStart(4, "0")}` : `\\U${hex.padStart(8, "0")}`;
  });
  return text.includes(" ") || text.includes('"') ? `"${text.replaceAll('"', '\\"')}"` : text;
}

function problemTable(title, problems, kind) {
  if (!problems.length) return null;
  return h(
    "div",
    { class: `problems ${kind}` },
    h("h4", {}, `${title} (${problems.length})`),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "Code"), h("th", {}, "Message"))),
      h(
        "tbody",
        {},
        problems.map((p) =>
          h("tr", {}, h("td", { class: "path" }, p.path || "(body)"), h("td", { class: "code" }, p.code), h("td", {}, p.message)),
        ),
      ),
    ),
  );
}

// --- views and polling ---------------------------------------------------------------------

// The fragment names the view (#requests, #events, ...), a pinned request or event
// (#request/<id>), and a list's filters as its query (#events?name=purchase&test_tag=ci): a
// reload or a shared link shows the same list, and back and forward step through the filters.
function show(hash) {
  const cut = hash.indexOf("?");
  const search = cut < 0 ? "" : hash.slice(cut + 1);
  let [view, id] = (cut < 0 ? hash : hash.slice(0, cut)).split("/");
  state.pinned = null;
  if (view === "request" && id) state.pinned = { kind: "request", id };
  if (view === "event" && id) state.pinned = { kind: "event", id };
  if (state.pinned) view = state.pinned.kind === "request" ? "requests" : "events";
  if (!document.getElementById(`view-${view}`)) view = "requests";
  if (!state.pinned && FILTERS[view]) applyFilters(view, new URLSearchParams(search));
  state.view = view;
  renderPinned();
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.view === view);
  refresh(true);
}

// The lists whose filters the fragment keeps: their form, and how it is read as the API's query.
const FILTERS = {
  requests: { form: "rq-filters", read: () => requestFilters() },
  events: { form: "ev-filters", read: () => eventFilters() },
};

function filterHash(view, params) {
  return `#${view}${query(params)}`;
}

// The form of ``view`` filled from the fragment's query (times in epoch ms, shown in local
// time), and its list started again if they changed; its tab links to them.
function applyFilters(view, params) {
  const form = document.getElementById(FILTERS[view].form);
  for (const el of form.elements) {
    if (!el.name) continue;
    const value = params.get(el.name) || "";
    if (el.name === "source") el.value = value && sourceValue(value, params.get("api"));
    else el.value = el.name === "since" || el.name === "until" ? localInput(value) : value;
  }
  const filters = FILTERS[view].read();
  const list = state[view];
  if (JSON.stringify(filters) !== JSON.stringify(list.params)) {
    state[view] = { rows: [], next: null, older: false, open: list.open, seen: 0, shown: null, params: filters };
  }
  const problems = hashProblems(form, params);
  if (JSON.stringify(problems) !== JSON.stringify(state[view].problems || [])) state[view].shown = null;
  state[view].problems = problems;
  document.querySelector(`#tabs a[data-view=${view}]`).setAttribute("href", filterHash(view, filters));
}

// The fragment's filters the form could not take, as the API words a bad query: a filter the
// list lacks, a time that is not epoch ms, a value its choice lacks. Dropped in silence, the
// events of #events?since=yesterday were the unfiltered list, as if it had matched (a trial).
function hashProblems(form, params) {
  const names = [...form.elements].map((el) => el.name).filter(Boolean);
  const problems = [];
  const problem = (key, code, message) => problems.push({ path: `query.${key}`, code, message });
  for (const [key, value] of params) {
    if (key === "api" && names.includes("source")) {
      if (value && !["axon", "appsflyer"].includes(value)) problem(key, "invalid_value", `api is one of axon, appsflyer, not ${JSON.stringify(value.slice(0, 40))}`);
    } else if (!names.includes(key)) {
      const paged = key === "limit" || key === "cursor" ? `: the list shows ${PAGE} rows a page, and Older the next` : "";
      problem(key, "unknown_parameter", `${key} is not a filter of this list${paged}; use ${[...names, "api"].sort().join(", ")}`);
    } else if (value === "") {
      continue;
    } else if (key === "since" || key === "until") {
      if (!/^[0-9]{1,15}$/.test(value) || !localInput(value)) problem(key, "invalid_format", `${key} is a time in epoch milliseconds, as the page writes it; ${JSON.stringify(value.slice(0, 40))} is not one`);
    } else if (key === "source") {
      if (!form.elements[key].value) problem(key, "unknown_source", `no source ${JSON.stringify(value.slice(0, 80))} is configured`);
    } else if (form.elements[key].value !== value) {
      const choices = [...form.elements[key].options || []].map((o) => o.value).filter(Boolean);
      problem(key, "invalid_value", `${key} is one of ${choices.join(", ")}, not ${JSON.stringify(value.slice(0, 40))}`);
    }
  }
  return problems;
}

// A submitted form goes to the fragment (a step in the history); the same filters again, read afresh.
function filtersChanged(view) {
  const filters = FILTERS[view].read();
  const hash = filterHash(view, filters);
  if (location.hash !== hash) {
    location.hash = hash; // hashchange: show() applies them
    return;
  }
  const list = state[view];
  state[view] = { rows: [], next: null, older: false, open: list.open, seen: 0, shown: null, params: filters };
  refresh(true);
}

// Epoch ms as a datetime-local input's value, in local time ("" for none).
function localInput(ms) {
  const n = Number(ms);
  if (!ms || !Number.isFinite(n)) return "";
  const d = new Date(n);
  if (Number.isNaN(d.getTime())) return "";
  const date = `${String(d.getFullYear()).padStart(4, "0")}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

async function refresh(force) {
  if (document.hidden && !force) return;
  try {
    if (state.view === "requests") await loadRequests(false);
    else if (state.view === "events") await loadEvents(false);
    else if (state.view === "overview" && (force || Date.now() - state.lastOverview >= overviewPollMs())) await loadOverview();
    else if (state.view === "quality" && (force || Date.now() - state.lastQuality >= OVERVIEW_POLL_MS)) await loadQuality();
    else await ready(); // "live" only when the gateway answered this turn
    setLive("live");
  } catch (err) {
    failed(err);
  }
}

async function ready() {
  const response = await fetch("/readyz", { cache: "no-store" });
  if (!response.ok) throw new Unavailable(`not ready (${response.status}): the store does not take writes`);
}

// One page at a time: a double click asked for the same page twice, its rows shown twice.
async function older(button, load) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await load(true);
  } catch (err) {
    failed(err);
  } finally {
    button.disabled = false;
  }
}

// A source select's option: its value "<api>:<id>", its text the id and its API. An Axon pixel
// and an AppsFlyer app may share an id: listed as the id twice, either showed both's events (a trial).
function sourceOption(s) {
  const kind = s.api === "axon" ? `Axon pixel, ${s.profile}` : "AppsFlyer app";
  return h("option", { value: `${s.api}:${s.id}` }, `${shownId(s.id)} (${kind})`);
}

// A source select's value as the API's filters: { source, api } ("" for all).
function sourceChoice(value) {
  const v = String(value || "");
  const cut = v.indexOf(":");
  return cut < 0 ? { source: "", api: "" } : { source: v.slice(cut + 1), api: v.slice(0, cut) };
}

// The option of the filters' source and api; a link of a source alone (made before the api
// was one of its filters) picks the first source of that id.
function sourceValue(source, api) {
  const found = state.sources.find((s) => s.id === source && (!api || s.api === api));
  return found ? `${found.api}:${found.id}` : "";
}

function fillSourceSelects() {
  const selects = [document.getElementById("rq-source"), document.querySelector("#ev-filters [name=source]"), document.getElementById("q-source")];
  for (const select of selects) {
    for (const s of state.sources) select.append(sourceOption(s));
  }
  const send = document.getElementById("send-source");
  for (const s of state.sources) send.append(sourceOption(s));
}

// --- requests ------------------------------------------------------------------------------

const localMs = (v) => (v ? String(new Date(v).getTime()) : "");

// An empty journal asks for a first request; an empty search, for other filters.
function noRequestsText(params) {
  return Object.values(params).some(Boolean)
    ? "No request matches these filters. Clear shows every request."
    : "No requests yet. Send one from the “Send a test event” tab.";
}

function requestFilters() {
  const data = new FormData(document.getElementById("rq-filters"));
  const text = (k) => String(data.get(k) || "").trim();
  return {
    ...sourceChoice(data.get("source")),
    status: text("status"),
    name: text("name"),
    transaction_id: text("transaction_id"),
    dedupe_id: text("dedupe_id"),
    client_ip: text("client_ip"),
    test_tag: text("test_tag"),
    since: localMs(data.get("since")),
    until: localMs(data.get("until")),
  };
}

async function loadRequests(older) {
  const rq = state.requests;
  if (rq.problems?.length) {
    rq.shown = null;
    renderRequestsError(rq);
    return;
  }
  const params = { ...rq.params, limit: PAGE };
  if (older) params.cursor = rq.next;
  const page = await (await api("/api/requests" + query(params))).json();
  if (page.status === "error") {
    rq.shown = null;
    renderRequestsError(page);
    return;
  }
  if (older) {
    rq.rows = rq.rows.concat(page.requests);
    rq.next = page.next;
    rq.older = true;
  } else if (rq.older && !gap(rq.rows, page.requests, page.next)) {
    const known = new Set(rq.rows.map((r) => r.id));
    rq.rows = page.requests.filter((r) => !known.has(r.id)).concat(rq.rows);
  } else {
    rq.older = false;
    rq.rows = page.requests;
    rq.next = page.next;
  }
  const shown = rq.rows.map((r) => r.id).join(",");
  if (shown !== rq.shown) { // else nothing new: leave the table (and any selection) alone
    rq.shown = shown;
    renderRequests();
  }
  await refreshRequestDetails();
}

function renderRequestsError(page) {
  document.getElementById("rq-more").hidden = true;
  document.querySelector("#requests tbody").replaceChildren(h("tr", {}, h("td", { colspan: 7 }, problemTable("Filter problems", page.problems, "error"))));
}

// More new rows than a page since the last poll (a burst, a hidden tab): merged on top of the
// older pages, the rows between were never shown and no "Older" reached them (a trial). The
// list starts again from the newest page instead.
function gap(rows, newest, next) {
  if (!rows.length || !next) return false;
  const known = new Set(rows.map((r) => r.id));
  return !newest.some((r) => known.has(r.id));
}

function isSilentDrop(r) {
  return r.warnings.some((w) => w.code === SILENT_DROP);
}

function eventsCell(r) {
  if (!r.events_received) return "–";
  const parts = [];
  if (r.events_stored) parts.push(`${r.events_stored} stored`);
  if (r.events_duplicate) parts.push(`${r.events_duplicate} dup`);
  const refused = r.events_received - r.events_stored - r.events_duplicate;
  if (refused > 0) parts.push(`${refused} refused`);
  return `${r.events_received}${parts.length ? " · " + parts.join(", ") : ""}`;
}

function statusBadge(status, silent, warnings) {
  const kind = silent ? "silent" : status >= 500 ? "err" : status >= 400 ? "bad" : "ok";
  return [
    h("span", { class: `badge ${kind}` }, String(status)),
    silent ? h("span", { class: "badge silent-label", title: "AppsFlyer answers 200 OK to this and drops the event" }, "dropped silently") : null,
    !silent && warnings ? h("span", { class: "warn-count", title: plural(warnings, "warning") }, `⚠ ${warnings}`) : null,
  ];
}

function renderRequests() {
  const rq = state.requests;
  const tbody = document.querySelector("#requests tbody");
  const newest = rq.rows.length ? rq.rows[0].id : 0;
  const rows = [];
  for (const r of rq.rows) {
    const silent = isSilentDrop(r);
    const classes = ["request", r.status >= 400 ? "failed" : "", silent ? "silent" : "", r.id > rq.seen && rq.seen ? "new" : ""];
    const toggle = () => {
      rq.open.has(r.id) ? rq.open.delete(r.id) : rq.open.add(r.id);
      renderRequests();
    };
    rows.push(
      h(
        "tr",
        { class: classes.filter(Boolean).join(" "), "data-id": r.id, "data-request-id": r.request_id, "data-status": r.status, tabindex: 0, onclick: toggle,
          onkeydown: (e) => (e.key === "Enter" ? toggle() : null) },
        h("td", { class: "time", title: stamp(r.received_at) }, dayTime(r.received_at)),
        h("td", { class: "source" }, shownId(r.source) || "–", r.test_tag ? h("span", { class: "tag" }, r.test_tag) : null),
        h("td", { class: "endpoint" }, `${r.method} ${r.path}`),
        h("td", { class: "status" }, statusBadge(r.status, silent, r.warnings.length)),
        h("td", { class: "ua", title: r.user_agent || "" }, r.user_agent || "–"),
        h("td", { class: "num events" }, eventsCell(r)),
        h("td", { class: "num latency" }, `${r.latency_ms.toFixed(1)} ms`),
      ),
    );
    if (rq.open.has(r.id)) rows.push(h("tr", { class: "detail" }, h("td", { colspan: 7 }, requestDetail(r))));
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, noRequestsText(state.requests.params))));
  tbody.replaceChildren(...rows);
  rq.seen = Math.max(rq.seen, newest);
  document.getElementById("rq-more").hidden = !rq.next;
}

// The request's detail: its facts and problems at once, then (from GET /api/requests/{id}) the
// body it was refused with, each problem's path marked in it, and the events it stored.
function requestDetail(r) {
  const box = h("div", { class: "request-detail", "data-request-id": r.request_id }, requestFacts(r), h("p", { class: "muted" }, "…"));
  fillRequestDetail(r.request_id, box);
  return box;
}

// A journal entry never changes, but the delivery state of the events it stored does: every
// open detail with an event still to settle is read again on each poll (one opened once showed
// "pending" for good, a trial), and only its list of events is redrawn, when a state changed.
async function refreshRequestDetails() {
  for (const entry of state.detailBoxes) {
    if (!entry.box.isConnected) state.detailBoxes.delete(entry);
    else if (entry.unsettled) await refreshStoredEvents(entry);
  }
}

async function refreshStoredEvents(entry) {
  const d = await fetchRequest(entry.requestId);
  if (!d || !entry.box.isConnected) return;
  watchStoredEvents(entry, d);
  if (entry.signature === entry.shown) return; // unchanged: leave it (and any selection) alone
  entry.shown = entry.signature;
  entry.slot.replaceChildren(...[storedEvents(d)].filter(Boolean));
}

function watchStoredEvents(entry, d) {
  entry.signature = d.events.map((e) => `${e.id}:${e.status}`).join(",");
  entry.unsettled = d.events.some((e) => e.status !== "stored");  // a dead event may be replayed
}

function requestFacts(r) {
  return h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Request id"), h("dd", {}, r.request_id),
    h("dt", {}, "Received"), h("dd", {}, stamp(r.received_at)),
    h("dt", {}, "Endpoint"), h("dd", {}, `${r.method} ${r.path}`),
    h("dt", {}, "Client IP"), h("dd", {}, r.client_ip || "–"),
    h("dt", {}, "User agent"), h("dd", {}, r.user_agent || "–"),
    h("dt", {}, "API"), h("dd", {}, r.api),
    r.test_tag ? [h("dt", {}, "Test tag"), h("dd", {}, r.test_tag)] : null,
    keyFacts(r.keys),
  );
}

// The keys the request is found by (GET /api/requests/{id} only): the names, dedupe ids and
// transaction ids it carried, a duplicate's included, the ones a search for it matches.
const SHOWN_KEYS = 12;
function keyFacts(keys) {
  if (!keys || !keys.length) return null;
  const shown = keys.slice(0, SHOWN_KEYS).map(([kind, value]) => `${kind} ${value}`).join(" · ");
  const more = keys.length > SHOWN_KEYS ? ` (+${keys.length - SHOWN_KEYS} more)` : "";
  return [h("dt", {}, "Found by"), h("dd", { class: "keys" }, shown + more)];
}

async function fetchRequest(requestId) {
  const response = await api(`/api/requests/${encodeURIComponent(requestId)}`);
  return response.ok ? response.json() : null;
}

async function fillRequestDetail(requestId, box) {
  let d;
  try {
    d = await fetchRequest(requestId);
  } catch (err) {
    failed(err);
    box.replaceChildren(h("p", { class: "muted" }, `Not loaded: ${err.message}. Close and open it again to retry.`));
    return;
  }
  if (!d) {
    box.replaceChildren(h("p", { class: "muted" }, `No request ${requestId} in the journal (it keeps requests for a limited time).`));
    return;
  }
  const silent = isSilentDrop(d);
  const note = silent
    ? h("p", { class: "silent-note" },
        "AppsFlyer answers 200 OK to this request and drops the event without a word: the app id lacks the “id” prefix of iOS apps. capigate did not store it either.")
    : null;
  const none = !d.problems.length && !d.warnings.length ? h("p", { class: "muted" }, "No problems, no warnings.") : null;
  const body = d.body === null ? null : jsonView(d.body);
  const entry = { requestId, box, slot: h("div", { class: "stored-events-slot" }, storedEvents(d)) };
  watchStoredEvents(entry, d);
  entry.shown = entry.signature;
  state.detailBoxes.add(entry);
  const left = h("div", { class: "findings" }, requestFacts(d), problemList("Problems", d.problems, "error", body), problemList("Warnings", d.warnings, "warning", body), none, entry.slot);
  if (body) {
    for (const p of d.problems) mark(body, p.path, "hl-error");
    for (const p of d.warnings) mark(body, p.path, "hl-warning");
  }
  const right = body
    ? h("div", { class: "kept" }, h("h4", {}, `Body as ${silent ? "dropped" : "refused"} (personal data hashed or dropped, as at ingest)`), body.root)
    : d.status >= 400
      ? h("div", { class: "kept" }, h("h4", {}, "Body"), h("p", { class: "muted" }, "Not kept: this request was refused before its body was read."))
      : null;
  box.replaceChildren(...[note, h("div", { class: right ? "split" : "" }, left, right)].filter(Boolean));
}

function storedEvents(d) {
  if (!d.events.length) return d.status < 400 && d.events_stored ? h("p", { class: "muted" }, "Its events are no longer stored.") : null;
  return h(
    "div",
    { class: "stored-events" },
    h("h4", {}, `Stored events (${d.events.length})`),
    h("ul", {}, d.events.map((e) => h("li", {}, h("a", { href: `#event/${e.id}`, class: "event-link" }, `${e.name} #${e.id}`), e.dedupe_id ? h("span", { class: "muted" }, ` dedupe_id ${e.dedupe_id}`) : null, " ", h("span", { class: `state ${e.status}` }, e.status)))),
  );
}

function problemList(title, problems, kind, body) {
  const table = problemTable(title, problems, kind);
  if (!table || !body) return table;
  const rows = table.querySelectorAll("tbody tr");
  problems.forEach((p, i) => {
    const target = body.find(p.path);
    if (!target) return;
    rows[i].classList.add("linked");
    rows[i].title = "Show it in the body";
    rows[i].addEventListener("click", (ev) => {
      ev.stopPropagation();
      target.scrollIntoView({ block: "nearest" });
      target.classList.remove("flash");
      void target.offsetWidth;
      target.classList.add("flash");
    });
  });
  return table;
}

// A JSON value drawn as text, each value in a span that knows its path (events[0].data.currency).
function jsonView(value) {
  const byPath = new Map();
  const pre = h("pre", { class: "json body" });
  function walk(v, path, indent, parent) {
    const span = h("span", { class: "v", "data-path": path });
    byPath.set(path, span);
    const add = (text, cls) => span.append(cls ? h("span", { class: cls }, text) : document.createTextNode(shown(text)));
    if (Array.isArray(v) || (v && typeof v === "object")) {
      const isArray = Array.isArray(v);
      const entries = isArray ? v.map((x, i) => [i, x]) : Object.entries(v);
      add(isArray ? "[" : "{");
      entries.forEach(([k, x], i) => {
        add("\n" + "  ".repeat(indent + 1));
        if (!isArray) {
          add(JSON.stringify(k), "k");
          add(": ");
        }
        const child = isArray ? `${path}[${k}]` : path ? `${path}.${k}` : String(k);
        walk(x, child, indent + 1, span);
        if (i < entries.length - 1) add(",");
      });
      add(entries.length ? "\n" + "  ".repeat(indent) + (isArray ? "]" : "}") : isArray ? "]" : "}");
    } else {
      add(typeof v === "string" ? JSON.stringify(v) : String(v), typeof v === "string" ? "s" : "n");
    }
    parent.append(span);
  }
  if (typeof value === "string") pre.append(value);
  else walk(value, "", 0, pre);
  return {
    root: pre,
    // The span of a path, or of its nearest ancestor that is in the body (a missing field).
    find(path) {
      let p = path || "";
      while (true) {
        if (byPath.has(p)) return byPath.get(p);
        if (!p) return null;
        const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
        p = cut > 0 ? p.slice(0, cut) : "";
      }
    },
  };
}

function mark(body, path, cls) {
  const target = body.find(path);
  if (!target) return;
  target.classList.add(cls);
  if ((target.dataset.path || "") !== (path || "")) target.classList.add("hl-parent");
}

async function renderPinned() {
  const rqBox = document.getElementById("rq-pinned");
  const evBox = document.getElementById("ev-pinned");
  rqBox.replaceChildren();
  evBox.replaceChildren();
  const pin = state.pinned;
  if (!pin) return;
  const back = document.querySelector(`#tabs a[data-view=${pin.kind === "request" ? "requests" : "events"}]`);
  const close = h("button", { type: "button", class: "unpin", onclick: () => (location.hash = back.getAttribute("href")) }, "Close");
  if (pin.kind === "request") {
    const box = h("div", { class: "request-detail" }, h("p", { class: "muted" }, "…"));
    rqBox.replaceChildren(h("div", { class: "pinned" }, h("header", {}, h("h3", {}, `Request ${pin.id}`), close), box));
    fillRequestDetail(pin.id, box);
  } else {
    let response;
    try {
      response = await api(`/api/events/${encodeURIComponent(pin.id)}`);
    } catch (err) {
      failed(err);
      evBox.replaceChildren(h("div", { class: "pinned" }, h("header", {}, h("h3", {}, `Event ${pin.id}`), close), h("p", { class: "muted" }, `Not loaded: ${err.message}. Reload the page to retry.`)));
      return;
    }
    if (!response.ok) {
      evBox.replaceChildren(h("div", { class: "pinned" }, h("header", {}, h("h3", {}, `Event ${pin.id}`), close), h("p", { class: "muted" }, "No such event (it may have been pruned).")));
      return;
    }
    const e = await response.json();
    evBox.replaceChildren(h("div", { class: "pinned", "data-event-id": e.id }, h("header", {}, h("h3", {}, `Event ${e.id}: ${e.name}`), close), eventPanel(e)));
  }
}

// --- events --------------------------------------------------------------------------------

function eventFilters() {
  const form = document.getElementById("ev-filters");
  const data = new FormData(form);
  const ms = localMs;
  return {
    ...sourceChoice(data.get("source")),
    name: String(data.get("name") || "").trim(),
    test_tag: String(data.get("test_tag") || "").trim(),
    status: data.get("status"),
    since: ms(data.get("since")),
    until: ms(data.get("until")),
  };
}

async function loadEvents(older) {
  const ev = state.events;
  if (ev.problems?.length) {
    ev.shown = null;
    renderEventsError(ev);
    return;
  }
  const params = { ...ev.params, limit: PAGE };
  if (older) params.cursor = ev.next;
  const page = await (await api("/api/events" + query(params))).json();
  if (page.status === "error") {
    ev.shown = null;
    renderEventsError(page);
    return;
  }
  if (older) {
    ev.rows = ev.rows.concat(page.events);
    ev.next = page.next;
    ev.older = true;
  } else if (ev.older && !gap(ev.rows, page.events, page.next)) {
    const known = new Set(ev.rows.map((e) => e.id));
    ev.rows = page.events.filter((e) => !known.has(e.id)).concat(ev.rows);
  } else {
    ev.older = false;
    ev.rows = page.events;
    ev.next = page.next;
  }
  const shown = ev.rows.map((e) => `${e.id}:${e.status}`).join(",");
  if (shown !== ev.shown) {
    ev.shown = shown;
    renderEvents();
  }
  await refreshAttempts();
}

function renderEventsError(page) {
  document.getElementById("ev-more").hidden = true;
  const tbody = document.querySelector("#events tbody");
  tbody.replaceChildren(h("tr", {}, h("td", { colspan: 7 }, problemTable("Filter problems", page.problems, "error"))));
}

function renderEvents() {
  const ev = state.events;
  const tbody = document.querySelector("#events tbody");
  const rows = [];
  const names = new Set();
  for (const e of ev.rows) {
    names.add(e.name);
    const toggle = () => {
      ev.open.has(e.id) ? ev.open.delete(e.id) : ev.open.add(e.id);
      renderEvents();
    };
    rows.push(
      h(
        "tr",
        { class: `event${e.id > ev.seen && ev.seen ? " new" : ""}`, "data-id": e.id, tabindex: 0, onclick: toggle,
          onkeydown: (k) => (k.key === "Enter" ? toggle() : null) },
        h("td", { class: "time", title: stamp(e.received_at) }, dayTime(e.received_at)),
        h("td", {}, shownId(e.source)),
        h("td", { class: "name" }, e.name),
        h("td", {}, h("span", { class: `state ${e.status}` }, e.status)),
        h("td", { class: "tagcol" }, e.test_tag ? h("span", { class: "tag" }, e.test_tag) : "–"),
        h("td", { class: "mono dedupe" }, e.dedupe_id || "–"),
        h("td", { class: "time evtime" }, stamp(e.event_time)),  // sent by the client: any day, any year
      ),
    );
    if (ev.open.has(e.id)) rows.push(eventDetail(e));
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No events match.")));
  tbody.replaceChildren(...rows);
  if (ev.rows.length) ev.seen = Math.max(ev.seen, ev.rows[0].id);
  const datalist = document.getElementById("ev-names");
  if (datalist.children.length < names.size) datalist.replaceChildren(...[...names].sort().map((n) => h("option", { value: n })));
  document.getElementById("ev-more").hidden = !ev.next;
}

function dedupeStatus(e) {
  if (!e.dedupe_id) return "No dedupe_id: every copy of this event would be stored.";
  const until = e.received_at + state.dedupeDays * 86400000;
  // A test event's dedupe_id counts within its source and tag (events.dedupe_scope): it never
  // makes a real event, nor another tag's, a duplicate. An AppsFlyer one within its event name
  // too (an af_refund carries its af_purchase's af_order_id).
  const events = e.api === "appsflyer" ? `${e.name} events` : "events";
  const scope = e.test_tag ? `test ${events} of ${shownId(e.source)} tagged ${e.test_tag}` : e.api === "appsflyer" ? `${events} of ${shownId(e.source)}` : shownId(e.source);
  const apart = e.test_tag ? " A real event, or a test event of another tag, with this id is stored." : "";
  if (Date.now() < until) {
    return `The first event with this dedupe_id for ${scope}: copies sent until ${stamp(until)} are acknowledged as duplicates and not stored.${apart}`;
  }
  return `This dedupe_id was remembered for ${scope} until ${stamp(until)}; a copy sent now would be stored again.`;
}

function eventDetail(e) {
  return h("tr", { class: "detail" }, h("td", { colspan: 7 }, eventPanel(e)));
}

function eventPanel(e) {
  const attempts = h("div", { class: "attempts", "data-event-id": e.id }, h("h4", {}, "Delivery"), h("p", { class: "muted" }, "…"));
  state.attemptBoxes.set(e.id, { box: attempts, event: e, shown: null });
  fetchAttempts(e.id);
  return h(
    "div",
    { class: "split" },
    h("div", {}, h("h4", {}, "Stored payload (normalised; identifiers hashed)"), h("pre", { class: "json" }, JSON.stringify(e.payload, null, 2))),
    h(
      "div",
      {},
      h("h4", {}, "Dedupe"),
      h("p", {}, dedupeStatus(e)),
      h("dl", { class: "facts" },
        h("dt", {}, "Event id"), h("dd", {}, e.id),
        h("dt", {}, "API"), h("dd", {}, e.api),
        h("dt", {}, "Request"), h("dd", {}, h("a", { href: `#request/${e.request_id}`, class: "request-link", onclick: (ev) => ev.stopPropagation() }, e.request_id)),
        h("dt", {}, "Event time"), h("dd", {}, stamp(e.event_time)),
        h("dt", {}, "Received"), h("dd", {}, stamp(e.received_at))),
      attempts,
    ),
  );
}

// Every open attempts panel is read again on every poll: a pending event's attempts keep coming.
async function refreshAttempts() {
  for (const [id, entry] of state.attemptBoxes) {
    if (!entry.box.isConnected) state.attemptBoxes.delete(id);
    else await fetchAttempts(id);
  }
}

async function fetchAttempts(id) {
  const entry = state.attemptBoxes.get(id);
  if (!entry) return;
  const { box } = entry;
  const say = (text) => [h("h4", {}, "Delivery"), h("p", { class: "muted" }, text)];
  let content;
  let signature;
  if (entry.event.status === "stored") {
    signature = "stored";
    content = say("Not relayed: its source has no relay (or it was sent in test mode).");
  } else {
    const response = await api(`/api/events/${id}`);
    if (!response.ok) {
      signature = `error ${response.status}`;
      content = say(`No delivery attempts recorded (${response.status}).`);
    } else {
      const detail = await response.json();
      const tries = detail.attempts || [];
      signature = `${detail.status}:${tries.map((a) => a.id).join(",")}`;
      content = tries.length ? attemptTable(detail.status, tries) : say(`State: ${detail.status}. No attempt yet.`);
    }
  }
  if (signature === entry.shown) return; // unchanged: leave it (and any selection) alone
  entry.shown = signature;
  box.dataset.signature = signature;
  box.replaceChildren(...content);
}

function attemptTable(status, tries) {
  return [
    h("h4", { class: "attempt-count" }, `Delivery: ${status}, ${plural(tries.length, "attempt")}`),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "attempt-table" },
        h("thead", {}, h("tr", {}, ["Time", "Destination", "Result", "Status", "Latency", "Upstream answer"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          tries.map((a) =>
            h(
              "tr",
              { class: "attempt" },
              h("td", { class: "time" }, stamp(a.at)),
              h("td", {}, a.destination),
              h("td", {}, h("span", { class: `state ${a.result}` }, a.result)),
              h("td", {}, a.status ?? "–"),
              h("td", { class: "num" }, `${Number(a.latency_ms).toFixed(0)} ms`),
              h("td", {}, a.error ? h("div", { class: "error" }, a.error) : null,
                a.response_body.length > 120
                  ? h("details", {}, h("summary", {}, `${a.response_body.length} bytes`), h("pre", {}, a.response_body))
                  : a.response_body ? h("code", { class: "answer" }, a.response_body) : null),
            ),
          ),
        ),
      ),
    ),
  ];
}

// --- overview ------------------------------------------------------------------------------

async function loadOverview() {
  const windowMs = Number(document.getElementById("ov-window").value);
  const now = Date.now();
  const bucket = Math.max(1000, Math.floor(windowMs / 60));
  const since = now - windowMs;
  const stats = await (await api("/api/stats" + query({ since, until: now, bucket }))).json();
  state.lastOverview = Date.now();
  renderRelay(stats);
  renderCards(stats);
}

function renderRelay(stats) {
  const box = document.getElementById("relay");
  if (stats.relay === null) {
    box.replaceChildren(h("p", { class: "muted" }, "Relay: this store keeps no outbox."));
    return;
  }
  if (!stats.relay.length) {
    box.replaceChildren(h("p", { class: "muted" }, "Relay: no destination has events yet (a source relays once it has a [relay] section)."));
    return;
  }
  const rows = stats.relay.map((d) => {
    const lag = d.oldest_pending_at ? Math.max(0, (stats.now - d.oldest_pending_at) / 1000) : 0;
    const series = state.lag.get(d.destination) || [];
    series.push([stats.now, lag]);
    while (series.length > 120) series.shift();
    state.lag.set(d.destination, series);
    const watched = state.replays.get(d.destination);
    if (watched) followReplay(watched, d);
    const replay = [
      d.dead ? h("button", { type: "button", class: "replay", onclick: (ev) => replayDead(d, ev.target) }, `Replay ${plural(d.dead, "dead letter")}`) : null,
      watched ? replayStatus(watched) : null,
    ];
    return h(
      "tr",
      { "data-destination": d.destination },
      h("td", { class: "mono" }, d.destination),
      h("td", { class: "num" }, d.pending),
      h("td", { class: "num" }, d.delivered),
      h("td", { class: `num${d.dead ? " dead" : ""}` }, d.dead),
      h("td", { class: "num" }, d.pending ? duration(lag) : "–"),
      h("td", {}, sparkline(series.map((p) => p[1]), "lag")),
      h("td", {}, replay),
    );
  });
  box.replaceChildren(
    h("h3", {}, "Relay"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "grid relay" },
        h("thead", {}, h("tr", {}, ["Destination", "Pending", "Delivered", "Dead letters", "Lag", "Lag (this page)", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows),
      ),
    ),
  );
}

// A replay stays on the page until its events settle: how many were queued again, then how
// many of them were delivered and how many died again, from the destination's counters.
async function replayDead(d, button) {
  button.disabled = true;
  const response = await api("/api/replay", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ destination: d.destination }),
  });
  const body = await response.json().catch(() => ({}));
  const previous = state.replays.get(d.destination);
  state.replays.set(d.destination, {
    destination: d.destination,
    at: Date.now(),
    ok: response.ok,
    error: response.ok ? null : body.message || `HTTP ${response.status}`,
    requeued: body.requeued ?? 0,
    count: (previous ? previous.count : 0) + 1,
    delivered0: d.delivered,
    delivered: 0,
    dead: 0,
    pending: body.requeued ?? 0,
    settled: !response.ok || !body.requeued,
  });
  state.lastOverview = 0;
  await refresh(true);
}

function followReplay(r, d) {
  if (r.settled || !r.ok) return;
  r.delivered = Math.min(r.requeued, Math.max(0, d.delivered - r.delivered0));
  r.dead = Math.min(r.requeued - r.delivered, d.dead);
  r.pending = r.requeued - r.delivered - r.dead;
  r.settled = r.pending <= 0 || d.pending === 0;
}

function replayStatus(r) {
  const when = clock(r.at);
  const which = r.count > 1 ? `Replay #${r.count}` : "Replay";
  if (!r.ok) return h("div", { class: "replay-status bad" }, `${which} at ${when} failed: ${r.error}`);
  const outcome = `${r.delivered} delivered, ${r.dead} dead again, ${r.pending} pending`;
  const text = r.settled
    ? `${which} at ${when}: ${plural(r.requeued, "event")} queued again; settled: ${outcome}.`
    : `${which} at ${when}: ${plural(r.requeued, "event")} queued again; next attempts: ${outcome}…`;
  return h("div", { class: `replay-status ${r.settled ? (r.dead ? "bad" : "ok") : "busy"}`, "data-count": r.count }, text);
}

function overviewPollMs() {
  for (const r of state.replays.values()) if (!r.settled) return POLL_MS; // follow a replay closely
  return OVERVIEW_POLL_MS;
}

function sparkline(values, kind) {
  const width = 120;
  const height = 24;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / max) * (height - 2) - 1).toFixed(1)}`);
  return svg("svg", { class: `spark ${kind}`, width, height, viewBox: `0 0 ${width} ${height}` }, svg("polyline", { points: points.join(" ") }));
}

// A series' label agrees with its number where it is a noun ("1 warning", "2 warnings").
const seriesWord = (k, n) => (n === 1 && k.one ? k.one : k.label);

function barChart(title, slots, series, since, bucket) {
  const width = 280;
  const height = 48;
  const n = slots.length;
  const w = width / n;
  const max = Math.max(1, ...slots.map((s) => series.reduce((sum, k) => sum + s[k.key], 0)));
  const bars = [];
  slots.forEach((s, i) => {
    let y = height;
    for (const k of series) {
      const v = s[k.key];
      if (!v) continue;
      const bh = Math.max(1, (v / max) * (height - 4));
      y -= bh;
      const label = `${dayTime(since + i * bucket)}: ${v} ${seriesWord(k, v)}`;
      bars.push(svg("rect", { x: (i * w + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(1, w - 1).toFixed(1), height: bh.toFixed(1), class: k.cls }, svg("title", {}, label)));
    }
  });
  const total = series.map((k) => {
    const sum = slots.reduce((all, s) => all + s[k.key], 0);
    return `${sum} ${seriesWord(k, sum)}`;
  }).join(" · ");
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, h("span", {}, title), h("span", { class: "total" }, total)),
    svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": `${title}: ${total}` },
      svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" }), bars),
  );
}

function renderCards(stats) {
  const bucket = stats.bucket_ms;
  const start = Math.floor(stats.since / bucket) * bucket;
  const count = Math.max(1, Math.ceil((stats.until - start) / bucket));
  const empty = () => ({ requests: 0, failed_requests: 0, events_accepted: 0, events_refused: 0, events_duplicate: 0, warnings: 0, dead_letters: 0 });
  // One card per source, keyed by api and id: an Axon pixel and an AppsFlyer app may share an id.
  const bySource = new Map(state.sources.map((s) => [sourceKey(s.api, s.id), { source: s.id, info: s, slots: Array.from({ length: count }, empty) }]));
  for (const b of stats.buckets) {
    const key = bucketKey(b);
    if (!bySource.has(key)) bySource.set(key, { source: b.source ?? NAMELESS[b.api]?.id ?? "(no source)", info: null, slots: Array.from({ length: count }, empty) });
    const i = Math.floor((b.start_ms - start) / bucket);
    if (i < 0 || i >= count) continue;
    const slot = bySource.get(key).slots[i];
    for (const k of Object.keys(slot)) slot[k] += b[k];
  }
  const relays = new Map((stats.relay || []).map((d) => [d.destination, d]));
  const entries = [...bySource.values()].map(({ source, info, slots }) => {
    const sum = (k) => slots.reduce((acc, s) => acc + s[k], 0);
    return { source, info, slots, sum, busy: sum("requests") + sum("dead_letters") };
  });
  entries.sort((a, b) => (b.busy > 0) - (a.busy > 0)); // active sources first, config order kept
  const cards = entries.map(({ source, info, slots, sum, busy }) => {
    const nameless = Object.values(NAMELESS).find((n) => n.id === source);
    const kind = info ? (info.api === "axon" ? `Axon · ${info.profile}` : "AppsFlyer") : nameless ? nameless.kind : "not configured";
    const relay = info ? relays.get(`${info.api}:${info.id}`) : null;
    const head = h("header", {}, h("h3", {}, nameless ? source : shownId(source)), h("span", { class: "kind" }, kind));
    const relayLine = relay
      ? h("p", { class: "relay-line" }, `Relay: ${relay.pending} pending, ${relay.delivered} delivered, `,
          h("span", { class: relay.dead ? "dead" : "" }, `${relay.dead} dead`))
      : null;
    const api = info ? info.api : null;
    if (!busy) return h("article", { class: "card idle", "data-source": source, "data-api": api }, head, h("p", { class: "totals" }, "No requests in this window."), relayLine);
    return h(
      "article",
      { class: "card", "data-source": source, "data-api": api },
      head,
      h(
        "p",
        { class: "totals" },
        h("b", {}, sum("requests")), ` ${noun(sum("requests"), "request")}, `,
        h("b", { class: sum("failed_requests") ? "bad" : "" }, sum("failed_requests")), " failed",
      ),
      relayLine,
      h(
        "div",
        { class: "charts" },
        barChart("Events", slots, [
          { key: "events_accepted", label: "accepted", cls: "accepted" },
          // AppsFlyer's silent drop (an iOS id without "id") counts here, on the app's card.
          { key: "events_refused", label: info && info.api === "appsflyer" ? "refused or dropped" : "refused", cls: "refused" },
        ], start, bucket),
        barChart("Duplicates", slots, [{ key: "events_duplicate", label: "duplicates", one: "duplicate", cls: "duplicate" }], start, bucket),
        barChart("Warnings", slots, [{ key: "warnings", label: "warnings", one: "warning", cls: "warning" }], start, bucket),
        barChart("Dead letters", slots, [{ key: "dead_letters", label: "dead", cls: "dead" }], start, bucket),
      ),
    );
  });
  const rows = [unknownRow(stats.unknown), otherRow(stats.other)].filter(Boolean);
  document.getElementById("cards").replaceChildren(...cards, ...rows);
}

const sourceKey = (api, id) => `${api}:${id}`;

// The card a bucket counts on: its source's, by api and id; a source's totals kept before
// their api was (api null) go to the source configured with that id; the ingest calls that
// named no source, to their API's nameless card.
function bucketKey(b) {
  if (b.source === null) return `nameless:${b.api}`;
  if (b.api) return sourceKey(b.api, b.source);
  const info = state.sources.find((s) => s.id === b.source);
  return info ? sourceKey(info.api, info.id) : sourceKey("", b.source);
}

// Ingest calls that did not say their pixel or app: a card each API, named for what is missing.
// An Axon call with pixel_id given twice names no single pixel either (which was meant is not
// for the gateway to guess): the journal keeps no source of it, and its card says so; it said
// "Axon calls without a pixel_id" of ?pixel_id=a&pixel_id=b (a trial). AppsFlyer's app id is
// the path's, never given twice.
const NAMELESS = {
  axon: { id: "(no single pixel_id)", kind: "Axon calls whose pixel_id was missing or given more than once" },
  appsflyer: { id: "(no app_id)", kind: "AppsFlyer calls without an app id" },
};

// Requests that called no ingest API (logins, unknown paths): no source's, so one line, no card.
function otherRow(other) {
  if (!other || !other.requests) return null;
  return h(
    "article",
    { class: "card other-requests", "data-source": "(other)" },
    h("header", {}, h("h3", {}, "other requests"), h("span", { class: "kind" }, "not from a source")),
    h("p", { class: "totals" }, h("b", {}, other.requests), ` ${noun(other.requests, "request")} to no ingest API (logins, unknown paths), `,
      h("b", { class: other.failed ? "bad" : "" }, other.failed), " failed"),
  );
}

// Requests naming a pixel or app that is not configured: one row, however many ids (a scan of
// random ids would otherwise be one card each).
function unknownRow(unknown) {
  if (!unknown || !unknown.requests) return null;
  const top = unknown.top.map((t) => `${shownId(t.id)} (${t.requests})`).join(", ");
  const more = unknown.ids > unknown.top.length ? ` and ${unknown.ids - unknown.top.length} more` : "";
  return h(
    "article",
    { class: "card unknown-sources", "data-source": "(unknown)" },
    h("header", {}, h("h3", {}, "unknown sources"), h("span", { class: "kind" }, "not configured")),
    h("p", { class: "totals" }, h("b", {}, unknown.requests), ` ${noun(unknown.requests, "request")} from ${plural(unknown.ids, "unknown id")}; top ids: ${top}${more}`),
  );
}

// --- will it match? --------------------------------------------------------------------

// A share (0 to 1) as capigate/inspector/quality.py's percent says it, the same text for every
// share: whole, but one that is not whole never reads "100 %" or "0 %" (0.9998 with a dedupe_id
// read "100 %", a trial): "99.98 %", "0.4 %", past two decimals ">99.99 %" / "<0.01 %".
function pct(share) {
  if (share <= 0) return "0 %";
  if (share >= 1) return "100 %";
  const shown = share * 100;
  const whole = Math.floor(shown + 0.5);
  if (whole > 0 && whole < 100) return `${whole} %`;
  for (const places of [1, 2]) {
    const scale = 10 ** places;
    const n = Math.floor(shown * scale + 0.5);
    if (n > 0 && n < 100 * scale) return `${Math.floor(n / scale)}.${String(n % scale).padStart(places, "0")} %`;
  }
  return shown < 50 ? "<0.01 %" : ">99.99 %";
}
const KEY_LABELS = { ip_ua: "IP + user agent" };

async function loadQuality() {
  const windowMs = Number(document.getElementById("q-window").value);
  const until = Date.now();
  const params = { ...sourceChoice(document.getElementById("q-source").value), since: until - windowMs, until };
  const report = await (await api("/api/quality" + query(params))).json();
  state.lastQuality = Date.now();
  renderQuality(report);
}

function renderQuality(report) {
  const box = document.getElementById("quality");
  if (!report.groups.length) {
    box.replaceChildren(h("p", { class: "muted" }, `No accepted events from ${stamp(report.since)} to ${stamp(report.until)}.`));
    return;
  }
  box.replaceChildren(
    h("p", { class: "muted window" }, `From ${stamp(report.since)} to ${stamp(report.until)}.`),
    h("div", { class: "quality-cards" }, report.groups.map(qualityCard)),
  );
}

function qualityCard(g) {
  const coverage = h(
    "table",
    { class: "coverage" },
    h("thead", {}, h("tr", {}, h("th", {}, "Match key"), h("th", {}, "Carried by"), h("th", { class: "num", title: "sent as is (never hashed)" }, "as sent"), h("th", { class: "num", title: "sent plain, hashed by capigate" }, "hashed here"), h("th", { class: "num", title: "sent as a SHA-256 digest" }, "pre-hashed"), h("th", { class: "num" }, "missing"))),
    h(
      "tbody",
      {},
      g.coverage.map((c) =>
        h(
          "tr",
          { "data-key": c.key },
          h("td", { class: "mono" }, KEY_LABELS[c.key] || c.key),
          h("td", { class: "share" }, h("span", { class: "bar" }, h("span", { style: null, class: "fill", "data-share": c.share })), h("span", { class: "pct" }, pct(c.share))),
          h("td", { class: "num sent" }, c.sent),
          h("td", { class: "num hashed-here" }, c.hashed_here),
          h("td", { class: "num already-hashed" }, c.already_hashed),
          h("td", { class: "num missing" }, c.missing),
        ),
      ),
    ),
  );
  for (const fill of coverage.querySelectorAll(".fill")) fill.style.width = `${Number(fill.dataset.share) * 100}%`;
  return h(
    "article",
    { class: `card quality ${g.verdict}`, "data-source": g.source, "data-api": g.api, "data-name": g.name },
    h("header", {}, h("h3", {}, `${shownId(g.source)} · ${g.name}`), h("span", { class: `verdict ${g.verdict}` }, g.verdict)),
    h("p", { class: "totals" },
      h("b", { class: "events" }, g.events), " events stored · ",
      h("b", { class: "dedupe-share" }, pct(g.with_dedupe_id)), " with a dedupe_id · ",
      h("b", { class: "duplicates" }, g.duplicates), " duplicates caught"),
    g.reasons.length
      ? h("ul", { class: "reasons" }, g.reasons.map((r) => h("li", { class: r.level, "data-rule": r.rule }, r.text)))
      : h("p", { class: "reasons good" }, "Every rule is met: these events carry what a match needs."),
    h("div", { class: "table-wrap" }, coverage),
  );
}

// --- send a test event ---------------------------------------------------------------------

function currentSource() {
  const { source, api } = sourceChoice(document.getElementById("send-source").value);
  return state.sources.find((s) => s.id === source && s.api === api);
}

function fillExamples() {
  const source = currentSource();
  const select = document.getElementById("send-example");
  select.replaceChildren(...(source ? source.examples.map((e, i) => h("option", { value: i }, e.name)) : []));
  fillBody();
}

function fillBody() {
  const source = currentSource();
  const example = source && source.examples[Number(document.getElementById("send-example").value || 0)];
  document.getElementById("send-body").value = example ? example.body : "";
}

async function reloadExamples() {
  const page = await (await api("/api/sources")).json();
  state.sources = page.sources;
  fillBody();
}

async function sendTestEvent(event) {
  event.preventDefault();
  const button = document.getElementById("send-button");
  const out = document.getElementById("send-result");
  button.disabled = true;
  try {
    const response = await api("/api/test-event", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...sourceChoice(document.getElementById("send-source").value), body: document.getElementById("send-body").value }),
    });
    const answer = await response.json();
    if (!response.ok) {
      out.replaceChildren(problemTable("The test event could not be sent", answer.problems || [], "error") || h("p", {}, answer.message));
      return;
    }
    let body = answer.body;
    let parsed = null;
    try {
      parsed = JSON.parse(body);
      body = JSON.stringify(parsed, null, 2);
    } catch (_) {
      /* AppsFlyer's plain-text answers */
    }
    const ok = answer.status < 400;
    out.replaceChildren(
      h(
        "div",
        { class: `result ${ok ? "ok" : "bad"}` },
        h("h3", {}, `capigate answered `, h("span", { class: `badge ${ok ? "ok" : "bad"}`, id: "send-status" }, String(answer.status))),
        parsed && parsed.problems ? problemTable("Problems", parsed.problems, "error") : null,
        parsed && parsed.warnings ? problemTable("Warnings", parsed.warnings, "warning") : null,
        h("details", { open: !parsed || (!parsed.problems?.length && !parsed.warnings?.length) }, h("summary", {}, "Response body"), h("pre", { class: "json" }, body)),
        h("p", {}, h("a", { href: "#requests" }, "See it under Requests"), " · ", h("a", { href: "#events" }, "under Events")),
      ),
    );
    await reloadExamples(); // a fresh dedupe_id for the next click
  } catch (err) {
    failed(err);
    out.replaceChildren(h("div", { class: "result bad" }, h("h3", {}, "Not sent"), h("p", {}, `The gateway did not take the test event: ${err.message}`)));
  } finally {
    button.disabled = false;
  }
}

// --- start ---------------------------------------------------------------------------------

// Opened while the store is away, the page waits for it, saying so: the sources' answer is
// what every view is built from (a tab opened during an outage stayed blank under "live").
async function start() {
  let page;
  for (;;) {
    try {
      page = await (await api("/api/sources")).json();
      break;
    } catch (err) {
      failed(err);
      if (err.message === "logged out") return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  state.sources = page.sources;
  state.dedupeDays = page.dedupe_retention_days;
  fillSourceSelects();
  fillExamples();

  document.getElementById("send-source").addEventListener("change", fillExamples);
  document.getElementById("send-example").addEventListener("change", fillBody);
  document.getElementById("send-reset").addEventListener("click", fillBody);
  document.getElementById("send-form").addEventListener("submit", sendTestEvent);

  const rqFilters = document.getElementById("rq-filters");
  const requestsChanged = () => filtersChanged("requests");
  rqFilters.addEventListener("submit", (e) => {
    e.preventDefault();
    requestsChanged();
  });
  rqFilters.addEventListener("reset", () => setTimeout(requestsChanged, 0));
  document.getElementById("rq-source").addEventListener("change", requestsChanged);
  document.getElementById("rq-status").addEventListener("change", requestsChanged);
  document.getElementById("rq-more").addEventListener("click", (e) => older(e.currentTarget, loadRequests));
  const filters = document.getElementById("ev-filters");
  const eventsChanged = () => filtersChanged("events");
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    eventsChanged();
  });
  filters.addEventListener("reset", () => setTimeout(eventsChanged, 0));
  filters.querySelector("[name=source]").addEventListener("change", eventsChanged);
  filters.querySelector("[name=status]").addEventListener("change", eventsChanged);
  document.getElementById("ev-more").addEventListener("click", (e) => older(e.currentTarget, loadEvents));
  document.getElementById("ov-window").addEventListener("change", () => refresh(true));
  document.getElementById("q-window").addEventListener("change", () => refresh(true));
  document.getElementById("q-source").addEventListener("change", () => refresh(true));

  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  document.addEventListener("visibilitychange", () => refresh(true));
  show(location.hash.slice(1) || "requests");
  setInterval(() => refresh(false), POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
