"""eth_deposits under a misbehaving provider: a real anvil behind a fault-injecting JSON-RPC
proxy (tests/rpcproxy.py, the only fake), a real node (in-process, or a subprocess where the
test kills it), real HTTP and real SQLite. Every deposit must be credited exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from bridge.node import Node
from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT, Deposit
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running
from tests.rpcproxy import LogsQuery, RpcProxy

ETH = "eth_deposits"
DUPLICATE = b"duplicate:"
API_LINE = re.compile(r"API on (http://\S+)")


class Depositor:
    """Signs deposits locally with explicit nonces and sends them raw: fast (no estimate, no
    receipt wait, several per block with automine off) and replayable in a reorg."""

    def __init__(self, anvil: Anvil, chain: Chain, bridge: dict[str, Any]) -> None:
        self.anvil, self.chain = anvil, chain
        self.escrow = chain.contract("BridgeEscrow", bridge["escrow"])
        self.nonce = 0
        self.gas_price = 0

    @classmethod
    async def create(cls, anvil: Anvil, chain: Chain, bridge: dict[str, Any]) -> Depositor:
        self = cls(anvil, chain, bridge)
        token = chain.contract("TestToken", bridge["token"])
        await chain.call(token.functions.mint(chain.account.address, 10**30))
        await chain.call(token.functions.approve(self.escrow.address, 2**256 - 1))
        self.gas_price = await chain.w3.eth.gas_price * 2
        await self.sync_nonce()
        return self

    async def sync_nonce(self) -> None:
        self.nonce = await self.chain.w3.eth.get_transaction_count(self.chain.account.address, "pending")

    def sign(self, amount: int, recipient: str) -> str:
        data = self.escrow.encode_abi("deposit", args=[amount, recipient])
        tx = {
            "to": self.escrow.address,
            "data": data,
            "gas": 200_000,
            "gasPrice": self.gas_price,
            "nonce": self.nonce,
            "chainId": 31337,
        }
        self.nonce += 1
        return "0x" + bytes(self.chain.account.sign_transaction(tx).raw_transaction).hex()

    async def send(self, raw: str) -> str:
        return str(await self.anvil.rpc("eth_sendRawTransaction", raw))

    async def deposit(self, amount: int, recipient: str) -> int:
        """One deposit, mined at once (automine on); its block number."""
        return await self.block_of(await self.send(self.sign(amount, recipient)))

    async def stream(self, rng: random.Random, recipients: list[str], count: int, max_pause: float) -> None:
        """``count`` deposits, mined one per block (automine), at a seeded, uneven pace."""
        last = ""
        for _ in range(count):
            last = await self.send(self.sign(rng.randrange(1, 10**18), rng.choice(recipients)))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.uniform(0, max_pause))
        if last:
            await self.block_of(last)

    async def block_of(self, tx_hash: str) -> int:
        """The block of a sent transaction, once anvil has mined it."""
        receipts: list[Any] = []

        async def mined() -> bool:
            receipts.append(await self.anvil.rpc("eth_getTransactionReceipt", tx_hash))
            return receipts[-1] is not None

        await wait_for(mined, timeout=20, interval=0.01)
        assert receipts[-1]["status"] == "0x1", receipts[-1]
        return int(receipts[-1]["blockNumber"], 16)


async def chain_truth(chain: Chain, bridge: dict[str, Any]) -> tuple[dict[str, int], int]:
    """Balances per recipient and the number of deposits, from anvil's logs (no proxy)."""
    escrow = chain.contract("BridgeEscrow", bridge["escrow"])
    logs = await escrow.events.Deposit().get_logs(from_block=bridge["deployment_block"])
    expected: dict[str, int] = {}
    for log in logs:
        key = log["args"]["recipient"].lower()
        expected[key] = expected.get(key, 0) + log["args"]["amount"]
    assert [log["args"]["nonce"] for log in logs] == list(range(len(logs)))
    return expected, len(logs)


async def credited(node: Node, expected: dict[str, int]) -> bool:
    for account, amount in expected.items():
        if await node.ledger.balance(account) != amount:
            return False
    return True


async def assert_credited_once(node: Node, expected: dict[str, int], deposits: int) -> None:
    await wait_for(lambda: credited(node, expected), timeout=30, interval=0.1)
    confirmed = await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=1000)
    assert len(confirmed) == deposits
    assert not await node.ledger.list_resolutions("failed", CREDIT_ACCOUNT, limit=1000)
    assert not await node.ledger.kv_prefix(CREDIT_ACCOUNT, DUPLICATE)


def covered(queries: list[LogsQuery], start: int, end: int) -> bool:
    """Whether the ranges answered ``ok`` cover every block of [start, end]."""
    next_block = start
    for q in sorted((q for q in queries if q.outcome == "ok"), key=lambda q: q.from_block):
        if q.from_block > next_block:
            return False
        next_block = max(next_block, q.to_block + 1)
    return next_block > end


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json(content_type=None)


async def listener_metric(http: aiohttp.ClientSession, api: str, event: str) -> float:
    async with http.get(api + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bridge_listener_events_total" and sample.labels == {
                "listener": ETH,
                "event": event,
            }:
                return float(sample.value)
    return 0.0


# -- a provider's range limits -- #


async def test_listener_adapts_to_result_and_range_limits(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    rng = random.Random(11)
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.create().address for _ in range(8)]
    await anvil.rpc("evm_setAutomine", False)
    # 300 deposits, 5 per block, over some 2,200 blocks (anvil mines ever slower as its chain
    # grows): 75 scattered over 1,000 blocks, 150 packed into 60 blocks (more than 50 results
    # in any 20 blocks), 75 scattered again.
    for i in range(60):
        for _ in range(5):
            await depositor.send(depositor.sign(rng.randrange(1, 10**18), rng.choice(recipients)))
        await anvil.mine(1)
        await anvil.mine(1 if 15 <= i < 45 else rng.randrange(40, 100))
    await anvil.rpc("evm_setAutomine", True)
    expected, deposits = await chain_truth(chain, bridge)
    assert deposits == 300

    async with RpcProxy(anvil.url, seed=3) as proxy:
        proxy.range_limit.on(max_range=1000)
        proxy.result_limit.on(max_results=50, suggest_rate=0.5)
        table = deposits_table(proxy.url, bridge, block_sync_chunk_size=5000, max_chunk_size=100_000)
        async with running(make_home(tmp_path / "n", table)) as node:
            await assert_credited_once(node, expected, deposits)
            status = node.listener_status[ETH]
            # Both limits bit, and the listener took every refusal for one (none for an outage).
            assert proxy.range_limit.hits > 0 and proxy.result_limit.hits > 0
            assert status.counters["range_refusals"] == proxy.range_refusals > 0
            assert status.counters.get("rpc_errors", 0) == 0
            # The answered ranges leave no block out.
            assert covered(proxy.logs, bridge["deployment_block"], await anvil.head())
            # Connections are kept alive (web3's own session opens one per request).
            assert proxy.http_requests > 40 and len(proxy.clients) <= 3


# -- an unreliable provider -- #


async def test_node_rides_out_errors_timeouts_and_rate_limits(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.create().address for _ in range(4)]
    for i in range(10):
        await depositor.deposit(1000 + i, recipients[i % 4])

    async with RpcProxy(anvil.url, seed=5) as proxy, aiohttp.ClientSession() as http:
        # Faults from the first request on: the start-up checks ride them out too.
        proxy.rate_limited.on(rate=0.1, retry_after=1)
        proxy.server_error.on(rate=0.05, status=503)
        proxy.slow.on(rate=0.05, delay=3.0)  # past request_timeout
        proxy.disconnect.on(rate=0.04)
        proxy.malformed_json.on(rate=0.04)
        proxy.truncated_body.on(rate=0.04)
        # Infura's rate limit shares -32005 with its result limit: it is no range refusal.
        proxy.rpc_error.on(
            rate=0.3,
            methods={"eth_getLogs"},
            code=-32005,
            message="daily request count exceeded, request rate limited",
        )
        table = deposits_table(proxy.url, bridge, request_timeout=0.5)
        async with running(make_home(tmp_path / "n", table)) as node:
            seen_503 = False

            async def troubled() -> bool:
                nonlocal seen_503
                await anvil.mine(1)  # new blocks to scan, hence eth_getLogs calls
                status, body = await get(http, node.api_url + "/ready")
                if status == 503 and f"rpc_unavailable:{ETH}" in body["problems"]:
                    seen_503 = True
                return seen_503 and all(
                    f.hits > 0 for f in (proxy.rate_limited, proxy.server_error, proxy.slow, proxy.rpc_error)
                )

            for i in range(10):  # more deposits while the provider misbehaves
                await depositor.deposit(2000 + i, recipients[i % 4])
            await wait_for(troubled, timeout=25, interval=0.02)
            assert await listener_metric(http, node.api_url, "rpc_errors") > 0
            assert (await get(http, node.api_url + "/health"))[0] == 200

            proxy.off()

            async def ready() -> bool:
                return (await get(http, node.api_url + "/ready"))[0] == 200

            await wait_for(ready, timeout=40, interval=0.05)
            expected, deposits = await chain_truth(chain, bridge)
            assert deposits == 20
            await assert_credited_once(node, expected, deposits)
            assert node.listener_status[ETH].counters.get("range_refusals", 0) == 0
            assert node.fatal is None


# -- SIGKILL mid-backfill -- #


def _env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    out["PYTHONUNBUFFERED"] = "1"
    return out


@contextmanager
def spawn(home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "start", "--home", str(home)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def api_of(proc: subprocess.Popen[bytes], log: Path) -> str:
    found: list[str] = []

    def announced() -> bool:
        assert proc.poll() is None, f"node exited with {proc.returncode}:\n{log.read_text()}"
        found.extend(API_LINE.findall(log.read_text(errors="replace")))
        return bool(found)

    await wait_for(announced, timeout=30)
    return found[0]


async def wait_credited(
    http: aiohttp.ClientSession, api: str, proc: subprocess.Popen[bytes], log: Path, expected: dict[str, int]
) -> None:
    """Wait until the spawned node at ``api`` shows every balance of ``expected``."""

    async def all_credited() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        for account, amount in expected.items():
            _, body = await get(http, f"{api}/v1/accounts/{account}")
            if int(body["balance"]) != amount:
                return False
        return True

    await wait_for(all_credited, timeout=60, interval=0.2)


async def test_sigkill_mid_backfill_resumes_after_the_last_stored_chunk(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.create().address for _ in range(5)]
    await anvil.rpc("evm_setAutomine", False)
    for i in range(40):  # 40 deposits over 2,400 blocks
        await depositor.send(depositor.sign(10**15 + i, recipients[i % 5]))
        await anvil.mine(60)
    await anvil.rpc("evm_setAutomine", True)
    expected, deposits = await chain_truth(chain, bridge)
    assert deposits == 40
    start = bridge["deployment_block"]

    async with RpcProxy(anvil.url, seed=7) as proxy, aiohttp.ClientSession() as http:
        proxy.slow.on(delay=0.05, methods={"eth_getLogs"})  # 50 chunks: a few seconds of backfill
        table = deposits_table(proxy.url, bridge, block_sync_chunk_size=50, max_chunk_size=50)
        home = make_home(tmp_path / "n", table)

        with spawn(home, tmp_path / "run1.log") as proc:
            await api_of(proc, tmp_path / "run1.log")
            await wait_for(
                lambda: sum(q.outcome == "ok" for q in proxy.logs) >= 10, timeout=30, interval=0.01
            )
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        first_run = list(proxy.logs)
        first_clients = {q.client for q in first_run}
        scanned = {q.to_block for q in first_run if q.outcome == "ok"}
        assert max(scanned) < await anvil.head(), "the first run finished its backfill before the kill"

        with spawn(home, tmp_path / "run2.log") as proc:
            api = await api_of(proc, tmp_path / "run2.log")

            await wait_credited(http, api, proc, tmp_path / "run2.log", expected)
            _, body = await get(
                http, f"{api}/v1/resolutions?status=confirmed&type={CREDIT_ACCOUNT}&limit=1000"
            )
            assert len(body["resolutions"]) == deposits
            assert {Deposit.decode(bytes.fromhex(r["body"])).nonce for r in body["resolutions"]} == set(
                range(deposits)
            )
            _, body = await get(http, f"{api}/v1/kv/{CREDIT_ACCOUNT}?limit=1000")
            keys = [e["key"] for e in body["entries"]]
            assert not [k for k in keys if k.startswith(("duplicate:", "0x" + DUPLICATE.hex()))], keys
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0

    restart = [q for q in proxy.logs[len(first_run) :] if q.client not in first_clients]
    assert restart, "the restarted node asked for no logs"
    # No rescan from starting_height: the restart picks up right after a chunk the first run
    # had fully scanned (and stored).
    assert restart[0].from_block > start
    assert restart[0].from_block - 1 in scanned, (restart[0], sorted(scanned))


# -- reorgs -- #


async def test_reorged_deposits_above_the_safety_point(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    gone, moved = Account.create().address, Account.create().address
    table = deposits_table(anvil.url, bridge, required_confirmations=5)
    async with running(make_home(tmp_path / "n", table)) as node:
        status = node.listener_status[ETH]

        async def looked_at_head() -> None:
            head = await anvil.head()
            await wait_for(lambda: status.info.get("safe_block", -1) >= head - 5, timeout=20)

        await anvil.mine(10)
        # (a) A deposit reorged out with 3 confirmations of the 5 required: never credited.
        block_a = await depositor.deposit(1111, gone)
        await anvil.mine(2)
        await looked_at_head()
        assert status.info["last_block"] < block_a
        await anvil.rpc("anvil_reorg", 3, [])  # the deposit's block and the next two, now empty
        await depositor.sync_nonce()

        # (b) A deposit (with the same escrow nonce as the vanished one) mined, then moved two
        # blocks later by a reorg before it is safe: credited once, from its new block.
        raw = depositor.sign(2222, moved)
        tx_hash = await depositor.send(raw)
        block_b = await depositor.block_of(tx_hash)
        await anvil.mine(2)
        await looked_at_head()
        await anvil.rpc("anvil_reorg", 3, [[raw, 2]])
        assert await depositor.block_of(tx_hash) == block_b + 2

        await anvil.mine(10)
        expected, deposits = await chain_truth(chain, bridge)
        assert expected == {moved.lower(): 2222} and deposits == 1
        await assert_credited_once(node, expected, 1)
        (resolution,) = await node.ledger.list_resolutions(None, CREDIT_ACCOUNT, limit=1000)
        deposit = Deposit.decode(bytes.fromhex(str(resolution["body"])))
        assert (deposit.nonce, deposit.block_number, deposit.recipient) == (0, block_b + 2, moved)
        # Scanned well past the vanished deposit, and the ledger moved on: still nothing for it.
        await looked_at_head()
        height = node.ledger.height
        await wait_for(lambda: node.ledger.height >= height + 5, timeout=20)
        assert await node.ledger.balance(gone.lower()) == 0
        assert len(await node.ledger.list_resolutions(None, CREDIT_ACCOUNT, limit=1000)) == 1
        assert status.counters.get("reorgs_beyond_safety", 0) == 0


async def test_reorg_deeper_than_the_safety_point_credits_nothing_twice(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    recipient = Account.create().address
    table = deposits_table(anvil.url, bridge, required_confirmations=0)
    async with running(make_home(tmp_path / "n", table)) as node:
        status = node.listener_status[ETH]
        raw = depositor.sign(5555, recipient)
        tx_hash = await depositor.send(raw)
        block = await depositor.block_of(tx_hash)
        await anvil.mine(1)
        await wait_for(lambda: node.ledger.balance(recipient.lower()), timeout=20)
        await wait_for(lambda: status.info.get("last_block", -1) >= block + 1, timeout=20)
        # Already credited; now the deposit moves one block later.
        await anvil.rpc("anvil_reorg", 2, [[raw, 1]])
        await anvil.mine(1)
        await wait_for(lambda: status.counters.get("reorgs_beyond_safety", 0) > 0, timeout=20)
        await wait_for(lambda: node.ledger.kv_prefix(CREDIT_ACCOUNT, DUPLICATE), timeout=20)
        confirmed = await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=1000)
        blocks = sorted(Deposit.decode(bytes.fromhex(str(r["body"]))).block_number for r in confirmed)
        assert blocks == [block, block + 1]
        assert await node.ledger.balance(recipient.lower()) == 5555
        # Reported on /ready (for minutes: an operator must look), while the node runs on:
        # the listener keeps scanning new blocks and the ledger keeps making blocks.
        async with aiohttp.ClientSession() as http:
            code, body = await get(http, node.api_url + "/ready")
        assert code == 503 and f"reorg_beyond_safety:{ETH}" in body["problems"], body
        scanned, height = status.info["last_block"], node.ledger.height
        await anvil.mine(3)
        await wait_for(lambda: status.info.get("last_block", -1) >= scanned + 3, timeout=20)
        await wait_for(lambda: node.ledger.height > height + 3, timeout=20)
        assert status.counters["reorgs_beyond_safety"] == 1


# -- the proxy itself -- #


async def test_proxy_forwards_batches_and_takes_orders_over_http(anvil: Anvil) -> None:
    async with RpcProxy(anvil.url, seed=1) as proxy, aiohttp.ClientSession() as http:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": [{"fromBlock": "0x0"}]},
        ]
        async with http.post(proxy.url, json=batch) as response:
            answers = await response.json()
        assert [a["id"] for a in answers] == [1, 2] and answers[0]["result"] == hex(31337)
        assert proxy.calls == {"eth_chainId": 1, "eth_getLogs": 1}
        assert (proxy.logs[0].from_block, proxy.logs[0].outcome) == (0, "ok")

        async with http.post(
            f"{proxy.url}/_proxy/faults/range_limit", json={"enabled": True, "max_range": 1}
        ):
            pass
        await anvil.mine(3)
        async with http.post(proxy.url, json=batch[1]) as response:
            assert (await response.json())["error"]["message"] in (
                "block range is too large",
                "exceed maximum block range: 1",
            )
        async with http.post(
            f"{proxy.url}/_proxy/faults/server_error", json={"enabled": True, "status": 503}
        ):
            pass
        async with http.post(proxy.url, json=batch[0]) as response:
            assert response.status == 503
        async with http.post(f"{proxy.url}/_proxy/faults/nope", json={}) as response:
            assert response.status == 400
        async with http.get(f"{proxy.url}/_proxy") as response:
            stats = await response.json()
        assert [q["outcome"] for q in stats["logs"]] == ["ok", "refused"]
        assert stats["faults"]["server_error"]["hits"] == 1 and stats["calls"]["eth_chainId"] == 2
