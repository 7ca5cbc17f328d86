"""Keeping a list in step with a segment, over real HTTP against the sandbox: incremental re-runs, mirror mode, its
guard, the sync state (a real SQLite database under $KLAVIYO_MAGIC_HOME) and what a dry run previews."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import ExportInterrupted, InputError, export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.export import saved
from klaviyo_magic.export.mirror import RemovalLimitError
from klaviyo_magic.export.state import StateError, StateStore
from klaviyo_magic.progress import ProgressEvent
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_SYNC_TESTS_0123456789abcdef"
CLI = str(Path(sys.executable).with_name("klaviyo-magic"))


def segment(ids, *, plan: str = "gold") -> pd.DataFrame:
    ids = np.asarray(list(ids))
    return pd.DataFrame({"email": [f"m{i}@example.com" for i in ids], "first_name": [f"M{i}" for i in ids],
                         "plan": plan, "ltv": ids * 1.0})  # fmt: skip


@pytest.fixture
def conn(klaviyo_home, sandbox):
    return Connection.from_key(KEY, base_url=sandbox.url, name="sync")


def export(frame, list_id, conn, **options):
    return export_segment(frame, email="email", list_id=list_id, connection=conn, properties=["plan", "ltv"],
                          **options)  # fmt: skip


def members(sb: Sandbox, list_id: str) -> set[str]:
    sb.wait_for_jobs()
    return sb.member_emails(list_id)


def test_two_runs_with_adds_changes_and_leavers_end_with_the_second_segment(sandbox, conn):
    list_id = sandbox.create_list("Sync")
    first = export(segment(range(100)), list_id, conn, mode="mirror")
    assert (first.sent, first.added, first.updated, first.unchanged, first.removed) == (100, 100, 0, 0, 0)
    assert first.removals.empty  # a first run removes nobody: there is nothing it put there before
    second_segment = segment(range(20, 130))  # 0-19 left; 100-129 are new
    second_segment.loc[second_segment.email == "m50@example.com", "plan"] = "platinum"  # one change
    jobs_before = len(sandbox.jobs())
    second = export(second_segment, list_id, conn, mode="mirror")
    assert (second.added, second.updated, second.unchanged, second.removed) == (30, 1, 79, 20)
    assert second.sent == 31 and len(sandbox.jobs()) - jobs_before == 1  # only new and changed rows went out
    assert set(second.removals["status"]) == {"removed"} and second.removals["profile_id"].notna().all()
    assert members(sandbox, list_id) == {f"m{i}@example.com" for i in range(20, 130)}
    assert sandbox.find_profile("m50@example.com")["properties"]["plan"] == "platinum"
    assert "(30 added, 1 updated, 79 unchanged; 20 members removed)" in second.summary()
    assert "added=30 updated=1 unchanged=79 removed=20" in repr(second)
    html = second._repr_html_()
    assert all(f"<td>{label}</td>" in html for label in ("added", "updated", "unchanged", "removed"))
    unchanged = second.unchanged_rows
    assert len(unchanged) == 79 and (unchanged["reason"].str.startswith("unchanged since the last run")).all()


def test_first_run_sends_everything_and_full_resends(sandbox, conn):
    list_id = sandbox.create_list("Full")
    assert export(segment(range(10)), list_id, conn).sent == 10
    again = export(segment(range(10)), list_id, conn)
    assert (again.sent, again.unchanged) == (0, 10) and again.ok
    full = export(segment(range(10)), list_id, conn, full=True)
    assert (full.sent, full.updated, full.unchanged) == (10, 10, 0)


def test_a_changed_mapping_sends_again(sandbox, conn):
    list_id = sandbox.create_list("Mapping")
    export(segment(range(5)), list_id, conn)
    renamed = export_segment(segment(range(5)), email="email", list_id=list_id, connection=conn,
                             properties={"plan": "tier", "ltv": "ltv"})  # fmt: skip
    assert renamed.updated == 5  # what is sent changed (plan goes to another property), so every row goes


def test_2500_leavers_take_several_lookup_pages_and_deletes(sandbox, conn):
    list_id = sandbox.create_list("Many")
    export(segment(range(3_000)), list_id, conn)
    sandbox.clear_log()
    result = export(segment(range(2_500, 3_000)), list_id, conn, mode="mirror", max_removals=2_500)
    assert result.removed == 2_500 and (result.removals["status"] == "removed").all()
    lookups = [r for r in sandbox.requests if r.operation == "get_profiles_for_list" and "filter" in r.query]
    deletes = [r for r in sandbox.requests if r.method == "DELETE"]
    assert len(lookups) >= 25 and all("page%5Bsize%5D=100" in r.query for r in lookups)
    assert len(deletes) == 3  # 1000 ids a call
    assert members(sandbox, list_id) == {f"m{i}@example.com" for i in range(2_500, 3_000)}


def test_members_added_outside_klaviyo_magic_survive_a_mirror_run(sandbox, conn):
    list_id = sandbox.create_list("Shared")
    export(segment(range(10)), list_id, conn)
    sandbox.add_members(list_id, ["signup1@example.com", "signup2@example.com", "m3@example.com"])
    result = export(segment(range(5)), list_id, conn, mode="mirror")
    assert result.removed == 5  # m5..m9, ours
    assert members(sandbox, list_id) == {f"m{i}@example.com" for i in range(5)} | {
        "signup1@example.com", "signup2@example.com"
    }  # fmt: skip


def test_members_someone_else_added_before_klaviyo_magic_sent_them_are_never_removed(sandbox, conn):
    """m1 and m2 signed up before the first run, which sent them too (they were in the segment): when they leave
    the segment, they stay; m0, which klaviyo-magic put there, goes."""
    list_id = sandbox.create_list("Signups first")
    sandbox.add_members(list_id, ["m1@example.com", "M2@Example.com"])
    # Most likely in the same second as the signups: joined_group_at has whole seconds, so the run waits for that
    # second to end before it sends, and its own members join later (mirror.newest_join).
    first = export(segment(range(10)), list_id, conn, mode="mirror")
    assert first.added == 10  # added to the state: what klaviyo-magic sent
    sandbox.clear_log()
    plan = export(segment(range(3, 10)), list_id, conn, mode="mirror", dry_run=True)  # looks them up, read-only
    assert {r.method for r in sandbox.requests} == {"GET"}
    assert dict(zip(plan.removals["email"], plan.removals["status"], strict=True)) == {
        "m0@example.com": "would_remove", "m1@example.com": "would_keep", "m2@example.com": "would_keep"
    }  # fmt: skip
    assert (plan.removed, plan.kept) == (1, 2)
    offline = export(segment(range(3, 10)), list_id, conn, mode="mirror", dry_run=True, offline=True)
    assert set(offline.removals["status"]) == {"would_remove"}  # without a request, it cannot tell
    result = export(segment(range(3, 10)), list_id, conn, mode="mirror")
    assert result.removed == 1 and result.to_dict()["removed"] == 1
    kept = result.removals[result.removals["status"] == "kept"]
    assert sorted(kept["email"]) == ["m1@example.com", "m2@example.com"]
    assert kept["reason"].str.startswith("not removed: in the list before klaviyo-magic first sent it").all()
    assert members(sandbox, list_id) == {f"m{i}@example.com" for i in range(1, 10)}
    kept_line = "2 members who left the segment stayed in the list: someone else added them before klaviyo-magic"
    assert f"{kept_line} sent them (see .removals)." in result.summary()
    # Not ours: forgotten, so a later run neither removes them nor counts them among the members it put there.
    again = export(segment(range(4, 10)), list_id, conn, mode="mirror")
    assert again.removed == 1 and set(again.removals["email"]) == {"m3@example.com"}
    sandbox.add_members(list_id, ["m0@example.com"])  # back, added by hand: the state still says it left
    events: list[ProgressEvent] = []
    export(segment(range(0, 10)), list_id, conn, mode="mirror", progress=events.append)
    export(segment(range(5, 10)), list_id, conn, mode="mirror", progress=events.append)
    removing = [e for e in events if e.stage == "removing"]
    assert removing[-1].done == removing[-1].total == 5  # the kept and the removed: the bar reaches its end


def test_members_a_run_sent_without_seeing_them_imported_are_its_own_when_a_later_run_confirms_them(sandbox, conn):
    """An add run that does not watch its jobs (or is stopped before they finish) confirms nobody; the next run
    confirms them, but they joined the list before it began: they are still the first run's, and removable."""
    list_id = sandbox.create_list("Unwatched")
    export(segment(range(10)), list_id, conn, wait_for_jobs=False)
    sandbox.wait_for_jobs()
    export(segment(range(10)), list_id, conn, mode="mirror")
    result = export(segment(range(5)), list_id, conn, mode="mirror")
    assert result.removed == 5 and set(result.removals["status"]) == {"removed"}
    assert members(sandbox, list_id) == {f"m{i}@example.com" for i in range(5)}


def test_a_record_of_what_a_stopped_run_sent_does_not_outlive_the_run_that_confirms_it(sandbox, conn):
    """m0 is sent unwatched, confirmed by the next run, then leaves and is removed. Months later m0 signs up by
    hand, and joins the segment again: that later run is the first to send it now, so m0 is someone else's."""
    list_id = sandbox.create_list("Sent once")
    export(segment(range(5)), list_id, conn, wait_for_jobs=False)
    sandbox.wait_for_jobs()
    export(segment(range(5)), list_id, conn, mode="mirror")  # confirms m0..m4 as the first run's
    assert export(segment(range(1, 5)), list_id, conn, mode="mirror").removed == 1  # m0 left: ours, removed
    sandbox.add_members(list_id, ["m0@example.com"])  # signs up by hand
    export(segment(range(5)), list_id, conn, mode="mirror")  # in the segment again: sent, already a member
    result = export(segment(range(1, 5)), list_id, conn, mode="mirror")
    assert result.removed == 0 and list(result.removals["status"]) == ["kept"]
    assert "m0@example.com" in members(sandbox, list_id)


def test_a_leaver_whose_joining_time_cannot_be_told_is_kept_and_stays_in_the_state() -> None:
    from klaviyo_magic.export.mirror import DOUBT, KEPT, classify

    members = [(1, "a@x.io", None), (2, "b@x.io", None), (3, "c@x.io", None), (4, "d@x.io", None)]
    found = {1: ("P1", "2026-12-01T10:00:00+00:00"), 2: ("P2", "2026-12-03T10:00:00+00:00"), 3: ("P3", None)}
    marks = {1: "2026-12-02T00:00:00+00:00", 2: "2026-12-02T00:00:00+00:00", 3: "2026-12-02T00:00:00+00:00"}
    kept, doubtful, gone = classify(members, found, marks)  # 1 joined first, 3 cannot be told, 4 gone; 2 goes
    assert kept == {1: KEPT.format(joined="2026-12-01T10:00:00+00:00"), 3: DOUBT} and doubtful == [3] and gone == [4]
    assert classify(members, found, {}) == ({}, [], [4])  # the list was empty when they were first sent


def test_the_guard_trips_and_removes_nobody(sandbox, conn):
    list_id = sandbox.create_list("Guarded")
    export(segment(range(1_000)), list_id, conn)
    sandbox.clear_log()
    with pytest.raises(RemovalLimitError) as caught:
        export(segment(range(850)), list_id, conn, mode="mirror")  # 150 would go: over 10% (100)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "150 members left the segment" in message
    assert "max_removals=100" in message and "max_removals=150 (--max-removals 150)" in message
    assert not [r for r in sandbox.requests if r.method == "DELETE"]
    assert len(members(sandbox, list_id)) == 1_000
    assert caught.value.result.unchanged == 850  # the run itself went through: its result is kept
    allowed = export(segment(range(850)), list_id, conn, mode="mirror", max_removals=150)
    assert allowed.removed == 150 and len(members(sandbox, list_id)) == 850


def test_an_empty_segment_never_removes_without_explicit_allowance(sandbox, conn):
    list_id = sandbox.create_list("Empty")
    export(segment(range(20)), list_id, conn)
    empty = segment([]).astype({"email": object})
    with pytest.raises(RemovalLimitError, match="the segment has no valid email"):
        export(empty, list_id, conn, mode="mirror")
    assert len(members(sandbox, list_id)) == 20
    result = export(empty, list_id, conn, mode="mirror", max_removals=20)
    assert result.removed == 20 and members(sandbox, list_id) == set()


def test_a_saved_limit_never_lets_an_empty_segment_empty_the_list(sandbox, conn, monkeypatch):
    """A saved mirror export's max_removals allows a week's ordinary churn; a query that broke and returned no
    row must still not empty the list: that takes an allowance given to the run itself."""
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    monkeypatch.setenv("KLAVIYO_BASE_URL", sandbox.url)
    list_id = sandbox.create_list("Weekly")
    saved.save(saved.SavedExport(name="weekly", segments=("vip",), email="email", list_id=list_id,
                                 properties=("plan", "ltv"), mode="mirror", max_removals=500))  # fmt: skip
    saved.run("weekly", {"vip": segment(range(20))})
    assert saved.run("weekly", {"vip": segment(range(5, 20))}).removed == 5  # ordinary churn: within the limit
    empty = segment([]).astype({"email": object})
    with pytest.raises(RemovalLimitError) as caught:
        saved.run("weekly", {"vip": empty})
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "all 15 members" in message
    assert "the saved export's max_removals does not cover an empty segment" in message
    assert "allow it for this run: max_removals=15 (--max-removals 15)" in message
    assert len(members(sandbox, list_id)) == 15 and not [r for r in sandbox.requests if r.method == "DELETE"][5:]
    assert saved.run("weekly", {"vip": empty}, max_removals=15).removed == 15  # allowed for this run
    assert members(sandbox, list_id) == set()


def test_members_someone_else_removed_are_reported_and_forgotten(sandbox, conn):
    list_id = sandbox.create_list("Gone")
    export(segment(range(6)), list_id, conn)
    sandbox.remove_members(list_id, ["m5@example.com"])
    result = export(segment(range(4)), list_id, conn, mode="mirror")
    gone = result.removals.set_index("email")
    assert gone.loc["m4@example.com", "status"] == "removed" and gone.loc["m4@example.com", "reason"] is None
    assert gone.loc["m5@example.com", "reason"].startswith("no longer a member of the list")
    assert export(segment(range(4)), list_id, conn, mode="mirror").removals.empty  # nothing left to remove


def test_rows_klaviyo_failed_do_not_enter_the_state(sandbox, conn):
    list_id = sandbox.create_list("Failed")
    sandbox.fail_emails(r"^m3@")
    first = export(segment(range(5)), list_id, conn)
    assert first.failed == 1
    sandbox.reset_faults()
    again = export(segment(range(5)), list_id, conn)
    assert (again.added, again.unchanged) == (1, 4)  # the failed one is sent again, as new


def test_dry_run_previews_the_plan_and_writes_nothing(sandbox, conn):
    list_id = sandbox.create_list("Preview")
    export(segment(range(10)), list_id, conn)
    nxt = segment(range(3, 12))
    nxt.loc[nxt.email == "m4@example.com", "ltv"] = 99.0
    sandbox.clear_log()
    plan = export(nxt, list_id, conn, mode="mirror", dry_run=True)
    assert {r.method for r in sandbox.requests} == {"GET"}
    assert (plan.would_send, plan.added, plan.updated, plan.unchanged, plan.removed) == (3, 2, 1, 6, 3)
    assert sorted(plan.added_rows["email"]) == ["m10@example.com", "m11@example.com"]
    assert list(plan.updated_rows["email"]) == ["m4@example.com"]
    assert sorted(plan.removals["email"]) == ["m0@example.com", "m1@example.com", "m2@example.com"]
    assert set(plan.removals["status"]) == {"would_remove"}
    assert "3 members would be removed" in plan.summary() and "Nothing was sent" in plan.summary()
    assert len(members(sandbox, list_id)) == 10  # the dry run changed nothing...
    real = export(nxt, list_id, conn, mode="mirror")  # ...so the real run does exactly what it previewed
    assert (real.added, real.updated, real.unchanged, real.removed) == (2, 1, 6, 3)


def damaged_state_after_a_first_run(sandbox, conn, home: Path, name: str) -> tuple[str, Path]:
    """A list with 10 members from a first run, whose sync state was then overwritten with garbage."""
    list_id = sandbox.create_list(name)
    export(segment(range(10)), list_id, conn)
    state = home / "sync.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    state.write_bytes(b"this is not a database" * 100)
    return list_id, state


def test_an_unreadable_state_is_set_aside_and_removes_nobody(sandbox, conn, klaviyo_home):
    list_id, _ = damaged_state_after_a_first_run(sandbox, conn, klaviyo_home, "Corrupt")
    result = export(segment(range(5)), list_id, conn, mode="mirror")
    assert result.removed == 0 and result.sent == 5  # a first run again: sends all, removes nobody
    assert any("could not be read" in w and "nobody is removed" in w for w in result.warnings)
    assert "could not be read" in result.summary()
    assert list(klaviyo_home.glob("sync.sqlite3.unreadable-*"))
    assert len(members(sandbox, list_id)) == 10


def test_a_lost_state_is_a_first_run(sandbox, conn, klaviyo_home):
    list_id = sandbox.create_list("Lost")
    export(segment(range(10)), list_id, conn)
    for path in klaviyo_home.glob("sync.sqlite3*"):
        path.unlink()
    preview = export(segment(range(5)), list_id, conn, mode="mirror", dry_run=True)
    result = export(segment(range(5)), list_id, conn, mode="mirror")
    assert (result.added, result.removed) == (5, 0) and len(members(sandbox, list_id)) == 10
    said = f"no sync state for list '{list_id}' (its first mirror run here, or the state was lost)"
    for shown in (result, preview):
        assert any(w.startswith(said) and "nobody is removed" in w for w in shown.warnings)
        assert said in shown.summary()
    assert not any(said in w for w in export(segment(range(5)), list_id, conn, mode="mirror").warnings)


def test_a_dry_run_reads_a_damaged_state_without_moving_it(sandbox, conn, klaviyo_home):
    list_id, state = damaged_state_after_a_first_run(sandbox, conn, klaviyo_home, "Corrupt preview")
    preview = export(segment(range(5)), list_id, conn, mode="mirror", dry_run=True)
    assert (preview.added, preview.removed) == (5, 0)
    (warning,) = [w for w in preview.warnings if "could not be read" in w]
    assert warning.endswith("a real run will move it aside and start afresh: send every row and remove nobody")
    assert state.read_bytes().startswith(b"this is not a database")  # a dry run moves nothing
    assert not list(klaviyo_home.glob("sync.sqlite3.unreadable-*"))
    real = export(segment(range(5)), list_id, conn, mode="mirror")
    assert any("it was moved to sync.sqlite3.unreadable-" in w for w in real.warnings) and real.removed == 0


def test_a_busy_state_is_waited_for_and_never_set_aside(sandbox, conn, klaviyo_home, monkeypatch):
    """Another process writing the state (a long transaction) is not damage: the run waits, then stops with one
    line; the state stays where it is, whole."""
    list_id = sandbox.create_list("Busy state")
    export(segment(range(10)), list_id, conn)
    monkeypatch.setattr(sqlite3, "connect", _quick_timeout(sqlite3.connect))
    writer = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(klaviyo_home / "sync.sqlite3")],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "holding"
        with pytest.raises(StateError) as caught:
            export(segment(range(12)), list_id, conn, mode="mirror")
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and "is busy: another klaviyo-magic process" in message
        assert "wait until it ends, then run this again" in message
    finally:
        writer.kill()
        writer.wait()
    assert not list(klaviyo_home.glob("sync.sqlite3.unreadable-*"))
    again = export(segment(range(12)), list_id, conn, mode="mirror")
    assert (again.added, again.unchanged, again.removed) == (2, 10, 0) and not again.warnings


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("holding", flush=True)
time.sleep(60)
"""


def _quick_timeout(connect):
    """sqlite3.connect waiting 0.5 s for a lock instead of the 30 s a real run waits."""

    def quick(*args, **kwargs):
        return connect(*args, **{**kwargs, "timeout": 0.5})

    return quick


def test_mirror_needs_the_jobs_watched_and_an_unwatched_run_says_so(sandbox, conn):
    list_id = sandbox.create_list("Unwatched")
    with pytest.raises(InputError, match="mode='mirror' needs wait_for_jobs=True") as caught:
        export(segment(range(5)), list_id, conn, mode="mirror", wait_for_jobs=False)
    assert len(str(caught.value).splitlines()) == 1 and not sandbox.requests
    result = export(segment(range(5)), list_id, conn, wait_for_jobs=False)
    assert result.sent == 5 and any(w.startswith("wait_for_jobs=False: the import jobs were not watched")
                                    for w in result.warnings)  # fmt: skip


def test_two_runs_on_one_list_at_once(klaviyo_home):
    with Sandbox(rate_limits=False, job_delay=0.5) as sb:
        conn = Connection.from_key(KEY, base_url=sb.url, name="sync")
        list_id = sb.create_list("Busy")
        started = threading.Event()
        outcome: dict[str, object] = {}

        def slow_run() -> None:
            def note(event: ProgressEvent) -> None:
                if event.stage == "sending":
                    started.set()

            outcome["first"] = export(segment(range(50)), list_id, conn, progress=note)

        thread = threading.Thread(target=slow_run)
        thread.start()
        assert started.wait(10)
        with pytest.raises(StateError) as caught:
            export(segment(range(50)), list_id, conn)
        thread.join(30)
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and f"list '{list_id}' is being exported by run " in message
        assert f"pid {os.getpid()}" in message and "wait until it ends" in message
        assert outcome["first"].sent == 50  # type: ignore[attr-defined]
        # Once the first run ended, the list is free again.
        assert export(segment(range(50)), list_id, conn).unchanged == 50


def test_state_is_per_account_and_list(klaviyo_home, sandbox, conn):
    list_a, list_b = sandbox.create_list("A"), sandbox.create_list("B")
    export(segment(range(5)), list_a, conn)
    assert export(segment(range(5)), list_b, conn).added == 5  # another list: its own state
    db = sqlite3.connect(klaviyo_home / "sync.sqlite3")
    accounts = {row[0] for row in db.execute("SELECT account_id FROM lists")}
    assert accounts == {sandbox.account["id"]}
    store, _ = StateStore.open()
    state = store.list_state(sandbox.url, list_a, sandbox.account["id"], create=False)
    frame = state.members_frame()
    assert set(frame["email"]) == {f"m{i}@example.com" for i in range(5)} and (frame["first_run"] == 1).all()
    store.close()
    assert oct((klaviyo_home / "sync.sqlite3").stat().st_mode & 0o777) == "0o600"
    assert KEY not in (klaviyo_home / "sync.sqlite3").read_bytes().decode("latin-1")


def test_saved_exports_keep_mirror_and_history_shows_the_four_numbers(sandbox, conn, monkeypatch):
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    monkeypatch.setenv("KLAVIYO_BASE_URL", sandbox.url)
    list_id = sandbox.create_list("Weekly")
    saved.save(saved.SavedExport(name="weekly", segments=("vip",), email="email", list_id=list_id,
                                 properties=("plan", "ltv"), mode="mirror", max_removals=500))  # fmt: skip
    assert saved.get("weekly").mode == "mirror" and saved.get("weekly").max_removals == 500
    saved.run("weekly", {"vip": segment(range(10))})
    result = saved.run("weekly", {"vip": segment(range(3, 12))})
    assert result.mode == "mirror" and (result.added, result.unchanged, result.removed) == (2, 7, 3)
    history = saved.history("weekly")
    assert list(history.loc[0, ["added", "updated", "unchanged", "removed"]]) == [2, 0, 7, 3]


def removals_journaled(home: Path) -> int:
    """Members the newest run's journal says it removed."""
    runs = sorted((home / "runs").glob("*.jsonl"))
    if not runs:
        return 0
    records = [json.loads(line) for line in runs[-1].read_text().splitlines() if line.endswith("}")]
    return sum(len(r["members"]) for r in records if r.get("event") == "removed")


@pytest.mark.slow
def test_kill_9_during_removals_then_resume_ends_exact(klaviyo_home, tmp_path):
    with Sandbox(rate_limits=False) as sb:
        list_id = sb.create_list("Killed")
        env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY,
               "KLAVIYO_BASE_URL": sb.url}  # fmt: skip
        first = tmp_path / "first.csv"
        segment(range(5_000)).to_csv(first, index=False)
        base = [CLI, "export", "-e", "email", "-l", list_id, "-p", "plan,ltv", "--json", "--no-progress"]
        done = subprocess.run([*base, "-i", str(first)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        second = tmp_path / "second.csv"
        segment(range(3_000)).to_csv(second, index=False)  # 2,000 leave: two removal calls
        # The first removal call goes through, the second hangs: the kill comes between them.
        sb.delay_next("DELETE /api/lists/*/relationships/profiles", seconds=0.01, count=1)
        sb.delay_next("DELETE /api/lists/*/relationships/profiles", seconds=30, count=1)
        command = [*base, "-i", str(second), "--mirror", "--max-removals", "2000"]
        killed = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not removals_journaled(klaviyo_home) and time.monotonic() < deadline:
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert killed.returncode == -signal.SIGKILL
        assert removals_journaled(klaviyo_home) == 1_000
        sb.reset_faults()  # a kill that came before the second call: its 30 s wait is not for the resumed run
        resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        outcome = json.loads(resumed.stdout)
        assert outcome["removed"] == 2_000 and outcome["unchanged"] == 3_000
        sb.wait_for_jobs()
        assert sb.member_emails(list_id) == {f"m{i}@example.com" for i in range(3_000)}
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(again.stdout)["removed"] == 0  # the state matches the list: nothing left to do


def test_a_run_that_only_removes_says_what_it_did_at_the_end_of_its_progress(sandbox, conn):
    list_id = sandbox.create_list("Only leavers")
    export(segment(range(10)), list_id, conn, mode="mirror")
    events: list[ProgressEvent] = []
    result = export(segment(range(7)), list_id, conn, mode="mirror", progress=events.append)
    assert (result.sent, result.unchanged, result.removed) == (0, 7, 3)
    assert events[-1].stage == "done" and events[-1].message == "Nothing to send: 7 unchanged · 3 removed"


def test_ctrl_c_while_leavers_are_looked_up_stops_every_lookup(klaviyo_home):
    """Ctrl-C reaches the main thread only; the member lookups retrying a 503 in their own threads must stop with
    the run, not go on sending requests (and printing retry notices) after it returned."""
    with Sandbox(rate_limits=False) as sb:
        conn = Connection.from_key(KEY, base_url=sb.url, name="sync")
        list_id = sb.create_list("Interrupted removals")
        export(segment(range(2_000)), list_id, conn)
        sb.fail_next("GET /api/lists/*/profiles", count=1_000, status=503, after=1)  # after the list's newest member

        interrupted = threading.Event()

        def interrupt_at_first_retry(event: ProgressEvent) -> None:
            # At a lookup's second retry the rows (all unchanged) are long done: the run waits for the lookups.
            retry = event.retry
            if retry is not None and retry.attempt >= 2 and not interrupted.is_set():  # one Ctrl-C, not one a thread
                interrupted.set()
                os.kill(os.getpid(), signal.SIGINT)

        with pytest.raises(ExportInterrupted) as caught:
            export(segment(range(1_000, 2_000)), list_id, conn, mode="mirror", max_removals=1_000,
                   progress=interrupt_at_first_retry)  # fmt: skip
        removals = caught.value.result.removals
        assert len(removals) == 1_000 and set(removals["reason"]) == {"not removed: the export was interrupted"}
        deadline = time.monotonic() + 2
        while any(t.name.startswith("klaviyo-lookup") for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [t.name for t in threading.enumerate() if t.name.startswith(("klaviyo-lookup", "klaviyo-leavers"))]
        seen = len(sb.requests)
        time.sleep(1.5)
        assert len(sb.requests) == seen  # nothing more went to Klaviyo
        assert len(members(sb, list_id)) == 2_000  # nobody was removed
