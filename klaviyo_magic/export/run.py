"""One real export run: send the batches as the input is read, watch the jobs meanwhile, stop cleanly.

The batches come from :class:`~klaviyo_magic.export.stream.RowStream` and go out from a few worker threads;
the client paces each request to Klaviyo's limits and retries. The number of requests on their way ramps up,
one, then two, four..., doubling with each job Klaviyo accepts: a full run reaches its pace within a second,
while a Cancel or Ctrl-C soon after the start stops most of the export instead of finding it all on its way
already (a request on its way cannot be called back). Profiles Klaviyo rejects are set aside and the rest sent
again; an error, Ctrl-C or a cancel stops the sending. ``jobs.py`` watches the accepted jobs in a thread of its
own and settles their rows as they finish.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..client import KlaviyoClient, Stopped
from ..errors import KlaviyoError, ValidationError
from ..progress import ProgressEvent
from . import journal
from .jobs import Jobs, JobWatcher
from .payloads import Accepted, Batch
from .report import ReportBook
from .state import ListState
from .stream import RowStream

# /data/attributes/profiles/data/<i>/... names the profile Klaviyo rejected (docs/klaviyo-api.md §2.5).
_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")


class Cancelled(Exception):
    """The caller's cancel event was set: the run ends as Ctrl-C would end it."""


@dataclass
class RunOutcome:
    """How the sending ended: ``ended_early`` is "interrupted" (Ctrl-C), "cancelled" or None; ``fatal`` the
    error that stopped it, if one did."""

    ended_early: str | None
    fatal: BaseException | None
    job_ids: list[str]


class ExportRun:
    """Sends the stream's batches, watches the jobs, and leaves every row of ``book`` with its outcome."""

    def __init__(
        self,
        stream: RowStream,
        client: KlaviyoClient,
        list_id: str,
        book: ReportBook,
        *,
        notify: Any,
        journal: journal.Journal,
        resumed: journal.ResumeState | None,
        concurrency: int = 6,
        wait_for_jobs: bool = True,
        cancel: threading.Event | None = None,
        state: ListState | None = None,
        run_number: int | None = None,
        expected_rows: int | None = None,
        on_input_read: Any = None,
    ) -> None:
        self.stream = stream
        self.client = client
        self.list_id = list_id
        self.book = book
        self.notify = notify
        self.journal = journal
        self.resumed = resumed
        self.concurrency = concurrency
        self.wait_for_jobs = wait_for_jobs
        self.cancel = cancel if cancel is not None else threading.Event()
        self.state = state
        self.run_number = run_number
        self.expected_rows = expected_rows
        self.on_input_read = on_input_read  # called once every row has been read (mirror mode starts its lookups)
        self.jobs = Jobs()
        self.stop = threading.Event()  # set by us: an error, Ctrl-C or a cancel ends the sending
        self.sending_done = threading.Event()
        self.fatal: BaseException | None = None
        self._in_flight = [0, 0]  # profiles, jobs
        self._earlier = 0  # profiles of the resumed run's accepted jobs: counted as sent, not sent now
        self._lock = threading.Lock()

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        ended_early: str | None = None
        watcher = JobWatcher(self.client, self.jobs, self.book, confirmed=self._confirmed, progress=self._progress)
        thread = watcher.run_in_thread(self.sending_done, self.stop) if self.wait_for_jobs else None
        try:
            self._submit_all()
            self.sending_done.set()
            if thread is not None:
                self._join(thread)
        except KeyboardInterrupt:
            ended_early = "interrupted"
            self.client.halt()  # the job watcher may be waiting out a retry: the join below must not wait for it
        except (Cancelled, Stopped):
            ended_early = "cancelled"
        except KlaviyoError as exc:
            self.fatal = self.fatal or exc
        finally:
            self.stop.set()
            self.sending_done.set()
            if thread is not None:
                thread.join()
        if watcher.error is not None and self.fatal is None and ended_early is None:
            if isinstance(watcher.error, KlaviyoError):
                self.fatal = watcher.error
            else:
                raise watcher.error
        self._settle(ended_early)
        return RunOutcome(ended_early, self.fatal, list(self.jobs.order))

    def _join(self, thread: threading.Thread) -> None:
        """Wait for the watcher, noticing a cancel (and, in the main thread, Ctrl-C) within half a second."""
        while thread.is_alive():
            thread.join(0.5)
            self._check_cancel()

    def _settle(self, ended_early: str | None) -> None:
        """Rows of jobs Klaviyo accepted but not seen finished count as sent; rows never sent are not_sent. When
        the run stopped early, the rest of an input in memory or in files is read first, so that every row is in the
        report; a query (Spark, Dask, DuckDB, Polars lazy) is not run further, and the report then ends where
        reading stopped."""
        if self.state is not None and self.run_number is not None:
            for batch in list(self.jobs.unfinished.values()):
                # Not confirmed (Klaviyo may yet fail some), but sent by this run: a later run confirming them
                # must not take them for members someone else added before it (mirror.py). First, before a long
                # drain that a second Ctrl-C could cut.
                self.state.record_sent(self.run_number, batch.email_hash)
        if not self.stream.finished and self.stream.can_drain:
            self.stream.drain()
        for job_id, batch in list(self.jobs.unfinished.items()):
            reason = f"accepted by Klaviyo in import job {job_id}; not watched to completion"
            self.book.mark(batch.positions, "sent", reason)
        if ended_early is not None:
            not_sent = f"not sent: the export was {ended_early}"
        elif self.fatal is not None:
            not_sent = f"not sent: the export stopped after an error ({_first_line(self.fatal)})"
        else:
            not_sent = "not sent"
        self.book.mark(self.book.positions("pending"), "not_sent", not_sent)

    # -- submitting --------------------------------------------------------------------------------------

    def _submit_all(self) -> None:
        """Read batches in this thread while workers send them; only a few batches live at once."""
        in_flight: set[Future] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="klaviyo-export") as pool:
            try:
                for batch in self.stream.batches():
                    self._check_cancel()
                    if self.stop.is_set():
                        break
                    batch = self._replay(batch)
                    if batch is None:
                        continue
                    while len(in_flight) >= self._allowed_in_flight():
                        in_flight = self._wait_for_one(in_flight)
                    self._count_in_flight(batch, +1)
                    in_flight.add(pool.submit(self._send, batch))
                    self._progress()
                if self.on_input_read is not None and self.stream.finished and not self.stop.is_set():
                    self.on_input_read()
                while in_flight:
                    in_flight = self._wait_for_one(in_flight)
            except BaseException as exc:
                self.stop.set()
                if isinstance(exc, KeyboardInterrupt):
                    self.client.halt()  # workers waiting out a retry end now: leaving the pool waits for them
                for future in in_flight:
                    future.cancel()
                raise
        self._progress()

    def _allowed_in_flight(self) -> int:
        """1, then doubling with every job Klaviyo accepted, up to the workers plus two batches ready for them."""
        with self.jobs.lock:
            accepted = len(self.jobs.order)
        return min(self.concurrency + 2, 2 ** min(accepted, 10))

    def _replay(self, batch: Batch) -> Batch | None:
        """On resume, take what the journal says about this batch when it is the same batch (same digest): rows
        Klaviyo rejected stay failed, and a batch Klaviyo accepted is watched, not sent again."""
        if self.resumed is None:
            return batch
        rejected = self.resumed.rejected.get(batch.number)
        if rejected is not None and rejected[0] == batch.digest:
            reasons = dict(rejected[1])
            inside = np.flatnonzero(np.isin(batch.positions, list(reasons)))
            self.book.mark(batch.positions[inside], "failed", [reasons[int(p)] for p in batch.positions[inside]])
            batch = batch.without(inside.tolist())
        accepted = self.resumed.accepted.get(batch.number)
        if accepted is None or accepted[2] != batch.digest:
            return batch
        job_id, created_at, _ = accepted
        with self._lock:
            self._earlier += len(batch)
        self._register(job_id, created_at, batch)
        return None

    def _wait_for_one(self, in_flight: set[Future]) -> set[Future]:
        """Wait until a send ends (or half a second passes, to notice a cancel); return those still going."""
        done, in_flight = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # surfaces a bug in _send instead of losing it
        self._check_cancel()
        if self.fatal is not None:
            self.stop.set()
        return in_flight

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled

    def _send(self, batch: Batch) -> None:
        """Send one batch (in a worker thread), setting aside profiles Klaviyo rejects."""
        try:
            while len(batch) and not (self.stop.is_set() or self.cancel.is_set()):
                action = f"creating import job {batch.number} ({len(batch):,} profiles) for list '{self.list_id}'"
                try:
                    job = self.client.create_import_job(batch.body(self.list_id), action=action)
                except ValidationError as exc:
                    rejected = _rejected_profiles(exc.errors)
                    # Pointers outside this batch mean we cannot tell which rows are bad: resending would loop.
                    if not rejected or max(rejected) >= len(batch):
                        return self._fail(exc)
                    reasons = [(int(batch.positions[i]), f"rejected by Klaviyo: {d}") for i, d in rejected.items()]
                    self.journal.rejected(batch.number, batch.digest, reasons)
                    self.book.mark([p for p, _ in reasons], "failed", [r for _, r in reasons])
                    self._count_in_flight(batch, -1)
                    batch = batch.without(rejected)
                    self._count_in_flight(batch, +1)
                    continue
                except Stopped:
                    return None
                except KlaviyoError as exc:
                    return self._fail(exc)
                self._accepted(job, batch)
                return None
            return None
        finally:
            self._count_in_flight(batch, -1)

    def _fail(self, exc: KlaviyoError) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def _accepted(self, job: dict, batch: Batch) -> None:
        created_at = (job.get("attributes") or {}).get("created_at")
        # First: this line is what saves re-sending the batch after a crash.
        self.journal.accepted(batch.number, job["id"], created_at, len(batch), batch.digest)
        self._register(job["id"], created_at, batch)

    def _register(self, job_id: str, created_at: Any, batch: Batch) -> None:
        """A job Klaviyo accepted: watched until it finishes, or (not waiting for jobs) counted sent now."""
        self.jobs.add(job_id, created_at, batch.accepted())
        if not self.wait_for_jobs:
            self.book.mark(batch.positions, "sent", f"accepted by Klaviyo in import job {job_id}; not watched")

    def _confirmed(self, batch: Accepted) -> None:
        if self.state is not None and self.run_number is not None and len(batch):
            self.state.confirm(self.run_number, batch.emails, batch.email_hash, batch.row_hash)

    # -- progress ----------------------------------------------------------------------------------------

    def _count_in_flight(self, batch: Batch, sign: int) -> None:
        with self._lock:
            self._in_flight[0] += sign * len(batch)
            self._in_flight[1] += sign

    def _progress(self) -> None:
        with self._lock:
            (in_flight, in_flight_jobs), earlier = self._in_flight, self._earlier
        with self.jobs.lock:
            accepted, jobs, imported = self.jobs.accepted, len(self.jobs.order), self.jobs.imported
        stage = "processing" if self.sending_done.is_set() else "sending"
        self.notify(
            ProgressEvent(
                stage, accepted, self.to_send_estimate(), jobs, max(in_flight, 0), max(in_flight_jobs, 0), imported,
                earlier=earlier,
            )
        )  # fmt: skip

    def to_send_estimate(self) -> int | None:
        """Profiles to send: exact once the input is read; before, the rows not yet ruled out (None when the
        input could not be counted)."""
        rows = self.book.rows if self.stream.finished else self.expected_rows
        if rows is None:
            return None
        counts = self.book.counts()
        ruled_out = counts["skipped"] + counts["duplicate"] + counts["unchanged"]
        return max(rows - ruled_out, self.jobs.accepted)


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
    """The error's first sentence, for a row's reason (the whole message is in the result's ``error``)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    sentence = re.split(r"(?<=[.)])\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= 400 else sentence[:399] + "…"


__all__ = ["Cancelled", "ExportRun", "RunOutcome"]
