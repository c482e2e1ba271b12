"""Loads every listener and resolution package, which register themselves on import.

Dropping a package into ``listeners/`` or ``resolutions/`` is how a fork adds one: nothing
under ``bridge/`` needs to change. Packages are imported in name order. The framework's own
listeners (the withdrawal relayer, the solvency check) register when this module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil

import listeners
import resolutions
from bridge.withdrawals import relayer, solvency  # noqa: F401  (the framework's own listeners)


def load_extensions() -> None:
    for package in (resolutions, listeners):
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.ispkg:
                importlib.import_module(f"{package.__name__}.{info.name}")
