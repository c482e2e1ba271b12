"""A byzantine validator watches an attacker's escrow and votes for deposits that never
happened on the real one: with 1 of 4 powers it can never reach 2/3, so nothing is credited,
its resolutions expire, and honest deposits flow as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil
from tests.network.conftest import deposits_table, make_network

pytestmark = pytest.mark.e2e


async def test_votes_for_fake_deposits_never_credit_and_expire(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    fake = await deploy_bridge(chain)  # the attacker's own escrow on the same chain
    net = await make_network(
        tmp_path,
        anvil.url,
        bridge,
        node_extensions={3: {"eth_deposits": deposits_table(anvil.url, fake)}},
        expiration_periods={"credit_account": 15},
    )
    thief, honest = Account.create().address, Account.create().address
    try:
        for i in range(4):
            net.start(i)
        await deposit(chain, fake["escrow"], 10**18, thief)
        await deposit(chain, bridge["escrow"], 5, honest)
        await anvil.mine(2)

        async def fake_pending() -> bool:
            data = await net.get(0, "/v1/resolutions?status=pending&type=credit_account")
            return bool(data) and any(
                r["approved_power"] == 10 and r["required_power"] == 27 for r in data["resolutions"]
            )

        await net.wait(fake_pending, what="the fake deposit pending with 10 of 27 power")

        async def honest_credited() -> bool:
            return all([await net.balance(i, honest) == 5 for i in range(4)])

        await net.wait(honest_credited, what="the honest deposit")

        async def fake_expired() -> bool:
            families = text_string_to_metric_families(await fetch_metrics(net, 0))
            return any(
                sample.labels == {"type": "credit_account", "status": "expired"} and sample.value >= 1
                for family in families
                for sample in family.samples
                if sample.name == "bridge_resolutions_total"
            )

        await net.wait(fake_expired, what="the fake deposit's resolution to expire")
        for i in range(4):
            assert await net.balance(i, thief) == 0
        await net.same_app_hash([0, 1, 2, 3])
    finally:
        await net.close()


async def fetch_metrics(net: Any, i: int) -> str:
    async with net.session.get(net.api(i) + "/metrics") as response:
        return str(await response.text())
