"""Bulk import: synchronous all-or-nothing validation, asynchronous jobs, upsert rules (§2.5–§2.9, §3)."""

from __future__ import annotations

import json
import time

import pytest
from sandbox_support import JOBS, Api

from klaviyo_magic.sandbox import Sandbox


def many(count: int, prefix: str = "user") -> list[dict]:
    return [Api.profile(f"{prefix}{i}@example.com", first_name="Pat") for i in range(count)]


# -- synchronous validation ------------------------------------------------------------------------------


def test_accepted_import_is_202_with_a_queued_job(sb, api):
    list_id = sb.create_list("Target")
    response = api.bulk_import(many(3), [list_id])
    assert response.status_code == 202
    job = response.json()["data"]
    assert job["type"] == "profile-bulk-import-job" and len(job["id"]) == 26
    assert job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 3 and job["attributes"]["completed_count"] == 0
    assert job["relationships"]["lists"]["data"] == [{"type": "list", "id": list_id}]
    assert job["links"]["self"] == f"{sb.url}{JOBS}/{job['id']}"


def test_more_than_10000_profiles_is_400_and_nothing_is_imported(sb, api):
    response = api.bulk_import(many(10_001))
    assert response.status_code == 400
    assert Api.pointers(response) == ["/data/attributes/profiles/data"]
    assert sb.jobs() == [] and sb.profiles() == []
    assert api.bulk_import(many(10_000)).status_code == 202


def test_one_malformed_email_among_many_rejects_the_whole_request(sb, api):
    list_id = sb.create_list("All or nothing")
    profiles = many(9_999)
    profiles.insert(4_321, Api.profile("not-an-email"))
    response = api.bulk_import(profiles, [list_id])
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["source"]["pointer"] == "/data/attributes/profiles/data/4321/attributes/email"
    assert error["code"] == "invalid" and "not-an-email" in error["detail"]
    assert sb.jobs() == [] and sb.profiles() == [] and sb.member_emails(list_id) == set()


@pytest.mark.parametrize(
    ("attributes", "pointer_end"),
    [
        ({"email": "a b@example.com"}, "/attributes/email"),
        ({"email": "a@example"}, "/attributes/email"),
        ({"email": "a@@example.com"}, "/attributes/email"),
        ({"email": 42}, "/attributes/email"),
        ({"phone_number": "5005550006"}, "/attributes/phone_number"),
        ({"phone_number": "+1 500 555 0006"}, "/attributes/phone_number"),
        ({"first_name": "No identifier"}, "/attributes"),
        ({"email": None, "external_id": ""}, "/attributes"),
        ({"email": "a@example.com", "phone": "+15005550006"}, "/attributes/phone"),
        ({"email": "a@example.com", "first_name": 7}, "/attributes/first_name"),
        ({"email": "a@example.com", "properties": "plan=gold"}, "/attributes/properties"),
        ({"email": "a@example.com", "location": {"planet": "Mars"}}, "/attributes/location/planet"),
    ],
)
def test_invalid_profiles_are_named_by_pointer(sb, api, attributes, pointer_end):
    response = api.bulk_import([Api.profile("ok@example.com"), {"type": "profile", "attributes": attributes}])
    assert response.status_code == 400, response.text
    assert Api.pointers(response) == ["/data/attributes/profiles/data/1" + pointer_end]
    assert sb.jobs() == []


def test_each_bad_profile_gets_one_error(api):
    profiles = [Api.profile("bad1"), Api.profile("ok@example.com"), Api.profile("bad2", phone_number="nope")]
    response = api.bulk_import(profiles)
    assert Api.pointers(response) == [
        "/data/attributes/profiles/data/0/attributes/email",
        "/data/attributes/profiles/data/2/attributes/email",
    ]


def test_valid_identifiers_other_than_email(sb, api):
    phone_only = {"type": "profile", "attributes": {"phone_number": "+15005550006"}}
    api.import_and_wait(sb, [phone_only, {"type": "profile", "attributes": {"external_id": "crm-1"}}])
    assert {(p["phone_number"], p["external_id"]) for p in sb.profiles()} == {
        ("+15005550006", None),
        (None, "crm-1"),
    }


def test_a_profile_over_100_kb_is_400_with_its_pointer(sb, api):
    big = Api.profile("big@example.com", properties={"notes": "x" * 100_000})
    response = api.bulk_import([*many(50), big, *many(5, "tail")])
    assert response.status_code == 400
    assert Api.pointers(response) == ["/data/attributes/profiles/data/50"]
    assert sb.profiles() == []
    just_under = Api.profile("fits@example.com", properties={"notes": "x" * 99_000})
    assert api.bulk_import([just_under]).status_code == 202


def test_oversized_profiles_are_found_whatever_the_formatting(sb, api):
    big = {"attributes": {"email": "big@example.com", "properties": {"n": "y" * 120_000}}, "type": "profile"}
    body = json.dumps(Api.import_document([*many(3), big]), indent=2).encode()
    response = api.post(JOBS, body)
    assert response.status_code == 400 and Api.pointers(response) == ["/data/attributes/profiles/data/3"]


def test_unknown_list_is_a_400_not_attributed_to_a_profile(sb, api):
    list_id = sb.create_list("Real")
    response = api.bulk_import(many(2), [list_id, "NoSuch"])
    assert response.status_code == 400
    assert Api.pointers(response) == ["/data/relationships/lists/data/1/id"]
    assert sb.jobs() == []


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"data": {"type": "profile", "attributes": {}}},
        {"data": {"type": "profile-bulk-import-job"}},
        {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": []}}}},
    ],
)
def test_malformed_documents_are_400(sb, api, document):
    assert api.post(JOBS, document).status_code == 400
    assert sb.jobs() == []


# -- the job ---------------------------------------------------------------------------------------------


def test_job_goes_queued_processing_complete():
    with Sandbox(rate_limits=False, job_delay=0.3) as sb:
        api = Api(sb.url)
        list_id = sb.create_list("Slow")
        job_id = api.bulk_import(many(4), [list_id]).json()["data"]["id"]
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not seen or seen[-1] != "complete"):
            status = api.get(f"{JOBS}/{job_id}").json()["data"]["attributes"]["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.05)
        assert seen == ["queued", "processing", "complete"]
        attributes = api.get(f"{JOBS}/{job_id}").json()["data"]["attributes"]
        assert (attributes["total_count"], attributes["completed_count"], attributes["failed_count"]) == (
            4,
            4,
            0,
        )
        assert attributes["started_at"] <= attributes["completed_at"]
        assert len(sb.member_emails(list_id)) == 4


def test_job_sub_resources(sb, api):
    list_id = sb.create_list("Subs")
    job = api.import_and_wait(sb, many(25), [list_id])
    base = f"{JOBS}/{job['id']}"
    with_lists = api.get(base, params={"include": "lists"}).json()
    assert [item["id"] for item in with_lists["included"]] == [list_id]
    profiles = api.collect(f"{base}/profiles")
    assert len(profiles) == 25 and profiles[0]["attributes"]["email"] == "user0@example.com"
    ids = [item["id"] for item in api.collect(f"{base}/relationships/profiles", **{"page[size]": "7"})]
    assert ids == [p["id"] for p in profiles]
    assert [item["id"] for item in api.get(f"{base}/lists").json()["data"]] == [list_id]
    assert api.get(f"{base}/relationships/lists").json()["data"] == [{"type": "list", "id": list_id}]
    assert api.get(f"{base}/import-errors").json() == {
        "data": [],
        "links": {"self": f"{sb.url}{base}/import-errors", "next": None, "prev": None},
    }
    assert api.get(f"{JOBS}/NOPE").status_code == 404
    assert api.get(f"{base}/profiles", params={"page[size]": "101"}).status_code == 400


def test_jobs_collection_filters_sorts_and_pages(sb, api):
    ids = [api.bulk_import(many(1, f"j{n}-")).json()["data"]["id"] for n in range(5)]
    sb.wait_for_jobs()
    assert [job["id"] for job in api.collect(JOBS, **{"page[size]": "2"})] == ids
    assert [job["id"] for job in api.collect(JOBS, sort="-created_at")] == ids[::-1]
    assert api.collect(JOBS, filter='equals(status,"queued")') == []
    assert len(api.collect(JOBS, filter='any(status,["queued","complete"])')) == 5
    assert api.get(JOBS, params={"filter": 'equals(status,"failed")'}).status_code == 400
    assert api.get(JOBS, params={"page[size]": "101"}).status_code == 400


# -- upsert semantics ------------------------------------------------------------------------------------


def test_upsert_matches_by_email_ignores_nulls_and_merges_properties(sb, api):
    first = Api.profile("Ann@Example.com", first_name="Ann", last_name="Lee", properties={"plan": "gold", "ltv": 10})
    api.import_and_wait(sb, [first])
    properties = {"ltv": 20, "plan": None, "tier": 2}
    api.import_and_wait(sb, [Api.profile("ann@example.com", first_name=None, last_name="Li", properties=properties)])
    (profile,) = sb.profiles()
    assert (profile["first_name"], profile["last_name"]) == ("Ann", "Li")
    assert profile["email"] == "ann@example.com"  # matched case-insensitively, the newest spelling kept
    assert profile["properties"] == {"plan": "gold", "ltv": 20, "tier": 2}
    assert sb.find_profile("ANN@example.com")["id"] == profile["id"]


def test_upsert_matches_by_phone_and_external_id_and_adds_identifiers(sb, api):
    phone_only = {"type": "profile", "attributes": {"phone_number": "+15005550006", "first_name": "P"}}
    external_only = {"type": "profile", "attributes": {"external_id": "crm-9", "first_name": "X"}}
    api.import_and_wait(sb, [phone_only, external_only])
    api.import_and_wait(
        sb,
        [
            Api.profile("p@example.com", phone_number="+15005550006"),
            Api.profile("x@example.com", external_id="crm-9", location={"city": "Oslo"}),
        ],
    )
    by_name = {p["first_name"]: p for p in sb.profiles()}
    assert len(by_name) == 2
    assert by_name["P"]["email"] == "p@example.com"
    assert by_name["X"]["email"] == "x@example.com" and by_name["X"]["location"] == {"city": "Oslo"}
    assert sb.find_profile("x@example.com")["external_id"] == "crm-9"


def test_patch_properties_append_unappend_unset(sb, api):
    api.import_and_wait(sb, [Api.profile("pp@example.com", properties={"skus": ["a"], "old": 1, "keep": True})])
    patched = Api.profile("pp@example.com")
    patched["meta"] = {"patch_properties": {"append": {"skus": ["b", "c"]}, "unappend": {"skus": "a"}, "unset": "old"}}
    api.import_and_wait(sb, [patched])
    assert sb.find_profile("pp@example.com")["properties"] == {"skus": ["b", "c"], "keep": True}


def test_conflicting_identifiers_fail_as_an_import_error(sb, api):
    api.import_and_wait(sb, [Api.profile("one@example.com"), {"type": "profile", "attributes": {"external_id": "two"}}])
    job = api.import_and_wait(sb, [Api.profile("one@example.com", external_id="two")])
    assert (job["attributes"]["completed_count"], job["attributes"]["failed_count"]) == (0, 1)
    (error,) = api.get(f"{JOBS}/{job['id']}/import-errors").json()["data"]
    assert error["attributes"]["code"] == "duplicate_profile"
    assert len(sb.profiles()) == 2


def test_duplicates_within_a_job_become_one_profile(sb, api):
    list_id = sb.create_list("Dupes")
    job = api.import_and_wait(
        sb,
        [Api.profile("d@example.com", first_name="A"), Api.profile("D@example.com", last_name="B")],
        [list_id],
    )
    assert job["attributes"]["completed_count"] == 2
    assert len(api.collect(f"{JOBS}/{job['id']}/relationships/profiles")) == 1
    (member,) = sb.list_members(list_id)
    assert (member["first_name"], member["last_name"]) == ("A", "B")


# -- email faults ----------------------------------------------------------------------------------------


def test_fail_emails_fail_asynchronously_with_the_original_payload(sb, api):
    list_id = sb.create_list("Partly")
    sb.fail_emails(r"@bounce\.test$")
    profiles = [*many(3), Api.profile("x@BOUNCE.test", first_name="Bo"), Api.profile("y@bounce.test")]
    response = api.bulk_import(profiles, [list_id])
    assert response.status_code == 202
    sb.wait_for_jobs()
    job_id = response.json()["data"]["id"]
    attributes = api.get(f"{JOBS}/{job_id}").json()["data"]["attributes"]
    assert (attributes["total_count"], attributes["completed_count"], attributes["failed_count"]) == (5, 3, 2)
    errors = api.collect(f"{JOBS}/{job_id}/import-errors", **{"page[size]": "1"})
    assert [e["type"] for e in errors] == ["import-error", "import-error"]
    assert errors[0]["attributes"]["original_payload"] == {"email": "x@BOUNCE.test", "first_name": "Bo"}
    assert errors[0]["attributes"]["source"] == {"pointer": "/data/attributes/profiles/data/3"}
    assert sb.member_emails(list_id) == {f"user{i}@example.com" for i in range(3)}
    assert sb.find_profile("x@bounce.test") is None
    assert sb.jobs()[0]["import_errors"][1]["original_payload"] == {"email": "y@bounce.test"}


def test_reject_emails_fail_the_post_synchronously(sb, api):
    sb.reject_emails("^blocked")
    profiles = [*many(2), Api.profile("blocked1@example.com"), Api.profile("BLOCKED2@example.com")]
    response = api.bulk_import(profiles)
    assert response.status_code == 400
    assert Api.pointers(response) == [
        "/data/attributes/profiles/data/2/attributes/email",
        "/data/attributes/profiles/data/3/attributes/email",
    ]
    assert sb.jobs() == []
    sb.reset_faults()
    assert api.bulk_import(profiles).status_code == 202
