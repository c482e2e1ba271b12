"""The explorer's routes over real HTTP on a solo node: the page and its assets under a
strict Content-Security-Policy, search (what it finds, what it does not, and a 400 for what
cannot name anything), the block history, the network view, the live stream (which ends
when the node stops), and clear 4xx answers for bad input."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from bridge.testing import NodeHomeFactory, running_node


async def test_the_explorer_routes(node_home: NodeHomeFactory) -> None:
    http = aiohttp.ClientSession()
    try:
        async with running_node(node_home()) as node:
            api = node.api_url

            async def get(path: str) -> tuple[int, dict[str, str], bytes]:
                async with http.get(api + path) as answer:
                    return answer.status, dict(answer.headers), await answer.read()

            status, headers, body = await get("/")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert "connect-src 'self'" in headers["Content-Security-Policy"]
            assert b'src="/explorer/explorer.js"' in body and b"<script>" not in body  # nothing inline
            status, headers, _ = await get("/explorer/explorer.js")
            assert status == 200 and headers["Content-Type"].startswith("text/javascript")
            status, _, body = await get("/explorer/../config.toml")
            assert status == 404 and "error" in json.loads(body)

            # The live stream: a block event as soon as one commits.
            async with http.get(api + "/v1/events") as stream:
                assert stream.headers["Content-Type"] == "text/event-stream"
                lines = [await stream.content.readline() for _ in range(2)]
                assert lines[0] == b"event: block\n"
                block = json.loads(lines[1].removeprefix(b"data: "))
                assert block["height"] >= 1 and len(block["app_hash"]) == 64
            await node.wait_until(lambda: node.node.ledger.height >= 5)

            status, _, body = await get("/v1/explorer/blocks?limit=3")
            heights = [b["height"] for b in json.loads(body)["blocks"]]
            assert status == 200 and len(heights) == 3 and heights == sorted(heights)
            status, _, body = await get("/v1/explorer/network")
            network = json.loads(body)
            assert status == 200 and network["problems"] == [] and len(network["validators"]) == 1

            # Search: found, not found (200: an empty answer), and what cannot name anything (400).
            address = "0x" + "ab" * 20
            status, _, body = await get(f"/v1/explorer/search?q={address}")
            assert status == 200 and json.loads(body) | {"activity": []} == {
                "kind": "account",
                "account": address,
                "balance": "0",
                "activity": [],
                "withdrawals": [],
            }
            for query in ("0x" + "00" * 32, "7"):
                status, _, body = await get(f"/v1/explorer/search?q={query}")
                assert status == 200 and json.loads(body)["kind"] == "none", body
            for bad in ("garbage", "0x12", "", "-1", "1" * 20):
                status, _, body = await get(f"/v1/explorer/search?q={bad}")
                assert status == 400 and "search for" in json.loads(body)["error"], (bad, body)

            for path, wanted in (
                ("/v1/explorer/blocks?limit=0", "limit"),
                ("/v1/explorer/blocks?limit=x", "limit"),
                ("/v1/explorer/accounts/0xnope/activity", "account"),
                ("/v1/withdrawals/abc/claim", "withdrawal id"),
            ):
                status, _, body = await get(path)
                assert status == 400 and wanted in json.loads(body)["error"], (path, body)
            status, _, body = await get("/v1/withdrawals/0/claim")
            assert status == 404 and "no withdrawal 0" in json.loads(body)["error"]

            # A stream still open when the node stops ends with it (the node does not wait on it).
            stream = await http.get(api + "/v1/events")
        await asyncio.wait_for(stream.content.read(), 10)
        stream.close()
    finally:
        await http.close()
