"""The resolution extension API: what happens when validators agree on an event.

A listener broadcasts an event of some *type*; every validator that sees the same event
votes for it through the ledger. When the validators that voted hold at least
``confirmation_threshold`` of the total power, the ledger runs the type's ``resolve``
function on every node, in the same block, in the same order. Register a type once, at
import time::

    register_resolution("credit_account", ResolutionConfig(resolve=credit))

Every subpackage of ``resolutions`` is imported when the node starts, so dropping a
package in this folder is how a fork adds a resolution.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

__all__ = [
    "MAX_BODY_BYTES",
    "App",
    "BlockContext",
    "Resolution",
    "ResolutionConfig",
    "ResolveFunc",
    "get_resolution",
    "register_resolution",
    "registered_resolutions",
]

_NAME = re.compile(r"[a-z0-9_]{1,64}")

MAX_BODY_BYTES = 16 * 1024
"""The largest event body a vote can carry; ``EventStore.broadcast`` refuses bigger ones."""


class App(Protocol):
    """The ledger as a resolve function sees it. Every write goes into the block's app hash.

    Accounts are ``0x``-prefixed lower-case hex strings: 20 bytes for Ethereum users, 32 for
    validator keys. Amounts are non-negative integers in the token's smallest unit.
    """

    async def balance(self, account: str) -> int:
        """The account's balance; 0 for an account never seen."""

    async def credit(self, account: str, amount: int) -> None:
        """Add ``amount`` to the balance. Raises ``ValueError`` on a negative amount."""

    async def debit(self, account: str, amount: int) -> None:
        """Subtract ``amount``. Raises ``ValueError`` if the balance is short."""

    async def get(self, key: bytes) -> bytes | None:
        """Read this resolution type's own key-value state (namespaced by type name)."""

    async def set(self, key: bytes, value: bytes) -> None:
        """Write this resolution type's own key-value state."""

    async def delete(self, key: bytes) -> None:
        """Delete a key of this resolution type's state; no error if absent."""

    async def validator_power(self, pubkey: bytes) -> int:
        """The voting power of a validator's ed25519 key; 0 if it is not a validator."""

    async def set_validator_power(self, pubkey: bytes, power: int) -> None:
        """Set a validator's power; 0 removes it. Takes effect for thresholds next block."""


@dataclass(frozen=True)
class BlockContext:
    """The block being executed: identical on every node."""

    height: int
    time_ns: int  # block time from the header, nanoseconds since the Unix epoch
    proposer: bytes  # ed25519 public key of the block's proposer
    chain_id: str


@dataclass(frozen=True)
class Resolution:
    """An event that validators voted on, as handed to ``resolve``."""

    id: bytes  # sha256 over (type, body): the same event always has the same id
    type: str
    body: bytes  # exactly the bytes the listener broadcast
    proposer: bytes  # key of the validator (or candidate) whose transaction created it
    expiration_height: int
    approved_power: int
    voters: tuple[bytes, ...]  # sorted ed25519 keys of the validators that voted


ResolveFunc = Callable[[App, Resolution, BlockContext], Awaitable[None]]
"""Applies a confirmed resolution.

Every node calls it as part of block execution, so it must be deterministic: no clock, no
randomness, no I/O outside ``app``, no floats, no iteration over unordered sets. If it
raises, all of its writes are rolled back, the failure is recorded, and the block goes on.
"""


@dataclass(frozen=True)
class ResolutionConfig:
    """How a resolution type is confirmed and applied."""

    resolve: ResolveFunc
    # Share of total validator power that must vote before ``resolve`` runs. At 2/3, any
    # set of honest validators holding more than 1/3 can block a false event.
    confirmation_threshold: Fraction = Fraction(2, 3)
    # Share of power that must have voted for an *expired* resolution for voters' fees to
    # be refunded (only used when vote fees are enabled; they default to zero).
    refund_threshold: Fraction = Fraction(1, 1)
    # Ledger blocks a resolution waits for votes before it expires. An expired event may be
    # voted again later. 14400 blocks is 48 minutes at the solo engine's 200 ms blocks.
    expiration_period: int = 14400
    # Ledger blocks a processed resolution is remembered, so that a late vote for it is a
    # no-op; after that its row is pruned (the ledger's tables stop growing with history).
    # None remembers forever. Set it only when ``resolve`` is idempotent: a pruned event
    # voted again by 2/3 of the power resolves again. At least ``expiration_period``.
    keep_processed: int | None = None
    # Within a block, confirmed resolutions of this type resolve in the order of
    # ``order(body)`` (bytes, compared as such), then of their ids. None: by id alone. A
    # function of the body only, so every node orders alike: credit_account orders by the
    # escrow's nonce, so a deep reorg that shifts deposits is untangled in chain order.
    order: Callable[[bytes], bytes] | None = None

    def __post_init__(self) -> None:
        for name in ("confirmation_threshold", "refund_threshold"):
            value = getattr(self, name)
            if not isinstance(value, Fraction) or not 0 < value <= 1:
                raise ValueError(f"{name} must be a Fraction in (0, 1], got {value!r}")
        period = self.expiration_period
        if not isinstance(period, int) or isinstance(period, bool) or period < 1:
            raise ValueError(f"expiration_period must be a positive int, got {self.expiration_period!r}")
        keep = self.keep_processed
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < period):
            raise ValueError(f"keep_processed must be None or an int >= expiration_period, got {keep!r}")


_registry: dict[str, ResolutionConfig] = {}


def register_resolution(name: str, config: ResolutionConfig) -> None:
    """Register a resolution type under ``name`` (``[a-z0-9_]+``, unique).

    Raises ``ValueError`` for an invalid or already registered name. All validators of a
    network must register the same types with the same configs.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid resolution name {name!r}: use 1 to 64 lower-case letters, digits and _")
    if name in _registry:
        raise ValueError(f"resolution {name!r} is already registered")
    _registry[name] = config


def get_resolution(name: str) -> ResolutionConfig:
    """The config registered under ``name``; ``KeyError`` if there is none."""
    try:
        return _registry[name]
    except KeyError:
        raise KeyError(f"no resolution registered as {name!r}") from None


def registered_resolutions() -> Mapping[str, ResolutionConfig]:
    """A read-only, name-sorted view of every registered resolution type."""
    return {name: _registry[name] for name in sorted(_registry)}
