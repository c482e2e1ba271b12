"""The public hooks through which an extension reaches beyond its listener and resolution,
each through the real door: a query served over HTTP (``resolutions.register_query``), a
readiness problem on ``/ready`` (``register_readiness``), a ``bridge`` subcommand run by
``bridge``'s main (``listeners.register_command``) and a devnet setup step
(``register_devnet_setup``). The Ethereum example uses all four (tests/eth/)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import listeners
from bridge import devnet
from bridge.cli import main as cli_main
from bridge.devnet.homes import devnet_signers
from bridge.errors import BridgeError
from listeners import ConfigError, DevnetContext, register_command, register_devnet_setup
from resolutions import NodeReader, register_query, register_readiness
from resolutions.oracle_value import ORACLE_VALUE
from tests.test_api import assert_json_error, start_node


async def probe(reader: NodeReader, params: Mapping[str, str]) -> dict[str, Any]:
    word = params["word"]
    if word == "missing":
        raise LookupError(f"no {word} here")
    if word == "bad":
        raise ValueError("a bad word")
    if word == "boom":
        raise RuntimeError("a bug")
    return {
        "word": word,
        "latest": await reader.get(ORACLE_VALUE, b"latest"),
        "entries": len(await reader.prefix(ORACLE_VALUE, b"")),
        "pending": len(await reader.pending(ORACLE_VALUE)),
        "events": len(await reader.local_events(ORACLE_VALUE)),
        "total_power": reader.total_power(),
        "required_power": reader.required_power(ORACLE_VALUE),
    }


async def test_a_registered_query_is_served_with_json_errors(tmp_path: Path) -> None:
    register_query("probe/{word}", probe)
    async with start_node(tmp_path / "home") as running:
        assert await running.get("/v1/probe/hello") == (
            200,
            {
                "word": "hello",
                "latest": None,
                "entries": 0,
                "pending": 0,
                "events": 0,
                "total_power": 10,
                "required_power": 7,  # 2/3 of 10, rounded up
            },
        )
        for word, status, message in (("missing", 404, "no missing here"), ("bad", 400, "a bad word")):
            async with running.http.get(f"{running.url}/v1/probe/{word}") as r:
                assert (await assert_json_error(r, status))["error"] == message
        async with running.http.get(f"{running.url}/v1/probe/boom") as r:
            assert "RuntimeError" in (await assert_json_error(r, 500))["error"]  # a bug: logged, JSON
        async with running.http.get(f"{running.url}/v1/probe") as r:
            await assert_json_error(r, 404)


def test_query_paths_are_checked_at_registration() -> None:
    for path in ("", "/probe", "Probe", "probe/", "probe/{Word}", "probe/{word"):
        with pytest.raises(ValueError, match="invalid query path"):
            register_query(path, probe)
    register_query("probe/{word}", probe)
    with pytest.raises(ValueError, match="already registered"):
        register_query("probe/{word}", probe)


async def test_a_readiness_hook_shows_on_ready(tmp_path: Path) -> None:
    calls: list[int] = []

    @register_readiness
    async def check(reader: NodeReader) -> list[str]:
        calls.append(reader.total_power())
        return ["probe_problem:x=1"] if len(calls) > 1 else []

    async with start_node(tmp_path / "home") as running:
        assert await running.get("/ready") == (200, {"ready": True, "problems": []})
        assert await running.get("/ready") == (503, {"ready": False, "problems": ["probe_problem:x=1"]})
        assert calls == [10, 10]


def test_a_registered_command_runs_through_bridge_main(capsys: pytest.CaptureFixture[str]) -> None:
    def setup(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--word", required=True)

    def run(args: argparse.Namespace) -> int:
        if args.word == "wrong":
            raise ConfigError("--word: not that one")
        print(f"said {args.word}")
        return 3

    register_command("probe-say", "say a word", setup, run)
    assert cli_main(["probe-say", "--word", "hello"]) == 3
    assert capsys.readouterr().out == "said hello\n"
    # A user mistake: one line, no traceback, exit 1.
    assert cli_main(["probe-say", "--word", "wrong"]) == 1
    assert capsys.readouterr().err == "error: --word: not that one\n"
    # The node's own commands win over one that shadows them.
    register_command("init", "not the node's init", setup, run)
    with pytest.raises(SystemExit):
        cli_main(["init", "--word", "x"])
    for name in ("", "Probe", "probe say", "-probe"):
        with pytest.raises(ValueError, match="invalid command name"):
            register_command(name, "", setup, run)
    with pytest.raises(ValueError, match="already registered"):
        register_command("probe-say", "", setup, run)


def test_devnet_setup_steps_give_every_node_their_tables(tmp_path: Path) -> None:
    listeners._devnet_setups.clear()  # not the escrow's: no chain here (conftest restores it)
    seen: list[DevnetContext] = []

    @register_devnet_setup
    async def setup(ctx: DevnetContext) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        seen.append(ctx)
        return {"probe": {"url": ctx.rpc_url}}, {"probe_info": {"deployed": True}}

    signers = devnet_signers(2)
    assert asyncio.run(devnet.run_setups("http://chain", "0xkey", 2)) == {
        "extensions": {"probe": {"url": "http://chain"}},
        "rpc_url": "http://chain",
        "signers": [[a, devnet.POWER] for a, _ in signers],
        "probe_info": {"deployed": True},
    }
    # The steps learn the validators' Ethereum signers (an escrow's first set), sorted.
    assert seen[-1] == DevnetContext("http://chain", "0xkey", signers)
    assert [a for a, _ in signers] == sorted(a for a, _ in signers)
    # `bridge devnet deploy` (the compose network's one-shot deploy) runs them and writes the
    # file `bridge devnet init --docker --setup` reads.
    out = tmp_path / "setup.json"
    assert cli_main(["devnet", "deploy", "--rpc", "http://anvil:8545", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["extensions"] == {"probe": {"url": "http://anvil:8545"}}
    assert seen[-1].rpc_url == "http://anvil:8545"
    args = ["devnet", "init", "--docker", "--dir", str(tmp_path / "homes"), "--validators", "1"]
    assert cli_main([*args, "--setup", str(out)]) == 0
    assert (
        '[app.extensions.probe]\nurl = "http://anvil:8545"'
        in (tmp_path / "homes/node0/config.toml").read_text()
    )

    register_devnet_setup(setup)  # two steps that return the same table's name disagree
    with pytest.raises(BridgeError, match="disagree"):
        asyncio.run(devnet.run_setups("http://chain", "0xkey", 1))
