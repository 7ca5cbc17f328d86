"""Mirror mode: remove from the list the members klaviyo-magic put there who are no longer in the segment.

The leavers are the members of the sync state (``state.py``) whose email is in no row of this run's input (a
row skipped for a bad phone number still counts as present: "never remove on doubt"). Members someone else added
are not in the state, so they are never touched. Before removing anyone the run checks the guard
(``max_removals``). Removal needs Klaviyo profile ids: the state's, or else the list's own answer to
``GET /api/lists/{id}/profiles?filter=any(email,[...])`` (100 emails a request, every page read; only members
come back, so a lookup can never find someone outside the list). Then ``DELETE .../relationships/profiles``, 1000
ids a call; a member leaves the state only after Klaviyo's 204 (docs/klaviyo-api.md §2.10, §2.11; docs/sync.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ..client import KlaviyoClient, Stopped
from ..errors import KlaviyoError, KlaviyoMagicError
from ..progress import ProgressEvent
from .checks import RowChecker
from .journal import Journal
from .state import ListState, Snapshot

LOOKUP_EMAILS = 100  # emails per member lookup: one full page of Klaviyo's largest page size
REMOVE_IDS = 1000  # Klaviyo's cap on ids per removal call
REMOVAL_COLUMNS = ["email", "profile_id", "status", "reason"]
GONE = "no longer a member of the list (removed outside klaviyo-magic): nothing to remove"


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


def check_guard(count: int, *, members: int, max_removals: int | None, inputs_empty: bool, list_id: str) -> None:
    """Refuse, before removing anyone, a removal larger than allowed, or any removal for an empty segment unless
    ``max_removals`` allows it explicitly (an empty result is more often a broken query than an empty segment)."""
    if not count:
        return
    allowed = allowance(members, max_removals)
    if inputs_empty and max_removals is None:
        raise RemovalLimitError(
            f"Mirror stopped before removing anyone: the segment has no valid email, so all {count:,} members "
            f"klaviyo-magic put in list '{list_id}' would be removed. If the segment really is empty, allow it "
            f"explicitly: max_removals={count} (--max-removals {count}).",
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
            f"Mirror stopped before removing anyone: {count:,} members left the segment, more than "
            f"max_removals={allowed:,}{why}. The adds and updates were sent. If the segment is right, allow it: "
            f"max_removals={count} (--max-removals {count}).",
            would_remove=count,
            allowed=allowed,
        )


def planned(state: ListState, hashes: np.ndarray, status: str, reason: str | None) -> pd.DataFrame:
    """The leavers as a removals frame (email, profile id as far as known), all with one status."""
    return removals_frame([(email, pid, status, reason) for _, email, pid in state.rows(hashes)])


class Remover:
    """Looks up the leavers' profile ids and removes them from the list, journaling each removal.

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

    def remove(self, hashes: np.ndarray) -> pd.DataFrame:
        """Remove the members with these email hashes; one row per member: removed, or failed with the reason."""
        self._members = members = self.state.rows(hashes)
        total = len(members)
        self.notify(ProgressEvent("removing", 0, total))
        ids = self._ids = {h: pid for h, _, pid in members if pid}
        emails = {h: email for h, email, _ in members}
        try:
            found = self._look_up([(h, emails[h]) for h, _, pid in members if not pid])
        except (KlaviyoError, Stopped) as exc:
            return self.unfinished(exc)
        self.state.remember_profile_ids(found)
        ids.update(found)
        gone = [h for h, _, _ in members if h not in ids]
        if gone:  # not in the list any more: nothing to remove, and not ours to remember
            self.journal.removed([{"email": emails[h], "profile_id": None, "email_hash": h} for h in gone])
            self.state.forget(gone)
            self.outcome += [(emails[h], None, "removed", GONE) for h in gone]
        targets = [h for h, _, _ in members if h in ids]
        done = len(gone)
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
            self.notify(ProgressEvent("removing", done, total))
        return removals_frame(self.outcome)

    def _look_up(self, wanted: list[tuple[int, str]]) -> dict[int, str]:
        """Profile ids by email hash, for the members among ``wanted`` that the list still has."""
        by_email = {email: h for h, email in wanted}
        emails = list(by_email)
        groups = [emails[i : i + LOOKUP_EMAILS] for i in range(0, len(emails), LOOKUP_EMAILS)]

        def one(group: list[str]) -> list[dict]:
            action = f"looking up {len(group)} members of list '{self.list_id}'"
            return list(self.client.iter_list_members(self.list_id, group, action=action))

        found: dict[int, str] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="klaviyo-lookup") as pool:
            for profiles in pool.map(one, groups):
                for profile in profiles:
                    email = str((profile.get("attributes") or {}).get("email") or "").strip().lower()
                    if email in by_email:
                        found[by_email[email]] = profile["id"]
        return found

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
