"""DataFrame cells to JSON: the value-cleaning half of building Klaviyo profiles.

A profile is assembled from pre-encoded ``"key":value`` fragments, one list per column, so the hot path
is a few C-level ``map``/``join`` calls per column instead of building and serialising a dict per row.
The fragments are byte-for-byte what ``json.dumps(profile, separators=(",", ":"), ensure_ascii=False)``
would produce for the cleaned values.

Cleaning rules (``None`` in a fragment list means "leave the key out"):

- Missing values (None, NaN, NaT, pd.NA) are omitted, never sent as ``null``: in a bulk import a null does
  not clear a field anyway (docs/klaviyo-api.md §3.3), it only costs bytes.
- ``inf``/``-inf`` are omitted too: JSON has no infinity and Klaviyo would reject the whole request. So is a
  list or dict with an infinite number inside (whole), and a latitude or longitude that is not a number. The
  row's report names what was left out (``unsendable``).
- numpy scalars become Python ones; ``Decimal`` becomes an int when integral, else a float.
- Timestamps become ISO 8601: naive ones as they are (no offset), tz-aware ones with their UTC offset;
  ``date`` becomes ``YYYY-MM-DD``.
- Lists, tuples, sets and arrays become lists (a missing element becomes ``null``, to keep positions);
  dicts keep their keys as strings and drop missing values; Categoricals send their underlying values.
- ``bytes`` are decoded as UTF-8; anything else is sent as ``str(value)``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from itertools import repeat
from json.encoder import encode_basestring  # the C encoder json uses when ensure_ascii=False
from operator import add
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import (
    infer_dtype,
    is_bool_dtype,
    is_float_dtype,
    is_integer_dtype,
    is_object_dtype,
    is_string_dtype,
)

# "any": custom properties, typed by their values; "string": standard text fields such as first_name;
# "float": latitude and longitude (docs/klaviyo-api.md §3.1).
Kind = Literal["any", "string", "float"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Missing:
    """Marker for "leave this key out"; distinct from None, which a list element may legitimately be."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def dumps(value: Any) -> str:
    """Compact JSON of an already-cleaned value, exactly as the rest of the package serialises it."""
    return _ENCODER.encode(value)


def is_missing(value: Any) -> bool:
    """True for None, pd.NA, pd.NaT, NaN (float, numpy or Decimal) and numpy NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return value != value
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    if isinstance(value, Decimal):
        return value.is_nan()
    return False


def clean_value(value: Any) -> Any:
    """One cell as a JSON-ready Python value, or :data:`MISSING` when it should not be sent."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else MISSING
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else MISSING
    if isinstance(value, Decimal):
        if not value.is_finite():
            return MISSING
        if value == value.to_integral_value():
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else MISSING
    if isinstance(value, str):  # str subclasses such as np.str_
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Mapping | list | tuple | set | frozenset | np.ndarray) and _infinite(value):
        # Left out whole, as the report says: a list with a null in place of the infinity, or a dict without that
        # key, would replace the profile's value in Klaviyo with one the row never had.
        return MISSING
    if isinstance(value, Mapping):
        cleaned = ((str(k), clean_value(v)) for k, v in value.items())
        return {k: v for k, v in cleaned if v is not MISSING}
    if isinstance(value, set | frozenset):
        try:
            value = sorted(value)  # a stable order, so re-running an export sends the same bytes
        except TypeError:
            value = list(value)
    if isinstance(value, list | tuple | np.ndarray | pd.Series | pd.Index | pd.Categorical):
        return [_clean_element(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return clean_value(value.item())
    return str(value)


def _clean_element(value: Any) -> Any:
    cleaned = clean_value(value)
    return None if cleaned is MISSING else cleaned


def _dump_clean(value: Any) -> str:
    """JSON of a cleaned value, skipping the encoder's generic machinery for the common scalars."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return float.__repr__(value)
    return _ENCODER.encode(value)


def fragments(values: pd.Series, key: str, kind: Kind = "any") -> list[str | None]:
    """``'"key":<json>'`` for every value of ``values``, or None where the value is not to be sent."""
    return column_fragments(values, key, kind)[0]


def column_fragments(values: pd.Series, key: str, kind: Kind = "any") -> tuple[list[str | None], bool]:
    """:func:`fragments`, and whether any of them is None (so joining can skip filtering when not)."""
    texts, omit = _texts(values, kind)
    return _omit(list(map((encode_basestring(key) + ":").__add__, texts)), omit), bool(omit.any())


def json_texts(values: pd.Series, kind: Kind = "any") -> list[str | None]:
    """The JSON text of every value of ``values`` cleaned for ``kind``, or None where it is omitted."""
    return _omit(*_texts(values, kind))


def _texts(values: pd.Series, kind: Kind) -> tuple[list[str], np.ndarray]:
    """JSON texts for every value (placeholders where omitted) and the mask of omitted values.

    Keeping the mask separate lets the callers run C-level ``map`` over whole lists. The column's dtype
    picks a vectorised path where it can (numbers, booleans, datetimes, strings, categoricals); only
    object columns of mixed types fall back to cleaning cell by cell.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        # Encode each category once, then look the codes up: categories are few, rows are many.
        categories, omitted = _texts(pd.Series(dtype.categories), kind)
        codes = values.cat.codes.to_numpy()
        lookup = np.array(categories + [""], dtype=object)  # code -1 (missing) picks the placeholder
        return lookup[codes].tolist(), np.append(omitted, True)[codes]
    if kind == "float":
        return _float_texts(_as_float(values))
    missing = values.isna().to_numpy()
    if is_bool_dtype(dtype):
        flags = values.to_numpy(dtype=bool, na_value=False)
        true, false = ('"True"', '"False"') if kind == "string" else ("true", "false")
        return np.where(flags, true, false).tolist(), missing
    if is_integer_dtype(dtype):
        texts = list(map(str, _fill(values.tolist(), missing, 0)))
        return (list(map('"{}"'.format, texts)) if kind == "string" else texts), missing
    if is_float_dtype(dtype):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        if kind == "string":  # a zip or id read as float because of a NaN: 10017.0 -> "10017"
            strings, omit = _float_strings(floats)
            return list(map(encode_basestring, strings)), omit
        return _float_texts(floats)
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return list(map('"{}"'.format, _fill(iso_datetimes(values), missing, ""))), missing
    if _is_text_column(values):
        strings = _fill(values.tolist(), missing, "")
        if kind == "string":  # blank standard fields are not sent: they would say nothing but cost bytes
            blank = np.fromiter(map(str.isspace, strings), dtype=bool, count=len(strings))
            blank |= np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)) == 0
            missing = missing | blank
        return list(map(encode_basestring, strings)), missing
    if not is_object_dtype(dtype):  # timedeltas, periods, intervals, arrow dates and lists...
        values = values.astype(object)
    cleaned = list(map(clean_value, values.tolist()))
    if kind == "string":
        strings = [_as_string(v) for v in cleaned]
        omit = np.fromiter((s is None for s in strings), dtype=bool, count=len(strings))
        return [encode_basestring(s) if s is not None else "" for s in strings], omit
    omit = np.fromiter((v is MISSING for v in cleaned), dtype=bool, count=len(cleaned))
    return [_dump_clean(v) if v is not MISSING else "" for v in cleaned], omit


def unsendable(values: pd.Series, kind: Kind = "any") -> np.ndarray | None:
    """Which values are there but cannot be sent, or None when every value can: infinite numbers (JSON has no
    infinity), also inside a list, a dict or a set, and, for latitude and longitude, values that are not numbers.
    They are left out (a list or dict with one inside: whole); the report says which (:func:`why_unsendable`)."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values, dtype = values.astype(object), np.dtype(object)
    if kind == "float" and is_bool_dtype(dtype):
        mask = ~values.isna().to_numpy()  # True is no latitude
    elif kind == "float" and not (is_float_dtype(dtype) or is_integer_dtype(dtype)):
        blank = values.astype(object).map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
        mask = ~values.isna().to_numpy() & ~blank & ~np.isfinite(_as_float(values))  # a blank is missing
    elif is_float_dtype(dtype):
        mask = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    elif is_object_dtype(dtype) and infer_dtype(values, skipna=True) not in ("string", "empty", "integer", "boolean"):
        mask = np.fromiter(map(_infinite, values.tolist()), dtype=bool, count=len(values))
    else:
        return None
    return mask if mask.any() else None


INFINITE = "JSON has no infinite numbers, so Klaviyo cannot take them"
NOT_A_NUMBER = "latitude and longitude must be numbers"


def why_unsendable(value: Any) -> str:
    """Why :func:`unsendable` picked ``value``: :data:`INFINITE` or :data:`NOT_A_NUMBER`."""
    return INFINITE if _infinite(value) else NOT_A_NUMBER


def _infinite(value: Any) -> bool:
    if isinstance(value, float | np.floating):
        return bool(np.isinf(value))
    if isinstance(value, Decimal):
        return value.is_infinite()
    if isinstance(value, Mapping):
        return any(map(_infinite, value.values()))
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return any(map(_infinite, value))
    return False


def _is_text_column(values: pd.Series) -> bool:
    if is_string_dtype(values.dtype) and not is_object_dtype(values.dtype):
        return True
    return is_object_dtype(values.dtype) and infer_dtype(values, skipna=True) == "string"


def _fill(items: list[Any], missing: np.ndarray, placeholder: Any) -> list[Any]:
    """``items`` with ``placeholder`` where missing, so ``map`` can run over the whole list."""
    if not missing.any():
        return items
    return [placeholder if m else item for item, m in zip(items, missing.tolist(), strict=True)]


def _omit(texts: list[str], omit: np.ndarray) -> list[str | None]:
    if not omit.any():
        return texts  # type: ignore[return-value]
    return [None if m else t for t, m in zip(texts, omit.tolist(), strict=True)]


def _float_texts(floats: np.ndarray) -> tuple[list[str], np.ndarray]:
    """JSON numbers via ``float.__repr__`` (what ``json`` itself uses); NaN and inf omitted."""
    return list(map(float.__repr__, floats.tolist())), ~np.isfinite(floats)


def _float_strings(floats: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Floats as text for string fields: integral ones without the ``.0``."""
    finite = np.isfinite(floats)
    integral = finite & (np.mod(floats, 1, where=finite, out=np.ones_like(floats)) == 0)
    strings = [str(int(f)) if i else repr(f) for f, i in zip(floats.tolist(), integral.tolist(), strict=True)]
    return strings, ~finite


def _as_float(values: pd.Series) -> np.ndarray:
    """Latitude/longitude as floats: Klaviyo takes numbers or strings, numbers are unambiguous. A boolean is no
    coordinate (``pd.to_numeric`` would make True 1.0): NaN, omitted and named like unparsable text."""
    if is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    if not (is_float_dtype(values.dtype) or is_integer_dtype(values.dtype)):
        cells = values.astype(object)
        cells = cells.where(~cells.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool), None)
        values = pd.to_numeric(cells, errors="coerce")  # unparsable text -> NaN -> omitted
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _as_string(value: Any) -> str | None:
    """A cleaned cell as the text sent to a standard text field such as ``zip`` or ``external_id``."""
    if value is MISSING:
        return None
    if type(value) is float and value.is_integer():
        value = str(int(value))  # 10017.0 -> "10017": a float only because its column had a NaN
    elif not isinstance(value, str):
        value = str(value) if isinstance(value, int | float) else _ENCODER.encode(value)
    return None if not value or value.isspace() else value


def iso_datetimes(values: pd.Series) -> list[str | None]:
    """ISO 8601 strings for a datetime64 column, like ``Timestamp.isoformat()`` but vectorised.

    Whole seconds go through numpy's C formatter; the rare value with a fraction of a second uses
    ``isoformat`` itself, which prints microseconds or nanoseconds only when present. Tz-aware values get
    their own UTC offset (which can differ per row across daylight saving time).
    """
    aware = isinstance(values.dtype, pd.DatetimeTZDtype)
    local = values.dt.tz_localize(None) if aware else values
    wall = local.to_numpy()
    seconds = wall.astype("datetime64[s]")
    missing = np.isnat(wall)
    exact = ~missing & (wall == seconds)
    texts: list[str | None] = np.datetime_as_string(seconds, unit="s").tolist()
    if aware:
        utc = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
        offsets = (seconds.astype(np.int64) - utc.astype(np.int64)).tolist()
        texts = [t + _offset(o) for t, o in zip(texts, offsets, strict=True)]
    if not exact.all():
        fallback = np.flatnonzero(~exact & ~missing)
        originals = values.iloc[fallback].tolist()
        for position, stamp in zip(fallback.tolist(), originals, strict=True):
            texts[position] = stamp.isoformat()
        for position in np.flatnonzero(missing).tolist():
            texts[position] = None
    return texts


_OFFSETS: dict[int, str] = {}


def _offset(seconds: int) -> str:
    """``+HH:MM`` (``+HH:MM:SS`` for historical odd offsets), as ``datetime.isoformat`` writes it."""
    text = _OFFSETS.get(seconds)
    if text is None:
        sign = "-" if seconds < 0 else "+"
        hours, rest = divmod(abs(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        text = f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")
        _OFFSETS[seconds] = text
    return text


# -- assembling profiles ------------------------------------------------------------------------------------

PROFILE_OPEN = '{"type":"profile","attributes":{'


def assemble_profiles(
    top: list[tuple[list[str | None], bool]], nested: dict[str, list[tuple[list[str | None], bool]]]
) -> list[str]:
    """Profile JSON objects from column fragments: ``top`` holds ``attributes``-level columns (the first
    one, the email, is never missing), ``nested`` the columns of ``location`` and ``properties``.

    Each column comes with a flag saying whether it has omitted values; columns without any are joined
    with C-level ``map(",".join, ...)``, the others through a filter per row.
    """
    parts = list(top)
    for name, columns in nested.items():
        if columns:
            joined, sparse = _join_rows(columns)
            prefix = encode_basestring(name) + ":{"
            if sparse:
                parts.append(([prefix + j + "}" if j else None for j in joined], True))
            else:
                parts.append((list(map(add, map(prefix.__add__, joined), repeat("}", len(joined)))), False))
    rows, _ = _join_rows(parts)
    return list(map(add, map(PROFILE_OPEN.__add__, rows), repeat("}}", len(rows))))


def _join_rows(columns: list[tuple[list[str | None], bool]]) -> tuple[list[str], bool]:
    """Comma-join the fragments of each row; also say whether some row came out empty."""
    if len(columns) == 1:
        texts, sparse = columns[0]
        return ([t or "" for t in texts] if sparse else texts), sparse  # type: ignore[return-value]
    lists = [texts for texts, _ in columns]
    if not any(sparse for _, sparse in columns):
        return list(map(",".join, zip(*lists, strict=True))), False
    joined = [",".join(filter(None, row)) for row in zip(*lists, strict=True)]
    return joined, not all(joined)


def byte_sizes(texts: list[str]) -> np.ndarray:
    """UTF-8 length of each text, as Klaviyo's byte limits count it.

    ``str.isascii`` is O(1) in CPython and an ASCII text's length is its byte count, so only the others
    are encoded to be measured.
    """
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ascii = np.fromiter(map(str.isascii, texts), dtype=bool, count=len(texts))
    if not ascii.all():
        others = np.flatnonzero(~ascii)
        sizes[others] = [len(texts[i].encode()) for i in others.tolist()]
    return sizes
