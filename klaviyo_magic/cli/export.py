"""``klaviyo-magic export`` and ``klaviyo-magic run``: headless exports for cron jobs and pipelines.

Exit codes (``parsing.py``): 0 every row sent (duplicates are fine), 1 some rows skipped or failed, 2 usage error
(bad arguments, missing or unreadable input, unknown connection or export), 3 Klaviyo or network error after
retries, 130 interrupted. ``--json`` prints one JSON object on stdout whatever happens, argparse's usage errors
included: ``{"exit_code": 2, "error": ..., "usage": ...}``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from ..arguments import add_sync_options, parse_properties, sync_options
from ..errors import ExportInterrupted, KlaviyoError, KlaviyoMagicError
from .parsing import EXIT_INTERRUPTED, EXIT_KLAVIYO, EXIT_OK, EXIT_ROWS, EXIT_USAGE


class _UsageProblem(Exception):
    """A mistake in the command line or its files: exit code 2."""


def _common_options(parser: argparse.ArgumentParser) -> None:
    add_sync_options(parser)
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object on stdout")
    parser.add_argument("--report", metavar="FILE.csv", help="write the per-row report (status, reason) to this CSV")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (a bar on terminals, a line every 10 s in logs)"
    )
    parser.json_usage_errors = True  # type: ignore[attr-defined]  # read by CommandParser; others ignore it


def configure_export_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        required=True,
        metavar="FILE",
        help="a CSV or Parquet file of rows to export, or a quoted glob of them ('data/*.parquet'), read in "
        "chunks; repeat for several segments",
    )
    parser.add_argument("--email", "-e", required=True, help="the column holding email addresses")
    parser.add_argument("--list", "-l", dest="list_id", required=True, metavar="LIST_ID", help="the Klaviyo list id")
    parser.add_argument("--connection", "-c", help="a saved connection's name (default: the default connection)")
    parser.add_argument(
        "--properties", "-p", help="more columns to send: 'a,b' or 'col=field,...' (as in %%klaviyo_export)"
    )
    parser.add_argument(
        "--save",
        metavar="NAME",
        help="store this export (its files, columns, list, connection, mirror) under NAME without running it; "
        "klaviyo-magic run NAME then reads the same files again",
    )
    _common_options(parser)


def configure_run_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the saved export to run (see klaviyo-magic saved)")
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        metavar="[VAR=]FILE",
        help="the file (or quoted glob of files) holding each of the export's DataFrames: VAR=FILE, or FILEs in "
        "the saved order; without --input, the files the export was saved with",
    )
    _common_options(parser)


def run_export(args: argparse.Namespace) -> int:
    if args.save:
        return _run(args, lambda: save_files_export(args))

    def work() -> Any:
        from ..export import export_segment

        # Paths, not DataFrames: the engine streams files in chunks (export/files.py), however large they are.
        inputs = [Path(path) for path in args.input]
        return export_segment(
            inputs if len(inputs) > 1 else inputs[0],
            email=args.email,
            list_id=args.list_id,
            connection=args.connection,
            properties=parse_properties(args.properties),
            progress=not args.no_progress,
            **sync_options(args),
        )

    return _run(args, work)


def run_saved(args: argparse.Namespace) -> int:
    def work() -> Any:
        from ..export import saved

        export = saved.get(args.name)
        if not args.input and len(export.files) < len(export.segments):
            raise _UsageProblem(
                f"saved export '{export.name}' reads notebook variables ({', '.join(export.segments)}): give the "
                "file holding each with --input VAR=FILE"
            )
        bound = _bind_inputs(export.segments, args.input) if args.input else export.files
        namespace = {var: Path(path) for var, path in bound.items()}
        return saved.run(args.name, namespace, progress=not args.no_progress, **sync_options(args))

    return _run(args, work)


def save_files_export(args: argparse.Namespace) -> None:
    """``export --save NAME``: keep the export, its files included, for ``klaviyo-magic run NAME``."""
    from .. import connections
    from ..export import saved

    if args.connection:
        connections.get(args.connection)  # a typo should fail now, not at the next scheduled run
    files: dict[str, str] = {}
    for text in args.input:
        name = re.sub(r"\W+", "_", Path(text).stem.split(".")[0]).strip("_") or "input"
        name = name if name[0].isalpha() else f"input_{name}"
        while name in files:
            name += "_2"
        # Absolute, so that a cron job started elsewhere reads the same files; a glob stays a glob.
        files[name] = str(Path(text).expanduser().absolute())
    properties = parse_properties(args.properties)
    export = saved.save(
        saved.SavedExport(
            name=args.save,
            segments=tuple(files),
            email=args.email,
            list_id=args.list_id,
            connection=args.connection,
            properties=tuple(properties) if isinstance(properties, list) else properties,
            mode="mirror" if args.mirror else "add",
            max_removals=args.max_removals,
            files=files,
        )
    )
    print(f"Saved export '{export.name}': {export.describe()}.\nNot run; run it with klaviyo-magic run {export.name}")
    return None


def _bind_inputs(variables: tuple[str, ...], inputs: list[str]) -> dict[str, str]:
    """Match --input values to a saved export's variables: VAR=FILE pairs, or plain files in saved order."""
    named: dict[str, str] = {}
    plain: list[str] = []
    for item in inputs:
        var, sep, file = item.partition("=")
        if sep and var.isidentifier():
            named[var] = file
        else:
            plain.append(item)
    if named and plain:
        raise _UsageProblem("give every --input as VAR=FILE, or none of them")
    if plain:
        if len(plain) != len(variables):
            raise _UsageProblem(
                f"the saved export uses {len(variables)} DataFrame(s) ({', '.join(variables)}) but "
                f"{len(plain)} --input file(s) were given; pass one per DataFrame, in that order, or VAR=FILE"
            )
        return dict(zip(variables, plain, strict=True))
    unknown = set(named) - set(variables)
    missing = [var for var in variables if var not in named]
    if unknown or missing:
        raise _UsageProblem(
            f"--input names must match the saved export's DataFrames ({', '.join(variables)})"
            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    return named


def _run(args: argparse.Namespace, work: Any) -> int:
    result = None
    error: str | None = None
    try:
        result = work()
        if result is None:  # saved, not run
            return EXIT_OK
        code = EXIT_OK if result.ok and not result.skipped else EXIT_ROWS
    except _UsageProblem as exc:
        code, error = EXIT_USAGE, str(exc)
    except KlaviyoError as exc:
        code, error, result = EXIT_KLAVIYO, str(exc), exc.result
    except KlaviyoMagicError as exc:  # input, configuration, the removal guard, a list held by another run
        code, error, result = EXIT_USAGE, str(exc), exc.result
    except ExportInterrupted as exc:
        code, error, result = EXIT_INTERRUPTED, "interrupted", exc.result
    if result is not None and args.report:
        result.write_report_csv(args.report)
    _print_outcome(args, code, result, error)
    return code


def resume_line(args: argparse.Namespace) -> str:
    """The exact command that continues this one: the same line with ``--resume``."""
    words = list(getattr(args, "argv", None) or sys.argv[1:])
    return "klaviyo-magic " + shlex.join(words) + ("" if args.resume else " --resume")


def _print_outcome(args: argparse.Namespace, code: int, result: Any, error: str | None) -> None:
    if args.json:
        payload: dict[str, Any] = {"exit_code": code}
        if result is not None:
            payload.update(result.to_dict())
            if result.dry_run:  # a dry run's report goes with its result, so with this process: --report keeps it
                payload["report_path"] = None
        if error:
            payload["error"] = error
        if result is not None and args.report:
            payload["report"] = str(args.report)
        if result is not None and result.resumable:  # the exact command that continues it, for the script to run
            payload["resume"] = resume_line(args)
        print(json.dumps(payload))
        return
    if error:
        print(f"klaviyo-magic: {error}", file=sys.stderr)
    if result is not None:
        print(result.summary(where=args.report or "the per-row report (--report FILE.csv)", resume=resume_line(args)))
