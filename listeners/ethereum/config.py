"""The config table of an Ethereum event listener: where to read, how much to trust it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from eth_utils.address import is_hex_address, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from listeners import ConfigError

DAY = 86_400


class EthereumConfig(BaseModel):
    """An Ethereum event listener's table (`listeners.ethereum`): the endpoints, the contract,
    what is final and how to scan. Every mistake stops the node at start with a message
    naming the key. Subclass it to add keys of your own (``extra`` stays forbidden)."""

    # No setting means inf or nan, which TOML and float() accept.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # JSON-RPC endpoints, http(s) or ws(s). Several mean failover, in order.
    rpc_url: tuple[str, ...] = Field(
        description="JSON-RPC endpoint(s), http(s):// or ws(s)://; a list means failover, in order "
        "(or a quorum, see rpc_quorum)"
    )
    # How many endpoints must return the same answer before it is believed: 1 is failover;
    # k > 1 costs k requests per call and protects against up to k - 1 lying providers.
    rpc_quorum: int = Field(
        1,
        ge=1,
        description="how many endpoints of rpc_url (at most all) must return the same logs and block "
        "hashes before they are believed; the safety point is the lowest of their heads. 1: failover",
    )
    # The contract whose events are read.
    contract_address: str = Field(description="the contract whose events are read")
    # The chain id the endpoints must serve; checked at start.
    chain_id: int = Field(gt=0, description="the chain id every endpoint must serve; checked at start")
    # First block to scan when the listener has no progress stored (the escrow's deployment block).
    starting_height: int = Field(
        0,
        ge=0,
        description="first block to scan when no progress is stored (the contract's deployment block)",
    )
    # What counts as safe to vote on: `required_confirmations` blocks behind the head, or
    # the chain's own "safe" / "finalized" block.
    finality: Literal["confirmations", "safe", "finalized"] = Field(
        "confirmations",
        description="what is safe to vote on: `required_confirmations` blocks behind the head, or the "
        'chain\'s own "safe" / "finalized" block',
    )
    required_confirmations: int = Field(
        12, ge=0, description='blocks behind the head that are safe, with finality = "confirmations"'
    )
    # Blocks per eth_getLogs request at start; refusals halve it, successes grow it back.
    block_sync_chunk_size: int = Field(
        2000,
        ge=1,
        description="blocks per eth_getLogs request at start; refusals halve it, successes grow it",
    )
    max_chunk_size: int = Field(
        100_000,
        ge=1,
        description="the most blocks one eth_getLogs request asks for (>= block_sync_chunk_size)",
    )
    # Seconds between polls once caught up. Capped at a day: asyncio and aiohttp timers
    # overflow or never fire on huge values, and the listener would stall while "ready".
    poll_interval: float = Field(
        2.0, gt=0, le=DAY, description="seconds between polls once caught up; at most a day"
    )
    # Seconds before one JSON-RPC request is abandoned (and retried).
    request_timeout: float = Field(
        30.0,
        gt=0,
        le=DAY,
        description="seconds before one JSON-RPC request is abandoned (and retried); at most a day",
    )

    @field_validator("rpc_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list | tuple) or not urls:
            raise ValueError("must be a URL or a non-empty list of URLs")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(f"{url!r} is not an http(s):// or ws(s):// URL")
        return tuple(urls)

    @field_validator("rpc_quorum")
    @classmethod
    def _quorum(cls, value: int, info: ValidationInfo) -> int:
        urls = info.data.get("rpc_url")
        if urls is not None and value > len(urls):
            raise ValueError(f"{value} is more than the {len(urls)} endpoint(s) of rpc_url")
        return value

    @field_validator("contract_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not is_hex_address(value):
            raise ValueError(f"{value!r} is not a 0x-prefixed 20-byte hex address")
        return to_checksum_address(value)

    @model_validator(mode="after")
    def _chunks(self) -> EthereumConfig:
        if self.max_chunk_size < self.block_sync_chunk_size:
            raise ValueError("max_chunk_size must be at least block_sync_chunk_size")
        return self

    @classmethod
    def parse(cls, table: Mapping[str, Any], prefix: str) -> Self:
        """Validate a config table; errors name the full key, e.g. ``<prefix>.chain_id``."""
        try:
            return cls.model_validate(dict(table))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join([prefix, *map(str, e['loc'])]) if e['loc'] else prefix}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(problems) from None
