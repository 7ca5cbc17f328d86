"""64-bit hashes of emails and of what a row sends, vectorised over whole chunks.

An email's hash names a person in the dedupe set and the sync state; a row's hash says whether what it sends
(its mapped fields and properties) changed since the last run. Both use pandas' ``hash_array`` (SipHash with a
fixed key, the same in every process), over the text of the value for text and any other object (lists, dicts,
sets: their JSON, exactly as sent; booleans as ``true``/``false``) and over the numbers themselves for numeric
and datetime columns (by value: 3 and 3.0 alike). A value hashes the same whichever chunk it lands in and whatever
dtype that chunk gave its column, so a re-run that reads the input in other chunks sees the same hashes.

The sync state keeps these hashes between runs, so a change of the hash function would make every member look
new, and every member of the state look gone. :func:`check` computes a few known values; the state stores them
and, when they no longer match, re-hashes its emails instead of trusting the old hashes (``state.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_bool_dtype, is_numeric_dtype, is_object_dtype, is_string_dtype

from .values import json_texts

_MISSING = "\x00missing"  # what a missing value hashes as: no real text is this
_MISSING_HASH = pd.util.hash_array(np.array([_MISSING], dtype=object), categorize=False)[0]
_BOOL_HASHES = pd.util.hash_array(np.array(["false", "true"], dtype=object), categorize=False)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) to combine column hashes
_CHECK_EMAILS = ("ada@example.com", "bob.okafor+news@example.co.uk", "élodie@exemple.fr")


def text_hashes(texts: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """``uint64`` hashes of an object array of ``str`` (None counts as missing). ``missing``, when the caller has
    it cheaply (an Arrow column's validity, emails known valid), saves a pass over every value."""
    if texts.dtype != object:
        texts = texts.astype(object)
    if missing is None:
        missing = pd.isna(texts)
    if missing.any():
        texts = texts.copy()
        texts[missing] = _MISSING
    return pd.util.hash_array(texts, categorize=False)


def email_hashes(emails: Sequence[str] | np.ndarray) -> np.ndarray:
    """The hash of each normalised email, as stored in the sync state (``int64``, SQLite's integer)."""
    emails = np.asarray(emails, dtype=object)
    return text_hashes(emails, np.zeros(len(emails), dtype=bool)).view(np.int64)


def check() -> list[int]:
    """The hashes of a few fixed emails: equal in two processes exactly when the hash function is the same."""
    return email_hashes(list(_CHECK_EMAILS)).tolist()


def column_hashes(values: pd.Series) -> np.ndarray:
    """``uint64`` hash of each value of one column, the same for a value whatever chunk it is in."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values = values.astype(object)
        dtype = values.dtype
    if is_bool_dtype(dtype) or (is_object_dtype(dtype) and infer_dtype(values, skipna=True) == "boolean"):
        return _bool_hashes(values)
    if is_numeric_dtype(dtype) and getattr(dtype, "kind", "") in "iuf":  # numpy's and pandas' nullable numbers
        return _number_hashes(values)
    if (isinstance(dtype, np.dtype) and dtype.kind in "mM") or isinstance(dtype, pd.DatetimeTZDtype):
        if isinstance(dtype, pd.DatetimeTZDtype):  # the instant: to_numpy() of aware values gives Timestamp objects
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        hashes = pd.util.hash_array(values.to_numpy().view(np.int64), categorize=False)
        hashes[values.isna().to_numpy()] = _MISSING_HASH  # NaT like any missing value (an all-empty chunk is object)
        return hashes
    if is_string_dtype(dtype) and not is_object_dtype(dtype):  # text whose validity is known
        if str(getattr(dtype, "storage", "pyarrow")).startswith("pyarrow"):  # without pyarrow, storage is "python"
            return _arrow_text_hashes(values)
        return text_hashes(values.to_numpy(dtype=object, na_value=None), values.isna().to_numpy())
    if is_object_dtype(dtype) and infer_dtype(values, skipna=True) in ("string", "empty"):
        return text_hashes(values.to_numpy(dtype=object))
    return text_hashes(_canonical_texts(values))


def _number_hashes(values: pd.Series) -> np.ndarray:
    """Numbers by value, whatever their dtype: 3, 3.0 and pandas' Int64 3 hash alike, and a missing number like
    any missing value. From Arrow or Spark, an integer column with a gap arrives as floats in one chunk and as
    integers in the next; the same row must hash the same in both."""
    if values.dtype.kind in "iu":
        missing = values.isna().to_numpy()
        hashes = pd.util.hash_array(values.to_numpy(dtype=np.int64, na_value=0), categorize=False)
    else:
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(floats)
        whole = (floats == np.trunc(floats)) & (np.abs(floats) < 2.0**63)  # False for NaN and inf
        hashes = pd.util.hash_array(floats, categorize=False)
        hashes[whole] = pd.util.hash_array(floats[whole].astype(np.int64), categorize=False)
    hashes[missing] = _MISSING_HASH
    return hashes


def _bool_hashes(values: pd.Series) -> np.ndarray:
    """Booleans as the JSON they are sent as, so a bool column and an object column of True/False/None (Arrow or
    Spark booleans with a gap) hash alike."""
    hashes = _BOOL_HASHES[values.to_numpy(dtype=bool, na_value=False).astype(np.intp)]
    hashes[values.isna().to_numpy()] = _MISSING_HASH
    return hashes


def _arrow_text_hashes(values: pd.Series) -> np.ndarray:
    """:func:`text_hashes` of Arrow-backed text, each distinct value hashed once when values repeat (names, plans,
    cities): Arrow finds the distinct values (in C) far faster than each value can be made a Python ``str``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(values.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    sample = array.take(np.unique(np.linspace(0, len(array) - 1, min(len(array), 2048)).astype(np.int64)))
    if pc.count_distinct(sample).as_py() > 0.9 * len(sample):  # nearly all distinct (ids): hashing each is cheaper
        return text_hashes(values.to_numpy(dtype=object, na_value=None), values.isna().to_numpy())
    encoded = pc.dictionary_encode(array)
    distinct = text_hashes(encoded.dictionary.to_numpy(zero_copy_only=False), np.zeros(len(encoded.dictionary), bool))
    hashes = np.full(len(array), _MISSING_HASH, dtype=np.uint64)
    present = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
    hashes[present] = distinct[encoded.indices.drop_null().to_numpy()]
    return hashes


def _canonical_texts(values: pd.Series) -> np.ndarray:
    """Text for values of any kind: a ``str`` as it is, anything else as the JSON the export sends for it (lists,
    dicts, sets, numbers in an object column...). None where nothing is sent."""
    texts = np.array(json_texts(values, "any"), dtype=object)
    raw = values.to_numpy(dtype=object)
    is_text = np.fromiter((isinstance(value, str) for value in raw), dtype=bool, count=len(raw))
    texts[is_text] = raw[is_text]
    return texts


def row_hashes(frame: pd.DataFrame, field_map: Mapping[Any, tuple[str, ...]]) -> np.ndarray:
    """``int64`` hash of what each row of ``frame`` sends besides its email: every mapped column, with the field
    it goes to, so a changed value or a changed mapping gives another hash."""
    combined = np.zeros(len(frame), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column, path in sorted(field_map.items(), key=lambda item: ".".join(item[1])):
            if path == ("email",) or column not in frame.columns:
                continue
            salt = text_hashes(np.array([".".join(path)], dtype=object))[0]
            values = frame.iloc[:, frame.columns.get_loc(column)]
            combined = combined * _MIX + (column_hashes(values) ^ salt)
    return combined.view(np.int64)
