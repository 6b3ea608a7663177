// The supervisor page: Selected Customers live (selected.watch), the agents' presence board
// (presence.watch) and releasing a selection with a confirmation (DOMAIN rules 7-9).

import { setUpBulk } from "./bulk.js";
import { Connection } from "./connection.js";
import { $, fill, h } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { isSupervisor } from "./session.js";
import { clearNotice, notify, setUpShell } from "./shell.js";

const state = {
  conn: null,
  rows: new Map(), // customer_id -> selection row
  users: new Map(), // user_id -> presence row
  assignments: new Map(), // id -> {name, segments}
  filter: "",
  sortDesc: true, // longest held first
  releasing: null,
  loaded: false,
};

let shell;
let bulk;

const SHORTCUTS = [
  ["Alt+F", "shortcut.filter"],
  ["Alt+D", "shortcut.sort"],
  ["Alt+H", "shortcut.help"],
];

export function boot() {
  shell = setUpShell({
    page: "supervisor",
    shortcuts: SHORTCUTS,
    onLanguage: () => {
      renderFilter();
      renderAll();
      bulk.render();
    },
    onSession: (session) => {
      if (!isSupervisor(session.user)) {
        location.replace("index.html");
        return;
      }
      start(session);
    },
    onLoggedOut: () => state.conn?.stop(),
  });
  bulk = setUpBulk({
    conn: () => state.conn,
    token: () => state.token,
    assignments: () => state.assignments,
  });
  setUpTabs();
  $("#filter-assignment").addEventListener("change", (e) => {
    state.filter = e.target.value;
    renderTable();
  });
  $("#sort-held").addEventListener("click", toggleSort);
  $("#release-dialog").addEventListener("close", onReleaseDialogClose);
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.code === "KeyF") $("#filter-assignment").focus();
    else if (event.code === "KeyD") toggleSort();
    else return;
    event.preventDefault();
  });
  setInterval(tick, 1000);
  shell.begin();
}

function start(session) {
  const conn = new Connection({
    token: session.token,
    userId: session.user.id,
    onEvent,
    onReady,
    onAuthLost: () => shell.loggedOut(),
  });
  state.conn = conn;
  state.token = session.token;
  shell.watch(conn);
  conn.start();
  loadAssignments();
  renderAll();
}

async function loadAssignments() {
  try {
    const list = await shell.api("/api/assignments");
    state.assignments = new Map(list.map((a) => [a.id, a]));
  } catch {
    // names only
  }
  renderFilter();
  renderTable();
  bulk.assignmentsLoaded();
}

// Tabs: Selected Customers, Bulk operations, Import (WAI-ARIA tabs, arrow keys between them).

function setUpTabs() {
  const tabs = () => [...document.querySelectorAll("[role='tab']")].filter((tab) => !tab.hidden);
  const select = (tab) => {
    for (const other of document.querySelectorAll("[role='tab']")) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
      $(`#${other.getAttribute("aria-controls")}`).hidden = !chosen;
    }
  };
  for (const tab of document.querySelectorAll("[role='tab']")) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const list = tabs();
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = list[(list.indexOf(tab) + step + list.length) % list.length];
      select(next);
      next.focus();
      event.preventDefault();
    });
  }
}

/** After every (re)connect: watching is per connection, so ask again for both snapshots. */
async function onReady() {
  try {
    const [selected, presence] = await Promise.all([
      state.conn.request("selected.watch"),
      state.conn.request("presence.watch"),
    ]);
    state.rows = new Map(selected.rows.map((r) => [r.customer_id, r]));
    state.users = new Map(presence.users.map((u) => [u.user_id, u]));
    state.loaded = true;
    renderAll();
  } catch (error) {
    if (error.code !== "disconnected") notify(error.message, "error");
  }
  bulk.onReady();
}

function onEvent(name, data) {
  if (name.startsWith("bulk.")) {
    bulk.onEvent(name, data);
  } else if (name === "selected.changed") {
    const row = data.row ?? data;
    if (data.op === "released") state.rows.delete(row.customer_id);
    else state.rows.set(row.customer_id, row);
    if (state.releasing?.customer_id === row.customer_id && data.op === "released") {
      $("#release-dialog").close("gone");
    }
    renderAll();
  } else if (name === "presence.changed") {
    const user = state.users.get(data.user_id);
    if (user) Object.assign(user, { online: data.online, state: data.state, customer_id: data.customer_id });
    for (const row of state.rows.values()) {
      if (row.user_id === data.user_id) row.online = data.online;
    }
    renderAll();
  }
}

// Selected Customers ---------------------------------------------------------------------------

function assignmentLabel(row) {
  const assignment = state.assignments.get(row.assignment_id);
  const segment = assignment?.segments.find((s) => s.id === row.segment_id);
  const name = assignment?.name ?? (row.assignment_id ? t("common.assignmentN", { id: row.assignment_id }) : "—");
  return segment ? `${name} · ${segment.name}` : name;
}

function renderFilter() {
  const select = $("#filter-assignment");
  const current = state.filter;
  fill(
    select,
    h("option", { value: "", text: t("sup.allAssignments") }),
    [...state.assignments.values()].map((a) => h("option", { value: a.id, text: a.name })),
  );
  select.value = current;
}

function visibleRows() {
  const rows = [...state.rows.values()].filter((r) => !state.filter || r.assignment_id === state.filter);
  rows.sort((a, b) => {
    const order = Date.parse(a.selected_at) - Date.parse(b.selected_at);
    return state.sortDesc ? order : -order;
  });
  return rows;
}

function toggleSort() {
  state.sortDesc = !state.sortDesc;
  renderTable();
}

function renderAll() {
  renderTable();
  renderBoard();
}

function renderTable() {
  const focused = document.activeElement?.dataset?.release;
  const rows = visibleRows();
  const th = $("#held-header");
  th.setAttribute("aria-sort", state.sortDesc ? "descending" : "ascending");
  $("#sort-held").dataset.dir = state.sortDesc ? "desc" : "asc";
  $("#selected-count").textContent = t("sup.count", { n: rows.length, total: state.rows.size });
  const body = $("#selected-body");
  if (!rows.length) {
    fill(
      body,
      h("tr", {}, h("td", { colspan: "6", class: "empty", text: state.loaded ? t("sup.none") : t("common.loading") })),
    );
    return;
  }
  fill(
    body,
    rows.map((r) =>
      h(
        "tr",
        { dataset: { customer: r.customer_id } },
        h("td", {}, h("strong", { text: r.customer_name || t("common.customerN", { id: r.customer_id }) })),
        h("td", { text: r.user_name }),
        h(
          "td",
          {},
          h("span", { class: `online ${r.online ? "yes" : "no"}` }, h("span", { class: "dot", "aria-hidden": "true" }), r.online ? t("sup.online") : t("sup.offline")),
        ),
        h("td", { text: assignmentLabel(r) }),
        h(
          "td",
          { class: "num" },
          h("span", { class: "held-for", dataset: { since: r.selected_at }, text: fmt.duration(Date.now() - Date.parse(r.selected_at)) }),
          h("span", { class: "muted small", text: ` ${t("sup.since", { time: fmt.time(r.selected_at) })}` }),
        ),
        h(
          "td",
          { class: "actions-cell" },
          h("button", {
            type: "button",
            class: "danger",
            dataset: { release: r.customer_id },
            text: t("sup.release"),
            "aria-label": t("sup.releaseNamed", { customer: r.customer_name, agent: r.user_name }),
            onclick: () => askRelease(r),
          }),
        ),
      ),
    ),
  );
  if (focused) body.querySelector(`[data-release="${CSS.escape(focused)}"]`)?.focus();
}

function tick() {
  for (const cell of document.querySelectorAll(".held-for")) {
    cell.textContent = fmt.duration(Date.now() - Date.parse(cell.dataset.since));
  }
}

function askRelease(row) {
  state.releasing = row;
  fill(
    $("#release-text"),
    t("sup.releaseQuestion", { customer: row.customer_name, agent: row.user_name }),
  );
  $("#release-dialog").returnValue = "";
  $("#release-dialog").showModal();
  $("#release-cancel").focus();
}

async function onReleaseDialogClose() {
  const dialog = $("#release-dialog");
  const row = state.releasing;
  state.releasing = null;
  if (dialog.returnValue !== "release" || !row) return;
  clearNotice();
  try {
    const { released } = await state.conn.request("selection.release", { customer_id: row.customer_id });
    if (released) state.rows.delete(row.customer_id);
    notify(
      released
        ? t("sup.released", { customer: row.customer_name, agent: row.user_name })
        : t("sup.alreadyGone", { customer: row.customer_name }),
      "info",
    );
    renderAll();
  } catch (error) {
    notify(error.message, "error");
  }
}

// Presence board ---------------------------------------------------------------------------------

const STATE_ORDER = ["talking", "working", "available", "wrap_up", "paused", "offline"];

function renderBoard() {
  const agents = [...state.users.values()].filter((u) => u.role === "agent");
  const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
  for (const a of agents) counts[a.state] = (counts[a.state] ?? 0) + 1;
  fill(
    $("#presence-summary"),
    STATE_ORDER.map((s) => h("span", { class: `state-chip ${s}` }, `${t(`presence.${s}`)} `, h("strong", { text: counts[s] }))),
  );
  agents.sort(
    (a, b) => STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) || a.name.localeCompare(b.name),
  );
  const holding = new Map([...state.rows.values()].map((r) => [r.user_id, r]));
  fill(
    $("#presence-list"),
    agents.length
      ? agents.map((a) =>
          h(
            "li",
            { class: `agent ${a.state}`, dataset: { user: a.user_id } },
            h("span", { class: "dot", "aria-hidden": "true" }),
            h("span", { class: "agent-name", text: a.name }),
            h("span", { class: `state-badge ${a.state}`, text: t(`presence.${a.state}`) }),
            h("span", { class: "muted small agent-customer", text: holding.get(a.user_id)?.customer_name ?? "" }),
          ),
        )
      : h("li", { class: "muted", text: state.loaded ? t("sup.noAgents") : t("common.loading") }),
  );
}
