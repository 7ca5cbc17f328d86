"""DataFrame segments to Klaviyo bulk-import payloads: input checks, email checks, dedupe, batching.

:func:`plan_export` validates the input cheaply, then decides the fate of every row up front (vectorised):
pending, skipped (missing or malformed email, non-E.164 phone) or duplicate. :func:`iter_batches` then
encodes the pending rows chunk by chunk into import-job payloads that respect Klaviyo's limits
(docs/klaviyo-api.md §2.5: 10,000 profiles, 5 MB per request, 100 KB per profile), so memory stays bounded by a
couple of batches however large the segment. Column-to-field mapping and input checks live in
``fields.py``, value cleaning and JSON in ``values.py``, email and phone checks in ``emails.py``, the
report's compact columns in ``report.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..result import RUN_STATUSES
from .emails import check_phones, decide_emails, mark_duplicates, skip_bad_phones
from .fields import STANDARD_FIELDS, check_segments, resolve_fields, standard_path
from .report import PENDING, build_report, index_labels, release_arrow_scratch, segment_numbers
from .values import Kind, assemble_profiles, byte_sizes, column_fragments


@dataclass(repr=False)
class Plan:
    """What will happen to every input row. ``report`` has one row per input row, in input order.

    Columns, kept compact (about 55 bytes a row with 30-character emails, most of it their text):

    - ``segment``: position of the DataFrame in the input, in the smallest integer dtype that holds it
      (``int8`` below 128 segments);
    - ``index``: the row's original index label, in the segments' index dtype when they all share one
      (``int64`` for the default RangeIndex, ``str`` for text labels...), else ``object`` (tuples for a
      MultiIndex);
    - ``email``: normalised if valid, else the raw value as text, or missing; pandas' Arrow-backed ``str``
      dtype (missing is NaN), or ``object`` with None when pyarrow is not installed;
    - ``status``: a ``category`` with the categories ``pending``, ``sent``, ``skipped``, ``duplicate``,
      ``failed``, ``would_send`` (plus any other status given to :meth:`mark`); compare it with strings as
      usual (``report.status == "sent"``);
    - ``reason``: ``object``, None where there is no reason.
    """

    report: pd.DataFrame
    email_column: str
    field_map: dict[str, tuple[str, ...]]
    _segments: list[pd.DataFrame] = field(default_factory=list)
    _offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def pending_positions(self) -> np.ndarray:
        """Report positions (ascending) of the rows still to be sent."""
        return np.flatnonzero((self.report["status"] == "pending").to_numpy(dtype=bool))

    def mark(self, positions: Any, status: str, reason: str | Sequence[str | None] | None = None) -> None:
        """Set ``status`` and ``reason`` for the rows at ``positions`` (ints, or a boolean mask).

        ``reason`` may also be a sequence with one reason per position.
        """
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.intp, copy=False).ravel()
        if not positions.size:
            return
        if reason is not None and not isinstance(reason, str):
            reason = pd.array(list(reason), dtype=object)  # type: ignore[assignment]
            if len(reason) != len(positions):  # type: ignore[arg-type]
                raise ValueError(f"got {len(reason)} reasons for {len(positions)} positions")  # type: ignore[arg-type]
        statuses = self.report["status"]
        if isinstance(statuses.dtype, pd.CategoricalDtype) and status not in statuses.cat.categories:
            self.report["status"] = statuses.cat.add_categories([status])
        del statuses  # no reference left to the column, so the writes below need no copy of it
        columns = self.report.columns
        self.report.iloc[positions, columns.get_loc("status")] = status  # a Categorical: writes its int8 codes
        self.report.iloc[positions, columns.get_loc("reason")] = reason

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status: "pending" and a real run's statuses always appear (0 when unused), others when used."""
        counts = dict.fromkeys((PENDING, *RUN_STATUSES), 0)
        for status, count in self.report["status"].value_counts(sort=False).items():
            if count or status in counts:
                counts[str(status)] = int(count)
        return counts

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:,}" for k, v in self.counts.items() if v)
        return f"Plan(rows={len(self.report):,}, email_column={self.email_column!r}, {shown or 'empty'})"


def plan_export(
    segments: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    email: str,
    properties: Sequence[str] | Mapping[str, str] | None = None,
    max_profiles: int = 1_000_000,
) -> Plan:
    """Check the input and decide, for every row of every segment, whether it will be sent.

    Which columns are sent:

    - the ``email`` column always, as the profile's ``email``;
    - ``properties=None``: besides the email, only columns named like a Klaviyo standard field
      (``first_name``, ``phone_number``, ``city``..., compared after ``.strip().lower()``, so ``First_Name``
      counts); other columns are *not* sent, so nothing private leaves by accident;
    - ``properties=[...]``: exactly the listed columns; standard-named ones go to their field, the rest
      become custom ``properties`` named after the column;
    - ``properties={column: field}``: each column to ``field``, a standard field name (``"city"`` or
      ``"location.city"``) or else a custom property (``"ltv"`` or ``"properties.ltv"``).

    Rows are then ``pending``, or ``skipped`` (missing or malformed email; a phone number that is not
    E.164), or ``duplicate`` (the same normalised email as an earlier row, in any segment).
    Raises :class:`InputError` for bad input, before any per-row work.
    """
    frames = check_segments(segments, email)
    if not isinstance(max_profiles, int) or isinstance(max_profiles, bool) or max_profiles < 1:
        raise InputError(f"max_profiles must be a positive integer, got {max_profiles!r}")
    field_map = resolve_fields(frames, email, properties)
    total = sum(len(frame) for frame in frames)
    if total > max_profiles:
        raise InputError(
            f"the segments have {total:,} rows in total, over the limit of {max_profiles:,} profiles per "
            f"export; split the segment into smaller exports, or pass max_profiles={total} to allow it"
        )
    return _decide(frames, email, field_map)


def _decide(frames: list[pd.DataFrame], email: Any, field_map: dict[Any, tuple[str, ...]]) -> Plan:
    """Vectorised per-row decisions: email validity, phone validity, duplicates."""
    lengths = np.array([len(frame) for frame in frames], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    segment = segment_numbers(lengths)
    labels = index_labels(frames)
    raw = frames[0][email] if len(frames) == 1 else pd.concat([f[email] for f in frames], ignore_index=True)
    decisions = decide_emails(raw)
    phone_columns = [column for column, path in field_map.items() if path == ("phone_number",)]
    for number, frame in enumerate(frames):
        for column in phone_columns:
            if column in frame.columns:
                skip_bad_phones(frame[column], int(offsets[number]), decisions)
    mark_duplicates(decisions, segment, labels)
    release_arrow_scratch()
    return Plan(build_report(segment, labels, decisions), email, field_map, _segments=frames, _offsets=offsets)


# -- batches ------------------------------------------------------------------------------------------------

# The request envelope around the profiles (docs/klaviyo-api.md §2.5), split where the profiles and list id go.
_BODY_OPEN = '{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
_BODY_CLOSE = ']}},"relationships":{"lists":{"data":[{"type":"list","id":'
_BODY_END = "}]}}}}"
_ENVELOPE_BYTES = len(_BODY_OPEN) + len(_BODY_CLOSE) + len(_BODY_END)
# iter_batches does not know the list id, so it keeps room for one of up to 62 characters (JSON-quoted:
# 64 bytes); Klaviyo's list ids are 6 characters, which is what ``Batch.size`` assumes until body() runs.
_LIST_ID_RESERVE = 64
_TYPICAL_LIST_ID_BYTES = len('"Y6nRLr"')
_CHUNK_ROWS = 10_000  # rows encoded at a time: large enough to amortise pandas calls, small for memory


@dataclass(repr=False)
class Batch:
    """One import-job request: the profiles (compact JSON objects) and their report positions."""

    number: int
    positions: np.ndarray
    profiles: list[str]
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

    def without(self, indexes: Iterable[int]) -> Batch:
        """This batch minus the profiles at ``indexes`` (0-based within the batch, as Klaviyo's
        ``/data/attributes/profiles/data/<i>`` pointers count them). Out-of-range indexes are ignored."""
        keep = np.ones(len(self.profiles), dtype=bool)
        dropped = [int(i) for i in indexes if 0 <= int(i) < len(self.profiles)]
        keep[dropped] = False
        profiles = [profile for profile, kept in zip(self.profiles, keep.tolist(), strict=True) if kept]
        assert self.profile_sizes is not None
        return Batch(self.number, self.positions[keep], profiles, self.profile_sizes[keep])

    @property
    def size(self) -> int:
        """Bytes of :meth:`body`: exact for the last list id given to it, else for a 6-character id."""
        if self._body_bytes is not None:
            return self._body_bytes
        assert self.profile_sizes is not None
        commas = max(len(self.profiles) - 1, 0)
        return _ENVELOPE_BYTES + int(self.profile_sizes.sum()) + commas + _TYPICAL_LIST_ID_BYTES

    def __len__(self) -> int:
        return len(self.profiles)

    def __repr__(self) -> str:
        return f"Batch(number={self.number}, profiles={len(self.profiles):,}, size={self.size:,})"


def iter_batches(
    plan: Plan, *, max_profiles: int = 10_000, max_bytes: int = 4_500_000, max_profile_bytes: int = 100_000
) -> Iterator[Batch]:
    """Yield the pending rows of ``plan`` as import-job batches, in report order.

    Each batch holds at most ``max_profiles`` profiles and its body is at most ``max_bytes`` (the envelope
    and commas counted exactly, with room for a list id of up to 62 characters). The default 4.5 MB leaves
    headroom under Klaviyo's 5 MB. A profile over ``max_profile_bytes`` (Klaviyo: 100 KB) is marked
    ``failed`` and left out; included rows stay ``pending`` for the caller to settle.
    """
    for name, value in (
        ("max_profiles", max_profiles),
        ("max_bytes", max_bytes),
        ("max_profile_bytes", max_profile_bytes),
    ):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    room = max_bytes - _ENVELOPE_BYTES - _LIST_ID_RESERVE  # for the profiles and the commas between them
    if room < 2:
        raise InputError(f"max_bytes={max_bytes} leaves no room for profiles; use at least {_ENVELOPE_BYTES + 1000}")
    profile_limit = min(max_profile_bytes, room)
    encoder = _Encoder(plan)
    pending = plan.pending_positions()
    number = 0
    positions: list[np.ndarray] = []
    profiles: list[str] = []
    sizes: list[np.ndarray] = []
    count = used = 0  # profiles in the open batch; their bytes plus one comma each

    for start in range(0, len(pending), _CHUNK_ROWS):
        chunk_positions, chunk_profiles, chunk_sizes = encoder.encode(pending[start : start + _CHUNK_ROWS])
        too_big = chunk_sizes > profile_limit
        if too_big.any():
            plan.mark(
                chunk_positions[too_big],
                "failed",
                [_oversize(s, max_profile_bytes, max_bytes) for s in chunk_sizes[too_big]],
            )
            chunk_profiles = [p for p, big in zip(chunk_profiles, too_big.tolist(), strict=True) if not big]
            chunk_positions, chunk_sizes = chunk_positions[~too_big], chunk_sizes[~too_big]
        i = 0
        while i < len(chunk_profiles):
            # The body holds n profiles and n-1 commas: sizes+1 each must total at most room+1.
            costs = np.cumsum(chunk_sizes[i : i + max_profiles - count] + 1)
            take = int(np.searchsorted(costs, room + 1 - used, side="right"))
            if take:
                positions.append(chunk_positions[i : i + take])
                profiles.extend(chunk_profiles[i : i + take])
                sizes.append(chunk_sizes[i : i + take])
                count, used, i = count + take, used + int(costs[take - 1]), i + take
            if count and (take < len(costs) or count == max_profiles):  # full, by bytes or by count
                number += 1
                yield Batch(number, np.concatenate(positions), profiles, np.concatenate(sizes))
                positions, profiles, sizes, count, used = [], [], [], 0, 0
    if count:
        yield Batch(number + 1, np.concatenate(positions), profiles, np.concatenate(sizes))


def _oversize(size: int, max_profile_bytes: int, max_bytes: int) -> str:
    if size > max_profile_bytes:
        return (
            f"profile is {size:,} bytes, over Klaviyo's {max_profile_bytes / 1000:g} KB per-profile limit; "
            "shorten or drop large property columns"
        )
    return f"profile is {size:,} bytes, too large for a request of max_bytes={max_bytes:,}; raise max_bytes"


def _kind(group: str, key: str) -> Kind:
    """How a field's values are cleaned: custom properties keep their types; latitude and longitude are
    numbers; every other standard field is text (docs/klaviyo-api.md §3.1)."""
    if group == "properties":
        return "any"
    return "float" if key in ("latitude", "longitude") else "string"


class _Encoder:
    """Turns report positions into profile JSON, reading only the rows and columns it needs."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        # The normalised email of every pending row, read per chunk: the Arrow text itself when the column
        # is Arrow-backed (immutable, so a reference is safe), else a copy of the object column.
        emails = plan.report["email"].array
        self.arrow_emails = emails.__arrow_array__() if hasattr(emails, "__arrow_array__") else None
        self.emails = None if self.arrow_emails is not None else plan.report["email"].to_numpy(dtype=object, copy=True)
        del emails
        self.layouts: list[list[tuple[pd.Series, str, str, Kind, bool]]] = []
        order = {"": 0, "location": 1, "properties": 2}  # top-level fields, then the two nested objects
        for frame in plan._segments:
            layout = []
            for column, path in plan.field_map.items():
                if path == ("email",) or column not in frame.columns:
                    continue
                group, key = ("", path[0]) if len(path) == 1 else path
                series = frame.iloc[:, frame.columns.get_loc(column)]  # a view, not a copy
                layout.append((series, group, key, _kind(group, key), path == ("phone_number",)))
            layout.sort(key=lambda item: order[item[1]])
            self.layouts.append(layout)

    def encode(self, positions: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Profiles for ``positions`` (ascending), with their UTF-8 sizes."""
        profiles: list[str] = []
        bounds = np.searchsorted(positions, self.plan._offsets[1:-1])
        for number, part in enumerate(np.split(positions, bounds)):
            if part.size:
                profiles.extend(self._segment_profiles(number, part))
        return positions, profiles, byte_sizes(profiles)

    def _segment_profiles(self, number: int, positions: np.ndarray) -> list[str]:
        local = positions - self.plan._offsets[number]
        first, last = int(local[0]), int(local[-1])
        contiguous = last - first + 1 == len(local)  # the usual case: a slice is cheaper than a take
        emails = map(encode_basestring, self._emails(positions))
        top: list[tuple[list[str | None], bool]] = [(list(map('"email":'.__add__, emails)), False)]
        nested: dict[str, list[tuple[list[str | None], bool]]] = {"location": [], "properties": []}
        for series, group, key, kind, is_phone in self.layouts[number]:
            values = series.iloc[first : last + 1] if contiguous else series.iloc[local]
            if is_phone:  # send the number as checked: without spaces, dashes or parentheses
                values = pd.Series(check_phones(values).normalised, dtype=object)
            (nested[group] if group else top).append(column_fragments(values, key, kind))
        return assemble_profiles(top, nested)

    def _emails(self, positions: np.ndarray) -> list[str]:
        """The emails at report ``positions`` (ascending) as Python strings."""
        if self.arrow_emails is None:
            assert self.emails is not None
            return self.emails[positions].tolist()
        start = int(positions[0])
        window = self.arrow_emails.slice(start, int(positions[-1]) - start + 1)
        if len(window) != len(positions):
            window = window.take(positions - start)
        return window.to_pylist()


__all__ = ["STANDARD_FIELDS", "Batch", "Plan", "iter_batches", "plan_export", "standard_path"]
