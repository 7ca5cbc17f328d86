"""SeenEmails (dedupe.py): the emails seen so far as 16 bytes each, the first row of each, across any number of
chunks; checked against a plain Python dict doing the same job."""

from __future__ import annotations

import numpy as np

from klaviyo_magic.export import dedupe
from klaviyo_magic.export.dedupe import SeenEmails


def test_a_repeat_within_a_chunk_points_at_the_chunks_first_row_with_that_email() -> None:
    seen = SeenEmails()
    earlier = seen.first_rows(np.array([5, 7, 5, 5, 9]), np.array([10, 11, 12, 13, 14]))
    assert earlier.tolist() == [-1, -1, 10, 10, -1]
    assert len(seen) == 3


def test_a_repeat_in_a_later_chunk_points_at_the_first_row_of_all() -> None:
    seen = SeenEmails()
    seen.first_rows(np.array([5, 7]), np.array([0, 1]))
    earlier = seen.first_rows(np.array([9, 7, 9, 5]), np.array([2, 3, 4, 5]))
    assert earlier.tolist() == [-1, 1, 2, 0]
    assert seen.lookup(np.array([5, 7, 9, 4])).tolist() == [0, 1, 2, -1]
    assert seen.contains(np.array([9, 4])).tolist() == [True, False]


def test_an_empty_chunk_changes_nothing() -> None:
    seen = SeenEmails()
    assert seen.first_rows(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == []
    assert len(seen) == 0 and seen.nbytes == 0
    assert seen.lookup(np.array([1, 2])).tolist() == [-1, -1]


def test_negative_and_extreme_hashes_are_emails_like_any_other() -> None:
    seen = SeenEmails()
    extremes = np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max])
    assert seen.first_rows(extremes, np.arange(4)).tolist() == [-1] * 4
    assert seen.first_rows(extremes[::-1], np.arange(4, 8)).tolist() == [3, 2, 1, 0]


def feed_and_check(seen: SeenEmails, first: dict[int, int], rng: np.random.Generator, sizes: np.ndarray) -> None:
    """Chunks of random hashes of these sizes into ``seen``, each answer checked against ``first`` (a dict doing
    the same job), which ends up holding every distinct hash and its first position."""
    start = 0
    for size in sizes:
        hashes = rng.integers(-(2**40), 2**40, size) // 1_000  # collisions on purpose: many repeats
        positions = np.arange(start, start + size)
        start += size
        expected = []
        for h, p in zip(hashes.tolist(), positions.tolist(), strict=True):
            expected.append(first.get(h, -1))
            first.setdefault(h, p)
        assert seen.first_rows(hashes, positions).tolist() == expected


def test_many_chunks_agree_with_a_dict_and_keep_12_bytes_an_email() -> None:
    rng = np.random.default_rng(13)
    seen, first = SeenEmails(), {}
    feed_and_check(seen, first, rng, rng.integers(0, 3_000, 60))
    assert len(seen) == len(first)
    assert seen.nbytes == 12 * len(first)  # a hash and a 4-byte position each, nothing per row
    keys = np.array(list(first))
    assert seen.lookup(keys).tolist() == list(first.values())
    # The runs stay few: each is more than twice the next, so a lookup searches O(log n) of them.
    sizes = [len(hashes) for hashes, _ in seen._runs]
    assert all(older > 2 * newer for older, newer in zip(sizes, sizes[1:], strict=False)), sizes
    assert len(sizes) <= int(np.log2(len(first))) + 1


def test_runs_stop_growing_at_the_largest_run_and_lookups_search_them_all(monkeypatch) -> None:
    """A merge holds both runs and their merge at once; capping runs at LARGEST_RUN bounds that scratch."""
    monkeypatch.setattr(dedupe, "LARGEST_RUN", 1_000)
    rng = np.random.default_rng(21)
    seen, first = SeenEmails(), {}
    feed_and_check(seen, first, rng, rng.integers(1, 400, 80))
    sizes = [len(hashes) for hashes, _ in seen._runs]
    assert max(sizes) <= 1_000 and sum(sizes) == len(first) > 10_000, sizes
    assert all(np.all(np.diff(hashes) > 0) for hashes, _ in seen._runs)  # each run sorted, no repeats
    keys = np.array(list(first))
    assert seen.lookup(keys).tolist() == list(first.values())


def test_positions_past_2_31_rows_keep_8_bytes() -> None:
    seen = SeenEmails()
    small = np.arange(10, dtype=np.int64)
    assert seen.first_rows(np.arange(100, 110), small).tolist() == [-1] * 10
    big = np.arange(2**31, 2**31 + 30, dtype=np.int64)  # larger, so the runs merge: int32 and int64 together
    assert seen.first_rows(np.arange(200, 230), big).tolist() == [-1] * 30
    assert seen.lookup(np.array([105, 229, 7])).tolist() == [5, 2**31 + 29, -1]
    assert [positions.dtype for _, positions in seen._runs] == [np.int64]
