"""What the client tells its caller while it waits: a :class:`RetryNotice` before each retry, and :class:`Stopped`
when the caller's stop event (or the client's own halt, :class:`Stops`) ends a wait.

They live apart from ``client.py`` so that a shell (the form) can show the one and catch the other without
importing the client, which would let it talk HTTP itself. ``klaviyo_magic.client`` still offers both.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryNotice:
    """A request failed and will be tried again: what happened, and when the next try is."""

    attempt: int  # the attempt that failed, from 1
    attempts: int  # how many there will be at most
    delay: float  # seconds until the next one
    problem: str  # "unreachable", "timed out", or the HTTP status ("429", "503"...)
    action: str  # what we were doing

    @property
    def message(self) -> str:
        """``Klaviyo unreachable, retrying (3/8) in 4 s``: what a person watching wants to know."""
        what = {"unreachable": "Klaviyo unreachable", "timed out": "Klaviyo did not answer in time"}.get(
            self.problem, f"Klaviyo answered {self.problem}"
        )
        when = "in under a second" if self.delay < 1 else f"in {self.delay:.0f} s"  # not "in 0 s" for 0.4 s
        return f"{what} while {self.action}; retrying ({self.attempt + 1}/{self.attempts}) {when}"


class Stopped(Exception):
    """The client's ``stop`` event was set while it waited (for a retry or for the rate limit)."""


class Stops:
    """What ends a client's waits: the caller's stop event (a Cancel button) or the client's own halt, set by the
    code that runs it when Ctrl-C reaches the main thread, so that worker threads waiting out a retry end at once
    instead of keeping the interrupted export alive for their whole retry budget. Waits as an event does."""

    def __init__(self, caller: threading.Event | None) -> None:
        self.caller = caller
        self.halted = threading.Event()

    def is_set(self) -> bool:
        return self.halted.is_set() or (self.caller is not None and self.caller.is_set())

    def wait(self, timeout: float) -> bool:
        """True as soon as either is set (the halt at once, the caller's within a tenth of a second), else False
        after ``timeout`` seconds."""
        if self.caller is None:
            return self.halted.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.halted.wait(min(left, 0.1))
        return True
