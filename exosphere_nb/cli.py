"""The `exo-nb` command."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exo-nb", description="Exosphere workflows, Jupyter-first.")
    parser.add_argument("--version", action="version", version=f"exosphere_nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job (fan-out, retry, prune, unite) on the embedded state manager")
    demo.add_argument("--db", help="DuckDB file (default: .exosphere/state.duckdb, or EXOSPHERE_DB)")
    demo.add_argument("--items", type=int, default=120, help="how many items the fan-out produces (default 120)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo

        if args.items < 1:
            print("exo-nb demo: --items must be >= 1", file=sys.stderr)
            return 2
        return demo(args.db, args.items)
    return 2


if __name__ == "__main__":
    sys.exit(main())
