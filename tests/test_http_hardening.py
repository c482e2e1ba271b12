"""Slow and idle HTTP clients are cut off: raw sockets against the API of a real solo node,
served with deadlines shortened to TIMEOUT. Each test waits up to WAIT for the server to close
the connection: a hang guard, not a speed claim."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from bridge import api
from tests.test_api import start_node

ON_THE_NODE = pytest.mark.asyncio(loop_scope="module")
TIMEOUT = 0.5
WAIT = 15.0

Address = tuple[str, int]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Address]:
    """A second API site on the node, from api.create_runner with short deadlines."""
    async with start_node(tmp_path_factory.mktemp("hardening") / "home") as running:
        runner = api.create_runner(
            running.node, idle_timeout=TIMEOUT, body_timeout=TIMEOUT, linger_time=TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield "127.0.0.1", runner.addresses[0][1]
        finally:
            await runner.cleanup()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (fails after WAIT)."""
    async with asyncio.timeout(WAIT):
        return await reader.read()


async def trickle(writer: asyncio.StreamWriter, byte: bytes) -> None:
    """Send one byte every 0.1 s, forever, like a slowloris client."""
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(0.1)


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response (status line + headers, body) on a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


@ON_THE_NODE
@pytest.mark.parametrize(
    ("start", "drip"),
    [(b"", b""), (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")],
    ids=["silent", "header-byte-by-byte"],
)
async def test_slow_headers_are_cut_off(server: Address, start: bytes, drip: bytes) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(start)
    dripping = asyncio.create_task(trickle(writer, drip))
    try:
        assert await read_until_closed(reader) == b""  # closed, never answered
    finally:
        dripping.cancel()
        writer.close()


@ON_THE_NODE
async def test_idle_keep_alive_connection_is_closed(server: Address) -> None:
    reader, writer = await asyncio.open_connection(*server)
    try:
        for _ in range(2):  # the connection is kept alive between quick requests
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"status": "ok"}
        assert await read_until_closed(reader) == b""
    finally:
        writer.close()


@ON_THE_NODE
@pytest.mark.parametrize("path", ["/v1/tx", "/health"])
async def test_trickled_body_is_cut_off(server: Address, path: str) -> None:
    reader, writer = await asyncio.open_connection(*server)
    method = "POST" if path == "/v1/tx" else "GET"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
    dripping = asyncio.create_task(trickle(writer, b" "))
    try:
        answer = await read_until_closed(reader)
    finally:
        dripping.cancel()
        writer.close()
    if path == "/v1/tx":  # read by the handler: 408 at the body's deadline
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"error"' in answer
    else:  # never read: answered at once, then closed after draining for a while
        assert answer.startswith(b"HTTP/1.1 200"), answer


@ON_THE_NODE
async def test_prompt_requests_still_work(server: Address) -> None:
    reader, writer = await asyncio.open_connection(*server)
    body = json.dumps({"tx": "0x00"}).encode()
    try:
        writer.write(b"POST /v1/tx HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        head, answer = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 400")  # a full, prompt body reaches the decoder
        assert "malformed" in json.loads(answer)["error"]
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        head, answer = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and json.loads(answer)["height"] >= 1
    finally:
        writer.close()
