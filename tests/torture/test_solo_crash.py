"""Crash torture of a solo node: 300 deposits stream into a real anvil while the node (a real
subprocess on real SQLite files) is killed with SIGKILL at 30 random moments, seeded, and
restarted each time. At the end the ledger holds exactly the chain's truth, read
independently with eth_getLogs: every deposit credited, none twice."""

from __future__ import annotations

import asyncio
import random
import signal
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.config import DATA_DIR
from bridge.ledger import Ledger
from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT, Deposit
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home
from tests.eth.test_faults import Depositor, api_of, chain_truth, get, spawn, wait_credited

pytestmark = [pytest.mark.torture, pytest.mark.e2e]

SEED = 5_300_030
DEPOSITS = 300
KILLS = 30
RECIPIENTS = 12


async def height(http: aiohttp.ClientSession, api: str) -> int:
    status, body = await get(http, api + "/v1/status")
    assert status == 200, body
    return int(body["height"])


async def test_solo_node_survives_30_sigkills_during_300_deposits(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    rng = random.Random(SEED)
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.from_key(rng.randbytes(32)).address for _ in range(RECIPIENTS)]
    home = make_home(tmp_path / "node", deposits_table(anvil.url, bridge))
    per_cycle = DEPOSITS // KILLS
    moments: dict[str, int] = {"starting": 0, "running": 0}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for cycle in range(KILLS):
            log = tmp_path / f"run{cycle:02}.log"
            with spawn(home, log) as proc:
                deposits = asyncio.create_task(depositor.stream(rng, recipients, per_cycle, max_pause=0.05))
                try:
                    if rng.random() < 0.25:
                        # During start-up: imports, opening the databases, replaying, the
                        # listener's first checks.
                        moments["starting"] += 1
                        await asyncio.sleep(rng.uniform(0.0, 1.5))
                    else:
                        # While running: after a random number of blocks, i.e. anywhere in
                        # scanning, storing, voting, committing, marking votes.
                        moments["running"] += 1
                        api = await api_of(proc, log)
                        target = await height(http, api) + rng.randrange(1, 25)
                        await wait_for(partial(_at, http, api, target), timeout=30)
                    assert proc.poll() is None, f"the node exited by itself:\n{log.read_text()[-3000:]}"
                    proc.send_signal(signal.SIGKILL)
                    assert proc.wait(timeout=30) == -signal.SIGKILL
                finally:
                    await deposits

        expected, count = await chain_truth(chain, bridge)
        assert count == DEPOSITS
        assert moments["starting"] > 0 and moments["running"] > 0, moments

        # The last run is not killed: it must credit every deposit, once.
        log = tmp_path / "final.log"
        with spawn(home, log) as proc:
            api = await api_of(proc, log)

            await wait_credited(http, api, proc, log, expected)
            query = f"{api}/v1/resolutions?type={CREDIT_ACCOUNT}&limit=1000"
            _, confirmed = await get(http, query + "&status=confirmed")
            nonces = sorted(Deposit.decode(bytes.fromhex(r["body"])).nonce for r in confirmed["resolutions"])
            assert nonces == list(range(DEPOSITS))
            _, failed = await get(http, query + "&status=failed")
            assert failed["resolutions"] == []

            async def no_event_left() -> bool:
                _, status = await get(http, api + "/v1/status")
                return not any(status["events"].values())

            # The event store agrees with the ledger: nothing is left to vote for.
            await wait_for(no_event_left, timeout=30, interval=0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0

    # Read the ledger's own files once the node is gone: one credit per deposit key, no
    # duplicate, and the balances are the chain's.
    ledger = await Ledger.open(home / DATA_DIR / "ledger.sqlite")
    try:
        assert await ledger.kv_prefix(CREDIT_ACCOUNT, b"duplicate:") == []
        assert len(await ledger.kv_prefix(CREDIT_ACCOUNT, b"credited:")) == DEPOSITS
        for account, amount in expected.items():
            assert await ledger.balance(account) == amount
    finally:
        await ledger.close()


async def _at(http: aiohttp.ClientSession, api: str, target: int) -> bool:
    return await height(http, api) >= target
