"""The compose network on a real Docker engine: `make compose-e2e` runs these (docker/engine.sh
gives them an engine, docker/base-images.sh the base images); `make test` runs that target."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compose: docker-compose.yml built and run on a Docker engine (`make compose-e2e`)"
    )
