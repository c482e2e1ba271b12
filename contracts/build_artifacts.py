"""Extract the committed contract artifacts from forge's build output.

Every contract defined in a ``.sol`` file under ``contracts/src/`` (subfolders included) gets
``contracts/artifacts/<ContractName>.json``; there is no list to edit, so a contract a fork
drops into ``contracts/src/`` is picked up by ``make contracts`` and by the staleness test
(``tests/test_contracts.py``), which proves the committed files match a fresh compile.

Each artifact is ``{"abi": [...], "bytecode": "0x..."}`` where ``bytecode`` is the creation
bytecode (constructor arguments are appended by whoever deploys it); the Python side loads
them by contract name. Therefore:

- contract names must be unique across ``contracts/src/`` (two files may not both define
  ``Token``), or the build stops;
- interfaces and abstract contracts have no creation bytecode, so they get no artifact (the
  script says so); libraries and concrete contracts do;
- a contract whose bytecode needs library linking (it calls a library's public or external
  function) stops the build: linking is not supported.

Contracts are found from forge's output (each artifact's ``metadata.settings.compilationTarget``
names its source file), not by parsing Solidity; forge's output of a source that no longer
exists is ignored, and an artifact in ``--dest`` that no contract produces any more is removed.

Usage (from the repository root, after ``forge build``)::

    python contracts/build_artifacts.py [--out contracts/out] [--dest contracts/artifacts]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # forge's project root (foundry.toml): source paths in its output are relative to it
SRC = HERE / "src"


class Compiled(NamedTuple):
    """One contract of ``contracts/src`` in forge's output."""

    name: str
    source: str  # the source file, relative to the project root (e.g. "contracts/src/BridgeEscrow.sol")
    path: Path  # forge's artifact file


def discover(out_dir: Path, src: Path = SRC, root: Path = ROOT) -> list[Compiled]:
    """Every contract defined in a ``.sol`` file under ``src`` that forge compiled into
    ``out_dir``, sorted by name. Raises ``ValueError`` if two share a name."""
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir}: no forge output, run `forge build` first")
    prefix = src.resolve().relative_to(root.resolve()).as_posix() + "/"
    found: dict[str, Compiled] = {}
    for path in sorted(out_dir.rglob("*.json")):
        if "build-info" in path.relative_to(out_dir).parts:
            continue
        data = json.loads(path.read_text())
        target = data.get("metadata", {}).get("settings", {}).get("compilationTarget")
        if not isinstance(target, dict) or len(target) != 1:
            raise ValueError(f"{path}: no metadata.settings.compilationTarget (forge's default output)")
        ((source, name),) = target.items()
        if not source.startswith(prefix) or not (root / source).is_file():
            continue  # a library, a test, or a source deleted since forge last wrote this file
        if name in found:
            raise ValueError(
                f"two contracts named {name} ({found[name].source}, {source}): artifacts are named "
                "by contract, so names under contracts/src must be unique"
            )
        found[name] = Compiled(name, source, path)
    return sorted(found.values(), key=lambda c: c.name)


def extract(path: Path) -> dict[str, Any] | None:
    """The ``{"abi", "bytecode"}`` artifact of one forge artifact file; None for an interface or
    an abstract contract (no creation bytecode)."""
    forge_artifact = json.loads(path.read_text())
    bytecode = forge_artifact["bytecode"]["object"]
    if not isinstance(bytecode, str) or not bytecode.startswith("0x"):
        raise ValueError(f"{path}: no creation bytecode")
    if len(bytecode) <= 2:
        return None
    if "__$" in bytecode:
        raise ValueError(f"{path}: bytecode needs library linking, which is not supported")
    return {"abi": forge_artifact["abi"], "bytecode": bytecode}


def render(artifact: dict[str, Any]) -> str:
    """The exact text written to an artifact file (stable, so diffs stay small)."""
    return json.dumps(artifact, indent=2) + "\n"


def is_artifact(path: Path) -> bool:
    """Whether ``path`` looks like a file this script writes (so it may remove it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(data) == {"abi", "bytecode"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "out", help="forge's output folder")
    parser.add_argument("--dest", type=Path, default=HERE / "artifacts", help="where to write")
    args = parser.parse_args(argv)

    try:
        contracts = discover(args.out)
        artifacts = {c.name: (c, extract(c.path)) for c in contracts}
    except ValueError as e:
        print(f"build_artifacts: {e}", file=sys.stderr)
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for name, (contract, artifact) in artifacts.items():
        if artifact is None:
            print(f"no artifact for {name} ({contract.source}): an interface or abstract contract")
            continue
        target = args.dest / f"{name}.json"
        written.add(target.name)
        text = render(artifact)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target}")
    for old in sorted(args.dest.glob("*.json")):
        if old.name not in written and is_artifact(old):
            old.unlink()
            print(f"removed {old}: no contract under contracts/src builds it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
