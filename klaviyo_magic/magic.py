"""IPython magics: a thin shell that parses the line, calls the library and displays the outcome.

``%load_ext klaviyo_magic`` calls :func:`load_ipython_extension`, which registers :class:`KlaviyoMagic`.
Library errors (``ConfigError``, ``KlaviyoError``) become one-line ``UsageError`` s here, and only here.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand

from . import connection_cli
from .errors import ConfigError, KlaviyoError
from .keystore import redact


class _HelpShown(Exception):
    """``-h``/``--help`` printed its text: nothing else to do."""


class _MagicParser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``UsageError`` instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise UsageError(f"{redact(message)}. Usage: {usage}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:
            raise _HelpShown
        raise UsageError(redact(message or "invalid arguments").strip())


class ConnectionTestOutcome(dict):
    """The dict returned by ``connections.test``; it displays as its plain-words message."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.get("message", ""))


@magics_class
class KlaviyoMagic(Magics):
    """klaviyo-magic's line magics. Configurable: ``%config KlaviyoMagic`` lists its options."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # %config finds a Configurable only through shell.configurables (as IPython's storemagic does).
        if shell is not None and self not in shell.configurables:
            shell.configurables.append(self)

    @no_var_expand  # `$VAR` must stay a variable name, not be replaced by a Python value (maybe a key)
    @line_magic
    def klaviyo_connection(self, line: str) -> Any:
        """Manage saved Klaviyo connections ("profiles") from a notebook.

        %klaviyo_connection add NAME --api-key-env VAR [--base-url URL] [--revision R]
                                [--accept-privacy-terms] [--replace]
        %klaviyo_connection list          returns a DataFrame: name, key source (masked), base URL,
                                          revision, default marker, team/personal, privacy accepted at
        %klaviyo_connection test [NAME]   one GET /api/accounts (Klaviyo allows 1/s, 15/min): does the
                                          key work, and which organisation is it? Not for loops.
        %klaviyo_connection default NAME  use NAME when an export names no connection
        %klaviyo_connection accept NAME   accept the data-privacy terms (required before exporting)
        %klaviyo_connection remove NAME   delete a personal connection and its stored key

        Keys: the magic saves only the NAME of an environment variable holding the key. It never takes
        a key itself, because the key would be saved in the notebook's cell source. To keep a literal key
        in the OS keyring (or, on request, a 0600 file), use a terminal:

            klaviyo-magic connection add NAME --api-key-stdin < file-holding-the-key

        Profiles are stored in $KLAVIYO_MAGIC_HOME/connections.toml (default: your user config dir).
        Team profiles, from the file named by $KLAVIYO_MAGIC_TEAM_FILE, are listed and usable but
        read-only. With no default profile, exports fall back to $KLAVIYO_API_KEY.
        """
        try:
            args = self._parse(line)
        except _HelpShown:
            return None
        try:
            return self._connection_action(args)
        except (ConfigError, KlaviyoError) as exc:
            raise UsageError(str(exc)) from None

    # -- helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _parse(line: str) -> argparse.Namespace:
        parser = _MagicParser(prog="%klaviyo_connection", add_help=True)
        connection_cli.configure_parser(parser, notebook=True, parser_class=_MagicParser)
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"Cannot parse the line ({exc}); check its quotes.") from None
        return parser.parse_args(words)

    def _connection_action(self, args: argparse.Namespace) -> Any:
        from . import connections

        command = args.connection_command
        if command == "add":
            if connection_cli.key_refusal(args):
                raise UsageError(
                    "The magic never takes a key: it would be saved in the cell source. "
                    "Use --api-key-env VAR, "
                    "or in a terminal: klaviyo-magic connection add NAME --api-key-stdin"
                )
            if not args.api_key_env:
                raise UsageError(
                    f"Say where the key of '{args.name}' comes from: %klaviyo_connection add {args.name} "
                    "--api-key-env VAR (the name of an environment variable holding it)."
                )
            options = {k: v for k, v in (("base_url", args.base_url), ("revision", args.revision)) if v}
            conn = connections.add(
                args.name,
                api_key_env=args.api_key_env,
                accept_privacy_terms=args.accept_privacy_terms,
                replace=args.replace,
                **options,
            )
            print(f"Added connection '{conn.name}' (key from {conn.masked_key}, base URL {conn.base_url}).")
            if not conn.privacy_accepted:
                print(
                    "Before exporting through it, accept the privacy terms: "
                    f"%klaviyo_connection accept {conn.name}"
                )
            return None
        if command == "list":
            return self._list_frame(connections.list())
        if command == "test":
            return ConnectionTestOutcome(connections.test(args.name))
        if command == "remove":
            connections.remove(args.name)
            print(f"Removed connection '{args.name}'.")
        elif command == "default":
            connections.set_default(args.name)
            print(f"'{args.name}' is now the default connection.")
        elif command == "accept":
            conn = connections.accept_privacy_terms(args.name)
            print(
                f"Privacy terms accepted for '{args.name}' "
                f"at {conn.privacy_accepted_at:%Y-%m-%d %H:%M:%S %Z}."
            )
        return None

    @staticmethod
    def _list_frame(conns: list[Any]) -> Any:
        import pandas as pd

        columns = ["name", "key", "base_url", "revision", "default", "scope", "privacy_accepted_at"]
        if not conns:
            print("No connections yet. Add one: %klaviyo_connection add NAME --api-key-env KLAVIYO_API_KEY")
        return pd.DataFrame([c.summary() for c in conns], columns=columns)


def load_ipython_extension(ipython: Any) -> None:
    """Register the klaviyo-magic magics with ``ipython`` (called by ``%load_ext klaviyo_magic``)."""
    ipython.register_magics(KlaviyoMagic)


__all__ = ["ConnectionTestOutcome", "KlaviyoMagic", "load_ipython_extension"]
