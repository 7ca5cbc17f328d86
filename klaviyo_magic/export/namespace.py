"""DataFrames found by variable name in a namespace: a notebook's, or the frames the CLI read from files.

One lookup for every shell: the magic names DataFrames on its line, a saved export names the variables it was
saved with, the form lists what it can offer. IPython's output cache (``_``, ``_3``...) holds DataFrames too;
they are never what the user meant, so names starting with ``_`` are left out.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a DataFrame the export takes: pandas, Polars (eager or lazy), PyArrow, DuckDB, Dask,
    PySpark."""
    from .sources import is_segment

    return is_segment(value)


# How a picker names each kind whose rows cannot be counted without reading (or computing) it.
_LAZY_KINDS = {
    "polars-lazy": "Polars LazyFrame",
    "arrow-reader": "PyArrow RecordBatchReader",
    "arrow-dataset": "PyArrow dataset",
    "duckdb": "DuckDB relation",
    "dask": "Dask DataFrame",
    "pyspark": "Spark DataFrame",
}


def describe(value: Any) -> str:
    """A short description for a picker, that never reads the data: ``1,234 rows`` for a DataFrame in memory,
    the kind (``Spark DataFrame``, ``Polars LazyFrame``...) for one whose rows only reading would count (``len()``
    of a Dask DataFrame computes it; a Spark DataFrame or a LazyFrame has no ``len()``)."""
    from .sources import kind_of

    kind = kind_of(value)
    if kind is None:
        return type(value).__name__
    if kind in _LAZY_KINDS:
        return _LAZY_KINDS[kind]
    rows = value.num_rows if kind == "arrow" else len(value)
    return f"{rows:,} row{'s' if rows != 1 else ''}"


def dataframes(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace's DataFrames by variable name, sorted by name."""
    found = {
        name: value
        for name, value in list(namespace.items())  # a copy: the kernel may add names meanwhile
        if isinstance(name, str) and not name.startswith("_") and is_dataframe(value)
    }
    return dict(sorted(found.items()))


def lookup(names: Sequence[str], namespace: Mapping[str, Any], *, saved_export: str | None = None) -> list[Any]:
    """The DataFrames called ``names`` in ``namespace``; an unknown name, or one that is not a DataFrame, is a
    one-line :class:`InputError` with a "did you mean". ``saved_export`` names the saved export that uses them,
    for the message."""
    frames = []
    for name in names:
        if name not in namespace:
            known = list(dataframes(namespace))
            if saved_export is not None:
                raise InputError(
                    f"saved export '{saved_export}' uses the variable '{name}', which is not defined here."
                    f"{did_you_mean(name, known)}"
                )
            raise InputError(f"'{name}' is not defined in this notebook.{_frames_hint(name, known)}")
        value = namespace[name]
        if not is_dataframe(value) and not isinstance(value, os.PathLike):
            if saved_export is not None:
                raise InputError(
                    f"saved export '{saved_export}' uses '{name}', which is a {type(value).__name__}, not a DataFrame"
                )
            raise InputError(
                f"'{name}' is a {type(value).__name__}, not a DataFrame. Pass the name of a DataFrame "
                "(pandas, Polars, PyArrow, DuckDB, Dask or Spark; e.g. vip = customers[customers.ltv > 500])."
            )
        frames.append(value)
    return frames


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, else the known ones, else nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if close:
        return f" Did you mean '{close[0]}'?"
    return f" Known: {', '.join(sorted(candidates))}." if candidates else ""


def _frames_hint(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f" Did you mean '{close[0]}'?"
    return f" DataFrames here: {', '.join(sorted(known))}." if known else ""
