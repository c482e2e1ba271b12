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
    saved_resolutions = dict(resolutions._registry)
    yield
    listeners._registry.clear()
    listeners._registry.update(saved_listeners)
    resolutions._registry.clear()
    resolutions._registry.update(saved_resolutions)
