"""The harness's devnet (`bridge.testing.devnet`): `bridge devnet up` with every extension's
setup step, as a fork's test starts it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bridge.testing import devnet, wait_until

pytestmark = pytest.mark.e2e


async def test_the_harness_devnet_runs_the_setup_steps_and_validators(tmp_path: Path) -> None:
    async with devnet(tmp_path / "devnet", validators=2) as manifest, aiohttp.ClientSession() as http:
        # The escrow's setup step ran (its addresses are in the manifest) and every node
        # got its table and makes blocks.
        assert set(manifest["contracts"]) >= {"escrow", "token"}

        async def producing() -> bool:
            for node in manifest["nodes"]:
                async with http.get(node["api"] + "/v1/status") as response:
                    status = await response.json()
                if not (status["height"] >= 2 and status["listeners"]["eth_deposits"]["configured"]):
                    return False
            return True

        await wait_until(producing, timeout=90)
    assert not (tmp_path / "devnet" / "devnet.json").exists()  # `bridge devnet down` ran
