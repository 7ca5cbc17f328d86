"""The test-side handle on a running sandbox: start and stop it, seed and inspect its state, inject faults."""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..loopback import is_loopback
from .faults import Faults
from .jobs import JobRunner
from .profiles import ImportProblem, render_attributes
from .ratelimit import RateLimiter
from .requestlog import RequestLog, RequestRecord
from .server import Backend, SandboxServer
from .store import Store
from .validation import profile_problem


class Sandbox:
    """A Klaviyo-compatible API server on loopback, for tests, notebooks and benchmarks.

    ``Sandbox(*, host="127.0.0.1", port=0, rate_limits=True, api_keys=None, job_delay=0.0,
    account_name="Sandbox Demo Co", verbose=False)``. ``port=0`` picks a free port. ``api_keys`` restricts
    the accepted private keys (default: any ``pk_...`` key). ``job_delay`` is how long each import job waits
    before each status change (queued -> processing -> complete). ``verbose`` prints one line per request.

    Lifecycle: ``start()`` / ``stop()`` or ``with Sandbox() as sb:``; ``url`` (``http://127.0.0.1:PORT``)
    and ``port`` once started. A stopped sandbox cannot be started again.

    Seeding and inspection (direct, no HTTP): ``account``, ``create_list(name) -> id``, ``lists()``,
    ``list_members(list_id)``, ``member_emails(list_id)``, ``profiles()``, ``find_profile(email)``,
    ``jobs()``, ``wait_for_jobs(timeout=30)``, ``requests`` (the request log, newest last, keys masked),
    ``clear_log()``, ``reset_rate_limits()``.

    Members someone else added or removed (Klaviyo's UI, another integration), for tests of list sync and of
    kill and resume: ``add_members(list_id, emails_or_profiles) -> list[str]`` creates or updates profiles by
    email (an item is an email or a dict of attributes with ``"email"``), adds them to the list and returns
    their profile ids; ``remove_members(list_id, emails)`` takes them out again, keeping the profiles.

    Faults (``route`` is ``"METHOD /path"`` with ``*`` for one path segment, or ``"*"`` for any request):
    ``fail_next(route, count=1, status=500, retry_after=None)``, ``drop_next(route, count=1)``,
    ``delay_next(route, seconds, count=1)``, ``fail_emails(pattern)``, ``reject_emails(pattern)``,
    ``reset_faults()``. See docs/sandbox.md.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: bool = True,
        api_keys: Iterable[str] | None = None,
        job_delay: float = 0.0,
        account_name: str = "Sandbox Demo Co",
        verbose: bool = False,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the sandbox only listens on loopback addresses (127.0.0.1, ::1); got {host!r}")
        self._address = (host, port)
        self._store = Store(account_name)
        self._faults = Faults()
        self._backend = Backend(
            store=self._store,
            faults=self._faults,
            limiter=RateLimiter(enabled=rate_limits),
            log=RequestLog(),
            jobs=JobRunner(self._store, self._faults, job_delay),
            api_keys=frozenset(api_keys) if api_keys is not None else None,
            verbose=verbose,
            stopping=threading.Event(),
        )
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self._backend.base_url if self._server else "not started"
        return f"Sandbox({where}, rate_limits={self.rate_limits})"

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        if self._stopped:
            raise RuntimeError("a stopped sandbox cannot be started again; create a new Sandbox")
        host, port = self._address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._backend.stopping.clear()
        self._server = SandboxServer((host, port), self._backend, family)
        bound_port = self._server.server_address[1]
        self._backend.base_url = f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{bound_port}"
        self._backend.jobs.start()
        # A short poll interval makes stop() take milliseconds instead of the default half second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="klaviyo-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, stop the job worker and free the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped = True
        self._backend.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections(timeout=5.0)
        self._backend.jobs.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Started and not stopped yet."""
        return self._server is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("start the sandbox first (sb.start() or 'with Sandbox() as sb')")
        return self._backend.base_url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("start the sandbox first (sb.start() or 'with Sandbox() as sb')")
        return int(self._server.server_address[1])

    @property
    def rate_limits(self) -> bool:
        return self._backend.limiter.enabled

    def reset_rate_limits(self) -> None:
        """Empty every rate-limit window, as if a minute (and a day) had passed."""
        self._backend.limiter.reset()

    # -- seeding and inspection --------------------------------------------------------------------------

    @property
    def account(self) -> dict[str, Any]:
        return dict(self._store.account)

    def create_list(self, name: str) -> str:
        return self._store.create_list(name).id

    def lists(self) -> list[dict[str, Any]]:
        return [
            {**vars(record), "profile_count": self._store.profile_count(record.id)}
            for record in self._store.all_lists()
        ]

    def list_members(self, list_id: str) -> list[dict[str, Any]]:
        """The list's members in joining order: profile fields plus ``joined_group_at``."""
        self._require_list(list_id)
        return [{**_profile(p), "joined_group_at": joined} for p, joined in self._store.all_members(list_id)]

    def member_emails(self, list_id: str) -> set[str]:
        self._require_list(list_id)
        return {profile["email"] for profile, _ in self._store.all_members(list_id) if profile.get("email")}

    def profiles(self) -> list[dict[str, Any]]:
        return [_profile(record) for record in self._store.all_profiles()]

    def find_profile(self, email: str) -> dict[str, Any] | None:
        found = self._store.find_profiles("email", [email])
        return _profile(found[0]) if found else None

    def jobs(self) -> list[dict[str, Any]]:
        """Every import job, oldest first, with its ``import_errors``."""
        jobs = []
        for job in self._store.all_jobs():
            errors, _ = self._store.job_errors(job.id)
            jobs.append({**vars(job), "list_ids": list(job.list_ids), "import_errors": errors})
        return jobs

    def wait_for_jobs(self, timeout: float = 30.0) -> None:
        """Block until no job is queued or processing; TimeoutError after ``timeout`` seconds."""
        self._store.wait_for_jobs(timeout)

    @property
    def requests(self) -> list[RequestRecord]:
        return self._backend.log.snapshot()

    def clear_log(self) -> None:
        self._backend.log.clear()

    def add_members(self, list_id: str, emails_or_profiles: Iterable[str | Mapping[str, Any]]) -> list[str]:
        """Add members as Klaviyo's UI or another integration would, without HTTP; return their profile ids.

        Each item is an email or a dict of profile attributes with an ``"email"`` (``{"email": ...,
        "first_name": ..., "properties": {...}}``). The profile with that email (any case) is updated as a bulk
        import would update it, or created; then it joins the list now, unless it is already a member, which
        keeps its ``joined_group_at``.

        Errors: ``KeyError`` for an unknown list. Before anything changes, ``ValueError`` for an item a bulk
        import would refuse and ``TypeError`` for one that is neither a str nor a dict. ``ValueError`` for
        identifiers that point at two profiles; the items before it stay upserted, and none joins the list.
        """
        self._require_list(list_id)
        profiles = [_seed_profile(position, item) for position, item in enumerate(emails_or_profiles)]
        try:
            return self._store.seed_members(list_id, profiles)
        except ImportProblem as problem:
            raise ValueError(f"cannot add these members: {problem.detail}") from None

    def remove_members(self, list_id: str, emails: Iterable[str]) -> None:
        """Take the profiles with these emails (any case) out of the list, as Klaviyo's UI would; the profiles
        stay. An email whose profile is not a member changes nothing. ``KeyError``, before anything changes,
        for an unknown list or an email no profile has."""
        self._require_list(list_id)
        profile_ids = []
        for email in emails:
            found = self._store.find_profiles("email", [email])
            if not found:
                raise KeyError(f"the sandbox has no profile with email {email!r}")
            profile_ids.append(found[0]["id"])
        self._store.remove_members(list_id, profile_ids)

    def _require_list(self, list_id: str) -> None:
        if self._store.get_list(list_id) is None:
            raise KeyError(f"the sandbox has no list {list_id!r}")

    # -- faults ----------------------------------------------------------------------------------------

    def fail_next(
        self, route: str, count: int = 1, status: int = 500, retry_after: int | None = None, *, after: int = 0
    ) -> None:
        """The next ``count`` matching requests get ``status`` with a JSON:API error body (and ``Retry-After``
        when ``retry_after`` is given; a 429 without it has no Retry-After at all). ``after`` lets that many
        matching requests through first: ``after=1`` breaks an export after its first job."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an error status (400-599), got {status}")
        self._faults.add("fail", route, count, status=status, retry_after=retry_after, after=after)

    def drop_next(self, route: str, count: int = 1, *, after: int = 0) -> None:
        """The next ``count`` matching requests (after ``after`` let through) are read, then the connection is
        closed without an answer."""
        self._faults.add("drop", route, count, after=after)

    def delay_next(self, route: str, seconds: float, count: int = 1, *, after: int = 0) -> None:
        """The next ``count`` matching requests (after ``after`` let through) wait ``seconds``, then are handled
        normally."""
        self._faults.add("delay", route, count, seconds=seconds, after=after)

    def fail_emails(self, pattern: str) -> None:
        """Profiles whose email matches (``re.search``, case-insensitive) fail during job processing: counted
        in ``failed_count``, listed in import-errors, not imported, not added to lists."""
        self._faults.fail_emails(pattern)

    def reject_emails(self, pattern: str) -> None:
        """Profiles whose email matches make the bulk-import POST a 400, one error per profile."""
        self._faults.reject_emails(pattern)

    def reset_faults(self) -> None:
        self._faults.reset()


def _seed_profile(position: int, item: str | Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one ``add_members`` item as profile attributes (the store keeps it), checked as a bulk import
    checks a profile, so seeding cannot create what Klaviyo would refuse."""
    if not isinstance(item, str | Mapping):
        raise TypeError(f"item {position}: expected an email or a dict of profile attributes, got {item!r}")
    attributes = {"email": item} if isinstance(item, str) else copy.deepcopy(dict(item))
    if not isinstance(attributes.get("email"), str):
        raise ValueError(f"item {position}: give an email, or a dict of profile attributes with an 'email'")
    problem = profile_problem(attributes)
    if problem is not None:
        raise ValueError(f"item {position}: {problem}")
    return attributes


def _profile(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], **render_attributes(record)}
