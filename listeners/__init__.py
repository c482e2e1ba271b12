"""The listener extension API: long-running coroutines that watch the outside world.

A listener reads an external system (an Ethereum contract, an HTTP API...) and records what
it sees with :meth:`EventStore.broadcast`. The node turns each stored event into a vote;
when enough validators voted for the same event, its resolution runs on every node.
Register a listener once, at import time::

    @register_listener("eth_deposits")
    async def listen(service: Service, store: EventStore) -> None: ...

Every subpackage of ``listeners`` is imported when the node starts, so dropping a package
in this folder is how a fork adds a listener.

An extension can also add ``bridge`` subcommands (:func:`register_command`: the escrow's
``bridge contracts deploy``, ``bridge deposit``...) and prepare a local network's outside
world (:func:`register_devnet_setup`: ``bridge devnet up`` deploys the escrow and gives every
node its ``[app.extensions.eth_deposits]`` table).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

from pydantic import BaseModel, ValidationError

__all__ = [
    "Command",
    "ConfigError",
    "DevnetContext",
    "DevnetSetupFunc",
    "EventStore",
    "ListenFunc",
    "ListenerStatus",
    "Service",
    "get_listener",
    "listener_config",
    "parse_config",
    "register_command",
    "register_devnet_setup",
    "register_listener",
    "registered_commands",
    "registered_devnet_setups",
    "registered_listeners",
    "runs_on_every_node",
]

_NAME = re.compile(r"[a-z0-9_]{1,64}")


class ConfigError(ValueError):
    """Raise it from a listener when its configuration is wrong (a missing or invalid key, the
    wrong chain id, no contract at the address): the node stops at once, whatever the restart
    policy, and logs one line, the message, with no traceback. Name the key in the message,
    e.g. ``app.extensions.my_source.url: must be an http(s) URL``; :func:`parse_config`
    raises it so. Any other exception is a failure the restart policy applies to."""


class EventStore(Protocol):
    """The node's local store, as one listener sees it. Nothing here is sent to the network
    except broadcast events, and only as votes."""

    async def broadcast(self, event_type: str, data: bytes) -> None:
        """Record an event to vote on. ``event_type`` must be a registered resolution and
        ``data`` at most ``resolutions.MAX_BODY_BYTES`` long (else ``ValueError``).
        Idempotent: the event id is a hash of (type, data), and storing the same event twice
        is a no-op."""

    async def set(self, key: bytes, value: bytes) -> None:
        """Store a value in this listener's private key-value namespace."""

    async def get(self, key: bytes) -> bytes | None:
        """Read a value from this listener's namespace; ``None`` if absent."""

    async def delete(self, key: bytes) -> None:
        """Delete a key from this listener's namespace; no error if absent."""

    def transaction(self) -> AbstractAsyncContextManager[EventStore]:
        """A store whose broadcasts and writes all land together, or not at all::

        async with store.transaction() as tx:
            await tx.broadcast("credit_account", body)
            await tx.set(b"last_block", height)
        """


class ListenerStatus:
    """What a listener tells the operator: counters (exported to ``/metrics`` as
    ``bridge_listener_events_total{listener, event}``), free-form progress fields (shown in
    ``/v1/status``) and problems (listed by ``/ready``, which answers 503 while any is set).
    The node keeps one per listener across restarts."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.info: dict[str, Any] = {}
        self.problems: set[str] = set()

    def count(self, event: str, n: int = 1) -> None:
        """Add ``n`` to the counter named ``event`` (e.g. ``"rpc_errors"``)."""
        self.counters[event] = self.counters.get(event, 0) + n

    def report(self, **fields: Any) -> None:
        """Set progress fields, e.g. ``report(last_block=123, blocks_left=4000)``."""
        self.info.update(fields)

    def problem(self, name: str, active: bool = True) -> None:
        """Raise (or with ``active=False`` clear) a readiness problem such as ``"rpc_unavailable"``."""
        if active:
            self.problems.add(name)
        else:
            self.problems.discard(name)


@dataclass(frozen=True)
class Service:
    """What the node hands a listener besides its store."""

    name: str
    logger: logging.Logger  # named ``listeners.<name>``
    # The ``[app.extensions.<name>]`` tables of config.toml, unchanged, keyed by name.
    extension_configs: Mapping[str, Mapping[str, Any]]
    identity: bytes  # this node's ed25519 public key
    chain_id: str  # the ledger's chain id
    status: ListenerStatus = field(default_factory=ListenerStatus)
    node_api: str = ""  # this node's HTTP API (http://host:port), for what the node serves

    @property
    def config(self) -> Mapping[str, Any] | None:
        """This listener's own table, or ``None`` when this node does not configure it."""
        return self.extension_configs.get(self.name)


ListenFunc = Callable[[Service, EventStore], Awaitable[None]]
"""A listener's body.

The node calls it once it is a validator *and* caught up with the network (or, for a
listener registered with ``every_node=True``, once it is caught up, validator or not). It may
run forever. It is cancelled (``asyncio.CancelledError``) when the node stops being a validator
(or falls behind) or shuts down, and called again on re-promotion: keep progress in the store
and resume from it. Hold resources with ``async with`` or ``try/finally`` so cancellation releases them.

Retry transient failures (timeouts, rate limits, disconnects) yourself. Raise
:class:`ConfigError` for a broken configuration: the node stops at once with that one line,
even under ``restart_policy = "always"``. Any other exception stops the node with its
traceback logged, or with ``restart_policy = "always"`` restarts the listener after a
backoff. If ``service.config`` is ``None`` the listener is not configured on this node: log
that and return; the node runs on.
"""

_registry: dict[str, ListenFunc] = {}
_configs: dict[str, type[BaseModel]] = {}
_every_node: set[str] = set()
Config = TypeVar("Config", bound=BaseModel)


@overload
def register_listener(
    name: str, *, config: type[BaseModel] | None = None, every_node: bool = False
) -> Callable[[ListenFunc], ListenFunc]: ...
@overload
def register_listener(
    name: str, fn: ListenFunc, *, config: type[BaseModel] | None = None, every_node: bool = False
) -> ListenFunc: ...
def register_listener(
    name: str,
    fn: ListenFunc | None = None,
    *,
    config: type[BaseModel] | None = None,
    every_node: bool = False,
) -> ListenFunc | Callable[[ListenFunc], ListenFunc]:
    """Register ``fn`` under ``name`` (``[a-z0-9_]+``, unique); usable as a decorator.

    The name is also the listener's key-value namespace and its config table's name.
    ``config`` is the pydantic model of that table: ``bridge config docs`` documents it from
    the model's docstring and its fields' descriptions, and :func:`parse_config` reads it.
    A listener runs on validators only, unless ``every_node``: then it runs on every caught-up
    node, for work that casts no vote (watching, relaying). Raises ``ValueError`` for an
    invalid or already registered name.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid listener name {name!r}: use 1 to 64 lower-case letters, digits and _")
    if name in _registry:
        raise ValueError(f"listener {name!r} is already registered")

    def add(f: ListenFunc) -> ListenFunc:
        if name in _registry:
            raise ValueError(f"listener {name!r} is already registered")
        _registry[name] = f
        if config is not None:
            _configs[name] = config
        if every_node:
            _every_node.add(name)
        return f

    return add if fn is None else add(fn)


def get_listener(name: str) -> ListenFunc:
    """The listener registered under ``name``; ``KeyError`` if there is none."""
    try:
        return _registry[name]
    except KeyError:
        raise KeyError(f"no listener registered as {name!r}") from None


def listener_config(name: str) -> type[BaseModel] | None:
    """The config model registered with listener ``name``, if any."""
    return _configs.get(name)


def parse_config(service: Service, model: type[Config]) -> Config:
    """``service.config`` validated by ``model``. A :class:`ConfigError` names every bad key
    in full (``app.extensions.NAME.key: problem``), so the operator knows what to fix."""
    prefix = f"app.extensions.{service.name}"
    try:
        return model.model_validate(dict(service.config or {}))
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(f"{'.'.join([prefix, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors())
        ) from None


def runs_on_every_node(name: str) -> bool:
    """Whether listener ``name`` was registered with ``every_node=True``."""
    return name in _every_node


def registered_listeners() -> Mapping[str, ListenFunc]:
    """A read-only, name-sorted view of every registered listener."""
    return {name: _registry[name] for name in sorted(_registry)}


# -- `bridge` subcommands and devnet setup steps contributed by extensions --


@dataclass(frozen=True)
class Command:
    """A ``bridge`` subcommand an extension registered (see :func:`register_command`)."""

    name: str
    help: str
    setup: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_commands: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    setup: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add ``bridge <name>``: ``setup`` adds its arguments (or its own subparsers) to the
    subcommand's parser, ``run`` gets the parsed arguments and returns the exit code. Raise
    :class:`ConfigError` from ``run`` for a user mistake: ``bridge`` prints ``error: <message>``
    (one line, no traceback) and exits 1. ``name`` is lower-case ``[a-z0-9-]``; raises
    ``ValueError`` for an invalid or already registered name (the node's own commands win
    over one that shadows them)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
        raise ValueError(f"invalid command name {name!r}: use lower-case letters, digits and -")
    if name in _commands:
        raise ValueError(f"command {name!r} is already registered")
    _commands[name] = Command(name, help, setup, run)


def registered_commands() -> Mapping[str, Command]:
    """A read-only, name-sorted view of every registered command."""
    return {name: _commands[name] for name in sorted(_commands)}


@dataclass(frozen=True)
class DevnetContext:
    """What a devnet setup step is given. Fields may be added later, never removed."""

    rpc_url: str  # anvil's JSON-RPC URL, as the nodes reach it
    private_key: str  # a funded key (hex) that deploys
    # The validators' Ethereum signers and powers, sorted by address: an escrow deployed with
    # them as its first set and reported under ``info["escrow"]`` turns withdrawals on.
    signers: tuple[tuple[str, int], ...] = ()


DevnetSetupFunc = Callable[[DevnetContext], Awaitable[tuple[dict[str, dict[str, Any]], dict[str, Any]]]]
"""A devnet's setup step: called once anvil runs, it deploys what the extension needs and
returns ``(tables, info)``: the ``[app.extensions.NAME]`` tables to give every node
(``{NAME: {key: value}}``) and JSON-able facts to add to the devnet's manifest (``bridge
devnet up``'s output), e.g. ``{"contracts": {...}}``. Top-level keys of ``info`` must not
clash between extensions. One key means something to the devnet: ``"escrow": {"chain_id":
int, "address": str}`` names an escrow whose first set is ``ctx.signers``; the ledger's
genesis then names it, the validators sign withdrawals for it, every node watches its
solvency and the first node relays."""

_devnet_setups: list[DevnetSetupFunc] = []


def register_devnet_setup(fn: DevnetSetupFunc) -> DevnetSetupFunc:
    """Run ``fn`` when ``bridge devnet up`` (or the compose network's one-shot
    ``bridge devnet deploy``) prepares a local network; usable as a decorator."""
    _devnet_setups.append(fn)
    return fn


def registered_devnet_setups() -> tuple[DevnetSetupFunc, ...]:
    """Every registered devnet setup step, in registration order."""
    return tuple(_devnet_setups)
