"""The second example bridge (listeners/http_oracle + resolutions/oracle_value) is a pure
add-on: a fork could have added it without touching `bridge/`.

It came in the same history as the framework, so `git diff --stat` of its introduction proves
nothing; these tests check the property instead. The example reaches the framework only
through the public `listeners` and `resolutions` packages; nothing else imports it; and a copy
of the tree without it runs a node. That the node runs it when it is there is what its own
tests show: tests/test_http_oracle.py (units), tests/test_api.py (a vote resolved through a
node), tests/e2e/test_solo_node.py (`bridge start` polling an oracle).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import listeners
import resolutions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ("listeners.http_oracle", "resolutions.oracle_value")
EXAMPLE_DIRS = [ROOT / name.replace(".", "/") for name in EXAMPLE]
PUBLIC = {"listeners": set(listeners.__all__), "resolutions": set(resolutions.__all__)}
API_LINE = re.compile(r"API on (http://\S+)")


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for each import in ``path``, relative ones made absolute."""
    package = list(path.relative_to(ROOT).parent.parts)
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((module, [alias.name for alias in node.names]))
    return out


def in_example(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in EXAMPLE)


def test_the_example_uses_only_the_public_extension_api() -> None:
    files = [f for d in EXAMPLE_DIRS for f in d.rglob("*.py")]
    assert files
    for path in files:
        for module, names in imports(path):
            top = module.split(".")[0]
            assert top not in ("bridge", "tests"), f"{path} imports {module}: the framework's internals"
            if top in PUBLIC and not in_example(module):
                assert module == top, f"{path} imports {module}: not the public API"
                assert set(names) <= PUBLIC[top], f"{path} imports {set(names) - PUBLIC[top]} from {top}"


def test_nothing_else_imports_the_example() -> None:
    for path in [
        *ROOT.glob("bridge/**/*.py"),
        *ROOT.glob("listeners/**/*.py"),
        *ROOT.glob("resolutions/**/*.py"),
    ]:
        if any(d in path.parents for d in EXAMPLE_DIRS):
            continue
        used = [m for m, _ in imports(path) if in_example(m)]
        assert not used, f"{path} imports {used}"


def test_the_framework_does_not_name_the_example() -> None:
    named = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bridge").rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and re.search(r"http_oracle|oracle_value", path.read_text(errors="replace"))
    ]
    assert not named, f"files under bridge/ that name the example: {named}"


def test_the_example_is_loaded_in_this_tree() -> None:
    # tests/conftest.py ran load_extensions(): what `bridge start` does.
    assert "http_oracle" in listeners.registered_listeners()
    assert "oracle_value" in resolutions.registered_resolutions()


def get(url: str) -> Any:
    """The JSON of a 200 answer, else None."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:  # URLError, HTTPError (a 503 from /ready)
        return None


def poll(what: str, found: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


@pytest.mark.e2e
def test_the_framework_runs_without_the_example(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "http_oracle", "oracle_value")
    for package in ("bridge", "listeners", "resolutions"):
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    # The copy first on the path (the editable install's finder comes after it), no BRIDGE_*.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")} | {"PYTHONPATH": str(tree)}

    def bridge(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import bridge, listeners; print(bridge.__file__, listeners.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(f).is_relative_to(tree) for f in where), where

    assert bridge("config", "docs").startswith("#")
    bridge("init", "--home", "home", "--api-port", "0")
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "bridge", "start", "--home", "home"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def announced() -> re.Match[str] | None:
            assert node.poll() is None, log.read_text()
            return API_LINE.search(log.read_text(errors="replace"))

        url = poll("the node's API", announced)[1]
        status = poll("3 blocks", lambda: (s := get(url + "/v1/status")) and s["height"] >= 3 and s)
        assert set(status["listeners"]) == {"eth_deposits"}, status  # no http_oracle in the copy
        poll("/ready", lambda: get(url + "/ready"))
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, log.read_text()
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
