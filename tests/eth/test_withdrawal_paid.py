"""The claims listener on a real anvil chain and a real solo node: the round trip of
test_withdrawal_roundtrip.py (deposit, withdraw, signed, claimed) with the node also running
``eth_claims`` on the escrow, so that after the claim the ledger says the withdrawal is paid,
in the claim's transaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, running_node
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import ANVIL_KEY, Chain
from resolutions.withdrawal_paid import WITHDRAWAL_PAID, PaidWithdrawal, paid_key
from tests.eth.withdrawals import bridge, escrow_home

USER = Account.from_key(b"\x63" * 32)


async def test_a_claim_marks_the_withdrawal_paid(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "user.key"
    key_file.write_text("0x" + bytes(USER.key).hex())
    # Both listeners read the same escrow: deposits in, claims out.
    home, bridge_, _ = await escrow_home(eth, anvil_url, node_home, watchers=("eth_deposits", "eth_claims"))
    recipient = Account.create().address
    user = account_id(bytes.fromhex(USER.address[2:]))

    async with running_node(home) as node, aiohttp.ClientSession() as http:

        async def withdrawal() -> dict[str, Any]:
            async with http.get(f"{node.api_url}/v1/withdrawals/0") as answer:
                assert answer.status == 200, await answer.text()
                found: dict[str, Any] = await answer.json()
            return found

        await deposit(eth, bridge_["escrow"], 1000, USER.address)
        await node.wait_until(lambda: node.balance(user), timeout=30)
        key = ["--private-key-file", str(key_file), "--node", node.api_url]
        code, out, err = await bridge(capsys, "withdraw", "--recipient", recipient, "--amount", "400", *key)
        assert code == 0 and json.loads(out)["withdrawal"] == 0, err

        async def signed() -> bool:
            return bool((await withdrawal())["status"] == "signed")

        await node.wait_until(signed, timeout=30)
        assert "paid" not in await withdrawal()

        gas = ["--private-key", ANVIL_KEY, "--node", node.api_url, "--rpc", anvil_url]
        code, out, err = await bridge(capsys, "claim", "0", *gas)
        assert code == 0, err
        claim_tx = json.loads(out)["claim_tx"]

        async def paid() -> bool:
            return bool((await withdrawal())["status"] == "paid")

        await node.wait_until(paid, timeout=30)
        status = await withdrawal()
        assert status["paid"]["tx_hash"] == claim_tx
        assert status["paid"]["amount"] == "400"
        assert status["amount"] == "400" and status["recipient"] == recipient.lower()
        receipt = await eth.w3.eth.get_transaction_receipt(claim_tx)
        (claimed,) = [log for log in receipt["logs"] if log["address"] == bridge_["escrow"]]
        assert status["paid"]["log_index"] == claimed["logIndex"]

        # The ledger's record is the listener's body, under the withdrawal's id.
        recorded = await node.kv(WITHDRAWAL_PAID)
        assert set(recorded) == {paid_key(0)}
        assert PaidWithdrawal.decode(recorded[paid_key(0)]) == PaidWithdrawal(
            0, 0, bytes.fromhex(recipient[2:]), 400, bytes.fromhex(claim_tx[2:]), claimed["logIndex"]
        )
        assert node.listener("eth_claims")["problems"] == []

        # `bridge withdrawal-status` shows the step.
        code, out, err = await bridge(capsys, "withdrawal-status", "0", "--node", node.api_url)
        assert code == 0 and f"paid       in tx {claim_tx}" in out.splitlines(), (out, err)
