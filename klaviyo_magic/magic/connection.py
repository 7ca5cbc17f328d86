"""``%klaviyo_connection``: the connection actions in a notebook, on top of :mod:`klaviyo_magic.connections`.

The grammar is shared with ``klaviyo-magic connection`` (:mod:`klaviyo_magic.arguments`), except that the magic
never takes a literal key: it would be saved in the cell source.
"""

from __future__ import annotations

import argparse
import os
import secrets
from typing import Any

from IPython.core.error import UsageError

from ..arguments import added_message, change_connection, configure_connection_parser, key_refusal

NEVER_A_KEY = (
    "The magic never takes a key: it would be saved in the cell source. Keep the key in an environment variable "
    "(--api-key-env VAR), or store it in the OS keyring from a terminal: klaviyo-magic connection add NAME "
    "--api-key-stdin (add --store file where no keyring is usable, to accept a plain-text key file, mode 0600)."
)


class ConnectionTestOutcome(dict):
    """The dict returned by ``connections.test``; it displays as its plain-words message."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.get("message", ""))


def build_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(prog="%klaviyo_connection", add_help=True)
    configure_connection_parser(parser, notebook=True, parser_class=parser_class)
    return parser


def run_line(args: argparse.Namespace) -> Any:
    """Carry out one parsed ``%klaviyo_connection`` line."""
    from .. import connections

    command = args.connection_command
    if command == "add":
        return _add(args)
    if command == "list":
        return _list_frame(connections.list())
    if command == "test":
        return ConnectionTestOutcome(connections.test(args.name))
    if command == "sandbox":
        return _sandbox(args.name)
    print(change_connection(command, args.name))
    return None


def _add(args: argparse.Namespace) -> None:
    from .. import connections

    if key_refusal(args):
        raise UsageError(NEVER_A_KEY)
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
    print(added_message(conn, "%klaviyo_connection accept"))


_SANDBOXES: list[Any] = []  # sandboxes started here live as long as the kernel, like a server started by hand


def _sandbox(name: str) -> Any:
    """Start a sandbox with Klaviyo's rate limits, and save connection ``name`` to it as the default, with a
    made-up key in ``$KLAVIYO_SANDBOX_KEY`` (the sandbox takes any ``pk_`` key) and the privacy terms accepted:
    nothing leaves this machine. Returns the sandbox, for ``sb.create_list(...)`` and its inspection methods.

    While the sandbox this kernel started last still runs, it is returned again instead of a new one: a new one
    would be empty, and the list ids made in the old one would no longer be found."""
    from .. import connections
    from ..connections.model import SANDBOX_KEY_ENV
    from ..sandbox import Sandbox

    previous = next((c.name for c in connections.list() if c.is_default), None)
    _SANDBOXES[:] = [s for s in _SANDBOXES if s.running]  # sb.stop() ends one; let it go
    reused = bool(_SANDBOXES)
    sandbox = _SANDBOXES[-1] if reused else Sandbox().start()
    if not reused:
        _SANDBOXES.append(sandbox)
    os.environ.setdefault(SANDBOX_KEY_ENV, "pk_sandbox_" + secrets.token_hex(12))
    connections.add(name, api_key_env=SANDBOX_KEY_ENV, base_url=sandbox.url, accept_privacy_terms=True, replace=True)
    connections.set_default(name)
    if reused:
        print(
            f"The Klaviyo sandbox at {sandbox.url} is still running in this kernel: reusing it, with its lists, as "
            f"connection '{name}', the default. For a new, empty one, run sb.stop() first, then this line again."
        )
    else:
        print(
            f"Started a Klaviyo sandbox at {sandbox.url} and saved connection '{name}' to it, now the default. "
            "Nothing leaves this machine. Make a list with sb.create_list('VIP') (sb = this cell's result)."
        )
    if previous and previous != name:
        # The default is shared with the CLI and other notebooks: say how to get the real account back.
        print(f"The default was '{previous}'; make it the default again with: %klaviyo_connection default {previous}")
    return sandbox


def _list_frame(conns: list[Any]) -> Any:
    import pandas as pd

    columns = ["name", "key", "base_url", "revision", "default", "scope", "privacy_accepted_at"]
    if not conns:
        print("No connections yet. Add one: %klaviyo_connection add NAME --api-key-env KLAVIYO_API_KEY")
    return pd.DataFrame([c.summary() for c in conns], columns=columns)
