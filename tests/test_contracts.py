"""The Solidity side: committed artifacts match the sources, and the forge tests pass.

forge, anvil and solc-js come from node_modules (``make node-tools``, pinned by
package-lock.json). One fresh ``forge build`` into a temporary folder serves both checks, so
the module costs one solc-js compile (about ten seconds) plus the forge test run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
ARTIFACTS = CONTRACTS / "artifacts"
NODE_BIN = ROOT / "node_modules" / ".bin"
FORGE = NODE_BIN / "forge"
ANVIL = NODE_BIN / "anvil"
SOLC_WRAPPER = CONTRACTS / "solc-js-wrapper"
NAMES = ("BridgeEscrow", "TestToken", "FeeToken")
TIMEOUT = 600


def _require_node_tools() -> None:
    for tool in (FORGE, ANVIL):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool.relative_to(ROOT)} is missing: run `make node-tools` (npm ci from the lock)")


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FOUNDRY_PROFILE", None)
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def _committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return data


@pytest.fixture(scope="module")
def forge_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh build of sources and tests: (out folder, cache folder), outside the work tree."""
    _require_node_tools()
    base = tmp_path_factory.mktemp("forge")
    out, cache = base / "out", base / "cache"
    proc = _run(FORGE, "build", "--force", "--out", out, "--cache-path", cache)
    assert proc.returncode == 0, f"forge build failed:\n{proc.stdout}\n{proc.stderr}"
    return out, cache


def test_artifacts_match_fresh_compile(forge_build: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = forge_build
    proc = _run(sys.executable, CONTRACTS / "build_artifacts.py", "--out", out, "--dest", tmp_path)
    assert proc.returncode == 0, proc.stderr
    stale = []
    for name in NAMES:
        fresh = json.loads((tmp_path / f"{name}.json").read_text())
        committed = _committed(name)
        if fresh["abi"] != committed["abi"]:
            stale.append(f"{name}: ABI differs")
        if fresh["bytecode"] != committed["bytecode"]:
            stale.append(f"{name}: bytecode differs")
        # Byte-for-byte too, so the files stay exactly what the script writes.
        if (tmp_path / f"{name}.json").read_text() != (ARTIFACTS / f"{name}.json").read_text():
            stale.append(f"{name}: file text differs")
    assert not stale, "contracts/artifacts is stale, run `make contracts`: " + "; ".join(stale)


def test_forge_test_passes(forge_build: tuple[Path, Path]) -> None:
    out, cache = forge_build
    # Same out/cache as the build: nothing is recompiled.
    proc = _run(FORGE, "test", "--out", out, "--cache-path", cache)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"forge test failed:\n{output}"
    summary = re.search(r"(\d+) tests passed, (\d+) failed", output)
    assert summary is not None, output
    passed, failed = int(summary.group(1)), int(summary.group(2))
    assert failed == 0
    assert passed >= 20, output
    assert "testFuzz_NoncesAreGaplessAndBalanceMatchesCredits" in output
    assert "invariant_BalanceEqualsCredited" in output


def _abi_item(abi: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [item for item in abi if item["type"] == kind and item.get("name") == name]


def test_escrow_interface() -> None:
    """The ABI the Python side relies on (listener, deposit helper) is what the design says."""
    abi = _committed("BridgeEscrow")["abi"]
    (event,) = _abi_item(abi, "event", "Deposit")
    assert [(i["name"], i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("nonce", "uint256", True),
        ("sender", "address", True),
        ("recipient", "address", True),
        ("amount", "uint256", False),
    ]
    deposits = _abi_item(abi, "function", "deposit")
    assert sorted([i["type"] for i in f["inputs"]] for f in deposits) == [["uint256"], ["uint256", "address"]]
    for name in ("ZeroAmount", "ZeroRecipient"):
        (error,) = _abi_item(abi, "error", name)
        assert error["inputs"] == []
    for name in ("token", "depositCount"):
        (getter,) = _abi_item(abi, "function", name)
        assert getter["stateMutability"] == "view"


@pytest.mark.parametrize("name", NAMES)
def test_artifact_shape(name: str) -> None:
    artifact = _committed(name)
    assert set(artifact) == {"abi", "bytecode"}
    assert re.fullmatch(r"0x(?:[0-9a-f]{2})+", artifact["bytecode"])
    assert any(item["type"] == "constructor" for item in artifact["abi"])


def test_toolchain_versions_are_pinned() -> None:
    _require_node_tools()
    package = json.loads((ROOT / "package.json").read_text())
    deps: dict[str, str] = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    for name, version in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
    foundry = {deps[f"@foundry-rs/{tool}"] for tool in ("anvil", "forge", "cast")}
    assert len(foundry) == 1, foundry
    (foundry_version,) = foundry

    for tool in (ANVIL, FORGE):
        proc = _run(tool, "--version")
        assert proc.returncode == 0, proc.stderr
        assert f"Version: {foundry_version}" in proc.stdout, proc.stdout

    proc = _run(SOLC_WRAPPER, "--version")
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        rf"^Version: {re.escape(deps['solc'])}\+commit\.[0-9a-f]{{8}}\.Linux\.g\+\+$", proc.stdout, re.M
    )
