"""Saved exports and their run history.

As in the platform we learn from, saving an export does not run it: ``save`` stores the binding (DataFrame
variable names, email column, list id, connection, properties) in ``exports.toml`` under
``$KLAVIYO_MAGIC_HOME``; ``run`` looks the variables up in a namespace (the notebook's, or frames read from
files by the CLI) and exports them. Each run appends one JSON line to ``history.jsonl``: time, counts, job
ids, outcome. No key is ever part of either file: a saved export names its connection, nothing more.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import home
from ..errors import ConfigError, InputError, KlaviyoError, KlaviyoMagicError
from .namespace import did_you_mean, lookup

EXPORTS_FILE = "exports.toml"
HISTORY_FILE = "history.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADER = "# Saved klaviyo-magic exports. Written by klaviyo-magic; safe to read, edit with care."


@dataclass(frozen=True)
class SavedExport:
    name: str
    segments: tuple[str, ...]
    email: str
    list_id: str
    connection: str | None = None
    properties: tuple[str, ...] | dict[str, str] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    mode: str = "add"  # "mirror": also remove the members who left the segment
    max_removals: int | None = None
    files: dict[str, str] = field(default_factory=dict)  # segment name -> the file (or glob) it is read from

    def describe(self) -> str:
        conn = f" via connection '{self.connection}'" if self.connection else ""
        mirror = ", mirror" if self.mode == "mirror" else ""
        names = ", ".join(f"{s} ({self.files[s]})" if s in self.files else s for s in self.segments)
        return f"{names} -> list '{self.list_id}' (email column '{self.email}'{mirror}){conn}"

    def _to_toml(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "segments": list(self.segments),
            "email": self.email,
            "list_id": self.list_id,
            "created_at": self.created_at,
        }
        if self.connection:
            data["connection"] = self.connection
        if isinstance(self.properties, dict):
            data["property_map"] = dict(self.properties)
        elif self.properties:
            data["properties"] = list(self.properties)
        if self.mode != "add":
            data["mode"] = self.mode
        if self.max_removals is not None:
            data["max_removals"] = self.max_removals
        if self.files:
            data["files"] = dict(self.files)
        return data

    @classmethod
    def _from_toml(cls, name: str, data: Mapping[str, Any]) -> SavedExport:
        properties: tuple[str, ...] | dict[str, str] | None = None
        if "property_map" in data:
            properties = dict(data["property_map"])
        elif data.get("properties"):
            properties = tuple(data["properties"])
        return cls(
            name=name,
            segments=tuple(data["segments"]),
            email=data["email"],
            list_id=data["list_id"],
            connection=data.get("connection"),
            properties=properties,
            created_at=data.get("created_at", ""),
            mode=data.get("mode", "add"),
            max_removals=data.get("max_removals"),
            files=dict(data.get("files", {})),
        )


_COUNTS = ("total_rows", "would_send", "sent", "added", "updated", "unchanged", "removed", "skipped", "duplicates",
           "not_sent", "failed")  # fmt: skip


def _exports_path() -> Path:
    return home.directory() / EXPORTS_FILE


def _history_path() -> Path:
    return home.directory() / HISTORY_FILE


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"{name!r} is not a usable export name: use letters, digits, '-', '_' or '.', starting with a "
            "letter or digit (e.g. 'weekly-vip')."
        )
    return name


def save(export: SavedExport, *, overwrite: bool = True) -> SavedExport:
    """Store ``export`` under its name (replacing one of the same name unless ``overwrite=False``)."""
    _check_name(export.name)
    if not export.segments:
        raise InputError("a saved export needs at least one DataFrame variable name")
    with home.editing(_exports_path(), header=_HEADER) as data:
        exports = data.setdefault("exports", {})
        if export.name in exports and not overwrite:
            raise ConfigError(
                f"a saved export named '{export.name}' exists already; delete it first or pick another name"
            )
        exports[export.name] = export._to_toml()
    return export


def all_exports() -> list[SavedExport]:
    data = home.load(_exports_path()).get("exports", {})
    return [SavedExport._from_toml(name, entry) for name, entry in sorted(data.items())]


def table(exports: list[SavedExport]) -> Any:
    """Saved exports as a DataFrame, one row each (``%klaviyo_export --saved``, ``klaviyo-magic saved``)."""
    import pandas as pd

    rows = [
        {
            "name": e.name,
            "segments": ", ".join(f"{s} ({e.files[s]})" if s in e.files else s for s in e.segments),
            "email": e.email,
            "list_id": e.list_id,
            "connection": e.connection,
            "properties": e.properties,
            "mode": e.mode,
            "max_removals": e.max_removals,
            "created_at": e.created_at,
        }
        for e in exports
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({"max_removals": "Int64"})


TABLE_COLUMNS = ["name", "segments", "email", "list_id", "connection", "properties", "mode", "max_removals",
                 "created_at"]  # fmt: skip


def get(name: str) -> SavedExport:
    data = home.load(_exports_path()).get("exports", {})
    if name not in data:
        raise ConfigError(f"no saved export named '{name}'.{did_you_mean(name, list(data))}")
    return SavedExport._from_toml(name, data[name])


def delete(name: str) -> None:
    with home.editing(_exports_path(), header=_HEADER) as data:
        exports = data.get("exports", {})
        if name not in exports:
            raise ConfigError(f"no saved export named '{name}'.{did_you_mean(name, list(exports))}")
        del exports[name]


def run(name: str, namespace: Mapping[str, Any], **options: Any) -> Any:
    """Run saved export ``name`` on the DataFrames found in ``namespace`` (a segment saved with a file is read
    from it when the namespace has no such variable); record the run in the history. ``options`` go to
    :func:`~klaviyo_magic.export_segment`; ``mode`` and ``max_removals`` default to the saved ones."""
    from . import export_segment
    from .mirror import SavedLimit

    export = get(name)
    inputs = {**{var: Path(path) for var, path in export.files.items() if var not in namespace}, **namespace}
    frames = lookup(export.segments, inputs, saved_export=export.name)
    properties = list(export.properties) if isinstance(export.properties, tuple) else export.properties
    options.setdefault("mode", export.mode)
    if options.get("max_removals") is None and export.max_removals is not None:
        options["max_removals"] = SavedLimit(export.max_removals)  # never lets an empty segment empty the list
    started = datetime.now(UTC)
    try:
        result = export_segment(
            frames,
            email=export.email,
            list_id=export.list_id,
            connection=export.connection,
            properties=properties,
            **options,
        )
    except KlaviyoMagicError as exc:
        if isinstance(exc, KlaviyoError) or exc.result is not None:  # a run happened: record it
            record_run(name, started, result=exc.result, error=str(exc))
        raise
    except KeyboardInterrupt as exc:
        record_run(name, started, result=getattr(exc, "result", None), error="interrupted")
        raise
    record_run(name, started, result=result)
    return result


def record_run(name: str, started: datetime, *, result: Any = None, error: str | None = None) -> None:
    """Append one line to the run history. Dry runs are recorded too, marked as such."""
    entry: dict[str, Any] = {"export": name, "started_at": started.isoformat(timespec="seconds")}
    if result is not None:
        entry.update(result.to_dict())
    entry["outcome"] = "error" if error else ("ok" if result is not None and result.ok else "partial")
    if error:
        entry["error"] = error.splitlines()[0][:500]
    path = _history_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_APPEND keeps concurrent runs from interleaving within a line; 0600 like every file we write.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")


def history(name: str | None = None) -> Any:
    """The run history as a DataFrame, newest first (optionally for one saved export)."""
    import pandas as pd

    rows = []
    path = _history_path()
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash; the others are still good
                if name is None or entry.get("export") == name:
                    rows.append(entry)
    columns = [
        "started_at",
        "export",
        "outcome",
        "list_id",
        "mode",
        "total_rows",
        "would_send",
        "sent",
        "added",
        "updated",
        "unchanged",
        "removed",
        "skipped",
        "duplicates",
        "not_sent",
        "failed",
        "duration",
        "dry_run",
        "job_ids",
        "error",
    ]
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = None
    for column in _COUNTS:  # whole numbers, blank where a run has none (a dry run sends nothing)
        if column in frame:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame[columns].iloc[::-1].reset_index(drop=True)
