"""A dry run: everything but the writes. The rows' fates, Klaviyo's read-only answers (does the key work, does the
list exist?) and the sync plan (what would be added, updated, left unchanged and removed)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import weakref
from typing import Any

import pandas as pd

from .. import connections
from ..client import KlaviyoClient, Stopped
from ..errors import ConfigError, ExportInterrupted
from ..result import REMOVAL_COLUMNS, ExportResult
from . import journal, mirror
from .call import ExportCall, account_id, check_list, sample
from .checks import RowChecker
from .report import ReportBook
from .state import ListState, StateStore, state_path, unreadable_to_preview
from .stream import RowStream

CANCELLED = "The dry run was cancelled before it finished; nothing was sent."


def dry_run(job: ExportCall, connection: Any, *, offline: bool, cancel: threading.Event | None = None) -> ExportResult:
    """Everything but the writes: the rows' fates, Klaviyo's read-only answers, the sync plan. A set ``cancel``
    (the form's Cancel) ends it, also while Klaviyo is being retried, with ``ExportInterrupted`` (no result:
    a plan cut short would be a wrong plan)."""
    conn, checked, account, list_name = None, "Not checked with Klaviyo (offline).", None, None
    if offline:
        conn = _local_connection(connection)  # no request: only to find the list's sync state
    else:
        try:
            conn, checked, account, list_name = _check_with_klaviyo(job, connection, cancel)
        except Stopped:
            raise ExportInterrupted(None, CANCELLED) from None
    state, warnings = _existing_state(job, conn, account)
    snapshot = state.snapshot() if state is not None else None
    checker = RowChecker(job.email, job.field_map, state=snapshot, full=job.full)
    run_id = journal.new_run_id()
    report = journal.report_path(run_id) if job.streamed else None
    try:
        book = ReportBook(len(job.sources), report)
        stream = RowStream(job.sources, job.columns, checker, book, max_profiles=job.max_profiles)
        for batch in stream.batches():
            if cancel is not None and cancel.is_set():
                raise ExportInterrupted(None, CANCELLED)
            book.mark(batch.positions, "would_send")
        removals = pd.DataFrame(columns=REMOVAL_COLUMNS)
        if job.mode == "mirror" and state is None and not warnings:
            warnings.append(mirror.NO_STATE.format(list_id=job.list_id))
        if job.mode == "mirror" and state is not None and snapshot is not None:
            hashes = mirror.leavers(snapshot, checker)
            removals = _removals(job, conn, state, hashes, offline=offline, cancel=cancel)
            try:
                mirror.check_guard(
                    len(hashes),
                    members=len(snapshot),
                    max_removals=job.max_removals,
                    inputs_empty=not checker.distinct_emails,
                    list_id=job.list_id,
                )
            except mirror.RemovalLimitError as exc:
                warnings.append(str(exc).replace(mirror.STOPPED, mirror.WOULD_STOP, 1))
        result = job.result(
            conn, book, [], removals, None, None, list_name, warnings, run_id,
            dry_run=True, checked=checked, sample=sample(stream.totals.sample),
        )  # fmt: skip
    except BaseException:
        if report is not None:  # a plan cut short has no result to keep its partial report for
            shutil.rmtree(report.parent, ignore_errors=True)
        raise
    finally:
        if state is not None:
            state.store.close()
    if report is not None:  # nothing resumes a dry run: its report file lives as long as its result
        weakref.finalize(result, shutil.rmtree, report.parent, True)
    return result


def _removals(
    job: ExportCall, conn: Any, state: ListState, hashes: Any, *, offline: bool, cancel: threading.Event | None
) -> pd.DataFrame:
    """The leavers, looked up in the list as the real run will (read-only), so that the plan shows who would be
    kept (someone else added them first); offline, all of them as to remove."""
    if offline or not len(hashes):
        return mirror.planned(state, hashes, "would_remove", None)
    try:
        with KlaviyoClient(conn, stop=cancel, on_retry=job.retrying) as client:
            return mirror.previewed(client, job.list_id, state, hashes)
    except Stopped:
        raise ExportInterrupted(None, CANCELLED) from None


def _check_with_klaviyo(
    job: ExportCall, connection: Any, cancel: threading.Event | None = None
) -> tuple[Any, str, str | None, str | None]:
    """Read-only: does the key work, does the list exist? Without a connection at all, the dry run stays
    local and says so."""
    try:
        conn = connections.resolve(connection)
    except ConfigError:
        if connection is not None:
            raise
        return None, "Not checked with Klaviyo: no connection is set up (see %klaviyo_connection add).", None, None
    with KlaviyoClient(conn, stop=cancel, on_retry=job.retrying) as client:
        account = account_id(client, conn)
        name = check_list(client, job.list_id, conn)
    checked = f"Checked with Klaviyo: the key works and list '{name}' ({job.list_id}) exists."
    return conn, checked, account, name


def _local_connection(connection: Any) -> Any:
    """The connection as saved here, if there is one: resolving it makes no request."""
    try:
        return connections.resolve(connection)
    except ConfigError:
        return None


def _existing_state(job: ExportCall, conn: Any, account: str | None) -> tuple[ListState | None, list[str]]:
    """The list's sync state if there is one, and what to say when it cannot be read; a dry run creates, changes
    and moves nothing."""
    if conn is None or not state_path().exists():
        return None, []
    store, problem = StateStore.open_to_read()
    if store is None:
        return None, [problem] if problem else []
    try:
        state = store.list_state(conn.base_url, job.list_id, account, create=False)
        if state is not None:
            state.snapshot()  # read now: damage deeper in the file shows here
    except sqlite3.DatabaseError as exc:
        store.close()
        return None, [unreadable_to_preview(store.path, exc)]
    if state is None:
        store.close()
    return state, []
