"""The import jobs Klaviyo accepted, watched until Klaviyo has processed them, while later batches are still sent.

One list call reports up to 100 jobs (docs/klaviyo-api.md §2.6), so a poll costs a call or two however many jobs
are out; job reads have their own 10/s, 150/min budget (§2.7), apart from the job creations. A finished job's
rows are settled at once: the profiles Klaviyo failed get its reason, the others are sent, and the sync state
records them (``state.py``). Settling as jobs finish, rather than at the end, keeps what the run holds per row
to the jobs still out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..client import KlaviyoClient
from .payloads import Accepted
from .report import ReportBook

# Seconds between job polls: never closer than this, so a nearly finished import is not polled in a tight loop...
POLL_MIN = 0.1
# ...and never further apart than this, however slowly Klaviyo is going.
POLL_MAX = 5.0
_FINISHED = ("complete", "cancelled", "failed")


@dataclass
class Jobs:
    """The jobs Klaviyo accepted for this run and the profiles in them; shared by the sending threads and the
    watcher, so every method takes the lock."""

    order: list[str] = field(default_factory=list)
    unfinished: dict[str, Accepted] = field(default_factory=dict)
    earliest: datetime | None = None
    accepted: int = 0  # profiles in jobs Klaviyo accepted
    imported: int = 0  # profiles in jobs seen finished
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job_id: str, created_at: Any, batch: Accepted) -> None:
        created = parse_time(created_at)
        with self.lock:
            self.order.append(job_id)
            self.unfinished[job_id] = batch
            if created and (self.earliest is None or created < self.earliest):
                self.earliest = created
            self.accepted += len(batch)

    def pending_ids(self) -> set[str]:
        with self.lock:
            return set(self.unfinished)

    def finish(self, job_id: str) -> Accepted:
        with self.lock:
            batch = self.unfinished.pop(job_id)
            self.imported += len(batch)
            return batch


class JobWatcher:
    """Polls the unfinished jobs and settles each one's rows when Klaviyo has processed it.

    ``confirmed`` is called with the part of a batch Klaviyo imported (for the sync state); ``progress`` after
    every poll.
    """

    def __init__(
        self,
        client: KlaviyoClient,
        jobs: Jobs,
        book: ReportBook,
        *,
        confirmed: Callable[[Accepted], None],
        progress: Callable[[], None],
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.book = book
        self.confirmed = confirmed
        self.progress = progress
        self.error: BaseException | None = None

    def watch(self, sending_done: threading.Event, stop: threading.Event) -> bool:
        """Poll until sending is done and every job is finished; False if ``stop`` was set first.

        Klaviyo's processing speed is undocumented (§5.4), so the wait between polls follows what the polls show:
        once two polls have measured how fast profiles are being processed, the next poll is timed for when the
        remaining ones should be done (at least ``POLL_MIN`` apart); without measurable progress the wait grows
        from 0.2 s to ``POLL_MAX``.
        """
        delay = 0.2
        previous: tuple[float, int] | None = None  # (when, profiles processed) at the last poll
        while True:
            if stop.is_set():
                return False
            pending = self.jobs.pending_ids()
            if not pending:
                if sending_done.is_set():
                    return True
                stop.wait(POLL_MIN)
                continue
            in_progress, remaining = self._poll(pending)
            self.progress()
            if not self.jobs.pending_ids() and sending_done.is_set():
                return True
            now, done = time.monotonic(), self.jobs.imported + in_progress
            if previous is not None and done > previous[1] and now > previous[0]:
                rate = (done - previous[1]) / (now - previous[0])
                wait, delay = min(max(remaining / rate, POLL_MIN), POLL_MAX), 0.2
            else:
                wait, delay = delay, min(delay * 1.5, POLL_MAX)
            previous = (now, done)
            stop.wait(wait)  # a wait that a stop cuts short

    def run_in_thread(self, sending_done: threading.Event, stop: threading.Event) -> threading.Thread:
        """Watch in a background thread; an error ends the watch and is kept in ``error``."""

        def target() -> None:
            try:
                self.watch(sending_done, stop)
            except BaseException as exc:  # surfaced by the run, which owns the error handling
                self.error = exc

        thread = threading.Thread(target=target, name="klaviyo-job-watcher", daemon=True)
        thread.start()
        return thread

    def _poll(self, pending: set[str]) -> tuple[int, int]:
        """One round: settle the jobs that finished; return (profiles done, profiles left) in the others."""
        in_progress = remaining = 0
        for job_id, job in self._job_states(pending).items():
            attrs = job.get("attributes") or {}
            if attrs.get("status") in _FINISHED:
                self._finished(job_id, attrs)
            else:
                done = _count(attrs.get("completed_count")) + _count(attrs.get("failed_count"))
                in_progress += done
                remaining += max(_count(attrs.get("total_count")) - done, 0)
        return in_progress, remaining

    def _job_states(self, wanted: set[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for job in self.client.iter_import_jobs():
            if job.get("id") in wanted:
                found[job["id"]] = job
                if len(found) == len(wanted):
                    break
            created = parse_time((job.get("attributes") or {}).get("created_at"))
            if created and self.jobs.earliest and created < self.jobs.earliest:
                break  # newest first: everything further is older than our first job
        for job_id in wanted - set(found):  # not in the listing (e.g. a very busy account): ask directly
            found[job_id] = self.client.get_import_job(job_id)
        return found

    def _finished(self, job_id: str, attrs: dict[str, Any]) -> None:
        batch = self.jobs.finish(job_id)
        status = attrs.get("status")
        if status != "complete":
            self.book.mark(batch.positions, "failed", f"Klaviyo import job {job_id} ended as '{status}'")
            return
        failed = self._import_errors(job_id, batch) if attrs.get("failed_count") else np.zeros(len(batch), bool)
        imported = batch.without(np.flatnonzero(failed)) if failed.any() else batch
        self.book.mark(imported.positions, "sent")
        self.confirmed(imported)

    def _import_errors(self, job_id: str, batch: Accepted) -> np.ndarray:
        """Mark the profiles Klaviyo failed while processing the job; return which of the batch's they are."""
        index = {email: i for i, email in enumerate(batch.emails)}
        failed = np.zeros(len(batch), dtype=bool)
        for error in self.client.iter_import_errors(job_id):
            attrs = error.get("attributes") or {}
            payload = attrs.get("original_payload") or {}
            email = (payload.get("email") or (payload.get("attributes") or {}).get("email") or "").strip().lower()
            i = index.get(email)
            if i is None or failed[i]:
                continue
            failed[i] = True
            detail = attrs.get("detail") or attrs.get("title") or "import error"
            self.book.mark(
                [batch.positions[i]], "failed", f"Klaviyo import error ({attrs.get('code', 'error')}): {detail}"
            )
        return failed


def _count(value: Any) -> int:
    """A job's count attribute (nullable in the spec) as an int."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_time(value: Any) -> datetime | None:
    """A job's ``created_at`` as a datetime, or None when it is missing or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


__all__ = ["JobWatcher", "Jobs", "POLL_MAX", "POLL_MIN", "parse_time"]
