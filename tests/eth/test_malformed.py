"""A provider's malformed answers are the provider's fault, not the node's: with
``rpc_url = [bad, honest]`` and the default restart policy (a listener that raises stops the
node), every malformed answer is counted, the listener moves to the next endpoint, and every
deposit is credited once. Real anvil, real node, two fault proxies (tests/rpcproxy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from listeners.ethereum import Chain
from listeners.ethereum import client as ethereum
from tests.eth.conftest import Anvil
from tests.eth.nodes import deposits_table, make_home, running
from tests.eth.test_faults import ETH, Depositor, assert_credited_once, chain_truth
from tests.rpcproxy import Malformed, RpcProxy

# What the scan loop calls (eth_chainId and eth_getCode are asked once, at start).
METHODS = ("eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs")
# A malformed answer of each kind on each method the listener calls, then the HTTP-level ones.
CASES = [*Malformed.MODES, "nested_json", "oversized"]


@pytest.mark.parametrize("mode", CASES)
async def test_malformed_answers_fail_over_and_lose_nothing(
    tmp_path: Path,
    anvil: Anvil,
    chain: Chain,
    bridge: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    monkeypatch.setattr(ethereum, "MAX_RESPONSE_BYTES", 1 << 20)  # "oversized": 2 MiB
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.create().address for _ in range(3)]
    for i in range(6):
        await depositor.deposit(1000 + i, recipients[i % 3])
    async with RpcProxy(anvil.url, seed=7) as bad, RpcProxy(anvil.url, seed=8) as honest:
        # Half of the bad endpoint's answers are spoiled; the honest one fails now and then
        # (HTTP 503, honest content), so the listener keeps coming back to the bad one and
        # meets its answers on every method.
        if mode in Malformed.MODES:
            bad.malformed.on(mode=mode, rate=0.5)
            spoiler: Any = bad.malformed
        else:
            spoiler = bad.fault(mode).on(rate=0.5, **({"size": 2 << 20} if mode == "oversized" else {}))
        honest.server_error.on(rate=0.3, status=503)
        table = deposits_table(anvil.url, bridge, rpc_url=[bad.url, honest.url], request_timeout=2.0)
        async with running(make_home(tmp_path / "n", table)) as node:
            assert node.settings.listeners.restart_policy == "never"  # a listener that raises stops it
            status = node.listener_status[ETH]
            for i in range(6):
                await depositor.deposit(2000 + i, recipients[i % 3])
                await anvil.mine(2)
            expected, deposits = await chain_truth(chain, bridge)
            await assert_credited_once(node, expected, deposits)
            for _round in range(100):
                if mode not in Malformed.MODES or all(spoiler.hits_by_method[m] for m in METHODS):
                    break
                await anvil.mine(1)  # new blocks: more calls, until each method was spoiled
                await depositor.deposit(7, recipients[0])
                expected, deposits = await chain_truth(chain, bridge)
                await assert_credited_once(node, expected, deposits)
            else:
                raise AssertionError(f"not every method was spoiled: {spoiler.hits_by_method}")
            assert node.fatal is None and node.supervisor.states[ETH] == "running"
            # An oversized eth_getLogs answer asks for a smaller range; anything else is counted.
            faults = status.counters.get("rpc_malformed", 0) + status.counters.get("range_refusals", 0)
            assert faults >= spoiler.hits > 0
            assert node.supervisor.restarts[ETH] == 0
