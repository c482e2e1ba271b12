"""Snapshots of the ledger's committed state, for CometBFT's state sync: a serving node takes
one every ``interval`` blocks and hands out its chunks (ABCI ``ListSnapshots``,
``LoadSnapshotChunk``); a joining node restores one (``OfferSnapshot``,
``ApplySnapshotChunk``) instead of replaying every block.

Format 1 is every table of the replicated state, row by row in primary-key order, in
:mod:`bridge.encoding`'s format, zlib-compressed and cut into :data:`CHUNK_BYTES` chunks.
Nodes at the same height hold the same rows, so they make the same bytes: a joining node
takes chunks from any peer. It checks the whole against the snapshot's sha256, then the
restored state's app hash against the one CometBFT's light client verified: a peer can waste
a joining node's time, never give it another state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from bridge.encoding import Reader, Writer
from bridge.ledger.state import SCHEMA

log = logging.getLogger("bridge.snapshots")

FORMAT = 1
CHUNK_BYTES = 1 << 20
# The replicated tables and their primary keys (the dump's order).
TABLES = (
    ("meta", "key"),
    ("accounts", "id"),
    ("nonces", "signer"),
    ("validators", "pubkey"),
    ("resolutions", "id"),
    ("votes", "resolution_id, voter"),
    ("processed", "id"),
    ("kv", "namespace, key"),
)
_INT, _TEXT, _BLOB = 0, 1, 2


class Offer(IntEnum):
    """``OfferSnapshot`` results (CometBFT's values)."""

    ACCEPT = 1
    ABORT = 2
    REJECT = 3
    REJECT_FORMAT = 4


class Apply(IntEnum):
    """``ApplySnapshotChunk`` results (CometBFT's values)."""

    ACCEPT = 1
    ABORT = 2
    RETRY_SNAPSHOT = 4
    REJECT_SNAPSHOT = 5


@dataclass(frozen=True)
class Snapshot:
    height: int
    chunks: int
    hash: bytes  # sha256 of the whole compressed dump


def dump(db: sqlite3.Connection) -> bytes:
    """The state ``db`` reads, in format 1 (call it inside one read transaction)."""
    w = Writer()
    for table, key in TABLES:
        rows = db.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        w.text(table).u64(len(rows))
        for row in rows:
            w.u8(len(row))
            for value in row:
                if isinstance(value, int):
                    w.u8(_INT).uint(value)
                elif isinstance(value, str):
                    w.u8(_TEXT).text(value)
                else:
                    w.u8(_BLOB).blob(bytes(value))
    return zlib.compress(w.finish(), 6)


def restore(path: Path, data: bytes) -> tuple[int, bytes]:
    """Write a new ledger database at ``path`` from a format-1 dump; its (height, app hash).
    ``ValueError`` if the dump is malformed; nothing is left at ``path`` then."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        r = Reader(zlib.decompress(data))
        for table, _ in TABLES:
            if r.text(32) != table:
                raise ValueError(f"the snapshot's tables are not format {FORMAT}'s")
            rows = []
            for _ in range(r.u64()):
                row: list[int | str | bytes] = []
                for _ in range(r.u8()):
                    kind = r.u8()
                    row.append(r.uint() if kind == _INT else r.text() if kind == _TEXT else r.blob())
                rows.append(row)
            if rows:
                db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        r.done()
        db.execute("COMMIT")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return int.from_bytes(meta.get("height", b""), "big"), bytes(meta.get("app_hash", b""))
    except (ValueError, zlib.error, sqlite3.Error) as exc:
        db.close()
        path.unlink(missing_ok=True)
        raise ValueError(f"the snapshot does not restore: {exc}") from None
    finally:
        db.close()


class Snapshots:
    """A node's snapshots (``folder/<height>.snap``), and a restore in progress."""

    def __init__(self, folder: Path, interval: int, keep: int = 2) -> None:
        self.folder, self.interval, self.keep = folder, interval, keep
        folder.mkdir(parents=True, exist_ok=True)
        self._known: dict[int, Snapshot] = {}
        for file in folder.glob("*.snap"):
            self._add(int(file.stem), file.read_bytes())
        self._taking: asyncio.Task[None] | None = None
        self._restoring: tuple[Snapshot, bytes, list[bytes]] | None = None

    def _add(self, height: int, data: bytes) -> None:
        self._known[height] = Snapshot(height, -(-len(data) // CHUNK_BYTES), hashlib.sha256(data).digest())

    def list(self) -> list[Snapshot]:
        return [self._known[h] for h in sorted(self._known)]

    @property
    def latest(self) -> int:
        """The height of the newest snapshot, 0 if none."""
        return max(self._known, default=0)

    def chunk(self, height: int, index: int) -> bytes:
        """Chunk ``index`` of the snapshot at ``height`` (empty if there is none: CometBFT then
        asks another peer)."""
        if height not in self._known:
            return b""
        with contextlib.suppress(FileNotFoundError), (self.folder / f"{height}.snap").open("rb") as file:
            file.seek(index * CHUNK_BYTES)
            return file.read(CHUNK_BYTES)
        return b""

    def due(self, height: int) -> bool:
        return self.interval > 0 and height % self.interval == 0

    def take(self, ledger_path: Path, height: int) -> None:
        """Start the snapshot of ``height``, just committed: its read transaction opens now,
        before the next block can commit, and the dump runs in a thread meanwhile."""
        if self._taking is not None and not self._taking.done():
            log.warning("skipping the snapshot of height %d: the previous one is still being written", height)
            return
        db = sqlite3.connect(
            f"file:{ledger_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        db.execute("BEGIN")
        db.execute("SELECT 1 FROM meta LIMIT 1")  # the read snapshot starts here, at `height`
        self._taking = asyncio.create_task(self._write(db, height), name=f"snapshot:{height}")

    async def _write(self, db: sqlite3.Connection, height: int) -> None:
        try:
            data = await asyncio.to_thread(dump, db)
        finally:
            db.close()
        tmp = self.folder / f"{height}.tmp"
        await asyncio.to_thread(tmp.write_bytes, data)
        tmp.replace(self.folder / f"{height}.snap")
        self._add(height, data)
        for old in sorted(self._known)[: -self.keep]:
            del self._known[old]
            (self.folder / f"{old}.snap").unlink(missing_ok=True)
        log.info(
            "snapshot of height %d: %d bytes in %d chunk(s)", height, len(data), self._known[height].chunks
        )

    async def wait(self) -> None:
        """Until the snapshot being written (if any) is on disk."""
        if self._taking is not None:
            await self._taking

    # -- a joining node's side -- #

    def offer(self, snapshot: Snapshot, fmt: int, app_hash: bytes, ledger_height: int) -> Offer:
        if ledger_height != 0:
            return Offer.ABORT  # state sync is for an empty node only
        if fmt != FORMAT:
            return Offer.REJECT_FORMAT
        if snapshot.chunks < 1 or len(snapshot.hash) != 32 or len(app_hash) != 32:
            return Offer.REJECT
        self._restoring = (snapshot, app_hash, [])
        return Offer.ACCEPT

    def apply(self, index: int, chunk: bytes, restored: Path) -> tuple[Apply, bool]:
        """Take chunk ``index``: (result, whether the snapshot is complete). Once it is, the
        database at ``restored`` holds its state, checked against its hash and app hash."""
        if self._restoring is None:
            return Apply.ABORT, False
        snapshot, app_hash, chunks = self._restoring
        if index != len(chunks):
            return Apply.RETRY_SNAPSHOT, False
        chunks.append(chunk)
        if len(chunks) < snapshot.chunks:
            return Apply.ACCEPT, False
        self._restoring = None
        data = b"".join(chunks)
        if hashlib.sha256(data).digest() != snapshot.hash:
            log.warning("snapshot of height %d: its chunks do not hash to its hash", snapshot.height)
            return Apply.REJECT_SNAPSHOT, False
        try:
            height, restored_hash = restore(restored, data)
        except ValueError as exc:
            log.warning("snapshot of height %d: %s", snapshot.height, exc)
            return Apply.REJECT_SNAPSHOT, False
        if (height, restored_hash) != (snapshot.height, app_hash):
            restored.unlink(missing_ok=True)
            log.warning("snapshot of height %d restores height %d, another app hash", snapshot.height, height)
            return Apply.REJECT_SNAPSHOT, False
        return Apply.ACCEPT, True
