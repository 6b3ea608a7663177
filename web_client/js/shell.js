// What both pages share: the login form, the header (who, language, help, log out), the
// connection banner and the notice region (aria-live), and the help dialog.

import { $, fill, h } from "./dom.js";
import { applyStatic, language, setLanguage, t } from "./i18n.js";
import { api, currentSession, logIn, logOut } from "./session.js";

let noticeTimer = null;

/** Say something in the notice region (role=alert). `kick` and `error` stay until cleared. */
export function notify(message, kind = "info") {
  const region = $("#notice");
  clearTimeout(noticeTimer);
  region.dataset.kind = kind;
  fill(
    region,
    h("span", { class: "notice-text", text: message }),
    h("button", {
      type: "button",
      class: "dismiss",
      "aria-label": t("common.dismiss"),
      text: "×",
      onclick: clearNotice,
    }),
  );
  if (kind === "info") noticeTimer = setTimeout(clearNotice, 6000);
}

export function clearNotice() {
  clearTimeout(noticeTimer);
  const region = $("#notice");
  region.dataset.kind = "";
  fill(region);
}

export function setUpShell({ page, shortcuts, onLanguage, onSession, onLoggedOut }) {
  let session = null;
  let bannerTimer = null;

  const langSelect = $("#lang");
  langSelect.value = language();
  langSelect.addEventListener("change", () => {
    setLanguage(langSelect.value);
    applyStatic(document);
    renderWho();
    renderHelp();
    onLanguage?.();
  });

  function renderWho() {
    if (!session) return;
    $("#who").textContent = `${session.user.name} · ${t(`role.${session.user.role}`)}`;
  }

  function renderHelp() {
    const rows = shortcuts.map(([keys, label]) =>
      h("tr", {}, h("th", { scope: "row" }, h("kbd", { text: keys })), h("td", { text: t(label) })),
    );
    fill($("#help-list"), rows);
  }

  function openHelp() {
    const dialog = $("#help-dialog");
    if (!dialog.open) dialog.showModal();
  }

  $("#help-button").addEventListener("click", openHelp);
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    if ((event.altKey && event.code === "KeyH") || (event.key === "?" && !typing && !event.altKey)) {
      event.preventDefault();
      openHelp();
    }
  });

  $("#logout").addEventListener("click", () => loggedOut());

  function loggedOut(message = "") {
    logOut();
    session = null;
    document.body.dataset.auth = "out";
    setBanner(null);
    clearNotice();
    onLoggedOut?.();
    if (page !== "agent") {
      location.replace("index.html");
      return;
    }
    $("#login-error").textContent = message;
    $("#username")?.focus();
  }

  function enter(newSession) {
    session = newSession;
    document.body.dataset.auth = "in";
    renderWho();
    onSession(session);
  }

  const loginForm = $("#login-form");
  loginForm?.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#login-error").textContent = "";
    const form = new FormData(loginForm);
    try {
      const newSession = await logIn(form.get("username"), form.get("password"));
      loginForm.reset();
      enter(newSession);
    } catch (error) {
      $("#login-error").textContent =
        error.code === "unauthorized" ? t("login.wrong") : error.message;
    }
  });

  /** The banner while the socket is not open: what happened, when the next try comes. */
  function setBanner(status) {
    clearInterval(bannerTimer);
    const banner = $("#conn-banner");
    if (!status || status.state === "open") {
      banner.dataset.state = "open";
      fill(banner);
      return;
    }
    banner.dataset.state = status.state;
    const countdown = h("span", { class: "countdown", "aria-hidden": "true" });
    const message = {
      waiting: navigator.onLine ? t("conn.lost") : t("conn.offline"),
      connecting: t("conn.connecting"),
      refused: t("conn.refused"),
      unauthorized: t("conn.unauthorized"),
    }[status.state];
    fill(
      banner,
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { text: message }),
      countdown,
      status.state === "waiting" &&
        h("button", {
          type: "button",
          text: t("conn.now"),
          onclick: () => watched?.reconnectNow(),
        }),
    );
    if (status.retryAt) {
      const paint = () => {
        const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
        countdown.textContent = ` ${t("conn.retryIn", { s: seconds })}`;
      };
      paint();
      bannerTimer = setInterval(paint, 250);
    }
  }

  let watched = null;
  let everOpen = false;
  function watch(conn) {
    watched = conn;
    everOpen = false;
    const previous = conn.handlers.onStatus;
    conn.handlers.onStatus = (status) => {
      previous?.(status);
      if (status.state === "open") everOpen = true;
      // The first connect is quiet; after that every state but "open" shows the banner.
      if (status.state === "connecting" && !everOpen) return;
      setBanner(status);
    };
  }

  return {
    begin() {
      applyStatic(document);
      renderHelp();
      const stored = currentSession();
      if (stored) enter(stored);
      else if (page === "agent") loggedOut();
      else location.replace("index.html");
    },
    api: (path) => api(path, { token: session?.token }),
    watch,
    loggedOut,
  };
}
