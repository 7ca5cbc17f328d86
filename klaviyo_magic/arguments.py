"""What the shells accept, in one place: the grammar both the IPython magics and the ``klaviyo-magic`` command use.

The magics and the CLI are independent shells; neither imports the other. What both need lives here:
parsing ``--properties``, the ``connection`` actions and their refusal of literal keys, the line that confirms
a new connection, and "did you mean" for a mistyped option. Nothing here imports IPython or knows exit codes:
mistakes are :class:`~klaviyo_magic.errors.InputError` (or the shell's own parser error), and each shell turns
them into its own kind of message.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
from collections.abc import Sequence
from typing import Any

from .connections.keys import redact
from .errors import InputError

ADD_HELP = (
    "save a connection; its key comes from an environment variable (--api-key-env, recommended), "
    "or is read from stdin / a hidden prompt and kept in the OS keyring (in a 0600 plain-text file only "
    "with --store file)"
)

NOTEBOOK_ADD_HELP = (
    "save a connection whose key comes from an environment variable (--api-key-env VAR); literal keys "
    "are added in a terminal: klaviyo-magic connection add NAME --api-key-stdin"
)


def parse_properties(text: str | None) -> list[str] | dict[str, str] | None:
    """``'a,b'`` -> ``['a', 'b']``; ``'a=x,b'`` -> ``{'a': 'x', 'b': 'b'}`` (a mapping once one item renames).

    Spaces around names are ignored: ``'a, b'`` reads as ``['a', 'b']`` (see :func:`join_comma_lists` for the
    same typed on a command line).
    """
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not any("=" in item for item in items):
        return items
    mapping: dict[str, str] = {}
    for item in items:
        column, sign, field = item.partition("=")
        if not column.strip() or (sign and not field.strip()):
            raise InputError(f"--properties item {item!r} should be 'column' or 'column=field'")
        mapping[column.strip()] = field.strip() or column.strip()
    return mapping


def join_comma_lists(words: list[str], options: tuple[str, ...] = ("--properties", "-p")) -> list[str]:
    """``words`` with a comma list split by a space put back together: ``--properties a, b`` reaches us as
    ``["--properties", "a,", "b"]`` (the shell split it), which argparse would read as the property ``a`` and a
    stray ``b``. Words are joined while the value ends with a comma or the next word starts with one."""
    joined: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        name, sign, value = word.partition("=")
        if word in options and rest:
            value = rest.pop(0)
        elif not (sign and name in options):
            joined.append(word)
            continue
        while rest and (value.rstrip().endswith(",") or rest[0].startswith(",")):
            value += rest.pop(0)
        joined.extend([f"{name}={value}"] if sign else [word, value])
    return joined


# -- export options ------------------------------------------------------------------------------------------


def add_sync_options(parser: argparse.ArgumentParser) -> None:
    """What a run does besides adding: dry run, offline, resume, mirror, full, limits (``%klaviyo_export`` and
    ``klaviyo-magic export``/``run`` alike)."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything (asking Klaviyo, read-only, whether the key works and the list exists) and report "
        "what would be added, updated, left unchanged and removed; send nothing",
    )
    parser.add_argument("--offline", action="store_true", help="with --dry-run: make no request to Klaviyo at all")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run of this same export (killed, interrupted, cancelled) without re-sending "
        "what Klaviyo accepted; with none, start normally",
    )
    mirror = parser.add_mutually_exclusive_group()
    mirror.add_argument(
        "--mirror",
        action="store_true",
        default=None,
        help="keep the list in step with the segment: also remove the members this tool added who are no longer in "
        "it (never members added some other way)",
    )
    mirror.add_argument(
        "--no-mirror",
        dest="mirror",
        action="store_false",
        help="only add and update, this once, though the saved export mirrors (nobody is removed)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="re-send every row, also those unchanged since the last run (after the list was edited in Klaviyo)",
    )
    parser.add_argument(
        "--max-removals",
        type=_count,
        metavar="N",
        help="with --mirror: remove at most N members (default: 10%% of those this tool added, at least 100); a run "
        "that would remove more stops before removing anyone",
    )
    parser.add_argument(
        "--max-profiles", type=_count, metavar="N", help="refuse exports with more than N rows (default 1,000,000)"
    )


def sync_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``export_segment`` that :func:`add_sync_options` parsed."""
    if args.offline and not args.dry_run:
        raise InputError("--offline only goes with --dry-run: a real export has to talk to Klaviyo")
    if args.mirror is False and args.max_removals is not None:
        raise InputError("--max-removals goes with --mirror: with --no-mirror nobody is removed")
    options: dict[str, Any] = {
        "dry_run": args.dry_run,
        "offline": args.offline,
        "resume": args.resume,
        "full": args.full,
        "max_removals": args.max_removals,
    }
    if args.mirror is not None:  # neither: the saved export's mode, or "add"
        options["mode"] = "mirror" if args.mirror else "add"
    if args.max_profiles is not None:
        options["max_profiles"] = args.max_profiles
    return options


def _count(text: str) -> int:
    """A whole number of rows or members (``1000``, ``1_000`` or ``1,000``)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


# -- "did you mean" for options and actions ---------------------------------------------------------------------

_UNRECOGNIZED = re.compile(r"unrecognized arguments?: ([^;]*)")  # up to what follows it (";")
_INVALID_CHOICE = re.compile(
    r"argument (?P<name>.+?): invalid choice: (?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)
_HINTED = "did you mean"


def option_hint(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` plus "did you mean --email?" when it names an option the parser does not know but that is
    close to one it does (``--emial``, ``--propeties``), and "did you mean 'test'?" for a mistyped action or
    choice (``connection tset``).

    The parser's own options come first; a mistyped option left over for the parser by one of its actions'
    sub-parsers (``connection add x --api-key-evn K``) is matched with the sub-parsers' options.
    """
    if _HINTED in message:  # already said (an error re-reported by the shell)
        return message
    choice = _INVALID_CHOICE.search(message)
    if choice:
        return _choice_hint(parser, message, choice)
    match = _UNRECOGNIZED.search(message)
    if not match:
        return message
    hints = close_options(parser, match.group(1).split())
    if not hints:
        return message
    if len(hints) == 1:
        return f"{message} (did you mean {next(iter(hints.values()))}?)"
    return f"{message} (did you mean {', '.join(f'{right} for {wrong}' for wrong, right in hints.items())}?)"


def close_options(parser: argparse.ArgumentParser, words: list[str]) -> dict[str, str]:
    """For each word of ``words`` that is an option ``parser`` does not know, the known option it is close to,
    if any: ``{"--emial": "--email"}``. Options hidden from help (``--api-key``, accepted only to refuse it) are
    never suggested."""
    own = _long_options(parser)
    below = [option for sub in _sub_parsers(parser) for option in _long_options(sub) if option not in own]
    hints: dict[str, str] = {}
    for word in words:
        if not word.startswith("-") or word in hints:
            continue
        name = word.partition("=")[0]
        close = difflib.get_close_matches(name, own, n=1, cutoff=0.6) or difflib.get_close_matches(
            name, below, n=1, cutoff=0.6
        )
        if close and close[0] != name:
            hints[word] = close[0]
    return hints


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--")
    ]


def _sub_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The sub-parsers of ``parser``'s actions (commands), theirs and so on, each once."""
    found: list[argparse.ArgumentParser] = []
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if all(sub is not seen for seen in found):
                        found.append(sub)
                        pending.append(sub)
    return found


def _choice_hint(parser: argparse.ArgumentParser, message: str, match: re.Match[str]) -> str:
    try:
        value = ast.literal_eval(match.group("value"))
    except (ValueError, SyntaxError):
        return message
    named = [action for action in parser._actions if action.choices and _action_name(action) == match.group("name")]
    actions = named or [action for action in parser._actions if action.choices]
    choices = [str(choice) for action in actions for choice in action.choices or ()]
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    return f"{message} (did you mean '{close[0]}'?)" if close else message


def _action_name(action: argparse.Action) -> str | None:
    """The name argparse gives ``action`` in its errors (``--store``, ``ACTION``, ``name``)."""
    if action.option_strings:
        return "/".join(action.option_strings)
    if action.metavar not in (None, argparse.SUPPRESS):
        return str(action.metavar)
    return action.dest if action.dest is not argparse.SUPPRESS else None


_REQUIRED = "the following arguments are required: "


def mistyped_first(parser: argparse.ArgumentParser, message: str, words: Sequence[str]) -> str:
    """argparse's "the following arguments are required: --email/-e" for ``--emial email``, said the useful
    way round: ``unrecognized arguments: --emial (did you mean --email?)``, followed by any required argument
    that is still missing once the hints are taken."""
    if not message.startswith(_REQUIRED):
        return message
    stray = unknown_options(parser, words)
    if not stray:
        return message
    hints = close_options(parser, stray)
    missing = [
        name for name in message.removeprefix(_REQUIRED).split(", ") if not set(name.split("/")) & set(hints.values())
    ]
    text = option_hint(parser, f"unrecognized arguments: {' '.join(stray)}")
    return f"{text}; {_REQUIRED}{', '.join(missing)}" if missing else text


def unknown_options(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """The words of ``words`` that argparse would take for options ``parser`` does not know (an abbreviation of
    a known long option, or a short option with its value attached, ``-eemail``, is known)."""
    known = [option for action in parser._actions for option in action.option_strings]
    unknown = []
    for word in words:
        if word == "--":  # what follows is positional values
            break
        if not word.startswith("-") or word == "-" or " " in word or _NUMBER.fullmatch(word):
            continue
        if word.startswith("--"):
            name = word.partition("=")[0]
            if name in known or (parser.allow_abbrev and any(option.startswith(name) for option in known)):
                continue
        elif word[:2] in known:
            continue
        unknown.append(word)
    return unknown


_NUMBER = re.compile(r"-\d+(\.\d*)?|-\.\d+")


class ReportingSubParsers(argparse._SubParsersAction):
    """Actions (``add``, ``list``, ...) whose sub-parser reports its own unrecognized arguments, with its usage
    line and a "did you mean" among its options, instead of leaving them to the top-level parser, which knows
    neither (``connection add x --api-key-evn K``). A mistyped action is argparse's "invalid choice", which the
    shells' parsers pass through :func:`option_hint`."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        attribute = getattr(argparse, "_UNRECOGNIZED_ARGS_ATTR", "_unrecognized_args")
        before = list(getattr(namespace, attribute, []))
        super().__call__(parser, namespace, values, option_string)
        extras = list(getattr(namespace, attribute, []))[len(before) :]
        if extras:
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extras)}")


# -- connection actions ----------------------------------------------------------------------------------------


def configure_connection_parser(
    parser: argparse.ArgumentParser, *, parser_class: type[argparse.ArgumentParser], notebook: bool = False
) -> None:
    """Add the ``add/list/test/remove/default/accept`` actions to ``parser``.

    ``notebook=True`` builds the ``%klaviyo_connection`` variant, which offers no way to type a literal key
    (it would be saved in the cell source). ``parser_class`` is the shell's parser for the actions, so their
    mistakes are reported the shell's way (a ``UsageError`` in the magic, exit code 2 in the CLI).
    """
    actions = parser.add_subparsers(
        dest="connection_command", metavar="ACTION", parser_class=parser_class, action=ReportingSubParsers
    )
    actions.required = True

    add_help = NOTEBOOK_ADD_HELP if notebook else ADD_HELP
    add = actions.add_parser("add", help=add_help, description=add_help)
    add.add_argument("name", metavar="NAME", help="the connection's name, e.g. prod")
    # Not `required`: a missing source is reported by the shell after key_refusal() has had its say.
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
    if notebook:
        sandbox = actions.add_parser(
            "sandbox",
            help="start a local Klaviyo sandbox in this kernel (or reuse the one it runs) and make it the default "
            "connection (nothing leaves this machine)",
        )
        sandbox.add_argument("name", metavar="NAME", nargs="?", default="sandbox", help="the connection's name")
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


def added_message(conn: Any, accept_command: str) -> str:
    """The lines confirming a new connection, and how to accept its privacy terms (``accept_command NAME``)."""
    text = f"Added connection '{conn.name}' (key from {conn.masked_key}, base URL {conn.base_url})."
    if not conn.privacy_accepted:
        text += f"\nBefore exporting through it, accept the privacy terms: {accept_command} {conn.name}"
    return text


def change_connection(command: str, name: str) -> str:
    """Carry out ``remove``, ``default`` or ``accept`` for connection ``name``; return the line to show."""
    from . import connections

    if command == "remove":
        connections.remove(name)
        return f"Removed connection '{name}'."
    if command == "default":
        connections.set_default(name)
        return f"'{name}' is now the default connection."
    if command == "accept":
        conn = connections.accept_privacy_terms(name)
        return f"Privacy terms accepted for '{name}' at {conn.privacy_accepted_at:%Y-%m-%d %H:%M:%S %Z}."
    raise ValueError(f"not a connection change: {command!r}")
