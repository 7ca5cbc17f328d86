"""Rows to send, as Klaviyo bulk-import payloads: profile JSON, and batches within Klaviyo's limits.

:class:`Encoder` turns a checked chunk's rows to send into compact profile JSON objects, column by column
(``values.py``), and notes the values that cannot be sent (an infinite number). :class:`Batcher` packs the
profiles into import-job requests of at most 10,000 profiles and 4.5 MB (headroom under Klaviyo's 5 MB; a
profile over 100 KB is refused by Klaviyo and so failed here; docs/klaviyo-api.md §2.5). Batches come out in
input order and are the same for the same input, which is what lets a resumed run recognise the ones Klaviyo
already accepted (``Batch.digest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .checks import CheckedChunk
from .emails import check_phones
from .values import Kind, assemble_profiles, byte_sizes, column_fragments, unsendable, why_unsendable

# The request envelope around the profiles (docs/klaviyo-api.md §2.5), split where the profiles and list id go.
_BODY_OPEN = '{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
_BODY_CLOSE = ']}},"relationships":{"lists":{"data":[{"type":"list","id":'
_BODY_END = "}]}}}}"
ENVELOPE_BYTES = len(_BODY_OPEN) + len(_BODY_CLOSE) + len(_BODY_END)
# Batches are built before the list id is known to them, so room is kept for one of up to 62 characters
# (JSON-quoted: 64 bytes); Klaviyo's list ids are 6 characters, which is what ``Batch.size`` assumes.
_LIST_ID_RESERVE = 64
_TYPICAL_LIST_ID_BYTES = len('"Y6nRLr"')
ENCODE_ROWS = 10_000  # rows encoded at a time: large enough to amortise pandas calls, small for memory


@dataclass(repr=False)
class Batch:
    """One import-job request: the profiles (compact JSON objects) and, for each, its row's position, email,
    email hash and row hash (what the sync state records once Klaviyo confirms it)."""

    number: int
    positions: np.ndarray
    profiles: list[str]
    emails: list[str]
    email_hash: np.ndarray
    row_hash: np.ndarray
    profile_sizes: np.ndarray | None = None  # UTF-8 bytes of each profile, computed when not given
    _body_bytes: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.int64)
        if self.profile_sizes is None:
            self.profile_sizes = byte_sizes(self.profiles)

    def body(self, list_id: str) -> bytes:
        """The complete ``POST /api/profile-bulk-import-jobs`` body adding the profiles to ``list_id``."""
        text = _BODY_OPEN + ",".join(self.profiles) + _BODY_CLOSE + encode_basestring(list_id) + _BODY_END
        data = text.encode("utf-8")
        self._body_bytes = len(data)
        return data

    @property
    def digest(self) -> str:
        """What the batch sends, in 16 hex digits: equal for two batches of the same rows sending the same."""
        data = self.email_hash.astype("<i8").tobytes() + self.row_hash.astype("<i8").tobytes()
        return hashlib.blake2b(data, digest_size=8).hexdigest()

    def without(self, indexes: Any) -> Batch:
        """This batch minus the profiles at ``indexes`` (0-based within the batch, as Klaviyo's
        ``/data/attributes/profiles/data/<i>`` pointers count them). Out-of-range indexes are ignored."""
        keep = np.ones(len(self.profiles), dtype=bool)
        dropped = [int(i) for i in indexes if 0 <= int(i) < len(self.profiles)]
        keep[dropped] = False
        kept = keep.tolist()
        assert self.profile_sizes is not None
        return Batch(
            self.number,
            self.positions[keep],
            [profile for profile, k in zip(self.profiles, kept, strict=True) if k],
            [email for email, k in zip(self.emails, kept, strict=True) if k],
            self.email_hash[keep],
            self.row_hash[keep],
            self.profile_sizes[keep],
        )

    @property
    def size(self) -> int:
        """Bytes of :meth:`body`: exact for the last list id given to it, else for a 6-character id."""
        if self._body_bytes is not None:
            return self._body_bytes
        assert self.profile_sizes is not None
        commas = max(len(self.profiles) - 1, 0)
        return ENVELOPE_BYTES + int(self.profile_sizes.sum()) + commas + _TYPICAL_LIST_ID_BYTES

    def __len__(self) -> int:
        return len(self.profiles)

    def accepted(self) -> Accepted:
        """What watching the job needs once Klaviyo took the request, without the profiles' JSON (most of the
        batch's memory): a slow account can leave hundreds of jobs waiting while the rest is sent."""
        return Accepted(self.number, self.positions, self.emails, self.email_hash, self.row_hash)

    def __repr__(self) -> str:
        return f"Batch(number={self.number}, profiles={len(self.profiles):,}, size={self.size:,})"


@dataclass(repr=False)
class Accepted:
    """A batch Klaviyo accepted: its rows' positions, emails and hashes, kept until its job is processed."""

    number: int
    positions: np.ndarray
    emails: list[str]
    email_hash: np.ndarray
    row_hash: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def without(self, indexes: Any) -> Accepted:
        """These rows minus those at ``indexes`` (0-based within the batch): the profiles Klaviyo failed."""
        keep = np.ones(len(self), dtype=bool)
        keep[[int(i) for i in indexes if 0 <= int(i) < len(self)]] = False
        emails = [email for email, k in zip(self.emails, keep.tolist(), strict=True) if k]
        return Accepted(self.number, self.positions[keep], emails, self.email_hash[keep], self.row_hash[keep])

    def __repr__(self) -> str:
        return f"Accepted(number={self.number}, profiles={len(self):,})"


@dataclass
class Encoded:
    """Profiles for some rows of a chunk, with what the report needs to know about them."""

    positions: np.ndarray
    profiles: list[str]
    sizes: np.ndarray
    emails: list[str]
    email_hash: np.ndarray
    row_hash: np.ndarray
    notes: dict[int, str]  # position -> the values left out because they cannot be sent


def _kind(group: str, key: str) -> Kind:
    """How a field's values are cleaned: custom properties keep their types; latitude and longitude are
    numbers; every other standard field is text (docs/klaviyo-api.md §3.1)."""
    if group == "properties":
        return "any"
    return "float" if key in ("latitude", "longitude") else "string"


class Encoder:
    """Profile JSON for the rows to send of each chunk, reading only the sent columns."""

    def __init__(self, field_map: Mapping[Any, tuple[str, ...]]) -> None:
        order = {"": 0, "location": 1, "properties": 2}  # top-level fields, then the two nested objects
        layout = []
        for column, path in field_map.items():
            if path == ("email",):
                continue
            group, key = ("", path[0]) if len(path) == 1 else path
            layout.append((column, group, key, _kind(group, key), path == ("phone_number",)))
        layout.sort(key=lambda item: order[item[1]])
        self.layout = layout

    def encode(self, chunk: CheckedChunk, local: np.ndarray) -> Encoded:
        """Profiles for the chunk's rows at ``local`` (ascending chunk-local indexes)."""
        frame = chunk.frame
        emails = chunk.shown.iloc[local].tolist() if len(local) else []
        top: list[tuple[list[str | None], bool]] = [
            (list(map('"email":'.__add__, map(encode_basestring, emails))), False)
        ]
        nested: dict[str, list[tuple[list[str | None], bool]]] = {"location": [], "properties": []}
        notes: dict[int, list[tuple[str, str]]] = {}  # row -> (what was left out, why)
        contiguous = len(local) and int(local[-1]) - int(local[0]) + 1 == len(local)
        rows = slice(int(local[0]), int(local[-1]) + 1) if contiguous else local  # a slice is cheaper than a take
        for column, group, key, kind, is_phone in self.layout:
            if column not in frame.columns:  # a segment without this column sends nothing for it
                continue
            values = frame.iloc[rows, frame.columns.get_loc(column)]
            if is_phone:  # send the number as checked: without spaces, dashes or parentheses
                values = pd.Series(check_phones(values).normalised, dtype=object)
            (nested[group] if group else top).append(column_fragments(values, key, kind))
            bad = unsendable(values, kind)
            if bad is not None:
                for index, value in zip(np.flatnonzero(bad).tolist(), values[bad].tolist(), strict=True):
                    notes.setdefault(int(local[index]), []).append((f"{column}={_shown(value)}", why_unsendable(value)))
        profiles = assemble_profiles(top, nested) if len(local) else []
        positions = chunk.start + local.astype(np.int64)
        return Encoded(
            positions,
            profiles,
            byte_sizes(profiles),
            emails,
            chunk.email_hash[local],
            chunk.row_hash[local],
            {chunk.start + i: _left_out(values) for i, values in notes.items()},
        )


def _shown(value: Any) -> str:
    """A value as Python shows it (``inf``, ``[1.0, inf]``), not numpy's ``np.float64(inf)``."""
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    return repr(value)


def _left_out(values: list[tuple[str, str]]) -> str:
    """``sent without ltv=inf: JSON has no infinite numbers, ...``: what a row was sent without, and why."""
    whys = list(dict.fromkeys(why for _, why in values))
    return f"sent without {', '.join(what for what, _ in values)}: {'; '.join(whys)}"


class Batcher:
    """Packs encoded profiles into numbered batches within Klaviyo's count and size limits."""

    def __init__(
        self, *, max_profiles: int = 10_000, max_bytes: int = 4_500_000, max_profile_bytes: int = 100_000
    ) -> None:
        for name, value in (
            ("max_profiles", max_profiles),
            ("max_bytes", max_bytes),
            ("max_profile_bytes", max_profile_bytes),
        ):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.room = max_bytes - ENVELOPE_BYTES - _LIST_ID_RESERVE  # for the profiles and the commas between them
        if self.room < 2:
            raise InputError(f"max_bytes={max_bytes} leaves no room for profiles; use at least {ENVELOPE_BYTES + 1000}")
        self.max_profiles = max_profiles
        self.max_bytes = max_bytes
        self.max_profile_bytes = max_profile_bytes
        self.profile_limit = min(max_profile_bytes, self.room)
        self.number = 0
        self._parts: list[Encoded] = []
        self._count = self._used = 0  # profiles in the open batch; their bytes plus one comma each

    def add(self, encoded: Encoded) -> tuple[list[Batch], np.ndarray, list[str]]:
        """Take ``encoded``; return the batches it completed, and the positions of profiles too large to send
        with the reason for each."""
        too_big = encoded.sizes > self.profile_limit
        reasons = [self._oversize(int(s)) for s in encoded.sizes[too_big]]
        oversized = encoded.positions[too_big]
        if too_big.any():
            encoded = _subset(encoded, ~too_big)
        done: list[Batch] = []
        i = 0
        while i < len(encoded.profiles):
            # The body holds n profiles and n-1 commas: sizes+1 each must total at most room+1.
            costs = np.cumsum(encoded.sizes[i : i + self.max_profiles - self._count] + 1)
            take = int(np.searchsorted(costs, self.room + 1 - self._used, side="right"))
            if take:
                self._parts.append(_subset(encoded, slice(i, i + take)))
                self._count, self._used, i = self._count + take, self._used + int(costs[take - 1]), i + take
            if self._count and (take < len(costs) or self._count == self.max_profiles):  # full, by bytes or count
                done.append(self._close())
        return done, oversized, reasons

    def flush(self) -> Batch | None:
        """The last, partly filled batch, if any."""
        return self._close() if self._count else None

    def _close(self) -> Batch:
        parts, self._parts = self._parts, []
        self._count = self._used = 0
        self.number += 1
        return Batch(
            self.number,
            np.concatenate([p.positions for p in parts]),
            [profile for p in parts for profile in p.profiles],
            [email for p in parts for email in p.emails],
            np.concatenate([p.email_hash for p in parts]),
            np.concatenate([p.row_hash for p in parts]),
            np.concatenate([p.sizes for p in parts]),
        )

    def _oversize(self, size: int) -> str:
        if size > self.max_profile_bytes:
            return (
                f"profile is {size:,} bytes, over Klaviyo's {self.max_profile_bytes / 1000:g} KB per-profile limit; "
                "shorten or drop large property columns"
            )
        return f"profile is {size:,} bytes, too large for a request of max_bytes={self.max_bytes:,}; raise max_bytes"


def _subset(encoded: Encoded, which: Any) -> Encoded:
    if isinstance(which, slice):
        profiles, emails = encoded.profiles[which], encoded.emails[which]
    else:
        kept = which.tolist()
        profiles = [p for p, k in zip(encoded.profiles, kept, strict=True) if k]
        emails = [e for e, k in zip(encoded.emails, kept, strict=True) if k]
    return Encoded(
        encoded.positions[which],
        profiles,
        encoded.sizes[which],
        emails,
        encoded.email_hash[which],
        encoded.row_hash[which],
        encoded.notes,
    )


def encode_in_pieces(encoder: Encoder, chunk: CheckedChunk) -> Iterator[Encoded]:
    """The chunk's rows to send, encoded ``ENCODE_ROWS`` at a time (so a chunk's profiles never all wait)."""
    pending = chunk.pending
    for start in range(0, len(pending), ENCODE_ROWS):
        yield encoder.encode(chunk, pending[start : start + ENCODE_ROWS])
