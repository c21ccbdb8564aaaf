/**
 * A graph template drawn as a layered DAG (SVG), each node with its run's state counts.
 *
 * Layers follow the longest path from the root over `next_nodes` edges and `unites` edges
 * (dashed, from the united node to the uniting one); within a layer, nodes sit near their parents.
 * Colours are CSS classes over JupyterLab's theme variables, so light and dark themes both work.
 */
import { IGraphNode, Counts } from './api';
import { countParts, dominantCategory, svg } from './dom';

const NODE_W = 196;
const NODE_H = 64;
const H_GAP = 28;
const V_GAP = 46;
const PAD = 12;

interface IEdge {
  source: string;
  target: string;
  unites: boolean;
}

interface IPlaced {
  node: IGraphNode;
  layer: number;
  x: number;
  y: number;
}

export function edgesOf(nodes: IGraphNode[]): IEdge[] {
  const known = new Set(nodes.map(n => n.identifier));
  const edges: IEdge[] = [];
  for (const n of nodes) {
    for (const t of n.next_nodes || []) {
      if (known.has(t)) {
        edges.push({ source: n.identifier, target: t, unites: false });
      }
    }
    if (n.unites && known.has(n.unites.identifier)) {
      edges.push({ source: n.unites.identifier, target: n.identifier, unites: true });
    }
  }
  return edges;
}

/** Layer of each node: longest path from a root (nodes on a cycle, in an INVALID graph, go last). */
function layers(nodes: IGraphNode[], edges: IEdge[]): Map<string, number> {
  const indegree = new Map<string, number>(nodes.map(n => [n.identifier, 0]));
  const out = new Map<string, string[]>(nodes.map(n => [n.identifier, []]));
  for (const e of edges) {
    indegree.set(e.target, (indegree.get(e.target) || 0) + 1);
    out.get(e.source)!.push(e.target);
  }
  const layer = new Map<string, number>();
  const queue = nodes.filter(n => indegree.get(n.identifier) === 0).map(n => n.identifier);
  for (const id of queue) {
    layer.set(id, 0);
  }
  while (queue.length) {
    const id = queue.shift()!;
    for (const t of out.get(id)!) {
      layer.set(t, Math.max(layer.get(t) || 0, layer.get(id)! + 1));
      indegree.set(t, indegree.get(t)! - 1);
      if (indegree.get(t) === 0) {
        queue.push(t);
      }
    }
  }
  let last = Math.max(-1, ...layer.values());
  for (const n of nodes) {
    if (!layer.has(n.identifier)) {
      layer.set(n.identifier, ++last);
    }
  }
  return layer;
}

export function layout(nodes: IGraphNode[]): { placed: Map<string, IPlaced>; edges: IEdge[]; width: number; height: number } {
  const edges = edgesOf(nodes);
  const layerOf = layers(nodes, edges);
  const rows: IGraphNode[][] = [];
  for (const n of nodes) {
    const l = layerOf.get(n.identifier)!;
    (rows[l] = rows[l] || []).push(n);
  }
  const parents = new Map<string, string[]>();
  for (const e of edges) {
    parents.set(e.target, [...(parents.get(e.target) || []), e.source]);
  }
  // order each layer by the mean position of its parents in the layer above
  const position = new Map<string, number>();
  rows.forEach(row => {
    if (!row) {
      return;
    }
    const keyed = row.map((n, i) => {
      const ps = (parents.get(n.identifier) || []).filter(p => position.has(p));
      const key = ps.length ? ps.reduce((a, p) => a + position.get(p)!, 0) / ps.length : i;
      return { n, key, i };
    });
    keyed.sort((a, b) => a.key - b.key || a.i - b.i);
    keyed.forEach((k, i) => position.set(k.n.identifier, i));
    row.splice(0, row.length, ...keyed.map(k => k.n));
  });
  const widest = Math.max(1, ...rows.map(r => (r ? r.length : 0)));
  const width = PAD * 2 + widest * NODE_W + (widest - 1) * H_GAP;
  const placed = new Map<string, IPlaced>();
  rows.forEach((row, l) => {
    if (!row) {
      return;
    }
    const rowWidth = row.length * NODE_W + (row.length - 1) * H_GAP;
    const x0 = (width - rowWidth) / 2;
    row.forEach((node, i) => {
      placed.set(node.identifier, { node, layer: l, x: x0 + i * (NODE_W + H_GAP), y: PAD + l * (NODE_H + V_GAP) });
    });
  });
  const height = PAD * 2 + rows.length * NODE_H + Math.max(0, rows.length - 1) * V_GAP;
  return { placed, edges, width, height };
}

function clip(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** Which identifiers a validation error names, e.g. `node 'split': ...`. */
export function nodesWithErrors(errors: string[] | null | undefined, ids: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const err of errors || []) {
    for (const id of ids) {
      if (err.includes(`'${id}'`) || err.includes(`"${id}"`)) {
        out.set(id, [...(out.get(id) || []), err]);
      }
    }
  }
  return out;
}

export interface IDagOptions {
  counts?: Record<string, Counts>;
  errors?: string[] | null;
  selected?: string | null;
  onSelect?: (identifier: string) => void;
}

export function renderDag(nodes: IGraphNode[], opts: IDagOptions = {}): SVGElement {
  const { placed, edges, width, height } = layout(nodes);
  const errorsOf = nodesWithErrors(opts.errors, nodes.map(n => n.identifier));
  const root = svg('svg', {
    class: 'exo-dag',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': 'graph of the run'
  });
  const defs = svg('defs');
  const marker = svg('marker', {
    id: 'exo-arrow',
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: 'auto-start-reverse'
  });
  marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'exo-dag-arrow' }));
  defs.appendChild(marker);
  root.appendChild(defs);

  for (const e of edges) {
    const a = placed.get(e.source)!;
    const b = placed.get(e.target)!;
    const x1 = a.x + NODE_W / 2;
    const y1 = a.y + NODE_H;
    const x2 = b.x + NODE_W / 2;
    const y2 = b.y;
    const bend = Math.max(20, (y2 - y1) / 2);
    const d =
      y2 > y1
        ? `M ${x1} ${y1} C ${x1} ${y1 + bend}, ${x2} ${y2 - bend}, ${x2} ${y2}`
        : `M ${x1} ${y1} C ${x1} ${y1 + 60}, ${x2} ${y2 - 60}, ${x2} ${y2}`; // a back edge (invalid graph)
    const path = svg('path', {
      d,
      class: e.unites ? 'exo-dag-edge exo-dag-unites' : 'exo-dag-edge',
      'marker-end': 'url(#exo-arrow)',
      'data-source': e.source,
      'data-target': e.target
    });
    path.appendChild(svg('title', {}, e.unites ? `${e.target} unites ${e.source}` : `${e.source} → ${e.target}`));
    root.appendChild(path);
  }

  for (const { node, x, y } of placed.values()) {
    const counts = (opts.counts || {})[node.identifier] || {};
    const cat = dominantCategory(counts);
    const errs = errorsOf.get(node.identifier) || [];
    const classes = ['exo-dag-node', `exo-cat-${cat || 'empty'}`];
    if (errs.length || (counts.ERRORED || 0) + (counts.NEXT_CREATED_ERROR || 0) > 0) {
      classes.push('exo-dag-node-alert');
    }
    if (opts.selected === node.identifier) {
      classes.push('exo-dag-node-selected');
    }
    const g = svg('g', {
      class: classes.join(' '),
      transform: `translate(${x}, ${y})`,
      'data-identifier': node.identifier,
      tabindex: 0,
      role: 'button'
    });
    const total = Object.values(counts).reduce((a, b) => a + (b || 0), 0);
    const tooltip = [
      `${node.identifier} (${node.node_name})`,
      ...Object.entries(counts)
        .filter(([, n]) => n)
        .map(([s, n]) => `${s}: ${n}`),
      ...errs
    ].join('\n');
    g.appendChild(svg('title', {}, tooltip));
    g.appendChild(svg('rect', { width: NODE_W, height: NODE_H, rx: 6, ry: 6, class: 'exo-dag-box' }));
    g.appendChild(svg('text', { x: 10, y: 19, class: 'exo-dag-id' }, clip(node.identifier, 24)));
    g.appendChild(svg('text', { x: 10, y: 35, class: 'exo-dag-name' }, clip(node.node_name, 28)));
    const line = svg('text', { x: 10, y: 54, class: 'exo-dag-counts' });
    const parts = countParts(counts);
    if (!parts.length) {
      line.appendChild(svg('tspan', { class: 'exo-count-none' }, opts.counts ? 'no states yet' : ''));
    }
    parts.forEach(([c, sym, n, label], i) => {
      // the node's tooltip spells the counts out; a <title> here would join the tspan's text
      line.appendChild(
        svg('tspan', { class: `exo-count exo-count-${c}`, 'data-category': c, 'aria-label': `${n} ${label}`, dx: i ? 8 : 0 }, `${n} ${sym}`)
      );
    });
    g.appendChild(line);
    if (total) {
      g.setAttribute('data-total', String(total));
    }
    if (opts.onSelect) {
      const select = () => opts.onSelect!(node.identifier);
      g.addEventListener('click', select);
      g.addEventListener('keydown', (ev: Event) => {
        const key = (ev as KeyboardEvent).key;
        if (key === 'Enter' || key === ' ') {
          ev.preventDefault();
          select();
        }
      });
    }
    root.appendChild(g);
  }
  return root;
}
