"""One exception tree for the whole package.

Local input problems (a bad DataFrame, an unknown column, a missing profile) subclass ``ValueError`` so
plain Python code can catch them the usual way. Problems reported by Klaviyo (or the network on the way to
it) subclass :class:`KlaviyoError` and carry what the client knew: status, Klaviyo's error entries, the
method and URL (never the key), and what we were doing at the time.
"""

from __future__ import annotations

from typing import Any


class KlaviyoMagicError(Exception):
    """Base class of every error raised by klaviyo_magic. ``result`` is the partial
    :class:`~klaviyo_magic.ExportResult` when an export stopped after reading its input, else None."""

    result: Any = None


class InputError(KlaviyoMagicError, ValueError):
    """The caller's input cannot be exported as given (wrong type, unknown column, too many rows...)."""


class ConfigError(KlaviyoMagicError, ValueError):
    """A connection profile or store is missing, invalid, unreadable or read-only."""


class ConsentRequiredError(ConfigError):
    """The connection's data-privacy terms were never accepted."""


class KlaviyoError(KlaviyoMagicError):
    """Klaviyo answered with an error, or could not be reached.

    ``errors`` holds Klaviyo's JSON:API error entries (dicts with code, title, detail, source...).
    ``action`` says what we were doing ("creating import job 3/7 for list 'Y6nRLr'").
    ``result`` is set by ``export_segment`` to the partial :class:`ExportResult` when an export stops.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        method: str | None = None,
        url: str | None = None,
        action: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = list(errors or [])
        self.method = method
        self.url = url
        self.action = action
        self.headers = dict(headers or {})

    @property
    def code(self) -> str | None:
        return self.errors[0].get("code") if self.errors else None

    @property
    def detail(self) -> str | None:
        return self.errors[0].get("detail") if self.errors else None

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class AuthenticationError(KlaviyoError):
    """401: the key is missing, malformed or revoked."""


class PermissionDeniedError(KlaviyoError):
    """403: the key is valid but lacks a scope (or a proxy refused the request)."""


class NotFoundError(KlaviyoError):
    """404: unknown resource (or a revision that does not offer this endpoint)."""


class ValidationError(KlaviyoError):
    """400/409/413/415/422: Klaviyo rejected the request body or parameters. Never retried."""


class RateLimitError(KlaviyoError):
    """429 after every retry was used. ``retry_after`` is Klaviyo's hint in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(KlaviyoError):
    """5xx after every retry was used."""


class NetworkError(KlaviyoError):
    """The connection failed, was dropped, or timed out, after every retry was used."""


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a kernel interrupt) stopped an export; ``result`` accounts for every row so far.

    It subclasses KeyboardInterrupt so an interrupt still behaves as one for callers that do not know it.
    """

    def __init__(self, result: Any, message: str | None = None) -> None:
        super().__init__(message or (result.summary() if hasattr(result, "summary") else "export interrupted"))
        self.result = result


__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConsentRequiredError",
    "ExportInterrupted",
    "InputError",
    "KlaviyoError",
    "KlaviyoMagicError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ValidationError",
]
