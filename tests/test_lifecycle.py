"""A real node on the solo engine leaves the validator set and joins it again through
governance; its listeners follow: cancelled on demotion, restarted on re-promotion,
cancelled on shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from bridge.cli import main as cli
from bridge.config import KEY_FILE
from bridge.encoding import event_id
from bridge.keys import NodeKey
from bridge.ledger import governance
from bridge.node import Node
from bridge.txs import Tx, encode_join
from listeners import EventStore, Service, register_listener


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_listeners_follow_validator_membership(tmp_path: Path) -> None:
    home = tmp_path / "node"
    assert cli(["init", "--home", str(home), "--api-port", "0", "--chain-id", "life"]) == 0
    other = NodeKey.generate()
    genesis = json.loads((home / "genesis.json").read_text())
    genesis["validators"].append({"pubkey": other.public.hex(), "power": 1})
    # A join request locks the genesis' bond: the node's account holds one to join again.
    genesis["accounts"] = [
        {"id": "0x" + NodeKey.load(home / KEY_FILE).public.hex(), "balance": genesis["join_bond"]}
    ]
    (home / "genesis.json").write_text(json.dumps(genesis))
    (home / "config.toml").write_text(
        (home / "config.toml").read_text().replace("block_interval = 0.2", "block_interval = 0.05")
    )

    events: list[str] = []

    @register_listener("probe")
    async def probe(service: Service, store: EventStore) -> None:
        events.append("start")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancel")
            raise

    node = Node.from_home(home)
    task = asyncio.create_task(node.run())
    await wait_for(lambda: events == ["start"])
    key, ledger = node.key, node.ledger

    async def send(signer: NodeKey, tx_type: str, payload: bytes) -> int:
        nonce = await ledger.nonce(signer.public)
        tx = Tx("life", tx_type, signer.public, nonce, payload).sign_ed25519(signer)
        result = await node.engine.submit(tx.encode())
        assert result.ok, result.log
        return nonce

    await send(key, "leave", b"")
    await wait_for(lambda: events == ["start", "cancel"])
    assert not node.is_validator
    assert node.supervisor.states["probe"] == "stopped"

    join_nonce = await send(key, "join", encode_join(10))
    request_id = event_id(governance.JOIN, governance.join_body(key.public, 10, join_nonce))
    height = ledger.height
    await wait_for(lambda: ledger.height > height + 2)
    # The join is in a block but needs the other validator's approval: still out.
    assert (await ledger.nonce(key.public)) == join_nonce + 1
    assert events == ["start", "cancel"] and not node.is_validator
    pending = await ledger.list_resolutions("pending", governance.JOIN)
    assert [r["id"] for r in pending] == [request_id.hex()]

    await send(other, "approve", request_id)
    await wait_for(lambda: events == ["start", "cancel", "start"])
    assert node.is_validator and ledger.validators[key.public] == 10

    node.stop()
    assert await task == 0
    assert events == ["start", "cancel", "start", "cancel"]
