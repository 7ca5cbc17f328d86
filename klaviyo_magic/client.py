"""The one place that talks HTTP to Klaviyo.

A :class:`KlaviyoClient` owns a ``requests.Session`` with the auth and revision headers, always-set timeouts,
per-endpoint pacing (``pacing.py``), retries with exponential backoff and jitter that honour Retry-After, and
the translation of error responses into the :mod:`klaviyo_magic.errors` tree. Callers never see a
``requests`` exception or a raw error body.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from ._version import __version__
from .errors import (
    AuthenticationError,
    KlaviyoError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .pacing import Pacers
from .retries import RetryNotice, Stopped, Stops

log = logging.getLogger(__name__)

JSONAPI = "application/vnd.api+json"
# 104 is in the official SDK's list but is an errno, not a status; 500/502 are retried here although the SDK
# does not (docs/klaviyo-api.md §4.4): bulk import is an upsert, so a repeated job is harmless, a lost one is not.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 522, 524})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # total calls, including the first
    base_delay: float = 0.5
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random, so retries spread out."""
        delay = min(self.max_delay, self.base_delay * 2**attempt)
        return delay / 2 + random.uniform(0, delay / 2)


@dataclass
class Response:
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: Any  # parsed JSON, or None for 204

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None


class KlaviyoClient:
    """HTTP client for the handful of Klaviyo endpoints klaviyo-magic uses.

    ``connection`` is anything with ``name``, ``api_key``, ``base_url`` and ``revision`` attributes (a
    :class:`klaviyo_magic.connections.Connection`). The key is read once, kept in the session's headers only,
    and never put in a message, repr or log line. ``stop`` (a :class:`threading.Event`) ends any wait for a
    retry or the rate limit with :class:`Stopped`; ``on_retry`` receives a :class:`RetryNotice` before each retry.
    """

    def __init__(
        self,
        connection: Any,
        *,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy | None = None,
        pace: bool = True,
        pool_size: int = 16,
        stop: threading.Event | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
    ) -> None:
        self.connection = connection
        self.stop = stop  # set by the caller (a Cancel button): waits end at once, raising Stopped
        self._stops = Stops(stop)  # ... and so does halt()
        self.on_retry = on_retry  # told before each retry, so a silent wait never looks like a hang
        self.base_url = connection.base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.pacers = Pacers(enabled=pace)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Klaviyo-API-Key {connection.api_key}",
                "revision": connection.revision,
                "Accept": JSONAPI,
                "User-Agent": f"klaviyo-magic/{__version__}",
            }
        )
        # Never follow redirects: a redirect to another host is not where the key should go.
        self._session.max_redirects = 0

    def __repr__(self) -> str:
        return f"KlaviyoClient(connection={getattr(self.connection, 'name', '?')!r}, base_url={self.base_url!r})"

    def __enter__(self) -> KlaviyoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- the generic request -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        action: str,
        params: dict[str, Any] | None = None,
        body: bytes | dict | None = None,
    ) -> Response:
        """Send one request, pacing and retrying as needed; raise a :class:`KlaviyoError` on failure.

        ``operation`` names the rate-limit bucket (see ``pacing.LIMITS``); ``action`` says in plain words what
        we were doing, for error messages ("creating import job 3/7 for list 'Y6nRLr'").
        """
        url = path if path.startswith("http") else urljoin(self.base_url + "/", path.lstrip("/"))
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"Content-Type": JSONAPI} if data is not None else None
        pacer = self.pacers.get(operation)
        attempt = 0
        while True:
            if pacer:
                pacer.acquire(self._stops)
            self._check_stop()
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if attempt + 1 >= self.retry.attempts:
                    raise NetworkError(
                        f"{kind} while {action} ({method} {_strip_query(url)}) after {attempt + 1} attempts. "
                        "Check your network and the connection's base URL, then run the export again.",
                        method=method,
                        url=_strip_query(url),
                        action=action,
                    ) from None
                delay = self.retry.backoff(attempt)
                problem = "timed out" if kind == "timed out" else "unreachable"
                self._wait_to_retry(RetryNotice(attempt + 1, self.retry.attempts, delay, problem, action), method, url)
                attempt += 1
                continue
            if resp.status_code < 400:
                return Response(resp.status_code, resp.headers, _parse_json(resp))
            retry_after = _retry_after(resp)
            if resp.status_code in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                # Klaviyo's Retry-After says when the window has room again: wait that long (with a little jitter,
                # so that waiting threads do not all come back at once) rather than a backoff that grows with
                # every 429 of a storm; without it, back off exponentially.
                if retry_after is not None:
                    delay = retry_after + random.uniform(0.05, 0.05 + 0.2 * max(retry_after, 0.5))
                else:
                    delay = self.retry.backoff(attempt)
                notice = RetryNotice(attempt + 1, self.retry.attempts, delay, str(resp.status_code), action)
                if resp.status_code == 429 and pacer:
                    # Every other request to this endpoint would get the same answer: hold them all.
                    pacer.pause(delay)
                    self._notify(notice, method, url)
                else:
                    self._wait_to_retry(notice, method, url)
                attempt += 1
                continue
            raise self._error(resp, method, url, action, attempts=attempt + 1, retry_after=retry_after)

    def _notify(self, notice: RetryNotice, method: str, url: str) -> None:
        log.info("%s %s: %s", method, _strip_query(url), notice.message)
        if self.on_retry is not None:
            self.on_retry(notice)

    def _wait_to_retry(self, notice: RetryNotice, method: str, url: str) -> None:
        self._notify(notice, method, url)
        if self._stops.wait(notice.delay):
            raise Stopped

    def _check_stop(self) -> None:
        if self._stops.is_set():
            raise Stopped

    @property
    def halted(self) -> bool:
        return self._stops.halted.is_set()

    def halt(self) -> None:
        """End every wait and refuse every request from now on, in all threads, with :class:`Stopped`: for Ctrl-C,
        which reaches only the main thread while workers may be waiting out a retry."""
        self._stops.halted.set()

    def _error(
        self,
        resp: requests.Response,
        method: str,
        url: str,
        action: str,
        *,
        attempts: int,
        retry_after: float | None,
    ) -> KlaviyoError:
        """Translate an error response into our exception tree, with a message that says what to do."""
        body = _parse_json(resp)
        errors = body.get("errors", []) if isinstance(body, dict) else []
        errors = [e for e in errors if isinstance(e, dict)]
        status = resp.status_code
        detail = "; ".join(str(e.get("detail") or e.get("title") or "") for e in errors[:3]).strip("; ")
        if not detail and not isinstance(body, dict):
            detail = f"non-JSON answer ({resp.headers.get('Content-Type', 'no content type')})"
        where = f"{status} from Klaviyo while {action}"
        source = getattr(self.connection, "masked_key", None) or "the API key"
        label = getattr(self.connection, "label", None)
        check = f" Check {label}." if label else ""
        kwargs: dict[str, Any] = dict(
            status=status,
            errors=errors,
            method=method,
            url=_strip_query(url),
            action=action,
            headers={k: v for k, v in resp.headers.items() if k.lower().startswith(("ratelimit", "retry-after"))},
        )
        if status == 401:
            return AuthenticationError(
                f"{where}: the key from {source} was refused ({detail or 'not authenticated'}).{check}",
                **kwargs,
            )
        if status == 403:
            return PermissionDeniedError(
                f"{where}: the key from {source} is not allowed to do this ({detail or 'forbidden'}). "
                f"Give the key the lists:write and profiles:write scopes (Klaviyo > Settings > API keys).{check}",
                **kwargs,
            )
        if status == 404:
            return NotFoundError(f"{where}: {detail or 'not found'}.", **kwargs)
        if status == 429:
            return RateLimitError(
                f"{where}: still rate limited after {attempts} attempts ({detail or 'throttled'}). "
                "Another integration may be using this account's quota; wait a minute and try again.",
                retry_after=retry_after,
                **kwargs,
            )
        if status >= 500:
            return ServerError(
                f"{where}: Klaviyo had a server error and still did after {attempts} attempts "
                f"({detail or 'no detail'}). "
                "Try again later; https://status.klaviyo.com shows incidents.",
                **kwargs,
            )
        return ValidationError(f"{where}: {detail or 'request rejected'}.", **kwargs)

    # -- endpoints ---------------------------------------------------------------------------------------

    def get_account(self) -> dict:
        """The account the key belongs to (one call; Klaviyo allows 1/s, 15/min)."""
        resp = self.request("GET", "/api/accounts", operation="accounts", action="checking the API key")
        data = resp.data or []
        return data[0] if data else {}

    def iter_lists(self) -> Iterator[dict]:
        """Every list in the account, following Klaviyo's cursor pages (10 per page)."""
        url: str | None = "/api/lists"
        page = 1
        while url:
            resp = self.request("GET", url, operation="lists:read", action=f"reading page {page} of the lists")
            yield from resp.data or []
            url = (resp.body.get("links") or {}).get("next")
            page += 1

    def get_list(self, list_id: str) -> dict:
        resp = self.request(
            "GET", f"/api/lists/{list_id}", operation="lists:read", action=f"looking up list '{list_id}'"
        )
        return resp.data

    def create_list(self, name: str) -> dict:
        body = {"data": {"type": "list", "attributes": {"name": name}}}
        resp = self.request("POST", "/api/lists", operation="lists:create", action=f"creating list '{name}'", body=body)
        return resp.data

    def iter_list_members(self, list_id: str, emails: list[str], *, action: str) -> Iterator[dict]:
        """The members of ``list_id`` among ``emails`` (id, email and when each joined the list), every page of them:
        a filter with many emails returns 20 per page unless asked for 100, Klaviyo's maximum (docs/klaviyo-api.md
        §2.11)."""
        quoted = ",".join(json.dumps(email) for email in emails)
        url: str | None = f"/api/lists/{list_id}/profiles"
        params: dict[str, Any] | None = {
            "filter": f"any(email,[{quoted}])",
            "page[size]": 100,
            "fields[profile]": "email,joined_group_at",
        }
        while url:
            resp = self.request("GET", url, operation="list-members:read", action=action, params=params)
            yield from resp.data or []
            url, params = (resp.body.get("links") or {}).get("next"), None

    def newest_join(self, list_id: str, *, action: str) -> tuple[bool, str | None, str | None]:
        """Whether the list has members, when the newest joined it (``joined_group_at``), and Klaviyo's time of the
        answer (its ``Date`` header): one member, the list sorted newest first (docs/klaviyo-api.md §2.11)."""
        params = {"sort": "-joined_group_at", "page[size]": 1, "fields[profile]": "joined_group_at"}
        resp = self.request(
            "GET", f"/api/lists/{list_id}/profiles", operation="list-members:read", action=action, params=params
        )
        members = resp.data or []
        joined = (members[0].get("attributes") or {}).get("joined_group_at") if members else None
        return bool(members), joined, resp.headers.get("Date")

    def remove_from_list(self, list_id: str, profile_ids: list[str], *, action: str) -> None:
        """Take up to 1000 profiles out of the list (the profiles themselves stay; docs/klaviyo-api.md §2.10)."""
        body = {"data": [{"type": "profile", "id": profile_id} for profile_id in profile_ids]}
        self.request(
            "DELETE", f"/api/lists/{list_id}/relationships/profiles", operation="list-members:write", action=action,
            body=body,
        )  # fmt: skip

    def create_import_job(self, body: bytes, *, action: str) -> dict:
        resp = self.request(
            "POST", "/api/profile-bulk-import-jobs", operation="bulk-import:create", action=action, body=body
        )
        return resp.data

    def get_import_job(self, job_id: str) -> dict:
        resp = self.request(
            "GET",
            f"/api/profile-bulk-import-jobs/{job_id}",
            operation="bulk-import:read",
            action=f"checking import job {job_id}",
        )
        return resp.data

    def iter_import_jobs(self, *, page_size: int = 100) -> Iterator[dict]:
        """Import jobs, newest first. One call reports up to 100 jobs, which is how we poll many at once."""
        url: str | None = "/api/profile-bulk-import-jobs"
        params: dict[str, Any] | None = {"sort": "-created_at", "page[size]": page_size}
        while url:
            resp = self.request("GET", url, operation="bulk-import:read", action="checking import jobs", params=params)
            yield from resp.data or []
            url, params = (resp.body.get("links") or {}).get("next"), None

    def iter_import_errors(self, job_id: str) -> Iterator[dict]:
        url: str | None = f"/api/profile-bulk-import-jobs/{job_id}/import-errors"
        params: dict[str, Any] | None = {"page[size]": 100}
        while url:
            resp = self.request(
                "GET",
                url,
                operation="bulk-import:read",
                action=f"reading the errors of import job {job_id}",
                params=params,
            )
            yield from resp.data or []
            url, params = (resp.body.get("links") or {}).get("next"), None


def _parse_json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]
