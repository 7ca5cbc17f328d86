"""One call of :func:`~klaviyo_magic.export.export_segment`, after its arguments were checked: what every kind of
run (``api.py``'s real one, ``preview.py``'s dry one) needs, and the checks with Klaviyo they share."""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd

from ..client import KlaviyoClient, RetryNotice
from ..connections.check import known_account, remember_account
from ..errors import NotFoundError, PermissionDeniedError
from ..progress import ProgressEvent
from ..result import REMOVAL_COLUMNS, ExportResult
from .checks import RowChecker
from .report import ReportBook
from .sources import Source
from .stream import RowStream

_UNKNOWN_ACCOUNT = "?"  # a key without the accounts:read scope: the state is then kept per base URL and list


class ExportCall:
    """One export's inputs and settings, and what it shows while it runs."""

    def __init__(
        self,
        sources: list[Source],
        email: str,
        field_map: dict[Any, tuple[str, ...]],
        list_id: str,
        *,
        max_profiles: int,
        expected: int | None,
        notify: Any,
        mode: str,
        full: bool,
        max_removals: int | None,
        started: float,
    ) -> None:
        self.sources = sources
        self.email = email
        self.field_map = field_map
        self.columns = list(field_map)
        self.list_id = list_id
        self.max_profiles = max_profiles
        self.expected = expected
        self.notify = notify
        self.mode = mode
        self.full = full
        self.max_removals = max_removals
        self.started = started
        self.streamed = not all(source.in_memory for source in sources)

    def notes(self) -> list[str]:
        """What reading the inputs showed that the user should know (``Source.notes``), once each."""
        return list(dict.fromkeys(note for source in self.sources for note in source.notes))

    # -- results --------------------------------------------------------------------------------------------

    def result(
        self,
        conn: Any,
        book: ReportBook,
        job_ids: list[str],
        removals: pd.DataFrame,
        ended_early: str | None,
        fatal: BaseException | None,
        list_name: str | None,
        warnings: list[str],
        run_id: str | None,
        *,
        input_complete: bool = True,
        **dry_run: Any,
    ) -> ExportResult:
        """The run's result; a dry run's also passes ``dry_run=True``, ``checked`` and ``sample``. Its warnings
        end with what reading the inputs showed (:meth:`notes`)."""
        report = book.finish()
        return ExportResult(
            self.list_id,
            report,
            job_ids=job_ids,
            duration=time.monotonic() - self.started,
            connection=getattr(conn, "name", None),
            interrupted=ended_early is not None,
            error=str(fatal) if fatal is not None else None,
            mode=self.mode,
            removals=removals,
            report_path=book.path,
            counted=counts(book),
            list_name=list_name,
            warnings=[*warnings, *self.notes()],
            run_id=run_id,
            input_complete=input_complete,
            **dry_run,
        )

    def unsent(self, conn: Any, reason: str) -> ExportResult:
        """The result of a run stopped before it sent anything: every row of an input in memory is read and
        reported (not sent, with ``reason``); a streamed input is not read at all, and the result says so."""
        book = ReportBook(len(self.sources))
        warnings = []
        stream = RowStream(
            self.sources, self.columns, RowChecker(self.email, self.field_map), book, max_profiles=self.max_profiles
        )
        if stream.can_drain:
            stream.drain()
            book.mark(book.positions("pending"), "not_sent", reason)
        else:
            warnings.append("the input was not read, so the report has no rows")
        interrupted = "cancelled" in reason or "interrupted" in reason
        result = self.result(
            conn,
            book,
            [],
            pd.DataFrame(columns=REMOVAL_COLUMNS),
            "stopped" if interrupted else None,
            None,
            None,
            warnings,
            None,
        )
        if not interrupted:
            result.error = reason
        self.notify(done_event(result))
        return result

    def retrying(self, notice: RetryNotice) -> None:
        self.notify(ProgressEvent("retrying", 0, None, message=notice.message, retry=notice))


def account_id(client: KlaviyoClient, conn: Any) -> str:
    """The Klaviyo account of the connection's key (one ``GET /api/accounts``, remembered for this process with the
    key checks' answers: the endpoint allows 1 call a second and 15 a minute). A key without the accounts:read
    scope gives ``?``."""
    known = known_account(conn)
    if known is None:
        try:
            known = str(client.get_account().get("id") or _UNKNOWN_ACCOUNT)
        except PermissionDeniedError:
            known = _UNKNOWN_ACCOUNT
        remember_account(conn, known)
    return known


def check_list(client: KlaviyoClient, list_id: str, conn: Any) -> str | None:
    """The list's name; a clear error when the account has no such list, before anything is sent."""
    try:
        found = client.get_list(list_id) or {}
    except NotFoundError as exc:
        exc.message = (
            f"List '{list_id}' was not found in the Klaviyo account of {conn.label}. Check the list id "
            "(Klaviyo > Lists & Segments > the list > Settings) or create the list first."
        )
        exc.args = (exc.message,)
        raise
    return (found.get("attributes") or {}).get("name")


def counts(book: ReportBook) -> dict[str, int]:
    counts = book.counts()
    counts["partial"] = book.noted
    return counts


def sample(profiles: list[str]) -> pd.DataFrame:
    """The first profiles as they would be sent, one column per field (``location.city``, ``properties.ltv``).

    Only ``location`` and ``properties`` are opened up: a property's own value is shown whole, as it is sent (a dict
    property as one ``properties.meta`` column holding ``{'k': 1}``, a list as a list, ``{}`` as ``{}``)."""
    attributes = [json.loads(profile)["attributes"] for profile in profiles]
    return pd.json_normalize(attributes, max_level=1) if attributes else pd.DataFrame(columns=["email"])


def done_event(result: ExportResult) -> ProgressEvent:
    """The last word of the progress display: how the export ended."""
    to_send = result.sent + result.not_sent + result.failed
    if result.interrupted:
        outcome, head = "interrupted", "Interrupted"
    elif result.error:
        outcome, head = "error", "Stopped by an error"
    elif not to_send:  # an empty segment, or a re-run that found nothing new: say what the run did instead
        done = [f"{result.unchanged:,} unchanged"] if result.unchanged else []
        done += [f"{result.removed:,} removed"] if result.mode == "mirror" else []
        return ProgressEvent("done", 0, 0, outcome="empty", message=f"Nothing to send{': ' if done else ''}"
                             + " · ".join(done))  # fmt: skip
    else:
        removed = f" · {result.removed:,} removed" if result.mode == "mirror" else ""
        return ProgressEvent(
            "done",
            result.sent,
            to_send,
            len(result.job_ids),
            outcome="complete",
            message=f"Done: {result.sent:,} sent{removed}",
        )
    if not to_send:
        said = "nothing sent"
    elif not result.input_complete:  # stopped while reading: the rows read so far are not the segment's size
        said = f"{result.sent:,} of the first {to_send:,} sent (the rest of the input was not read)"
    else:
        said = f"{result.sent:,} of {to_send:,} sent"
    return ProgressEvent("done", result.sent, to_send, len(result.job_ids), outcome=outcome, message=f"{head}: {said}")
