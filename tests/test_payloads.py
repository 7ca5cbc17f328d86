"""Import-job payloads (payloads.py): the body's shape, every kind of value, Klaviyo's count and byte limits,
oversize profiles failed with a reason, Batch.without, batches that are the same for the same input, and values
that cannot be sent (``ltv = inf``: left out of the profile, the row still sent, the reason named), also over HTTP
against the sandbox."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.errors import InputError
from klaviyo_magic.export import payloads as payloads_module
from klaviyo_magic.export.payloads import ENVELOPE_BYTES, Batch, Batcher
from klaviyo_magic.export.stream import LocalRun, run_locally

KEY = "pk_payload_tests_0123456789abcdef"
INF_REASON = "sent without {}: JSON has no infinite numbers, so Klaviyo cannot take them"


def emails(n: int, start: int = 0) -> list[str]:
    return [f"user{i}@example.com" for i in range(start, start + n)]


def profiles_of(batches: list[Batch]) -> list[dict]:
    return [json.loads(p) for b in batches for p in b.profiles]


def positions_of(batches: list[Batch]) -> list[int]:
    return np.concatenate([b.positions for b in batches]).tolist() if batches else []


def big(n: int, width: int, **options: object) -> LocalRun:
    """``n`` profiles of identical size."""
    data = pd.DataFrame({"email": [f"user{i:04d}@example.com" for i in range(n)], "note": ["x" * width] * n})
    return run_locally(data, email="email", properties=["note"], **options)


def no_hashes(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


# -- the body ----------------------------------------------------------------------------------------------------


def test_body_has_the_bulk_import_shape() -> None:
    (batch,) = run_locally(pd.DataFrame({"email": ["A@x.io"], "first_name": ["Ann"]}), email="email").batches
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
            "seen": [pd.Timestamp("2024-07-01 12:00", tz="Europe/Paris"), pd.NaT],  # this crashed hashing once
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
    (batch,) = run_locally(data, email="email", properties=mapping).batches
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


def test_batches_carry_each_rows_email_and_hashes() -> None:
    run = run_locally(
        pd.DataFrame({"email": ["B@x.io", "bad", "c@x.io"], "first_name": ["B", "X", "C"]}), email="email"
    )
    (batch,) = run.batches
    assert batch.emails == ["b@x.io", "c@x.io"] and batch.positions.tolist() == [0, 2]
    assert batch.email_hash.dtype == np.int64 and len(set(batch.email_hash.tolist())) == 2
    assert batch.row_hash.dtype == np.int64 and batch.row_hash[0] != batch.row_hash[1]  # B and C differ


# -- limits ------------------------------------------------------------------------------------------------------


def test_batches_respect_the_profile_count_and_keep_order_across_segments() -> None:
    first = pd.DataFrame({"email": emails(13)}, index=[f"a{i}" for i in range(13)])
    second = pd.DataFrame({"email": emails(12, start=13)})
    batches = run_locally([first, second], email="email", batcher=Batcher(max_profiles=10)).batches
    assert [b.number for b in batches] == [1, 2, 3]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert positions_of(batches) == list(range(25))
    assert [p["attributes"]["email"] for p in profiles_of(batches)] == emails(25)


def test_skipped_and_duplicate_rows_are_not_sent() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "bad", "b@x.io", None, "c@x.io"]})
    second = pd.DataFrame({"email": ["d@x.io", "a@x.io", "e@x.io"], "first_name": ["D", "A", "E"]})
    # chunks of 3 rows straddle the gaps and the segments
    run = run_locally([first, second], email="email", batcher=Batcher(max_profiles=2), chunk_rows=3)
    positions = positions_of(run.batches)
    assert positions == np.flatnonzero(run.report["status"] == "pending").tolist() == [0, 2, 4, 5, 7]
    assert [p["attributes"] for p in profiles_of(run.batches)][3:] == [
        {"email": "d@x.io", "first_name": "D"},
        {"email": "e@x.io", "first_name": "E"},
    ]


def test_batches_respect_the_byte_limit_exactly() -> None:
    one = len(big(1, 900).batches[0].profiles[0].encode())
    envelope = len(Batch(0, [], [], [], no_hashes(0), no_hashes(0)).body(""))  # without profiles, list id ""
    assert envelope == ENVELOPE_BYTES + 2
    fits = 6
    # room for exactly 6 profiles and 5 commas, plus the reserve for a 62-character list id
    max_bytes = envelope - 2 + 64 + fits * one + (fits - 1)
    batches = big(40, 900, batcher=Batcher(max_bytes=max_bytes)).batches
    assert [len(b) for b in batches] == [6] * 6 + [4]
    for batch in batches:
        assert len(batch.body("x" * 62)) <= max_bytes
    assert len(batches[0].body("x" * 62)) == max_bytes
    smaller = big(40, 900, batcher=Batcher(max_bytes=max_bytes - 1)).batches
    assert [len(b) for b in smaller][0] == 5


def test_size_is_the_body_length() -> None:
    (batch,) = big(3, 10).batches
    before = batch.size  # before body(): assumes a 6-character list id
    assert before == len(batch.body("Y6nRLr"))
    longer = len(batch.body("a-much-longer-id"))
    assert batch.size == longer == before + 10  # after body(): exact for the last list id
    assert repr(batch).startswith("Batch(number=1, profiles=3, size=")


def test_byte_and_count_limits_combine() -> None:
    batches = big(30, 5_000, batcher=Batcher(max_profiles=4, max_bytes=16_000, max_profile_bytes=10_000)).batches
    assert all(len(b) <= 4 and len(b.body("Y6nRLr")) <= 16_000 for b in batches)
    assert sum(len(b) for b in batches) == 30
    assert [len(b) for b in batches] == [3] * 10  # 16,000 bytes hold three 5 KB profiles, not four
    by_count = big(30, 5_000, batcher=Batcher(max_profiles=2, max_bytes=16_000, max_profile_bytes=10_000)).batches
    assert [len(b) for b in by_count] == [2] * 15


def test_oversize_profiles_fail_and_the_rest_is_sent() -> None:
    data = pd.DataFrame({"email": emails(4), "blob": ["x", "y" * 150_000, "é" * 60_000, "z"]})
    run = run_locally(data, email="email", properties=["blob"])
    assert positions_of(run.batches) == [0, 3]
    report = run.report
    assert report["status"].tolist() == ["pending", "failed", "failed", "pending"]

    def size(blob: str) -> int:
        profile = {"type": "profile", "attributes": {"email": "user1@example.com", "properties": {"blob": blob}}}
        return len(json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode())

    assert report["reason"][1] == (
        f"profile is {size('y' * 150_000):,} bytes, over Klaviyo's 100 KB per-profile limit; "
        "shorten or drop large property columns"
    )
    assert report["reason"][2].startswith(f"profile is {size('é' * 60_000):,} bytes")  # UTF-8 bytes, not chars


def test_profiles_that_fit_no_request_fail_too() -> None:
    run = big(2, 3_000, batcher=Batcher(max_bytes=2_000))
    assert run.batches == []
    assert run.report["status"].tolist() == ["failed", "failed"]
    assert run.report["reason"][0] == (
        "profile is 3,089 bytes, too large for a request of max_bytes=2,000; raise max_bytes"
    )


@pytest.mark.parametrize("name", ["max_profiles", "max_bytes", "max_profile_bytes"])
def test_limits_must_be_positive_ints(name: str) -> None:
    with pytest.raises(InputError, match=f"^{name} must be a positive integer, got 0$"):
        Batcher(**{name: 0})
    with pytest.raises(InputError, match=f"^{name} must be a positive integer, got 1.5$"):
        Batcher(**{name: 1.5})  # type: ignore[arg-type]


def test_a_byte_limit_without_room_for_profiles_says_the_least_that_works() -> None:
    with pytest.raises(InputError) as info:
        Batcher(max_bytes=100)
    assert str(info.value) == f"max_bytes=100 leaves no room for profiles; use at least {ENVELOPE_BYTES + 1000}"


# -- Batch -------------------------------------------------------------------------------------------------------


def test_without_drops_profiles_by_their_position_in_the_batch() -> None:
    (batch,) = run_locally(pd.DataFrame({"email": emails(5)}, index=list("abcde")), email="email").batches
    smaller = batch.without({0: "bad email", 3: "bad email", 99: "out of range"})
    assert smaller.number == batch.number
    assert smaller.positions.tolist() == [1, 2, 4]
    body = json.loads(smaller.body("Y6nRLr"))
    sent = [p["attributes"]["email"] for p in body["data"]["attributes"]["profiles"]["data"]]
    assert sent == ["user1@example.com", "user2@example.com", "user4@example.com"]
    assert smaller.emails == sent  # what the sync state records stays aligned with the profiles...
    assert smaller.email_hash.tolist() == batch.email_hash[[1, 2, 4]].tolist()
    assert smaller.row_hash.tolist() == batch.row_hash[[1, 2, 4]].tolist()
    assert smaller.profile_sizes.tolist() == batch.profile_sizes[[1, 2, 4]].tolist()
    assert smaller.size == len(smaller.body("Y6nRLr"))
    assert smaller.digest != batch.digest  # ...and the digest says the batch is another one now
    assert len(batch) == 5  # the original is unchanged
    assert len(batch.without([]).profiles) == 5 and len(batch.without(range(5))) == 0


def test_batch_made_by_hand_measures_its_profiles() -> None:
    profiles = ['{"type":"profile","attributes":{"email":"é@x.io"}}', "{}"]
    batch = Batch(1, [4, 5], profiles, ["é@x.io", ""], no_hashes(2), no_hashes(2))
    assert batch.profile_sizes.tolist() == [51, 2]  # UTF-8 bytes: é takes two
    assert batch.size == len(batch.body("Y6nRLr"))


# -- the same input gives the same batches -----------------------------------------------------------------------


def batches_summary(run: LocalRun) -> list[tuple]:
    return [(b.number, b.positions.tolist(), b.profiles, b.digest) for b in run.batches]


def test_batches_are_the_same_for_the_same_input_however_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pd.DataFrame(
        {
            "email": emails(50),
            "ltv": np.arange(50) / 3,
            "city": ["x", None] * 25,
            "tags": [["a", i] for i in range(50)],
        }
    )
    whole = run_locally(data, email="email", properties=["ltv", "city", "tags"], batcher=Batcher(max_profiles=7))
    assert len(whole.batches) == 8
    again = run_locally(data, email="email", properties=["ltv", "city", "tags"], batcher=Batcher(max_profiles=7))
    assert batches_summary(again) == batches_summary(whole)
    chunked = run_locally(
        data, email="email", properties=["ltv", "city", "tags"], batcher=Batcher(max_profiles=7), chunk_rows=4
    )
    assert batches_summary(chunked) == batches_summary(whole)
    monkeypatch.setattr(payloads_module, "ENCODE_ROWS", 3)  # profiles encoded a few rows at a time
    pieces = run_locally(data, email="email", properties=["ltv", "city", "tags"], batcher=Batcher(max_profiles=7))
    assert batches_summary(pieces) == batches_summary(whole)


def test_the_digest_changes_with_what_a_batch_sends() -> None:
    data = pd.DataFrame({"email": emails(3), "first_name": ["A", "B", "C"]})
    (batch,) = run_locally(data, email="email").batches
    assert len(batch.digest) == 16 and int(batch.digest, 16) >= 0
    changed = data.assign(first_name=["A", "B", "D"])
    assert run_locally(changed, email="email").batches[0].digest != batch.digest
    other_row = data.assign(email=emails(3, start=1))
    assert run_locally(other_row, email="email").batches[0].digest != batch.digest
    renamed = data.rename(columns={"first_name": "last_name"})
    assert run_locally(renamed, email="email").batches[0].digest != batch.digest


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
    run = run_locally(
        parts, email="email", properties=["note"], batcher=Batcher(max_profiles=17, max_bytes=3_000), chunk_rows=64
    )
    report = run.report
    assert len(report) == 550
    assert report["segment"].value_counts().to_dict() == {0: 300, 2: 250}
    sent = positions_of(run.batches)
    assert len(sent) == len(set(sent)) == (report["status"] == "pending").sum()
    assert set(report["status"]) == {"pending", "skipped", "duplicate"}
    assert np.flatnonzero(report["status"] == "pending").tolist() == sorted(sent)
    valid = {e for part in parts for e in part["email"] if isinstance(e, str) and "@" in e}
    assert set(report["email"][report["status"] == "pending"]) == valid
    assert all(len(b) <= 17 and len(b.body("Y6nRLr")) <= 3_000 for b in run.batches)


# -- values that cannot be sent: infinities are left out and named in the row's reason ---------------------------


def test_an_infinite_value_is_left_out_and_named_in_the_rows_reason() -> None:
    data = pd.DataFrame(
        {
            "email": ["a@x.io", "b@x.io", "c@x.io", "d@x.io"],
            "ltv": [10.5, np.inf, -np.inf, 2.0],
            "scores": pd.Series([[1.0, float("inf")], None, np.array([np.inf]), ["x"]], dtype=object),
        }
    )
    run = run_locally(data, email="email", properties=["ltv", "scores"])
    assert run.report["status"].tolist() == ["pending"] * 4  # sent, only without the value
    assert run.report["reason"].tolist() == [
        INF_REASON.format("scores=[1.0, inf]"),
        INF_REASON.format("ltv=inf"),
        INF_REASON.format("ltv=-inf, scores=[inf]"),
        None,
    ]
    assert run.partially_sent == 3
    assert [p["attributes"].get("properties") for p in profiles_of(run.batches)] == [
        {"ltv": 10.5},  # a list with an infinity inside is left out whole, as its reason says
        None,
        None,
        {"ltv": 2.0, "scores": ["x"]},
    ]


@pytest.fixture
def conn(sandbox) -> Connection:
    return Connection.from_key(KEY, base_url=sandbox.url, name="sandbox")


def test_ltv_inf_is_sent_without_it_named_counted_and_previewed_as_really_sent(klaviyo_home, sandbox, conn) -> None:
    list_id = sandbox.create_list("Values")
    data = pd.DataFrame(
        {"email": ["a@x.io", "b@x.io", "c@x.io"], "first_name": ["A", "B", "C"], "ltv": [10.5, np.inf, 3.0]},
        index=["r1", "r2", "r3"],
    )
    options = {"email": "email", "list_id": list_id, "connection": conn, "properties": ["first_name", "ltv"]}
    preview = export_segment(data, dry_run=True, progress=False, **options)
    assert preview.would_send == 3 and preview.partially_sent == 1
    assert preview.report["reason"].tolist() == [None, INF_REASON.format("ltv=inf"), None]
    # The preview shows what is really sent: no inf for r2, which is sent without its ltv.
    assert preview.sample.columns.tolist() == ["email", "first_name", "properties.ltv"]
    assert preview.sample["email"].tolist() == ["a@x.io", "b@x.io", "c@x.io"]
    assert preview.sample["properties.ltv"].isna().tolist() == [False, True, False]
    assert preview.sample["properties.ltv"].tolist()[::2] == [10.5, 3.0]
    assert not np.isinf(preview.sample["properties.ltv"].dropna()).any()
    assert preview.summary().endswith(
        "1 row would be sent without a value that cannot be sent (an infinite number, or a latitude or longitude "
        "that is not a number): the report's reason names it."
    )
    assert sandbox.member_emails(list_id) == set()

    result = export_segment(data, progress=False, **options)
    assert (result.sent, result.failed, result.partially_sent) == (3, 0, 1) and result.ok
    assert result.report["status"].tolist() == ["sent"] * 3
    assert result.report["reason"].tolist() == [None, INF_REASON.format("ltv=inf"), None]
    assert "1 row was sent without a value that cannot be sent (an infinite number, or a latitude" in result.summary()
    sandbox.wait_for_jobs(timeout=30)
    assert sandbox.member_emails(list_id) == {"a@x.io", "b@x.io", "c@x.io"}
    stored = {email: sandbox.find_profile(email) for email in ["a@x.io", "b@x.io", "c@x.io"]}
    assert {e: (p["first_name"], p["properties"]) for e, p in stored.items()} == {
        "a@x.io": ("A", {"ltv": 10.5}),
        "b@x.io": ("B", {}),
        "c@x.io": ("C", {"ltv": 3.0}),
    }
    # What the preview showed is what Klaviyo got.
    previewed = preview.sample.to_dict("records")
    for row in previewed:
        profile = stored[row["email"]]
        assert profile["first_name"] == row["first_name"]
        assert profile["properties"].get("ltv") == (None if pd.isna(row["properties.ltv"]) else row["properties.ltv"])
