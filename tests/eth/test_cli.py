"""The Ethereum side of the CLI, as a user runs it: deploy, deposit, where is my deposit,
and the demo."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from tests.eth.conftest import DEPLOYER_KEY, Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running


def bridge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=timeout
    )


async def run_bridge(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(bridge, *args)


async def test_deploy_deposit_and_follow_it_to_credited(tmp_path: Path, anvil: Anvil) -> None:
    deployed = json.loads(
        (await run_bridge("contracts", "deploy", "--rpc", anvil.url, "--private-key", DEPLOYER_KEY)).stdout
    )
    assert set(deployed) == {"chain_id", "token", "escrow", "deployment_block"}
    # The deployer mints itself test tokens with cast-free web3: reuse the CLI's own helper.
    from listeners.ethereum import Chain

    chain = await Chain.connect(anvil.url, DEPLOYER_KEY)
    try:
        token = chain.contract("TestToken", deployed["token"])
        await chain.call(token.functions.mint(chain.account.address, 10**20))
    finally:
        await chain.close()

    home = make_home(tmp_path / "n", deposits_table(anvil.url, deployed, required_confirmations=3))
    recipient = Account.create().address
    async with running(home) as node:
        done = await run_bridge(
            "deposit",
            "--rpc",
            anvil.url,
            "--escrow",
            deployed["escrow"],
            "--amount",
            "777",
            "--recipient",
            recipient,
            "--private-key",
            DEPLOYER_KEY,
        )
        assert done.returncode == 0, done.stderr
        made = json.loads(done.stdout)
        assert made["nonce"] == 0 and made["amount"] == 777

        async with aiohttp.ClientSession() as http:
            url = f"{node.api_url}/v1/deposits/{made['tx_hash']}"
            async with http.get(url) as response:
                assert response.status == 404  # not yet past the safety point: unknown here
                assert "error" in await response.json()
            await anvil.mine(3)

            async def status() -> Any:
                async with http.get(url) as response:
                    return (await response.json())["deposits"] if response.status == 200 else None

            await wait_for(lambda: _credited(status))
            [entry] = await status()
            assert entry["amount"] == "777" and entry["recipient"] == recipient and entry["nonce"] == 0
            assert entry["credited_height"] > 0
            async with http.get(f"{node.api_url}/v1/deposits/0x1234") as response:
                assert response.status == 400

        shown = await run_bridge("deposit-status", made["tx_hash"], "--node", node.api_url)
        assert shown.returncode == 0, shown.stderr
        assert "credited at ledger height" in shown.stdout and "777" in shown.stdout


async def _credited(status: Any) -> bool:
    entries = await status()
    return bool(entries) and entries[0]["status"] == "credited"


def test_cli_errors_are_one_line(anvil: Anvil) -> None:
    for args in (
        (
            "deposit",
            "--rpc",
            anvil.url,
            "--escrow",
            "0x" + "11" * 20,
            "--amount",
            "0",
            "--private-key",
            DEPLOYER_KEY,
        ),
        ("contracts", "deploy", "--rpc", "http://127.0.0.1:1", "--private-key", DEPLOYER_KEY),
        ("contracts", "deploy", "--rpc", anvil.url, "--private-key", "0x12"),
    ):
        done = bridge(*args)
        assert done.returncode != 0, args
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, (args, done.stderr)


@pytest.mark.e2e
def test_demo_runs_from_the_commands_a_new_user_types() -> None:
    done = bridge("demo", "--deposits", "3", "--exit", "--api-port", "0", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 3 deposits credited" in done.stdout
    assert "signed by the validator, claimed in 0x" in done.stdout  # the way back, paid on anvil


def test_the_key_comes_from_a_file_the_environment_or_a_keystore(tmp_path: Path, anvil: Anvil) -> None:
    key_file, keystore, password = tmp_path / "key", tmp_path / "keystore.json", tmp_path / "password"
    key_file.write_text(DEPLOYER_KEY.removeprefix("0x") + "\n")
    keystore.write_text(json.dumps(Account.encrypt(bytes.fromhex(DEPLOYER_KEY[2:]), "s3cret", iterations=2)))
    password.write_text("s3cret\n")
    deploy = ("contracts", "deploy", "--rpc", anvil.url)
    env = {"PATH": "/usr/bin:/bin", "ETH_PRIVATE_KEY": DEPLOYER_KEY}
    runs = [
        bridge(*deploy, "--private-key-file", str(key_file)),
        bridge(*deploy, "--keystore", str(keystore), "--password-file", str(password)),
        subprocess.run([sys.executable, "-m", "bridge", *deploy], capture_output=True, text=True, env=env),
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert set(json.loads(done.stdout)) == {"chain_id", "token", "escrow", "deployment_block"}
    password.write_text("wrong\n")
    refused = {
        "two sources": bridge(*deploy, "--private-key", DEPLOYER_KEY, "--private-key-file", str(key_file)),
        "no key": subprocess.run(
            [sys.executable, "-m", "bridge", *deploy], capture_output=True, text=True, env={"PATH": "/bin"}
        ),
        "wrong password": bridge(*deploy, "--keystore", str(keystore), "--password-file", str(password)),
        "missing file": bridge(*deploy, "--private-key-file", str(tmp_path / "nope")),
    }
    for what, done in refused.items():
        assert done.returncode == 1, (what, done.stderr)
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, (what, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (what, done.stderr)
