"""The run journal: an append-only record of each export, so a killed export can be resumed.

One JSON-lines file per run under ``$KLAVIYO_MAGIC_HOME/runs/``. The first line is the plan: the settings (list,
account, email column, field mapping, mode) and their digest. Then one line per import job Klaviyo accepted
(batch number, job id, the batch's digest), per profile Klaviyo rejected, and per group of members a mirror run
removed; the last line says the run ended. Each line is written with one ``write`` on an ``O_APPEND``
descriptor, so a ``kill -9`` at any moment leaves whole lines (at worst a torn last line, which readers skip).
Each line is fsynced: it is what saves re-sending.

A resumed run reads its input again and rebuilds its batches; a batch whose digest (what its rows send,
``payloads.Batch.digest``) matches one Klaviyo accepted is watched, not sent again. A batch that differs (the
input changed meanwhile) is sent: the list then gets today's data, and bulk import is an upsert. So resuming
never needs the input's whole content up front, which a streamed input (a Spark table, say) could not give
without being read twice. The journal never holds an API key, rows or profile data.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import home

RUNS_DIR = "runs"


def settings_digest(settings: dict[str, Any]) -> str:
    """What makes two runs the same run: equal settings (list, account, email column, mapping, mode)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class ResumeState:
    """What an unfinished run had achieved."""

    run_id: str
    accepted: dict[int, tuple[str, str | None, str]] = field(default_factory=dict)  # batch -> (job, created, digest)
    rejected: dict[int, tuple[str, list[tuple[int, str]]]] = field(default_factory=dict)  # batch -> (digest, rows)
    removed: list[dict[str, Any]] = field(default_factory=list)  # members removed: email, profile_id, email_hash


class Journal:
    """Appends the events of one run to its file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.stem
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    @classmethod
    def start(cls, settings: dict[str, Any], run_id: str | None = None) -> Journal:
        journal = cls(runs_dir() / f"{run_id or new_run_id()}.jsonl")
        plan = {"event": "plan", "fingerprint": settings_digest(settings), "settings": settings, "at": _now()}
        journal._write(plan)
        return journal

    @classmethod
    def reopen(cls, state: ResumeState) -> Journal:
        journal = cls(runs_dir() / f"{state.run_id}.jsonl")
        journal._write({"event": "resumed", "at": _now()})
        return journal

    def accepted(self, batch: int, job_id: str, created_at: str | None, profiles: int, digest: str) -> None:
        self._write({"event": "accepted", "batch": batch, "job": job_id, "created_at": created_at,
                     "profiles": profiles, "digest": digest})  # fmt: skip

    def rejected(self, batch: int, digest: str, rows: list[tuple[int, str]]) -> None:
        self._write({"event": "rejected", "batch": batch, "digest": digest, "rows": rows})

    def removed(self, members: list[dict[str, Any]]) -> None:
        self._write({"event": "removed", "members": members})

    def finished(self, summary: dict[str, Any]) -> None:
        self._write({"event": "finished", "at": _now(), **summary})

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
        os.fsync(self._fd)


def new_run_id() -> str:
    """``20261206T120000.123456Z-1a2b3c4d``: sorts by start time, unique. The fraction matters: "the newest run"
    decides what resumes, and a run finished in the same second (or millisecond) as a crashed one must sort after
    it."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}"


def find_resumable(settings: dict[str, Any]) -> ResumeState | None:
    """The newest unfinished run with these settings, or None when there is nothing to resume.

    Only runs into the same list since its last finished run count: an older crash is settled by any later
    complete export. A run with other settings (another email column or mapping) is not this run: it is left as it
    is, and this export starts afresh.
    """
    digest = settings_digest(settings)
    for path, records in _runs_newest_first():
        if records[0].get("settings", {}).get("list_id") != settings.get("list_id"):
            continue
        if _has(records, "finished"):
            return None
        if records[0].get("fingerprint") == digest:
            return _state(path.stem, records)
    return None


def _state(run_id: str, records: list[dict[str, Any]]) -> ResumeState:
    state = ResumeState(run_id)
    for record in records:
        event = record.get("event")
        if event == "accepted" and "digest" in record:
            state.accepted[int(record["batch"])] = (record["job"], record.get("created_at"), record["digest"])
        elif event == "rejected" and "digest" in record:
            rows = [(int(pos), str(reason)) for pos, reason in record.get("rows", [])]
            state.rejected[int(record["batch"])] = (record["digest"], rows)
        elif event == "removed":
            state.removed.extend(record.get("members", []))
    return state


def _runs_newest_first() -> list[tuple[Path, list[dict[str, Any]]]]:
    directory = runs_dir()
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


SPILL_PREFIX = "dask-segment-"  # the temporary directories of a Dask input computed once (sources.py)
KEEP_DAYS = 30  # journals and reports not written to for this long are deleted: a run that old is not resumed


def prune(now: float | None = None) -> int:
    """Delete the journals and streamed reports (a dry run's included) of runs nothing has written to for
    :data:`KEEP_DAYS` days, and the temporary files of a Dask input that a killed export left behind (a day old);
    return how many went. Without this, every run would leave its report (megabytes for a million rows) under
    ``runs/`` for good, and finding a run to resume would read every journal ever written. Age is the last write,
    not the run id's start: a resumed run keeps its id and goes on writing to its journal."""
    now = time.time() if now is None else now
    cutoff = now - KEEP_DAYS * 86_400
    directory = runs_dir()
    runs: dict[str, list[Path]] = {}  # a run's journal and its report directory go together
    for path in directory.iterdir() if directory.is_dir() else []:
        runs.setdefault(path.name.removesuffix(".jsonl"), []).append(path)
    stale = [path for paths in runs.values() if max(map(_last_written, paths)) < cutoff for path in paths]
    stale += [path for path in home.directory().glob(f"{SPILL_PREFIX}*") if _last_written(path) < now - 86_400]
    gone = 0
    for path in stale:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            gone += 1
        except OSError:
            continue  # not ours to fix now: the export goes on
    return gone


def _last_written(path: Path) -> float:
    """The newest modification time of ``path`` and, for a directory, of the files in it."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [child.stat().st_mtime for child in path.iterdir()]
        return max(times)
    except OSError:
        return time.time()  # vanished or unreadable meanwhile: not stale


def runs_dir() -> Path:
    return home.directory() / RUNS_DIR


def report_path(run_id: str) -> Path:
    """Where a streamed run's per-row report is written: ``runs/<run id>/report.parquet``."""
    return runs_dir() / run_id / "report.parquet"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
