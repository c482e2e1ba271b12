"""Crash torture: real nodes killed with SIGKILL while deposits stream in. Long but bounded by
counts (deposits, kills), never by wall time; `make test` runs them with everything else."""

from __future__ import annotations

import pytest

from tests.eth.conftest import anvil, bridge, chain  # noqa: F401  (fixtures)
from tests.network.conftest import network  # noqa: F401  (fixture)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "torture: crash torture (SIGKILL at random moments), bounded by counts"
    )
