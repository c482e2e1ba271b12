"""Extract the committed contract artifacts from forge's build output.

Each artifact is ``{"abi": [...], "bytecode": "0x..."}`` where ``bytecode`` is the creation
bytecode (constructor arguments are appended by whoever deploys it). The Python side loads
these files; ``tests/test_contracts.py`` proves they match a fresh compile of the sources.

Usage (from the repository root, after ``forge build``)::

    python contracts/build_artifacts.py [--out contracts/out] [--dest contracts/artifacts]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The contracts whose artifacts are committed, by source file under contracts/src.
CONTRACTS = {
    "BridgeEscrow": "BridgeEscrow.sol",
    "TestToken": "TestToken.sol",
    "FeeToken": "FeeToken.sol",
}


def extract(out_dir: Path, name: str) -> dict[str, Any]:
    """The ``{"abi", "bytecode"}`` artifact of contract ``name`` in a forge output folder."""
    path = out_dir / CONTRACTS[name] / f"{name}.json"
    forge_artifact = json.loads(path.read_text())
    bytecode = forge_artifact["bytecode"]["object"]
    if not isinstance(bytecode, str) or not bytecode.startswith("0x") or len(bytecode) <= 2:
        raise ValueError(f"{path}: no creation bytecode")
    if "__$" in bytecode:
        raise ValueError(f"{path}: bytecode needs library linking, which is not supported")
    return {"abi": forge_artifact["abi"], "bytecode": bytecode}


def render(artifact: dict[str, Any]) -> str:
    """The exact text written to an artifact file (stable, so diffs stay small)."""
    return json.dumps(artifact, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "out", help="forge's output folder")
    parser.add_argument("--dest", type=Path, default=HERE / "artifacts", help="where to write")
    args = parser.parse_args(argv)

    args.dest.mkdir(parents=True, exist_ok=True)
    for name in CONTRACTS:
        target = args.dest / f"{name}.json"
        text = render(extract(args.out, name))
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
