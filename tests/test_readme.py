"""The README's commands cannot rot: every `bridge` command in it parses with the real CLI
and every `make` target exists. (What each command does is tested elsewhere: tests/e2e,
tests/eth/test_cli.py, tests/network/test_devnet_cli.py, tests/network/test_lifecycle.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bridge.cli import parser

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {
    "$RPC": "http://127.0.0.1:8545",
    "$KEY": "0x" + "11" * 32,
    "<request_id>": "ab" * 32,
    "0x<tx hash>": "0x" + "cd" * 32,
    "0x<recipient>": "0x" + "ef" * 20,
    "0x...": "0x" + "12" * 20,
}


def readme_commands(prefix: str) -> list[str]:
    commands = []
    in_shell = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_shell = line.strip() == "```sh"
            continue
        if in_shell and line.startswith(prefix):
            commands.append(line.split("  #")[0].strip())
    return commands


@pytest.mark.parametrize("command", readme_commands(".venv/bin/bridge "))
def test_bridge_commands_parse(command: str) -> None:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    args = parser().parse_args(shlex.split(command)[1:])
    assert callable(args.fn)


def test_every_bridge_subcommand_appears() -> None:
    used = {shlex.split(c)[1] for c in readme_commands(".venv/bin/bridge ")}
    assert {"init", "start", "status", "balance", "deposit", "deposit-status", "devnet", "validators"} <= used


@pytest.mark.parametrize("command", readme_commands("make "))
def test_make_targets_exist(command: str) -> None:
    target = command.split()[1]
    makefiles = [ROOT / "Makefile", *ROOT.glob("*.mk")]
    defined = {m for f in makefiles for m in re.findall(r"^([a-z][a-z0-9_-]*):", f.read_text(), re.M)}
    assert target in defined
