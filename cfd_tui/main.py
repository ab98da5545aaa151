"""`cfd-tui`: the trader's terminal against a running CFD Broker server."""

from __future__ import annotations

import argparse
import os
import sys

from cfd_tui.app import create_app

DEFAULT_API = "http://127.0.0.1:8000"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cfd-tui", description="CFD Broker in the terminal: live prices, charts, "
                                     "positions and the order ticket.")
    parser.add_argument("--api", default=os.environ.get("CFD_TUI_API", DEFAULT_API),
                        help=f"the server's REST API (default: $CFD_TUI_API or {DEFAULT_API})")
    parser.add_argument("--no-session", action="store_true", help="do not keep the session between runs")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    """Entry point of the `cfd-tui` console script."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = create_app(args.api, session_store=not args.no_session)
    app.run()


if __name__ == "__main__":
    run()
