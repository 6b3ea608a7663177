// The softphone panel, bound to the server's dialer (docs/protocol.md, "Dialing"). The server
// places every call: preview calls when the agent presses Call (`call.dial`), progressive and
// predictive lists call by themselves. The page only shows what the server says:
// `dialing.changed` (the agent's dialing state and running timer) and `call.state` (the call's
// progress and result), and sends `call.dial` / `call.hang_up`.
//
// Timers count in server time: every frame that carries `server_time` gives the offset of the
// page's clock, so a talk time or a wrap-up countdown is `deadline - (Date.now() + offset)`
// however wrong the agent's clock is.

import { h } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";

/** Phases with a call up: Call is off, Hang up is on. */
const ON_CALL = new Set(["dialing", "ringing", "talking"]);
/** Phases whose timer runs. */
const TIMED = new Set(["dialing", "ringing", "talking", "wrap_up"]);
/** Call results after which the server let the customer go and hands out the next one. */
export const MOVES_ON = new Set(["busy", "no_answer", "failed", "abandoned"]);

/**
 * The agent's dialing state as the server last told it. `request(type, fields)` sends a verb
 * and resolves with its reply data (connection.js).
 */
export function createSoftphone(request) {
  let dialing = null; // the last dialing state (wire form)
  let dialingAt = -Infinity; // its server_time, ms: an older snapshot never overwrites a newer one
  let call = null; // the last call.state of the agent's calls
  let offsetMs = 0; // server clock - page clock
  const listeners = new Set();

  const serverNow = () => Date.now() + offsetMs;
  const emit = () => listeners.forEach((fn) => fn(model));

  function clock(serverTime) {
    const at = Date.parse(serverTime ?? "");
    if (Number.isFinite(at)) offsetMs = at - Date.now();
    return at;
  }

  const model = {
    serverNow,
    get dialing() {
      return dialing;
    },
    get call() {
      return call;
    },
    /** off, available, previewing, dialing, ringing, talking or wrap_up. */
    get phase() {
      const state = dialing?.state ?? "off";
      if (state === "dialing" && call?.call_id === dialing.call_id && call.state === "ringing") {
        return "ringing";
      }
      return state;
    },
    get onCall() {
      return ON_CALL.has(model.phase);
    },
    /** The result of the last call of `customerId` once it ended, or null. */
    endedFor(customerId) {
      return call && call.state === "ended" && call.customer_id === customerId ? call.result : null;
    },
    applyDialing(data) {
      if (!data) return;
      const at = clock(data.server_time);
      if (Number.isFinite(at) && at < dialingAt) return;
      dialingAt = Number.isFinite(at) ? at : dialingAt;
      dialing = data;
      emit();
    },
    applyCall(data) {
      clock(data.server_time);
      call = data;
      emit();
    },
    async dial(customerId, token) {
      const reply = await request("call.dial", { customer_id: customerId, selection_token: token });
      model.applyDialing(reply.dialing);
      return reply;
    },
    async hangUp() {
      model.applyDialing((await request("call.hang_up")).dialing);
    },
    /** After a (re)connect: the state on the server now. */
    async refresh() {
      const { dialing: now } = await request("call.state");
      dialingAt = -Infinity;
      model.applyDialing(now);
      return now;
    },
    reset() {
      dialing = call = null;
      dialingAt = -Infinity;
      emit();
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  return model;
}

/**
 * The panel: one element, moved between the customer screen and the waiting view. `show(ctx)`
 * says what it is for: `{customer, token, mode}` (a customer screen; `mode` list or manual),
 * `{waiting: true}`, or null. A refused call.dial (`do_not_call` above all) is said in its
 * `role="alert"` line. `dialMode()` names the list's dial mode when known.
 */
export function createPanel(phone, { dialMode = () => null } = {}) {
  let ctx = null;
  let busy = false; // a call.dial / call.hang_up waiting for its reply
  let tick = null;

  const heading = h("h2", { id: "phone-h", text: t("phone.title") });
  const modeTag = h("span", { class: "tag dial-mode", id: "dial-mode" });
  const number = h("span", { class: "phone", id: "phone-number" });
  const status = h("p", { id: "call-state", class: "call-state", role: "status", "aria-live": "polite", "aria-atomic": "true" });
  const timerLabel = h("span", { id: "call-timer-label", class: "timer-label" });
  const timer = h("span", { id: "call-timer", class: "timer", role: "timer", "aria-live": "off", "aria-labelledby": "call-timer-label" });
  const limit = h("span", { id: "call-limit", class: "muted small" });
  const callButton = h("button", { type: "button", id: "call-button", class: "call", "aria-keyshortcuts": "Alt+C", onclick: () => dial() });
  const hangUpButton = h("button", { type: "button", id: "hangup-button", class: "hangup", "aria-keyshortcuts": "Alt+X", onclick: () => hangUp() });
  const message = h("p", { id: "call-message", class: "error", role: "alert" });
  const hint = h("p", { class: "muted small", id: "phone-hint" });
  const element = h(
    "section",
    { class: "panel softphone", id: "softphone", "aria-labelledby": "phone-h" },
    h("div", { class: "phone-head" }, heading, modeTag),
    h("div", { class: "phone-row" }, number, callButton, hangUpButton),
    h("div", { class: "phone-row status-row" }, status, h("span", { class: "timer-box" }, timerLabel, " ", timer, " ", limit)),
    message,
    hint,
  );

  function customerPhone() {
    return ctx?.customer?.phones?.[0] ?? null;
  }

  function canCall() {
    return Boolean(ctx?.customer && ctx.mode === "list" && customerPhone() && !ctx.blocked && !busy && !phone.onCall);
  }

  function canHangUp() {
    return !busy && phone.onCall;
  }

  async function dial() {
    if (!canCall()) return false;
    const focused = document.activeElement === callButton;
    busy = true;
    message.textContent = "";
    paint();
    try {
      await phone.dial(ctx.customer.id, ctx.token);
    } catch (error) {
      message.textContent =
        error.code === "do_not_call" ? t("phone.dnc") : `${t("phone.refused")} ${error.message ?? ""}`.trim();
    } finally {
      busy = false;
      paint();
      if (focused && !hangUpButton.disabled) hangUpButton.focus();
    }
    return true;
  }

  async function hangUp() {
    if (!canHangUp()) return false;
    const focused = document.activeElement === hangUpButton;
    busy = true;
    paint();
    try {
      await phone.hangUp();
    } catch (error) {
      message.textContent = `${t("phone.refused")} ${error.message ?? ""}`.trim();
    } finally {
      busy = false;
      paint();
      if (focused && !callButton.disabled) callButton.focus();
    }
    return true;
  }

  function statusText(phase) {
    const result = ctx?.customer ? phone.endedFor(ctx.customer.id) : null;
    if (result && !ON_CALL.has(phase)) {
      const ended = t("phone.endedWith", { result: t(`phone.result.${result}`, {}, result) });
      return phase === "wrap_up" ? `${t("phone.state.wrap_up")} · ${ended}` : ended;
    }
    if (phase === "dialing" && phone.call?.number) return t("phone.dialingNumber", { number: phone.call.number });
    if (ctx?.waiting && phase === "off") return t("phone.state.waitingOff");
    return t(`phone.state.${phase}`);
  }

  function paintTimer(phase) {
    const d = phone.dialing;
    const now = phone.serverNow();
    const since = Date.parse(d?.since ?? "");
    const deadline = Date.parse(d?.deadline ?? "");
    limit.textContent = "";
    element.classList.remove("overrun");
    if (!TIMED.has(phase) || !Number.isFinite(since)) {
      timerLabel.textContent = "";
      timer.textContent = "";
      return;
    }
    if (phase === "wrap_up" && Number.isFinite(deadline)) {
      timerLabel.textContent = t("phone.wrapUpLeft");
      timer.textContent = fmt.duration(Math.max(0, deadline - now) + 999);
      return;
    }
    timerLabel.textContent = t(`phone.timer.${phase}`);
    timer.textContent = fmt.duration(now - since);
    if (phase === "talking" && Number.isFinite(deadline)) {
      const over = d.overrun || now >= deadline;
      limit.textContent = over ? t("phone.overrun") : t("phone.talkLimit", { time: fmt.duration(deadline - since) });
      element.classList.toggle("overrun", over);
    }
  }

  function paint() {
    const phase = phone.phase;
    element.dataset.phase = phase;
    heading.textContent = t("phone.title");
    const mode = dialMode();
    modeTag.textContent = mode ? t(`phone.mode.${mode}`) : "";
    modeTag.hidden = !mode;
    const tel = customerPhone();
    if (ctx?.customer) {
      number.replaceChildren(
        tel ? h("a", { href: `tel:${tel}`, id: "phone-link", text: tel }) : h("span", { class: "muted", text: t("phone.none") }),
      );
    } else number.replaceChildren();
    const listCalls = !ctx?.customer || ctx.mode === "list";
    callButton.textContent = t("phone.call");
    hangUpButton.textContent = t("phone.hangUp");
    callButton.hidden = !listCalls || Boolean(ctx?.waiting);
    callButton.disabled = !canCall();
    hangUpButton.disabled = !canHangUp();
    const text = statusText(phase);
    if (status.textContent !== text) status.textContent = text;
    status.dataset.state = phase;
    paintTimer(phase);
    hint.textContent = !listCalls
      ? t("phone.manualHint")
      : ctx?.waiting
        ? t("phone.waitingHint")
        : mode && mode !== "preview"
          ? t("phone.autoHint")
          : "";
    clearInterval(tick);
    tick = TIMED.has(phase) ? setInterval(() => paintTimer(phone.phase), 250) : null;
  }

  phone.subscribe(() => paint());

  return {
    element,
    /** Put the panel to work for a customer screen, the waiting view, or nothing. */
    show(context) {
      ctx = context;
      if (!ctx) message.textContent = "";
      paint();
    },
    /** The customer screen was saved or left: its refusals are old news. */
    clearMessage() {
      message.textContent = "";
    },
    repaint: paint,
    dial,
    hangUp,
    /** Alt+C: hang up when a call is up, otherwise call. */
    toggle() {
      return phone.onCall ? hangUp() : dial();
    },
  };
}
