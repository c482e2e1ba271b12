"""The ``bridge`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import CONFIG_FILE, CONFIG_TEMPLATE, DATA_DIR, GENESIS_FILE, KEY_FILE
from bridge.errors import BridgeError
from bridge.keys import NodeKey
from bridge.ledger import Genesis

DEFAULT_NODE = "http://127.0.0.1:8080"


class CliError(BridgeError):
    """Raised for a user mistake the CLI reports in one line."""


def cmd_init(args: argparse.Namespace) -> int:
    home: Path = args.home
    if (home / CONFIG_FILE).exists() or (home / KEY_FILE).exists():
        raise CliError(f"{home} is already initialized; remove it or choose another --home")
    home.mkdir(parents=True, exist_ok=True)
    (home / DATA_DIR).mkdir(exist_ok=True)
    key = NodeKey.generate()
    key.save(home / KEY_FILE)
    Genesis(args.chain_id, ((key.public, 10),)).save(home / GENESIS_FILE)
    (home / CONFIG_FILE).write_text(CONFIG_TEMPLATE.format(port=args.api_port))
    print(json.dumps({"home": str(home), "chain_id": args.chain_id, "node_id": key.public.hex()}))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from bridge.node import Node

    node = Node.from_home(args.home)
    logging.basicConfig(
        level=node.settings.node.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        return await node.run()

    return asyncio.run(run())


async def _get(url: str) -> Any:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:  # not JSON: not a bridge node
                    raise CliError(f"{url} answered HTTP {response.status} without JSON") from None
                if response.status >= 400:
                    error = data.get("error") if isinstance(data, dict) else None
                    raise CliError(error or f"HTTP {response.status}")
                return data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach the node at {url}: {exc}") from None


def cmd_status(args: argparse.Namespace) -> int:
    data = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/status"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"chain      {data['chain_id']}")
    print(f"height     {data['height']}")
    print(f"app hash   {data['app_hash']}")
    print(f"validator  {'yes' if data['validator'] else 'no'} (power {data['power']})")
    print(f"caught up  {'yes' if data['caught_up'] else 'no'}")
    for name, info in data["listeners"].items():
        print(f"listener   {name}: {info['state']}")
    print("events     " + (", ".join(f"{k} {v}" for k, v in data["events"].items()) or "none"))
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    data = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/accounts/{args.address}"))
    print(data["balance"])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge", description="An Ethereum bridge validator node.")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a node's home: config, genesis, key")
    init.add_argument("--home", type=Path, required=True)
    init.add_argument("--chain-id", default="bridge-local")
    init.add_argument("--api-port", type=int, default=8080)
    init.set_defaults(fn=cmd_init)

    start = sub.add_parser("start", help="run the node until SIGINT or SIGTERM")
    start.add_argument("--home", type=Path, required=True)
    start.set_defaults(fn=cmd_start)

    status = sub.add_parser("status", help="show a running node's status")
    status.add_argument("--node", default=DEFAULT_NODE, help=f"API URL (default {DEFAULT_NODE})")
    status.add_argument("--json", action="store_true")
    status.set_defaults(fn=cmd_status)

    balance = sub.add_parser("balance", help="show an account's ledger balance")
    balance.add_argument("address")
    balance.add_argument("--node", default=DEFAULT_NODE)
    balance.set_defaults(fn=cmd_balance)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
