"""The official ``klaviyo-api`` SDK, pointed at the sandbox with ``test_host``, works end to end.

Nobody on this project wrote the SDK, so it is an independent check of the sandbox's wire format: every
answer below is parsed into the SDK's own pydantic response models (its default), and a field the models
require but the sandbox left out, or a wrong type, fails the test.
"""

from __future__ import annotations

import threading
import time

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import BadRequestException, NotFoundException, ServiceException
from openapi_client.models import (
    GetAccountResponse,
    GetAccountResponseCollection,
    GetImportErrorResponseCollection,
    GetListListResponseCollectionCompoundDocument,
    GetListMemberResponseCollection,
    GetListProfilesRelationshipsResponseCollection,
    GetListResponseCollection,
    GetListRetrieveResponseCompoundDocument,
    GetProfileBulkImportJobListsRelationshipsResponseCollection,
    GetProfileBulkImportJobProfilesRelationshipsResponseCollection,
    GetProfileImportJobResponseCollectionCompoundDocument,
    GetProfileImportJobResponseCompoundDocument,
    GetProfileResponseCollection,
    GetProfileResponsePluralConversationsCollectionCompoundDocument,
    GetProfileResponsePluralConversationsCompoundDocument,
    ListCreateQuery,
    ListMembersAddQuery,
    ListMembersDeleteQuery,
    PostListCreateResponse,
    PostProfileImportJobResponse,
    ProfileImportJobCreateQuery,
)

from klaviyo_magic.sandbox import Sandbox

KEY = "pk_sdk_conformance_0123456789abcd"


@pytest.fixture
def sb():
    with Sandbox(rate_limits=False, api_keys=[KEY]) as sandbox:
        yield sandbox


@pytest.fixture
def klaviyo(sb):
    return KlaviyoAPI(KEY, test_host=sb.url, max_delay=1, max_retries=3)


def import_query(emails: list[str], list_id: str) -> ProfileImportJobCreateQuery:
    return ProfileImportJobCreateQuery.from_dict(
        {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {
                    "profiles": {
                        "data": [
                            {
                                "type": "profile",
                                "attributes": {
                                    "email": email,
                                    "first_name": f"Name{n}",
                                    "location": {"city": "Boston", "latitude": 42.36},
                                    "properties": {"n": n, "plan": "gold"},
                                },
                            }
                            for n, email in enumerate(emails)
                        ]
                    }
                },
                "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
            }
        }
    )


def wait_for_job(klaviyo: KlaviyoAPI, job_id: str) -> GetProfileImportJobResponseCompoundDocument:
    deadline = time.monotonic() + 30
    while True:
        job = klaviyo.Profiles.get_bulk_import_profiles_job(job_id, include=["lists"])
        if job.data.attributes.status == "complete":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_the_sdk_sends_its_revision_and_key_and_they_are_accepted(sb, klaviyo):
    klaviyo.Accounts.get_accounts()
    record = sb.requests[-1]
    assert record.status == 200
    assert record.headers["revision"] == KlaviyoAPI._REVISION == "2026-10-15"
    assert record.headers["Authorization"] == "Klaviyo-API-Key pk_****abcd"


def test_accounts(sb, klaviyo):
    accounts = klaviyo.Accounts.get_accounts()
    assert isinstance(accounts, GetAccountResponseCollection)
    (account,) = accounts.data
    assert account.id == sb.account["id"]
    assert account.attributes.contact_information.organization_name == "Sandbox Demo Co"
    single = klaviyo.Accounts.get_account(account.id)
    assert isinstance(single, GetAccountResponse) and single.data.attributes.public_api_key == account.id


def test_paging_through_lists_with_the_sdks_page_cursor(sb, klaviyo):
    created = [sb.create_list(f"List {n:02}") for n in range(23)]
    seen: list[str] = []
    page = klaviyo.Lists.get_lists()
    while True:
        assert isinstance(page, GetListListResponseCollectionCompoundDocument)
        seen += [item.id for item in page.data]
        if not page.links.next:
            break
        # The SDK takes the whole links.next URL as page_cursor (docs/klaviyo-api.md §1.2).
        page = klaviyo.Lists.get_lists(page_cursor=page.links.next)
    assert seen == created
    filtered = klaviyo.Lists.get_lists(filter='equals(name,"List 07")', sort="-created")
    assert [item.id for item in filtered.data] == [created[7]]


def test_a_full_import_session(sb, klaviyo):
    created = klaviyo.Lists.create_list(
        ListCreateQuery.from_dict({"data": {"type": "list", "attributes": {"name": "SDK VIPs"}}})
    )
    assert isinstance(created, PostListCreateResponse)
    list_id = created.data.id
    assert [item["id"] for item in sb.lists()] == [list_id]

    sb.fail_emails(r"@bounce\.test$")
    emails = [f"sdk{n:02}@example.com" for n in range(30)] + ["gone1@bounce.test", "gone2@bounce.test"]
    accepted = klaviyo.Profiles.bulk_import_profiles(import_query(emails, list_id))
    assert isinstance(accepted, PostProfileImportJobResponse)
    assert accepted.data.attributes.status == "queued" and accepted.data.attributes.total_count == 32
    job_id = accepted.data.id

    job = wait_for_job(klaviyo, job_id)
    assert (job.data.attributes.completed_count, job.data.attributes.failed_count) == (30, 2)
    assert job.data.attributes.completed_at is not None
    assert [included.id for included in job.included] == [list_id]

    errors = klaviyo.Profiles.get_errors_for_bulk_import_profiles_job(job_id)
    assert isinstance(errors, GetImportErrorResponseCollection)
    assert [e.attributes.original_payload["email"] for e in errors.data] == emails[30:]

    job_profiles = klaviyo.Profiles.get_profiles_for_bulk_import_profiles_job(job_id, page_size=100)
    assert isinstance(job_profiles, GetProfileResponseCollection)
    assert [p.attributes.email for p in job_profiles.data] == emails[:30]
    assert job_profiles.data[0].attributes.location.city == "Boston"
    job_profile_ids = klaviyo.Profiles.get_profile_ids_for_bulk_import_profiles_job(job_id, page_size=100)
    assert isinstance(job_profile_ids, GetProfileBulkImportJobProfilesRelationshipsResponseCollection)
    assert [item.id for item in job_profile_ids.data] == [p.id for p in job_profiles.data]
    job_lists = klaviyo.Profiles.get_list_for_bulk_import_profiles_job(job_id)
    assert isinstance(job_lists, GetListResponseCollection) and job_lists.data[0].attributes.name == "SDK VIPs"
    job_list_ids = klaviyo.Profiles.get_list_ids_for_bulk_import_profiles_job(job_id)
    assert isinstance(job_list_ids, GetProfileBulkImportJobListsRelationshipsResponseCollection)
    assert [item.id for item in job_list_ids.data] == [list_id]

    jobs = klaviyo.Profiles.get_bulk_import_profiles_jobs(filter='equals(status,"complete")', sort="-created_at")
    assert isinstance(jobs, GetProfileImportJobResponseCollectionCompoundDocument)
    assert [item.id for item in jobs.data] == [job_id]

    counted = klaviyo.Lists.get_list(list_id, additional_fields_list=["profile_count"])
    assert isinstance(counted, GetListRetrieveResponseCompoundDocument)
    assert counted.data.attributes.profile_count == 30


def test_profiles_by_email_and_list_membership_by_id(sb, klaviyo):
    source = sb.create_list("Source")
    target = sb.create_list("Target")
    emails = [f"m{n:02}@example.com" for n in range(25)]
    accepted = klaviyo.Profiles.bulk_import_profiles(import_query(emails, source))
    wait_for_job(klaviyo, accepted.data.id)

    found = klaviyo.Profiles.get_profiles(filter=f'any(email,["{emails[3]}","{emails[4]}"])')
    assert isinstance(found, GetProfileResponsePluralConversationsCollectionCompoundDocument)
    ids = {p.attributes.email: p.id for p in found.data}
    assert set(ids) == {emails[3], emails[4]}
    one = klaviyo.Profiles.get_profile(ids[emails[3]])
    assert isinstance(one, GetProfileResponsePluralConversationsCompoundDocument)
    assert one.data.attributes.properties == {"n": 3, "plan": "gold"}

    members = [{"type": "profile", "id": profile_id} for profile_id in ids.values()]
    assert klaviyo.Lists.add_profiles_to_list(target, ListMembersAddQuery.from_dict({"data": members})) is None
    assert sb.member_emails(target) == {emails[3], emails[4]}
    removal = ListMembersDeleteQuery.from_dict({"data": members[:1]})
    assert klaviyo.Lists.remove_profiles_from_list(target, removal) is None
    assert sb.member_emails(target) == {emails[4]}

    seen: list[str] = []
    page = klaviyo.Lists.get_profiles_for_list(source, page_size=10)
    while True:
        assert isinstance(page, GetListMemberResponseCollection)
        assert all(member.attributes.joined_group_at is not None for member in page.data)
        seen += [member.attributes.email for member in page.data]
        if not page.links.next:
            break
        page = klaviyo.Lists.get_profiles_for_list(source, page_size=10, page_cursor=page.links.next)
    assert seen == emails
    member_ids = klaviyo.Lists.get_profile_ids_for_list(target)
    assert isinstance(member_ids, GetListProfilesRelationshipsResponseCollection)
    assert [item.id for item in member_ids.data] == [ids[emails[4]]]


def test_member_ids_by_email_over_pages_and_a_sparse_member_read(sb, klaviyo):
    """What mirror mode asks, through the SDK: member ids by email, 100 a page, every links.next followed."""
    list_id = sb.create_list("Mirror")
    emails = [f"s{n:03}@example.com" for n in range(150)]
    wait_for_job(klaviyo, klaviyo.Profiles.bulk_import_profiles(import_query(emails[:130], list_id)).data.id)
    wanted = "any(email,[" + ",".join(f'"{email}"' for email in emails) + "])"
    page = klaviyo.Lists.get_profile_ids_for_list(list_id, filter=wanted, page_size=100)
    sizes, ids = [], []
    while True:
        assert isinstance(page, GetListProfilesRelationshipsResponseCollection)
        sizes.append(len(page.data))
        ids += [item.id for item in page.data]
        if not page.links.next:
            break
        page = klaviyo.Lists.get_profile_ids_for_list(
            list_id, filter=wanted, page_size=100, page_cursor=page.links.next
        )
    assert sizes == [100, 30] and ids == [member["id"] for member in sb.list_members(list_id)]
    # With sparse fields the SDK skips its typed models (they require joined_group_at) and returns the dict.
    sparse = klaviyo.Lists.get_profiles_for_list(
        list_id, filter='equals(email,"s007@example.com")', fields_profile=["email"]
    )
    assert [item["attributes"] for item in sparse["data"]] == [{"email": "s007@example.com"}]


def test_error_answers_reach_the_sdk_as_its_exceptions(sb, klaviyo):
    list_id = sb.create_list("Errors")
    with pytest.raises(BadRequestException) as bad:
        klaviyo.Profiles.bulk_import_profiles(import_query(["fine@example.com", "broken"], list_id))
    assert bad.value.status == 400
    assert bad.value.data.errors[0].source.pointer == "/data/attributes/profiles/data/1/attributes/email"
    with pytest.raises(NotFoundException):
        klaviyo.Lists.get_list("NOPE00")
    sb.fail_next("GET /api/accounts", status=500)
    with pytest.raises(ServiceException):  # the SDK does not retry a 500 (docs/klaviyo-api.md §4.4)
        klaviyo.Accounts.get_accounts()


def test_the_sdk_retries_503_and_504(sb, klaviyo):
    sb.fail_next("GET /api/lists", count=1, status=503, retry_after=1)
    sb.fail_next("GET /api/lists", count=1, status=504)
    assert klaviyo.Lists.get_lists().data == []
    assert [record.status for record in sb.requests] == [503, 504, 200]


def test_the_sdk_survives_real_429s_by_honouring_retry_after():
    with Sandbox(rate_limits=True) as sb:
        klaviyo = KlaviyoAPI(KEY, test_host=sb.url, max_delay=1, max_retries=20)
        results: list[str] = []

        def call() -> None:
            results.append(klaviyo.Accounts.get_accounts().data[0].id)

        threads = [threading.Thread(target=call) for _ in range(6)]  # get_accounts allows 1/s
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == [sb.account["id"]] * 6
        statuses = [record.status for record in sb.requests]
        assert statuses.count(200) == 6 and statuses.count(429) >= 5
        assert all(record.status in (200, 429) for record in sb.requests)
