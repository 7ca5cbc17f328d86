"""Watching an export's import jobs until Klaviyo has processed them, and reading the profiles it failed.

One list call reports up to 100 jobs (docs/klaviyo-api.md §2.6), so polling costs a few calls per round instead of
one per job; the job reads share a 10/s, 150/min budget (§2.7).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from ..client import KlaviyoClient
from ..progress import ProgressEvent
from .ledger import Ledger, parse_time

# Seconds between job polls: never closer than this, so a nearly finished import is not polled in a tight loop...
POLL_MIN = 0.1
# ...and never further apart than this, however slowly Klaviyo is going.
POLL_MAX = 5.0
_FINISHED = ("complete", "cancelled", "failed")


class JobWatcher:
    """Polls the ledger's unfinished jobs and records how each one ended, row by row.

    ``report`` is the export's report (its emails match Klaviyo's import errors to rows); ``to_send`` the number
    of profiles the export sends, for progress events.
    """

    def __init__(self, client: KlaviyoClient, ledger: Ledger, report: pd.DataFrame, notify: Any, to_send: int) -> None:
        self.client = client
        self.ledger = ledger
        self.report = report
        self.notify = notify
        self.to_send = to_send

    def watch(self, stop: threading.Event) -> bool:
        """Poll until every job is finished; return False if ``stop`` was set first.

        Klaviyo's processing speed is undocumented (§5.4), so the wait between polls follows what the polls
        show: once two polls have measured how fast profiles are being processed, the next poll is timed for
        when the remaining profiles should be done (at least ``POLL_MIN`` apart); without measurable progress
        the wait grows from 0.2 s to ``POLL_MAX``.
        """
        delay = 0.2
        previous: tuple[float, int] | None = None  # (when, profiles processed) at the last poll
        self._report_progress()
        while self.ledger.unfinished:
            if stop.is_set():
                return False
            in_progress, remaining = self._poll()
            self._report_progress()
            if not self.ledger.unfinished:
                break
            now, progress = time.monotonic(), self.ledger.processed + in_progress
            if previous is not None and progress > previous[1] and now > previous[0]:
                rate = (progress - previous[1]) / (now - previous[0])
                wait = min(max(remaining / rate, POLL_MIN), POLL_MAX)
                delay = 0.2
            else:
                wait, delay = delay, min(delay * 1.5, POLL_MAX)
            previous = (now, progress)
            stop.wait(wait)  # a wait that a stop cuts short
        return True

    def _report_progress(self) -> None:
        ledger = self.ledger
        self.notify(ProgressEvent("processing", ledger.processed, self.to_send, len(ledger.jobs)))

    def _poll(self) -> tuple[int, int]:
        """One round: settle the jobs that finished; return (profiles done, profiles left) in the others."""
        in_progress = remaining = 0
        for job_id, job in self._job_states().items():
            attrs = job.get("attributes") or {}
            if attrs.get("status") in _FINISHED:
                self._finished(job_id, job)
            else:
                done = _count(attrs.get("completed_count")) + _count(attrs.get("failed_count"))
                in_progress += done
                remaining += max(_count(attrs.get("total_count")) - done, 0)
        return in_progress, remaining

    def _job_states(self) -> dict[str, dict]:
        wanted = set(self.ledger.unfinished)
        found: dict[str, dict] = {}
        for job in self.client.iter_import_jobs():
            if job.get("id") in wanted:
                found[job["id"]] = job
                if len(found) == len(wanted):
                    break
            created = parse_time((job.get("attributes") or {}).get("created_at"))
            if created and self.ledger.earliest_job and created < self.ledger.earliest_job:
                break  # newest first: everything further is older than our first job
        for job_id in wanted - set(found):  # not in the listing (e.g. a very busy account): ask directly
            found[job_id] = self.client.get_import_job(job_id)
        return found

    def _finished(self, job_id: str, job: dict) -> None:
        positions = self.ledger.jobs[job_id]
        attrs = job.get("attributes") or {}
        status = attrs.get("status")
        if status != "complete":
            self.ledger.mark(positions, "failed", f"Klaviyo import job {job_id} ended as '{status}'")
        else:
            failed = set()
            if attrs.get("failed_count"):
                failed = self._import_errors(job_id, positions)
            sent = positions if not failed else np.array([p for p in positions if p not in failed], dtype=np.int64)
            self.ledger.mark(sent, "sent", None)
        self.ledger.job_finished(job_id)

    def _import_errors(self, job_id: str, positions: np.ndarray) -> set[int]:
        """Mark the profiles Klaviyo failed while processing the job; return their report positions."""
        emails = self.report["email"].take(positions).tolist()  # only this job's rows, not a 1M-element copy
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
            reason = f"Klaviyo import error ({attrs.get('code', 'error')}): {detail}"
            self.ledger.mark(np.array([pos]), "failed", reason)
        return failed


def _count(value: Any) -> int:
    """A job's count attribute (nullable in the spec) as an int."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
