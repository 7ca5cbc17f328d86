"""Reading profiles: identifier filters, paging and single lookups (docs/klaviyo-api.md §2.13)."""

from __future__ import annotations

from sandbox_support import JOBS, Api


def emails(api: Api, **params: str) -> list[str]:
    return [item["attributes"]["email"] for item in api.collect("/api/profiles", **params)]


def test_profiles_filter_by_identifiers(sb, api):
    api.import_and_wait(
        sb,
        [
            Api.profile("a@example.com", external_id="ext-a"),
            Api.profile("b@example.com", phone_number="+447700900123"),
            Api.profile("c@example.com"),
        ],
    )
    assert emails(api, filter='equals(email,"A@example.com")') == ["a@example.com"]
    assert emails(api, filter='any(email,["c@example.com","a@example.com","nobody@example.com"])') == [
        "c@example.com",
        "a@example.com",
    ]
    assert emails(api, filter='equals(phone_number,"+447700900123")') == ["b@example.com"]
    assert emails(api, filter="equals(external_id,'ext-a')") == ["a@example.com"]
    profile_id = api.collect("/api/profiles", filter='equals(email,"c@example.com")')[0]["id"]
    assert emails(api, filter=f'equals(id,"{profile_id}")') == ["c@example.com"]
    assert emails(api, filter=f'and(equals(id,"{profile_id}"),equals(email,"a@example.com"))') == []
    assert emails(api, filter='equals(email,"nobody@example.com")') == []
    assert api.get("/api/profiles", params={"filter": 'equals(first_name,"A")'}).status_code == 400
    assert api.get("/api/profiles", params={"filter": "equals(email,"}).status_code == 400


def test_profiles_page_in_creation_order(sb, api):
    api.import_and_wait(sb, [Api.profile(f"p{i:02}@example.com") for i in range(30)])
    assert emails(api, **{"page[size]": "7"}) == [f"p{i:02}@example.com" for i in range(30)]
    assert emails(api, sort="-created") == [f"p{i:02}@example.com" for i in reversed(range(30))]
    assert len(api.get("/api/profiles").json()["data"]) == 20
    assert api.get("/api/profiles", params={"page[size]": "101"}).status_code == 400
    assert api.get("/api/profiles", params={"sort": "email"}).status_code == 400


def test_get_one_profile(sb, api):
    api.import_and_wait(sb, [Api.profile("one@example.com", first_name="One", properties={"k": "v"})])
    profile_id = sb.find_profile("one@example.com")["id"]
    data = api.get(f"/api/profiles/{profile_id}").json()["data"]
    assert data["type"] == "profile" and data["id"] == profile_id
    assert data["attributes"]["first_name"] == "One" and data["attributes"]["properties"] == {"k": "v"}
    assert data["attributes"]["phone_number"] is None and data["links"]["self"].endswith(profile_id)
    assert api.get("/api/profiles/01NOSUCHPROFILE").status_code == 404


def test_profile_ids_stay_unique_and_only_real_ones_resolve(sb, api):
    """Profiles are numbered internally; only ids the sandbox handed out may find one, the very first included."""
    api.import_and_wait(sb, [Api.profile("first@example.com"), Api.profile("second@example.com")])
    first = api.collect("/api/profiles", filter='equals(email,"first@example.com")')[0]["id"]
    second = api.collect("/api/profiles", filter='equals(email,"second@example.com")')[0]["id"]
    assert first != second and len(first) == len(second) == 26
    assert api.get(f"/api/profiles/{first}").json()["data"]["attributes"]["email"] == "first@example.com"
    assert emails(api, filter=f'any(id,["{second}","{first}"])') == ["second@example.com", "first@example.com"]
    job_id = api.post(JOBS, Api.import_document([Api.profile("third@example.com")])).json()["data"]["id"]
    sb.wait_for_jobs()
    unknown = [
        job_id,  # another resource's id
        first[:-1] + "Z",  # not hexadecimal where the number is
        first[:10] + "F" * 16,  # well-formed, far beyond the last profile
        first.lower(),
    ]
    for profile_id in unknown:
        assert api.get(f"/api/profiles/{profile_id}").status_code == 404, profile_id
        assert emails(api, filter=f'equals(id,"{profile_id}")') == [], profile_id


def test_an_update_by_id_reaches_the_first_profile(sb, api):
    api.import_and_wait(sb, [Api.profile("first@example.com", first_name="Ada")])
    profile_id = sb.find_profile("first@example.com")["id"]
    resource = {"type": "profile", "id": profile_id, "attributes": {"first_name": "Grace"}}
    api.import_and_wait(sb, [resource])
    profile = sb.find_profile("first@example.com")
    assert profile["id"] == profile_id and profile["first_name"] == "Grace"
    assert profile["updated"] >= profile["created"]
