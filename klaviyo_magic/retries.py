"""What the client tells its caller while it waits: a :class:`RetryNotice` before each retry, and :class:`Stopped`
when the caller's stop event ends a wait.

They live apart from ``client.py`` so that a shell (the form) can show the one and catch the other without
importing the client, which would let it talk HTTP itself. ``klaviyo_magic.client`` still offers both.
"""

from __future__ import annotations

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
        return f"{what} while {self.action}; retrying ({self.attempt + 1}/{self.attempts}) in {self.delay:.0f} s"


class Stopped(Exception):
    """The client's ``stop`` event was set while it waited (for a retry or for the rate limit)."""
