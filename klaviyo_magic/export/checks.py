"""The fate of each row, decided chunk by chunk: skipped, duplicate, unchanged, or to be sent (as an add or an update).

For every chunk of the input (``sources.py``) :class:`RowChecker` checks the emails and phone numbers
(``emails.py``), finds rows whose email an earlier row already has, in this chunk or any before it
(``dedupe.py``), hashes what each row sends (``hashing.py``) and, when the list has sync state, compares that
with what the last run sent (``state.py``): a row that sends the same as then is ``unchanged`` and not sent
again. What it keeps between chunks grows only with the distinct emails (16 bytes each), never with the columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .dedupe import SeenEmails
from .emails import check_phones, decide_emails
from .hashing import email_hashes, row_hashes
from .report import ACTION_ADD, ACTION_NONE, ACTION_UPDATE, CODES
from .state import Snapshot

PHONE_EXAMPLE = "+15005550006"
UNCHANGED = "unchanged since the last run sent it; not sent again (full=True re-sends)"


@dataclass
class CheckedChunk:
    """One chunk with every row's fate. Positions count rows across the whole export."""

    segment: int
    start: int
    frame: pd.DataFrame  # the sent columns
    labels: Any  # the rows' labels (index labels, or row numbers within the segment)
    shown: pd.Series  # the report's email: normalised when valid, else as given
    status: np.ndarray  # int8 report codes: pending (to send), skipped, duplicate or unchanged
    action: np.ndarray  # int8: add or update for rows to send (and unchanged ones), else none
    reason: np.ndarray  # object: why a row is not sent, else None
    email_hash: np.ndarray  # int64, for rows with a valid email (0 elsewhere)
    row_hash: np.ndarray  # int64: what the row sends besides its email

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def pending(self) -> np.ndarray:
        """Chunk-local indexes of the rows to send."""
        return np.flatnonzero(self.status == CODES["pending"])


class Locator:
    """Finds the segment and label of any row seen so far, for "duplicate of segment 0 row 17" reasons."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._chunks: list[tuple[int, Any]] = []  # (segment, labels)

    def add(self, start: int, segment: int, labels: Any) -> None:
        self._starts.append(start)
        if isinstance(labels, np.ndarray) and labels.dtype == np.int64 and len(labels) and _counts_up(labels):
            labels = int(labels[0])  # row numbers (a streamed input): the first is enough, 8 bytes a row saved
        self._chunks.append((segment, labels))

    def where(self, position: int) -> tuple[int, Any]:
        index = int(np.searchsorted(self._starts, position, side="right")) - 1
        segment, labels = self._chunks[index]
        at = position - self._starts[index]
        if isinstance(labels, int):
            return segment, labels + at
        return segment, labels[at : at + 1].tolist()[0]  # Python values: ('eu', 1), not ('eu', np.int64(1))


def _counts_up(labels: np.ndarray) -> bool:
    """Whether ``labels`` are consecutive integers (the row numbers of a chunk)."""
    return int(labels[-1]) - int(labels[0]) == len(labels) - 1 and bool(np.all(np.diff(labels) == 1))


class RowChecker:
    """Decides each row's fate, chunk after chunk, remembering the emails seen (see the module's docstring).

    ``state`` is what the last run put in the list (None on a first run). ``full`` re-sends rows that are
    unchanged. ``resumed_run`` is the number of the run being resumed, whose own rows count as to send.
    """

    def __init__(
        self,
        email: Any,
        field_map: Mapping[Any, tuple[str, ...]],
        *,
        state: Snapshot | None = None,
        full: bool = False,
        resumed_run: int | None = None,
    ) -> None:
        self.email = email
        self.field_map = dict(field_map)
        self.phone_columns = [column for column, path in self.field_map.items() if path == ("phone_number",)]
        self.state = state
        self.full = full
        self.resumed_run = resumed_run
        self.seen = SeenEmails()  # emails of rows to send (or unchanged): a later row with one is a duplicate
        self.present_only = SeenEmails()  # valid emails of rows skipped for another reason (a bad phone)
        self.locator = Locator()

    def check(self, segment: int, start: int, frame: pd.DataFrame, labels: Any) -> CheckedChunk:
        rows = len(frame)
        positions = np.arange(start, start + rows, dtype=np.int64)
        decisions = decide_emails(frame.iloc[:, frame.columns.get_loc(self.email)])
        reason = decisions.reason
        skipped = decisions.skipped
        for column in (c for c in self.phone_columns if c in frame.columns):  # segments may lack it
            self._skip_bad_phones(frame[column], decisions.check.valid, skipped, reason)
        status = np.full(rows, CODES["pending"], dtype=np.int8)
        status[skipped] = CODES["skipped"]
        action = np.full(rows, ACTION_NONE, dtype=np.int8)
        hashes = np.zeros(rows, dtype=np.int64)
        valid = np.flatnonzero(decisions.check.valid)
        if valid.size:
            hashes[valid] = email_hashes(decisions.shown.iloc[valid].to_numpy(dtype=object))
        content = row_hashes(frame, self.field_map)
        # The slow work comes first: the checker remembers these rows only after it, so a Ctrl-C in the middle of a
        # chunk seldom leaves it knowing rows the report lacks; and a row found again at its own position (a drain
        # reading it again, stream.py) is not a duplicate of itself.
        self.locator.add(start, segment, labels)
        candidates = np.flatnonzero(~skipped)
        earlier = self.seen.first_rows(hashes[candidates], positions[candidates])
        repeated = (earlier >= 0) & (earlier != positions[candidates])
        earlier = np.where(repeated, earlier, -1)
        repeats = candidates[repeated]
        status[repeats] = CODES["duplicate"]
        reason[repeats] = [self._duplicate_reason(int(p)) for p in earlier[earlier >= 0]]
        phone_skipped = np.flatnonzero(skipped & decisions.check.valid)
        if phone_skipped.size:
            self.present_only.first_rows(hashes[phone_skipped], positions[phone_skipped])
        self._compare_with_state(status, action, reason, hashes, content)
        return CheckedChunk(segment, start, frame, labels, decisions.shown, status, action, reason, hashes, content)

    def present(self, hashes: np.ndarray) -> np.ndarray:
        """Whether each email hash belongs to a row of the input with a valid email (sent or not)."""
        return self.seen.contains(hashes) | self.present_only.contains(hashes)

    @property
    def distinct_emails(self) -> int:
        return len(self.seen)

    def _compare_with_state(
        self, status: np.ndarray, action: np.ndarray, reason: np.ndarray, hashes: np.ndarray, content: np.ndarray
    ) -> None:
        to_send = np.flatnonzero(status == CODES["pending"])
        if self.state is None or not len(self.state):
            action[to_send] = ACTION_ADD
            return
        known, previous, last_run, first_run = self.state.lookup(hashes[to_send])
        # A resumed run is one run: members it added before it stopped are its adds, not updates.
        added_earlier = known & (first_run == self.resumed_run) if self.resumed_run is not None else False
        action[to_send] = np.where(known & ~added_earlier, ACTION_UPDATE, ACTION_ADD)
        same = known & (previous == content[to_send])
        if self.resumed_run is not None:
            same &= last_run != self.resumed_run  # rows this very run sent before it stopped: as they were then
        if self.full:
            return
        unchanged = to_send[same]
        status[unchanged] = CODES["unchanged"]
        action[unchanged] = ACTION_NONE  # an action is what a row sent (or to send) does to the list
        reason[unchanged] = UNCHANGED

    def _duplicate_reason(self, position: int) -> str:
        segment, label = self.locator.where(position)
        return f"duplicate of segment {segment} row {label}"

    @staticmethod
    def _skip_bad_phones(phones: pd.Series, valid: np.ndarray, skipped: np.ndarray, reason: np.ndarray) -> None:
        """Skip rows with a phone number that is not E.164: Klaviyo rejects a whole bulk request for one such
        number. Rows already skipped for their email keep that first reason."""
        bad = np.flatnonzero(check_phones(phones).invalid & valid & ~skipped)
        if not bad.size:
            return
        values = phones.iloc[bad].tolist()
        skipped[bad] = True
        reason[bad] = [f"phone_number {str(v)!r} is not in E.164 format (e.g. {PHONE_EXAMPLE})" for v in values]
