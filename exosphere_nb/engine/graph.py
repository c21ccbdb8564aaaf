"""Graph templates: structural validation, validation against registered nodes, compilation.

A compiled graph is what the engine walks when it creates next states: each node's input
templates parsed once, its children, and for unite nodes the identifiers whose outputs are
aggregated into JSON arrays.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PlaceholderError
from ..models import GraphNodeModel, RetryPolicyModel, StoreConfigModel, UnitesStrategyEnum
from ..placeholders import Template, parse

__all__ = ["CompiledGraph", "CompiledNode", "RegisteredNode", "compile_graph", "registry_errors", "structure_errors"]


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    """What a runtime told the state manager about one node class."""

    namespace: str
    name: str
    runtime_name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    secrets: tuple[str, ...]
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]

    @classmethod
    def from_body(cls, namespace: str, runtime_name: str, body: dict[str, Any]) -> RegisteredNode:
        ins = body.get("inputs_schema") or {}
        outs = body.get("outputs_schema") or {}
        return cls(
            namespace=namespace,
            name=body["name"],
            runtime_name=runtime_name,
            inputs=tuple((ins.get("properties") or {}).keys()),
            outputs=tuple((outs.get("properties") or {}).keys()),
            secrets=tuple(body.get("secrets") or ()),
            inputs_schema=ins,
            outputs_schema=outs,
        )

    def to_body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "inputs_schema": self.inputs_schema,
            "outputs_schema": self.outputs_schema,
            "secrets": list(self.secrets),
        }


@dataclass(eq=False, slots=True)
class CompiledNode:
    identifier: str
    node_name: str
    namespace: str
    inputs: dict[str, Template]
    next_nodes: tuple[str, ...]
    unites: tuple[str, UnitesStrategyEnum] | None
    children: list[CompiledNode] = field(default_factory=list)  # next nodes without unites
    united_by: list[CompiledNode] = field(default_factory=list)  # unite nodes whose target is this node
    aggregate: frozenset[str] = frozenset()  # (unite nodes) identifiers rendered as JSON arrays
    retain: bool = False  # outputs kept for the run: a node further down references them


@dataclass(eq=False, slots=True)
class CompiledGraph:
    namespace: str
    name: str
    nodes: dict[str, CompiledNode]
    root: CompiledNode
    retry_policy: RetryPolicyModel
    store_config: StoreConfigModel
    unite_targets: frozenset[str]
    version: str = ""  # content hash of nodes, retry policy and store config


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _edges(nodes: list[GraphNodeModel]) -> dict[str, list[str]]:
    known = {n.identifier for n in nodes}
    edges: dict[str, list[str]] = {n.identifier: [] for n in nodes}
    for n in nodes:
        for nxt in n.next_nodes or ():
            if nxt in known:
                edges[n.identifier].append(nxt)
        if n.unites is not None and n.unites.identifier in known and n.unites.identifier != n.identifier:
            edges[n.unites.identifier].append(n.identifier)
    return edges


def _has_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    for start in edges:
        if start in color:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            succ = edges[node]
            if i < len(succ):
                stack.append((node, i + 1))
                nxt = succ[i]
                if color.get(nxt) == 1:
                    return path[path.index(nxt) :] + [nxt]
                if nxt not in color:
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                path.pop()
    return None


def _reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _allowed_refs(nodes: list[GraphNodeModel], edges: dict[str, list[str]]) -> dict[str, set[str]]:
    """For each node, the identifiers its placeholders may name (its parents chain, or a unite's groups)."""
    by_id = {n.identifier: n for n in nodes}
    preds: dict[str, list[str]] = {i: [] for i in by_id}
    for src, dsts in edges.items():
        for dst in dsts:
            if by_id[dst].unites is None:
                preds[dst].append(src)
    memo: dict[str, set[str]] = {}

    def chain(ident: str) -> set[str]:  # identifiers guaranteed in a state's parents map
        if ident in memo:
            return memo[ident]
        memo[ident] = set()
        node = by_id[ident]
        if node.unites is not None:
            target = node.unites.identifier
            result = {target} | chain(target) if target in by_id else set()
        elif preds[ident]:
            sets = [{p} | chain(p) for p in preds[ident]]
            result = set.intersection(*sets)
        else:
            result = set()
        memo[ident] = result
        return result

    allowed: dict[str, set[str]] = {}
    for n in nodes:
        allowed[n.identifier] = set(chain(n.identifier))
        if n.unites is not None and n.unites.identifier in by_id:
            allowed[n.identifier] |= _between(n.unites.identifier, n.identifier, nodes, edges)
    return allowed


def _between(target: str, unite: str, nodes: list[GraphNodeModel], edges: dict[str, list[str]]) -> set[str]:
    """Nodes strictly between a unite's target and the unite node: their outputs aggregate."""
    by_id = {n.identifier: n for n in nodes}

    def inside(d: str) -> bool:
        # a unite of a node below the target runs inside the target's execution; one uniting the
        # target itself (a sibling of `unite`) runs outside it
        spec = by_id[d].unites
        return spec is None or d == unite or spec.identifier != target

    plain = {src: [d for d in dsts if inside(d)] for src, dsts in edges.items()}
    below_target = _reachable(plain, target) - {target}
    below_unite = _reachable(edges, unite)
    return below_target - below_unite


def _template_errors(node: GraphNodeModel, allowed: set[str], store: StoreConfigModel) -> list[str]:
    errors = []
    for key, value in node.inputs.items():
        where = f"node {node.identifier!r} input {key!r}"
        if not isinstance(value, str):
            errors.append(f"{where}: must be a string, got {type(value).__name__} ({value!r})")
            continue
        try:
            template = parse(value)
        except PlaceholderError as exc:
            errors.append(f"{where}: {exc}")
            continue
        for ref in template.refs:
            if ref.identifier is None:
                if ref.field not in store.required_keys and ref.field not in store.default_values:
                    errors.append(
                        f"{where}: {ref} names store key {ref.field!r}, which is neither a required key nor "
                        "defaulted in store_config"
                    )
            elif ref.identifier not in allowed:
                errors.append(
                    f"{where}: {ref} names {ref.identifier!r}, which is not an ancestor of {node.identifier!r}"
                    + _suggest(ref.identifier, allowed)
                )
    return errors


def structure_errors(nodes: list[GraphNodeModel], store_config: StoreConfigModel | None = None) -> list[str]:
    """Every problem that makes a template unusable whatever nodes are registered (HTTP 400)."""
    store = store_config or StoreConfigModel()
    if not nodes:
        return ["graph has no nodes"]
    errors: list[str] = []
    ids = [n.identifier for n in nodes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    errors.extend(f"identifier {i!r} is used by {ids.count(i)} nodes; identifiers must be unique" for i in dupes)
    known = set(ids)
    for n in nodes:
        for nxt in n.next_nodes or ():
            if nxt not in known:
                errors.append(f"node {n.identifier!r}: next node {nxt!r} does not exist{_suggest(nxt, known)}")
        if n.unites is not None:
            target = n.unites.identifier
            if target == n.identifier:
                errors.append(f"node {n.identifier!r}: a node cannot unite itself")
            elif target not in known:
                errors.append(
                    f"node {n.identifier!r}: unites target {target!r} does not exist{_suggest(target, known)}"
                )
    if errors:
        return errors
    edges = _edges(nodes)
    incoming = {d for dsts in edges.values() for d in dsts}
    roots = [i for i in ids if i not in incoming]
    cycle = _has_cycle(edges)
    if cycle:
        errors.append("graph has a cycle: " + " -> ".join(cycle))
    if len(roots) != 1:
        if roots:
            errors.append(f"graph must have exactly one root (a node nothing points to), found {len(roots)}: {roots}")
        elif not cycle:
            errors.append("graph has no root (every node has an incoming edge)")
    else:
        unreachable = [i for i in ids if i not in _reachable(edges, roots[0])]
        if unreachable:
            errors.append(f"nodes not reachable from the root {roots[0]!r}: {unreachable}")
    if errors:
        return errors
    allowed = _allowed_refs(nodes, edges)
    for n in nodes:
        errors.extend(_template_errors(n, allowed[n.identifier], store))
    return errors


def registry_errors(
    nodes: list[GraphNodeModel], registered: dict[tuple[str, str], RegisteredNode], secrets: Iterable[str]
) -> list[str]:
    """Problems against the registered node classes: the graph is INVALID while any remain."""
    errors: list[str] = []
    secret_names = set(secrets)
    by_id = {n.identifier: n for n in nodes}
    for n in nodes:
        reg = registered.get((n.namespace, n.node_name))
        if reg is None:
            names = [name for (ns, name) in registered if ns == n.namespace]
            errors.append(
                f"node {n.identifier!r}: node {n.node_name!r} is not registered in namespace {n.namespace!r}"
                + _suggest(n.node_name, names)
            )
            continue
        for field_name in reg.inputs:
            if field_name not in n.inputs:
                errors.append(f"node {n.identifier!r}: input {field_name!r} of {n.node_name} has no value in the graph")
        for key in n.inputs:
            if key not in reg.inputs:
                errors.append(
                    f"node {n.identifier!r}: {key!r} is not an input of {n.node_name}" + _suggest(key, reg.inputs)
                )
        for name in reg.secrets:
            if name not in secret_names:
                errors.append(
                    f"node {n.identifier!r}: secret {name!r} declared by {n.node_name} is not among the graph's secrets"
                )
    for n in nodes:
        for key, value in n.inputs.items():
            if not isinstance(value, str):
                continue
            for ref in parse(value).refs:
                if ref.identifier is None or ref.identifier not in by_id:
                    continue
                source = by_id[ref.identifier]
                reg = registered.get((source.namespace, source.node_name))
                if reg is not None and ref.field not in reg.outputs:
                    errors.append(
                        f"node {n.identifier!r} input {key!r}: {ref} — {source.node_name} has no output "
                        f"{ref.field!r}" + _suggest(ref.field, reg.outputs)
                    )
    return errors


def compile_graph(
    namespace: str,
    name: str,
    nodes: list[GraphNodeModel],
    retry_policy: RetryPolicyModel,
    store_config: StoreConfigModel,
) -> CompiledGraph:
    """Build the engine's view of a structurally valid template."""
    compiled = {
        n.identifier: CompiledNode(
            identifier=n.identifier,
            node_name=n.node_name,
            namespace=n.namespace,
            inputs={k: parse(v) for k, v in n.inputs.items()},
            next_nodes=tuple(n.next_nodes or ()),
            unites=(n.unites.identifier, n.unites.strategy) if n.unites else None,
        )
        for n in nodes
    }
    edges = _edges(nodes)
    for node in compiled.values():
        node.children = [compiled[i] for i in node.next_nodes if compiled[i].unites is None]
        if node.unites is not None:
            compiled[node.unites[0]].united_by.append(node)
            node.aggregate = frozenset(_between(node.unites[0], node.identifier, nodes, edges))
    for node in compiled.values():
        direct_parents = {p.identifier for p in compiled.values() if node in p.children}
        for template in node.inputs.values():
            for ref in template.output_refs:
                if ref.identifier in direct_parents or ref.identifier in node.aggregate:
                    continue
                if node.unites is None or ref.identifier != node.unites[0]:  # a unite's target stays in its group
                    compiled[ref.identifier].retain = True
    incoming = {d for dsts in edges.values() for d in dsts}
    root = next(n for i, n in compiled.items() if i not in incoming)
    targets = frozenset(n.unites[0] for n in compiled.values() if n.unites is not None)
    return CompiledGraph(
        namespace,
        name,
        compiled,
        root,
        retry_policy,
        store_config,
        targets,
        graph_version(nodes, retry_policy, store_config),
    )


def _canonical(
    nodes: list[GraphNodeModel], retry_policy: RetryPolicyModel, store_config: StoreConfigModel
) -> tuple[str, str, str]:
    return (
        json.dumps([n.model_dump(mode="json") for n in nodes], separators=(",", ":"), sort_keys=True),
        json.dumps(retry_policy.model_dump(mode="json"), separators=(",", ":"), sort_keys=True),
        json.dumps(store_config.model_dump(mode="json"), separators=(",", ":"), sort_keys=True),
    )


def graph_version(nodes: list[GraphNodeModel], retry_policy: RetryPolicyModel, store_config: StoreConfigModel) -> str:
    return hashlib.sha256("\n".join(_canonical(nodes, retry_policy, store_config)).encode()).hexdigest()[:16]
