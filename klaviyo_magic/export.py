"""export_segment(): push one or more DataFrame segments into a Klaviyo list, accounting for every row.

The work is split so each part stays simple:
- ``segment.py`` validates the input, cleans values and builds bounded import-job payloads;
- this module submits those payloads concurrently (paced to Klaviyo's limits by the client), watches the jobs
  with one list call for many jobs, reads their import errors, and writes the outcome of every row;
- ``client.py`` does HTTP, retries and error translation; ``progress.py`` draws.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from . import journal
from .client import KlaviyoClient
from .errors import ExportInterrupted, InputError, KlaviyoError, NotFoundError, ValidationError
from .progress import ProgressEvent, reporter
from .result import ExportResult
from .segment import Batch, Plan, iter_batches, plan_export

# /data/attributes/profiles/data/<i>/... names the profile Klaviyo rejected (klaviyo-api.md §2.5).
_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")
_LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Seconds between job polls: never closer than this (the job reads share a 10/s, 150/min budget, §2.7)...
_POLL_MIN = 0.1
# ...and never further apart than this, however slowly Klaviyo is going.
_POLL_MAX = 5.0


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
    continues the newest unfinished run of the same input and settings (killed, interrupted, or stopped by an
    error): import jobs Klaviyo already accepted are watched, not re-sent, and the report covers the whole
    run. An unfinished run of this list for other input or settings is refused rather than resumed; with no
    unfinished run, the export simply starts.

    Raises ``InputError`` (a ``ValueError``) for input mistakes before any request, and ``KlaviyoError``
    subclasses for problems reported by Klaviyo; those carry the partial result as ``exc.result``. Ctrl-C
    raises :class:`~klaviyo_magic.errors.ExportInterrupted` (a ``KeyboardInterrupt``) with ``.result``.
    """
    started = time.monotonic()
    list_id = _check_list_id(list_id)
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, not {concurrency}")
    notify = reporter(progress)
    plan = plan_export(segments, email=email, properties=properties, max_profiles=max_profiles)
    try:
        if dry_run:
            _release_scratch_memory()
            for batch in iter_batches(plan):
                plan.mark(batch.positions, "would_send", "dry run: not sent")
            return ExportResult(list_id, plan.report, duration=time.monotonic() - started, dry_run=True)
        from . import connections

        conn = connections.resolve(connection)
        connections.require_consent(conn)
        frames = [segments] if isinstance(segments, pd.DataFrame) else list(segments)
        run_journal = _open_journal(frames, plan, list_id, conn, properties, resume)
        _release_scratch_memory()
        try:
            with KlaviyoClient(conn, pool_size=concurrency + 2) as client:
                run = _ExportRun(plan, client, list_id, notify, concurrency, wait_for_jobs, run_journal)
                return run.execute(started, connection_name=getattr(conn, "name", None))
        finally:
            run_journal.journal.close()
    finally:
        notify.close()


@dataclass
class _RunJournal:
    journal: journal.Journal
    resumed: journal.ResumeState | None


def _open_journal(
    frames: list[pd.DataFrame], plan: Plan, list_id: str, conn: Any, properties: Any, resume: bool
) -> _RunJournal:
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
        return _RunJournal(journal.Journal.start(digest, settings), None)
    return _RunJournal(journal.Journal.reopen(state), state)


def _release_scratch_memory() -> None:
    """Give back the scratch memory pyarrow's allocator kept after planning and fingerprinting the input.

    The email checks run pyarrow string kernels over whole columns; their allocator (mimalloc) keeps the freed
    buffers for reuse, about 100 bytes per row, which would otherwise stay on top of the export's own memory
    for the whole run.
    """
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        try:
            pyarrow.default_memory_pool().release_unused()
        except Exception:  # an optional optimisation: never a reason for an export to fail
            pass


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


@dataclass
class _Outcomes:
    """Row outcomes collected from worker threads; applied to the report by the main thread only."""

    marks: list[tuple[np.ndarray, str, str | None]] = field(default_factory=list)
    jobs: dict[str, np.ndarray] = field(default_factory=dict)  # job id -> report positions in that job
    job_order: list[str] = field(default_factory=list)
    earliest_job: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, positions: np.ndarray, status: str, reason: str | None) -> None:
        with self.lock:
            self.marks.append((positions, status, reason))


class _ExportRun:
    """One real export: submit batches concurrently, watch the jobs, settle every row."""

    def __init__(
        self,
        plan: Plan,
        client: KlaviyoClient,
        list_id: str,
        notify: Any,
        concurrency: int,
        wait_for_jobs: bool,
        run_journal: _RunJournal,
    ) -> None:
        self.plan = plan
        self.client = client
        self.list_id = list_id
        self.notify = notify
        self.concurrency = concurrency
        self.wait_for_jobs = wait_for_jobs
        self.out = _Outcomes()
        self.stop = threading.Event()
        self.fatal: KlaviyoError | None = None
        self.to_send = len(plan.pending_positions())
        self.accepted = 0
        self.processed = 0
        self.unfinished: set[str] = set()
        self.journal = run_journal.journal
        self.resumed = run_journal.resumed

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self, started: float, *, connection_name: str | None) -> ExportResult:
        interrupted = False
        try:
            self._check_list()
            self._submit_all()
            if self.fatal is None and self.wait_for_jobs:
                self._watch_jobs()
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
        except KlaviyoError as exc:
            self.fatal = self.fatal or exc
        result = self._settle(started, connection_name, interrupted)
        if not interrupted and self.fatal is None:
            self.journal.finished(result.to_dict())  # only a run that ended cleanly is closed for resuming
        if interrupted:
            raise ExportInterrupted(result) from None
        if self.fatal is not None:
            self.fatal.result = result
            raise self.fatal
        return result

    def _check_list(self) -> None:
        """Fail fast, with a useful message, before sending anything to a list that does not exist."""
        try:
            self.client.get_list(self.list_id)
        except NotFoundError as exc:
            exc.message = (
                f"List '{self.list_id}' was not found in the Klaviyo account of connection "
                f"'{getattr(self.client.connection, 'name', '?')}'. Check the list id (Klaviyo > Lists & Segments "
                "> the list > Settings) or create the list first."
            )
            exc.args = (exc.message,)
            raise

    # -- submitting --------------------------------------------------------------------------------------

    def _submit_all(self) -> None:
        """Build batches in this thread while workers send them; at most a few batches live at once."""
        in_flight: set[Future] = set()
        limit = self.concurrency + 2  # a batch takes milliseconds to build: two spare ones keep workers busy
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="klaviyo-export") as pool:
            try:
                for batch in iter_batches(self.plan):
                    if self.stop.is_set():
                        break
                    batch = self._replay(batch)
                    if batch is None:
                        continue
                    while len(in_flight) >= limit:
                        done, in_flight = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                        self._reraise(done)
                    in_flight.add(pool.submit(self._send, batch))
                while in_flight:
                    done, in_flight = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                    self._reraise(done)
            except BaseException:
                self.stop.set()
                for future in in_flight:
                    future.cancel()
                raise

    def _replay(self, batch: Batch) -> Batch | None:
        """On resume, take what the journal says about this batch: rows Klaviyo rejected stay failed, and a
        batch Klaviyo accepted is watched, not sent again. Returns the batch still to send, if any."""
        if self.resumed is None:
            return batch
        rejected = dict(self.resumed.rejected.get(batch.number, []))
        if rejected:
            inside = np.flatnonzero(np.isin(batch.positions, list(rejected)))
            for position in batch.positions[inside]:
                self.out.mark(np.array([position]), "failed", rejected[int(position)])
            batch = batch.without(inside.tolist())
        accepted = self.resumed.accepted.get(batch.number)
        if accepted is None:
            return batch
        job_id, created_at = accepted
        self._accepted({"id": job_id, "attributes": {"created_at": created_at}}, batch, record=False)
        return None

    @staticmethod
    def _reraise(done: set[Future]) -> None:
        for future in done:
            future.result()  # surfaces a bug in _send instead of losing it

    def _send(self, batch: Batch) -> None:
        while len(batch.positions) and not self.stop.is_set():
            action = f"creating import job {batch.number} ({len(batch.positions):,} profiles) for list '{self.list_id}'"
            try:
                job = self.client.create_import_job(batch.body(self.list_id), action=action)
            except ValidationError as exc:
                # Klaviyo rejects the whole request for a few bad profiles: set those aside, resend the rest.
                # Pointers outside this batch mean we cannot tell which rows are bad: resending would loop.
                rejected = _rejected_profiles(exc.errors)
                if not rejected or max(rejected) >= len(batch.positions):
                    return self._fail(exc)
                reasons = [(int(batch.positions[i]), f"rejected by Klaviyo: {d}") for i, d in rejected.items()]
                self.journal.rejected(batch.number, reasons)
                for position, reason in reasons:
                    self.out.mark(np.array([position]), "failed", reason)
                batch = batch.without(rejected)
                continue
            except KlaviyoError as exc:
                return self._fail(exc)
            self._accepted(job, batch)
            return None
        return None

    def _fail(self, exc: KlaviyoError) -> None:
        with self.out.lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def _accepted(self, job: dict, batch: Batch, *, record: bool = True) -> None:
        job_id, positions = job["id"], batch.positions
        created_at = (job.get("attributes") or {}).get("created_at")
        if record:  # before anything else: this line is what saves re-sending the batch after a crash
            self.journal.accepted(batch.number, job_id, created_at, len(positions))
        created = _parse_time(created_at)
        with self.out.lock:
            self.out.jobs[job_id] = positions
            self.out.job_order.append(job_id)
            self.unfinished.add(job_id)
            if created and (self.out.earliest_job is None or created < self.out.earliest_job):
                self.out.earliest_job = created
            self.accepted += len(positions)
            event = ProgressEvent("sending", self.accepted, self.to_send, len(self.out.jobs))
        self.notify(event)

    # -- watching the jobs -------------------------------------------------------------------------------

    def _watch_jobs(self) -> None:
        """Poll until every job is finished. One list call reports up to 100 jobs (klaviyo-api.md §2.6), so
        polling costs a few calls per round instead of one per job.

        Klaviyo's processing speed is undocumented (§5.4), so the wait between polls follows what the polls
        show: once two polls have measured how fast profiles are being processed, the next poll is timed for
        when the remaining profiles should be done (at least ``_POLL_MIN`` apart, so a nearly finished import
        is not polled in a tight loop); without measurable progress the wait grows from 0.2 s to 5 s.
        """
        delay = 0.2
        previous: tuple[float, int] | None = None  # (when, profiles processed) at the last poll
        self.notify(ProgressEvent("processing", self.processed, self.to_send, len(self.out.jobs)))
        while self.unfinished:
            in_progress = remaining = 0
            for job_id, job in self._job_states().items():
                attrs = job.get("attributes") or {}
                status = attrs.get("status")
                if status in ("complete", "cancelled", "failed"):
                    self._finished(job_id, job)
                else:
                    done = _count(attrs.get("completed_count")) + _count(attrs.get("failed_count"))
                    in_progress += done
                    remaining += max(_count(attrs.get("total_count")) - done, 0)
            self.notify(ProgressEvent("processing", self.processed, self.to_send, len(self.out.jobs)))
            if not self.unfinished:
                break
            now, progress = time.monotonic(), self.processed + in_progress
            if previous is not None and progress > previous[1] and now > previous[0]:
                rate = (progress - previous[1]) / (now - previous[0])
                wait = min(max(remaining / rate, _POLL_MIN), _POLL_MAX)
                delay = 0.2
            else:
                wait, delay = delay, min(delay * 1.5, _POLL_MAX)
            previous = (now, progress)
            time.sleep(wait)

    def _job_states(self) -> dict[str, dict]:
        wanted = set(self.unfinished)
        found: dict[str, dict] = {}
        for job in self.client.iter_import_jobs():
            if job.get("id") in wanted:
                found[job["id"]] = job
                if len(found) == len(wanted):
                    break
            created = _parse_time((job.get("attributes") or {}).get("created_at"))
            if created and self.out.earliest_job and created < self.out.earliest_job:
                break  # newest first: everything further is older than our first job
        for job_id in wanted - set(found):  # not in the listing (e.g. a very busy account): ask directly
            found[job_id] = self.client.get_import_job(job_id)
        return found

    def _finished(self, job_id: str, job: dict) -> None:
        positions = self.out.jobs[job_id]
        attrs = job.get("attributes") or {}
        status = attrs.get("status")
        if status != "complete":
            self.out.mark(positions, "failed", f"Klaviyo import job {job_id} ended as '{status}'")
        else:
            failed = set()
            if attrs.get("failed_count"):
                failed = self._import_errors(job_id, positions)
            sent = positions if not failed else np.array([p for p in positions if p not in failed], dtype=np.int64)
            self.out.mark(sent, "sent", None)
        self.unfinished.discard(job_id)
        self.processed += len(positions)

    def _import_errors(self, job_id: str, positions: np.ndarray) -> set[int]:
        """Mark the profiles Klaviyo failed while processing the job; return their report positions."""
        emails = self.plan.report["email"].to_numpy()[positions]
        by_email = {email: int(pos) for email, pos in zip(emails, positions, strict=True)}
        failed: set[int] = set()
        for error in self.client.iter_import_errors(job_id):
            attrs = error.get("attributes") or {}
            payload = attrs.get("original_payload") or {}
            email = (payload.get("email") or (payload.get("attributes") or {}).get("email") or "").strip().lower()
            pos = by_email.get(email)
            if pos is None or pos in failed:
                continue
            failed.add(pos)
            detail = attrs.get("detail") or attrs.get("title") or "import error"
            self.out.mark(np.array([pos]), "failed", f"Klaviyo import error ({attrs.get('code', 'error')}): {detail}")
        return failed

    # -- settling every row ------------------------------------------------------------------------------

    def _settle(self, started: float, connection_name: str | None, interrupted: bool) -> ExportResult:
        # Jobs Klaviyo accepted but we did not see finish (not waiting, interrupted, or an error while
        # watching): Klaviyo has the profiles, so they count as sent, with the reason saying what is unknown.
        for job_id in self.unfinished:
            self.out.mark(
                self.out.jobs[job_id],
                "sent",
                f"accepted by Klaviyo in import job {job_id}; not watched to completion",
            )
        self._apply_marks()
        leftover = self.plan.pending_positions()
        if len(leftover):
            if interrupted:
                why = "not sent: the export was interrupted"
            elif self.fatal is not None:
                why = f"not sent: the export stopped after an error ({_first_line(self.fatal)})"
            else:
                why = "not sent"
            self.plan.mark(leftover, "failed", why)
        self.notify(ProgressEvent("done", self.processed, self.to_send, len(self.out.jobs)))
        return ExportResult(
            self.list_id,
            self.plan.report,
            job_ids=list(self.out.job_order),
            duration=time.monotonic() - started,
            connection=connection_name,
            interrupted=interrupted,
            error=str(self.fatal) if self.fatal is not None else None,
        )

    def _apply_marks(self) -> None:
        """Write the collected outcomes into the report with one write per status.

        Each report write costs milliseconds however few rows it touches, so applying the marks one by one
        (a hundred jobs, plus one per failed profile) took longer than the rest of a million-row export's
        local work. The marks are replayed in order into arrays first, so a later mark still wins.
        """
        marks = self.out.marks
        if not marks:
            return
        rows = len(self.plan.report)
        status = np.empty(rows, dtype=object)
        reason = np.empty(rows, dtype=object)
        for positions, mark_status, mark_reason in marks:
            status[positions] = mark_status
            reason[positions] = mark_reason
        for mark_status in dict.fromkeys(mark for _, mark, _ in marks):
            where = np.flatnonzero(status == mark_status)
            reasons = reason[where]
            self.plan.mark(where, mark_status, None if pd.isna(reasons).all() else reasons)
        marks.clear()


def _rejected_profiles(errors: list[dict]) -> dict[int, str]:
    """Map profile index -> Klaviyo's detail, for the errors that point at one profile."""
    rejected: dict[int, str] = {}
    for error in errors:
        match = _POINTER.match(str((error.get("source") or {}).get("pointer") or ""))
        if match is None:
            return {}  # an error about the request as a whole: resending parts would not help
        index = int(match.group(1))
        detail = str(error.get("detail") or error.get("title") or "invalid")
        rejected[index] = f"{rejected[index]}; {detail}" if index in rejected else detail
    return rejected


def _count(value: Any) -> int:
    """A job's count attribute (nullable in the spec) as an int."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
