"""The background worker that runs bulk-import jobs: ``queued`` -> ``processing`` -> ``complete`` (§2.5).

Klaviyo processes jobs asynchronously at an undocumented pace (§5.4), so a client must poll. One worker
takes jobs in arrival order, waits ``job_delay`` seconds before each status change, and applies profiles in
chunks so readers (polls, list reads) get the lock between chunks and see ``completed_count`` grow.
"""

from __future__ import annotations

import queue
import threading

from .faults import Faults
from .store import Store

CHUNK = 1_000


class JobRunner:
    def __init__(self, store: Store, faults: Faults, delay: float = 0.0) -> None:
        self._store = store
        self._faults = faults
        self._delay = delay
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="klaviyo-sandbox-jobs", daemon=True)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self) -> None:
        """Stop after the current chunk; jobs still queued stay ``queued``."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            if self._stopping.is_set() or not self._process(job_id):
                return

    def _process(self, job_id: str) -> bool:
        """Run one job; False if the runner was stopped meanwhile."""
        if self._stopping.wait(self._delay):
            return False
        self._store.start_job(job_id)
        job = self._store.get_job(job_id)
        total = job.total_count if job else 0
        for start in range(0, total, CHUNK):
            if self._stopping.is_set():
                return False
            fails = self._faults.fails if self._faults.failing else None
            self._store.import_chunk(job_id, start, start + CHUNK, fails)
        if self._stopping.wait(self._delay):
            return False
        self._store.finish_job(job_id)
        return True
