"""Mirror mode: remove from the list the members klaviyo-magic put there who are no longer in the segment.

The leavers are the members of the sync state (``state.py``) whose email is in no row of this run's input (a
row skipped for a bad phone number still counts as present: "never remove on doubt"). Members someone else added
are not in the state, so they are never touched; nor are those someone else added before klaviyo-magic sent them
too: each run records when the list's newest member joined as it began (:func:`newest_join`), and a leaver who
joined no later than that, for the run that first sent it, was there before.
Before removing anyone the run checks the guard (``max_removals``). Every leaver is looked up in the list,
``GET /api/lists/{id}/profiles?filter=any(email,[...])`` (100 emails a request, every page read; only members
come back, so a lookup can never find someone outside the list): its profile id, and when it joined. Then
``DELETE .../relationships/profiles``, 1000 ids a call; a member leaves the state only after Klaviyo's 204
(docs/klaviyo-api.md §2.10, §2.11; docs/sync.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pandas as pd

from ..client import KlaviyoClient, Stopped
from ..errors import KlaviyoError, KlaviyoMagicError
from ..progress import ProgressEvent
from .checks import RowChecker
from .emails import as_text
from .hashing import email_hashes
from .journal import Journal
from .state import ListState, Snapshot

LOOKUP_EMAILS = 100  # emails per member lookup: one full page of Klaviyo's largest page size
REMOVE_IDS = 1000  # Klaviyo's cap on ids per removal call
REMOVAL_COLUMNS = ["email", "profile_id", "status", "reason"]
GONE = "no longer a member of the list (removed outside klaviyo-magic): nothing to remove"
KEPT = "not removed: in the list before klaviyo-magic first sent it (joined {joined}), so added some other way"
DOUBT = (
    "not removed: Klaviyo gave no joining time that tells whether klaviyo-magic added it; it stays in the list and "
    "in the sync state, and is looked at again next run"
)


def newest_join(client: KlaviyoClient, list_id: str, stop: threading.Event) -> str | None:
    """When the list's newest member joined it, read as a run begins: members who joined no later than this were
    there before the run. Klaviyo's times have whole seconds, so when that member joined in the very second of
    Klaviyo's answer, the run waits for that second to end (by this machine's clock) before it sends anything:
    the members it adds then join later. Were this clock ahead of Klaviyo's, some might join in that second all
    the same; they would then be taken for members someone else added and kept: the safe side."""
    any_member, joined, now = client.newest_join(list_id, action=f"reading list '{list_id}'")
    if not any_member:
        return None  # an empty list: whoever joins from now on joined after this run began
    try:
        when = parsedate_to_datetime(now) if now else datetime.now(UTC)
    except (TypeError, ValueError):
        when = datetime.now(UTC)
    if joined is None:  # members, but no time given: everyone there now joined no later than this answer
        return when.astimezone(UTC).isoformat(timespec="seconds")
    try:
        mark = datetime.fromisoformat(joined)
        same_second = when <= mark
    except (TypeError, ValueError):  # a time it cannot read: its members are kept when they leave (safe side)
        return joined
    wait = min(max(mark.timestamp() + 1.0 - time.time(), 0.0), 1.0) if same_second else 0.0
    if wait and stop.wait(wait):
        raise Stopped
    return joined


def _joined_before(joined: str | None, newest_join: str | None) -> bool | None:
    """Whether a member who joined the list at ``joined`` was there before the run that first sent it, which saw
    the list's newest member join at ``newest_join`` (None: the list was empty, or the run is from before this
    was recorded); None when that cannot be told (no joining time, or one that cannot be read or compared)."""
    if newest_join is None:
        return False
    try:
        return datetime.fromisoformat(joined) <= datetime.fromisoformat(newest_join)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class RemovalLimitError(KlaviyoMagicError):
    """A mirror run would remove more members than allowed; nobody was removed. ``result`` holds the run."""

    result: Any = None

    def __init__(self, message: str, *, would_remove: int, allowed: int) -> None:
        super().__init__(message)
        self.would_remove = would_remove
        self.allowed = allowed


def leavers(snapshot: Snapshot, checker: RowChecker) -> np.ndarray:
    """Email hashes of the state's members whose email no row of the input has."""
    if not len(snapshot):
        return np.zeros(0, dtype=np.int64)
    return snapshot.email_hash[~checker.present(snapshot.email_hash)]


def allowance(members: int, max_removals: int | None) -> int:
    """How many members a run may remove: ``max_removals``, or 10% of the members we put there (at least 100)."""
    if max_removals is not None:
        return max_removals
    return max(100, math.ceil(members * 0.10))


# A mirror run on a list the state has no record of: a first run, or a state lost (deleted, another home).
NO_STATE = (
    "no sync state for list '{list_id}' (its first mirror run here, or the state was lost): every row is sent and "
    "nobody is removed; from the next run on, members this run adds are removed when they leave the segment, and "
    "those already in the list stay (they are taken as added some other way)"
)
STOPPED = "Mirror stopped before removing anyone"
WOULD_STOP = "a real run would stop before removing anyone"  # a dry run's note: the same message, ahead of time


class SavedLimit(int):
    """A ``max_removals`` saved with an export: it bounds every run's ordinary removals, but never allows an empty
    segment to empty the list (a saved weekly query that breaks one week must not); that takes an allowance given
    to the run itself."""


def check_guard(count: int, *, members: int, max_removals: int | None, inputs_empty: bool, list_id: str) -> None:
    """Refuse, before removing anyone, a removal larger than allowed, or any removal for an empty segment unless
    ``max_removals`` given to this run allows it (an empty result is more often a broken query than an empty
    segment)."""
    if not count:
        return
    allowed = allowance(members, max_removals)
    if inputs_empty and (max_removals is None or isinstance(max_removals, SavedLimit)):
        saved = " (the saved export's max_removals does not cover an empty segment)" if max_removals is not None else ""
        raise RemovalLimitError(
            f"{STOPPED}: the segment has no valid email, so all {count:,} members "
            f"klaviyo-magic put in list '{list_id}' left it{saved}. If the segment really is empty, allow "
            f"it for this run: max_removals={count} (--max-removals {count}).",
            would_remove=count,
            allowed=0,
        )
    if count > allowed:
        why = (
            ""
            if max_removals is not None
            else f" (10% of the {members:,} members klaviyo-magic put there, at least 100)"
        )
        raise RemovalLimitError(
            f"{STOPPED}: {count:,} members left the segment, more than "
            f"max_removals={allowed:,}{why}. If the segment is right, allow it: "
            f"max_removals={count} (--max-removals {count}).",
            would_remove=count,
            allowed=allowed,
        )


def planned(state: ListState, hashes: np.ndarray, status: str, reason: str | None) -> pd.DataFrame:
    """The leavers as a removals frame (email, profile id as far as known), all with one status."""
    return removals_frame([(email, pid, status, reason) for _, email, pid in state.rows(hashes)])


def look_up(
    client: KlaviyoClient, list_id: str, wanted: list[tuple[int, str]], concurrency: int = 8
) -> dict[int, tuple[str, str | None]]:
    """``(profile id, joined_group_at)`` by email hash, for the members among ``wanted`` (email hash, email) that
    the list has: read-only, 100 emails a request."""
    by_email = {email: h for h, email in wanted}
    emails = list(by_email)
    groups = [emails[i : i + LOOKUP_EMAILS] for i in range(0, len(emails), LOOKUP_EMAILS)]

    def one(group: list[str]) -> list[dict]:
        action = f"looking up {len(group)} members of list '{list_id}'"
        return list(client.iter_list_members(list_id, group, action=action))

    found: dict[int, tuple[str, str | None]] = {}
    with ThreadPoolExecutor(concurrency, thread_name_prefix="klaviyo-lookup") as pool:
        try:
            for profiles in pool.map(one, groups):
                for profile in profiles:
                    attributes = profile.get("attributes") or {}
                    email = str(attributes.get("email") or "").strip().lower()
                    if email in by_email:
                        found[by_email[email]] = (profile["id"], attributes.get("joined_group_at"))
        except KeyboardInterrupt:
            client.halt()  # lookups waiting out a retry end now: leaving the pool waits for them
            raise
    return found


def classify(
    members: list[tuple[int, str, str | None]],
    found: dict[int, tuple[str, str | None]],
    marks: dict[int, str | None],
) -> tuple[dict[int, str], list[int], list[int]]:
    """Of the leavers (``state.rows``), as the list answered (:func:`look_up`): those to keep, with the reason,
    who joined no later than the list's newest member when klaviyo-magic first sent them (someone else added them
    before) or of whom it cannot be told (never remove on doubt); which of those are the latter (they stay in the
    state); and those gone from the list already. The others are to remove."""
    before = {h: _joined_before(found[h][1], marks.get(h)) for h, _, _ in members if h in found}
    doubtful = [h for h, _, _ in members if h in before and before[h] is None]
    kept = {h: KEPT.format(joined=found[h][1]) for h, _, _ in members if before.get(h) is True}
    kept.update((h, DOUBT) for h in doubtful)
    gone = [h for h, _, _ in members if h not in found]
    return kept, doubtful, gone


def previewed(client: KlaviyoClient, list_id: str, state: ListState, hashes: np.ndarray) -> pd.DataFrame:
    """A dry run's removals: the leavers looked up in the list as a real run would (read-only), each
    ``would_remove`` or, when someone else added it before klaviyo-magic sent it, ``would_keep``."""
    members = state.rows(hashes)
    found = look_up(client, list_id, [(h, email) for h, email, _ in members])
    kept, _, gone = classify(members, found, state.newest_joins([h for h, _, _ in members]))
    away = set(gone)
    rows = []
    for h, email, _ in members:
        if h in kept:
            rows.append((email, found[h][0], "would_keep", kept[h]))
        else:
            rows.append((email, None if h in away else found[h][0], "would_remove", GONE if h in away else None))
    return removals_frame(rows)


class Remover:
    """Looks up the leavers in the list and removes those klaviyo-magic put there, journaling each removal.

    ``outcome`` grows as members are handled, so a Ctrl-C in the middle still leaves the account of what was done
    (:meth:`unfinished`); ``error`` keeps a Klaviyo error that stopped the removals.
    """

    def __init__(
        self,
        client: KlaviyoClient,
        list_id: str,
        state: ListState,
        journal: Journal,
        *,
        notify: Callable[[ProgressEvent], None],
        stop: threading.Event,
        concurrency: int = 8,
    ) -> None:
        self.client = client
        self.list_id = list_id
        self.state = state
        self.journal = journal
        self.notify = notify
        self.stop = stop
        self.concurrency = concurrency
        self.outcome: list[tuple[str, str | None, str, str | None]] = []
        self.error: KlaviyoError | None = None
        self._members: list[tuple[int, str, str | None]] = []
        self._ids: dict[int, str] = {}
        self._prefetch: tuple[threading.Thread, list[Any]] | None = None  # the thread, and [ids, error] it leaves

    def prefetch(self, hashes: np.ndarray) -> None:
        """Start looking up the profile ids of these members now, in a thread: reads only, so they can run
        while the run's last import jobs are still being processed; :meth:`remove` then uses what they found."""
        members = self.state.rows(hashes)
        outcome: list[Any] = [None, None]  # this prefetch's own: a cancelled one finishing late changes nothing

        def look_up() -> None:
            try:
                outcome[0] = self._look_up([(h, email) for h, email, _ in members])
            except BaseException as exc:  # handed to remove(), which reports it like its own lookups' errors
                outcome[1] = exc

        thread = threading.Thread(target=look_up, name="klaviyo-lookups", daemon=True)
        self._prefetch = (thread, outcome)
        thread.start()

    def remove(self, hashes: np.ndarray) -> pd.DataFrame:
        """Remove the members with these email hashes; one row per member: removed, kept (someone else added it
        before klaviyo-magic sent it) or failed, with the reason."""
        self._members = members = self.state.rows(hashes)
        total = len(members)
        self.notify(ProgressEvent("removing", 0, total))
        self._ids = {h: pid for h, _, pid in members if pid}
        emails = {h: email for h, email, _ in members}
        try:
            found = self._prefetched_ids() if self._prefetch is not None else None
            if found is None:
                found = self._look_up([(h, emails[h]) for h, _, _ in members])
        except (KlaviyoError, Stopped) as exc:
            return self.unfinished(exc)
        # Every leaver is looked up in the list itself: whether it is still a member, its profile id, and when it
        # joined. One who joined no later than the list's newest member when klaviyo-magic first sent it was
        # there before: someone else added it, and it is not ours to remove.
        ids = {h: pid for h, (pid, _) in found.items()}
        self.state.remember_profile_ids({h: pid for h, pid in ids.items() if self._ids.get(h) != pid})
        self._ids.update(ids)
        kept, doubtful, gone = classify(members, found, self.state.newest_joins([h for h, _, _ in members]))
        if gone:  # not in the list any more: nothing to remove, and not ours to remember
            self.journal.removed([{"email": emails[h], "profile_id": None, "email_hash": h} for h in gone])
            self.state.forget(gone)
            self.outcome += [(emails[h], None, "removed", GONE) for h in gone]
        others = [h for h in kept if h not in set(doubtful)]  # the doubtful may be ours: they stay in the state
        if others:  # someone else's: forgotten, and journaled, so that a resumed run still reports them
            self.journal.removed(
                [{"email": emails[h], "profile_id": ids[h], "email_hash": h, "kept": kept[h]} for h in others]
            )
            self.state.forget(others)
        self.outcome += [(emails[h], ids[h], "kept", reason) for h, reason in kept.items()]
        targets = [h for h, _, _ in members if h in ids and h not in kept]
        done = settled = len(gone) + len(kept)  # settled without a removal: not in the bar's rate
        self.notify(ProgressEvent("removing", done, total, earlier=settled))
        for start in range(0, len(targets), REMOVE_IDS):
            part = targets[start : start + REMOVE_IDS]
            action = f"removing {len(part):,} members from list '{self.list_id}'"
            try:
                if self.stop.is_set():
                    raise Stopped
                self.client.remove_from_list(self.list_id, [ids[h] for h in part], action=action)
            except (KlaviyoError, Stopped) as exc:
                return self.unfinished(exc)
            self.journal.removed([{"email": emails[h], "profile_id": ids[h], "email_hash": h} for h in part])
            self.state.forget(part)
            self.outcome += [(emails[h], ids[h], "removed", None) for h in part]
            done += len(part)
            self.notify(ProgressEvent("removing", done, total, earlier=settled))
        return removals_frame(self.outcome)

    def cancel_prefetch(self) -> None:
        """Forget a prefetch (its result is not used; a lookup already on its way just finishes)."""
        self._prefetch = None

    def _prefetched_ids(self) -> dict[int, tuple[str, str | None]] | None:
        assert self._prefetch is not None
        thread = self._prefetch[0]
        while thread.is_alive():
            thread.join(0.5)  # in the main thread a Ctrl-C still gets through
        found, error = self._prefetch[1]
        if error is not None:
            raise error
        return found

    def _look_up(self, wanted: list[tuple[int, str]]) -> dict[int, tuple[str, str | None]]:
        return look_up(self.client, self.list_id, wanted, self.concurrency)

    def unfinished(self, exc: BaseException) -> pd.DataFrame:
        """The removals so far, and every other leaver as failed, saying why (a stop, Ctrl-C or an error)."""
        if isinstance(exc, KlaviyoError):
            self.error = exc
        if isinstance(exc, Stopped):
            reason = "not removed: the export was cancelled"
        elif isinstance(exc, KeyboardInterrupt):
            reason = "not removed: the export was interrupted"
        else:
            reason = f"not removed: {str(exc).splitlines()[0][:200]}"
        handled = {email for email, _, _, _ in self.outcome}
        self.outcome += [
            (email, self._ids.get(h) or pid, "failed", reason)
            for h, email, pid in self._members
            if email not in handled
        ]
        return removals_frame(self.outcome)


def removals_frame(rows: list[tuple[str, str | None, str, str | None]]) -> pd.DataFrame:
    """The removals as a DataFrame; object columns, so a missing profile id or reason stays None."""
    return pd.DataFrame(rows, columns=REMOVAL_COLUMNS, dtype=object)


class MirrorPhase:
    """The mirror part of a run: the leavers, the guard, and their removal after the adds and updates.

    :meth:`start_early` gets a head start on input in memory. :meth:`prepare` runs as soon as the whole input has
    been read: the leavers are known then, so the guard is checked and their profile ids are looked up while the
    last import jobs are still being processed.
    :meth:`finish` runs after the jobs: it raises the guard's error, or removes the leavers. ``removed_before``
    are the members the run being resumed removed before it stopped (from its journal).
    """

    def __init__(self, remover: Remover, snapshot: Snapshot, checker: RowChecker, *, max_removals: int | None,
                 removed_before: list[dict[str, Any]]) -> None:  # fmt: skip
        self.remover = remover
        self.snapshot = snapshot
        self.checker = checker
        self.max_removals = max_removals
        self.before = removals_frame(
            [(m.get("email"), m.get("profile_id"), "kept", m["kept"]) if m.get("kept") else
             (m.get("email"), m.get("profile_id"), "removed", None if m.get("profile_id") else GONE)
             for m in removed_before]
        )  # fmt: skip
        self._done_before = np.array([int(m["email_hash"]) for m in removed_before if "email_hash" in m], np.int64)
        self.hashes: np.ndarray | None = None
        self.guard: RemovalLimitError | None = None
        self._early: threading.Thread | None = None

    def start_early(self, sources: list[Any], email: Any) -> None:
        """For input already in memory, find the leavers from the email column alone, in a thread, while the rows
        are checked, and start looking them up: the lookups (Klaviyo allows 75 a second) then overlap the
        checking instead of following it. The emails are only normalised here, not validated: a member's email is
        valid, so an invalid one matches none. :meth:`prepare` decides on the checked rows once all are read."""
        if not len(self.snapshot) or not all(source.in_memory for source in sources):
            return
        self._early = threading.Thread(target=self._early_leavers, args=(sources, email), name="klaviyo-leavers",
                                       daemon=True)  # fmt: skip
        self._early.start()

    def _early_leavers(self, sources: list[Any], email: Any) -> None:
        try:
            present = np.zeros(len(self.snapshot), dtype=bool)
            for source in sources:
                for frame, _ in source.chunks([email]):
                    if self.remover.stop.is_set() or self.remover.client.halted:  # a cancel, Ctrl-C, the run over
                        return
                    present |= self.snapshot.among(_normalised_hashes(frame.iloc[:, 0]))
            self.prepare(self.snapshot.email_hash[~present], empty=False)
        except Exception:  # noqa: BLE001 - a head start only: prepare() after the checks decides, and reports
            self.hashes, self.guard = None, None

    def _join_early(self) -> None:
        early, self._early = self._early, None
        while early is not None and early.is_alive():
            early.join(0.5)  # in the main thread a Ctrl-C still gets through

    def prepare(self, leaving: np.ndarray | None = None, *, empty: bool = False) -> None:
        """Find the leavers (members of the state with no row in the input; ``leaving`` when the caller found
        them, else the checker knows), check the guard, start the lookups. Called early (see :meth:`early`), then
        again once every row has been checked: the guard is always decided on the checked rows, and early
        lookups of another set of leavers are dropped."""
        if leaving is None:
            self._join_early()
            leaving, empty = leavers(self.snapshot, self.checker), not self.checker.distinct_emails
        if len(self._done_before):
            # Members the run being resumed removed (Klaviyo said 204, its journal says so) are not counted twice...
            leaving = leaving[~np.isin(leaving, self._done_before)]
            if self.hashes is None:  # ...and the state, which a run killed at the wrong moment may not have told
                done = np.isin(self.snapshot.email_hash, self._done_before)
                self.remover.state.forget(self.snapshot.email_hash[done])  # ...learns it now
        looking_up = self.hashes is not None and self.guard is None and len(self.hashes) > 0
        if looking_up and not np.array_equal(leaving, self.hashes):
            self.remover.cancel_prefetch()
            looking_up = False
        self.hashes = leaving
        try:
            check_guard(len(leaving) + len(self.before), members=len(self.snapshot), max_removals=self.max_removals,
                        inputs_empty=empty, list_id=self.remover.list_id)  # fmt: skip
        except RemovalLimitError as exc:
            self.guard = exc
            self.remover.cancel_prefetch()
            return
        self.guard = None
        if len(leaving) and not looking_up:
            self.remover.prefetch(leaving)

    def finish(self) -> tuple[pd.DataFrame, str | None, KlaviyoError | None]:
        """The removals (with those of the run resumed), how removing ended (None, "cancelled", "interrupted"),
        and a Klaviyo error that stopped it; raises :class:`RemovalLimitError` when the guard tripped."""
        if self.hashes is None or self._early is not None:
            self.prepare()
        if self.guard is not None:
            raise self.guard
        assert self.hashes is not None
        if not len(self.hashes):
            return self.before, None, None
        try:
            removals = self.remover.remove(self.hashes)
        except KeyboardInterrupt as exc:
            return _joined(self.before, self.remover.unfinished(exc)), "interrupted", None
        ended_early = "cancelled" if self.remover.stop.is_set() else None
        return _joined(self.before, removals), ended_early, self.remover.error


def _normalised_hashes(values: pd.Series) -> np.ndarray:
    """The email hashes of a column's text, normalised as the checks do (stripped, lower-cased), not validated."""
    text, is_text = as_text(values)
    return email_hashes(text[is_text].str.strip().str.lower().to_numpy(dtype=object))


def _joined(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    return after if not len(before) else pd.concat([before, after], ignore_index=True)
