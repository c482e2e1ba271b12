"""Durability of the node's two SQLite files (the ledger and the EventStore) on real files:
the PRAGMAs they run with, what a SIGKILL of a real process keeps, and what a full disk
does (``PRAGMA max_page_count``, which fails at page allocation and runs anywhere, and a
real filled-up tmpfs, which fails at COMMIT like a real disk and needs CAP_SYS_ADMIN)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import DATA_DIR
from bridge.encoding import Reader
from bridge.eventstore import PENDING, EventStore
from bridge.keys import account_id
from bridge.ledger import Block, BlockResult, Ledger
from bridge.node import Node
from bridge.sqlite import disk_full
from bridge.txs import Tx, Vote
from listeners import EventStore as ListenerStore
from listeners import Service, register_listener
from tests.disk import fill, free, tiny_disk
from tests.eth.nodes import make_home
from tests.ledger_helpers import credit_body, genesis, node_keys, register_credit

ROOT = Path(__file__).resolve().parents[1]
TYPE = "durable_credit"
KEY = node_keys(1)[0]  # the only validator: its vote confirms at once
GENESIS = genesis([KEY])
NORMAL, FULL = 1, 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA
HELD = 20  # blocks the "hold" child commits before the one it leaves uncommitted
KILL_AFTER = 40  # lines read before the SIGKILL; the child keeps working until it lands


def account(height: int, i: int) -> str:
    return account_id((height * 1000 + i).to_bytes(20, "big"))


def block_at(height: int, events: int = 3) -> Block:
    """The deterministic block ``height`` of these tests: one vote from KEY crediting
    ``events`` accounts, so any process can rebuild it."""
    votes = tuple((TYPE, credit_body(account(height, i), height)) for i in range(events))
    tx = Tx(GENESIS.chain_id, "vote", KEY.public, height - 1, Vote(votes).encode()).sign_ed25519(KEY)
    return Block(height, height * 10**9, KEY.public, (tx.encode(),))


async def open_ledger(path: Path) -> Ledger:
    ledger = await Ledger.open(path)
    await ledger.init_chain(GENESIS)
    return ledger


async def run_block(ledger: Ledger, block: Block) -> BlockResult:
    result = await ledger.finalize_block(block)
    await ledger.commit()
    return result


async def clean_hashes(path: Path, height: int, big: dict[int, int] | None = None) -> dict[int, bytes]:
    """App hash at each height of a ledger that never crashed nor ran out of space."""
    ledger = await open_ledger(path)
    try:
        return {
            h: (await run_block(ledger, block_at(h, (big or {}).get(h, 3)))).app_hash
            for h in range(1, height + 1)
        }
    finally:
        await ledger.close()


def chunk(i: int, size: int = 5) -> list[bytes]:
    """The bodies a listener stores in its chunk ``i`` (with progress ``i``)."""
    return [credit_body(account(i, j), 1) for j in range(size)]


async def store_chunk(store: ListenerStore, i: int, size: int = 5) -> None:
    """What a listener does per scanned chunk: its events and its progress, in one transaction."""
    async with store.transaction() as tx:
        for body in chunk(i, size):
            await tx.broadcast(TYPE, body)
        await tx.set(b"progress", i.to_bytes(8, "big"))


async def stored(store: EventStore) -> tuple[int, set[bytes]]:
    """(progress, bodies) as a restarted listener would find them."""
    progress = await store.scoped("scanner").get(b"progress")
    assert progress is not None
    return int.from_bytes(progress, "big"), {e.body for e in await store.of_type(TYPE)}


# -- WAL; the ledger synchronous=FULL, the EventStore NORMAL -- #


async def test_node_databases_are_wal_the_ledger_fsyncs_each_block(tmp_path: Path) -> None:
    """WAL: COMMIT appends to the -wal file with write(2) before it returns, so the commit is
    in the OS's page cache and survives the death of the process. The ledger's writer is
    synchronous=FULL: each block is fsynced before commit returns, so not even an OS crash
    takes back a block whose processed events the EventStore then forgot. The EventStore is
    NORMAL (fsync only at checkpoints): what it may lose to an OS crash is scanned or voted
    again. journal_mode is stored in the file; synchronous is per connection, so it is read
    from the node's own writers."""
    register_credit(TYPE)
    home = make_home(tmp_path / "node", None)
    node = Node.from_home(home)
    task = asyncio.create_task(node.run())
    try:
        async with asyncio.timeout(30):
            while not node.api_url:
                assert not task.done(), f"node exited with {task.result()}"
                await asyncio.sleep(0.02)
        ledger_writer = node.ledger.state.db  # the connection blocks are written on
        assert ledger_writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert ledger_writer.execute("PRAGMA synchronous").fetchone() == (FULL,)
        store_writer = node.store._db  # the EventStore's only connection
        assert tuple(await (await store_writer.execute("PRAGMA journal_mode")).fetchone() or ()) == ("wal",)
        assert tuple(await (await store_writer.execute("PRAGMA synchronous")).fetchone() or ()) == (NORMAL,)
    finally:
        node.stop()
        assert await task == 0
    for name in ("ledger.sqlite", "events.sqlite"):
        db = sqlite3.connect(home / DATA_DIR / name)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",), name
        finally:
            db.close()


# -- SIGKILL right after commit returns -- #


async def child(path: Path, mode: str) -> None:
    """Runs in the subprocess the SIGKILL tests kill. Prints a line only after the commit it
    reports has returned, so every printed line is a promise the next process must keep.

    ``ledger``: commits blocks 1, 2, ... forever, printing "height app_hash".
    ``hold``: commits HELD blocks, finalizes the next one, prints "finalized app_hash" and
    waits, with the block executed but not committed, for the kill.
    ``events``: stores chunks 0, 1, ... forever like a listener, printing each chunk number."""
    register_credit(TYPE)
    if mode == "events":
        store = await EventStore.open(path)
        i = 0
        while True:
            await store_chunk(store.scoped("scanner"), i)
            print(i, flush=True)
            i += 1
    ledger = await open_ledger(path)
    height = 0
    while mode == "ledger" or height < HELD:
        height += 1
        await run_block(ledger, block_at(height))
        print(height, ledger.app_hash.hex(), flush=True)
    result = await ledger.finalize_block(block_at(height + 1))
    print("finalized", result.app_hash.hex(), flush=True)
    sys.stdin.read()  # until the parent's SIGKILL


def run_and_kill(path: Path, mode: str, lines: int) -> list[list[str]]:
    """Start :func:`child`, SIGKILL it after ``lines`` printed lines (it is still working),
    and return every line it printed before it died."""
    code = "import asyncio, pathlib, sys; from tests.test_durability import child; " + (
        "asyncio.run(child(pathlib.Path(sys.argv[1]), sys.argv[2]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), mode], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        out = [proc.stdout.readline().decode() for _ in range(lines)]
        assert out[-1].endswith("\n"), f"the child died by itself after {len(out)} lines"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        out += proc.stdout.read().decode().splitlines(keepends=True)  # printed before the kill landed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    return [line.split() for line in out if line.endswith("\n")]


async def test_committed_blocks_survive_a_sigkill_right_after_commit(tmp_path: Path) -> None:
    register_credit(TYPE)
    path = tmp_path / "ledger.sqlite"
    printed = {int(h): bytes.fromhex(app_hash) for h, app_hash in run_and_kill(path, "ledger", KILL_AFTER)}
    last = max(printed)
    assert last >= KILL_AFTER

    ledger = await Ledger.open(path)
    try:
        height, app_hash = await ledger.info()
        # Every block whose commit returned is there; at most one more (committed, killed
        # before it printed).
        assert height in (last, last + 1)
        clean = await clean_hashes(tmp_path / "clean.sqlite", height + 1)
        assert printed == {h: clean[h] for h in printed}
        assert app_hash == clean[height]
        assert await ledger.balance(account(height, 0)) == height
        assert (await run_block(ledger, block_at(height + 1))).app_hash == clean[height + 1]
    finally:
        await ledger.close()


async def test_block_finalized_but_not_committed_at_a_sigkill_is_absent(tmp_path: Path) -> None:
    register_credit(TYPE)
    path = tmp_path / "ledger.sqlite"
    lines = run_and_kill(path, "hold", HELD + 1)
    assert lines[-1][0] == "finalized"
    committed = bytes.fromhex(lines[HELD - 1][1])
    finalized = bytes.fromhex(lines[-1][1])

    ledger = await Ledger.open(path)
    try:
        assert await ledger.info() == (HELD, committed)
        # Nothing of block HELD + 1 is left: no credit, no vote, no nonce.
        assert await ledger.balance(account(HELD + 1, 0)) == 0
        assert await ledger.nonce(KEY.public) == HELD
        assert (await run_block(ledger, block_at(HELD + 1))).app_hash == finalized
        assert await ledger.balance(account(HELD + 1, 0)) == HELD + 1
    finally:
        await ledger.close()


async def test_stored_chunks_survive_a_sigkill_right_after_commit(tmp_path: Path) -> None:
    register_credit(TYPE)
    path = tmp_path / "events.sqlite"
    last = max(int(line[0]) for line in run_and_kill(path, "events", KILL_AFTER))
    store = await EventStore.open(path)
    try:
        progress, bodies = await stored(store)
        # Each chunk whose transaction returned is stored whole with its progress; a chunk
        # the kill interrupted is stored whole or not at all.
        assert progress in (last, last + 1)
        assert bodies == {b for i in range(progress + 1) for b in chunk(i)}
    finally:
        await store.close()


# -- a full disk: the ledger -- #


async def test_ledger_block_over_the_page_limit_raises_and_leaves_nothing(tmp_path: Path) -> None:
    """max_page_count stands for the disk: the block's first new page fails with
    SQLITE_FULL, in finalize_block or in commit. It runs everywhere, but fails earlier than
    a real disk, which fails at COMMIT (next test)."""
    register_credit(TYPE)
    path = tmp_path / "ledger.sqlite"
    ledger = await open_ledger(path)
    try:
        for height in range(1, 4):
            await run_block(ledger, block_at(height))
        before = await ledger.info()
        writer = ledger.state.db
        (pages,) = writer.execute("PRAGMA page_count").fetchone()
        writer.execute(f"PRAGMA max_page_count = {pages}")
        big = block_at(4, events=300)  # needs pages the "disk" does not have
        with pytest.raises(sqlite3.OperationalError) as failed:
            await run_block(ledger, big)
        assert disk_full(failed.value), failed.value
        assert await ledger.info() == before
    finally:
        await ledger.close()

    # Restarted with room again (a new connection has no page limit).
    clean = await clean_hashes(tmp_path / "clean.sqlite", 4, big={4: 300})
    ledger = await Ledger.open(path)
    try:
        assert await ledger.info() == before == (3, clean[3])
        assert await ledger.balance(account(4, 0)) == 0
        assert await ledger.nonce(KEY.public) == 3
        assert (await run_block(ledger, big)).app_hash == clean[4]
        assert await ledger.balance(account(4, 299)) == 4
    finally:
        await ledger.close()


async def test_ledger_commit_on_a_full_disk_raises_and_leaves_nothing(tmp_path: Path) -> None:
    register_credit(TYPE)
    with tiny_disk(tmp_path / "disk") as disk:
        path = disk / "ledger.sqlite"
        ledger = await open_ledger(path)
        try:
            for height in range(1, 4):
                await run_block(ledger, block_at(height))
            before = await ledger.info()
            fill(disk)
            with pytest.raises(sqlite3.OperationalError) as failed:
                await run_block(ledger, block_at(4, events=50))
            assert disk_full(failed.value), failed.value
            assert await ledger.info() == before
        finally:
            await ledger.close()  # still full: the node exits here

        free(disk)
        clean = await clean_hashes(tmp_path / "clean.sqlite", 4, big={4: 50})
        ledger = await Ledger.open(path)
        try:
            assert await ledger.info() == before == (3, clean[3])
            assert await ledger.balance(account(4, 0)) == 0
            assert (await run_block(ledger, block_at(4, events=50))).app_hash == clean[4]
        finally:
            await ledger.close()


async def test_commit_retried_after_a_full_disk_does_not_write_half_a_block(tmp_path: Path) -> None:
    """A failed commit discards the block (no engine retries one today, but one might):
    a second commit raises, and nothing of the block is written."""
    register_credit(TYPE)
    clean = await clean_hashes(tmp_path / "clean.sqlite", 2, big={2: 50})
    with tiny_disk(tmp_path / "disk") as disk:
        path = disk / "ledger.sqlite"
        ledger = await open_ledger(path)
        try:
            await run_block(ledger, block_at(1))
            fill(disk)
            await ledger.finalize_block(block_at(2, events=50))
            with pytest.raises(sqlite3.OperationalError):
                await ledger.commit()
            free(disk)
            with contextlib.suppress(Exception):  # raising is fine, a half commit is not
                await ledger.commit()
        finally:
            await ledger.close()
        ledger = await Ledger.open(path)
        try:
            height, app_hash = await ledger.info()
            assert app_hash == clean[height]
            assert await ledger.balance(account(2, 0)) == (2 if height == 2 else 0)
        finally:
            await ledger.close()


# -- a full disk: the EventStore -- #


async def test_event_store_chunk_over_the_page_limit_leaves_nothing(tmp_path: Path) -> None:
    register_credit(TYPE)
    path = tmp_path / "events.sqlite"
    store = await EventStore.open(path)
    try:
        await store_chunk(store.scoped("scanner"), 0)
        writer = store._db  # the store's only connection (aiosqlite)
        pages = (await (await writer.execute("PRAGMA page_count")).fetchone() or (0,))[0]
        await writer.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.OperationalError) as failed:
            await store_chunk(store.scoped("scanner"), 1, size=300)
        assert disk_full(failed.value), failed.value
        assert await stored(store) == (0, set(chunk(0)))
        assert await store.counts() == {PENDING: 5}
    finally:
        await store.close()

    store = await EventStore.open(path)  # restarted with room again
    try:
        assert await stored(store) == (0, set(chunk(0)))
        await store_chunk(store.scoped("scanner"), 1, size=300)
        assert await stored(store) == (1, set(chunk(0)) | set(chunk(1, 300)))
    finally:
        await store.close()


async def test_event_store_chunk_on_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    register_credit(TYPE)
    with tiny_disk(tmp_path / "disk") as disk:
        store = await EventStore.open(disk / "events.sqlite")
        try:
            await store_chunk(store.scoped("scanner"), 0)
            fill(disk)
            with pytest.raises(sqlite3.OperationalError) as failed:
                await store_chunk(store.scoped("scanner"), 1, size=300)
            assert disk_full(failed.value), failed.value
            assert await stored(store) == (0, set(chunk(0)))
            free(disk)
            # The same connection goes on: the failed COMMIT left no transaction open.
            await store_chunk(store.scoped("scanner"), 1, size=300)
            assert await stored(store) == (1, set(chunk(0)) | set(chunk(1, 300)))
        finally:
            await store.close()


# -- a full disk: the node -- #
#
# In process, with one of the node's writers limited to the pages it has: no root needed.
# tests/eth/test_full_disk.py does it with a real full disk under a real subprocess.


async def start(home: Path) -> tuple[Node, asyncio.Task[int]]:
    node = Node.from_home(home)
    task = asyncio.create_task(node.run())
    async with asyncio.timeout(30):
        while not node.api_url:
            assert not task.done(), f"node exited with {task.result()}"
            await asyncio.sleep(0.02)
    return node, task


def assert_one_line_stop(caplog: pytest.LogCaptureFixture, who: str, home: Path) -> None:
    """The node said, once and without a traceback, what is full, where, and what to do."""
    [stop] = [r for r in caplog.records if r.getMessage().startswith("stopping:")]
    assert stop.getMessage().startswith(
        f"stopping: {who} cannot write to the databases in {home / DATA_DIR}: database or disk is full."
    )
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.ERROR)


async def credited_once(home: Path, bodies: list[bytes], amount: int) -> None:
    """Restarted with room again: every body voted, credited once, nothing left in the store."""
    node, task = await start(home)
    try:
        async with asyncio.timeout(60):
            while await node.store.counts():
                assert not task.done(), f"node exited with {task.result()}"
                await asyncio.sleep(0.05)
        confirmed = await node.ledger.list_resolutions("confirmed", TYPE, limit=1000)
        assert sorted(bytes.fromhex(str(r["body"])) for r in confirmed) == sorted(bodies)
        for body in bodies:
            assert await node.ledger.balance(Reader(body).text()) == amount
    finally:
        node.stop()
        assert await task == 0


async def test_node_stops_in_one_line_when_the_ledger_cannot_write_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register_credit(TYPE)
    home = make_home(tmp_path / "node", None)
    bodies = [credit_body(account(7, i), 7) for i in range(200)]
    node, task = await start(home)
    limited = asyncio.Event()

    async def no_more_pages(result: BlockResult) -> None:
        # Between two blocks, on the loop's thread: the writer is not in use.
        if not limited.is_set():
            writer = node.ledger.state.db
            (pages,) = writer.execute("PRAGMA page_count").fetchone()
            writer.execute(f"PRAGMA max_page_count = {pages}")
            limited.set()

    node.engine.on_commit.append(no_more_pages)
    async with asyncio.timeout(30):
        await limited.wait()
    for body in bodies:  # as a listener would: the node votes for them in its next block
        await node.store.scoped("test").broadcast(TYPE, body)
    async with asyncio.timeout(60):
        assert await task == 1
    assert_one_line_stop(caplog, "engine", home)
    await credited_once(home, bodies, 7)


async def test_node_stops_in_one_line_when_a_listener_cannot_store_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register_credit(TYPE)
    home = make_home(tmp_path / "node", None)
    go = asyncio.Event()

    @register_listener("scanner")
    async def scanner(service: Service, store: ListenerStore) -> None:
        await go.wait()
        await store_chunk(store, 0, size=300)
        await asyncio.Event().wait()  # scanned to the head: wait for more, like a listener

    node, task = await start(home)
    writer = node.store._db  # the EventStore's only connection
    pages = (await (await writer.execute("PRAGMA page_count")).fetchone() or (0,))[0]
    await writer.execute(f"PRAGMA max_page_count = {pages}")
    go.set()
    async with asyncio.timeout(60):
        assert await task == 1
    assert_one_line_stop(caplog, "listener scanner", home)
    store = await EventStore.open(home / DATA_DIR / "events.sqlite")
    try:
        assert await store.scoped("scanner").get(b"progress") is None
        assert await store.counts() == {}
    finally:
        await store.close()
    await credited_once(home, chunk(0, 300), 1)
