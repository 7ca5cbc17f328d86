"""The export form's logic that needs no widgets: the DataFrames of a namespace and their columns, guessing the
email column, the choices offered. Kept apart so :mod:`klaviyo_magic.widgets.panel` is only wiring.

Every DataFrame kind the export takes is offered (pandas, Polars eager and lazy, Arrow, DuckDB, Dask, Spark).
Nothing here computes a lazy or distributed frame: row counts come only from frames already in memory, columns
and types from schemas, and the email column is judged by content only where the rows are already at hand.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Hashable, Sequence
from typing import Any

import pandas as pd

from ..errors import InputError
from ..export.emails import check_emails
from ..export.fields import STANDARD_FIELDS
from ..export.sources import Source, open_source

# Column names that mean "the email address" once case and separators are ignored.
_EMAIL_NAMES = frozenset({"email", "emailaddress", "emailaddr", "mail", "emails"})
_SEPARATORS = re.compile(r"[\s_\-.]+")
_SAMPLE_ROWS = 200  # per frame: enough to judge a column by its content, cheap on a million rows
_EMAIL_SHARE = 0.5  # "mostly look like emails"

# How the picker names each kind of input (pandas needs no name: it is what most notebooks hold).
KIND_NAMES = {
    "pandas": "",
    "polars": "Polars",
    "polars-lazy": "Polars LazyFrame",
    "arrow": "Arrow Table",
    "arrow-reader": "Arrow reader, read once",
    "arrow-dataset": "Arrow dataset",
    "duckdb": "DuckDB",
    "dask": "Dask",
    "pyspark": "Spark",
}

NO_CONNECTION = (
    "No Klaviyo connection is chosen or saved. Add one with `%klaviyo_connection add NAME --api-key-env VAR "
    "--accept-privacy-terms` (after `%load_ext klaviyo_magic`), then press Refresh."
)


# -- DataFrames in a namespace ------------------------------------------------------------------------------


def ipython_namespace() -> dict[str, Any] | None:
    """The notebook's namespace (IPython's ``user_ns``), or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def caller_globals(*, skip: dict[str, Any]) -> dict[str, Any]:
    """The globals of the nearest caller outside this module and the one whose globals are ``skip``."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals is skip or frame.f_globals is globals()):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def frames_found(count: int) -> str:
    if not count:
        return "No DataFrame in the notebook yet: create one, then press Refresh."
    return f"Found {count} DataFrame{'s' if count != 1 else ''} in the notebook."


def source_of(frame: Any) -> Source | None:
    """The export's view of ``frame``: its kind, columns and, when known without reading it, its rows. Opening
    reads schemas only (a Spark plan is analysed, no job runs). None for a frame the export cannot read."""
    if isinstance(frame, Source):
        return frame
    try:
        return open_source(0, frame)
    except (InputError, ImportError, TypeError, ValueError):
        return None


def frame_label(name: str, frame: Any) -> str:
    """``vip (7 rows)``, ``orders (1,200 rows · Polars)``, ``events (Spark)``: rows only where counting is free."""
    source = source_of(frame)
    if source is None:
        return name
    kind = KIND_NAMES.get(source.kind, source.kind)
    rows = source.rows if source.in_memory else None  # counting a lazy or distributed frame would compute it
    parts = [f"{rows:,} row{'s' if rows != 1 else ''}"] if rows is not None else []
    parts += [kind] if kind else []
    return f"{name} ({' · '.join(parts)})" if parts else name


def rereadable(frame: Any) -> bool:
    """Whether reading ``frame`` leaves it as it was (not a one-shot reader)."""
    source = source_of(frame)
    return source is None or source.rereadable


def known_rows(frames: Sequence[Any]) -> int | None:
    """The frames' rows in total when every one is in memory, else None (it would take reading them)."""
    total = 0
    for frame in frames:
        source = source_of(frame)
        if source is None or source.rows is None or not source.in_memory:
            return None
        total += source.rows
    return total


def common_columns(frames: Sequence[Any]) -> list[Hashable]:
    """Columns present once in every frame, in the first frame's order: the export needs them in all, and
    a duplicated name is not one column (the export explains that when such a frame is sent)."""
    sources = [source for source in map(source_of, frames) if source is not None]
    if not sources or len(sources) < len(frames):
        return []
    unique = [{c for c in s.columns if list(s.columns).count(c) == 1} for s in sources]
    return [column for column in sources[0].columns if all(column in names for names in unique)]


# -- the email column ---------------------------------------------------------------------------------------


def _folded(column: Hashable) -> str:
    return _SEPARATORS.sub("", str(column).lower())


def text_columns(source: Source) -> set[Hashable]:
    """The columns whose type is text, read from the schema: no row is read, nothing is computed."""
    if source.kind == "pandas":
        frame = source.native
        kinds = pd.api.types
        return {
            column
            for position, column in enumerate(frame.columns)
            if (dtype := frame.dtypes.iloc[position]) is not None
            and (kinds.is_object_dtype(dtype) or kinds.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype))
        }
    if source.kind.startswith("arrow"):
        import pyarrow as pa

        types = pa.types
        return {
            field.name
            for field in source.native.schema
            if types.is_string(field.type)
            or types.is_large_string(field.type)
            or types.is_string_view(field.type)
            or types.is_dictionary(field.type)
        }
    import narwhals.stable.v2 as nw

    schema = nw.from_native(source.native).collect_schema()  # Spark: the analysed plan's schema, no job
    return {name for name, dtype in schema.items() if dtype in (nw.String, nw.Categorical, nw.Enum)}


def _first_rows(source: Source, columns: list[Hashable]) -> pd.DataFrame | None:
    """The first rows of ``columns`` as pandas, for a frame already in memory only; None for any other."""
    if not source.in_memory or not columns:
        return None
    chunk = next(iter(source.chunks(columns, size=_SAMPLE_ROWS)), None)
    return chunk[0] if chunk is not None else None


def email_shares(frames: Sequence[Any], columns: Sequence[Hashable]) -> dict[Hashable, float]:
    """For each text column, the share of sampled non-missing values that are valid emails. Only frames already
    in memory are sampled; a lazy or distributed one (a Spark or Dask DataFrame, a Polars LazyFrame...) would
    have to be computed, so its columns are judged by name and type alone."""
    sources = [source for source in map(source_of, frames) if source is not None]
    texts = set.intersection(*(text_columns(source) for source in sources)) if sources else set()
    candidates = [column for column in columns if column in texts]
    samples = [sample for source in sources if (sample := _first_rows(source, candidates)) is not None]
    shares: dict[Hashable, float] = {}
    for column in candidates:
        values = pd.concat([sample[column] for sample in samples], ignore_index=True).dropna() if samples else None
        shares[column] = float(check_emails(values).valid.mean()) if values is not None and len(values) else 0.0
    return shares


def detect_email_column(frames: Sequence[Any], columns: Sequence[Hashable]) -> Hashable | None:
    """Guess the email column: a name like ``email``/``E-Mail``/``email_address``; else a text column named with
    "email" whose values look like emails (so ``email_opt_in`` flags lose); else the column whose sampled values
    mostly are emails. Frames not in memory are never read: for those, a text column named with "email" is
    enough. ``None`` when nothing fits."""
    for column in columns:
        if _folded(column) in _EMAIL_NAMES:
            return column
    shares = email_shares(frames, columns)
    in_memory = all(source is not None and source.in_memory for source in map(source_of, frames))
    for column in columns:
        if "email" in _folded(column) and column in shares and (shares[column] >= _EMAIL_SHARE or not in_memory):
            return column
    if shares:
        best = max(shares, key=lambda column: shares[column])
        if shares[best] >= _EMAIL_SHARE:
            return best
    return None


def standard_columns(columns: Sequence[Hashable]) -> list[Hashable]:
    """Columns named like a Klaviyo standard field (other than email): the engine sends these by default,
    so the form preselects them and what is ticked is exactly what is sent."""
    return [
        column
        for column in columns
        if str(column).strip().lower() in STANDARD_FIELDS and str(column).strip().lower() != "email"
    ]


# -- choices ------------------------------------------------------------------------------------------------


def option_values(options: Sequence[Any]) -> list[Any]:
    """The values of a selection widget's options, given as ``(label, value)`` pairs or bare values."""
    return [option[1] if isinstance(option, tuple) else option for option in options]


def check_choice(widget: Any, value: Any, what: str) -> Any:
    """``value`` if the selection widget offers it, else an :class:`InputError` listing what it offers."""
    values = option_values(widget.options)
    if value not in values:
        offered = ", ".join(map(str, values)) or "none"
        raise InputError(f"Unknown {what} {value!r} in the form; choose one of: {offered}.")
    return value


def connection_choices(profiles: Sequence[Any], env_var: str) -> tuple[list[tuple[str, str]], str | None]:
    """Dropdown options for the saved profiles (default marked) and the value to preselect. With no default
    profile but ``$env_var`` set, that ad-hoc connection is offered first, with value ``""``."""
    options = [(p.name + (" (default)" if p.is_default else ""), p.name) for p in profiles]
    default = next((p.name for p in profiles if p.is_default), None)
    if default is None and os.environ.get(env_var):
        options.insert(0, (f"${env_var}", ""))
        default = ""
    return options, default if default is not None else (options[0][1] if options else None)
