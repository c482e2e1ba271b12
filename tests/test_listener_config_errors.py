"""The Ethereum listener reports misconfiguration as ``listeners.ConfigError`` (always fatal
to the node, see tests/test_supervisor.py), through public names only: a broken table, a
wrong chain id and no code at the contract address, against a stub JSON-RPC endpoint."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.eventstore import EventStore
from listeners import ConfigError, Service, get_listener
from listeners.eth_deposits import EthDepositsConfig
from listeners.ethereum import EthereumConfig

PREFIX = "app.extensions.eth_deposits"
CONTRACT = "0x" + "11" * 20


@pytest.mark.parametrize("model", [EthereumConfig, EthDepositsConfig])
def test_a_broken_table_is_a_config_error_naming_the_key(model: type[EthereumConfig]) -> None:
    table = {"rpc_url": "ftp://x", "contract_address": CONTRACT, "chain_id": 1}
    with pytest.raises(ConfigError, match=rf"^{PREFIX}\.rpc_url: "):
        model.parse(table, PREFIX)


@pytest.fixture
async def rpc() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A JSON-RPC endpoint answering from a dict of method -> result."""
    answers: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": answers[call["method"]]})

    app = web.Application()
    app.router.add_post("/", handle)
    async with TestServer(app) as server:
        yield str(server.make_url("/")), answers


@pytest.mark.parametrize(
    ("chain_id", "code", "key"),
    [("0x2", "0x6001", "chain_id"), ("0x1", "0x", "contract_address")],
)
async def test_wrong_chain_or_no_contract_is_a_config_error(
    tmp_path: Path, rpc: tuple[str, dict[str, Any]], chain_id: str, code: str, key: str
) -> None:
    url, answers = rpc
    answers.update({"eth_chainId": chain_id, "eth_getCode": code})
    table = {"rpc_url": url, "contract_address": CONTRACT, "chain_id": 1}
    service = Service(
        "eth_deposits",
        logging.getLogger("listeners.eth_deposits"),
        {"eth_deposits": table},
        b"\x01" * 32,
        "c",
    )
    store = await EventStore.open(tmp_path / "events.sqlite")
    try:
        with pytest.raises(ConfigError, match=rf"^{PREFIX}\.{key}: "):
            await get_listener("eth_deposits")(service, store.scoped("eth_deposits"))
    finally:
        await store.close()
