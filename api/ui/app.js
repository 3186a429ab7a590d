// The page a person reads: the JSON reports of this service, drawn as a
// deployment list, a deployment (its root blocker, a timeline of its
// instances and services, its unresolved dependencies as arrows) and an
// instance with its event history. No framework and nothing fetched from
// elsewhere: the page must work on a machine without internet. Every text
// from a report goes into the DOM as text (never as HTML): event data comes
// from the network.
"use strict";

const TOKEN_KEY = "audrey-reporting-token";
const PAGE = 50; // deployments per page of the list
const EVENTS_PAGE = 100; // events per page of a history
const MAX_TIMELINE_INSTANCES = 200; // instance reports read for one timeline
const SVG = "http://www.w3.org/2000/svg";
const FILTERS = ["all", "incomplete", "stalled", "error", "success"];

// ---- small helpers -------------------------------------------------------

/** Nodes from nested lists of nodes and strings (strings become text;
 * null, undefined and false are left out). */
function nodes(...items) {
  return items.flat(Infinity)
    .filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

/** An element with attributes and children. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...nodes(children));
  return el;
}

/** The same for SVG. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  el.append(...nodes(children));
  return el;
}

const when = (t) => (t ? t.replace("T", " ").replace("Z", " UTC") : "");
const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
const short = (uuid) => uuid.slice(0, 8);
const badge = (status) => h("span", { class: `badge ${status}` }, status);

/** `42 s`, `14 min`, `3 h`, `2 d`: as the reports' explanations say it. */
function span(seconds) {
  const x = Math.max(0, seconds);
  if (x < 90) return `${x.toFixed(x < 10 ? 1 : 0)} s`;
  if (x < 5400) return `${Math.round(x / 60)} min`;
  if (x < 172800) return `${Math.round(x / 3600)} h`;
  return `${Math.round(x / 86400)} d`;
}

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The headers of a report request: JSON, and the token the reader typed. */
function apiHeaders(extra) {
  const headers = { Accept: "application/json", ...extra };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** The ETag of each report read last, by path: what a long-poll waits on. */
const etags = new Map();

/** GET a report as JSON. */
async function api(path) {
  let response;
  try {
    response = await fetch(path, { headers: apiHeaders(), cache: "no-cache" });
  } catch (e) {
    throw new ApiError(0, `The service could not be reached (${e.message}).`);
  }
  if (response.ok) {
    etags.set(path, response.headers.get("ETag"));
    return response.json();
  }
  // Errors are XML: <error><code/><message/></error>.
  const text = await response.text();
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const message = doc.querySelector("message")?.textContent || response.statusText;
  if (response.status === 401) {
    throw new ApiError(401, sessionStorage.getItem(TOKEN_KEY)
      ? "The token was refused: type the right one above."
      : "This service wants a token: type it above.");
  }
  throw new ApiError(response.status, `${response.status}: ${message}`);
}

/** Runs `work` (a few at a time) over `items`, keeping their order. */
async function each(items, limit, work) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ---- routing: the view lives in the URL's fragment -------------------------

function route() {
  const [path, query] = (location.hash.slice(1) || "/deployments").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "deployment" && parts[1] && parts[2] === "events") return ["events", () => eventsView("deployment", parts[1], params)];
  if (parts[0] === "deployment" && parts[1]) return ["deployment", () => deploymentView(parts[1])];
  if (parts[0] === "instance" && parts[1]) return ["instance", () => instanceView(parts[1], params)];
  return ["deployments", () => listView(params)];
}

let rendering = 0;
let watching = null; // the long-poll of the view shown, if any
async function render() {
  const ticket = ++rendering;
  watching?.abort();
  watching = null;
  const [name, view] = route();
  document.body.dataset.view = name;
  document.body.dataset.state = "loading";
  const notice = document.getElementById("notice");
  try {
    const content = await view();
    if (ticket !== rendering) return; // a newer view was asked for meanwhile
    notice.hidden = true;
    document.getElementById("view").replaceChildren(...nodes(content));
    document.body.dataset.state = "ready";
    const watched = document.querySelector("[data-watch]")?.dataset.watch;
    if (watched) watch(watched, ticket);
  } catch (e) {
    if (ticket !== rendering) return;
    if (!(e instanceof ApiError)) throw e;
    notice.textContent = e.message;
    notice.hidden = false;
    document.getElementById("view").replaceChildren();
    document.body.dataset.state = "failed";
    if (e.status === 401) document.getElementById("token").focus();
  }
}

/** Waits (the API's long-poll) for the report at `path` to change, then
 * draws the view again: an unfinished deployment updates as it goes. */
async function watch(path, ticket) {
  watching = new AbortController();
  const { signal } = watching;
  while (ticket === rendering) {
    const etag = etags.get(path);
    if (!etag) return; // nothing to wait on: it would answer at once, again and again
    let response;
    try {
      response = await fetch(`${path}?wait=60s`, { headers: apiHeaders({ "If-None-Match": etag }), cache: "no-store", signal });
    } catch {
      return; // left the view (aborted), or the service is gone: the next view says so
    }
    if (ticket !== rendering) return;
    if (response.status === 304) continue;
    if (response.ok) render(); // changed: read everything again
    return;
  }
}

// ---- the deployments list ------------------------------------------------

async function listView(params) {
  const status = FILTERS.includes(params.get("status")) ? params.get("status") : "all";
  const sort = ["uuid", "age", "progress"].includes(params.get("sort")) ? params.get("sort") : "uuid";
  const offset = Math.max(0, parseInt(params.get("offset"), 10) || 0);
  const query = new URLSearchParams({ sort, offset, limit: PAGE });
  if (status !== "all") query.set("status", status);
  const page = await api(`/reports/deployments?${query}`);
  const link = (changes) => {
    const p = new URLSearchParams({ status, sort, offset, ...changes });
    return `#/deployments?${p}`;
  };
  const filters = h("nav", { class: "filters", id: "filters" }, "Show:",
    FILTERS.map((f) => h("a", { href: link({ status: f, offset: 0 }), "data-filter": f, "aria-current": String(f === status) }, f)),
    h("span", { class: "muted" }, " sorted by "),
    ["uuid", "age", "progress"].map((o) => h("a", { href: link({ sort: o, offset: 0 }), "aria-current": String(o === sort) }, o)));
  const rows = page.deployments.map((d) => h("tr", { "data-uuid": d.uuid, "data-status": d.status },
    h("td", {}, h("a", { href: `#/deployment/${d.uuid}` }, d.name || short(d.uuid)), h("div", { class: "mono muted" }, d.uuid)),
    h("td", {}, badge(d.status), d.stalled ? [" ", badge("stalled")] : null),
    h("td", {}, when(d.started)),
    h("td", {}, when(d.last_progress)),
    h("td", { class: "num" }, `${d.instance_counts.success} / ${d.instance_counts.total}`),
    h("td", { class: "num" }, d.instance_counts.error),
    h("td", { class: "num" }, d.unresolved_dependencies)));
  const last = Math.min(page.offset + page.deployments.length, page.total);
  const pager = h("div", { class: "pager" },
    offset > 0 ? h("a", { href: link({ offset: Math.max(0, offset - PAGE) }) }, "← previous") : null,
    h("span", { class: "muted", id: "list-count" }, page.total ? `${page.offset + 1}–${last} of ${page.total}` : "none"),
    last < page.total ? h("a", { href: link({ offset: offset + PAGE }) }, "next →") : null);
  return [h("h1", {}, "Deployments"), filters,
    h("table", { id: "deployments" },
      h("thead", {}, h("tr", {}, ["deployment", "status", "started", "last progress", "instances done", "failed", "unresolved"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No deployment matches.")))),
    pager];
}

// ---- one deployment ------------------------------------------------------

async function deploymentView(uuid) {
  const d = await api(`/reports/deployment/${encodeURIComponent(uuid)}`);
  const shown = d.instances.slice(0, MAX_TIMELINE_INSTANCES);
  const instances = await each(shown, 6, (i) => api(`/reports/instance/${i.uuid}`));
  const facts = h("div", { class: "facts" },
    h("span", {}, h("b", {}, "uuid "), h("span", { class: "mono" }, d.uuid)),
    d.registered ? h("span", {}, h("b", {}, "registered "), when(d.registered)) : null,
    d.completed ? h("span", {}, h("b", {}, "completed "), when(d.completed)) : null,
    d.last_progress ? h("span", {}, h("b", {}, "last progress "), when(d.last_progress)) : null,
    d.duration_seconds !== undefined ? h("span", {}, h("b", {}, d.completed ? "took " : "running for "), span(d.duration_seconds)) : null,
    h("span", {}, h("a", { href: `#/deployment/${d.uuid}/events` }, "event history")),
    h("span", {}, h("a", { href: `/reports/deployment/${d.uuid}` }, "XML report")));
  const path = `/reports/deployment/${encodeURIComponent(uuid)}`;
  return [
    h("p", {}, h("a", { href: "#/deployments" }, "← deployments")),
    h("h1", { "data-watch": d.completed ? null : path }, d.name || "deployment", " ", badge(d.status), d.stalled ? [" ", badge("stalled")] : null),
    facts,
    d.blocked_on ? blocker(d.blocked_on) : d.status === "success" ? h("div", { class: "done" }, "Every instance completed.") : null,
    d.missing_instances ? h("p", {}, h("b", {}, "Expected, not registered yet: "), d.missing_instances.map((m) => h("span", { class: "mono" }, m, " "))) : null,
    h("h2", {}, "Timeline"),
    shown.length < d.instances.length ? h("p", { class: "muted" }, `The first ${shown.length} of ${d.instances.length} instances.`) : null,
    timeline(d, instances),
    h("h2", {}, "Unresolved dependencies"),
    dependencyGraph(d),
    h("h2", {}, "Instances"),
    instanceTable(d.instances),
    d.config_servers ? [h("h2", {}, "Config servers"), configServers(d.config_servers)] : null,
  ];
}

const instanceLink = (uuid, assembly) => h("a", { href: `#/instance/${uuid}`, title: uuid },
  assembly ? [assembly, " ", h("span", { class: "mono muted" }, `(${short(uuid)})`)] : h("span", { class: "mono" }, short(uuid)));

/** The root blocker, highlighted: what the deployment waits for at the root. */
function blocker(b) {
  return h("section", { class: `blocker reason-${b.reason}`, id: "root-blocker", "data-instance": b.instance, "data-reason": b.reason },
    h("h2", {}, "Blocked on ", instanceLink(b.instance, b.assembly), ": ", b.reason),
    h("p", { class: "explanation" }, b.explanation),
    h("div", { class: "facts" },
      b.service ? h("span", {}, h("b", {}, "service "), b.service) : null,
      b.return_code !== undefined ? h("span", {}, h("b", {}, "return code "), b.return_code) : null,
      b.since ? h("span", {}, h("b", {}, "since "), when(b.since)) : null,
      b.last_contacted ? h("span", {}, h("b", {}, "agent last contacted "), when(b.last_contacted)) : null,
      b.parameters ? h("span", {}, h("b", {}, "not provided "), b.parameters.join(", ")) : null),
    b.chain ? [h("div", {}, h("b", {}, "How it is reached:")),
      h("ol", {}, b.chain.map((step) => h("li", {}, instanceLink(step.instance, step.assembly),
        ` — service ${step.service}, parameter ${step.parameter}, waits for `, instanceLink(step.waits_for))))] : null,
    b.cycle ? h("p", {}, h("b", {}, "Cycle: "), b.cycle.map((c) => [instanceLink(c), " "])) : null);
}

/** When each instance registered, was contacted and completed, and when
 * each of its services started and ended (failures marked), on one axis. */
function timeline(d, instances) {
  const ms = (t) => (t ? Date.parse(t) : NaN);
  const now = Date.now();
  const times = [ms(d.registered), ms(d.completed)];
  for (const i of instances) {
    times.push(ms(i.registered), ms(i.first_contacted), ms(i.completed));
    for (const sv of i.services) times.push(ms(sv.configuration_started), ms(sv.configuration_ended));
  }
  const known = times.filter((t) => !Number.isNaN(t));
  if (!known.length) return h("p", { class: "muted", id: "timeline" }, "Nothing has happened yet.");
  const start = Math.min(...known);
  const end = d.completed ? Math.max(...known) : Math.max(now, ...known);
  const range = Math.max(end - start, 1000);
  const pct = (t) => `${(((t - start) / range) * 100).toFixed(3)}%`;
  const bar = (from, to, cls, title) => h("div", { class: `tl-bar ${cls}`, title, style: { left: pct(from), width: `${(((to - from) / range) * 100).toFixed(3)}%` } });
  const root = d.blocked_on?.instance;
  const rows = [h("div", { class: "tl-row tl-axis" }, h("div", { class: "tl-label" }, "UTC"),
    h("div", { class: "tl-track" }, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, clock(start + f * range)))))];
  for (const i of instances) {
    const registered = ms(i.registered);
    const done = ms(i.completed);
    const track = h("div", { class: "tl-track" });
    if (!Number.isNaN(registered)) {
      track.append(bar(registered, Number.isNaN(done) ? end : done, i.status, `registered ${when(i.registered)}${i.completed ? `, completed ${when(i.completed)}` : ""}`));
      track.append(h("span", { class: "tl-mark", title: `registered ${when(i.registered)}`, style: { left: pct(registered) } }));
    } else {
      track.append(h("span", { class: "tl-note" }, "not registered"));
    }
    if (i.first_contacted) track.append(h("span", { class: "tl-mark contacted", title: `agent first contacted ${when(i.first_contacted)}`, style: { left: pct(ms(i.first_contacted)) } }));
    rows.push(h("div", { class: `tl-row tl-instance ${i.uuid === root ? "root" : ""}`, "data-instance": i.uuid, "data-status": i.status },
      h("div", { class: "tl-label" }, instanceLink(i.uuid, i.assembly)), track));
    for (const sv of i.services) {
      const track = h("div", { class: "tl-track" });
      const started = ms(sv.configuration_started);
      const ended = ms(sv.configuration_ended);
      const failed = sv.completion_status !== undefined && sv.completion_status !== 0;
      if (Number.isNaN(started)) {
        track.append(h("span", { class: "tl-note" }, "not started"));
      } else if (Number.isNaN(ended)) {
        track.append(bar(started, end, "running", `started ${when(sv.configuration_started)}, still running`));
      } else {
        track.append(bar(started, ended, failed ? "error" : "success", `started ${when(sv.configuration_started)}, ended ${when(sv.configuration_ended)} with ${sv.completion_status}`));
        if (failed) track.append(h("span", { class: "tl-fail", style: { left: pct(ended) } }, `✕ failed (${sv.completion_status})`));
      }
      const isRoot = i.uuid === root && d.blocked_on.service === sv.name;
      rows.push(h("div", { class: `tl-row tl-service ${isRoot ? "root" : ""}`, "data-instance": i.uuid, "data-service": sv.name, "data-status": failed ? "failed" : sv.status },
        h("div", { class: "tl-label", title: sv.name }, sv.name), track));
    }
  }
  const legend = h("div", { class: "legend" },
    h("span", {}, h("i", { style: { background: "var(--ok)" } }), "ended with 0"),
    h("span", {}, h("i", { style: { background: "var(--error)" } }), "failed"),
    h("span", {}, h("i", { class: "tl-bar running", style: { position: "static", display: "inline-block" } }), "running"),
    h("span", {}, "│ registered"), h("span", { style: { color: "var(--link)" } }, "│ agent first contact"),
    h("span", {}, "⚠ the root blocker"));
  return h("section", { class: "timeline", id: "timeline" }, rows, legend);
}

/** The unresolved dependencies as arrows from the waiting instance to the
 * instance it waits for, those with nothing to wait for on the left. */
function dependencyGraph(d) {
  const deps = d.unresolved_dependencies || [];
  if (!deps.length) return h("p", { class: "muted", id: "dependencies" }, "None.");
  const members = new Map(d.instances.map((i) => [i.uuid, i]));
  const waitsFor = new Map();
  for (const dep of deps) {
    if (!waitsFor.has(dep.instance)) waitsFor.set(dep.instance, new Set());
    waitsFor.get(dep.instance).add(dep.source_instance);
  }
  const nodes = [...new Set(deps.flatMap((dep) => [dep.instance, dep.source_instance]))];
  // Column: how many waits lead from the node to one that waits for nothing
  // (a cycle is cut where it closes).
  const column = new Map();
  const depth = (id, seen) => {
    if (column.has(id)) return column.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    let c = 0;
    for (const source of waitsFor.get(id) || []) c = Math.max(c, depth(source, seen) + 1);
    seen.delete(id);
    column.set(id, c);
    return c;
  };
  nodes.forEach((id) => depth(id, new Set()));
  const W = 190, H = 42, GAP_X = 170, GAP_Y = 18, PAD = 12;
  const rows = new Map();
  const at = new Map();
  for (const id of [...nodes].sort()) {
    const c = column.get(id);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    at.set(id, { x: PAD + c * (W + GAP_X), y: PAD + r * (H + GAP_Y) });
  }
  const width = PAD * 2 + (Math.max(...column.values()) + 1) * (W + GAP_X) - GAP_X;
  // Room below the boxes for the arrows that go back right (a cycle).
  const back = deps.some((dep) => column.get(dep.instance) <= column.get(dep.source_instance));
  const height = PAD * 2 + Math.max(...rows.values()) * (H + GAP_Y) - GAP_Y + (back ? 50 : 0);
  const cycle = new Set(d.blocked_on?.cycle || []);
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "unresolved dependencies" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z" }))));
  const pairs = new Map();
  for (const dep of deps) {
    const key = `${dep.instance} ${dep.source_instance}`;
    if (!pairs.has(key)) pairs.set(key, []);
    pairs.get(key).push(`${dep.service}.${dep.parameter} ← ${dep.source_parameter ? dep.source_parameter : `service ${dep.source_service}`}`);
  }
  for (const [key, labels] of pairs) {
    const [from, to] = key.split(" ");
    const a = at.get(from), b = at.get(to);
    const x1 = a.x, y1 = a.y + H / 2;
    let x2 = b.x + W, y2 = b.y + H / 2;
    let path, lx = (x1 + x2) / 2, ly = Math.min(y1, y2) - 6;
    if (a.x > b.x) {
      path = `M${x1},${y1} C${x1 - GAP_X / 2},${y1} ${x2 + GAP_X / 2},${y2} ${x2},${y2}`;
    } else {
      // A wait that goes back right (a cycle closing): round below the boxes.
      const xa = a.x + W / 2, ya = a.y + H;
      x2 = b.x + W / 2; y2 = b.y + H;
      path = `M${xa},${ya} C${xa},${ya + 40} ${x2},${y2 + 40} ${x2},${y2}`;
      lx = (xa + x2) / 2; ly = Math.max(ya, y2) + 34;
    }
    const inCycle = cycle.has(from) && cycle.has(to);
    const label = labels.length > 1 ? `${labels[0]} (+${labels.length - 1})` : labels[0];
    svg.append(s("g", { class: `edge ${inCycle ? "cycle" : ""}`, "data-from": from, "data-to": to },
      s("title", {}, labels.join("\n")),
      s("path", { d: path, "marker-end": "url(#arrow)" }),
      s("text", { x: lx, y: ly, "text-anchor": "middle" }, label.length > 30 ? `${label.slice(0, 29)}…` : label)));
  }
  for (const id of nodes) {
    const { x, y } = at.get(id);
    const member = members.get(id);
    const cls = ["node", member ? member.status : "outside", id === d.blocked_on?.instance ? "root" : ""].join(" ");
    svg.append(s("a", { href: `#/instance/${id}`, class: cls, "data-instance": id },
      s("title", {}, member ? `${member.assembly || id}: ${member.status}` : `${id}: not an instance of this deployment (another one's, or never registered)`),
      s("rect", { x, y, width: W, height: H, rx: 5 }),
      s("text", { x: x + 8, y: y + 17 }, member?.assembly || (member ? short(id) : "outside this deployment")),
      s("text", { x: x + 8, y: y + 33, class: "sub" }, `${short(id)}… ${member ? member.status : ""}`)));
  }
  return h("div", { class: "graph", id: "dependencies" }, svg,
    h("p", { class: "legend" }, "An arrow goes from an instance to the one it waits for. Orange: the root blocker; dashed: not in this deployment."));
}

function instanceTable(instances) {
  return h("table", { id: "instances" },
    h("thead", {}, h("tr", {}, ["instance", "status", "history"].map((t) => h("th", {}, t)))),
    h("tbody", {}, instances.map((i) => h("tr", {},
      h("td", {}, instanceLink(i.uuid, i.assembly)), h("td", {}, badge(i.status)),
      h("td", {}, h("a", { href: `#/instance/${i.uuid}` }, "report and events"))))));
}

function configServers(servers) {
  return h("table", {}, h("thead", {}, h("tr", {}, ["source", "status", "version", "last heartbeat"].map((t) => h("th", {}, t)))),
    h("tbody", {}, servers.map((c) => h("tr", {}, h("td", { class: "mono" }, c.source), h("td", {}, badge(c.status)),
      h("td", {}, c.version || ""), h("td", {}, when(c.last_heartbeat))))));
}

// ---- one instance, and event histories -------------------------------------

async function instanceView(uuid, params) {
  const i = await api(`/reports/instance/${encodeURIComponent(uuid)}`);
  const history = await eventsView("instance", uuid, params, true);
  return [
    h("p", {}, h("a", { href: `#/deployment/${i.deployment}` }, "← its deployment")),
    h("h1", {}, i.assembly || "instance", " ", badge(i.status)),
    h("div", { class: "facts" },
      h("span", {}, h("b", {}, "uuid "), h("span", { class: "mono" }, i.uuid)),
      i.registered ? h("span", {}, h("b", {}, "registered "), when(i.registered)) : null,
      i.first_contacted ? h("span", {}, h("b", {}, "agent first contacted "), when(i.first_contacted)) : null,
      i.last_contacted ? h("span", {}, h("b", {}, "last contacted "), when(i.last_contacted)) : null,
      i.completed ? h("span", {}, h("b", {}, "completed "), when(i.completed)) : null,
      i.duration_seconds !== undefined ? h("span", {}, h("b", {}, "duration "), span(i.duration_seconds)) : null,
      h("span", {}, h("a", { href: `/reports/instance/${i.uuid}` }, "XML report"))),
    i.pending_return_parameters ? h("p", {}, h("b", {}, "Not provided yet: "), i.pending_return_parameters.join(", ")) : null,
    h("h2", {}, "Services"),
    h("table", { id: "services" },
      h("thead", {}, h("tr", {}, ["service", "status", "started", "ended", "return code", "duration", "waits for"].map((t) => h("th", {}, t)))),
      h("tbody", {}, i.services.map((sv) => h("tr", { "data-service": sv.name },
        h("td", {}, sv.name), h("td", {}, badge(sv.status)),
        h("td", {}, when(sv.configuration_started)), h("td", {}, when(sv.configuration_ended)),
        h("td", { class: "num" }, sv.completion_status ?? ""),
        h("td", { class: "num" }, sv.duration_seconds !== undefined ? span(sv.duration_seconds) : ""),
        h("td", {}, (sv.unresolved_service_parameters || []).map((p) => h("div", {}, `${p.name} ← `,
          instanceLink(p.source_instance), ` ${p.source_parameter || `service ${p.source_service}`}`))))))),
    history,
  ];
}

/** A page of the accepted events of a deployment or an instance. */
async function eventsView(kind, uuid, params, embedded) {
  const offset = Math.max(0, parseInt(params.get("offset"), 10) || 0);
  const page = await api(`/reports/${kind}/${encodeURIComponent(uuid)}/events?offset=${offset}&limit=${EVENTS_PAGE}`);
  const link = (o) => `#/${kind}/${uuid}${embedded ? "" : "/events"}?offset=${o}`;
  const last = Math.min(offset + page.events.length, page.total);
  const body = [
    h("h2", {}, `Event history (${page.total})`),
    h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["time", "type", "instance", "service", "data"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.events.map((e) => h("tr", { "data-type": e.type },
        h("td", { class: "mono" }, when(e.time)), h("td", { title: e.type }, e.type.replace(/^org\.aeolusproject\.audrey\./, "")),
        h("td", {}, e.instance ? instanceLink(e.instance) : ""), h("td", {}, e.service || ""),
        h("td", {}, h("pre", { class: "data mono" }, JSON.stringify(e.data))))))),
    h("div", { class: "pager" },
      offset > 0 ? h("a", { href: link(Math.max(0, offset - EVENTS_PAGE)) }, "← earlier") : null,
      h("span", { class: "muted" }, page.total ? `${offset + 1}–${last} of ${page.total}` : "no events"),
      last < page.total ? h("a", { href: link(offset + EVENTS_PAGE) }, "later →") : null),
  ];
  if (embedded) return body;
  return [h("p", {}, h("a", { href: `#/deployment/${uuid}` }, "← the deployment")), h("h1", {}, "Deployment events"), body];
}

// ---- start ---------------------------------------------------------------

/** Uncaught errors are shown on the page (a reader sees the page is wrong). */
function recordError(message) {
  const box = document.getElementById("page-errors");
  box.hidden = false;
  box.textContent += `${message}\n`;
  document.body.dataset.state = "failed";
}
window.addEventListener("error", (e) => recordError(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => recordError(`error: ${e.reason?.message || e.reason}`));

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token");
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    input.placeholder = "token in use (this tab only)";
    render();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    input.placeholder = "only if the service wants one";
    render();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) input.placeholder = "token in use (this tab only)";
  window.addEventListener("hashchange", render);
  render();
});
