/**
 * The trigger form: the root node's inputs (prefilled with the template's values), the store
 * (required keys first, then defaults, plus any key the user adds) and a start delay.
 */
import { ApiError, IGraph } from './api';
import { edgesOf } from './dag';
import { errorBox, h } from './dom';

export interface ITriggerBody {
  inputs: Record<string, string>;
  store: Record<string, string>;
  start_delay: number;
}

/** The root: the one node without an incoming edge (`next_nodes`, or `unites`). */
export function rootOf(graph: IGraph): string | null {
  const targets = new Set(edgesOf(graph.nodes).map(e => e.target));
  const roots = graph.nodes.filter(n => !targets.has(n.identifier));
  return roots.length === 1 ? roots[0].identifier : null;
}

export class TriggerForm {
  readonly node: HTMLElement;
  private _inputs = new Map<string, HTMLInputElement>();
  private _store: [HTMLInputElement, HTMLInputElement][] = [];
  private _storeRows = h('div', { class: 'exo-kv-rows' });
  private _delay = h('input', { class: 'exo-input exo-start-delay', type: 'number', min: 0, value: 0 }) as HTMLInputElement;
  private _message = h('div', { class: 'exo-message' });
  private _submit: HTMLButtonElement;

  constructor(
    readonly graph: IGraph,
    private _onSubmit: (body: ITriggerBody) => Promise<void>,
    onCancel: () => void
  ) {
    const root = rootOf(graph);
    const rootNode = graph.nodes.find(n => n.identifier === root);
    const inputRows = h('div', { class: 'exo-kv-rows' });
    for (const [key, value] of Object.entries(rootNode?.inputs || {})) {
      // empty keeps the template's value (often a `${{ store.k }}` placeholder); text overrides it
      const input = h('input', {
        class: 'exo-input',
        name: `input-${key}`,
        placeholder: value,
        title: `template value: ${value} (type to override it for this run)`,
        'aria-label': `input ${key}`
      }) as HTMLInputElement;
      this._inputs.set(key, input);
      inputRows.appendChild(h('label', { class: 'exo-kv' }, h('span', { class: 'exo-kv-key' }, key), input));
    }
    const store = graph.store_config || {};
    for (const key of store.required_keys || []) {
      this._addStoreRow(key, '', true);
    }
    for (const [key, value] of Object.entries(store.default_values || {})) {
      if (!(store.required_keys || []).includes(key)) {
        this._addStoreRow(key, value, false);
      }
    }
    this._submit = h(
      'button',
      { class: 'exo-button exo-primary exo-trigger-submit', type: 'submit' },
      `Trigger ${graph.name}`
    ) as HTMLButtonElement;
    const form = h(
      'form',
      { class: 'exo-form exo-trigger-form', 'data-graph': graph.name },
      h('div', { class: 'exo-form-title' }, `Trigger ${graph.name}`),
      h('div', { class: 'exo-label' }, root ? `inputs of ${root}` : 'inputs', h('span', { class: 'exo-muted' }, ' (empty: the template’s)')),
      this._inputs.size ? inputRows : h('div', { class: 'exo-muted' }, 'the root node has no inputs'),
      h('div', { class: 'exo-label' }, 'store'),
      this._storeRows,
      h('button', { class: 'exo-button exo-add-store', type: 'button', onclick: () => this._addStoreRow('', '', false, true) }, '+ store key'),
      h('label', { class: 'exo-kv' }, h('span', { class: 'exo-kv-key' }, 'start delay (ms)'), this._delay),
      h(
        'div',
        { class: 'exo-row' },
        this._submit,
        h('button', { class: 'exo-button', type: 'button', onclick: onCancel }, 'Cancel')
      ),
      this._message
    );
    form.addEventListener('submit', ev => {
      ev.preventDefault();
      void this.submit();
    });
    this.node = form;
  }

  private _addStoreRow(key: string, value: string, required: boolean, focus = false): void {
    const k = h('input', {
      class: 'exo-input exo-store-key',
      value: key,
      placeholder: 'key',
      readonly: required,
      'aria-label': 'store key'
    }) as HTMLInputElement;
    const v = h('input', {
      class: 'exo-input exo-store-value',
      name: `store-${key}`,
      value,
      placeholder: required ? 'required' : 'value',
      required,
      'aria-label': key ? `store ${key}` : 'store value'
    }) as HTMLInputElement;
    this._store.push([k, v]);
    this._storeRows.appendChild(h('div', { class: 'exo-kv' }, k, v));
    if (focus) {
      k.focus();
    }
  }

  focus(): void {
    const first = this.node.querySelector('input:not([readonly])') as HTMLInputElement | null;
    first?.focus();
  }

  value(): ITriggerBody {
    const inputs: Record<string, string> = {};
    for (const [key, input] of this._inputs) {
      if (input.value !== '') {
        inputs[key] = input.value;
      }
    }
    const store: Record<string, string> = {};
    for (const [k, v] of this._store) {
      if (k.value.trim()) {
        store[k.value.trim()] = v.value;
      }
    }
    const delay = parseInt(this._delay.value || '0', 10);
    return { inputs, store, start_delay: isNaN(delay) || delay < 0 ? 0 : delay };
  }

  async submit(): Promise<void> {
    this._submit.disabled = true;
    this._message.replaceChildren(h('span', { class: 'exo-muted' }, 'triggering…'));
    try {
      await this._onSubmit(this.value());
    } catch (error) {
      const e = error instanceof ApiError ? error : null;
      this._message.replaceChildren(errorBox(e ? e.message : String(error), e ? e.errors : []));
    } finally {
      this._submit.disabled = false;
    }
  }
}
