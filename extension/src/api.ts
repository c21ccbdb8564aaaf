/**
 * Calls to the server extension (`exosphere-nb/api/...`). State managers are reached only
 * through its proxy, which adds their keys: no key ever reaches the browser.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const STATUSES = [
  'CREATED',
  'QUEUED',
  'EXECUTED',
  'SUCCESS',
  'ERRORED',
  'NEXT_CREATED_ERROR',
  'RETRY_CREATED',
  'PRUNED',
  'CANCELLED'
] as const;

export const RUN_STATUSES = ['PENDING', 'SUCCESS', 'FAILED', 'CANCELLED'] as const;
export const RETRYABLE = new Set(['ERRORED', 'NEXT_CREATED_ERROR', 'PRUNED', 'CANCELLED']);

export type Counts = Record<string, number>;

export interface IConnection {
  id: string;
  kind: 'kernel' | 'remote';
  name: string;
  uri: string;
  namespace: string | null;
  db: string | null;
  pid: number | null;
  has_key: boolean;
  notebook?: string;
}

export interface IConnections {
  connections: IConnection[];
  servers_dir: string;
  problem: string | null;
}

export interface IGraphNode {
  node_name: string;
  namespace: string;
  identifier: string;
  inputs: Record<string, string>;
  next_nodes: string[] | null;
  unites: { identifier: string; strategy?: string } | null;
}

export interface IGraph {
  name: string;
  namespace: string;
  nodes: IGraphNode[];
  secrets: Record<string, boolean>;
  store_config?: { required_keys?: string[]; default_values?: Record<string, string> } | null;
  retry_policy?: Record<string, unknown> | null;
  triggers?: { type: string; value: { expression?: string } }[] | null;
  validation_status: string;
  validation_errors: string[] | null;
  created_at?: string;
  updated_at?: string;
}

export interface IRegisteredNode {
  name: string;
  namespace: string;
  inputs_schema: { properties?: Record<string, unknown> };
  outputs_schema: { properties?: Record<string, unknown> };
  secrets: string[];
}

export interface IRun {
  run_id: string;
  graph_name: string;
  success_count: number;
  pending_count: number;
  errored_count: number;
  retried_count: number;
  cancelled_count: number;
  total_count: number;
  status: string;
  created_at: string | null;
}

export interface IRuns {
  total: number;
  page: number;
  size: number;
  runs: IRun[];
}

export interface IRunSummary {
  run_id: string;
  namespace: string;
  graph_name: string;
  status: string;
  counts: Counts;
  nodes: Record<string, Counts>;
}

export interface IStateRow {
  id: string;
  identifier: string;
  node_name: string;
  status: string;
  error: string | null;
}

export interface IStatePage {
  run_id: string;
  graph_name: string | null;
  total: number;
  page: number;
  size: number;
  states: IStateRow[];
}

export interface IState {
  id: string;
  node_name: string;
  identifier: string;
  graph_name: string;
  run_id: string;
  status: string;
  inputs: Record<string, unknown> | null;
  outputs: Record<string, unknown> | null;
  error: string | null;
  parents: Record<string, string> | null;
  retry_count: number;
  fanout_id?: string | null;
  created_at: string | null;
  updated_at: string | null;
}

export interface IRunFilters {
  graph?: string;
  status?: string;
  since?: number;
  until?: number;
  page: number;
  size: number;
}

/** An answer that is not 2xx, with the message the server extension wrote for a person. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errors: string[] = []
  ) {
    super(message);
  }
}

function messageOf(data: unknown, response: Response): string {
  if (data && typeof data === 'object') {
    const d = data as { detail?: unknown; message?: unknown };
    if (typeof d.detail === 'string' && d.detail) {
      return d.detail;
    }
    if (Array.isArray(d.detail)) {
      return d.detail
        .map((e: any) => (e && e.msg ? `${(e.loc || []).join('.')}: ${e.msg}` : String(e)))
        .join('; ');
    }
    if (typeof d.message === 'string' && d.message) {
      return d.message;
    }
  }
  if (typeof data === 'string' && data.trim()) {
    return `HTTP ${response.status}: ${data.trim().slice(0, 200)}`;
  }
  return `HTTP ${response.status} ${response.statusText}`;
}

export async function requestAPI<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'exosphere-nb', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(`cannot reach the Jupyter server: ${error}`, 0);
  }
  const text = await response.text();
  let data: unknown = text;
  if (text.length) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: the message below shows its start
    }
  }
  if (!response.ok) {
    const errors =
      data && typeof data === 'object' && Array.isArray((data as any).errors)
        ? ((data as any).errors as unknown[]).map(String)
        : [];
    throw new ApiError(messageOf(data, response), response.status, errors);
  }
  return data as T;
}

function enc(part: string): string {
  return encodeURIComponent(part);
}

function query(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export function listConnections(): Promise<IConnections> {
  return requestAPI<IConnections>('connections');
}

export function addConnection(body: {
  uri: string;
  key?: string;
  name?: string;
  namespace?: string;
}): Promise<{ connection: IConnection; check: { ok: boolean; detail?: string } }> {
  return requestAPI('connections', { method: 'POST', body: JSON.stringify(body) });
}

export function removeConnection(id: string): Promise<{ removed: string }> {
  return requestAPI(`connections/${enc(id)}`, { method: 'DELETE' });
}

/** One state manager, reached through the proxy; knows whether it speaks this project's extensions. */
export class StateManagerClient {
  private _extensions: Set<string> | null = null;

  constructor(readonly connection: IConnection) {}

  private get(path: string): Promise<any> {
    return requestAPI(`proxy/${enc(this.connection.id)}/${path}`);
  }

  private post(path: string, body: unknown): Promise<any> {
    return requestAPI(`proxy/${enc(this.connection.id)}/${path}`, {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }

  private ns(namespace: string): string {
    return `v0/namespace/${enc(namespace)}`;
  }

  /** The extensions the server lists in `/v0/capabilities`; none for a plain v0 state manager. */
  async extensions(): Promise<Set<string>> {
    if (this._extensions === null) {
      try {
        const caps = await this.get('v0/capabilities');
        this._extensions = new Set<string>(caps.extensions || []);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          this._extensions = new Set();
        } else {
          throw error;
        }
      }
    }
    return this._extensions;
  }

  async namespaces(): Promise<string[]> {
    const data = await this.get('v0/namespaces');
    return data.namespaces || [];
  }

  async graphs(namespace: string): Promise<IGraph[]> {
    const data = await this.get(`${this.ns(namespace)}/graphs/`);
    return data.templates || [];
  }

  graph(namespace: string, name: string): Promise<IGraph> {
    return this.get(`${this.ns(namespace)}/graph/${enc(name)}`);
  }

  async nodes(namespace: string): Promise<IRegisteredNode[]> {
    const data = await this.get(`${this.ns(namespace)}/nodes/`);
    return data.nodes || [];
  }

  async runs(namespace: string, f: IRunFilters): Promise<IRuns> {
    if ((await this.extensions()).has('runs')) {
      return this.get(
        `${this.ns(namespace)}/runs${query({
          graph_name: f.graph,
          status: f.status,
          since: f.since,
          until: f.until,
          page: f.page,
          size: f.size
        })}`
      );
    }
    // plain v0: one page, filtered here
    const data: IRuns = await this.get(`${this.ns(namespace)}/runs/${f.page}/${f.size}`);
    data.runs = data.runs.filter(r => {
      const created = r.created_at ? Date.parse(r.created_at) : NaN;
      return (
        (!f.graph || r.graph_name === f.graph) &&
        (!f.status || r.status === f.status) &&
        (!f.since || !(created < f.since)) &&
        (!f.until || !(created >= f.until))
      );
    });
    return data;
  }

  async summary(namespace: string, runId: string): Promise<IRunSummary> {
    if ((await this.extensions()).has('summary')) {
      return this.get(`${this.ns(namespace)}/runs/${enc(runId)}/summary`);
    }
    const g = await this.get(`${this.ns(namespace)}/states/run/${enc(runId)}/graph`);
    const nodes: Record<string, Counts> = {};
    for (const s of g.nodes || []) {
      const per = (nodes[s.identifier] = nodes[s.identifier] || {});
      per[s.status] = (per[s.status] || 0) + 1;
    }
    const counts: Counts = g.execution_summary || {};
    return {
      run_id: runId,
      namespace,
      graph_name: g.graph_name,
      status: runStatusOf(counts),
      counts,
      nodes
    };
  }

  states(
    namespace: string,
    runId: string,
    opts: { identifier?: string; status?: string; page: number; size: number }
  ): Promise<IStatePage> {
    return requestAPI(
      `run-states/${enc(this.connection.id)}/${enc(namespace)}/${enc(runId)}${query(opts)}`
    );
  }

  async state(namespace: string, row: { id: string; graph?: string; runId?: string }): Promise<IState> {
    if ((await this.extensions()).has('state') || !row.graph || !row.runId) {
      return this.get(`${this.ns(namespace)}/state/${enc(row.id)}`);
    }
    return this.get(
      `${this.ns(namespace)}/graph/${enc(row.graph)}/run/${enc(row.runId)}/node/${enc(row.id)}`
    );
  }

  trigger(
    namespace: string,
    graph: string,
    body: { inputs: Record<string, string>; store: Record<string, string>; start_delay: number }
  ): Promise<{ status: string; run_id: string }> {
    return this.post(`${this.ns(namespace)}/graph/${enc(graph)}/trigger`, body);
  }

  retry(namespace: string, stateId: string): Promise<{ id: string; status: string }> {
    const fanout = `lab-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    return this.post(`${this.ns(namespace)}/state/${enc(stateId)}/manual-retry`, { fanout_id: fanout });
  }

  cancel(namespace: string, runId: string): Promise<{ run_id: string; status: string; cancelled_count: number }> {
    return this.post(`${this.ns(namespace)}/runs/${enc(runId)}/cancel`, {});
  }
}

export function runStatusOf(counts: Counts): string {
  const n = (s: string) => counts[s] || 0;
  if (n('CREATED') || n('QUEUED') || n('EXECUTED')) {
    return 'PENDING';
  }
  if (n('CANCELLED')) {
    return 'CANCELLED';
  }
  if (n('ERRORED') || n('NEXT_CREATED_ERROR')) {
    return 'FAILED';
  }
  return 'SUCCESS';
}
