"""The resolution extension API: what happens when validators agree on an event.

A listener broadcasts an event of some *type*; every validator that sees the same event
votes for it through the ledger. When the validators that voted hold at least
``confirmation_threshold`` of the total power, the ledger runs the type's ``resolve``
function on every node, in the same block, in the same order. Register a type once, at
import time::

    async def credit(ctx: ResolveContext) -> None:
        ...  # ctx.app, ctx.resolution, ctx.block

    register_resolution("credit_account", ResolutionConfig(resolve=credit))

A running network changes a type only at an agreed height, like a hard fork:
:func:`update_resolution` replaces its config from that block on and
:func:`retire_resolution` ends it (its pending resolutions expire in that block).

Every subpackage of ``resolutions`` is imported when the node starts, so dropping a
package in this folder is how a fork adds a resolution.

A resolution type can also answer questions over the node's HTTP API: :func:`register_query`
serves ``GET /v1/<path>`` from a function that reads the committed ledger and this node's
local events through a read-only :class:`NodeReader`, and :func:`register_readiness` adds
problems to ``GET /ready`` (``resolutions.credit`` does both: "where is my deposit" and
``orphaned_credits``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

__all__ = [
    "MAX_BODY_BYTES",
    "App",
    "BlockContext",
    "LocalEvent",
    "NodeReader",
    "PendingResolution",
    "QueryFunc",
    "ReadinessFunc",
    "Resolution",
    "ResolutionConfig",
    "ResolveContext",
    "ResolveFunc",
    "get_resolution",
    "register_query",
    "register_readiness",
    "register_resolution",
    "registered_queries",
    "registered_readiness",
    "registered_resolutions",
    "retire_resolution",
    "retired_at",
    "update_resolution",
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


@dataclass(frozen=True)
class ResolveContext:
    """What ``resolve`` is called with. Fields may be added in later versions, never removed
    or renamed, so a resolve function written today keeps working."""

    app: App  # the ledger, writes go into this block
    resolution: Resolution  # the confirmed event
    block: BlockContext  # the block executing it


ResolveFunc = Callable[[ResolveContext], Awaitable[None]]
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


# Each type's schedule: (first block height, config in force from it; None once retired),
# in height order. A height of 0 means "from genesis".
_registry: dict[str, tuple[tuple[int, ResolutionConfig | None], ...]] = {}


def _check_height(name: str, height: object) -> int:
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        raise ValueError(f"the height for resolution {name!r} must be an int >= 0, got {height!r}")
    return height


def register_resolution(name: str, config: ResolutionConfig, *, from_height: int = 0) -> None:
    """Register a resolution type under ``name`` (``[a-z0-9_]+``, unique), in force from
    block ``from_height`` (0: from genesis; before it, votes for the type are refused).

    Raises ``ValueError`` for an invalid or already registered name. All validators of a
    network must register the same types with the same configs.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid resolution name {name!r}: use 1 to 64 lower-case letters, digits and _")
    if name in _registry:
        raise ValueError(f"resolution {name!r} is already registered")
    _registry[name] = ((_check_height(name, from_height), config),)


def _schedule(name: str, at_height: int, config: ResolutionConfig | None) -> None:
    if name not in _registry:
        raise ValueError(f"resolution {name!r} is not registered")
    last_height, last = _registry[name][-1]
    if last is None:
        raise ValueError(f"resolution {name!r} is already retired")
    if _check_height(name, at_height) <= last_height:
        raise ValueError(f"resolution {name!r} already changes at height {last_height}; pick a later one")
    _registry[name] = (*_registry[name], (at_height, config))


def update_resolution(name: str, config: ResolutionConfig, *, at_height: int) -> None:
    """From block ``at_height`` on, ``name`` is confirmed and resolved with ``config``
    (Kwil's ``ModUpdate``). Resolutions still pending keep their expiration height. Every
    validator must run code with the same update before the chain reaches ``at_height``."""
    _schedule(name, at_height, config)


def retire_resolution(name: str, *, at_height: int) -> None:
    """From block ``at_height`` on, ``name`` no longer exists (Kwil's ``ModRemove``): votes
    for it are refused and its pending resolutions expire in block ``at_height``. Its
    processed records and key-value state stay readable."""
    _schedule(name, at_height, None)


def get_resolution(name: str, height: int | None = None) -> ResolutionConfig:
    """The config of ``name`` in force at block ``height`` (None: the latest scheduled one).
    ``KeyError`` if the type does not exist then (unknown, not yet added, or retired)."""
    config = None
    for start, scheduled in _registry.get(name, ()):
        if height is None or start <= height:
            config = scheduled
    if config is None:
        raise KeyError(f"no resolution registered as {name!r}") from None
    return config


def registered_resolutions(height: int | None = None) -> Mapping[str, ResolutionConfig]:
    """A read-only, name-sorted view of every resolution type in force at block ``height``
    (None: every type not retired, with its latest config)."""
    out: dict[str, ResolutionConfig] = {}
    for name in sorted(_registry):
        try:
            out[name] = get_resolution(name, height)
        except KeyError:
            pass
    return out


def retired_at(height: int) -> tuple[str, ...]:
    """The types retired exactly at block ``height`` (the ledger expires their pending
    resolutions in that block), name-sorted."""
    return tuple(
        name for name in sorted(_registry) if any(h == height and c is None for h, c in _registry[name])
    )


# -- read-only queries over the HTTP API --


@dataclass(frozen=True)
class PendingResolution:
    """A resolution that has votes but has not passed (or expired) yet."""

    id: bytes
    body: bytes
    approved_power: int  # the power of the validators that voted for it so far
    voters: tuple[bytes, ...] = ()  # their ed25519 keys, sorted


@dataclass(frozen=True)
class LocalEvent:
    """An event this node's listeners stored (local, not replicated)."""

    id: bytes
    body: bytes
    voted: bool  # this node's vote for it is in a committed block; False: seen, not yet voted


class NodeReader(Protocol):
    """What a query or readiness function may read: the ledger's *committed* state (the same
    on every node at the same height) and this node's own local events. Read-only."""

    async def get(self, namespace: str, key: bytes) -> bytes | None:
        """The committed value of ``key`` in a resolution type's key-value state."""

    async def prefix(self, namespace: str, prefix: bytes, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` committed (key, value) pairs of ``namespace`` whose key starts with
        ``prefix``, in key order."""

    async def pending(self, resolution_type: str) -> list[PendingResolution]:
        """Every pending resolution of ``resolution_type``, by id."""

    async def processed_body(self, resolution_id: bytes) -> bytes | None:
        """The body of a processed (resolved or failed) resolution, while the ledger keeps it."""

    def total_power(self) -> int:
        """The validators' total voting power."""

    def required_power(self, resolution_type: str) -> int:
        """The approved power ``resolution_type`` needs to pass now (its threshold of the total)."""

    async def local_events(self, event_type: str) -> list[LocalEvent]:
        """This node's stored events of ``event_type``, oldest first."""


QueryFunc = Callable[[NodeReader, Mapping[str, str]], Awaitable[Any]]
"""Answers ``GET /v1/<path>``: called with a :class:`NodeReader` and the path's ``{param}``
values, it returns JSON-able data (the response body, status 200). Raise ``LookupError``
for "not found" (404) and ``ValueError`` for a bad parameter (400); the message becomes the
JSON ``{"error": ...}``."""

ReadinessFunc = Callable[[NodeReader], Awaitable[list[str]]]
"""Returns readiness problems (short ``name:detail`` strings) that ``GET /ready`` lists
(503 while any is returned); an empty list when all is well."""

_PATH = re.compile(r"[a-z0-9_-]+(/([a-z0-9_-]+|\{[a-z_][a-z0-9_]*\}))*")
_queries: dict[str, QueryFunc] = {}
_readiness: list[ReadinessFunc] = []


def register_query(path: str, fn: QueryFunc) -> None:
    """Serve ``fn`` as ``GET /v1/<path>``. ``path`` is lower-case segments separated by
    ``/``; a segment ``{name}`` is a parameter, e.g. ``"deposits/{tx_hash}"``. Raises
    ``ValueError`` for an invalid or already registered path (the node's own routes win over
    a query that shadows them)."""
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError(f"invalid query path {path!r}: segments of [a-z0-9_-] or {{param}}, separated by /")
    if path in _queries:
        raise ValueError(f"query {path!r} is already registered")
    _queries[path] = fn


def registered_queries() -> Mapping[str, QueryFunc]:
    """A read-only, path-sorted view of every registered query."""
    return {path: _queries[path] for path in sorted(_queries)}


def register_readiness(fn: ReadinessFunc) -> ReadinessFunc:
    """Add ``fn``'s problems to ``GET /ready``; usable as a decorator. It runs on every
    request to ``/ready``: keep it cheap (a few key reads)."""
    _readiness.append(fn)
    return fn


def registered_readiness() -> tuple[ReadinessFunc, ...]:
    """Every registered readiness function, in registration order."""
    return tuple(_readiness)
