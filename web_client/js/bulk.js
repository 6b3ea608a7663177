// Bulk work on the supervisor page (DOMAIN rules 19-22): a customer filter with its preview,
// a mass outcome or a move started after a confirmation, imports with column mapping, and
// every job of the list with a live progress bar (bulk.progress / bulk.finished) and its report.

import { $, fill, h, nextId } from "./dom.js";
import * as fmt from "./format.js";
import { t } from "./i18n.js";
import { notify } from "./shell.js";

const state = {
  assignmentId: "",
  options: null, // bulk.options of the chosen list
  preview: null, // the last bulk.preview answer, for the filter it was made for
  previewKey: "",
  conditions: [], // [{id, field, op, a, b}]
  jobs: new Map(), // job_id -> job (bulk.jobs rows, updated by events)
  upload: null, // the last upload's answer
  importRows: null, // {job_id, rows}
  outcomeNames: new Map(), // outcome id -> name, from previews
};

let ctx; // {conn(), token(), assignments(), isAdmin()}

export function setUpBulk(context) {
  ctx = context;
  $("#bulk-list").addEventListener("change", (e) => chooseList(e.target.value));
  $("#import-list").addEventListener("change", (e) => chooseList(e.target.value));
  $("#bulk-add-condition").addEventListener("click", addCondition);
  $("#bulk-preview").addEventListener("click", runPreview);
  $("#bulk-form").addEventListener("input", onFilterEdit);
  $("#bulk-form").addEventListener("change", onFilterEdit);
  for (const radio of document.querySelectorAll("input[name='bulk-action']")) {
    radio.addEventListener("change", renderAction);
  }
  $("#bulk-outcome").addEventListener("change", renderDetails);
  $("#bulk-form").addEventListener("submit", askStart);
  $("#bulk-confirm").addEventListener("close", onConfirmClose);
  $("#import-read").addEventListener("click", readColumns);
  $("#import-form").addEventListener("submit", startImport);
  $("#import-file").addEventListener("change", () => {
    state.upload = null;
    renderMapping();
  });
  return { onReady, onEvent, render, assignmentsLoaded };
}

// Lists and jobs --------------------------------------------------------------------------------

function assignmentsLoaded() {
  const list = [...ctx.assignments().values()];
  if (!state.assignmentId && list.length) state.assignmentId = list[0].id;
  renderLists();
  loadList();
}

function renderLists() {
  for (const select of [$("#bulk-list"), $("#import-list")]) {
    fill(select, [...ctx.assignments().values()].map((a) => h("option", { value: a.id, text: a.name })));
    select.value = state.assignmentId;
  }
}

function chooseList(id) {
  state.assignmentId = id;
  state.conditions = [];
  state.preview = null;
  state.jobs = new Map();
  renderLists();
  loadList();
}

/** After every (re)connect: following bulk work is per connection. */
async function onReady() {
  await loadList();
}

async function loadList() {
  const conn = ctx.conn();
  const id = state.assignmentId;
  if (!conn || !id) return;
  try {
    const [options, listed] = await Promise.all([
      conn.request("bulk.options", { assignment_id: id }),
      conn.request("bulk.jobs", { assignment_id: id }),
    ]);
    if (id !== state.assignmentId) return;
    state.options = options;
    state.jobs = new Map(listed.jobs.map((j) => [j.job_id, j]));
    $("#tab-import").hidden = !options.can_import;
    render();
  } catch (error) {
    if (error.code !== "disconnected") notify(error.message, "error");
  }
}

function onEvent(name, data) {
  if (name !== "bulk.progress" && name !== "bulk.finished") return;
  const known = state.jobs.get(data.job_id);
  const ours = known || data.assignment_id === state.assignmentId;
  if (!ours) return;
  const job = Object.assign(known ?? { job_id: data.job_id }, data);
  state.jobs.set(job.job_id, job);
  if (name === "bulk.finished") {
    job.finished_at = job.finished_at ?? new Date().toISOString();
    if (job.kind === "import" && state.importRows?.job_id === job.job_id) showRows(job.job_id);
  }
  renderJobs();
}

// The filter ------------------------------------------------------------------------------------

function render() {
  renderFilter();
  renderAction();
  renderPreview();
  renderJobs();
  renderMapping();
}

function renderFilter() {
  const o = state.options;
  const checks = (root, items, name) => {
    const kept = new Set([...root.querySelectorAll("input:checked")].map((i) => i.value));
    fill(
      root,
      items.map((item) => {
        const id = nextId(name);
        return h(
          "div",
          { class: "choice" },
          h("input", { type: "checkbox", id, value: item.value, checked: kept.has(item.value) }),
          h("label", { for: id, text: item.label }),
        );
      }),
    );
  };
  checks($("#bulk-segments .checks"), (o?.segments ?? []).map((s) => ({ value: s.id, label: s.name })), "seg");
  checks($("#bulk-statuses .checks"), (o?.statuses ?? []).map((s) => ({ value: s.key, label: s.name })), "st");
  $("#bulk-info").hidden = !o?.info_fields.length;
  renderConditions();
}

function addCondition() {
  const field = state.options?.info_fields[0];
  if (!field) return;
  state.conditions.push({ id: nextId("cond"), field: field.key, op: "eq", a: "", b: "" });
  renderConditions();
  onFilterEdit();
  $(`#${state.conditions.at(-1).id}-field`)?.focus();
}

const OPS = {
  text: ["eq", "empty", "not_empty"],
  number: ["eq", "range", "empty", "not_empty"],
  date: ["eq", "date_range", "empty", "not_empty"],
  bool: ["eq", "empty", "not_empty"],
};

function renderConditions() {
  const fields = state.options?.info_fields ?? [];
  fill(
    $("#bulk-conditions"),
    state.conditions.map((c, index) => {
      const spec = fields.find((f) => f.key === c.field) ?? fields[0];
      const ops = OPS[spec?.type] ?? OPS.text;
      if (!ops.includes(c.op)) c.op = ops[0];
      const n = index + 1;
      const input = (key, label) => {
        const id = `${c.id}-${key}`;
        const type = spec?.type === "number" ? "number" : spec?.type === "date" ? "date" : "text";
        return h(
          "div",
          { class: "field" },
          h("label", { for: id, text: label }),
          spec?.type === "bool" && key === "a"
            ? h(
                "select",
                { id, onchange: (e) => (c.a = e.target.value) },
                h("option", { value: "true", text: t("common.yes"), selected: c.a === "true" }),
                h("option", { value: "false", text: t("common.no"), selected: c.a === "false" }),
              )
            : h("input", { id, type, step: "any", value: c[key], oninput: (e) => (c[key] = e.target.value) }),
        );
      };
      const ranged = c.op === "range" || c.op === "date_range";
      return h(
        "div",
        { class: "condition", role: "group", "aria-label": t("bulk.conditionN", { n }) },
        h(
          "div",
          { class: "field" },
          h("label", { for: `${c.id}-field`, text: t("bulk.conditionField", { n }) }),
          h(
            "select",
            {
              id: `${c.id}-field`,
              onchange: (e) => {
                c.field = e.target.value;
                renderConditions();
              },
            },
            fields.map((f) => h("option", { value: f.key, text: f.label, selected: f.key === c.field })),
          ),
        ),
        h(
          "div",
          { class: "field" },
          h("label", { for: `${c.id}-op`, text: t("bulk.conditionOp") }),
          h(
            "select",
            {
              id: `${c.id}-op`,
              onchange: (e) => {
                c.op = e.target.value;
                renderConditions();
              },
            },
            ops.map((op) => h("option", { value: op, text: t(`bulk.op.${op}`), selected: op === c.op })),
          ),
        ),
        c.op === "eq" && input("a", t("bulk.value")),
        ranged && input("a", t("bulk.from")),
        ranged && input("b", t("bulk.to")),
        h("button", {
          type: "button",
          text: t("bulk.remove"),
          "aria-label": t("bulk.removeN", { n }),
          onclick: () => {
            state.conditions = state.conditions.filter((x) => x !== c);
            renderConditions();
            onFilterEdit();
          },
        }),
      );
    }),
  );
}

/** The filter of the form, as the wire wants it; throws an Error naming a bad entry. */
function currentFilter() {
  const filter = { assignment_id: state.assignmentId };
  const ticked = (sel) => [...document.querySelectorAll(`${sel} input:checked`)].map((i) => i.value);
  const segments = ticked("#bulk-segments");
  const statuses = ticked("#bulk-statuses");
  if (segments.length) filter.segment_ids = segments;
  if (statuses.length) filter.statuses = statuses;
  const min = $("#bulk-attempts-min").value;
  const max = $("#bulk-attempts-max").value;
  if (min !== "" || max !== "") {
    filter.attempts = {};
    if (min !== "") filter.attempts.min = Number(min);
    if (max !== "") filter.attempts.max = Number(max);
  }
  for (const [key, sel] of [["has_phone", "#bulk-has-phone"], ["has_email", "#bulk-has-email"]]) {
    const value = $(sel).value;
    if (value) filter[key] = value === "true";
  }
  const fields = state.options?.info_fields ?? [];
  const info = [];
  for (const c of state.conditions) {
    const spec = fields.find((f) => f.key === c.field);
    const typed = (v) => (spec?.type === "number" ? Number(v) : spec?.type === "bool" ? v !== "false" : v);
    if (c.op === "empty" || c.op === "not_empty") {
      info.push({ field: c.field, op: "empty", empty: c.op === "empty" });
    } else if (c.op === "eq") {
      const value = spec?.type === "bool" && c.a === "" ? "true" : c.a;
      if (value === "") throw new Error(t("bulk.needValue", { field: spec?.label ?? c.field }));
      info.push({ field: c.field, op: "eq", value: typed(value) });
    } else {
      if (c.a === "" && c.b === "") throw new Error(t("bulk.needValue", { field: spec?.label ?? c.field }));
      const [lo, hi] = c.op === "range" ? ["min", "max"] : ["start", "end"];
      const cond = { field: c.field, op: c.op };
      if (c.a !== "") cond[lo] = typed(c.a);
      if (c.b !== "") cond[hi] = typed(c.b);
      info.push(cond);
    }
  }
  if (info.length) filter.info = info;
  return filter;
}

function onFilterEdit(event) {
  if (event && event.target.closest?.("#bulk-action, #bulk-outcome-fields, #bulk-move-fields")) return;
  // A preview is for the filter it was made with: another filter needs a new one.
  let key = "";
  try {
    key = JSON.stringify(currentFilter());
  } catch {
    key = "";
  }
  if (state.preview && key !== state.previewKey) {
    state.preview = null;
    renderPreview();
    renderAction();
  }
}

async function runPreview() {
  $("#bulk-form-error").textContent = "";
  let filter;
  try {
    filter = currentFilter();
  } catch (error) {
    $("#bulk-form-error").textContent = error.message;
    return;
  }
  try {
    state.preview = await ctx.conn().request("bulk.preview", { filter });
    state.previewKey = JSON.stringify(filter);
    for (const o of state.preview.outcomes) state.outcomeNames.set(o.id, o.name);
  } catch (error) {
    state.preview = null;
    $("#bulk-form-error").textContent = error.message;
  }
  renderPreview();
  renderAction();
}

function renderPreview() {
  const p = state.preview;
  const out = $("#bulk-preview-result");
  if (!p) {
    fill(out);
    return;
  }
  const parts = p.statuses.map((s) => `${s.name}: ${s.count}`).join(", ");
  fill(
    out,
    h("strong", { text: t("bulk.matched", { n: p.matched }) }),
    " ",
    t("bulk.selectedNow", { n: p.selected }),
    parts ? h("span", { class: "muted", text: ` (${parts})` }) : null,
  );
}

// The action --------------------------------------------------------------------------------------

function action() {
  return document.querySelector("input[name='bulk-action']:checked")?.value ?? "outcome";
}

function renderAction() {
  const p = state.preview;
  const ready = Boolean(p && p.matched > 0);
  $("#bulk-action").disabled = !ready;
  const isMove = action() === "move";
  $("#bulk-outcome-fields").hidden = isMove;
  $("#bulk-move-fields").hidden = !isMove;
  const outcome = $("#bulk-outcome");
  const chosen = outcome.value;
  fill(
    outcome,
    (p?.outcomes ?? []).map((o) => h("option", { value: o.id, text: o.name, selected: o.id === chosen })),
  );
  outcome.disabled = !ready || !p.outcomes.length;
  const target = $("#bulk-move-target");
  const aimed = target.value;
  const o = state.options;
  fill(
    target,
    (o?.segments ?? []).map((s) => h("option", { value: `segment:${s.id}`, text: t("bulk.toSegment", { name: s.name }) })),
    (o?.move_targets ?? []).map((a) => h("option", { value: `assignment:${a.id}`, text: t("bulk.toList", { name: a.name }) })),
  );
  if (aimed) target.value = aimed;
  target.disabled = !ready;
  renderDetails();
  $("#bulk-start").disabled = !ready || (!isMove && !p.outcomes.length);
}

function chosenOutcome() {
  return state.preview?.outcomes.find((o) => o.id === $("#bulk-outcome").value) ?? null;
}

function renderDetails() {
  const outcome = action() === "outcome" ? chosenOutcome() : null;
  const kept = Object.fromEntries([...$("#bulk-details").querySelectorAll("[data-key]")].map((i) => [i.dataset.key, i.type === "checkbox" ? i.checked : i.value]));
  const fields = (outcome?.details ?? []).map((d) => {
    const id = nextId("detail");
    const type = { number: "number", date: "date", bool: "checkbox" }[d.type] ?? "text";
    const input = h("input", {
      id,
      type,
      step: type === "number" ? "any" : undefined,
      dataset: { key: d.key, kind: d.type },
      required: d.required,
      value: type === "checkbox" ? undefined : (kept[d.key] ?? ""),
      checked: type === "checkbox" ? Boolean(kept[d.key]) : undefined,
    });
    return h(
      "div",
      { class: type === "checkbox" ? "field inline" : "field" },
      input,
      h("label", { for: id }, d.label, d.required ? h("span", { class: "req", "aria-hidden": "true", text: " *" }) : null),
    );
  });
  if (outcome?.follow_up) {
    const id = "bulk-follow-up";
    fields.push(
      h(
        "div",
        { class: "field" },
        h("label", { for: id, text: t("bulk.followUpAt") }),
        h("input", { id, type: "datetime-local", value: kept.follow_up_at ?? fmt.defaultFollowUp(), dataset: { key: "follow_up_at" } }),
      ),
    );
  }
  fill($("#bulk-details"), fields);
}

function detailsOf() {
  const details = {};
  let followUpAt = null;
  for (const input of $("#bulk-details").querySelectorAll("[data-key]")) {
    const key = input.dataset.key;
    if (key === "follow_up_at") {
      followUpAt = input.value ? fmt.isoFromLocalInput(input.value) : null;
    } else if (input.type === "checkbox") {
      details[key] = input.checked;
    } else if (input.value !== "") {
      details[key] = input.dataset.kind === "number" ? Number(input.value) : input.value;
    }
  }
  return { details, followUpAt };
}

let pending = null;

function askStart(event) {
  event.preventDefault();
  $("#bulk-form-error").textContent = "";
  const p = state.preview;
  if (!p) return;
  let request;
  try {
    const filter = currentFilter();
    if (action() === "move") {
      const [kind, id] = $("#bulk-move-target").value.split(":");
      request = ["bulk.move", { filter, [kind === "segment" ? "to_segment_id" : "to_assignment_id"]: id }];
    } else {
      const { details, followUpAt } = detailsOf();
      const fields = { filter, outcome_id: $("#bulk-outcome").value, details };
      if (followUpAt) fields.follow_up_at = followUpAt;
      request = ["bulk.outcome", fields];
    }
  } catch (error) {
    $("#bulk-form-error").textContent = error.message;
    return;
  }
  pending = request;
  const what =
    action() === "move"
      ? t("bulk.confirmMove", { n: p.matched, target: $("#bulk-move-target").selectedOptions[0]?.text ?? "" })
      : t("bulk.confirmOutcome", { n: p.matched, outcome: chosenOutcome()?.name ?? "" });
  fill($("#bulk-confirm-text"), what, " ", p.selected ? t("bulk.confirmSkipped", { n: p.selected }) : "");
  const dialog = $("#bulk-confirm");
  dialog.returnValue = "";
  dialog.showModal();
  $("#bulk-confirm-cancel").focus();
}

async function onConfirmClose() {
  const request = pending;
  pending = null;
  if ($("#bulk-confirm").returnValue !== "start" || !request) return;
  try {
    const { job } = await ctx.conn().request(...request);
    const known = state.jobs.get(job.job_id);
    state.jobs.set(job.job_id, known ? Object.assign(job, known) : job);
    state.preview = null;
    renderPreview();
    renderAction();
    renderJobs();
    $(`#job-${CSS.escape(job.job_id)}`)?.focus();
  } catch (error) {
    $("#bulk-form-error").textContent = error.message;
  }
}

// Jobs --------------------------------------------------------------------------------------------

function jobTitle(job) {
  if (job.kind === "import") return t("bulk.jobImport", { file: job.file ?? "" });
  if (job.kind === "move") {
    const o = state.options;
    const segment = o?.segments.find((s) => s.id === job.to_segment_id);
    const list = o?.move_targets.find((a) => a.id === job.to_assignment_id);
    const target = segment
      ? t("bulk.toSegment", { name: segment.name })
      : list
        ? t("bulk.toList", { name: list.name })
        : "";
    return t("bulk.jobMove", { target });
  }
  return t("bulk.jobOutcome", { outcome: state.outcomeNames.get(job.outcome) ?? job.outcome ?? "" });
}

function reportLine(job) {
  const r = job.report;
  if (!r) return null;
  const verb = t(`bulk.verb.${r.kind}`);
  const skips = Object.entries(r.skipped ?? {})
    .filter(([, n]) => n)
    .map(([reason, n]) => t(`bulk.skip.${reason}`, { n }));
  return [t("bulk.reportLine", { changed: r.changed, matched: r.matched, verb }), ...skips].join("; ");
}

function renderJobs() {
  const jobs = [...state.jobs.values()].sort((a, b) => Number(b.job_id) - Number(a.job_id));
  const list = (items, empty) =>
    items.length ? items.map(jobItem) : h("li", { class: "muted", text: state.options ? t(empty) : t("common.loading") });
  fill($("#bulk-jobs-list"), list(jobs.filter((j) => j.kind !== "import"), "bulk.noJobs"));
  fill($("#import-jobs-list"), list(jobs.filter((j) => j.kind === "import"), "bulk.noImports"));
}

function jobItem(job) {
  const pct = Math.max(0, Math.min(100, job.percent ?? 0));
  const title = jobTitle(job);
  const line = reportLine(job);
  return h(
    "li",
    { id: `job-${job.job_id}`, tabindex: "-1", dataset: { job: job.job_id } },
    h(
      "div",
      { class: "job-head" },
      h("strong", { text: title }),
      h("span", { class: `job-status ${job.status}`, text: t(`bulk.status.${job.status}`) }),
      h("span", { class: "grow" }),
      job.created_at ? h("span", { class: "muted small", text: fmt.dateTime(job.created_at) }) : null,
    ),
    h(
      "div",
      {
        class: `progress ${job.status}`,
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": String(pct),
        "aria-valuetext": t("bulk.progressText", { pct, done: job.processed ?? 0, total: job.expected ?? 0 }),
        "aria-label": t("bulk.progressOf", { title }),
      },
      h("span", { class: "fill", style: `width: ${pct}%` }),
    ),
    h("span", { class: "muted small", text: t("bulk.progressText", { pct, done: job.processed ?? 0, total: job.expected ?? 0 }) }),
    line ? h("p", { class: "job-report", text: line }) : null,
    job.error ? h("p", { class: "error", text: t("bulk.failed", { error: job.error }) }) : null,
    job.kind === "import" && job.status === "done"
      ? h("div", { class: "actions" }, h("button", { type: "button", text: t("bulk.showRows"), onclick: () => showRows(job.job_id) }))
      : null,
  );
}

// Import --------------------------------------------------------------------------------------------

async function readColumns() {
  $("#import-error").textContent = "";
  const file = $("#import-file").files[0];
  if (!file) {
    $("#import-error").textContent = t("bulk.pickFile");
    return;
  }
  try {
    const response = await fetch(`/api/bulk/uploads?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${ctx.token()}`, "Content-Type": "application/octet-stream" },
      body: file,
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(data?.error?.message ?? `HTTP ${response.status}`);
    state.upload = data;
  } catch (error) {
    state.upload = null;
    $("#import-error").textContent = error.message;
  }
  renderMapping();
}

function guessTarget(header, fields) {
  const name = header.trim().toLowerCase();
  if (["external_id", "kundeid", "customer id", "id"].includes(name)) return "external_id";
  return fields.find((f) => f.key.toLowerCase() === name || f.label.toLowerCase() === name)?.key ?? "";
}

function renderMapping() {
  const u = state.upload;
  const table = $("#import-mapping");
  table.hidden = !u;
  $("#import-start").disabled = !u;
  fill($("#import-file-info"), u ? t("bulk.fileRead", { name: u.file_name, n: u.rows }) : "");
  if (!u) return;
  const fields = state.options?.info_fields ?? [];
  fill(
    table.tBodies[0],
    u.headers.map((header, i) => {
      const id = `map-${i}`;
      const guess = guessTarget(header, fields);
      return h(
        "tr",
        {},
        h("th", { scope: "row" }, h("label", { for: id, text: header || t("bulk.unnamed", { n: i + 1 }) })),
        h("td", { class: "muted", text: u.sample[0]?.[i] ?? "" }),
        h(
          "td",
          {},
          h(
            "select",
            { id, dataset: { column: header } },
            h("option", { value: "", text: t("bulk.skipColumn") }),
            h("option", { value: "external_id", text: t("bulk.externalId"), selected: guess === "external_id" }),
            fields.map((f) => h("option", { value: f.key, text: f.label, selected: guess === f.key })),
          ),
        ),
      );
    }),
  );
}

async function startImport(event) {
  event.preventDefault();
  $("#import-error").textContent = "";
  const u = state.upload;
  if (!u) return;
  const mapping = {};
  for (const select of $("#import-mapping").querySelectorAll("select")) {
    if (select.value && select.dataset.column) mapping[select.dataset.column] = select.value;
  }
  try {
    const { job } = await ctx.conn().request("bulk.import", {
      assignment_id: state.assignmentId,
      upload_id: u.upload_id,
      mapping,
    });
    state.jobs.set(job.job_id, Object.assign(job, state.jobs.get(job.job_id) ?? {}));
    state.upload = null;
    $("#import-file").value = "";
    renderMapping();
    renderJobs();
  } catch (error) {
    $("#import-error").textContent = error.message;
  }
}

async function showRows(jobId) {
  try {
    const answer = await ctx.conn().request("bulk.job", { job_id: jobId, rows_limit: 1000 });
    state.importRows = { job_id: jobId, rows: answer.rows ?? [], total: answer.rows_total };
  } catch (error) {
    notify(error.message, "error");
    return;
  }
  const r = state.importRows;
  fill(
    $("#import-rows"),
    h(
      "table",
      { class: "grid", "aria-label": t("bulk.rowsOf", { id: jobId }) },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["bulk.rowNo", "bulk.externalId", "bulk.result", "bulk.detail", "bulk.inList"].map((k) => h("th", { scope: "col", text: t(k) })),
        ),
      ),
      h(
        "tbody",
        {},
        r.rows.map((row) =>
          h(
            "tr",
            {},
            h("td", { class: "num", text: row.row_no }),
            h("td", { text: row.external_id ?? "" }),
            h("td", { text: t(`bulk.row.${row.result}`, {}, row.result ?? "") }),
            h("td", { text: row.detail ?? "" }),
            h("td", { text: row.assignment ?? "" }),
          ),
        ),
      ),
    ),
    r.total > r.rows.length ? h("p", { class: "muted small", text: t("bulk.rowsShown", { n: r.rows.length, total: r.total }) }) : null,
  );
}
