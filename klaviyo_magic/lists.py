"""Klaviyo lists, for the shells and the engine: the account's lists, and creating one.

Each call resolves the connection (a saved connection's name, a ``Connection``, or ``None`` for the default)
and makes as few requests as it can; the client paces and retries them (docs/klaviyo-api.md §2.2-§2.4).
``stop`` and ``on_retry`` go to the client, so a caller in another thread (the form) can say that Klaviyo is
being retried and stop waiting for it: a set ``stop`` ends the call with :class:`~klaviyo_magic.client.Stopped`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import connections
from .client import KlaviyoClient, RetryNotice


@dataclass(frozen=True)
class KlaviyoList:
    """A list as Klaviyo shows it: its id (``Y6nRLr``) and name."""

    id: str
    name: str

    @property
    def label(self) -> str:
        """``VIP (Y6nRLr)``: the name people know it by, and the id exports need."""
        return f"{self.name} ({self.id})"

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> KlaviyoList:
        return cls(resource["id"], (resource.get("attributes") or {}).get("name") or "(unnamed)")


Stop = threading.Event | None
OnRetry = Callable[[RetryNotice], None] | None


def all_lists(connection: Any = None, *, stop: Stop = None, on_retry: OnRetry = None) -> list[KlaviyoList]:
    """Every list of the account (all of Klaviyo's 10-list pages), sorted by name."""
    with KlaviyoClient(connections.resolve(connection), stop=stop, on_retry=on_retry) as client:
        found = [KlaviyoList.from_resource(item) for item in client.iter_lists()]
    return sorted(found, key=lambda item: (item.name.lower(), item.id))


def create_list(name: str, connection: Any = None, *, stop: Stop = None, on_retry: OnRetry = None) -> KlaviyoList:
    """Create a list named ``name`` (Klaviyo allows 150 a day per account) and return it."""
    with KlaviyoClient(connections.resolve(connection), stop=stop, on_retry=on_retry) as client:
        return KlaviyoList.from_resource(client.create_list(name))
