"""The ``klaviyo-magic`` command: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from .parsing import EXIT_INTERRUPTED

DESCRIPTION = """\
Push DataFrame segments into Klaviyo lists, and keep the lists in step with them.

  klaviyo-magic demo                 export a sample segment to a built-in Klaviyo sandbox
  klaviyo-magic export -i FILE ...   export rows from a CSV/Parquet file (for cron and pipelines)
  klaviyo-magic run NAME [-i FILE]   run a saved export headless (cron), on its saved files or new ones
  klaviyo-magic saved                list the saved exports
  klaviyo-magic history [NAME]       what each run of the saved exports did: added, updated, unchanged, removed
  klaviyo-magic sandbox              serve the local Klaviyo-compatible sandbox
  klaviyo-magic connection add ...   save a named Klaviyo connection (list, test, default, remove, accept)
"""
EXIT_CODES = "exit 0 all sent, 1 some rows not sent, 2 usage error, 3 Klaviyo or network error, 130 interrupted"
RUN_HELP = "run a saved export again, on the files it was saved with or on --input"


def build_parser() -> argparse.ArgumentParser:
    from ..sandbox import serve
    from . import connection, demo, export, saved
    from .parsing import CommandParser

    # Its commands' parsers are of the same class: keys masked in usage errors, JSON ones for export and run.
    parser = CommandParser(
        prog="klaviyo-magic", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"klaviyo-magic {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    subcommands = (
        ("demo", demo.configure_parser, demo.run,
         "export a generated sample segment to the embedded sandbox and print the outcome"),
        ("export", export.configure_export_parser, export.run_export,
         f"export rows from CSV or Parquet files into a Klaviyo list ({EXIT_CODES})"),
        ("run", export.configure_run_parser, export.run_saved,
         f"{RUN_HELP} (same exit codes as export)"),
        ("saved", saved.configure_saved_parser, saved.list_saved,
         "list the saved exports (klaviyo-magic run NAME runs one)"),
        ("history", saved.configure_history_parser, saved.show_history,
         "what each run of the saved exports did, newest first: sent, added, updated, unchanged, removed, ..."),
        ("sandbox", serve.configure_parser, serve.run, "serve the local Klaviyo-compatible sandbox on 127.0.0.1"),
        ("connection", connection.configure_parser, connection.run,
         "manage saved Klaviyo connections (add, list, test, default, remove, accept)"),
    )  # fmt: skip
    # The list of commands says it once; `run --help` alone must still show the exit codes.
    descriptions = {"run": f"{RUN_HELP} ({EXIT_CODES})"}
    for name, configure, run, help_text in subcommands:
        sub = commands.add_parser(name, help=help_text, description=descriptions.get(name, help_text))
        configure(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(words)
    args.argv = words  # for messages that give the exact command to type next (cli/export.py, resume_line)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
