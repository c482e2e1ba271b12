"""A user's commands, with an Ethereum key: ``bridge transfer``, ``bridge withdraw``,
``bridge withdrawal-status`` and ``bridge claim``. They talk to a node's HTTP API (and, to
claim, to an Ethereum RPC endpoint); every mistake is one line and exit code 1."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
from eth_account import Account

from bridge.errors import BridgeError
from bridge.keys import parse_account
from bridge.txs import Transfer, Tx, Withdraw
from bridge.withdrawals import onchain
from bridge.withdrawals.eip712 import Domain
from listeners.ethereum import Chain, add_key_arguments, private_key, revert_reason

DEFAULT_NODE = "http://127.0.0.1:8080"


class CommandError(BridgeError):
    """A user mistake or a refusal, reported in one line."""


async def call_node(method: str, url: str, body: Any = None) -> Any:
    """A node's JSON answer; ``CommandError`` with the node's own error message, or when it
    cannot be reached or answers no JSON."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.request(method, url, json=body) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    raise CommandError(f"{url} answered HTTP {response.status} without JSON") from None
                if response.status >= 400:
                    error = data.get("error") if isinstance(data, dict) else None
                    raise CommandError(error or f"HTTP {response.status}")
                return data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommandError(f"cannot reach the node at {url}: {exc}") from None


def _amount(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("an amount is a whole number of the token's smallest unit") from None
    if not 0 < value < 2**256:
        raise argparse.ArgumentTypeError("an amount is positive and below 2**256")
    return value


def _address(text: str) -> bytes:
    try:
        account = parse_account(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(account) != 42:
        raise argparse.ArgumentTypeError("an Ethereum address is 0x and 40 hex digits")
    return bytes.fromhex(account[2:])


def _recipient(text: str) -> bytes:
    try:
        return bytes.fromhex(parse_account(text)[2:])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _send(node: str, key: str, tx_type: str, payload: bytes) -> tuple[str, str]:
    """Sign ``payload`` as the key's next transaction and submit it; (tx hash, account)."""
    status = await call_node("GET", f"{node}/v1/status")
    escrow = status.get("escrow")
    domain = None if escrow is None else Domain(int(escrow["chain_id"]), bytes.fromhex(escrow["address"][2:]))
    account = Account.from_key(key)
    signer = bytes.fromhex(account.address[2:])
    me = "0x" + signer.hex()
    nonce = (await call_node("GET", f"{node}/v1/accounts/{me}"))["nonce"]
    tx = Tx(status["chain_id"], tx_type, signer, nonce, payload).sign_eth(account.key, domain)
    result = await call_node("POST", f"{node}/v1/tx", {"tx": "0x" + tx.encode().hex()})
    return str(result["hash"]), me


def cmd_transfer(args: argparse.Namespace) -> int:
    node = args.node.rstrip("/")
    tx_hash, _ = asyncio.run(
        _send(node, private_key(args), "transfer", Transfer(args.to, args.amount).encode())
    )
    print(json.dumps({"tx_hash": tx_hash}))
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    node = args.node.rstrip("/")

    async def run() -> dict[str, Any]:
        before = await call_node("GET", f"{node}/v1/status")
        if before.get("escrow") is None:
            raise CommandError("this network has no escrow: withdrawals are off")
        key = private_key(args)
        me = "0x" + Account.from_key(key).address[2:].lower()
        known = set(
            (await call_node("GET", f"{node}/v1/accounts/{me}/withdrawals?limit=1000"))["withdrawals"]
        )
        tx_hash, _ = await _send(node, key, "withdraw", Withdraw(args.recipient, args.amount).encode())
        for _ in range(300):  # until the transaction is in a block: the withdrawal's id
            ids = (await call_node("GET", f"{node}/v1/accounts/{me}/withdrawals?limit=1000"))["withdrawals"]
            if new := [i for i in ids if i not in known]:
                return {"tx_hash": tx_hash, "withdrawal": new[-1]}
            await asyncio.sleep(0.1)
        return {"tx_hash": tx_hash, "withdrawal": None}

    print(json.dumps(asyncio.run(run())))
    return 0


async def _onchain(args: argparse.Namespace, status: dict[str, Any], escrow: str) -> dict[str, Any]:
    """What the escrow says of the withdrawal: whether its root is posted and it is paid."""
    chain = await Chain.connect(args.rpc, Account.create().key.hex())  # a read-only look
    try:
        contract = chain.contract("BridgeEscrow", escrow)
        root = await contract.functions.batchRoots(int(status["batch"])).call()
        paid = await contract.functions.claimed(int(status["id"])).call()
    finally:
        await chain.close()
    return {"root_on_chain": bytes(root) != bytes(32), "claimed_on_chain": bool(paid)}


def cmd_withdrawal_status(args: argparse.Namespace) -> int:
    node = args.node.rstrip("/")

    async def run() -> dict[str, Any]:
        status: dict[str, Any] = await call_node("GET", f"{node}/v1/withdrawals/{args.id}")
        if args.rpc and status["status"] == "signed":
            escrow = (await call_node("GET", f"{node}/v1/status"))["escrow"]["address"]
            status |= await _onchain(args, status, escrow)
        return status

    status = asyncio.run(run())
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"withdrawal {status['id']}: {status['amount']} to {status['recipient']}")
    print(f"debited    from {status['account']}")
    print(f"batch      {status['batch']}" + ("" if "root" in status else " (still open)"))
    if "root" in status:
        print(f"signed     {status['signed_power']} of {status['total_power']} power ({status['status']})")
    if "root_on_chain" in status:
        print(f"on chain   {'root posted' if status['root_on_chain'] else 'root not posted yet'}")
        print(f"claimed    {'yes' if status['claimed_on_chain'] else 'no'}")
    if status["status"] == "paid":  # the ledger recorded the escrow's Claimed log
        print(f"paid       in tx {status['paid']['tx_hash']}")
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    node = args.node.rstrip("/")

    async def run() -> dict[str, Any]:
        status: dict[str, Any] = await call_node("GET", f"{node}/v1/withdrawals/{args.id}")
        if status["status"] == "paid":
            raise CommandError(f"withdrawal {args.id} is already paid, in tx {status['paid']['tx_hash']}")
        if status["status"] != "signed":
            raise CommandError(f"withdrawal {args.id} is {status['status']}: its batch is not signed yet")
        escrow = (await call_node("GET", f"{node}/v1/status"))["escrow"]["address"]
        chain = await Chain.connect(args.rpc, private_key(args))
        out: dict[str, Any] = {}
        try:
            contract = chain.contract("BridgeEscrow", escrow)
            if bytes(await contract.functions.batchRoots(int(status["batch"])).call()) == bytes(32):
                receipt = await onchain.submit_batch(chain, escrow, status)
                out["submit_batch_tx"] = "0x" + bytes(receipt["transactionHash"]).hex()
            receipt = await onchain.claim(chain, escrow, status)
            out["claim_tx"] = "0x" + bytes(receipt["transactionHash"]).hex()
        except Exception as exc:  # web3's refusals: name the contract's error
            data = getattr(exc, "data", None)
            if data is None:
                raise
            raise CommandError(f"the escrow refused: {revert_reason(str(data))}") from None
        finally:
            await chain.close()
        return out

    print(json.dumps(asyncio.run(run())))
    return 0


def add_commands(sub: Any) -> None:
    """Add the user commands to ``bridge``'s subparsers."""
    transfer = sub.add_parser("transfer", help="move ledger balance to another account (EIP-712 signed)")
    transfer.add_argument(
        "--to", type=_recipient, required=True, help="0x + 40 hex digits, or 64 (a node key)"
    )
    transfer.add_argument("--amount", type=_amount, required=True, help="in the token's smallest unit")
    transfer.set_defaults(fn=cmd_transfer)

    withdraw = sub.add_parser("withdraw", help="send ledger balance back to an Ethereum address")
    withdraw.add_argument("--recipient", type=_address, required=True, help="the Ethereum address paid")
    withdraw.add_argument("--amount", type=_amount, required=True, help="in the token's smallest unit")
    withdraw.set_defaults(fn=cmd_withdraw)

    status = sub.add_parser("withdrawal-status", help="where a withdrawal is on its way back")
    status.add_argument("id", type=int, help="the withdrawal's id (printed by `withdraw`)")
    status.add_argument("--rpc", help="an Ethereum RPC URL: also ask the escrow (root posted, paid)")
    status.add_argument("--json", action="store_true", help="print the whole status as JSON")
    status.set_defaults(fn=cmd_withdrawal_status)

    claim = sub.add_parser("claim", help="post a signed batch if needed, then pay a withdrawal")
    claim.add_argument("id", type=int, help="the withdrawal's id")
    claim.add_argument("--rpc", required=True, help="the Ethereum RPC URL of the escrow's chain")
    claim.set_defaults(fn=cmd_claim)

    for command, what in (
        (transfer, "the sending account"),
        (withdraw, "the withdrawing account"),
        (claim, "the account paying gas"),
    ):
        add_key_arguments(command, what)
    for command in (transfer, withdraw, status, claim):
        command.add_argument(
            "--node", default=DEFAULT_NODE, help=f"a node's API URL (default {DEFAULT_NODE})"
        )
