"""The request log tests inspect: what came in and what was answered, never a secret and never a body."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass

# A private key anywhere in a header value (the Authorization header above all): keep ``pk_`` and the last
# four characters so two keys can be told apart, as Klaviyo's own UI does.
_PRIVATE_KEY = re.compile(r"pk_[A-Za-z0-9_-]+")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def mask_key(key: str) -> str:
    tail = key[-4:] if len(key) >= 12 else ""
    return f"pk_****{tail}"


def mask_header(name: str, value: str) -> str:
    masked = _PRIVATE_KEY.sub(lambda match: mask_key(match.group()), value)
    if name.lower() in _SECRET_HEADERS and masked == value:
        # Not a pk_ key (a Bearer token, garbage): keep only the scheme word.
        scheme, _, secret = value.partition(" ")
        return f"{scheme} ****" if secret else "****"
    return masked


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it. ``status`` is None when a fault dropped the connection."""

    method: str
    path: str
    query: str
    status: int | None
    headers: dict[str, str]  # as received, with secrets masked
    body_bytes: int
    time: float  # epoch seconds when the request arrived
    duration: float  # seconds until the answer was written
    operation: str | None  # Klaviyo operationId of the matched route, e.g. "bulk_import_profiles"


class RequestLog:
    """The newest ``capacity`` records; older ones fall off so a million-profile benchmark stays bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
