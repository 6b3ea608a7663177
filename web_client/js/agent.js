// The agent's softphone page: log in, My Work, list work, the customer screen, and being
// thrown out of it when a supervisor releases the customer (DOMAIN rules 7-18); the call panel
// (softphone.js) follows the server's dialer, which also hands out customers by itself
// (`work.pushed`) in progressive and predictive lists.
// Speaks only the wire protocol of docs/protocol.md.

import { $, fill, h, nextId } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { Connection } from "./connection.js";
import { isSupervisor, tabState } from "./session.js";
import { createPanel, createSoftphone, MOVES_ON } from "./softphone.js";
import { clearNotice, notify, setUpShell } from "./shell.js";

const VIEWS = ["login", "mywork", "screen", "waiting", "details"];
/** How long the page waits for the dialer's next customer before it asks the server. */
const NEXT_CHECK_MS = 5000;

const state = {
  session: null,
  conn: null,
  view: "login",
  screen: null, // the customer screen shown (server data), null when none
  form: null, // the live inputs of that screen
  revoked: false, // thrown out: nothing more may be written from the old screen
  inflight: 0, // writes waiting for their reply
  assignments: new Map(), // id -> {name, segments}
  details: null, // customer id shown in the details view
  presence: tabState.get("presence", "available"),
  shownToken: 0, // the newest selection token shown: an older screen never replaces a newer one
  listWork: null, // {assignmentId}: the list the user works (dialed lists push customers)
  dialMode: null, // preview / progressive / predictive, as the dialer's pushes say
  listEmpty: 0, // `work.pushed` list_empty events seen (a start or save reply compares)
  carryNotice: null, // what to say again once the next customer's screen is open
  nextCheck: null, // timer: the next customer did not come, ask the server
};

const softphone = createSoftphone((type, fields) => state.conn.request(type, fields));
const panel = createPanel(softphone, { dialMode: () => state.dialMode });
let lastPhase = "off";
softphone.subscribe(() => {
  // The dialer shows talking and wrap-up to supervisors; after them the agent's own state.
  const phase = softphone.phase;
  const dialerShown = (p) => p === "talking" || p === "wrap_up";
  if (dialerShown(phase)) paintPresence(phase);
  else if (dialerShown(lastPhase)) sendPresence();
  lastPhase = phase;
});

// Views -------------------------------------------------------------------------------------

function showView(name) {
  state.view = name;
  for (const view of VIEWS) $(`#${view}-view`).hidden = view !== name;
  $("#nav-mywork").setAttribute("aria-current", name === "mywork" ? "page" : "false");
  const back = $("#nav-customer");
  back.hidden = !state.screen || name === "screen";
  if (state.screen) back.textContent = t("nav.backToCustomer", { name: state.screen.customer.name });
}

function focusHeading(view) {
  $(`#${view}-view h1`)?.focus();
}

// Session -----------------------------------------------------------------------------------

function start(session) {
  state.session = session;
  const conn = new Connection({
    token: session.token,
    userId: session.user.id,
    onEvent,
    onReady,
    onStatus: () => {},
    onAuthLost: () => shell.loggedOut(t("login.expired")),
  });
  state.conn = conn;
  shell.watch(conn);
  conn.start();
  loadAssignments();
  showView("mywork");
  fill($("#mywork-view"), h("p", { class: "muted", text: t("common.loading") }));
}

async function loadAssignments() {
  try {
    const list = await shell.api("/api/assignments");
    state.assignments = new Map(list.map((a) => [a.id, a]));
  } catch {
    // names only: the views fall back to ids
  }
}

function assignmentName(id) {
  return state.assignments.get(id)?.name ?? t("common.assignmentN", { id });
}

async function onReady(reply, { reconnected }) {
  let dialing = null;
  try {
    dialing = await softphone.refresh(); // the call panel after a reload or reconnect
  } catch {
    // the panel keeps what it had; the next dialing.changed corrects it
  }
  sendPresence();
  if (state.inflight > 0) return; // the write's answer decides what to show
  const selection = reply.selection;
  if (selection) {
    const same =
      state.screen &&
      !state.revoked &&
      state.screen.customer.id === selection.customer_id &&
      state.screen.selection_token === selection.selection_token;
    if (same) {
      showView(state.view === "screen" ? "screen" : state.view); // keeps unsaved input
      return;
    }
    await reopenScreen();
    return;
  }
  if (state.screen && !state.revoked) {
    // It ended while we were away and the event is gone (resync): same as being thrown out.
    throwOut(state.screen.customer.id, t("kick.endedWhileAway"), state.screen.customer.name);
    return;
  }
  if (dialing && dialing.state !== "off" && state.view !== "details") {
    showWaiting(); // list work of a dialed list goes on: the next customer comes by itself
    return;
  }
  state.listWork = null;
  if (state.view === "waiting" || !reconnected || state.view === "mywork") {
    if (state.view !== "details") await showMyWork();
  }
}

async function reopenScreen() {
  try {
    const { screen } = await state.conn.request("work.resume");
    if (screen) showScreen(screen);
    else await afterNothingHeld();
  } catch (error) {
    notify(errorText(error), "error");
  }
}

function sendPresence() {
  if (!state.conn) return;
  const select = $("#presence");
  select.value = state.presence;
  const phase = softphone.phase;
  if (phase === "talking" || phase === "wrap_up") {
    paintPresence(phase); // the dialer set it; the agent's choice comes back after the call
    return;
  }
  state.conn
    .request("presence.set", { state: state.presence })
    .then(({ state: shown }) => paintPresence(shown))
    .catch(() => {});
}

function paintPresence(shown) {
  $("#presence-shown").textContent = t(`presence.${shown}`);
  $("#presence-shown").dataset.state = shown;
}

function setPresence(value) {
  state.presence = value;
  tabState.set("presence", value);
  sendPresence();
}

// Events ------------------------------------------------------------------------------------

function onEvent(name, data) {
  if (name === "selection.revoked") {
    const who = data.released_by?.name ?? t("common.someone");
    const current = state.screen?.customer;
    if (current && current.id !== data.customer_id) {
      if (data.reason !== "wrap_up_timer") notify(t("kick.releasedOther", { name: who }), "warning");
      return;
    }
    if (data.reason === "wrap_up_timer") {
      // Rule 8 by the assignment's timer, not by a person: the next customer follows.
      if (!current || state.revoked) return;
      awaitNext(t("kick.wrapUp", { name: current.name }), "kick");
      return;
    }
    throwOut(data.customer_id, t("kick.released", { name: who }), current?.name);
  } else if (name === "dialing.changed") {
    softphone.applyDialing(data);
  } else if (name === "call.state") {
    softphone.applyCall(data);
    const current = state.screen?.customer;
    if (data.state === "ended" && MOVES_ON.has(data.result) && current?.id === data.customer_id && !state.revoked) {
      // Busy or no answer: the server registered the attempt and let the customer go (rule
      // 13); the dialer hands out the next one as work.pushed.
      const result = t(`phone.result.${data.result}`, {}, data.result);
      awaitNext(t("phone.movedOn", { name: current.name, result }), "info");
    }
  } else if (name === "work.pushed") {
    onPushed(data);
  } else if (name === "resync") {
    // The events missed are gone; the resume reply that follows says what we hold.
  }
}

/** The dialer handed the agent a customer (now its selection), or says the list is empty. */
function onPushed(data) {
  if (data.mode) state.dialMode = data.mode;
  if (data.screen) {
    state.listWork ??= { assignmentId: data.screen.assignment_id };
    acceptScreen(data.screen);
    if (data.answered) notify(t("phone.connected", { name: data.screen.customer.name }), "info");
    return;
  }
  if (data.reason !== "list_empty") return;
  state.listEmpty += 1;
  if (state.inflight > 0) return; // the start or save reply sees it
  if (state.screen && state.screen.mode === "manual" && !state.revoked) return;
  leaveList(t("mywork.listEmpty"));
}

/**
 * A screen from the dialer or from a reply: shown unless a newer one (higher fencing token) is
 * open already; the same one already open is left as it is (its input kept).
 */
function acceptScreen(screen, { notice = null } = {}) {
  const token = Number(screen.selection_token);
  if (token < state.shownToken) return false;
  const open = state.screen && !state.revoked && state.view !== "waiting";
  if (open && token === state.shownToken && state.screen.customer.id === screen.customer.id) {
    if (notice) notify(notice, "info");
    return false;
  }
  showScreen(screen);
  if (notice) notify(notice, "info");
  return true;
}

/**
 * The customer on screen is gone by the dialer's doing (wrap-up timer, busy, no answer): leave
 * its screen now and wait for the next one; ask the server if it does not come.
 */
function awaitNext(message, kind) {
  state.revoked = true;
  state.screen = null;
  state.form = null;
  fill($("#screen-view"));
  notify(message, kind);
  state.carryNotice = { message, kind };
  showWaiting("next");
}

/** Waiting in list work: for the dialer's call (predictive) or the next customer. */
function showWaiting(kind = "call") {
  showView("waiting");
  const list = state.listWork ? assignmentName(state.listWork.assignmentId) : null;
  const title = kind === "next" ? t("waiting.next") : t("waiting.title");
  fill(
    $("#waiting-view"),
    h(
      "div",
      { class: "screen-head" },
      h("h1", { tabindex: "-1", id: "waiting-title", text: title }),
      list && h("span", { class: "muted", text: list }),
      h("span", { class: "grow" }),
      h("button", { type: "button", id: "stop-list", text: t("waiting.stop"), onclick: stopList }),
    ),
    h("p", { class: "muted", text: kind === "next" ? t("waiting.nextHint") : t("waiting.hint") }),
    h("div", { class: "waiting-grid" }, panel.element),
  );
  panel.show({ waiting: true });
  focusHeading("waiting");
  armNextCheck();
}

/** A customer the dialer should push did not come: ask the server what the agent holds. */
function armNextCheck() {
  clearTimeout(state.nextCheck);
  state.nextCheck = setTimeout(async () => {
    if (state.view !== "waiting" || !state.conn || state.inflight) return;
    try {
      const { screen } = await state.conn.request("work.resume");
      if (state.view !== "waiting") return;
      if (screen) acceptScreen(screen);
      else await afterNothingHeld();
    } catch {
      armNextCheck();
    }
  }, NEXT_CHECK_MS);
}

/** The user holds no customer: wait on when its list is still dialed, else My Work. */
async function afterNothingHeld() {
  let dialing = null;
  try {
    dialing = await softphone.refresh();
  } catch {
    // unknown: My Work is the safe place
  }
  if (dialing && dialing.state === "available" && state.listEmpty === 0) {
    if (state.view !== "waiting") showWaiting();
    else armNextCheck();
    return;
  }
  leaveList();
}

/** List work is over (empty list, stopped): back to My Work. */
function leaveList(message) {
  clearTimeout(state.nextCheck);
  state.listWork = null;
  state.screen = null;
  state.form = null;
  state.carryNotice = null;
  panel.show(null);
  fill($("#screen-view"));
  fill($("#waiting-view"));
  sendPresence();
  showMyWork(message);
}

async function stopList() {
  if (state.inflight) return;
  await write("work.stop", {}, () => leaveList(t("screen.stopped")));
}

/** Rule 8: leave the customer screen now; its unsaved input is gone and nothing more is sent. */
function throwOut(customerId, message, customerName) {
  state.revoked = true;
  state.screen = null;
  state.form = null;
  panel.show(null);
  fill($("#screen-view"));
  notify(message, "kick");
  openDetails(customerId, customerName);
  sendPresence();
}

// My Work -----------------------------------------------------------------------------------

async function showMyWork(message) {
  showView("mywork");
  const view = $("#mywork-view");
  if (message) notify(message, "info");
  let data;
  try {
    data = await state.conn.request("my_work.get");
  } catch (error) {
    if (state.view !== "mywork") return;
    fill(view, h("h1", { tabindex: "-1", text: t("mywork.title") }), errorBox(error));
    return;
  }
  if (state.view !== "mywork") return;
  renderMyWork(data);
}

function renderMyWork(data) {
  const holding = state.screen;
  const lists = data.lists.map((list) => {
    const segmentId = nextId("seg");
    const segments = h(
      "select",
      { id: segmentId, class: "compact" },
      h("option", { value: "", text: t("mywork.allSegments") }),
      list.segments.map((s) => h("option", { value: s.id, text: s.name })),
    );
    return h(
      "li",
      { class: "list-row" },
      h(
        "div",
        { class: "list-name" },
        h("strong", { text: list.name }),
        h("span", { class: "count", text: t("mywork.available", { n: list.available }) }),
      ),
      h("label", { for: segmentId, class: "sr-only", text: t("mywork.segment") }),
      segments,
      h("button", {
        type: "button",
        class: "primary",
        disabled: Boolean(holding || state.listWork),
        "data-start": list.id,
        text: t("mywork.start"),
        "aria-label": t("mywork.startNamed", { name: list.name }),
        onclick: () => startList(list.id, segments.value ? [segments.value] : []),
      }),
    );
  });
  const followUps = (key, rows) =>
    h(
      "section",
      { class: "panel", "aria-labelledby": `mw-${key}` },
      h("h2", { id: `mw-${key}` }, t(`mywork.${key}`), h("span", { class: "pill", text: rows.length })),
      rows.length
        ? h("ul", { class: "rows" }, rows.map(followUpRow))
        : h("p", { class: "muted", text: t("mywork.none") }),
    );
  fill(
    $("#mywork-view"),
    h("h1", { tabindex: "-1", text: t("mywork.title") }),
    holding &&
      h(
        "p",
        { class: "holding" },
        t("mywork.holding", { name: holding.customer.name }),
        " ",
        h("button", { type: "button", text: t("nav.backToCustomerShort"), onclick: backToScreen }),
      ),
    !holding &&
      state.listWork &&
      h(
        "p",
        { class: "holding" },
        t("mywork.inListWork", { name: assignmentName(state.listWork.assignmentId) }),
        " ",
        h("button", { type: "button", text: t("mywork.backToWaiting"), onclick: () => showWaiting() }),
        " ",
        h("button", { type: "button", text: t("waiting.stop"), onclick: stopList }),
      ),
    h(
      "div",
      { class: "mywork-grid" },
      h(
        "section",
        { class: "panel lists", "aria-labelledby": "mw-lists" },
        h("h2", { id: "mw-lists", text: t("mywork.lists") }),
        lists.length
          ? h("ul", { class: "rows" }, lists)
          : h("p", { class: "muted", text: t("mywork.noLists") }),
      ),
      followUps("todayMine", data.today_mine),
      followUps("todayShared", data.today_shared),
      followUps("overdue", [...data.overdue_mine, ...data.overdue_shared]),
    ),
  );
}

function followUpRow(f) {
  return h(
    "li",
    { class: "fu-row" },
    h("button", {
      type: "button",
      class: "link",
      text: f.customer_name ?? t("common.customerN", { id: f.customer_id }),
      onclick: () => openDetails(f.customer_id, f.customer_name),
    }),
    h("span", { class: `tag ${f.kind}`, text: t(`followup.${f.kind}`) }),
    h("time", { datetime: f.due_at, text: fmt.dateTime(f.due_at) }),
    h("span", { class: "muted small", text: assignmentName(f.assignment_id) }),
  );
}

async function startList(assignmentId, segmentIds) {
  clearNotice();
  state.dialMode = null;
  const mark = markStep();
  await write("work.start", { assignment_id: assignmentId, segment_ids: segmentIds }, (reply) => {
    state.listWork = { assignmentId };
    softphone.applyDialing(reply.dialing);
    if (reply.screen) acceptScreen(reply.screen);
    else if (pushedMeanwhile(mark)) return;
    else if (reply.dialing?.state === "available" && state.listEmpty === 0) showWaiting();
    else leaveList(t("mywork.listEmpty"));
  });
}

function backToScreen() {
  if (!state.screen) return;
  showView("screen");
  focusHeading("screen");
}

// Customer details (read view) --------------------------------------------------------------

async function openDetails(customerId, name) {
  state.details = customerId;
  showView("details");
  const view = $("#details-view");
  fill(
    view,
    h("h1", { tabindex: "-1", text: name ?? t("common.customerN", { id: customerId }) }),
    h("p", { class: "muted", text: t("common.loading") }),
  );
  let data;
  try {
    data = await state.conn.request("customer.get", { customer_id: customerId });
  } catch (error) {
    if (state.details === customerId && state.view === "details") view.append(errorBox(error));
    return;
  }
  if (state.details !== customerId || state.view !== "details") return;
  renderDetails(data);
}

function renderDetails(data) {
  const c = data.customer;
  const held = data.held_by;
  let action;
  if (data.can_select && !state.screen) {
    action = h("button", {
      type: "button",
      class: "primary",
      id: "select-customer",
      text: t("details.select"),
      onclick: () => selectCustomer(c.id),
    });
  } else if (held && held.mine) {
    action = h("button", { type: "button", text: t("nav.backToCustomerShort"), onclick: backToScreen });
  } else if (held) {
    action = h("p", {
      class: "held",
      text: t("details.heldBy", { name: held.user_name ?? "?", since: fmt.dateTime(held.since) }),
    });
  } else if (state.screen) {
    action = h("p", { class: "muted", text: t("details.finishFirst") });
  }
  fill(
    $("#details-view"),
    h(
      "div",
      { class: "screen-head" },
      h("h1", { tabindex: "-1", text: c.name }),
      data.status && h("span", { class: "badge", text: data.status }),
      h("span", { class: "muted", text: data.assignment_id ? assignmentName(data.assignment_id) : "" }),
      h("span", { class: "grow" }),
      action,
      h("button", { type: "button", text: t("nav.myWork"), onclick: () => showMyWork() }),
    ),
    h(
      "div",
      { class: "details-grid" },
      h("section", { class: "panel" }, h("h2", { text: t("screen.card") }), cardList(c), infoList(c.info, data.info_fields)),
      h("section", { class: "panel" }, h("h2", { text: t("screen.history") }), historyList(data.history)),
    ),
  );
  focusHeading("details");
}

async function selectCustomer(customerId) {
  clearNotice();
  await write("customer.select", { customer_id: customerId }, ({ screen }) => showScreen(screen), {
    already_selected: (e) =>
      notify(
        t("details.heldBy", { name: e.details.held_by?.name ?? e.details.held_by ?? "?", since: fmt.dateTime(e.details.since) }),
        "warning",
      ),
    user_has_selection: () => {
      notify(t("details.youHoldAnother"), "warning");
      reopenScreen();
    },
  });
}

// The customer screen -----------------------------------------------------------------------

function showScreen(screen) {
  clearNotice();
  clearTimeout(state.nextCheck);
  state.screen = screen;
  state.shownToken = Math.max(state.shownToken, Number(screen.selection_token));
  state.revoked = false;
  state.details = null;
  if (screen.mode === "list") state.listWork ??= { assignmentId: screen.assignment_id };
  panel.clearMessage();
  renderScreen(screen);
  showView("screen");
  sendPresence();
  focusHeading("screen");
  const carried = state.carryNotice;
  state.carryNotice = null;
  if (carried) notify(carried.message, carried.kind);
}

function renderScreen(s) {
  const c = s.customer;
  const form = { info: new Map(), outcome: null, details: new Map(), followUp: null };
  state.form = form;
  const next = s.next_options.map((option, index) => {
    const id = nextId("next");
    return h(
      "div",
      { class: "choice" },
      h("input", { type: "radio", name: "next", id, value: option, checked: index === 0 }),
      h("label", { for: id }, t(`next.${option}`), index === 0 && h("span", { class: "muted small", text: ` (${t("next.default")})` })),
    );
  });
  const outcomes = s.allowed_outcomes.map((o, index) => {
    const id = nextId("oc");
    return h(
      "div",
      { class: "choice" },
      h("input", {
        type: "radio",
        name: "outcome",
        id,
        value: o.id,
        onchange: () => chooseOutcome(o),
      }),
      h("label", { for: id, text: o.name }),
      index < 9 && h("kbd", { "aria-hidden": "true", title: `Alt+${index + 1}`, text: index + 1 }),
    );
  });
  const callBack = h("input", {
    type: "datetime-local",
    id: "callback-at",
    value: fmt.localInputValue(fmt.defaultFollowUp()),
  });

  fill(
    $("#screen-view"),
    h(
      "div",
      { class: "screen-head" },
      h("h1", { tabindex: "-1", id: "screen-title", text: c.name }),
      h("span", { class: "badge", id: "screen-status", text: s.status_name ?? s.status }),
      h(
        "span",
        { class: "muted" },
        `${s.assignment_name} · ${t(`mode.${s.mode}`)} · `,
        t("screen.heldSince", { time: fmt.time(s.selected_at) }),
      ),
      h("span", { class: "grow" }),
      h("button", { type: "button", id: "stop-work", text: t("screen.stop"), onclick: stopWork }),
    ),
    h(
      "div",
      { class: "screen-grid" },
      h(
        "div",
        { class: "col" },
        h(
          "section",
          { class: "panel", "aria-labelledby": "card-h" },
          h("h2", { id: "card-h", text: t("screen.card") }),
          cardList(c),
          infoForm(c, form, s.info_fields),
        ),
      ),
      h(
        "div",
        { class: "col" },
        mountPanel(s),
        h(
          "form",
          { class: "panel", id: "outcome-form", novalidate: true, "aria-labelledby": "outcome-h", onsubmit: (e) => (e.preventDefault(), saveOutcome()) },
          h("h2", { id: "outcome-h", text: t("screen.outcome") }),
          h(
            "fieldset",
            { class: "choices outcomes" },
            h("legend", { class: "sr-only", text: t("screen.outcome") }),
            outcomes.length ? outcomes : h("p", { class: "muted", text: t("screen.noOutcomes") }),
          ),
          h("div", { id: "outcome-details", class: "details-fields" }),
          h(
            "fieldset",
            { class: "choices next" },
            h("legend", { text: t("screen.next") }),
            next,
          ),
          h("p", { class: "error", id: "screen-error", role: "alert" }),
          h(
            "div",
            { class: "actions" },
            h("button", { type: "submit", class: "primary", id: "save", "aria-keyshortcuts": "Alt+S" }, t("screen.save"), h("kbd", { text: "Alt+S" })),
          ),
        ),
        h(
          "section",
          { class: "panel attempts", "aria-labelledby": "attempts-h" },
          h("h2", { id: "attempts-h", text: t("screen.attempts") }),
          h(
            "div",
            { class: "actions" },
            h("button", { type: "button", id: "no-answer", "aria-keyshortcuts": "Alt+N", onclick: () => attempt("no_answer") }, t("attempt.no_answer"), h("kbd", { text: "Alt+N" })),
          ),
          h(
            "div",
            { class: "actions" },
            h("label", { for: "callback-at", text: t("attempt.at") }),
            callBack,
            h("button", { type: "button", id: "call-back", "aria-keyshortcuts": "Alt+L", onclick: () => attempt("call_back_later") }, t("attempt.call_back_later"), h("kbd", { text: "Alt+L" })),
          ),
          h("p", { class: "muted small", text: t(s.status === "available" ? "attempt.sharedHint" : "attempt.personalHint") }),
        ),
      ),
      h(
        "div",
        { class: "col" },
        sidePanel(s.side_panel),
        h("section", { class: "panel", "aria-labelledby": "history-h" }, h("h2", { id: "history-h", text: t("screen.history") }), historyList(s.history)),
      ),
    ),
  );
}

function cardList(c) {
  const rows = [
    [t("card.externalId"), c.external_id],
    [
      t("card.phones"),
      c.phones.length
        ? c.phones.map((p, i) => [i ? ", " : "", h("a", { href: `tel:${p}`, text: p })])
        : "—",
    ],
    [t("card.email"), c.email ? h("a", { href: `mailto:${c.email}`, text: c.email }) : "—"],
    [t("card.attempts"), String(c.attempts ?? 0)],
    [t("card.lastAttempt"), c.last_attempt_at ? fmt.dateTime(c.last_attempt_at) : "—"],
  ];
  return h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function infoList(info, defined) {
  const entries = infoEntries(info, defined);
  if (!entries.length) return null;
  return h(
    "dl",
    { class: "kv" },
    entries.map(({ key, label, value }) => [h("dt", { text: label }), h("dd", { text: displayValue(value) })]),
  );
}

/**
 * The card's info fields: the CRM's definitions in order (label, type; also fields with no value
 * yet), then any value with no definition, labelled from its key and typed from its value.
 */
function infoEntries(info, defined) {
  const values = info ?? {};
  const entries = (defined ?? []).map((f) => ({ key: f.key, label: f.label, type: f.type, value: values[f.key] ?? null }));
  const known = new Set(entries.map((e) => e.key));
  for (const [key, value] of Object.entries(values)) {
    if (!known.has(key)) entries.push({ key, label: fieldLabel(key), type: fieldType(value), value });
  }
  return entries;
}

function displayValue(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "boolean") return v ? t("common.yes") : t("common.no");
  return String(v);
}

/** For a value the CRM does not define: label from the key, type from the value. */
function fieldLabel(key) {
  const text = key.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function fieldType(value) {
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return "number";
  if (typeof value === "string" && /^\d{4}-\d{2}-\d{2}$/.test(value)) return "date";
  return "text";
}

function infoForm(c, form, defined) {
  const entries = infoEntries(c.info, defined);
  if (!entries.length) return null;
  const status = h("p", { class: "muted small", id: "info-status", role: "status" });
  const fields = entries.map(({ key, label, type, value }) => {
    const id = nextId("info");
    const input =
      type === "bool"
        ? h("input", { type: "checkbox", id, checked: Boolean(value) })
        : h("input", {
            id,
            type: type === "number" ? "number" : type === "date" ? "date" : "text",
            step: type === "number" ? "any" : undefined,
            value: value ?? "",
          });
    input.dataset.key = key;
    form.info.set(key, { input, type, original: value });
    return h("div", { class: `field ${type === "bool" ? "inline" : ""}` }, h("label", { for: id, text: label }), input);
  });
  return h(
    "form",
    { id: "info-form", class: "info-form", onsubmit: (e) => (e.preventDefault(), saveFields()) },
    h("h3", { text: t("screen.info") }),
    fields,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "save-fields", text: t("screen.saveFields") }), status),
  );
}

function readInput({ input, type }) {
  if (type === "bool") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return null;
  return type === "number" ? Number(raw) : raw;
}

function changedInfo() {
  const changes = {};
  for (const [key, field] of state.form?.info ?? []) {
    const value = readInput(field);
    if (value !== (field.original ?? null)) changes[key] = value;
  }
  return changes;
}

function chooseOutcome(outcome) {
  const form = state.form;
  form.outcome = outcome;
  form.details = new Map();
  form.followUp = null;
  const box = $("#outcome-details");
  const fields = outcome.details.map((d) => {
    const id = nextId("det");
    const input =
      d.type === "bool"
        ? h("input", { type: "checkbox", id })
        : h("input", {
            id,
            type: { number: "number", date: "date" }[d.type] ?? "text",
            step: d.type === "number" ? "any" : undefined,
            required: d.required,
            "aria-required": d.required ? "true" : undefined,
          });
    form.details.set(d.key, { input, type: d.type, required: d.required, label: d.label });
    return h(
      "div",
      { class: `field ${d.type === "bool" ? "inline" : ""}` },
      h("label", { for: id }, d.label, d.required && h("span", { class: "req", "aria-hidden": "true", text: " *" })),
      input,
    );
  });
  if (outcome.follow_up) {
    const id = nextId("fu");
    const input = h("input", {
      type: "datetime-local",
      id,
      required: true,
      value: fmt.localInputValue(fmt.defaultFollowUp()),
    });
    form.followUp = input;
    fields.push(
      h("div", { class: "field" }, h("label", { for: id, text: t(`screen.followUp.${outcome.follow_up}`) }), input),
    );
  }
  fill(box, fields);
}

function nextChoice() {
  return $('#outcome-form input[name="next"]:checked')?.value ?? state.screen?.next_options[0];
}

function screenError(text) {
  const el = $("#screen-error");
  if (el) el.textContent = text;
}

function writable() {
  return Boolean(state.screen) && !state.revoked && state.inflight === 0;
}

/** The call panel, for the screen being rendered. */
function mountPanel(s) {
  panel.show({ customer: s.customer, token: s.selection_token, mode: s.mode });
  return panel.element;
}

async function saveOutcome() {
  if (!writable()) return;
  const form = state.form;
  const s = state.screen;
  if (!form.outcome) {
    screenError(t("screen.pickOutcome"));
    $('#outcome-form input[name="outcome"]')?.focus();
    return;
  }
  const details = {};
  for (const [key, field] of form.details) {
    const value = readInput(field);
    if (field.required && (value === null || value === "")) {
      screenError(t("screen.required", { label: field.label }));
      field.input.focus();
      return;
    }
    if (value !== null) details[key] = value;
  }
  const request = {
    customer_id: s.customer.id,
    selection_token: s.selection_token,
    outcome_id: form.outcome.id,
    details,
    next: nextChoice(),
  };
  if (form.followUp) {
    const at = fmt.isoFromLocalInput(form.followUp.value);
    if (!at || new Date(at) <= new Date()) {
      screenError(t("screen.futureTime"));
      form.followUp.focus();
      return;
    }
    request.follow_up_at = at;
  }
  screenError("");
  if (!(await flushInfo())) return;
  // A call still up ends on the server with the save (rule 17 for "My Work" also stops timers).
  const mark = markStep();
  await write("customer.save", request, (reply) => afterStep(reply, request.next, t("screen.saved"), mark));
}

async function attempt(kind) {
  if (!writable()) return;
  const s = state.screen;
  const request = {
    customer_id: s.customer.id,
    selection_token: s.selection_token,
    kind,
    next: nextChoice(),
  };
  if (kind === "call_back_later") {
    const at = fmt.isoFromLocalInput($("#callback-at").value);
    if (!at || new Date(at) <= new Date()) {
      screenError(t("screen.futureTime"));
      $("#callback-at").focus();
      return;
    }
    request.at = at;
  }
  screenError("");
  if (!(await flushInfo())) return;
  const mark = markStep();
  await write("customer.attempt", request, (reply) =>
    afterStep(reply, request.next, t(`attempt.done.${kind}`), mark),
  );
}

/** Info fields edited but not saved yet go with the save (customer.edit first). */
async function flushInfo() {
  const changes = changedInfo();
  if (!Object.keys(changes).length) return true;
  return saveFields(changes);
}

async function saveFields(changes = changedInfo()) {
  if (!writable()) return false;
  const s = state.screen;
  if (!Object.keys(changes).length) {
    $("#info-status").textContent = t("screen.noChanges");
    return true;
  }
  let ok = false;
  await write(
    "customer.edit",
    { customer_id: s.customer.id, selection_token: s.selection_token, info: changes },
    ({ info }) => {
      ok = true;
      if (state.screen !== s) return;
      s.customer.info = info;
      for (const [key, field] of state.form.info) field.original = info[key] ?? null;
      $("#info-status").textContent = t("screen.fieldsSaved");
    },
  );
  return ok;
}

/** Before a step: what its reply is compared with (the dialer may push while it runs). */
function markStep() {
  state.listEmpty = 0;
  return { token: state.shownToken };
}

/** A customer pushed while the step ran is open already: the step's empty answer is older. */
function pushedMeanwhile(mark) {
  return Boolean(state.screen) && !state.revoked && state.shownToken > mark.token;
}

function afterStep({ screen, dialing }, next, doneText, mark) {
  softphone.applyDialing(dialing);
  if (!screen && pushedMeanwhile(mark)) {
    notify(doneText, "info");
    return;
  }
  if (screen) {
    if (next === "continue") {
      showScreen(screen);
      notify(doneText, "info");
    } else acceptScreen(screen, { notice: doneText });
    return;
  }
  if (next === "next_from_list" && dialing?.state === "available" && state.listEmpty === 0) {
    // Predictive: the dialer connects the next answered call; wait here, not in My Work.
    state.screen = null;
    state.form = null;
    fill($("#screen-view"));
    notify(doneText, "info");
    showWaiting();
    return;
  }
  leaveList(next === "next_from_list" ? t("mywork.listEmpty") : doneText);
}

async function stopWork() {
  if (state.revoked || state.inflight) return;
  if (!window.confirm(t("screen.stopConfirm"))) return;
  await write("work.stop", {}, () => leaveList(t("screen.stopped")));
}

/**
 * Send a write (resent with the same id after a reconnect, so it applies once) and handle its
 * common errors. `onError[code]` handles a code itself.
 */
async function write(type, fields, onOk, onError = {}) {
  state.inflight += 1;
  document.body.classList.add("busy");
  const forCustomer = fields.customer_id;
  try {
    const data = await state.conn.request(type, fields, { retry: true });
    state.inflight -= 1;
    onOk(data);
  } catch (error) {
    state.inflight -= 1;
    if (onError[error.code]) onError[error.code](error);
    else if (error.code === "selection_lost") {
      if (!state.revoked) throwOut(forCustomer, t("kick.lost"), state.screen?.customer.name);
    } else if (state.view === "screen") screenError(errorText(error));
    else notify(errorText(error), "error");
  } finally {
    if (!state.inflight) document.body.classList.remove("busy");
  }
}

function errorText(error) {
  const known = t(`error.${error.code}`, {}, null);
  return known ? `${known} ${error.message && error.code === "invalid" ? `(${error.message})` : ""}`.trim() : error.message;
}

function errorBox(error) {
  return h("p", { class: "error", role: "alert", text: errorText(error) });
}

// Side panel and history ---------------------------------------------------------------------

function sidePanel(panel) {
  const group = (key, rows) =>
    h(
      "div",
      { class: "fu-group" },
      h("h3", {}, t(`side.${key}`), h("span", { class: "pill", text: rows.length })),
      rows.length
        ? h(
            "ul",
            { class: "rows" },
            rows.map((f) =>
              h(
                "li",
                { class: "fu-row" },
                h("span", { text: f.customer_name ?? t("common.customerN", { id: f.customer_id }) }),
                h("time", { datetime: f.due_at, text: fmt.dateTime(f.due_at) }),
              ),
            ),
          )
        : h("p", { class: "muted small", text: t("mywork.none") }),
    );
  return h(
    "section",
    { class: "panel side", "aria-labelledby": "side-h" },
    h("h2", { id: "side-h", text: t("side.title") }),
    group("upcoming_mine", panel.upcoming_mine),
    group("overdue_mine", panel.overdue_mine),
    group("overdue_shared", panel.overdue_shared),
  );
}

function historyList(history) {
  if (!history?.length) return h("p", { class: "muted", text: t("history.none") });
  return h(
    "ol",
    { class: "history" },
    history.map((e) =>
      h(
        "li",
        {},
        h("time", { datetime: e.at, text: fmt.dateTime(e.at) }),
        h("strong", { text: t(`history.${e.kind}`, {}, e.kind) }),
        h("span", { class: "muted", text: historyDetail(e) }),
        e.user_name && h("span", { class: "who", text: e.user_name }),
      ),
    ),
  );
}

function historyDetail(e) {
  const d = e.data ?? {};
  if (e.kind === "outcome") return [d.outcome, d.to_status && `→ ${d.to_status}`].filter(Boolean).join(" ");
  if (e.kind === "attempt") {
    const kind = t(`attempt.${d.kind}`, {}, d.kind ?? "");
    return d.call_back_at ? `${kind} ${fmt.dateTime(d.call_back_at)}` : kind;
  }
  if (e.kind === "follow_up_created") return `${t(`followup.${d.kind}`, {}, d.kind ?? "")} ${fmt.dateTime(d.due_at)}`;
  if (e.kind === "field_edited") return Object.keys(d.changes ?? {}).map(fieldLabel).join(", ");
  return "";
}

// Keyboard shortcuts --------------------------------------------------------------------------

export const SHORTCUTS = [
  ["Alt+S", "shortcut.save"],
  ["Alt+N", "shortcut.noAnswer"],
  ["Alt+L", "shortcut.callBack"],
  ["Alt+1 … Alt+9", "shortcut.outcome"],
  ["Alt+C", "shortcut.call"],
  ["Alt+X", "shortcut.hangUp"],
  ["Alt+M", "shortcut.myWork"],
  ["Alt+K", "shortcut.customer"],
  ["Alt+P", "shortcut.pause"],
  ["Alt+H", "shortcut.help"],
];

function onKey(event) {
  if (!event.altKey || event.ctrlKey || event.metaKey || !state.conn) return;
  const onScreen = state.view === "screen" && state.screen;
  const code = event.code;
  let handled = true;
  if (code === "KeyS" && onScreen) saveOutcome();
  else if (code === "KeyN" && onScreen) attempt("no_answer");
  else if (code === "KeyL" && onScreen) attempt("call_back_later");
  else if (code === "KeyC" && (onScreen || state.view === "waiting")) panel.toggle();
  else if (code === "KeyX") panel.hangUp();
  else if (code === "KeyM") showMyWork();
  else if (code === "KeyK" && state.screen) backToScreen();
  else if (code === "KeyP") setPresence(state.presence === "paused" ? "available" : "paused");
  else if (/^Digit[1-9]$/.test(code) && onScreen) {
    const radio = document.querySelectorAll('#outcome-form input[name="outcome"]')[Number(code.slice(5)) - 1];
    if (radio) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change"));
      radio.focus();
    }
  } else handled = false;
  if (handled) event.preventDefault();
}

// Boot ---------------------------------------------------------------------------------------

let shell;

export function boot() {
  shell = setUpShell({
    page: "agent",
    shortcuts: SHORTCUTS,
    onLanguage: () => rerender(),
    onSession: (session) => {
      if (isSupervisor(session.user) && !new URLSearchParams(location.search).has("agent")) {
        location.replace("supervisor.html");
        return;
      }
      start(session);
    },
    onLoggedOut: () => {
      state.conn?.stop();
      state.conn = null;
      state.screen = null;
      state.listWork = null;
      state.shownToken = 0;
      clearTimeout(state.nextCheck);
      softphone.reset();
      panel.show(null);
      showView("login");
    },
  });
  $("#presence").addEventListener("change", (e) => setPresence(e.target.value));
  $("#nav-mywork").addEventListener("click", () => showMyWork());
  $("#nav-customer").addEventListener("click", backToScreen);
  document.addEventListener("keydown", onKey);
  shell.begin();
}

/** Language changed: paint the current view again (keeping a screen's input is not worth a
 * second code path; the screen is re-rendered only when nothing was typed). */
function rerender() {
  if (!state.conn) return;
  if (state.view === "mywork") showMyWork();
  else if (state.view === "waiting") showWaiting();
  else if (state.view === "details" && state.details) openDetails(state.details);
  else if (state.view === "screen" && state.screen && !Object.keys(changedInfo()).length && !state.form?.outcome) {
    renderScreen(state.screen);
  }
  panel.repaint();
  showView(state.view);
  if (state.conn) sendPresence();
}
