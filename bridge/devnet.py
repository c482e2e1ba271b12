"""``bridge devnet``: N validators on 127.0.0.1, each a bridge node supervising its CometBFT.

The homes are generated here, in Python (no ``cometbft init``): the node's config.toml and
ledger genesis, one ed25519 key per validator used both by CometBFT and by the ledger, and
CometBFT's own config, genesis and keys. The docker compose file is generated from the same
code, so the process devnet and the compose network cannot drift apart.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import CONFIG_FILE, DATA_DIR, GENESIS_FILE, KEY_FILE
from bridge.engines.cometbft import address
from bridge.errors import BridgeError
from bridge.hints import command
from bridge.keys import NodeKey, account_id
from bridge.ledger import Genesis
from bridge.ledger.types import DEFAULT_JOIN_BOND
from listeners import registered_devnet_setups
from listeners.ethereum import ANVIL_KEY, ANVIL_NO_DISK, anvil_path

POWER = 10
# Fast consensus for one machine; create_empty_blocks keeps blocks (and expiry) moving.
CONSENSUS = {
    "timeout_propose": "1s",
    "timeout_propose_delta": "200ms",
    "timeout_prevote": "200ms",
    "timeout_prevote_delta": "100ms",
    "timeout_precommit": "200ms",
    "timeout_precommit_delta": "100ms",
    "timeout_commit": "300ms",
    "create_empty_blocks": True,
    "create_empty_blocks_interval": "0s",
}


@dataclass(frozen=True)
class Ports:
    api: int
    p2p: int
    rpc: int

    @classmethod
    def of(cls, base: int, index: int) -> Ports:
        start = base + 10 * index
        return cls(api=start, p2p=start + 6, rpc=start + 7)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else ("true" if value else "false")


def node_id(p2p_key: NodeKey) -> str:
    return address(p2p_key.public).hex()


def comet_genesis(
    chain_id: str, validators: list[tuple[bytes, int]], time: datetime.datetime
) -> dict[str, Any]:
    return {
        "genesis_time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "chain_id": chain_id,
        "initial_height": "1",
        "consensus_params": {
            "block": {"max_bytes": "22020096", "max_gas": "-1"},
            "evidence": {
                "max_age_num_blocks": "100000",
                "max_age_duration": "172800000000000",
                "max_bytes": "1048576",
            },
            "validator": {"pub_key_types": ["ed25519"]},
            "version": {"app": "0"},
            "abci": {"vote_extensions_enable_height": "0"},
        },
        "validators": [
            {
                "address": address(k).hex().upper(),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": _b64(k)},
                "power": str(p),
                "name": f"validator{i}",
            }
            for i, (k, p) in enumerate(validators)
        ],
        "app_hash": "",
    }


def write_comet_home(
    home: Path,
    key: NodeKey,
    p2p_key: NodeKey,
    genesis: dict[str, Any],
    ports: Ports,
    peers: str,
    moniker: str,
    *,
    rpc_host: str = "127.0.0.1",
    p2p_host: str = "127.0.0.1",
    consensus: dict[str, Any] = CONSENSUS,
) -> None:
    config, data = home / "config", home / "data"
    config.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    private = {"type": "tendermint/PrivKeyEd25519", "value": _b64(key.seed() + key.public)}
    (config / "priv_validator_key.json").write_text(
        json.dumps(
            {
                "address": address(key.public).hex().upper(),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": _b64(key.public)},
                "priv_key": private,
            },
            indent=2,
        )
    )
    p2p_private = {"type": "tendermint/PrivKeyEd25519", "value": _b64(p2p_key.seed() + p2p_key.public)}
    (config / "node_key.json").write_text(json.dumps({"priv_key": p2p_private}, indent=2))
    (data / "priv_validator_state.json").write_text(json.dumps({"height": "0", "round": 0, "step": 0}))
    (config / "genesis.json").write_text(json.dumps(genesis, indent=2))
    sections: dict[str, dict[str, Any]] = {
        "": {"moniker": moniker},
        "rpc": {"laddr": f"tcp://{rpc_host}:{ports.rpc}"},
        "p2p": {
            "laddr": f"tcp://{p2p_host}:{ports.p2p}",
            "persistent_peers": peers,
            "addr_book_strict": False,
            "allow_duplicate_ip": True,
            "pex": False,
        },
        "consensus": consensus,
        "instrumentation": {"prometheus": False},
    }
    lines = ["# Written by `bridge devnet`; CometBFT fills in every other key with its default."]
    for section, values in sections.items():
        if section:
            lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    (config / "config.toml").write_text("\n".join(lines) + "\n")


def write_node_home(
    home: Path,
    key: NodeKey,
    genesis: Genesis,
    ports: Ports,
    extensions: dict[str, dict[str, Any]],
    *,
    api_host: str = "127.0.0.1",
    rpc_host: str = "127.0.0.1",
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / DATA_DIR).mkdir(exist_ok=True)
    key.save(home / KEY_FILE)
    genesis.save(home / GENESIS_FILE)
    lines = [
        "# Written by `bridge devnet`.",
        "[node]",
        'engine = "cometbft"',
        "",
        "[api]",
        f'host = "{api_host}"',
        f"port = {ports.api}",
        "",
        "[cometbft]",
        'home = "cometbft"',
        f'rpc_laddr = "tcp://{rpc_host}:{ports.rpc}"',
    ]
    for name, table in sorted(extensions.items()):
        lines += ["", f"[app.extensions.{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    (home / CONFIG_FILE).write_text("\n".join(lines) + "\n")


_SHARED_TIMING = ("timeout_", "create_empty_blocks")


def network_info(genesis: Genesis, comet_home: Path | None) -> dict[str, Any]:
    """What a node joining this one's network needs (``GET /v1/network``): the ledger genesis
    and, on CometBFT, its genesis, this node's p2p id and port, and its block timing."""
    if comet_home is None:
        return {"genesis": genesis.to_json(), "cometbft": None}
    config = comet_home / "config"
    p2p_key = base64.b64decode(json.loads((config / "node_key.json").read_text())["priv_key"]["value"])
    toml = tomllib.loads((config / "config.toml").read_text())
    # The block timing every node should share (CometBFT reads it from each node's own file).
    timing = {k: v for k, v in sorted(toml.get("consensus", {}).items()) if k.startswith(_SHARED_TIMING)}
    return {
        "genesis": genesis.to_json(),
        "cometbft": {
            "genesis": json.loads((config / "genesis.json").read_text()),
            "node_id": address(p2p_key[32:]).hex(),  # the file holds seed + public key
            "p2p_port": int(toml["p2p"]["laddr"].rsplit(":", 1)[1]),
            "consensus": timing,
        },
    }


def write_joining_home(
    home: Path, info: dict[str, Any], ports: Ports, peers: str, *, host: str = "127.0.0.1"
) -> NodeKey:
    """A home for a node that joins the network ``info`` describes (see :func:`network_info`),
    with new keys, dialing ``peers``; it follows the chain as an observer until a join passes.
    Returns its key (its node id)."""
    if info.get("cometbft") is None:
        raise BridgeError("that node runs the solo engine: only a CometBFT network can be joined")
    key = NodeKey.generate()
    genesis = Genesis.from_json(info["genesis"], "the network's genesis")
    write_node_home(home, key, genesis, ports, {}, api_host=host, rpc_host=host)
    comet = info["cometbft"]["genesis"]
    write_comet_home(
        home / "cometbft",
        key,
        NodeKey.generate(),
        comet,
        ports,
        peers,
        home.name,
        rpc_host=host,
        p2p_host=host,
        consensus=info["cometbft"].get("consensus", CONSENSUS),
    )
    return key


def write_devnet(
    directory: Path,
    validators: int,
    *,
    chain_id: str = "bridge-devnet",
    base_port: int = 26600,
    extensions: dict[str, dict[str, Any]] | None = None,
    observers: int = 0,
    node_extensions: dict[int, dict[str, dict[str, Any]]] | None = None,
    expiration_periods: dict[str, int] | None = None,
    docker: bool = False,
    join_bond: int = DEFAULT_JOIN_BOND,
) -> list[Path]:
    """Write ``validators`` validator homes and ``observers`` non-validator homes (which can
    ask to join later: each observer's account holds one ``join_bond`` at genesis) into
    ``directory``; returns the homes, validators first.
    ``node_extensions`` replaces extension tables of single nodes (by index).

    ``docker`` writes the same homes for a compose network: node ``i`` is the service
    ``node<i>`` (see :func:`service`), its API listens on 0.0.0.0, CometBFT's RPC on the
    service's own name and its p2p on 0.0.0.0, and peers are reached by service name.
    Ports stay per node, as on 127.0.0.1."""
    total = validators + observers
    keys = [NodeKey.generate() for _ in range(total)]
    p2p_keys = [NodeKey.generate() for _ in range(total)]
    ports = [Ports.of(base_port, i) for i in range(total)]
    members = [(k.public, POWER) for k in keys[:validators]]
    time = datetime.datetime.now(datetime.UTC)
    ledger_genesis = Genesis(
        chain_id,
        tuple(sorted(members)),
        time_ns=int(time.timestamp()) * 10**9,
        expiration_periods=tuple(sorted((expiration_periods or {}).items())),
        accounts=tuple(sorted((account_id(k.public), join_bond) for k in keys[validators:] if join_bond)),
        join_bond=join_bond,
    )
    comet = comet_genesis(chain_id, members, time)
    homes = []
    for i in range(total):
        home = directory / f"node{i}"
        peers = ",".join(
            f"{node_id(p2p_keys[j])}@{service(j) if docker else '127.0.0.1'}:{ports[j].p2p}"
            for j in range(total)
            if j != i
        )
        tables = {**(extensions or {}), **(node_extensions or {}).get(i, {})}
        api_host, rpc_host, p2p_host = (
            ("0.0.0.0", service(i), "0.0.0.0") if docker else ("127.0.0.1", "127.0.0.1", "127.0.0.1")
        )
        write_node_home(home, keys[i], ledger_genesis, ports[i], tables, api_host=api_host, rpc_host=rpc_host)
        write_comet_home(
            home / "cometbft",
            keys[i],
            p2p_keys[i],
            comet,
            ports[i],
            peers,
            f"node{i}",
            rpc_host=rpc_host,
            p2p_host=p2p_host,
        )
        homes.append(home)
    return homes


# -- what the process devnet and the compose network share -- #

# ANVIL_NO_DISK (listeners.ethereum): anvil keeps no evicted states on disk.
ANVIL_ARGS = ("--block-time", "1", *ANVIL_NO_DISK)


def anvil_args(host: str) -> list[str]:
    """anvil's arguments (after the binary) in both topologies; the port is added by each."""
    return ["--host", host, *ANVIL_ARGS]


def node_args(home: Path | str) -> list[str]:
    """The ``bridge`` arguments that run node ``home``."""
    return ["start", "--home", str(home)]


async def run_setups(rpc_url: str, private_key: str) -> dict[str, Any]:
    """Run every extension's devnet setup step (``listeners.register_devnet_setup``) against
    the chain at ``rpc_url``: ``{"extensions": {NAME: table}, **info}``, where ``info`` is
    what the steps report (the escrow's ``contracts``...)."""
    out: dict[str, Any] = {"extensions": {}}
    for setup in registered_devnet_setups():
        tables, info = await setup(rpc_url, private_key)
        clash = (set(tables) & set(out["extensions"])) | (set(info) & (set(out) | {"anvil", "nodes"}))
        if clash:
            raise BridgeError(f"devnet setup steps disagree on {sorted(clash)}")
        out["extensions"].update(tables)
        out.update(info)
    return out


# -- processes: `bridge devnet up | status | down` -- #

MANIFEST = "devnet.json"


def _spawn(args: list[str], log: Path, pid_file: Path) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    return process.pid


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


async def _wait_http(url: str, timeout: float) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.json()
            except (aiohttp.ClientError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise BridgeError(f"{url} did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.2)


async def _wait_rpc(url: str, timeout: float) -> None:
    """Until the Ethereum JSON-RPC at ``url`` answers."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with session.post(url, json=request) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise BridgeError(f"anvil did not answer at {url} within {timeout:.0f}s")
            await asyncio.sleep(0.1)


async def up(directory: Path, validators: int, base_port: int, observers: int = 0) -> dict[str, Any]:
    """Start anvil, run the extensions' devnet setup steps against it (the escrow's deploys
    its contracts), write and start ``validators`` validator nodes and ``observers``
    non-validators (which can ask to join with `bridge validators join`), each with the
    extension tables the steps returned."""
    if (directory / MANIFEST).exists():
        raise BridgeError(
            f"{directory} already holds a devnet: `{command(f'devnet down --dir {directory}')}` first"
        )
    if not 1 <= validators <= 9 or not 0 <= observers <= 9 - validators:
        raise BridgeError("--validators must be 1 to 9, and --observers at most 9 minus that")
    directory.mkdir(parents=True, exist_ok=True)
    anvil_port = base_port + 95
    anvil_url = f"http://127.0.0.1:{anvil_port}"
    _spawn(
        [anvil_path(), *anvil_args("127.0.0.1"), "--port", str(anvil_port), "--silent"],
        directory / "anvil.log",
        directory / "anvil.pid",
    )
    await _wait_rpc(anvil_url, 30)
    setup = await run_setups(anvil_url, ANVIL_KEY)
    extensions = setup.pop("extensions")
    homes = write_devnet(
        directory, validators, base_port=base_port, extensions=extensions, observers=observers
    )
    nodes = []
    for i, home in enumerate(homes):
        _spawn(
            [sys.executable, "-m", "bridge", *node_args(home)],
            home / "node.log",
            home / "node.pid",
        )
        ports = Ports.of(base_port, i)
        nodes.append(
            {
                "home": str(home),
                "api": f"http://127.0.0.1:{ports.api}",
                "cometbft_rpc": f"http://127.0.0.1:{ports.rpc}",
            }
        )
    manifest = {"anvil": anvil_url, **setup, "nodes": nodes}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for node in nodes:
        await _wait_http(f"{node['api']}/v1/status", 60)
    return manifest


async def status(directory: Path) -> list[dict[str, Any]]:
    manifest = json.loads((directory / MANIFEST).read_text())
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        for node in manifest["nodes"]:
            try:
                async with session.get(f"{node['api']}/v1/status") as response:
                    data = await response.json()
                out.append(
                    {
                        "api": node["api"],
                        "up": True,
                        **{k: data[k] for k in ("height", "app_hash", "validator", "power", "caught_up")},
                    }
                )
            except (aiohttp.ClientError, TimeoutError):
                out.append({"api": node["api"], "up": False})
    return out


def down(directory: Path) -> int:
    """Stop the nodes (each stops its CometBFT), then anvil; returns how many were running."""
    pid_files = sorted(directory.glob("node*/node.pid")) + [directory / "anvil.pid"]
    stopped = 0
    for pid_file in pid_files:
        pid = _alive(pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):
                if _alive(pid_file) is None:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            stopped += 1
        pid_file.unlink(missing_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    return stopped


# -- the compose network: `bridge devnet init --docker` and docker-compose.yml -- #
#
# `docker compose up` runs, in order: anvil; `deploy`, which runs `bridge devnet deploy`: the
# extensions' devnet setup steps against anvil (the escrow's deploys its contracts), their
# tables and facts written as JSON to the shared volume; `init`, which runs
# `bridge devnet init --docker --setup` inside the network to write every node's home into
# its own volume, with those tables (what `devnet up` does between the setup steps and
# starting the nodes); then the validators, `bridge start` each.

IMAGE = "eth-bridge:local"
ANVIL_IMAGE = "ghcr.io/foundry-rs/foundry:v1.7.1"  # the anvil of package.json
ANVIL_PORT = 8545
DOCKER_DIR = "/devnet"  # node i's home is DOCKER_DIR/node<i>, its own volume
SHARED_DIR = "/shared"  # the deploy's output, read by `init` and the e2e suite
SETUP_FILE = f"{SHARED_DIR}/setup.json"  # `bridge devnet deploy`'s output
COMPOSE_FILE = "docker-compose.yml"
E2E_TESTS = "tests/network/test_running_network.py"


def service(index: int) -> str:
    """The compose service (and host name) of node ``index``."""
    return f"node{index}"


def init_docker(
    directory: Path,
    validators: int,
    *,
    base_port: int = 26600,
    extensions: dict[str, dict[str, Any]] | None = None,
    if_missing: bool = False,
) -> list[Path]:
    """Write the compose network's homes into ``directory`` (see ``write_devnet(docker=True)``),
    each with the ``extensions`` tables (``bridge devnet deploy``'s, made against
    ``http://anvil:8545``). Returns the homes written: none when ``if_missing`` and the homes
    are already there (a restarted compose network keeps them)."""
    if not 1 <= validators <= 9:
        raise BridgeError("--validators must be between 1 and 9")
    if (directory / "node0" / CONFIG_FILE).exists():
        if if_missing:
            return []
        raise BridgeError(f"{directory} already holds node homes; remove them or use another --dir")
    return write_devnet(directory, validators, base_port=base_port, extensions=extensions, docker=True)


def _http_check(url: str) -> list[str]:
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)"
    return ["CMD", "python", "-c", probe]


def compose_spec(validators: int = 4, base_port: int = 26600) -> dict[str, Any]:
    """docker-compose.yml as Python data: the same commands, ports and homes as the devnet."""
    anvil_url = f"http://anvil:{ANVIL_PORT}"
    build = {"context": ".", "target": "runtime"}
    homes = [f"{DOCKER_DIR}/{service(i)}" for i in range(validators)]
    services: dict[str, Any] = {
        "anvil": {
            "image": ANVIL_IMAGE,
            # The Foundry image's entrypoint is `/bin/sh -c`: the command is one string.
            "command": [" ".join(["anvil", *anvil_args("0.0.0.0")])],
            "ports": [f"127.0.0.1:{ANVIL_PORT}:{ANVIL_PORT}"],
            "healthcheck": {
                "test": ["CMD", "cast", "block-number", "--rpc-url", f"http://127.0.0.1:{ANVIL_PORT}"],
                "interval": "2s",
                "timeout": "5s",
                "retries": 30,
            },
            # anvil keeps its chain in memory: a restarted anvil is an empty chain, which the
            # nodes' stored progress no longer matches. Start over with `docker compose down -v`.
            "restart": "no",
        },
        "deploy": {
            "build": build,
            "image": IMAGE,
            "command": [
                "devnet",
                "deploy",
                "--rpc",
                anvil_url,
                "--private-key",
                ANVIL_KEY,
                "--out",
                SETUP_FILE,
            ],
            "volumes": [f"shared:{SHARED_DIR}"],
            "depends_on": {"anvil": {"condition": "service_healthy"}},
            "restart": "no",
        },
        "init": {
            "build": build,
            "image": IMAGE,
            "command": [
                "devnet",
                "init",
                "--docker",
                "--dir",
                DOCKER_DIR,
                "--validators",
                str(validators),
                "--base-port",
                str(base_port),
                "--setup",
                SETUP_FILE,
                "--if-missing",
            ],
            "volumes": [f"shared:{SHARED_DIR}"] + [f"{service(i)}:{homes[i]}" for i in range(validators)],
            "depends_on": {"deploy": {"condition": "service_completed_successfully"}},
            "restart": "no",
        },
    }
    for i in range(validators):
        ports = Ports.of(base_port, i)
        services[service(i)] = {
            "build": build,
            "image": IMAGE,
            "command": node_args(homes[i]),
            "ports": [f"127.0.0.1:{ports.api}:{ports.api}"],
            "volumes": [f"{service(i)}:{homes[i]}"],
            "healthcheck": {
                "test": _http_check(f"http://127.0.0.1:{ports.api}/health"),
                "interval": "5s",
                "timeout": "5s",
                "retries": 12,
                "start_period": "10s",
            },
            "restart": "unless-stopped",
            "depends_on": {
                "anvil": {"condition": "service_healthy"},
                "init": {"condition": "service_completed_successfully"},
            },
        }
    services["e2e"] = {
        "build": {"context": ".", "target": "e2e"},
        "image": "eth-bridge-e2e:local",
        "profiles": ["e2e"],
        "command": ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "e2e", E2E_TESTS],
        "environment": {
            "E2E_NODES": ",".join(
                f"http://{service(i)}:{Ports.of(base_port, i).api}" for i in range(validators)
            ),
            "E2E_ETH_RPC": anvil_url,
            "E2E_SETUP": SETUP_FILE,
        },
        "volumes": [f"shared:{SHARED_DIR}:ro"],
        "depends_on": {service(i): {"condition": "service_healthy"} for i in range(validators)},
    }
    return {
        "services": services,
        "volumes": {name: {} for name in ["shared", *(service(i) for i in range(validators))]},
    }


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a double-quoted YAML scalar
    raise TypeError(f"no YAML for {value!r}")


def _yaml(value: Any, indent: int) -> list[str]:
    """Block YAML for compose data: mappings, sequences (short scalar ones in flow style), scalars."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, list) and item and (flat := _yaml(item, 0))[0].startswith("- ["):
                lines.append(f"{pad}{key}: {flat[0][2:]}")
            elif isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml(item, indent + 2)
            else:
                lines.append(
                    f"{pad}{key}: {'{}' if item == {} else '[]' if item == [] else _yaml_scalar(item)}"
                )
    elif all(not isinstance(item, dict | list) for item in value) and (
        len(flow := f"{pad}- [{', '.join(_yaml_scalar(item) for item in value)}]") <= 110
    ):
        lines.append(flow)
    else:
        for item in value:
            if isinstance(item, dict) and item:
                nested = _yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def compose_file(validators: int = 4, base_port: int = 26600) -> str:
    """docker-compose.yml's text, from :func:`compose_spec`."""
    header = [
        f"# Generated by `bridge devnet init --docker --validators {validators} --compose {COMPOSE_FILE}`;",
        "# do not edit: change bridge/devnet.py and generate it again (tests/test_compose.py checks).",
        "#",
        "#   docker compose up                      # anvil, the setup steps, the homes, then the nodes",
        "#   docker compose --profile e2e run e2e   # the end-to-end suite against the running network",
        "#   docker compose down -v                 # stop and forget everything (anvil keeps no state)",
        "",
    ]
    return "\n".join(header + _yaml(compose_spec(validators, base_port), 0)) + "\n"


def free_base_port(nodes: int, rng: random.Random | None = None) -> int:
    """A base port whose ports for ``nodes`` nodes (and anvil at base + 95) are free now.

    It is drawn below the kernel's ephemeral range: a port up there may be free when checked
    and taken a moment later by some outgoing connection before the node binds it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(10000, low - 100, 100)
        wanted = [p for i in range(nodes) for p in dataclasses.astuple(Ports.of(base, i))] + [base + 95]
        try:
            for port in wanted:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise BridgeError("no free range of ports for a devnet")
