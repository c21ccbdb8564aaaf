"""Graphviz for the notebook: DOT for a graph template (optionally with a run's state counts), and SVG.

`graph_dot(graph, node_counts)` builds the DOT source: one box per graph node with its identifier,
node name and (for a run) its states' counts as symbols, e.g. `97 ✓ 2 ✗ 1 ▶`; the fill is the colour
of the node's most common status and a red border marks failures or validation errors. Edges are
`next_nodes` (solid) and `unites` (dashed, from the united node to the uniting one).

`render_svg(dot)` lays it out with the system `dot` when one is on PATH, else with the `graphviz-pure`
executable that `pip install exosphere_nb[notebook]` brings (a pure-Rust Graphviz: no system package
needed). `EXOSPHERE_DOT` names another executable to use instead (e.g. `graphviz-pure`, for layouts
that are the same on every machine). Results are cached by DOT source.
"""

from __future__ import annotations

import ast
import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CATEGORIES",
    "DOT_ENV",
    "GraphvizError",
    "attach_errors",
    "category_counts",
    "clear_cache",
    "find_dot",
    "format_counts",
    "graph_dot",
    "render_svg",
]

DOT_ENV = "EXOSPHERE_DOT"
DEFAULT_TIMEOUT = 30.0
_CACHE_SIZE = 256

# (category, symbol, statuses, fill colour, label) in display order
CATEGORIES: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("success", "✓", ("SUCCESS",), "#c8e6c9", "succeeded"),
    ("failed", "✗", ("ERRORED", "NEXT_CREATED_ERROR"), "#ffcdd2", "failed"),
    ("running", "▶", ("QUEUED", "EXECUTED"), "#bbdefb", "running"),
    ("pending", "…", ("CREATED",), "#fff9c4", "waiting"),
    ("retried", "↻", ("RETRY_CREATED",), "#ffe0b2", "retried"),
    ("pruned", "✂", ("PRUNED",), "#eeeeee", "pruned"),
    ("cancelled", "⊘", ("CANCELLED",), "#cfd8dc", "cancelled"),
)
_CATEGORY_OF = {status: cat for cat, _, statuses, _, _ in CATEGORIES for status in statuses}
# which colour wins a tie: the one a user most needs to see
_TIE_ORDER = ("failed", "running", "pending", "cancelled", "retried", "success", "pruned")
_FILL = {cat: fill for cat, _, _, fill, _ in CATEGORIES}
EMPTY_FILL = "#ffffff"
ERROR_COLOR = "#c62828"
BORDER_COLOR = "#546e7a"


class GraphvizError(RuntimeError):
    """Graphviz is missing, failed on the DOT source, or timed out."""


# -- counts ---------------------------------------------------------------------------------------


def category_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """State counts by status -> counts by display category (unknown statuses count as pending)."""
    out: dict[str, int] = {}
    for status, n in counts.items():
        if n:
            cat = _CATEGORY_OF.get(status, "pending")
            out[cat] = out.get(cat, 0) + int(n)
    return out


def format_counts(counts: Mapping[str, int]) -> str:
    """`{"SUCCESS": 97, "ERRORED": 2, "QUEUED": 1}` -> `97 ✓ 2 ✗ 1 ▶` (empty string for no states)."""
    cats = category_counts(counts)
    return " ".join(f"{cats[cat]} {sym}" for cat, sym, *_ in CATEGORIES if cats.get(cat))


def dominant_category(counts: Mapping[str, int]) -> str | None:
    """The category holding the most states (ties go to the one that matters most); None if no states."""
    cats = category_counts(counts)
    if not cats:
        return None
    return max(cats, key=lambda c: (cats[c], -_TIE_ORDER.index(c)))


# -- validation errors ------------------------------------------------------------------------------

_QUOTED = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_NODE_ERROR = re.compile(rf"^(?:node|identifier) {_QUOTED}")
_LIST_TAIL = re.compile(r"(\[[^\[\]]*\])\s*$")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def attach_errors(errors: Iterable[str], identifiers: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Split validation errors into those about a node (by identifier) and the graph-level rest.

    `node 'x' ...` and `identifier 'x' ...` concern x; a cycle (`a -> b -> a`), several roots or
    unreachable nodes (`[...]` at the end) concern every node they list.
    """
    known = set(identifiers)
    per_node: dict[str, list[str]] = {}
    rest: list[str] = []
    for err in errors:
        targets: list[str] = []
        m = _NODE_ERROR.match(err)
        if m:
            ident = _literal(m.group(1))
            if isinstance(ident, str):
                targets = [ident]
        elif err.startswith("graph has a cycle: "):
            targets = [p.strip() for p in err.split(": ", 1)[1].split(" -> ")]
        else:
            tail = _LIST_TAIL.search(err)
            listed = _literal(tail.group(1)) if tail else None
            if isinstance(listed, list):
                targets = [t for t in listed if isinstance(t, str)]
        targets = [t for t in dict.fromkeys(targets) if t in known]
        if not targets:
            rest.append(err)
        for t in targets:
            per_node.setdefault(t, []).append(err)
    return per_node, rest


# -- DOT --------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _id(text: str, index: int) -> str:
    """A DOT node ID. The SVG `<title>` of a node is its ID, which is how a click finds the identifier.

    DOT cannot quote a backslash faithfully in an ID: such nodes get `n<index>` and carry the identifier,
    hex-encoded, in their SVG class (`exo-ident-<hex>`).
    """
    if "\\" in text:
        return f"exo_node_{index}"
    return '"' + text.replace('"', '\\"') + '"'


def _label_line(text: str, limit: int = 48) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def graph_dot(
    graph: Mapping[str, Any],
    node_counts: Mapping[str, Mapping[str, int]] | None = None,
    *,
    node_errors: Mapping[str, list[str]] | None = None,
    selected: str | None = None,
    rankdir: str = "TB",
) -> str:
    """DOT for a graph template (`StateManager.get_graph()` or the same shape); with a run's per-node counts.

    `node_errors` defaults to the template's validation errors attached to their nodes.
    """
    nodes = list(graph.get("nodes") or [])
    idents = [str(n["identifier"]) for n in nodes]
    if node_errors is None:
        node_errors, _ = attach_errors(graph.get("validation_errors") or [], idents)
    counts_of = node_counts or {}
    ids = {ident: _id(ident, i) for i, ident in enumerate(idents)}
    lines = [
        "digraph exosphere {",
        f"  graph [rankdir={rankdir}, bgcolor=transparent, nodesep=0.35, ranksep=0.45, pad=0.1];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica,Arial,sans-serif", fontsize=11, '
        f'margin="0.15,0.06", color="{BORDER_COLOR}", fillcolor="{EMPTY_FILL}"];',
        f'  edge [color="{BORDER_COLOR}", arrowsize=0.7];',
    ]
    for node in nodes:
        ident = str(node["identifier"])
        counts = counts_of.get(ident) or {}
        label = [_label_line(ident)]
        name = str(node.get("node_name") or "")
        if name and name != ident:
            label.append(_label_line(name))
        summary = format_counts(counts)
        if summary:
            label.append(summary)
        errs = node_errors.get(ident) or []
        if errs:
            label.append(f"⚠ {len(errs)} error{'s' if len(errs) != 1 else ''}")
        cat = dominant_category(counts)
        attrs = {
            "label": _q("\n".join(label)),
            "fillcolor": _q(_FILL[cat] if cat else EMPTY_FILL),
            "tooltip": _q("\n".join([f"{ident} ({name})", *([summary] if summary else []), *errs])),
        }
        if "\\" in ident:
            attrs["class"] = _q(f"exo-ident-{ident.encode().hex()}")
        if errs or category_counts(counts).get("failed"):
            attrs.update(color=_q(ERROR_COLOR), penwidth="2")
        if ident == selected:
            attrs["penwidth"] = "3"
        lines.append(f"  {ids[ident]} [{', '.join(f'{k}={v}' for k, v in attrs.items())}];")
    known = set(idents)
    for node in nodes:
        src = str(node["identifier"])
        for nxt in node.get("next_nodes") or ():
            if nxt in known:
                lines.append(f"  {ids[src]} -> {ids[str(nxt)]};")
    for node in nodes:
        unites = node.get("unites")
        if unites and unites.get("identifier") in known:
            target, strategy = str(unites["identifier"]), str(unites.get("strategy") or "ALL_SUCCESS")
            tip = f"{node['identifier']} unites {target} ({strategy})"
            lines.append(
                f"  {ids[target]} -> {ids[str(node['identifier'])]} "
                f"[style=dashed, constraint=true, tooltip={_q(tip)}, arrowhead=odiamond];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG --------------------------------------------------------------------------------------------

_cache: OrderedDict[tuple[str, str], str] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _pure_candidates() -> list[Path]:
    exe = "graphviz-pure.exe" if os.name == "nt" else "graphviz-pure"
    dirs = [Path(sys.executable).parent]
    for scheme in (None, f"{os.name}_user"):
        try:
            path = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if path:
            dirs.append(Path(path))
    return [d / exe for d in dict.fromkeys(dirs)]


def find_dot() -> list[str]:
    """Executables to try, best first: `$EXOSPHERE_DOT`, else the system `dot` and then `graphviz-pure`."""
    override = os.environ.get(DOT_ENV)
    if override:
        found = shutil.which(override)
        if not found:
            raise GraphvizError(f"{DOT_ENV}={override!r} is not an executable on PATH or a path to one")
        return [found]
    out: list[str] = []
    system = shutil.which("dot")
    if system:
        out.append(system)
    for cand in _pure_candidates():
        if cand.is_file() and os.access(cand, os.X_OK):
            out.append(str(cand))
            break
    else:
        pure = shutil.which("graphviz-pure")
        if pure:
            out.append(pure)
    return list(dict.fromkeys(out))


def _strip_prolog(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _run(exe: str, dot: str, timeout: float) -> str:
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot.encode(), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"{Path(exe).name} timed out after {timeout:g} s laying out the graph") from None
    except OSError as exc:
        raise GraphvizError(f"cannot run {exe}: {exc}") from None
    svg = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or "<svg" not in svg:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if "non-ASCII character" not in ln]
        detail = "\n".join(lines).strip() or f"exit code {proc.returncode}, no SVG"
        raise GraphvizError(f"{Path(exe).name} failed: {detail}")
    return _strip_prolog(svg)


def render_svg(dot: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Lay out DOT source as an SVG document (starting at `<svg`); raises GraphvizError."""
    exes = find_dot()
    if not exes:
        raise GraphvizError(
            "no Graphviz found: install the system package (`dot`) or `pip install graphviz-pure` "
            "(part of `exosphere_nb[notebook]`)"
        )
    with _cache_lock:
        for exe in exes:
            hit = _cache.get((exe, dot))
            if hit is not None:
                _cache.move_to_end((exe, dot))
                return hit
    first: GraphvizError | None = None
    for exe in exes:
        try:
            svg = _run(exe, dot, timeout)
        except GraphvizError as exc:
            if "timed out" in str(exc):
                raise
            first = first or exc
            continue  # a broken system dot: the bundled one may still work
        with _cache_lock:
            _cache[(exe, dot)] = svg
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return svg
    assert first is not None
    raise first


def svg_or_message(dot: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, str]:
    """`(svg, "")` or `("", error message)`: for displays that must show something either way."""
    try:
        return render_svg(dot, timeout), ""
    except GraphvizError as exc:
        return "", str(exc)


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)
