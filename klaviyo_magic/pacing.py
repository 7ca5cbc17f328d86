"""Client-side pacing so we stay inside Klaviyo's per-endpoint rate limits instead of bouncing off them.

Klaviyo counts requests per endpoint in fixed 1 s (burst) and 60 s (steady) windows (docs/klaviyo-api.md §5.1).
A sliding log that never lets more than N requests start within any window-length interval also keeps every
fixed window of that length at N or fewer. A small margin absorbs the difference between our clock and the
moment the server counts the request. A 429's Retry-After pauses the whole endpoint, not just one thread,
because every other request to it would get the same answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    per_second: int
    per_minute: int


# Klaviyo's published limits for the operations we call (docs/klaviyo-api.md §5.3).
LIMITS: dict[str, Limit] = {
    "accounts": Limit(1, 15),
    "lists:read": Limit(75, 750),
    "list:profile_count": Limit(1, 15),
    "lists:create": Limit(10, 150),
    "bulk-import:create": Limit(10, 150),
    "bulk-import:read": Limit(10, 150),
    "list-members:write": Limit(10, 150),
    "list-members:read": Limit(75, 750),
    "profiles:read": Limit(75, 750),
}


class Pacer:
    """Blocks callers just long enough to keep one endpoint inside its burst and steady limits."""

    def __init__(self, limit: Limit, *, margin: float = 0.05, clock=time.monotonic, sleep=time.sleep) -> None:
        self.limit = limit
        self._windows = ((1.0 + margin, limit.per_second), (60.0 + margin, limit.per_minute))
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Wait until one more request may start, then record it. A set ``stop`` ends the wait early (the
        caller checks it), so a Cancel is not held up by a minute-long quota."""
        while True:
            with self._lock:
                wait = self._wait_time(self._clock())
                if wait <= 0:
                    self._starts.append(self._clock())
                    return
            if stop is None:
                self._sleep(wait)
            elif stop.wait(wait):
                return

    def pause(self, seconds: float) -> None:
        """Hold every request to this endpoint for ``seconds`` (Klaviyo's Retry-After, or an empty quota)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_time(self, now: float) -> float:
        wait = self._paused_until - now
        longest = self._windows[-1][0]
        while self._starts and now - self._starts[0] >= longest:
            self._starts.popleft()
        for length, allowed in self._windows:
            if len(self._starts) >= allowed:
                # The request that must age out of this window before another may start.
                oldest_in_way = self._starts[len(self._starts) - allowed]
                wait = max(wait, oldest_in_way + length - now)
        return wait


class Pacers:
    """One lazily created :class:`Pacer` per operation name, shared by all threads of a client."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()

    def get(self, operation: str) -> Pacer | None:
        if not self.enabled or operation not in LIMITS:
            return None
        with self._lock:
            pacer = self._pacers.get(operation)
            if pacer is None:
                pacer = self._pacers[operation] = Pacer(LIMITS[operation])
            return pacer
