"""Checks every request passes before its endpoint runs: API key, revision, media type (§1.1, §1.3)."""

from __future__ import annotations

import re
from collections.abc import Collection

from .jsonapi import MEDIA_TYPE, ApiError, error_object, invalid

_AUTHORIZATION = re.compile(r"Klaviyo-API-Key\s+(pk_[A-Za-z0-9_-]+)\s*")

# The revision branches of klaviyo/openapi (§1.3), plus 2026-07-15 and 2026-10-15, the revision the official
# SDK 25.0.0 sends. Each is accepted with or without the beta suffix ".pre".
KNOWN_REVISIONS = frozenset(
    """
    2022-10-17 2023-01-24 2023-02-22 2023-06-15 2023-07-15 2023-08-15 2023-09-15 2023-10-15 2023-12-15
    2024-02-15 2024-05-15 2024-06-15 2024-07-15 2024-10-15 2025-01-15 2025-04-15 2025-07-15 2025-10-15
    2026-01-15 2026-04-15 2026-07-15 2026-10-15
    """.split()
)
_REVISION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(?:\.[A-Za-z0-9]+)?")
_ACCEPTED_MEDIA_TYPES = (
    MEDIA_TYPE,
    "application/json",
)  # the spec's type, and plain JSON that works in practice


def authenticate(header: str | None, api_keys: Collection[str] | None) -> None:
    """``Authorization: Klaviyo-API-Key pk_...``; anything else is the 401 ``not_authenticated`` of §4.2."""
    match = _AUTHORIZATION.fullmatch(header or "")
    if match is None:
        raise _unauthenticated("Missing or invalid authorization scheme. Please use Klaviyo-API-Key.")
    if api_keys is not None and match[1] not in api_keys:
        raise _unauthenticated("The private API key is not valid for this account.")


def _unauthenticated(detail: str) -> ApiError:
    title = "Authentication credentials were not provided."
    return ApiError(401, [error_object(401, "not_authenticated", title, detail, pointer="/data/")])


def check_revision(value: str | None) -> None:
    """A known revision is required. Missing is unconfirmed in Klaviyo: a 400 here (§1.3). A well-formed but
    unknown one gets the observed 404 "No valid revisions found for method"."""
    if value is None:
        raise invalid("The 'revision' header is required, e.g. 'revision: 2026-10-15'.", parameter="revision")
    if not _REVISION_FORMAT.fullmatch(value):
        raise invalid(f"'{value}' is not a revision; use the format YYYY-MM-DD[.suffix].", parameter="revision")
    date, _, suffix = value.partition(".")
    if date not in KNOWN_REVISIONS or suffix not in ("", "pre"):
        error = error_object(
            404, "not_found", "Not found.", "No valid revisions found for method", parameter="revision"
        )
        raise ApiError(404, [error])


def check_media_type(content_type: str | None, content_encoding: str | None) -> None:
    """Bodies must be JSON:API (or plain JSON) and not compressed, else 415 (§1.1). Klaviyo's handling of
    compressed bodies is unconfirmed, so the sandbox refuses them rather than let a client depend on it."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = (content_encoding or "identity").strip().lower()
    if media_type not in _ACCEPTED_MEDIA_TYPES or encoding != "identity":
        detail = "The Content-Type or Content-Encoding header is set incorrectly."
        raise ApiError(415, [error_object(415, "unsupported_media_type", "Unsupported media type.", detail)])
