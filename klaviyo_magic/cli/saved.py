"""``klaviyo-magic saved`` and ``klaviyo-magic history``: the saved exports and what their runs did, for whoever
reads a cron job's outcome without a notebook (``%klaviyo_export --saved`` and ``--history`` in one).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .parsing import EXIT_OK, EXIT_USAGE, say_error

# What a terminal shows of a run; --json gives every column.
HISTORY_COLUMNS = ["started_at", "export", "outcome", "mode", "sent", "added", "updated", "unchanged", "removed",
                   "skipped", "duplicates", "not_sent", "failed", "dry_run"]  # fmt: skip
SAVED_COLUMNS = ["name", "segments", "list_id", "connection", "mode", "max_removals"]


def configure_saved_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the saved exports as a JSON array")


def configure_history_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="one saved export's runs (default: every saved export's)")
    parser.add_argument("--last", type=_runs, default=20, metavar="N", help="the N newest runs (default 20; 0: all)")
    parser.add_argument("--json", action="store_true", help="print the runs as a JSON array, newest first")


def list_saved(args: argparse.Namespace) -> int:
    from ..export import saved

    frame = saved.table(saved.all_exports())
    if args.json:
        print(_json(frame))
    elif frame.empty:
        print("No saved exports yet. Save one: klaviyo-magic export -i FILE --email COL --list LIST_ID --save NAME")
    else:
        print(frame[SAVED_COLUMNS].to_string(index=False, na_rep=""))
    return EXIT_OK


def show_history(args: argparse.Namespace) -> int:
    from ..export import saved

    frame = saved.history(args.name)
    if args.name and frame.empty:  # a deleted export's runs are still shown; a typo gets "did you mean"
        try:
            saved.get(args.name)
        except ConfigError as exc:
            say_error(f"klaviyo-magic: {exc}")
            return EXIT_USAGE
    if args.last > 0:
        frame = frame.head(args.last)
    if args.json:
        print(_json(frame))
    elif frame.empty:
        whose = f"saved export '{args.name}'" if args.name else "any saved export"
        print(f"No runs of {whose} yet. Run one: klaviyo-magic run {args.name or 'NAME'}")
    else:
        print(frame[HISTORY_COLUMNS].to_string(index=False, na_rep=""))
    return EXIT_OK


def _runs(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"give a number of runs, 0 (every run) or more, not {text!r}")
    return number


def _json(frame: Any) -> str:
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=None)
