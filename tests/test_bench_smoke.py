"""The benchmark code must keep running: the quickest scaled-down path, no timing checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


def test_quick_ledger_bench_prints_table_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.json"
    assert main(["--quick", "--only", "ledger", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "| benchmark | measured | baseline | ratio | target | met? |" in printed
    assert "ledger: votes/s" in printed
    results = json.loads(output.read_text())
    for key in ("cpu_count", "python", "anvil", "cometbft", "sqlite"):
        assert key in results["machine"]
    assert results["quick"] is True
    assert {r["suite"] for r in results["results"]} == {"ledger"}
    for row in results["results"]:
        for key in ("benchmark", "measured", "baseline", "ratio", "target", "met"):
            assert key in row


def test_emitter_logs_decode_as_deposits() -> None:
    """The hand-assembled emitter's code is well formed (jump targets on JUMPDEST)."""
    from bench.common import emitter_initcode, emitter_runtime
    from listeners.eth_deposits import DEPOSIT_TOPIC

    runtime = emitter_runtime(DEPOSIT_TOPIC)
    assert emitter_initcode(DEPOSIT_TOPIC).endswith(runtime)
    assert bytes.fromhex(DEPOSIT_TOPIC[2:]) in runtime
