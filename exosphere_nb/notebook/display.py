"""What the magics display: small objects with a stable `text/plain` and `text/html` repr.

Every repr is built from the data alone (no memory addresses, no clock), so notebooks render on
GitHub and nbconvert and compare cleanly under nbval. Every value shown in HTML is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import Any

__all__ = [
    "Display",
    "ErrorLine",
    "RunSummary",
    "StateReport",
    "StatusReport",
    "Table",
    "nodes_table",
    "outputs_table",
    "runs_table",
]

TEXT_CELL = 60  # characters of one cell in the text table; the HTML shows it whole
PENDING = ("CREATED", "QUEUED", "EXECUTED")
COLORS = {
    "SUCCESS": "#2e7d32",
    "PRUNED": "#81c784",
    "ERRORED": "#c62828",
    "NEXT_CREATED_ERROR": "#c62828",
    "FAILED": "#c62828",
    "INVALID": "#c62828",
    "RETRY_CREATED": "#f9a825",
    "CANCELLED": "#ef6c00",
    "CREATED": "#9e9e9e",
    "QUEUED": "#1565c0",
    "EXECUTED": "#1565c0",
    "PENDING": "#1565c0",
    "VALID": "#2e7d32",
}
ERROR_STYLE = "color:#b00020"


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


def _clip(text: str, width: int = TEXT_CELL) -> str:
    text = text.replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def badge(status: str | None) -> str:
    status = status or ""
    color = COLORS.get(status, "#616161")
    return f'<span style="color:{color};font-weight:600">{escape(status)}</span>'


def head_html(prefix: str, status: str, suffix: str) -> str:
    return escape(prefix) + (badge(status) if status else "") + escape(suffix)


def _kv_html(mapping: dict[str, Any] | None) -> str:
    if not mapping:
        return "<i>none</i>"
    rows = "".join(
        f"<tr><th style='text-align:left'>{escape(str(k))}</th><td><code>{escape(cell_text(v))}</code></td></tr>"
        for k, v in mapping.items()
    )
    return f"<table>{rows}</table>"


def _kv_text(mapping: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    if not mapping:
        return [f"{indent}(none)"]
    return [f"{indent}{k}: {cell_text(v)}" for k, v in mapping.items()]


class Display:
    def __str__(self) -> str:
        return repr(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


class ErrorLine(Display):
    """One clear error message, shown instead of a traceback."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"error: {self.message}"

    def _repr_html_(self) -> str:
        return f'<pre style="{ERROR_STYLE};white-space:pre-wrap;margin:0">error: {escape(self.message)}</pre>'


class Table(Display):
    """Rows under named columns; `max_rows` bounds what is rendered, not what is kept."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        caption: str | None = None,
        footer: str | None = None,
        max_rows: int = 100,
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.caption = caption
        self.footer = footer
        self.max_rows = max_rows

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def _notes(self) -> list[str]:
        notes = []
        if len(self.rows) > self.max_rows:
            notes.append(f"… {len(self.rows) - self.max_rows} more rows ({len(self.rows)} in all)")
        if self.footer:
            notes.append(self.footer)
        return notes

    def __repr__(self) -> str:
        shown = [[_clip(cell_text(c)) for c in r] for r in self.rows[: self.max_rows]]
        widths = [len(c) for c in self.columns]
        for r in shown:
            widths = [max(w, len(c)) for w, c in zip(widths, r)]
        lines = [self.caption] if self.caption else []
        if not self.rows:
            lines.append("(no rows)" if not self.columns else "  ".join(self.columns) + "\n(no rows)")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
            lines.append("  ".join("-" * w for w in widths))
            lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in shown)
        lines.extend(self._notes())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        caption = f"<caption style='text-align:left'>{escape(self.caption)}</caption>" if self.caption else ""
        head = "".join(f"<th>{escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(cell_text(c))}</td>" for c in r) + "</tr>"
            for r in self.rows[: self.max_rows]
        )
        if not self.rows:
            body = f"<tr><td colspan='{max(1, len(self.columns))}'><i>no rows</i></td></tr>"
        notes = "".join(f"<div><small>{escape(n)}</small></div>" for n in self._notes())
        return f"<div><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}</div>"


# -- runs and states --------------------------------------------------------------------------


class RunSummary(Display):
    """A run's status, its states per node and status, and a progress bar (from `run_status`)."""

    def __init__(self, summary: dict[str, Any], note: str | None = None) -> None:
        self.summary = summary
        self.run_id = str(summary.get("run_id"))
        self.status = str(summary.get("status"))
        self.note = note
        counts = {k: int(v) for k, v in (summary.get("counts") or {}).items() if v}
        self.counts = dict(sorted(counts.items()))
        self.total = sum(counts.values())
        self.finished = self.total - sum(counts.get(s, 0) for s in PENDING)

    def _head(self) -> tuple[str, str, str]:
        prefix = f"run {self.run_id} of graph {self.summary.get('graph_name')!r}: "
        return prefix, self.status, f" — {self.finished}/{self.total} states finished"

    def _headline(self) -> str:
        return "".join(self._head())

    def __repr__(self) -> str:
        lines = [self._headline()]
        for ident, by_status in (self.summary.get("nodes") or {}).items():
            shown = ", ".join(f"{s}={c}" for s, c in sorted(by_status.items()) if c)
            lines.append(f"  {ident}: {shown}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        bar = ""
        if self.total:
            bar = "".join(
                f"<div title='{escape(s)}: {c}' style='width:{100 * c / self.total:.2f}%;"
                f"background:{COLORS.get(s, '#616161')}'></div>"
                for s, c in self.counts.items()
            )
        progress = (
            "<div style='display:flex;height:10px;width:320px;background:#eee;border-radius:3px;overflow:hidden;"
            f"margin:4px 0'>{bar}</div>"
        )
        rows = "".join(
            f"<tr><td><b>{escape(str(ident))}</b></td><td>"
            + ", ".join(f"{badge(s)}&nbsp;{c}" for s, c in sorted(by_status.items()) if c)
            + "</td></tr>"
            for ident, by_status in (self.summary.get("nodes") or {}).items()
        )
        note = f"<div><small>{escape(self.note)}</small></div>" if self.note else ""
        return f"<div><div><b>{head_html(*self._head())}</b></div>{progress}<table>{rows}</table>{note}</div>"


class StateReport(Display):
    """One state: where it is, its inputs, outputs, error (with the node's traceback) and parents."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def _head(self) -> tuple[str, str, str]:
        s = self.state
        prefix = (
            f"state {s.get('id')} — node {s.get('identifier')!r} ({s.get('node_name')}) of run {s.get('run_id')}, "
            f"graph {s.get('graph_name')!r}: "
        )
        return prefix, str(s.get("status")), f", retry_count={s.get('retry_count', 0)}"

    def _headline(self) -> str:
        return "".join(self._head())

    def __repr__(self) -> str:
        s = self.state
        lines = [self._headline(), "inputs:", *_kv_text(s.get("inputs"))]
        lines += ["outputs:", *_kv_text(s.get("outputs"))]
        lines += ["parents:", *_kv_text(s.get("parents"))]
        if s.get("fanout_id"):
            lines.append(f"fanout_id: {s['fanout_id']}")
        if s.get("error"):
            lines += ["error:", *("  " + line for line in str(s["error"]).rstrip().splitlines())]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.state
        parts = [
            f"<div><div><b>{head_html(*self._head())}</b></div>",
            f"<div><b>inputs</b>{_kv_html(s.get('inputs'))}</div>",
            f"<div><b>outputs</b>{_kv_html(s.get('outputs'))}</div>",
            f"<div><b>parents</b>{_kv_html(s.get('parents'))}</div>",
        ]
        if s.get("error"):
            parts.append(
                f"<div><b>error</b><pre style='{ERROR_STYLE};white-space:pre-wrap'>{escape(str(s['error']))}</pre></div>"
            )
        parts.append("</div>")
        return "".join(parts)


@dataclass
class StatusReport(Display):
    """`%exo status`: the connection, the runtimes of this process, the queue and the runs in flight."""

    info: dict[str, Any]

    def _runtime_rows(self) -> list[list[Any]]:
        return [
            [
                f"{r.get('namespace')}/{r.get('name')}",
                ", ".join(r.get("nodes") or []),
                r.get("workers"),
                r.get("executed"),
                r.get("in_flight"),
                "running" if r.get("running") else "stopped",
            ]
            for r in self.info.get("runtimes") or []
        ]

    def _lines(self) -> list[tuple[str, str]]:
        i = self.info
        out = [
            ("namespace", str(i.get("namespace"))),
            ("state manager", f"{i.get('state_manager')} ({i.get('mode')})"),
            ("serving", str(i.get("server") or "no (start with %exo serve)")),
        ]
        if "queue_depth" in i:
            out.append(
                (
                    "queue",
                    f"{i.get('queue_depth', 0)} ready, {i.get('delayed', 0)} delayed, {i.get('in_flight', 0)} in flight",
                )
            )
            out.append(("runs in flight", str(len(i.get("runs_in_flight") or []))))
        else:
            out.append(("queue", "not visible from here (remote state manager)"))
        return out

    def __repr__(self) -> str:
        lines = ["exosphere_nb session"] + [f"  {k + ':':<16}{v}" for k, v in self._lines()]
        rows = self._runtime_rows()
        lines.append(f"runtimes: {len(rows)}")
        lines += [f"  {r[0]}  nodes=[{r[1]}] workers={r[2]} executed={r[3]} in_flight={r[4]} {r[5]}" for r in rows]
        for run in self.info.get("runs_in_flight") or []:
            counts = ", ".join(f"{k}={v}" for k, v in sorted((run.get("counts") or {}).items()))
            lines.append(f"  run {run.get('run_id')} ({run.get('graph_name')}): {counts}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in self._lines()
        )
        runtimes = Table(
            ["runtime", "nodes", "workers", "executed", "in flight", ""], self._runtime_rows(), caption="runtimes"
        )._repr_html_()
        runs = self.info.get("runs_in_flight") or []
        in_flight = ""
        if runs:
            in_flight = Table(
                ["run", "graph", "states"],
                [
                    [
                        r.get("run_id"),
                        r.get("graph_name"),
                        ", ".join(f"{k}={v}" for k, v in sorted((r.get("counts") or {}).items())),
                    ]
                    for r in runs
                ],
                caption="runs in flight",
            )._repr_html_()
        return f"<div><b>exosphere_nb session</b><table>{head}</table>{runtimes}{in_flight}</div>"


# -- tables of SDK answers --------------------------------------------------------------------


def _field_names(schema: Any) -> str:
    props = schema.get("properties") if isinstance(schema, dict) else None
    return ", ".join(props) if isinstance(props, dict) else ""


def nodes_table(nodes: list[dict[str, Any]], namespace: str) -> Table:
    rows = [
        [
            n.get("name"),
            _field_names(n.get("inputs_schema")),
            _field_names(n.get("outputs_schema")),
            ", ".join(n.get("secrets") or []),
        ]
        for n in nodes
    ]
    return Table(["node", "inputs", "outputs", "secrets"], rows, caption=f"nodes registered in namespace {namespace!r}")


def runs_table(page: dict[str, Any], filters: str = "") -> Table:
    rows = [
        [
            r.get("run_id"),
            r.get("graph_name"),
            r.get("status"),
            r.get("success_count"),
            r.get("pending_count"),
            r.get("errored_count"),
            r.get("retried_count"),
            r.get("cancelled_count"),
            r.get("total_count"),
            r.get("created_at"),
        ]
        for r in page.get("runs") or []
    ]
    total, number, size = int(page.get("total", 0)), int(page.get("page", 1)), int(page.get("size", 20) or 20)
    pages = max(1, -(-total // size))
    footer = f"page {number} of {pages}, {total} run(s){' ' + filters if filters else ''}"
    columns = [
        "run_id",
        "graph",
        "status",
        "success",
        "pending",
        "errored",
        "retried",
        "cancelled",
        "states",
        "created_at",
    ]
    return Table(columns, rows, footer=footer)


def outputs_table(run_id: str, outputs: dict[str, list[dict[str, Any]]]) -> Table:
    rows = [[ident, i, out] for ident, items in outputs.items() for i, out in enumerate(items)]
    return Table(["node", "branch", "outputs"], rows, caption=f"outputs of run {run_id}")
