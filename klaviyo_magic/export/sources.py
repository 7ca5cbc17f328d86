"""Segments from any DataFrame library, read in chunks of bounded size as pandas DataFrames of the columns sent.

The engine works on pandas chunks of at most ``CHUNK_ROWS`` rows holding only the columns the export sends, so
its memory does not grow with the segment's size or width. What each input kind costs:

- already in memory (pandas, Polars ``DataFrame``, PyArrow ``Table``): sliced, no copy of the whole;
- lazy or distributed (Polars ``LazyFrame``, DuckDB relations, PyArrow datasets and Parquet/CSV files, Dask and
  PySpark DataFrames): only the sent columns are selected (the backend prunes the rest), then read batch by
  batch: Polars' streaming engine, DuckDB's Arrow record-batch reader, PyArrow's dataset scanner, one Dask
  partition at a time (each computed once), and Spark's ``toLocalIterator`` (one partition on the driver at a
  time, as Arrow batches where Spark's Python workers can make them; never ``collect``/``toPandas``);
- a PyArrow ``RecordBatchReader``: read as it comes, but only once, so a run from it cannot be resumed.

Column names, schemas and selections go through narwhals' stable API, so one code path serves every library;
only the batch reading is per backend, because narwhals (like the libraries) collects a lazy frame whole. Dask
is the exception: narwhals is moving its Dask support into a separate package, and a Dask DataFrame speaks
pandas' column API anyway. Optional libraries are imported only when an input of theirs arrives; a library an
input needs but cannot import (pyarrow, mostly) is a one-line error naming the extra to install, raised when
the input is opened, before any request.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

# TEXT_COLUMNS, file_format and file_paths moved to files.py: still importable from here.
from .files import TEXT_COLUMNS, columns_by_file, file_format, file_paths, open_files  # noqa: F401
from .journal import SPILL_PREFIX  # journal.prune deletes what a killed export left under it

CHUNK_ROWS = 50_000  # rows per chunk: large enough to amortise pandas calls, small enough for memory

# The extra that brings what each kind of input needs: its library and pyarrow (Arrow batches become pandas
# through pyarrow, and a streamed input's report is a Parquet file).
_EXTRAS = {
    "polars": "polars",
    "polars-lazy": "polars",
    "duckdb": "duckdb",
    "dask": "dask",
    "pyspark": "spark",
    "arrow": "arrow",
    "arrow-reader": "arrow",
    "arrow-dataset": "arrow",
}
ACCEPTED = (
    "a pandas or Polars DataFrame, a Polars LazyFrame, a PyArrow Table, RecordBatchReader or dataset, a DuckDB "
    "relation, a Dask or PySpark DataFrame, or the path (or glob) of Parquet or CSV files"
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
    # What the input is: its kind ("file-parquet" says the rest can be read again after a stop, stream.py) and,
    # for files, which ones (path, size, modification time).
    identity: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what reading it showed that the user should know

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

    def columns_by_file(self) -> dict[Any, list[str]]:
        """For a segment of several files (a glob), each file's own columns; else nothing."""
        files = self.identity.get("files") or []
        return columns_by_file([Path(f["path"]) for f in files]) if len(files) > 1 else {}

    def chunks(self, columns: Sequence[Any], size: int | None = None) -> Iterator[tuple[pd.DataFrame, Any]]:
        """``(frame, labels)`` pairs of at most ``size`` rows (default ``CHUNK_ROWS``) holding ``columns``, in
        order."""
        size = size or CHUNK_ROWS
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


def kind_of(value: Any) -> str | None:
    """The kind of input ``value`` is (``pandas``, ``polars-lazy``, ``pyspark``...), without reading any data;
    None when the export does not take it."""
    if not is_segment(value):
        return None
    if isinstance(value, pd.DataFrame):
        return "pandas"
    module, name = type(value).__module__.split(".")[0], type(value).__name__
    if module == "pyarrow":
        return {"Table": "arrow", "RecordBatchReader": "arrow-reader"}.get(name, "arrow-dataset")
    if module == "polars":
        return "polars-lazy" if name == "LazyFrame" else "polars"
    return {"dask_expr": "dask"}.get(module, module)


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
    """One input as a :class:`Source`; an input of an unknown kind, or whose library misses a part it needs,
    is a one-line :class:`InputError`."""
    source = _open(number, segment)
    if source.kind != "pandas":
        _require_pyarrow(source)
    return source


def _open(number: int, segment: Any) -> Source:
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
    if module in ("dask", "dask_expr") and type(segment).__name__ == "DataFrame":
        return Source(number, "dask", segment, list(segment.columns), None, False, True, identity={"kind": "dask"})
    if module in ("polars", "duckdb", "pyspark"):
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
        if segment in _READERS_READ:  # it would give no rows: an export of nothing that says "done"
            raise InputError(
                f"segment {number} is a PyArrow RecordBatchReader that an earlier export already read, and a reader"
                " gives its rows only once: pass a new one (table.to_reader(), dataset.scanner().to_reader())"
            )
        # Not even peeked at here: a batch read now would be lost to the user's reader if the export then stopped
        # on a mistake in its arguments, and the retry would silently miss those rows.
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


def _file_source(number: int, text: str | os.PathLike) -> Source:
    """Parquet or CSV files (a path or a glob), streamed through a PyArrow dataset; see ``files.py``."""
    kind, data, rows, identity = open_files(text)
    in_memory = kind == "pandas"  # CSV read by pandas when pyarrow is missing
    columns = list(data.columns) if in_memory else data.schema.names
    return Source(number, kind, data, columns, rows, in_memory, True, identity=identity)


def _require_pyarrow(source: Source) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise missing_extra(exc, source) from None


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


# The RecordBatchReaders an export has started to read: passed again, they would give no rows.
_READERS_READ: weakref.WeakSet[Any] = weakref.WeakSet()


def _read_arrow_reader(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    _READERS_READ.add(source.native)
    for batch in source.native:
        yield _to_pandas(batch.select(columns)), None


def _read_arrow_dataset(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    for batch in _dataset_batches(source.native, columns, size):
        yield _to_pandas(batch), None


def _dataset_batches(dataset: Any, columns: list[Any], size: int) -> Iterator[Any]:
    """A dataset's batches, file by file: ``Dataset.to_batches`` reads ahead across files, and when the export
    consumes more slowly than Arrow reads (it always does: Klaviyo's rate limits) it ends up holding most of the
    dataset. One fragment at a time, one batch ahead, keeps the memory flat whatever the dataset's size."""
    ahead = {"batch_size": size, "batch_readahead": 1, "fragment_readahead": 1}
    try:
        fragments = iter(dataset.get_fragments())
        first = next(fragments, None)
    except ValueError:  # a filtered dataset (Dataset.filter) is scanned only as a whole
        yield from dataset.to_batches(columns=columns, **ahead)
        return
    for fragment in itertools.chain([first] if first is not None else [], fragments):
        # The dataset's schema: partition columns and files whose columns differ come out alike.
        yield from fragment.to_batches(schema=dataset.schema, columns=columns, **ahead)


def _read_duckdb(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    relation = nw.from_native(source.native).select(columns).to_native()
    # to_arrow_reader is DuckDB 1.5's name; older releases call it fetch_arrow_reader (deprecated in 1.5).
    reader = relation.to_arrow_reader if hasattr(relation, "to_arrow_reader") else relation.fetch_arrow_reader
    yield from ((_to_pandas(batch), None) for batch in reader(size))


def _read_dask(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    frame = source.native[columns]  # Dask prunes the other columns from the reading (Parquet, CSV) it plans
    if _partitions_mix(frame):
        yield from _read_dask_spilled(frame)
        return
    for number in range(frame.npartitions):
        part = frame.get_partition(number).compute()  # one partition in memory at a time, each computed once
        yield part.reset_index(drop=True), None


def _partitions_mix(frame: Any) -> bool:
    """Does one partition of ``frame`` need the inputs of the others (a shuffle, a merge, a sort)? Computed one
    partition at a time, such a frame would run its shared upstream once per partition: n times over."""
    from dask.optimization import cull

    if frame.npartitions < 2 or _distributed():
        return False

    def tasks(part: Any) -> int:  # the tasks computing ``part`` takes (its graph names more)
        return len(cull(dict(part.__dask_graph__()), part.__dask_keys__())[0])

    # Partition by partition, n partitions cost n times the first one's tasks; all at once, the whole graph.
    return tasks(frame.get_partition(0)) * frame.npartitions > 2 * tasks(frame)


def _distributed() -> bool:
    """Is a ``dask.distributed`` client active? Its workers may be other machines, whose files this process could
    not read back: such a frame is computed one partition at a time, as the cluster's memory is not ours."""
    try:
        from distributed import get_client
    except ImportError:
        return False
    try:
        get_client()
    except ValueError:  # no client: Dask's local schedulers
        return False
    return True


def _read_dask_spilled(frame: Any) -> Iterator[tuple[pd.DataFrame, Any]]:
    """Compute the whole frame once, with Dask's own scheduler, each partition written to a file of its own as
    it is done (pickles, under ``$KLAVIYO_MAGIC_HOME``, mode 0700, deleted after: any cell value and dtype comes
    back as computed); then read the partitions in order, one at a time."""
    from .. import home

    parent = home.directory()
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=SPILL_PREFIX, dir=parent) as directory:
        frame.map_partitions(_spill_partition, directory, meta={"rows": "int64"}).compute()
        for number in range(frame.npartitions):
            path = os.path.join(directory, f"{number:08d}.pkl")
            part = pd.read_pickle(path)  # noqa: S301 - our own file, written a moment ago in a 0700 directory
            os.remove(path)
            yield part.reset_index(drop=True), None


def _spill_partition(part: pd.DataFrame, directory: str, partition_info: dict[str, Any] | None = None) -> Any:
    assert partition_info is not None  # Dask passes it to a function that takes it
    part.to_pickle(os.path.join(directory, f"{partition_info['number']:08d}.pkl"))
    return pd.DataFrame({"rows": [len(part)]})


def _read_pyspark(source: Source, columns: list[Any], size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    nw = _narwhals()
    frame = nw.from_native(source.native).select(columns).to_native()
    plain = all(_plain_spark_type(field.dataType.simpleString()) for field in frame.schema.fields)
    if plain:
        if _spark_workers_may_run_arrow(frame):
            tables = _spark_arrow_tables(frame, size)
            try:
                first = next(tables, None)
            except Exception:  # noqa: BLE001 - Spark's Python workers cannot run pyarrow (below): read Rows instead
                pass
            else:
                if first is not None:
                    yield from _split(_to_pandas(first), None, size)
                    for table in tables:
                        yield from _split(_to_pandas(table), None, size)
                return
        _note(source, SLOW_SPARK.format(python=sys.executable))
    yield from _spark_rows(frame, size)


# The note a result carries when Spark's rows had to come one by one for want of pyarrow in Spark's workers.
SLOW_SPARK = (
    "Spark's Python workers could not hand over Arrow batches (they need pyarrow), so Spark's rows came one by one,"
    " which is slower: set PYSPARK_PYTHON={python} (a Python with pyarrow) before Spark starts"
)


def _note(source: Source, note: str) -> None:
    if note not in source.notes:
        source.notes.append(note)


# Spark column types whose values come out of Arrow as the export sends them out of a Row (also as arrays of
# them); others (dates, timestamps, decimals, maps, structs) take the Row path, where Spark makes Python values.
_SPARK_ARROW_TYPES = frozenset({"string", "boolean", "tinyint", "smallint", "int", "bigint", "float", "double"})


def _plain_spark_type(kind: str) -> bool:
    element = kind[len("array<") : -1] if kind.startswith("array<") else kind
    return element in _SPARK_ARROW_TYPES


def _spark_workers_may_run_arrow(frame: Any) -> bool:
    """False when Spark runs locally and its Python workers' Python cannot import pyarrow or is another
    version (a kernel whose ``python3`` on the PATH is not its own): trying would only log a worker's traceback
    into the notebook before falling back. A cluster's workers cannot be asked from here; they are tried."""
    try:
        context = frame.sparkSession.sparkContext
        local, executable = context.master.startswith("local"), context.pythonExec
    except Exception:  # noqa: BLE001 - Spark Connect has no context here: its server's workers are tried
        return True
    return not local or _python_runs_arrow(executable)


@functools.lru_cache(maxsize=8)
def _python_runs_arrow(executable: str) -> bool:
    found = shutil.which(executable) or executable
    if os.path.realpath(found) == os.path.realpath(sys.executable):
        return True
    mine = "{}.{}".format(*sys.version_info[:2])
    check = "import sys, pyarrow; print('{}.{}'.format(*sys.version_info[:2]))"
    try:
        done = subprocess.run([found, "-c", check], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == mine


def _spark_arrow_tables(frame: Any, size: int) -> Iterator[Any]:
    """The rows as Arrow tables of about ``size`` rows, still one partition at a time on the driver.

    Spark's Python workers pack each Arrow batch of the partition (``mapInArrow``) as one Arrow IPC message, so
    ``toLocalIterator`` carries a few large byte strings instead of a Python ``Row`` per row: the driver spends
    a twentieth of the CPU and Spark half the time. This needs pyarrow in the Python that runs Spark's Python
    workers (``PYSPARK_PYTHON``, else ``python3`` on the PATH: ``SparkContext.pythonExec``); where it is missing
    :func:`_read_pyspark` reads Rows instead.
    """
    import pyarrow as pa
    from pyspark.sql.types import BinaryType, StructField, StructType

    def packed(batches):  # runs in Spark's Python workers: nested, so that it is pickled by value, not by name
        import pyarrow as pa

        for batch in batches:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            yield pa.record_batch([pa.array([sink.getvalue().to_pybytes()], pa.binary())], names=["ipc"])

    messages = frame.mapInArrow(packed, StructType([StructField("ipc", BinaryType())]))
    gathered: list[Any] = []
    rows = 0
    for row in messages.toLocalIterator():
        table = pa.ipc.open_stream(row[0]).read_all()
        gathered.append(table)
        rows += table.num_rows
        if rows >= size:
            yield pa.concat_tables(gathered)
            gathered, rows = [], 0
    if gathered:
        yield pa.concat_tables(gathered)


def _spark_rows(frame: Any, size: int) -> Iterator[tuple[pd.DataFrame, Any]]:
    names = list(frame.columns)
    # Spark gives a struct as a Row, a tuple that would be sent as a JSON array: make those dicts.
    nested = [i for i, f in enumerate(frame.schema.fields) if "struct<" in f.dataType.simpleString()]
    rows: list[Any] = []
    # toLocalIterator brings one partition at a time to the driver; collect() or toPandas() would bring all.
    for row in frame.toLocalIterator():
        values = tuple(row)
        if nested:
            values = tuple(_plain(v) if i in nested else v for i, v in enumerate(values))
        rows.append(values)
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


def _plain(value: Any) -> Any:
    """A Spark value with its Rows (structs) as dicts, at any depth."""
    if hasattr(value, "asDict"):
        return value.asDict(recursive=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table or record batch as pandas, with the dtypes the pandas path knows (numpy numbers, text as
    pandas' string dtype, lists and structs as Python objects).

    Integers stay integers where some are missing: numpy has no missing integer, so Arrow would make the column
    float64 (9007199254740993 arrives as 9007199254740992.0, 1 as 1.0). One such column makes every integer column
    of the chunk pandas' nullable integers (so a column's dtype may differ from chunk to chunk; the values sent and
    their hashes do not), and a list column with a missing element inside becomes Python lists (of ints and None).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    nullable = False
    lists: list[int] = []
    for number, field_ in enumerate(table.schema):
        column, kind = table.column(number), field_.type
        if pa.types.is_integer(kind):
            nullable = nullable or column.null_count > 0
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_integer(kind.value_type):
            if pc.list_flatten(column).null_count:
                lists.append(number)
    frame = table.to_pandas(types_mapper=_nullable_integers().get if nullable else None)
    for number in lists:
        frame.isetitem(number, pd.Series(table.column(number).to_pylist(), index=frame.index, dtype=object))
    return frame


@functools.cache
def _nullable_integers() -> dict[Any, Any]:
    """Arrow's integer types -> pandas' nullable ones (Int8 ... UInt64)."""
    import pyarrow as pa

    kinds = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    return {getattr(pa, kind)(): pd.api.types.pandas_dtype(kind.capitalize().replace("Ui", "UI")) for kind in kinds}


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
    """A one-line error naming the extra that brings what reading ``source`` needs and ``exc`` misses."""
    library = (exc.name or "").split(".")[0] or "a library"
    extra = _EXTRAS.get(source.kind, "parquet")
    return InputError(
        f"reading segment {source.number} ({source.kind}) needs {library}, which is not installed: "
        f"pip install 'klaviyo-magic[{extra}]'"
    )
