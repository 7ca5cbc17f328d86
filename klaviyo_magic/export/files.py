"""Parquet and CSV files as segments: a path or a glob (``data/*.parquet``), the CLI's ``--input`` and Python's.

The files become one PyArrow dataset, read batch by batch by ``sources.py`` like any other streamed input, so a
file larger than memory exports as well as a small one. Without pyarrow (a plain install) a CSV file is read
whole by pandas, which needs no extra; Parquet then needs the ``parquet`` extra.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError

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
    """``parquet`` or ``csv``, from the file's name."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        return "csv"
    raise InputError(f"input file {path} is neither CSV (.csv, .tsv, .csv.gz) nor Parquet (.parquet)")


def open_files(text: str | os.PathLike) -> tuple[str, Any, int | None, dict[str, Any]]:
    """``(kind, data, rows, identity)`` for the files ``text`` names: an ``arrow-dataset`` (rows counted from the
    Parquet footers; None for CSV, which only reading counts), or, for CSV without pyarrow, a ``pandas`` frame.
    ``identity`` says they are files, and which (path, size, mtime)."""
    paths = file_paths(text)
    formats = {file_format(path) for path in paths}
    if len(formats) > 1:
        raise InputError(f"{os.fspath(text)} mixes CSV and Parquet files; export them as separate segments")
    kind = formats.pop()
    identity = {"kind": f"file-{kind}", "files": [_file_identity(path) for path in paths]}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        if kind == "parquet":
            raise InputError(
                f"reading {os.fspath(text)} needs pyarrow, which is not installed: pip install 'klaviyo-magic[parquet]'"
            ) from None
        frame = pd.concat([_read_csv_with_pandas(path) for path in paths], ignore_index=True)
        return "pandas", frame, len(frame), identity
    dataset = _arrow_dataset(paths, kind)
    rows = _count_rows(dataset, paths) if kind == "parquet" else None
    return "arrow-dataset", dataset, rows, identity


def columns_by_file(paths: list[Path]) -> dict[Path, list[str]]:
    """Each file's own columns, from its Parquet footer or its CSV header: a dataset of several files has the first
    file's columns, and a later file without one of them would read as a column of missing values."""
    found: dict[Path, list[str]] = {}
    for path in paths:
        try:
            if file_format(path) == "parquet":
                import pyarrow.parquet as pq

                found[path] = pq.read_schema(path).names
            else:
                found[path] = [str(c) for c in pd.read_csv(path, nrows=0, sep=_delimiter(path))]
        except (OSError, ValueError) as exc:  # pandas' EmptyDataError and Arrow's errors are ValueErrors
            raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return found


def _delimiter(path: Path) -> str:
    return "\t" if ".tsv" in path.name.lower() else ","


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _arrow_dataset(paths: list[Path], kind: str) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        if kind == "parquet":
            return ds.dataset([str(p) for p in paths], format="parquet")
        delimiter = _delimiter(paths[0])
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


def _count_rows(dataset: Any, paths: list[Path]) -> int:
    """The rows, from the Parquet footers alone; a file that is not Parquet fails here, before any request."""
    import pyarrow as pa

    try:
        return int(dataset.count_rows())
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {paths[0]}: {str(exc).splitlines()[0]}") from None


def _read_csv_with_pandas(path: Path) -> pd.DataFrame:
    sep = _delimiter(path)
    try:
        header = pd.read_csv(path, nrows=0, sep=sep).columns
        text = {c: str for c in header if str(c).strip().lower() in TEXT_COLUMNS}
        return pd.read_csv(path, sep=sep, dtype=text, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
