"""The bridge explorer: a web page every node serves at ``/`` ("where is my money", "is my
validator healthy"), reading only the node's public API.

- :mod:`bridge.explorer.history`: what each committed block did, kept by this node;
- :mod:`bridge.explorer.routes`: the page, its assets, search, history and the live stream;
- ``static/``: the page itself (HTML, CSS and plain JavaScript, no build step).
"""

from bridge.explorer.history import History
from bridge.explorer.routes import add_routes

__all__ = ["History", "add_routes"]
