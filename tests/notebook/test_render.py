"""DOT generation for graphs and runs, and SVG layout with the system `dot` or the pip-installed graphviz-pure."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from exosphere_nb.engine.graph import registry_errors, structure_errors
from exosphere_nb.models import GraphNodeModel, UnitesModel
from exosphere_nb.notebook import render
from exosphere_nb.notebook.render import (
    DOT_ENV,
    GraphvizError,
    attach_errors,
    dominant_category,
    find_dot,
    format_counts,
    graph_dot,
    render_svg,
)

SVG_NS = "{http://www.w3.org/2000/svg}"

# root -> fan-out -> per-item work -> unite, plus a side branch
GRAPH = {
    "nodes": [
        {"identifier": "start", "node_name": "Start", "next_nodes": ["split"]},
        {"identifier": "split", "node_name": "Split", "next_nodes": ["work", "audit"]},
        {"identifier": "work", "node_name": "Work", "next_nodes": None},
        {"identifier": "audit", "node_name": "Audit"},
        {"identifier": "join", "node_name": "Join", "unites": {"identifier": "split", "strategy": "ALL_DONE"}},
    ],
    "validation_status": "VALID",
    "validation_errors": [],
}
COUNTS = {
    "start": {"SUCCESS": 1},
    "split": {"SUCCESS": 1},
    "work": {"SUCCESS": 97, "ERRORED": 2, "QUEUED": 1},
    "join": {"CREATED": 1},
}


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DOT_ENV, raising=False)
    render.clear_cache()


def node_lines(dot: str) -> dict[str, str]:
    """`"ident" [attrs]` lines of a DOT source, by identifier (edges excluded)."""
    out = {}
    for line in dot.splitlines():
        line = line.strip()
        if line.startswith('"') and "->" not in line:
            ident = line[1 : line.index('" [')]
            out[ident] = line
    return out


def edge_lines(dot: str) -> list[str]:
    return [line.strip() for line in dot.splitlines() if "->" in line]


def fake_exe(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def svg_titles(svg: str) -> set[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    return {el.text or "" for el in root.iter(f"{SVG_NS}title")}


def pure_path() -> Path:
    return Path(sys.executable).parent / "graphviz-pure"


# -- counts ---------------------------------------------------------------------------------------


def test_counts_are_formatted_as_symbols_in_a_fixed_order() -> None:
    assert format_counts({"QUEUED": 1, "ERRORED": 2, "SUCCESS": 97}) == "97 ✓ 2 ✗ 1 ▶"
    assert (
        format_counts(
            {
                "CANCELLED": 1,
                "PRUNED": 2,
                "RETRY_CREATED": 3,
                "CREATED": 4,
                "EXECUTED": 5,
                "NEXT_CREATED_ERROR": 6,
                "SUCCESS": 0,
            }
        )
        == "6 ✗ 5 ▶ 4 … 3 ↻ 2 ✂ 1 ⊘"
    )
    assert format_counts({}) == ""
    assert format_counts({"SUCCESS": 0}) == ""


def test_the_dominant_status_is_the_most_common_and_ties_favour_failures() -> None:
    assert dominant_category({"SUCCESS": 97, "ERRORED": 2, "QUEUED": 1}) == "success"
    assert dominant_category({"SUCCESS": 2, "ERRORED": 2}) == "failed"
    assert dominant_category({"CREATED": 5, "QUEUED": 5}) == "running"
    assert dominant_category({}) is None


# -- DOT ------------------------------------------------------------------------------------------


def test_dot_for_a_fan_out_and_unite_has_every_node_its_counts_and_a_dashed_unite_edge() -> None:
    dot = graph_dot(GRAPH, COUNTS)
    nodes = node_lines(dot)
    assert set(nodes) == {"start", "split", "work", "audit", "join"}
    work = nodes["work"]
    assert 'label="work\\nWork\\n97 ✓ 2 ✗ 1 ▶"' in work
    assert f'fillcolor="{render._FILL["success"]}"' in work  # mostly successes
    assert f'color="{render.ERROR_COLOR}"' in work and "penwidth=2" in work  # but failures show in the border
    assert "1 …" in nodes["join"] and f'fillcolor="{render._FILL["pending"]}"' in nodes["join"]
    assert f'fillcolor="{render.EMPTY_FILL}"' in nodes["audit"]  # no states yet
    edges = edge_lines(dot)
    assert '"start" -> "split";' in edges
    assert '"split" -> "work";' in edges and '"split" -> "audit";' in edges
    unite = [e for e in edges if e.startswith('"split" -> "join"')]
    assert len(unite) == 1 and "style=dashed" in unite[0] and "ALL_DONE" in unite[0]
    assert all("dashed" not in e for e in edges if e not in unite)


def test_dot_escapes_identifiers_and_renders() -> None:
    odd = ['we"ird\\id', 'a\\"b', "ünï ✓"]
    graph = {
        "nodes": [
            {"identifier": odd[0], "node_name": "N", "next_nodes": odd[1:]},
            *({"identifier": i} for i in odd[1:]),
        ]
    }
    svg = render_svg(graph_dot(graph, {odd[0]: {"SUCCESS": 1}}))
    # the frontend maps a click back to the identifier by the node's title, or its exo-ident-<hex> class
    root = ET.fromstring(svg)
    found = set()
    for g in root.iter(f"{SVG_NS}g"):
        classes = (g.get("class") or "").split()
        if "node" in classes:
            coded = [c for c in classes if c.startswith("exo-ident-")]
            title = g.find(f"{SVG_NS}title")
            found.add(bytes.fromhex(coded[0][len("exo-ident-") :]).decode() if coded else title.text)
    assert found == set(odd)


def test_validation_errors_are_attached_to_the_node_they_name() -> None:
    graph = {
        **GRAPH,
        "validation_status": "INVALID",
        "validation_errors": [
            "node 'work' input 'item': ${{ split.outputs.itm }} — Split has no output 'itm'",
            "node 'audit': node 'Audit' is not registered in namespace 'ns'",
            "something about the whole graph",
        ],
    }
    dot = graph_dot(graph)
    nodes = node_lines(dot)
    assert "⚠ 1 error" in nodes["work"] and f'color="{render.ERROR_COLOR}"' in nodes["work"]
    assert "⚠ 1 error" in nodes["audit"] and "not registered" in nodes["audit"]  # in the tooltip
    assert "⚠" not in nodes["split"] and "⚠" not in nodes["join"]


def test_attach_errors_understands_the_engines_messages() -> None:
    def gnode(ident: str, nxt: list[str] | None = None, **kw: object) -> GraphNodeModel:
        return GraphNodeModel(node_name="P", namespace="ns", identifier=ident, inputs={}, next_nodes=nxt, **kw)

    cycle = structure_errors([gnode("a", ["b"]), gnode("b", ["c"]), gnode("c", ["b"])])
    per_node, rest = attach_errors(cycle, ["a", "b", "c"])
    assert set(per_node) >= {"b", "c"} and "a" not in per_node and rest == [], (cycle, per_node)

    two_roots = structure_errors([gnode("a", ["c"]), gnode("b", ["c"]), gnode("c")])
    per_node, rest = attach_errors(two_roots, ["a", "b", "c"])
    assert set(per_node) == {"a", "b"} and rest == [], two_roots

    bad_next = structure_errors([gnode("a", ["nope"]), gnode("j", unites=UnitesModel(identifier="zz"))])
    per_node, _ = attach_errors(bad_next, ["a", "j"])
    assert set(per_node) == {"a", "j"}, bad_next

    unregistered = registry_errors([gnode("it's")], {}, [])
    per_node, rest = attach_errors(unregistered, ["it's"])
    assert per_node == {"it's": unregistered} and rest == []

    per_node, rest = attach_errors(["graph has no nodes", "node 'ghost': gone"], ["a"])
    assert per_node == {} and rest == ["graph has no nodes", "node 'ghost': gone"]


# -- SVG ------------------------------------------------------------------------------------------


def test_render_works_with_no_dot_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert pure_path().is_file(), "graphviz-pure is a dependency of the notebook extra"
    assert find_dot() == [str(pure_path())]
    svg = render_svg(graph_dot(GRAPH, COUNTS))
    assert {"start", "split", "work", "audit", "join"} <= svg_titles(svg)
    assert "97 ✓ 2 ✗ 1 ▶" in svg
    assert "stroke-dasharray" in svg  # the unite edge


def test_the_system_dot_is_preferred_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    log = tmp_path / "calls"
    fake_exe(
        bin_dir,
        "dot",
        f'echo "$@" >> {log}\ncat > /dev/null\n'
        'echo \'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><title>system-dot</title></svg>\'\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert find_dot()[0] == str(bin_dir / "dot")
    svg = render_svg("digraph { a -> b }")
    assert svg.startswith("<svg") and svg_titles(svg) == {"system-dot"}  # the XML prolog is dropped
    assert log.read_text().split() == ["-Tsvg"]
    # cached by DOT source: no second process
    assert render_svg("digraph { a -> b }") == svg
    assert log.read_text().count("-Tsvg") == 1


def test_a_broken_system_dot_falls_back_to_graphviz_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_exe(bin_dir, "dot", "cat > /dev/null\necho 'Format: \"svg\" not recognized' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_dot() == [str(bin_dir / "dot"), str(pure_path())]
    assert {"a", "b"} <= svg_titles(render_svg("digraph { a -> b }"))


def test_invalid_dot_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizError, match=r"graphviz-pure failed: .*syntax error in line 1"):
        render_svg("digraph { a -> ; }")


def test_layout_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_exe(bin_dir, "dot", f"exec {shutil.which('sleep')} 30\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    began = time.monotonic()
    with pytest.raises(GraphvizError, match=r"dot timed out after 0.5 s"):
        render_svg("digraph { a }", timeout=0.5)
    assert time.monotonic() - began < 5


def test_no_graphviz_at_all_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(render, "_pure_candidates", lambda: [])
    assert find_dot() == []
    with pytest.raises(GraphvizError, match=r"no Graphviz found.*graphviz-pure"):
        render_svg("digraph { a }")


def test_exosphere_dot_names_the_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_exe(bin_dir, "dot", "exit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{pure_path().parent}")
    monkeypatch.setenv(DOT_ENV, "graphviz-pure")
    assert find_dot() == [str(pure_path())]
    monkeypatch.setenv(DOT_ENV, str(tmp_path / "missing"))
    with pytest.raises(GraphvizError, match=DOT_ENV):
        find_dot()
