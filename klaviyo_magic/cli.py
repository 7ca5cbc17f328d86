"""The ``klaviyo-magic`` command: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

DESCRIPTION = """\
Push pandas DataFrame segments into Klaviyo lists.

  klaviyo-magic demo                 export a sample segment to a built-in Klaviyo sandbox
  klaviyo-magic sandbox              serve the local Klaviyo-compatible sandbox
  klaviyo-magic connection add ...   save a named Klaviyo connection (list, test, default, remove, accept)
"""


def build_parser() -> argparse.ArgumentParser:
    from . import connection_cli, demo
    from .sandbox import serve

    parser = argparse.ArgumentParser(
        prog="klaviyo-magic", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"klaviyo-magic {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, module, help_text in (
        ("demo", demo, "export a generated sample segment to the embedded sandbox and print the outcome"),
        ("sandbox", serve, "serve the local Klaviyo-compatible sandbox on 127.0.0.1"),
        (
            "connection",
            connection_cli,
            "manage saved Klaviyo connections (add, list, test, default, remove, accept)",
        ),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
