"""The explorer's routes: the page at ``/`` with its two assets, and the JSON it reads that
the rest of the API does not serve (search, recent blocks, validators' last votes, an
account's activity) plus ``/v1/events``, the live stream of committed blocks."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.keys import parse_account
from bridge.queries import NodeView
from resolutions import registered_queries

if TYPE_CHECKING:
    from bridge.node import Node

STATIC = Path(__file__).resolve().parent / "static"
# Everything from this origin, nothing inline, nothing elsewhere: the page needs no more.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSETS = {"index.html": "text/html", "explorer.js": "text/javascript", "explorer.css": "text/css"}
HEARTBEAT = 15.0  # seconds between comments on an idle event stream (proxies drop silent ones)
SEARCH_HELP = (
    "search for a deposit's transaction hash (0x and 64 hex digits), a withdrawal id (a number)"
    " or an address (0x and 40 hex digits)"
)


def _asset(name: str) -> web.Response:
    response = web.Response(body=(STATIC / name).read_bytes(), content_type=ASSETS[name], charset="utf-8")
    response.headers.update(
        {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
    )
    return response


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise _bad(f"query parameter 'limit' must be an integer between 1 and {most}")
    return int(raw)


async def _account(node: Node, account: str) -> dict[str, Any]:
    return {
        "kind": "account",
        "account": account,
        "balance": str(await node.ledger.balance(account)),
        "activity": await node.history.activity(account, 100),
        "withdrawals": await node.ledger.account_withdrawals(account, 100),
    }


async def search(node: Node, query: str) -> dict[str, Any]:
    """What ``query`` names: ``{"kind": "withdrawal" | "hash" | "account" | "none", ...}``;
    ``ValueError`` if it cannot name anything."""
    if re.fullmatch(r"\d{1,19}", query):
        withdrawal = await node.ledger.committed_withdrawals().status(int(query))
        if withdrawal is None:
            return {"kind": "none", "message": f"no withdrawal {query} is in the ledger"}
        return {"kind": "withdrawal", "withdrawal": withdrawal}
    if re.fullmatch(r"0x[0-9a-fA-F]{40}", query):
        return await _account(node, parse_account(query))
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", query):
        raise ValueError(SEARCH_HELP)
    # A hash: what every query by transaction hash knows of it (the Ethereum extension's
    # `deposits/{tx_hash}`, a fork's own), and the ledger transaction it may be.
    reader = NodeView(node.ledger, node.store)
    found: dict[str, Any] = {}
    for path, fn in registered_queries().items():
        if path.endswith("/{tx_hash}") and path.count("{") == 1:
            try:
                found[path.split("/")[0]] = await fn(reader, {"tx_hash": query})
            except (LookupError, ValueError):
                pass
    result = node.tx_results.get(bytes.fromhex(query[2:]))
    if result is not None:
        height, tx = result
        found["tx"] = {"height": height, "code": int(tx.code), "log": tx.log}
    if found:
        return {"kind": "hash", "hash": query.lower(), **found}
    account = await _account(node, parse_account(query))  # a node key's account
    if account["balance"] != "0" or account["activity"]:
        return account
    return {"kind": "none", "message": f"{query} is no deposit, transaction or account this node knows"}


def add_routes(
    app: web.Application,
    get_node: Callable[[web.Request], Node],
    readiness: Callable[[Node], Awaitable[list[str]]],
) -> None:
    """The explorer's routes on ``app``; ``readiness`` is what ``/ready`` lists."""
    routes = web.RouteTableDef()

    @routes.get("/")
    async def page(request: web.Request) -> web.Response:
        return _asset("index.html")

    @routes.get("/explorer/{name}")
    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS or name == "index.html":
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no asset {name}"}), content_type="application/json"
            )
        return _asset(name)

    @routes.get("/v1/explorer/search")
    async def search_route(request: web.Request) -> web.Response:
        """200 with ``"kind": "none"`` for what is well formed but unknown (a search that
        finds nothing is an answer, not an error); 400 for what cannot name anything."""
        try:
            return web.json_response(await search(get_node(request), request.query.get("q", "").strip()))
        except ValueError as exc:
            raise _bad(str(exc)) from None

    @routes.get("/v1/explorer/blocks")
    async def blocks(request: web.Request) -> web.Response:
        node = get_node(request)
        return web.json_response({"blocks": await node.history.blocks(_limit(request, 120, 1000))})

    @routes.get("/v1/explorer/network")
    async def network(request: web.Request) -> web.Response:
        """The validators with their last vote seen here, and ``/ready``'s problems (always
        200: the page shows them in words)."""
        node = get_node(request)
        votes = await node.history.last_votes()
        return web.json_response(
            {
                "height": node.ledger.height,
                "problems": await readiness(node),
                "validators": [
                    {"pubkey": k.hex(), "power": p, "last_vote": votes.get(k)}
                    for k, p in sorted(node.ledger.validators.items())
                ],
            }
        )

    @routes.get("/v1/explorer/accounts/{address}/activity")
    async def activity(request: web.Request) -> web.Response:
        try:
            account = parse_account(request.match_info["address"])
        except ValueError as exc:
            raise _bad(str(exc)) from None
        node = get_node(request)
        return web.json_response(
            {"account": account, "activity": await node.history.activity(account, _limit(request, 100, 1000))}
        )

    @routes.get("/v1/events")
    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``block`` event per committed block (its summary)."""
        history = get_node(request).history
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue = history.subscribe()
        closing = asyncio.ensure_future(history.closing.wait())
        try:
            while not closing.done():
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getting, closing}, timeout=HEARTBEAT, return_when="FIRST_COMPLETED"
                )
                if getting in done:
                    await response.write(f"event: block\ndata: {json.dumps(getting.result())}\n\n".encode())
                else:
                    getting.cancel()
                    await response.write(b": still here\n\n")
        except ConnectionResetError:
            pass  # the reader left
        finally:
            history.unsubscribe(queue)
            closing.cancel()
        return response

    app.add_routes(routes)
