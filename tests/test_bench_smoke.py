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


def test_quick_withdrawals_bench_rows_are_well_formed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Gas on anvil (deposit, submitBatch, claim against an ERC-20 transfer) and withdrawals/s
    through a real ledger against transfers/s: every row is there, filled, and not a failure."""
    output = tmp_path / "results.json"
    assert main(["--quick", "--only", "withdrawals", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "gas: submitBatch (8 withdrawals, 3 of 4 signatures)" in printed
    rows = json.loads(output.read_text())["results"]
    assert [r["benchmark"] for r in rows] == [
        "gas: deposit",
        "gas: submitBatch (8 withdrawals, 3 of 4 signatures)",
        "gas: claim (proof of 3)",
        "withdrawals: withdrawals/s (finalize_block+commit)",
    ]
    for row in rows:
        assert row["suite"] == "withdrawals"
        for key in ("benchmark", "measured", "baseline", "ratio", "target", "met", "detail"):
            assert key in row
        assert isinstance(row["measured"], int) and row["measured"] > 0
        assert isinstance(row["baseline"], int) and row["baseline"] > 0
        # Each row states its target and whether this run met it (a yes or no, never blank).
        assert (
            row["ratio"] > 0 and row["target"].startswith((">=", "ratio <=")) and row["met"] in (True, False)
        )
    assert {r["unit"] for r in rows} == {"gas", "withdrawals/s"}
    assert all(r["baseline"] == rows[0]["baseline"] for r in rows[:3])  # one ERC-20 transfer
