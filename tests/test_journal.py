"""The run journal (journal.py): one JSON-lines file per run, what find_resumable makes of it, and torn lines.

The old journal kept a fingerprint of the whole input; now a run is known by the digest of its settings (list,
account, email column, mapping, mode), and each accepted batch by the digest of what it sends
(``payloads.Batch.digest``), so a resumed run re-reads its input and skips exactly the batches Klaviyo accepted.
"""

from __future__ import annotations

import json
import re
import stat
import time

import pandas as pd
import pytest

from klaviyo_magic.export import journal
from klaviyo_magic.export.journal import Journal, find_resumable, new_run_id, settings_digest
from klaviyo_magic.export.payloads import Batcher
from klaviyo_magic.export.stream import run_locally

SETTINGS = {
    "list_id": "Y6nRLr",
    "account": "ACCT1",
    "base_url": "https://a.klaviyo.com",
    "email": "email",
    "fields": {"email": "email", "first_name": "first_name"},
    "mode": "add",
}


def started(settings: dict = SETTINGS, run_id: str | None = None) -> Journal:
    return Journal.start(dict(settings), run_id)


def finished(settings: dict = SETTINGS, run_id: str | None = None) -> str:
    run = started(settings, run_id)
    run.finished({"sent": 1})
    run.close()
    return run.run_id


# -- the file ----------------------------------------------------------------------------------------------------


def test_a_run_is_one_private_json_lines_file_of_events(klaviyo_home) -> None:
    run = started()
    run.accepted(1, "JOB1", "2026-01-01T00:00:00+00:00", 10_000, "00ff00ff00ff00ff")
    run.rejected(2, "1234abcd1234abcd", [(10_003, "rejected by Klaviyo: invalid email")])
    run.removed([{"email": "gone@x.io", "profile_id": "01P", "email_hash": 42}])
    run.finished({"sent": 9_999})
    run.close()
    path = klaviyo_home / "runs" / f"{run.run_id}.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    records = journal.read(path)
    assert [r["event"] for r in records] == ["plan", "accepted", "rejected", "removed", "finished"]
    plan = records[0]
    assert plan["settings"] == SETTINGS and plan["fingerprint"] == settings_digest(SETTINGS)
    assert records[1] == {
        "event": "accepted",
        "batch": 1,
        "job": "JOB1",
        "created_at": "2026-01-01T00:00:00+00:00",
        "profiles": 10_000,
        "digest": "00ff00ff00ff00ff",
    }
    assert records[2]["rows"] == [[10_003, "rejected by Klaviyo: invalid email"]]
    assert records[4]["sent"] == 9_999
    assert all(line.endswith("}") for line in path.read_text().splitlines())  # one record a line


def test_run_ids_sort_by_start_time_to_the_microsecond() -> None:
    ids = []
    for _ in range(20):
        ids.append(new_run_id())
        time.sleep(0.0002)  # less than a millisecond apart, as a crashed run and its re-run can start
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}", run_id) for run_id in ids), ids
    assert sorted(ids) == ids and len(set(ids)) == 20


def test_settings_digest_is_the_settings_not_their_order() -> None:
    digest = settings_digest(SETTINGS)
    assert len(digest) == 32 and settings_digest(dict(reversed(list(SETTINGS.items())))) == digest
    for key, value in [("list_id", "Other"), ("account", "ACCT2"), ("email", "mail"), ("mode", "mirror")]:
        assert settings_digest(SETTINGS | {key: value}) != digest
    assert settings_digest(SETTINGS | {"fields": {"email": "email", "first_name": "last_name"}}) != digest


def test_a_torn_last_line_is_skipped(klaviyo_home) -> None:
    run = started()
    run.accepted(1, "JOB1", None, 5, "00ff00ff00ff00ff")
    run.close()
    with run.path.open("a") as handle:
        handle.write('{"event": "accepted", "batch": 2, "job": "JO')  # kill -9 in the middle of a write
    records = journal.read(run.path)
    assert [r["event"] for r in records] == ["plan", "accepted"]
    resumable = find_resumable(SETTINGS)
    assert resumable.run_id == run.run_id and list(resumable.accepted) == [1]


# -- find_resumable ------------------------------------------------------------------------------------------------


def test_nothing_to_resume_without_runs(klaviyo_home) -> None:
    assert find_resumable(SETTINGS) is None


def test_the_newest_unfinished_run_with_the_same_settings_resumes_with_what_it_achieved(klaviyo_home) -> None:
    run = started()
    run.accepted(1, "JOB1", "2026-01-01T00:00:00+00:00", 10_000, "1111111111111111")
    run.accepted(3, "JOB3", None, 10_000, "3333333333333333")
    run.rejected(2, "2222222222222222", [(10_003, "rejected by Klaviyo: invalid email")])
    run.removed([{"email": "gone@x.io", "profile_id": "01P", "email_hash": 42}])
    run.close()
    state = find_resumable(dict(reversed(list(SETTINGS.items()))))  # equal settings in any order
    assert state.run_id == run.run_id
    assert state.accepted == {
        1: ("JOB1", "2026-01-01T00:00:00+00:00", "1111111111111111"),
        3: ("JOB3", None, "3333333333333333"),
    }
    assert state.rejected == {2: ("2222222222222222", [(10_003, "rejected by Klaviyo: invalid email")])}
    assert state.removed == [{"email": "gone@x.io", "profile_id": "01P", "email_hash": 42}]
    reopened = Journal.reopen(state)
    reopened.accepted(4, "JOB4", None, 1, "4444444444444444")
    reopened.close()
    assert reopened.path == run.path  # the same run, continued in its own file
    assert [r["event"] for r in journal.read(run.path)][-2:] == ["resumed", "accepted"]
    assert set(find_resumable(SETTINGS).accepted) == {1, 3, 4}


def test_accepted_lines_without_a_batch_digest_do_not_count(klaviyo_home) -> None:
    """Lines of the old journal format name no digest: a resumed run cannot tell their batches, so it sends them."""
    run = started()
    run.close()
    with run.path.open("a") as handle:
        handle.write(json.dumps({"event": "accepted", "batch": 1, "job": "OLD"}) + "\n")
    assert find_resumable(SETTINGS).accepted == {}


def test_a_run_with_other_settings_is_not_this_run(klaviyo_home) -> None:
    other = started(SETTINGS | {"email": "work_email"})
    other.close()
    assert find_resumable(SETTINGS) is None
    assert find_resumable(SETTINGS | {"email": "work_email"}).run_id == other.run_id
    mine = started()
    mine.close()
    assert find_resumable(SETTINGS).run_id == mine.run_id


def test_a_finished_run_closes_the_earlier_ones(klaviyo_home) -> None:
    crashed = started()
    crashed.accepted(1, "JOB1", None, 5, "1111111111111111")
    crashed.close()
    finished(SETTINGS | {"mode": "mirror"})  # any finished run into the list settles what came before
    assert find_resumable(SETTINGS) is None
    later = started()  # a crash after that is resumable again
    later.close()
    assert find_resumable(SETTINGS).run_id == later.run_id


def test_a_run_finished_in_the_same_second_as_a_crash_still_closes_it(klaviyo_home) -> None:
    for _ in range(20):  # runs within a millisecond or two: the order must not depend on the ids' random tails
        crashed = started()
        crashed.close()
        finished()
        assert find_resumable(SETTINGS) is None


def test_runs_into_other_lists_neither_close_nor_resume_this_one(klaviyo_home) -> None:
    mine = started()
    mine.close()
    finished(SETTINGS | {"list_id": "OtherList"})
    elsewhere = started(SETTINGS | {"list_id": "OtherList"})
    elsewhere.close()
    assert find_resumable(SETTINGS).run_id == mine.run_id


def test_files_that_do_not_start_with_a_plan_are_ignored(klaviyo_home) -> None:
    mine = started()
    mine.close()
    runs = klaviyo_home / "runs"
    (runs / "99999999T999999.999Z-ffffffff.jsonl").write_text('{"event": "pla')  # torn before the plan ended
    (runs / "99999999T999999.999Z-fffffffe.jsonl").write_text("")
    assert find_resumable(SETTINGS).run_id == mine.run_id


@pytest.mark.parametrize("change", [None, "value", "row"])
def test_batch_digests_recognise_the_batches_klaviyo_accepted(klaviyo_home, change: str | None) -> None:
    data = pd.DataFrame({"email": [f"u{i}@x.io" for i in range(6)], "first_name": list("ABCDEF")})
    first = run_locally(data, email="email", batcher=Batcher(max_profiles=2))
    run = started()
    for batch in first.batches[:2]:  # two of three batches accepted, then the run was killed
        run.accepted(batch.number, f"JOB{batch.number}", None, len(batch), batch.digest)
    run.close()
    if change == "value":
        data.loc[2, "first_name"] = "Changed"
    elif change == "row":
        data = data.drop(index=0)
    again = run_locally(data, email="email", batcher=Batcher(max_profiles=2))
    accepted = find_resumable(SETTINGS).accepted
    skipped = [b.number for b in again.batches if b.number in accepted and accepted[b.number][2] == b.digest]
    assert skipped == {None: [1, 2], "value": [1], "row": []}[change]


def test_runs_not_written_for_30_days_are_pruned_and_the_rest_kept(klaviyo_home) -> None:
    import os

    from klaviyo_magic import home

    now = time.time()
    day = 86_400
    old, resumed, recent = new_run_id(), new_run_id(), new_run_id()
    for run_id in (old, resumed, recent):
        started(run_id=run_id).close()
        report = journal.report_path(run_id)
        report.parent.mkdir(parents=True)
        report.write_bytes(b"PAR1")
    dry_run_report = journal.report_path(new_run_id())
    dry_run_report.parent.mkdir()
    dry_run_report.write_bytes(b"PAR1")  # a dry run's: a report without a journal
    spill = home.directory() / "dask-segment-abc"  # a killed export's temporary Dask files
    spill.mkdir()
    (spill / "00000000.pkl").write_bytes(b"rows")

    def age(path, days: float) -> None:
        for each in [path, *(path.iterdir() if path.is_dir() else [])]:
            os.utime(each, (now - days * day, now - days * day))

    for path in (journal.runs_dir() / f"{old}.jsonl", journal.report_path(old).parent, dry_run_report.parent):
        age(path, 31)
    age(journal.runs_dir() / f"{resumed}.jsonl", 45)  # started long ago...
    age(journal.report_path(resumed).parent, 45)
    os.utime(journal.report_path(resumed), (now, now))  # ...but resumed today: its report is being written
    age(spill, 1.25)

    assert journal.prune(now - day / 2) == 3  # half a day earlier: the spill was under a day old then...
    assert spill.exists()
    assert journal.prune(now) == 1  # ...and now it is gone too
    left = sorted(p.name for p in journal.runs_dir().iterdir())
    assert left == sorted([f"{resumed}.jsonl", f"{recent}.jsonl", resumed, recent])
    assert not spill.exists()


def test_a_streamed_dry_runs_report_goes_with_its_result(klaviyo_home, tmp_path) -> None:
    import gc

    from klaviyo_magic import export_segment

    pd.DataFrame({"email": [f"p{i}@example.com" for i in range(10)]}).to_parquet(tmp_path / "s.parquet")
    result = export_segment(tmp_path / "s.parquet", email="email", list_id="Abc123", dry_run=True, offline=True)
    report = result.report_path
    assert report is not None and report.exists() and len(result.report) == 10
    del result
    gc.collect()
    assert not report.exists() and not report.parent.exists()
