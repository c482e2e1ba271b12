"""`bridge --help`, and the help of every subcommand, explains every option; the commands its
messages suggest run as printed."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import hints
from bridge.cli import parser


def _parsers(
    p: argparse.ArgumentParser, path: str = "bridge"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, p in _parsers(parser())
        for action in p._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_every_subcommand_has_help() -> None:
    missing = [
        f"{path} {choice.dest}"
        for path, p in _parsers(parser())
        for action in p._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
        if not choice.help
    ]
    assert missing == []


def test_hints_name_this_program_not_another_bridge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "bridge"
    monkeypatch.setattr(sys, "argv", [str(script), "start"])
    assert hints.command("init --home n") == f"{script} init --home n"
    monkeypatch.setattr(sys, "argv", ["/somewhere/bridge/__main__.py"])
    assert hints.command("init --home n") == f"{sys.executable} -m bridge init --home n"


def test_a_missing_home_hint_runs_as_printed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "start", "--home", str(tmp_path / "n")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    hint = done.stderr.split("(run `")[1].split("`)")[0]
    assert subprocess.run(shlex.split(hint), capture_output=True, text=True).returncode == 0
    assert (tmp_path / "n" / "config.toml").exists()
