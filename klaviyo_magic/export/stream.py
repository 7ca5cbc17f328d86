"""The export's rows, one way through: chunks in -> each row's fate -> report rows -> batches out.

:class:`RowStream` reads every segment chunk by chunk (``sources.py``), has each row's fate decided
(``checks.py``), writes the rows to the report (``report.py``) and packs the rows to send into import-job
batches (``payloads.py``). It is a generator of batches, so the export sends the first batch while later chunks
are still being read: only a few chunks and batches are ever in memory, whatever the segment's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .checks import RowChecker
from .fields import check_columns, resolve_fields
from .payloads import Batch, Batcher, Encoder, encode_in_pieces
from .report import CODES, ReportBook, release_arrow_scratch
from .sources import Source, missing_extra, open_sources, row_labels
from .state import Snapshot

SAMPLE_SIZE = 5  # profiles kept for a preview


@dataclass
class StreamTotals:
    """What the stream has seen so far."""

    rows: int = 0
    segment_rows: list[int] = field(default_factory=list)
    over_limit: int = 0  # rows read after max_profiles was reached (never sent)
    sample: list[str] = field(default_factory=list)  # the first profiles to send, as JSON


class RowStream:
    """Reads the sources and yields the batches to send; ``book`` receives every row, ``checker`` decides."""

    def __init__(
        self,
        sources: Sequence[Source],
        columns: Sequence[Any],
        checker: RowChecker,
        book: ReportBook,
        *,
        max_profiles: int,
        batcher: Batcher | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        self.sources = list(sources)
        self.columns = list(columns)
        self.checker = checker
        self.book = book
        self.encoder = Encoder(checker.field_map)
        self.batcher = batcher or Batcher()
        self.max_profiles = max_profiles
        self.chunk_rows = chunk_rows  # None: the sources' own chunk size
        self.totals = StreamTotals()
        self.finished = False
        self._batches: Iterator[Batch] | None = None
        self._draining = False

    def batches(self) -> Iterator[Batch]:
        """Every batch to send, in input order; after the last one ``finished`` is True."""
        if self._batches is None:
            self._batches = self._generate()
        return self._batches

    @property
    def can_drain(self) -> bool:
        """Whether the rest of the input can be read without running anyone's query again: it is in memory
        already, or in local files. (A Spark, Dask or DuckDB query may take minutes: it is not run just to
        report its rows as not sent.)"""
        return all(source.in_memory or source.identity.get("kind", "").startswith("file-") for source in self.sources)

    def drain(self) -> None:
        """Read the rest of the input without building batches, so every row reaches the report (rows to send
        stay pending; the run reports them as not sent)."""
        self._draining = True
        for _ in self.batches():
            pass
        if not self.finished:
            # A Ctrl-C that landed inside the reading ended it for good (a generator does not outlive the
            # exception it raised): read the input again from the start, past the rows the report already has.
            self.totals.rows, self.totals.segment_rows = self.book.rows, []
            self._batches = self._generate(skip=self.book.rows)
            for _ in self._batches:
                pass

    def _generate(self, skip: int = 0) -> Iterator[Batch]:
        """The batches; with ``skip``, the first ``skip`` rows of the input are read but not checked again."""
        for source in self.sources:
            read = 0
            # Without properties=..., each segment brings its own standard-named columns: read the ones it has.
            columns = [column for column in self.columns if column in source.columns]
            try:
                chunks = source.chunks(columns, self.chunk_rows) if self.chunk_rows else source.chunks(columns)
                for frame, labels in chunks:
                    if skip:
                        done = min(skip, len(frame))
                        skip, read = skip - done, read + done
                        frame, labels = frame.iloc[done:], (None if labels is None else labels[done:])
                        if not len(frame):
                            continue
                    yield from self._chunk(source.number, frame, row_labels(labels, read, len(frame)))
                    read += len(frame)
            except ImportError as exc:
                raise missing_extra(exc, source) from None
            self.totals.segment_rows.append(read)
        last = self.batcher.flush()
        if last is not None and not self._draining:
            yield last
        release_arrow_scratch()
        self.finished = True

    def _chunk(self, segment: int, frame: Any, labels: Any) -> Iterator[Batch]:
        start = self.totals.rows
        chunk = self.checker.check(segment, start, frame, labels)
        self.totals.rows += len(chunk)
        self.book.add(segment, labels, chunk.shown, chunk.status, chunk.action, chunk.reason)
        over = self.totals.rows - self.max_profiles
        if over > 0:  # only when the input could not be counted up front: rows past the cap are never sent
            first = max(len(chunk) - over, 0)
            self.totals.over_limit += len(chunk) - first
            late = first + np.flatnonzero(chunk.status[first:] == CODES["pending"])
            self.book.mark(start + late, "not_sent", f"not sent: over max_profiles={self.max_profiles:,}")
            chunk.status[late] = CODES["not_sent"]
        if self._draining:
            return
        for encoded in encode_in_pieces(self.encoder, chunk):
            for position, note in encoded.notes.items():
                self.book.note([position], note)
            if len(self.totals.sample) < SAMPLE_SIZE:
                self.totals.sample += encoded.profiles[: SAMPLE_SIZE - len(self.totals.sample)]
            done, oversized, reasons = self.batcher.add(encoded)
            self.book.mark(oversized, "failed", reasons)
            if not self._draining:
                yield from done


def check_row_limit(sources: Sequence[Source], max_profiles: int) -> int | None:
    """The rows of all segments when the backends can count them; over ``max_profiles`` is an error before any
    request. None when some segment can only be counted by reading it (the stream then stops sending there)."""
    if not isinstance(max_profiles, int) or isinstance(max_profiles, bool) or max_profiles < 1:
        raise InputError(f"max_profiles must be a positive integer, got {max_profiles!r}")
    counts = [source.count() for source in sources]
    if any(count is None for count in counts):
        return None
    total = sum(counts)  # type: ignore[arg-type]
    if total > max_profiles:
        raise InputError(
            f"the segments have {total:,} rows in total, over the limit of {max_profiles:,} profiles per export. "
            f"Split the segment into smaller exports, or raise the limit: max_profiles={total} in Python, "
            f"--max-profiles {total} in %klaviyo_export and klaviyo-magic export"
        )
    return total


@dataclass
class LocalRun:
    """What :func:`run_locally` found. Rows to send are ``pending`` in ``report``; ``batches`` hold them."""

    report: pd.DataFrame
    field_map: dict[Any, tuple[str, ...]]
    batches: list[Batch]
    totals: StreamTotals
    partially_sent: int  # rows to send without a value that cannot be sent (the reason names it)


def run_locally(
    segments: Any,
    *,
    email: Any,
    properties: Any = None,
    max_profiles: int = 1_000_000,
    state: Snapshot | None = None,
    full: bool = False,
    batcher: Batcher | None = None,
    chunk_rows: int | None = None,
) -> LocalRun:
    """The export's local half, with no request and no file: the same checks as :func:`export_segment` in the
    same order, each row's fate, and every batch a run would send. For tests, and to look at a run's payloads;
    ``state`` stands for a list's sync state, ``batcher`` for other limits, ``chunk_rows`` for other chunks."""
    sources = open_sources(segments)
    check_columns(sources, email)
    field_map = resolve_fields(sources, email, properties)
    check_row_limit(sources, max_profiles)
    book = ReportBook(len(sources))
    checker = RowChecker(email, field_map, state=state, full=full)
    stream = RowStream(
        sources, list(field_map), checker, book, max_profiles=max_profiles, batcher=batcher, chunk_rows=chunk_rows
    )
    batches = list(stream.batches())
    return LocalRun(book.finish(), field_map, batches, stream.totals, book.noted)
