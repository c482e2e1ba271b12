"""docker-compose.yml, for real: the images built, the network up and healthy, the e2e
profile's suite passing inside it; then faults from the host, through the published ports: a
validator killed (deposits still credit on the other three; restarted, it catches up), the
validators restarted and one recreated (their state lives in their volumes), and `down -v`
leaving nothing of the project. The commands are the README's "With docker compose", read
from it and run as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account

from bridge.devnet import Ports, compose_spec, service
from bridge.devnet.compose import ANVIL_PORT, IMAGE, SETUP_FILE
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import eip712, onchain
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import ANVIL_KEY, Chain
from tests.test_readme import section_blocks

pytestmark = [pytest.mark.compose, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
# Its own compose project, so that nothing else's containers are touched; the commands stay the
# README's (docker-compose reads the name from the environment).
PROJECT = "ethbridge-e2e"
ENV = {**os.environ, "COMPOSE_PROJECT_NAME": PROJECT}
NODES = [name for name in compose_spec()["services"] if name.startswith("node")]
API = {service(i): f"http://127.0.0.1:{Ports.of(26600, i).api}" for i in range(len(NODES))}
ETH_RPC = f"http://127.0.0.1:{ANVIL_PORT}"
LOGS = ROOT / ".docker" / "compose-e2e.log"  # every service's log, written at the end
SECTION = "With docker compose"
T = TypeVar("T")


def readme_compose() -> dict[str, list[str]]:
    """The README section's docker-compose commands by what they do; the section must be the
    make target, the base images' script and these four, in this order."""
    commands = [c for b in section_blocks(SECTION) if b.lang == "sh" for c in b.commands()]
    assert commands[:2] == ["make compose-e2e", "docker/base-images.sh"], commands
    build, up, suite, down = (shlex.split(c) for c in commands[2:])
    assert len(commands) == 6 and all(c[0] == "docker-compose" for c in (build, up, suite, down)), commands
    assert (
        build[-1] == "build" and up[1:] == ["up", "-d"] and suite[-1] == "e2e" and down[1:] == ["down", "-v"]
    )
    return {"build": build[1:], "up": up[1:], "suite": suite[1:], "down": down[1:]}


README_COMPOSE = readme_compose()


def run(*argv: str, timeout: float = 900) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def compose(*args: str, timeout: float = 900) -> str:
    return run("docker-compose", *args, timeout=timeout)


def container(name: str) -> str:
    return compose("ps", "-q", name).strip()


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def wait_for(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while (found := check()) is None or found is False:
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.5)
    return found


def healthy(names: list[str]) -> bool:
    states = [run("docker", "inspect", "-f", "{{.State.Health.Status}}", container(n)).strip() for n in names]
    return all(state == "healthy" for state in states)


def agreed(names: list[str]) -> tuple[int, str] | None:
    """(height, app hash) when the nodes report the same pair, else None."""
    found = {(s["height"], s["app_hash"]) if s else None for s in (get(f"{API[n]}/v1/status") for n in names)}
    return found.pop() if len(found) == 1 and None not in found else None


def balances(names: list[str], account: str) -> list[str | None]:
    return [(a or {}).get("balance") for a in (get(f"{API[n]}/v1/accounts/{account}") for n in names)]


def credited(names: list[str], account: str, amount: int) -> bool:
    return balances(names, account) == [str(amount)] * len(names)


def deposit_from_host(escrow: str, amount: int) -> str:
    """A deposit on the compose anvil, for a fresh account; returns the account."""
    recipient = "0x" + secrets.token_hex(20)

    async def go() -> None:
        chain = await Chain.connect(ETH_RPC, ANVIL_KEY)
        try:
            assert (await deposit(chain, escrow, amount, recipient))["amount"] == amount
        finally:
            await chain.close()

    asyncio.run(go())
    return recipient


def save_logs() -> None:
    """Every service's log into LOGS, while the project's containers are there."""
    if subprocess.run(["docker-compose", "ps", "-q"], cwd=ROOT, env=ENV, capture_output=True).stdout:
        logs = subprocess.run(
            ["docker-compose", "logs", "--no-color"], cwd=ROOT, env=ENV, capture_output=True
        )
        LOGS.parent.mkdir(exist_ok=True)
        LOGS.write_bytes(logs.stdout)


@pytest.fixture(scope="module")
def escrow() -> Iterator[str]:
    """The network built and up, every service healthy; yields the escrow's address."""
    if subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run `make compose-e2e`, which provides one")
    compose(*README_COMPOSE["down"])  # what an interrupted run may have left: start afresh
    try:
        compose(*README_COMPOSE["build"])
        compose(*README_COMPOSE["up"])
        wait_for(lambda: healthy(["anvil", *NODES]), 180, "anvil and the validators healthy")
        for step in ("deploy", "init"):
            assert run("docker", "inspect", "-f", "{{.State.ExitCode}}", container(step)).strip() == "0"
        setup = json.loads(
            compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "cat", "deploy", SETUP_FILE)
        )
        yield setup["contracts"]["escrow"]
    finally:
        save_logs()  # when a test failed before `down`
        subprocess.run(["docker-compose", "down", "-v"], cwd=ROOT, env=ENV, capture_output=True)


def test_the_image_runs_as_a_user_holds_no_key_and_no_build_tools(escrow: str) -> None:
    config = json.loads(run("docker", "image", "inspect", IMAGE))[0]["Config"]
    assert config["User"] == "bridge" and config["Entrypoint"] == ["bridge"]
    script = (
        "id -u; "
        "find / -xdev \\( -name priv_validator_key.json -o -name node_key.json -o -name '*.key' \\) -print; "
        "find /devnet /shared -type f; "
        "command -v gcc cc make pip; ls /app/tests /root/.cache 2>/dev/null; true"
    )
    found = run("docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c", script)
    assert found.split() == ["10001"], found  # not root; no keys, homes or pip in the image
    # Small: Python, the locked dependencies and CometBFT; no compiler, pip, cache or tests.
    size = int(json.loads(run("docker", "image", "inspect", IMAGE))[0]["Size"])
    assert size < 320e6, f"{IMAGE} is {size / 1e6:.0f} MB"


def test_the_e2e_profile_suite_passes_in_the_network(escrow: str) -> None:
    out = compose(*README_COMPOSE["suite"])
    assert " passed" in out and "failed" not in out, out


def test_a_round_trip_deposit_withdraw_relay_and_claim(escrow: str) -> None:
    """The way back in containers: a deposit credited, a withdrawal signed by the validators,
    its root posted by node0's relayer, claimed from the host, marked paid on every node."""
    user = Account.from_key(secrets.token_bytes(32))
    account = "0x" + user.address[2:].lower()
    recipient = Account.create().address

    async def deposit_to_user() -> None:
        chain = await Chain.connect(ETH_RPC, ANVIL_KEY)
        try:
            await deposit(chain, escrow, 5000, user.address)
        finally:
            await chain.close()

    asyncio.run(deposit_to_user())
    wait_for(lambda: credited(NODES, account, 5000), 90, "the deposit credited everywhere")
    status = get(f"{API[NODES[0]]}/v1/status")
    domain = eip712.Domain(status["escrow"]["chain_id"], bytes.fromhex(status["escrow"]["address"][2:]))
    payload = Withdraw(bytes.fromhex(recipient[2:]), 2000).encode()
    tx = Tx(status["chain_id"], "withdraw", bytes.fromhex(user.address[2:]), 0, payload).sign_eth(
        user.key, domain
    )
    request = urllib.request.Request(
        f"{API[NODES[0]]}/v1/tx", data=json.dumps({"tx": tx.encode().hex()}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200

    def signed() -> dict[str, Any] | None:
        found = get(f"{API[NODES[0]]}/v1/accounts/{account}/withdrawals")
        ids = (found or {}).get("withdrawals") or []
        withdrawal = get(f"{API[NODES[0]]}/v1/withdrawals/{ids[0]}") if ids else None
        return withdrawal if withdrawal and withdrawal["status"] == "signed" else None

    withdrawal = wait_for(signed, 120, "the withdrawal signed by the validators")
    assert credited(NODES, account, 3000)

    async def relay_then_claim() -> int:
        chain = await Chain.connect(ETH_RPC, ANVIL_KEY)
        try:
            bridge = chain.contract("BridgeEscrow", escrow)
            token = chain.contract("TestToken", await bridge.functions.token().call())
            async with asyncio.timeout(120):  # nobody but node0's relayer posts roots here
                while bytes(await bridge.functions.batchRoots(int(withdrawal["batch"])).call()) == bytes(32):
                    await asyncio.sleep(0.5)
            await onchain.claim(chain, escrow, withdrawal)
            paid: int = await token.functions.balanceOf(recipient).call()
            return paid
        finally:
            await chain.close()

    assert asyncio.run(relay_then_claim()) == 2000

    def paid_everywhere() -> bool:
        found = [get(f"{API[n]}/v1/withdrawals/{withdrawal['id']}") for n in NODES]
        return all(w and w["status"] == "paid" for w in found)

    wait_for(paid_everywhere, 90, "the claim marked paid on every node")
    solvency = [get(f"{API[n]}/v1/status")["listeners"]["solvency"] for n in NODES]
    assert all(s["state"] == "running" and "escrow_short" not in s["problems"] for s in solvency), solvency


def test_deposits_credit_with_a_validator_killed_and_it_catches_up(escrow: str) -> None:
    down, up = NODES[2], [n for n in NODES if n != NODES[2]]
    run("docker", "kill", container(down))
    assert get(f"{API[down]}/v1/status") is None
    account = deposit_from_host(escrow, 777)
    wait_for(lambda: credited(up, account, 777), 90, f"the deposit credited on {up}")
    height, _ = wait_for(lambda: agreed(up), 60, f"{up} agree")

    compose("start", down)
    wait_for(lambda: credited([down], account, 777), 120, f"{down} caught up with the deposit")
    caught_up = wait_for(lambda: agreed(NODES), 60, "all validators at one height and app hash")
    assert caught_up[0] > height


def test_validator_state_survives_restart_and_recreation(escrow: str) -> None:
    account = deposit_from_host(escrow, 4242)
    wait_for(lambda: credited(NODES, account, 4242), 90, "the deposit credited everywhere")
    height, _ = wait_for(lambda: agreed(NODES), 60, "the validators agree")
    ids = {n: get(f"{API[n]}/v1/status")["node_id"] for n in NODES}

    compose("restart", *NODES)
    compose("up", "-d", "--no-deps", "--force-recreate", NODES[0])  # a new container: only its volume is kept
    wait_for(lambda: healthy(NODES), 180, "the validators healthy again")
    for name in NODES:  # each started from its volume's ledger, with its own keys, not from scratch
        loaded = re.findall(r"on chain .* at height (\d+);", compose("logs", "--no-color", name))
        assert loaded and int(loaded[-1]) >= height, (name, loaded)
        assert get(f"{API[name]}/v1/status")["node_id"] == ids[name]
    assert wait_for(lambda: agreed(NODES), 120, "the validators agree again")[0] > height
    assert credited(NODES, account, 4242)


def test_down_leaves_no_container_network_or_volume(escrow: str) -> None:
    save_logs()
    compose(*README_COMPOSE["down"])
    label = f"label=com.docker.compose.project={PROJECT}"
    assert run("docker", "ps", "-a", "-q", "--filter", label) == ""
    assert run("docker", "network", "ls", "-q", "--filter", label) == ""
    assert run("docker", "volume", "ls", "-q", "--filter", label) == ""
    # And by name, in case a compose version labels differently.
    names = run("docker", "ps", "-a", "--format", "{{.Names}}") + run(
        "docker", "volume", "ls", "--format", "{{.Name}}"
    )
    assert PROJECT not in names + run("docker", "network", "ls", "--format", "{{.Name}}")
