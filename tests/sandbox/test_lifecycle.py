"""Starting and stopping a sandbox, and what the Python side can see without HTTP."""

from __future__ import annotations

import socket

import pytest
import requests
from sandbox_support import Api

from klaviyo_magic.sandbox import Sandbox


def test_start_stop_frees_the_port_and_closes_open_connections():
    sb = Sandbox(rate_limits=False)
    with pytest.raises(RuntimeError, match="start the sandbox first"):
        sb.url  # noqa: B018
    sb.start()
    assert sb.url == f"http://127.0.0.1:{sb.port}"
    api = Api(sb.url)
    assert api.get("/api/accounts").status_code == 200  # leaves a keep-alive connection open
    port = sb.port
    sb.stop()
    sb.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        api.get("/api/accounts")
    with Sandbox(port=port) as successor:  # the port is free again
        assert Api(successor.url).get("/api/accounts").status_code == 200
    with pytest.raises(RuntimeError, match="cannot be started again"):
        sb.start()


def test_only_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0")


def test_a_fixed_port_and_the_repr_hide_nothing_secret():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with Sandbox(port=free_port, api_keys=["pk_secret_value_123456"]) as sb:
        assert sb.port == free_port
        assert "pk_secret" not in repr(sb) and sb.url in repr(sb)


def test_inspection_without_http(sb, api):
    list_id = sb.create_list("Seeded")
    assert [(item["id"], item["name"], item["profile_count"]) for item in sb.lists()] == [(list_id, "Seeded", 0)]
    api.import_and_wait(sb, [Api.profile("i@example.com", first_name="Ida", properties={"a": 1})], [list_id])
    (member,) = sb.list_members(list_id)
    assert (member["email"], member["first_name"], member["properties"]) == ("i@example.com", "Ida", {"a": 1})
    assert member["joined_group_at"] and member["id"] == sb.find_profile("I@EXAMPLE.COM")["id"]
    assert sb.find_profile("nobody@example.com") is None
    (job,) = sb.jobs()
    assert (job["status"], job["total_count"], job["list_ids"], job["import_errors"]) == (
        "complete",
        1,
        [list_id],
        [],
    )
    assert sb.account["contact_information"]["organization_name"] == "Sandbox Demo Co"
    with pytest.raises(KeyError):
        sb.member_emails("NoList")


def test_wait_for_jobs_times_out_while_jobs_are_pending():
    with Sandbox(rate_limits=False, job_delay=5.0) as sb:
        assert Api(sb.url).bulk_import([Api.profile("w@example.com")]).status_code == 202
        with pytest.raises(TimeoutError, match="still running"):
            sb.wait_for_jobs(timeout=0.2)
