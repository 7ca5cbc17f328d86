"""One real export run: submit the batches concurrently, set aside profiles Klaviyo rejects and resend the rest,
stop cleanly on an error, Ctrl-C or a cancel, then watch the jobs (``jobs.py``) and settle every row
(``ledger.py``). ``api.py`` prepares the run; the client paces and retries each request.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..client import KlaviyoClient
from ..errors import ExportInterrupted, KlaviyoError, NotFoundError, ValidationError
from ..progress import ProgressEvent
from ..result import ExportResult
from . import journal
from .jobs import JobWatcher
from .ledger import Ledger
from .segment import Batch, Plan, iter_batches

# /data/attributes/profiles/data/<i>/... names the profile Klaviyo rejected (docs/klaviyo-api.md §2.5).
_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")


class _Cancelled(Exception):
    """The caller's cancel event was set: the run ends as Ctrl-C would end it."""


@dataclass
class RunJournal:
    journal: journal.Journal
    resumed: journal.ResumeState | None


class ExportRun:
    """One real export: submit batches concurrently, watch the jobs, settle every row."""

    def __init__(
        self,
        plan: Plan,
        client: KlaviyoClient,
        list_id: str,
        notify: Any,
        concurrency: int,
        wait_for_jobs: bool,
        run_journal: RunJournal,
        *,
        cancel: threading.Event | None = None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.list_id = list_id
        self.notify = notify
        self.concurrency = concurrency
        self.wait_for_jobs = wait_for_jobs
        self.ledger = Ledger()
        self.stop = threading.Event()  # set by us: an error, Ctrl-C or a cancel ends the submitting
        self.cancel = cancel if cancel is not None else threading.Event()  # set by the caller
        self.fatal: KlaviyoError | None = None
        self.to_send = len(plan.pending_positions())
        self.journal = run_journal.journal
        self.resumed = run_journal.resumed

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self, started: float, *, connection_name: str | None) -> ExportResult:
        ended_early: str | None = None  # "interrupted" (Ctrl-C) or "cancelled"
        try:
            self._check_list()
            self._submit_all()
            if self.fatal is None and self.wait_for_jobs:
                watcher = JobWatcher(self.client, self.ledger, self.plan.report, self.notify, self.to_send)
                if not watcher.watch(self.cancel):
                    raise _Cancelled
        except KeyboardInterrupt:
            ended_early = "interrupted"
            self.stop.set()
        except _Cancelled:
            ended_early = "cancelled"
            self.stop.set()
        except KlaviyoError as exc:
            self.fatal = self.fatal or exc
        result = self._settle(started, connection_name, ended_early)
        if ended_early is None and self.fatal is None:
            self.journal.finished(result.to_dict())  # only a run that ended cleanly is closed for resuming
        if ended_early is not None:
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

    def _settle(self, started: float, connection_name: str | None, ended_early: str | None) -> ExportResult:
        if ended_early is not None:
            not_sent = f"not sent: the export was {ended_early}"
        elif self.fatal is not None:
            not_sent = f"not sent: the export stopped after an error ({_first_line(self.fatal)})"
        else:
            not_sent = "not sent"
        self.ledger.settle(self.plan, not_sent)
        self.notify(ProgressEvent("done", self.ledger.processed, self.to_send, len(self.ledger.jobs)))
        return ExportResult(
            self.list_id,
            self.plan.report,
            job_ids=list(self.ledger.job_order),
            duration=time.monotonic() - started,
            connection=connection_name,
            interrupted=ended_early is not None,
            error=str(self.fatal) if self.fatal is not None else None,
        )

    # -- submitting --------------------------------------------------------------------------------------

    def _submit_all(self) -> None:
        """Build batches in this thread while workers send them; at most a few batches live at once."""
        in_flight: set[Future] = set()
        limit = self.concurrency + 2  # a batch takes milliseconds to build: two spare ones keep workers busy
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="klaviyo-export") as pool:
            try:
                for batch in iter_batches(self.plan):
                    self._check_cancel()
                    if self.stop.is_set():
                        break
                    batch = self._replay(batch)
                    if batch is None:
                        continue
                    while len(in_flight) >= limit:
                        in_flight = self._wait_for_one(in_flight)
                    in_flight.add(pool.submit(self._send, batch))
                while in_flight:
                    in_flight = self._wait_for_one(in_flight)
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
                self.ledger.mark(np.array([position]), "failed", rejected[int(position)])
            batch = batch.without(inside.tolist())
        accepted = self.resumed.accepted.get(batch.number)
        if accepted is None:
            return batch
        job_id, created_at = accepted
        self._accepted({"id": job_id, "attributes": {"created_at": created_at}}, batch, record=False)
        return None

    def _wait_for_one(self, in_flight: set[Future]) -> set[Future]:
        """Wait until a send ends (or half a second passes, to notice a cancel); return those still going."""
        done, in_flight = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # surfaces a bug in _send instead of losing it
        self._check_cancel()
        return in_flight

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise _Cancelled

    def _send(self, batch: Batch) -> None:
        # Checked before every request, so workers stop sending at once, whatever the main thread is doing.
        while len(batch.positions) and not (self.stop.is_set() or self.cancel.is_set()):
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
                    self.ledger.mark(np.array([position]), "failed", reason)
                batch = batch.without(rejected)
                continue
            except KlaviyoError as exc:
                return self._fail(exc)
            self._accepted(job, batch)
            return None
        return None

    def _fail(self, exc: KlaviyoError) -> None:
        with self.ledger.lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def _accepted(self, job: dict, batch: Batch, *, record: bool = True) -> None:
        job_id, positions = job["id"], batch.positions
        created_at = (job.get("attributes") or {}).get("created_at")
        if record:  # before anything else: this line is what saves re-sending the batch after a crash
            self.journal.accepted(batch.number, job_id, created_at, len(positions))
        accepted, jobs = self.ledger.job_accepted(job_id, positions, created_at)
        self.notify(ProgressEvent("sending", accepted, self.to_send, jobs))


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


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
