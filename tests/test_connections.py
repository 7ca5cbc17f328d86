"""Connection profiles through the Python API: store, key sources, team file, consent, validation, test()."""

from __future__ import annotations

import copy
import os
import pickle
import socket
import stat
import subprocess
import sys
import textwrap
import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from klaviyo_magic import connections, home
from klaviyo_magic.connections import Connection, keys
from klaviyo_magic.connections.keys import PlaintextKeyWarning
from klaviyo_magic.errors import ConfigError, ConsentRequiredError
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_0123456789abcdefghijWXYZ"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_text(directory) -> str:
    return (directory / "connections.toml").read_text()


# -- add / get / list / default / remove ---------------------------------------------------------------------


def test_add_env_profile_round_trip(klaviyo_home, monkeypatch):
    conn = connections.add("prod", api_key_env="KLAVIYO_PROD_KEY")
    assert conn == connections.get("prod")
    assert (conn.name, conn.key_source, conn.base_url) == (
        "prod",
        "env:KLAVIYO_PROD_KEY",
        "https://a.klaviyo.com",
    )
    assert conn.revision == connections.DEFAULT_REVISION
    assert (conn.is_team, conn.is_default, conn.privacy_accepted_at) == (False, False, None)
    assert conn.masked_key == "env:KLAVIYO_PROD_KEY"
    monkeypatch.setenv("KLAVIYO_PROD_KEY", f"  {KEY}\n")
    assert conn.api_key == KEY  # read at call time, whitespace trimmed
    data = tomllib.loads(store_text(klaviyo_home))
    assert data["connections"]["prod"]["key_source"] == "env:KLAVIYO_PROD_KEY"
    assert mode(klaviyo_home / "connections.toml") == 0o600
    assert mode(klaviyo_home) == 0o700


def test_list_default_and_remove(klaviyo_home):
    connections.add("prod", api_key_env="A", base_url="https://eu.example.com/")
    connections.add("dev", api_key_env="B")
    assert [c.name for c in connections.list()] == ["dev", "prod"]
    assert connections.get("prod").base_url == "https://eu.example.com"  # trailing slash stripped
    connections.set_default("prod")
    assert connections.get().name == "prod"
    assert [c.is_default for c in connections.list()] == [False, True]
    connections.remove("prod")
    assert [c.name for c in connections.list()] == ["dev"]
    with pytest.raises(ConfigError, match="no default set"):
        connections.get()  # removing the default profile cleared the default
    connections.set_default("dev")
    connections.set_default(None)
    with pytest.raises(ConfigError, match="no default set"):
        connections.get()


def test_unknown_names_get_a_did_you_mean(klaviyo_home):
    connections.add("production", api_key_env="A")
    for call in (
        connections.get,
        connections.remove,
        connections.set_default,
        connections.accept_privacy_terms,
    ):
        with pytest.raises(ConfigError, match="No connection named 'prodcution'. Did you mean 'production'"):
            call("prodcution")


def test_no_default_falls_back_to_the_environment(klaviyo_home, monkeypatch):
    with pytest.raises(ConfigError, match="%klaviyo_connection add NAME --api-key-env VAR"):
        connections.get()
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    monkeypatch.setenv("KLAVIYO_BASE_URL", "http://127.0.0.1:9999/")
    conn = connections.get()
    assert (conn.is_ad_hoc, conn.key_source, conn.base_url) == (
        True,
        "env:KLAVIYO_API_KEY",
        "http://127.0.0.1:9999",
    )
    assert conn.api_key == KEY
    assert connections.resolve(None) == conn
    connections.add("prod", api_key_env="OTHER")
    connections.set_default("prod")
    assert connections.get().name == "prod"  # a default profile wins over the environment


def test_resolve_accepts_names_and_objects(klaviyo_home):
    connections.add("prod", api_key_env="A")
    inline = Connection.from_key(KEY)
    assert connections.resolve(inline) is inline
    assert connections.resolve("prod").name == "prod"
    with pytest.raises(ConfigError, match="profile name or a Connection"):
        connections.resolve(42)


def test_duplicates_are_refused_unless_replaced(klaviyo_home):
    connections.add("prod", api_key_env="A", accept_privacy_terms=True)
    with pytest.raises(ConfigError, match="already exists.*--replace"):
        connections.add("prod", api_key_env="B")
    conn = connections.add("prod", api_key_env="B", replace=True)
    assert conn.key_source == "env:B"
    assert conn.privacy_accepted_at is None  # the new key may be another account: accept again


def test_other_sections_of_the_store_are_kept(klaviyo_home):
    klaviyo_home.mkdir()
    (klaviyo_home / "connections.toml").write_text('[exports.weekly]\nlist_id = "Y6nRLr"\n')
    connections.add("prod", api_key_env="A")
    connections.remove("prod")
    assert tomllib.loads(store_text(klaviyo_home))["exports"] == {"weekly": {"list_id": "Y6nRLr"}}


# -- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.klaviyo.com/", "https://a.klaviyo.com"),
        ("https://proxy.example.com/klaviyo/", "https://proxy.example.com/klaviyo"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_allowed_base_urls(klaviyo_home, url, expected):
    assert connections.add("x", api_key_env="A", base_url=url).base_url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://a.klaviyo.com", "plain http:// only to this machine"),
        ("http://10.0.0.5:8080", "plain http:// only to this machine"),
        ("ftp://a.klaviyo.com", "use https://"),
        ("a.klaviyo.com", "use https://"),
        ("https://user:secret@a.klaviyo.com", "must not contain a user name or password"),
        ("https://a.klaviyo.com/?x=1", "query string"),
    ],
)
def test_refused_base_urls(klaviyo_home, url, message):
    with pytest.raises(ConfigError, match=message) as info:
        connections.add("x", api_key_env="A", base_url=url)
    assert "secret" not in str(info.value)
    assert not (klaviyo_home / "connections.toml").exists()


def test_key_name_revision_and_source_checks(klaviyo_home):
    with pytest.raises(ConfigError, match="start with 'pk_'") as info:
        connections.add("x", api_key="sk_notaprivatekey123456")
    assert "notaprivatekey" not in str(info.value)
    with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
        connections.add("x", api_key_env=KEY)  # e.g. the shell expanded $KLAVIYO_API_KEY
    assert KEY not in str(info.value)
    assert connections.add("x", api_key_env="$MY_KEY").key_source == "env:MY_KEY"
    with pytest.raises(ConfigError, match="not an environment variable name"):
        connections.add("y", api_key_env="MY-KEY")
    with pytest.raises(ConfigError, match="exactly one key source"):
        connections.add("y")
    with pytest.raises(ConfigError, match="exactly one key source"):
        connections.add("y", api_key_env="A", api_key=KEY)
    with pytest.raises(ConfigError, match="not a usable connection name"):
        connections.add("has space", api_key_env="A")
    with pytest.raises(ConfigError, match="may not start with 'pk_'") as info:
        connections.add(KEY, api_key_env="A")
    assert KEY not in str(info.value)
    with pytest.raises(ConfigError, match="not a Klaviyo API revision"):
        connections.add("y", api_key_env="A", revision="latest")
    assert connections.add("y", api_key_env="A", revision="2026-07-15.pre").revision == "2026-07-15.pre"
    with pytest.raises(ConfigError, match="store must be one of"):
        connections.add("z", api_key=KEY, store="vault")
    with pytest.raises(ConfigError, match="store='file' is for literal keys"):
        connections.add("z", api_key_env="A", store="file")


def test_missing_env_var_names_the_source_and_the_fix(klaviyo_home):
    conn = connections.add("prod", api_key_env="KLAVIYO_PROD_KEY")
    with pytest.raises(ConfigError, match=r"reads its API key from \$KLAVIYO_PROD_KEY, which is not set.*restart"):
        conn.api_key  # noqa: B018


def test_a_notebook_sandbox_connection_without_its_kernel_says_so(klaviyo_home, monkeypatch):
    """What ``%klaviyo_connection sandbox`` saves, read where its made-up key is not set (the CLI, another
    kernel): the sandbox lived in that kernel, so "set KLAVIYO_SANDBOX_KEY and restart" would be no help."""
    monkeypatch.delenv("KLAVIYO_SANDBOX_KEY", raising=False)
    conn = connections.add("sandbox", api_key_env="KLAVIYO_SANDBOX_KEY", base_url="http://127.0.0.1:40123")
    with pytest.raises(ConfigError) as info:
        conn.api_key  # noqa: B018
    assert str(info.value) == (
        "Connection 'sandbox' points at the sandbox a notebook started at http://127.0.0.1:40123; that sandbox runs "
        "only inside the notebook's kernel and stops with it. Start a new one with `%klaviyo_connection sandbox` "
        "in a notebook, or use another connection: --connection NAME."
    )
    monkeypatch.setenv("KLAVIYO_SANDBOX_KEY", KEY)  # inside the kernel that started it
    assert conn.api_key == KEY
    # The same variable for a non-local URL is an ordinary connection with an ordinary message.
    monkeypatch.delenv("KLAVIYO_SANDBOX_KEY")
    other = connections.add("odd", api_key_env="KLAVIYO_SANDBOX_KEY", base_url="https://a.klaviyo.com")
    with pytest.raises(ConfigError, match=r"reads its API key from \$KLAVIYO_SANDBOX_KEY, which is not set"):
        other.api_key  # noqa: B018


# -- key sources ---------------------------------------------------------------------------------------------


def test_literal_key_goes_to_the_keyring_when_usable(memory_keyring, klaviyo_home):
    conn = connections.add("prod", api_key=KEY)
    assert (conn.key_source, conn.masked_key) == ("keyring", "keyring")
    assert memory_keyring.passwords == {(keys.KEYRING_SERVICE, "prod"): KEY}
    assert conn.api_key == KEY
    assert not (klaviyo_home / "keys.toml").exists()
    assert KEY not in store_text(klaviyo_home)
    connections.remove("prod")
    assert memory_keyring.passwords == {}


def test_missing_keyring_entry_says_how_to_restore_it(memory_keyring):
    conn = connections.add("prod", api_key=KEY)
    memory_keyring.passwords.clear()
    with pytest.raises(ConfigError, match="no entry for it.*--api-key-stdin --replace"):
        conn.api_key  # noqa: B018


@pytest.mark.parametrize("store", ["auto", "keyring"])
def test_without_a_keyring_a_literal_key_is_refused_and_nothing_is_written(klaviyo_home, store, recwarn):
    assert not keys.keyring_available()  # klaviyo_home installs keyring's "fail" backend
    with pytest.raises(ConfigError) as info:
        connections.add("prod", api_key=KEY, store=store)
    message = str(info.value)
    assert message.startswith("No usable OS keyring to keep the API key of connection 'prod' in")
    assert "nothing was saved" in message
    for fix in ("api_key_env='VAR'", "pip install 'klaviyo-magic[keyring]'", "store='file'"):
        assert fix in message
    assert "--" not in message  # Python spellings only; the CLI names its own flags
    assert KEY not in message and KEY[3:-4] not in repr(info.value)
    assert not klaviyo_home.exists()  # not even the directory, the lock file or the key file
    assert not recwarn.list


def test_without_a_keyring_a_refused_replace_keeps_the_old_profile(klaviyo_home):
    connections.add("prod", api_key_env="A", accept_privacy_terms=True)
    before = store_text(klaviyo_home)
    with pytest.raises(ConfigError, match="nothing was saved"):
        connections.add("prod", api_key=KEY, replace=True)
    assert store_text(klaviyo_home) == before
    assert not (klaviyo_home / "keys.toml").exists()


def test_without_a_keyring_the_key_file_is_written_when_asked_for(klaviyo_home):
    with pytest.warns(PlaintextKeyWarning, match="as requested"):
        conn = connections.add("prod", api_key=KEY, store="file")
    assert (conn.key_source, conn.api_key) == ("file", KEY)
    assert mode(klaviyo_home / "keys.toml") == 0o600


def test_key_file_only_on_request_with_a_warning_and_mode_0600(memory_keyring, klaviyo_home):
    with pytest.warns(PlaintextKeyWarning, match="plain text in .*keys.toml \\(mode 0600\\), as requested"):
        conn = connections.add("prod", api_key=KEY, store="file")
    key_file = klaviyo_home / "keys.toml"
    assert mode(key_file) == 0o600
    assert tomllib.loads(key_file.read_text())["keys"] == {"prod": KEY}
    assert KEY not in store_text(klaviyo_home)
    assert memory_keyring.passwords == {}
    assert (conn.key_source, conn.masked_key, conn.api_key) == ("file", "pk_****WXYZ", KEY)
    connections.remove("prod")
    assert tomllib.loads(key_file.read_text())["keys"] == {}


def test_replacing_a_stored_key_with_an_env_var_deletes_the_stored_key(memory_keyring):
    connections.add("prod", api_key=KEY)
    connections.add("prod", api_key_env="A", replace=True)
    assert memory_keyring.passwords == {}


def test_in_memory_keys_are_masked_and_not_picklable():
    conn = Connection.from_key(KEY, base_url="http://127.0.0.1:1234/", name="nb")
    assert conn.api_key == KEY
    assert (conn.is_ad_hoc, conn.masked_key, conn.base_url) == (True, "pk_****WXYZ", "http://127.0.0.1:1234")
    shown = [repr(conn), str(conn), repr(vars(conn)), repr(conn.summary()), repr(copy.deepcopy(conn))]
    assert all(KEY not in text for text in shown)
    assert copy.deepcopy(conn).api_key == KEY
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(conn)
    with pytest.raises(ConfigError, match="start with 'pk_'"):
        Connection.from_key("not-a-key")


# -- team file -----------------------------------------------------------------------------------------------


@pytest.fixture
def team_file(tmp_path, monkeypatch):
    path = tmp_path / "team" / "klaviyo-team.toml"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(
            """\
            default = "shared"

            [connections.shared]
            key_source = "env:TEAM_KLAVIYO_KEY"
            base_url = "https://a.klaviyo.com"

            [connections.blessed]
            api_key_env = "TEAM_KLAVIYO_KEY"
            privacy_accepted_at = 2026-01-02T03:04:05Z
            """
        )
    )
    monkeypatch.setenv("KLAVIYO_MAGIC_TEAM_FILE", str(path))
    return path


def test_team_profiles_are_listed_and_usable(klaviyo_home, team_file):
    connections.add("mine", api_key_env="A")
    listed = connections.list()
    assert [(c.name, c.is_team) for c in listed] == [("mine", False), ("blessed", True), ("shared", True)]
    assert connections.get().name == "shared"  # the team file's default, when you set none
    assert connections.get("blessed").key_source == "env:TEAM_KLAVIYO_KEY"
    assert connections.get("blessed").privacy_accepted_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    connections.set_default("mine")
    assert connections.get().name == "mine"


def test_team_profiles_are_read_only(klaviyo_home, team_file):
    before = team_file.read_bytes()
    with pytest.raises(ConfigError, match=f"team connection, managed by an admin in {team_file}"):
        connections.remove("shared")
    with pytest.raises(ConfigError, match="already a team connection.*pick another name"):
        connections.add("shared", api_key_env="A")
    conn = connections.accept_privacy_terms("shared")  # consent is personal: recorded in your own store
    assert conn.privacy_accepted and conn.is_team
    assert "shared" in tomllib.loads(store_text(klaviyo_home))["team_consent"]
    assert team_file.read_bytes() == before


def test_a_name_defined_in_both_stores_is_refused(klaviyo_home, team_file, monkeypatch):
    monkeypatch.delenv("KLAVIYO_MAGIC_TEAM_FILE")
    connections.add("shared", api_key_env="A")
    monkeypatch.setenv("KLAVIYO_MAGIC_TEAM_FILE", str(team_file))  # the admin added it later
    with pytest.raises(ConfigError, match="both in your store.*and in the team file"):
        connections.get("shared")


def test_missing_or_broken_team_file_is_explained(klaviyo_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KLAVIYO_MAGIC_TEAM_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml, which does not exist"):
        connections.list()
    bad = tmp_path / "bad.toml"
    bad.write_text('[connections.x]\nkey_source = "password"\n')
    monkeypatch.setenv("KLAVIYO_MAGIC_TEAM_FILE", str(bad))
    with pytest.raises(ConfigError, match="bad.toml: connection 'x' is invalid: key_source must be"):
        connections.list()


# -- consent -------------------------------------------------------------------------------------------------


def test_consent_is_required_for_saved_profiles(klaviyo_home, monkeypatch):
    conn = connections.add("prod", api_key_env="A")
    with pytest.raises(ConsentRequiredError) as info:
        connections.require_consent(conn)
    message = str(info.value)
    for fix in (
        "--accept-privacy-terms",
        "klaviyo-magic connection accept prod",
        "tick the box in the export form",
    ):
        assert fix in message
    before = datetime.now(UTC) - timedelta(seconds=1)
    accepted = connections.accept_privacy_terms("prod")
    assert before <= accepted.privacy_accepted_at <= datetime.now(UTC)
    connections.require_consent(accepted)
    assert connections.add("eu", api_key_env="A", accept_privacy_terms=True).privacy_accepted


def test_ad_hoc_connections_count_as_consented(klaviyo_home, monkeypatch):
    connections.require_consent(Connection.from_key(KEY))
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    connections.require_consent(connections.get())


# -- the store file ------------------------------------------------------------------------------------------


def test_corrupt_store_is_named_and_never_overwritten(klaviyo_home):
    klaviyo_home.mkdir()
    store = klaviyo_home / "connections.toml"
    store.write_text("[connections.prod\nkey_source = ")
    before = store.read_bytes()
    for call in (
        connections.list,
        lambda: connections.add("x", api_key_env="A"),
        lambda: connections.remove("x"),
    ):
        with pytest.raises(ConfigError, match=f"{store} is not valid TOML.*Nothing was changed"):
            call()
    assert store.read_bytes() == before


def test_unreadable_store_is_named(klaviyo_home):
    # A directory where the file should be is unreadable even for root (file modes are not, so CI as root
    # could not test a chmod 0 file).
    store = klaviyo_home / "connections.toml"
    store.mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"Cannot read {store}"):
        connections.list()
    assert store.is_dir()  # and nothing replaced it


def test_failed_replace_leaves_the_old_store_intact(klaviyo_home, monkeypatch):
    connections.add("prod", api_key_env="A")
    before = store_text(klaviyo_home)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(home.os, "replace", crash)
    with pytest.raises(ConfigError, match="No space left on device. The previous file is unchanged"):
        connections.add("dev", api_key_env="B")
    monkeypatch.undo()
    assert store_text(klaviyo_home) == before
    assert sorted(p.name for p in klaviyo_home.iterdir()) == [".connections.toml.lock", "connections.toml"]


def test_a_crash_between_write_and_rename_keeps_the_old_store(klaviyo_home):
    connections.add("prod", api_key_env="A")
    before = store_text(klaviyo_home)
    # A real process dies (no cleanup, no finally) after the temp file is written and fsynced.
    script = textwrap.dedent(
        """
        import os
        from klaviyo_magic import connections, home
        home.os.replace = lambda src, dst: os._exit(9)
        connections.add("dev", api_key_env="B")
        """
    )
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    leftovers = [p for p in klaviyo_home.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and "dev" in leftovers[0].read_text()  # the new data never replaced the old
    assert store_text(klaviyo_home) == before
    assert [c.name for c in connections.list()] == ["prod"]
    connections.add("dev", api_key_env="B")  # and the store keeps working
    assert [c.name for c in connections.list()] == ["dev", "prod"]


def test_toml_writer_round_trips():
    data = {
        "default": 'quote " backslash \\ tab \t newline \n bell \x07 é',
        "n": 3,
        "f": 1.5,
        "on": True,
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "items": ["a", 1, [2, 3]],
        "skipped": None,
        "connections": {"we.ird key": {"x": 1}, "empty": {}},
        "exports": {"weekly": {"segments": ["vip", "lapsed"], "properties": {"ltv": "lifetime_value"}}},
    }
    loaded = tomllib.loads(home.dumps(data))
    expected = {k: v for k, v in data.items() if v is not None}
    assert loaded == expected


# -- test(): one GET /api/accounts against the sandbox -------------------------------------------------------


def test_test_reports_the_organisation(klaviyo_home, sandbox, monkeypatch):
    monkeypatch.setenv("PROD_KEY", KEY)
    connections.add("prod", api_key_env="PROD_KEY", base_url=sandbox.url)
    outcome = connections.test("prod")
    assert outcome["ok"] is True and outcome["organization"] == "Sandbox Demo Co"
    assert "works" in outcome["message"] and "env:PROD_KEY" in outcome["message"]
    assert [(r.method, r.path) for r in sandbox.requests] == [("GET", "/api/accounts")]  # exactly one call


def test_test_explains_401_in_plain_words(klaviyo_home):
    with Sandbox(rate_limits=False, api_keys=["pk_someoneelsekey00000000"]) as strict:
        outcome = connections.test(Connection.from_key(KEY, base_url=strict.url, name="nb"))
    assert (outcome["ok"], outcome["status"], outcome["organization"]) == (False, 401, None)
    assert "Klaviyo refused the key from pk_****WXYZ (401 Unauthorized)" in outcome["message"]
    assert "revoked" in outcome["message"] and KEY not in outcome["message"]


def test_test_explains_403_in_plain_words(klaviyo_home, sandbox):
    sandbox.fail_next("GET /api/accounts", status=403)
    outcome = connections.test(Connection.from_key(KEY, base_url=sandbox.url))
    assert (outcome["ok"], outcome["status"]) == (False, 403)
    assert "accounts:read scope" in outcome["message"]


def test_test_explains_an_unreachable_server(klaviyo_home):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = connections.test(Connection.from_key(KEY, base_url=f"http://127.0.0.1:{port}"))
    assert outcome["ok"] is False and f"could not reach http://127.0.0.1:{port}" in outcome["message"]


def test_test_with_a_missing_key_raises_before_any_request(klaviyo_home, sandbox):
    connections.add("prod", api_key_env="UNSET_VAR", base_url=sandbox.url)
    with pytest.raises(ConfigError, match=r"\$UNSET_VAR, which is not set"):
        connections.test("prod")
    assert sandbox.requests == []


def test_test_explains_rate_limiting(klaviyo_home, sandbox):
    sandbox.fail_next("GET /api/accounts", status=429, count=2)
    outcome = connections.test(Connection.from_key(KEY, base_url=sandbox.url))
    assert (outcome["ok"], outcome["status"]) == (False, 429)
    assert "1 call per second and 15 per minute" in outcome["message"]


def test_importing_connections_stays_light():
    heavy = "{'requests', 'pandas', 'IPython'}"
    script = f"import sys, klaviyo_magic.connections; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
