"""``%klaviyo_export``: parse the line, find the segments, call the library, return the result.

Everything here is argument handling and lookup in the notebook's namespace; the export itself is
:func:`klaviyo_magic.export.export_segment`, saved exports are :mod:`klaviyo_magic.export.saved`. Library errors
reach :class:`~klaviyo_magic.magic.KlaviyoMagic`, which turns them into one-line ``UsageError`` s.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ..arguments import add_sync_options, parse_properties, sync_options
from ..export.namespace import lookup
from .expand import Expanded, bare_expression_hint

USAGE = """\
%klaviyo_export DF [DF2 ...] --email COL --list LIST_ID [--connection NAME] [--properties a,b | col=field,...]
                [--mirror] [--max-removals N] [--full] [--dry-run [--offline]] [--resume] [--no-progress]
                [--max-profiles N] [--save NAME]
%klaviyo_export {EXPRESSION} --email COL --list LIST_ID ...   (a segment given as a Python expression)
%klaviyo_export --run NAME [--dry-run] [--mirror | --no-mirror] [--full] [--resume] [--no-progress]
%klaviyo_export --saved | --delete NAME | --history [NAME]
%klaviyo_export                  (no arguments) open the export form"""


def build_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="%klaviyo_export",
        usage=USAGE.replace("%", "%%"),  # argparse %-formats the usage text
        add_help=True,
    )
    parser.add_argument(
        "frames", nargs="*", metavar="DF", help="DataFrame variables to export together, or {expressions}"
    )
    parser.add_argument("--email", "-e", help="the column holding email addresses")
    parser.add_argument("--list", "-l", dest="list_id", metavar="LIST_ID", help="the Klaviyo list id, e.g. Y6nRLr")
    parser.add_argument("--connection", "-c", help="a saved connection's name (default: the default connection)")
    parser.add_argument(
        "--properties",
        "-p",
        help="more columns to send: 'a,b' (named like Klaviyo fields -> those fields, others -> custom "
        "properties) or 'col=field,...' to rename",
    )
    add_sync_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
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


def run_line(
    args: argparse.Namespace, line: str, expanded: Expanded, namespace: dict[str, Any], settings: Mapping[str, Any]
) -> Any:
    """Carry out one parsed ``%klaviyo_export`` line; ``settings`` are the magic's ``%config`` values."""
    from ..export import saved

    options = {
        "progress": settings["progress"] and not args.no_progress,
        "max_profiles": settings["max_profiles"],
        **sync_options(args),
    }
    if args.saved:
        return _saved_frame(saved.all_exports())
    if args.delete:
        saved.delete(args.delete)
        print(f"Deleted saved export '{args.delete}'.")
        return None
    if args.history is not None:
        return saved.history(args.history or None)
    if args.run:
        return saved.run(args.run, namespace, **options)
    if not args.frames:
        raise UsageError(f"name at least one DataFrame. Usage: {USAGE.splitlines()[0]}")
    _require(args, "email", "list_id")
    properties = parse_properties(args.properties)
    connection = args.connection or settings["default_connection"] or None
    if args.save:
        return _save(args, properties, connection, namespace, expanded)
    frames = _segments(args.frames, line, expanded, namespace)
    from ..export import export_segment

    return export_segment(
        frames if len(frames) > 1 else frames[0],
        email=args.email,
        list_id=args.list_id,
        connection=connection,
        properties=properties,
        **options,
    )


def _segments(words: list[str], line: str, expanded: Expanded, namespace: Mapping[str, Any]) -> list[Any]:
    """The segments named on the line: variables looked up, ``{expressions}`` already evaluated."""
    segments = []
    for word in words:
        is_expression, value = expanded.value(word)
        if is_expression:
            segments.append(value)
            continue
        hint = bare_expression_hint(line, word)
        if hint is not None:
            raise UsageError(
                f"'{word}' is not a variable name. To export an expression, put it in braces: "
                f"%klaviyo_export {hint} --email ... --list ..."
            )
        segments.extend(lookup([word], namespace))
    return segments


def _save(
    args: argparse.Namespace, properties: Any, connection: str | None, namespace: Mapping[str, Any], expanded: Expanded
) -> None:
    from .. import connections
    from ..export import saved

    for word in args.frames:
        if expanded.expression(word) is not None:
            raise UsageError(
                f"--save keeps DataFrame variable names, so that --run finds today's data: assign the expression "
                f"first (vip = {expanded.expression(word)}), then save with vip"
            )
    if connection:
        connections.get(connection)  # a typo should fail now, not at the next scheduled run
    export = saved.save(
        saved.SavedExport(
            name=args.save,
            segments=tuple(args.frames),
            email=args.email,
            list_id=args.list_id,
            connection=connection,
            properties=tuple(properties) if isinstance(properties, list) else properties,
            mode="mirror" if args.mirror else "add",
            max_removals=args.max_removals,
            files=_files(args.frames, namespace),
        )
    )
    missing = [name for name in export.segments if name not in namespace]
    print(
        f"Saved export '{export.name}': {export.describe()}.\nNot run; run it with %klaviyo_export --run {export.name}"
    )
    if missing:
        print(f"Note: {', '.join(missing)} is not defined yet; define it before running.")
    return None


def _files(names: list[str], namespace: Mapping[str, Any]) -> dict[str, str]:
    """The segments that are file paths (``vip = Path("data/vip.parquet")``), absolute: a saved export remembers
    them, so that ``klaviyo-magic run NAME`` (cron, no notebook) reads the same files."""
    return {
        name: str(Path(namespace[name]).expanduser().absolute())
        for name in names
        if isinstance(namespace.get(name), os.PathLike)
    }


def _require(args: argparse.Namespace, *options: str) -> None:
    missing = [f"--{name.replace('_id', '')}" for name in options if not getattr(args, name)]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}. Usage: %klaviyo_export DF --email COL --list LIST_ID")


def _saved_frame(exports: list[Any]) -> Any:
    from ..export import saved

    if not exports:
        print("No saved exports yet. Save one: %klaviyo_export DF --email COL --list LIST_ID --save NAME")
    return saved.table(exports)
