"""``klaviyo-magic connection ...``: parse arguments, call :mod:`klaviyo_magic.connections`, print outcomes.

An API key is never taken as a command-line value: argv lands in shell history and is visible to every user
through ``ps``. ``add`` reads a literal key from stdin (``--api-key-stdin``) or, on a terminal, from a
``getpass`` prompt, and keeps it in the OS keyring; a plain-text key file only with ``--store file``.
``--api-key-env VAR`` stores only the variable's name.

Exit codes: 0 ok, 2 usage or configuration error, 3 Klaviyo or network error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import warnings
from typing import Any

from ..arguments import added_message, change_connection, configure_connection_parser, key_refusal
from ..connections import keys
from ..errors import ConfigError, KlaviyoError
from .parsing import EXIT_KLAVIYO, EXIT_OK, EXIT_USAGE, RedactingParser, say_error


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``connection`` command's actions (``add``, ``list``, ``test``, ``remove``, ``default``, ``accept``)."""
    configure_connection_parser(parser, parser_class=RedactingParser)


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed ``connection`` action; returns the exit code."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = _dispatch(args)
        for warning in caught:
            say_error(f"warning: {warning.message}")
        return code
    except ConfigError as exc:
        say_error(f"error: {exc}")
        return EXIT_USAGE
    except KlaviyoError as exc:
        say_error(f"error: {exc}")
        return EXIT_KLAVIYO


def _dispatch(args: argparse.Namespace) -> int:
    from .. import connections

    command = args.connection_command
    if command == "add":
        return _add(args)
    if command == "list":
        rows = [c.summary() for c in connections.list()]
        print(json.dumps(rows, indent=2) if getattr(args, "json", False) else _table(rows))
        return EXIT_OK
    if command == "test":
        outcome = connections.test(args.name)
        if outcome["ok"]:
            print(outcome["message"])
            return EXIT_OK
        say_error(outcome["message"])
        return EXIT_KLAVIYO
    print(change_connection(command, args.name))
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    from .. import connections

    refusal = key_refusal(args)
    if refusal:
        raise ConfigError(refusal)
    key = None
    if args.api_key_env is None:
        key = _read_key(args)
    options: dict[str, Any] = {}
    if args.base_url is not None:
        options["base_url"] = args.base_url
    if args.revision is not None:
        options["revision"] = args.revision
    conn = connections.add(
        args.name,
        api_key_env=args.api_key_env,
        api_key=key,
        store=args.store,
        accept_privacy_terms=args.accept_privacy_terms,
        replace=args.replace,
        **options,
    )
    print(added_message(conn, "klaviyo-magic connection accept"))
    return EXIT_OK


def _read_key(args: argparse.Namespace) -> str:
    prompt = not args.api_key_stdin and sys.stdin is not None and sys.stdin.isatty()
    if not args.api_key_stdin and not prompt:
        raise ConfigError("Give --api-key-env VAR (recommended) or --api-key-stdin (and pipe the key in).")
    if args.store != "file" and not keys.keyring_available():
        # Refuse before the user types or pipes a key we could not keep.
        raise keys.no_keyring_error(args.name, env_option="--api-key-env VAR", file_option="--store file")
    if prompt:
        return getpass.getpass(f"Klaviyo private API key for '{args.name}' (input hidden): ")
    line = sys.stdin.readline()
    if not line.strip():
        raise ConfigError("--api-key-stdin read nothing: pipe the key in, e.g. `pass show klaviyo | ...`.")
    return line


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No connections yet. Add one: klaviyo-magic connection add NAME --api-key-env KLAVIYO_API_KEY"
    columns = ["name", "key", "base_url", "default", "scope", "privacy_accepted_at"]
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is True:
        return "*"
    if value in (False, None):
        return "-"
    return str(value)
