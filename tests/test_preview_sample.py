"""The dry run's preview (``result.sample``) shows the profiles as they will be sent: one column per profile field
and per property, a dict property as one column holding the dict, a list as a list, and ``{}`` (which is sent) as
``{}``, not as NaN or as columns of its keys."""

from __future__ import annotations

import pandas as pd

from klaviyo_magic import export_segment


def test_the_preview_shows_dict_and_list_properties_as_they_are_sent(klaviyo_home) -> None:
    data = pd.DataFrame(
        {
            "email": ["a@x.io", "b@x.io", "c@x.io"],
            "first_name": ["A", "B", "C"],
            "ltv": [10.5, 3.0, 7.0],
            "meta": [{"k": 1}, {}, {"k": 2, "deep": {"x": [1]}}],
            "tags": [["vip"], [], ["a", "b"]],
        }
    )
    properties = ["first_name", "ltv", "meta", "tags"]
    options = {"email": "email", "list_id": "Y6nRLr", "properties": properties, "progress": False}
    preview = export_segment(data, dry_run=True, **options)
    assert preview.would_send == 3
    assert preview.sample.columns.tolist() == ["email", "first_name", "properties.ltv", "properties.meta",
                                               "properties.tags"]  # fmt: skip
    assert preview.sample["properties.meta"].tolist() == [{"k": 1}, {}, {"k": 2, "deep": {"x": [1]}}]
    assert preview.sample["properties.tags"].tolist() == [["vip"], [], ["a", "b"]]
    assert preview.sample["properties.ltv"].tolist() == [10.5, 3.0, 7.0]
