"""The bridge node: ledger, engines, event store, broadcaster, supervisor, API and CLI.

Nothing in this package is a public API. Forks extend the node through the ``listeners``
and ``resolutions`` packages; code here may change between releases without notice.
"""

__version__ = "0.1.0"
