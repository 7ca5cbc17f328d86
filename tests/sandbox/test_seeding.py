"""Members someone else added or removed: ``Sandbox.add_members`` and ``remove_members``, seen over HTTP."""

from __future__ import annotations

import pytest
from sandbox_support import Api


def member_ids(api: Api, list_id: str) -> list[str]:
    return [item["id"] for item in api.collect(f"/api/lists/{list_id}/relationships/profiles")]


def test_add_members_creates_profiles_joins_them_and_returns_their_ids(sb, api):
    list_id = sb.create_list("Seeded")
    ids = sb.add_members(list_id, ["ann@example.com", {"email": "bob@example.com", "first_name": "Bob"}])
    assert len(ids) == 2 and len(set(ids)) == 2
    assert member_ids(api, list_id) == ids  # joining order is the order given
    found = api.collect(f"/api/lists/{list_id}/profiles", filter='equals(email,"bob@example.com")')
    assert [(m["id"], m["attributes"]["first_name"]) for m in found] == [(ids[1], "Bob")]
    assert found[0]["attributes"]["joined_group_at"]
    assert {profile["id"] for profile in sb.profiles()} == set(ids)


def test_add_members_updates_the_profile_with_that_email_and_keeps_a_member_in_place(sb, api):
    list_id = sb.create_list("Updated")
    api.import_and_wait(sb, [Api.profile("Cat@Example.com", first_name="Cat", properties={"plan": "gold"})])
    (cat,) = sb.add_members(list_id, ["cat@example.com"])  # an existing profile, found by email in any case
    assert cat == sb.find_profile("cat@example.com")["id"] and len(sb.profiles()) == 1
    dan, again = sb.add_members(list_id, ["dan@example.com", {"email": "CAT@example.com", "properties": {"n": 1}}])
    assert again == cat
    assert member_ids(api, list_id) == [cat, dan]  # a current member keeps its place (and joined_group_at)
    profile = sb.find_profile("cat@example.com")
    assert profile["first_name"] == "Cat" and profile["properties"] == {"plan": "gold", "n": 1}  # merged


@pytest.mark.parametrize(
    "items",
    [
        ["ok@example.com", "not-an-email"],
        ["ok@example.com", {"first_name": "No email"}],
        ["ok@example.com", {"email": "x@example.com", "anonymous_id": "gone"}],  # not a profile field any more
        ["ok@example.com", {"email": "x@example.com", "properties": "plan=gold"}],
        ["ok@example.com", 42],
    ],
)
def test_add_members_refuses_what_a_bulk_import_would_and_changes_nothing(sb, items):
    list_id = sb.create_list("Refused")
    with pytest.raises(TypeError if items[1] == 42 else ValueError, match="item 1"):
        sb.add_members(list_id, items)
    assert sb.profiles() == [] and sb.list_members(list_id) == []


def test_add_members_with_conflicting_identifiers_adds_nobody(sb):
    list_id = sb.create_list("Conflict")
    sb.add_members(list_id, ["x@example.com", {"email": "y@example.com", "phone_number": "+15005550006"}])
    other = sb.create_list("Other")
    with pytest.raises(ValueError, match="already exists"):
        sb.add_members(other, ["z@example.com", {"email": "x@example.com", "phone_number": "+15005550006"}])
    assert sb.list_members(other) == []


def test_remove_members_by_email_keeps_the_profiles(sb, api):
    list_id = sb.create_list("Leavers")
    ids = sb.add_members(list_id, ["e@example.com", "f@example.com", "g@example.com"])
    sb.add_members(sb.create_list("Elsewhere"), ["h@example.com"])
    sb.remove_members(list_id, ["F@EXAMPLE.COM", "h@example.com"])  # h is a profile, not a member: no change
    assert member_ids(api, list_id) == [ids[0], ids[2]]
    assert sb.find_profile("f@example.com")["id"] == ids[1]
    with pytest.raises(KeyError, match="nobody@example.com"):
        sb.remove_members(list_id, ["e@example.com", "nobody@example.com"])
    assert member_ids(api, list_id) == [ids[0], ids[2]]  # nothing removed
    sb.add_members(list_id, ["f@example.com"])  # joins again, at the end
    assert member_ids(api, list_id) == [ids[0], ids[2], ids[1]]


def test_both_helpers_refuse_an_unknown_list(sb):
    with pytest.raises(KeyError, match="NoList"):
        sb.add_members("NoList", ["a@example.com"])
    with pytest.raises(KeyError, match="NoList"):
        sb.remove_members("NoList", ["a@example.com"])
    assert sb.profiles() == []
