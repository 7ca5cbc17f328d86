"""export_segment(): push one or more segments into a Klaviyo list and keep the list in step, every row accounted for.

This module checks the arguments and runs: a dry run (``preview.py``) or a real one, which asks Klaviyo who the
account is and whether the list exists (``call.py``), takes the list's lock, opens the sync state (``state.py``)
and the run journal (``journal.py``), sends (``run.py``) and, in mirror mode, removes (``mirror.py``). The package
docstring (``__init__.py``) maps the rest.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .. import connections
from ..client import KlaviyoClient, Stopped
from ..errors import ExportInterrupted, InputError, KlaviyoError
from ..progress import reporter
from ..result import REMOVAL_COLUMNS, ExportResult
from . import journal, mirror
from .call import ExportCall, account_id, check_list, done_event
from .checks import RowChecker
from .fields import check_columns, resolve_fields
from .preview import dry_run as dry_run_of
from .report import ReportBook
from .run import ExportRun
from .sources import open_sources
from .state import ListState, StateStore, list_lock, run_description
from .stream import RowStream, check_row_limit

_LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MODES = ("add", "mirror")
UNWATCHED = (
    "wait_for_jobs=False: the import jobs were not watched, so the sync state does not record these rows and the "
    "next run sends them again"
)


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
    :class:`~klaviyo_magic.progress.ProgressEvent`; without either, only retry notices ("Klaviyo unreachable,
    retrying (3/8) ...") are printed, one line each on stderr. With ``wait_for_jobs=False`` the export returns once
    Klaviyo has accepted every import job, without waiting for Klaviyo to process them (not in mirror mode: the
    sync state records only what Klaviyo confirmed).

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
    _check_options(mode, max_removals, concurrency, wait_for_jobs, offline=offline, dry_run=dry_run)
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
    job = ExportCall(
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
            return dry_run_of(job, connection, offline=offline, cancel=cancel)
        return _RealRun(job).run(
            connection, resume=resume, cancel=cancel, wait_for_jobs=wait_for_jobs, concurrency=concurrency
        )
    finally:
        job.notify.close()


class _RealRun:
    """A real run of one export: the account and list checked, the state and journal opened, the rows sent."""

    def __init__(self, job: ExportCall) -> None:
        self.job = job

    def run(
        self, connection: Any, *, resume: bool, cancel: threading.Event | None, wait_for_jobs: bool, concurrency: int
    ) -> ExportResult:
        job = self.job
        conn = connections.resolve(connection)
        connections.require_consent(conn)
        stop = cancel if cancel is not None else threading.Event()
        client = KlaviyoClient(conn, pool_size=concurrency + 2, stop=stop, on_retry=job.retrying)
        try:
            try:
                account = account_id(client, conn)
                list_name = check_list(client, job.list_id, conn)
                # Members who joined no later than this were in the list before this run: a mirror run never
                # takes them for members klaviyo-magic put there (mirror.py).
                newest_join = mirror.newest_join(client, job.list_id, stop)
            except Stopped:
                raise ExportInterrupted(job.unsent(conn, "not sent: the export was cancelled")) from None
            except KeyboardInterrupt:
                raise ExportInterrupted(job.unsent(conn, "not sent: the export was interrupted")) from None
            except KlaviyoError as exc:
                exc.result = job.unsent(conn, f"not sent: the export stopped after an error ({exc.status or exc})")
                raise
            settings = {
                "list_id": job.list_id,
                "account": account,
                "base_url": conn.base_url,
                "email": job.email,
                "fields": {str(column): ".".join(path) for column, path in job.field_map.items()},
                "mode": job.mode,
            }
            journal.prune()
            resumed = journal.find_resumable(settings) if resume else None
            run_id = resumed.run_id if resumed is not None else journal.new_run_id()
            # The list's lock first: a second run stops here, before it opens (or could set aside) the state.
            with list_lock(conn.base_url, account, job.list_id, run_description(run_id)):
                store, set_aside = StateStore.open()
                try:
                    try:
                        known = store.find_list(conn.base_url, job.list_id, account) is not None
                    except sqlite3.DatabaseError as exc:  # damage in the lists table: as unreadable as any
                        set_aside, known = store.set_aside(exc), False
                    state = store.list_state(conn.base_url, job.list_id, account, create=True)
                    assert state is not None
                    first_mirror = job.mode == "mirror" and not known and set_aside is None
                    return self._run_with_state(
                        conn,
                        client,
                        state,
                        list_name,
                        set_aside or (mirror.NO_STATE.format(list_id=job.list_id) if first_mirror else None),
                        fresh=set_aside is not None,
                        settings=settings,
                        resumed=resumed,
                        run_id=run_id,
                        newest_join=newest_join,
                        stop=stop,
                        wait_for_jobs=wait_for_jobs,
                        concurrency=concurrency,
                    )
                finally:
                    store.close()
        finally:
            client.halt()  # a head start still running (the mirror's leaver lookups) sends nothing after the run
            client.close()

    def _run_with_state(
        self,
        conn: Any,
        client: KlaviyoClient,
        state: ListState,
        list_name: str | None,
        warning: str | None,
        *,
        fresh: bool,
        settings: dict[str, Any],
        resumed: journal.ResumeState | None,
        run_id: str,
        newest_join: str | None,
        stop: threading.Event,
        wait_for_jobs: bool,
        concurrency: int,
    ) -> ExportResult:
        job = self.job
        run_journal = journal.Journal.reopen(resumed) if resumed else journal.Journal.start(settings, run_id)
        try:
            try:
                run_number = state.start_run(run_id, newest_join)  # reads the state: a damaged database shows here
            except sqlite3.DatabaseError as exc:
                warning, fresh = state.store.set_aside(exc), True  # damaged; a busy state raises StateError
                state = state.store.list_state(conn.base_url, job.list_id, state.account_id, create=True)
                assert state is not None
                run_number = state.start_run(run_id, newest_join)
            snapshot = state.snapshot()
            checker = RowChecker(
                job.email,
                job.field_map,
                state=snapshot,
                full=job.full,
                resumed_run=run_number if resumed else None,
            )
            book = ReportBook(len(job.sources), journal.report_path(run_id) if job.streamed else None)
            stream = RowStream(job.sources, job.columns, checker, book, max_profiles=job.max_profiles)
            phase = None
            if job.mode == "mirror" and not fresh:  # a state set aside: nobody is removed on doubt
                remover = mirror.Remover(client, job.list_id, state, run_journal, notify=job.notify, stop=stop)
                phase = mirror.MirrorPhase(remover, snapshot, checker, max_removals=job.max_removals,
                                           removed_before=resumed.removed if resumed else [])  # fmt: skip
            if phase is not None:
                phase.start_early(job.sources, job.email)
            run = ExportRun(
                stream,
                client,
                job.list_id,
                book,
                notify=job.notify,
                journal=run_journal,
                resumed=resumed,
                concurrency=concurrency,
                wait_for_jobs=wait_for_jobs,
                cancel=stop,
                state=state,
                run_number=run_number,
                expected_rows=job.expected,
                on_input_read=(lambda: phase.prepare()) if phase is not None else None,
            )
            outcome = run.execute()
            ended_early, fatal = outcome.ended_early, outcome.fatal
            removals = phase.before if phase is not None else pd.DataFrame(columns=REMOVAL_COLUMNS)
            guard: mirror.RemovalLimitError | None = None
            if phase is not None and ended_early is None and fatal is None:
                try:
                    removals, ended_early, fatal = phase.finish()
                except mirror.RemovalLimitError as exc:
                    guard = exc
            over_limit = stream.totals.over_limit
            result = job.result(
                conn,
                book,
                outcome.job_ids,
                removals,
                ended_early,
                fatal,
                list_name,
                [*([warning] if warning else []), *([] if wait_for_jobs else [UNWATCHED])],
                run_id,
                input_complete=stream.finished,
            )
            if ended_early is None and fatal is None and guard is None and not over_limit:
                run_journal.finished(result.to_dict())  # only a run that ended cleanly is closed for resuming
                if wait_for_jobs:
                    state.clear_sent(run_number)
        finally:
            run_journal.close()
        job.notify(done_event(result))
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
                f"the segments have more than {job.max_profiles:,} rows, the limit of profiles per export: the "
                f"first {job.max_profiles:,} were exported and {over_limit:,} rows were not sent. Raise the limit: "
                f"max_profiles=N in Python, --max-profiles N in %klaviyo_export and klaviyo-magic export"
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result


def _check_options(
    mode: str, max_removals: int | None, concurrency: int, wait_for_jobs: bool, *, offline: bool, dry_run: bool
) -> None:
    if offline and not dry_run:  # whoever asked for no request must not find their rows sent
        raise InputError("offline=True only goes with dry_run=True: a real export has to talk to Klaviyo")
    if mode not in MODES:
        raise InputError(f"mode must be 'add' or 'mirror', not {mode!r}")
    if mode == "mirror" and not wait_for_jobs:
        # Unwatched jobs never reach the sync state, so the next run's leavers would be computed from a stale one.
        raise InputError(
            "mode='mirror' needs wait_for_jobs=True: the list's state records only the rows Klaviyo confirmed, "
            "so mirror runs wait for the import jobs"
        )
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
