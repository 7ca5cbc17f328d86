"""The sync state (state.py): a real SQLite database under $KLAVIYO_MAGIC_HOME holding, per list, a log of changes
(members confirmed, removed, profile ids learned) folded into the members; an unreadable database moved aside and
reported; the hash check; and the per-list lock, held by another process. (test_sync.py has the same over HTTP.)"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.export import hashing
from klaviyo_magic.export.state import StateError, StateStore, list_lock, run_description, state_path

KEY = "pk_state_tests_0123456789abcdef"
BASE = "http://127.0.0.1:9"


@pytest.fixture
def store(klaviyo_home):
    store, warning = StateStore.open()
    assert warning is None
    yield store
    store.close()


def confirm(list_state, run: int, emails: list[str], row_hashes: list[int]) -> np.ndarray:
    hashes = hashing.email_hashes(emails)
    list_state.confirm(run, emails, hashes, np.array(row_hashes, dtype=np.int64))
    return hashes


# -- the database --------------------------------------------------------------------------------------------------


def test_the_state_lives_in_the_home_readable_by_its_owner_only(store, klaviyo_home) -> None:
    assert store.path == state_path() == klaviyo_home / "sync.sqlite3"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600  # it holds customers' emails
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_lists_are_kept_per_base_url_account_and_list(store) -> None:
    assert store.list_state(BASE, "L1", "acct", create=False) is None  # nothing is created unless asked
    first = store.list_state(BASE, "L1", "acct", create=True)
    assert store.list_state(BASE, "L1", "acct", create=True).key == first.key
    others = [
        store.list_state(BASE, "L2", "acct", create=True),
        store.list_state(BASE, "L1", "other", create=True),
        store.list_state("http://127.0.0.1:8", "L1", "acct", create=True),
    ]
    assert first.key not in {other.key for other in others} and len({other.key for other in others}) == 3
    confirm(first, first.start_run("r1"), ["a@x.io"], [1])
    assert store.list_state(BASE, "L1", "acct", create=False).members() == 1
    assert [len(other.snapshot(fresh=True)) for other in others] == [0, 0, 0]


def test_without_an_account_id_the_most_recently_used_list_is_read(store) -> None:
    """An offline dry run does not know the account: it reads the state of the list it was last used with."""
    older = store.list_state(BASE, "L1", "old-acct", create=True)
    newer = store.list_state(BASE, "L1", "new-acct", create=True)
    store.query("UPDATE lists SET used_at = used_at - 100 WHERE id = ?", (older.key,))
    assert store.list_state(BASE, "L1", None, create=False).key == newer.key
    older.start_run("r-later")  # starting a run marks the list as used now
    store.query("UPDATE lists SET used_at = used_at - 100 WHERE id = ?", (newer.key,))
    assert store.list_state(BASE, "L1", None, create=False).key == older.key


def test_a_run_keeps_its_number_when_resumed(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    first = members.start_run("r1")
    assert members.start_run("r1") == first  # resumed: the same run
    assert members.start_run("r2") == first + 1


def test_each_member_carries_the_newest_join_of_the_run_that_first_sent_it(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    first = members.start_run("r1", "2026-12-01T10:00:00+00:00")
    a, b = confirm(members, first, ["a@x.io", "b@x.io"], [1, 2])
    second = members.start_run("r2", "2026-12-02T10:00:00+00:00")
    members.snapshot(fresh=True)
    (c,) = confirm(members, second, ["c@x.io"], [3])
    confirm(members, second, ["a@x.io"], [9])  # changed: still first sent by r1
    members.snapshot(fresh=True)
    assert members.newest_joins([a, b, c]) == {int(a): "2026-12-01T10:00:00+00:00", int(b): "2026-12-01T10:00:00+00:00",
                                               int(c): "2026-12-02T10:00:00+00:00"}  # fmt: skip
    assert members.start_run("r1", "2026-12-09T00:00:00+00:00") == first  # resumed: what it saw when it began
    assert members.newest_joins([a])[int(a)] == "2026-12-01T10:00:00+00:00"


def test_a_state_from_before_newest_join_gains_the_column_and_keeps_its_runs(klaviyo_home) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:  # the runs table as the first release wrote it
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, list INTEGER NOT NULL, "
                   "started_at INTEGER NOT NULL)")  # fmt: skip
        db.execute("INSERT INTO runs VALUES (1, 'old', 1, 0)")
    store, warning = StateStore.open()
    try:
        assert warning is None
        members = store.list_state(BASE, "L1", "acct", create=True)
        (a,) = confirm(members, members.start_run("old"), ["a@x.io"], [1])
        members.snapshot(fresh=True)
        assert members.newest_joins([a]) == {int(a): None}  # not known: the members are taken as its own, as before
        assert members.start_run("new", "2026-12-01T10:00:00+00:00") == 2
    finally:
        store.close()


def test_confirm_forget_snapshot_and_rows(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    run1 = members.start_run("r1")
    hashes = confirm(members, run1, ["a@x.io", "b@x.io", "c@x.io"], [11, 12, 13])
    snapshot = members.snapshot(fresh=True)
    assert len(snapshot) == 3
    assert snapshot.email_hash.tolist() == sorted(hashes.tolist())  # sorted, for binary searches
    known, row_hash, last_run, _ = snapshot.lookup(np.array([hashes[1], 12345, hashes[0]]))
    assert known.tolist() == [True, False, True]
    assert row_hash[[0, 2]].tolist() == [12, 11] and last_run[[0, 2]].tolist() == [run1, run1]

    run2 = members.start_run("r2")  # a new run reads the state afresh
    confirm(members, run2, ["b@x.io", "d@x.io"], [22, 24])  # b@ changed, d@ new
    snapshot = members.snapshot(fresh=True)
    known, where = snapshot.find(hashing.email_hashes(["a@x.io", "b@x.io", "d@x.io"]))
    assert known.all()
    assert snapshot.row_hash[where].tolist() == [11, 22, 24]
    assert snapshot.last_run[where].tolist() == [run1, run2, run2]
    assert snapshot.first_run[where].tolist() == [run1, run1, run2]  # b@ was first put there by run 1
    assert snapshot.superseded == 1  # b@'s first confirmation

    members.remember_profile_ids({int(hashes[0]): "01PROFILEA"})
    assert sorted(members.rows(hashes)) == sorted(
        [(int(hashes[0]), "a@x.io", "01PROFILEA"), (int(hashes[1]), "b@x.io", None), (int(hashes[2]), "c@x.io", None)]
    )
    assert members.profile_ids() == {int(hashes[0]): "01PROFILEA"}
    members.forget([int(hashes[0]), int(hashes[2])])
    members.forget([])  # nothing to write
    again = store.list_state(BASE, "L1", "acct", create=False)
    assert again.members() == 2
    assert [email for _, email, _ in again.rows(hashes)] == ["b@x.io"]  # only members come back
    assert sorted(again.snapshot().email_hash.tolist()) == sorted(hashing.email_hashes(["b@x.io", "d@x.io"]).tolist())
    frame = again.members_frame()
    assert frame.to_dict("records") == sorted(
        [
            {"email": "b@x.io", "profile_id": None, "first_run": run1, "last_run": run2},
            {"email": "d@x.io", "profile_id": None, "first_run": run2, "last_run": run2},
        ],
        key=lambda row: int(hashing.email_hashes([row["email"]])[0]),
    )
    confirm(again, run2, ["a@x.io"], [31])  # removed, then put back: a member again, with its latest values
    known, row_hash, _, _ = again.snapshot(fresh=True).lookup(hashes[:1])
    assert known.tolist() == [True] and row_hash.tolist() == [31]


def test_a_run_decides_against_the_state_as_it_was_when_it_began(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    run = members.start_run("r1")
    before = members.snapshot()
    confirm(members, run, ["a@x.io"], [1])
    assert members.snapshot() is before and len(before) == 0  # kept for the run...
    assert len(members.snapshot(fresh=True)) == 1  # ...until read afresh, as the next run does


def test_rows_reads_members_from_more_changes_than_one_sqlite_statement_takes(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    run = members.start_run("r1")
    emails = [f"u{i}@x.io" for i in range(1_234)]
    for start in range(0, len(emails), 2):  # a change of two members each: 617 changes
        confirm(members, run, emails[start : start + 2], [start, start + 1])
    found = store.list_state(BASE, "L1", "acct", create=False).rows(hashing.email_hashes([*emails, "nobody@x.io"]))
    assert sorted(email for _, email, _ in found) == sorted(emails)


def test_compacting_the_log_keeps_every_member_and_profile_id(store) -> None:
    members = store.list_state(BASE, "L1", "acct", create=True)
    run1 = members.start_run("r1")
    emails = [f"u{i}@x.io" for i in range(150_000)]
    hashes = hashing.email_hashes(emails)
    for row_hash in (1, 2, 3):  # every member confirmed three times: 300,000 entries superseded
        members.confirm(run1, emails, hashes, np.full(len(emails), row_hash, np.int64))
    members.forget(hashes[:10])
    members.remember_profile_ids({int(hashes[10]): "01PROFILE10"})
    before = members.snapshot(fresh=True)
    assert before.superseded == 300_020 and len(before) == 149_990  # 450,010 entries for 149,990 members
    run2 = members.start_run("r2")  # superseded entries outnumber the members: the log is rewritten first
    kinds = store.query("SELECT kind, members FROM changes ORDER BY id")
    assert kinds == [("confirmed", 100_000), ("confirmed", 49_990), ("profile_ids", 1)]
    after = members.snapshot(fresh=True)
    assert after.superseded == 0 and run2 == run1 + 1
    for name in ("email_hash", "row_hash", "first_run", "last_run"):
        assert getattr(after, name).tolist() == getattr(before, name).tolist(), name
    assert members.rows(hashes[10:12]) == [
        (int(hashes[10]), emails[10], "01PROFILE10"),
        (int(hashes[11]), emails[11], None),
    ]


def test_an_empty_state_snapshots_and_looks_up(store) -> None:
    snapshot = store.list_state(BASE, "L1", "acct", create=True).snapshot()
    assert len(snapshot) == 0 and snapshot.email_hash.dtype == np.int64
    known, row_hash, last_run, _ = snapshot.lookup(np.array([1, 2]))
    assert known.tolist() == [False, False] and len(row_hash) == len(last_run) == 2


# -- a database that cannot be read ----------------------------------------------------------------------------


def test_an_unreadable_database_is_moved_aside_and_reported(klaviyo_home) -> None:
    store, _ = StateStore.open()
    members = store.list_state(BASE, "L1", "acct", create=True)
    confirm(members, members.start_run("r1"), ["a@x.io"], [1])
    store.close()
    state_path().write_bytes(b"this is not a database " * 200)
    store, warning = StateStore.open()
    try:
        aside = [p for p in klaviyo_home.iterdir() if p.name.startswith("sync.sqlite3.unreadable-")]
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
        assert warning == (
            f"the sync state {state_path()} could not be read (file is not a database); it was moved to "
            f"{aside[0].name} and this run starts afresh: every row is sent and nobody is removed"
        )
        assert "\n" not in warning
        assert store.list_state(BASE, "L1", "acct", create=False) is None  # a fresh, empty state
        assert store.list_state(BASE, "L1", "acct", create=True).members() == 0
        assert store.query("SELECT count(*) FROM changes") == [(0,)]
    finally:
        store.close()


def test_a_state_written_by_a_newer_version_is_set_aside_not_overwritten(klaviyo_home) -> None:
    store, _ = StateStore.open()
    store.query("UPDATE meta SET value = '99' WHERE key = 'schema'")
    store.close()
    store, warning = StateStore.open()
    store.close()
    assert "could not be read (written by a newer klaviyo-magic (schema 99))" in warning
    (aside,) = [p for p in klaviyo_home.iterdir() if ".unreadable-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert sqlite3.connect(aside).execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("99",)


def test_a_changed_hash_function_rehashes_the_stored_emails(klaviyo_home) -> None:
    """If this process hashed emails differently from the one that wrote the state (a pandas upgrade could), the
    stored hashes would match nobody: every member would look new, and every member of the state look gone."""
    store, _ = StateStore.open()
    members = store.list_state(BASE, "L1", "acct", create=True)
    run = members.start_run("r1")
    emails = ["a@x.io", "b@x.io"]
    other_function = hashing.email_hashes(emails) + 1  # as another hash function would have written them
    members.confirm(run, emails, other_function, np.array([1, 2], dtype=np.int64))
    members.remember_profile_ids({int(other_function[0]): "01PROFILEA"})
    store.query("UPDATE meta SET value = '[1, 2, 3]' WHERE key = 'hash_check'")
    assert not members.snapshot(fresh=True).lookup(hashing.email_hashes(emails))[0].any()
    store.close()
    store, warning = StateStore.open()
    try:
        assert warning is None
        members = store.list_state(BASE, "L1", "acct", create=False)
        known, row_hash, _, _ = members.snapshot().lookup(hashing.email_hashes(emails))
        assert known.tolist() == [True, True] and row_hash.tolist() == [1, 2]
        assert sorted(members.rows(hashing.email_hashes(emails))) == sorted(
            zip(hashing.email_hashes(emails).tolist(), emails, ["01PROFILEA", None], strict=True)
        )
        assert store.query("SELECT value FROM meta WHERE key = 'hash_check'")[0][0] == str(hashing.check())
    finally:
        store.close()


# -- the per-list lock -----------------------------------------------------------------------------------------

HOLDER = """
import sys
from klaviyo_magic.export.state import list_lock, run_description
with list_lock(sys.argv[1], sys.argv[2], sys.argv[3], run_description("run-in-cron")):
    print("locked", flush=True)
    sys.stdin.read()  # hold the list until the test closes this process's stdin
"""


def hold(list_id: str, account: str = "acct", base_url: str = BASE) -> subprocess.Popen:
    """Another process holding ``list_id``, as a cron job exporting it would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, base_url, account, list_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert holder.stdout.readline() == "locked\n"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


def test_a_second_holder_gets_one_line_naming_the_first(klaviyo_home) -> None:
    holder = hold("L1")
    try:
        with pytest.raises(StateError) as info:
            with list_lock(BASE, "acct", "L1", run_description("run-in-notebook")):
                pytest.fail("two runs held list L1 at once")
        message = str(info.value)
        assert message.startswith(f"list 'L1' is being exported by run run-in-cron (pid {holder.pid} on ")
        assert message.endswith(" UTC); wait until it ends, then run this again")
        assert "\n" not in message and isinstance(info.value, ValueError)  # an InputError, one line
        with list_lock(BASE, "acct", "L2", "another list"):  # other lists, accounts, hosts are free
            with list_lock(BASE, "other-acct", "L1", "another account"):
                with list_lock("http://127.0.0.1:8", "acct", "L1", "another host"):
                    pass
    finally:
        release(holder)
    with list_lock(BASE, "acct", "L1", run_description("run-in-notebook")):  # free once the holder ended
        pass


def test_the_lock_is_released_when_its_holder_is_killed(klaviyo_home) -> None:
    holder = hold("L1")
    holder.kill()  # kill -9: no finally, no cleanup; the system releases the lock
    holder.wait(timeout=30)
    holder.stdin.close()
    with list_lock(BASE, "acct", "L1", "next run"):
        lock_files = list((klaviyo_home / "locks").iterdir())
        assert len(lock_files) == 1 and lock_files[0].read_text() == "next run"
        assert stat.S_IMODE(lock_files[0].stat().st_mode) == 0o600


def test_the_same_process_cannot_hold_a_list_twice(klaviyo_home) -> None:
    with list_lock(BASE, "acct", "L1", "first export (notebook thread)"):
        with pytest.raises(StateError, match=r"^list 'L1' is being exported by first export \(notebook thread\);"):
            with list_lock(BASE, "acct", "L1", "second export"):
                pass


@pytest.fixture
def conn(sandbox) -> Connection:
    return Connection.from_key(KEY, base_url=sandbox.url, name="sandbox")


def test_an_export_into_a_list_another_process_holds_stops_before_sending(klaviyo_home, sandbox, conn) -> None:
    list_id = sandbox.create_list("Busy")
    data = pd.DataFrame({"email": ["a@x.io", "b@x.io"]})
    holder = hold(list_id, account=sandbox.account["id"], base_url=conn.base_url)
    try:
        with pytest.raises(StateError, match=rf"^list '{list_id}' is being exported by run run-in-cron \(pid "):
            export_segment(data, email="email", list_id=list_id, connection=conn, progress=False)
        assert {r.method for r in sandbox.requests} == {"GET"}  # read-only, then stopped
        assert not (klaviyo_home / "runs").exists() or not list((klaviyo_home / "runs").glob("*.jsonl"))
    finally:
        release(holder)
    result = export_segment(data, email="email", list_id=list_id, connection=conn, progress=False)
    assert result.sent == 2
