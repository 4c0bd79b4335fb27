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
  requests: { rows: [], next: null, older: false, open: new Set(), seen: 0, shown: null },
  events: { rows: [], next: null, older: false, open: new Set(), seen: 0, shown: null, params: {}, attempts: new Map() },
  lag: new Map(), // destination -> [[time, seconds]] sampled while the page is open
  lastOverview: 0,
};

// --- small helpers -------------------------------------------------------------------------

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
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
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
  return response;
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
function dayTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? clock(ms) : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}
function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

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

function show(view) {
  if (!document.getElementById(`view-${view}`)) view = "requests";
  state.view = view;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.view === view);
  refresh(true);
}

async function refresh(force) {
  if (document.hidden && !force) return;
  const live = document.getElementById("live");
  try {
    if (state.view === "requests") await loadRequests(false);
    else if (state.view === "events") await loadEvents(false);
    else if (state.view === "overview" && (force || Date.now() - state.lastOverview >= OVERVIEW_POLL_MS)) await loadOverview();
    live.classList.remove("down");
    live.textContent = "live";
  } catch (err) {
    if (err.message !== "logged out") {
      live.classList.add("down");
      live.textContent = "offline";
    }
  }
}

function fillSourceSelects() {
  for (const select of [document.getElementById("rq-source"), document.querySelector("#ev-filters [name=source]")]) {
    for (const s of state.sources) select.append(h("option", { value: s.id }, s.id));
  }
  const send = document.getElementById("send-source");
  for (const s of state.sources) {
    const kind = s.api === "axon" ? `Axon pixel, ${s.profile}` : "AppsFlyer app";
    send.append(h("option", { value: s.id }, `${s.id} (${kind})`));
  }
}

// --- requests ------------------------------------------------------------------------------

function requestFilters() {
  const status = document.getElementById("rq-status").value.trim();
  return { source: document.getElementById("rq-source").value, status: /^\d{3}$/.test(status) ? status : "" };
}

async function loadRequests(older) {
  const rq = state.requests;
  const params = { ...requestFilters(), limit: PAGE };
  if (older) params.cursor = rq.next;
  const page = await (await api("/api/requests" + query(params))).json();
  if (older) {
    rq.rows = rq.rows.concat(page.requests);
    rq.next = page.next;
    rq.older = true;
  } else if (rq.older) {
    const known = new Set(rq.rows.map((r) => r.id));
    rq.rows = page.requests.filter((r) => !known.has(r.id)).concat(rq.rows);
  } else {
    rq.rows = page.requests;
    rq.next = page.next;
  }
  const shown = rq.rows.map((r) => r.id).join(",");
  if (shown === rq.shown) return; // nothing new: leave the table (and any selection) alone
  rq.shown = shown;
  renderRequests();
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
        { class: classes.filter(Boolean).join(" "), "data-id": r.id, "data-status": r.status, tabindex: 0, onclick: toggle,
          onkeydown: (e) => (e.key === "Enter" ? toggle() : null) },
        h("td", { class: "time", title: stamp(r.received_at) }, dayTime(r.received_at)),
        h("td", {}, r.source || "–", r.test_tag ? h("span", { class: "tag" }, r.test_tag) : null),
        h("td", { class: "endpoint" }, `${r.method} ${r.path}`),
        h("td", { class: "status" }, statusBadge(r.status, silent, r.warnings.length)),
        h("td", { class: "ua", title: r.user_agent || "" }, r.user_agent || "–"),
        h("td", { class: "num" }, eventsCell(r)),
        h("td", { class: "num" }, `${r.latency_ms.toFixed(1)} ms`),
      ),
    );
    if (rq.open.has(r.id)) rows.push(requestDetail(r, silent));
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No requests yet. Send one from the “Send a test event” tab.")));
  tbody.replaceChildren(...rows);
  rq.seen = Math.max(rq.seen, newest);
  document.getElementById("rq-more").hidden = !rq.next;
}

function requestDetail(r, silent) {
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Request id"), h("dd", {}, r.request_id),
    h("dt", {}, "Received"), h("dd", {}, stamp(r.received_at)),
    h("dt", {}, "Client IP"), h("dd", {}, r.client_ip || "–"),
    h("dt", {}, "API"), h("dd", {}, r.api),
    r.test_tag ? [h("dt", {}, "Test tag"), h("dd", {}, r.test_tag)] : null,
  );
  const note = silent
    ? h("p", { class: "silent-note" },
        "AppsFlyer answers 200 OK to this request and drops the event without a word: the app id lacks the “id” prefix of iOS apps. capigate did not store it either.")
    : null;
  const none = !r.problems.length && !r.warnings.length ? h("p", { class: "muted" }, "No problems, no warnings.") : null;
  return h(
    "tr",
    { class: "detail" },
    h("td", { colspan: 7 }, note, facts, problemTable("Problems", r.problems, "error"), problemTable("Warnings", r.warnings, "warning"), none),
  );
}

// --- events --------------------------------------------------------------------------------

function eventFilters() {
  const form = document.getElementById("ev-filters");
  const data = new FormData(form);
  const ms = (v) => (v ? String(new Date(v).getTime()) : "");
  return {
    source: data.get("source"),
    name: String(data.get("name") || "").trim(),
    test_tag: String(data.get("test_tag") || "").trim(),
    status: data.get("status"),
    since: ms(data.get("since")),
    until: ms(data.get("until")),
  };
}

async function loadEvents(older) {
  const ev = state.events;
  const params = { ...ev.params, limit: PAGE };
  if (older) params.cursor = ev.next;
  const page = await (await api("/api/events" + query(params))).json();
  if (page.status === "error") {
    renderEventsError(page);
    return;
  }
  if (older) {
    ev.rows = ev.rows.concat(page.events);
    ev.next = page.next;
    ev.older = true;
  } else if (ev.older) {
    const known = new Set(ev.rows.map((e) => e.id));
    ev.rows = page.events.filter((e) => !known.has(e.id)).concat(ev.rows);
  } else {
    ev.rows = page.events;
    ev.next = page.next;
  }
  const shown = ev.rows.map((e) => `${e.id}:${e.status}`).join(",");
  if (shown === ev.shown) return;
  ev.shown = shown;
  renderEvents();
}

function renderEventsError(page) {
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
        h("td", {}, e.source),
        h("td", { class: "name" }, e.name),
        h("td", {}, h("span", { class: `state ${e.status}` }, e.status)),
        h("td", {}, e.test_tag ? h("span", { class: "tag" }, e.test_tag) : "–"),
        h("td", { class: "mono" }, e.dedupe_id || "–"),
        h("td", { class: "time", title: stamp(e.event_time) }, dayTime(e.event_time)),
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
  if (Date.now() < until) {
    return `The first event with this dedupe_id for ${e.source}: copies sent until ${stamp(until)} are acknowledged as duplicates and not stored.`;
  }
  return `This dedupe_id was remembered until ${stamp(until)}; a copy sent now would be stored again.`;
}

function eventDetail(e) {
  const attempts = h("div", { class: "attempts" }, h("h4", {}, "Delivery"), h("p", { class: "muted" }, "…"));
  loadAttempts(e, attempts);
  return h(
    "tr",
    { class: "detail" },
    h(
      "td",
      { colspan: 7 },
      h(
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
            h("dt", {}, "Request id"), h("dd", {}, e.request_id),
            h("dt", {}, "Event time"), h("dd", {}, stamp(e.event_time)),
            h("dt", {}, "Received"), h("dd", {}, stamp(e.received_at))),
          attempts,
        ),
      ),
    ),
  );
}

async function loadAttempts(e, box) {
  const cached = state.events.attempts.get(e.id);
  if (cached && cached.status === e.status) {
    box.replaceChildren(...cached.nodes.map((n) => n.cloneNode(true)));
    return;
  }
  await fetchAttempts(e, box);
  state.events.attempts.set(e.id, { status: e.status, nodes: [...box.childNodes].map((n) => n.cloneNode(true)) });
}

async function fetchAttempts(e, box) {
  const say = (text) => box.replaceChildren(h("h4", {}, "Delivery"), h("p", { class: "muted" }, text));
  if (e.status === "stored") return say("Not relayed: its source has no relay (or it was sent in test mode).");
  const response = await api(`/api/events/${e.id}`);
  if (!response.ok) return say(`State: ${e.status}. No delivery attempts recorded (${response.status}).`);
  const detail = await response.json();
  const tries = detail.attempts || [];
  if (!tries.length) return say(`State: ${e.status}. No attempt yet.`);
  box.replaceChildren(
    h("h4", {}, `Delivery: ${e.status}, ${plural(tries.length, "attempt")}`),
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
            {},
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
  );
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
    const replay = d.dead
      ? h("button", { type: "button", class: "replay", onclick: (ev) => replayDead(d.destination, ev.target) }, `Replay ${plural(d.dead, "dead letter")}`)
      : null;
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
      "table",
      { class: "grid relay" },
      h("thead", {}, h("tr", {}, ["Destination", "Pending", "Delivered", "Dead letters", "Lag", "Lag (this page)", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows),
    ),
  );
}

async function replayDead(destination, button) {
  button.disabled = true;
  const response = await api("/api/replay", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ destination }),
  });
  const body = await response.json().catch(() => ({}));
  button.textContent = response.ok ? `${plural(body.requeued ?? 0, "event")} queued again` : `Replay failed (${response.status})`;
  state.lastOverview = 0;
}

function sparkline(values, kind) {
  const width = 120;
  const height = 24;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / max) * (height - 2) - 1).toFixed(1)}`);
  return svg("svg", { class: `spark ${kind}`, width, height, viewBox: `0 0 ${width} ${height}` }, svg("polyline", { points: points.join(" ") }));
}

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
      const label = `${dayTime(since + i * bucket)}: ${v} ${k.label}`;
      bars.push(svg("rect", { x: (i * w + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(1, w - 1).toFixed(1), height: bh.toFixed(1), class: k.cls }, svg("title", {}, label)));
    }
  });
  const total = series.map((k) => `${slots.reduce((sum, s) => sum + s[k.key], 0)} ${k.label}`).join(" · ");
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
  const bySource = new Map(state.sources.map((s) => [s.id, Array.from({ length: count }, empty)]));
  for (const b of stats.buckets) {
    const key = b.source ?? "(no source)";
    if (!bySource.has(key)) bySource.set(key, Array.from({ length: count }, empty));
    const i = Math.floor((b.start_ms - start) / bucket);
    if (i < 0 || i >= count) continue;
    const slot = bySource.get(key)[i];
    for (const k of Object.keys(slot)) slot[k] += b[k];
  }
  const relays = new Map((stats.relay || []).map((d) => [d.destination, d]));
  const entries = [...bySource].map(([source, slots]) => {
    const sum = (k) => slots.reduce((acc, s) => acc + s[k], 0);
    return { source, slots, sum, busy: sum("requests") + sum("dead_letters") };
  });
  entries.sort((a, b) => (b.busy > 0) - (a.busy > 0)); // active sources first, config order kept
  const cards = entries.map(({ source, slots, sum, busy }) => {
    const info = state.sources.find((s) => s.id === source);
    const kind = info ? (info.api === "axon" ? `Axon · ${info.profile}` : "AppsFlyer") : "not configured";
    const relay = info ? relays.get(`${info.api}:${info.id}`) : null;
    const head = h("header", {}, h("h3", {}, source), h("span", { class: "kind" }, kind));
    const relayLine = relay
      ? h("p", { class: "relay-line" }, `Relay: ${relay.pending} pending, ${relay.delivered} delivered, `,
          h("span", { class: relay.dead ? "dead" : "" }, `${relay.dead} dead`))
      : null;
    if (!busy) return h("article", { class: "card idle", "data-source": source }, head, h("p", { class: "totals" }, "No requests in this window."), relayLine);
    return h(
      "article",
      { class: "card", "data-source": source },
      head,
      h(
        "p",
        { class: "totals" },
        h("b", {}, sum("requests")), " requests, ",
        h("b", { class: sum("failed_requests") ? "bad" : "" }, sum("failed_requests")), " failed",
      ),
      relayLine,
      h(
        "div",
        { class: "charts" },
        barChart("Events", slots, [
          { key: "events_accepted", label: "accepted", cls: "accepted" },
          { key: "events_refused", label: "refused", cls: "refused" },
        ], start, bucket),
        barChart("Duplicates", slots, [{ key: "events_duplicate", label: "duplicates", cls: "duplicate" }], start, bucket),
        barChart("Warnings", slots, [{ key: "warnings", label: "warnings", cls: "warning" }], start, bucket),
        barChart("Dead letters", slots, [{ key: "dead_letters", label: "dead", cls: "dead" }], start, bucket),
      ),
    );
  });
  const unknown = unknownRow(stats.unknown);
  document.getElementById("cards").replaceChildren(...cards, ...(unknown ? [unknown] : []));
}

// Requests naming a pixel or app that is not configured: one row, however many ids (a scan of
// random ids would otherwise be one card each).
function unknownRow(unknown) {
  if (!unknown || !unknown.requests) return null;
  const top = unknown.top.map((t) => `${t.id} (${t.requests})`).join(", ");
  const more = unknown.ids > unknown.top.length ? ` and ${unknown.ids - unknown.top.length} more` : "";
  return h(
    "article",
    { class: "card unknown-sources", "data-source": "(unknown)" },
    h("header", {}, h("h3", {}, "unknown sources"), h("span", { class: "kind" }, "not configured")),
    h("p", { class: "totals" }, h("b", {}, unknown.requests), ` requests from ${unknown.ids} unknown id(s); top ids: ${top}${more}`),
  );
}

// --- send a test event ---------------------------------------------------------------------

function currentSource() {
  return state.sources.find((s) => s.id === document.getElementById("send-source").value);
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
      body: JSON.stringify({ source: document.getElementById("send-source").value, body: document.getElementById("send-body").value }),
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
  } finally {
    button.disabled = false;
  }
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  const page = await (await api("/api/sources")).json();
  state.sources = page.sources;
  state.dedupeDays = page.dedupe_retention_days;
  fillSourceSelects();
  fillExamples();

  document.getElementById("send-source").addEventListener("change", fillExamples);
  document.getElementById("send-example").addEventListener("change", fillBody);
  document.getElementById("send-reset").addEventListener("click", fillBody);
  document.getElementById("send-form").addEventListener("submit", sendTestEvent);

  const requestsChanged = () => {
    state.requests = { rows: [], next: null, older: false, open: state.requests.open, seen: 0, shown: null };
    refresh(true);
  };
  document.getElementById("rq-source").addEventListener("change", requestsChanged);
  document.getElementById("rq-status").addEventListener("change", requestsChanged);
  document.getElementById("rq-more").addEventListener("click", () => loadRequests(true));
  const filters = document.getElementById("ev-filters");
  const eventsChanged = () => {
    state.events = { rows: [], next: null, older: false, open: state.events.open, seen: 0, shown: null, params: eventFilters(), attempts: state.events.attempts };
    refresh(true);
  };
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    eventsChanged();
  });
  filters.addEventListener("reset", () => setTimeout(eventsChanged, 0));
  filters.querySelector("[name=source]").addEventListener("change", eventsChanged);
  filters.querySelector("[name=status]").addEventListener("change", eventsChanged);
  document.getElementById("ev-more").addEventListener("click", () => loadEvents(true));
  document.getElementById("ov-window").addEventListener("change", () => refresh(true));

  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  document.addEventListener("visibilitychange", () => refresh(true));
  show(location.hash.slice(1) || "requests");
  setInterval(() => refresh(false), POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
