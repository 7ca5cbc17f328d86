"""The export engine: from segments of any DataFrame library to rows in a Klaviyo list kept in step, every row
accounted for. The data flows one way:

- ``api.py``: :func:`export_segment`, which checks the arguments and runs; ``call.py`` holds what every run shares
  (and asks Klaviyo who the account is and whether the list exists); ``preview.py`` is the dry run;
- ``sources.py``, ``files.py``: pandas, Polars, Arrow, DuckDB, Dask, Spark and Parquet/CSV files, read in chunks;
- ``checks.py`` (with ``fields.py``, ``emails.py``, ``dedupe.py``, ``hashing.py``): each row's fate: skipped,
  duplicate, unchanged since the last run, or to send; ``values.py``, ``payloads.py``: profile JSON and import-job
  batches; ``report.py``: every row's outcome; ``stream.py`` ties these together, chunk after chunk;
- ``run.py``, ``jobs.py``: one real run: send the batches, watch the jobs; ``mirror.py``: remove the members who
  left the segment; ``state.py``: the sync state (what each list got from us); ``journal.py``: the run journal
  behind resume;
- ``saved.py``: saved exports and their history; ``namespace.py``: DataFrames found by name in a notebook.

Importing this package is light: pandas loads with the first export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..result import ExportResult
    from .api import export_segment

__all__ = ["ExportResult", "export_segment"]


def __getattr__(name: str) -> Any:
    if name == "export_segment":
        from .api import export_segment

        return export_segment
    if name == "ExportResult":
        from ..result import ExportResult

        return ExportResult
    raise AttributeError(f"module 'klaviyo_magic.export' has no attribute {name!r}")
