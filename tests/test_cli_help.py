"""`bridge --help`, and the help of every subcommand, explains every option."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

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
