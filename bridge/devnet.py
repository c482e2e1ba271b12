"""``bridge devnet``: N validators on 127.0.0.1, each a bridge node supervising its CometBFT.

The homes are generated here, in Python (no ``cometbft init``): the node's config.toml and
ledger genesis, one ed25519 key per validator used both by CometBFT and by the ledger, and
CometBFT's own config, genesis and keys. The docker compose file is generated from the same
code, so the process devnet and the compose network cannot drift apart.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import CONFIG_FILE, DATA_DIR, GENESIS_FILE, KEY_FILE
from bridge.engines.cometbft import address
from bridge.errors import BridgeError
from bridge.keys import NodeKey
from bridge.ledger import Genesis

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
        "rpc": {"laddr": f"tcp://127.0.0.1:{ports.rpc}"},
        "p2p": {
            "laddr": f"tcp://127.0.0.1:{ports.p2p}",
            "persistent_peers": peers,
            "addr_book_strict": False,
            "allow_duplicate_ip": True,
            "pex": False,
        },
        "consensus": CONSENSUS,
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
        'host = "127.0.0.1"',
        f"port = {ports.api}",
        "",
        "[cometbft]",
        'home = "cometbft"',
        f'rpc_laddr = "tcp://127.0.0.1:{ports.rpc}"',
    ]
    for name, table in sorted(extensions.items()):
        lines += ["", f"[app.extensions.{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    (home / CONFIG_FILE).write_text("\n".join(lines) + "\n")


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
) -> list[Path]:
    """Write ``validators`` validator homes and ``observers`` non-validator homes (which can
    ask to join later) into ``directory``; returns the homes, validators first.
    ``node_extensions`` replaces extension tables of single nodes (by index)."""
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
    )
    comet = comet_genesis(chain_id, members, time)
    homes = []
    for i in range(total):
        home = directory / f"node{i}"
        peers = ",".join(f"{node_id(p2p_keys[j])}@127.0.0.1:{ports[j].p2p}" for j in range(total) if j != i)
        tables = {**(extensions or {}), **(node_extensions or {}).get(i, {})}
        write_node_home(home, keys[i], ledger_genesis, ports[i], tables)
        write_comet_home(home / "cometbft", keys[i], p2p_keys[i], comet, ports[i], peers, f"node{i}")
        homes.append(home)
    return homes


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


async def up(directory: Path, validators: int, base_port: int) -> dict[str, Any]:
    from bridge.contracts import Chain, deploy_bridge
    from bridge.demo import ANVIL_KEY, anvil_path

    if (directory / MANIFEST).exists():
        raise BridgeError(f"{directory} already holds a devnet: `bridge devnet down --dir {directory}` first")
    if not 1 <= validators <= 9:
        raise BridgeError("--validators must be between 1 and 9")
    directory.mkdir(parents=True, exist_ok=True)
    anvil_port = base_port + 95
    anvil_url = f"http://127.0.0.1:{anvil_port}"
    _spawn(
        [anvil_path(), "--host", "127.0.0.1", "--port", str(anvil_port), "--block-time", "1", "--silent"],
        directory / "anvil.log",
        directory / "anvil.pid",
    )
    chain = None
    async with asyncio.timeout(30):
        while chain is None:
            try:
                chain = await Chain.connect(anvil_url, ANVIL_KEY)
                await chain.w3.eth.chain_id
            except (aiohttp.ClientError, OSError):
                chain = None
                await asyncio.sleep(0.1)
    try:
        deployed = await deploy_bridge(chain)
    finally:
        await chain.close()
    table = {
        "rpc_url": anvil_url,
        "contract_address": deployed["escrow"],
        "chain_id": deployed["chain_id"],
        "starting_height": deployed["deployment_block"],
        "required_confirmations": 2,
        "poll_interval": 0.5,
    }
    homes = write_devnet(directory, validators, base_port=base_port, extensions={"eth_deposits": table})
    nodes = []
    for i, home in enumerate(homes):
        _spawn(
            [sys.executable, "-m", "bridge", "start", "--home", str(home)],
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
    manifest = {"anvil": anvil_url, "contracts": deployed, "nodes": nodes}
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
