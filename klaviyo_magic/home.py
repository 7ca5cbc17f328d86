"""The directory klaviyo-magic keeps its files in, ``$KLAVIYO_MAGIC_HOME``, and small, safe TOML files in it.

Connection profiles, key files and saved exports are TOML; run journals and the history are JSON lines written
by their own modules, under :func:`directory` too.

Reading uses :mod:`tomllib`. Writing uses a tiny writer for the plain data we store (tables, strings,
numbers, booleans, datetimes, arrays), so the package needs no TOML-writing dependency. Every write is atomic
(temp file in the same directory, fsync, ``os.replace``) and mode 0600: a crash leaves either the old file or
the new one, never half of one, and a file that may one day hold a secret is never world-readable.

Each module using :func:`load`, :func:`save` and :func:`editing` owns its file's top-level tables (``connections``,
``default``, ``team_consent`` belong to :mod:`klaviyo_magic.connections`) and keeps the rest as it found it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

HOME_ENV = "KLAVIYO_MAGIC_HOME"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def directory() -> Path:
    """The directory holding our files: ``$KLAVIYO_MAGIC_HOME``, else the platform's user config dir.

    Read on every call (not cached) so tests and notebooks can switch it with an environment variable.
    """
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # imported here so `import klaviyo_magic` stays light

    return Path(platformdirs.user_config_dir("klaviyo-magic"))


def load(path: Path) -> dict[str, Any]:
    """The file's data, or ``{}`` when it does not exist yet.

    An unreadable or corrupt file raises :class:`ConfigError` naming it; it is never treated as empty,
    because the next save would then silently replace the user's profiles.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc.strerror or exc}. Check the file's permissions "
            f"(or set ${HOME_ENV} to another directory)."
        ) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # The parser's message gives line and column, never a whole line, so no value is echoed.
        reason = str(exc) if isinstance(exc, tomllib.TOMLDecodeError) else "it is not UTF-8 text"
        raise ConfigError(
            f"{path} is not valid TOML ({reason}). Nothing was changed: fix the file by hand, "
            "or move it aside to start afresh."
        ) from None


def save(path: Path, data: Mapping[str, Any], *, header: str = "") -> None:
    """Write ``data`` to ``path`` atomically, with mode 0600 (its directory is created with mode 0700)."""
    text = (header.rstrip("\n") + "\n\n" if header else "") + dumps(data)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # mkstemp creates the file with mode 0600 and a unique name, so a leftover from a crashed writer never
        # collides with the next one; the same directory keeps os.replace a single atomic rename.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}. Check the directory's permissions.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}. The previous file is unchanged.") from None
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def editing(path: Path, *, header: str = "") -> Iterator[dict[str, Any]]:
    """Load ``path``, let the caller change the dict, and save it when the block ends without an exception.

    An advisory lock (POSIX) keeps a notebook and a CLI run from interleaving their read-modify-write.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(path):
        data = load(path)
        yield data
        save(path, data, header=header)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the atomic rename still prevents torn files
        yield
        return
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"Cannot lock {path}: {exc.strerror or exc}. Check the directory's permissions.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- a tiny TOML writer --------------------------------------------------------------------------------------


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for ``data``: nested dicts become tables, ``None`` values are left out (TOML has no null)."""
    lines: list[str] = []
    _write_table(lines, (), data)
    return "\n".join(lines).strip("\n") + "\n"


def _write_table(lines: list[str], prefix: tuple[str, ...], table: Mapping[str, Any]) -> None:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if prefix and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in prefix)}]")
    for key, value in scalars:
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        _write_table(lines, (*prefix, str(key)), value)


def _key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + items + "}"
    raise TypeError(f"cannot write a {type(value).__name__} to TOML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


__all__ = ["HOME_ENV", "directory", "dumps", "editing", "load", "save"]
