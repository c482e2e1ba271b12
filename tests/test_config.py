"""Loading config.toml (with BRIDGE_* overrides) and genesis.json: errors name the key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bridge.config import CONFIG_FILE, CONFIG_TEMPLATE, load_config
from bridge.errors import ConfigError
from bridge.ledger import Genesis, Ledger
from bridge.node import Node
from tests.node_helpers import genesis, node_key


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def write_config(home: Path, text: str) -> Path:
    path = home / CONFIG_FILE
    path.write_text(text)
    return path


def test_missing_config_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[node\nblock_interval = 0.2\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(tmp_path)
    assert str(path) in str(info.value)


def test_non_utf8_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_bytes(b'[api]\nhost = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(info.value)


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).mkdir()
    with pytest.raises(ConfigError, match="cannot be read") as info:
        load_config(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(info.value)


def test_empty_config_gives_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    settings = load_config(tmp_path)
    assert settings.node.block_interval == 0.2
    assert settings.api.port == 8080
    assert settings.listeners.restart_policy == "never"
    assert settings.app.extensions == {}


def test_template_is_valid(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG_TEMPLATE.format(port=8123))
    assert load_config(tmp_path).api.port == 8123


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nblock_interval = -1\n", "node.block_interval"),
        ('[api]\nport = "x"\n', "api.port"),
        ("[api]\nport = 70000\n", "api.port"),
        ('[listeners]\nrestart_policy = "sometimes"\n', "listeners.restart_policy"),
        ("[broadcaster]\nmax_votes_per_tx = 0\n", "broadcaster.max_votes_per_tx"),
        ("[node]\nblock_intervall = 0.5\n", "node.block_intervall"),  # a typo
        ("[nodes]\nblock_interval = 0.5\n", "nodes"),  # a misspelt section
        ("[app]\nextension = {}\n", "app.extension"),
    ],
)
def test_invalid_value_or_unknown_key_names_the_dotted_key(tmp_path: Path, text: str, key: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"{key}:" in str(info.value)


def test_settings_options_are_not_config_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings takes "_env_prefix" as an init argument; the file must not reach it.
    write_config(tmp_path, '_env_prefix = "NOPE_"\n')
    monkeypatch.setenv("BRIDGE_API__PORT", "9999")
    with pytest.raises(ConfigError, match="_env_prefix: Extra inputs are not permitted"):
        load_config(tmp_path)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    write_config(tmp_path, '[node]\nblock_interval = -1\n[api]\nport = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "node.block_interval:" in str(info.value)
    assert "api.port:" in str(info.value)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        tmp_path,
        '[api]\nport = 8081\n[app.extensions.http_oracle]\nurl = "http://file"\npoll_interval = 2.0\n',
    )
    monkeypatch.setenv("BRIDGE_API__PORT", "9999")
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__HTTP_ORACLE__URL", "http://env")
    settings = load_config(tmp_path)
    assert settings.api.port == 9999
    # The override replaces one key of the table and keeps the others.
    assert settings.app.extensions == {"http_oracle": {"url": "http://env", "poll_interval": 2.0}}


def test_environment_override_can_create_an_extension_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, "")
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__HTTP_ORACLE__URL", "http://env")
    assert load_config(tmp_path).app.extensions == {"http_oracle": {"url": "http://env"}}


def test_invalid_environment_override_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, "")
    monkeypatch.setenv("BRIDGE_NODE__BLOCK_INTERVAL", "-1")
    with pytest.raises(ConfigError, match="BRIDGE_") as info:
        load_config(tmp_path)
    assert "node.block_interval:" in str(info.value)


EXTENSIONS_TOML = """
[app.extensions.http_oracle]
url = "http://127.0.0.1:9000/value"
poll_interval = 0.5
nested = { a = [1, 2] }

[app.extensions.other]
flag = true
"""


def test_extension_tables_reach_the_listener_service(tmp_path: Path) -> None:
    write_config(tmp_path, EXTENSIONS_TOML)
    settings = load_config(tmp_path)
    expected: dict[str, Any] = {
        "url": "http://127.0.0.1:9000/value",
        "poll_interval": 0.5,
        "nested": {"a": [1, 2]},
    }
    assert settings.app.extensions == {"http_oracle": expected, "other": {"flag": True}}

    key = node_key(1)
    node = Node(tmp_path, settings, genesis((key, 1)), key)
    node.ledger = cast(Ledger, SimpleNamespace(chain_id="test-chain"))
    service = node._service("http_oracle")
    assert service.name == "http_oracle"
    assert service.config == expected
    assert service.identity == key.public
    assert service.chain_id == "test-chain"
    assert service.logger.name == "listeners.http_oracle"
    assert node._service("other").config == {"flag": True}
    assert node._service("unconfigured").config is None


GOOD_GENESIS: dict[str, Any] = {
    "chain_id": "test-chain",
    "time_ns": 0,
    "vote_fee": "0",
    "validators": [{"pubkey": "11" * 32, "power": 10}],
    "accounts": [{"id": "0x" + "22" * 20, "balance": "5"}],
}


def test_genesis_round_trips(tmp_path: Path) -> None:
    gen = Genesis.from_json(GOOD_GENESIS)
    assert gen.validators == ((bytes.fromhex("11" * 32), 10),)
    path = tmp_path / "genesis.json"
    gen.save(path)
    assert Genesis.load(path) == gen


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"chain_id": None}, "chain_id"),
        ({"chain_id": ""}, "chain_id"),
        ({"chain_id": "x" * 129}, "chain_id"),
        ({"validators": []}, "validators"),
        ({"validators": [{"pubkey": "zz", "power": 1}]}, "validators"),
        ({"validators": [{"pubkey": "11" * 31, "power": 1}]}, "validators"),
        ({"validators": [{"pubkey": "11" * 32, "power": 0}]}, "validators"),
        ({"validators": [{"pubkey": "11" * 32}]}, "validators"),
        ({"validators": "11"}, "validators"),
        ({"accounts": [{"id": "0x1234", "balance": "1"}]}, "accounts"),
        ({"accounts": [{"id": "0x" + "22" * 20, "balance": "many"}]}, "accounts"),
        ({"time_ns": "soon"}, "time_ns"),
        ({"vote_fee": "x"}, "vote_fee"),
        ({"vote_fee": "-1"}, "vote_fee"),
    ],
)
def test_genesis_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    data = {**GOOD_GENESIS, **change}
    with pytest.raises(ConfigError, match=f"invalid '{key}'"):
        Genesis.from_json(data, "my-genesis.json")


def test_genesis_missing_key_is_named() -> None:
    data = dict(GOOD_GENESIS)
    del data["validators"]
    with pytest.raises(ConfigError, match="my-genesis.json: invalid 'validators'"):
        Genesis.from_json(data, "my-genesis.json")


def test_genesis_load_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    with pytest.raises(ConfigError, match="does not exist"):
        Genesis.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        Genesis.load(path)
    assert str(path) in str(info.value)
    path.write_text(json.dumps({**GOOD_GENESIS, "vote_fee": "-5"}))
    with pytest.raises(ConfigError, match="invalid 'vote_fee'") as info:
        Genesis.load(path)
    assert str(path) in str(info.value)
