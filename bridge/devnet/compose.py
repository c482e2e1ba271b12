"""The compose network: ``bridge devnet init --docker`` and docker-compose.yml, generated
from the same code as the process devnet so the two cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.config import CONFIG_FILE
from bridge.devnet.homes import Ports, service, write_from_setup
from bridge.devnet.processes import anvil_args, node_args
from bridge.errors import BridgeError
from listeners.ethereum import ANVIL_KEY

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


def init_docker(
    directory: Path,
    validators: int,
    *,
    base_port: int = 26600,
    setup: dict[str, Any] | None = None,
    if_missing: bool = False,
) -> list[Path]:
    """Write the compose network's homes into ``directory`` (see ``write_devnet(docker=True)``)
    from ``setup``, ``bridge devnet deploy``'s output made against ``http://anvil:8545`` (see
    ``write_from_setup``). Returns the homes written: none when ``if_missing`` and the homes
    are already there (a restarted compose network keeps them)."""
    if not 1 <= validators <= 9:
        raise BridgeError("--validators must be between 1 and 9")
    if (directory / "node0" / CONFIG_FILE).exists():
        if if_missing:
            return []
        raise BridgeError(f"{directory} already holds node homes; remove them or use another --dir")
    return write_from_setup(
        directory, validators, setup or {"extensions": {}}, base_port=base_port, docker=True
    )


def _http_check(url: str) -> list[str]:
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)"
    return ["CMD", "python", "-c", probe]


def compose_spec(validators: int = 4, base_port: int = 26600) -> dict[str, Any]:
    """docker-compose.yml as Python data: the same commands, ports and homes as the devnet."""
    anvil_url = f"http://anvil:{ANVIL_PORT}"
    # The build's pip reaches PyPI through the host's network: an engine started without its
    # default bridge (`--bridge=none`, as docker/engine.sh starts one) gives a build no other.
    build = {"context": ".", "target": "runtime", "network": "host"}
    homes = [f"{DOCKER_DIR}/{service(i)}" for i in range(validators)]
    services: dict[str, Any] = {
        "anvil": {
            "image": ANVIL_IMAGE,
            # The Foundry image's entrypoint is `/bin/sh -c`: the command is one string; `exec`
            # makes anvil the container's first process, so that a stop signal reaches it.
            "command": [" ".join(["exec", "anvil", *anvil_args("0.0.0.0")])],
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
                "--validators",
                str(validators),
                "--out",
                SETUP_FILE,
                "--if-missing",
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
        "build": {**build, "target": "e2e"},
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
        # No depends_on: `docker-compose run` starts a service's dependencies, one-shot steps
        # included, which would run `deploy` again. The suite runs against the network that
        # `up` started, and waits for every node to be a caught-up validator itself.
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
        "# do not edit: change bridge/devnet/ and generate it again (tests/test_compose.py checks).",
        "# The commands `make compose-e2e` runs (tests/compose/); where no image registry answers,",
        "# docker/base-images.sh makes the base images first:",
        "#",
        "#   docker-compose --profile e2e build          # the node's and the e2e suite's images",
        "#   docker-compose up -d                        # anvil, the setup steps, the homes, the nodes",
        "#   docker-compose --profile e2e run --rm e2e   # the end-to-end suite against the running network",
        "#   docker-compose down -v                      # stop and forget everything (anvil keeps no state)",
        "",
    ]
    return "\n".join(header + _yaml(compose_spec(validators, base_port), 0)) + "\n"
