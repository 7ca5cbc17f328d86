"""Fault injection: failing, dropping and delaying requests on chosen routes."""

from __future__ import annotations

import time

import pytest
import requests
from sandbox_support import JOBS, Api


@pytest.mark.parametrize(("status", "code"), [(500, "error"), (502, "bad_gateway"), (503, "service_unavailable")])
def test_fail_next_answers_the_status_with_a_jsonapi_error(sb, api, status, code):
    sb.fail_next("POST /api/profile-bulk-import-jobs", status=status)
    response = api.bulk_import([Api.profile("f@example.com")])
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    assert response.json()["errors"][0]["code"] == code
    assert "Retry-After" not in response.headers
    assert sb.jobs() == []  # the failed request did nothing
    assert api.bulk_import([Api.profile("f@example.com")]).status_code == 202


def test_fail_next_429_with_and_without_retry_after(sb, api):
    sb.fail_next("GET /api/lists", status=429, retry_after=7)
    sb.fail_next("GET /api/lists", status=429)
    with_header = api.get("/api/lists")
    assert with_header.status_code == 429 and with_header.headers["Retry-After"] == "7"
    assert with_header.json()["errors"][0]["detail"] == "Request was throttled. Expected available in 7 seconds."
    without = api.get("/api/lists")
    assert without.status_code == 429 and "Retry-After" not in without.headers
    assert without.json()["errors"][0]["code"] == "throttled"
    assert api.get("/api/lists").status_code == 200


def test_retry_after_on_a_503(sb, api):
    sb.fail_next("*", status=503, retry_after=2)
    response = api.get("/api/accounts")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")


def test_count_and_route_patterns(sb, api):
    job_id = api.bulk_import([Api.profile("p@example.com")]).json()["data"]["id"]
    sb.fail_next("GET /api/profile-bulk-import-jobs/*", count=2, status=504)
    assert api.get(JOBS).status_code == 200  # * is one segment: the collection does not match
    assert api.get(f"{JOBS}/{job_id}/import-errors").status_code == 200  # nor do deeper paths
    assert [api.get(f"{JOBS}/{job_id}/").status_code for _ in range(3)] == [504, 504, 200]
    sb.fail_next("get /api/lists/")  # method case and trailing slash do not matter
    assert api.get("/api/lists").status_code == 500


def test_after_lets_matching_requests_through_first(sb, api):
    sb.fail_next("GET /api/lists", count=2, status=503, after=2)
    assert api.get("/api/accounts").status_code == 200  # other routes do not count
    assert [api.get("/api/lists").status_code for _ in range(5)] == [200, 200, 503, 503, 200]
    sb.delay_next("GET /api/lists", 0.3, after=1)
    started = time.monotonic()
    api.get("/api/lists")
    assert time.monotonic() - started < 0.3
    api.get("/api/lists")
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError, match="after"):
        sb.fail_next("*", after=-1)


def test_fail_next_applies_before_auth_and_counts_even_for_strangers(sb):
    sb.fail_next("*")
    assert Api(sb.url, "wrong").get("/api/accounts").status_code == 500
    assert Api(sb.url, "wrong").get("/api/accounts").status_code == 401


def test_drop_next_closes_the_connection_without_an_answer(sb, api):
    sb.drop_next("POST /api/profile-bulk-import-jobs")
    with pytest.raises(requests.ConnectionError):
        api.bulk_import([Api.profile("d@example.com")])
    assert sb.requests[-1].status is None and sb.requests[-1].body_bytes > 0
    assert sb.jobs() == []
    assert api.bulk_import([Api.profile("d@example.com")]).status_code == 202


def test_delay_next_makes_a_client_time_out(sb, api):
    sb.delay_next("GET /api/accounts", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        api.session.get(sb.url + "/api/accounts", timeout=0.3)
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    assert api.get("/api/accounts").status_code == 200  # the next one is not delayed
    assert time.monotonic() - started < 0.5


def test_delayed_requests_are_still_answered(sb, api):
    sb.delay_next("*", seconds=0.3, count=2)
    started = time.monotonic()
    assert api.get("/api/lists").status_code == 200
    assert api.get("/api/lists").status_code == 200
    assert time.monotonic() - started >= 0.6


def test_reset_faults_disarms_everything(sb, api):
    sb.fail_next("*", count=5)
    sb.drop_next("*")
    sb.fail_emails(".")
    sb.reject_emails(".")
    sb.reset_faults()
    assert api.get("/api/accounts").status_code == 200
    api.import_and_wait(sb, [Api.profile("r@example.com")])
    assert sb.find_profile("r@example.com") is not None


@pytest.mark.parametrize("route", ["/api/lists", "GET", "GET api/lists", ""])
def test_malformed_routes_are_refused(sb, route):
    with pytest.raises(ValueError, match="route"):
        sb.fail_next(route)


def test_fail_next_needs_an_error_status_and_a_positive_count(sb):
    with pytest.raises(ValueError):
        sb.fail_next("*", status=200)
    with pytest.raises(ValueError):
        sb.drop_next("*", count=0)
