"""The explorer in a real headless Chromium: a solo node on anvil serves it; deposits made
by the test reach "credited" on the page without a reload; a tx hash and an address read
the right amounts; bad input gets a message; a withdrawal is claimed through the page's
button and a wallet (EIP-1193) backed by an anvil account; the console stays clean and no
request leaves the node's origin. A 4-validator devnet's page lists four validators.
Screenshots of each panel go to .artifacts/explorer/."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, devnet, running_node
from bridge.txs import Tx, Withdraw
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import Chain
from tests.eth.withdrawals import escrow_home
from tests.explorer.browser import Browser

pytestmark = pytest.mark.e2e

USER = Account.from_key(b"\x65" * 32)
AMOUNTS = (1500, 2500, 4000)


def wallet(eth: Chain, anvil_url: str) -> Callable[[str, list[Any]], Awaitable[Any]]:
    """An EIP-1193 wallet holding anvil's first account: signs in Python, asks anvil."""

    async def rpc(method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with aiohttp.ClientSession() as http, http.post(anvil_url, json=body) as answer:
            reply = await answer.json()
        if "error" in reply:
            raise RuntimeError(reply["error"].get("message", "refused"))
        return reply["result"]

    async def handle(method: str, params: list[Any]) -> Any:
        me = eth.account.address
        if method == "eth_requestAccounts":
            return [me]
        if method == "eth_sendTransaction":
            tx: dict[str, Any] = {
                "from": me,
                "to": eth.w3.to_checksum_address(params[0]["to"]),
                "data": params[0]["data"],
                "nonce": await eth.w3.eth.get_transaction_count(me, "pending"),
                "chainId": await eth.w3.eth.chain_id,
                "gasPrice": await eth.w3.eth.gas_price,
            }
            tx["gas"] = int(await eth.w3.eth.estimate_gas(tx) * 12 // 10)  # type: ignore[arg-type]
            signed = eth.account.sign_transaction(tx)
            return "0x" + bytes(await eth.w3.eth.send_raw_transaction(signed.raw_transaction)).hex()
        return await rpc(method, params)  # eth_chainId, eth_call, eth_getTransactionReceipt

    return handle


async def test_the_explorer_follows_deposits_and_claims_a_withdrawal(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory
) -> None:
    home, deployed, escrow = await escrow_home(
        eth,
        anvil_url,
        node_home,
        watchers=("eth_deposits", "eth_claims"),
        tables=lambda d: {
            "solvency": {
                "rpc_url": anvil_url,
                "chain_id": d["chain_id"],
                "escrow": d["escrow"],
                "poll_interval": 0.2,
            }
        },
    )
    user = account_id(bytes.fromhex(USER.address[2:]))
    recipient = Account.create().address
    token = eth.contract("TestToken", deployed["token"])
    browser = await Browser.start()
    try:
        async with running_node(home) as node, aiohttp.ClientSession() as http:
            await browser.open(node.api_url + "/", wallet=True)
            await browser.script("window.__loaded = true")  # gone if the page ever reloads

            async def network_shown() -> bool:
                height = await browser.text("#height")
                return height.isdigit() and "Ready" in await browser.text("#problems")

            await browser.until(network_shown, "the network panel")
            assert await browser.count("#validators tr.validator") == 1
            assert deployed["escrow"].lower() in await browser.text("#facts")

            # Each deposit, searched by its hash as soon as it is mined, reaches "credited".
            hashes = []
            for amount in AMOUNTS:
                made = await deposit(eth, deployed["escrow"], amount, USER.address)
                hashes.append(made["tx_hash"])
                await browser.search(made["tx_hash"])

                async def credited(amount: int = amount) -> bool:
                    card = await browser.text(".deposit[data-status=credited]")
                    return f": {amount} to" in card and "credited at ledger height" in card

                await browser.until(credited, f"the deposit of {amount} credited")
            assert await browser.script("return window.__loaded === true")
            await browser.screenshot("#search-panel", "deposit")
            # Searched again, the first one still reads its own amount.
            await browser.search(hashes[0])
            await browser.until(
                lambda: browser.has(".deposit[data-status=credited]", f": {AMOUNTS[0]} to"), "it"
            )

            # An address: its balance and its three deposits.
            await browser.search(USER.address)

            async def account_shown() -> bool:
                return await browser.text(".account .balance") == str(sum(AMOUNTS))

            await browser.until(account_shown, "the account's balance")
            rows = await browser.text(".account table")
            assert rows.count("credit_account (resolution)") == len(AMOUNTS) and all(
                str(a) in rows for a in AMOUNTS
            )
            await browser.screenshot("#search-panel", "account")

            # Bad input: a clear message, no request for what cannot name anything.
            await browser.search("garbage <b>!")
            assert "is not something this page can look up" in await browser.text("#result")
            await browser.search("0x" + "00" * 32)
            await browser.until(
                lambda: browser.has("#result", "no deposit, transaction or account"), "not found"
            )
            await browser.search("999")
            await browser.until(lambda: browser.has("#result", "no withdrawal 999"), "no such withdrawal")

            # A withdrawal, signed by the validator, claimed with the page's button.
            raw = Tx(
                "test-chain",
                "withdraw",
                bytes.fromhex(USER.address[2:]),
                0,
                Withdraw(bytes.fromhex(recipient[2:]), 1000).encode(),
            )
            async with http.post(
                f"{node.api_url}/v1/tx", json={"tx": raw.sign_eth(USER.key, escrow).encode().hex()}
            ) as answer:
                assert answer.status == 200, await answer.text()
            await browser.search("0")
            (validator,) = json.loads((home / "genesis.json").read_text())["validators"]
            power = validator["power"]
            signed = f"signed by {power} of {power} power"
            await browser.until(lambda: browser.has(".withdrawal[data-status=signed]", signed), "it signed")
            await browser.screenshot("#search-panel", "withdrawal")
            before = await token.functions.balanceOf(recipient).call()
            await browser.script("document.querySelector('button.claim').click()")
            answer_wallet = wallet(eth, anvil_url)

            async def claimed() -> bool:
                await browser.answer_wallet(answer_wallet)
                # The card says "claimed in tx" until the ledger marks it paid, and that can
                # come before this poll (a fast block): then it says "paid in tx" instead.
                return await browser.count(".claim-result[data-claimed]") == 1 or await browser.has(
                    ".withdrawal[data-status=paid]", "paid in tx"
                )

            await browser.until(claimed, "the claim sent")
            assert await token.functions.balanceOf(recipient).call() == before + 1000
            await browser.until(lambda: browser.has(".withdrawal[data-status=paid]", "paid in tx"), "it paid")
            assert await node.balance(user) == sum(AMOUNTS) - 1000

            # The network panel: solvency checked; the charts drew the deposits and credits.
            await browser.until(lambda: browser.has("#solvency", "The escrow holds"), "the solvency figure")
            assert await browser.count("#flow-chart rect") >= 2
            await browser.screenshot("#network-panel", "network")
            await browser.screenshot("#charts-panel", "charts")
            await browser.screenshot("body", "page")

            # A phone-sized screen: nothing wider than it.
            await browser.run(browser.driver.set_window_size, 390, 844)
            wide = await browser.script(
                "return [...document.querySelectorAll('body *')]"
                ".filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)"
                ".map((e) => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)"
            )
            assert wide == [], f"wider than a phone's screen: {wide}"
            await browser.screenshot("body", "phone")

            errors = [e for e in await browser.console() if e["level"] in ("SEVERE", "WARNING")]
            assert errors == [], errors
            origin = node.api_url
            assert all(u.startswith((origin + "/", "data:")) for u in await browser.requests())
    finally:
        await browser.close()


async def test_a_devnets_page_lists_its_four_validators(tmp_path: Path) -> None:
    browser = await Browser.start()
    try:
        async with devnet(tmp_path / "devnet", validators=4) as manifest:
            api = manifest["nodes"][2]["api"]
            await browser.open(api + "/")

            async def four() -> bool:
                return await browser.count("#validators tr.validator") == 4

            await browser.until(four, "four validators", timeout=90)
            await browser.until(
                lambda: browser.has("#facts", "validator, caught up"), "this node a validator"
            )
            await browser.screenshot("#network-panel", "devnet-network")
            errors = [e for e in await browser.console() if e["level"] in ("SEVERE", "WARNING")]
            assert errors == [], errors
            assert all(u.startswith((api + "/", "data:")) for u in await browser.requests())
    finally:
        await browser.close()
