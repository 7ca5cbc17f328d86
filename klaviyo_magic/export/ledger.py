"""The ledger of one export: which import jobs Klaviyo accepted for which rows, the outcome of each row as the
workers and the job watcher learn it, and the settling that gives every row of the report exactly one status.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .segment import Plan


@dataclass
class Ledger:
    """Row outcomes and jobs collected from worker threads; written into the report by the main thread only."""

    marks: list[tuple[np.ndarray, str, str | None]] = field(default_factory=list)
    jobs: dict[str, np.ndarray] = field(default_factory=dict)  # job id -> report positions in that job
    job_order: list[str] = field(default_factory=list)
    unfinished: set[str] = field(default_factory=set)  # accepted jobs not yet seen finished
    earliest_job: datetime | None = None
    accepted: int = 0  # profiles in jobs Klaviyo accepted
    processed: int = 0  # profiles in jobs seen finished
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, positions: np.ndarray, status: str, reason: str | None) -> None:
        with self.lock:
            self.marks.append((positions, status, reason))

    def job_accepted(self, job_id: str, positions: np.ndarray, created_at: Any) -> tuple[int, int]:
        """Note a job Klaviyo accepted; return the profiles accepted so far and the number of jobs."""
        created = parse_time(created_at)
        with self.lock:
            self.jobs[job_id] = positions
            self.job_order.append(job_id)
            self.unfinished.add(job_id)
            if created and (self.earliest_job is None or created < self.earliest_job):
                self.earliest_job = created
            self.accepted += len(positions)
            return self.accepted, len(self.jobs)

    def job_finished(self, job_id: str) -> None:
        self.unfinished.discard(job_id)
        self.processed += len(self.jobs[job_id])

    def settle(self, plan: Plan, not_sent: str) -> None:
        """Write every outcome into ``plan``'s report; rows still without one get ``failed`` with ``not_sent``."""
        # Jobs Klaviyo accepted but we did not see finish (not waiting, stopped early, or an error while
        # watching): Klaviyo has the profiles, so they count as sent, with the reason saying what is unknown.
        for job_id in self.unfinished:
            reason = f"accepted by Klaviyo in import job {job_id}; not watched to completion"
            self.mark(self.jobs[job_id], "sent", reason)
        self._apply_marks(plan)
        leftover = plan.pending_positions()
        if len(leftover):
            plan.mark(leftover, "failed", not_sent)

    def _apply_marks(self, plan: Plan) -> None:
        """Write the collected outcomes into the report with one write per status.

        Each report write costs milliseconds however few rows it touches, so applying the marks one by one
        (a hundred jobs, plus one per failed profile) took longer than the rest of a million-row export's
        local work. The marks are replayed in order into arrays first, so a later mark still wins.
        """
        marks = self.marks
        if not marks:
            return
        rows = len(plan.report)
        status = np.empty(rows, dtype=object)
        reason = np.empty(rows, dtype=object)
        for positions, mark_status, mark_reason in marks:
            status[positions] = mark_status
            reason[positions] = mark_reason
        for mark_status in dict.fromkeys(mark for _, mark, _ in marks):
            where = np.flatnonzero(status == mark_status)
            reasons = reason[where]
            plan.mark(where, mark_status, None if pd.isna(reasons).all() else reasons)
        marks.clear()


def parse_time(value: Any) -> datetime | None:
    """A job's ``created_at`` as a datetime, or None when it is missing or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
