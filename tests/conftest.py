"""Shared fixtures. Registries are global (registration happens at import), so each test
gets a snapshot of them that is restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import bridge.ledger  # noqa: F401  (registers the built-in governance resolutions)
import listeners
import resolutions
from bridge.extensions import load_extensions

load_extensions()  # every example registers once, before the per-test snapshots


@pytest.fixture(autouse=True)
def isolated_registries() -> Iterator[None]:
    saved_listeners = dict(listeners._registry)
    saved_every_node = set(listeners._every_node)
    saved_resolutions = dict(resolutions._registry)
    saved_commands = dict(listeners._commands)
    saved_setups = list(listeners._devnet_setups)
    saved_queries = dict(resolutions._queries)
    saved_readiness = list(resolutions._readiness)
    yield
    listeners._registry.clear()
    listeners._registry.update(saved_listeners)
    listeners._every_node.clear()
    listeners._every_node.update(saved_every_node)
    resolutions._registry.clear()
    resolutions._registry.update(saved_resolutions)
    # The extension hooks (commands, devnet setups, queries, readiness checks) likewise.
    listeners._commands.clear()
    listeners._commands.update(saved_commands)
    listeners._devnet_setups[:] = saved_setups
    resolutions._queries.clear()
    resolutions._queries.update(saved_queries)
    resolutions._readiness[:] = saved_readiness
