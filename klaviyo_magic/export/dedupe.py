"""The set of emails seen so far in an export, kept compact so it can span millions of rows.

A Python set of email strings costs about 100 bytes an entry; this keeps each distinct email as its 64-bit hash
and the position of the first row that had it: 12 bytes (16 past 2**31 rows). The entries live in a few sorted
runs whose sizes at least double from one to the next (as in a log-structured merge tree): a chunk's emails are
looked up with a binary search in each run and added as a new run, and runs of similar size are merged, so
adding N emails costs O(N log N) in all and a lookup O(log² N).

No merge makes a run larger than ``LARGEST_RUN`` entries: merging two runs holds both and their merge at once,
twice the set's size for a moment, so unbounded merges made the peak grow 24 bytes an email, not 12. Past a
million distinct emails the runs are a million entries each, the scratch of a merge stays at 25 MB, and a lookup
searches one more run per million (a binary search among a chunk's sorted hashes: about a millisecond).
"""

from __future__ import annotations

import numpy as np

LARGEST_RUN = 1 << 20  # entries; 12 MB of hashes and positions


class SeenEmails:
    """Distinct email hashes, each with the position of the first row that had it."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, positions), largest first

    def __len__(self) -> int:
        return sum(len(hashes) for hashes, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(hashes.nbytes + positions.nbytes for hashes, positions in self._runs)

    def first_rows(self, hashes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """For each row (its email's hash and its position, positions ascending): -1 when its email is new,
        which records it, else the position of the earlier row with the same email."""
        hashes = np.asarray(hashes, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        earlier = np.full(len(hashes), -1, dtype=np.int64)
        if not len(hashes):
            return earlier
        order = np.argsort(hashes, kind="stable")  # stable: within equal hashes, the earliest row comes first
        ordered = hashes[order]
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        # A repeat within this chunk points at the chunk's first row with that email...
        group = np.cumsum(first) - 1  # which distinct email each (ordered) row has
        group_first = order[first]  # the chunk's first row with each distinct email
        earlier[order[~first]] = positions[group_first[group[~first]]]
        # ...unless an earlier chunk already had the email: then every row of the chunk with it points there.
        unique = ordered[first]
        known = self.lookup(unique)
        seen = known >= 0
        row_known = known[group]
        earlier[order[row_known >= 0]] = row_known[row_known >= 0]
        self._add(unique[~seen], positions[group_first[~seen]])
        return earlier

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The first row's position for each hash, -1 where unseen."""
        hashes = np.asarray(hashes, dtype=np.int64)
        found = np.full(len(hashes), -1, dtype=np.int64)
        for run_hashes, run_positions in self._runs:
            where = np.searchsorted(run_hashes, hashes)
            inside = where < len(run_hashes)
            hit = np.zeros(len(hashes), dtype=bool)
            hit[inside] = run_hashes[where[inside]] == hashes[inside]
            found[hit] = run_positions[where[hit]]
        return found

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        return self.lookup(hashes) >= 0

    def _add(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes)
        # Row positions fit in 4 bytes below 2**31 rows: 12 bytes an email instead of 16.
        dtype = np.int32 if positions[-1] <= np.iinfo(np.int32).max else np.int64
        run = (hashes[order], positions[order].astype(dtype, copy=False))
        # Merge while the newest run is at least half the size of the one before (sizes keep doubling), up to
        # LARGEST_RUN entries: runs that size stay as they are.
        while self._runs and len(self._runs[-1][0]) <= 2 * len(run[0]):
            if len(self._runs[-1][0]) + len(run[0]) > LARGEST_RUN:
                break
            run = _merge(self._runs.pop(), run)
        self._runs.append(run)


def _merge(older: tuple[np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs with no hash in common, as one sorted run. Each of the newer run's entries goes where a
    binary search in the older one puts it: no sort, and no scratch beyond a byte an entry (an argsort of the
    concatenation needed 40 bytes an entry, at the moment the set is largest)."""
    (old_hashes, old_positions), (new_hashes, new_positions) = older, newer
    size = len(old_hashes) + len(new_hashes)
    slots = np.searchsorted(old_hashes, new_hashes) + np.arange(len(new_hashes))
    from_new = np.zeros(size, dtype=bool)
    from_new[slots] = True
    hashes = np.empty(size, dtype=np.int64)
    positions = np.empty(size, dtype=np.promote_types(old_positions.dtype, new_positions.dtype))
    hashes[slots], positions[slots] = new_hashes, new_positions
    from_old = ~from_new
    hashes[from_old], positions[from_old] = old_hashes, old_positions
    return hashes, positions
