"""``%klaviyo_export``: parse the line, find the DataFrames, call the library, return the result.

Kept apart from ``magic.py`` so each shell stays small. Everything here is argument handling and lookup in
the notebook's namespace; the export itself is :func:`klaviyo_magic.export.export_segment` and saved exports
are :mod:`klaviyo_magic.export.saved`.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

USAGE = """\
%klaviyo_export DF [DF2 ...] --email COL --list LIST_ID [--connection NAME] [--properties a,b | col=field,...]
                [--dry-run] [--no-progress] [--resume] [--save NAME]
%klaviyo_export --run NAME [--dry-run] [--no-progress] [--resume]
%klaviyo_export --saved | --delete NAME | --history [NAME]
%klaviyo_export                  (no arguments) open the export form"""


def build_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="%klaviyo_export",
        usage=USAGE.replace("%", "%%"),  # argparse %-formats the usage text
        add_help=True,
    )
    parser.add_argument("frames", nargs="*", metavar="DF", help="names of DataFrame variables to export together")
    parser.add_argument("--email", "-e", help="the column holding email addresses")
    parser.add_argument("--list", "-l", dest="list_id", metavar="LIST_ID", help="the Klaviyo list id, e.g. Y6nRLr")
    parser.add_argument("--connection", "-c", help="a saved connection's name (default: the default connection)")
    parser.add_argument(
        "--properties",
        "-p",
        help="more columns to send: 'a,b' (named like Klaviyo fields -> those fields, others -> custom "
        "properties) or 'col=field,...' to rename",
    )
    parser.add_argument("--dry-run", action="store_true", help="check and report everything, send nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--resume", action="store_true", help="continue the unfinished run of the same input without re-sending"
    )
    parser.add_argument("--save", metavar="NAME", help="store this export under NAME without running it")
    parser.add_argument("--run", metavar="NAME", help="run the saved export NAME on the notebook's DataFrames")
    parser.add_argument("--saved", action="store_true", help="list saved exports")
    parser.add_argument("--delete", metavar="NAME", help="delete the saved export NAME")
    parser.add_argument(
        "--history",
        nargs="?",
        const="",
        metavar="NAME",
        help="runs of saved exports (all, or NAME's) as a DataFrame",
    )
    return parser


def parse_line(line: str, parser_class: type[argparse.ArgumentParser]) -> argparse.Namespace:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"Cannot parse the line ({exc}); check its quotes.") from None
    return build_parser(parser_class).parse_args(words)


def parse_properties(text: str | None) -> list[str] | dict[str, str] | None:
    """'a,b' -> ['a', 'b']; 'a=x,b' -> {'a': 'x', 'b': 'b'} (a mapping as soon as one item renames)."""
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not any("=" in item for item in items):
        return items
    mapping: dict[str, str] = {}
    for item in items:
        column, _, field = item.partition("=")
        if not column.strip() or (("=" in item) and not field.strip()):
            raise UsageError(f"--properties item {item!r} should be 'column' or 'column=field'")
        mapping[column.strip()] = field.strip() or column.strip()
    return mapping


def find_frames(names: list[str], namespace: Mapping[str, Any]) -> list[Any]:
    """The DataFrames named on the line; an unknown or non-DataFrame name is a one-line error."""
    import pandas as pd

    frames = []
    known = [k for k, v in namespace.items() if isinstance(v, pd.DataFrame) and not k.startswith("_")]
    for name in names:
        if name not in namespace:
            close = difflib.get_close_matches(name, known, n=1)
            hint = (
                f" Did you mean '{close[0]}'?"
                if close
                else (f" DataFrames here: {', '.join(sorted(known))}." if known else "")
            )
            raise UsageError(f"'{name}' is not defined in this notebook.{hint}")
        value = namespace[name]
        if not isinstance(value, pd.DataFrame):
            raise UsageError(
                f"'{name}' is a {type(value).__name__}, not a pandas DataFrame. Pass the name of a DataFrame "
                "(e.g. vip = customers[customers.ltv > 500])."
            )
        frames.append(value)
    return frames


def require(args: argparse.Namespace, *options: str) -> None:
    missing = [f"--{name.replace('_id', '')}" for name in options if not getattr(args, name)]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}. Usage: %klaviyo_export DF --email COL --list LIST_ID")
