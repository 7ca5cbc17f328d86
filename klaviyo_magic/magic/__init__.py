"""IPython magics: a thin shell that parses the line, calls the library and displays the outcome.

``%load_ext klaviyo_magic`` calls :func:`load_ipython_extension`, which registers :class:`KlaviyoMagic`.
Library errors (``ConfigError``, ``KlaviyoError``) become one-line ``UsageError`` s here, and only here.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from traitlets import Bool, Int, Unicode

from ..arguments import join_comma_lists, mistyped_first, option_hint
from ..connections.keys import redact
from ..errors import ConfigError, ExportInterrupted, InputError, KlaviyoError, KlaviyoMagicError
from . import connection, export
from .connection import ConnectionTestOutcome
from .expand import Expanded, expand


class _HelpShown(Exception):
    """``-h``/``--help`` printed its text: nothing else to do."""


class _MagicParser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``UsageError`` instead of exiting the kernel, a mistyped option before
    the required argument it left missing."""

    _words: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        self._words = list(args or [])
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        message = mistyped_first(self, message, self._words)
        raise UsageError(f"{redact(option_hint(self, message))}. Usage: {usage}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:
            raise _HelpShown
        raise UsageError(redact(message or "invalid arguments").strip())


@magics_class
class KlaviyoMagic(Magics):
    """klaviyo-magic's line magics. Configurable: ``%config KlaviyoMagic`` lists its options."""

    default_connection = Unicode(
        "", help="Connection used by %klaviyo_export when the line names none (empty: the saved default)."
    ).tag(config=True)
    progress = Bool(True, help="Show a progress bar while exporting (--no-progress turns it off per call).").tag(
        config=True
    )
    show_tracebacks = Bool(
        False, help="Raise errors with their full traceback instead of a one-line message (for debugging)."
    ).tag(config=True)
    max_profiles = Int(1_000_000, help="Refuse exports with more rows than this (split the segment instead).").tag(
        config=True
    )

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
        %klaviyo_connection sandbox [NAME]  start a local Klaviyo sandbox in this kernel (or reuse the one it
                                          runs) and make it the default connection (returns it:
                                          sb = %klaviyo_connection sandbox)

        Keys: the magic saves only the NAME of an environment variable holding the key. It never takes
        a key itself, because the key would be saved in the notebook's cell source. To keep a literal key
        in the OS keyring, use a terminal:

            klaviyo-magic connection add NAME --api-key-stdin < file-holding-the-key

        Where no keyring is usable that is refused; add --store file to accept a plain-text key file
        (mode 0600) instead.

        Profiles are stored in $KLAVIYO_MAGIC_HOME/connections.toml (default: your user config dir).
        Team profiles, from the file named by $KLAVIYO_MAGIC_TEAM_FILE, are listed and usable but
        read-only. With no default profile, exports fall back to $KLAVIYO_API_KEY.
        """
        # {expression} works as in %klaviyo_export; $VAR stays as typed: it names a variable holding a key.
        expanded = expand(line, self.shell.ev, self.shell.user_ns, dollars=False)
        try:
            args = _parse(connection.build_parser(_MagicParser), expanded)
        except _HelpShown:
            return None
        try:
            return connection.run_line(args)
        except (ConfigError, KlaviyoError) as exc:
            raise UsageError(str(exc)) from None

    # {expression} and $var are expanded here rather than by IPython, so that {customers[customers.ltv > 500]}
    # can be the segment itself instead of its printed text (magic/expand.py).
    @no_var_expand
    @line_magic
    def klaviyo_export(self, line: str) -> Any:
        """Export DataFrames from this notebook into a Klaviyo list.

        %klaviyo_export DF [DF2 ...] --email COL --list LIST_ID [--connection NAME]
                        [--properties a,b | col=field,...] [--mirror [--max-removals N]] [--full]
                        [--dry-run [--offline]] [--resume] [--no-progress] [--max-profiles N] [--save NAME]
        %klaviyo_export {customers[customers.ltv > 500]} --email COL --list LIST_ID ...
        %klaviyo_export --run NAME [--dry-run] [--mirror | --no-mirror] [--full] [--resume]   run a saved export
        %klaviyo_export --saved                                    list saved exports
        %klaviyo_export --delete NAME                              delete a saved export
        %klaviyo_export --history [NAME]                           runs of saved exports, as a DataFrame
        %klaviyo_export                                            open the export form

        DF is a DataFrame variable (pandas, Polars, PyArrow, DuckDB, Dask or Spark) or a Python expression
        in braces. Several DataFrames are exported together; the same email in several rows is sent once and
        the others are reported as duplicates. Rows without a valid email are skipped, never sent. The magic
        returns the ExportResult (so `result = %klaviyo_export ...` and `_` work): `result.report` has one
        row per input row with its status (sent, unchanged, skipped, duplicate, not_sent, failed) and reason.

        --properties picks more columns: columns named like Klaviyo fields (first_name, last_name,
        phone_number, external_id, organization, title, locale, city, country, zip, ...) go to those
        fields, others become custom properties; `col=field` renames.
        The list's sync state (what earlier runs sent) makes re-runs incremental: unchanged rows are not sent
        again (--full re-sends them). --mirror also removes the members this tool added who left the segment;
        more than --max-removals (default 10% of them, at least 100) stops the run before removing anyone.
        --dry-run checks everything, asks Klaviyo (read-only) whether the key works and the list exists, and
        shows what would be added, updated, left unchanged and removed; --offline makes no request at all.
        --save NAME stores the export (variable names, email column, list, connection, properties, mirror)
        without running it; --run NAME looks the variables up again and runs it (--no-mirror: this once
        without removing anyone); each run is recorded.
        --resume continues the unfinished run of this same export (stopped by Ctrl-C, an error or a crash)
        without re-sending the import jobs Klaviyo already accepted.

        Python values can be used with {expression} or $name: --list {list_id}.
        Settings: %config KlaviyoMagic.default_connection / .progress / .show_tracebacks / .max_profiles
        """
        if not line.strip():
            return self._form_or_usage()
        expanded = expand(line, self.shell.ev, self.shell.user_ns)
        try:
            args = _parse(export.build_parser(_MagicParser), expanded)
        except _HelpShown:
            return None
        resume = f"%klaviyo_export {line.strip()}" + ("" if args.resume else " --resume")
        terminal = getattr(self.shell, "kernel", None) is None
        try:
            outcome = export.run_line(args, line, expanded, self.shell.user_ns, self._settings())
            if _is_result(outcome):
                self._keep(outcome, resume)
                if terminal:
                    # A notebook shows the result's HTML, which starts with its summary; a terminal would show
                    # only its repr, so it gets the summary in words first ("Nothing to send: ...").
                    print(outcome.summary())
            return outcome
        except ExportInterrupted as exc:
            if exc.result is None:
                print(str(exc))
                return None
            self._keep(exc.result, resume)
            if terminal:
                print(exc.result.summary())
            elif exc.result.resumable:
                # The bar says what was sent and the result's HTML says the rest, but assigned (r = %klaviyo_export
                # ...) or not last in its cell, the HTML does not show: the line that continues is said anyway.
                print(f"Continue it with: {resume}")
            return exc.result
        except (InputError, ConfigError, KlaviyoMagicError) as exc:
            partial = exc.result
            if partial is not None:
                self._keep(partial, resume)
            if self.show_tracebacks:
                raise
            hint = " The partial result is in _klaviyo_result." if partial is not None and partial.sent else ""
            if partial is not None and partial.resumable:
                hint += f" Continue it with: {resume}"
            raise UsageError(f"{exc}{hint}") from None

    def _keep(self, result: Any, resume: str) -> None:
        """Keep the result as ``_klaviyo_result`` (``_`` changes with the next cell), and have its summary and HTML
        name what a magic user types: ``_klaviyo_result.problems`` and this line with ``--resume``."""
        self.shell.user_ns["_klaviyo_result"] = result
        result.problems_name, result.resume_command = "_klaviyo_result.problems", resume

    def _settings(self) -> dict[str, Any]:
        return {
            "default_connection": self.default_connection,
            "progress": self.progress,
            "max_profiles": self.max_profiles,
        }

    def _form_or_usage(self) -> Any:
        # Only a kernel with a frontend can draw widgets; a terminal IPython gets the usage text instead.
        if getattr(self.shell, "kernel", None) is None:
            print(export.USAGE)
            return None
        from ..widgets.panel import form

        return form(namespace=self.shell.user_ns)


def _is_result(value: Any) -> bool:
    """Whether ``value`` is an export's result (the module is imported only once something came back: it brings
    pandas, which loading the extension does not)."""
    if value is None:
        return False
    from ..result import ExportResult

    return isinstance(value, ExportResult)


def _parse(parser: argparse.ArgumentParser, expanded: Expanded) -> argparse.Namespace:
    """Parse the expanded line; option values that held an ``{expression}`` get its value as text."""
    args = parser.parse_args(join_comma_lists(expanded.words))
    for name, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, name, expanded.text(value))
    return args


def load_ipython_extension(ipython: Any) -> None:
    """Register the klaviyo-magic magics with ``ipython`` (called by ``%load_ext klaviyo_magic``)."""
    ipython.register_magics(KlaviyoMagic)


__all__ = ["ConnectionTestOutcome", "KlaviyoMagic", "load_ipython_extension"]
