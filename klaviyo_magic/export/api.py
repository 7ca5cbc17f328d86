"""export_segment(): push one or more segments into a Klaviyo list and keep the list in step, every row accounted for.

The work is split so each part stays simple (the data flows one way through them):

- ``sources.py`` reads any DataFrame library's input in chunks; ``checks.py`` decides each row's fate (emails,
  phones, duplicates, unchanged since the last run); ``payloads.py`` builds the import-job batches;
  ``report.py`` keeps every row's outcome; ``stream.py`` ties those together;
- this module checks the arguments, resolves the connection, asks Klaviyo who the account is and whether the
  list exists, opens the sync state (``state.py``) and the run journal (``journal.py``), and runs;
- ``run.py`` sends the batches and stops cleanly, ``jobs.py`` watches the jobs, ``mirror.py`` removes the
  members who left the segment;
- ``klaviyo_magic.client`` does HTTP, retries and error translation; ``klaviyo_magic.progress`` draws.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import connections
from ..client import KlaviyoClient, RetryNotice, Stopped
from ..errors import ConfigError, ExportInterrupted, InputError, KlaviyoError, NotFoundError, PermissionDeniedError
from ..progress import ProgressEvent, reporter
from ..result import REMOVAL_COLUMNS, ExportResult
from . import journal, mirror
from .checks import RowChecker
from .fields import check_columns, resolve_fields
from .report import ReportBook
from .run import ExportRun
from .sources import Source, open_sources
from .state import ListState, Snapshot, StateStore, run_description, state_path
from .stream import RowStream, check_row_limit

_LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MODES = ("add", "mirror")
_ACCOUNTS: dict[tuple[str, str], str] = {}  # (base URL, key digest) -> account id, for this process only
_DRY_RUN_CANCELLED = "The dry run was cancelled before it finished; nothing was sent."
_UNKNOWN_ACCOUNT = "?"  # a key without the accounts:read scope: the state is then kept per base URL and list


def export_segment(
    segments: Any,
    *,
    email: str,
    list_id: str,
    connection: Any = None,
    properties: Sequence[str] | dict[str, str] | None = None,
    dry_run: bool = False,
    progress: Any = None,
    max_profiles: int = 1_000_000,
    resume: bool = False,
    cancel: threading.Event | None = None,
    mode: str = "add",
    full: bool = False,
    max_removals: int | None = None,
    offline: bool = False,
    wait_for_jobs: bool = True,
    concurrency: int = 6,
) -> ExportResult:
    """Export the rows of ``segments`` into the Klaviyo list ``list_id``; with ``mode="mirror"`` also remove the
    members this tool put there who are no longer in the segment.

    ``segments`` is a DataFrame or a list of them: pandas, Polars (``DataFrame`` or ``LazyFrame``), PyArrow
    (``Table``, ``RecordBatchReader``, dataset), a DuckDB relation, a Dask or PySpark DataFrame, or a path (glob)
    of Parquet or CSV files. Lazy and distributed inputs are read in chunks, never collected whole. ``email``
    names the email column. ``properties`` picks more columns: a list of column names (columns named like
    Klaviyo fields, e.g. ``first_name`` or ``city``, go to those fields, others become custom properties) or a
    ``{column: field}`` mapping; without it only columns named like Klaviyo fields are sent. ``connection`` is a
    saved connection's name, a :class:`~klaviyo_magic.connections.Connection`, or ``None`` for the default one
    (or ``KLAVIYO_API_KEY``).

    Every input row ends up in ``result.report`` exactly once as ``sent``, ``unchanged``, ``skipped`` (no valid
    email), ``duplicate`` (same email as an earlier row, sent once), ``not_sent`` (the export stopped first) or
    ``failed`` (with Klaviyo's reason).

    List sync: what each run put in the list is kept in ``$KLAVIYO_MAGIC_HOME/sync.sqlite3``. Once a list has
    that state, runs are incremental: rows that send the same as last time are ``unchanged`` and not sent
    (``full=True`` re-sends everything). ``mode="mirror"`` then removes the members we added who left the
    segment; more than ``max_removals`` (default: 10% of those members, at least 100) stops the run before
    anyone is removed, with the number and the fix. Members someone else added are never touched.

    ``dry_run=True`` does every local check, asks Klaviyo (read-only) whether the key works and the list exists,
    and reports what would be added, updated, left unchanged and removed, sending nothing; with ``offline=True``
    it makes no request at all. ``progress=True`` shows a progress bar; a callable receives
    :class:`~klaviyo_magic.progress.ProgressEvent`. With ``wait_for_jobs=False`` the export returns once Klaviyo
    has accepted every import job, without waiting for Klaviyo to process them.

    Every real export keeps a journal under ``$KLAVIYO_MAGIC_HOME/runs``. ``resume=True`` continues the newest
    unfinished run with the same settings (killed, interrupted, cancelled, or stopped by an error): import jobs
    Klaviyo already accepted for the same rows are watched, not re-sent, and the report covers the whole run.

    ``cancel`` is a :class:`threading.Event` another thread may set to stop the export (the form's Cancel
    button does): no new import job is sent, a request already on its way is allowed to finish, jobs Klaviyo
    accepted count as sent, the other rows are ``not_sent``, and
    :class:`~klaviyo_magic.errors.ExportInterrupted` is raised, carrying the partial result. A dry run stops as
    well (between chunks, or while Klaviyo is being retried), raising ``ExportInterrupted`` with no result.

    Raises ``InputError`` (a ``ValueError``) for input mistakes before any request, ``KlaviyoError`` subclasses
    for problems reported by Klaviyo (they carry the partial result as ``exc.result``), and ``ExportInterrupted``
    (a ``KeyboardInterrupt``) for Ctrl-C or ``cancel``.
    """
    started = time.monotonic()
    list_id = _check_list_id(list_id)
    _check_options(mode, max_removals, concurrency)
    sources = open_sources(segments)
    check_columns(sources, email)
    field_map = resolve_fields(sources, email, properties)
    expected = check_row_limit(sources, max_profiles)
    if resume and not all(source.rereadable for source in sources):
        once = next(source for source in sources if not source.rereadable)
        raise InputError(
            f"cannot resume: {once.describe()} is a reader that can be read only once, so its rows cannot be "
            "matched with the run that stopped. Pass a re-readable input (a table, dataset, file or DataFrame), "
            "or run without resume."
        )
    export = _Export(
        sources,
        email,
        field_map,
        list_id,
        max_profiles=max_profiles,
        expected=expected,
        notify=reporter(progress),
        mode=mode,
        full=full,
        max_removals=max_removals,
        started=started,
    )
    try:
        if dry_run:
            return export.dry_run(connection, offline=offline, cancel=cancel)
        return export.run(
            connection, resume=resume, cancel=cancel, wait_for_jobs=wait_for_jobs, concurrency=concurrency
        )
    finally:
        export.notify.close()


class _Export:
    """One call of :func:`export_segment`, after its arguments were checked."""

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

    # -- dry run -------------------------------------------------------------------------------------------

    def dry_run(self, connection: Any, *, offline: bool, cancel: threading.Event | None = None) -> ExportResult:
        """Everything but the writes: the rows' fates, Klaviyo's read-only answers, the sync plan. A set ``cancel``
        (the form's Cancel) ends it, also while Klaviyo is being retried, with ``ExportInterrupted`` (no result:
        a plan cut short would be a wrong plan)."""
        conn, checked, account, list_name = None, "Not checked with Klaviyo (offline).", None, None
        if not offline:
            try:
                conn, checked, account, list_name = self._check_with_klaviyo(connection, cancel)
            except Stopped:
                raise ExportInterrupted(None, _DRY_RUN_CANCELLED) from None
        state = self._existing_state(conn, account)
        snapshot = state.snapshot() if state is not None else None
        checker = RowChecker(self.email, self.field_map, state=snapshot, full=self.full)
        run_id = journal.new_run_id()
        book = ReportBook(len(self.sources), journal.report_path(run_id) if self.streamed else None)
        stream = RowStream(self.sources, self.columns, checker, book, max_profiles=self.max_profiles)
        for batch in stream.batches():
            if cancel is not None and cancel.is_set():
                if state is not None:
                    state.store.close()
                raise ExportInterrupted(None, _DRY_RUN_CANCELLED)
            book.mark(batch.positions, "would_send")
        removals = pd.DataFrame(columns=REMOVAL_COLUMNS)
        warnings = []
        if self.mode == "mirror" and state is not None and snapshot is not None:
            hashes = mirror.leavers(snapshot, checker)
            removals = mirror.planned(state, hashes, "would_remove", None)
            try:
                mirror.check_guard(
                    len(hashes),
                    members=len(snapshot),
                    max_removals=self.max_removals,
                    inputs_empty=not checker.distinct_emails,
                    list_id=self.list_id,
                )
            except mirror.RemovalLimitError as exc:
                warnings.append(f"a real run would stop here: {exc}")
        if state is not None:
            state.store.close()
        report = book.finish()
        return ExportResult(
            self.list_id,
            report,
            duration=time.monotonic() - self.started,
            dry_run=True,
            connection=getattr(conn, "name", None),
            mode=self.mode,
            removals=removals,
            report_path=book.path,
            counted=_counts(book),
            list_name=list_name,
            checked=checked,
            warnings=warnings,
            sample=_sample(stream.totals.sample),
            run_id=run_id,
        )

    def _check_with_klaviyo(
        self, connection: Any, cancel: threading.Event | None = None
    ) -> tuple[Any, str, str | None, str | None]:
        """Read-only: does the key work, does the list exist? Without a connection at all, the dry run stays
        local and says so."""
        try:
            conn = connections.resolve(connection)
        except ConfigError:
            if connection is not None:
                raise
            return None, "Not checked with Klaviyo: no connection is set up (see %klaviyo_connection add).", None, None
        with KlaviyoClient(conn, stop=cancel, on_retry=self._retrying) as client:
            account = account_id(client, conn)
            name = check_list(client, self.list_id, conn)
        checked = f"Checked with Klaviyo: the key works and list '{name}' ({self.list_id}) exists."
        return conn, checked, account, name

    def _existing_state(self, conn: Any, account: str | None) -> ListState | None:
        """The list's sync state if there is one; a dry run creates nothing."""
        if conn is None or not state_path().exists():
            return None
        store, _ = StateStore.open()
        state = store.list_state(conn.base_url, self.list_id, account, create=False)
        if state is None:
            store.close()
        return state

    # -- a real run ----------------------------------------------------------------------------------------

    def run(
        self, connection: Any, *, resume: bool, cancel: threading.Event | None, wait_for_jobs: bool, concurrency: int
    ) -> ExportResult:
        conn = connections.resolve(connection)
        connections.require_consent(conn)
        stop = cancel if cancel is not None else threading.Event()
        client = KlaviyoClient(conn, pool_size=concurrency + 2, stop=stop, on_retry=self._retrying)
        try:
            try:
                account = account_id(client, conn)
                list_name = check_list(client, self.list_id, conn)
            except Stopped:
                raise ExportInterrupted(self._unsent(conn, "not sent: the export was cancelled")) from None
            except KeyboardInterrupt:
                raise ExportInterrupted(self._unsent(conn, "not sent: the export was interrupted")) from None
            except KlaviyoError as exc:
                exc.result = self._unsent(conn, f"not sent: the export stopped after an error ({exc.status or exc})")
                raise
            store, warning = StateStore.open()
            try:
                state = store.list_state(conn.base_url, self.list_id, account, create=True)
                assert state is not None
                return self._run_with_state(
                    conn,
                    client,
                    state,
                    list_name,
                    warning,
                    resume=resume,
                    stop=stop,
                    wait_for_jobs=wait_for_jobs,
                    concurrency=concurrency,
                )
            finally:
                store.close()
        finally:
            client.close()

    def _run_with_state(
        self,
        conn: Any,
        client: KlaviyoClient,
        state: ListState,
        list_name: str | None,
        warning: str | None,
        *,
        resume: bool,
        stop: threading.Event,
        wait_for_jobs: bool,
        concurrency: int,
    ) -> ExportResult:
        settings = {
            "list_id": self.list_id,
            "account": state.account_id,
            "base_url": conn.base_url,
            "email": self.email,
            "fields": {str(column): ".".join(path) for column, path in self.field_map.items()},
            "mode": self.mode,
        }
        resumed = journal.find_resumable(settings) if resume else None
        run_id = resumed.run_id if resumed is not None else journal.new_run_id()
        with state.lock(run_description(run_id)):
            run_journal = journal.Journal.reopen(resumed) if resumed else journal.Journal.start(settings, run_id)
            try:
                try:
                    run_number = state.start_run(run_id)  # reads the state: a damaged database shows here
                except sqlite3.DatabaseError as exc:
                    warning = state.store.set_aside(exc)
                    state = state.store.list_state(conn.base_url, self.list_id, state.account_id, create=True)
                    assert state is not None
                    run_number = state.start_run(run_id)
                snapshot = state.snapshot()
                checker = RowChecker(
                    self.email,
                    self.field_map,
                    state=snapshot,
                    full=self.full,
                    resumed_run=run_number if resumed else None,
                )
                book = ReportBook(len(self.sources), journal.report_path(run_id) if self.streamed else None)
                stream = RowStream(self.sources, self.columns, checker, book, max_profiles=self.max_profiles)
                run = ExportRun(
                    stream,
                    client,
                    self.list_id,
                    book,
                    notify=self.notify,
                    journal=run_journal,
                    resumed=resumed,
                    concurrency=concurrency,
                    wait_for_jobs=wait_for_jobs,
                    cancel=stop,
                    state=state,
                    run_number=run_number,
                    expected_rows=self.expected,
                )
                outcome = run.execute()
                ended_early, fatal = outcome.ended_early, outcome.fatal
                removals = _removed_before(resumed)
                guard: mirror.RemovalLimitError | None = None
                if self.mode == "mirror" and ended_early is None and fatal is None and warning is None:
                    try:
                        removals, ended_early, fatal = self._mirror(
                            client, state, snapshot, checker, run_journal, removals, stop
                        )
                    except mirror.RemovalLimitError as exc:
                        guard = exc
                over_limit = stream.totals.over_limit
                result = self._result(
                    conn,
                    book,
                    outcome.job_ids,
                    removals,
                    ended_early,
                    fatal,
                    list_name,
                    [warning] if warning else [],
                    run_id,
                )
                if ended_early is None and fatal is None and guard is None and not over_limit:
                    run_journal.finished(result.to_dict())  # only a run that ended cleanly is closed for resuming
            finally:
                run_journal.close()
        self.notify(_done_event(result))
        if guard is not None:
            guard.result = result
            raise guard
        if ended_early is not None:
            raise ExportInterrupted(result) from None
        if fatal is not None:
            if isinstance(fatal, KlaviyoError):
                fatal.result = result
            raise fatal
        if over_limit:
            error = InputError(
                f"the segments have more than {self.max_profiles:,} rows, the limit of profiles per export: the "
                f"first {self.max_profiles:,} were exported and {over_limit:,} rows were not sent. Raise the limit: "
                f"max_profiles=N in Python, --max-profiles N in %klaviyo_export and klaviyo-magic export"
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    def _mirror(
        self,
        client: KlaviyoClient,
        state: ListState,
        snapshot: Snapshot,
        checker: RowChecker,
        run_journal: journal.Journal,
        before: pd.DataFrame,
        stop: threading.Event,
    ) -> tuple[pd.DataFrame, str | None, BaseException | None]:
        """Remove the leavers (after the guard); returns the removals, and how the removing ended."""
        hashes = mirror.leavers(snapshot, checker)
        if len(before):
            # The run being resumed removed these (Klaviyo said 204, the journal says so), but may have been
            # killed before the state recorded it: record it now, and do not count them twice.
            done = np.array([int(h) for h in before.attrs.get("email_hashes", [])], dtype=np.int64)
            state.forget(hashes[np.isin(hashes, done)])
            hashes = hashes[~np.isin(hashes, done)]
        mirror.check_guard(
            len(hashes) + int((before["status"] == "removed").sum()),
            members=len(snapshot),
            max_removals=self.max_removals,
            inputs_empty=not checker.distinct_emails,
            list_id=self.list_id,
        )
        if not len(hashes):
            return before, None, None
        remover = mirror.Remover(client, self.list_id, state, run_journal, notify=self.notify, stop=stop)
        try:
            removals = remover.remove(hashes)
        except KeyboardInterrupt as exc:
            return _joined(before, remover.unfinished(exc)), "interrupted", None
        ended_early = "cancelled" if stop.is_set() else None
        return _joined(before, removals), ended_early, remover.error

    # -- shared --------------------------------------------------------------------------------------------

    def _result(
        self,
        conn: Any,
        book: ReportBook,
        job_ids: list[str],
        removals: pd.DataFrame,
        ended_early: str | None,
        fatal: BaseException | None,
        list_name: str | None,
        warnings: list[str],
        run_id: str,
    ) -> ExportResult:
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
            counted=_counts(book),
            list_name=list_name,
            warnings=warnings,
            run_id=run_id,
        )

    def _unsent(self, conn: Any, reason: str) -> ExportResult:
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
        result = self._result(
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
        self.notify(_done_event(result))
        return result

    def _retrying(self, notice: RetryNotice) -> None:
        self.notify(ProgressEvent("retrying", 0, None, message=notice.message))


def account_id(client: KlaviyoClient, conn: Any) -> str:
    """The Klaviyo account of the connection's key (one ``GET /api/accounts``, remembered for this process: the
    endpoint allows 15 calls a minute). A key without the accounts:read scope gives ``?``."""
    digest = hashlib.sha256(conn.api_key.encode()).hexdigest()  # in memory only, never written anywhere
    key = (conn.base_url, digest)
    if key not in _ACCOUNTS:
        try:
            _ACCOUNTS[key] = str(client.get_account().get("id") or _UNKNOWN_ACCOUNT)
        except PermissionDeniedError:
            _ACCOUNTS[key] = _UNKNOWN_ACCOUNT
    return _ACCOUNTS[key]


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


def _counts(book: ReportBook) -> dict[str, int]:
    counts = book.counts()
    counts["partial"] = book.noted
    return counts


def _sample(profiles: list[str]) -> pd.DataFrame:
    """The first profiles as they would be sent, one column per field (``location.city``, ``properties.ltv``)."""
    attributes = [json.loads(profile)["attributes"] for profile in profiles]
    return pd.json_normalize(attributes) if attributes else pd.DataFrame(columns=["email"])


def _removed_before(resumed: journal.ResumeState | None) -> pd.DataFrame:
    """Members the run being resumed removed before it stopped: part of this run's removals."""
    if resumed is None or not resumed.removed:
        return pd.DataFrame(columns=REMOVAL_COLUMNS)
    rows = [
        (m.get("email"), m.get("profile_id"), "removed", None if m.get("profile_id") else mirror.GONE)
        for m in resumed.removed
    ]
    frame = mirror.removals_frame(rows)
    frame.attrs["email_hashes"] = [m.get("email_hash") for m in resumed.removed if m.get("email_hash") is not None]
    return frame


def _joined(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    if not len(before):
        return after
    return pd.concat([before, after], ignore_index=True)


def _done_event(result: ExportResult) -> ProgressEvent:
    """The last word of the progress display: how the export ended."""
    to_send = result.sent + result.not_sent + result.failed
    if result.interrupted:
        outcome, head = "interrupted", "Interrupted"
    elif result.error:
        outcome, head = "error", "Stopped by an error"
    elif not to_send:
        return ProgressEvent("done", 0, 0, outcome="empty", message="Nothing to send")
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
    return ProgressEvent(
        "done",
        result.sent,
        to_send,
        len(result.job_ids),
        outcome=outcome,
        message=f"{head}: {result.sent:,} of {to_send:,} sent",
    )


def _check_options(mode: str, max_removals: int | None, concurrency: int) -> None:
    if mode not in MODES:
        raise InputError(f"mode must be 'add' or 'mirror', not {mode!r}")
    if max_removals is not None and (
        not isinstance(max_removals, int) or isinstance(max_removals, bool) or max_removals < 0
    ):
        raise InputError(f"max_removals must be a whole number of members (0 or more), not {max_removals!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"concurrency must be at least 1, not {concurrency}")


def _check_list_id(list_id: Any) -> str:
    if not isinstance(list_id, str) or not list_id.strip():
        raise InputError(
            f"list_id must be a Klaviyo list id such as 'Y6nRLr', got {list_id!r}. "
            "Find it in Klaviyo under Lists & Segments > your list > Settings, or in the list's URL."
        )
    list_id = list_id.strip()
    if not _LIST_ID.match(list_id):
        raise InputError(
            f"list_id {list_id!r} does not look like a Klaviyo list id (letters and digits, e.g. 'Y6nRLr')."
        )
    return list_id
