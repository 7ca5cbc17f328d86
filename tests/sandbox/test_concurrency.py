"""A hundred clients at once, each with its own connection, mixing reads and bulk imports."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sandbox_support import JOBS, Api

CLIENTS = 100
PROFILES_EACH = 50


def test_100_concurrent_clients_all_get_correct_answers(sb):
    list_id = sb.create_list("Crowd")
    account_id = sb.account["id"]
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> set[str]:
        api = Api(sb.url)
        emails = [f"c{number}-{i}@example.com" for i in range(PROFILES_EACH)]
        start.wait(timeout=30)
        assert api.get("/api/accounts").json()["data"][0]["id"] == account_id
        response = api.bulk_import([Api.profile(email) for email in emails], [list_id])
        assert response.status_code == 202, response.text
        job_id = response.json()["data"]["id"]
        assert any(item["id"] == list_id for item in api.collect("/api/lists"))
        deadline = time.monotonic() + 30
        while (job := api.get(f"{JOBS}/{job_id}").json()["data"])["attributes"]["status"] != "complete":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["attributes"]["completed_count"] == PROFILES_EACH
        found = api.get("/api/profiles", params={"filter": f'equals(email,"{emails[7]}")'}).json()["data"]
        assert [item["attributes"]["email"] for item in found] == [emails[7]]
        members = api.get(f"/api/lists/{list_id}/profiles", params={"filter": f'equals(email,"{emails[0]}")'})
        assert [item["attributes"]["email"] for item in members.json()["data"]] == [emails[0]]
        api.session.close()
        return set(emails)

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    expected = set().union(*results)
    assert len(expected) == CLIENTS * PROFILES_EACH
    assert sb.member_emails(list_id) == expected
    assert {job["status"] for job in sb.jobs()} == {"complete"} and len(sb.jobs()) == CLIENTS
    assert all(record.status is not None and record.status < 400 for record in sb.requests)
