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
from collections.abc import Sequence
from typing import Any, NoReturn

from ..connections import keys
from ..connections.keys import redact
from ..errors import ConfigError, KlaviyoError

EXIT_OK, EXIT_USAGE, EXIT_KLAVIYO = 0, 2, 3

ADD_HELP = (
    "save a connection; its key comes from an environment variable (--api-key-env, recommended), "
    "or is read from stdin / a hidden prompt and kept in the OS keyring (in a 0600 plain-text file only "
    "with --store file)"
)

NOTEBOOK_ADD_HELP = (
    "save a connection whose key comes from an environment variable (--api-key-env VAR); literal keys "
    "are added in a terminal: klaviyo-magic connection add NAME --api-key-stdin"
)


class RedactingParser(argparse.ArgumentParser):
    """argparse echoes offending arguments in its errors; a key pasted by mistake must not reach stderr."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message)}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        # As an action's sub-parser, our leftovers go up to the top-level parser (ours or cli.py's), whose
        # "unrecognized arguments" error would print them: hand them up masked.
        parsed, extras = super().parse_known_args(args, namespace)
        return parsed, [redact(arg) for arg in extras]


def configure_parser(
    parser: argparse.ArgumentParser, *, notebook: bool = False, parser_class: type | None = None
) -> None:
    """Add the ``add/list/test/remove/default/accept`` actions to ``parser``.

    ``notebook=True`` builds the ``%klaviyo_connection`` variant, which offers no way to type a literal key
    (it would be saved in the cell source). ``parser_class`` lets the magic make errors raise ``UsageError``.
    """
    actions = parser.add_subparsers(
        dest="connection_command", metavar="ACTION", parser_class=parser_class or RedactingParser
    )
    actions.required = True

    add_help = NOTEBOOK_ADD_HELP if notebook else ADD_HELP
    add = actions.add_parser("add", help=add_help, description=add_help)
    add.add_argument("name", metavar="NAME", help="the connection's name, e.g. prod")
    # Not `required`: a missing source is reported by run()/the magic after key_refusal() has had its say.
    source = add.add_mutually_exclusive_group()
    source.add_argument(
        "--api-key-env", metavar="VAR", help="name of the environment variable holding the key (not the key)"
    )
    if not notebook:
        source.add_argument("--api-key-stdin", action="store_true", help="read the key from the first line of stdin")
        add.add_argument(
            "--store",
            choices=("auto", "keyring", "file"),
            default="auto",
            help="where a literal key goes: the OS keyring (auto, keyring; refused when none is usable), or a "
            "plain-text key file with mode 0600 (file)",
        )
    # Accepted only to refuse it without argparse echoing the value: keys do not belong in argv.
    add.add_argument("--api-key", dest="literal_key", help=argparse.SUPPRESS)
    add.add_argument("--base-url", default=None, metavar="URL", help="default https://a.klaviyo.com")
    add.add_argument("--revision", default=None, metavar="R", help="Klaviyo API revision (YYYY-MM-DD)")
    add.add_argument(
        "--accept-privacy-terms", action="store_true", help="accept the data-privacy terms for exports now"
    )
    add.add_argument("--replace", action="store_true", help="overwrite a connection of the same name")
    # Catch stray positionals here so argparse's "unrecognized arguments" never prints them.
    add.add_argument("extra", nargs="*", help=argparse.SUPPRESS)

    listing = actions.add_parser("list", help="show saved connections (personal and team)")
    if not notebook:
        listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    testing = actions.add_parser("test", help="check the key with one call to Klaviyo (GET /api/accounts)")
    testing.add_argument("name", metavar="NAME", nargs="?", help="connection to test (default: the default one)")
    for action, text in (
        ("remove", "delete a personal connection and its stored key"),
        ("default", "use this connection when an export names none"),
        ("accept", "accept the data-privacy terms for this connection (records the time)"),
    ):
        actions.add_parser(action, help=text, description=text).add_argument(
            "name", metavar="NAME", help="the connection's name"
        )


def key_refusal(args: argparse.Namespace) -> str | None:
    """Why the parsed arguments must be refused because a key was typed on the line, if one was."""
    if getattr(args, "literal_key", None) is not None:
        return (
            "--api-key is not accepted: a key on the command line lands in shell history and `ps`. Use "
            "--api-key-env VAR, or pipe it: klaviyo-magic connection add NAME --api-key-stdin"
        )
    if getattr(args, "extra", None):
        return f"unexpected arguments: {redact(' '.join(args.extra))} (a key is never given on the command line)"
    return None


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed ``connection`` action; returns the exit code."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = _dispatch(args)
        for warning in caught:
            _err(f"warning: {warning.message}")
        return code
    except ConfigError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except KlaviyoError as exc:
        _err(f"error: {exc}")
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
        _err(outcome["message"])
        return EXIT_KLAVIYO
    if command == "remove":
        connections.remove(args.name)
        print(f"Removed connection '{args.name}'.")
    elif command == "default":
        connections.set_default(args.name)
        print(f"'{args.name}' is now the default connection.")
    elif command == "accept":
        conn = connections.accept_privacy_terms(args.name)
        stamp = conn.privacy_accepted_at.isoformat() if conn.privacy_accepted_at else "now"
        print(f"Privacy terms accepted for '{args.name}' at {stamp}.")
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
    print_added(conn, "klaviyo-magic connection accept")
    return EXIT_OK


def print_added(conn: Any, accept_command: str) -> None:
    """Confirm a new connection, and say how to accept its privacy terms (``accept_command NAME``) if needed."""
    print(f"Added connection '{conn.name}' (key from {conn.masked_key}, base URL {conn.base_url}).")
    if not conn.privacy_accepted:
        print(f"Before exporting through it, accept the privacy terms: {accept_command} {conn.name}")


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


def _err(message: str) -> None:
    # One line per message: scripts and CI logs read stderr line by line.
    print(" ".join(redact(message).split()), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = RedactingParser(prog="klaviyo-magic connection", description="Manage saved Klaviyo connections.")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
