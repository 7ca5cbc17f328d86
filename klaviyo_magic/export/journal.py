"""The run journal: an append-only record of each export, so a killed export can be resumed.

One JSON-lines file per run under ``$KLAVIYO_MAGIC_HOME/runs/``. The first line is the plan (a fingerprint
of the input and settings); then one line per import job Klaviyo accepted (batch number, job id), per
profile Klaviyo rejected, and per job seen finished; the last line says the run ended. Each line is
written with one ``write`` on an ``O_APPEND`` descriptor, so a ``kill -9`` at any moment leaves whole lines
(at worst a torn last line, which readers skip). Accepted jobs are fsynced: they are what saves re-sending.

Batches are rebuilt deterministically from the same input on resume, so the journal stores batch numbers and
job ids, never rows or profile data. It never holds an API key: connections are named, nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import home
from ..errors import InputError

RUNS_DIR = "runs"


def fingerprint(frames: Sequence[Any], settings: dict[str, Any]) -> str:
    """A digest of every input value, index label, column name and dtype, plus the export settings."""
    import pandas as pd

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for frame in frames:
        digest.update(repr((list(map(str, frame.columns)), list(map(str, frame.dtypes)), len(frame))).encode())
        digest.update(pd.util.hash_pandas_object(frame.index, categorize=False).to_numpy().tobytes())
        for position in range(frame.shape[1]):
            _digest_column(digest, frame.iloc[:, position])
    return digest.hexdigest()[:32]


def _digest_column(digest: Any, column: Any) -> None:
    """Feed one column's values to ``digest``, vectorised.

    Arrow-backed text (pandas' default ``str`` dtype) is read from its buffers: each value's length (-1 where
    missing), then the values back to back. ``hash_pandas_object`` would first turn every value into a Python
    string, which for a million-row text column costs about 0.3 s and 100 MB, on every export's critical path.
    """
    import numpy as np
    import pandas as pd

    texts = _arrow_texts(column)
    if texts is None or not len(texts):
        digest.update(pd.util.hash_pandas_object(column, index=False, categorize=False).to_numpy().tobytes())
        return
    missing = texts.is_null().to_numpy(zero_copy_only=False)
    offsets, data = _offsets_and_data(texts)
    lengths = np.diff(offsets)
    if lengths[missing].any():  # a missing value that spans bytes (unusual): lay the values out afresh
        offsets, data = _offsets_and_data(texts.fill_null(""))
        lengths = np.diff(offsets)
    lengths[missing] = -1
    digest.update(lengths.tobytes())
    if data is not None:
        digest.update(memoryview(data)[offsets[0] : offsets[-1]])


def _offsets_and_data(texts: Any) -> tuple[Any, Any]:
    """The value offsets (as int64, from the array's own offset on) and the data buffer of an Arrow text array."""
    import numpy as np

    _, offsets_buffer, data = texts.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if _is_large(texts) else np.int32)
    return offsets[texts.offset : texts.offset + len(texts) + 1].astype(np.int64), data


def _arrow_texts(column: Any) -> Any:
    """The column's values as one pyarrow string/binary array, or None when it is not arrow-backed text."""
    arrow_array = getattr(column.array, "__arrow_array__", None)
    if arrow_array is None:
        return None
    try:
        import pyarrow as pa

        values = arrow_array()
        if isinstance(values, pa.ChunkedArray):  # one array; a single chunk is used as it is, not copied
            values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    except Exception:  # not convertible: the generic path handles it
        return None
    kind = values.type
    textual = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return values if any(check(kind) for check in textual) else None


def _is_large(values: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)


@dataclass
class ResumeState:
    """What an unfinished run had achieved: accepted jobs by batch number, and rejected rows."""

    run_id: str
    accepted: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # batch -> (job id, created_at)
    rejected: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # batch -> [(position, reason)]


class Journal:
    """Appends the events of one run to its file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.stem
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    @classmethod
    def start(cls, fingerprint: str, settings: dict[str, Any]) -> Journal:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        journal = cls(_runs_dir() / f"{stamp}-{secrets.token_hex(4)}.jsonl")
        journal._write({"event": "plan", "fingerprint": fingerprint, "settings": settings, "at": _now()}, sync=True)
        return journal

    @classmethod
    def reopen(cls, state: ResumeState) -> Journal:
        journal = cls(_runs_dir() / f"{state.run_id}.jsonl")
        journal._write({"event": "resumed", "at": _now()}, sync=True)
        return journal

    def accepted(self, batch: int, job_id: str, created_at: str | None, profiles: int) -> None:
        self._write(
            {"event": "accepted", "batch": batch, "job": job_id, "created_at": created_at, "profiles": profiles},
            sync=True,
        )

    def rejected(self, batch: int, rows: list[tuple[int, str]]) -> None:
        self._write({"event": "rejected", "batch": batch, "rows": rows}, sync=True)

    def finished(self, summary: dict[str, Any]) -> None:
        self._write({"event": "finished", "at": _now(), **summary}, sync=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, record: dict[str, Any], *, sync: bool) -> None:
        os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
        if sync:
            os.fsync(self._fd)


def find_resumable(fingerprint: str, list_id: str) -> ResumeState | None:
    """The newest unfinished run of this input and settings, or None when there is nothing to resume.

    Only runs into the same list since its last finished run count: an older crash is settled by any later
    complete export, and exports to other lists never block this one. An unfinished run of this list for
    other input or settings is refused, because resuming it with this input would send the wrong rows.
    """
    candidates = []
    for path, records in _runs_newest_first():
        if records[0].get("settings", {}).get("list_id") != list_id:
            continue
        if _has(records, "finished"):
            break
        if records[0].get("fingerprint") == fingerprint:
            return _state(path.stem, records)
        candidates.append((path, records))
    if not candidates:
        return None
    path, records = candidates[0]
    settings = records[0].get("settings", {})
    raise InputError(
        f"cannot resume: the unfinished export {path.stem} into list '{list_id}' ({settings.get('rows', '?')} rows, "
        "email column '" + str(settings.get("email")) + "') was for other input or settings; resuming it with "
        "this input would send the wrong rows. Resume with exactly the same input and options, or run without "
        "resume to start a new export."
    )


def _state(run_id: str, records: list[dict[str, Any]]) -> ResumeState:
    state = ResumeState(run_id)
    for record in records:
        if record.get("event") == "accepted":
            state.accepted[int(record["batch"])] = (record["job"], record.get("created_at"))
        elif record.get("event") == "rejected":
            rows = [(int(pos), str(reason)) for pos, reason in record.get("rows", [])]
            state.rejected.setdefault(int(record["batch"]), []).extend(rows)
    return state


def _runs_newest_first() -> list[tuple[Path, list[dict[str, Any]]]]:
    directory = _runs_dir()
    if not directory.is_dir():
        return []
    runs = []
    for path in sorted(directory.glob("*.jsonl"), reverse=True):
        records = read(path)
        if records and records[0].get("event") == "plan":
            runs.append((path, records))
    return runs


def read(path: Path) -> list[dict[str, Any]]:
    """The records of one journal; a line torn by a kill is skipped."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def _has(records: list[dict[str, Any]], event: str) -> bool:
    return any(record.get("event") == event for record in records)


def _runs_dir() -> Path:
    return home.directory() / RUNS_DIR


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
