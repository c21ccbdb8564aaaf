/**
 * One run: its live DAG with per-node state counts, a page of its states (by node and status),
 * and a state inspector (inputs, outputs, error with traceback) with retry; the run can be cancelled.
 * It polls while the run is pending, and slowly afterwards (a retry elsewhere brings it back).
 */
import { Widget } from '@lumino/widgets';

import { ApiError, IGraph, IRunSummary, IState, IStatePage, RETRYABLE, STATUSES, StateManagerClient } from './api';
import { renderDag } from './dag';
import { ago, clear, countParts, errorBox, fill, h, shortId, statusBadge } from './dom';

const FAST_MS = 1000;
const SLOW_MS = 5000;
const STATES_PAGE = 25;
const BIG_RUN = 5000; // states
const BIG_RUN_STATES_MS = 10000;
const TERMINAL = new Set(['SUCCESS', 'ERRORED', 'NEXT_CREATED_ERROR', 'RETRY_CREATED', 'PRUNED', 'CANCELLED']);

function show(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

function kvTable(data: Record<string, unknown> | null, empty: string): HTMLElement {
  const entries = Object.entries(data || {});
  if (!entries.length) {
    return h('div', { class: 'exo-muted' }, empty);
  }
  return h(
    'table',
    { class: 'exo-table exo-kv-table' },
    h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, h('pre', { class: 'exo-value' }, show(v))))))
  );
}

export class RunView extends Widget {
  summary: IRunSummary | null = null;
  graph: IGraph | null = null;
  selectedNode: string | null = null;
  statusFilter = '';
  page = 1;
  inspected: IState | null = null;

  private _timer: number | null = null;
  private _note: { stateId: string; el: HTMLElement } | null = null;
  private _dagKey = '';
  private _countsKey = '';
  private _statesAt = 0;
  private _statesKey = '';
  private _busy = false;
  private _lastPoll = 0;
  private _head = h('div', { class: 'exo-run-head' });
  private _message = h('div', { class: 'exo-message' });
  private _dag = h('div', { class: 'exo-dag-host' });
  private _statesHead = h('div', { class: 'exo-states-head' });
  private _states = h('div', { class: 'exo-states' });
  private _inspector = h('div', { class: 'exo-inspector' });
  private _statusSelect = h('select', { class: 'exo-select exo-state-status-filter', 'aria-label': 'state status' });

  constructor(
    readonly client: StateManagerClient,
    readonly namespace: string,
    readonly runId: string
  ) {
    super();
    this.addClass('exo-run-view');
    this.id = `exo-run-content-${client.connection.id}-${runId}`;
    this.node.dataset.runId = runId;
    this.node.dataset.connectionId = client.connection.id;
    this.title.label = `Run ${shortId(runId)}`;
    this.title.caption = `run ${runId} (${namespace} on ${client.connection.name})`;
    this.title.closable = true;
    this._statusSelect.appendChild(h('option', { value: '' }, 'any status'));
    for (const s of STATUSES) {
      this._statusSelect.appendChild(h('option', { value: s }, s));
    }
    this._statusSelect.addEventListener('change', () => {
      this.statusFilter = this._statusSelect.value;
      this.page = 1;
      void this.refreshStates();
    });
    this._inspector.appendChild(h('div', { class: 'exo-muted' }, 'select a state to inspect it'));
    this.node.append(
      this._head,
      this._message,
      this._dag,
      h(
        'div',
        { class: 'exo-run-lower' },
        h('div', { class: 'exo-states-pane' }, this._statesHead, this._states),
        this._inspector
      )
    );
  }

  protected onAfterAttach(): void {
    if (this._timer === null) {
      this._timer = window.setInterval(() => void this._tick(), FAST_MS);
    }
    void this.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onBeforeDetach(): void {
    this._stop();
  }

  dispose(): void {
    this._stop();
    super.dispose();
  }

  private _stop(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  private async _tick(): Promise<void> {
    const pending = !this.summary || this.summary.status === 'PENDING' || (this.inspected && !TERMINAL.has(this.inspected.status));
    const due = pending ? FAST_MS : SLOW_MS;
    if (this._busy || !this.isVisible || Date.now() - this._lastPoll < due - 50) {
      return;
    }
    await this.refresh();
  }

  async refresh(): Promise<void> {
    if (this._busy) {
      return;
    }
    this._busy = true;
    this._lastPoll = Date.now();
    try {
      const summary = await this.client.summary(this.namespace, this.runId);
      if (!this.graph || this.graph.name !== summary.graph_name) {
        this.graph = await this.client.graph(this.namespace, summary.graph_name);
      }
      this.summary = summary;
      if (this._message.querySelector('.exo-error')) {
        clear(this._message);
      }
      this._renderHead();
      this._renderDag();
      // the state list costs the whole state graph upstream: fetch it when counts moved, and for a
      // big run at most every few seconds
      const countsKey = JSON.stringify(summary.counts);
      const total = Object.values(summary.counts).reduce((a, b) => a + b, 0);
      const gap = total > BIG_RUN ? BIG_RUN_STATES_MS : 0;
      if (countsKey !== this._countsKey && Date.now() - this._statesAt >= gap) {
        this._countsKey = countsKey;
        await this.refreshStates();
      }
      if (this.inspected && !TERMINAL.has(this.inspected.status)) {
        await this.inspect(this.inspected.id, false);
      }
    } catch (error) {
      this._show(error);
    } finally {
      this._busy = false;
    }
  }

  private _renderHead(): void {
    const s = this.summary!;
    const parts = countParts(s.counts);
    const total = Object.values(s.counts).reduce((a, b) => a + b, 0);
    this._head.replaceChildren(
      h(
        'div',
        { class: 'exo-run-title' },
        h('span', { class: 'exo-run-graph-name' }, s.graph_name),
        statusBadge(s.status),
        h('span', { class: 'exo-muted', title: this.runId }, `run ${this.runId}`)
      ),
      h(
        'div',
        { class: 'exo-row exo-run-actions' },
        h(
          'span',
          { class: 'exo-run-counts' },
          `${total} state(s)`,
          parts.map(([cat, sym, n, label]) => h('span', { class: `exo-count exo-count-${cat}`, title: label }, ` ${n} ${sym}`))
        ),
        h('button', { class: 'exo-button exo-run-refresh', title: 'Refresh', onclick: () => void this.refresh() }, '⟳'),
        h(
          'button',
          {
            class: 'exo-button exo-danger exo-cancel-run',
            disabled: s.status !== 'PENDING',
            title: 'Cancel the states of this run that have not run yet',
            onclick: () => void this.cancelRun()
          },
          'Cancel run'
        )
      )
    );
  }

  private _renderDag(): void {
    if (!this.graph || !this.summary) {
      return;
    }
    const key = JSON.stringify([this.graph.updated_at, this.graph.nodes.length, this.summary.nodes, this.selectedNode]);
    if (key === this._dagKey) {
      return; // unchanged: keep the DOM (and whatever the pointer is on)
    }
    this._dagKey = key;
    const dag = renderDag(this.graph.nodes, {
      counts: this.summary.nodes,
      errors: this.graph.validation_errors,
      selected: this.selectedNode,
      onSelect: id => this.selectNode(this.selectedNode === id ? null : id)
    });
    this._dag.replaceChildren(dag);
  }

  selectNode(identifier: string | null): void {
    this.selectedNode = identifier;
    this.page = 1;
    this._renderDag();
    void this.refreshStates();
  }

  async refreshStates(): Promise<void> {
    this._statesAt = Date.now();
    let page: IStatePage;
    try {
      page = await this.client.states(this.namespace, this.runId, {
        identifier: this.selectedNode || undefined,
        status: this.statusFilter || undefined,
        page: this.page,
        size: STATES_PAGE
      });
    } catch (error) {
      this._statesKey = '';
      this._countsKey = ''; // try again on the next poll
      this._states.replaceChildren(this._errorBox(error));
      return;
    }
    const key = JSON.stringify([page, this.selectedNode, this.inspected?.id, this.statusFilter]);
    if (key === this._statesKey) {
      return;
    }
    this._statesKey = key;
    const pages = Math.max(1, Math.ceil(page.total / page.size));
    fill(this._statesHead,
      h('span', { class: 'exo-label' }, this.selectedNode ? `states of ${this.selectedNode}` : 'states'),
      this.selectedNode
        ? h('button', { class: 'exo-button', title: 'all nodes', onclick: () => this.selectNode(null) }, '× node')
        : null,
      this._statusSelect,
      h('span', { class: 'exo-muted' }, `${page.total} state(s)`)
    );
    const rows = page.states.map(s => {
      const row = h(
        'tr',
        {
          class: `exo-state-row${this.inspected?.id === s.id ? ' exo-selected' : ''}`,
          'data-state-id': s.id,
          'data-status': s.status,
          tabindex: 0
        },
        h('td', {}, statusBadge(s.status)),
        h('td', {}, s.identifier),
        h('td', { class: 'exo-mono', title: s.id }, shortId(s.id)),
        h('td', { class: 'exo-state-error', title: s.error || '' }, s.error || '')
      );
      row.addEventListener('click', () => void this.inspect(s.id));
      row.addEventListener('keydown', ev => {
        if ((ev as KeyboardEvent).key === 'Enter') {
          void this.inspect(s.id);
        }
      });
      return row;
    });
    fill(
      this._states,
      rows.length
        ? h('table', { class: 'exo-table exo-states-table' }, h('tbody', {}, rows))
        : h('div', { class: 'exo-muted' }, 'no state matches'),
      pages > 1
        ? h(
            'div',
            { class: 'exo-pager' },
            h('button', { class: 'exo-button', disabled: page.page <= 1, onclick: () => this._page(page.page - 1) }, '‹'),
            h('span', { class: 'exo-muted' }, `page ${page.page} of ${pages}`),
            h('button', { class: 'exo-button', disabled: page.page >= pages, onclick: () => this._page(page.page + 1) }, '›')
          )
        : null
    );
  }

  private _page(n: number): void {
    this.page = n;
    void this.refreshStates();
  }

  async inspect(stateId: string, mark = true): Promise<void> {
    let state: IState;
    try {
      state = await this.client.state(this.namespace, { id: stateId, graph: this.summary?.graph_name, runId: this.runId });
    } catch (error) {
      this._inspector.replaceChildren(this._errorBox(error));
      return;
    }
    const same = JSON.stringify(state) === JSON.stringify(this.inspected);
    this.inspected = state;
    if (same && !mark) {
      return;
    }
    if (mark) {
      for (const row of this._states.querySelectorAll('.exo-state-row')) {
        row.classList.toggle('exo-selected', row.getAttribute('data-state-id') === state.id);
      }
    }
    this._renderInspector();
  }

  private _renderInspector(): void {
    const s = this.inspected;
    if (!s) {
      return;
    }
    const note = this._note && this._note.stateId === s.id ? this._note.el : null;
    const parents = Object.entries(s.parents || {});
    fill(
      this._inspector,
      h(
        'div',
        { class: 'exo-inspector-head', 'data-state-id': s.id, 'data-status': s.status },
        h('span', { class: 'exo-inspector-title' }, `${s.identifier} `, h('span', { class: 'exo-muted' }, `(${s.node_name})`)),
        statusBadge(s.status),
        h(
          'button',
          {
            class: 'exo-button exo-primary exo-retry',
            disabled: !RETRYABLE.has(s.status),
            title: RETRYABLE.has(s.status)
              ? 'Run this state again (a new copy with the same inputs)'
              : 'only ERRORED, NEXT_CREATED_ERROR, PRUNED or CANCELLED states can be retried',
            onclick: () => void this.retry(s)
          },
          '↻ Retry'
        )
      ),
      note || h('div', { class: 'exo-message exo-inspector-message' }),
      h(
        'div',
        { class: 'exo-muted exo-inspector-meta' },
        `state ${s.id} · retry ${s.retry_count}`,
        s.fanout_id ? ` · fanout ${s.fanout_id}` : '',
        s.created_at ? ` · created ${ago(s.created_at)}` : '',
        s.updated_at ? ` · updated ${ago(s.updated_at)}` : ''
      ),
      h('div', { class: 'exo-label' }, 'inputs'),
      kvTable(s.inputs, 'no inputs'),
      h('div', { class: 'exo-label' }, 'outputs'),
      kvTable(s.outputs, s.status === 'SUCCESS' ? 'no outputs' : 'no outputs yet'),
      s.error ? h('div', { class: 'exo-label' }, 'error') : null,
      s.error ? h('pre', { class: 'exo-traceback' }, s.error) : null,
      parents.length ? h('div', { class: 'exo-label' }, 'parents') : null,
      parents.length
        ? h(
            'div',
            { class: 'exo-parents' },
            parents.map(([ident, id]) =>
              h('button', { class: 'exo-link', title: id, onclick: () => void this.inspect(id) }, `${ident} ${shortId(id)}`)
            )
          )
        : null
    );
  }

  async retry(state?: IState | null): Promise<void> {
    const s = state || this.inspected;
    if (!s) {
      return;
    }
    const message = h('div', { class: 'exo-message exo-inspector-message' });
    try {
      const created = await this.client.retry(this.namespace, s.id);
      message.replaceChildren(h('div', { class: 'exo-ok' }, `retried ${shortId(s.id)}: new state ${created.id}`));
      this._note = { stateId: created.id, el: message };
      await this.inspect(created.id);
    } catch (error) {
      message.replaceChildren(this._errorBox(error));
      this._note = { stateId: s.id, el: message };
      this._renderInspector();
    }
    await this.refresh();
  }

  async cancelRun(): Promise<void> {
    try {
      const res = await this.client.cancel(this.namespace, this.runId);
      this._message.replaceChildren(h('div', { class: 'exo-ok' }, `cancelled ${res.cancelled_count} state(s)`));
    } catch (error) {
      this._show(error);
    }
    await this.refresh();
  }

  private _errorBox(error: unknown): HTMLElement {
    return error instanceof ApiError ? errorBox(error.message, error.errors) : errorBox(String(error));
  }

  private _show(error: unknown): void {
    this._message.replaceChildren(this._errorBox(error));
  }
}
