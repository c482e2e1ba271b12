"""`bridge` in subprocesses: a solo node reading an HTTP oracle the test serves, over real
HTTP and real SQLite, stopped with SIGTERM and started again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

DEADLINE = 30.0
Labels = tuple[tuple[str, str], ...]
API_LINE = re.compile(r"at height (\d+); API on (http://\S+)")


def env() -> dict[str, str]:
    """The test's environment without BRIDGE_* overrides, which would change the config."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    out["PYTHONUNBUFFERED"] = "1"
    return out


async def bridge(*args: str) -> tuple[int, str, str]:
    """Run a one-shot `bridge` command; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def init_home(home: Path, oracle_table: str | None = None) -> None:
    code, out, err = await bridge("init", "--home", str(home), "--api-port", "0")
    assert code == 0, err
    assert json.loads(out)["home"] == str(home)
    if oracle_table is not None:
        with (home / "config.toml").open("a") as f:
            f.write("\n[app.extensions.http_oracle]\n" + oracle_table)


# -- the oracle the node polls -- #


@dataclass
class Oracle:
    url: str
    reading: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    odd: list[str] = field(default_factory=list)  # raw JSON answers served in turn, if set


@asynccontextmanager
async def oracle_server(round_: int, value: str) -> AsyncIterator[Oracle]:
    oracle = Oracle("", {"round": round_, "value": value})

    async def handle(request: web.Request) -> web.Response:
        oracle.requests += 1
        if oracle.odd:
            return web.Response(
                text=oracle.odd[oracle.requests % len(oracle.odd)], content_type="application/json"
            )
        return web.json_response(oracle.reading)

    app = web.Application()
    app.router.add_get("/value", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        oracle.url = f"http://127.0.0.1:{runner.addresses[0][1]}/value"
        yield oracle
    finally:
        await runner.cleanup()


# -- a running node -- #


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    start_height: int = -1

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_exit(self) -> int:
        async def exited() -> bool:
            return self.proc.poll() is not None

        await wait_for("the node to exit", exited)
        return self.proc.wait()


@contextmanager
def spawn(home: Path, log: Path) -> Iterator[NodeProcess]:
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "start", "--home", str(home)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env(),
        )
    try:
        yield NodeProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE)


async def wait_api(node: NodeProcess) -> None:
    async def announced() -> bool:
        if node.proc.poll() is not None:
            raise AssertionError(f"node exited with {node.proc.returncode}:\n{node.output()}")
        m = API_LINE.search(node.output())
        if m:
            node.start_height, node.url = int(m[1]), m[2]
        return m is not None

    await wait_for("the node to announce its API", announced)


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def scrape(http: aiohttp.ClientSession, node: NodeProcess) -> dict[tuple[str, Labels], float]:
    async with http.get(node.url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def kv(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, str]:
    body = await get(http, node.url + "/v1/kv/oracle_value")
    return {e["key"]: e["value"] for e in body["entries"]}


async def wait_resolved(http: aiohttp.ClientSession, node: NodeProcess, round_: int, value: str) -> None:
    async def resolved() -> bool:
        if node.proc.poll() is not None:
            raise AssertionError(f"node exited with {node.proc.returncode}:\n{node.output()}")
        entries = await kv(http, node)
        return entries.get(f"round:{round_}") == value and entries.get("latest") == str(round_)

    await wait_for(f"round {round_} to resolve to {value!r}", resolved)


async def sigterm(node: NodeProcess) -> None:
    node.proc.send_signal(signal.SIGTERM)
    code = await node.wait_exit()
    assert code == 0, node.output()
    assert "shutting down" in node.output()
    assert "Traceback" not in node.output()


# -- tests -- #


async def test_oracle_value_is_resolved_and_survives_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with (
        oracle_server(1, "alpha") as oracle,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http,
    ):
        await init_home(home, f'url = "{oracle.url}"\npoll_interval = 0.1\n')

        with spawn(home, tmp_path / "first.log") as node:
            await wait_api(node)
            assert node.start_height == 0
            await wait_resolved(http, node, 1, "alpha")
            assert oracle.requests >= 1

            confirmed = await get(http, node.url + "/v1/resolutions?status=confirmed&type=oracle_value")
            (item,) = confirmed["resolutions"]
            assert bytes.fromhex(item["body"]) == b'{"round":1,"value":"alpha"}'

            # The event was voted on and its resolution processed: nothing is left locally,
            # and the metrics say so.
            async def settled() -> bool:
                status = await get(http, node.url + "/v1/status")
                metrics = await scrape(http, node)
                return bool(
                    status["events"] == {}
                    and metrics.get(("bridge_events", (("state", "pending"),))) == 0
                    and metrics.get(("bridge_events", (("state", "voted"),))) == 0
                )

            await wait_for("the event to be settled", settled)
            metrics = await scrape(http, node)
            assert metrics[("bridge_listener_running", (("listener", "http_oracle"),))] == 1
            key = ("bridge_resolutions_total", (("status", "confirmed"), ("type", "oracle_value")))
            assert metrics[key] == 1
            assert metrics[("bridge_votes_sent_total", ())] >= 1

            code, out, err = await bridge("status", "--node", node.url)
            assert code == 0, err
            assert re.search(r"^listener\s+http_oracle: running$", out, re.M), out
            # eth_deposits has no table on this node: said in words, not "finished".
            assert re.search(r"^listener\s+eth_deposits: not configured$", out, re.M), out
            assert re.search(r"^validator\s+yes \(power 10\)$", out, re.M), out

            code, out, err = await bridge("status", "--node", node.url, "--json")
            assert code == 0, err
            status = json.loads(out)
            assert status["listeners"]["http_oracle"]["state"] == "running"
            assert status["listeners"]["http_oracle"]["restarts"] == 0
            assert status["chain_id"] == "bridge-local"
            assert status["validator"] is True
            assert status["height"] >= 1
            height_before = status["height"]

            await sigterm(node)

        # A new round appears while the node is down; round 1 is no longer served, so it can
        # only come back from the node's own database.
        oracle.reading = {"round": 2, "value": "beta"}

        with spawn(home, tmp_path / "second.log") as node:
            await wait_api(node)
            assert node.start_height >= height_before
            status = await get(http, node.url + "/v1/status")
            assert status["height"] >= height_before
            assert (await kv(http, node))["round:1"] == "alpha"

            await wait_resolved(http, node, 2, "beta")
            assert (await kv(http, node))["round:1"] == "alpha"
            confirmed = await get(http, node.url + "/v1/resolutions?status=confirmed&type=oracle_value")
            bodies = [bytes.fromhex(r["body"]) for r in confirmed["resolutions"]]
            assert bodies == [b'{"round":2,"value":"beta"}', b'{"round":1,"value":"alpha"}']

            await sigterm(node)


async def test_odd_oracle_answers_are_skipped(tmp_path: Path) -> None:
    """Answers that are not a usable reading are retried later; they neither stop the node
    nor block the rounds after them."""
    home = tmp_path / "home"
    odd = [
        "not json",
        "[1, 2]",
        '{"round": 1}',
        '{"round": "one", "value": "x"}',
        '{"round": 1e400, "value": "x"}',  # infinity: int() raises OverflowError
        json.dumps({"round": 1, "value": "x" * 20_000}),  # too big for a vote
    ]
    async with (
        oracle_server(0, "") as oracle,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http,
    ):
        oracle.odd = odd
        await init_home(home, f'url = "{oracle.url}"\npoll_interval = 0.05\n')
        with spawn(home, tmp_path / "node.log") as node:
            await wait_api(node)

            async def polled() -> bool:
                if node.proc.poll() is not None:
                    raise AssertionError(f"node exited with {node.proc.returncode}:\n{node.output()}")
                return oracle.requests >= 3 * len(odd)

            await wait_for("the oracle to be polled", polled)
            oracle.reading, oracle.odd = {"round": 2, "value": "good"}, []
            await wait_resolved(http, node, 2, "good")
            assert await kv(http, node) == {"latest": "2", "round:2": "good"}
            await sigterm(node)


@pytest.mark.parametrize("policy", ["never", "always"])
async def test_misconfigured_listener_stops_the_node(tmp_path: Path, policy: str) -> None:
    """A wrong table is a listeners.ConfigError: exit 1 with one line naming the key and no
    traceback, under either restart policy (no restart loop on a config file)."""
    home = tmp_path / "home"
    await init_home(home, 'url = "ftp://x"\n')
    config = home / "config.toml"
    config.write_text(config.read_text().replace('restart_policy = "never"', f'restart_policy = "{policy}"'))
    with spawn(home, tmp_path / "node.log") as node:
        code = await node.wait_exit()
        output = node.output()
    assert code == 1, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert errors[0].endswith(
        "stopping: listener http_oracle is misconfigured: app.extensions.http_oracle.url: "
        "Value error, must be an http(s) URL, got 'ftp://x'"
    ), output
    assert "Traceback" not in output and "restart" not in output, output


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("block_interval = 0.2", "block_interval = -1", "node.block_interval"),
        ("port = 0", 'port = "eighty"', "api.port"),
        ('log_level = "info"', 'log_level = "loud"', "node.log_level"),
        ("[api]\n", "[api]\ncolour = 1\n", "api.colour"),
    ],
)
async def test_broken_config_is_one_line_error(tmp_path: Path, old: str, new: str, key: str) -> None:
    home = tmp_path / "home"
    await init_home(home)
    config = home / "config.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))

    code, out, err = await bridge("start", "--home", str(home))
    assert code != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert key in lines[0]


async def test_start_without_home_is_one_line_error(tmp_path: Path) -> None:
    code, out, err = await bridge("start", "--home", str(tmp_path / "missing"))
    assert code != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "bridge init" in lines[0]


async def test_balance(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await init_home(home)
    with spawn(home, tmp_path / "node.log") as node:
        await wait_api(node)

        code, out, err = await bridge("balance", "0x" + "12" * 20, "--node", node.url)
        assert (code, out.strip()) == (0, "0"), err

        code, out, err = await bridge("balance", "not-an-address", "--node", node.url)
        assert code != 0
        assert out == ""
        assert err.strip().splitlines() == ["error: account 'not-an-address' must be 20 or 32 bytes of hex"]

        await sigterm(node)

    code, out, err = await bridge("balance", "0x" + "12" * 20, "--node", f"http://127.0.0.1:{free_port()}")
    assert code != 0
    assert "cannot reach the node" in err
    assert "Traceback" not in err


async def test_start_with_api_port_in_use_is_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await init_home(home)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = home / "config.toml"
        config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
        code, out, err = await bridge("start", "--home", str(home))
    assert code != 0
    assert "Traceback" not in out + err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "api.port" in line
    assert str(port) in line


async def test_cli_against_something_that_is_not_a_node(tmp_path: Path) -> None:
    async with oracle_server(1, "x") as oracle:
        base = oracle.url.removesuffix("/value")
        for args in (("status", "--node", base), ("balance", "0x" + "12" * 20, "--node", base)):
            code, out, err = await bridge(*args)
            assert code != 0
            assert "Traceback" not in err
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith("error: ") and "404" in lines[0]


async def test_init_refuses_an_initialized_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await init_home(home)
    key = (home / "node_key.json").read_text()
    code, out, err = await bridge("init", "--home", str(home))
    assert code != 0
    assert out == ""
    assert err.strip().splitlines() == [
        f"error: {home} is already initialized; remove it or choose another --home"
    ]
    assert (home / "node_key.json").read_text() == key
