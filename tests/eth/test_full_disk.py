"""A solo node (a real subprocess) whose databases live on a small real filesystem that fills
up while deposits stream in from a real anvil: the node stops by itself with one line naming
the full databases, both files stay intact, and with the space back a restart credits every
deposit once. Needs a tmpfs mount (CAP_SYS_ADMIN); skipped where that is refused."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.config import DATA_DIR
from bridge.ledger import Ledger
from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT
from tests.disk import fill, free, integrity, tiny_disk
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home
from tests.eth.test_faults import Depositor, api_of, chain_truth, get, spawn, wait_credited

pytestmark = pytest.mark.e2e

SEED = 5_070_008
DEPOSITS = 40
FILL_AFTER = 15  # deposits sent when the disk fills; the rest arrive while it is full
CREDITED_BEFORE = 10  # of those, credited before the disk fills
RECIPIENTS = 5


async def test_full_disk_stops_the_node_and_a_restart_credits_every_deposit_once(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    rng = random.Random(SEED)
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.from_key(rng.randbytes(32)).address for _ in range(RECIPIENTS)]
    home = make_home(tmp_path / "node", deposits_table(anvil.url, bridge))
    data = home / DATA_DIR
    # Only the two databases are on the small disk; the logs are not.
    with tiny_disk(data) as disk:
        with spawn(home, tmp_path / "run1.log") as proc:
            api = await api_of(proc, tmp_path / "run1.log")
            await depositor.stream(rng, recipients, FILL_AFTER, max_pause=0.05)
            await wait_for(lambda: _credited(api, CREDITED_BEFORE), timeout=30, interval=0.1)
            # Deposits are in every state now (credited, voted, stored) and more are coming.
            stream = asyncio.create_task(
                depositor.stream(rng, recipients, DEPOSITS - FILL_AFTER, max_pause=0.05)
            )
            fill(disk)
            output = await _stopped(proc, tmp_path / "run1.log")
            await stream
        _assert_disk_full_exit(output, data)
        for name in ("ledger.sqlite", "events.sqlite"):
            assert integrity(data / name) == "ok"
        height = await _height(data)

        # Started again while the disk is still full: the same one-line stop, nothing changed.
        with spawn(home, tmp_path / "run2.log") as proc:
            output = await _stopped(proc, tmp_path / "run2.log")
        _assert_disk_full_exit(output, data)
        assert await _height(data) == height

        free(disk)
        expected, count = await chain_truth(chain, bridge)
        assert count == DEPOSITS
        await _credits_everything(home, tmp_path / "run3.log", expected)

        ledger = await Ledger.open(data / "ledger.sqlite")
        try:
            assert ledger.height > height
            assert await ledger.kv_prefix(CREDIT_ACCOUNT, b"duplicate:") == []
            assert len(await ledger.kv_prefix(CREDIT_ACCOUNT, b"credited:")) == DEPOSITS
            assert len(await ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=1000)) == DEPOSITS
            assert await ledger.list_resolutions("failed", CREDIT_ACCOUNT, limit=1000) == []
        finally:
            await ledger.close()


async def _stopped(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The node's output once it has exited by itself (bounded wait: a node still running
    on a full disk fails the test)."""
    try:
        await wait_for(lambda: proc.poll() is not None, timeout=60, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"the node keeps running on a full disk:\n{log.read_text()[-3000:]}") from None
    output = log.read_text(errors="replace")
    assert proc.returncode == 1, output[-3000:]
    return output


async def _credited(api: str, at_least: int) -> bool:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        _, body = await get(http, f"{api}/v1/resolutions?status=confirmed&type={CREDIT_ACCOUNT}&limit=1000")
    return len(body["resolutions"]) >= at_least


def _assert_disk_full_exit(output: str, data: Path) -> None:
    assert f"cannot write to the databases in {data}: database or disk is full" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


async def _height(data: Path) -> int:
    ledger = await Ledger.open(data / "ledger.sqlite")
    try:
        return ledger.height
    finally:
        await ledger.close()


async def _credits_everything(home: Path, log: Path, expected: dict[str, int]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        with spawn(home, log) as proc:
            api = await api_of(proc, log)

            async def no_event_left() -> bool:
                _, status = await get(http, api + "/v1/status")
                return not any(status["events"].values())

            await wait_credited(http, api, proc, log, expected)
            # The event store agrees with the ledger: nothing is left to vote for.
            await wait_for(no_event_left, timeout=30, interval=0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
