"""The export engine: from DataFrame segments to rows in a Klaviyo list, every row accounted for.

- ``api.py``: :func:`export_segment`, which checks the arguments, opens the run journal and starts the run;
- ``segment.py`` (with ``fields.py``, ``values.py``, ``emails.py``, ``report.py``): validation, cleaning,
  dedupe and batching of the rows into import-job payloads, and the per-row report;
- ``run.py``, ``jobs.py``, ``ledger.py``: one run: submit the jobs, watch them, settle every row;
- ``journal.py``: the run journal behind resume; ``saved.py``: saved exports and their history.

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
