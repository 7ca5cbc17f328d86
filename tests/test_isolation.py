"""The suite never writes into the developer's own klaviyo-magic directory, even from tests that do not ask
for the `klaviyo_home` fixture (an export journals its run there)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import platformdirs

from klaviyo_magic import export_segment, home
from klaviyo_magic.connections import Connection


def test_an_export_outside_the_home_fixture_journals_into_a_temporary_home(sandbox, tmp_path_factory):
    real_home = Path(platformdirs.user_config_dir("klaviyo-magic"))
    temporary = home.directory()
    assert temporary != real_home
    assert Path(os.environ[home.HOME_ENV]).is_relative_to(tmp_path_factory.getbasetemp())

    list_id = sandbox.create_list("Isolation")
    connection = Connection.from_key("pk_isolation_0123456789abcdef", base_url=sandbox.url)
    frame = pd.DataFrame({"email": ["ada@example.com", "grace@example.com"]})
    export_segment(frame, email="email", list_id=list_id, connection=connection)

    assert list((temporary / "runs").iterdir()), "the export should have journaled its run in the temporary home"
