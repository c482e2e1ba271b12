"""The example bridges are add-ons that a fork can remove: the HTTP oracle
(listeners/http_oracle + resolutions/oracle_value) and the Ethereum deposits
(listeners/eth_deposits + resolutions/credit).

They came in the same history as the framework, so `git diff --stat` of their introduction
proves nothing; these tests check the property instead, for each example:

- it reaches the framework only through public names: the `listeners` and `resolutions`
  packages and their public library packages (such as `listeners.ethereum`), the names in
  their `__all__`; never `bridge.*` or `tests.*`;
- the framework (`bridge/`, `listeners/__init__.py`, `resolutions/__init__.py`) neither imports
  nor names it, and no other example imports it;
- a copy of the tree without it loads every remaining package, which registers exactly what it
  registers beside the example; and a node runs there (e2e).

Nothing here lists what else is in the tree: a fork that adds listeners and resolutions keeps
these tests passing, and one that builds a package on an example (imports it) gets that
package removed along with the example, as long as it is an extension (it registers
something) and not a library. That the node runs an example when it is there is what the
example's own tests show: tests/test_http_oracle.py, tests/test_api.py,
tests/e2e/test_solo_node.py, tests/eth/.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import listeners
import resolutions

ROOT = Path(__file__).resolve().parents[1]
EXTENSION_ROOTS = ("listeners", "resolutions")  # the packages whose subpackages are extensions
FRAMEWORK = frozenset({"bridge", *EXTENSION_ROOTS})
API_LINE = re.compile(r"API on (http://\S+)")


@dataclass(frozen=True)
class Example:
    name: str
    packages: frozenset[str]  # dotted: "listeners.http_oracle", ...

    def __str__(self) -> str:
        return self.name

    def dirs(self, root: Path) -> list[Path]:
        return [root / p.replace(".", "/") for p in sorted(self.packages)]


HTTP_ORACLE = Example("http_oracle", frozenset({"listeners.http_oracle", "resolutions.oracle_value"}))
ETH_DEPOSITS = Example("eth_deposits", frozenset({"listeners.eth_deposits", "resolutions.credit"}))
EXAMPLES = (HTTP_ORACLE, ETH_DEPOSITS)


def examples() -> list[Any]:
    return [pytest.param(e, id=e.name) for e in EXAMPLES]


# -- the import graph, read from the sources (no import needed) --


def imports(path: Path, root: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for each import in ``path``, relative ones made absolute."""
    package = list(path.relative_to(root).parent.parts)
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((module, [alias.name for alias in node.names]))
    return out


def package_of(module: str) -> str | None:
    """The unit a module belongs to: "bridge", "listeners", "resolutions", or one extension
    package ("listeners.http_oracle"); None for anything else (stdlib, third party, tests)."""
    parts = module.split(".")
    if parts[0] == "bridge":
        return "bridge"
    if parts[0] in EXTENSION_ROOTS:
        return ".".join(parts[:2])
    return None


def python_files(root: Path, packages: Iterable[str] = FRAMEWORK) -> list[Path]:
    return sorted(
        path
        for package in packages
        for path in (root / package.replace(".", "/")).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{unit: {unit it imports: [files of the first that import it]}} over bridge/,
    listeners/ and resolutions/."""
    graph: dict[str, dict[str, list[Path]]] = {}
    for path in python_files(root):
        unit = package_of(module_of(path, root))
        assert unit is not None
        edges = graph.setdefault(unit, {})
        for module, _ in imports(path, root):
            target = package_of(module)
            if target is not None and target != unit:
                edges.setdefault(target, []).append(path)
    return graph


def dependents(root: Path, example: Example) -> dict[str, list[Path]]:
    """Every unit outside ``example`` that imports it, directly or through another such unit,
    with the files that do."""
    graph = import_graph(root)
    found: dict[str, list[Path]] = {}
    reached = set(example.packages)
    while True:
        new = {
            unit: [f for target in reached & set(edges) for f in edges[target]]
            for unit, edges in graph.items()
            if unit not in reached and reached & set(edges)
        }
        if not new:
            return found
        found.update(new)
        reached |= set(new)


def public_names(root: Path, module: str) -> set[str] | None:
    """The ``__all__`` of ``listeners``, ``resolutions`` or a package directly under them, if
    it has one; None for any other module (not public)."""
    if package_of(module) != module or module == "bridge":
        return None
    init = root / module.replace(".", "/") / "__init__.py"
    if not init.is_file():
        return None
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return {str(name) for name in ast.literal_eval(node.value)}
    return None


def check_public_imports(root: Path, example: Example) -> None:
    files = python_files(root, example.packages)
    assert files, f"no files for {example} under {root}"
    for path in files:
        for module, names in imports(path, root):
            top = module.split(".")[0]
            assert top not in ("bridge", "tests"), f"{path} imports {module}: the framework's internals"
            if top in EXTENSION_ROOTS and package_of(module) not in example.packages:
                public = public_names(root, module)
                assert public is not None, f"{path} imports {module}: not a public module"
                assert set(names) <= public, f"{path} imports {set(names) - public} from {module}"


def check_framework_does_not_import(root: Path, example: Example) -> dict[str, list[Path]]:
    """The units built on ``example``: none of them the framework or another example."""
    found = dependents(root, example)
    framework = {
        unit: [str(f.relative_to(root)) for f in files] for unit, files in found.items() if unit in FRAMEWORK
    }
    assert not framework, f"the framework imports {example}: {framework}"
    for other in EXAMPLES:
        if other != example:
            assert not other.packages & set(found), f"{other} imports {example}: {found}"
    return found


# -- what a tree registers, asked in a subprocess (registries are global) --

# A copy runs with its directory first on PYTHONPATH. An editable install's finder would still
# find a submodule the copy lacks (`resolutions.credit`) in the work tree, so it is taken off
# sys.meta_path first: in the copy, a removed package is gone.
WITHOUT_EDITABLE = (
    "import sys; sys.meta_path[:] = "
    "[f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
)

REGISTRY_SCRIPT = (
    WITHOUT_EDITABLE
    + """
import importlib, json, os, pkgutil
import listeners, resolutions
from bridge.extensions import load_extensions

def owned():
    found = {("listeners", n): f for n, f in listeners.registered_listeners().items()}
    found |= {("resolutions", n): c.resolve for n, c in resolutions.registered_resolutions().items()}
    return found

before = set(owned())
owner = {}
for package in (resolutions, listeners):  # what load_extensions does, watching who registers what
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.ispkg:
            name = f"{package.__name__}.{info.name}"
            importlib.import_module(name)
            for key in set(owned()) - before - set(owner):
                owner[key] = name
load_extensions()  # and the node's own loader accepts the tree
tree = os.environ["PYTHONPATH"]
stray = sorted(
    name for name, module in sys.modules.items()
    if name.split(".")[0] in ("bridge", "listeners", "resolutions")
    and not (getattr(module, "__file__", None) or tree).startswith(tree)
)
out = {"stray": stray, "listeners": {}, "resolutions": {}}
# The framework's own (registered on import, before any extension): every tree has them.
out["builtin"] = sorted(name for kind, name in before if kind == "listeners")
for (kind, name), fn in owned().items():
    if (kind, name) in before:
        continue
    module = getattr(fn, "__module__", None) or ""
    top = ".".join(module.split(".")[:2])
    out[kind][name] = top if top.split(".")[0] == kind and len(top.split(".")) == 2 else owner[(kind, name)]
print(json.dumps(out))
"""
)

Registry = dict[str, dict[str, str]]  # {"listeners": {name: owning package}, "resolutions": {...}}


def clean_env(tree: Path) -> dict[str, str]:
    """The copy first on the path (see WITHOUT_EDITABLE for the editable install), no BRIDGE_*."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")} | {"PYTHONPATH": str(tree)}


def registry(tree: Path, cwd: Path) -> Registry:
    """What loading every extension package of ``tree`` registers, by owning package."""
    done = subprocess.run(
        [sys.executable, "-c", REGISTRY_SCRIPT],
        cwd=cwd,
        env=clean_env(tree),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"loading the extensions of {tree} failed:\n{done.stderr}"
    out = json.loads(done.stdout)
    assert not out.pop("stray"), f"modules loaded from outside {tree}: {out}"
    return {kind: dict(out[kind]) for kind in EXTENSION_ROOTS} | {
        "builtin": dict.fromkeys(out["builtin"], "bridge")
    }


def copy_tree(root: Path, dest: Path, without: Iterable[str] = ()) -> Path:
    """bridge/, listeners/ and resolutions/ of ``root`` into ``dest``, less the packages
    ``without``."""
    dropped = {root / p.replace(".", "/") for p in without}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or Path(folder, n) in dropped}

    for package in sorted(FRAMEWORK):
        shutil.copytree(root / package, dest / package, ignore=ignore)
    return dest


def check_removable(root: Path, example: Example, scratch: Path, full: Registry) -> tuple[Path, Registry]:
    """Copy ``root`` into ``scratch`` without ``example`` (and the extensions built on it): the
    rest loads and registers what it registers in ``root`` (``full``). Returns the copy and
    its registry."""
    # Whether the framework imports it is another test's; here the copy shows what follows.
    built_on = {unit: files for unit, files in dependents(root, example).items() if unit not in FRAMEWORK}
    removed = example.packages | set(built_on)
    owners = {owner for names in full.values() for owner in names.values()}
    assert example.packages & owners, f"{example} registers nothing in {root}: {full}"
    libraries = set(built_on) - owners
    assert not libraries, (
        f"{sorted(libraries)} import {example} and register nothing: a library built on an example"
    )
    tree = copy_tree(root, scratch / "tree", without=removed)
    left = registry(tree, scratch)
    expected = {kind: {n: o for n, o in names.items() if o not in removed} for kind, names in full.items()}
    assert left == expected
    return tree, left


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """What this tree registers, by owner (loaded in a subprocess like the copies)."""
    return registry(ROOT, tmp_path_factory.mktemp("registry"))


# -- the tests --


@pytest.mark.parametrize("example", examples())
def test_the_example_imports_only_public_names(example: Example) -> None:
    check_public_imports(ROOT, example)


@pytest.mark.parametrize("example", examples())
def test_nothing_but_extensions_built_on_it_imports_the_example(example: Example) -> None:
    check_framework_does_not_import(ROOT, example)


@pytest.mark.parametrize("example", examples())
def test_the_framework_does_not_name_the_example(example: Example) -> None:
    owned = [
        name
        for name, fn in listeners.registered_listeners().items()
        if package_of(fn.__module__) in example.packages
    ] + [
        name
        for name, config in resolutions.registered_resolutions().items()
        if package_of(getattr(config.resolve, "__module__", "")) in example.packages
    ]
    assert owned, f"{example} registers nothing in this tree"
    words = [re.escape(n) for n in owned] + [
        re.escape(p).replace(r"\.", "[./]") for p in sorted(example.packages)
    ]
    pattern = re.compile(r"\b(?:" + "|".join(words) + r")\b")
    named = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bridge").rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and pattern.search(path.read_text(errors="replace"))
    ]
    assert not named, f"files under bridge/ that name {example} ({pattern.pattern}): {named}"


@pytest.mark.parametrize("example", examples())
def test_the_example_is_loaded_in_this_tree(example: Example, shipped: Registry) -> None:
    owners = {owner for names in shipped.values() for owner in names.values()}
    assert example.packages <= owners, f"{example} is not (fully) registered: {shipped}"
    # tests/conftest.py ran load_extensions() in this process too: what `bridge start` does.
    for kind, names in shipped.items():
        registered = (
            listeners.registered_listeners() if kind == "listeners" else resolutions.registered_resolutions()
        )
        assert {n for n, o in names.items() if o in example.packages} <= set(registered)


@pytest.mark.parametrize("example", examples())
def test_the_tree_without_the_example_loads(example: Example, shipped: Registry, tmp_path: Path) -> None:
    check_removable(ROOT, example, tmp_path, shipped)


# A fork's additions: a listener of its own, and one built on the oracle example.
FORK_LISTENER = '''\
"""A fork's listener: public names only."""
from listeners import EventStore, Service, register_listener


@register_listener("fork_probe")
async def listen(service: Service, store: EventStore) -> None:
    return None
'''
FORK_RESOLUTION = '''\
"""A fork's resolution."""
from resolutions import ResolutionConfig, ResolveContext, register_resolution


async def _resolve(ctx: ResolveContext) -> None:
    return None


register_resolution("fork_probe_event", ResolutionConfig(resolve=_resolve))
'''
FORK_ON_THE_EXAMPLE = '''\
"""A fork's listener that votes for the oracle example's resolution."""
from listeners import EventStore, Service, register_listener
from resolutions.oracle_value import ORACLE_VALUE


@register_listener("oracle_mirror")
async def listen(service: Service, store: EventStore) -> None:
    await store.broadcast(ORACLE_VALUE, b"")
'''


def test_a_fork_that_adds_extensions_keeps_the_example_removable(tmp_path: Path) -> None:
    root = copy_tree(ROOT, tmp_path / "fork")
    for path, text in (
        ("listeners/fork_probe/__init__.py", FORK_LISTENER),
        ("resolutions/fork_probe_event/__init__.py", FORK_RESOLUTION),
        ("listeners/oracle_mirror/__init__.py", FORK_ON_THE_EXAMPLE),
    ):
        (root / path).parent.mkdir(parents=True)
        (root / path).write_text(text)
    full = registry(root, tmp_path)
    assert full["listeners"]["fork_probe"] == "listeners.fork_probe"
    assert full["resolutions"]["fork_probe_event"] == "resolutions.fork_probe_event"

    check_public_imports(root, HTTP_ORACLE)
    assert set(check_framework_does_not_import(root, HTTP_ORACLE)) == {"listeners.oracle_mirror"}
    _, left = check_removable(root, HTTP_ORACLE, tmp_path / "without", full)
    assert "fork_probe" in left["listeners"] and "fork_probe_event" in left["resolutions"]
    assert "http_oracle" not in left["listeners"] and "oracle_mirror" not in left["listeners"]


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
@pytest.mark.parametrize("example", examples())
def test_the_framework_runs_without_the_example(example: Example, shipped: Registry, tmp_path: Path) -> None:
    tree, left = check_removable(ROOT, example, tmp_path, shipped)
    env = clean_env(tree)

    run_bridge = [
        sys.executable,
        "-c",
        WITHOUT_EDITABLE + "import runpy; runpy.run_module('bridge', run_name='__main__', alter_sys=True)",
    ]

    def bridge(*args: str) -> str:
        done = subprocess.run(
            [*run_bridge, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert bridge("config", "docs").startswith("#")
    bridge("init", "--home", "home", "--api-port", "0")
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            [*run_bridge, "start", "--home", "home"],
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
        # The copy's and the framework's own, none of the example's.
        assert set(status["listeners"]) == set(left["listeners"]) | set(left["builtin"]), status
        poll("/ready", lambda: get(url + "/ready"))
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, log.read_text()
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
