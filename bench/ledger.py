"""Benchmark 2: ledger throughput, votes per second through finalize_block + commit.

4 validators each vote for the same ``resolutions`` credit_account deposits, in vote
transactions of up to 2000 events; a block carries one transaction per validator, so every
resolution reaches 2/3 and is resolved (credited) in the block its votes land in. The
transactions are built and signed up front; only the ledger is timed. The baseline inserts
the same rows (every resolution row and every vote row) into a fresh SQLite file with the
ledger's schema, with ``executemany`` in one transaction. Both run three times, interleaved;
their medians are compared.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bridge.encoding import event_id
from bridge.keys import NodeKey
from bridge.ledger import Block, Genesis, Ledger
from bridge.ledger.state import SCHEMA
from bridge.sqlite import PRAGMAS
from bridge.txs import MAX_VOTES_PER_TX, Tx, Vote

CHAIN = "bench-ledger"
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def deposit_bodies(n: int) -> list[bytes]:
    from resolutions.credit import Deposit

    sender = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    return [
        Deposit(
            31337,
            ESCROW,
            i,
            i.to_bytes(32, "big"),
            0,
            100 + i // 100,
            sender,
            "0x" + (i % 1000 + 1).to_bytes(20, "big").hex(),
            1000 + i,
        ).encode()
        for i in range(n)
    ]


def build(validators: int, resolutions: int) -> tuple[list[NodeKey], Genesis, list[list[bytes]], list[bytes]]:
    keys = sorted((NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(validators)), key=lambda k: k.public)
    genesis = Genesis(CHAIN, tuple((k.public, 1) for k in keys))
    bodies = deposit_bodies(resolutions)
    blocks: list[list[bytes]] = []
    for nonce, start in enumerate(range(0, resolutions, MAX_VOTES_PER_TX)):
        payload = Vote(
            tuple(("credit_account", b) for b in bodies[start : start + MAX_VOTES_PER_TX])
        ).encode()
        blocks.append([Tx(CHAIN, "vote", k.public, nonce, payload).sign_ed25519(k).encode() for k in keys])
    return keys, genesis, blocks, bodies


async def run_ledger(
    path: Path, genesis: Genesis, blocks: list[list[bytes]], profile: bool = False
) -> dict[str, Any]:
    import resolutions.credit  # noqa: F401  (registers credit_account)

    ledger = await Ledger.open(path)
    try:
        await ledger.init_chain(genesis)
        resolved = 0
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        for height, txs in enumerate(blocks, start=1):
            result = await ledger.finalize_block(
                Block(height, genesis.time_ns + height, genesis.validators[0][0], tuple(txs))
            )
            await ledger.commit()
            if not all(r.ok for r in result.tx_results):
                raise RuntimeError(f"a vote failed: {result.tx_results}")
            resolved += sum(1 for r in result.resolved if r[2] == "confirmed")
        seconds = time.perf_counter() - started
        if profiler is not None:
            import pstats
            import sys

            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        return {"seconds": seconds, "resolved": resolved, "app_hash": ledger.app_hash.hex()}
    finally:
        await ledger.close()


def run_raw(path: Path, validators: list[bytes], bodies: list[bytes]) -> float:
    """The same rows, straight into SQLite: one transaction, one executemany per table."""
    rows = [(event_id("credit_account", b), "credit_account", b, validators[0], 600) for b in bodies]
    votes = [(r[0], v) for r in rows for v in validators]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            db.execute(pragma)
        db.executescript(SCHEMA)
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO resolutions VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO votes VALUES (?, ?)", votes)
        db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


def run(quick: bool = False, profile: bool = False) -> list[dict[str, Any]]:
    validators, resolutions = 4, (1000 if quick else 10_000)
    keys, genesis, blocks, bodies = build(validators, resolutions)
    votes = validators * resolutions
    raws, ledgers = [], []
    for _ in range(1 if quick or profile else 3):  # interleaved; the medians are compared
        with tempfile.TemporaryDirectory() as tmp:
            raws.append(run_raw(Path(tmp) / "raw.sqlite", [k.public for k in keys], bodies))
            out = asyncio.run(run_ledger(Path(tmp) / "ledger.sqlite", genesis, blocks, profile))
        if out["resolved"] != resolutions:
            raise RuntimeError(f"{out['resolved']} of {resolutions} resolutions were credited")
        ledgers.append(out["seconds"])
    raw_s, ledger_s = statistics.median(raws), statistics.median(ledgers)
    ledger_rate, raw_rate = votes / ledger_s, votes / raw_s
    detail = (
        f"{validators} validators, {resolutions} resolutions, {votes} votes in {len(blocks)} blocks;"
        f" median of {len(ledgers)}"
    )
    return [
        {
            "benchmark": "ledger: votes/s (finalize_block+commit)",
            "measured": round(ledger_rate),
            "unit": "votes/s",
            "baseline": round(raw_rate),
            "baseline_name": "raw SQLite executemany, same rows",
            "ratio": round(ledger_rate / raw_rate, 3),
            "target": ">= 100000 votes/s",
            "met": ledger_rate >= 100_000,
            "detail": detail + f"; ledger {ledger_s:.2f}s, raw {raw_s:.3f}s",
        },
        {
            "benchmark": "ledger: share of raw SQLite rate",
            "measured": round(ledger_rate / raw_rate, 3),
            "unit": "ratio",
            "baseline": 1.0,
            "baseline_name": "raw SQLite executemany, same rows",
            "ratio": round(ledger_rate / raw_rate, 3),
            "target": ">= 0.35",
            "met": ledger_rate / raw_rate >= 0.35,
            "detail": detail,
        },
    ]


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv, profile="--profile" in sys.argv), indent=2))
