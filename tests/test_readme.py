"""The README's commands cannot rot.

Every shell command in README.md is run by a test, literally (placeholders, ports and homes
substituted), or named here with the reason it is not:

- "Run a validator against your own Ethereum RPC": tests/eth/test_readme_walkthrough.py runs
  the section's commands and its TOML table in order, against anvil;
- "A local network of validators": tests/network/test_readme_devnet.py runs them on one devnet;
- "With docker compose": tests/compose/test_compose_network.py runs them on a Docker engine
  (`make compose-e2e`, which `make test` runs);
- `make demo`, `make test` and `make compose-e2e`: see MAKE_TARGETS.

The cheap checks stay here too: every `bridge` command parses with the real CLI and every
`make` target exists.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.cli import parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDERS = {
    "$RPC": "http://127.0.0.1:8545",
    "$KEY": "0x" + "11" * 32,
    "<request_id>": "ab" * 32,
    "0x<tx hash>": "0x" + "cd" * 32,
    "0x<recipient>": "0x" + "ef" * 20,
    "0x...": "0x" + "12" * 20,
}

# README section -> the test that runs its shell commands, in order. That test reads them from
# the README by the section's title (so it names the title), and fails on a command it does
# not know how to run: a command added to such a section is run, or breaks the test.
RUN_BY = {
    "Run a validator against your own Ethereum RPC": ROOT / "tests/eth/test_readme_walkthrough.py",
    "A local network of validators": ROOT / "tests/network/test_readme_devnet.py",
    "With docker compose": ROOT / "tests/compose/test_compose_network.py",
}
# README section -> why its commands are not run on this machine (none today).
NOT_RUN: dict[str, str] = {}
# `make` command -> (file, text in it) showing what runs it.
MAKE_TARGETS = {
    # `make demo` is `bridge demo`, which runs until Ctrl-C; the test runs it with --exit.
    "make demo": (ROOT / "tests/eth/test_cli.py", 'bridge("demo", '),
    # `make test` is CI's entry point.
    "make test": (ROOT / ".ci/run", "exec make test"),
    # `make test` runs it after the suite.
    "make compose-e2e": (ROOT / "Makefile", "$(MAKE) --no-print-directory compose-e2e"),
}


@dataclass(frozen=True)
class Block:
    section: str  # the title of the nearest heading above the block, without the #s
    lang: str
    text: str

    def commands(self) -> list[str]:
        """The block's command lines, without their trailing comments."""
        lines = [line.split("  #")[0].strip() for line in self.text.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]


def readme_blocks() -> list[Block]:
    blocks, section = [], ""
    lang: str | None = None
    lines: list[str] = []
    for line in README.read_text().splitlines():
        if lang is None and line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                blocks.append(Block(section, lang, "\n".join(lines) + "\n"))
                lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def section_blocks(section: str) -> list[Block]:
    """The section's code blocks, in order (the walkthrough and devnet tests run them)."""
    found = [b for b in readme_blocks() if b.section == section]
    assert found, f"README.md has no code block under a heading {section!r}"
    return found


def readme_commands(prefix: str) -> list[str]:
    return [c for b in readme_blocks() if b.lang == "sh" for c in b.commands() if c.startswith(prefix)]


def test_every_shell_command_is_run_by_a_test_or_excluded_with_a_reason() -> None:
    uncovered = [
        (b.section, command)
        for b in readme_blocks()
        if b.lang == "sh" and b.section not in RUN_BY and b.section not in NOT_RUN
        for command in b.commands()
        if command not in MAKE_TARGETS
    ]
    assert not uncovered, f"README commands no test runs (add them to a test, then to RUN_BY): {uncovered}"
    for section, test in RUN_BY.items():
        assert any(b.lang == "sh" for b in section_blocks(section)), section
        assert f'"{section}"' in test.read_text(), f"{test} does not run the section {section!r}"
    for section in NOT_RUN:
        assert section_blocks(section), section


@pytest.mark.parametrize("command", sorted(MAKE_TARGETS))
def test_make_commands_are_run_somewhere(command: str) -> None:
    assert command in readme_commands("make ")
    path, text = MAKE_TARGETS[command]
    assert text in path.read_text(), f"{path} no longer runs {command!r}"
    if command == "make demo":  # the test above runs `bridge demo`: so must the target
        recipe = re.search(r"^demo:.*\n\t(.*)", (ROOT / "Makefile").read_text(), re.M)
        assert recipe is not None and recipe[1] == "$(BIN)/bridge demo"


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
