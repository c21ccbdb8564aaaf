/**
 * The Exosphere side panel: connections -> namespace -> graphs and nodes -> runs (filters,
 * auto-refresh, trigger form). Opening a run hands it to the run view (`openRun`).
 */
import { Widget } from '@lumino/widgets';

import {
  ApiError,
  IConnection,
  IGraph,
  IRegisteredNode,
  IRuns,
  RUN_STATUSES,
  StateManagerClient,
  addConnection,
  listConnections,
  removeConnection
} from './api';
import { renderDag } from './dag';
import { ago, clear, errorBox, h, shortId, statusBadge } from './dom';
import { TriggerForm } from './trigger';

const TICK_MS = 1000;
const RUNS_EVERY = 2; // ticks
const CONNECTIONS_EVERY = 3;
const CATALOG_EVERY = 10;
const PAGE_SIZE = 15;

const SINCE_CHOICES: [string, string, number][] = [
  ['', 'any time', 0],
  ['15m', 'last 15 min', 15 * 60e3],
  ['1h', 'last hour', 3600e3],
  ['24h', 'last 24 h', 86400e3],
  ['7d', 'last 7 days', 7 * 86400e3]
];

export interface IOpenRun {
  (client: StateManagerClient, namespace: string, runId: string): void;
}

function describe(conn: IConnection): string {
  if (conn.kind === 'kernel') {
    return `${conn.name} · ${conn.uri}${conn.db ? ` · ${conn.db}` : ''}`;
  }
  return `${conn.name} · ${conn.uri} · ${conn.has_key ? 'key saved on the server' : 'no key'}`;
}

function messageOf(error: unknown): [string, string[]] {
  if (error instanceof ApiError) {
    return [error.message, error.errors];
  }
  return [String(error), []];
}

export class ExospherePanel extends Widget {
  connections: IConnection[] = [];
  connection: IConnection | null = null;
  client: StateManagerClient | null = null;
  namespaces: string[] = [];
  namespace: string | null = null;
  graphs: IGraph[] = [];
  nodes: IRegisteredNode[] = [];
  runs: IRuns | null = null;
  autoRefresh = true;
  filters = { graph: '', status: '', since: '', until: '', page: 1 };

  private _openRun: IOpenRun;
  private _timer: number | null = null;
  private _ticks = 0;
  private _busy = false;
  private _serversDir = '';
  private _connKey: string | null = null;
  private _trigger: TriggerForm | null = null;

  private _connSelect = h('select', { class: 'exo-select exo-connection-select', 'aria-label': 'connection' });
  private _connInfo = h('div', { class: 'exo-muted exo-connection-info' });
  private _connMessage = h('div', { class: 'exo-message' });
  private _addForm = h('div', { class: 'exo-form exo-add-connection', hidden: true });
  private _nsSelect = h('select', { class: 'exo-select exo-namespace-select', 'aria-label': 'namespace' });
  private _graphsBody = h('div', { class: 'exo-graphs' });
  private _nodesBody = h('div', { class: 'exo-nodes' });
  private _triggerHost = h('div', { class: 'exo-trigger-host' });
  private _runsBody = h('div', { class: 'exo-runs' });
  private _runsMessage = h('div', { class: 'exo-message' });
  private _autoBox = h('input', { type: 'checkbox', class: 'exo-auto-refresh', checked: true }) as HTMLInputElement;
  private _graphFilter = h('select', { class: 'exo-select exo-filter-graph', 'aria-label': 'graph filter' });
  private _statusFilter = h('select', { class: 'exo-select exo-filter-status', 'aria-label': 'status filter' });
  private _sinceFilter = h('select', { class: 'exo-select exo-filter-since', 'aria-label': 'created since' });
  private _untilFilter = h('input', {
    type: 'datetime-local',
    class: 'exo-input exo-filter-until',
    'aria-label': 'created before'
  }) as HTMLInputElement;

  constructor(openRun: IOpenRun) {
    super();
    this._openRun = openRun;
    this.id = 'exosphere-nb-panel';
    this.addClass('exo-panel');
    this.title.caption = 'Exosphere';
    this._build();
  }

  // -- layout ----------------------------------------------------------------------------------

  private _build(): void {
    this._autoBox.addEventListener('change', () => this.setAutoRefresh(this._autoBox.checked));
    this._connSelect.addEventListener('change', () => void this.selectConnection(this._connSelect.value));
    this._nsSelect.addEventListener('change', () => void this.selectNamespace(this._nsSelect.value));
    this._statusFilter.appendChild(h('option', { value: '' }, 'any status'));
    for (const s of RUN_STATUSES) {
      this._statusFilter.appendChild(h('option', { value: s }, s));
    }
    for (const [value, label] of SINCE_CHOICES) {
      this._sinceFilter.appendChild(h('option', { value }, label));
    }
    const onFilter = () => {
      this.filters.graph = this._graphFilter.value;
      this.filters.status = this._statusFilter.value;
      this.filters.since = this._sinceFilter.value;
      this.filters.until = this._untilFilter.value;
      this.filters.page = 1;
      void this.refreshRuns();
    };
    for (const el of [this._graphFilter, this._statusFilter, this._sinceFilter, this._untilFilter]) {
      el.addEventListener('change', onFilter);
    }

    const header = h(
      'div',
      { class: 'exo-header' },
      h('span', { class: 'exo-title' }, 'Exosphere'),
      h(
        'label',
        { class: 'exo-auto', title: 'refresh runs every few seconds' },
        this._autoBox,
        ' auto-refresh'
      ),
      h('button', { class: 'exo-button exo-refresh', title: 'Refresh', onclick: () => void this.refresh() }, '⟳')
    );
    const connections = h(
      'section',
      { class: 'exo-section' },
      h('div', { class: 'exo-section-title' }, 'Connection'),
      h(
        'div',
        { class: 'exo-row' },
        this._connSelect,
        h('button', {
          class: 'exo-button exo-add-connection-button',
          title: 'Add a remote state manager',
          onclick: () => this.showAddConnection()
        }, '+'),
        h('button', {
          class: 'exo-button exo-remove-connection-button',
          title: 'Forget this remote state manager',
          onclick: () => void this.removeCurrentConnection()
        }, '−')
      ),
      this._connInfo,
      this._addForm,
      this._connMessage,
      h('div', { class: 'exo-row' }, h('span', { class: 'exo-label' }, 'Namespace'), this._nsSelect)
    );
    const graphs = h(
      'details',
      { class: 'exo-section', open: true },
      h('summary', { class: 'exo-section-title' }, 'Graphs'),
      this._graphsBody
    );
    const nodes = h(
      'details',
      { class: 'exo-section' },
      h('summary', { class: 'exo-section-title' }, 'Registered nodes'),
      this._nodesBody
    );
    const runs = h(
      'section',
      { class: 'exo-section' },
      h('div', { class: 'exo-section-title' }, 'Runs'),
      this._triggerHost,
      h('div', { class: 'exo-filters' }, this._graphFilter, this._statusFilter, this._sinceFilter, this._untilFilter),
      this._runsMessage,
      this._runsBody
    );
    this.node.append(header, connections, graphs, nodes, runs);
  }

  // -- lifecycle -------------------------------------------------------------------------------

  protected onAfterAttach(): void {
    if (this._timer === null) {
      this._timer = window.setInterval(() => void this._tick(), TICK_MS);
    }
    void this.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onBeforeDetach(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  dispose(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
    super.dispose();
  }

  private async _tick(): Promise<void> {
    if (this._busy || !this.isVisible) {
      return;
    }
    this._ticks += 1;
    this._busy = true;
    try {
      if (this._ticks % CONNECTIONS_EVERY === 0) {
        await this.refreshConnections();
      }
      if (this.autoRefresh && this.client && this.namespace) {
        if (this._ticks % CATALOG_EVERY === 0) {
          await this.refreshCatalog();
        }
        if (this._ticks % RUNS_EVERY === 0) {
          await this.refreshRuns();
        }
      }
    } finally {
      this._busy = false;
    }
  }

  setAutoRefresh(on: boolean): void {
    this.autoRefresh = on;
    this._autoBox.checked = on;
  }

  async refresh(): Promise<void> {
    if (this._busy) {
      return;
    }
    this._busy = true;
    try {
      const before = this.client;
      await this.refreshConnections();
      if (this.client && this.client === before) {
        await this.refreshNamespaces(); // a newly chosen connection was loaded by refreshConnections
      }
    } finally {
      this._busy = false;
    }
  }

  // -- connections -----------------------------------------------------------------------------

  async refreshConnections(): Promise<void> {
    let data;
    try {
      data = await listConnections();
    } catch (error) {
      this._show(this._connMessage, error);
      return;
    }
    this._serversDir = data.servers_dir;
    this.connections = data.connections;
    const key = this.connections.map(c => `${c.id}|${c.name}|${c.uri}`).join(',');
    const changed = key !== this._connKey;
    this._connKey = key;
    if (data.problem) {
      this._connMessage.replaceChildren(errorBox(data.problem));
    }
    if (changed) {
      this._renderConnections();
    }
    const current = this.connection && this.connections.find(c => c.id === this.connection!.id);
    if (!current) {
      // the selected one went away (or none was chosen): take a kernel that serves, else the first
      const next = this.connections.find(c => c.kind === 'kernel') || this.connections[0];
      if (next) {
        await this.selectConnection(next.id);
      } else if (this.connection) {
        this.connection = null;
        this.client = null;
        this._clearCatalog();
      }
    } else if (!this.namespace && this.client) {
      await this.refreshNamespaces();
    }
  }

  private _renderConnections(): void {
    clear(this._connSelect);
    if (!this.connections.length) {
      this._connSelect.appendChild(h('option', { value: '' }, 'no state manager found'));
      this._connInfo.replaceChildren(
        h(
          'span',
          {},
          'Run ',
          h('code', {}, '%exo serve'),
          ' in a notebook (its kernel shows up here by itself), or add a remote state manager with +.'
        )
      );
      return;
    }
    for (const c of this.connections) {
      this._connSelect.appendChild(
        h('option', { value: c.id, selected: this.connection?.id === c.id }, `${c.kind === 'kernel' ? '⚙' : '☁'} ${c.name}`)
      );
    }
    if (this.connection) {
      this._connSelect.value = this.connection.id;
    }
  }

  async selectConnection(id: string): Promise<void> {
    const conn = this.connections.find(c => c.id === id) || null;
    this.connection = conn;
    this.client = conn ? new StateManagerClient(conn) : null;
    this.namespace = null;
    this._renderConnections();
    clear(this._connMessage);
    this._connInfo.textContent = conn ? describe(conn) : '';
    this._clearCatalog();
    if (conn) {
      await this.refreshNamespaces();
    }
  }

  showAddConnection(): void {
    const form = this._addForm;
    if (!form.hidden) {
      (form.querySelector('input') as HTMLInputElement | null)?.focus();
      return;
    }
    const name = h('input', { class: 'exo-input', name: 'name', placeholder: 'name (optional)' }) as HTMLInputElement;
    const uri = h('input', { class: 'exo-input', name: 'uri', placeholder: 'http://host:8000', required: true }) as HTMLInputElement;
    const key = h('input', {
      class: 'exo-input',
      name: 'key',
      type: 'password',
      autocomplete: 'off',
      placeholder: 'API key (kept on the Jupyter server)'
    }) as HTMLInputElement;
    const ns = h('input', { class: 'exo-input', name: 'namespace', placeholder: 'namespace (optional)' }) as HTMLInputElement;
    const message = h('div', { class: 'exo-message' });
    const close = () => {
      clear(form);
      form.hidden = true;
    };
    const save = async () => {
      message.replaceChildren(h('span', { class: 'exo-muted' }, 'checking…'));
      try {
        const added = await addConnection({ uri: uri.value, key: key.value, name: name.value, namespace: ns.value });
        key.value = '';
        close();
        await this.refreshConnections();
        await this.selectConnection(added.connection.id);
        if (!added.check.ok) {
          this._connMessage.replaceChildren(errorBox(`saved, but ${added.check.detail || 'it did not answer'}`));
        }
      } catch (error) {
        this._show(message, error);
      }
    };
    form.replaceChildren(
      h('div', { class: 'exo-form-title' }, 'Add a remote state manager'),
      name,
      uri,
      key,
      ns,
      h(
        'div',
        { class: 'exo-row' },
        h('button', { class: 'exo-button exo-primary', onclick: () => void save() }, 'Save'),
        h('button', { class: 'exo-button', onclick: close }, 'Cancel')
      ),
      message
    );
    form.hidden = false;
    uri.focus();
  }

  async removeCurrentConnection(): Promise<void> {
    const conn = this.connection;
    if (!conn) {
      return;
    }
    if (conn.kind !== 'remote') {
      this._connMessage.replaceChildren(
        errorBox('a kernel goes away by itself when it stops serving (`%exo serve --stop`)')
      );
      return;
    }
    try {
      await removeConnection(conn.id);
      this.connection = null;
      await this.refreshConnections();
    } catch (error) {
      this._show(this._connMessage, error);
    }
  }

  // -- namespace, graphs, nodes ----------------------------------------------------------------

  private _clearCatalog(): void {
    this.namespaces = [];
    this.graphs = [];
    this.nodes = [];
    this.runs = null;
    clear(this._nsSelect);
    clear(this._graphsBody);
    clear(this._nodesBody);
    clear(this._runsBody);
    clear(this._runsMessage);
    this._closeTrigger();
  }

  async refreshNamespaces(): Promise<void> {
    const client = this.client;
    if (!client) {
      return;
    }
    try {
      this.namespaces = await client.namespaces();
    } catch (error) {
      if (client === this.client) {
        this._show(this._connMessage, error);
      }
      return;
    }
    if (client !== this.client) {
      return;
    }
    clear(this._connMessage);
    const preferred = this.connection?.namespace;
    const choices = [...this.namespaces];
    if (preferred && !choices.includes(preferred)) {
      choices.unshift(preferred);
    }
    const ns =
      (this.namespace && choices.includes(this.namespace) && this.namespace) || preferred || choices[0] || null;
    clear(this._nsSelect);
    for (const n of choices) {
      this._nsSelect.appendChild(h('option', { value: n }, n));
    }
    if (!choices.length) {
      this._nsSelect.appendChild(h('option', { value: '' }, 'no namespace yet'));
    }
    if (ns) {
      this._nsSelect.value = ns;
    }
    if (ns !== this.namespace) {
      await this.selectNamespace(ns);
    } else {
      await this.refreshCatalog();
      await this.refreshRuns();
    }
  }

  async selectNamespace(ns: string | null): Promise<void> {
    this.namespace = ns || null;
    this.filters = { graph: '', status: '', since: '', until: '', page: 1 };
    this._graphFilter.value = '';
    this._statusFilter.value = '';
    this._sinceFilter.value = '';
    this._untilFilter.value = '';
    this._closeTrigger();
    await this.refreshCatalog();
    await this.refreshRuns();
  }

  async refreshCatalog(): Promise<void> {
    const client = this.client;
    const ns = this.namespace;
    if (!client || !ns) {
      return;
    }
    try {
      const [graphs, nodes] = await Promise.all([client.graphs(ns), client.nodes(ns)]);
      if (client !== this.client || ns !== this.namespace) {
        return;
      }
      this.graphs = graphs;
      this.nodes = nodes;
    } catch (error) {
      this._show(this._graphsBody, error);
      return;
    }
    this._renderGraphs();
    this._renderNodes();
    this._renderGraphFilter();
  }

  private _renderGraphFilter(): void {
    const value = this.filters.graph;
    clear(this._graphFilter);
    this._graphFilter.appendChild(h('option', { value: '' }, 'any graph'));
    const names = new Set(this.graphs.map(g => g.name));
    if (value) {
      names.add(value);
    }
    for (const name of [...names].sort()) {
      this._graphFilter.appendChild(h('option', { value: name }, name));
    }
    this._graphFilter.value = value;
  }

  private _renderGraphs(): void {
    const open = new Set(
      [...this._graphsBody.querySelectorAll('details[open]')].map(d => d.getAttribute('data-graph'))
    );
    clear(this._graphsBody);
    if (!this.graphs.length) {
      this._graphsBody.appendChild(h('div', { class: 'exo-muted' }, 'no graph in this namespace yet'));
      return;
    }
    for (const g of this.graphs) {
      const errors = g.validation_errors || [];
      const body = h('div', { class: 'exo-graph-body' });
      const item = h(
        'details',
        { class: 'exo-graph', 'data-graph': g.name, open: open.has(g.name) },
        h(
          'summary',
          { class: 'exo-graph-summary' },
          h('span', { class: 'exo-graph-name' }, g.name),
          h('span', { class: `exo-badge exo-validation-${g.validation_status.toLowerCase()}` }, g.validation_status),
          h(
            'button',
            {
              class: 'exo-button exo-trigger-button',
              title: g.validation_status === 'VALID' ? `Trigger a run of ${g.name}` : 'only a VALID graph can run',
              disabled: g.validation_status !== 'VALID',
              onclick: (ev: Event) => {
                ev.preventDefault();
                this.openTrigger(g.name);
              }
            },
            '▶ Trigger'
          )
        ),
        body
      );
      item.addEventListener('toggle', () => {
        if (item.open && !body.firstChild) {
          this._fillGraph(body, g);
        }
      });
      if (item.open) {
        this._fillGraph(body, g);
      }
      this._graphsBody.appendChild(item);
      if (errors.length) {
        this._graphsBody.appendChild(
          h('ul', { class: 'exo-validation-errors', 'data-graph': g.name }, errors.map(e => h('li', {}, e)))
        );
      }
    }
  }

  private _fillGraph(body: HTMLElement, g: IGraph): void {
    const store = g.store_config || {};
    const secrets = Object.keys(g.secrets || {});
    const crons = (g.triggers || []).map(t => t.value?.expression).filter(Boolean);
    body.replaceChildren(
      h('div', { class: 'exo-dag-host exo-dag-small' }, renderDag(g.nodes, { errors: g.validation_errors })),
      h(
        'div',
        { class: 'exo-muted' },
        `${g.nodes.length} node(s)`,
        store.required_keys?.length ? ` · store needs ${store.required_keys.join(', ')}` : '',
        secrets.length ? ` · secrets ${secrets.join(', ')}` : '',
        crons.length ? ` · cron ${crons.join(', ')}` : ''
      )
    );
  }

  private _renderNodes(): void {
    clear(this._nodesBody);
    if (!this.nodes.length) {
      this._nodesBody.appendChild(
        h('div', { class: 'exo-muted' }, 'no node registered: start a Runtime with your node classes')
      );
      return;
    }
    for (const n of this.nodes) {
      const inputs = Object.keys(n.inputs_schema?.properties || {});
      const outputs = Object.keys(n.outputs_schema?.properties || {});
      this._nodesBody.appendChild(
        h(
          'div',
          { class: 'exo-node', 'data-node': n.name },
          h('span', { class: 'exo-node-name' }, n.name),
          h(
            'span',
            { class: 'exo-muted' },
            ` (${inputs.join(', ')}) → (${outputs.join(', ')})`,
            n.secrets?.length ? ` · secrets ${n.secrets.join(', ')}` : ''
          )
        )
      );
    }
  }

  // -- trigger ---------------------------------------------------------------------------------

  openTrigger(graphName: string): void {
    const g = this.graphs.find(x => x.name === graphName);
    const client = this.client;
    const ns = this.namespace;
    if (!g || !client || !ns) {
      return;
    }
    this._closeTrigger();
    this._trigger = new TriggerForm(g, async body => {
      const run = await client.trigger(ns, g.name, body);
      this._closeTrigger();
      this._runsMessage.replaceChildren(
        h('div', { class: 'exo-ok' }, `run ${shortId(run.run_id)} of ${g.name} created`)
      );
      this.filters.page = 1;
      await this.refreshRuns();
      this._openRun(client, ns, run.run_id);
    }, () => this._closeTrigger());
    this._triggerHost.appendChild(this._trigger.node);
    this._trigger.focus();
  }

  private _closeTrigger(): void {
    if (this._trigger) {
      this._trigger.node.remove();
      this._trigger = null;
    }
  }

  // -- runs ------------------------------------------------------------------------------------

  async refreshRuns(): Promise<void> {
    const client = this.client;
    const ns = this.namespace;
    if (!client || !ns) {
      return;
    }
    const since = SINCE_CHOICES.find(([v]) => v === this.filters.since)?.[2] || 0;
    const until = this.filters.until ? Date.parse(this.filters.until) : NaN;
    let runs: IRuns;
    try {
      runs = await client.runs(ns, {
        graph: this.filters.graph || undefined,
        status: this.filters.status || undefined,
        since: since ? Date.now() - since : undefined,
        until: isNaN(until) ? undefined : until,
        page: this.filters.page,
        size: PAGE_SIZE
      });
    } catch (error) {
      if (client === this.client && ns === this.namespace) {
        this._show(this._runsMessage, error);
      }
      return;
    }
    if (client !== this.client || ns !== this.namespace) {
      return;
    }
    if (this._runsMessage.querySelector('.exo-error')) {
      clear(this._runsMessage);
    }
    this.runs = runs;
    this._renderRuns();
  }

  private _renderRuns(): void {
    const runs = this.runs;
    clear(this._runsBody);
    if (!runs) {
      return;
    }
    if (!runs.runs.length) {
      this._runsBody.appendChild(h('div', { class: 'exo-muted' }, 'no run matches'));
      return;
    }
    const table = h(
      'table',
      { class: 'exo-table exo-runs-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'status'), h('th', {}, 'run'), h('th', {}, 'progress')))
    );
    const tbody = h('tbody');
    for (const r of runs.runs) {
      const done = r.success_count + r.errored_count + r.cancelled_count + r.retried_count;
      const pct = r.total_count ? Math.round((100 * done) / r.total_count) : 0;
      const okPct = r.total_count ? (100 * (r.success_count + r.retried_count)) / r.total_count : 0;
      const badPct = r.total_count ? (100 * (r.errored_count + r.cancelled_count)) / r.total_count : 0;
      const row = h(
        'tr',
        {
          class: 'exo-run-row',
          'data-run-id': r.run_id,
          'data-status': r.status,
          tabindex: 0,
          title: `run ${r.run_id}: ${r.success_count} succeeded, ${r.errored_count} failed, ${r.pending_count} pending of ${r.total_count} states — open it`
        },
        h('td', {}, statusBadge(r.status)),
        h(
          'td',
          { class: 'exo-run-graph' },
          r.graph_name,
          h('div', { class: 'exo-muted exo-run-id', title: `${r.run_id}, created ${r.created_at || '?'}` }, `${shortId(r.run_id)} · ${ago(r.created_at)}`)
        ),
        h(
          'td',
          { class: 'exo-run-progress' },
          h(
            'div',
            { class: 'exo-progress', role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100 },
            h('div', { class: 'exo-progress-ok', style: `width: ${okPct}%` }),
            h('div', { class: 'exo-progress-bad', style: `width: ${badPct}%` })
          ),
          h('div', { class: 'exo-muted' }, `${done}/${r.total_count}`)
        )
      );
      const open = () => this.client && this.namespace && this._openRun(this.client, this.namespace, r.run_id);
      row.addEventListener('click', open);
      row.addEventListener('keydown', ev => {
        if ((ev as KeyboardEvent).key === 'Enter') {
          open();
        }
      });
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    const pages = Math.max(1, Math.ceil(runs.total / runs.size));
    const pager = h(
      'div',
      { class: 'exo-pager' },
      h('button', {
        class: 'exo-button',
        disabled: runs.page <= 1,
        onclick: () => {
          this.filters.page = Math.max(1, runs.page - 1);
          void this.refreshRuns();
        }
      }, '‹'),
      h('span', { class: 'exo-muted' }, `page ${runs.page} of ${pages} · ${runs.total} run(s)`),
      h('button', {
        class: 'exo-button',
        disabled: runs.page >= pages,
        onclick: () => {
          this.filters.page = runs.page + 1;
          void this.refreshRuns();
        }
      }, '›')
    );
    this._runsBody.append(table, pager);
  }

  // -- helpers ---------------------------------------------------------------------------------

  private _show(where: HTMLElement, error: unknown): void {
    const [message, errors] = messageOf(error);
    where.replaceChildren(errorBox(message, errors));
  }

  get serversDir(): string {
    return this._serversDir;
  }
}
