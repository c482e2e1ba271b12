"""Starts listeners while the node is an active validator (those registered with
``every_node=True``: while it is caught up), and cancels them when it no longer is.

A listener that raises :class:`listeners.ConfigError` (misconfiguration) stops the node
whatever the policy: restarting cannot fix a config file, and the node reports it in one
line, without a traceback. Any other exception stops the node too (logged with its
traceback), unless ``restart_policy = "always"``: then the listener is restarted after a
capped, jittered exponential delay. A listener that returns is done until the next promotion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from enum import StrEnum

import backoff

from bridge.eventstore import EventStore
from bridge.sqlite import disk_full
from listeners import ConfigError, ListenFunc, Service

log = logging.getLogger("bridge.supervisor")

CANCEL_GRACE = 30.0  # seconds a cancelled listener gets to release its resources


class ListenerState(StrEnum):
    """Where a listener is; ``/v1/status`` shows it by value."""

    STOPPED = "stopped"  # not started, or cancelled because the node is not an active validator
    RUNNING = "running"
    RESTARTING = "restarting"  # raised; waiting out its backoff (restart_policy = "always")
    FINISHED = "finished"  # returned: done until the next promotion
    FAILED = "failed"  # raised a ConfigError, or anything under restart_policy = "never"


class Supervisor:
    def __init__(
        self,
        listeners: Mapping[str, ListenFunc],
        store: EventStore,
        make_service: Callable[[str], Service],
        *,
        restart_policy: str = "never",
        restart_max_delay: float = 60.0,
        on_fatal: Callable[[str, BaseException], None],
        every_node: Collection[str] = (),
    ) -> None:
        self._listeners = listeners
        self._every_node = frozenset(every_node)
        self._store = store
        self._make_service = make_service
        self._policy = restart_policy
        self._max_delay = restart_max_delay
        self._on_fatal = on_fatal
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, ListenerState] = {name: ListenerState.STOPPED for name in listeners}
        self.restarts: dict[str, int] = {name: 0 for name in listeners}
        self.active = False

    async def update(self, validator: bool, caught_up: bool = True) -> None:
        """Call whenever the node's role or its catching up may have changed."""
        self.active = validator and caught_up
        wanted = [n for n in self._listeners if caught_up and (validator or n in self._every_node)]
        leaving = [name for name in self._tasks if name not in wanted]
        if leaving:
            log.info("stopping listener(s) %s: the node is not an active validator", ", ".join(leaving))
            await self._cancel(leaving)
        starting = [name for name in wanted if name not in self._tasks]
        if starting:
            log.info("starting listener(s) %s", ", ".join(starting))
        for name in starting:
            self._tasks[name] = asyncio.create_task(
                self._run(name, self._listeners[name]), name=f"listener:{name}"
            )

    async def stop(self) -> None:
        self.active = False
        await self._cancel(list(self._tasks))

    async def _cancel(self, names: list[str]) -> None:
        tasks = [self._tasks.pop(name) for name in names]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CANCEL_GRACE)
            for task in stuck:  # a listener that swallows cancellation must not hold the node
                log.error(
                    "%s did not stop within %ss of being cancelled; leaving it", task.get_name(), CANCEL_GRACE
                )
        for name in names:
            if self.states[name] in (ListenerState.RUNNING, ListenerState.RESTARTING):
                self.states[name] = ListenerState.STOPPED

    async def _run(self, name: str, fn: ListenFunc) -> None:
        delays: Iterator[float] = backoff.expo(max_value=self._max_delay)
        next(delays)  # the generator's first value is a placeholder
        while True:
            self.states[name] = ListenerState.RUNNING
            try:
                await fn(self._make_service(name), self._store.scoped(name))
            except asyncio.CancelledError:
                self.states[name] = ListenerState.STOPPED
                raise
            except ConfigError as exc:
                # The node logs the one line (the message names the key) as it stops.
                self.states[name] = ListenerState.FAILED
                self._on_fatal(name, exc)
                return
            except Exception as exc:
                if self._policy != "always":
                    # A full disk is reported by the node in one line, without a traceback.
                    trace = None if disk_full(exc) else exc
                    log.error("listener %s failed: %r; stopping the node", name, exc, exc_info=trace)
                    self.states[name] = ListenerState.FAILED
                    self._on_fatal(name, exc)
                    return
                delay = backoff.full_jitter(next(delays))
                self.restarts[name] += 1
                log.error("listener %s failed: %r; restarting in %.1fs", name, exc, delay, exc_info=exc)
                self.states[name] = ListenerState.RESTARTING
                await asyncio.sleep(delay)
            else:
                self.states[name] = ListenerState.FINISHED
                return
