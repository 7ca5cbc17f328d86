"""iter_batches and Batch: payload shape, Klaviyo's limits, oversize profiles, without() (segment.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic.errors import InputError
from klaviyo_magic.export import segment as segment_module
from klaviyo_magic.export.segment import Batch, Plan, iter_batches, plan_export


def emails(n: int, start: int = 0) -> list[str]:
    return [f"user{i}@example.com" for i in range(start, start + n)]


def profiles_of(batches: list[Batch]) -> list[dict]:
    return [json.loads(p) for b in batches for p in b.profiles]


def test_body_has_the_bulk_import_shape() -> None:
    plan = plan_export(pd.DataFrame({"email": ["A@x.io"], "first_name": ["Ann"]}), email="email")
    (batch,) = iter_batches(plan)
    body = json.loads(batch.body("Y6nRLr"))
    assert body == {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {"data": [{"type": "profile", "attributes": {"email": "a@x.io", "first_name": "Ann"}}]}
            },
            "relationships": {"lists": {"data": [{"type": "list", "id": "Y6nRLr"}]}},
        }
    }
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert batch.body("Y6nRLr") == compact  # compact UTF-8, exactly as json.dumps writes it


def test_profiles_carry_every_mapped_field_and_no_nulls() -> None:
    data = pd.DataFrame(
        {
            "email": ["a@x.io", "b@x.io"],
            "First_Name": ["Chloé", None],
            "phone": ["+33 6 12 34 56 78", None],
            "crm": [123.0, np.nan],
            "city": ["Paris", ""],
            "lat": ["48.8566", None],
            "ltv": [1.5, np.nan],
            "orders": pd.array([3, None], dtype="Int64"),
            "vip": [True, False],
            "since": pd.to_datetime(["2024-01-02", None]),
            "seen": [pd.Timestamp("2024-07-01 12:00", tz="Europe/Paris"), pd.NaT],
            "born": [dt.date(1990, 5, 17), None],
            "credit": [Decimal("10.50"), Decimal("7")],
            "tags": [["a", "b"], np.array([1, 2])],
            "prefs": [{"sms": False, "x": np.nan}, None],
            "tier": pd.Categorical(["gold", None]),
        }
    )
    mapping = {"First_Name": "first_name", "phone": "phone_number", "crm": "external_id", "city": "city"}
    mapping |= {"lat": "latitude"} | {c: c for c in ["ltv", "orders", "vip", "since", "seen", "born"]}
    mapping |= {"credit": "credit", "tags": "tags", "prefs": "prefs", "tier": "tier"}
    plan = plan_export(data, email="email", properties=mapping)
    (batch,) = iter_batches(plan)
    assert [json.loads(p)["attributes"] for p in batch.profiles] == [
        {
            "email": "a@x.io",
            "first_name": "Chloé",
            "phone_number": "+33612345678",
            "external_id": "123",
            "location": {"city": "Paris", "latitude": 48.8566},
            "properties": {
                "ltv": 1.5,
                "orders": 3,
                "vip": True,
                "since": "2024-01-02T00:00:00",
                "seen": "2024-07-01T12:00:00+02:00",
                "born": "1990-05-17",
                "credit": 10.5,
                "tags": ["a", "b"],
                "prefs": {"sms": False},
                "tier": "gold",
            },
        },
        {
            "email": "b@x.io",
            "properties": {"vip": False, "credit": 7, "tags": [1, 2]},
        },
    ]
    assert b"null" not in batch.body("L1")
    assert "Chloé".encode() in batch.body("L1")  # not \\u-escaped: UTF-8 as Klaviyo counts bytes


def test_batches_respect_the_profile_count_and_keep_order_across_segments() -> None:
    first = pd.DataFrame({"email": emails(13)}, index=[f"a{i}" for i in range(13)])
    second = pd.DataFrame({"email": emails(12, start=13)})
    plan = plan_export([first, second], email="email")
    batches = list(iter_batches(plan, max_profiles=10))
    assert [b.number for b in batches] == [1, 2, 3]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert np.concatenate([b.positions for b in batches]).tolist() == list(range(25))
    assert [p["attributes"]["email"] for p in profiles_of(batches)] == emails(25)


def test_skipped_and_duplicate_rows_are_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "_CHUNK_ROWS", 3)  # chunks that straddle gaps and segments
    first = pd.DataFrame({"email": ["a@x.io", "bad", "b@x.io", None, "c@x.io"]})
    second = pd.DataFrame({"email": ["d@x.io", "a@x.io", "e@x.io"], "first_name": ["D", "A", "E"]})
    plan = plan_export([first, second], email="email")
    batches = list(iter_batches(plan, max_profiles=2))
    positions = np.concatenate([b.positions for b in batches]).tolist()
    assert positions == plan.pending_positions().tolist() == [0, 2, 4, 5, 7]
    assert [p["attributes"] for p in profiles_of(batches)][3:] == [
        {"email": "d@x.io", "first_name": "D"},
        {"email": "e@x.io", "first_name": "E"},
    ]


def test_chunking_does_not_change_the_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pd.DataFrame({"email": emails(50), "ltv": np.arange(50) / 3, "city": ["x", None] * 25})
    plan = plan_export(data, email="email")
    whole = [b.profiles for b in iter_batches(plan, max_profiles=7)]
    monkeypatch.setattr(segment_module, "_CHUNK_ROWS", 4)
    assert [b.profiles for b in iter_batches(plan, max_profiles=7)] == whole


def big_plan(n: int, width: int) -> Plan:
    """``n`` profiles of identical size."""
    data = pd.DataFrame({"email": [f"user{i:04d}@example.com" for i in range(n)], "note": ["x" * width] * n})
    return plan_export(data, email="email", properties=["note"])


def test_batches_respect_the_byte_limit_exactly() -> None:
    plan = big_plan(40, 900)
    one = len(iter_batches(plan).__next__().profiles[0].encode())
    envelope = len(Batch(0, [], []).body(""))  # the body without profiles and with an empty list id
    fits = 6
    # room for exactly 6 profiles and 5 commas, plus the reserve for a 62-character list id
    max_bytes = envelope - 2 + 64 + fits * one + (fits - 1)
    batches = list(iter_batches(plan, max_bytes=max_bytes))
    assert [len(b) for b in batches] == [6] * 6 + [4]
    for batch in batches:
        assert len(batch.body("x" * 62)) <= max_bytes
    assert len(batches[0].body("x" * 62)) == max_bytes
    smaller = list(iter_batches(plan, max_bytes=max_bytes - 1))
    assert [len(b) for b in smaller][0] == 5


def test_size_is_the_body_length() -> None:
    (batch,) = iter_batches(big_plan(3, 10))
    before = batch.size  # before body(): assumes a 6-character list id
    assert before == len(batch.body("Y6nRLr"))
    longer = len(batch.body("a-much-longer-id"))
    assert batch.size == longer == before + 10  # after body(): exact for the last list id
    assert repr(batch).startswith("Batch(number=1, profiles=3, size=")


def test_byte_and_count_limits_combine() -> None:
    plan = big_plan(30, 5_000)
    batches = list(iter_batches(plan, max_profiles=4, max_bytes=16_000, max_profile_bytes=10_000))
    assert all(len(b) <= 4 and len(b.body("Y6nRLr")) <= 16_000 for b in batches)
    assert sum(len(b) for b in batches) == 30


def test_oversize_profiles_fail_and_the_rest_is_sent() -> None:
    data = pd.DataFrame({"email": emails(4), "blob": ["x", "y" * 150_000, "é" * 60_000, "z"]})
    plan = plan_export(data, email="email", properties=["blob"])
    batches = list(iter_batches(plan))
    assert np.concatenate([b.positions for b in batches]).tolist() == [0, 3]
    report = plan.report
    assert report["status"].tolist() == ["pending", "failed", "failed", "pending"]

    def size(blob: str) -> int:
        profile = {
            "type": "profile",
            "attributes": {"email": "user1@example.com", "properties": {"blob": blob}},
        }
        return len(json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode())

    assert report["reason"][1] == (
        f"profile is {size('y' * 150_000):,} bytes, over Klaviyo's 100 KB per-profile limit; "
        "shorten or drop large property columns"
    )
    assert report["reason"][2].startswith(f"profile is {size('é' * 60_000):,} bytes")  # UTF-8 bytes, not chars


def test_profiles_that_fit_no_request_fail_too() -> None:
    plan = big_plan(2, 3_000)
    assert list(iter_batches(plan, max_bytes=2_000)) == []
    assert plan.report["reason"][0].endswith("too large for a request of max_bytes=2,000; raise max_bytes")


def test_iteration_leaves_included_rows_pending_and_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "_CHUNK_ROWS", 10)
    calls = []
    original = segment_module._Encoder.encode
    monkeypatch.setattr(segment_module._Encoder, "encode", lambda self, p: calls.append(1) or original(self, p))
    plan = plan_export(pd.DataFrame({"email": emails(100)}), email="email")
    batches = iter_batches(plan, max_profiles=10)
    first = next(batches)
    assert len(first) == 10 and len(calls) == 1  # only what the first batch needs was encoded
    assert plan.counts["pending"] == 100
    plan.mark(first.positions, "sent")  # the engine marks while iterating
    assert sum(len(b) for b in batches) == 90


def test_without_drops_profiles_by_their_position_in_the_batch() -> None:
    plan = plan_export(pd.DataFrame({"email": emails(5)}, index=list("abcde")), email="email")
    (batch,) = iter_batches(plan)
    smaller = batch.without({0: "bad email", 3: "bad email", 99: "out of range"})
    assert smaller.number == batch.number
    assert smaller.positions.tolist() == [1, 2, 4]
    body = json.loads(smaller.body("Y6nRLr"))
    sent = [p["attributes"]["email"] for p in body["data"]["attributes"]["profiles"]["data"]]
    assert sent == ["user1@example.com", "user2@example.com", "user4@example.com"]
    assert smaller.size == len(smaller.body("Y6nRLr"))
    assert len(batch) == 5  # the original is unchanged
    assert len(batch.without([]).profiles) == 5 and len(batch.without(range(5))) == 0


def test_batch_made_by_hand_measures_its_profiles() -> None:
    batch = Batch(1, [4, 5], ['{"type":"profile","attributes":{"email":"é@x.io"}}', "{}"])
    assert batch.profile_sizes.tolist() == [51, 2]  # UTF-8 bytes: é takes two
    assert batch.size == len(batch.body("Y6nRLr"))


@pytest.mark.parametrize("name", ["max_profiles", "max_bytes", "max_profile_bytes"])
def test_limits_must_be_positive_ints(name: str) -> None:
    plan = plan_export(pd.DataFrame({"email": emails(1)}), email="email")
    with pytest.raises(InputError, match=f"{name} must be a positive integer"):
        list(iter_batches(plan, **{name: 0}))
    with pytest.raises(InputError, match="leaves no room for profiles"):
        list(iter_batches(plan, max_bytes=100))


def test_every_row_is_accounted_for_exactly_once() -> None:
    rng = np.random.default_rng(7)
    parts = []
    for n in (300, 0, 250):
        pool = emails(200) + ["", "nope", None]
        parts.append(
            pd.DataFrame(
                {
                    "email": rng.choice(np.array(pool, dtype=object), n),
                    "note": rng.choice(["x" * 20, "y" * 300], n),
                },
                index=[f"r{i}" for i in range(n)],
            )
        )
    plan = plan_export(parts, email="email", properties=["note"])
    assert len(plan.report) == 550
    assert plan.report["segment"].value_counts().to_dict() == {0: 300, 2: 250}
    sent = np.concatenate([b.positions for b in iter_batches(plan, max_profiles=17, max_bytes=3_000)])
    assert len(sent) == len(set(sent.tolist())) == plan.counts["pending"]
    plan.mark(sent, "sent")
    assert sum(plan.counts.values()) == 550 and plan.counts["pending"] == 0
    valid = {e for part in parts for e in part["email"] if isinstance(e, str) and "@" in e}
    assert set(plan.report["email"][plan.report["status"] == "sent"]) == valid
