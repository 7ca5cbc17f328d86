"""The :class:`Connection` object and the checks on its fields (name, base URL, revision).

Kept apart from the profile store (:mod:`klaviyo_magic.connections`) so the object can be built and passed
around, e.g. by the client, without touching any file.

Consent: profiles on disk need their privacy terms accepted before an export may use them. Connections built
in code (:meth:`Connection.from_key`) or taken from ``$KLAVIYO_API_KEY`` when no default profile exists are
*ad hoc*: the caller supplied the key for this very call, which is the acceptance, so they count as consented.
The gate protects profiles that can be picked by name, possibly by someone else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError
from ..loopback import is_loopback
from . import keys
from .keys import Secret

DEFAULT_BASE_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-10-15"
API_KEY_ENV = "KLAVIYO_API_KEY"
BASE_URL_ENV = "KLAVIYO_BASE_URL"
TEAM_FILE_ENV = "KLAVIYO_MAGIC_TEAM_FILE"
# The made-up key of the sandbox `%klaviyo_connection sandbox` starts: set only inside that notebook's kernel.
SANDBOX_KEY_ENV = "KLAVIYO_SANDBOX_KEY"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")  # YYYY-MM-DD[.suffix], docs/klaviyo-api.md §1.1


@dataclass(frozen=True)
class Connection:
    """One Klaviyo account to talk to. Safe to display: no repr, str or field ever holds the key.

    Saved profiles come from :mod:`klaviyo_magic.connections`; build one in code with :meth:`from_key` or
    :meth:`from_env`. ``api_key`` reads the key from its source at call time.
    """

    name: str
    base_url: str = DEFAULT_BASE_URL
    revision: str = DEFAULT_REVISION
    key_source: str = "inline"  # "env:VAR" | "keyring" | "file" | "inline" (held in memory)
    privacy_accepted_at: datetime | None = None
    is_team: bool = False
    is_default: bool = False
    is_ad_hoc: bool = False  # built in code or from $KLAVIYO_API_KEY, not a saved profile
    _secret: Secret | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_key(
        cls,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        name: str = "inline",
        revision: str = DEFAULT_REVISION,
    ) -> Connection:
        """An in-memory connection for code that already holds a key. Counts as consented (see module doc)."""
        key = keys.check_key(api_key, source="Connection.from_key()")
        return cls(
            name=name,
            base_url=check_base_url(base_url),
            revision=check_revision(revision),
            key_source="inline",
            is_ad_hoc=True,
            _secret=Secret(key),
        )

    @classmethod
    def from_env(
        cls,
        var: str = API_KEY_ENV,
        *,
        base_url: str | None = None,
        name: str = "env",
        revision: str = DEFAULT_REVISION,
    ) -> Connection:
        """Ad hoc: the key is read from ``$var`` at call time; base URL from ``$KLAVIYO_BASE_URL``."""
        url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        return cls(
            name=name,
            base_url=check_base_url(url),
            revision=check_revision(revision),
            key_source=f"env:{keys.check_env_name(var)}",
            is_ad_hoc=True,
        )

    @property
    def api_key(self) -> str:
        """The key, read from its source now; if missing, :class:`ConfigError` naming the source."""
        if self.key_source.startswith("env:"):
            if self._notebook_sandbox and not os.environ.get(SANDBOX_KEY_ENV, "").strip():
                # Its key variable is ours, not the user's: "set it and restart" would be no help.
                raise ConfigError(
                    f"Connection '{self.name}' points at the sandbox a notebook started at {self.base_url}; that "
                    "sandbox runs only inside the notebook's kernel and stops with it. Start a new one with "
                    "`%klaviyo_connection sandbox` in a notebook, or use another connection: --connection NAME."
                )
            return keys.from_env(self.key_source[4:], connection=None if self.is_ad_hoc else self.name)
        if self.key_source == "keyring":
            return keys.keyring_get(self.name)
        if self.key_source == "file":
            return keys.file_get(self.name)
        if self._secret is not None:
            return self._secret.reveal()
        raise ConfigError(f"Connection '{self.name}' has no API key source. Re-add it with --api-key-env VAR.")

    @property
    def _notebook_sandbox(self) -> bool:
        """Saved by ``%klaviyo_connection sandbox``: a loopback URL and the sandbox's made-up key variable."""
        from urllib.parse import urlsplit

        return (
            not self.is_ad_hoc
            and self.key_source == f"env:{SANDBOX_KEY_ENV}"
            and is_loopback(urlsplit(self.base_url).hostname or "")
        )

    @property
    def masked_key(self) -> str:
        """Where the key comes from, safe to show: ``env:KLAVIYO_API_KEY``, ``keyring`` or ``pk_****abcd``."""
        if self.key_source == "file":
            try:
                return keys.mask(keys.file_get(self.name))
            except ConfigError:
                return "file (missing)"
        if self._secret is not None:
            return self._secret.masked
        return self.key_source

    @property
    def label(self) -> str:
        """How messages name this connection: ``connection 'prod'``; an ad-hoc one by where its key comes from,
        since the user never named it (``the key in $KLAVIYO_API_KEY``)."""
        if not self.is_ad_hoc or self.name not in ("inline", "env"):  # saved, or named by the code that made it
            return f"connection '{self.name}'"
        if self.key_source.startswith("env:"):
            return f"the key in ${self.key_source[4:]}"
        return "the key given in code"

    @property
    def privacy_accepted(self) -> bool:
        return self.is_ad_hoc or self.privacy_accepted_at is not None

    @property
    def scope(self) -> str:
        return "team" if self.is_team else "ad hoc" if self.is_ad_hoc else "personal"

    def summary(self) -> dict[str, Any]:
        """One row for ``list`` displays (the magic's DataFrame, the CLI's table)."""
        return {
            "name": self.name,
            "key": self.masked_key,
            "base_url": self.base_url,
            "revision": self.revision,
            "default": self.is_default,
            "scope": self.scope,
            "privacy_accepted_at": self.privacy_accepted_at.isoformat() if self.privacy_accepted_at else None,
        }

    def __repr__(self) -> str:
        # key_source rather than masked_key: a repr must not read files or the keyring.
        source = self._secret.masked if self._secret is not None else self.key_source
        flags = " default" if self.is_default else ""
        accepted = self.privacy_accepted_at.isoformat() if self.privacy_accepted_at else None
        return (
            f"<Connection {self.name!r} ({self.scope}{flags}) key={source} base_url={self.base_url} "
            f"revision={self.revision} privacy_accepted_at={accepted}>"
        )

    __str__ = __repr__


# -- validation ----------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if isinstance(name, str) and name.startswith(keys.KEY_PREFIX):
        # Probably a key typed in the wrong place: names are echoed and saved, so refuse it unseen.
        raise ConfigError("A connection name may not start with 'pk_', which is how API keys start.")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a usable connection name: start with a letter or digit, then letters, digits, "
            "'_', '-' or '.' (at most 64)."
        )
    return name


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash; https required, plain http only to loopback (the local sandbox)."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url).strip())
    if parts.username or parts.password:
        raise ConfigError("The base URL must not contain a user name or password; the API key is sent separately.")
    shown = keys.redact(parts._replace(query="", fragment="").geturl())
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback(host):
        pass
    elif parts.scheme != "https" or not host:
        raise ConfigError(
            f"Base URL {shown!r} is not allowed: use https://... (default {DEFAULT_BASE_URL}); plain http:// "
            "only to this machine (127.0.0.1, localhost, [::1]), e.g. the klaviyo-magic sandbox."
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"Base URL {shown!r} must not have a query string or fragment.")
    return shown.rstrip("/")


def check_revision(revision: str) -> str:
    if not isinstance(revision, str) or not _REVISION.match(revision):
        shown = keys.redact(repr(revision))
        raise ConfigError(f"Revision {shown} is not a Klaviyo API revision: use YYYY-MM-DD, e.g. {DEFAULT_REVISION}.")
    return revision


def parse_timestamp(value: Any) -> datetime | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"privacy_accepted_at {value!r} is not an ISO date and time.") from None
    if not isinstance(value, datetime):
        raise ConfigError("privacy_accepted_at must be a date and time.")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_REVISION",
    "SANDBOX_KEY_ENV",
    "TEAM_FILE_ENV",
    "Connection",
    "check_base_url",
    "check_name",
    "check_revision",
    "parse_timestamp",
]
