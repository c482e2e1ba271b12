"""The supervisor, driven by calling ``update`` by hand in place of the node's status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.errors import ConfigError as BridgeConfigError
from bridge.eventstore import EventStore
from bridge.supervisor import ListenerState, Supervisor
from listeners import ConfigError, ListenFunc, Service
from listeners import EventStore as ListenerStore

WAIT = 10.0  # a safety net against hangs, never a timing assertion


def make_service(name: str) -> Service:
    return Service(name, logging.getLogger(f"listeners.{name}"), {}, b"\x01" * 32, "test-chain")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    s = await EventStore.open(tmp_path / "events.sqlite")
    yield s
    await s.close()


class Recorder:
    """A listener that runs until cancelled and records what happened to it."""

    def __init__(self) -> None:
        self.starts = 0
        self.cancels = 0
        self.running = asyncio.Event()
        self.stopped = asyncio.Event()

    async def __call__(self, service: Service, store: ListenerStore) -> None:
        self.starts += 1
        await store.set(b"starts", str(self.starts).encode())
        self.stopped.clear()
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancels += 1
            raise
        finally:
            self.running.clear()
            self.stopped.set()

    async def wait_running(self) -> None:
        await asyncio.wait_for(self.running.wait(), WAIT)


class Fatal:
    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []
        self.called = asyncio.Event()

    def __call__(self, name: str, exc: BaseException) -> None:
        self.calls.append((name, exc))
        self.called.set()


def supervisor(
    store: EventStore,
    listeners: dict[str, ListenFunc],
    fatal: Fatal,
    restart_policy: str = "never",
    restart_max_delay: float = 60.0,
    every_node: tuple[str, ...] = (),
) -> Supervisor:
    return Supervisor(
        listeners,
        store,
        make_service,
        restart_policy=restart_policy,
        restart_max_delay=restart_max_delay,
        on_fatal=fatal,
        every_node=every_node,
    )


async def until(check: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), WAIT)


async def test_listener_follows_validator_status(store: EventStore) -> None:
    rec, fatal = Recorder(), Fatal()
    sup = supervisor(store, {"watch": rec}, fatal)
    assert sup.states == {"watch": ListenerState.STOPPED}

    await sup.update(False)  # not a validator yet: nothing runs
    await asyncio.sleep(0)
    assert rec.starts == 0

    await sup.update(True)
    await rec.wait_running()
    assert (rec.starts, rec.cancels) == (1, 0)
    assert sup.states == {"watch": ListenerState.RUNNING}

    await sup.update(True)  # no change: not started twice
    await asyncio.sleep(0)
    assert rec.starts == 1

    await sup.update(False)  # demoted: cancelled, and update waits for it to unwind
    assert (rec.starts, rec.cancels) == (1, 1)
    assert rec.stopped.is_set()
    assert sup.states == {"watch": ListenerState.STOPPED}

    await sup.update(True)  # re-promoted: started again, with its store intact
    await rec.wait_running()
    assert (rec.starts, rec.cancels) == (2, 1)
    assert await store.scoped("watch").get(b"starts") == b"2"

    await sup.stop()
    assert (rec.starts, rec.cancels) == (2, 2)
    assert sup.states == {"watch": ListenerState.STOPPED}
    assert fatal.calls == []


async def test_an_every_node_listener_runs_on_any_caught_up_node(store: EventStore) -> None:
    voter, watcher, fatal = Recorder(), Recorder(), Fatal()
    sup = supervisor(store, {"voter": voter, "watcher": watcher}, fatal, every_node=("watcher",))

    await sup.update(False, caught_up=False)  # a non-validator still catching up: nothing runs
    await asyncio.sleep(0)
    assert (voter.starts, watcher.starts) == (0, 0)

    await sup.update(False, caught_up=True)  # caught up: the watcher runs, the voter does not
    await watcher.wait_running()
    assert sup.states == {"voter": ListenerState.STOPPED, "watcher": ListenerState.RUNNING}
    assert not sup.active  # the signer's duties follow the validators' listeners

    await sup.update(True, caught_up=True)  # promoted: the voter joins; the watcher runs on
    await voter.wait_running()
    assert (voter.starts, watcher.starts, watcher.cancels) == (1, 1, 0)
    assert sup.active

    await sup.update(False, caught_up=True)  # demoted: only the voter stops
    assert (voter.cancels, watcher.cancels) == (1, 0)
    assert sup.states == {"voter": ListenerState.STOPPED, "watcher": ListenerState.RUNNING}

    await sup.update(False, caught_up=False)  # fell behind: the watcher stops too
    assert watcher.cancels == 1
    assert sup.states == {"voter": ListenerState.STOPPED, "watcher": ListenerState.STOPPED}
    await sup.stop()
    assert fatal.calls == []


async def test_every_listener_gets_its_own_service_and_store(store: EventStore) -> None:
    seen: dict[str, tuple[str, bytes | None]] = {}
    done = asyncio.Event()

    def make(name: str) -> ListenFunc:
        async def listen(service: Service, s: ListenerStore) -> None:
            await s.set(b"who", name.encode())
            seen[name] = (service.name, await s.get(b"who"))
            if len(seen) == 2:
                done.set()

        return listen

    sup = supervisor(store, {"a": make("a"), "b": make("b")}, Fatal())
    await sup.update(True)
    await asyncio.wait_for(done.wait(), WAIT)
    await until(lambda: set(sup.states.values()) == {ListenerState.FINISHED})
    assert seen == {"a": ("a", b"a"), "b": ("b", b"b")}
    assert await store.scoped("a").get(b"who") == b"a"
    assert await store.scoped("b").get(b"who") == b"b"
    await sup.stop()


async def test_raising_listener_is_fatal_with_policy_never(store: EventStore) -> None:
    error = RuntimeError("bad config")
    runs = 0

    async def broken(service: Service, s: ListenerStore) -> None:
        nonlocal runs
        runs += 1
        raise error

    rec, fatal = Recorder(), Fatal()
    sup = supervisor(store, {"broken": broken, "fine": rec}, fatal, restart_policy="never")
    await sup.update(True)
    await asyncio.wait_for(fatal.called.wait(), WAIT)
    await rec.wait_running()

    assert fatal.calls == [("broken", error)]
    assert sup.states == {"broken": ListenerState.FAILED, "fine": ListenerState.RUNNING}
    assert runs == 1
    assert sup.restarts["broken"] == 0

    await sup.stop()  # a failed listener keeps its state; the other one is stopped
    assert sup.states == {"broken": ListenerState.FAILED, "fine": ListenerState.STOPPED}
    assert rec.cancels == 1
    assert runs == 1


async def test_raising_listener_is_restarted_with_policy_always(store: EventStore) -> None:
    failures = 3
    runs = 0
    recovered = asyncio.Event()

    async def flaky(service: Service, s: ListenerStore) -> None:
        nonlocal runs
        runs += 1
        if runs <= failures:
            raise ConnectionError(f"failure {runs}")
        recovered.set()
        await asyncio.Event().wait()

    fatal = Fatal()
    sup = supervisor(store, {"flaky": flaky}, fatal, restart_policy="always", restart_max_delay=0.001)
    await sup.update(True)
    await asyncio.wait_for(recovered.wait(), WAIT)

    assert runs == failures + 1
    assert sup.restarts == {"flaky": failures}
    assert sup.states == {"flaky": ListenerState.RUNNING}
    assert fatal.calls == []
    await sup.stop()
    assert sup.states == {"flaky": ListenerState.STOPPED}


async def test_demotion_during_restart_delay_stops_the_listener(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.supervisor.backoff.full_jitter", lambda value: 3600.0)
    runs = 0
    failed = asyncio.Event()

    async def failing(service: Service, s: ListenerStore) -> None:
        nonlocal runs
        runs += 1
        failed.set()
        raise ConnectionError("down")

    fatal = Fatal()
    # No jitter and a long delay: the listener sits in its backoff when the node is demoted.
    sup = supervisor(store, {"failing": failing}, fatal, restart_policy="always", restart_max_delay=3600)
    await sup.update(True)
    await asyncio.wait_for(failed.wait(), WAIT)
    await until(lambda: sup.states["failing"] == ListenerState.RESTARTING)
    assert sup.restarts == {"failing": 1}
    await sup.update(False)
    assert sup.states == {"failing": ListenerState.STOPPED}
    assert runs == 1
    assert fatal.calls == []


async def test_listener_that_returns_is_finished_until_next_promotion(store: EventStore) -> None:
    runs = 0

    async def once(service: Service, s: ListenerStore) -> None:
        nonlocal runs
        runs += 1

    fatal = Fatal()
    sup = supervisor(store, {"once": once}, fatal)
    await sup.update(True)
    await until(lambda: sup.states["once"] == ListenerState.FINISHED)
    assert runs == 1

    await sup.update(False)
    assert sup.states == {"once": ListenerState.FINISHED}
    await sup.update(True)
    await until(lambda: runs == 2)
    await until(lambda: sup.states["once"] == ListenerState.FINISHED)
    await sup.stop()
    assert sup.states == {"once": ListenerState.FINISHED}
    assert fatal.calls == []


@pytest.mark.parametrize("error_class", [ConfigError, BridgeConfigError])
async def test_config_error_is_fatal_even_with_policy_always(
    store: EventStore, caplog: pytest.LogCaptureFixture, error_class: type[ConfigError]
) -> None:
    """Misconfiguration stops the node at once whatever the policy (no restart loop on a
    config file), while a RuntimeError beside it is restarted. The node logs the one line."""
    error = error_class("app.extensions.broken.url: must be an http(s) URL")
    runs = crashes = 0
    crashed_twice = asyncio.Event()

    async def broken(service: Service, s: ListenerStore) -> None:
        nonlocal runs
        runs += 1
        raise error

    async def crashing(service: Service, s: ListenerStore) -> None:
        nonlocal crashes
        crashes += 1
        if crashes == 2:
            crashed_twice.set()
        raise RuntimeError("the source went away")

    fatal = Fatal()
    listeners: dict[str, ListenFunc] = {"broken": broken, "crashing": crashing}
    sup = supervisor(store, listeners, fatal, restart_policy="always", restart_max_delay=0.001)
    with caplog.at_level(logging.ERROR, logger="bridge.supervisor"):
        await sup.update(True)
        await asyncio.wait_for(fatal.called.wait(), WAIT)
        await asyncio.wait_for(crashed_twice.wait(), WAIT)

    assert runs == 1
    assert sup.restarts["broken"] == 0 and sup.states["broken"] == ListenerState.FAILED
    assert sup.restarts["crashing"] >= 1
    assert sup.states["crashing"] in (ListenerState.RUNNING, ListenerState.RESTARTING)
    assert fatal.calls == [("broken", error)]  # the crashing one never reaches on_fatal
    assert not [r for r in caplog.records if "broken" in r.getMessage()]  # the node says it
    await sup.stop()
    assert sup.states == {"broken": ListenerState.FAILED, "crashing": ListenerState.STOPPED}
    assert runs == 1
