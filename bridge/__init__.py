"""The bridge node: ledger, engines, event store, broadcaster, supervisor, API and CLI.

Nothing in this package is a public API but ``bridge.testing`` (the test harness). Forks
extend the node through the ``listeners`` and ``resolutions`` packages; code here may change
between releases without notice.
"""

import sys

import eth_account  # noqa: F401  (imports py_ecc, which raises the recursion limit: see below)

__version__ = "0.1.0"

# py_ecc (imported by eth_account) raises Python's recursion limit to 100,000 at import. A
# recursive decoder (json.loads of an RPC answer or a request body) then overflows the C
# stack and the node dies with a segfault on a deeply nested document instead of raising
# RecursionError. The node needs no deep recursion: put a limit back that the stack holds.
RECURSION_LIMIT = 4000
sys.setrecursionlimit(min(sys.getrecursionlimit(), RECURSION_LIMIT))
