"""JSON-RPC access to Ethereum for the event listener: raw requests over a kept-alive HTTP
session (web3's provider for ws), failover across endpoints or a quorum of them, answers
read strictly, and errors sorted into "retry later" and "ask for a smaller range"."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import backoff
from web3 import AsyncWeb3, WebSocketProvider
from web3.utils.subscriptions import NewHeadsSubscription

from listeners import ListenerStatus

# Messages providers use to refuse an eth_getLogs range (Infura, Alchemy, QuickNode, Ankr,
# Chainstack, geth, anvil...); code -32005 is Infura's "limit exceeded".
_RANGE_REFUSAL = re.compile(
    r"more than \d+ results|block range|range (is )?too (large|wide|big)|too many (blocks|results|logs)"
    r"|limited to a|exceed(s|ed)? .*(limit|max)|response size|query timeout|log response size",
    re.IGNORECASE,
)
# Rate limits sent as JSON-RPC errors, retried with backoff: Infura uses -32005 for these too
# ("daily request count exceeded, request rate limited", "project ID request rate exceeded").
_RATE_LIMITED = re.compile(
    r"rate.?limit|request rate|request count|too many requests|per second|capacity", re.IGNORECASE
)
_SUGGESTED = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")


class TransientError(Exception):
    """Raised when a request failed in a way that retrying later can fix."""


class ResponseTooLarge(Exception):
    """Raised when an answer is larger than MAX_RESPONSE_BYTES."""


class RangeTooLarge(Exception):
    """Raised when a provider refuses an eth_getLogs range; ``suggested`` is the range it
    proposed, if any."""

    def __init__(self, message: str, suggested: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.suggested = suggested


def _range_refusal(message: str) -> RangeTooLarge:
    match = _SUGGESTED.search(message)
    suggested = (int(match.group(1), 16), int(match.group(2), 16)) if match else None
    return RangeTooLarge(message, suggested)


_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
# Python exceptions a malformed answer raises while it is read: the endpoint's fault.
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError)
# The largest JSON-RPC answer read (providers cap eth_getLogs near 150 MB): larger is refused
# as a range that is too large (eth_getLogs) or a faulty endpoint (anything else).
MAX_RESPONSE_BYTES = 256 << 20
_HEADERS = {"Content-Type": "application/json"}
T = TypeVar("T")


def quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x1b4"); ``ValueError`` for anything else (a number, bad hex)."""
    if type(value) is not str or not _QUANTITY.fullmatch(value):
        raise ValueError(f"{value!r:.80} is not a hex quantity")
    return int(value, 16)


def data(value: Any) -> bytes:
    """JSON-RPC data ("0x..." with whole bytes); ``ValueError`` for anything else."""
    if type(value) is not str or not _DATA.fullmatch(value):
        raise ValueError(f"{value!r:.80} is not hex data")
    return bytes.fromhex(value[2:])


def number_and_hash(block: Any) -> tuple[int, bytes] | None:
    """(number, hash) of an eth_getBlockByNumber answer; None for "no such block"."""
    if block is None:
        return None
    if type(block) is not dict or type(block.get("hash")) is not str or not _HASH.fullmatch(block["hash"]):
        raise ValueError(f"{block!r:.120} is not a block with a 32-byte hash")
    return quantity(block["number"]), bytes.fromhex(block["hash"][2:])


def _same(result: Any) -> Any:
    return result


class EthClient:
    """A list of endpoints used in order; a failing one hands over to the next."""

    def __init__(self, urls: tuple[str, ...], timeout: float, status: ListenerStatus, log: logging.Logger):
        self.urls, self.timeout, self.status, self.log = urls, timeout, status, log
        self._sockets: list[WebSocketProvider | None] = [None] * len(urls)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._current = 0

    async def close(self) -> None:
        for ws in self._sockets:
            if ws is not None:
                await ws.disconnect()
        self._sockets = [None] * len(self.urls)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call over HTTP(S), on a kept-alive session (a TCP and TLS handshake
        per request saved), its body read to at most MAX_RESPONSE_BYTES."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                raise_for_status=True, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        call = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        async with self._session.post(url, data=json.dumps(call), headers=_HEADERS) as response:
            if (response.content_length or 0) > MAX_RESPONSE_BYTES:
                raise ResponseTooLarge(f"{response.content_length} bytes")
            body = bytearray()
            while chunk := await response.content.read(1 << 20):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ResponseTooLarge(f"more than {MAX_RESPONSE_BYTES} bytes")
        # A deeply nested body raises RecursionError (bridge/__init__.py keeps the limit low).
        return json.loads(body)

    async def _socket(self, i: int) -> WebSocketProvider:
        ws = self._sockets[i]
        if ws is None:
            ws = WebSocketProvider(self.urls[i], request_timeout=self.timeout, max_connection_retries=1)
            await ws.connect()
            self._sockets[i] = ws
        return ws

    async def _once(self, method: str, params: list[Any], parse: Callable[[Any], Any]) -> Any:
        """One round over the endpoints from the current one: a failing endpoint hands over to
        the next at once; only when each has failed does the caller back off."""
        start = self._current
        while True:
            i = self._current
            try:
                return self._parse(i, method, parse, await self._attempt(i, method, params))
            except TransientError:
                if self._current in (i, start):  # no other endpoint, or around the list once
                    raise

    def _parse(self, i: int | None, method: str, parse: Callable[[Any], Any], result: Any) -> Any:
        """``parse(result)``; an answer it cannot read is the endpoint's fault, like an outage."""
        try:
            return parse(result)
        except MALFORMED as exc:
            where = "the agreed answer" if i is None else self.urls[i]
            self._malformed(i)
            raise TransientError(f"unusable {method} answer from {where}: {exc!r:.200}") from None

    def _malformed(self, i: int | None) -> None:
        self.status.count("rpc_malformed")
        if i is not None:
            self._fail_over(i)

    async def _attempt(self, i: int, method: str, params: list[Any]) -> Any:
        """One attempt on endpoint ``i``: the ``result`` of a well-formed JSON-RPC answer."""
        url = self.urls[i]
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn a cancellation that
            # races its timeout into TimeoutError, and a retried timeout never stops the listener.
            async with asyncio.timeout(self.timeout):
                if url.startswith("ws"):
                    ws = await self._socket(i)
                    response: Any = await ws.make_request(method, params)  # type: ignore[arg-type]
                else:
                    response = await self._post(url, method, params)
        except aiohttp.ClientResponseError as exc:
            if exc.status == 413:
                raise RangeTooLarge(f"HTTP 413 from {url}") from None
            if exc.status == 429:
                await self._retry_after(exc)
            self._fail_over(i)
            raise TransientError(f"HTTP {exc.status} from {url}") from None
        except ResponseTooLarge as exc:
            if method == "eth_getLogs":
                raise RangeTooLarge(f"response of {exc} from {url}") from None
            self._malformed(i)
            raise TransientError(f"response of {exc} from {url}") from None
        except (
            aiohttp.ClientError,
            TimeoutError,
            ConnectionError,
            OSError,
            ValueError,
            RecursionError,
        ) as exc:
            # Disconnects, timeouts, malformed, nested or truncated bodies.
            if isinstance(exc, ValueError | RecursionError):
                self.status.count("rpc_malformed")
            self._fail_over(i)
            self._sockets[i] = None  # a websocket reconnects next time
            raise TransientError(f"{type(exc).__name__} from {url}: {exc!s:.200}") from None
        if not isinstance(response, dict):
            self._malformed(i)
            raise TransientError(f"malformed JSON-RPC response from {url}")
        if "error" in response:
            error = response["error"] if isinstance(response["error"], dict) else {}
            message = str(error.get("message", response["error"]))
            refusal = error.get("code") == -32005 or _RANGE_REFUSAL.search(message)
            if method == "eth_getLogs" and refusal and not _RATE_LIMITED.search(message):
                raise _range_refusal(message)
            self._fail_over(i)
            raise TransientError(f"JSON-RPC error from {self.urls[i]}: {message}")
        if "result" not in response or (method == "eth_getLogs" and not isinstance(response["result"], list)):
            self._malformed(i)
            raise TransientError(f"JSON-RPC response without a valid result from {url}")
        return response["result"]

    def _fail_over(self, i: int) -> None:
        if len(self.urls) > 1 and self._current == i:
            self._current = (i + 1) % len(self.urls)
            self.log.warning("switching RPC endpoint to %s", self.urls[self._current])

    @staticmethod
    async def _retry_after(exc: aiohttp.ClientResponseError) -> None:
        value = exc.headers.get("Retry-After", "") if exc.headers else ""
        if value.isdigit():
            await asyncio.sleep(min(int(value), 60))

    def _on_backoff(self, details: Any) -> None:
        self.status.count("rpc_errors")
        self.status.problem("rpc_unavailable")
        self._log_retry(details)

    def _log_retry(self, details: Any) -> None:
        if details["tries"] in (1, 5) or details["tries"] % 20 == 0:
            self.log.warning(
                "RPC request failed (attempt %d), retrying: %s", details["tries"], details["exception"]
            )

    async def _retried(self, attempt: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``attempt(*args)`` retried forever with capped, jittered exponential backoff on a
        TransientError."""
        call = backoff.on_exception(
            backoff.expo,
            TransientError,
            max_value=30,
            jitter=backoff.full_jitter,
            on_backoff=self._on_backoff,
        )(attempt)
        result = await call(*args)
        self.status.problem("rpc_unavailable", active=False)
        return result

    async def request(self, method: str, params: list[Any], parse: Callable[[Any], T] = _same) -> T:
        """``parse`` of the answer, retried forever; only a range refusal (for eth_getLogs)
        comes back to the caller. An answer that ``parse`` cannot read (it raises one of
        MALFORMED) counts as the endpoint's failure: the next endpoint is asked."""
        result: T = await self._retried(self._once, method, params, parse)
        return result

    async def watch_heads(self, wake: asyncio.Event) -> None:
        """Set ``wake`` on every new head announced by the first ws(s) endpoint, forever.

        Only a hint that the chain moved: the scan loop still polls, so a dropped
        subscription costs latency, never a deposit. Reconnects after errors.
        """
        url = next((u for u in self.urls if u.startswith("ws")), None)
        if url is None:
            return

        async def on_head(context: Any) -> None:
            wake.set()

        while True:
            try:
                async with AsyncWeb3(WebSocketProvider(url, max_connection_retries=1)) as w3:
                    await w3.subscription_manager.subscribe(NewHeadsSubscription(handler=on_head))
                    await w3.subscription_manager.handle_subscriptions(run_forever=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the hint channel: retry later
                self.log.info("newHeads subscription on %s ended: %r; polling meanwhile", url, exc)
            await asyncio.sleep(5)

    # -- typed helpers -- #

    async def chain_id(self) -> int:
        return await self.request("eth_chainId", [], quantity)

    async def block_number(self) -> int:
        return await self.request("eth_blockNumber", [], quantity)

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        """(number, hash) of a block by number or tag; None if the node does not have it."""
        ident = hex(tag) if isinstance(tag, int) else tag
        return await self.request("eth_getBlockByNumber", [ident, False], number_and_hash)

    async def code(self, address: str) -> bytes:
        return await self.request("eth_getCode", [address, "latest"], data)

    async def logs(
        self,
        address: str,
        topics: tuple[str, ...],
        from_block: int,
        to_block: int,
        parse: Callable[[list[Any]], T],
    ) -> T:
        """``parse`` of the logs of ``address`` whose first topic is one of ``topics`` in the
        range: it decodes them, and raises (one of MALFORMED) on a log it cannot read."""
        first: str | list[str] = topics[0] if len(topics) == 1 else list(topics)
        params = {
            "address": address,
            "topics": [first],
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        return await self.request("eth_getLogs", [params], parse)


class Disagreement(TransientError):
    """Raised when no ``rpc_quorum`` endpoints gave the same answer because some differ."""


def _agreement_key(method: str, result: Any) -> Any:
    """What two answers must share to agree, normalised (hex case, leading zeros, log order,
    fields a provider may add) so that honest providers formatting alike-but-not-byte-for-byte
    agree. Raises on an answer too malformed to compare."""
    if method == "eth_getLogs":
        return tuple(
            sorted(
                (
                    quantity(log["blockNumber"]),
                    quantity(log["logIndex"]),
                    str(log["blockHash"]).lower(),
                    str(log["transactionHash"]).lower(),
                    str(log["address"]).lower(),
                    tuple(str(topic).lower() for topic in log["topics"]),
                    str(log["data"]).lower(),
                    bool(log.get("removed")),
                )
                for log in result
            )
        )
    if method == "eth_getBlockByNumber":
        return number_and_hash(result)  # None: "no such block here"
    return json.dumps(result, sort_keys=True).lower()


def _height(method: str, result: Any) -> int:
    """The block number an eth_blockNumber or tagged eth_getBlockByNumber answer names."""
    if method == "eth_blockNumber":
        return quantity(result)
    block = number_and_hash(result)
    return -1 if block is None else block[0]


class QuorumClient(EthClient):
    """``quorum`` endpoints must return the same answer (logs, block hashes, chain id, code)
    before it is believed, so that one lying provider can neither invent a deposit nor hide
    one: while the honest endpoints are too few to outvote it, the listener stalls and says so
    (``rpc_disagreement``) instead. Heads are not compared (providers differ by a block or
    two) but taken conservatively: the safety point is the lowest of ``quorum`` endpoints'
    heads, so a head that runs ahead cannot push the scan past what the others have.

    ``quorum`` endpoints are asked at once (preferring those that answered well), more only
    while the answers so far cannot make a quorum.
    """

    def __init__(
        self, urls: tuple[str, ...], quorum: int, timeout: float, status: ListenerStatus, log: logging.Logger
    ):
        super().__init__(urls, timeout, status, log)
        self.quorum = quorum
        self._order = list(range(len(urls)))  # failing and outvoted endpoints move to the back

    def _fail_over(self, i: int) -> None:
        pass  # no current endpoint: every round picks from _order

    def _on_backoff(self, details: Any) -> None:
        # Endpoint failures were counted in the round; a disagreement is no outage.
        if not isinstance(details["exception"], Disagreement):
            self.status.problem("rpc_unavailable")
        self._log_retry(details)

    async def _ask(self, i: int, method: str, params: list[Any], lowest: bool) -> tuple[Any, Any] | Exception:
        """(answer, what to compare of it) from endpoint ``i``, or what went wrong."""
        try:
            result = await self._attempt(i, method, params)
            return result, _height(method, result) if lowest else _agreement_key(method, result)
        except (TransientError, RangeTooLarge) as exc:
            return exc
        except MALFORMED as exc:
            self.status.count("rpc_malformed")
            return TransientError(f"unusable {method} answer from {self.urls[i]}: {exc!r:.200}")

    async def _round(self, method: str, params: list[Any], lowest: bool) -> Any:
        """The answer ``quorum`` endpoints agree on or, with ``lowest``, the lowest of
        ``quorum`` answers."""
        answers: dict[int, tuple[Any, Any]] = {}
        failed: dict[int, Exception] = {}
        waiting = list(self._order)

        def missing() -> int:
            if lowest:
                return self.quorum - len(answers)
            return self.quorum - max(Counter(key for _, key in answers.values()).values(), default=0)

        while 0 < (need := missing()) <= len(waiting):
            ask, waiting = waiting[:need], waiting[need:]
            outcomes = await asyncio.gather(*(self._ask(i, method, params, lowest) for i in ask))
            for i, outcome in zip(ask, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    failed[i] = outcome
                    self.status.count("rpc_errors")
                else:
                    answers[i] = outcome
        keys = Counter(key for _, key in answers.values())
        if missing() <= 0:
            if lowest:
                chosen = min(answers.values(), key=lambda answer: int(answer[1]))
                outvoted: list[int] = []
            else:
                agreed = keys.most_common(1)[0][0]
                chosen = next(answer for answer in answers.values() if answer[1] == agreed)
                # An endpoint without the block lags behind: no lie.
                outvoted = [i for i, (_, key) in answers.items() if key not in (agreed, None)]
                if outvoted:
                    self.status.count("rpc_disagreements")
                    self.log.warning(
                        "%s outvoted on %s %s: %d endpoint(s) agree otherwise",
                        ", ".join(self.urls[i] for i in outvoted),
                        method,
                        params,
                        self.quorum,
                    )
                self.status.problem("rpc_disagreement", active=False)
            behind = set(failed) | set(outvoted)
            self._order.sort(key=lambda i: i in behind)  # stable: the others keep their order
            return chosen[0]
        if not lowest and len(keys.keys() - {None}) > 1:
            self.status.count("rpc_disagreements")
            self.status.problem("rpc_disagreement")
            raise Disagreement(
                f"no {self.quorum} endpoints agree on {method} {params}: "
                + "; ".join(f"{self.urls[i]} said {key!r:.200}" for i, (_, key) in answers.items())
            )
        if not lowest and None in keys:
            return None  # an endpoint that lacks the block lags behind: the caller looks again later
        refusal = next((exc for exc in failed.values() if isinstance(exc, RangeTooLarge)), None)
        if refusal is not None:
            raise refusal
        raise TransientError(
            f"fewer than {self.quorum} endpoints answered {method}: "
            + "; ".join(f"{self.urls[i]}: {exc}" for i, exc in failed.items())
        )

    async def request(self, method: str, params: list[Any], parse: Callable[[Any], T] = _same) -> T:
        async def agreed() -> T:
            result: T = self._parse(None, method, parse, await self._round(method, params, False))
            return result

        result: T = await self._retried(agreed)
        return result

    async def block_number(self) -> int:
        return quantity(await self._retried(self._round, "eth_blockNumber", [], True))

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        if isinstance(tag, int):  # a block's hash: agreed
            return await super().block(tag)
        # "safe" / "finalized": the lowest
        return number_and_hash(await self._retried(self._round, "eth_getBlockByNumber", [tag, False], True))
