// Runs exosphere_nb/notebook/static/widgets.js in Node against a minimal DOM and a fake anywidget model.
// Usage: node widgets_dom.mjs <widgets.js> <states.json>; prints a JSON report (what each view showed,
// what it sent to the kernel) for tests/notebook/test_widgets.py to check.
import { readFileSync } from "node:fs";

// -- a minimal DOM: what widgets.js uses, no more -------------------------------------------------

class Node {}

class Text extends Node {
  constructor(text) {
    super();
    this.data = String(text);
  }
  get textContent() {
    return this.data;
  }
}

class ClassList {
  constructor(el) {
    this.el = el;
  }
  get list() {
    return (this.el.getAttribute("class") || "").split(/\s+/).filter(Boolean);
  }
  set(list) {
    this.el.setAttribute("class", list.join(" "));
  }
  add(c) {
    if (!this.contains(c)) this.set([...this.list, c]);
  }
  remove(c) {
    this.set(this.list.filter((x) => x !== c));
  }
  contains(c) {
    return this.list.includes(c);
  }
  toggle(c, force) {
    const on = force === undefined ? !this.contains(c) : force;
    if (on) this.add(c);
    else this.remove(c);
    return on;
  }
  [Symbol.iterator]() {
    return this.list[Symbol.iterator]();
  }
}

class Element extends Node {
  constructor(tag) {
    super();
    this.tagName = tag.toLowerCase();
    this.childNodes = [];
    this.attributes = {};
    this.listeners = {};
    this.dataset = {};
    this.style = {};
    this.classList = new ClassList(this);
    this.value = "";
    this.checked = false;
    this.disabled = false;
  }
  get className() {
    return this.getAttribute("class") || "";
  }
  set className(v) {
    this.setAttribute("class", v);
  }
  get children() {
    return this.childNodes.filter((c) => c instanceof Element);
  }
  setAttribute(k, v) {
    this.attributes[k] = String(v);
    if (k === "disabled") this.disabled = true;
    if (k === "checked") this.checked = true;
  }
  getAttribute(k) {
    return k in this.attributes ? this.attributes[k] : null;
  }
  removeAttribute(k) {
    delete this.attributes[k];
  }
  append(...nodes) {
    for (const n of nodes) {
      const node = n instanceof Node ? n : new Text(n);
      node.parentNode = this;
      this.childNodes.push(node);
    }
  }
  replaceChildren(...nodes) {
    this.childNodes = [];
    this.append(...nodes);
  }
  get textContent() {
    return this.childNodes.map((c) => c.textContent).join("");
  }
  set textContent(v) {
    this.replaceChildren(String(v ?? ""));
  }
  set innerHTML(markup) {
    this.replaceChildren(...parseMarkup(markup));
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  dispatch(type, extra = {}) {
    const event = { type, target: this, stopPropagation() {}, preventDefault() {}, ...extra };
    for (let el = this; el; el = el.parentNode) {
      for (const fn of (el.listeners && el.listeners[type]) || []) fn(event);
    }
  }
  *walk() {
    for (const c of this.children) {
      yield c;
      yield* c.walk();
    }
  }
  matches(selector) {
    const [tag, ...classes] = selector.split(".");
    return (!tag || this.tagName === tag) && classes.every((c) => this.classList.contains(c));
  }
  querySelectorAll(selector) {
    return [...this.walk()].filter((e) => e.matches(selector));
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }
}

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
function decode(text) {
  return text.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (m, e) => {
    if (e[0] === "#") return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? m;
  });
}

function parseMarkup(markup) {
  const root = new Element("root");
  let current = root;
  const re = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!DOCTYPE[\s\S]*?>|<(\/?)([\w:-]+)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>|([^<]+)/g;
  for (const m of markup.matchAll(re)) {
    const [, closing, tag, attrs, selfClosing, text] = m;
    if (text !== undefined) {
      if (text.trim()) current.append(decode(text));
    } else if (tag && closing) {
      current = current.parentNode || root;
    } else if (tag) {
      const el = new Element(tag);
      for (const [, k, v] of (attrs || "").matchAll(/([\w:-]+)="([^"]*)"/g)) el.setAttribute(k, decode(v));
      current.append(el);
      if (!selfClosing) current = el;
    }
  }
  return root.childNodes;
}

globalThis.Node = Node;
globalThis.document = { createElement: (tag) => new Element(tag), activeElement: null };
globalThis.requestAnimationFrame = (cb) => setTimeout(cb, 0);

// -- a fake anywidget model ---------------------------------------------------------------------

class Model {
  constructor(state) {
    this.state = { ...state };
    this.handlers = {};
    this.sent = [];
    this.saved = [];
  }
  get(k) {
    return this.state[k];
  }
  set(k, v) {
    this.state[k] = v;
    for (const cb of this.handlers[`change:${k}`] || []) cb();
  }
  save_changes() {
    this.saved.push({ ...this.state });
  }
  on(event, cb) {
    (this.handlers[event] ||= []).push(cb);
  }
  off(event, cb) {
    this.handlers[event] = (this.handlers[event] || []).filter((x) => x !== cb);
  }
  send(msg) {
    this.sent.push(msg);
  }
  listeners() {
    return Object.values(this.handlers).reduce((n, l) => n + l.length, 0);
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));
const text = (el) => el.textContent.replace(/\s+/g, " ").trim();
const byText = (root, tag, t) => root.querySelectorAll(tag).find((e) => text(e).includes(t));
const select = (root, label) => root.querySelectorAll("select").find((e) => e.getAttribute("aria-label") === label);
const change = (el, value) => {
  el.value = value;
  el.dispatch("change");
};

// -- scenarios ----------------------------------------------------------------------------------

const [widgetsJs, statesJson] = process.argv.slice(2);
const source = readFileSync(widgetsJs, "utf8");
const widget = (await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`)).default;
const states = JSON.parse(readFileSync(statesJson, "utf8"));
const report = {};

async function mount(state) {
  const model = new Model(state);
  const el = new Element("div");
  const cleanup = widget.render({ model, el });
  await tick();
  return { model, el, cleanup };
}

{
  // RunView: a failed run with node "work" selected (ERRORED only)
  const { model, el, cleanup } = await mount(states.run);
  const r = (report.run = { nodes: {} });
  r.classes = el.className;
  r.head = text(el.querySelector("div.exo-head"));
  for (const g of el.querySelectorAll("g.node")) r.nodes[g.dataset.ident] = g.classList.contains("exo-selected");
  r.panel = text(el.querySelector("div.exo-panel"));
  el.querySelectorAll("g.node").find((g) => g.dataset.ident === "split").dispatch("click");
  el.querySelectorAll("button").find((b) => text(b) === "retry").dispatch("click");
  byText(el, "button", "failed").dispatch("click");
  change(select(el, "status filter"), "");
  r.sent = model.sent;
  model.set("counts", { SUCCESS: 5 });
  model.set("status", "SUCCESS");
  await tick();
  r.head_after = text(el.querySelector("div.exo-head"));
  r.listeners_before_cleanup = model.listeners();
  cleanup();
  r.listeners_after_cleanup = model.listeners();
}

{
  // GraphView: an INVALID graph
  const { model, el } = await mount(states.graph);
  const r = (report.graph = {});
  r.head = text(el.querySelector("div.exo-head"));
  r.errors = el.querySelectorAll("li").map(text);
  el.querySelectorAll("g.node").find((g) => g.dataset.ident === "work").dispatch("click");
  await tick();
  r.selected = model.get("selected");
  r.saved = model.saved.length;
  r.panel = text(el.querySelector("div.exo-panel"));
}

{
  // RunsTable
  const { model, el } = await mount(states.runs);
  const r = (report.runs = {});
  r.rows = el.querySelectorAll("tr").length;
  r.table = text(el.querySelector("table"));
  change(select(el, "status filter"), "FAILED");
  r.after_filter = { status: model.get("status"), page: model.get("page"), saved: model.saved.length };
  const box = el.querySelectorAll("input").find((e) => e.getAttribute("type") === "checkbox");
  box.checked = false;
  box.dispatch("change");
  r.auto_refresh = model.get("auto_refresh");
  const [inputs, store] = el.querySelectorAll("textarea");
  store.value = '{"n": 3}';
  byText(el, "button", "trigger").dispatch("click");
  r.bad_form = text(el.querySelector("form") || el.querySelector("details.exo-form"));
  store.value = '{"n": "3"}';
  inputs.value = "";
  byText(el, "button", "trigger").dispatch("click");
  r.sent = model.sent;
}

{
  // StatesTable on page 1 of several
  const { model, el } = await mount(states.states);
  const r = (report.states = {});
  r.rows = el.querySelector("tbody").children.length;
  r.foot = text(el.querySelector("div.exo-foot"));
  byText(el, "button", "›").dispatch("click");
  r.page = model.get("page");
  change(select(el, "node filter"), "work");
  r.filter = { identifier: model.get("identifier"), page: model.get("page") };
  r.retry_buttons = el.querySelectorAll("button").filter((b) => text(b) === "retry").length;
}

process.stdout.write(JSON.stringify(report));
