"""Segments from any DataFrame library, read in chunks of bounded size as pandas DataFrames of the columns sent.

The engine works on pandas chunks of at most ``CHUNK_ROWS`` rows holding only the columns the export sends, so
its memory does not grow with the segment's size or width. What each input kind costs:

- already in memory (pandas, Polars ``DataFrame``, PyArrow ``Table``): sliced, no copy of the whole;
- lazy or distributed (Polars ``LazyFrame``, DuckDB relations, PyArrow datasets and Parquet/CSV files, Dask and
  PySpark DataFrames): only the sent columns are selected (the backend prunes the rest), then read batch by
  batch: Polars' streaming engine, DuckDB's Arrow record-batch reader, PyArrow's dataset scanner, one Dask
  partition at a time (each computed once), and Spark's ``toLocalIterator`` (one partition on the driver at a
  time; never ``collect``/``toPandas``);
- a PyArrow ``RecordBatchReader``: read as it comes, but only once, so a run from it cannot be resumed.

Column names, schemas and selections go through narwhals' stable API, so one code path serves every library;
only the batch reading is per backend, because narwhals (like the libraries) collects a lazy frame whole.
Optional libraries are imported only when an input of theirs arrives.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

CHUNK_ROWS = 50_000  # rows per chunk: large enough to amortise pandas calls, small enough for memory

# The extra to install for each library whose inputs need pyarrow to become pandas (or the library itself).
_EXTRAS = {"polars": "polars", "pyarrow": "parquet", "duckdb": "duckdb", "dask": "dask", "pyspark": "spark"}
ACCEPTED = (
    "a pandas or Polars DataFrame, a Polars LazyFrame, a PyArrow Table, RecordBatchReader or dataset, a DuckDB "
    "relation, a Dask or PySpark DataFrame"
)


@dataclass
class Chunk:
    """Rows ``start`` to ``start + len(frame)`` of the whole export (all segments, in order)."""

    segment: int
    start: int  # position of the first row in the whole export
    frame: pd.DataFrame  # the sent columns only
    labels: Any  # each row's label: the DataFrame's index for pandas, else its row number in the segment


@dataclass
class Source:
    """One segment: what it is, its columns, and how to read it chunk by chunk."""

    number: int
    kind: str  # "pandas", "polars", "polars-lazy", "arrow", "arrow-reader", "arrow-dataset", "duckdb", "dask"...
    native: Any
    columns: list[Any]
    rows: int | None  # known without reading the data (None: only reading tells)
    in_memory: bool  # the data is already in memory: the report can be a DataFrame as well
    rereadable: bool  # reading it again gives the same rows (not a one-shot reader)
    index_name: Any = None
    identity: dict[str, Any] = field(default_factory=dict)  # what names this input in the run journal

    def describe(self) -> str:
        rows = f"{self.rows:,} rows" if self.rows is not None else "rows not counted yet"
        return f"segment {self.number} ({self.kind}, {rows})"

    def count(self) -> int | None:
        """The number of rows, counted by the backend where that does not mean reading the rows here: Parquet
        footers, Polars' and DuckDB's query engines, a Spark job. None for a Dask DataFrame (counting would
        compute every partition once more) and a one-shot reader."""
        if self.rows is None and self.kind in ("polars-lazy", "duckdb", "pyspark"):
            nw = _narwhals()
            self.rows = int(nw.from_native(self.native).select(nw.len()).collect().item())
        elif self.rows is None and self.kind == "arrow-dataset":
            self.rows = int(self.native.count_rows())
        return self.rows

    def chunks(self, columns: Sequence[Any], size: int = CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, Any]]:
        """``(frame, labels)`` pairs of at most ``size`` rows holding ``columns``, in order."""
        reader = _READERS[self.kind]
        for frame, labels in reader(self, list(columns), size):
            yield from _split(frame, labels, size)


# The types the export reads, by module and class name, so telling them apart imports none of their libraries.
_SEGMENT_TYPES = {
    ("polars", "DataFrame"),
    ("polars", "LazyFrame"),
    ("pyarrow", "Table"),
    ("pyarrow", "RecordBatchReader"),
    ("duckdb", "DuckDBPyRelation"),
    ("dask", "DataFrame"),
    ("dask_expr", "DataFrame"),
    ("pyspark", "DataFrame"),
}


def is_segment(value: Any) -> bool:
    """Whether ``value`` is an input the export takes (a DataFrame of any supported library, a dataset)."""
    if isinstance(value, pd.DataFrame):
        return True
    kind = type(value)
    module = kind.__module__.split(".")[0]
    if (module, kind.__name__) in _SEGMENT_TYPES:
        return True
    return module == "pyarrow" and kind.__name__.endswith("Dataset") and hasattr(value, "to_batches")


def open_sources(segments: Any) -> list[Source]:
    """The segments as :class:`Source` objects: one input, or a list or tuple of them."""
    if isinstance(segments, list | tuple):
        if not segments:
            raise InputError("segments is an empty list; pass at least one DataFrame")
        items = list(segments)
    else:
        items = [segments]
    return [open_source(number, item) for number, item in enumerate(items)]


def open_source(number: int, segment: Any) -> Source:
    """One input as a :class:`Source`; an input of an unknown kind is a one-line :class:`InputError`."""
    if isinstance(segment, pd.DataFrame):
        return Source(
            number,
            "pandas",
            segment,
            list(segment.columns),
            len(segment),
            True,
            True,
            index_name=segment.index.name,
            identity={"kind": "pandas"},
        )
    if isinstance(segment, str | os.PathLike):
        return _file_source(number, segment)
    module = type(segment).__module__.split(".")[0]
    if isinstance(segment, pd.Series) or (module == "polars" and type(segment).__name__ == "Series"):
        raise InputError(f"segment {number} is a {type(segment).__name__}, not a DataFrame (use series.to_frame())")
    if module == "pyarrow":
        return _arrow_source(number, segment)
    if module in ("polars", "duckdb", "dask", "dask_expr", "pyspark"):
        return _narwhals_source(number, segment)
    raise InputError(f"segment {number} is a {type(segment).__name__}; the export takes {ACCEPTED}")


def _narwhals_source(number: int, segment: Any) -> Source:
    nw = _narwhals()
    try:
        frame = nw.from_native(segment)
    except TypeError:
        raise InputError(f"segment {number} is a {type(segment).__name__}; the export takes {ACCEPTED}") from None
    implementation = frame.implementation
    name = implementation.name.lower()
    if isinstance(frame, nw.DataFrame):  # eager: Polars (pandas and PyArrow are handled before)
        return Source(number, name, segment, list(frame.columns), len(frame), True, True, identity={"kind": name})
    columns = list(frame.collect_schema().names())
    kind = {"polars": "polars-lazy", "pyspark_connect": "pyspark"}.get(name, name)
    if kind not in _READERS:
        raise InputError(f"segment {number} is a {implementation} frame, which the export cannot read yet")
    return Source(number, kind, segment, columns, None, False, True, identity={"kind": kind})


def _arrow_source(number: int, segment: Any) -> Source:
    import pyarrow as pa

    if isinstance(segment, pa.Table):
        return Source(
            number, "arrow", segment, segment.column_names, segment.num_rows, True, True, identity={"kind": "arrow"}
        )
    if isinstance(segment, pa.RecordBatchReader):
        return Source(
            number, "arrow-reader", segment, segment.schema.names, None, False, False, identity={"kind": "arrow-reader"}
        )
    import pyarrow.dataset as ds

    if isinstance(segment, ds.Dataset):
        return Source(
            number,
            "arrow-dataset",
            segment,
            segment.schema.names,
            None,
            False,
            True,
            identity={"kind": "arrow-dataset"},
        )
    raise InputError(f"segment {number} is a pyarrow {type(segment).__name__}; the export takes {ACCEPTED}")


# -- files (the CLI's --input) ------------------------------------------------------------------------------

# Columns read as text from CSV so parsing cannot damage them ("02139" -> 2139, "+1500..." -> float).
TEXT_COLUMNS = frozenset(
    {"email", "phone_number", "external_id", "zip", "first_name", "last_name", "organization", "title"}
)


def file_paths(text: str | os.PathLike) -> list[Path]:
    """The files a path or a glob names (``data/*.parquet``), sorted; an error when there are none."""
    pattern = os.fspath(text)
    paths = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(pattern) else [Path(pattern)]
    if not paths:
        raise InputError(f"no file matches {pattern}")
    for path in paths:
        if not path.is_file():
            raise InputError(f"input file {path} does not exist (or is not a file)")
    return paths


def file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        return "csv"
    raise InputError(f"input file {path} is neither CSV (.csv, .tsv, .csv.gz) nor Parquet (.parquet)")


def _file_source(number: int, text: str | os.PathLike) -> Source:
    """A Parquet or CSV file, or a glob of them, streamed through a PyArrow dataset.

    Without pyarrow (a plain install), CSV is read whole by pandas, which needs no extra.
    """
    paths = file_paths(text)
    formats = {file_format(path) for path in paths}
    if len(formats) > 1:
        raise InputError(f"{text} mixes CSV and Parquet files; export them as separate segments")
    kind = formats.pop()
    identity = {"kind": f"file-{kind}", "files": [_file_identity(path) for path in paths]}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        if kind == "parquet":
            raise InputError(f"reading {text} needs pyarrow: pip install 'klaviyo-magic[parquet]'") from None
        frame = pd.concat([_read_csv_with_pandas(path) for path in paths], ignore_index=True)
        return Source(number, "pandas", frame, list(frame.columns), len(frame), True, True, identity=identity)
    dataset = _arrow_dataset(paths, kind)
    rows = dataset.count_rows() if kind == "parquet" else None  # Parquet footers give the count for free
    return Source(number, "arrow-dataset", dataset, dataset.schema.names, rows, False, True, identity=identity)


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _arrow_dataset(paths: list[Path], kind: str) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        if kind == "parquet":
            return ds.dataset([str(p) for p in paths], format="parquet")
        delimiter = "\t" if ".tsv" in paths[0].name.lower() else ","
        header = pd.read_csv(paths[0], nrows=0, sep=delimiter).columns
        text = {c: pa.string() for c in header if str(c).strip().lower() in TEXT_COLUMNS}
        import pyarrow.csv as pacsv

        csv_format = ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=text, strings_can_be_null=True),
        )
        return ds.dataset([str(p) for p in paths], format=csv_format)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {paths[0]}: {str(exc).splitlines()[0]}") from None


def _read_csv_with_pandas(path: Path) -> pd.DataFrame:
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        header = pd.read_csv(path, nrows=0, sep=sep).columns
        text = {c: str for c in header if str(c).strip().lower() in TEXT_COLUMNS}
        return pd.read_csv(path, sep=sep, dtype=text, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


# -- reading, per kind ----------------------------------------------------------------------------------------


def _read_pandas(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    frame = source.native
    positions = [frame.columns.get_loc(column) for column in columns]
    for start in range(0, len(frame), size):
        part = frame.iloc[start : start + size, positions]  # views of the user's columns, not copies
        yield part, part.index


def _read_polars(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    frame = nw.from_native(source.native).select(columns)
    for start in range(0, len(frame), size):
        yield _to_pandas(frame[start : start + size].to_arrow()), None


def _read_polars_lazy(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    lazy = nw.from_native(source.native).select(columns).to_native()
    # Polars' streaming engine hands the result over in chunks, so the whole result never sits in memory.
    for batch in lazy.collect_batches(chunk_size=size):
        yield _to_pandas(batch.to_arrow()), None


def _read_arrow(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    table = source.native.select(columns)
    for start in range(0, table.num_rows, size):
        yield _to_pandas(table.slice(start, size)), None


def _read_arrow_reader(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    for batch in source.native:
        yield _to_pandas(batch.select(columns)), None


def _read_arrow_dataset(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    for batch in source.native.to_batches(columns=columns, batch_size=size):
        yield _to_pandas(batch), None


def _read_duckdb(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    relation = nw.from_native(source.native).select(columns).to_native()
    yield from ((_to_pandas(batch), None) for batch in relation.to_arrow_reader(size))


def _read_dask(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    frame = nw.from_native(source.native).select(columns).to_native()
    for number in range(frame.npartitions):
        part = frame.get_partition(number).compute()  # one partition in memory at a time, each computed once
        yield part.reset_index(drop=True), None


def _read_pyspark(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    frame = nw.from_native(source.native).select(columns).to_native()
    names = list(frame.columns)
    rows: list[Any] = []
    # toLocalIterator brings one partition at a time to the driver; collect() or toPandas() would bring all.
    for row in frame.toLocalIterator():
        rows.append(tuple(row))
        if len(rows) == size:
            yield pd.DataFrame.from_records(rows, columns=names), None
            rows = []
    if rows:
        yield pd.DataFrame.from_records(rows, columns=names), None


_READERS = {
    "pandas": _read_pandas,
    "polars": _read_polars,
    "polars-lazy": _read_polars_lazy,
    "arrow": _read_arrow,
    "arrow-reader": _read_arrow_reader,
    "arrow-dataset": _read_arrow_dataset,
    "duckdb": _read_duckdb,
    "dask": _read_dask,
    "pyspark": _read_pyspark,
}


def _to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table or record batch as pandas, with the dtypes the pandas path knows (numpy numbers, text as
    pandas' string dtype, lists and structs as Python objects)."""
    return table.to_pandas()


def _split(frame: pd.DataFrame, labels: Any, size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    """A batch larger than ``size`` (a big Dask partition, a Spark batch) in pieces of ``size`` rows."""
    if len(frame) <= size:
        yield frame, labels
        return
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size], (None if labels is None else labels[start : start + size])


def _narwhals() -> Any:
    try:
        import narwhals.stable.v2 as nw
    except ImportError:  # pragma: no cover - narwhals is a dependency; kept for a broken install
        raise InputError("reading this input needs narwhals: pip install narwhals") from None
    return nw


def row_labels(labels: Any, start: int, count: int) -> Any:
    """The labels of a chunk: its own (pandas) or the row numbers ``start..start+count`` within the segment."""
    if labels is not None:
        return labels
    return np.arange(start, start + count, dtype=np.int64)


def missing_extra(exc: ImportError, source: Source) -> InputError:
    """A one-line error naming the extra that brings the library ``exc`` misses."""
    library = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(library, _EXTRAS.get(source.kind.split("-")[0], "parquet"))
    return InputError(
        f"reading segment {source.number} ({source.kind}) needs {library or 'a library'} which is not installed: "
        f"pip install 'klaviyo-magic[{extra}]'"
    )
