"""Graph templates in the notebook: a `%%exo graph` cell's document, and how a template is shown.

`graph_body` turns the cell's YAML (or JSON) into the upsert body; `GraphReport` shows a template
with every validation error on the node and field it names (`node_errors`); `graphs_table` lists
a namespace's templates. Secret values are never shown: only their names.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from ..errors import BadRequestError
from .display import COLORS, ERROR_STYLE, Display, Table, cell_text, head_html

__all__ = ["GRAPH_KEYS", "GraphReport", "graph_body", "graphs_table", "node_errors", "settled", "shown_body"]


# -- the cell's document -------------------------------------------------------------------

GRAPH_KEYS = ("nodes", "secrets", "retry_policy", "store_config", "triggers")
SETTLE_TIMEOUT_S = 10.0


def _load_document(text: str) -> Any:
    try:
        import yaml
    except ImportError:  # JSON is all a cell can hold then
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BadRequestError(
                f"nothing stored: the cell is not valid JSON ({exc}); install pyyaml for YAML"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BadRequestError(f"nothing stored: the cell is not valid YAML or JSON: {problem}{where}") from None


def _numbers_as_text(value: Any) -> Any:
    """YAML reads `count: 8` as a number; every value of the data model is a string."""
    if not isinstance(value, dict):
        return value
    return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in value.items()}


def graph_body(text: str, namespace: str) -> dict[str, Any]:
    """The upsert body a `%%exo graph` cell describes; nodes default to the session's namespace."""
    if not text.strip():
        raise BadRequestError("nothing stored: the cell is empty; describe the graph in YAML or JSON (nodes: [...])")
    data = _load_document(text)
    if not isinstance(data, dict):
        raise BadRequestError(
            f"nothing stored: the cell must be a mapping with {', '.join(GRAPH_KEYS)}; got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in GRAPH_KEYS)
    if unknown:
        raise BadRequestError(
            f"nothing stored: unknown key(s) {', '.join(unknown)}; a graph has {', '.join(GRAPH_KEYS)}"
        )
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise BadRequestError("nothing stored: `nodes` must be a list of nodes (node_name, identifier, inputs, ...)")
    body: dict[str, Any] = {"nodes": [], "secrets": _numbers_as_text(data.get("secrets") or {})}
    for node in nodes:
        if isinstance(node, dict):
            node = {"namespace": namespace, "inputs": {}, **node}
            node["inputs"] = _numbers_as_text(node["inputs"])
        body["nodes"].append(node)
    if data.get("retry_policy") is not None:
        body["retry_policy"] = data["retry_policy"]
    store_config = data.get("store_config")
    if isinstance(store_config, dict) and isinstance(store_config.get("default_values"), dict):
        store_config = {**store_config, "default_values": _numbers_as_text(store_config["default_values"])}
    if store_config is not None:
        body["store_config"] = store_config
    triggers = data.get("triggers")
    if triggers is not None:
        if not isinstance(triggers, list):
            raise BadRequestError("nothing stored: `triggers` must be a list of cron expressions")
        body["triggers"] = [
            {"type": "CRON", "value": {"expression": t}}
            if isinstance(t, str)
            else {"type": "CRON", "value": t}
            if isinstance(t, dict) and "expression" in t and "value" not in t
            else t
            for t in triggers
        ]
    return body


def shown_body(name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """A refused body as a graph to show: secret names only, never their values."""
    secrets = body.get("secrets")
    return {
        "name": name,
        "namespace": namespace,
        "nodes": body.get("nodes", []),
        "secrets": dict.fromkeys(secrets, True) if isinstance(secrets, dict) else {},
        "triggers": body.get("triggers", []),
    }


async def settled(sm: Any, graph: dict[str, Any]) -> dict[str, Any]:
    """A remote state manager may validate later: wait a little for VALID or INVALID."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_S
    while graph.get("validation_status") == "PENDING" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.25)
        graph = await sm.get_graph(graph["name"])
    return graph


# -- showing a template --------------------------------------------------------------------------------

_Q = r"""(?:'(?P<{0}>(?:[^'\\]|\\.)*)'|"(?P<{0}2>(?:[^"\\]|\\.)*)")"""
_NODE_ERROR = re.compile(rf"^node {_Q.format('id')}(?: input {_Q.format('field')})?: (?P<msg>.*)$", re.S)
_INDEX_ERROR = re.compile(r"^nodes\[(?P<i>\d+)\](?:\.(?P<field>[^:]+))?: (?P<msg>.*)$", re.S)
_DUPLICATE = re.compile(rf"^identifier {_Q.format('id')} is used by")
_FIELD_HINTS = (
    (re.compile(rf"^input {_Q.format('f')} of "), "inputs.{}"),
    (re.compile(rf"^{_Q.format('f')} is not an input of "), "inputs.{}"),
    (re.compile(rf"^secret {_Q.format('f')} declared by "), "secrets.{}"),
    (re.compile(r"^next node "), "next_nodes"),
    (re.compile(r"unite"), "unites"),
    (re.compile(r" is not registered in namespace "), "node_name"),
)


def _group(m: re.Match[str], name: str) -> str | None:
    value = m.group(name)
    return value if value is not None else m.group(name + "2")


def node_errors(
    nodes: Sequence[dict[str, Any]], errors: Iterable[str]
) -> tuple[dict[int, list[tuple[str, str]]], list[str]]:
    """Each validation error on the node it names: `{node index: [(field, message)]}`, and the rest."""
    index_of: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        index_of.setdefault(str(n.get("identifier", "")), []).append(i)
    on_node: dict[int, list[tuple[str, str]]] = {}
    rest: list[str] = []
    for err in errors:
        m = _NODE_ERROR.match(err)
        if m and _group(m, "id") in index_of:
            field, msg = _group(m, "field"), m.group("msg")
            if field is not None:
                field = f"inputs.{field}"
            else:
                for pattern, template in _FIELD_HINTS:
                    hint = pattern.search(msg)
                    if hint:
                        field = template.format(_group(hint, "f")) if "{}" in template else template
                        break
            for i in index_of[_group(m, "id") or ""]:
                on_node.setdefault(i, []).append((field or "", msg))
            continue
        m = _INDEX_ERROR.match(err)
        if m and int(m.group("i")) < len(nodes):
            on_node.setdefault(int(m.group("i")), []).append((m.group("field") or "", m.group("msg")))
            continue
        m = _DUPLICATE.match(err)
        if m and _group(m, "id") in index_of:
            for i in index_of[_group(m, "id") or ""]:
                on_node.setdefault(i, []).append(("identifier", err))
            continue
        rest.append(err)
    return on_node, rest


def _edges(nodes: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    out = []
    for n in nodes:
        for nxt in n.get("next_nodes") or []:
            out.append((str(n.get("identifier")), str(nxt), "next"))
        unites = n.get("unites")
        if isinstance(unites, dict) and unites.get("identifier"):
            out.append((str(unites["identifier"]), str(n.get("identifier")), "unites"))
    return out


class GraphReport(Display):
    """A graph template: nodes, edges, validation status, each error shown on the node it names.

    `stored=False` shows a graph the state manager refused (nothing was stored).
    """

    def __init__(self, graph: dict[str, Any], stored: bool = True, errors: Sequence[str] | None = None) -> None:
        self.graph = graph
        self.stored = stored
        self.name = str(graph.get("name", ""))
        self.nodes: list[dict[str, Any]] = [n if isinstance(n, dict) else {"node": n} for n in graph.get("nodes") or []]
        self.errors = list(errors if errors is not None else graph.get("validation_errors") or [])
        self.status = "INVALID" if not stored else str(graph.get("validation_status") or "")
        self.on_node, self.graph_errors = node_errors(self.nodes, self.errors)

    def _head(self) -> tuple[str, str, str]:
        ns = self.graph.get("namespace")
        where = f" (namespace {ns})" if ns else ""
        if not self.stored:
            return f"graph {self.name!r}{where} was NOT stored: {len(self.errors)} problem(s)", "", ""
        count = f", {len(self.errors)} problem(s)" if self.errors else ""
        return f"graph {self.name!r}{where}: ", self.status, count

    def _headline(self) -> str:
        return "".join(self._head())

    def _secret_names(self) -> list[str]:
        secrets = self.graph.get("secrets") or {}
        return sorted(secrets) if isinstance(secrets, dict) else []

    def _triggers(self) -> list[str]:
        out = []
        for t in self.graph.get("triggers") or []:
            value = t.get("value", t) if isinstance(t, dict) else t
            out.append(str(value.get("expression")) if isinstance(value, dict) else str(value))
        return out

    def __repr__(self) -> str:
        lines = [self._headline(), "nodes:"]
        for i, n in enumerate(self.nodes):
            extra = []
            if n.get("next_nodes"):
                extra.append("next: " + ", ".join(map(str, n["next_nodes"])))
            if isinstance(n.get("unites"), dict):
                extra.append(f"unites: {n['unites'].get('identifier')} ({n['unites'].get('strategy', 'ALL_SUCCESS')})")
            lines.append(
                f"  {n.get('identifier') or f'#{i}'} ({n.get('node_name', '?')})" + "".join(f"  {e}" for e in extra)
            )
            for key, value in (n.get("inputs") or {}).items() if isinstance(n.get("inputs"), dict) else ():
                lines.append(f"      {key} = {cell_text(value)}")
            for field, msg in self.on_node.get(i, []):
                lines.append(f"    error{f' ({field})' if field else ''}: {msg}")
        if not self.nodes:
            lines.append("  (none)")
        edges = _edges(self.nodes)
        if edges:
            lines.append(
                "edges: " + ", ".join(f"{a} -> {b}" + (" (unites)" if k == "unites" else "") for a, b, k in edges)
            )
        if self._secret_names():
            lines.append("secrets: " + ", ".join(self._secret_names()) + " (values never shown)")
        if self._triggers():
            lines.append("triggers: " + ", ".join(self._triggers()))
        for err in self.graph_errors:
            lines.append(f"error: {err}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for i, n in enumerate(self.nodes):
            errs = self.on_node.get(i, [])
            bad_inputs = {f.split(".", 1)[1] for f, _ in errs if f.startswith("inputs.")}
            inputs = n.get("inputs") if isinstance(n.get("inputs"), dict) else {}
            ins = "<br>".join(
                ("<span style='" + ERROR_STYLE + "'>" if k in bad_inputs else "<span>") + f"<b>{escape(str(k))}</b> = "
                f"<code>{escape(cell_text(v))}</code></span>"
                for k, v in inputs.items()
            )
            unites = n.get("unites")
            flow = ", ".join(escape(str(x)) for x in n.get("next_nodes") or [])
            if isinstance(unites, dict):
                flow += f"{'<br>' if flow else ''}unites {escape(str(unites.get('identifier')))}"
            style = f" style='border-left:3px solid {COLORS['INVALID']}'" if errs else ""
            rows.append(
                f"<tr{style}><td><b>{escape(str(n.get('identifier') or f'#{i}'))}</b></td>"
                f"<td>{escape(str(n.get('node_name', '?')))}</td><td>{ins}</td><td>{flow}</td></tr>"
            )
            for field, msg in errs:
                label = f"<code>{escape(field)}</code>: " if field else ""
                rows.append(f"<tr><td></td><td colspan='3' style='{ERROR_STYLE}'>✗ {label}{escape(msg)}</td></tr>")
        head = (
            head_html(*self._head())
            if self.stored
            else f"<span style='{ERROR_STYLE}'>{escape(self._headline())}</span>"
        )
        parts = [
            f"<div><div><b>{head}</b></div>",
            "<table><thead><tr><th>identifier</th><th>node</th><th>inputs</th><th>next</th></tr></thead>",
            f"<tbody>{''.join(rows)}</tbody></table>",
        ]
        edges = _edges(self.nodes)
        if edges:
            shown = ", ".join(escape(f"{a} → {b}") + (" <i>(unites)</i>" if k == "unites" else "") for a, b, k in edges)
            parts.append(f"<div>edges: {shown}</div>")
        if self._secret_names():
            parts.append(f"<div>secrets: {escape(', '.join(self._secret_names()))} <i>(values never shown)</i></div>")
        if self._triggers():
            parts.append(f"<div>triggers: <code>{escape(', '.join(self._triggers()))}</code></div>")
        if self.graph_errors:
            items = "".join(f"<li>{escape(e)}</li>" for e in self.graph_errors)
            parts.append(f"<ul style='{ERROR_STYLE}'>{items}</ul>")
        parts.append("</div>")
        return "".join(parts)


def graphs_table(graphs: list[dict[str, Any]], namespace: str) -> Table:
    rows = []
    for g in graphs:
        report = GraphReport(g)
        rows.append(
            [
                g.get("name"),
                g.get("validation_status"),
                " ".join(str(n.get("identifier")) for n in report.nodes),
                ", ".join(report._secret_names()),
                ", ".join(report._triggers()),
                "; ".join(report.errors),
            ]
        )
    return Table(
        ["graph", "validation", "nodes", "secrets", "triggers", "problems"],
        rows,
        caption=f"graphs in namespace {namespace!r}",
    )
