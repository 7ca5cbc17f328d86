"""The per-row report: one row per input row, in input order, with what happened to it and why.

Columns: ``segment`` (the input's position among the segments, smallest integer dtype), ``index`` (the row's
index label for pandas input, else its row number in the segment), ``email`` (normalised when valid, else as
given; pandas' Arrow-backed ``str`` dtype when pyarrow is installed), ``status`` (a ``category``), ``action``
(``add`` or ``update`` for rows sent or to send, a ``category``) and ``reason`` (``object``, None where there
is none). About 60 bytes a row with 30-character emails, most of it their text.

While the export runs, :class:`ReportBook` keeps each row's status as one byte and the few reasons apart. The
rows themselves are kept in memory for input that is in memory already (the report is then a DataFrame, as
before), and written chunk by chunk to a Parquet file for streamed input, whose final report is that file
rewritten with the final statuses (``ExportResult.report`` reads it when asked).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..result import ACTION_DTYPE, PENDING, STATUS_DTYPE, read_report

CODES = {status: np.int8(code) for code, status in enumerate(STATUS_DTYPE.categories)}
ACTION_NONE, ACTION_ADD, ACTION_UPDATE = np.int8(-1), np.int8(0), np.int8(1)
COLUMNS = ("segment", "index", "email", "status", "action", "reason")
__all__ = ["ACTION_DTYPE", "CODES", "PENDING", "STATUS_DTYPE", "ReportBook", "read_report", "release_arrow_scratch"]


class ReportBook:
    """Every row's status while the export runs, and the report built from it at the end.

    ``path`` set: the rows go to that Parquet file as they come (streamed input); else they stay in memory.
    ``segments`` is the number of segments (it picks the ``segment`` column's dtype).
    """

    def __init__(self, segments: int, path: Path | None = None) -> None:
        self.segment_dtype = next(
            (t for t in (np.int8, np.int16, np.int32) if segments <= np.iinfo(t).max + 1), np.int64
        )
        self.path = path
        self._codes = np.zeros(0, dtype=np.int8)
        self._actions = np.zeros(0, dtype=np.int8)
        self.rows = 0
        self._reasons: list[tuple[np.ndarray, Any]] = []  # (positions, a reason or one per position), in order
        self._parts: list[pd.DataFrame] = []
        self._writer: Any = None
        self.noted = 0  # rows given a note (sent without a value that cannot be sent)
        # Rows per (status, action), kept up to date as rows come and change, so the counts a progress display
        # asks for several times a second cost nothing however many rows there are.
        self._tally = np.zeros(len(STATUS_DTYPE.categories) * _ACTIONS, dtype=np.int64)
        self._lock = threading.Lock()

    # -- while the export runs -------------------------------------------------------------------------------

    def add(
        self, segment: int, labels: Any, shown: pd.Series, status: np.ndarray, action: np.ndarray, reason: np.ndarray
    ) -> None:
        """Rows of the next chunk, with their statuses as decided so far."""
        count = len(status)
        with self._lock:
            start = self.rows
            self._codes = _grow(self._codes, start + count)
            self._actions = _grow(self._actions, start + count)
            self._codes[start : start + count] = status
            self._actions[start : start + count] = action
            self.rows += count
            self._tally += _tally(status, action)
        part = _frame(np.full(count, segment, dtype=self.segment_dtype), labels, shown, status, action, reason)
        if self.path is None:
            self._parts.append(part)
        else:
            self._write(part)

    def mark(self, positions: Any, status: str, reason: str | Sequence[str | None] | None = None) -> None:
        """Set the status (and the reason, when given) of the rows at ``positions``; thread-safe."""
        positions = _positions(positions)
        reasons = _reasons_for(positions, reason)
        if not positions.size:
            return
        code = CODES[status]  # first: an unknown status must leave the counts as they were
        with self._lock:
            rows = np.unique(positions)  # a row named twice is one row for the counts
            actions = self._actions[rows]
            self._tally -= _tally(self._codes[rows], actions)
            self._codes[rows] = code
            self._tally += _tally(self._codes[rows], actions)
            if reasons is not None:
                self._reasons.append((positions, reasons))

    def note(self, positions: Any, reason: str | Sequence[str]) -> None:
        """A reason for rows whose status stays as it is (say, a value that could not be sent)."""
        positions = _positions(positions)
        reasons = _reasons_for(positions, reason)
        if positions.size:
            with self._lock:
                self._reasons.append((positions, reasons))
                self.noted += len(positions)

    def positions(self, status: str) -> np.ndarray:
        """Positions of the rows with ``status`` now."""
        with self._lock:
            return np.flatnonzero(self._codes[: self.rows] == CODES[status])

    def counts(self) -> dict[str, int]:
        """Rows per status, and per action among rows sent (``added``, ``updated``)."""
        with self._lock:
            tally = self._tally.reshape(-1, _ACTIONS).copy()
        counts = {status: int(tally[code].sum()) for status, code in CODES.items()}
        sent = tally[CODES["sent"]] + tally[CODES["would_send"]]
        counts["added"] = int(sent[ACTION_ADD + 1])
        counts["updated"] = int(sent[ACTION_UPDATE + 1])
        return counts

    # -- at the end ----------------------------------------------------------------------------------------

    def finish(self) -> pd.DataFrame | None:
        """The final report: a DataFrame for input in memory; for streamed input the Parquet file at ``path`` is
        rewritten with the final statuses and None is returned (``ExportResult`` reads the file when asked)."""
        if self.path is None:
            return self._finish_in_memory()
        self._finish_file()
        return None

    def _finish_in_memory(self) -> pd.DataFrame:
        if self._parts:
            report = pd.concat(self._parts, ignore_index=True) if len(self._parts) > 1 else self._parts[0]
            report = report.reset_index(drop=True)
        else:
            report = self._empty()
        self._parts = []
        report["status"] = pd.Categorical.from_codes(self._codes[: self.rows], dtype=STATUS_DTYPE)
        report["action"] = pd.Categorical.from_codes(self._actions[: self.rows], dtype=ACTION_DTYPE)
        if self._reasons:
            reasons = report["reason"].to_numpy(dtype=object, copy=True)
            for positions, reason in self._reasons:
                reasons[positions] = reason
            report["reason"] = pd.Series(reasons, dtype=object, copy=False)
        return report

    def _empty(self) -> pd.DataFrame:
        """A report of no rows, with the usual columns and dtypes."""
        no_rows = np.zeros(0, np.int8)
        return _frame(
            np.zeros(0, self.segment_dtype), np.zeros(0, np.int64), pd.Series([], dtype=object), no_rows, no_rows,
            np.zeros(0, object),
        )  # fmt: skip

    def _write(self, part: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(_for_parquet(part), preserve_index=False)
        if self._writer is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._plan_path, _schema(table.schema))
        self._writer.write_table(table.cast(self._writer.schema))

    @property
    def _plan_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.stem + ".plan.parquet")

    def _finish_file(self) -> None:
        """Rewrite the planned rows with their final status, action and reason, one row group at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:  # no rows at all: an empty report with the usual columns
            self._write(self._empty())
        self._writer.close()
        self._writer = None
        reason_positions, reason_texts = self._final_reasons().sorted()
        planned = pq.ParquetFile(self._plan_path)
        statuses = np.asarray(STATUS_DTYPE.categories, dtype=object)
        actions = np.asarray(["add", "update", None], dtype=object)  # code -1 picks None
        writer = None
        start = 0
        try:
            for group in range(planned.num_row_groups):
                table = planned.read_row_group(group)
                end = start + table.num_rows
                codes, action_codes = self._codes[start:end], self._actions[start:end]
                reason = table.column("reason").to_numpy(zero_copy_only=False).astype(object)
                first, last = np.searchsorted(reason_positions, [start, end])
                reason[reason_positions[first:last] - start] = reason_texts[first:last]
                table = table.set_column(3, "status", pa.array(statuses[codes], pa.string()))
                table = table.set_column(4, "action", pa.array(actions[action_codes], pa.string()))
                table = table.set_column(5, "reason", pa.array(reason, pa.string()))
                if writer is None:
                    writer = pq.ParquetWriter(self.path, table.schema)
                writer.write_table(table)
                start = end
        finally:
            if writer is not None:
                writer.close()
        self._plan_path.unlink(missing_ok=True)

    def _final_reasons(self) -> _Reasons:
        reasons = _Reasons()
        for positions, reason in self._reasons:
            reasons.add(positions, reason)
        return reasons


class _Reasons:
    """Reasons by position (a later one wins), read back in position ranges."""

    def __init__(self) -> None:
        self._positions: list[np.ndarray] = []
        self._texts: list[np.ndarray] = []

    def add(self, positions: np.ndarray, reason: Any) -> None:
        self._positions.append(positions)
        self._texts.append(np.full(len(positions), reason, dtype=object) if isinstance(reason, str) else reason)

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions ascending, each once, with its last reason."""
        if not self._positions:
            return np.zeros(0, np.int64), np.zeros(0, object)
        positions, texts = np.concatenate(self._positions), np.concatenate(self._texts)
        order = np.argsort(positions, kind="stable")
        positions, texts = positions[order], texts[order]
        last = np.ones(len(positions), dtype=bool)
        last[:-1] = positions[1:] != positions[:-1]
        return positions[last], texts[last]


def _positions(positions: Any) -> np.ndarray:
    """Row positions as int64; a boolean mask gives the positions where it is True (cast as it is, it would mark
    rows 0 and 1 without a word)."""
    array = np.asarray(positions)
    if array.dtype == bool:
        return np.flatnonzero(array)
    return array.astype(np.int64, copy=False).ravel()


def _reasons_for(positions: np.ndarray, reason: Any) -> Any:
    """One reason for every position, or one per position: a list of another length would shift every later
    row's reason, so it is an error here rather than wrong words in the report."""
    if reason is None or isinstance(reason, str):
        return reason
    reasons = np.asarray(reason, dtype=object).ravel()
    if len(reasons) != len(positions):
        raise ValueError(f"got {len(reasons)} reasons for {len(positions)} positions")
    return reasons


def _frame(
    segment: np.ndarray, labels: Any, shown: pd.Series, status: np.ndarray, action: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    emails = shown.array if shown.dtype != object else shown.to_numpy()
    columns: dict[str, Any] = {
        "segment": segment,
        "index": labels.to_numpy() if isinstance(labels, pd.Index) and labels.dtype == object else labels,
        "email": emails,
        "status": pd.Categorical.from_codes(status, dtype=STATUS_DTYPE),
        "action": pd.Categorical.from_codes(action, dtype=ACTION_DTYPE),
        "reason": reason,
    }
    if isinstance(columns["index"], pd.Index):
        columns["index"] = columns["index"].array
    # Object arrays stay object: pandas 3 would infer ``str`` for text, and None would become NaN.
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype == object:
            columns[name] = pd.Series(values, dtype=object, copy=False)
    return pd.DataFrame(columns, copy=False)


def _for_parquet(part: pd.DataFrame) -> pd.DataFrame:
    """A report part with plain text columns, which Parquet stores compactly (dictionary-encoded)."""
    return part.assign(
        status=part["status"].astype(object),
        action=part["action"].astype(object),
        email=part["email"].astype(object),
        reason=part["reason"].astype(object),
    )


def _schema(schema: Any) -> Any:
    import pyarrow as pa

    fields = [
        pa.field(name, pa.string() if name in ("email", "status", "action", "reason") else schema.field(name).type)
        for name in COLUMNS
    ]
    return pa.schema(fields)


_ACTIONS = 3  # none, add, update (action codes -1, 0, 1, shifted by one)


def _tally(codes: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Rows per (status, action) pair, flattened."""
    pairs = codes.astype(np.int64) * _ACTIONS + actions.astype(np.int64) + 1
    return np.bincount(pairs, minlength=len(STATUS_DTYPE.categories) * _ACTIONS)


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array), 1024), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def release_arrow_scratch() -> None:
    """Hand back the scratch that the string kernels left in pyarrow's allocator.

    The allocator (mimalloc) keeps freed buffers for reuse: after checking a million emails, about 150 MB that
    the process would otherwise go on holding. Releasing them takes about a millisecond.
    """
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        try:
            pyarrow.default_memory_pool().release_unused()
        except Exception:  # an optimisation only: never a reason for an export to fail
            pass
