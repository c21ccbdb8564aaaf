// exosphere_nb widgets: one plain ES module for every view, loaded by anywidget from the kernel
// (no build step, no imports, nothing fetched from a CDN). The Python class picks the view by `_kind`.

const CATEGORIES = [
  ["success", "✓", ["SUCCESS"], "succeeded"],
  ["failed", "✗", ["ERRORED", "NEXT_CREATED_ERROR"], "failed"],
  ["running", "▶", ["QUEUED", "EXECUTED"], "running"],
  ["pending", "…", ["CREATED"], "waiting"],
  ["retried", "↻", ["RETRY_CREATED"], "retried"],
  ["pruned", "✂", ["PRUNED"], "pruned"],
  ["cancelled", "⊘", ["CANCELLED"], "cancelled"],
];
const STATE_STATUSES = [
  "CREATED", "QUEUED", "EXECUTED", "SUCCESS", "ERRORED", "NEXT_CREATED_ERROR", "RETRY_CREATED", "PRUNED", "CANCELLED",
];
const RUN_STATUSES = ["PENDING", "SUCCESS", "FAILED", "CANCELLED"];
const PENDING = new Set(["CREATED", "QUEUED", "EXECUTED"]);
const RETRYABLE = new Set(["ERRORED", "NEXT_CREATED_ERROR", "PRUNED", "CANCELLED"]);

// -- tiny DOM helpers ---------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function categoryCounts(counts) {
  const out = {};
  for (const [status, n] of Object.entries(counts || {})) {
    if (!n) continue;
    const cat = (CATEGORIES.find(([, , statuses]) => statuses.includes(status)) || ["pending"])[0];
    out[cat] = (out[cat] || 0) + n;
  }
  return out;
}

function formatCounts(counts) {
  const cats = categoryCounts(counts);
  return CATEGORIES.filter(([cat]) => cats[cat]).map(([cat, sym]) => `${cats[cat]} ${sym}`).join(" ");
}

function total(counts) {
  return Object.values(counts || {}).reduce((a, b) => a + b, 0);
}

function badge(status) {
  return h("span", { class: `exo-badge exo-status-${String(status || "none").toLowerCase()}`, text: status || "…" });
}

function progressBar(counts) {
  const cats = categoryCounts(counts);
  const all = total(counts);
  const bar = h("div", { class: "exo-progress", title: formatCounts(counts) || "no states" });
  for (const [cat, , , label] of CATEGORIES) {
    if (!cats[cat] || !all) continue;
    bar.append(h("div", {
      class: `exo-seg exo-cat-${cat}`,
      style: `width:${(100 * cats[cat]) / all}%`,
      title: `${cats[cat]} ${label}`,
    }));
  }
  return bar;
}

function runProgress(row) {
  const all = row.total_count || 0;
  const counts = {
    SUCCESS: row.success_count || 0,
    ERRORED: row.errored_count || 0,
    CREATED: row.pending_count || 0,
    RETRY_CREATED: row.retried_count || 0,
    CANCELLED: row.cancelled_count || 0,
  };
  const known = total(counts);
  if (all > known) counts.PRUNED = all - known;
  return progressBar(counts);
}

// a <select> built once: `update` changes its options only when they differ, and leaves it alone while
// the user has it open, so live redraws never close a dropdown under the mouse
function persistentSelect(label, onchange) {
  const el = h("select", { onchange: (e) => onchange(e.target.value), "aria-label": label });
  let key = "";
  el.update = (options, value) => {
    const next = JSON.stringify(options);
    if (next !== key) {
      key = next;
      el.replaceChildren(...options.map(([val, text]) => h("option", { value: val, text })));
    }
    if (globalThis.document && document.activeElement === el) return;
    el.value = value;
  };
  return el;
}

function button(text, onclick, props = {}) {
  return h("button", { class: "exo-button", type: "button", onclick, ...props }, text);
}

function pager(page, pages, go) {
  return h("div", { class: "exo-pager" },
    button("‹", () => go(page - 1), { disabled: page <= 1, title: "previous page" }),
    h("span", { text: `page ${page} of ${pages}` }),
    button("›", () => go(page + 1), { disabled: page >= pages, title: "next page" }),
  );
}

function pages(totalRows, size) {
  return Math.max(1, Math.ceil((totalRows || 0) / Math.max(1, size || 1)));
}

function short(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…` : id || "";
}

function messages(model) {
  const box = h("div", { class: "exo-messages" });
  const err = model.get("error");
  const msg = model.get("message");
  const dismiss = () => model.send({ type: "dismiss" });
  if (err) box.append(h("div", { class: "exo-error", role: "alert" }, h("span", { text: err }), button("×", dismiss)));
  if (msg) box.append(h("div", { class: "exo-message" }, h("span", { text: msg }), button("×", dismiss)));
  return box;
}

// redraw at most once per animation frame whatever number of traits a batched update changed
function watch(model, names, draw) {
  let queued = false;
  const schedule = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      draw();
    });
  };
  const subs = names.map((name) => [`change:${name}`, schedule]);
  for (const [event, cb] of subs) model.on(event, cb);
  draw();
  return () => {
    for (const [event, cb] of subs) model.off(event, cb);
  };
}

function hexToText(hex) {
  const bytes = new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));
  return new TextDecoder().decode(bytes);
}

function setSvg(container, svg, onNode, selected) {
  if (container.dataset.svg !== svg) {
    container.innerHTML = svg || "";
    container.dataset.svg = svg || "";
    const el = container.querySelector("svg");
    if (el) {
      el.removeAttribute("height");
      el.style.maxWidth = "100%";
      el.style.height = "auto";
    }
    for (const g of container.querySelectorAll("g.node")) {
      const title = g.querySelector("title");
      if (!title) continue;
      const coded = [...g.classList].find((c) => c.startsWith("exo-ident-"));
      const ident = coded ? hexToText(coded.slice("exo-ident-".length)) : title.textContent;
      g.dataset.ident = ident;
      if (onNode) {
        g.classList.add("exo-clickable");
        g.addEventListener("click", () => onNode(ident));
      }
    }
  }
  for (const g of container.querySelectorAll("g.node")) {
    g.classList.toggle("exo-selected", g.dataset.ident === selected);
  }
}

function stateTable(rows, onRetry) {
  const table = h("table", { class: "exo-table" },
    h("thead", {}, h("tr", {}, ["", "state", "node", "status", "retries", "error", "inputs", "outputs"].map((c) => h("th", { text: c })))),
  );
  const body = h("tbody");
  for (const r of rows) {
    body.append(h("tr", {},
      h("td", {}, RETRYABLE.has(r.status) ? button("retry", () => onRetry(r.id), { title: "retry this state" }) : ""),
      h("td", { title: r.id }, h("code", { text: short(r.id) })),
      h("td", { text: r.identifier }),
      h("td", {}, badge(r.status)),
      h("td", { text: r.retry_count }),
      h("td", { class: "exo-clip exo-err-text", title: r.error, text: r.error_line || r.error }),
      h("td", { class: "exo-clip", title: r.inputs, text: r.inputs }),
      h("td", { class: "exo-clip", title: r.outputs, text: r.outputs }),
    ));
  }
  table.append(body);
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "exo-muted", text: "no states" })));
  return table;
}

// -- RunView --------------------------------------------------------------------------------------

function renderRun({ model, el }) {
  const head = h("div", { class: "exo-head" });
  const msgs = h("div");
  const graph = h("div", { class: "exo-svg" });
  const panel = h("div", { class: "exo-panel" });
  const nodes = h("details", { class: "exo-nodes" });
  el.append(head, msgs, h("div", { class: "exo-body" }, graph, panel), nodes);
  const onNode = (ident) => model.send({ type: "select", identifier: ident === model.get("selected") ? "" : ident });
  const panelTitle = h("b");
  const panelCount = h("span");
  const statusFilter = persistentSelect("status filter",
    (v) => model.send({ type: "select", identifier: model.get("selected"), page: 1, status: v }));
  const panelHead = h("div", { class: "exo-panel-head" }, panelTitle, panelCount, statusFilter,
    button("×", () => model.send({ type: "select", identifier: "" }), { title: "close" }));

  const draw = () => {
    const counts = model.get("counts") || {};
    const status = model.get("status");
    const failed = (counts.ERRORED || 0) + (counts.NEXT_CREATED_ERROR || 0);
    head.replaceChildren(
      h("span", { class: "exo-title" }, "Run ", h("code", { text: model.get("run_id") }), " of ", h("b", { text: model.get("graph_name") })),
      badge(status),
      model.get("live") ? h("span", { class: "exo-live", title: "updating live" }, "● live") : "",
      model.get("busy") ? h("span", { class: "exo-muted" }, "working…") : "",
      h("span", { class: "exo-counts", text: `${total(counts)} states ${formatCounts(counts)}` }),
      progressBar(counts),
      h("span", { class: "exo-tools" },
        button("↻ refresh", () => model.send({ type: "refresh" })),
        failed ? button(`retry ${failed} failed`, () => model.send({ type: "retry_failed" })) : "",
        status === "PENDING" ? button("cancel run", () => model.send({ type: "cancel" })) : "",
      ),
    );
    msgs.replaceChildren(messages(model));
    const selected = model.get("selected");
    setSvg(graph, model.get("svg"), onNode, selected);
    if (!model.get("svg")) graph.replaceChildren(h("div", { class: "exo-muted", text: "no layout (see the per-node table)" }));

    if (!selected) {
      panel.replaceChildren(h("div", { class: "exo-muted", text: "Click a node to list its states." }));
    } else {
      const st = model.get("node_status");
      const page = model.get("node_page");
      const n = pages(model.get("node_total"), model.get("page_size"));
      const go = (p) => model.send({ type: "select", identifier: selected, page: p, status: st });
      panelTitle.textContent = selected;
      panelCount.textContent = ` ${model.get("node_total")} states `;
      statusFilter.update([["", "any status"], ...STATE_STATUSES.map((x) => [x, x])], st);
      panel.replaceChildren(
        panelHead,
        stateTable(model.get("node_states") || [], (id) => model.send({ type: "retry", state_id: id })),
        pager(page, n, go),
      );
    }

    const perNode = model.get("node_counts") || {};
    nodes.replaceChildren(
      h("summary", { text: "per node" }),
      h("table", { class: "exo-table" },
        h("thead", {}, h("tr", {}, h("th", { text: "node" }), h("th", { text: "states" }), h("th", { text: "progress" }))),
        h("tbody", {}, Object.entries(perNode).map(([ident, c]) =>
          h("tr", { class: "exo-clickable", onclick: () => onNode(ident) },
            h("td", { text: ident }), h("td", { text: formatCounts(c) }), h("td", {}, progressBar(c))))),
      ),
    );
  };
  return watch(model, [
    "run_id", "graph_name", "status", "counts", "node_counts", "svg", "live", "selected", "node_status",
    "node_page", "node_total", "node_states", "error", "message", "busy",
  ], draw);
}

// -- GraphView ------------------------------------------------------------------------------------

function renderGraph({ model, el }) {
  const head = h("div", { class: "exo-head" });
  const msgs = h("div");
  const errors = h("div");
  const graph = h("div", { class: "exo-svg" });
  const panel = h("div", { class: "exo-panel" });
  el.append(head, msgs, errors, h("div", { class: "exo-body" }, graph, panel));
  const onNode = (ident) => {
    model.set("selected", ident === model.get("selected") ? "" : ident);
    model.save_changes();
  };

  const draw = () => {
    head.replaceChildren(
      h("span", { class: "exo-title" }, "Graph ", h("b", { text: model.get("graph_name") })),
      badge(model.get("validation_status")),
      model.get("live") ? h("span", { class: "exo-live" }, "● validating") : "",
      h("span", { class: "exo-counts", text: `${(model.get("nodes") || []).length} nodes` }),
      h("span", { class: "exo-tools" }, button("↻ refresh", () => model.send({ type: "refresh" }))),
    );
    msgs.replaceChildren(messages(model));
    const graphErrors = model.get("graph_errors") || [];
    const nodeErrors = model.get("node_errors") || {};
    const all = [
      ...Object.entries(nodeErrors).flatMap(([ident, errs]) => errs.map((e) => [ident, e])),
      ...graphErrors.map((e) => ["", e]),
    ];
    errors.replaceChildren(all.length
      ? h("ul", { class: "exo-errors" }, all.map(([ident, e]) =>
        h("li", { class: ident ? "exo-clickable" : "", onclick: ident ? () => onNode(ident) : null }, e)))
      : "");
    const selected = model.get("selected");
    setSvg(graph, model.get("svg"), onNode, selected);
    const node = (model.get("nodes") || []).find((n) => n.identifier === selected);
    if (!node) {
      panel.replaceChildren(h("div", { class: "exo-muted", text: "Click a node for its details." }));
      return;
    }
    const errs = nodeErrors[node.identifier] || [];
    panel.replaceChildren(
      h("div", { class: "exo-panel-head" }, h("b", { text: node.identifier }), ` ${node.node_name} (${node.namespace})`),
      errs.length ? h("ul", { class: "exo-errors" }, errs.map((e) => h("li", { text: e }))) : "",
      h("table", { class: "exo-table" }, h("tbody", {},
        Object.entries(node.inputs || {}).map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { class: "exo-clip", title: v, text: v }))),
        h("tr", {}, h("th", { text: "next" }), h("td", { text: (node.next_nodes || []).join(", ") || "—" })),
        node.unites ? h("tr", {}, h("th", { text: "unites" }), h("td", { text: `${node.unites.identifier} (${node.unites.strategy || "ALL_SUCCESS"})` })) : "",
      )),
    );
  };
  return watch(model, [
    "graph_name", "validation_status", "validation_errors", "node_errors", "graph_errors", "nodes", "svg", "live",
    "selected", "error", "message",
  ], draw);
}

// -- RunsTable ------------------------------------------------------------------------------------

function parseObject(text, what) {
  if (!text.trim()) return {};
  const value = JSON.parse(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  for (const [k, v] of Object.entries(value)) if (typeof v !== "string") throw new Error(`${what}.${k} must be a string`);
  return value;
}

function renderRuns({ model, el }) {
  const head = h("div", { class: "exo-head" });
  const msgs = h("div");
  const table = h("div");
  const form = h("details", { class: "exo-form" });
  el.append(head, msgs, table, form);
  const set = (name, value) => {
    model.set(name, value);
    if (name !== "page") model.set("page", 1);
    model.save_changes();
  };

  // the trigger form is built once, so typing is not lost on refresh
  const graphSelect = persistentSelect("graph to trigger", () => {});
  const inputs = h("textarea", { rows: 3, placeholder: '{"text": "hello"}', "aria-label": "inputs (JSON)" });
  const store = h("textarea", { rows: 2, placeholder: '{"count": "10"}', "aria-label": "store (JSON)" });
  const formError = h("span", { class: "exo-err-text" });
  const submit = () => {
    try {
      const payload = { type: "trigger", graph_name: graphSelect.value, inputs: parseObject(inputs.value, "inputs"), store: parseObject(store.value, "store") };
      formError.textContent = "";
      model.send(payload);
    } catch (e) {
      formError.textContent = String(e.message || e);
    }
  };
  form.append(
    h("summary", { text: "trigger a run" }),
    h("div", { class: "exo-form-grid" },
      h("label", { text: "graph" }), graphSelect,
      h("label", { text: "inputs" }), inputs,
      h("label", { text: "store" }), store,
      h("span"), h("span", {}, button("trigger", submit), " ", formError),
    ),
  );

  const graphFilter = persistentSelect("graph filter", (v) => set("graph_name", v));
  const statusFilter = persistentSelect("status filter", (v) => set("status", v));
  const auto = h("input", {
    type: "checkbox",
    onchange: (e) => { model.set("auto_refresh", e.target.checked); model.save_changes(); },
  });
  const live = h("span", { class: "exo-live" });
  head.append(
    h("span", { class: "exo-title", text: "Runs" }), graphFilter, statusFilter,
    h("label", { class: "exo-check" }, auto, " auto-refresh"), live,
    h("span", { class: "exo-tools" }, button("↻ refresh", () => model.send({ type: "refresh" }))),
  );

  const draw = () => {
    const graphs = model.get("graphs") || [];
    graphFilter.update([["", "all graphs"], ...graphs.map((g) => [g, g])], model.get("graph_name"));
    statusFilter.update([["", "any status"], ...RUN_STATUSES.map((x) => [x, x])], model.get("status"));
    auto.checked = Boolean(model.get("auto_refresh"));
    live.textContent = model.get("live") ? "●" : (model.get("busy") ? "…" : "");
    msgs.replaceChildren(messages(model));
    const rows = model.get("rows") || [];
    const selected = model.get("selected_run");
    const t = h("table", { class: "exo-table" },
      h("thead", {}, h("tr", {}, ["run", "graph", "status", "progress", "states", "created", ""].map((c) => h("th", { text: c })))));
    const body = h("tbody");
    for (const r of rows) {
      const done = (r.total_count || 0) - (r.pending_count || 0);
      body.append(h("tr", {
        class: `exo-clickable${r.run_id === selected ? " exo-row-selected" : ""}`,
        onclick: () => { model.set("selected_run", r.run_id); model.save_changes(); },
      },
      h("td", { title: r.run_id }, h("code", { text: r.run_id })),
      h("td", { text: r.graph_name }),
      h("td", {}, badge(r.status)),
      h("td", {}, runProgress(r)),
      h("td", { text: `${done}/${r.total_count || 0} · ${r.success_count || 0} ✓ ${r.errored_count || 0} ✗` }),
      h("td", { class: "exo-muted", text: (r.created_at || "").replace("T", " ").slice(0, 19) }),
      h("td", {}, r.status === "PENDING"
        ? button("cancel", (e) => { e.stopPropagation(); model.send({ type: "cancel", run_id: r.run_id }); })
        : ""),
      ));
    }
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "exo-muted", text: "no runs" })));
    t.append(body);
    const n = pages(model.get("total"), model.get("page_size"));
    table.replaceChildren(t, h("div", { class: "exo-foot" },
      h("span", { class: "exo-muted", text: `${model.get("total")} runs` }),
      pager(model.get("page"), n, (p) => set("page", p))));

    const fallback = model.get("graph_name") || (rows[0] && rows[0].graph_name) || graphs[0] || "";
    const current = graphs.includes(graphSelect.value) ? graphSelect.value : fallback;
    graphSelect.update(graphs.map((g) => [g, g]), current);
  };
  return watch(model, [
    "graph_name", "status", "page", "page_size", "total", "rows", "graphs", "auto_refresh", "live", "selected_run",
    "error", "message", "busy",
  ], draw);
}

// -- StatesTable ----------------------------------------------------------------------------------

function renderStates({ model, el }) {
  const head = h("div", { class: "exo-head" });
  const msgs = h("div");
  const body = h("div");
  el.append(head, msgs, body);
  const set = (name, value) => {
    model.set(name, value);
    if (name !== "page") model.set("page", 1);
    model.save_changes();
  };
  const title = h("code");
  const nodeFilter = persistentSelect("node filter", (v) => set("identifier", v));
  const statusFilter = persistentSelect("status filter", (v) => set("status", v));
  head.append(
    h("span", { class: "exo-title" }, "States of run ", title), nodeFilter, statusFilter,
    h("span", { class: "exo-tools" }, button("↻ refresh", () => model.send({ type: "refresh" }))),
  );
  const draw = () => {
    const idents = model.get("identifiers") || [];
    title.textContent = model.get("run_id");
    nodeFilter.update([["", "all nodes"], ...idents.map((i) => [i, i])], model.get("identifier"));
    statusFilter.update([["", "any status"], ...STATE_STATUSES.map((x) => [x, x])], model.get("status"));
    msgs.replaceChildren(messages(model));
    const n = pages(model.get("total"), model.get("page_size"));
    body.replaceChildren(
      stateTable(model.get("rows") || [], (id) => model.send({ type: "retry", state_id: id })),
      h("div", { class: "exo-foot" },
        h("span", { class: "exo-muted", text: `${model.get("total")} states` }),
        pager(model.get("page"), n, (p) => set("page", p))),
    );
  };
  return watch(model, ["run_id", "identifiers", "identifier", "status", "page", "page_size", "total", "rows", "error", "message"], draw);
}

const VIEWS = { run: renderRun, graph: renderGraph, runs: renderRuns, states: renderStates };

export default {
  render({ model, el }) {
    el.classList.add("exo-widget");
    const view = VIEWS[model.get("_kind")];
    if (!view) {
      el.textContent = `unknown exosphere widget ${model.get("_kind")}`;
      return undefined;
    }
    return view({ model, el });
  },
};
