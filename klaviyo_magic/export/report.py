"""The export's per-row report, built from compact columns: no Python object per row but the few reasons.

A million-row report with 30-character emails costs about 55 MB, most of it their text, instead of the
150 MB of object columns (a Python ``str`` per email, an ``int`` per index label), so it stays smaller than
the DataFrame it describes. :class:`~klaviyo_magic.export.segment.Plan` documents the columns and their dtypes.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from ..result import STATUSES
from .emails import RowDecisions

PENDING = "pending"
# The status column's categories: "pending" (a row waiting for its fate), then every status a row can end with
# (result.STATUSES). Plan.mark adds any other status it is given as a new category.
STATUS_DTYPE = pd.CategoricalDtype([PENDING, *STATUSES])


def segment_numbers(lengths: np.ndarray) -> np.ndarray:
    """The segment of every row (``lengths`` rows each) in the smallest signed integer dtype that holds it."""
    count = len(lengths)
    dtype = next((t for t in (np.int8, np.int16, np.int32) if count <= np.iinfo(t).max + 1), np.int64)
    return np.repeat(np.arange(count, dtype=dtype), lengths)


def index_labels(frames: list[pd.DataFrame]) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The original index label of every row, by report position.

    In the segments' index dtype when those with rows share one (``int64`` for a RangeIndex, Arrow-backed
    ``str`` for text labels, ``datetime64``...), so no Python object is made per label; else an object array
    as before (a MultiIndex gives tuples; mixed dtypes give their labels as they are).
    """
    indexes = [frame.index for frame in frames if len(frame)] or [frames[0].index]
    first = indexes[0]
    same = all(index.dtype == first.dtype for index in indexes)
    if same and not any(isinstance(index, pd.MultiIndex) for index in indexes):
        combined = first.append(indexes[1:]) if len(indexes) > 1 else first
        if combined.dtype == first.dtype:
            return combined.to_numpy() if combined.dtype == object else combined.array
    return np.concatenate([frame.index.to_numpy(dtype=object) for frame in frames])


def build_report(segment: np.ndarray, labels: Any, decisions: RowDecisions) -> pd.DataFrame:
    """The report's five columns, from the per-row decisions; every row ``pending`` unless decided otherwise."""
    codes = np.zeros(len(segment), dtype=np.int8)  # "pending"
    codes[decisions.skipped] = STATUS_DTYPE.categories.get_loc("skipped")
    codes[decisions.duplicate] = STATUS_DTYPE.categories.get_loc("duplicate")
    columns = {
        "segment": segment,
        "index": labels,
        "email": decisions.shown.to_numpy() if decisions.shown.dtype == object else decisions.shown.array,
        "status": pd.Categorical.from_codes(codes, dtype=STATUS_DTYPE),
        "reason": decisions.reason,
    }
    # Object arrays stay object: pandas 3 would infer ``str`` for text, and None would become NaN.
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype == object:
            columns[name] = pd.Series(values, dtype=object, copy=False)
    return pd.DataFrame(columns, copy=False)


def release_arrow_scratch() -> None:
    """Hand back the scratch that the string kernels and the duplicate search left in pyarrow's allocator.

    The allocator (mimalloc) keeps freed buffers for reuse: after planning a million rows, about 150 MB that
    the process would otherwise go on holding. Releasing them takes about a millisecond.
    """
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        try:
            pyarrow.default_memory_pool().release_unused()
        except Exception:  # an optimisation only: never a reason for planning to fail
            pass
