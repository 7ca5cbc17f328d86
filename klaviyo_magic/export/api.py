"""export_segment(): push one or more DataFrame segments into a Klaviyo list, accounting for every row.

The work is split so each part stays simple:
- ``segment.py`` validates the input, cleans values and builds bounded import-job payloads;
- this module checks the arguments, resolves the connection, opens the run journal and starts the run;
- ``run.py`` submits the payloads concurrently (paced to Klaviyo's limits by the client) and stops
  cleanly; ``jobs.py`` watches the jobs with one list call for many jobs and reads their import errors;
  ``ledger.py`` collects the outcome of every row and settles the report;
- ``klaviyo_magic.client`` does HTTP, retries and error translation; ``klaviyo_magic.progress`` draws.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..client import KlaviyoClient
from ..errors import InputError
from ..progress import reporter
from ..result import ExportResult
from . import journal
from .report import release_arrow_scratch
from .run import ExportRun, RunJournal
from .segment import Plan, iter_batches, plan_export

_LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def export_segment(
    segments: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    email: str,
    list_id: str,
    connection: Any = None,
    properties: Sequence[str] | dict[str, str] | None = None,
    dry_run: bool = False,
    progress: Any = None,
    max_profiles: int = 1_000_000,
    wait_for_jobs: bool = True,
    concurrency: int = 6,
    resume: bool = False,
    cancel: threading.Event | None = None,
) -> ExportResult:
    """Export the rows of ``segments`` (a DataFrame or a list of them) into the Klaviyo list ``list_id``.

    ``email`` names the email column. ``properties`` picks more columns: a list of column names (columns
    named like Klaviyo fields, e.g. ``first_name`` or ``city``, go to those fields, others become custom
    properties) or a ``{column: field}`` mapping. ``connection`` is a saved connection's name, a
    :class:`~klaviyo_magic.connections.Connection`, or ``None`` for the default one (or ``KLAVIYO_API_KEY``).

    Every input row ends up in ``result.report`` exactly once as ``sent``, ``skipped`` (no valid email),
    ``duplicate`` (same email as an earlier row, sent once) or ``failed`` (with Klaviyo's reason).
    ``dry_run=True`` does every local check and reports what would be sent, without any request.
    ``progress=True`` shows a progress bar; a callable receives :class:`~klaviyo_magic.progress.ProgressEvent`.
    With ``wait_for_jobs=False`` the export returns once Klaviyo has accepted every import job, without
    waiting for Klaviyo to process them (asynchronous import errors are then not reported).

    Every real export keeps a journal under ``$KLAVIYO_MAGIC_HOME/runs``. With ``resume=True`` an export
    continues the newest unfinished run of the same input and settings (killed, interrupted, cancelled, or
    stopped by an error): import jobs Klaviyo already accepted are watched, not re-sent, and the report covers
    the whole run. An unfinished run of this list for other input or settings is refused rather than resumed;
    with no unfinished run, the export simply starts.

    ``cancel`` is a :class:`threading.Event` that another thread may set to stop the export (the form's Cancel
    button does). It is checked before each import job is sent and while waiting for jobs. Once it is set, the
    export ends as Ctrl-C ends it: no new job is sent, a request already on its way is allowed to finish, jobs
    Klaviyo accepted count as sent, the other rows fail with the reason "not sent: the export was cancelled",
    and :class:`~klaviyo_magic.errors.ExportInterrupted` is raised, carrying that partial result. A cancelled
    run can be resumed like an interrupted one. A dry run ignores ``cancel``.

    Raises ``InputError`` (a ``ValueError``) for input mistakes before any request, and ``KlaviyoError``
    subclasses for problems reported by Klaviyo; those carry the partial result as ``exc.result``. Ctrl-C
    (or ``cancel``) raises :class:`~klaviyo_magic.errors.ExportInterrupted` (a ``KeyboardInterrupt``) with
    ``.result``.
    """
    started = time.monotonic()
    list_id = _check_list_id(list_id)
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, not {concurrency}")
    notify = reporter(progress)
    plan = plan_export(segments, email=email, properties=properties, max_profiles=max_profiles)
    try:
        if dry_run:
            release_arrow_scratch()
            for batch in iter_batches(plan):
                plan.mark(batch.positions, "would_send", "dry run: not sent")
            return ExportResult(list_id, plan.report, duration=time.monotonic() - started, dry_run=True)
        from .. import connections

        conn = connections.resolve(connection)
        connections.require_consent(conn)
        frames = [segments] if isinstance(segments, pd.DataFrame) else list(segments)
        run_journal = _open_journal(frames, plan, list_id, conn, properties, resume)
        release_arrow_scratch()
        try:
            with KlaviyoClient(conn, pool_size=concurrency + 2) as client:
                run = ExportRun(plan, client, list_id, notify, concurrency, wait_for_jobs, run_journal, cancel=cancel)
                return run.execute(started, connection_name=getattr(conn, "name", None))
        finally:
            run_journal.journal.close()
    finally:
        notify.close()


def _open_journal(
    frames: list[pd.DataFrame], plan: Plan, list_id: str, conn: Any, properties: Any, resume: bool
) -> RunJournal:
    """Start this run's journal, or reopen the unfinished run it resumes (``journal.py``)."""
    settings = {
        "list_id": list_id,
        "email": plan.email_column,
        "properties": properties if properties is None or isinstance(properties, dict) else list(properties),
        "connection": getattr(conn, "name", None),
        "base_url": getattr(conn, "base_url", None),
        "rows": len(plan.report),
    }
    digest = journal.fingerprint(frames, settings)
    state = journal.find_resumable(digest, list_id) if resume else None
    if state is None:
        return RunJournal(journal.Journal.start(digest, settings), None)
    return RunJournal(journal.Journal.reopen(state), state)


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
