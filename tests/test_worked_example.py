"""The guide's worked example (docs/building-a-bridge.md §10), ``examples/message_bridge``:
a fork's files laid out as they sit in a fork (a contract, its artifact, a listener on the
public ``listeners.ethereum``, a resolution with an HTTP query, a test on the harness).

Laid over a copy of this tree, it must add files only (a fork edits no shipped file), reach
the framework through public names only, be removable again, and pass its own test and the
shipped contract and isolation tests there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_example_bridge_isolation import (
    WITHOUT_EDITABLE,
    Example,
    check_framework_does_not_import,
    check_public_imports,
    check_removable,
    clean_env,
    registry,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "message_bridge"
MESSAGES = Example("message_bridge", frozenset({"listeners.messages", "resolutions.deliver_message"}))
TOOLS = ("node_modules", ".tools")  # installed by make, linked into the copy


def example_files() -> list[Path]:
    return sorted(
        p.relative_to(EXAMPLE) for p in EXAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout of this tree (its committed files) with the example laid over it."""
    root = tmp_path_factory.mktemp("fork")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    for name in TOOLS:
        if (ROOT / name).exists():
            (root / name).symlink_to(ROOT / name)
    for rel in example_files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLE / rel, root / rel)
    return root


def test_the_example_only_adds_files() -> None:
    files = example_files()
    assert Path("contracts/src/MessageBox.sol") in files and Path("tests/test_message_bridge.py") in files
    edited = [str(rel) for rel in files if (ROOT / rel).exists()]
    assert not edited, f"the example would overwrite shipped files: {edited}"


def test_the_example_uses_public_names_and_is_removable(fork: Path, tmp_path: Path) -> None:
    check_public_imports(fork, MESSAGES)
    check_framework_does_not_import(fork, MESSAGES)
    full = registry(fork, tmp_path)
    assert full["listeners"]["messages"] == "listeners.messages"
    assert full["resolutions"]["deliver_message"] == "resolutions.deliver_message"
    check_removable(fork, MESSAGES, tmp_path, full)


def test_the_examples_test_and_the_shipped_checks_pass_in_the_fork(fork: Path) -> None:
    """One pytest run in the fork: the example's own end-to-end test (anvil, a solo node,
    HTTP), the contract checks (MessageBox's committed artifact is what solc compiles) and
    the isolation tests (the shipped examples are still removable)."""
    script = WITHOUT_EDITABLE + "import pytest\nsys.exit(pytest.main(sys.argv[1:]))\n"
    env = clean_env(fork) | {"NO_COLOR": "1"}
    env.pop("FOUNDRY_PROFILE", None)
    tests = [
        "tests/test_message_bridge.py",
        "tests/test_contracts.py",
        "tests/test_example_bridge_isolation.py",
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, "-q", "-p", "no:cacheprovider", *tests],
        cwd=fork,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"pytest in the fork failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert " passed" in done.stdout and " skipped" not in done.stdout, done.stdout[-2000:]
    assert os.path.exists(fork / "contracts" / "artifacts" / "MessageBox.json")


def test_the_example_type_checks_in_the_fork(fork: Path) -> None:
    """``mypy --strict`` on the example's Python files, as the project checks its own."""
    files = [str(rel) for rel in example_files() if rel.suffix == ".py"]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=fork,
        env=clean_env(fork),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
