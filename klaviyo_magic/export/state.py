"""Sync state: what klaviyo-magic put in each Klaviyo list, so re-runs send only what changed and mirror runs
remove only the members we added.

One SQLite database, ``$KLAVIYO_MAGIC_HOME/sync.sqlite3`` (WAL journal, so a reader never waits for a writer),
holds per list (base URL, Klaviyo account id, list id) one row per member we put there: the normalised email,
its 64-bit hash, the hash of what we sent (``hashing.py``), the Klaviyo profile id when known, which run added
it and which run last sent it, and when. Rows enter only once Klaviyo confirmed them (the import job complete,
the profile not among its import errors) and leave only after Klaviyo's 204 to their removal, each in its own
transaction, so a killed run leaves the state as true as it was at its last commit; see docs/sync.md.

Two runs writing one list's state at once (a cron job and a notebook) would each remove what the other just
added: :meth:`ListState.lock` takes an exclusive lock that the operating system releases when the process
ends, however it ends, and a second run stops with a message naming the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import home
from ..errors import InputError
from . import hashing

STATE_FILE = "sync.sqlite3"
LOCKS_DIR = "locks"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    account_id TEXT NOT NULL,
    list_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER NOT NULL,
    UNIQUE (base_url, account_id, list_id)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    list INTEGER NOT NULL REFERENCES lists (id),
    started_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    list INTEGER NOT NULL,
    email_hash INTEGER NOT NULL,
    email TEXT NOT NULL,
    row_hash INTEGER NOT NULL,
    profile_id TEXT,
    first_run INTEGER NOT NULL,
    last_run INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (list, email_hash)
) WITHOUT ROWID;
"""


class StateError(InputError):
    """The sync state cannot be used as asked (another run holds the list, say)."""


def state_path() -> Path:
    return home.directory() / STATE_FILE


@dataclass(frozen=True)
class Snapshot:
    """One list's state as sorted arrays: the email hashes (ascending), the row hashes and last runs."""

    email_hash: np.ndarray
    row_hash: np.ndarray
    last_run: np.ndarray

    def __len__(self) -> int:
        return len(self.email_hash)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(known, row_hash, last_run)`` for each email hash (the last two meaningful where known)."""
        where = np.searchsorted(self.email_hash, hashes)
        inside = where < len(self.email_hash)
        known = np.zeros(len(hashes), dtype=bool)
        known[inside] = self.email_hash[where[inside]] == hashes[inside]
        clipped = np.minimum(where, max(len(self.email_hash) - 1, 0))
        if not len(self.email_hash):
            return known, np.zeros(len(hashes), np.int64), np.zeros(len(hashes), np.int64)
        return known, self.row_hash[clipped], self.last_run[clipped]


EMPTY = Snapshot(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


class StateStore:
    """The state database. ``open()`` it; a database that cannot be read is moved aside, never emptied in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, shared by the run's threads

    @classmethod
    def open(cls, path: Path | None = None) -> tuple[StateStore, str | None]:
        """The store, and a warning when an unreadable database had to be set aside (the run then starts afresh,
        as a first run: it sends every row and removes nobody)."""
        store = cls(path or state_path())
        try:
            store._connect()
            return store, None
        except sqlite3.DatabaseError as exc:
            store.close()
            aside = store.path.with_name(f"{store.path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            os.replace(store.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{store.path}{suffix}", f"{aside}{suffix}")
            store._connect()
            return store, (
                f"the sync state {store.path} could not be read ({exc}); it was moved to {aside.name} and this run "
                "starts afresh: every row is sent and nobody is removed"
            )

    def _connect(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # created 0600: it holds customers' emails
        os.close(fd)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
        db.executescript(_SCHEMA)
        db.execute("PRAGMA quick_check(1)").fetchone()
        self._check_meta()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            assert self._db is not None
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            assert self._db is not None
            return self._db.execute(sql, params).fetchall()

    def _check_meta(self) -> None:
        """The schema version, and the hash check: if this process hashes emails differently from the one that
        wrote the state (a pandas upgrade could), the stored email hashes are recomputed from the emails."""
        meta = dict(self.query("SELECT key, value FROM meta"))
        version = int(meta.get("schema", _SCHEMA_VERSION))
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer klaviyo-magic (schema {version})")
        check = json.dumps(hashing.check())
        with self.transaction() as db:
            if meta.get("hash_check") not in (None, check):
                _rehash_emails(db)
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema', ?), ('hash_check', ?)", (str(_SCHEMA_VERSION), check)
            )

    # -- lists -----------------------------------------------------------------------------------------------

    def find_list(self, base_url: str, list_id: str, account_id: str | None) -> int | None:
        """The state's key for a list; with no account id (an offline dry run), the most recently used one."""
        if account_id is not None:
            rows = self.query(
                "SELECT id FROM lists WHERE base_url = ? AND account_id = ? AND list_id = ?",
                (base_url, account_id, list_id),
            )
        else:
            rows = self.query(
                "SELECT id FROM lists WHERE base_url = ? AND list_id = ? ORDER BY used_at DESC LIMIT 1",
                (base_url, list_id),
            )
        return rows[0][0] if rows else None

    def list_state(self, base_url: str, list_id: str, account_id: str | None, *, create: bool) -> ListState | None:
        key = self.find_list(base_url, list_id, account_id)
        if key is None and create:
            assert account_id is not None
            now = int(time.time())
            with self.transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO lists (base_url, account_id, list_id, created_at, used_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (base_url, account_id, list_id, now, now),
                )
            key = self.find_list(base_url, list_id, account_id)
        return None if key is None else ListState(self, key, list_id, base_url, account_id)


@dataclass
class ListState:
    """The state of one list: its members, and the run numbers that wrote them."""

    store: StateStore
    key: int
    list_id: str
    base_url: str
    account_id: str | None

    def members(self) -> int:
        return int(self.store.query("SELECT count(*) FROM members WHERE list = ?", (self.key,))[0][0])

    def snapshot(self) -> Snapshot:
        """Every member's email hash (ascending: the primary key's order), row hash and last run."""
        with self.store._lock:
            assert self.store._db is not None
            cursor = self.store._db.execute(
                "SELECT email_hash, row_hash, last_run FROM members WHERE list = ? ORDER BY email_hash", (self.key,)
            )
            flat = np.fromiter((value for row in cursor for value in row), dtype=np.int64)
        table = flat.reshape(-1, 3)
        return Snapshot(table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy())

    def start_run(self, run_id: str) -> int:
        """The number of run ``run_id`` (the same one again when a run is resumed)."""
        now = int(time.time())
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (run_id, list, started_at) VALUES (?, ?, ?)", (run_id, self.key, now)
            )
            db.execute("UPDATE lists SET used_at = ? WHERE id = ?", (now, self.key))
            return int(db.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])

    def confirm(self, run: int, emails: Sequence[str], email_hash: np.ndarray, row_hash: np.ndarray) -> None:
        """Klaviyo confirmed these members (their import job completed without an error for them)."""
        now = int(time.time())
        rows = zip(email_hash.tolist(), emails, row_hash.tolist(), strict=True)
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO members (list, email_hash, email, row_hash, first_run, last_run, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (list, email_hash) DO UPDATE SET email = excluded.email, "
                "row_hash = excluded.row_hash, last_run = excluded.last_run, updated_at = excluded.updated_at",
                ((self.key, h, e, r, run, run, now) for h, e, r in rows),
            )

    def forget(self, email_hash: Sequence[int]) -> None:
        """Members Klaviyo removed (a 204), or found no longer in the list."""
        with self.store.transaction() as db:
            db.executemany(
                "DELETE FROM members WHERE list = ? AND email_hash = ?", ((self.key, int(h)) for h in email_hash)
            )

    def remember_profile_ids(self, found: dict[int, str]) -> None:
        """Profile ids learned from the list, by email hash, for the next removal."""
        with self.store.transaction() as db:
            db.executemany(
                "UPDATE members SET profile_id = ? WHERE list = ? AND email_hash = ?",
                ((pid, self.key, h) for h, pid in found.items()),
            )

    def rows(self, email_hash: np.ndarray) -> list[tuple[int, str, str | None]]:
        """``(email_hash, email, profile_id)`` of the members with these hashes."""
        found: list[tuple[int, str, str | None]] = []
        values = [int(h) for h in email_hash]
        for start in range(0, len(values), 500):  # SQLite limits the parameters of one statement
            part = values[start : start + 500]
            found += self.store.query(
                f"SELECT email_hash, email, profile_id FROM members WHERE list = ? AND email_hash IN "
                f"({','.join('?' * len(part))})",
                (self.key, *part),
            )
        return found

    @contextlib.contextmanager
    def lock(self, description: str) -> Iterator[None]:
        """Hold this list for one run; a second run (any process) stops at once, naming the first."""
        with list_lock(self.base_url, self.account_id or "", self.list_id, description):
            yield


@contextlib.contextmanager
def list_lock(base_url: str, account_id: str, list_id: str, description: str) -> Iterator[None]:
    """An exclusive lock on one list's state: a file lock the system releases when this process ends."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; SQLite's transactions still keep the state whole
        yield
        return
    directory = home.directory() / LOCKS_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = hashing.text_hashes(np.array([f"{base_url} {account_id} {list_id}"], dtype=object))[0]
    path = directory / f"{list_id}-{name:016x}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            raise StateError(
                f"list '{list_id}' is being exported by {holder}; wait until it ends, then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, description.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def run_description(run_id: str) -> str:
    """Who holds a list: ``run 2026... (pid 1234 on host, started 12:00:01 UTC)``."""
    return f"run {run_id} (pid {os.getpid()} on {socket.gethostname()}, started {datetime.now(UTC):%H:%M:%S} UTC)"


def _rehash_emails(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT list, email_hash, email FROM members").fetchall()
    if not rows:
        return
    fresh = hashing.email_hashes([email for _, _, email in rows]).tolist()
    db.execute("CREATE TEMP TABLE rehash (list INTEGER, old INTEGER, new INTEGER)")
    db.executemany("INSERT INTO rehash VALUES (?, ?, ?)", ((r[0], r[1], h) for r, h in zip(rows, fresh, strict=True)))
    db.execute(
        "CREATE TEMP TABLE moved AS SELECT m.*, r.new AS new_hash FROM members m JOIN rehash r "
        "ON m.list = r.list AND m.email_hash = r.old"
    )
    db.execute("DELETE FROM members")
    db.execute(
        "INSERT OR REPLACE INTO members SELECT list, new_hash, email, row_hash, profile_id, first_run, "
        "last_run, updated_at FROM moved"
    )
    db.execute("DROP TABLE moved")
    db.execute("DROP TABLE rehash")
