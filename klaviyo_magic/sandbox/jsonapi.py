"""JSON:API building blocks shared by every endpoint: errors, identifiers, timestamps, cursors and links.

Shapes follow docs/klaviyo-api.md §1.2 (documents, links, cursors) and §4.1/§4.2a (error objects).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

MEDIA_TYPE = "application/vnd.api+json"
RATE_LIMIT_DOC = "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"

_ALPHANUMERIC = string.ascii_letters + string.digits
# Crockford base32, the alphabet of ULIDs; Klaviyo's profile and job ids look like ULIDs (§2.5, §3.1).
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class ApiError(Exception):
    """An error answer: raised anywhere below the HTTP layer, rendered once by the server."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {errors[0]['detail'] if errors else ''}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        return {"errors": self.errors}


def error_object(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    pointer: str | None = None,
    parameter: str | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One member of ``errors``: Klaviyo sends ``status`` as an integer although its spec omits it (§4.1)."""
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": title,
        "detail": detail,
        "source": source,
        "links": links or {},
        "meta": {},
    }


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    """The generic 400 pair ``invalid`` / "Invalid input." (§4.2)."""
    return ApiError(400, [error_object(400, "invalid", "Invalid input.", detail, pointer=pointer, parameter=parameter)])


def not_found(detail: str) -> ApiError:
    """Klaviyo's 404 body: ``not_found`` / "Not found." with pointer ``/data/`` (§4.2)."""
    return ApiError(404, [error_object(404, "not_found", "Not found.", detail, pointer="/data/")])


def throttled(retry_after: int) -> ApiError:
    """Klaviyo's 429: ``Retry-After`` in whole seconds and no RateLimit-* headers (§4.2a, §4.3)."""
    unit = "second" if retry_after == 1 else "seconds"
    error = error_object(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {retry_after} {unit}.",
        pointer="/data/",
        links={"type": RATE_LIMIT_DOC},
    )
    return ApiError(429, [error], {"Retry-After": str(retry_after)})


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def timestamp(moment: float | None = None) -> str:
    """RFC 3339 in UTC with a ``+00:00`` offset and whole seconds, as in Klaviyo's examples (§1.1)."""
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return when.isoformat(timespec="seconds")


def short_id() -> str:
    """A 6-character id like Klaviyo's list ids and public keys (``Y6nRLr``, §2.2)."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(6))


class UlidFactory:
    """26-character ids that sort by creation: a 10-character time prefix plus a 16-digit sequence.

    Hex digits are a subset of Crockford base32, so ``f"{n:016X}"`` keeps ids ULID-shaped while costing far
    less than random bytes, which matters when one import job creates 10,000 profiles. Not thread-safe:
    the store calls it with its lock held.
    """

    def __init__(self) -> None:
        millis = int(time.time() * 1000)
        prefix = ""
        for _ in range(10):
            millis, digit = divmod(millis, 32)
            prefix = _CROCKFORD[digit] + prefix
        self._prefix = prefix
        self._next = secrets.randbelow(1 << 40)

    def __call__(self) -> str:
        self._next += 1
        return self.format(self._next)

    def format(self, number: int) -> str:
        """The id with sequence number ``number``."""
        return f"{self._prefix}{number:016X}"

    def parse(self, text: str) -> int | None:
        """The sequence number of an id this factory made (or could make), else None."""
        if len(text) != 26 or not text.startswith(self._prefix):
            return None
        try:
            return int(text[10:], 16)
        except ValueError:
            return None

    def reserve(self) -> int:
        """A sequence number after which this factory makes no ids, for someone numbering ids itself."""
        base, self._next = self._next, self._next + (1 << 62)
        return base


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# -- cursors and links ---------------------------------------------------------------------------------

_CURSOR_PREFIX = "next::pos::"


def encode_cursor(position: int) -> str:
    """An opaque cursor like Klaviyo's (``bmV4dDo6aWQ6Ok43dW1iVw`` is base64 ``next::id::N7umbW``, §1.2)."""
    raw = f"{_CURSOR_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    position = text.removeprefix(_CURSOR_PREFIX)
    if position == text or not position.isdigit():
        raise invalid(f"'{cursor}' is not a valid page cursor.", parameter="page[cursor]")
    return int(position)


def collection_links(base_url: str, path: str, params: list[tuple[str, str]], next_position: int | None) -> dict:
    """``self`` and an absolute ``next`` that repeats the query with ``page%5Bcursor%5D=`` (§1.2).

    ``prev`` is always null: the sandbox pages forward only (see docs/sandbox.md).
    """
    kept = [(name, value) for name, value in params if name != "page[cursor]"]
    self_link = f"{base_url}{path}" + (f"?{urlencode(params)}" if params else "")
    next_link = None
    if next_position is not None:
        next_link = f"{base_url}{path}?{urlencode([*kept, ('page[cursor]', encode_cursor(next_position))])}"
    return {"self": self_link, "next": next_link, "prev": None}
