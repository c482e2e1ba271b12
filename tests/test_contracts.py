"""The Solidity side: committed artifacts match the sources, and the forge tests pass.

forge, anvil and solc-js come from node_modules (``make node-tools``, pinned by
package-lock.json). One fresh ``forge build`` into a temporary folder serves both checks, so
the module costs one solc-js compile (about ten seconds) plus the forge test run, and one more
compile for the copy of the tree that plays a fork adding a contract.

Nothing here lists the contracts: ``contracts/build_artifacts.py`` finds every contract of
``contracts/src/`` in forge's output, the staleness check compares what it writes with every
file of ``contracts/artifacts/``, and the forge run must include every ``*.t.sol`` under
``contracts/test/``. So a fork's contract and its tests are covered without editing this file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
ARTIFACTS = CONTRACTS / "artifacts"
NODE_BIN = ROOT / "node_modules" / ".bin"
FORGE = NODE_BIN / "forge"
ANVIL = NODE_BIN / "anvil"
SOLC_WRAPPER = CONTRACTS / "solc-js-wrapper"
TIMEOUT = 600


def _require_node_tools() -> None:
    for tool in (FORGE, ANVIL):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool.relative_to(ROOT)} is missing: run `make node-tools` (npm ci from the lock)")


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FOUNDRY_PROFILE", None)
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def committed_names(root: Path = ROOT) -> list[str]:
    """The contracts with a committed artifact, from the files themselves."""
    return sorted(path.stem for path in (root / "contracts" / "artifacts").glob("*.json"))


def _committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return data


def build(root: Path, out: Path, cache: Path) -> None:
    """``forge build`` of the project at ``root``, sources and tests."""
    proc = _run(FORGE, "build", "--force", "--out", out, "--cache-path", cache, cwd=root)
    assert proc.returncode == 0, f"forge build failed:\n{proc.stdout}\n{proc.stderr}"


def stale_artifacts(root: Path, out: Path, scratch: Path) -> list[str]:
    """What differs between ``root``'s committed ``contracts/artifacts`` and what its
    ``contracts/build_artifacts.py`` writes (into the empty folder ``scratch``) from the forge
    output ``out``: a missing or an extra artifact, or one whose text differs."""
    proc = _run(sys.executable, root / "contracts" / "build_artifacts.py", "--out", out, "--dest", scratch)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    committed = root / "contracts" / "artifacts"
    made = {p.stem for p in scratch.glob("*.json")}
    kept = {p.stem for p in committed.glob("*.json")}
    stale = [f"{name}: no committed artifact" for name in sorted(made - kept)]
    stale += [f"{name}: committed, but no contract of contracts/src" for name in sorted(kept - made)]
    for name in sorted(made & kept):
        fresh_text, committed_text = (
            (scratch / f"{name}.json").read_text(),
            (committed / f"{name}.json").read_text(),
        )
        fresh, old = json.loads(fresh_text), json.loads(committed_text)
        if fresh.get("abi") != old.get("abi"):
            stale.append(f"{name}: ABI differs")
        if fresh.get("bytecode") != old.get("bytecode"):
            stale.append(f"{name}: bytecode differs")
        if fresh_text != committed_text:  # byte for byte too, so the files stay what the script writes
            stale.append(f"{name}: file text differs")
    return stale


def forge_test(root: Path, out: Path, cache: Path) -> dict[str, dict[str, str]]:
    """``forge test`` on an existing build: {"path:Contract": {test: status}}, after checking
    that every test passed and every ``*.t.sol`` under ``contracts/test`` ran."""
    proc = _run(FORGE, "test", "--json", "--out", out, "--cache-path", cache, cwd=root)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"forge test failed:\n{output}"
    suites = {
        suite: {test: result["status"] for test, result in data["test_results"].items()}
        for suite, data in json.loads(proc.stdout).items()
    }
    failed = [
        f"{suite} {test}: {status}"
        for suite, r in suites.items()
        for test, status in r.items()
        if status != "Success"
    ]
    assert not failed, failed
    ran = {suite.rsplit(":", 1)[0] for suite, results in suites.items() if results}
    files = {p.relative_to(root).as_posix() for p in (root / "contracts" / "test").rglob("*.t.sol")}
    assert files <= ran, f"forge ran no test of {sorted(files - ran)}"
    return suites


@pytest.fixture(scope="module")
def forge_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh build of sources and tests: (out folder, cache folder), outside the work tree."""
    _require_node_tools()
    base = tmp_path_factory.mktemp("forge")
    out, cache = base / "out", base / "cache"
    build(ROOT, out, cache)
    return out, cache


def test_artifacts_match_fresh_compile(forge_build: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = forge_build
    stale = stale_artifacts(ROOT, out, tmp_path)
    assert not stale, "contracts/artifacts is stale, run `make contracts`: " + "; ".join(stale)


def test_forge_test_passes(forge_build: tuple[Path, Path]) -> None:
    out, cache = forge_build
    # Same out/cache as the build: nothing is recompiled.
    suites = forge_test(ROOT, out, cache)
    tests = [test.split("(")[0] for results in suites.values() for test in results]
    assert len(tests) >= 20, suites
    assert "testFuzz_NoncesAreGaplessAndBalanceMatchesCredits" in tests
    assert "invariant_BalanceEqualsCredited" in tests


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


@pytest.mark.parametrize("name", committed_names())
def test_artifact_shape(name: str) -> None:
    artifact = _committed(name)
    assert set(artifact) == {"abi", "bytecode"}
    assert re.fullmatch(r"0x(?:[0-9a-f]{2})+", artifact["bytecode"])
    assert isinstance(artifact["abi"], list)
    assert all(isinstance(item, dict) and "type" in item for item in artifact["abi"])


# A fork's contract, in a subfolder, with what gets no artifact (an interface, an abstract
# contract) and what does (a library, a contract without a constructor).
FORK_SOURCE = """\
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

interface IGreeter {
    event Greeted(address indexed who, string greeting);

    function greet(string calldata greeting) external;
}

abstract contract Owned {
    address public immutable owner = msg.sender;
}

library Greetings {
    function isEmpty(string memory greeting) internal pure returns (bool) {
        return bytes(greeting).length == 0;
    }
}

contract Greeter is IGreeter, Owned {
    error EmptyGreeting();

    function greet(string calldata greeting) external {
        if (Greetings.isEmpty(greeting)) revert EmptyGreeting();
        emit Greeted(msg.sender, greeting);
    }
}
"""
FORK_TEST = """\
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {Greeter} from "../../src/fork/Greeter.sol";

contract GreeterTest is Test {
    function test_ForkContractRuns() public {
        Greeter greeter = new Greeter();
        assertEq(greeter.owner(), address(this));
        vm.expectRevert(Greeter.EmptyGreeting.selector);
        greeter.greet("");
    }
}
"""


def copy_project(dest: Path) -> None:
    """What forge and the artifact script need, copied (node_modules linked) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "foundry.toml", dest / "foundry.toml")
    shutil.copytree(CONTRACTS, dest / "contracts", ignore=shutil.ignore_patterns("out", "cache"))
    (dest / "node_modules").symlink_to(ROOT / "node_modules")


def test_a_fork_contract_is_covered_without_editing_a_shipped_file(tmp_path: Path) -> None:
    """A fork drops a contract and its test into a copy of the tree: the staleness check asks
    for its artifacts, the artifact script writes them (and none for what has no bytecode),
    forge runs its test; deleting it again is noticed and cleaned up the same way."""
    _require_node_tools()
    tree, out, cache = tmp_path / "tree", tmp_path / "out", tmp_path / "cache"
    copy_project(tree)
    (tree / "contracts/src/fork").mkdir()
    (tree / "contracts/src/fork/Greeter.sol").write_text(FORK_SOURCE)
    (tree / "contracts/test/fork").mkdir()
    (tree / "contracts/test/fork/Greeter.t.sol").write_text(FORK_TEST)
    build(tree, out, cache)
    shipped = committed_names()

    assert stale_artifacts(tree, out, tmp_path / "check1") == [
        "Greeter: no committed artifact",
        "Greetings: no committed artifact",
    ]
    proc = _run(sys.executable, "contracts/build_artifacts.py", "--out", out, cwd=tree)  # `make contracts`
    assert proc.returncode == 0, proc.stderr
    assert "no artifact for IGreeter (contracts/src/fork/Greeter.sol)" in proc.stdout, proc.stdout
    assert "no artifact for Owned (contracts/src/fork/Greeter.sol)" in proc.stdout, proc.stdout
    assert committed_names(tree) == sorted([*shipped, "Greeter", "Greetings"])
    for name in shipped:  # untouched
        assert (tree / f"contracts/artifacts/{name}.json").read_bytes() == (
            ARTIFACTS / f"{name}.json"
        ).read_bytes()
    greeter = json.loads((tree / "contracts/artifacts/Greeter.json").read_text())
    assert _abi_item(greeter["abi"], "event", "Greeted")
    assert stale_artifacts(tree, out, tmp_path / "check2") == []
    suites = forge_test(tree, out, cache)
    assert suites["contracts/test/fork/Greeter.t.sol:GreeterTest"] == {"test_ForkContractRuns()": "Success"}

    # The fork deletes its contract; forge's old output of it is still in `out`.
    shutil.rmtree(tree / "contracts/src/fork")
    shutil.rmtree(tree / "contracts/test/fork")
    assert stale_artifacts(tree, out, tmp_path / "check3") == [
        "Greeter: committed, but no contract of contracts/src",
        "Greetings: committed, but no contract of contracts/src",
    ]
    proc = _run(sys.executable, "contracts/build_artifacts.py", "--out", out, cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert committed_names(tree) == shipped
    assert stale_artifacts(tree, out, tmp_path / "check4") == []


def _build_artifacts_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_artifacts", CONTRACTS / "build_artifacts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_discovery_reads_sources_from_forge_output(tmp_path: Path) -> None:
    """Which of forge's outputs are contracts of contracts/src, on a made-up output folder."""
    build_artifacts = _build_artifacts_module()
    root, out = tmp_path / "project", tmp_path / "out"

    def compiled(source: str, name: str, at: str = "") -> None:
        (root / source).parent.mkdir(parents=True, exist_ok=True)
        (root / source).touch()
        path = out / at / Path(source).name / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        target = {"settings": {"compilationTarget": {source: name}}}
        path.write_text(json.dumps({"abi": [], "bytecode": {"object": "0x00"}, "metadata": target}))

    compiled("contracts/src/A.sol", "A")
    compiled("contracts/src/deep/er/B.sol", "B")
    compiled("contracts/test/A.t.sol", "ATest")  # a test
    compiled("node_modules/lib/L.sol", "L")  # a dependency
    compiled("contracts/src/Gone.sol", "Gone")  # then deleted: forge's output of it is stale
    (root / "contracts/src/Gone.sol").unlink()
    (out / "build-info").mkdir()
    (out / "build-info" / "0123.json").write_text("{}")
    found = build_artifacts.discover(out, root / "contracts/src", root)
    assert [(c.name, c.source) for c in found] == [
        ("A", "contracts/src/A.sol"),
        ("B", "contracts/src/deep/er/B.sol"),
    ]

    compiled("contracts/src/other/A.sol", "A", at="other")
    with pytest.raises(ValueError, match="two contracts named A"):
        build_artifacts.discover(out, root / "contracts/src", root)


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
