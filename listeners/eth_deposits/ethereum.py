"""JSON-RPC access to Ethereum for the deposit listener: raw requests through web3's
providers, failover across endpoints, and errors sorted into "retry later" and "ask for a
smaller range"."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import backoff
from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider
from web3.providers.async_base import AsyncBaseProvider
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


def _number_and_hash(block: Any) -> tuple[int, bytes] | None:
    return None if block is None else (int(block["number"], 16), bytes.fromhex(block["hash"][2:]))


class EthClient:
    """A list of endpoints used in order; a failing one hands over to the next."""

    def __init__(self, urls: tuple[str, ...], timeout: float, status: ListenerStatus, log: logging.Logger):
        self.urls, self.timeout, self.status, self.log = urls, timeout, status, log
        self._providers: list[AsyncBaseProvider | None] = [None] * len(urls)
        self._current = 0

    async def close(self) -> None:
        for provider in self._providers:
            if isinstance(provider, WebSocketProvider):
                await provider.disconnect()
            elif isinstance(provider, AsyncHTTPProvider):
                await provider.disconnect()
        self._providers = [None] * len(self.urls)

    async def _provider(self, i: int) -> AsyncBaseProvider:
        provider = self._providers[i]
        if provider is None:
            url = self.urls[i]
            if url.startswith("ws"):
                ws = WebSocketProvider(url, request_timeout=self.timeout, max_connection_retries=1)
                await ws.connect()
                provider = ws
            else:
                # Retries are ours (with backoff and failover), not the provider's.
                provider = AsyncHTTPProvider(
                    url,
                    request_kwargs={"timeout": aiohttp.ClientTimeout(total=self.timeout)},
                    exception_retry_configuration=None,
                )
                # web3's own session closes the connection after each request: a kept-alive one
                # saves a TCP (and TLS) handshake per request. Closed by disconnect().
                await provider.cache_async_session(aiohttp.ClientSession(raise_for_status=True))
            self._providers[i] = provider
        return provider

    async def _once(self, method: str, params: list[Any]) -> Any:
        """One attempt on the current endpoint; moves to the next one on a transient error."""
        return await self._attempt(self._current, method, params)

    async def _attempt(self, i: int, method: str, params: list[Any]) -> Any:
        """One attempt on endpoint ``i``."""
        try:
            provider = await self._provider(i)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn a cancellation that
            # races its timeout into TimeoutError, and a retried timeout never stops the listener.
            async with asyncio.timeout(self.timeout):
                response: Any = await provider.make_request(method, params)  # type: ignore[arg-type]
        except aiohttp.ClientResponseError as exc:
            if exc.status == 413:
                raise RangeTooLarge(f"HTTP 413 from {self.urls[i]}") from None
            if exc.status == 429:
                await self._retry_after(exc)
            self._fail_over(i)
            raise TransientError(f"HTTP {exc.status} from {self.urls[i]}") from None
        except (aiohttp.ClientError, TimeoutError, ConnectionError, OSError, ValueError) as exc:
            # Disconnects, timeouts, malformed or truncated bodies.
            self._fail_over(i)
            if isinstance(self._providers[i], WebSocketProvider):
                self._providers[i] = None  # reconnect next time
            raise TransientError(f"{type(exc).__name__} from {self.urls[i]}: {exc}") from None
        if not isinstance(response, dict):
            self._fail_over(i)
            raise TransientError(f"malformed JSON-RPC response from {self.urls[i]}")
        if "error" in response:
            error = response["error"] if isinstance(response["error"], dict) else {}
            message = str(error.get("message", response["error"]))
            refusal = error.get("code") == -32005 or _RANGE_REFUSAL.search(message)
            if method == "eth_getLogs" and refusal and not _RATE_LIMITED.search(message):
                raise _range_refusal(message)
            self._fail_over(i)
            raise TransientError(f"JSON-RPC error from {self.urls[i]}: {message}")
        if "result" not in response or (method == "eth_getLogs" and not isinstance(response["result"], list)):
            self._fail_over(i)
            raise TransientError(f"JSON-RPC response without a valid result from {self.urls[i]}")
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

    async def request(self, method: str, params: list[Any]) -> Any:
        """Retried forever; only a range refusal (for eth_getLogs) comes back to the caller."""
        return await self._retried(self._once, method, params)

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
        return int(await self.request("eth_chainId", []), 16)

    async def block_number(self) -> int:
        return int(await self.request("eth_blockNumber", []), 16)

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        """(number, hash) of a block by number or tag; None if the node does not have it."""
        ident = hex(tag) if isinstance(tag, int) else tag
        return _number_and_hash(await self.request("eth_getBlockByNumber", [ident, False]))

    async def code(self, address: str) -> bytes:
        return bytes.fromhex((await self.request("eth_getCode", [address, "latest"]))[2:])

    async def logs(self, address: str, topic: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
        params = {
            "address": address,
            "topics": [topic],
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        result: list[dict[str, Any]] = await self.request("eth_getLogs", [params])
        return result


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
                    int(log["blockNumber"], 16),
                    int(log["logIndex"], 16),
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
        return _number_and_hash(result)  # None: "no such block here"
    return json.dumps(result, sort_keys=True).lower()


def _height(method: str, result: Any) -> int:
    """The block number an eth_blockNumber or tagged eth_getBlockByNumber answer names."""
    if method == "eth_blockNumber":
        return int(result, 16)
    block = _number_and_hash(result)
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
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            return TransientError(f"unusable {method} answer from {self.urls[i]}: {exc!r}")

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

    async def request(self, method: str, params: list[Any]) -> Any:
        return await self._retried(self._round, method, params, False)

    async def block_number(self) -> int:
        return int(await self._retried(self._round, "eth_blockNumber", [], True), 16)

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        if isinstance(tag, int):  # a block's hash: agreed
            return await super().block(tag)
        # "safe" / "finalized": the lowest
        return _number_and_hash(await self._retried(self._round, "eth_getBlockByNumber", [tag, False], True))
