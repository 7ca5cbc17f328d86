"""Klaviyo's per-endpoint fixed-window rate limits (docs/klaviyo-api.md §4.3, §5)."""

from __future__ import annotations

import time

import pytest
from sandbox_support import JOBS, Api

from klaviyo_magic.sandbox import Sandbox
from klaviyo_magic.sandbox.jsonapi import ApiError
from klaviyo_magic.sandbox.ratelimit import LIMITS, RateLimiter


@pytest.fixture
def limited():
    with Sandbox(rate_limits=True) as sandbox:
        yield sandbox, Api(sandbox.url)


def test_normal_answers_carry_the_steady_window_headers(limited):
    sb, api = limited
    for expected_remaining in (149, 148):
        response = api.bulk_import([Api.profile("h@example.com")])
        assert response.status_code == 202
        assert response.headers["RateLimit-Limit"] == "150"
        assert response.headers["RateLimit-Remaining"] == str(expected_remaining)
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
    lists = api.get("/api/lists")
    assert (lists.headers["RateLimit-Limit"], lists.headers["RateLimit-Remaining"]) == ("750", "749")


def test_exceeding_the_burst_is_a_throttled_429_with_retry_after(limited):
    _, api = limited
    assert api.get("/api/accounts").status_code == 200  # get_accounts allows 1/s
    response = api.get("/api/accounts")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert not [name for name in response.headers if name.lower().startswith("ratelimit")]
    (error,) = response.json()["errors"]
    assert error["code"] == "throttled" and error["title"] == "Request was throttled."
    assert error["detail"] == "Request was throttled. Expected available in 1 second."


def test_the_burst_window_resets_after_a_second(limited):
    _, api = limited
    statuses = [api.get("/api/accounts").status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    time.sleep(1.05)
    assert api.get("/api/accounts").status_code == 200


def test_endpoints_have_separate_buckets_and_job_reads_do_not_use_the_post_budget(limited):
    _, api = limited
    job_id = api.bulk_import([Api.profile("b@example.com")]).json()["data"]["id"]
    for _ in range(9):
        assert api.get(f"{JOBS}/{job_id}").status_code == 200
    assert api.get(f"{JOBS}/{job_id}").status_code == 200  # the 10th GET: its own 10/s bucket
    assert api.get(f"{JOBS}/{job_id}").status_code == 429
    assert api.bulk_import([Api.profile("c@example.com")]).status_code == 202  # POST bucket has room
    assert api.get("/api/accounts").status_code == 200


def test_profile_count_draws_from_a_stricter_extra_bucket(limited):
    sb, api = limited
    list_id = sb.create_list("Counted")
    counted = {"additional-fields[list]": "profile_count"}
    first = api.get(f"/api/lists/{list_id}", params=counted)
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "15"
    assert api.get(f"/api/lists/{list_id}", params=counted).status_code == 429
    assert api.get(f"/api/lists/{list_id}").status_code == 200


def test_refused_requests_are_not_counted(limited):
    sb, api = limited
    stranger = Api(sb.url, "not-a-key")
    assert [stranger.get("/api/accounts").status_code for _ in range(3)] == [401, 401, 401]
    assert api.get("/api/accounts").status_code == 200


def test_rate_limits_off_never_throttles(sb, api):
    assert {api.get("/api/accounts").status_code for _ in range(20)} == {200}
    assert "RateLimit-Limit" not in api.get("/api/accounts").headers


def test_reset_rate_limits_empties_the_windows(limited):
    sb, api = limited
    api.get("/api/accounts")
    assert api.get("/api/accounts").status_code == 429
    sb.reset_rate_limits()
    assert api.get("/api/accounts").status_code == 200


# -- the windows, on a clock the test controls -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retry_after(limiter: RateLimiter, operation: str) -> int:
    with pytest.raises(ApiError) as caught:
        limiter.admit([operation])
    assert caught.value.status == 429
    return int(caught.value.headers["Retry-After"])


def test_steady_window_of_60_seconds():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for second in range(15):  # 1/s and 15/min: one call a second fills the minute
        clock.now = 1000.0 + second
        headers = limiter.admit(["get_accounts"])
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Reset"] == "46"
    clock.now = 1015.0
    assert retry_after(limiter, "get_accounts") == 45  # ceil of the time left in the full steady window
    clock.now = 1059.5
    assert retry_after(limiter, "get_accounts") == 1
    clock.now = 1060.0
    assert limiter.admit(["get_accounts"])["RateLimit-Remaining"] == "14"


def test_burst_retry_after_rounds_up_and_throttled_calls_are_not_counted():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for _ in range(10):
        limiter.admit(["bulk_import_profiles"])
    clock.now += 0.2
    for _ in range(5):
        assert retry_after(limiter, "bulk_import_profiles") == 1
    clock.now += 0.8
    assert limiter.admit(["bulk_import_profiles"])["RateLimit-Remaining"] == "139"


def test_requests_count_when_they_arrived_even_if_admitted_after_a_later_one():
    """A request whose body took long to read counts in the window it arrived in, not in the next one."""
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for _ in range(9):
        limiter.admit(["bulk_import_profiles"], arrived=1000.0)
    clock.now = 1001.3
    for _ in range(10):  # later arrivals open a new window at 1001.2 and fill it...
        limiter.admit(["bulk_import_profiles"], arrived=1001.2)
    limiter.admit(["bulk_import_profiles"], arrived=1000.9)  # ...the slow one still fits the first window
    for arrived in (1000.95, 1001.25):  # both windows are now full
        with pytest.raises(ApiError) as caught:
            limiter.admit(["bulk_import_profiles"], arrived=arrived)
        assert caught.value.status == 429


def test_create_list_has_a_daily_cap():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for call in range(150):
        clock.now = 1000.0 + call * 7  # within 10/s and 150/min
        limiter.admit(["create_list"])
    clock.now += 7
    assert retry_after(limiter, "create_list") > 80_000  # the next day


def test_every_limit_matches_the_published_tiers():
    tiers = {name: tuple((w.seconds, w.limit) for w in windows) for name, windows in LIMITS.items()}
    assert tiers["get_accounts"] == ((1.0, 1), (60.0, 15))
    assert tiers["bulk_import_profiles"] == ((1.0, 10), (60.0, 150))
    assert tiers["get_lists"] == ((1.0, 75), (60.0, 750))
    assert tiers["create_list"] == ((1.0, 10), (60.0, 150), (86_400.0, 150))
    assert tiers["remove_profiles_from_list"] == tiers["add_profiles_to_list"] == ((1.0, 10), (60.0, 150))
    assert tiers["get_profiles_for_list"] == tiers["get_profile_ids_for_list"] == ((1.0, 75), (60.0, 750))


def test_removals_are_throttled_after_10_in_a_second(limited):
    sb, api = limited
    list_id = sb.create_list("Removals")
    path = f"/api/lists/{list_id}/relationships/profiles"
    statuses = [api.send("DELETE", path, {"data": []}).status_code for _ in range(11)]
    assert statuses == [204] * 10 + [429]
    assert api.get(path).status_code == 200  # member reads have their own bucket
