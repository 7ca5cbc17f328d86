"""Saved connection profiles: name a Klaviyo account once, use it everywhere, never leak its key.

A profile stores a name, where its key comes from (``env:VAR``, ``keyring`` or ``file``), the base URL, the
API revision and when its data-privacy terms were accepted, in ``connections.toml`` under
``$KLAVIYO_MAGIC_HOME``. The key itself is never written to that file: it is read from its source each time
:attr:`Connection.api_key` is used. Team profiles come from a read-only file an admin manages, named by
``$KLAVIYO_MAGIC_TEAM_FILE``.

Consent: saved profiles need their privacy terms accepted before an export may use them; ad-hoc connections
(built in code, or from ``$KLAVIYO_API_KEY``) count as consented; see :mod:`klaviyo_magic.connections.model`.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import home
from ..errors import ConfigError, ConsentRequiredError
from . import keys
from .keys import PlaintextKeyWarning
from .model import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_REVISION,
    TEAM_FILE_ENV,
    Connection,
    check_base_url,
    check_name,
    check_revision,
    parse_timestamp,
)

log = logging.getLogger(__name__)

STORES = ("auto", "keyring", "file")
CONNECTIONS_FILE = "connections.toml"
_HEADER = "# klaviyo-magic connection profiles. API keys are never stored in this file."

# -- the stores ----------------------------------------------------------------------------------------------


def store_path() -> Path:
    """The personal profile store, ``$KLAVIYO_MAGIC_HOME/connections.toml``."""
    return home.directory() / CONNECTIONS_FILE


def team_path() -> Path | None:
    value = os.environ.get(TEAM_FILE_ENV)
    return Path(value).expanduser() if value else None


def _record(name: str, rec: Any, *, path: Path, team: bool, default: str | None, accepted: Any) -> Connection:
    """A profile from its TOML table; mistakes name the file, since someone edited it by hand."""
    if not isinstance(rec, dict):
        raise ConfigError(f"{path}: [connections.{name}] must be a table. Fix the file by hand.")
    try:
        check_name(name)
        source = rec.get("key_source") or (f"env:{rec['api_key_env']}" if rec.get("api_key_env") else None)
        if source not in ("keyring", "file") and not (isinstance(source, str) and source.startswith("env:")):
            raise ConfigError("key_source must be 'env:VAR', 'keyring' or 'file'")
        if source.startswith("env:"):
            source = "env:" + keys.check_env_name(source[4:])
        stamp = accepted if accepted is not None else rec.get("privacy_accepted_at")
        return Connection(
            name=name,
            base_url=check_base_url(rec.get("base_url", DEFAULT_BASE_URL)),
            revision=check_revision(rec.get("revision", DEFAULT_REVISION)),
            key_source=source,
            privacy_accepted_at=parse_timestamp(stamp),
            is_team=team,
            is_default=name == default,
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: connection '{name}' is invalid: {exc} Fix the file by hand.") from None


@dataclass
class _State:
    personal: dict[str, Connection]
    team: dict[str, Connection]
    default: str | None
    team_file: Path | None

    def names(self) -> builtins.list[str]:
        return sorted(set(self.personal) | set(self.team))


def _state() -> _State:
    path = store_path()
    data = home.load(path)
    tpath = team_path()
    tdata: dict[str, Any] = {}
    if tpath is not None:
        if not tpath.exists():
            raise ConfigError(
                f"${TEAM_FILE_ENV} points to {tpath}, which does not exist. Ask your admin for the right path, "
                f"or unset {TEAM_FILE_ENV}."
            )
        tdata = home.load(tpath)
    default = data.get("default") or tdata.get("default")
    consents = data.get("team_consent", {})
    personal = {
        n: _record(n, r, path=path, team=False, default=default, accepted=None)
        for n, r in data.get("connections", {}).items()
    }
    team = {
        n: _record(n, r, path=tpath, team=True, default=default, accepted=consents.get(n))
        for n, r in tdata.get("connections", {}).items()
        if tpath is not None
    }
    return _State(personal, team, default, tpath)


def _unknown(name: str, state: _State) -> ConfigError:
    names = state.names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    known = f" Known: {', '.join(names)}." if names else ""
    name = keys.redact(name)  # a key typed where a name belongs must not be echoed back
    return ConfigError(
        f"No connection named '{name}'.{hint}{known} Add it with "
        f"`%klaviyo_connection add {name} --api-key-env VAR` or `klaviyo-magic connection add {name} ...`."
    )


def _lookup(name: str, state: _State) -> Connection:
    if name in state.personal and name in state.team:
        raise ConfigError(
            f"Connection '{name}' is defined both in your store ({store_path()}) and in the team file "
            f"({state.team_file}). Remove or rename yours: klaviyo-magic connection remove {name}"
        )
    found = state.personal.get(name) or state.team.get(name)
    if found is None:
        raise _unknown(name, state)
    return found


def _team_readonly(name: str, state: _State, doing: str) -> ConfigError:
    return ConfigError(
        f"Cannot {doing} '{name}': it is a team connection, managed by an admin in {state.team_file}. "
        "Ask them to change it, or add a personal connection under another name."
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- public API ----------------------------------------------------------------------------------------------


def add(
    name: str,
    *,
    api_key_env: str | None = None,
    api_key: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    revision: str = DEFAULT_REVISION,
    accept_privacy_terms: bool = False,
    store: str = "auto",
    replace: bool = False,
) -> Connection:
    """Save a personal profile and return it.

    Give ``api_key_env`` (preferred: only the variable's name is stored) or ``api_key``. A literal key goes to
    the OS keyring (``store="auto"``, the default, or ``"keyring"``); where no keyring is usable that is a
    :class:`ConfigError` and nothing is saved. Only ``store="file"`` writes it to the plain-text key file
    (mode 0600), with a :class:`PlaintextKeyWarning` saying where. ``replace=True`` overwrites a profile of the
    same name; its privacy acceptance is dropped unless ``accept_privacy_terms`` is given again, because the
    new key may belong to another account.
    """
    check_name(name)
    url, rev = check_base_url(base_url), check_revision(revision)
    if store not in STORES:
        raise ConfigError(f"store must be one of {', '.join(STORES)}, not {store!r}.")
    if (api_key_env is None) == (api_key is None):
        raise ConfigError(
            f"Give exactly one key source for '{name}': api_key_env='VAR' (the name of an environment variable "
            "holding the key; recommended) or api_key=... (stored in the OS keyring, or a 0600 file on request)."
        )
    key = keys.check_key(api_key, source=f"api_key for '{name}'") if api_key is not None else None
    var = keys.check_env_name(api_key_env) if api_key_env is not None else None
    if var is not None and store != "auto":
        raise ConfigError(f"store={store!r} is for literal keys; with api_key_env only the variable name is saved.")
    if key is not None and store != "file" and not keys.keyring_available():
        raise keys.no_keyring_error(name)  # before anything is written: the key file needs store="file"

    path = store_path()
    stored: str | None = None  # where a literal key went, to undo it if the profile cannot be saved
    try:
        with home.editing(path, header=_HEADER) as data:
            state = _state()
            source, stored = _add_locked(state, name, var, key, store, replace)
            record: dict[str, Any] = {"key_source": source, "base_url": url, "revision": rev}
            if accept_privacy_terms:
                record["privacy_accepted_at"] = _now()
            data.setdefault("connections", {})[name] = record
    except BaseException:
        if stored is not None:
            _forget_secret(Connection(name, key_source=stored))
        raise
    log.debug("saved connection %s (key from %s) to %s", name, source, path)
    return get(name)


def _add_locked(
    state: _State, name: str, var: str | None, key: str | None, store: str, replace: bool
) -> tuple[str, str | None]:
    """Checks and key storage for :func:`add`, run while the store is locked. Returns (source, stored)."""
    if name in state.team:
        raise ConfigError(
            f"'{name}' is already a team connection (managed by an admin in {state.team_file}); "
            "pick another name for your personal one."
        )
    previous = state.personal.get(name)
    if previous is not None and not replace:
        raise ConfigError(
            f"Connection '{name}' already exists. Remove it first (klaviyo-magic connection remove {name}) "
            "or replace it (replace=True, --replace)."
        )
    if key is None:
        source = f"env:{var}"
    elif store == "file":
        where = keys.file_set(name, key)
        source = "file"
        # Asked for, so not an error; still a warning, so a team can turn it into one (filterwarnings "error").
        warnings.warn(
            f"The API key of connection '{name}' is stored in plain text in {where} (mode 0600), as requested. "
            "An environment variable keeps it out of files altogether.",
            PlaintextKeyWarning,
            stacklevel=3,
        )
    else:
        keys.keyring_set(name, key)
        source = "keyring"
    if previous is not None and previous.key_source != source:
        _forget_secret(previous)
    return source, (source if key is not None and previous is None else None)


def get(name: str | None = None) -> Connection:
    """The profile ``name``; with no name the default profile, else an ad-hoc one from ``$KLAVIYO_API_KEY``."""
    state = _state()
    if name is not None:
        return _lookup(name, state)
    if state.default:
        if state.default not in state.personal and state.default not in state.team:
            raise ConfigError(
                f"The default connection '{state.default}' no longer exists. Pick another: "
                "klaviyo-magic connection default NAME (or %klaviyo_connection default NAME)."
            )
        return _lookup(state.default, state)
    if os.environ.get(API_KEY_ENV):
        return Connection.from_env(API_KEY_ENV)
    raise ConfigError(
        "No connection given and no default set. Add one with `%klaviyo_connection add NAME --api-key-env VAR "
        "--accept-privacy-terms` (or `klaviyo-magic connection add NAME ...`) and make it the default with "
        f"`default NAME`, or set ${API_KEY_ENV}."
    )


def list() -> builtins.list[Connection]:  # noqa: A001 - the public name is part of the contract
    """Every profile: personal ones first, then the team's, each sorted by name."""
    state = _state()
    return [state.personal[n] for n in sorted(state.personal)] + [state.team[n] for n in sorted(state.team)]


def remove(name: str) -> None:
    """Delete a personal profile and its stored key (keyring entry or key file entry)."""
    with home.editing(store_path(), header=_HEADER) as data:
        state = _state()
        if name not in state.personal:
            if name in state.team:
                raise _team_readonly(name, state, "remove")
            raise _unknown(name, state)
        _forget_secret(state.personal[name])
        del data["connections"][name]
        if data.get("default") == name:
            del data["default"]
    log.debug("removed connection %s", name)


def set_default(name: str | None) -> None:
    """Make ``name`` the connection used when none is named; ``None`` clears the default."""
    with home.editing(store_path(), header=_HEADER) as data:
        if name is None:
            data.pop("default", None)
            return
        _lookup(name, _state())
        data["default"] = name


def accept_privacy_terms(name: str) -> Connection:
    """Record, with a UTC timestamp, that the data-privacy terms were accepted for ``name``.

    For a team profile the acceptance is personal, so it is kept in your own store, not the team file.
    """
    with home.editing(store_path(), header=_HEADER) as data:
        conn = _lookup(name, _state())
        if conn.is_team:
            data.setdefault("team_consent", {})[name] = _now()
        else:
            data["connections"][name]["privacy_accepted_at"] = _now()
    return get(name)


def resolve(connection: Connection | str | None) -> Connection:
    """What an export should use: a profile name, a :class:`Connection`, or ``None`` for :func:`get`."""
    if isinstance(connection, Connection):
        return connection
    if connection is None or isinstance(connection, str):
        return get(connection)
    raise ConfigError(f"connection must be a profile name or a Connection, not {type(connection).__name__}.")


def require_consent(connection: Connection) -> None:
    """Raise :class:`ConsentRequiredError` unless the connection's privacy terms were accepted."""
    if connection.privacy_accepted:
        return
    name = connection.name
    raise ConsentRequiredError(
        f"Connection '{name}' cannot export yet: its data-privacy terms were never accepted. Accept them with "
        f"`%klaviyo_connection accept {name}` (or add it with --accept-privacy-terms), "
        f"`klaviyo-magic connection accept {name}`, or tick the box in the export form."
    )


def test(name_or_connection: Connection | str | None = None) -> dict[str, Any]:
    """Prove the key with one ``GET /api/accounts`` (docs/klaviyo-api.md §2.1); say what happened in plain words.

    Returns ``{"name", "ok", "organization", "message", "status"}``; 401/403/network failures give
    ``ok=False`` and a message saying what to do. Klaviyo allows this endpoint only 1 call/s and 15/min per
    account, so checks are paced: do not call it in a loop. A missing key source raises
    :class:`ConfigError` instead (nothing was sent).
    """
    from .check import check

    return check(resolve(name_or_connection))


def _forget_secret(conn: Connection) -> None:
    if conn.key_source == "keyring":
        keys.keyring_delete(conn.name)
    elif conn.key_source == "file":
        keys.file_delete(conn.name)


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "Connection",
    "DEFAULT_BASE_URL",
    "DEFAULT_REVISION",
    "PlaintextKeyWarning",
    "TEAM_FILE_ENV",
    "accept_privacy_terms",
    "add",
    "get",
    "list",
    "remove",
    "require_consent",
    "resolve",
    "set_default",
    "store_path",
    "team_path",
    "test",
]
