"""List membership over HTTP: adding and removing profiles by id, and reading the members with filters,
sparse fieldsets and pages, as Klaviyo's OpenAPI documents describe the four operations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from sandbox_support import Api


def any_email(emails: list[str]) -> str:
    """The filter mirror mode sends: ``any(email,["a@x.com","b@y.com",...])``."""
    return "any(email,[" + ",".join(f'"{email}"' for email in emails) + "])"


def timestamp_now() -> str:
    """The current time as the sandbox writes joined_group_at: whole seconds, UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def member_ids(api: Api, list_id: str, **params: str) -> list[str]:
    return [item["id"] for item in api.collect(f"/api/lists/{list_id}/relationships/profiles", **params)]


def test_add_and_remove_members_by_profile_id(sb, api):
    list_id = sb.create_list("Members")
    job = api.import_and_wait(sb, [Api.profile(f"m{i}@example.com") for i in range(5)])
    ids = [item["id"] for item in api.collect(f"/api/profile-bulk-import-jobs/{job['id']}/relationships/profiles")]
    body = {"data": [{"type": "profile", "id": pid} for pid in ids]}
    response = api.post(f"/api/lists/{list_id}/relationships/profiles", body)
    assert response.status_code == 204 and response.content == b""
    assert sb.member_emails(list_id) == {f"m{i}@example.com" for i in range(5)}
    remove = {"data": [{"type": "profile", "id": pid} for pid in ids[:2]]}
    assert api.send("DELETE", f"/api/lists/{list_id}/relationships/profiles", remove).status_code == 204
    assert member_ids(api, list_id) == ids[2:]


def test_membership_calls_take_at_most_1000_ids_and_only_known_ones(sb, api):
    list_id = sb.create_list("Strict")
    job = api.import_and_wait(sb, [Api.profile("known@example.com")])
    known = api.get(f"/api/profile-bulk-import-jobs/{job['id']}/relationships/profiles").json()["data"][0]["id"]
    too_many = {"data": [{"type": "profile", "id": known}] * 1001}
    for method in ("POST", "DELETE"):
        assert api.send(method, f"/api/lists/{list_id}/relationships/profiles", too_many).status_code == 400
    unknown = {"data": [{"type": "profile", "id": known}, {"type": "profile", "id": "01NOPE"}]}
    response = api.post(f"/api/lists/{list_id}/relationships/profiles", unknown)
    assert response.status_code == 404 and Api.pointers(response) == ["/data/1/id"]
    assert sb.member_emails(list_id) == set()  # all or nothing
    assert api.post("/api/lists/XXXXXX/relationships/profiles", {"data": []}).status_code == 404


def test_members_page_in_joining_order_with_joined_group_at(sb, api):
    list_id = sb.create_list("Paged")
    api.import_and_wait(sb, [Api.profile(f"p{i:03}@example.com") for i in range(45)], [list_id])
    first = api.get(f"/api/lists/{list_id}/profiles").json()
    assert len(first["data"]) == 20  # default page size
    member = first["data"][0]
    assert member["type"] == "profile" and member["attributes"]["email"] == "p000@example.com"
    datetime.fromisoformat(member["attributes"]["joined_group_at"])
    members = api.collect(f"/api/lists/{list_id}/profiles", **{"page[size]": "100"})
    assert [m["attributes"]["email"] for m in members] == [f"p{i:03}@example.com" for i in range(45)]
    newest_first = api.collect(f"/api/lists/{list_id}/profiles", sort="-joined_group_at")
    assert [m["id"] for m in newest_first] == [m["id"] for m in reversed(members)]
    assert api.get(f"/api/lists/{list_id}/profiles", params={"page[size]": "101"}).status_code == 400


def test_member_pages_skip_removed_members_and_readd_at_the_end(sb, api):
    list_id = sb.create_list("Churn")
    api.import_and_wait(sb, [Api.profile(f"r{i}@example.com") for i in range(6)], [list_id])
    ids = member_ids(api, list_id)
    path = f"/api/lists/{list_id}/relationships/profiles"
    api.send("DELETE", path, {"data": [{"type": "profile", "id": ids[0]}, {"type": "profile", "id": ids[3]}]})
    api.post(path, {"data": [{"type": "profile", "id": ids[0]}, {"type": "profile", "id": ids[1]}]})
    expected = [ids[1], ids[2], ids[4], ids[5], ids[0]]
    assert member_ids(api, list_id, **{"page[size]": "2"}) == expected
    assert [m["id"] for m in sb.list_members(list_id)] == expected


def test_member_filters_on_email_and_phone(sb, api):
    list_id = sb.create_list("Filtered")
    api.import_and_wait(
        sb,
        [
            Api.profile("a@example.com"),
            Api.profile("b@example.com", phone_number="+15005550006"),
            Api.profile("c@example.com"),
        ],
        [list_id],
    )
    api.import_and_wait(sb, [Api.profile("outsider@example.com")])
    emails = lambda filter_: [  # noqa: E731
        m["attributes"]["email"] for m in api.collect(f"/api/lists/{list_id}/profiles", filter=filter_)
    ]
    assert emails('equals(email,"B@example.com")') == ["b@example.com"]
    assert emails('any(email,["c@example.com","a@example.com","outsider@example.com"])') == [
        "a@example.com",
        "c@example.com",
    ]
    assert emails('equals(phone_number,"+15005550006")') == ["b@example.com"]
    assert emails('equals(email,"a@example.com"),equals(phone_number,"+15005550006")') == []


def test_list_page_links_continue_the_same_query(sb, api):
    list_id = sb.create_list("Links")
    api.import_and_wait(sb, [Api.profile(f"l{i}@example.com") for i in range(5)], [list_id])
    body = api.get(f"/api/lists/{list_id}/profiles", params={"page[size]": "2", "sort": "-joined_group_at"}).json()
    query = urlsplit(body["links"]["next"]).query
    assert "page%5Bsize%5D=2" in query and "sort=-joined_group_at" in query


# -- reading members: what get_profiles_for_list and get_profile_ids_for_list take -----------------------


def test_a_150_email_filter_pages_through_exactly_the_members_among_them(sb, api):
    """Mirror mode finds the ids of members by email, 100 a page, following every links.next."""
    list_id = sb.create_list("Segment")
    api.import_and_wait(sb, [Api.profile(f"member{i:03}@example.com") for i in range(300)], [list_id])
    api.import_and_wait(sb, [Api.profile(f"outsider{i:02}@example.com") for i in range(20)])  # profiles, not members
    members = [f"member{i:03}@example.com" for i in range(0, 240, 2)]  # 120 of the 300 members
    emails = [*members[:60], *(f"outsider{i:02}@example.com" for i in range(20)), *members[60:]]
    emails += [f"nobody{i}@example.com" for i in range(10)]  # no profile at all
    assert len(emails) == 150
    expected = {sb.find_profile(email)["id"]: email for email in members}

    pages, url = [], f"/api/lists/{list_id}/profiles"
    params = {"filter": any_email(emails), "page[size]": "100", "fields[profile]": "email"}
    while url:
        body = api.get(url, params=params).json()
        pages.append(body["data"])
        url, params = body["links"]["next"], {}
        assert url is None or url.startswith(f"{sb.url}/api/lists/{list_id}/profiles?")
    assert [len(page) for page in pages] == [100, 20]
    found = {item["id"]: item["attributes"] for page in pages for item in page}
    assert len(found) == 120 and found.keys() == expected.keys()  # no member twice, no outsider
    assert all(attributes == {"email": expected[pid]} for pid, attributes in found.items())


def test_the_relationships_variant_returns_ids_only_with_the_same_filter_and_paging(sb, api):
    list_id = sb.create_list("Ids")
    api.import_and_wait(sb, [Api.profile(f"id{i:02}@example.com") for i in range(30)], [list_id])
    path = f"/api/lists/{list_id}/relationships/profiles"
    first = api.get(path).json()
    assert len(first["data"]) == 20 and first["links"]["next"].startswith(f"{sb.url}{path}?")
    assert all(item.keys() == {"type", "id"} and item["type"] == "profile" for item in first["data"])
    wanted = ["id03@example.com", "ID07@EXAMPLE.COM", "id29@example.com", "stranger@example.com"]
    chosen = member_ids(api, list_id, filter=f"any(email,{wanted})", **{"page[size]": "2"})
    assert chosen == [
        sb.find_profile(email)["id"] for email in ("id03@example.com", "id07@example.com", "id29@example.com")
    ]
    # The relationships operation has no fields[profile] or additional-fields[profile] in the spec.
    for parameter in ("fields[profile]", "additional-fields[profile]"):
        response = api.get(path, params={parameter: "email"})
        assert response.status_code == 400 and response.json()["errors"][0]["source"] == {"parameter": parameter}


@pytest.mark.parametrize("variant", ["profiles", "relationships/profiles"])
def test_member_page_size_is_1_to_100_default_20(sb, api, variant):
    list_id = sb.create_list("Sizes")
    api.import_and_wait(sb, [Api.profile(f"s{i:03}@example.com") for i in range(120)], [list_id])
    path = f"/api/lists/{list_id}/{variant}"
    assert len(api.get(path).json()["data"]) == 20
    assert len(api.get(path, params={"page[size]": "1"}).json()["data"]) == 1
    assert len(api.get(path, params={"page[size]": "100"}).json()["data"]) == 100
    for size in ("101", "0", "-1", "ten", ""):
        response = api.get(path, params={"page[size]": size})
        assert response.status_code == 400, size
        assert response.json()["errors"][0]["source"] == {"parameter": "page[size]"}


@pytest.mark.parametrize(
    "expression",
    [
        'contains(email,"a@example.com")',  # an operator the spec does not allow for email
        'equals(external_id,"x")',  # allowed on /api/profiles, not on list members
        'equals(first_name,"Ann")',
        '_kx(email,"a@example.com")',
        "any(_kx,['a'])",  # _kx allows equals only
        "equals(email,a@example.com)",  # strings are quoted
        'equals(email,["a@example.com"])',  # equals takes one value
        "greater-than(joined_group_at,'2024-01-01T00:00:00Z')",  # datetimes are not
        "greater-than(joined_group_at,yesterday)",
        'equals(joined_group_at,"2024-01-01T00:00:00Z")',
        'equals(email,"a@example.com"',
    ],
)
def test_filters_the_spec_does_not_allow_are_400(sb, api, expression):
    list_id = sb.create_list("Strict filters")
    for variant in ("profiles", "relationships/profiles"):
        response = api.get(f"/api/lists/{list_id}/{variant}", params={"filter": expression})
        assert response.status_code == 400, (variant, response.text)
        (error,) = response.json()["errors"]
        assert error["code"] == "invalid" and error["source"] == {"parameter": "filter"}


def test_push_token_matches_nobody_and_kx_is_refused_as_not_emulated(sb, api):
    list_id = sb.create_list("Tokens")
    api.import_and_wait(sb, [Api.profile("t@example.com", external_id="abc", phone_number="+15005550006")], [list_id])
    path = f"/api/lists/{list_id}/profiles"
    for expression in ("any(push_token,['abc'])", "equals(push_token,'+15005550006')"):
        assert api.collect(path, filter=expression) == []  # the sandbox has no push tokens
    response = api.get(path, params={"filter": "equals(_kx,'abc')"})
    assert response.status_code == 400 and "does not emulate" in response.json()["errors"][0]["detail"]


def test_joined_group_at_comparisons(sb, api):
    list_id = sb.create_list("Joined")
    api.import_and_wait(sb, [Api.profile(f"j{i}@example.com") for i in range(3)], [list_id])
    joined = datetime.fromisoformat(sb.list_members(list_id)[0]["joined_group_at"])
    assert {m["joined_group_at"] for m in sb.list_members(list_id)} == {joined.isoformat()}  # one chunk, one time
    at = joined.strftime("%Y-%m-%dT%H:%M:%SZ")
    same_moment_elsewhere = joined.astimezone(timezone(timedelta(hours=-7))).isoformat()  # "+" needs encoding
    before = (joined - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    count = lambda expression: len(api.collect(f"/api/lists/{list_id}/profiles", filter=expression))  # noqa: E731
    assert count(f"greater-or-equal(joined_group_at,{at})") == 3
    assert count(f"greater-than(joined_group_at,{at})") == 0
    assert count(f"less-or-equal(joined_group_at,{same_moment_elsewhere})") == 3
    assert count(f"less-than(joined_group_at,{same_moment_elsewhere})") == 0
    assert count(f"greater-than(joined_group_at,{before}),less-or-equal(joined_group_at,{at})") == 3
    assert count(f"and(greater-than(joined_group_at,{before}),equals(email,'j1@example.com'))") == 1
    assert count(f"equals(email,'j1@example.com'),greater-than(joined_group_at,{at})") == 0


def test_a_joined_group_at_filter_pages_past_the_members_it_leaves_out(sb, api):
    list_id = sb.create_list("Late joiners")
    api.import_and_wait(sb, [Api.profile(f"early{i:02}@example.com") for i in range(30)], [list_id])
    first_join = sb.list_members(list_id)[0]["joined_group_at"]
    deadline = time.monotonic() + 3
    while timestamp_now() == first_join:  # joined_group_at has whole seconds: wait for the next one
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.import_and_wait(sb, [Api.profile(f"late{i:02}@example.com") for i in range(5)], [list_id])
    after = datetime.fromisoformat(first_join).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = api.collect(
        f"/api/lists/{list_id}/profiles", filter=f"greater-than(joined_group_at,{after})", **{"page[size]": "2"}
    )
    assert [m["attributes"]["email"] for m in late] == [f"late{i:02}@example.com" for i in range(5)]


def test_member_sparse_fieldsets(sb, api):
    list_id = sb.create_list("Sparse members")
    location = {"city": "Boston", "country": "US"}
    api.import_and_wait(sb, [Api.profile("sparse@example.com", first_name="Sam", location=location)], [list_id])
    path = f"/api/lists/{list_id}/profiles"
    attributes = lambda fields: api.get(path, params={"fields[profile]": fields}).json()["data"][0]["attributes"]  # noqa: E731
    assert attributes("email") == {"email": "sparse@example.com"}
    assert attributes("first_name,joined_group_at").keys() == {"first_name", "joined_group_at"}
    assert attributes("location.city") == {"location": {"city": "Boston"}}
    assert attributes("location,location.city")["location"] == location
    assert attributes("id,subscriptions.email") == {}  # valid names that select no attribute
    for fields in ("nickname", "location.planet", "email,anonymous_id"):
        response = api.get(path, params={"fields[profile]": fields})
        assert response.status_code == 400, fields
        assert response.json()["errors"][0]["source"] == {"parameter": "fields[profile]"}
    response = api.get(path, params={"additional-fields[profile]": "subscriptions"})
    assert response.status_code == 400 and "not modelled" in response.json()["errors"][0]["detail"]


def test_member_email_filters_ignore_case_and_show_the_stored_spelling(sb, api):
    list_id = sb.create_list("Case")
    api.import_and_wait(sb, [Api.profile("Mixed.Case@Example.com")], [list_id])
    for spelling in ("mixed.case@example.com", "MIXED.CASE@EXAMPLE.COM"):
        (member,) = api.collect(f"/api/lists/{list_id}/profiles", filter=f'equals(email,"{spelling}")')
        assert member["attributes"]["email"] == "Mixed.Case@Example.com"


# -- removals: remove_profiles_from_list -------------------------------------------------------------------


def test_removing_1000_members_in_one_call_and_1001_is_400(sb, api):
    list_id = sb.create_list("Big removal")
    api.import_and_wait(sb, [Api.profile(f"big{i:04}@example.com") for i in range(1001)], [list_id])
    ids = [member["id"] for member in sb.list_members(list_id)]
    path = f"/api/lists/{list_id}/relationships/profiles"
    too_many = api.send("DELETE", path, {"data": [{"type": "profile", "id": pid} for pid in ids]})
    assert too_many.status_code == 400 and Api.pointers(too_many) == ["/data"]
    assert len(sb.list_members(list_id)) == 1001  # nothing removed
    response = api.send("DELETE", path, {"data": [{"type": "profile", "id": pid} for pid in ids[:1000]]})
    assert response.status_code == 204 and response.content == b""
    assert member_ids(api, list_id) == ids[1000:]
    assert len(sb.profiles()) == 1001  # removal from a list deletes no profile


def test_removing_profiles_that_are_not_members_is_a_no_op(sb, api):
    list_id = sb.create_list("No-op")
    api.import_and_wait(sb, [Api.profile(f"in{i}@example.com") for i in range(3)], [list_id])
    api.import_and_wait(sb, [Api.profile("out@example.com")])  # a profile, never a member
    ids = member_ids(api, list_id)
    outsider = sb.find_profile("out@example.com")["id"]
    path = f"/api/lists/{list_id}/relationships/profiles"
    assert api.send("DELETE", path, {"data": [{"type": "profile", "id": outsider}]}).status_code == 204
    assert member_ids(api, list_id) == ids
    mixed = {"data": [{"type": "profile", "id": outsider}, {"type": "profile", "id": ids[1]}]}
    assert api.send("DELETE", path, mixed).status_code == 204
    assert api.send("DELETE", path, mixed).status_code == 204  # removing again: ids[1] is no longer a member
    assert member_ids(api, list_id) == [ids[0], ids[2]]


def test_removing_unknown_profile_ids_is_404_and_removes_nothing(sb, api):
    list_id = sb.create_list("Unknown ids")
    api.import_and_wait(sb, [Api.profile(f"u{i}@example.com") for i in range(2)], [list_id])
    ids = member_ids(api, list_id)
    unknown = ids[0][:10] + "F" * 16  # well-formed, but no profile has it
    body = {"data": [{"type": "profile", "id": ids[0]}, {"type": "profile", "id": unknown}]}
    response = api.send("DELETE", f"/api/lists/{list_id}/relationships/profiles", body)
    assert response.status_code == 404 and Api.pointers(response) == ["/data/1/id"]
    assert member_ids(api, list_id) == ids


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"data": {"type": "profile", "id": "x"}},  # an object, not an array
        {"data": [{"type": "list", "id": "x"}]},
        {"data": [{"type": "profile"}]},
        {"data": [{"type": "profile", "id": 7}]},
    ],
)
def test_removal_bodies_must_be_the_spec_shape(sb, api, body):
    list_id = sb.create_list("Shapes")
    response = api.send("DELETE", f"/api/lists/{list_id}/relationships/profiles", body)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "invalid"
