"""A transaction flood against a 4-validator CometBFT network: fresh keys asking to join,
a funded key sending nonces that never become executable, and replays. Nothing of it reaches a
block or a table; an honest transfer and an honest join go through meanwhile."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import DATA_DIR, KEY_FILE
from bridge.errors import TxCode
from bridge.keys import NodeKey
from bridge.ledger.app import MAX_NONCE_AHEAD
from bridge.txs import Transfer, Tx, encode_join
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil
from tests.network.conftest import deposit_many, make_network

pytestmark = pytest.mark.e2e
CHAIN_ID = "bridge-devnet"


async def post(http: aiohttp.ClientSession, api: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    async with http.post(api + "/v1/tx", json={"tx": "0x" + raw.hex()}) as response:
        return response.status, await response.json()


async def failed_in_blocks(http: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """Transactions that failed inside blocks, by code, from the node's /metrics."""
    async with http.get(api + "/metrics") as response:
        text = await response.text()
    return {
        s.labels["code"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bridge_ledger_txs_total" and s.labels["code"] != "OK"
    }


async def test_a_flood_reaches_no_block_while_honest_transactions_do(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    net = await make_network(tmp_path, anvil.url, bridge, validators=4, observers=1)
    user, flooder = Account.create(), Account.create()
    try:
        for i in range(5):
            net.start(i)
        funded = await deposit_many(chain, bridge["escrow"], [user.address, flooder.address], 2)
        await anvil.mine(3)  # past the listeners' 2 confirmations

        async def credited() -> bool:
            return all([await net.balance(0, a) == amount for a, amount in funded.items()])

        await net.wait(credited, what="the deposits")
        api = net.api(0)
        async with aiohttp.ClientSession() as http:
            # 300 fresh keys ask to join: refused at CheckTx, they hold no bond.
            for i in range(300):
                spammer = NodeKey.from_seed(i.to_bytes(32, "big"))
                raw = Tx(CHAIN_ID, "join", spammer.public, 0, encode_join(1)).sign_ed25519(spammer).encode()
                status, body = await post(http, api, raw)
                assert (status, body["code"]) == (400, TxCode.INSUFFICIENT_BALANCE), body
            # A funded key sends nonces 1..200 and never nonce 0: 63 wait, the rest are refused.
            signer = bytes.fromhex(flooder.address[2:])
            codes = []
            for nonce in range(1, 201):
                tx = Tx(CHAIN_ID, "transfer", signer, nonce, Transfer(signer, 1).encode()).sign_eth(
                    flooder.key
                )
                codes.append((await post(http, api, tx.encode()))[1]["code"])
            assert codes.count(0) == MAX_NONCE_AHEAD - 1
            assert set(codes[MAX_NONCE_AHEAD - 1 :]) == {TxCode.BAD_NONCE}

            # Meanwhile an honest transfer and an honest join (the observer holds the bond).
            to = bytes.fromhex(Account.create().address[2:])
            transfer = Tx(CHAIN_ID, "transfer", bytes.fromhex(user.address[2:]), 0, Transfer(to, 5).encode())
            raw_transfer = transfer.sign_eth(user.key).encode()
            assert (await post(http, api, raw_transfer))[0] == 200
            observer = NodeKey.load(net.homes[4] / KEY_FILE)
            raw_join = (
                Tx(CHAIN_ID, "join", observer.public, 0, encode_join(10)).sign_ed25519(observer).encode()
            )
            assert (await post(http, api, raw_join))[0] == 200

            async def through() -> bool:
                data = await net.get(0, "/v1/validators")
                joined = bool(data) and [r["pubkey"] for r in data["requests"]] == [observer.public.hex()]
                return joined and await net.balance(0, "0x" + to.hex()) == 5

            await net.wait(through, what="the honest transfer and join")
            # Replays of committed transactions: a bad nonce, not an internal error.
            for raw in (raw_transfer, raw_join):
                status, body = await post(http, api, raw)
                assert (status, body["code"]) == (400, TxCode.BAD_NONCE), body

            # A few more blocks: no transaction of the flood was ever put in a block.
            height = (await net.status(0) or {})["height"]
            await net.wait(lambda: _above(net, height + 3), what="three more blocks")
            assert await failed_in_blocks(http, api) == {}
        # Bounded tables: nonces of the 4 voting validators, the user and the observer at most.
        net.stop(0)
        db = sqlite3.connect(net.homes[0] / DATA_DIR / "ledger.sqlite")
        try:
            nonces = db.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]
            pending = db.execute("SELECT type FROM resolutions ORDER BY type").fetchall()
        finally:
            db.close()
        assert nonces <= 6 and pending == [("validator_join",)]
    finally:
        await net.close()


async def _above(net: Any, height: int) -> bool:
    status = await net.status(0)
    return bool(status) and status["height"] > height
