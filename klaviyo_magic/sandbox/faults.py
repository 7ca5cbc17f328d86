"""Fault injection: answers and failures a client must survive, switched on from the test side.

Request faults (``fail``, ``drop``, ``delay``) match ``"METHOD /path"`` routes where ``*`` stands for one path
segment (or, alone, for any method or any request). Email patterns make bulk-import profiles fail either
synchronously (the whole POST is a 400, §2.5) or asynchronously (an import error in the job, §2.8).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

from .jsonapi import ApiError, error_object, status_phrase, throttled

FaultKind = Literal["fail", "drop", "delay"]


@dataclass
class Fault:
    kind: FaultKind
    method: str  # upper case, or "*"
    path: re.Pattern[str]
    remaining: int
    status: int = 500
    retry_after: int | None = None
    seconds: float = 0.0
    after: int = 0  # matching requests let through before the fault starts

    def error(self) -> ApiError:
        """The answer of a ``fail`` fault. A 429 looks like Klaviyo's own; without ``retry_after`` it has no
        Retry-After and says "0 seconds", as one observed 429 did (§4.3)."""
        if self.status == 429:
            error = throttled(self.retry_after or 0)
            if self.retry_after is None:
                error.headers.clear()
            return error
        code, title = _FAILURES.get(self.status) or ("error", f"{status_phrase(self.status)}.")
        detail = f"Injected fault: the sandbox answered {self.status} on purpose."
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return ApiError(self.status, [error_object(self.status, code, title, detail)], headers)


_FAILURES = {
    500: ("error", "A server error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable."),
    504: ("gateway_timeout", "Gateway timeout."),
}


def compile_route(route: str) -> tuple[str, re.Pattern[str]]:
    """``"GET /api/profile-bulk-import-jobs/*"`` -> ("GET", pattern); ``"*"`` matches every request."""
    route = route.strip()
    if route == "*":
        return "*", re.compile(r"/.*")
    method, _, path = route.partition(" ")
    path = path.strip()
    if not method or not path.startswith("/"):
        raise ValueError(f"route must look like 'POST /api/lists' or '*', got {route!r}")
    segments = [r"[^/]+" if segment == "*" else re.escape(segment) for segment in path.rstrip("/").split("/")]
    return method.upper(), re.compile("/".join(segments) or "/")


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._fail_emails: list[re.Pattern[str]] = []
        self._reject_emails: list[re.Pattern[str]] = []

    def add(
        self,
        kind: FaultKind,
        route: str,
        count: int,
        *,
        status: int = 500,
        retry_after: int | None = None,
        seconds: float = 0.0,
        after: int = 0,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        if after < 0:
            raise ValueError("after must be 0 or more")
        method, path = compile_route(route)
        with self._lock:
            self._faults.append(Fault(kind, method, path, count, status, retry_after, seconds, after))

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.path.fullmatch(path):
                    if fault.after:
                        fault.after -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def fail_emails(self, pattern: str) -> None:
        with self._lock:
            self._fail_emails.append(re.compile(pattern, re.IGNORECASE))

    def reject_emails(self, pattern: str) -> None:
        with self._lock:
            self._reject_emails.append(re.compile(pattern, re.IGNORECASE))

    def fails(self, email: str) -> bool:
        return any(pattern.search(email) for pattern in self._fail_emails)

    def rejects(self, email: str) -> bool:
        return any(pattern.search(email) for pattern in self._reject_emails)

    @property
    def rejecting(self) -> bool:
        return bool(self._reject_emails)

    @property
    def failing(self) -> bool:
        return bool(self._fail_emails)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fail_emails.clear()
            self._reject_emails.clear()
