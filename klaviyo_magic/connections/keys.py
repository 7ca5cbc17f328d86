"""Where API keys live: environment variables, the OS keyring, or (only on request) a 0600 key file.

Nothing in this module puts a key in a message, a log line or a repr. Keys are held in :class:`Secret`
objects whose repr is masked and which refuse to be pickled, so a key kept in memory cannot reach a notebook
output, a widget state or a saved file by accident.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .. import home
from ..errors import ConfigError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "klaviyo-magic"
KEYS_FILE = "keys.toml"  # under $KLAVIYO_MAGIC_HOME, written only on request (store="file")
KEY_PREFIX = "pk_"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What we print instead of a key, and what we scrub from text that may contain one (argparse errors...).
_KEY_LIKE = re.compile(r"pk_[A-Za-z0-9_\-]+")


class PlaintextKeyWarning(UserWarning):
    """An API key was written to the plain-text key file (on explicit request, mode 0600)."""


class Secret:
    """An API key held in memory. ``repr``/``str`` show only ``pk_****`` and the last four characters.

    The value sits in a closure rather than an attribute, so ``vars()``, ``__dict__`` dumps and object
    inspectors do not show it; :meth:`reveal` is the one way to read it.
    """

    __slots__ = ("_reveal", "masked")

    def __init__(self, value: str) -> None:
        self._reveal: Callable[[], str] = lambda: value
        self.masked = mask(value)

    def reveal(self) -> str:
        return self._reveal()

    def __repr__(self) -> str:
        return f"Secret({self.masked})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the key into whatever stores the pickle (a cache, a multiprocessing queue...).
        raise TypeError("an API key held in memory cannot be pickled; save it as a connection profile instead")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def mask(key: str) -> str:
    """``pk_****abcd``; shorter keys show no characters at all."""
    return f"{KEY_PREFIX}****{key[-4:]}" if len(key) >= 16 else f"{KEY_PREFIX}****"


def redact(text: str) -> str:
    """``text`` with anything shaped like a private key replaced by its mask."""
    return _KEY_LIKE.sub(lambda m: mask(m.group(0)), text)


def check_key(key: str, *, source: str) -> str:
    """The key without surrounding whitespace, or :class:`ConfigError` (which never echoes it)."""
    key = key.strip()
    if not key:
        raise ConfigError(f"The API key from {source} is empty. Paste your Klaviyo private API key (pk_...).")
    if not key.startswith(KEY_PREFIX) or len(key) <= len(KEY_PREFIX):
        raise ConfigError(
            f"The API key from {source} does not look like a Klaviyo private API key: those start with "
            f"'{KEY_PREFIX}' (the 6-character public key/site ID does not work for /api calls). "
            "Create one in Klaviyo > Settings > API keys."
        )
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"The API key from {source} contains spaces; copy the key again without them.")
    return key


def check_env_name(var: str) -> str:
    """A valid environment variable name (a leading ``$`` is dropped), or :class:`ConfigError`."""
    var = var.strip()
    if var.startswith(KEY_PREFIX):
        # The shell expanded `--api-key-env $KLAVIYO_API_KEY`, or the key was pasted: do not store it.
        raise ConfigError(
            "api_key_env takes the NAME of an environment variable (e.g. KLAVIYO_API_KEY), but got what "
            "looks like a key itself (a shell expands an unquoted $NAME). Give the name alone, e.g. "
            "--api-key-env KLAVIYO_API_KEY; the key was not saved."
        )
    var = var.removeprefix("$")
    if not _ENV_NAME.match(var):
        raise ConfigError(
            f"{var!r} is not an environment variable name: use letters, digits and '_' (e.g. KLAVIYO_API_KEY)."
        )
    return var


# -- environment ---------------------------------------------------------------------------------------------


def from_env(var: str, *, connection: str | None) -> str:
    """The key in ``$var``; ``connection`` is the saved connection reading it (None for an ad-hoc one)."""
    value = os.environ.get(var)
    if value is None or not value.strip():
        who = f"Connection '{connection}' reads its API key from ${var}, which" if connection else f"${var}"
        fix = ", or re-add the connection with another variable" if connection else ""
        raise ConfigError(
            f"{who} is not set in this process. Set {var} in the environment that starts Python/Jupyter "
            f"(then restart the kernel){fix}."
        )
    return check_key(value, source=f"${var}")


# -- OS keyring ----------------------------------------------------------------------------------------------


def _keyring() -> Any | None:
    """The ``keyring`` module when it is installed and has a working backend, else ``None``."""
    try:
        import keyring
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration must not break profile handling
        log.debug("keyring backend could not be loaded", exc_info=True)
        return None
    # keyring falls back to backends that fail (or do nothing) when the OS offers none, e.g. in containers.
    module = type(backend).__module__
    if module in ("keyring.backends.fail", "keyring.backends.null"):
        return None
    if module == "keyring.backends.chainer" and not getattr(backend, "backends", None):
        return None
    return keyring


def keyring_available() -> bool:
    return _keyring() is not None


def no_keyring_error(
    name: str, *, env_option: str = "api_key_env='VAR'", file_option: str = "store='file'"
) -> ConfigError:
    """Why a literal key is refused where no keyring works, with the fixes spelled in the caller's options.

    A plain-text key file is written only when asked for, never as a silent fallback.
    """
    return ConfigError(
        f"No usable OS keyring to keep the API key of connection '{redact(name)}' in, and a plain-text key file "
        "is written only on request, so nothing was saved. Keep the key in an environment variable and save "
        f"its name ({env_option}; recommended), install a keyring (pip install 'klaviyo-magic[keyring]' and a "
        "backend such as the Secret Service, Keychain or Windows Credential Locker), or accept a plain-text "
        f"key file only you can read, mode 0600 ({file_option})."
    )


def keyring_set(name: str, key: str) -> None:
    keyring = _keyring()
    if keyring is None:
        raise no_keyring_error(name)
    try:
        keyring.set_password(KEYRING_SERVICE, name, key)
    except Exception as exc:
        raise ConfigError(
            f"The OS keyring refused to store the key for connection '{name}' ({type(exc).__name__}). "
            "Unlock the keyring, or use --api-key-env instead."
        ) from None


def keyring_get(name: str) -> str:
    keyring = _keyring()
    if keyring is None:
        raise ConfigError(
            f"Connection '{name}' keeps its API key in the OS keyring, but no usable keyring was found here "
            "(install the 'keyring' package and a backend). Or re-add the connection with --api-key-env."
        )
    try:
        value = keyring.get_password(KEYRING_SERVICE, name)
    except Exception as exc:
        raise ConfigError(
            f"The OS keyring could not be read for connection '{name}' ({type(exc).__name__}). Unlock it and retry."
        ) from None
    if not value:
        raise ConfigError(
            f"Connection '{name}' keeps its API key in the OS keyring, but there is no entry for it "
            f"(service '{KEYRING_SERVICE}', user '{name}'). Re-add it: "
            f"klaviyo-magic connection add {name} --api-key-stdin --replace"
        )
    return check_key(value, source=f"the keyring entry of connection '{name}'")


def keyring_delete(name: str) -> None:
    keyring = _keyring()
    if keyring is None:
        return
    try:
        keyring.delete_password(KEYRING_SERVICE, name)
    except Exception:  # already gone, or the backend cannot delete: nothing left for us to clean up
        log.debug("no keyring entry deleted for connection %s", name)


# -- the explicit key file -----------------------------------------------------------------------------------

_KEYS_HEADER = (
    "# klaviyo-magic API keys in plain text, written only on request (store='file', --store file).\n"
    "# Keep this file private (mode 0600); prefer environment variables."
)


def keys_path() -> Path:
    return home.directory() / KEYS_FILE


def file_set(name: str, key: str) -> Path:
    path = keys_path()
    with home.editing(path, header=_KEYS_HEADER) as data:
        keys = data.setdefault("keys", {})
        keys[name] = key
    log.debug("stored the key of connection %s in %s", name, path)
    return path


def file_get(name: str) -> str:
    path = keys_path()
    value = home.load(path).get("keys", {}).get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"Connection '{name}' keeps its API key in {path}, but there is no entry for it there. Re-add it: "
            f"klaviyo-magic connection add {name} --api-key-stdin --store file --replace"
        )
    return check_key(value, source=f"{path} (entry '{name}')")


def file_delete(name: str) -> None:
    path = keys_path()
    if not path.exists():
        return
    with home.editing(path, header=_KEYS_HEADER) as data:
        data.get("keys", {}).pop(name, None)


__all__ = [
    "KEYRING_SERVICE",
    "PlaintextKeyWarning",
    "Secret",
    "check_env_name",
    "check_key",
    "file_delete",
    "file_get",
    "file_set",
    "keyring_available",
    "keyring_delete",
    "keyring_get",
    "keyring_set",
    "keys_path",
    "mask",
    "no_keyring_error",
    "redact",
]
