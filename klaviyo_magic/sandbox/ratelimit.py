"""Klaviyo's rate limits: fixed 1 s (burst) and 60 s (steady) windows per endpoint, per account (§5).

Every operation has its own bucket, shared by all keys because the sandbox is one account (§5.1). Some
requests also draw from a stricter extra bucket (``get_list`` with ``profile_count``, §2.3); a request is
admitted only if every bucket it draws from has room, and then counts in all of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .jsonapi import throttled


@dataclass(frozen=True)
class Window:
    seconds: float
    limit: int


def _tier(per_second: int, per_minute: int, *extra: Window) -> tuple[Window, ...]:
    return (Window(1.0, per_second), Window(60.0, per_minute), *extra)


# The §5.3 numbers. The L tier uses the spec's 750/m rather than the docs' 700/m (§5.2). The job reads each
# get their own bucket, apart from the POST: Klaviyo lists each operation's limit separately and §2.7 leaves
# sharing unconfirmed; separate buckets mean polling never starves job creation (docs/sandbox.md).
XS, M, L = _tier(1, 15), _tier(10, 150), _tier(75, 750)
LIMITS: dict[str, tuple[Window, ...]] = {
    "get_accounts": XS,
    "get_account": XS,
    "get_lists": L,
    "get_list": L,
    "get_list:profile_count": XS,
    "create_list": _tier(10, 150, Window(86_400.0, 150)),
    "bulk_import_profiles": M,
    "get_bulk_import_profiles_jobs": M,
    "get_bulk_import_profiles_job": M,
    "get_errors_for_bulk_import_profiles_job": M,
    "get_profiles_for_bulk_import_profiles_job": M,
    "get_profile_ids_for_bulk_import_profiles_job": M,
    "get_list_for_bulk_import_profiles_job": M,
    "get_list_ids_for_bulk_import_profiles_job": M,
    "add_profiles_to_list": M,
    "remove_profiles_from_list": M,
    "get_profiles_for_list": L,
    "get_profile_ids_for_list": L,
    "get_profiles": L,
    "get_profile": L,
}


class _Counter:
    """One fixed window: it opens with the first request after the previous one expired.

    Requests are counted at the moment they arrived, as an edge proxy counts them, not when their body has
    been read: a 5 MB body can take a while to read on a busy server, so a request may be admitted after one
    that arrived later opened a new window. The previous window is kept for such late requests.
    """

    __slots__ = ("window", "opened", "count", "previous_opened", "previous_count")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.opened = self.previous_opened = -math.inf
        self.count = self.previous_count = 0

    def roll(self, now: float) -> None:
        if now >= self.opened + self.window.seconds:
            self.previous_opened, self.previous_count = self.opened, self.count
            self.opened, self.count = now, 0

    def _late(self, now: float) -> bool:
        """True when ``now`` (before this window opened) falls inside the previous window."""
        return now < self.opened and self.previous_opened <= now < self.previous_opened + self.window.seconds

    def wait(self, now: float) -> float:
        """Seconds until the window ``now`` falls in has room again (0 if it has room now)."""
        if self._late(now):
            full, ends = self.previous_count >= self.window.limit, self.previous_opened + self.window.seconds
        else:
            full, ends = self.count >= self.window.limit, self.opened + self.window.seconds
        return ends - now if full else 0.0

    def add(self, now: float) -> None:
        if self._late(now):
            self.previous_count += 1
        else:
            self.count += 1


class RateLimiter:
    def __init__(self, *, enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[_Counter]] = {
            name: [_Counter(window) for window in windows] for name, windows in LIMITS.items()
        }

    def now(self) -> float:
        """The limiter's clock; the server reads it when a request arrives and passes it to :meth:`admit`."""
        return self._clock()

    def admit(self, operations: Sequence[str], arrived: float | None = None) -> dict[str, str]:
        """Count one request against ``operations``' buckets and return its RateLimit-* headers, or raise the
        429 when any window is full. The headers describe the steady window with the least room (§4.3).

        ``arrived`` is when the request arrived (from :meth:`now`); the request counts at that moment.
        """
        if not self.enabled:
            return {}
        with self._lock:
            now = self._clock() if arrived is None else arrived
            counters = [counter for name in operations for counter in self._buckets[name]]
            for counter in counters:
                counter.roll(now)
            wait = max(counter.wait(now) for counter in counters)
            if wait > 0:
                # A throttled request is not counted; Retry-After rounds up so a client that honours it
                # exactly is never throttled again by the same window.
                raise throttled(max(1, math.ceil(wait)))
            for counter in counters:
                counter.add(now)
            steady = min((c for c in counters if c.window.seconds == 60.0), key=lambda c: c.window.limit - c.count)
            return {
                "RateLimit-Limit": str(steady.window.limit),
                "RateLimit-Remaining": str(steady.window.limit - steady.count),
                "RateLimit-Reset": str(max(0, math.ceil(steady.opened + steady.window.seconds - now))),
            }

    def reset(self) -> None:
        with self._lock:
            for counters in self._buckets.values():
                for counter in counters:
                    counter.opened = counter.previous_opened = -math.inf
                    counter.count = counter.previous_count = 0
