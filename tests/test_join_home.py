"""`bridge init --join` writes its CometBFT home from what the network's node reports
(``GET /v1/network``): that node's genesis, id and port, and its block timing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bridge.devnet import Ports, network_info, write_comet_home, write_joining_home
from bridge.errors import BridgeError
from tests.node_helpers import genesis, node_key

COMET_GENESIS = {"chain_id": "slow-net", "validators": []}


def _consensus(home: Path) -> dict[str, object]:
    config = tomllib.loads((home / "config" / "config.toml").read_text())
    return dict(config.get("consensus", {}))


@pytest.mark.parametrize(
    "timing",
    [
        {"timeout_commit": "5s", "timeout_propose": "3s", "create_empty_blocks": False},
        {},  # CometBFT's defaults on the network's node: the joiner keeps them too
    ],
)
def test_the_joiner_takes_the_network_nodes_block_timing(tmp_path: Path, timing: dict[str, object]) -> None:
    gen = genesis((node_key(1), 10))
    ports = Ports.of(30000, 0)
    network = tmp_path / "network-node"
    write_comet_home(network, node_key(1), node_key(2), COMET_GENESIS, ports, "", "n0", consensus=timing)
    info = network_info(gen, network)
    assert info["cometbft"]["p2p_port"] == ports.p2p and info["cometbft"]["genesis"] == COMET_GENESIS

    joiner = tmp_path / "joiner"
    write_joining_home(
        joiner, info, Ports.of(30000, 1), f"{info['cometbft']['node_id']}@127.0.0.1:{ports.p2p}"
    )
    assert _consensus(joiner / "cometbft") == timing


def test_a_solo_node_cannot_be_joined(tmp_path: Path) -> None:
    info = network_info(genesis((node_key(1), 10)), None)
    with pytest.raises(BridgeError, match="solo engine"):
        write_joining_home(tmp_path / "joiner", info, Ports.of(30000, 1), "")
