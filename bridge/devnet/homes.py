"""Node homes, generated in Python (no ``cometbft init``): each node's config.toml and ledger
genesis, one ed25519 key per validator used both by CometBFT and by the ledger, and
CometBFT's own config, genesis and keys; for a devnet, and for a node joining a network."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import random
import socket
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from bridge.config import CONFIG_FILE, DATA_DIR, GENESIS_FILE, KEY_FILE
from bridge.engines.cometbft import address
from bridge.errors import BridgeError
from bridge.keys import NodeKey, account_id
from bridge.ledger import Genesis
from bridge.ledger.types import DEFAULT_JOIN_BOND
from bridge.withdrawals.eip712 import Domain
from bridge.withdrawals.signer import SIGNER_FILE, create_key

POWER = 10
# A devnet's Ethereum keys are well known, like anvil's accounts: never use them on a real
# chain. The relayer pays its gas with anvil's second account; validator i signs with
# devnet_signer_key(i), so `bridge devnet deploy` and `init` agree without sharing a file.
RELAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
RELAYER_FILE = "relayer.key"


def devnet_signer_key(i: int) -> bytes:
    """Node ``i``'s Ethereum signing key on a devnet (well known: a devnet's only)."""
    return keccak(f"bridge devnet signer {i}".encode())


def devnet_signers(validators: int) -> tuple[tuple[str, int], ...]:
    """A devnet's first Ethereum validator set: (address, power), sorted by address."""
    return tuple(sorted((Account.from_key(devnet_signer_key(i)).address, POWER) for i in range(validators)))


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


def service(index: int) -> str:
    """The compose service (and host name) of node ``index``."""
    return f"node{index}"


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
    state_sync: dict[str, Any] | None = None,
) -> None:
    """CometBFT's home; with ``state_sync`` (``rpc_servers``, ``trust_height``,
    ``trust_hash``) it starts from a snapshot its light client checks against those servers."""
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
            # One machine or one compose host, not the Internet: CometBFT's 5 MB/s per peer
            # would pace the gossip of vote transactions (~620 KB at 2000 events) and blocks.
            "send_rate": 50 << 20,
            "recv_rate": 50 << 20,
        },
        "consensus": consensus,
        "instrumentation": {"prometheus": False},
        # The node's API answers for transactions and their results; CometBFT's own index
        # and stored FinalizeBlock responses would only repeat them (10,000 deposits end to
        # end: ~1 s of ~10 less without them).
        "tx_index": {"indexer": "null"},
        "storage": {"discard_abci_responses": True},
    }
    if state_sync is not None:
        sections["statesync"] = {
            "enable": True,
            "rpc_servers": state_sync["rpc_servers"],
            "trust_height": int(state_sync["trust_height"]),
            "trust_hash": str(state_sync["trust_hash"]),
            "trust_period": "168h0m0s",
            "discovery_time": "5s",
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
    home: Path,
    info: dict[str, Any],
    ports: Ports,
    peers: str,
    *,
    host: str = "127.0.0.1",
    state_sync: dict[str, Any] | None = None,
) -> NodeKey:
    """A home for a node that joins the network ``info`` describes (see :func:`network_info`),
    with new keys, dialing ``peers``; it follows the chain as an observer until a join passes,
    from a snapshot if ``state_sync`` (see :func:`write_comet_home`). Returns its key."""
    if info.get("cometbft") is None:
        raise BridgeError("that node runs the solo engine: only a CometBFT network can be joined")
    key = NodeKey.generate()
    genesis = Genesis.from_json(info["genesis"], "the network's genesis")
    write_node_home(home, key, genesis, ports, {}, api_host=host, rpc_host=host)
    create_key(home / SIGNER_FILE)  # its join request registers it (withdrawal signatures)
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
        state_sync=state_sync,
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
    escrow: Domain | None = None,
    signer_keys: Sequence[bytes] = (),
) -> list[Path]:
    """Write ``validators`` validator homes and ``observers`` non-validator homes (which can
    ask to join later: each observer's account holds one ``join_bond`` at genesis) into
    ``directory``; returns the homes, validators first.
    ``node_extensions`` replaces extension tables of single nodes (by index).

    ``docker`` writes the same homes for a compose network: node ``i`` is the service
    ``node<i>`` (see :func:`service`), its API listens on 0.0.0.0, CometBFT's RPC on the
    service's own name and its p2p on 0.0.0.0, and peers are reached by service name.
    Ports stay per node, as on 127.0.0.1.

    ``escrow`` turns withdrawals on: validator ``i`` signs them with ``signer_keys[i]``
    (written to its home), and the escrow must have been deployed with those signers, sorted
    by address, each with the validators' power (:data:`POWER`). Keys past the validators'
    go to the observers' homes, for when they join."""
    if escrow is not None and len(signer_keys) < validators:
        raise ValueError("with an escrow, each validator needs its Ethereum signing key")
    signers = [bytes.fromhex(Account.from_key(k).address[2:]) for k in signer_keys]
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
        escrow=escrow,
        signers=tuple(
            sorted((k.public, a) for k, a in zip(keys[:validators], signers[:validators], strict=False))
        ),
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
        if i < len(signer_keys):
            (home / SIGNER_FILE).write_text("0x" + signer_keys[i].hex() + "\n")
            (home / SIGNER_FILE).chmod(0o600)
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


def write_from_setup(
    directory: Path,
    validators: int,
    setup: Mapping[str, Any],
    *,
    base_port: int = 26600,
    observers: int = 0,
    docker: bool = False,
) -> list[Path]:
    """A devnet's homes from what its setup steps reported (``run_setups``): every node gets
    their ``extensions`` tables. If they deployed an escrow for :func:`devnet_signers`,
    withdrawals are on: the genesis names it, node ``i`` signs with
    :func:`devnet_signer_key` ``(i)``, every node checks solvency and node 0 relays."""
    extensions = dict(setup["extensions"])
    info = setup.get("escrow")
    if info is None:
        return write_devnet(
            directory,
            validators,
            base_port=base_port,
            extensions=extensions,
            observers=observers,
            docker=docker,
        )
    if setup.get("signers") != [list(s) for s in devnet_signers(validators)]:
        raise BridgeError(f"the setup's escrow was not deployed for {validators} devnet validators")
    try:
        escrow = Domain(int(info["chain_id"]), bytes.fromhex(str(info["address"])[2:]))
        watch = {"rpc_url": str(setup["rpc_url"]), "chain_id": escrow.chain_id, "escrow": info["address"]}
    except (KeyError, TypeError, ValueError):
        raise BridgeError("the setup's escrow is not {chain_id, address} with an rpc_url") from None
    key_file = directory.resolve() / "node0" / RELAYER_FILE
    homes = write_devnet(
        directory,
        validators,
        base_port=base_port,
        extensions={**extensions, "solvency": watch},
        node_extensions={0: {"relayer": {**watch, "private_key_file": str(key_file), "poll_interval": 0.5}}},
        observers=observers,
        docker=docker,
        escrow=escrow,
        signer_keys=[devnet_signer_key(i) for i in range(validators + observers)],
    )
    key_file.write_text(RELAYER_KEY + "\n")
    key_file.chmod(0o600)
    return homes
