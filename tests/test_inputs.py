"""Every input kind, end to end over real HTTP against the sandbox: pandas, Polars (eager and lazy), PyArrow (Table,
RecordBatchReader, dataset), DuckDB, Dask (several partitions), Spark (a local session) and Parquet/CSV paths and
globs, through Python and the CLI. Each export ends with the list holding exactly the segment's valid, distinct
emails and a report with every input row once. Then: dry runs, properties (a list column arrives as a JSON array),
incremental and mirror runs, the readers' bounded chunks (no lazy input is collected whole), what a missing
optional library says, and the names the magic and the form find.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from klaviyo_magic import ExportInterrupted, export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.errors import InputError
from klaviyo_magic.export import sources
from klaviyo_magic.export.namespace import dataframes, describe, lookup
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_input_tests_0123456789abcdef"
CLI = str(Path(sys.executable).with_name("klaviyo-magic"))

# The customers: every tenth one has a negative ltv and is outside the segment (ltv >= 0). In the segment, row 3
# has a malformed email, row 5 none, and row 8 repeats row 1's email in other case: skipped, skipped, duplicate.
CUSTOMERS = 300
IN_SEGMENT = [i for i in range(CUSTOMERS) if i % 10 != 9]
EXPECTED = {f"p{i}@example.com" for i in IN_SEGMENT if i not in (3, 5, 8)}
PROPERTIES = {"first_name": "first_name", "ltv": "lifetime_value", "tags": "tags"}  # column -> Klaviyo field

# How each kind builds the segment, the way its users write it. Kinds read in chunks keep their report in a
# Parquet file (result.report_path); the others in memory.
KINDS = [
    "pandas",
    "polars",
    "polars-lazy",
    "arrow-table",
    "arrow-reader",
    "arrow-dataset",
    "duckdb",
    "dask",
    "spark",
    "parquet-glob",
]
IN_MEMORY = {"pandas", "polars", "arrow-table"}


def customers() -> pd.DataFrame:
    ids = np.arange(CUSTOMERS)
    emails: list[str | None] = [f"p{i}@example.com" for i in ids]
    emails[3], emails[5], emails[8] = "not-an-email", None, "P1@Example.com"
    return pd.DataFrame(
        {
            "email": emails,
            "first_name": [f"First{i}" for i in ids],
            "ltv": np.where(ids % 10 == 9, -1.0, ids * 2.0),
            "tags": [["vip", f"t{i % 3}"] for i in ids],
        },
        index=[f"c{i}" for i in ids],
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """customers/part-{0,1,2}.parquet (100 customers each), segment/part-{0,1,2}.parquet (the segment only) and
    segment.csv (the segment without its list column)."""
    root = tmp_path_factory.mktemp("inputs")
    table = customers()
    segment = table[table.ltv >= 0]
    for name, frame in (("customers", table), ("segment", segment)):
        (root / name).mkdir()
        size = -(-len(frame) // 3)  # rows per file, rounded up
        for part in range(3):
            frame.iloc[part * size : (part + 1) * size].to_parquet(root / name / f"part-{part}.parquet", index=False)
    segment.drop(columns="tags").to_csv(root / "segment.csv", index=False)
    return root


def make_segment(kind: str, files: Path, request: pytest.FixtureRequest) -> object:
    """The segment (customers with ltv >= 0) as an input of ``kind``."""
    parquet = str(files / "customers" / "*.parquet")
    frame = customers()
    if kind == "pandas":
        return frame[frame.ltv >= 0]
    if kind == "polars":
        return pl.read_parquet(parquet).filter(pl.col("ltv") >= 0)
    if kind == "polars-lazy":
        return pl.scan_parquet(parquet).filter(pl.col("ltv") >= 0)
    if kind in ("arrow-table", "arrow-reader"):
        table = pa.Table.from_pandas(frame[frame.ltv >= 0], preserve_index=False)
        return table if kind == "arrow-table" else table.to_reader(max_chunksize=64)
    if kind == "arrow-dataset":
        return ds.dataset(str(files / "customers"), format="parquet").filter(ds.field("ltv") >= 0)
    if kind == "duckdb":
        return duckdb.sql(f"select * from read_parquet('{parquet}') where ltv >= 0")
    if kind == "dask":
        import dask.dataframe as dd

        customers_dd = dd.read_parquet(str(files / "customers"))
        assert customers_dd.npartitions == 3  # one per file: the export reads them one at a time
        return customers_dd[customers_dd.ltv >= 0]
    if kind == "spark":
        spark = request.getfixturevalue("spark")
        return spark.read.parquet(str(files / "customers")).where("ltv >= 0")
    if kind == "parquet-glob":
        return str(files / "segment" / "*.parquet")
    raise AssertionError(kind)


@pytest.fixture
def sb(klaviyo_home):
    with Sandbox(rate_limits=False) as sandbox:
        yield sandbox


@pytest.fixture
def conn(sb):
    return Connection.from_key(KEY, base_url=sb.url, name="sandbox")


def assert_exported(sb: Sandbox, list_id: str, result, *, streamed: bool, labels: object = None) -> None:
    """The list holds the valid distinct emails; the report has every input row once, each valid email sent once."""
    sb.wait_for_jobs(timeout=60)
    assert sb.member_emails(list_id) == EXPECTED
    assert (result.report_path is not None) == streamed
    report = result.report
    assert len(report) == len(IN_SEGMENT) == result.total_rows
    expected_labels = list(range(len(IN_SEGMENT))) if labels is None else list(labels)
    assert sorted(report["index"]) == sorted(expected_labels) and set(report["segment"]) == {0}
    assert sorted(report.loc[report["status"] == "sent", "email"]) == sorted(EXPECTED)
    assert (result.sent, result.skipped, result.duplicates, result.failed) == (len(EXPECTED), 2, 1, 0)


def assert_properties_arrived(sb: Sandbox) -> None:
    profile = sb.find_profile("p7@example.com")
    assert profile["first_name"] == "First7"
    assert profile["properties"] == {"lifetime_value": 14.0, "tags": ["vip", "t1"]}  # the list as a JSON array


@pytest.mark.parametrize("kind", KINDS)
def test_every_input_kind_exports_its_valid_distinct_emails(kind, files, sb, conn, request):
    segment = make_segment(kind, files, request)
    list_id = sb.create_list(kind)
    result = export_segment(segment, email="email", list_id=list_id, connection=conn, properties=PROPERTIES)
    labels = segment.index if kind == "pandas" else None  # pandas keeps its labels; others count rows
    assert_exported(sb, list_id, result, streamed=kind not in IN_MEMORY, labels=labels)
    assert_properties_arrived(sb)


@pytest.mark.parametrize("kind", KINDS)
def test_a_dry_run_reads_every_kind_and_sends_nothing(kind, files, sb, conn, request):
    list_id = sb.create_list("Dry")
    result = export_segment(
        make_segment(kind, files, request), email="email", list_id=list_id, connection=conn, properties=PROPERTIES,
        dry_run=True,
    )  # fmt: skip
    assert result.dry_run and result.would_send == len(EXPECTED) and result.skipped == 2
    assert len(result.report) == len(IN_SEGMENT)
    assert "list 'Dry'" in result.checked
    for email, tags in zip(result.sample["email"], result.sample["properties.tags"], strict=True):
        number = int(email[1:].split("@")[0])  # Spark may read the files in any order
        assert list(tags) == ["vip", f"t{number % 3}"]
    assert not sb.jobs() and sb.member_emails(list_id) == set()


def test_the_cli_streams_a_parquet_glob_and_a_csv_file(files, sb, klaviyo_home, tmp_path):
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY, "KLAVIYO_BASE_URL": sb.url}
    for name, path in (("glob", files / "segment" / "*.parquet"), ("csv", files / "segment.csv")):
        list_id = sb.create_list(name)
        report = tmp_path / f"{name}.csv"
        done = subprocess.run(
            [CLI, "export", "--input", str(path), "--email", "email", "--list", list_id,
             "-p", "first_name,ltv=lifetime_value", "--report", str(report), "--json"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr  # 1: some rows were skipped
        outcome = json.loads(done.stdout)
        assert outcome["sent"] == len(EXPECTED) and Path(outcome["report_path"]).is_file()  # streamed: a file
        sb.wait_for_jobs()
        assert sb.member_emails(list_id) == EXPECTED
        assert sorted(pd.read_csv(report)["index"]) == list(range(len(IN_SEGMENT)))
    assert sb.find_profile("p7@example.com")["properties"] == {"lifetime_value": 14.0}
    # A dry run's report goes with its result, so with the process: no path to a file that is gone by now.
    done = subprocess.run([CLI, "export", "-i", str(files / "segment" / "*.parquet"), "-e", "email", "-l", list_id,
                           "--dry-run", "--json"], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and json.loads(done.stdout)["report_path"] is None, done.stderr


def test_a_one_shot_reader_refuses_resume_and_stays_unread(files, sb, conn, request):
    reader = make_segment("arrow-reader", files, request)
    list_id = sb.create_list("Once")
    with pytest.raises(InputError, match=r"cannot resume: segment 0 \(arrow-reader.*read only once") as caught:
        export_segment(reader, email="email", list_id=list_id, connection=conn, resume=True)
    assert "\n" not in str(caught.value)
    assert not sb.requests  # refused before any request
    result = export_segment(reader, email="email", list_id=list_id, connection=conn)  # nothing was read from it
    assert_exported(sb, list_id, result, streamed=True)


def test_a_reader_read_by_an_earlier_export_is_refused_not_exported_as_nothing():
    reader = pa.table({"email": ["a@example.com", "b@example.com"]}).to_reader()
    options = {"email": "email", "list_id": "Abc123", "dry_run": True, "offline": True}
    assert export_segment(reader, **options).would_send == 2  # the preview reads it to its end
    with pytest.raises(InputError, match=r"^segment 0 is a PyArrow RecordBatchReader that an earlier export") as caught:
        export_segment(reader, **options)
    assert "\n" not in str(caught.value) and "pass a new one" in str(caught.value)


def test_a_streamed_report_is_written_as_csv_a_slice_at_a_time_as_the_whole_would_be(files, tmp_path, monkeypatch):
    from klaviyo_magic import result as results

    monkeypatch.setattr(results, "CSV_SLICE_ROWS", 50)  # several slices, one header
    options = {"email": "email", "list_id": "Abc123", "properties": PROPERTIES, "dry_run": True, "offline": True}
    result = export_segment(str(files / "segment" / "*.parquet"), **options)
    assert result.report_path is not None and len(result.problems) > 0  # streamed, with reasons to write
    result.write_report_csv(tmp_path / "sliced.csv")
    result.report.to_csv(tmp_path / "whole.csv", index=False)
    sliced = (tmp_path / "sliced.csv").read_text()
    assert sliced == (tmp_path / "whole.csv").read_text()
    assert sliced.count("segment,index,email") == 1 and len(sliced.splitlines()) == len(IN_SEGMENT) + 1


# -- list sync: incremental runs and mirror mode ------------------------------------------------------------------


def narrowed(kind: str, files: Path, request: pytest.FixtureRequest) -> object:
    """The segment ltv >= 100, with p101's first name changed."""
    if kind == "polars-lazy":
        renamed = pl.when(pl.col("email") == "p101@example.com").then(pl.lit("Renamed")).otherwise("first_name")
        lazy = pl.scan_parquet(str(files / "customers" / "*.parquet")).filter(pl.col("ltv") >= 100)
        return lazy.with_columns(renamed.alias("first_name"))
    from pyspark.sql import functions as F

    spark = request.getfixturevalue("spark")
    renamed = F.when(F.col("email") == "p101@example.com", "Renamed").otherwise(F.col("first_name"))
    return spark.read.parquet(str(files / "customers")).where("ltv >= 100").withColumn("first_name", renamed)


@pytest.mark.parametrize("kind", ["polars-lazy", "spark"])
def test_incremental_runs_then_mirror_keep_the_list_in_step(kind, files, sb, conn, request):
    list_id = sb.create_list("Sync")
    options = {"email": "email", "list_id": list_id, "connection": conn, "properties": PROPERTIES}
    first = export_segment(make_segment(kind, files, request), **options)
    assert first.added == len(EXPECTED) and first.updated == 0
    jobs = len(sb.jobs())

    again = export_segment(make_segment(kind, files, request), **options)
    assert again.sent == 0 and again.unchanged == len(EXPECTED) and len(sb.jobs()) == jobs  # nothing re-sent
    assert len(again.report) == len(IN_SEGMENT)

    remaining = {f"p{i}@example.com" for i in IN_SEGMENT if i * 2 >= 100}
    mirrored = export_segment(narrowed(kind, files, request), mode="mirror", **options)
    assert (mirrored.sent, mirrored.updated, mirrored.unchanged) == (1, 1, len(remaining) - 1)
    assert mirrored.removed == len(EXPECTED - remaining) == 42
    assert set(mirrored.removals["email"]) == EXPECTED - remaining
    sb.wait_for_jobs()
    assert sb.member_emails(list_id) == remaining
    assert sb.find_profile("p101@example.com")["first_name"] == "Renamed"


# -- memory: lazy and distributed inputs are read in bounded chunks, never collected whole -------------------------


class Produced:
    """Counts the rows a source has produced, from inside the source's library."""

    def __init__(self) -> None:
        self.rows = 0

    def batches(self, total: int, size: int):
        for start in range(0, total, size):
            self.rows += size
            yield pa.record_batch({"email": [f"p{i}@example.com" for i in range(start, start + size)]})


def chunk_log(segment: object, produced) -> list[tuple[int, int]]:
    """(rows, rows the source had produced) for each chunk the engine receives from ``segment``."""
    source = sources.open_source(0, segment)
    return [(len(frame), produced()) for frame, _ in source.chunks(["email"])]


def assert_streamed(log: list[tuple[int, int]], total: int) -> None:
    assert sum(rows for rows, _ in log) == total
    assert max(rows for rows, _ in log) <= 1_000  # chunks are bounded
    assert log[0][1] < total / 2  # the first chunk came long before the source was read through


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_ROWS", 1_000)


def test_a_polars_lazy_frame_is_read_in_streaming_batches(small_chunks):
    from polars.io.plugins import register_io_source

    produced = Produced()

    def scan(with_columns, predicate, n_rows, batch_size):  # a LazyFrame source that counts what it gives
        for batch in produced.batches(20_000, 500):
            yield pl.from_arrow(batch)

    lazy = register_io_source(io_source=scan, schema=pl.Schema({"email": pl.String}))
    assert_streamed(chunk_log(lazy.filter(pl.col("email").is_not_null()), lambda: produced.rows), 20_000)


def test_an_arrow_reader_and_duckdb_are_read_batch_by_batch(small_chunks):
    produced = Produced()
    schema = pa.schema({"email": pa.string()})
    reader = pa.RecordBatchReader.from_batches(schema, produced.batches(20_000, 500))
    assert_streamed(chunk_log(reader, lambda: produced.rows), 20_000)

    # DuckDB buffers a streamed result up to streaming_buffer_size (10 MB by default), then waits for the reader.
    produced = Produced()
    con = duckdb.connect()
    con.execute("SET streaming_buffer_size = '100KB'")  # a session setting
    relation = con.from_arrow(pa.RecordBatchReader.from_batches(schema, produced.batches(200_000, 2_048)))
    assert_streamed(chunk_log(relation, lambda: produced.rows), 200_704)


def test_in_memory_and_dataset_inputs_come_in_bounded_chunks(small_chunks, files):
    table = pa.table({"email": [f"p{i}@example.com" for i in range(5_500)]})
    for segment in (table, pl.from_arrow(table), table.to_pandas(), ds.dataset(str(files / "customers"))):
        rows = [rows for rows, _ in chunk_log(segment, lambda: 0)]
        assert max(rows) <= 1_000 and sum(rows) == sources.open_source(0, segment).count()


def test_a_dataset_of_many_files_is_read_file_by_file_without_reading_ahead(tmp_path, monkeypatch):
    """An export consumes more slowly than Arrow reads (Klaviyo's rate limits), and a dataset scanned as a whole
    reads ahead across its files until it holds most of them: the CLI's `--input 'data/*.parquet'` would grow with
    the data. Read file by file, Arrow holds about one file's worth at any time."""
    import pyarrow.parquet as pq

    for part in range(12):
        ids = range(part * 20_000, (part + 1) * 20_000)
        pq.write_table(pa.table({"email": [f"p{i}@example.com" for i in ids], "notes": [f"{i:090d}" for i in ids]}),
                       tmp_path / f"part-{part}.parquet")  # fmt: skip
    one_file = pq.read_table(tmp_path / "part-0.parquet").nbytes
    monkeypatch.setattr(sources, "CHUNK_ROWS", 5_000)
    for segment in (ds.dataset(str(tmp_path)), str(tmp_path / "*.parquet")):
        before = pa.total_allocated_bytes()  # what earlier tests left in Arrow's pool
        peak = rows = 0
        for frame, _ in sources.open_source(0, segment).chunks(["email", "notes"]):
            time.sleep(0.002)  # a consumer slower than the reader, as an export is
            rows += len(frame)
            peak = max(peak, pa.total_allocated_bytes() - before)
        assert rows == 240_000
        assert peak < 2 * one_file, f"Arrow held {peak / one_file:.1f} files' worth at once"


def test_each_dask_partition_is_computed_once_one_at_a_time(small_chunks, sb, conn):
    import dask.dataframe as dd

    computed: list[int] = []

    def record(part: pd.DataFrame) -> pd.DataFrame:
        computed.append(int(part.index[0]) // 1_000)  # which partition: its first row's label tells
        return part

    frame = pd.DataFrame({"email": [f"p{i}@example.com" for i in range(4_000)]})
    segment = dd.from_pandas(frame, npartitions=4).map_partitions(record, meta=frame.iloc[:0])
    log = chunk_log(segment, lambda: len(computed))
    assert log[0][1] == 1 and sorted(computed) == [0, 1, 2, 3]  # one partition at a time, each once

    computed.clear()
    list_id = sb.create_list("Dask")
    result = export_segment(segment, email="email", list_id=list_id, connection=conn)
    assert sorted(computed) == [0, 1, 2, 3]  # a whole export, counting and reporting included, computes each once
    assert result.sent == 4_000 and len(result.report) == 4_000


def test_a_dask_frame_that_mixes_partitions_is_still_computed_once(small_chunks, sb, conn):
    """After a shuffle or a merge, each partition needs every input partition: computed one partition at a time,
    the inputs would be computed once per partition (16 times for 4). Dask computes such a frame once, into
    temporary files that are read one at a time and then deleted."""
    import dask.dataframe as dd

    from klaviyo_magic import home

    computed: list[int] = []

    def record(part: pd.DataFrame) -> pd.DataFrame:
        computed.append(int(part.index[0]) // 1_000)
        return part

    frame = pd.DataFrame({"email": [f"p{i}@example.com" for i in range(4_000)], "k": range(4_000)})
    base = dd.from_pandas(frame, npartitions=4).map_partitions(record, meta=frame.iloc[:0])
    orders = dd.from_pandas(pd.DataFrame({"k": range(0, 4_000, 2), "orders": 1}), npartitions=2)
    segment = base.shuffle("k", npartitions=4).merge(orders, on="k")  # the customers with an order
    list_id = sb.create_list("Dask merge")
    result = export_segment(segment, email="email", list_id=list_id, connection=conn)
    assert sorted(computed) == [0, 1, 2, 3]  # each input partition once, for the whole export
    expected = {f"p{i}@example.com" for i in range(0, 4_000, 2)}
    assert result.sent == 2_000 and len(result.report) == 2_000 and set(result.report["email"]) == expected
    sb.wait_for_jobs()
    assert sb.member_emails(list_id) == expected
    assert not list(home.directory().glob("dask-segment-*"))  # the temporary files are gone


def test_spark_rows_come_through_to_local_iterator_one_partition_at_a_time(small_chunks, spark):
    from pyspark.sql import functions as F

    produced = spark.sparkContext.accumulator(0)

    def count(n):  # runs in Spark's Python workers; the driver sees the sum as each task ends
        produced.add(1)
        return n

    counted = F.udf(count, "long")
    segment = spark.range(0, 8_000, numPartitions=4).select(
        F.concat(F.lit("p"), counted("id").cast("string"), F.lit("@example.com")).alias("email")
    )
    assert_streamed(chunk_log(segment, lambda: produced.value), 8_000)


def spark_chunks(segment: object) -> pd.DataFrame:
    return pd.concat([frame for frame, _ in sources.open_source(0, segment).chunks(["email", *PROPERTIES])])


def test_spark_rows_come_as_arrow_batches_with_the_values_rows_have(small_chunks, spark, files):
    segment = spark.read.parquet(str(files / "customers")).where("ltv >= 0")
    arrow = spark_chunks(segment)
    assert isinstance(arrow["tags"].iloc[0], np.ndarray)  # Arrow batches, packed by Spark's Python workers
    frame = segment.select("email", *PROPERTIES)
    rows = pd.concat([part for part, _ in sources._spark_rows(frame, 1_000)])
    assert isinstance(rows["tags"].iloc[0], list)  # a Python Row per row
    assert len(arrow) == len(rows) == len(IN_SEGMENT)

    def values(chunks: pd.DataFrame) -> list[tuple]:
        def plain(value):
            if isinstance(value, (list, np.ndarray)):  # tags: a list from a Row, an array from Arrow
                return tuple(value)
            return None if pd.isna(value) else value

        return sorted((tuple(plain(v) for v in row) for row in chunks.astype(object).itertuples(False)), key=repr)

    assert values(arrow) == values(rows)


def test_spark_rows_come_as_rows_when_its_python_workers_cannot_run_arrow(small_chunks, spark, files, monkeypatch):
    segment = spark.read.parquet(str(files / "customers")).where("ltv >= 0")
    # Spark's workers run another Python than this one, which cannot be started: told beforehand, locally...
    monkeypatch.setattr(spark.sparkContext, "pythonExec", str(files / "no-such-python"))
    assert not sources._spark_workers_may_run_arrow(segment)
    local = spark_chunks(segment)
    assert isinstance(local["tags"].iloc[0], list) and len(local) == len(IN_SEGMENT)
    # The result says why the export was slow, and the setting that makes it fast, in the summary users read
    options = {"email": "email", "list_id": "Abc123", "properties": PROPERTIES, "dry_run": True, "offline": True}
    preview = export_segment(segment, **options)
    assert f"set PYSPARK_PYTHON={sys.executable} (a Python with pyarrow)" in preview.summary()
    assert preview.would_send == len(EXPECTED)
    # ...or, as on a cluster, found out when the first partition fails: nothing is lost, Rows are read instead
    monkeypatch.setattr(sources, "_spark_workers_may_run_arrow", lambda frame: True)
    cluster = spark_chunks(segment)
    assert isinstance(cluster["tags"].iloc[0], list)
    assert sorted(cluster["email"], key=str) == sorted(local["email"], key=str)


# -- optional libraries --------------------------------------------------------------------------------------------


def test_a_missing_library_is_one_line_naming_the_extra(files):
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pyarrow"] = None  # as if pyarrow were not installed
        import duckdb, polars as pl
        from klaviyo_magic import InputError, export_segment

        def outcome(segment):
            try:
                result = export_segment(segment, email="email", list_id="Abc123", dry_run=True, offline=True)
            except InputError as exc:
                return str(exc)
            return f"exported {result.would_send}"

        for kind, segment in [
            ("polars", pl.DataFrame({"email": ["a@example.com"]})),
            ("polars-lazy", pl.LazyFrame({"email": ["a@example.com"]})),
            ("duckdb", duckdb.sql("select 'a@example.com' as email")),
            ("parquet", sys.argv[1]),
            ("csv", sys.argv[2]),  # pandas reads CSV without pyarrow
        ]:
            print(kind, "|", outcome(segment))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(files / "segment" / "*.parquet"), str(files / "segment.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = dict(line.split(" | ", 1) for line in done.stdout.splitlines())
    assert set(lines) == {"polars", "polars-lazy", "duckdb", "parquet", "csv"}, done.stderr
    for kind, extra in (("polars", "polars"), ("polars-lazy", "polars"), ("duckdb", "duckdb"), ("parquet", "parquet")):
        assert "needs pyarrow, which is not installed" in lines[kind]
        assert lines[kind].endswith(f"pip install 'klaviyo-magic[{extra}]'")
    assert lines["csv"] == f"exported {len(EXPECTED)}"


def test_a_spark_frame_without_pyarrow_names_the_spark_extra(spark, monkeypatch):
    """PySpark installs without pyarrow; its users are told the extra that brings both."""
    frame = spark.createDataFrame([("a@example.com",)], ["email"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(InputError) as caught:
        export_segment(frame, email="email", list_id="Abc123", dry_run=True, offline=True)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "needs pyarrow, which is not installed" in message
    assert message.endswith("pip install 'klaviyo-magic[spark]'")


# -- the names the magic and the form find ------------------------------------------------------------------------


def test_every_kind_is_found_by_name(files, request):
    namespace = {kind.replace("-", "_"): make_segment(kind, files, request) for kind in KINDS if kind != "parquet-glob"}
    others = {"n": 3, "text": "email", "series": customers()["email"], "path": files / "segment.csv", "_": customers()}
    found = dataframes({**namespace, **others})
    assert list(found) == sorted(namespace)  # every kind, nothing else, IPython's _ left out
    assert lookup(["spark", "polars_lazy", "path"], {**namespace, **others}) == [
        namespace["spark"],
        namespace["polars_lazy"],
        others["path"],  # a path is an input too (saved exports re-read their files)
    ]
    with pytest.raises(InputError, match="'series' is a Series, not a DataFrame"):
        lookup(["series"], others)
    assert all(sources.is_segment(value) for value in namespace.values())
    # What a picker shows: rows where they are known without reading, else the kind (Dask's len() would compute).
    assert {name: describe(value) for name, value in namespace.items()} == {
        "pandas": "270 rows",
        "polars": "270 rows",
        "arrow_table": "270 rows",
        "polars_lazy": "Polars LazyFrame",
        "arrow_reader": "PyArrow RecordBatchReader",
        "arrow_dataset": "PyArrow dataset",
        "duckdb": "DuckDB relation",
        "dask": "Dask DataFrame",
        "spark": "Spark DataFrame",
    }


def test_the_magic_exports_lazy_and_distributed_frames_by_name(ipython_shell, files, sb, monkeypatch, request):
    monkeypatch.setenv("SB_KEY", KEY)
    ipython_shell.run_cell(
        f"%klaviyo_connection add sb --api-key-env SB_KEY --base-url {sb.url} --accept-privacy-terms"
    )
    namespace = ipython_shell.user_ns
    namespace["lazy"] = make_segment("polars-lazy", files, request)
    namespace["spark_vip"] = make_segment("spark", files, request)
    list_id = sb.create_list("Magic")
    try:
        ipython_shell.run_cell(f"%klaviyo_export lazy spark_vip --email email --list {list_id} --connection sb")
        result = namespace["_"]
    finally:
        for name in ("lazy", "spark_vip"):
            namespace.pop(name)
    sb.wait_for_jobs()
    assert sb.member_emails(list_id) == EXPECTED
    # The second segment repeats the first: its valid rows are duplicates, and both are in the report in full.
    assert (result.sent, result.skipped, result.duplicates) == (len(EXPECTED), 2 + 2, 1 + len(IN_SEGMENT) - 2)
    assert result.report.groupby("segment")["index"].nunique().tolist() == [len(IN_SEGMENT)] * 2


# An integer column with a missing value, and an integer list with a missing element: numpy has no missing integer,
# so Arrow-backed inputs would come out as floats (9007199254740993 as 9007199254740992.0, 7 as 7.0).
BIG = 9007199254740993  # 2**53 + 1: a float cannot hold it


def integers_with_gaps(kind: str, request: pytest.FixtureRequest) -> object:
    frame = pd.DataFrame({"email": ["a@example.com", "b@example.com", "c@example.com"],
                          "customer_id": pd.array([BIG, None, 7], dtype="Int64"),
                          "scores": [[1, 2], [3, None], None]})  # fmt: skip
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if kind == "pandas":
        return frame
    if kind == "polars":
        return pl.from_arrow(table)
    if kind == "polars-lazy":
        return pl.from_arrow(table).lazy()
    if kind == "arrow-table":
        return table
    if kind == "duckdb":
        return duckdb.from_arrow(table)
    if kind == "dask":
        import dask.dataframe as dd

        return dd.from_pandas(frame, npartitions=2)
    spark = request.getfixturevalue("spark")
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None))


@pytest.mark.parametrize("kind", ["pandas", "polars", "polars-lazy", "arrow-table", "duckdb", "dask", "spark"])
def test_integers_with_missing_values_arrive_as_integers(kind, sb, conn, request):
    segment = integers_with_gaps(kind, request)
    list_id = sb.create_list(kind)
    result = export_segment(segment, email="email", list_id=list_id, connection=conn,
                            properties=["customer_id", "scores"])  # fmt: skip
    sb.wait_for_jobs(timeout=60)
    assert result.sent == 3
    a, b, c = (sb.find_profile(f"{name}@example.com").get("properties") or {} for name in "abc")
    assert a["customer_id"] == BIG and type(a["customer_id"]) is int
    assert "customer_id" not in b
    assert c["customer_id"] == 7 and type(c["customer_id"]) is int
    if kind != "dask":  # Dask itself makes a column of Python objects text (its dataframe.convert-string setting)
        assert a["scores"] == [1, 2] and all(type(n) is int for n in a["scores"])
        assert b["scores"] == [3, None] and "scores" not in c


def test_a_file_of_a_glob_without_the_email_column_is_one_line_before_any_request(tmp_path, sb, conn):
    """A dataset reads every file with its first file's columns: a later file without the email column would read
    as rows without an email, and a mirror run would then remove their members."""
    frame = customers().drop(columns="tags")
    frame.iloc[:100].to_parquet(tmp_path / "p0.parquet", index=False)
    frame.iloc[100:].rename(columns={"email": "Email"}).to_parquet(tmp_path / "p1.parquet", index=False)
    list_id = sb.create_list("glob")
    with pytest.raises(InputError, match=r"p1\.parquet has no column 'email'.*Did you mean 'Email'\?") as caught:
        export_segment(str(tmp_path / "*.parquet"), email="email", list_id=list_id, connection=conn)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match=r"p1\.parquet has no column 'first_name'"):  # asked for: in every file
        frame.iloc[100:].drop(columns="first_name").to_parquet(tmp_path / "p1.parquet", index=False)
        export_segment(str(tmp_path / "*.parquet"), email="email", list_id=list_id, connection=conn,
                       properties=["first_name"])  # fmt: skip
    assert [r.method for r in sb.requests if r.path != "/api/lists"] == []  # refused before any request
    # A column sent only for its name (first_name, a Klaviyo field) may be missing from some files: not sent there.
    result = export_segment(str(tmp_path / "*.parquet"), email="email", list_id=list_id, connection=conn)
    assert result.total_rows == CUSTOMERS and result.sent == CUSTOMERS - 3


def test_ctrl_c_while_the_input_is_read_says_the_rows_read_are_not_the_segment(sb, conn):
    """Ctrl-C that lands inside the input library (here: a reader whose third batch never comes) ends the reading:
    the result must not present the rows read so far as the segment's size."""
    schema = pa.schema([("email", pa.string())])

    def batches():
        for start in (0, 100):
            yield pa.record_batch([pa.array([f"r{i}@example.com" for i in range(start, start + 100)])], schema=schema)
        raise KeyboardInterrupt  # as SIGINT raises it, wherever the reading is

    shown: list = []
    with pytest.raises(ExportInterrupted) as caught:
        export_segment(pa.RecordBatchReader.from_batches(schema, batches()), email="email",
                       list_id=sb.create_list("cut"), connection=conn, progress=shown.append)  # fmt: skip
    result = caught.value.result
    assert result.total_rows == 200 and not result.input_complete
    assert result.summary().startswith(
        f"Interrupted while reading the input: {result.sent} of the first 200 rows were sent to list"
    )
    assert "the rest of the input was not read" in result.summary()
    assert shown[-1].message == f"Interrupted: {result.sent} of the first 200 sent (the rest of the input was not read)"
