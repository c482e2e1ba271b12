"""Closed doors of the configuration: values and names that once started a node which then
did nothing (a number that is not finite, a listener table or a BRIDGE_* variable that
matches nothing) are errors that name the key or the variable."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bridge.cli import init_home
from bridge.config import CONFIG_FILE, Settings, load_config
from bridge.errors import ConfigError
from bridge.node import Node
from listeners import Service, listener_config, parse_config, registered_listeners
from listeners.eth_deposits import EthDepositsConfig

ROOT = Path(__file__).resolve().parents[1]
NOT_FINITE = ["inf", "-inf", "nan", "1e300"]  # TOML literals; 1e300 overflows timers all the same


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def float_fields() -> list[tuple[str, type[BaseModel], str]]:
    """(table, model, key) of every float setting: node sections and listener tables."""
    models: list[tuple[str, type[BaseModel]]] = []
    for section, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        models.append((section, field.annotation))
    for name in registered_listeners():
        if (model := listener_config(name)) is not None:
            models.append((f"app.extensions.{name}", model))
    return [(t, m, k) for t, m in models for k, f in m.model_fields.items() if f.annotation is float]


def test_every_float_setting_is_found() -> None:
    keys = {f"{table}.{key}" for table, _, key in float_fields()}
    assert {
        "node.block_interval",
        "broadcaster.resend_timeout",
        "listeners.restart_max_delay",
        "app.extensions.eth_deposits.poll_interval",
        "app.extensions.eth_deposits.request_timeout",
        "app.extensions.http_oracle.poll_interval",
        "app.extensions.http_oracle.request_timeout",
    } <= keys


@pytest.mark.parametrize("value", [float(v) for v in NOT_FINITE])
@pytest.mark.parametrize(("table", "model", "key"), float_fields())
def test_every_float_setting_must_be_finite_and_bounded(
    table: str, model: type[BaseModel], key: str, value: float
) -> None:
    # Other keys may be missing (required ones): only this key's own error matters.
    with pytest.raises(ValidationError) as info:
        model.model_validate({key: value})
    assert any(e["loc"] == (key,) for e in info.value.errors()), f"{table}.{key} = {value} accepted"


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(
    ("section", "key"),
    [("node", "block_interval"), ("broadcaster", "resend_timeout"), ("listeners", "restart_max_delay")],
)
def test_non_finite_node_setting_names_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: "):
        load_config(tmp_path)


@pytest.mark.parametrize("value", ["inf", "nan", "1e300"])
def test_non_finite_environment_override_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    (tmp_path / CONFIG_FILE).write_text("")
    monkeypatch.setenv("BRIDGE_NODE__BLOCK_INTERVAL", value)
    with pytest.raises(ConfigError, match=r"node\.block_interval: "):
        load_config(tmp_path)


ETH_TABLE: dict[str, Any] = {
    "rpc_url": "http://127.0.0.1:8545",
    "contract_address": "0x" + "12" * 20,
    "chain_id": 31337,
}


@pytest.mark.parametrize("value", [float(v) for v in NOT_FINITE])
@pytest.mark.parametrize("key", ["poll_interval", "request_timeout"])
def test_non_finite_listener_setting_names_the_key(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"app\.extensions\.eth_deposits\.{key}: "):
        EthDepositsConfig.parse({**ETH_TABLE, key: value}, "app.extensions.eth_deposits")
    oracle = listener_config("http_oracle")
    assert oracle is not None
    table = {"url": "http://127.0.0.1:9/v", key: value}
    service = Service("http_oracle", logging.getLogger("t"), {"http_oracle": table}, b"\x00" * 32, "c")
    with pytest.raises(ValueError, match=rf"app\.extensions\.http_oracle\.{key}: "):
        parse_config(service, oracle)


# -- [app.extensions.NAME] of no listener -- #


def home_with(tmp_path: Path, extra: str) -> Path:
    home = tmp_path / "home"
    init_home(home, "test-chain", 0)
    with (home / CONFIG_FILE).open("a") as f:
        f.write(extra)
    return home


async def test_table_of_no_listener_stops_the_node(tmp_path: Path) -> None:
    home = home_with(tmp_path, '\n[app.extensions.eth_deposit]\nrpc_url = "http://127.0.0.1:8545"\n')
    node = Node.from_home(home)
    # Before the fix the node ran without a listener: wait_for turns that into a failure.
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(node.run(), 20)
    message = str(info.value)
    assert "app.extensions.eth_deposit:" in message
    assert ", ".join(registered_listeners()) in message  # the names it could have meant


async def test_environment_table_of_no_listener_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = home_with(tmp_path, "")
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__ETH_DEPOSIT__RPC_URL", "http://127.0.0.1:8545")
    node = Node.from_home(home)
    with pytest.raises(ConfigError, match=r"app\.extensions\.eth_deposit: "):
        await asyncio.wait_for(node.run(), 20)


def bridge_start(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")}
    try:
        return subprocess.run(
            [sys.executable, "-m", "bridge", "start", "--home", str(home)],
            cwd=ROOT,
            env=clean | env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the node kept running")


@pytest.mark.parametrize(
    ("config", "env", "named"),
    [
        ("\n[app.extensions.eth_deposit]\nchain_id = 1\n", {}, "app.extensions.eth_deposit:"),
        ("", {"BRIDGE_FOO__BAR": "1"}, "BRIDGE_FOO__BAR"),
    ],
)
def test_bridge_start_exits_with_one_line(
    tmp_path: Path, config: str, env: dict[str, str], named: str
) -> None:
    done = bridge_start(home_with(tmp_path, config), env)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], done.stderr


# -- BRIDGE_* variables that match no key -- #


@pytest.mark.parametrize(
    "name",
    [
        "BRIDGE_FOO",
        "BRIDGE_FOO__BAR",
        "BRIDGE_NODE__NOPE",
        "BRIDGE_NODE__",
        "BRIDGE_",
        "BRIDGE_API__PORT__X",
        "BRIDGE_APP__EXTENSION",
        "BRIDGE_APP__EXTENSIONS__",
        "BRIDGE_APP__EXTENSIONS__ETH_DEPOSITS__",
        "bridge_api__prot",  # pydantic-settings reads names case-insensitively
    ],
)
def test_unknown_environment_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    (tmp_path / CONFIG_FILE).write_text("")
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"{name}: " in str(info.value)


def test_known_environment_variables_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CONFIG_FILE).write_text("")
    monkeypatch.setenv("BRIDGE_API__PORT", "0")  # what tests/eth/test_readme_walkthrough.py sets
    monkeypatch.setenv("bridge_node__log_level", "debug")
    monkeypatch.setenv("BRIDGE_BROADCASTER", '{"resend_timeout": 2.5}')  # a whole section as JSON
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__ETH_DEPOSITS__RPC_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__ETH_DEPOSITS__CHAIN_ID", "31337")
    settings = load_config(tmp_path)
    assert settings.api.port == 0
    assert settings.node.log_level == "debug"
    assert settings.broadcaster.resend_timeout == 2.5
    assert settings.app.extensions == {
        "eth_deposits": {"rpc_url": "http://127.0.0.1:8545", "chain_id": "31337"}
    }


def test_numeric_extension_keys_from_the_environment_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = 'rpc_url = "http://127.0.0.1:1"\ncontract_address = "0x' + "00" * 19 + '01"\nchain_id = 5\n'
    (tmp_path / CONFIG_FILE).write_text("[app.extensions.eth_deposits]\n" + table)
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__ETH_DEPOSITS__CHAIN_ID", "7")
    monkeypatch.setenv("BRIDGE_APP__EXTENSIONS__ETH_DEPOSITS__POLL_INTERVAL", "0.5")
    table_seen = load_config(tmp_path).app.extensions["eth_deposits"]
    config = EthDepositsConfig.parse(table_seen, "app.extensions.eth_deposits")
    # Merged key by key with the file's table, and typed by the listener's model.
    assert (config.chain_id, config.poll_interval, config.rpc_url) == (7, 0.5, ("http://127.0.0.1:1",))
