"""A fault-injecting JSON-RPC proxy, put between the code under test and a real node (anvil).

It forwards JSON-RPC POSTs (single and batch) to ``upstream``, counts requests per method,
logs every ``eth_getLogs`` range with its outcome, and injects faults that can be switched
on and off, and tuned, while it runs::

    async with RpcProxy(anvil.url, seed=1) as proxy:
        proxy.range_limit.on(max_range=1000)          # "exceed maximum block range: 1000"
        proxy.result_limit.on(max_results=50)         # Infura's -32005 "more than N results"
        proxy.rate_limited.on(rate=0.3, retry_after=1)
        proxy.lagging_head.on(blocks=5)               # eth_blockNumber 5 behind upstream
        proxy.fabricated_log.on(block=120)            # a Deposit that never happened, in block 120
        ...
        proxy.off()                                   # every fault off

Two kinds of faults, each a small class with ``enabled``, ``rate`` (0..1, drawn from the
proxy's seeded random) and ``methods`` (``None``: every method):

* :class:`CallFault` works on one JSON-RPC call (each call of a batch on its own) and wraps
  the forwarding of that call, so it can refuse a call, answer it itself or rewrite the
  upstream answer: limits, errors, and lies (a head that lags or jumps back; a fabricated
  ``Deposit`` log, a real one left out, a wrong amount).
* :class:`HttpFault` works on one HTTP exchange: status codes, dropped connections, delays,
  broken bodies.

Also a command (``python -m tests.rpcproxy --upstream URL --port N --max-logs 10000
--max-range 1000 ...``) with an HTTP control endpoint: ``GET /_proxy`` returns the stats
and fault settings, ``POST /_proxy/faults/<name>`` with a JSON object sets a fault's fields
(``{"enabled": true, "rate": 0.5}``), ``POST /_proxy/reset`` clears the stats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from eth_utils.crypto import keccak

__all__ = [
    "CallFault",
    "Disconnect",
    "FabricatedLog",
    "HeadJumpBack",
    "HttpFault",
    "LaggingHead",
    "LogsQuery",
    "LogsRangeLimit",
    "LogsResultLimit",
    "Malformed",
    "MalformedJson",
    "NestedJson",
    "OmittedLog",
    "Oversized",
    "RateLimited",
    "RpcError",
    "RpcProxy",
    "ServerError",
    "Slow",
    "TruncatedBody",
    "WrongAmount",
]

Json = Any
Forward = Callable[[], Awaitable[Json]]  # forwards the call upstream; returns its response object
Body = Callable[[], Awaitable[bytes]]  # forwards the whole exchange; returns the body to send
DEPOSIT_TOPIC = "0x" + keccak(text="Deposit(uint256,address,address,uint256)").hex()


class ProxyError(Exception):
    """Raised when the upstream cannot be reached; the proxy answers HTTP 502."""


@dataclass
class LogsQuery:
    """One eth_getLogs call the proxy saw: the block range and what it answered (``ok``,
    ``refused``, ``error``, or the HTTP fault that replaced the answer) and who asked."""

    from_block: int
    to_block: int
    outcome: str = "pending"
    results: int = 0
    client: str = ""  # the client's "host:port": tells one connection (or process) from another


class Fault:
    """Base of every fault: on/off, a rate and the methods it applies to."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        enabled: bool = False,
        rate: float = 1.0,
        methods: set[str] | None = None,
        limit: int | None = None,
    ):
        self.enabled, self.rate, self.methods = enabled, rate, methods
        self.limit = limit  # fire at most this many times (None: no limit); 1 is "a lie on one call"
        self.hits = 0  # times the fault fired
        self.hits_by_method: Counter[str] = Counter()

    def on(self, **settings: Any) -> Fault:
        """Enable the fault, setting any of its fields (``rate=0.5``, ``max_range=100``...)."""
        self.set(enabled=True, **settings)
        return self

    def off(self) -> None:
        self.set(enabled=False)

    def set(self, **settings: Any) -> None:
        for key, value in settings.items():
            if key.startswith(("_", "hits")) or not hasattr(self, key):
                raise AttributeError(f"fault {self.name!r} has no setting {key!r}")
            if key == "methods" and value is not None:
                value = set(value)
            setattr(self, key, value)
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, not {self.rate}")

    def settings(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "hits_by_method"}
        if out.get("methods") is not None:
            out["methods"] = sorted(out["methods"])
        return out

    def applies(self, methods: list[str]) -> bool:
        return self.enabled and (self.methods is None or any(m in self.methods for m in methods))

    def fires(self, methods: list[str], rng: random.Random) -> bool:
        """Whether the fault strikes this call (or exchange); counted in ``hits``."""
        if not self.applies(methods) or (self.limit is not None and self.hits >= self.limit):
            return False
        if self.rate < 1.0 and rng.random() >= self.rate:
            return False
        self.hits += 1
        self.hits_by_method.update(methods)
        return True


def _error(call: Json, code: int, message: str) -> Json:
    return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": code, "message": message}}


# -- faults on one JSON-RPC call -- #


class CallFault(Fault):
    """Wraps the forwarding of one call: return ``await forward()`` to pass it on, possibly
    rewritten, or an answer of your own."""

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        return await forward()


class RpcError(CallFault):
    """A JSON-RPC error that is not a range limit (by default geth's "header not found")."""

    name = "rpc_error"

    def __init__(self, *, code: int = -32000, message: str = "header not found", **kw: Any) -> None:
        super().__init__(**kw)
        self.code, self.message = code, message

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        if self.fires([call.get("method", "")], proxy.rng):
            return _error(call, self.code, self.message)
        return await forward()


class Malformed(CallFault):
    """Valid JSON that is no valid answer: the upstream answer spoiled as ``mode`` says.

    * ``number``: a JSON number (12345) where a hex string is due: the result itself, a
      block's ``hash``, a log's ``data``;
    * ``bad_hex``: ``"0xnothex"`` there instead (a log's nonce topic: ``"0xzz"``);
    * ``missing``: no ``result`` at all; a block without ``hash``; a log without
      ``transactionHash``;
    * ``wrong_type``: an object where a string is due, a list for a block, a string for a log.

    Logs are spoiled only in answers that hold one (the first log).
    """

    name = "malformed"
    MODES: ClassVar[tuple[str, ...]] = ("number", "bad_hex", "missing", "wrong_type")

    def __init__(self, *, mode: str = "number", **kw: Any) -> None:
        super().__init__(**kw)
        self.mode = mode

    def set(self, **settings: Any) -> None:
        super().set(**settings)
        if self.mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}, not {self.mode!r}")

    def spoil(self, response: dict[str, Any]) -> Json:
        """``response`` spoiled, or None when it holds nothing to spoil (an empty log list)."""
        result, mode = response.get("result"), self.mode
        if mode == "missing" and not isinstance(result, dict | list):
            return {k: v for k, v in response.items() if k != "result"}
        bad: Any = {"number": 12345, "bad_hex": "0xnothex", "wrong_type": {"hex": result}}.get(mode)
        if isinstance(result, str):
            return {**response, "result": bad}
        if isinstance(result, dict):  # a block
            if mode == "wrong_type":
                return {**response, "result": list(result.values())}
            block = {k: v for k, v in result.items() if k != "hash"}
            return {**response, "result": block if mode == "missing" else {**block, "hash": bad}}
        if isinstance(result, list) and result and isinstance(result[0], dict):  # logs
            log = dict(result[0])
            if mode == "wrong_type":
                spoiled: Any = json.dumps(log)
            elif mode == "missing":
                spoiled = {k: v for k, v in log.items() if k != "transactionHash"}
            elif mode == "bad_hex":
                spoiled = {**log, "topics": [log["topics"][0], "0xzz", *log["topics"][2:]]}
            else:
                spoiled = {**log, "data": bad}
            return {**response, "result": [spoiled, *result[1:]]}
        return None

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        response = await forward()
        method = str(call.get("method", ""))
        if not isinstance(response, dict) or "result" not in response or not self.applies([method]):
            return response
        spoiled = self.spoil(response)
        if spoiled is None or not self.fires([method], proxy.rng):
            return response
        return spoiled


class LogsRangeLimit(CallFault):
    """Refuses eth_getLogs ranges of more than ``max_range`` blocks, before asking upstream."""

    name = "range_limit"
    MESSAGES: ClassVar[tuple[str, ...]] = ("block range is too large", "exceed maximum block range: {max}")

    def __init__(self, *, max_range: int = 1000, code: int = -32000, message: str | None = None, **kw: Any):
        super().__init__(methods={"eth_getLogs"}, **kw)
        self.max_range, self.code = max_range, code
        self.message = message  # None: one of MESSAGES at random

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        if self.applies(["eth_getLogs"]) and call.get("method") == "eth_getLogs":
            start, end = await proxy.logs_range(call)
            if end - start + 1 > self.max_range and self.fires(["eth_getLogs"], proxy.rng):
                template = self.message or proxy.rng.choice(self.MESSAGES)
                return _error(call, self.code, template.format(max=self.max_range))
        return await forward()


class LogsResultLimit(CallFault):
    """Infura's eth_getLogs limit: more than ``max_results`` logs is refused with -32005,
    with a suggested range (ending before the block of log ``max_results + 1``) at rate
    ``suggest_rate``."""

    name = "result_limit"

    def __init__(self, *, max_results: int = 10_000, suggest_rate: float = 0.5, **kw: Any) -> None:
        super().__init__(methods={"eth_getLogs"}, **kw)
        self.max_results, self.suggest_rate = max_results, suggest_rate

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        response = await forward()
        result = response.get("result") if isinstance(response, dict) else None
        if not isinstance(result, list) or len(result) <= self.max_results:
            return response
        if not self.fires(["eth_getLogs"], proxy.rng):
            return response
        message = f"query returned more than {self.max_results} results."
        if proxy.rng.random() < self.suggest_rate:
            start, _ = await proxy.logs_range(call)
            end = max(start, int(result[self.max_results]["blockNumber"], 16) - 1)
            message += f" Try with this block range [{hex(start)}, {hex(end)}]."
        return _error(call, -32005, message)


# -- lies: well-formed answers that are not true -- #


class _HeadLie(CallFault):
    """Claims a head other than upstream's: eth_blockNumber answers ``claimed()``; with
    ``hide_blocks`` eth_getBlockByNumber acts like a node at that head too (null for a number
    above it; for a tag such as "latest" or "safe" naming a block above it, the block at it)."""

    def __init__(self, *, blocks: int, hide_blocks: bool = True, **kw: Any) -> None:
        super().__init__(methods={"eth_blockNumber", "eth_getBlockByNumber"}, **kw)
        self.blocks, self.hide_blocks = blocks, hide_blocks

    async def claimed(self, proxy: RpcProxy, real: int) -> int:
        raise NotImplementedError

    def seen(self, real: int) -> None:
        """Upstream's head, on every eth_blockNumber that passes, on or off."""

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        method = call.get("method")
        if method == "eth_blockNumber":
            response = await forward()
            result = response.get("result") if isinstance(response, dict) else None
            if not isinstance(result, str):
                return response
            self.seen(int(result, 16))
            if not self.fires([method], proxy.rng):
                return response
            return {**response, "result": hex(await self.claimed(proxy, int(result, 16)))}
        if method != "eth_getBlockByNumber" or not self.hide_blocks or not self.applies([method]):
            return await forward()
        response = await forward()
        block = response.get("result") if isinstance(response, dict) else None
        if not isinstance(block, dict):
            return response
        head = await self.claimed(proxy, await proxy.upstream_head())
        if int(block["number"], 16) <= head or not self.fires([method], proxy.rng):
            return response
        params = call.get("params") or ["latest"]
        if isinstance(params[0], str) and params[0].startswith("0x"):
            return {**response, "result": None}
        return await proxy.upstream_call({**call, "params": [hex(head), *params[1:]]})


class LaggingHead(_HeadLie):
    """A node ``blocks`` behind upstream (negative: a head that runs ahead)."""

    name = "lagging_head"

    def __init__(self, *, blocks: int = 5, **kw: Any) -> None:
        super().__init__(blocks=blocks, **kw)

    async def claimed(self, proxy: RpcProxy, real: int) -> int:
        return max(0, real - self.blocks)


class HeadJumpBack(_HeadLie):
    """A head that drops ``blocks`` below the highest one the proxy passed on, when the fault
    first fires, and stays there (a node restored from an old snapshot); at a rate below 1 the
    answers alternate between it and the real head (a load balancer over a stale and a fresh
    node). Switched off and on again, it jumps back anew."""

    name = "head_jump_back"

    def __init__(self, *, blocks: int = 10, **kw: Any) -> None:
        super().__init__(blocks=blocks, **kw)
        self._highest = 0
        self._frozen: int | None = None

    def set(self, **settings: Any) -> None:
        super().set(**settings)
        if not self.enabled or "blocks" in settings:
            self._frozen = None

    def seen(self, real: int) -> None:
        self._highest = max(self._highest, real)

    async def claimed(self, proxy: RpcProxy, real: int) -> int:
        if self._frozen is None:
            self._frozen = max(0, max(self._highest, real) - self.blocks)
        return self._frozen


def _deposit_nonce(log: Json) -> int | None:
    """The escrow nonce of a Deposit log; None for anything else."""
    try:
        topics = log["topics"]
        return int(topics[1], 16) if len(topics) == 4 and topics[0].lower() == DEPOSIT_TOPIC else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _victim(logs: list[Json], nonce: int | None) -> int | None:
    """Index of the Deposit log with escrow nonce ``nonce`` (None: the first Deposit log)."""
    for i, log in enumerate(logs):
        found = _deposit_nonce(log)
        if found is not None and (nonce is None or found == nonce):
            return i
    return None


def _word(value: int | str) -> str:
    return "0x" + (
        f"{value:064x}" if isinstance(value, int) else value.lower().removeprefix("0x").rjust(64, "0")
    )


class _LogsLie(CallFault):
    def __init__(self, **kw: Any) -> None:
        super().__init__(methods={"eth_getLogs"}, **kw)

    async def call(self, proxy: RpcProxy, call: Json, forward: Forward) -> Json:
        response = await forward()
        logs = response.get("result") if isinstance(response, dict) else None
        if (
            not isinstance(logs, list)
            or call.get("method") != "eth_getLogs"
            or not self.applies(["eth_getLogs"])
        ):
            return response
        lied = await self.lie(proxy, call, logs)
        return response if lied is None else {**response, "result": lied}

    async def lie(self, proxy: RpcProxy, call: Json, logs: list[Json]) -> list[Json] | None:
        """The logs to answer instead, or None to tell the truth (call ``fires`` to lie)."""
        raise NotImplementedError


class FabricatedLog(_LogsLie):
    """Adds a Deposit that never happened to the eth_getLogs answers whose range holds
    ``block`` (None: the last block of every range), with escrow ``nonce`` (None: 10**9 + the
    block), ``sender``, ``recipient`` and ``amount``, at ``log_index``. The block hash is the
    real one and the transaction hash is made up from the block and nonce, so that two proxies
    told the same lie tell it alike."""

    name = "fabricated_log"

    def __init__(
        self,
        *,
        block: int | None = None,
        nonce: int | None = None,
        sender: str = "0x" + "5e" * 20,
        recipient: str = "0x" + "fa" * 20,
        amount: int = 10**18,
        log_index: int = 0xFA0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.block, self.nonce, self.sender, self.recipient = block, nonce, sender, recipient
        self.amount, self.log_index = amount, log_index

    async def lie(self, proxy: RpcProxy, call: Json, logs: list[Json]) -> list[Json] | None:
        start, end = await proxy.logs_range(call)
        block = end if self.block is None else self.block
        if not start <= block <= end:
            return None
        header = await proxy.upstream_call(
            {"jsonrpc": "2.0", "id": 0, "method": "eth_getBlockByNumber", "params": [hex(block), False]}
        )
        if not isinstance(header.get("result"), dict) or not self.fires(["eth_getLogs"], proxy.rng):
            return None
        flt = call["params"][0]
        address = flt.get("address") or "0x" + "00" * 20
        nonce = 10**9 + block if self.nonce is None else self.nonce
        fake = {
            "address": address[0] if isinstance(address, list) else address,
            "topics": [DEPOSIT_TOPIC, _word(nonce), _word(self.sender), _word(self.recipient)],
            "data": _word(self.amount),
            "blockNumber": hex(block),
            "blockHash": header["result"]["hash"],
            "transactionHash": "0x" + keccak(text=f"fabricated {block} {nonce}").hex(),
            "transactionIndex": "0x0",
            "logIndex": hex(self.log_index),
            "removed": False,
        }
        return sorted([*logs, fake], key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))


class OmittedLog(_LogsLie):
    """Leaves the Deposit log with escrow nonce ``nonce`` (None: the first one of every answer)
    out of eth_getLogs answers."""

    name = "omitted_log"

    def __init__(self, *, nonce: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.nonce = nonce

    async def lie(self, proxy: RpcProxy, call: Json, logs: list[Json]) -> list[Json] | None:
        i = _victim(logs, self.nonce)
        if i is None or not self.fires(["eth_getLogs"], proxy.rng):
            return None
        return logs[:i] + logs[i + 1 :]


class WrongAmount(_LogsLie):
    """Changes the amount of the Deposit log with escrow nonce ``nonce`` (None: the first one
    of every answer) to ``amount`` (None: ten times the real one)."""

    name = "wrong_amount"

    def __init__(self, *, nonce: int | None = None, amount: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.nonce, self.amount = nonce, amount

    async def lie(self, proxy: RpcProxy, call: Json, logs: list[Json]) -> list[Json] | None:
        i = _victim(logs, self.nonce)
        if i is None or not self.fires(["eth_getLogs"], proxy.rng):
            return None
        amount = int(logs[i]["data"], 16) * 10 if self.amount is None else self.amount
        return [*logs[:i], {**logs[i], "data": _word(amount)}, *logs[i + 1 :]]


# -- faults on one HTTP exchange -- #


class HttpFault(Fault):
    """Replaces (or delays) one HTTP exchange. ``forward`` produces the upstream body after the
    call faults; return a response, or ``None`` to let the exchange through."""

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        return None


class RateLimited(HttpFault):
    """HTTP 429 with a Retry-After header (seconds; ``None`` for no header)."""

    name = "rate_limited"

    def __init__(self, *, retry_after: int | None = 1, **kw: Any) -> None:
        super().__init__(**kw)
        self.retry_after = retry_after

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return web.json_response(
            {"jsonrpc": "2.0", "id": None, "error": {"code": 429, "message": "Too Many Requests"}},
            status=429,
            headers=headers,
        )


class ServerError(HttpFault):
    """An HTTP error status (500 by default; 502, 503...)."""

    name = "server_error"

    def __init__(self, *, status: int = 500, **kw: Any) -> None:
        super().__init__(**kw)
        self.status = status

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        return web.Response(status=self.status, text="upstream trouble")


class Disconnect(HttpFault):
    """Closes the connection without answering."""

    name = "disconnect"

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        assert request.transport is not None
        request.transport.close()
        raise _Dropped


class Slow(HttpFault):
    """Waits ``delay`` seconds before answering (past the client's timeout, or just slow)."""

    name = "slow"

    def __init__(self, *, delay: float = 60.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay = delay

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if self.fires(methods, proxy.rng):
            await asyncio.sleep(self.delay)
        return None


class MalformedJson(HttpFault):
    """HTTP 200 with a body that is not JSON."""

    name = "malformed_json"

    def __init__(self, *, body: str = '{"jsonrpc": "2.0", "id": 1, "result": [{"oops', **kw: Any) -> None:
        super().__init__(**kw)
        self.body = body

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        return web.Response(text=self.body, content_type="application/json")


class NestedJson(HttpFault):
    """HTTP 200 with valid JSON nested ``depth`` arrays deep: a recursive decoder's stack
    overflows (a segfault of a process with a raised recursion limit)."""

    name = "nested_json"

    def __init__(self, *, depth: int = 100_000, **kw: Any) -> None:
        super().__init__(**kw)
        self.depth = depth

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        body = '{"jsonrpc": "2.0", "id": 1, "result": ' + "[" * self.depth + "]" * self.depth + "}"
        return web.Response(text=body, content_type="application/json")


class Oversized(HttpFault):
    """The upstream answer padded with whitespace (still valid JSON) to ``size`` bytes."""

    name = "oversized"

    def __init__(self, *, size: int = 64 << 20, **kw: Any) -> None:
        super().__init__(**kw)
        self.size = size

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        body = await forward()
        return web.Response(body=body + b" " * max(0, self.size - len(body)), content_type="application/json")


class TruncatedBody(HttpFault):
    """The upstream answer with a Content-Length of the whole body, cut in half and the
    connection closed."""

    name = "truncated_body"

    async def exchange(
        self, proxy: RpcProxy, request: web.Request, methods: list[str], forward: Body
    ) -> web.StreamResponse | None:
        if not self.fires(methods, proxy.rng):
            return None
        body = await forward()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        raise _Dropped


class _Dropped(Exception):
    """The exchange ended by closing the connection."""


# -- the proxy -- #


class RpcProxy:
    """See the module docstring. Use as an async context manager, or ``start()`` / ``stop()``."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0) -> None:
        self.upstream, self.host, self.port = upstream, host, port
        self.rng = random.Random(seed)
        self.url = ""
        # Call faults, in the order they wrap a call (the first one sees the call first).
        self.rpc_error = RpcError()
        self.malformed = Malformed()
        self.range_limit = LogsRangeLimit()
        self.result_limit = LogsResultLimit()
        # Lies, innermost: the limits above see the lied answer.
        self.lagging_head = LaggingHead()
        self.head_jump_back = HeadJumpBack()
        self.fabricated_log = FabricatedLog()
        self.omitted_log = OmittedLog()
        self.wrong_amount = WrongAmount()
        # HTTP faults, tried in order; the first that answers wins.
        self.disconnect = Disconnect()
        self.rate_limited = RateLimited()
        self.server_error = ServerError()
        self.slow = Slow()
        self.malformed_json = MalformedJson()
        self.nested_json = NestedJson()
        self.oversized = Oversized()
        self.truncated_body = TruncatedBody()
        self.calls: Counter[str] = Counter()  # JSON-RPC calls per method
        self.http_requests = 0
        self.clients: set[str] = set()  # host:port of each TCP connection requests came on
        self.logs: list[LogsQuery] = []  # every eth_getLogs range, in arrival order
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    # -- control -- #

    @property
    def call_faults(self) -> list[CallFault]:
        return [
            self.rpc_error,
            self.malformed,
            self.range_limit,
            self.result_limit,
            self.lagging_head,
            self.head_jump_back,
            self.fabricated_log,
            self.omitted_log,
            self.wrong_amount,
        ]

    @property
    def http_faults(self) -> list[HttpFault]:
        return [
            self.disconnect,
            self.rate_limited,
            self.server_error,
            self.slow,
            self.malformed_json,
            self.nested_json,
            self.oversized,
            self.truncated_body,
        ]

    def fault(self, name: str) -> Fault:
        for f in [*self.call_faults, *self.http_faults]:
            if f.name == name:
                return f
        raise KeyError(f"no fault named {name!r}")

    def off(self) -> None:
        """Switch every fault off."""
        for f in [*self.call_faults, *self.http_faults]:
            f.off()

    def reset_stats(self) -> None:
        self.calls.clear()
        self.logs.clear()
        self.http_requests = 0
        self.clients.clear()

    @property
    def range_refusals(self) -> int:
        return sum(1 for q in self.logs if q.outcome == "refused")

    def stats(self) -> dict[str, Any]:
        return {
            "http_requests": self.http_requests,
            "connections": len(self.clients),
            "calls": dict(self.calls),
            "logs": [asdict(q) for q in self.logs],
            "faults": {f.name: f.settings() for f in [*self.call_faults, *self.http_faults]},
        }

    # -- lifecycle -- #

    async def start(self) -> RpcProxy:
        # No total timeout upstream: a slow upstream is the client's problem to time out.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        app.router.add_get("/_proxy", self._control_get)
        app.router.add_post("/_proxy/faults/{name}", self._control_fault)
        app.router.add_post("/_proxy/reset", self._control_reset)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RpcProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- forwarding -- #

    async def upstream_call(self, call: Json) -> Json:
        """Send one JSON value (a call or a batch) upstream as is; its decoded answer."""
        assert self._session is not None, "proxy not started"
        try:
            async with self._session.post(self.upstream, json=call) as response:
                return await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise ProxyError(f"upstream {self.upstream}: {exc}") from exc

    async def upstream_head(self) -> int:
        answer = await self.upstream_call({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"})
        return int(answer["result"], 16)

    async def logs_range(self, call: Json) -> tuple[int, int]:
        """The (from, to) block numbers of an eth_getLogs call, tags resolved upstream."""
        params = call.get("params") or [{}]
        flt = params[0] if params and isinstance(params[0], dict) else {}
        if "blockHash" in flt:
            return 0, 0
        head: int | None = None

        async def number(tag: Any) -> int:
            nonlocal head
            if isinstance(tag, str) and tag.startswith("0x"):
                return int(tag, 16)
            if tag == "earliest":
                return 0
            if head is None:
                head = await self.upstream_head()
            return head

        return await number(flt.get("fromBlock", "latest")), await number(flt.get("toBlock", "latest"))

    async def _one(self, call: Json, queries: list[LogsQuery], client: str) -> Json:
        """One call through the call faults; its eth_getLogs range goes to ``queries`` too."""
        if not isinstance(call, dict):
            return _error({}, -32600, "invalid request")
        method = str(call.get("method", ""))
        self.calls[method] += 1
        query: LogsQuery | None = None
        if method == "eth_getLogs":
            try:
                query = LogsQuery(*await self.logs_range(call), client=client)
            except (ProxyError, KeyError, TypeError, ValueError):
                query = LogsQuery(-1, -1, client=client)
            self.logs.append(query)
            queries.append(query)

        async def upstream() -> Json:
            return await self.upstream_call(call)

        forward: Forward = upstream
        for fault in reversed(self.call_faults):
            forward = _wrap(fault, self, call, forward)
        response = await forward()
        if query is not None:
            error = response.get("error") if isinstance(response, dict) else None
            if error is None:
                result = response.get("result") if isinstance(response, dict) else None
                query.outcome, query.results = "ok", len(result) if isinstance(result, list) else 0
            else:
                message = str(error.get("message", "")) if isinstance(error, dict) else ""
                limit = isinstance(error, dict) and (error.get("code") == -32005 or "range" in message)
                query.outcome = "refused" if limit else "error"
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.http_requests += 1
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            return web.json_response(_error({}, -32700, "parse error"), status=400)
        batch = isinstance(payload, list)
        calls = payload if batch else [payload]
        methods = [str(c.get("method", "")) if isinstance(c, dict) else "" for c in calls]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client = f"{peer[0]}:{peer[1]}" if peer else ""
        self.clients.add(client)
        queries: list[LogsQuery] = []
        forwarded = False

        async def forward() -> bytes:
            nonlocal forwarded
            forwarded = True
            answers = [await self._one(c, queries, client) for c in calls]
            return json.dumps(answers if batch else answers[0]).encode()

        def mark(outcome: str) -> None:
            """Record an HTTP fault as the outcome of the calls it answered."""
            if not forwarded:  # the fault answered before the calls were forwarded: count them here
                self.calls.update(methods)
                for method in methods:
                    if method == "eth_getLogs":
                        queries.append(LogsQuery(-1, -1, client=client))
                        self.logs.append(queries[-1])
            for query in queries:
                query.outcome = outcome

        try:
            for fault in self.http_faults:
                response = await fault.exchange(self, request, methods, forward)
                if response is not None:
                    mark(fault.name)
                    return response
            body = await forward()
        except _Dropped:
            mark("dropped")
            raise asyncio.CancelledError from None
        except ProxyError as exc:
            return web.Response(status=502, text=str(exc))
        return web.Response(body=body, content_type="application/json")

    # -- HTTP control -- #

    async def _control_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_fault(self, request: web.Request) -> web.Response:
        try:
            fault = self.fault(request.match_info["name"])
            settings = await request.json()
            if not isinstance(settings, dict):
                raise ValueError("body must be a JSON object")
            fault.set(**settings)
        except (KeyError, AttributeError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(fault.settings())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})


def _wrap(fault: CallFault, proxy: RpcProxy, call: Json, inner: Forward) -> Forward:
    async def forward() -> Json:
        return await fault.call(proxy, call, inner)

    return forward


# -- command line -- #


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.rpcproxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="the JSON-RPC URL to forward to")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-logs", type=int, help="refuse eth_getLogs returning more results (-32005)")
    p.add_argument("--suggest-rate", type=float, default=0.5, help="how often -32005 suggests a range")
    p.add_argument("--max-range", type=int, help="refuse eth_getLogs ranges of more blocks")
    p.add_argument("--rpc-error", type=float, metavar="RATE", help="JSON-RPC -32000 'header not found'")
    p.add_argument("--rate-limited", type=float, metavar="RATE", help="HTTP 429 with Retry-After: 1")
    p.add_argument("--server-error", type=float, metavar="RATE", help="HTTP 500")
    p.add_argument("--disconnect", type=float, metavar="RATE", help="close the connection")
    p.add_argument("--slow", type=float, metavar="RATE", help="delay the answer by --delay seconds")
    p.add_argument("--delay", type=float, default=60.0)
    p.add_argument("--malformed-json", type=float, metavar="RATE", help="a 200 that is not JSON")
    p.add_argument("--truncated-body", type=float, metavar="RATE", help="half a body, then close")
    p.add_argument("--lagging-head", type=float, metavar="RATE", help="a head --lag blocks behind")
    p.add_argument("--lag", type=int, default=5, help="blocks behind upstream (negative: ahead)")
    p.add_argument("--head-jump-back", type=float, metavar="RATE", help="a head that drops --jump blocks")
    p.add_argument("--jump", type=int, default=10)
    p.add_argument("--fabricated-log", type=float, metavar="RATE", help="add a Deposit that never happened")
    p.add_argument(
        "--lie-block", type=int, help="the fabricated Deposit's block (default: each range's last)"
    )
    p.add_argument("--omitted-log", type=float, metavar="RATE", help="leave a Deposit log out")
    p.add_argument("--wrong-amount", type=float, metavar="RATE", help="ten times a Deposit's amount")
    p.add_argument("--lie-nonce", type=int, help="the escrow nonce omitted or changed (default: the first)")
    return p


def configure(proxy: RpcProxy, args: argparse.Namespace) -> None:
    if args.max_logs is not None:
        proxy.result_limit.on(max_results=args.max_logs, suggest_rate=args.suggest_rate)
    if args.max_range is not None:
        proxy.range_limit.on(max_range=args.max_range)
    simple = ("rpc_error", "rate_limited", "server_error", "disconnect", "malformed_json", "truncated_body")
    for name in simple:
        rate = getattr(args, name)
        if rate is not None:
            proxy.fault(name).on(rate=rate)
    if args.slow is not None:
        proxy.slow.on(rate=args.slow, delay=args.delay)
    if args.lagging_head is not None:
        proxy.lagging_head.on(rate=args.lagging_head, blocks=args.lag)
    if args.head_jump_back is not None:
        proxy.head_jump_back.on(rate=args.head_jump_back, blocks=args.jump)
    if args.fabricated_log is not None:
        proxy.fabricated_log.on(rate=args.fabricated_log, block=args.lie_block)
    for name in ("omitted_log", "wrong_amount"):
        rate = getattr(args, name)
        if rate is not None:
            proxy.fault(name).on(rate=rate, nonce=args.lie_nonce)


async def _serve(args: argparse.Namespace) -> None:
    async with RpcProxy(args.upstream, host=args.host, port=args.port, seed=args.seed) as proxy:
        configure(proxy, args)
        print(json.dumps({"url": proxy.url, "faults": proxy.stats()["faults"]}), flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    try:
        asyncio.run(_serve(_parser().parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
