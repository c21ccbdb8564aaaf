/** Small DOM helpers and the display categories of state statuses (the notebook's symbols and colours). */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

/** `h('div', {class: 'x', onclick: f}, child, ...)`: an element; `on*` attributes become listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value as EventListener);
    } else if (name === 'value' && 'value' in el) {
      (el as unknown as HTMLInputElement).value = String(value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children) {
    if (Array.isArray(child)) {
      append(el, child);
    } else if (child !== null && child !== undefined && child !== false) {
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    el.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) {
    el.removeChild(el.firstChild);
  }
}

/** (category, symbol, statuses, label) in display order; the same as the notebook's renderer. */
export const CATEGORIES: [string, string, string[], string][] = [
  ['success', '✓', ['SUCCESS'], 'succeeded'],
  ['failed', '✗', ['ERRORED', 'NEXT_CREATED_ERROR'], 'failed'],
  ['running', '▶', ['QUEUED', 'EXECUTED'], 'running'],
  ['pending', '…', ['CREATED'], 'waiting'],
  ['retried', '↻', ['RETRY_CREATED'], 'retried'],
  ['pruned', '✂', ['PRUNED'], 'pruned'],
  ['cancelled', '⊘', ['CANCELLED'], 'cancelled']
];
const CATEGORY_OF: Record<string, string> = {};
for (const [cat, , statuses] of CATEGORIES) {
  for (const s of statuses) {
    CATEGORY_OF[s] = cat;
  }
}
// which colour wins a tie: the one a person most needs to see
const TIE_ORDER = ['failed', 'running', 'pending', 'cancelled', 'retried', 'success', 'pruned'];

export function categoryOf(status: string): string {
  return CATEGORY_OF[status] || 'pending';
}

export function categoryCounts(counts: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [status, n] of Object.entries(counts || {})) {
    if (n) {
      const cat = categoryOf(status);
      out[cat] = (out[cat] || 0) + n;
    }
  }
  return out;
}

/** The category whose colour a DAG node takes: the most states, ties to the most urgent. */
export function dominantCategory(counts: Record<string, number>): string | null {
  const cats = categoryCounts(counts);
  let best: string | null = null;
  for (const cat of TIE_ORDER) {
    if ((cats[cat] || 0) > 0 && (best === null || cats[cat] > cats[best])) {
      best = cat;
    }
  }
  return best;
}

/** `[[cat, symbol, n, label], ...]` for the categories with states, in display order. */
export function countParts(counts: Record<string, number>): [string, string, number, string][] {
  const cats = categoryCounts(counts);
  return CATEGORIES.filter(([cat]) => cats[cat]).map(([cat, sym, , label]) => [cat, sym, cats[cat], label]);
}

export function countsText(counts: Record<string, number>): string {
  return countParts(counts)
    .map(([, sym, n]) => `${n} ${sym}`)
    .join(' ');
}

/** `12 s ago`, `5 min ago`, ... with the exact time in a tooltip (see `timeCell`). */
export function ago(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const t = Date.parse(iso);
  if (isNaN(t)) {
    return iso;
  }
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) {
    return `${s} s ago`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ago`;
  }
  return new Date(t).toLocaleString();
}

export function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `exo-badge exo-status-${status.toLowerCase()}`, title: status }, status);
}

export function errorBox(message: string, errors: string[] = []): HTMLElement {
  return h(
    'div',
    { class: 'exo-error', role: 'alert' },
    h('span', { class: 'exo-error-text' }, message),
    errors.length ? h('ul', {}, errors.map(e => h('li', {}, e))) : null
  );
}

/** `el.replaceChildren(...)` that skips null, undefined and false, like `h`. */
export function fill(el: Element, ...children: (Child | Child[])[]): void {
  clear(el);
  append(el, children);
}
