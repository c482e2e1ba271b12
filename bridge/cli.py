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
from urllib.parse import urlsplit

import aiohttp
from eth_account import Account

from bridge import hints
from bridge.config import CONFIG_FILE, CONFIG_TEMPLATE, DATA_DIR, GENESIS_FILE, KEY_FILE, load_config
from bridge.encoding import event_id
from bridge.errors import BridgeError, TxCode
from bridge.extensions import load_extensions
from bridge.keys import NodeKey
from bridge.ledger import Genesis, governance
from bridge.ledger.types import DEFAULT_JOIN_BOND
from bridge.txs import Tx, encode_join, sign_claim
from bridge.withdrawals.commands import add_commands as add_user_commands
from bridge.withdrawals.commands import call_node
from bridge.withdrawals.signer import SIGNER_FILE, create_key, load_key
from listeners import ConfigError, registered_commands
from listeners.ethereum import ANVIL_KEY

DEFAULT_NODE = "http://127.0.0.1:8080"


class CliError(BridgeError):
    """Raised for a user mistake the CLI reports in one line."""


def init_home(home: Path, chain_id: str, api_port: int) -> NodeKey:
    """Write a one-validator node's config, genesis and key into ``home``."""
    if (home / CONFIG_FILE).exists() or (home / KEY_FILE).exists():
        raise CliError(f"{home} is already initialized; remove it or choose another --home")
    home.mkdir(parents=True, exist_ok=True)
    (home / DATA_DIR).mkdir(exist_ok=True)
    key = NodeKey.generate()
    key.save(home / KEY_FILE)
    signer = create_key(home / SIGNER_FILE)
    genesis = Genesis(
        chain_id, ((key.public, 10),), join_bond=DEFAULT_JOIN_BOND, signers=((key.public, signer),)
    )
    genesis.save(home / GENESIS_FILE)
    (home / CONFIG_FILE).write_text(CONFIG_TEMPLATE.format(port=api_port))
    return key


def cmd_init(args: argparse.Namespace) -> int:
    if args.join is None:
        key = init_home(args.home, args.chain_id, args.api_port)
        print(json.dumps({"home": str(args.home), "chain_id": args.chain_id, "node_id": key.public.hex()}))
        return 0
    from bridge import devnet

    if (args.home / CONFIG_FILE).exists() or (args.home / KEY_FILE).exists():
        raise CliError(f"{args.home} is already initialized; remove it or choose another --home")
    url = args.join.rstrip("/")
    info = asyncio.run(_get(f"{url}/v1/network" + ("?state_sync=1" if args.state_sync else "")))
    comet = info.get("cometbft") if isinstance(info, dict) else None
    if comet is None:
        raise CliError(f"{url} does not run a CometBFT network (only those can be joined)")
    peers = args.peers or f"{comet['node_id']}@{urlsplit(url).hostname}:{comet['p2p_port']}"
    ports = devnet.Ports(api=args.api_port, p2p=args.p2p_port, rpc=args.rpc_port)
    state_sync = None
    if args.state_sync:
        point = comet.get("state_sync")
        if not point:
            raise CliError(f"{url} offers no state sync point (it has no block yet, or an older version)")
        servers = args.rpc_servers or f"{point['rpc']},{point['rpc']}"
        state_sync = {**point, "rpc_servers": servers}
    elif args.rpc_servers:
        raise CliError("--rpc-servers goes with --state-sync")
    key = devnet.write_joining_home(args.home, info, ports, peers, host=args.host, state_sync=state_sync)
    chain_id = info["genesis"]["chain_id"]
    print(
        json.dumps(
            {"home": str(args.home), "chain_id": chain_id, "node_id": key.public.hex(), "peers": peers}
        )
    )
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
    return await call_node("GET", url)


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
        print(f"listener   {name}: {info['state'] if info.get('configured', True) else 'not configured'}")
    print("events     " + (", ".join(f"{k} {v}" for k, v in data["events"].items()) or "none"))
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    data = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/accounts/{args.address}"))
    print(data["balance"])
    return 0


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


async def _post_tx(node: str, raw: bytes) -> Any:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"{node.rstrip('/')}/v1/tx", json={"tx": "0x" + raw.hex()}) as response:
                data = await response.json(content_type=None)
                if response.status >= 400:
                    raise CliError(f"transaction rejected: {data.get('error', response.status)}")
                return data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach the node at {node}: {exc}") from None


async def _wait_for_result(node: str, tx: Tx, tx_hash: str, timeout: float = 60.0) -> Any:
    """The transaction's result once it is in a block (``GET /v1/txs/{hash}``); code
    ``BAD_NONCE`` if another transaction took its nonce (the mempool then drops it)."""
    url = f"{node.rstrip('/')}/v1/txs/{tx_hash}"
    account = f"{node.rstrip('/')}/v1/accounts/0x{tx.signer.hex()}"
    lost = False
    try:
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
            while True:
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.json()
                if lost:  # the nonce was used, and still no result one poll later
                    return {"code": TxCode.BAD_NONCE, "height": None, "log": "its nonce was taken"}
                async with session.get(account) as response:
                    lost = response.status == 200 and (await response.json())["nonce"] > tx.nonce
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise CliError(f"transaction {tx_hash} was not in a block after {timeout:.0f}s") from None
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the node at {node}: {exc}") from None


def _send_governance(args: argparse.Namespace, tx_type: str, payload: bytes) -> int:
    key = NodeKey.load(args.home / KEY_FILE)
    status = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/status"))
    account = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/accounts/0x{key.public.hex()}"))
    if tx_type == "join":  # with the home's Ethereum signing key and its proof, if it has one
        settings = load_config(args.home).signer
        eth_key = load_key(args.home, settings.key_file, settings.keystore, settings.password_file)
        if eth_key is not None:
            signer = bytes.fromhex(Account.from_key(eth_key).address[2:])
            payload = encode_join(args.power, signer, sign_claim(status["chain_id"], key.public, eth_key))
    # The node's own broadcaster signs with this key too (votes, withdrawal signatures): a
    # transaction that lost its nonce to one of those is signed again with the next.
    for _ in range(10):
        tx = Tx(status["chain_id"], tx_type, key.public, account["nonce"], payload).sign_ed25519(key)
        result = asyncio.run(_post_tx(args.node, tx.encode()))
        landed = asyncio.run(_wait_for_result(args.node, tx, result["hash"]))
        if landed["code"] != TxCode.BAD_NONCE:
            break
        account = asyncio.run(_get(f"{args.node.rstrip('/')}/v1/accounts/0x{key.public.hex()}"))
    if landed["code"] != TxCode.OK:
        raise CliError(f"{tx_type} failed in block {landed['height']}: {landed['log']}")
    out = {"tx_hash": result["hash"], "signer": key.public.hex()}
    if tx_type == "join":
        out["request_id"] = event_id(
            governance.JOIN, governance.join_body(key.public, args.power, tx.nonce)
        ).hex()
    print(json.dumps(out))
    return 0


def cmd_validators(args: argparse.Namespace) -> int:
    if args.validators_command == "list":
        print(json.dumps(asyncio.run(_get(f"{args.node.rstrip('/')}/v1/validators")), indent=2))
        return 0
    if args.validators_command == "join":
        if args.power <= 0:
            raise CliError("--power must be a positive integer")
        return _send_governance(args, "join", encode_join(args.power))
    if args.validators_command == "leave":
        return _send_governance(args, "leave", b"")
    try:
        target = bytes.fromhex(args.id.removeprefix("0x"))
    except ValueError:
        target = b""
    if len(target) != 32:
        raise CliError(f"{args.id!r} must be 32 bytes of hex")
    return _send_governance(args, args.validators_command, target)


def cmd_devnet(args: argparse.Namespace) -> int:
    from bridge import devnet

    if args.devnet_command == "up":
        manifest = asyncio.run(devnet.up(args.dir, args.validators, args.base_port, args.observers))
        print(json.dumps(manifest, indent=2))
    elif args.devnet_command == "init":
        return _devnet_init(args)
    elif args.devnet_command == "deploy":
        if not 1 <= args.validators <= 9:
            raise CliError("--validators must be between 1 and 9")
        if args.if_missing and args.out is not None and args.out.exists():
            # A restarted compose network: its nodes watch the contracts deployed the first time.
            print(args.out.read_text().strip())
            return 0
        setup = asyncio.run(devnet.run_setups(args.rpc, args.private_key, args.validators))
        if args.out is not None:
            _write_atomically(args.out, json.dumps(setup, indent=2) + "\n")
        print(json.dumps(setup))
    elif args.devnet_command == "status":
        if not (args.dir / devnet.MANIFEST).exists():
            raise CliError(f"no devnet in {args.dir}")
        for node in asyncio.run(devnet.status(args.dir)):
            line = (
                "down"
                if not node["up"]
                else (
                    f"height {node['height']}  app hash {node['app_hash'][:16]}  "
                    f"{'validator' if node['validator'] else 'observer'}  "
                    f"{'caught up' if node['caught_up'] else 'catching up'}"
                )
            )
            print(f"{node['api']}  {line}")
    else:
        print(f"stopped {devnet.down(args.dir)} process(es)")
    return 0


def _devnet_init(args: argparse.Namespace) -> int:
    from bridge import devnet

    if not args.docker:
        raise CliError("devnet init writes a compose network: pass --docker (`devnet up` runs one here)")
    setup = None
    if args.setup is not None:
        try:
            setup = json.loads(args.setup.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--setup {args.setup}: {exc}") from None
        if not isinstance(setup, dict) or not isinstance(setup.get("extensions"), dict):
            raise CliError(
                f"--setup {args.setup} is not the output of `{hints.command('devnet deploy --out FILE')}`"
            )
    homes = devnet.init_docker(
        args.dir,
        args.validators,
        base_port=args.base_port,
        setup=setup,
        if_missing=args.if_missing,
    )
    if args.compose is not None:
        _write_atomically(args.compose, devnet.compose_file(args.validators, args.base_port))
    print(
        json.dumps(
            {
                "homes": [str(h) for h in homes],
                "compose": None if args.compose is None else str(args.compose),
                "already_initialized": not homes,
            }
        )
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from bridge.configdocs import config_docs

    text = config_docs()
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write_atomically(args.out, text)
    return 0


def parser() -> argparse.ArgumentParser:
    """``bridge``'s arguments: the node's commands, then every extension's (their packages
    are loaded here)."""
    load_extensions()
    p = argparse.ArgumentParser(prog="bridge", description="An Ethereum bridge validator node.")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a node's home: config, genesis, key")
    init.add_argument(
        "--home", type=Path, required=True, help="the folder to create (config.toml, genesis, key, data)"
    )
    init.add_argument("--chain-id", default="bridge-local", help="the new chain's id (default: bridge-local)")
    init.add_argument("--api-port", type=int, default=8080, help="the HTTP API's port (0: any free one)")
    init.add_argument("--join", metavar="URL", help="a node of the CometBFT network to join (its API)")
    init.add_argument("--peers", help="with --join: id@host:port,... to dial (default: that node)")
    init.add_argument("--p2p-port", type=int, default=26656, help="with --join (default 26656)")
    init.add_argument(
        "--rpc-port", type=int, default=26657, help="with --join: CometBFT's RPC (default 26657)"
    )
    init.add_argument("--host", default="127.0.0.1", help="with --join: the address to listen on")
    init.add_argument(
        "--state-sync",
        action="store_true",
        help="with --join: start from that node's newest snapshot instead of replaying every block",
    )
    init.add_argument(
        "--rpc-servers",
        help="with --state-sync: CometBFT RPC URLs the light client checks the snapshot with,"
        " comma-separated (default: the joined node's, twice)",
    )
    init.set_defaults(fn=cmd_init)

    start = sub.add_parser("start", help="run the node until SIGINT or SIGTERM")
    start.add_argument("--home", type=Path, required=True, help="the node's folder, made by `init`")
    start.set_defaults(fn=cmd_start)

    status = sub.add_parser("status", help="show a running node's status")
    status.add_argument("--node", default=DEFAULT_NODE, help=f"API URL (default {DEFAULT_NODE})")
    status.add_argument("--json", action="store_true", help="print /v1/status as JSON")
    status.set_defaults(fn=cmd_status)

    balance = sub.add_parser("balance", help="show an account's ledger balance")
    balance.add_argument("address", help="0x + 40 hex digits (an Ethereum address) or 64 (a node key)")
    balance.add_argument("--node", default=DEFAULT_NODE, help=f"a node's API URL (default {DEFAULT_NODE})")
    balance.set_defaults(fn=cmd_balance)

    vals = sub.add_parser("validators", help="the validator set and its governance")
    vals_sub = vals.add_subparsers(dest="validators_command", required=True)
    for name, help_text in (
        ("list", "validators and pending join/remove requests"),
        ("join", "ask to become a validator (signed with this node's key)"),
        ("approve", "approve a pending join or remove request by its id"),
        ("remove", "ask to remove a validator by its public key"),
        ("leave", "leave the validator set"),
    ):
        cmd = vals_sub.add_parser(name, help=help_text)
        cmd.add_argument("--node", default=DEFAULT_NODE, help=f"a node's API URL (default {DEFAULT_NODE})")
        if name != "list":
            cmd.add_argument("--home", type=Path, required=True, help="the signing node's home")
        if name == "join":
            cmd.add_argument("--power", type=int, default=10, help="the voting power asked for (default 10)")
        if name in ("approve", "remove"):
            cmd.add_argument("id", help="request id (approve) or validator public key (remove), hex")
        cmd.set_defaults(fn=cmd_validators)

    net = sub.add_parser(
        "devnet", help="a local CometBFT network of validators, anvil and the extensions' setup"
    )
    net_sub = net.add_subparsers(dest="devnet_command", required=True)
    for name, help_text in (
        ("up", "write the homes and start everything"),
        ("status", "each node's state"),
        ("down", "stop everything (logs and homes stay)"),
        ("init", "write a docker compose network's homes (and with --compose, docker-compose.yml)"),
        ("deploy", "run the extensions' devnet setup steps against a chain (the compose network's deploy)"),
    ):
        cmd = net_sub.add_parser(name, help=help_text)
        if name == "deploy":
            cmd.add_argument(
                "--rpc", required=True, help="the chain's JSON-RPC URL, as the nodes will reach it"
            )
            cmd.add_argument("--private-key", default=ANVIL_KEY, help="a funded key (default: anvil's first)")
            cmd.add_argument("--validators", type=int, default=4, help="the network's validators (default 4)")
            cmd.add_argument("--out", type=Path, help="also write the printed JSON to this file")
            cmd.add_argument(
                "--if-missing", action="store_true", help="with --out: deploy nothing if that file exists"
            )
            cmd.set_defaults(fn=cmd_devnet)
            continue
        cmd.add_argument(
            "--dir",
            type=Path,
            default=Path("devnet-docker" if name == "init" else "devnet"),
            help="the devnet's folder: node homes, logs, manifest",
        )
        if name in ("up", "init"):
            cmd.add_argument("--validators", type=int, default=4, help="how many validators (default 4)")
            cmd.add_argument("--base-port", type=int, default=26600, help="node i uses base + 10*i ...")
        if name == "up":
            cmd.add_argument("--observers", type=int, default=0, help="extra non-validator nodes")
        if name == "init":
            cmd.add_argument("--docker", action="store_true", help="addresses for a compose network")
            cmd.add_argument(
                "--setup", type=Path, help="`bridge devnet deploy --out` file: every node's extension tables"
            )
            cmd.add_argument("--if-missing", action="store_true", help="do nothing if the homes exist")
            cmd.add_argument("--compose", type=Path, help="also write the compose file here")
        cmd.set_defaults(fn=cmd_devnet)

    add_user_commands(sub)  # transfer, withdraw, withdrawal-status, claim

    conf = sub.add_parser("config", help="the configuration reference")
    conf_sub = conf.add_subparsers(dest="config_command", required=True)
    docs = conf_sub.add_parser("docs", help="print docs/configuration.md, generated from the config models")
    docs.add_argument("--out", type=Path, help="write it to this file instead of stdout")
    docs.set_defaults(fn=cmd_config)

    # Commands the extensions contribute (listeners.register_command): the node's own win.
    for name, command in registered_commands().items():
        if name in sub.choices:
            continue
        extra = sub.add_parser(name, help=command.help)
        command.setup(extra)
        extra.set_defaults(fn=command.run)
    return p


def main(argv: list[str] | None = None) -> int:
    # py_ecc (imported by eth-account) raises the recursion limit to 100,000: deep enough for
    # a hostile, deeply nested JSON answer to overflow the C stack instead of raising.
    sys.setrecursionlimit(min(sys.getrecursionlimit(), 10_000))
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (BridgeError, ConfigError) as exc:  # ConfigError: an extension command's user mistake
        print(f"error: {exc}", file=sys.stderr)
        return 1
