"""Sync state: what klaviyo-magic put in each Klaviyo list, so re-runs send only what changed and mirror runs
remove only the members we added.

One SQLite database, ``$KLAVIYO_MAGIC_HOME/sync.sqlite3`` (WAL journal, so a reader never waits for a writer),
keeps per list (base URL, Klaviyo account id, list id) what happened to its members, in order: each row of
``changes`` is a group of members Klaviyo confirmed (an import job completed without an error for them), removed
(Klaviyo's 204), or whose profile ids we learned. A confirmed group holds, for every member, the normalised email,
its 64-bit hash, the hash of what we sent (``hashing.py``), the run that first put it in the list and the run
that last sent it; the arrays are stored as blobs (int64/int32, little-endian; texts as UTF-8 back to back with
their end offsets), so that writing the 10,000 members of a job is one insert and reading a million members is a
hundredth of a second, not a million rows through Python. A member's state is its latest group. Groups are
appended in their own transactions, so a killed run leaves the state as true as its last commit; a run compacts
the log when superseded entries outnumber the members. docs/sync.md shows how to read it.

Two runs writing one list's state at once (a cron job and a notebook) would each remove what the other just
added: :func:`list_lock`, taken before the state is opened, is an exclusive lock that the operating system
releases when the process ends, however it ends, and a second run stops with a message naming the first.
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
from dataclasses import dataclass, field
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
    started_at INTEGER NOT NULL,
    newest_join TEXT
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    list INTEGER NOT NULL REFERENCES lists (id),
    kind TEXT NOT NULL CHECK (kind IN ('confirmed', 'removed', 'profile_ids')),
    members INTEGER NOT NULL,
    at INTEGER NOT NULL,
    email_hashes BLOB NOT NULL,
    row_hashes BLOB,
    first_runs BLOB,
    last_runs BLOB,
    texts BLOB,
    text_ends BLOB
);
CREATE INDEX IF NOT EXISTS changes_by_list ON changes (list, kind, id);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    list INTEGER NOT NULL REFERENCES lists (id),
    run INTEGER NOT NULL,
    email_hashes BLOB NOT NULL
);
"""
_COMPACT_ABOVE = 100_000  # superseded entries tolerated before a run rewrites the log


class StateError(InputError):
    """The sync state cannot be used as asked (another run holds the list, say)."""


class _NewerSchema(sqlite3.DatabaseError):
    """The database was written by a newer klaviyo-magic: unreadable here, and kept for that version."""


class _Rehash(Exception):
    """A read-only store would have to re-hash the stored emails first."""


# SQLite's primary result codes for a damaged file, and for "not a database at all": only these mean unreadable.
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def unreadable(exc: sqlite3.DatabaseError) -> bool:
    """Is the database itself unreadable (damaged, not a database, from a newer version), rather than busy
    (another process writes it) or out of reach (disk full, permissions), which waiting or a fix cures?"""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, _NewerSchema) or (code is not None and code & 0xFF in _DAMAGED)


def unreadable_to_preview(path: Path, exc: sqlite3.DatabaseError) -> str:
    """For a dry run, which moves nothing: what to say about a state it cannot read; a state that is only busy
    or out of reach raises :class:`StateError`, as it would stop a real run."""
    if not unreadable(exc):
        raise StateError(not_usable(path, exc)) from None
    return (
        f"the sync state {path} could not be read ({exc}); a real run will move it aside and start afresh: send "
        "every row and remove nobody"
    )


def not_usable(path: Path, exc: sqlite3.DatabaseError) -> str:
    """One line for a state that is there but cannot be used now; nothing was sent, nothing set aside."""
    if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (
            f"the sync state {path} is busy: another klaviyo-magic process has been writing it for 30 s ({exc}); "
            "wait until it ends, then run this again"
        )
    return f"the sync state {path} cannot be used ({exc}); fix that (disk space, permissions), then run this again"


def state_path() -> Path:
    return home.directory() / STATE_FILE


@dataclass(frozen=True)
class Snapshot:
    """One list's members as sorted arrays: email hashes (ascending), row hashes, first and last runs, and where
    each member's latest confirmation is in the log (change id, index in it)."""

    email_hash: np.ndarray
    row_hash: np.ndarray
    last_run: np.ndarray
    first_run: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    change: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    superseded: int = 0  # entries of the log that later ones replaced

    def __len__(self) -> int:
        return len(self.email_hash)

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(known, where)``: whether each hash is a member, and its position in these arrays where it is."""
        hashes = np.asarray(hashes, dtype=np.int64)
        # Searched in ascending order, one binary search follows the last through the same cache lines: four
        # times faster than in the input's order against a million members, sort included.
        order = np.argsort(hashes)
        where = np.empty(len(hashes), dtype=np.int64)
        where[order] = np.searchsorted(self.email_hash, hashes[order])
        inside = where < len(self.email_hash)
        known = np.zeros(len(hashes), dtype=bool)
        known[inside] = self.email_hash[where[inside]] == hashes[inside]
        return known, np.where(known, where, 0)

    def among(self, hashes: np.ndarray) -> np.ndarray:
        """For each member, whether its email hash is one of ``hashes``."""
        known, where = self.find(hashes)
        members = np.zeros(len(self.email_hash), dtype=bool)
        members[where[known]] = True
        return members

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(known, row_hash, last_run, first_run)`` for each email hash (the last three meaningful where
        known)."""
        known, where = self.find(hashes)
        if not len(self.email_hash):
            zeros = np.zeros(len(known), np.int64)
            return known, zeros, zeros, zeros
        return known, self.row_hash[where], self.last_run[where], self.first_run[where]


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
        as a first run: it sends every row and removes nobody). A database that is only busy (another process
        writes it) or cannot be opened (disk full, permissions) is left alone: :class:`StateError`."""
        store = cls(path or state_path())
        try:
            store._connect()
            return store, None
        except sqlite3.DatabaseError as exc:
            return store, store.set_aside(exc)

    @classmethod
    def open_to_read(cls, path: Path | None = None) -> tuple[StateStore | None, str | None]:
        """For a dry run: the store, read-only (nothing created, migrated or moved), or ``None`` and what to
        tell the user when it cannot be read as it is (nothing when it holds no state yet)."""
        store = cls(path or state_path())
        try:
            store._connect(read_only=True)
            return store, None
        except sqlite3.DatabaseError as exc:
            store.close()
            if "no such table" in str(exc):  # created but never written (a run stopped at its first step)
                return None, None
            return None, unreadable_to_preview(store.path, exc)
        except _Rehash:
            store.close()
            return None, (
                "the sync state was written by a klaviyo-magic that hashes emails differently; the next real run "
                "re-hashes it, so this preview treats the list as new: every row is sent and nobody is removed"
            )

    def set_aside(self, exc: sqlite3.DatabaseError) -> str:
        """Move an unreadable database out of the way (never empty it in place: it may be recoverable) and start
        a fresh one; return what to tell the user. Only a damaged database or one from a newer version is
        moved: a busy one or an I/O error raises :class:`StateError`, the state untouched."""
        self.close()
        if not unreadable(exc):
            raise StateError(not_usable(self.path, exc)) from None
        aside = self.path.with_name(f"{self.path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self._connect()
        return (
            f"the sync state {self.path} could not be read ({exc}); it was moved to {aside.name} and this run "
            "starts afresh: every row is sent and nobody is removed"
        )

    def _connect(self, *, read_only: bool = False) -> None:
        if read_only:
            # Read-write file access (a WAL database's readers write its -shm index), but no statement writes.
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db = db
            db.execute("PRAGMA query_only=1")
            self._check_meta(read_only=True)
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # created 0600: it holds customers' emails
        os.close(fd)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
        db.executescript(_SCHEMA)
        if "newest_join" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:  # a state from before it
            try:
                db.execute("ALTER TABLE runs ADD COLUMN newest_join TEXT")
            except sqlite3.OperationalError as exc:  # another process opening the same old state added it first
                if "duplicate column" not in str(exc):
                    raise
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

    def _check_meta(self, *, read_only: bool = False) -> None:
        """The schema version, and the hash check: if this process hashes emails differently from the one that
        wrote the state (a pandas upgrade could), the stored email hashes are recomputed from the emails."""
        meta = dict(self.query("SELECT key, value FROM meta"))
        version = int(meta.get("schema", _SCHEMA_VERSION))
        if version > _SCHEMA_VERSION:
            raise _NewerSchema(f"written by a newer klaviyo-magic (schema {version})")
        check = json.dumps(hashing.check())
        if meta.get("hash_check") not in (None, check):
            if read_only:
                raise _Rehash()
            for (key,) in self.query("SELECT id FROM lists"):
                ListState(self, key, "", "", None).compact(rehash=True)
        if read_only:
            return
        with self.transaction() as db:
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
    """The state of one list: its members (folded from the log of changes), and the runs that wrote them."""

    store: StateStore
    key: int
    list_id: str
    base_url: str
    account_id: str | None
    _snapshot: Snapshot | None = None
    _sent: list[tuple[int, np.ndarray]] = field(default_factory=list)  # what earlier runs sent unconfirmed

    def members(self) -> int:
        return len(self.snapshot())

    def snapshot(self, *, fresh: bool = False) -> Snapshot:
        """Every member now: its latest confirmation not followed by a removal. Read once and kept, unless
        ``fresh``: a run decides against the state as it was when the run began."""
        if self._snapshot is None or fresh:
            self._snapshot = _fold(
                self._read(
                    "SELECT id, kind, email_hashes, row_hashes, first_runs, last_runs "
                    "FROM changes WHERE list = ? AND kind != 'profile_ids' ORDER BY id"
                )
            )
        return self._snapshot

    def start_run(self, run_id: str, newest_join: str | None = None) -> int:
        """The number of run ``run_id`` (the same one again when a run is resumed); compacts the log first if
        superseded entries outnumber the members. ``newest_join``: when the list's newest member joined it as the
        run began (Klaviyo's clock), so that members who were there before the run are never taken for its own."""
        now = int(time.time())
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (run_id, list, started_at, newest_join) VALUES (?, ?, ?, ?)",
                (run_id, self.key, now, newest_join),
            )
            db.execute("UPDATE lists SET used_at = ? WHERE id = ?", (now, self.key))
            number = int(db.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])
            sent = db.execute("SELECT run, email_hashes FROM sent WHERE list = ? AND run < ? ORDER BY run DESC",
                              (self.key, number)).fetchall()  # fmt: skip
        self._sent = [(int(run), np.frombuffer(hashes, "<i8")) for run, hashes in sent]
        snapshot = self.snapshot(fresh=True)
        if snapshot.superseded > max(len(snapshot), _COMPACT_ABOVE):
            self.compact()
        return number

    def confirm(self, run: int, emails: Sequence[str], email_hash: np.ndarray, row_hash: np.ndarray) -> None:
        """Klaviyo confirmed these members (their import job completed without an error for them)."""
        before = self.snapshot()
        known, where = before.find(email_hash)
        sent_first = self._first_sent(np.asarray(email_hash, dtype=np.int64), run)
        first = np.where(known, before.first_run[where], sent_first) if len(before) else sent_first
        texts, ends = _pack(emails)
        self._append("confirmed", email_hash, row_hashes=row_hash, first_runs=first,
                     last_runs=np.full(len(email_hash), run), texts=texts, text_ends=ends)  # fmt: skip

    def record_sent(self, run: int, email_hash: np.ndarray) -> None:
        """Klaviyo accepted these members from run ``run``, but the run ended before it saw them imported (it was
        stopped, or did not watch its jobs). A later run that confirms them takes them as first sent by ``run``:
        what they joined the list after is that run's view of the list (:meth:`newest_joins`)."""
        if len(email_hash):
            with self.store.transaction() as db:
                db.execute("INSERT INTO sent (list, run, email_hashes) VALUES (?, ?, ?)",
                           (self.key, run, _blob("email_hashes", email_hash)))  # fmt: skip

    def _first_sent(self, email_hash: np.ndarray, run: int) -> np.ndarray:
        """For each member, the earliest run before ``run`` that sent it without seeing it imported, else ``run``."""
        first = np.full(len(email_hash), run, dtype=np.int64)
        for earlier, hashes in self._sent:  # newest first: the earliest run that sent a member marks it last
            first[np.isin(email_hash, hashes)] = earlier
        return first

    def clear_sent(self, run: int) -> None:
        """Run ``run`` ended with every job watched to the end: what earlier runs sent unconfirmed, it has
        confirmed (or the members were not in its segment, and a later run is a first sender for them). Kept any
        longer, an old record would date a member's later signup back to that run."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM sent WHERE list = ? AND run < ?", (self.key, run))
        self._sent = []

    def forget(self, email_hash: Sequence[int]) -> None:
        """Members Klaviyo removed (a 204), or found no longer in the list."""
        if len(email_hash):
            self._append("removed", np.asarray(email_hash, dtype=np.int64))

    def remember_profile_ids(self, found: dict[int, str]) -> None:
        """Profile ids learned from the list, by email hash, for the next removal."""
        if found:
            texts, ends = _pack(list(found.values()))
            self._append("profile_ids", np.fromiter(found, dtype=np.int64, count=len(found)), texts=texts,
                         text_ends=ends)  # fmt: skip

    def rows(self, email_hash: np.ndarray) -> list[tuple[int, str, str | None]]:
        """``(email_hash, email, profile_id)`` of the members with these hashes (others are left out)."""
        snapshot = self.snapshot()
        known, where = snapshot.find(email_hash)
        hashes, where = np.asarray(email_hash, dtype=np.int64)[known], where[known]
        changes, indexes = snapshot.change[where], snapshot.index[where]
        emails: dict[int, list[str]] = {}
        for start in range(0, len(np.unique(changes)), 500):  # SQLite limits the parameters of one statement
            ids = np.unique(changes)[start : start + 500].tolist()
            marks = ",".join("?" * len(ids))
            for change, texts, ends in self.store.query(f"SELECT id, texts, text_ends FROM changes WHERE id IN "
                                                        f"({marks})", ids):  # fmt: skip
                emails[change] = _unpack(texts, ends)
        ids = self.profile_ids()
        return [
            (int(h), emails[int(c)][int(i)], ids.get(int(h))) for h, c, i in zip(hashes, changes, indexes, strict=True)
        ]

    def newest_joins(self, email_hash: Sequence[int]) -> dict[int, str | None]:
        """For each member, ``newest_join`` of the run that first sent it: a member who joined the list no later
        than that was in the list before klaviyo-magic sent it (None: the list was empty then, or not known)."""
        snapshot = self.snapshot()
        known, where = snapshot.find(np.asarray(email_hash, dtype=np.int64))
        try:
            marks = dict(self._read("SELECT id, newest_join FROM runs WHERE list = ?"))
        except sqlite3.OperationalError as exc:  # a state from before runs recorded it, read by a dry run
            if "no such column" not in str(exc):
                raise
            marks = {}
        return {
            int(h): marks.get(int(snapshot.first_run[w])) for h, w, k in zip(email_hash, where, known, strict=True) if k
        }

    def profile_ids(self) -> dict[int, str]:
        """The latest profile id learned for each email hash."""
        found: dict[int, str] = {}
        for hashes, texts, ends in self.store.query(
            "SELECT email_hashes, texts, text_ends FROM changes WHERE list = ? AND kind = 'profile_ids' ORDER BY id",
            (self.key,),
        ):
            found.update(zip(np.frombuffer(hashes, "<i8").tolist(), _unpack(texts, ends), strict=True))
        return found

    def compact(self, *, rehash: bool = False) -> None:
        """Rewrite the log as one confirmation per 100,000 members (and their profile ids), dropping what later
        changes replaced. With ``rehash``, every email's hash is computed again (the hash function changed)."""
        snapshot = self.snapshot(fresh=True)
        rows = self.rows(snapshot.email_hash)
        emails = [email for _, email, _ in rows]
        ids = {h: pid for h, _, pid in rows if pid}
        hashes = hashing.email_hashes(emails) if rehash else snapshot.email_hash
        if rehash:
            ids = {
                int(new): ids[int(old)] for old, new in zip(snapshot.email_hash, hashes, strict=True) if int(old) in ids
            }
        with self.store.transaction() as db:
            db.execute("DELETE FROM changes WHERE list = ?", (self.key,))
            for start in range(0, len(emails), 100_000):
                part = slice(start, start + 100_000)
                texts, ends = _pack(emails[part])
                db.execute(*_insert(self.key, "confirmed", hashes[part], row_hashes=snapshot.row_hash[part],
                                     first_runs=snapshot.first_run[part], last_runs=snapshot.last_run[part],
                                     texts=texts, text_ends=ends))  # fmt: skip
            if ids:
                texts, ends = _pack(list(ids.values()))
                db.execute(*_insert(self.key, "profile_ids", np.fromiter(ids, np.int64, len(ids)), texts=texts,
                                     text_ends=ends))  # fmt: skip
        self._snapshot = None

    def members_frame(self) -> Any:
        """The members as a DataFrame (email, profile_id, first_run, last_run): for reading the state by hand."""
        import pandas as pd

        snapshot = self.snapshot(fresh=True)
        rows = self.rows(snapshot.email_hash)
        frame = pd.DataFrame(rows, columns=["email_hash", "email", "profile_id"], dtype=object)
        frame["first_run"], frame["last_run"] = snapshot.first_run, snapshot.last_run
        return frame.drop(columns="email_hash")

    def _append(self, kind: str, email_hash: np.ndarray, **arrays: Any) -> None:
        with self.store.transaction() as db:
            db.execute(*_insert(self.key, kind, email_hash, **arrays))

    def _read(self, sql: str) -> list[tuple]:
        return self.store.query(sql, (self.key,))


def _insert(list_key: int, kind: str, email_hash: np.ndarray, **arrays: Any) -> tuple[str, tuple]:
    """The statement adding one change: numbers as little-endian blobs, texts as they are."""
    blobs = {name: (value if isinstance(value, bytes) else _blob(name, value)) for name, value in arrays.items()}
    columns = ["list", "kind", "members", "at", "email_hashes", *blobs]
    values = (list_key, kind, len(email_hash), int(time.time()), _blob("email_hashes", email_hash), *blobs.values())
    return f"INSERT INTO changes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values


def _blob(name: str, values: Any) -> bytes:
    dtype = "<i8" if name in ("email_hashes", "row_hashes") else "<i4"
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def _pack(texts: Sequence[str]) -> tuple[bytes, bytes]:
    """Texts as UTF-8 back to back, and the end offset of each (int32)."""
    encoded = [text.encode() for text in texts]
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64) if encoded else np.zeros(0, np.int64)
    return b"".join(encoded), ends.astype("<i4").tobytes()


def _unpack(texts: bytes, ends: bytes) -> list[str]:
    stops = np.frombuffer(ends, "<i4").tolist()
    starts = [0, *stops[:-1]]
    return [texts[a:b].decode() for a, b in zip(starts, stops, strict=True)]


def _fold(changes: list[tuple]) -> Snapshot:
    """The members after a list's changes, in order: each email's latest entry, unless that is a removal."""
    if not changes:
        return EMPTY
    parts: list[tuple[np.ndarray, ...]] = []
    for change, kind, hashes, row_hashes, first_runs, last_runs in changes:
        hashes = np.frombuffer(hashes, "<i8")
        count = len(hashes)
        confirmed = kind == "confirmed"
        parts.append((
            hashes,
            np.full(count, change, np.int64),
            np.arange(count, dtype=np.int64),
            np.full(count, confirmed),
            np.frombuffer(row_hashes, "<i8") if confirmed else np.zeros(count, np.int64),
            np.frombuffer(first_runs, "<i4").astype(np.int64) if confirmed else np.zeros(count, np.int64),
            np.frombuffer(last_runs, "<i4").astype(np.int64) if confirmed else np.zeros(count, np.int64),
        ))  # fmt: skip
    hashes, change, index, confirmed, row_hash, first_run, last_run = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    # By email hash, then in the order things happened: the parts were concatenated in that order, so a stable
    # sort on the hashes alone keeps it (and is several times faster than sorting on three keys).
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    latest = np.ones(len(order), dtype=bool)
    latest[:-1] = ordered[1:] != ordered[:-1]
    chosen = order[latest]
    chosen = chosen[confirmed[chosen]]  # a removal as the latest entry: not a member
    return Snapshot(hashes[chosen].copy(), row_hash[chosen], last_run[chosen], first_run[chosen], change[chosen],
                    index[chosen], superseded=len(hashes) - len(chosen))  # fmt: skip


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
