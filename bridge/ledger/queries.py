"""The ledger's read queries, always on committed state: what the API, the broadcaster and
the extensions' queries read. None of it runs inside a block."""

from __future__ import annotations

from fractions import Fraction

import aiosqlite

from bridge.ledger.state import State
from bridge.ledger.threshold import required_power
from bridge.ledger.withdrawals import NAMESPACE as WITHDRAWALS
from bridge.ledger.withdrawals import account_key
from resolutions import get_resolution, registered_resolutions


class Queries:
    """Mixed into :class:`bridge.ledger.app.Ledger`: point reads on ``view`` (committed state),
    scans on ``_reader`` (aiosqlite's thread, so a long one never stalls the event loop)."""

    view: State
    validators: dict[bytes, int]
    height: int
    _reader: aiosqlite.Connection

    async def nonce(self, signer: bytes) -> int:
        return await self.view.nonce(signer)

    async def balance(self, account: str) -> int:
        return await self.view.balance(account)

    async def vote_status(self, ids: list[bytes], voter: bytes) -> dict[bytes, str]:
        """For each id: ``processed``; ``voted`` (pending, with ``voter``'s vote); ``open``
        (pending, without it: it may be voted by id); or ``absent`` (unknown)."""
        processed = await self.view.processed_ids(ids)
        voted = await self.view.voted_ids([i for i in ids if i not in processed], voter)
        pending = await self.view.pending_ids([i for i in ids if i not in processed and i not in voted])

        def status(i: bytes) -> str:
            if i in processed:
                return "processed"
            return "voted" if i in voted else "open" if i in pending else "absent"

        return {i: status(i) for i in ids}

    def threshold(self, resolution_type: str) -> Fraction:
        """The confirmation threshold ``resolution_type`` meets in the next block (for a type
        retired there, the one it had)."""
        config = registered_resolutions(self.height + 1).get(resolution_type)
        return (config or get_resolution(resolution_type, self.height)).confirmation_threshold

    async def list_resolutions(
        self, status: str | None = None, type_: str | None = None, limit: int = 100
    ) -> list[dict[str, object]]:
        """Pending resolutions (with approved power) and processed ones, newest first."""
        db, out = self._reader, []
        total = sum(self.validators.values())
        if status in (None, "pending"):
            sql = (
                "SELECT r.id, r.type, r.body, r.proposer, r.expiration,"
                " COALESCE(SUM(v.power), 0), COUNT(v.pubkey)"
                " FROM resolutions r LEFT JOIN votes x ON x.resolution_id = r.id"
                " LEFT JOIN validators v ON v.pubkey = x.voter"
                " WHERE (? IS NULL OR r.type = ?) GROUP BY r.id ORDER BY r.expiration DESC, r.id LIMIT ?"
            )
            async with db.execute(sql, (type_, type_, limit)) as cur:
                async for rid, t, body, proposer, exp, power, nvotes in cur:
                    need = required_power(total, self.threshold(t))
                    out.append(
                        {
                            "id": bytes(rid).hex(),
                            "type": t,
                            "status": "pending",
                            "body": bytes(body).hex(),
                            "proposer": bytes(proposer).hex(),
                            "expiration_height": exp,
                            "approved_power": power,
                            "required_power": need,
                            "votes": nvotes,
                        }
                    )
        if status in (None, "confirmed", "failed"):
            sql = (
                "SELECT id, type, body, height, status, error FROM processed"
                " WHERE (? IS NULL OR status = ?) AND (? IS NULL OR type = ?)"
                " ORDER BY height DESC, type, id LIMIT ?"
            )
            async with db.execute(sql, (status, status, type_, type_, limit)) as cur:
                async for rid, t, body, height, st, err in cur:
                    out.append(
                        {
                            "id": bytes(rid).hex(),
                            "type": t,
                            "status": st,
                            "body": bytes(body).hex(),
                            "height": height,
                            "error": err,
                        }
                    )
        return out[:limit]

    async def total_balances(self) -> int:
        """The sum of every account's balance (one statement: one committed snapshot)."""
        async with self._reader.execute("SELECT balance FROM accounts") as cur:
            return sum([int(balance) async for (balance,) in cur])

    async def kv_items(self, namespace: str, limit: int = 100) -> list[tuple[bytes, bytes]]:
        sql = "SELECT key, value FROM kv WHERE namespace = ? ORDER BY key LIMIT ?"
        async with self._reader.execute(sql, (namespace, limit)) as cur:
            return [(bytes(k), bytes(v)) async for k, v in cur]

    async def account_withdrawals(self, account: str, limit: int) -> list[int]:
        """The ids of ``account``'s withdrawals, oldest first (up to ``limit``)."""
        found = await self.kv_prefix(WITHDRAWALS, account_key(account), limit)
        return [int.from_bytes(k[-8:], "big") for k, _ in found]

    async def kv_prefix(self, namespace: str, prefix: bytes, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Entries of ``namespace`` whose key starts with ``prefix``, in key order."""
        sql = "SELECT key, value FROM kv WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?"
        async with self._reader.execute(sql, (namespace, len(prefix), prefix, limit)) as cur:
            return [(bytes(k), bytes(v)) async for k, v in cur]

    async def pending(self, type_: str) -> list[tuple[bytes, bytes, int, tuple[bytes, ...]]]:
        """(id, body, approved power, voters by key) of every pending resolution of ``type_``."""
        sql = (
            "SELECT r.id, r.body, COALESCE(SUM(v.power), 0) FROM resolutions r"
            " LEFT JOIN votes x ON x.resolution_id = r.id LEFT JOIN validators v ON v.pubkey = x.voter"
            " WHERE r.type = ? GROUP BY r.id ORDER BY r.id"
        )
        async with self._reader.execute(sql, (type_,)) as cur:
            rows = [(bytes(i), bytes(b), int(p)) async for i, b, p in cur]
        voters: dict[bytes, list[bytes]] = {}
        sql = (
            "SELECT x.resolution_id, x.voter FROM votes x JOIN resolutions r ON r.id = x.resolution_id"
            " WHERE r.type = ? ORDER BY x.resolution_id, x.voter"
        )
        async with self._reader.execute(sql, (type_,)) as cur:
            async for rid, voter in cur:
                voters.setdefault(bytes(rid), []).append(bytes(voter))
        return [(i, b, p, tuple(voters.get(i, ()))) for i, b, p in rows]

    async def processed_body(self, rid: bytes) -> bytes | None:
        async with self._reader.execute("SELECT body FROM processed WHERE id = ?", (rid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])
