"""The escrow's ``bridge`` subcommands (``listeners.register_command``): ``contracts deploy``,
``deposit``, ``deposit-status`` and ``demo``. A user mistake raises ``ConfigError``, which
``bridge`` prints as one line."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from web3.exceptions import ContractCustomError, Web3Exception

from listeners import ConfigError, register_command
from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain, add_key_arguments, private_key, revert_reason

DEFAULT_NODE = "http://127.0.0.1:8080"
T = TypeVar("T")


def run_ethereum(coro: Coroutine[Any, Any, T]) -> T:
    """Run an Ethereum call, turning connection and contract errors into one-line errors."""
    try:
        return asyncio.run(coro)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ConfigError(f"cannot reach the Ethereum node: {exc}") from None
    except ContractCustomError as exc:
        raise ConfigError(f"the contract refused: {revert_reason(str(exc.data))}") from None
    except ConfigError:
        raise
    except (ValueError, RuntimeError, Web3Exception) as exc:  # how web3 and eth-account report bad input
        raise ConfigError(str(exc)) from None


async def get_json(url: str) -> Any:
    """GET a node's API; a refusal or an unreachable node is a one-line ``ConfigError``."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:  # not JSON: not a bridge node
                    raise ConfigError(f"{url} answered HTTP {response.status} without JSON") from None
                if response.status >= 400:
                    error = data.get("error") if isinstance(data, dict) else None
                    raise ConfigError(error or f"HTTP {response.status}")
                return data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the node at {url}: {exc}") from None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


# -- bridge contracts deploy --


def setup_contracts(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="contracts_command", required=True)
    deploy = sub.add_parser("deploy", help="deploy the escrow (and a test token unless --token)")
    deploy.add_argument("--rpc", required=True, help="Ethereum JSON-RPC URL")
    deploy.add_argument("--token", help="an existing ERC20 for the escrow to hold")
    deploy.add_argument("--out", type=Path, help="also write the addresses (the printed JSON) to this file")
    add_key_arguments(deploy, "the deploying account")


def run_contracts(args: argparse.Namespace) -> int:
    key = private_key(args)

    async def deploy() -> dict[str, Any]:
        chain = await Chain.connect(args.rpc, key)
        try:
            return await deploy_bridge(chain, args.token)
        finally:
            await chain.close()

    deployed = run_ethereum(deploy())
    if args.out is not None:
        _write_atomically(args.out, json.dumps(deployed, indent=2) + "\n")
    print(json.dumps(deployed))
    return 0


# -- bridge deposit --


def setup_deposit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", required=True, help="Ethereum JSON-RPC URL")
    parser.add_argument("--escrow", required=True, help="the BridgeEscrow's address")
    parser.add_argument("--amount", type=int, required=True, help="in the token's smallest unit")
    parser.add_argument("--recipient", help="ledger account to credit (default: the sender)")
    add_key_arguments(parser, "the depositor")


def run_deposit(args: argparse.Namespace) -> int:
    if args.amount <= 0:
        raise ConfigError("--amount must be a positive integer (the token's smallest unit)")
    key = private_key(args)

    async def make() -> dict[str, Any]:
        chain = await Chain.connect(args.rpc, key)
        try:
            return await deposit(chain, args.escrow, args.amount, args.recipient)
        finally:
            await chain.close()

    print(json.dumps(run_ethereum(make())))
    return 0


# -- bridge deposit-status --


def setup_deposit_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tx_hash", help="the deposit's Ethereum transaction hash")
    parser.add_argument("--node", default=DEFAULT_NODE, help=f"a node's API URL (default {DEFAULT_NODE})")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def run_deposit_status(args: argparse.Namespace) -> int:
    data = asyncio.run(get_json(f"{args.node.rstrip('/')}/v1/deposits/{args.tx_hash}"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for d in data["deposits"]:
        line = f"log {d.get('log_index', '?')}: {d['status']}"
        if d["status"] == "pending":
            line += f" ({d['approved_power']} of {d['required_power']} power needed)"
        elif d["status"] == "credited":
            line += f" at ledger height {d['credited_height']}"
        if "amount" in d:
            line += f"; {d['amount']} to {d['recipient']} (escrow nonce {d['nonce']})"
        print(line)
    return 0


# -- bridge demo --


def setup_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deposits", type=int, default=3, help="how many deposits to make (default 3)")
    parser.add_argument("--exit", action="store_true", help="exit once the deposits are credited")
    parser.add_argument("--api-port", type=int, default=8080, help="the node's API port (0: any free one)")
    parser.add_argument("--home", type=Path, help="keep the node's home here (default: a temp dir)")


def run_demo(args: argparse.Namespace) -> int:
    from listeners.eth_deposits.demo import main as demo

    return demo(args.deposits, args.exit, args.api_port, args.home)


register_command("contracts", "the Ethereum contracts", setup_contracts, run_contracts)
register_command("deposit", "approve and deposit tokens into the escrow", setup_deposit, run_deposit)
register_command("deposit-status", "where is my deposit", setup_deposit_status, run_deposit_status)
register_command("demo", "anvil + escrow + a validator + deposits, on this machine", setup_demo, run_demo)
