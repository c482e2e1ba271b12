"""docs/configuration.md is `bridge config docs`: generated from the config models, and it
names every key of every model with its default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge.cli import main
from bridge.config import Settings
from bridge.configdocs import DOCS_FILE, config_docs
from listeners.eth_deposits import EthDepositsConfig

ROOT = Path(__file__).resolve().parents[1]


def test_committed_document_matches_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "docs"]) == 0
    printed = capsys.readouterr().out
    assert printed == config_docs()
    assert (ROOT / DOCS_FILE).read_text() == printed, (
        f"{DOCS_FILE} disagrees with the config models: run `.venv/bin/bridge config docs --out {DOCS_FILE}`"
    )


def _sections() -> list[tuple[str, type[BaseModel]]]:
    out: list[tuple[str, type[BaseModel]]] = [("", EthDepositsConfig)]
    for name, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        out.append((f"{name}.", field.annotation))
    return out


def test_every_key_is_documented_with_a_meaning() -> None:
    text = config_docs()
    for prefix, model in _sections():
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no Field description"
            assert f"| `{prefix}{name}` |" in text


def test_defaults_follow_the_models() -> None:
    text = config_docs()
    assert '| `node.engine` | "solo" \\| "cometbft" | `"solo"` |' in text
    assert f"| `api.port` | integer (>= 0, <= 65535) | `{Settings().api.port}` |" in text
    assert "| `chain_id` | integer (> 0) | **required** |" in text
    confirmations = EthDepositsConfig.model_fields["required_confirmations"].default
    assert f"| `required_confirmations` | integer (>= 0) | `{confirmations}` |" in text


def test_out_writes_the_file(tmp_path: Path) -> None:
    assert main(["config", "docs", "--out", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text() == config_docs()
