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
    serve = sub.add_parser("serve", help="serve the state manager over HTTP (the Exosphere v0 API, plus extensions)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--api-key",
        help="key clients must send in x-api-key (default: EXOSPHERE_API_KEY, which keeps it out of `ps`); "
        "without one the server listens on loopback only",
    )
    serve.add_argument("--db", help="DuckDB file (default: .exosphere/state.duckdb, or EXOSPHERE_DB)")
    serve.add_argument("--max-body-mib", type=float, default=10.0, help="largest request body, in MiB (default 10)")
    serve.add_argument("--lease-ms", type=int, help="how long a claim lasts without a heartbeat (default 30 min)")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"], help="(default info)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo

        if args.items < 1:
            print("exo-nb demo: --items must be >= 1", file=sys.stderr)
            return 2
        return demo(args.db, args.items)
    if args.command == "serve":
        if not 0 <= args.port <= 65535 or args.max_body_mib <= 0 or (args.lease_ms is not None and args.lease_ms < 1):
            print("exo-nb serve: --port must be 0-65535, --max-body-mib > 0 and --lease-ms >= 1", file=sys.stderr)
            return 2
        from .server.serve import serve  # FastAPI and uvicorn load only for this command

        return serve(
            args.host,
            args.port,
            args.api_key,
            args.db,
            max_body_bytes=int(args.max_body_mib * 1024 * 1024),
            lease_ms=args.lease_ms,
            log_level=args.log_level,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
