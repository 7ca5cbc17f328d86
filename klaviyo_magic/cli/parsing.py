"""The ``klaviyo-magic`` command's parsers and exit codes.

Exit codes (stable, for schedulers): 0 ok (an export sent every row; duplicates are fine), 1 some rows were not
sent, 2 usage or configuration error, 3 Klaviyo or network error after retries, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..arguments import join_comma_lists, mistyped_first, option_hint
from ..connections.keys import redact

EXIT_OK, EXIT_ROWS, EXIT_USAGE, EXIT_KLAVIYO, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class RedactingParser(argparse.ArgumentParser):
    """argparse that masks keys in its errors (it echoes offending arguments, and a key pasted by mistake must
    not reach stderr), says "did you mean" for a mistyped option, and exits with :data:`EXIT_USAGE`."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(option_hint(self, message))}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        # As an action's sub-parser, our leftovers go up to the top-level parser, whose "unrecognized arguments"
        # error would print them: hand them up masked.
        parsed, extras = super().parse_known_args(args, namespace)
        return parsed, [redact(arg) for arg in extras]


class CommandParser(RedactingParser):
    """The parser of ``klaviyo-magic`` and its commands.

    A command (a parser without commands of its own) reports its unrecognized arguments itself, with its own usage
    line and a "did you mean" among its own options, rather than leaving them to the top-level parser. A mistyped
    option is reported before missing required ones: ``--emial email`` is why ``--email`` is missing.

    A command whose outcome scripts read as JSON (``export``, ``run``) sets ``json_usage_errors``; its usage
    errors are then reported as one JSON object on stdout when ``--json`` is on the line.
    """

    json_usage_errors = False
    _json_requested = False
    _words: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        words = join_comma_lists(sys.argv[1:] if args is None else list(args))
        self._words = words
        self._json_requested = self.json_usage_errors and asks_for_json(words)
        parsed, extras = super().parse_known_args(words, namespace)
        if extras and (self.json_usage_errors or not _has_commands(self)):
            # Left to the top-level parser, these would be reported there, as text and with its usage line.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        message = mistyped_first(self, message, self._words)
        if not self._json_requested:
            super().error(message)
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        print(json.dumps({"exit_code": EXIT_USAGE, "error": redact(option_hint(self, message)), "usage": usage}))
        self.exit(EXIT_USAGE)


def _has_commands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(action, argparse._SubParsersAction) for action in parser._actions)


def asks_for_json(words: Sequence[str]) -> bool:
    """Whether ``--json`` (or an abbreviation argparse accepts, like ``--js``) is among the options."""
    for word in words:
        if word == "--":  # what follows is positional values, not options
            return False
        option = word.partition("=")[0]
        if len(option) > 2 and "--json".startswith(option):
            return True
    return False


def say_error(message: str) -> None:
    """One line on stderr, keys masked: scripts and CI logs read stderr line by line."""
    print(" ".join(redact(message).split()), file=sys.stderr)
