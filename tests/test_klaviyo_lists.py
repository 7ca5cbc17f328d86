"""klaviyo_magic.lists, the list operations the form performs, over real HTTP against the sandbox."""

from __future__ import annotations

import threading

import pytest

from klaviyo_magic import connections, lists
from klaviyo_magic.connections import Connection
from klaviyo_magic.retries import Stopped

KEY = "pk_lists_tests_SECRETSECRET1234"
KEY_VAR = "KLAVIYO_LISTS_TEST_KEY"


@pytest.fixture
def conn(sandbox, klaviyo_home) -> Connection:
    return Connection.from_key(KEY, base_url=sandbox.url, name="lists-test")


def test_all_lists_reads_every_page_and_sorts_by_name(sandbox, conn):
    # 23 lists are three of Klaviyo's 10-list pages; the names' case must not decide the order.
    names = [f"{'Segment' if i % 2 else 'segment'} {i:02d}" for i in range(23)]
    ids = {sandbox.create_list(name): name for name in reversed(names)}

    found = lists.all_lists(conn)

    assert [item.name for item in found] == names
    assert {item.id: item.name for item in found} == ids
    assert [r.operation for r in sandbox.requests] == ["get_lists"] * 3


def test_all_lists_of_an_empty_account(sandbox, conn):
    assert lists.all_lists(conn) == []


def test_create_list_makes_it_in_the_account(sandbox, conn):
    created = lists.create_list("VIP customers", conn)

    assert created.name == "VIP customers" and created.label == f"VIP customers ({created.id})"
    assert [(item["id"], item["name"]) for item in sandbox.lists()] == [(created.id, "VIP customers")]
    assert lists.all_lists(conn) == [created]


def test_a_saved_connection_is_found_by_name(sandbox, klaviyo_home, monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)
    connections.add("sandbox", api_key_env=KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)

    created = lists.create_list("Newsletter", "sandbox")

    assert lists.all_lists("sandbox") == [created]


def test_a_set_stop_ends_the_call_before_any_request(sandbox, conn):
    # The form sets it from Cancel while a list call waits in another thread.
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        lists.all_lists(conn, stop=stop)
    with pytest.raises(Stopped):
        lists.create_list("Never made", conn, stop=stop)
    assert sandbox.requests == [] and sandbox.lists() == []
