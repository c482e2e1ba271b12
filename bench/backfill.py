"""Benchmarks 1 and 4: listener backfill against a bare eth_getLogs loop, the naive web3
reference, and the scale curve (time and peak RSS at growing log counts).

Logs are made by the emitter of bench/common.py, 100 per block. Every approach scans the
same range with the same chunk (``CHUNK`` blocks = 5,000 logs per eth_getLogs) and runs in
its own fresh process (bench/backfill_worker.py), whose peak RSS is reported.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench.common import CHAIN_ID, Rpc, anvil, fill, run_worker

PER_BLOCK = 100
CHUNK = 50
REPEATS = 3


async def _prepare(url: str, logs: int) -> tuple[str, int, int]:
    async with Rpc(url) as rpc:
        emitter, _ = await rpc.deploy_emitter()
    first, last = await fill(url, emitter, logs, PER_BLOCK)
    return emitter, first, last


def measure(logs: int, modes: list[str], repeats: int = REPEATS) -> dict[str, Any]:
    """Median seconds and max peak RSS per mode, on one freshly filled anvil."""
    with anvil() as chain:
        emitter, first, last = asyncio.run(_prepare(chain.url, logs))
        args = {
            "url": chain.url,
            "address": emitter,
            "first": first,
            "last": last,
            "chunk": CHUNK,
            "chain_id": CHAIN_ID,
        }
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for _ in range(repeats):
            for mode in modes:  # interleaved, so noise hits every approach alike
                if mode == "naive" and runs[mode]:
                    continue  # slow and only a reference: once is enough
                r = run_worker("bench.backfill_worker", {**args, "mode": mode})
                if r["count"] != logs:
                    raise RuntimeError(f"{mode} saw {r['count']} of {logs} logs")
                runs[mode].append(r)
        anvil_rss = chain.rss_kb()
    out: dict[str, Any] = {"logs": logs, "blocks": last - first + 1, "anvil_peak_rss_kb": anvil_rss}
    for mode, rs in runs.items():
        out[mode] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "peak_rss_kb": max(r["peak_rss_kb"] for r in rs),
            "runs": len(rs),
        }
    return out


def run_backfill(quick: bool = False) -> list[dict[str, Any]]:
    logs = 5_000 if quick else 100_000
    r = measure(logs, ["bare", "listener", "naive"], repeats=1 if quick else REPEATS)
    listener, bare, naive = r["listener"]["seconds"], r["bare"]["seconds"], r["naive"]["seconds"]
    detail = f"{logs} logs over {r['blocks']} blocks, chunk {CHUNK} blocks; median of {r['listener']['runs']}"
    return [
        {
            "benchmark": "backfill: listener vs bare eth_getLogs",
            "measured": round(listener, 2),
            "unit": "s",
            "baseline": round(bare, 2),
            "baseline_name": "bare aiohttp eth_getLogs loop",
            "ratio": round(listener / bare, 2),
            "target": "ratio <= 1.5",
            "met": listener / bare <= 1.5,
            "detail": detail + f"; {logs / listener:.0f} deposits/s stored",
            "raw": r,
        },
        {
            "benchmark": "backfill: naive web3 get_logs vs listener",
            "measured": round(listener, 2),
            "unit": "s",
            "baseline": round(naive, 2),
            "baseline_name": "contract.events.Deposit().get_logs",
            "ratio": round(naive / listener, 1),
            "target": "naive/listener >= 10",
            "met": naive / listener >= 10,
            "detail": detail,
        },
    ]


def run_scale(quick: bool = False, sizes: list[int] | None = None) -> list[dict[str, Any]]:
    """Listener time and peak RSS at growing sizes. Each size also times the bare loop on
    the same chain, so a slower anvil (it serves eth_getLogs more slowly as the chain
    grows) is not taken for a non-linear listener."""
    sizes = sizes or ([1_000, 10_000] if quick else [10_000, 100_000, 1_000_000])
    points = []
    for logs in sizes:
        r = measure(logs, ["bare", "listener"], repeats=1)
        points.append(
            (
                logs,
                r["listener"]["seconds"],
                r["listener"]["peak_rss_kb"],
                r["bare"]["seconds"],
                r["anvil_peak_rss_kb"],
            )
        )
    base_logs, base_s, base_rss, _, _ = points[0]
    rows = []
    for logs, seconds, rss, bare, anvil_rss in points:
        per_log = (seconds / logs) / (base_s / base_logs)
        rows.append(
            {
                "benchmark": f"scale: backfill {logs:,} logs",
                "measured": f"{seconds:.2f}s, {rss / 1024:.0f} MiB",
                "unit": "time, peak RSS",
                "baseline": f"{base_logs:,} logs; bare loop {bare:.2f}s",
                "baseline_name": "smallest size",
                "ratio": f"time/log x{per_log:.2f}, RSS x{rss / base_rss:.2f}, vs bare x{seconds / bare:.2f}",
                "target": "listener/bare <= 1.5; time/log ~1 (linear), RSS flat",
                "met": seconds / bare <= 1.5 and per_log <= 1.5 and rss / base_rss <= 1.5,
                "detail": f"{logs / seconds:.0f} logs/s; listener/bare {seconds / bare:.2f}; "
                f"anvil peak RSS {anvil_rss / 1024:.0f} MiB",
            }
        )
    return rows
