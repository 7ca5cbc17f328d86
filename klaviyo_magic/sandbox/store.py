"""The sandbox account's state: lists, profiles, list membership and import jobs, behind one lock.

Every public method takes the lock and returns copies, so HTTP handlers, the job worker and the test-side
:class:`~klaviyo_magic.sandbox.Sandbox` can call in from any thread. ``changed`` is notified whenever a job
moves, which is what :meth:`Store.wait_for_jobs` waits on.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .jsonapi import UlidFactory, short_id, timestamp
from .profiles import ImportProblem, ProfileBook


@dataclass
class ListRecord:
    id: str
    name: str
    created: str
    updated: str
    opt_in_process: str


@dataclass
class Job:
    """A profile bulk-import job (§2.5). ``payload`` holds the validated profiles until they are applied."""

    id: str
    created_at: str
    total_count: int
    list_ids: list[str]
    payload: list[dict[str, Any]] | None
    status: str = "queued"
    started_at: str | None = None
    completed_at: str | None = None
    completed_count: int = 0
    failed_count: int = 0
    profile_keys: list[int] = field(default_factory=list)  # each created or updated profile once
    seen: set[int] | None = field(default_factory=set)  # profile_keys as a set while the job runs
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class JobView:
    """What readers see of a job: its attributes, without the profiles and errors it may hold."""

    id: str
    status: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    total_count: int
    completed_count: int
    failed_count: int
    list_ids: tuple[str, ...]

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job.id,
            job.status,
            job.created_at,
            job.started_at,
            job.completed_at,
            job.total_count,
            job.completed_count,
            job.failed_count,
            tuple(job.list_ids),
        )


class Membership:
    """One list's members (profile keys, see :class:`ProfileBook`), in joining order, pageable from any
    position without sorting.

    ``order``/``joined`` are append-only; ``position`` says which slot is a member's current one, so a
    removed (or removed and re-added) member's old slot is skipped and cursors never shift.
    """

    __slots__ = ("order", "joined", "position")

    def __init__(self) -> None:
        self.order: list[int] = []
        self.joined: list[str] = []
        self.position: dict[int, int] = {}

    def add(self, keys: Iterable[int], now: str) -> None:
        # Adding a current member changes nothing: joined_group_at is when the profile last joined (§2.11).
        joining = [key for key in dict.fromkeys(keys) if key not in self.position]
        self.position.update(zip(joining, range(len(self.order), len(self.order) + len(joining)), strict=True))
        self.order.extend(joining)
        self.joined.extend([now] * len(joining))

    def remove(self, key: int) -> None:
        self.position.pop(key, None)

    def walk(
        self, start: int | None, size: int, descending: bool, keep: Callable[[str], bool] | None = None
    ) -> tuple[list[tuple[int, str]], int | None]:
        """Up to ``size`` ``(profile key, joined_group_at)`` from slot ``start`` (None: the first or, when
        descending, the newest slot) and the slot of the next member after them, or None. ``keep`` passes only
        members whose joined_group_at it accepts; then a page may have to walk past many members."""
        step = -1 if descending else 1
        index = (len(self.order) - 1 if descending else 0) if start is None else start
        found: list[tuple[int, str]] = []
        while 0 <= index < len(self.order):
            key = self.order[index]
            if self.position.get(key) == index and (keep is None or keep(self.joined[index])):
                if len(found) == size:
                    return found, index
                found.append((key, self.joined[index]))
            index += step
        return found, None

    def joined_at(self, key: int) -> str | None:
        index = self.position.get(key)
        return None if index is None else self.joined[index]


class Store:
    def __init__(self, account_name: str) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.new_id = UlidFactory()
        self.account = _account(account_name)
        self.lists: dict[str, ListRecord] = {}
        self.members: dict[str, Membership] = {}
        self.profiles = ProfileBook(self.new_id)
        self.jobs: dict[str, Job] = {}

    # -- lists ------------------------------------------------------------------------------------------

    def create_list(self, name: str, opt_in_process: str = "single_opt_in") -> ListRecord:
        with self.lock:
            list_id = short_id()
            while list_id in self.lists:
                list_id = short_id()
            now = timestamp()
            record = self.lists[list_id] = ListRecord(list_id, name, now, now, opt_in_process)
            self.members[list_id] = Membership()
            return copy.copy(record)

    def get_list(self, list_id: str) -> ListRecord | None:
        with self.lock:
            record = self.lists.get(list_id)
            return copy.copy(record) if record else None

    def all_lists(self) -> list[ListRecord]:
        with self.lock:
            return [copy.copy(record) for record in self.lists.values()]

    def missing_lists(self, list_ids: Iterable[str]) -> list[str]:
        with self.lock:
            return [list_id for list_id in list_ids if list_id not in self.lists]

    def profile_count(self, list_id: str) -> int:
        with self.lock:
            return len(self.members[list_id].position)

    # -- membership -------------------------------------------------------------------------------------

    def missing_profiles(self, profile_ids: Iterable[str]) -> list[str]:
        with self.lock:
            return [profile_id for profile_id in profile_ids if self.profiles.key_of(profile_id) is None]

    def add_members(self, list_id: str, profile_ids: Iterable[str]) -> None:
        """Add existing profiles (unknown ids are ignored: check them with :meth:`missing_profiles`)."""
        with self.lock:
            self._add_members(list_id, self._keys(profile_ids), timestamp())

    def _add_members(self, list_id: str, keys: Iterable[int], now: str) -> None:
        self.members[list_id].add(keys, now)
        self.lists[list_id].updated = now

    def remove_members(self, list_id: str, profile_ids: Iterable[str]) -> None:
        with self.lock:
            membership = self.members[list_id]
            for key in self._keys(profile_ids):
                membership.remove(key)
            self.lists[list_id].updated = timestamp()

    def seed_members(self, list_id: str, profiles: list[dict[str, Any]]) -> list[str]:
        """Upsert each profile as an import would (the store keeps the dicts), add them all to the list, and
        return their ids in order. A conflict raises :class:`ImportProblem` at that profile: those before it
        stay upserted, and none is added to the list."""
        with self.lock:
            now = timestamp()
            keys = [self.profiles.upsert(attributes, None, None, now) for attributes in profiles]
            self._add_members(list_id, keys, now)
            return [self.profiles.id_of(key) for key in keys]

    def _keys(self, profile_ids: Iterable[str]) -> list[int]:
        """The keys of the profiles with these ids, leaving out unknown ids."""
        keys = map(self.profiles.key_of, profile_ids)
        return [key for key in keys if key is not None]

    def member_page(
        self,
        list_id: str,
        start: int | None,
        size: int,
        descending: bool,
        keep: Callable[[str], bool] | None = None,
    ) -> tuple[list[tuple[dict[str, Any], str]], int | None]:
        """A page of ``(profile, joined_group_at)`` in joining order, and where the next page starts; ``keep``
        chooses members by their joined_group_at."""
        with self.lock:
            found, next_start = self.members[list_id].walk(start, size, descending, keep)
            return [(self.profiles.snapshot(key), joined) for key, joined in found], next_start

    def members_matching(self, list_id: str, field: str, values: Iterable[str]) -> list[tuple[dict[str, Any], str]]:
        """Members whose ``field`` is one of ``values``, found through the identifier index, not a scan."""
        with self.lock:
            membership = self.members[list_id]
            found: dict[int, str] = {}
            for value in values:
                key = self.profiles.lookup(field, value)
                joined = membership.joined_at(key) if key is not None else None
                if joined is not None:
                    found[key] = joined
            ordered = sorted(found, key=membership.position.__getitem__)
            return [(self.profiles.snapshot(key), found[key]) for key in ordered]

    def all_members(self, list_id: str) -> list[tuple[dict[str, Any], str]]:
        with self.lock:
            membership = self.members[list_id]
            # ``position`` is in joining order too: a re-added member was popped and inserted again.
            return [
                (self.profiles.snapshot(key), membership.joined[index]) for key, index in membership.position.items()
            ]

    # -- profiles ---------------------------------------------------------------------------------------

    def get_profiles(self, profile_ids: Iterable[str]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.profiles.snapshot(key) for key in self._keys(profile_ids)]

    def find_profiles(self, field: str, values: Iterable[str]) -> list[dict[str, Any]]:
        with self.lock:
            found = {key: None for value in values if (key := self.profiles.lookup(field, value)) is not None}
            return [self.profiles.snapshot(key) for key in found]

    def profile_page(self, start: int | None, size: int, descending: bool) -> tuple[list[dict[str, Any]], int | None]:
        """A page of profiles in creation order (newest first when descending) and where the next starts."""
        with self.lock:
            count = len(self.profiles)  # keys are positions in creation order
            if descending:
                first = count - 1 if start is None else start
                keys = range(first, max(first - size, -1), -1)
                after = first - size
            else:
                first = start or 0
                keys = range(first, min(first + size, count))
                after = first + size
            page = [self.profiles.snapshot(key) for key in keys]
            return page, after if 0 <= after < count else None

    def all_profiles(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.profiles.snapshot(key) for key in range(len(self.profiles))]

    # -- import jobs ------------------------------------------------------------------------------------

    def create_job(self, profiles: list[dict[str, Any]], list_ids: list[str]) -> JobView:
        with self.lock:
            job = Job(self.new_id(), timestamp(), len(profiles), list_ids, profiles)
            self.jobs[job.id] = job
            return JobView.of(job)

    def get_job(self, job_id: str) -> JobView | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return JobView.of(job) if job else None

    def all_jobs(self) -> list[JobView]:
        with self.lock:
            return [JobView.of(job) for job in self.jobs.values()]

    def job_errors(self, job_id: str, start: int = 0, end: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Import errors ``start:end`` of a job, and how many it has."""
        with self.lock:
            errors = self.jobs[job_id].errors
            return [dict(error) for error in errors[start:end]], len(errors)

    def job_profile_ids(self, job_id: str, start: int, end: int) -> tuple[list[str], int]:
        """Ids ``start:end`` of the profiles a job created or updated, and how many there are."""
        with self.lock:
            keys = self.jobs[job_id].profile_keys
            return list(map(self.profiles.id_of, keys[start:end])), len(keys)

    def start_job(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs[job_id]
            job.status, job.started_at = "processing", timestamp()
            self.changed.notify_all()

    def import_chunk(self, job_id: str, start: int, end: int, fails: Callable[[str], bool] | None) -> None:
        """Apply profiles ``start:end`` of a job: upsert each, then add the successful ones to its lists.
        ``fails`` marks emails that must fail asynchronously (the ``fail_emails`` fault)."""
        with self.lock:
            job = self.jobs[job_id]
            assert job.payload is not None
            now = timestamp()
            upsert = self.profiles.upsert
            imported: list[int] = []
            for index in range(start, min(end, len(job.payload))):
                resource = job.payload[index]
                attributes = resource["attributes"]
                try:
                    if fails is not None and (email := attributes.get("email")) and fails(email):
                        raise ImportProblem("invalid", "Invalid input.", f"The email address '{email}' was rejected.")
                    imported.append(upsert(attributes, resource.get("meta"), resource.get("id"), now))
                except ImportProblem as problem:
                    job.errors.append(_import_error(problem, index, attributes))
            for list_id in job.list_ids:
                if list_id in self.lists:
                    self._add_members(list_id, imported, now)
            assert job.seen is not None
            job.profile_keys.extend([key for key in dict.fromkeys(imported) if key not in job.seen])
            job.seen.update(imported)
            job.completed_count += len(imported)
            job.failed_count = len(job.errors)
            self.changed.notify_all()

    def finish_job(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs[job_id]
            job.status, job.completed_at, job.payload, job.seen = "complete", timestamp(), None, None
            self.changed.notify_all()

    def wait_for_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while busy := [job.id for job in self.jobs.values() if job.status in ("queued", "processing")]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(busy)} import job(s) still running after {timeout} s: {busy[:5]}")
                self.changed.wait(remaining)


def _import_error(problem: ImportProblem, index: int, attributes: dict[str, Any]) -> dict[str, Any]:
    """An ``import-error`` (§2.8); the pointer names the profile in the request, like validation errors."""
    return {
        "id": str(uuid.uuid4()),
        "code": problem.code,
        "title": problem.title,
        "detail": problem.detail,
        "source": {"pointer": f"/data/attributes/profiles/data/{index}"},
        "original_payload": attributes,
    }


def _account(name: str) -> dict[str, Any]:
    """The one account, with the attributes of §2.1."""
    public_key = short_id()
    return {
        "id": public_key,
        "test_account": False,
        "contact_information": {
            "default_sender_name": name,
            "default_sender_email": "marketing@sandbox.example",
            "website_url": "https://sandbox.example",
            "organization_name": name,
            "street_address": {
                "address1": "1 Sandbox Way",
                "address2": None,
                "city": "Boston",
                "region": "MA",
                "country": "US",
                "zip": "02110",
            },
        },
        "industry": None,
        "timezone": "America/New_York",
        "preferred_currency": "USD",
        "public_api_key": public_key,
        "locale": "en-US",
    }
