"""The read-only view of a node that extensions' queries and readiness checks get
(``resolutions.NodeReader``), and the HTTP routes of the registered queries."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.eventstore import VOTED, EventStore
from bridge.ledger import Ledger, required_power
from resolutions import (
    LocalEvent,
    NodeReader,
    PendingResolution,
    QueryFunc,
    registered_queries,
    registered_readiness,
)

if TYPE_CHECKING:
    from bridge.node import Node


class NodeView:
    """A :class:`resolutions.NodeReader` over a node's ledger (committed state) and event store."""

    def __init__(self, ledger: Ledger, store: EventStore) -> None:
        self._ledger = ledger
        self._store = store

    async def get(self, namespace: str, key: bytes) -> bytes | None:
        found = await self._ledger.kv_prefix(namespace, key, limit=1)
        return found[0][1] if found and found[0][0] == key else None

    async def prefix(self, namespace: str, prefix: bytes, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        return await self._ledger.kv_prefix(namespace, prefix, limit)

    async def pending(self, resolution_type: str) -> list[PendingResolution]:
        return [PendingResolution(i, b, p, v) for i, b, p, v in await self._ledger.pending(resolution_type)]

    async def processed_body(self, resolution_id: bytes) -> bytes | None:
        return await self._ledger.processed_body(resolution_id)

    def total_power(self) -> int:
        return sum(self._ledger.validators.values())

    def required_power(self, resolution_type: str) -> int:
        return required_power(self.total_power(), self._ledger.threshold(resolution_type))

    async def local_events(self, event_type: str) -> list[LocalEvent]:
        return [LocalEvent(e.id, e.body, e.state == VOTED) for e in await self._store.of_type(event_type)]


def _reader(node: Node) -> NodeReader:
    return NodeView(node.ledger, node.store)


async def extension_problems(node: Node) -> list[str]:
    """The readiness problems the registered readiness functions report."""
    reader = _reader(node)
    problems: list[str] = []
    for fn in registered_readiness():
        problems += await fn(reader)
    return problems


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def query_handler(
    fn: QueryFunc, node: Callable[[web.Request], Node]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of a registered query: LookupError is a 404, ValueError a 400."""

    async def handle(request: web.Request) -> web.Response:
        try:
            data: Any = await fn(_reader(node(request)), dict(request.match_info))
        except LookupError as exc:
            return _json_error(404, str(exc).strip("'\"") or "not found")
        except ValueError as exc:
            return _json_error(400, str(exc) or "bad request")
        return web.json_response(data, dumps=json.dumps)

    return handle


def add_query_routes(app: web.Application, node: Callable[[web.Request], Node]) -> None:
    """``GET /v1/<path>`` for every registered query, after the node's own routes (which win)."""
    for path, fn in registered_queries().items():
        app.router.add_get(f"/v1/{path}", query_handler(fn, node))
