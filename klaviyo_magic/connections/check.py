"""``connections.test``: prove a connection's key with one ``GET /api/accounts`` and say what happened.

Kept out of :mod:`klaviyo_magic.connections` so that module never imports the HTTP client.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from ..errors import AuthenticationError, KlaviyoError, NetworkError, PermissionDeniedError, RateLimitError
from .model import Connection

# Klaviyo allows GET /api/accounts only 1/s and 15/min per account (docs/klaviyo-api.md §2.1, §5.3). One client
# per check would start with a fresh pacer each time, so checks share a pacer per base URL.
_PACE_LOCK = threading.Lock()
_PACERS: dict[str, Any] = {}
# For the same reason, a key's account id is asked once per process: a check proves the key, and the export that
# follows it needs the account (to find the list's sync state) without a second call a second later.
_ACCOUNTS: dict[tuple[str, str], str] = {}  # (base URL, key digest) -> account id


def known_account(conn: Any) -> str | None:
    """The account id of ``conn``'s key, if this process has asked Klaviyo already."""
    return _ACCOUNTS.get(_account_key(conn))


def remember_account(conn: Any, account_id: str) -> None:
    _ACCOUNTS[_account_key(conn)] = account_id


def _account_key(conn: Any) -> tuple[str, str]:
    return conn.base_url, hashlib.sha256(conn.api_key.encode()).hexdigest()  # in memory only, never written


def check(conn: Connection) -> dict[str, Any]:
    """``{"name", "ok", "organization", "message", "status"}`` for one key check; a missing key source
    raises :class:`~klaviyo_magic.errors.ConfigError` before anything is sent."""
    from ..client import KlaviyoClient, RetryPolicy
    from ..pacing import LIMITS, Pacer

    result: dict[str, Any] = {
        "name": conn.name,
        "ok": False,
        "organization": None,
        "message": "",
        "status": None,
    }
    with _PACE_LOCK:
        pacer = _PACERS.setdefault(conn.base_url, Pacer(LIMITS["accounts"]))
    account_key = _account_key(conn)  # the key read once: the answer belongs to this key
    # Few attempts and short timeouts: this is an interactive check, not a long export.
    with KlaviyoClient(conn, timeout=(5.0, 30.0), retry=RetryPolicy(attempts=2, max_delay=2.0)) as client:
        pacer.acquire()
        try:
            account = client.get_account()
        except KlaviyoError as exc:
            result["status"] = exc.status
            result["message"] = _explain(conn, exc)
            return result
    if account.get("id"):
        _ACCOUNTS[account_key] = str(account["id"])
    attributes = account.get("attributes") or {}
    org = (attributes.get("contact_information") or {}).get("organization_name")
    result.update(ok=True, status=200, organization=org)
    test_note = " (a Klaviyo test account)" if attributes.get("test_account") else ""
    who = repr(org) if org else "an account"
    result["message"] = (
        f"{_capital(conn.label)} works: the key from {conn.masked_key} belongs to {who} "
        f"(id {account.get('id', '?')}){test_note} at {conn.base_url}."
    )
    return result


def _explain(conn: Connection, exc: KlaviyoError) -> str:
    """What a failed check means, in plain words, with what to do about it."""
    label, source = _capital(conn.label), conn.masked_key
    if isinstance(exc, AuthenticationError):
        return (
            f"{label} does not work: Klaviyo refused the key from {source} (401 Unauthorized). "
            "The key is mistyped, incomplete or was revoked. Create a private key in Klaviyo > Settings > "
            "API keys and update where this connection reads it from."
        )
    if isinstance(exc, PermissionDeniedError):
        return (
            f"{label} reached Klaviyo, but the key from {source} may not read the account "
            "(403 Forbidden). Give the key the accounts:read scope (and lists:write, profiles:write for "
            "exports) in Klaviyo > Settings > API keys; a 403 can also come from a proxy or firewall."
        )
    if isinstance(exc, RateLimitError):
        return (
            f"Klaviyo is rate limiting the check of {conn.label} (GET /api/accounts allows 1 call per second "
            "and 15 per minute per account). Wait a minute and test again."
        )
    if isinstance(exc, NetworkError):
        return f"{label}: could not reach {conn.base_url}. {exc}"
    return f"{label} does not work: {exc}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
