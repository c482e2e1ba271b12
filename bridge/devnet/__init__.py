"""``bridge devnet``: N validators on one machine, each a bridge node supervising its
CometBFT, with anvil and the extensions' setup steps; as processes on 127.0.0.1 or as a
docker compose network generated from the same code.

- :mod:`bridge.devnet.homes`: node homes (a devnet's, or one that joins a network);
- :mod:`bridge.devnet.processes`: ``up``, ``status``, ``down``;
- :mod:`bridge.devnet.compose`: ``init --docker`` and docker-compose.yml.
"""

from bridge.devnet.compose import COMPOSE_FILE, compose_file, compose_spec, init_docker
from bridge.devnet.homes import (
    CONSENSUS,
    POWER,
    Ports,
    free_base_port,
    network_info,
    node_id,
    service,
    write_comet_home,
    write_devnet,
    write_joining_home,
    write_node_home,
)
from bridge.devnet.processes import MANIFEST, anvil_args, down, node_args, run_setups, status, up

__all__ = [
    "COMPOSE_FILE",
    "CONSENSUS",
    "MANIFEST",
    "POWER",
    "Ports",
    "anvil_args",
    "compose_file",
    "compose_spec",
    "down",
    "free_base_port",
    "init_docker",
    "network_info",
    "node_args",
    "node_id",
    "run_setups",
    "service",
    "status",
    "up",
    "write_comet_home",
    "write_devnet",
    "write_joining_home",
    "write_node_home",
]
