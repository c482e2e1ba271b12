"""``python -m bench``: run the benchmarks, print one table, write bench/results.json.

python -m bench                   # everything (about 15 minutes on 2 cores)
python -m bench --quick           # scaled down: a smoke run
python -m bench --only ledger,backfill,withdrawals
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine

RESULTS = Path(__file__).with_name("results.json")
COLUMNS = ("benchmark", "measured", "baseline", "ratio", "target", "met?")


def _suites() -> dict[str, Callable[[bool], list[dict[str, Any]]]]:
    from bench import backfill, catchup, ledger, network, withdrawals

    return {
        "backfill": backfill.run_backfill,
        "ledger": lambda quick: ledger.run(quick),
        "withdrawals": withdrawals.run,
        "latency": network.run_latency,
        "scale": backfill.run_scale,
        "e2e": network.run_end_to_end,
        "catchup": catchup.run,
    }


NAMES = ("backfill", "ledger", "withdrawals", "latency", "scale", "e2e", "catchup")


def _cell(row: dict[str, Any], column: str) -> str:
    if column == "met?":
        return {True: "yes", False: "NO", None: "-"}[row.get("met")]
    value = row.get(column)
    if column in ("measured", "baseline") and row.get("unit") and column == "measured":
        return f"{value} {row['unit']}" if row["unit"] not in ("ratio",) else str(value)
    if column == "baseline" and row.get("baseline_name"):
        return f"{value} ({row['baseline_name']})"
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[_cell(r, c) for c in COLUMNS] for r in rows]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes: a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(NAMES)
    unknown = set(chosen) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(NAMES)}")
    suites = _suites()
    rows: list[dict[str, Any]] = []
    durations: dict[str, float] = {}
    for name in NAMES:
        if name not in chosen:
            continue
        print(f"running {name}{' (quick)' if args.quick else ''}...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            suite_rows = suites[name](args.quick)
        except Exception as exc:  # one broken benchmark must not lose the others' numbers
            print(f"{name} failed: {exc!r}", file=sys.stderr, flush=True)
            suite_rows = [{"benchmark": f"{name}: FAILED", "measured": repr(exc)[:200], "met": None}]
        for row in suite_rows:
            rows.append({"suite": name, **row})
            print(
                f"  {row['benchmark']}: {_cell(row, 'measured')} vs {_cell(row, 'baseline')}, "
                f"ratio {row.get('ratio')}, target {row.get('target')}",
                file=sys.stderr,
                flush=True,
            )
        durations[name] = round(time.monotonic() - started, 1)
    print(table(rows))
    for row in rows:
        if row.get("detail"):
            print(f"- {row['benchmark']}: {row['detail']}")
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else ""),
        "quick": args.quick,
        "machine": machine(),
        "durations_s": durations,
        "table": table(rows),
        "results": rows,
    }
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
