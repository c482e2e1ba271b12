"""Tests that kill mutants mutation testing found alive (see the report in docs/GUARANTEES.md):
each pins a behaviour the rest of the suite reached but did not check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bridge.encoding import event_id
from bridge.errors import TxCode
from bridge.eventstore import PENDING, EventStore
from bridge.ledger import governance
from listeners import Service
from listeners.eth_deposits import EVENTS, EthDepositsConfig
from listeners.eth_deposits import decode as deposits_module
from listeners.eth_deposits.decode import DEPOSIT_TOPIC, deposit_bodies, deposit_body
from listeners.ethereum import scanner as scanner_module
from listeners.ethereum.client import EthClient, RangeTooLarge
from listeners.ethereum.scanner import Scanner
from resolutions import MAX_BODY_BYTES, ResolutionConfig, ResolveContext, register_resolution
from resolutions.credit import Deposit, _credit, credited_key, tx_key
from tests.ledger_helpers import Chains, eth_account_id, genesis, new_eth_account, node_keys
from tests.test_behaviours import CHAIN, ESCROW, _log, deposit

KEYS = node_keys(4)
TYPE = "test_mutant_event"


# -- resolutions/credit -- #


@pytest.mark.parametrize("word", [1, 6, 7])  # escrow, sender, recipient: each address word alone
def test_credit_body_with_one_dirty_address_padding_is_not_canonical(word: int) -> None:
    body = bytearray(deposit(1).encode())
    body[32 * word] = 1
    with pytest.raises(ValueError):
        Deposit.decode(bytes(body))
    with pytest.raises(ValueError):
        _credit(bytes(body))


def test_credit_kv_key_layout() -> None:
    # The API and operators read these keys: their layout is a format, not a detail.
    d = deposit(5, tx=0x22, log_index=258)
    assert credited_key(d.key) == b"credited:" + d.key
    assert tx_key(d.tx_hash, 258) == b"tx:" + d.tx_hash + bytes([0, 0, 0, 0, 0, 0, 1, 2])


# -- listeners/eth_deposits decoding -- #


def _no_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("a usual log took the general path")

    monkeypatch.setattr(deposits_module, "deposit_body", refuse)
    monkeypatch.setattr(deposits_module, "decode_log", refuse)


EDGE = [
    deposit(0, tx=1, log_index=0, block=1),  # one-digit index and block number
    deposit(2**255, tx=2, log_index=2**255, block=2**255),  # 64-digit ones
    deposit(3, tx=3, log_index=17, block=12345, amount=2**256 - 1),
]


def test_a_chunk_of_usual_logs_never_takes_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = [_log(d) for d in EDGE]
    _no_general_path(monkeypatch)
    assert deposit_bodies(logs, CHAIN, ESCROW) == [d.encode() for d in EDGE]


def test_a_usual_log_never_takes_the_general_path_of_deposit_body(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = [_log(d) for d in EDGE]
    monkeypatch.setattr(deposits_module, "decode_log", lambda *a: pytest.fail("general path"))
    assert [deposit_body(log, CHAIN, ESCROW) for log in logs] == [d.encode() for d in EDGE]


def test_an_empty_block_number_is_an_error_on_the_fast_path_too() -> None:
    logs = [_log(EDGE[2]), _log(EDGE[0], blockNumber="0x")]
    with pytest.raises(ValueError):
        deposit_bodies(logs, CHAIN, ESCROW)


def test_dirty_upper_bytes_of_the_recipient_topic_are_ignored() -> None:
    d = deposit(9)
    topics = _log(d)["topics"]
    log = _log(d, topics=[*topics[:3], "0x" + "77" * 12 + topics[3][-40:]])
    assert deposit_body(log, CHAIN, ESCROW) == d.encode()
    assert deposit_bodies([log], CHAIN, ESCROW) == [d.encode()]


def test_other_logs_of_the_escrow_or_deposit_logs_of_another_contract_are_ignored() -> None:
    d = deposit(9)
    other_topic = _log(d, topics=["0x" + "12" * 32, *_log(d)["topics"][1:]])
    other_address = _log(d, address="0x" + "34" * 20)
    for log in (other_topic, other_address):
        assert deposit_body(log, CHAIN, ESCROW) is None
        assert deposits_module.decode_log(log, CHAIN, ESCROW) is None
        assert deposit_bodies([log, _log(d)], CHAIN, ESCROW) == [d.encode()]
    assert DEPOSIT_TOPIC != other_topic["topics"][0]


# -- listeners/eth_deposits Scanner -- #


class _Chain:
    """One deposit a block; the endpoint has blocks up to ``head`` only, and refuses (once
    each) log ranges longer than ``limit``; with ``hang`` a log request never answers."""

    def __init__(self, head: int = 10**9, limit: int = 10**9, hang: bool = False) -> None:
        self.head, self.limit, self.hang = head, limit, hang
        self.ranges: list[tuple[int, int]] = []
        self.refused: list[tuple[int, int]] = []
        self.calls: list[int | str] = []
        self.requests = self.cancelled = 0

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        assert isinstance(tag, int)
        self.calls.append(tag)
        return None if tag > self.head else (tag, (tag + 7).to_bytes(32, "big"))

    async def logs(self, address: str, topics: Any, start: int, end: int, parse: Any) -> Any:
        assert address == ESCROW and tuple(topics) == (DEPOSIT_TOPIC,)
        self.requests += 1
        if self.hang:
            try:
                await asyncio.Event().wait()
            finally:
                self.cancelled += 1
        if end - start + 1 > self.limit and (start, end) not in self.refused:
            self.refused.append((start, end))
            raise RangeTooLarge("query returned more than 10000 results")
        self.ranges.append((start, end))
        logs = [_log(deposit(n, tx=n % 256, log_index=0, block=n)) for n in range(start, end + 1)]
        return parse(logs)


def _scanner(store: Any, client: _Chain, chunk: int, max_chunk: int) -> Scanner:
    service = Service("eth_deposits", logging.getLogger("listeners.eth_deposits"), {}, b"\x01" * 32, "c")
    config = EthDepositsConfig.model_validate(
        {
            "rpc_url": "http://127.0.0.1:1",
            "contract_address": ESCROW,
            "chain_id": CHAIN,
            "block_sync_chunk_size": chunk,
            "max_chunk_size": max_chunk,
        }
    )
    return Scanner(service, store, config, cast(EthClient, client), EVENTS)


@pytest.fixture
async def events(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await EventStore.open(tmp_path / "events.sqlite")
    yield store
    await store.close()


async def test_scanner_grows_its_chunk_by_a_quarter_and_stores_progress(events: EventStore) -> None:
    client = _Chain()
    scanner = _scanner(events.scoped("eth_deposits"), client, 4, 100)
    await scanner.load()
    await scanner.scan(60)
    assert client.ranges == [(0, 3), (4, 8), (9, 14), (15, 21), (22, 29), (30, 39), (40, 51), (52, 60)]
    assert scanner.status.counters["events_seen"] == 61
    assert len(await events.select(PENDING, 1000)) == 61

    again = _scanner(events.scoped("eth_deposits"), _Chain(), 4, 100)
    await again.load()
    assert again.last_block == 60
    assert again.last_hash == (67).to_bytes(32, "big")
    ends = [3, 8, 14, 21, 29, 39, 51, 60]
    assert again.checkpoints == [(n, (n + 7).to_bytes(32, "big").hex()) for n in ends]


async def test_scanner_stores_every_chunk_before_a_lagging_endpoint(events: EventStore) -> None:
    scanner = _scanner(events.scoped("eth_deposits"), _Chain(head=25), 10, 10)
    await scanner.load()
    await scanner.scan(60)
    raw = await events.scoped("eth_deposits").get(b"last_block")
    assert raw is not None and int.from_bytes(raw, "big") == 19
    assert len(await events.select(PENDING, 1000)) == 20


async def test_scanner_narrows_a_refused_range_and_misses_nothing(events: EventStore) -> None:
    client = _Chain(limit=3)
    scanner = _scanner(events.scoped("eth_deposits"), client, 8, 8)
    await scanner.load()
    await scanner.scan(20)
    assert client.refused and all(e - s < 3 for s, e in client.ranges)
    assert [n for s, e in client.ranges for n in range(s, e + 1)] == list(range(21))
    assert scanner.status.counters["range_refusals"] == len(client.refused)
    assert len(await events.select(PENDING, 1000)) == 21


async def test_a_cancelled_scan_has_cancelled_its_fetch_when_it_ends(events: EventStore) -> None:
    client = _Chain(hang=True)
    scanner = _scanner(events.scoped("eth_deposits"), client, 10, 10)
    task = asyncio.ensure_future(scanner.scan(100))
    while not client.requests:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.cancelled == 1  # already, not at some later turn of the loop


async def test_a_fresh_scanner_has_no_progress_to_verify(events: EventStore) -> None:
    client = _Chain()
    scanner = _scanner(events.scoped("eth_deposits"), client, 10, 10)
    await scanner.load()
    await scanner.verify_progress()
    assert client.calls == [] and scanner.status.problems == set()


async def test_a_reorg_past_every_checkpoint_rescans_from_the_start(events: EventStore) -> None:
    store = events.scoped("eth_deposits")
    scanner = _scanner(store, _Chain(), 10, 10)
    await scanner.load()
    await scanner.scan(9)
    assert await store.get(b"last_block") == (9).to_bytes(8, "big")

    class Reorged(_Chain):
        async def block(self, tag: int | str) -> tuple[int, bytes] | None:
            assert isinstance(tag, int)
            return tag, b"\xee" * 32  # every block hash changed

    scanner = _scanner(store, Reorged(), 10, 10)
    await scanner.load()
    await scanner.verify_progress()
    assert scanner.last_block == -1 and "reorg_beyond_safety" in scanner.status.problems
    assert await store.get(b"last_block") is None
    assert await store.get(b"last_hash") == b""


async def test_scanner_stores_progress_at_block_zero(events: EventStore) -> None:
    scanner = _scanner(events.scoped("eth_deposits"), _Chain(), 1, 1)
    await scanner.load()
    await scanner.scan(0)
    assert await events.scoped("eth_deposits").get(b"last_block") == bytes(8)


# -- bridge/eventstore -- #


async def _noop(ctx: ResolveContext) -> None:
    pass


async def test_eventstore_big_transactions_and_the_body_limit(events: EventStore) -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    a = events.scoped("a")
    async with a.transaction() as tx:
        for i in range(2049):  # past one 1,024-row statement, and not a multiple of it
            await tx.broadcast(TYPE, i.to_bytes(4, "big"))
        for i in range(650):  # past the 300-row KV statement, twice
            await tx.set(i.to_bytes(4, "big"), b"v")
    assert len(await events.select(PENDING, 5000)) == 2049
    assert await a.get((0).to_bytes(4, "big")) == await a.get((649).to_bytes(4, "big")) == b"v"
    assert [await a.get(i.to_bytes(4, "big")) for i in range(650)] == [b"v"] * 650
    await a.broadcast(TYPE, bytes(MAX_BODY_BYTES))  # exactly the limit is allowed
    with pytest.raises(ValueError):
        await a.broadcast(TYPE, bytes(MAX_BODY_BYTES + 1))


async def test_eventstore_mark_sent_and_of_type(events: EventStore) -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    await events.scoped("a").broadcast(TYPE, b"one")
    rid = event_id(TYPE, b"one")
    await events.mark_sent([rid], at=5.0)
    [e] = await events.select(PENDING, 10)
    assert (e.id, e.type, e.body, e.state, e.last_sent) == (rid, TYPE, b"one", PENDING, 5.0)
    assert await events.of_type(TYPE) == [e]
    assert await events.select(PENDING, 10, sent_before=5.0) == []
    await events.mark_sent([rid])
    [e] = await events.select(PENDING, 10)
    assert e.last_sent is not None and e.last_sent > 5.0


# -- bridge/ledger/app.py: the App a resolve gets, check_tx -- #


async def test_app_validator_power_bounds_and_pending_removal(tmp_path: Path) -> None:
    a, b, c, d = KEYS
    stranger = node_keys(1, offset=50)[0].public
    seen: dict[str, object] = {}

    async def resolve(ctx: ResolveContext) -> None:
        seen["stranger"] = await ctx.app.validator_power(stranger)
        seen["d"] = await ctx.app.validator_power(d.public)
        for key, power in ((d.public[:31], 1), (d.public, 2**63), (d.public, -1)):
            try:
                await ctx.app.set_validator_power(key, power)
            except ValueError:
                continue
            raise AssertionError(f"set_validator_power accepted {len(key)} bytes, {power}")
        await ctx.app.set_validator_power(d.public, 1000)  # a power change, not the end of a tenure
        await ctx.app.debit("0x" + "ab" * 20, 0)
        await ctx.app.credit("0x" + "ab" * 20, 0)  # zero is a valid amount both ways

    register_resolution("test_mutant_power", ResolutionConfig(resolve=resolve))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        event = ("test_mutant_power", b"")
        remove_id = event_id(governance.REMOVE, governance.remove_body(d.public, 0))
        result = await chain.block(
            chain.tx(a, "remove", d.public), *(chain.vote(k, event) for k in (a, b, c))
        )
        assert (event_id(*event), "test_mutant_power", "confirmed") in result.resolved
        assert seen == {"stranger": 0, "d": 1}
        assert chain.ledger.validators[d.public] == 1000
        assert remove_id.hex() in {r["id"] for r in await chain.ledger.list_resolutions("pending")}
        assert await chain.ledger.state.validator_since(d.public) == 0  # the same tenure
    finally:
        await chains.close_all()


async def test_check_tx_approve_needs_a_validator_and_a_whole_balance_can_be_sent(tmp_path: Path) -> None:
    user = new_eth_account()
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS, accounts=[(eth_account_id(user), 10)]))
        outsider = node_keys(1, offset=60)[0]
        approve = chain.tx(outsider, "approve", b"\x01" * 32)
        result = await chain.ledger.check_tx(approve)
        assert result.code == TxCode.NOT_VALIDATOR and "must be signed by a validator" in result.log
        assert (await chain.ledger.check_tx(chain.transfer(user, b"\x02" * 20, 10))).ok
    finally:
        await chains.close_all()


def test_scanner_progress_report_rate_and_log(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    clock = [0.0]
    monkeypatch.setattr(scanner_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    scanner = _scanner(None, _Chain(), 10, 10)
    caplog.set_level(logging.INFO, logger="listeners.eth_deposits")
    keys = ("last_block", "safe_block", "blocks_left", "chunk_size", "blocks_per_second", "eta_seconds")
    steps = [  # (clock, last block, safe) -> reported fields
        ((100, 9, 109), (9, 109, 100, 10, 0.0, None)),
        ((103, 49, 109), (49, 109, 60, 10, 13.3, 4)),  # 40 blocks in 3 s
        ((105, 49, 109), (49, 109, 60, 10, 8.0, 8)),
        ((130, 109, 109), (109, 109, 0, 10, 3.3, 0)),  # 30 s since the mark: kept
        ((131, 119, 200), (119, 200, 81, 10, 3.5, 23)),  # 31 s: a new mark after this report
        ((131.5, 124, 200), (124, 200, 76, 10, 10.0, 8)),  # half a second since the new mark
        ((133, 139, 200), (139, 200, 61, 10, 10.0, 6)),
        ((160, 139, 200), (139, 200, 61, 10, 0.7, 88)),  # under a block a second: 20 in 29 s
    ]
    for (now, last, safe), fields in steps:
        clock[0], scanner.last_block = now, last
        scanner._progress(safe)
        assert tuple(scanner.status.info[k] for k in keys) == fields, now
    assert [r.getMessage() for r in caplog.records] == [
        "backfill at block 9, 100 left (0 blocks/s)",
        "backfill at block 49, 60 left (8 blocks/s)",  # 5 s after the one before
        "backfill at block 119, 81 left (4 blocks/s)",  # none at 130: nothing left
        "backfill at block 139, 61 left (1 blocks/s)",
    ]


async def test_pending_limit_counts_only_the_validators_own_new_resolutions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.ledger import app as ledger_app

    monkeypatch.setattr(ledger_app, "MAX_PENDING_PER_VALIDATOR", 2)
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        a, b = KEYS[:2]
        result = await chain.block(
            chain.vote(b, *((TYPE, bytes([i])) for i in range(2))),
            chain.vote(a, *((TYPE, bytes([10 + i])) for i in range(2))),
            chain.vote(a, (TYPE, b"one too many")),
        )
        assert [t.code for t in result.tx_results][:2] == [TxCode.OK, TxCode.OK]
        assert result.tx_results[2].code == TxCode.TOO_MANY_PENDING
    finally:
        await chains.close_all()


async def test_genesis_expiration_override_and_query_shapes(tmp_path: Path) -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop, expiration_period=1000))
    gen = replace(genesis(KEYS), expiration_periods=((TYPE, 5),))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", gen)
        await chain.block(chain.vote(KEYS[0], (TYPE, b"p")))
        [row] = await chain.ledger.list_resolutions("pending")
        assert row["expiration_height"] == 1 + 5
        assert (row["type"], row["body"]) == (TYPE, b"p".hex())
        await chain.block(*(chain.vote(k, (TYPE, b"q")) for k in KEYS[:3]))
        [done] = await chain.ledger.list_resolutions("confirmed")
        assert (done["type"], done["body"], done["height"]) == (TYPE, b"q".hex(), 2)
        assert await chain.ledger.kv_prefix("", b"") == []
    finally:
        await chains.close_all()


def test_typed_data_names_its_primary_type_for_wallets() -> None:
    # eth_account infers the primary type when the key is missing (the hash is the same);
    # a wallet's eth_signTypedData_v4 does not.
    from bridge.txs import Transfer, Tx

    data = Tx("c", "transfer", b"\x01" * 20, 3, Transfer(b"\x02" * 20, 5).encode()).typed_data()
    assert data["primaryType"] == "Transfer" and "Transfer" in data["types"]
    assert data["message"] == {"to": "0x" + "02" * 20, "amount": 5, "nonce": 3}


def test_tx_limits_are_inclusive() -> None:
    from bridge.txs import MAX_TX_BYTES, MAX_VOTES_PER_TX, Tx, Vote, decode_payload

    key = KEYS[0]
    events = tuple((TYPE, i.to_bytes(2, "big")) for i in range(MAX_VOTES_PER_TX))
    tx = Tx("c", "vote", key.public, 0, Vote(events).encode()).sign_ed25519(key)
    payload = decode_payload(Tx.decode(tx.encode()))
    assert isinstance(payload, Vote) and len(payload.events) == MAX_VOTES_PER_TX
    # A transaction of exactly MAX_TX_BYTES is not refused for its size.
    raw = tx.encode()
    big = Tx("c", "vote", key.public, 0, b"\x00" * (MAX_TX_BYTES - (len(raw) - len(tx.payload))))
    data = big.sign_ed25519(key).encode()
    assert len(data) == MAX_TX_BYTES
    try:
        Tx.decode(data)
    except Exception as exc:  # the payload is nonsense; only the size check matters here
        assert getattr(exc, "code", None) != TxCode.TOO_LARGE
    too_big = Tx("c", "vote", key.public, 0, big.payload + b"\x00").sign_ed25519(key).encode()
    with pytest.raises(Exception) as info:
        Tx.decode(too_big)
    assert getattr(info.value, "code", None) == TxCode.TOO_LARGE


# -- bridge/ledger/state.py and the Ledger's queries -- #


async def test_pruning_logs_a_delete_of_each_pruned_id_in_the_processed_table() -> None:
    # Every node prunes alike, so only the log entry itself (what the app hash is built
    # from) tells a wrong table name apart.
    import sqlite3

    from bridge.ledger.state import State

    state = State(sqlite3.connect(":memory:", isolation_level=None))
    await state.create()
    await state.begin()
    rows = [(b"a", TYPE, b"", 1, "confirmed", ""), (b"b", TYPE, b"", 2, "confirmed", "")]
    await state.mark_processed([*rows, (b"c", TYPE, b"", 3, "confirmed", "")])
    state.log.clear()
    assert await state.prune_processed(TYPE, 2) == 2
    assert state.log == [("processed", b"a", None), ("processed", b"b", None)]
    assert await state.processed_ids([b"a", b"b", b"c"]) == {b"c"}


async def test_kv_queries_default_to_100_and_1000_entries(tmp_path: Path) -> None:
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        state = chain.ledger.state
        await state.begin()
        for i in range(1001):
            await state.kv_set(TYPE, i.to_bytes(2, "big"), b"v")
        await state.commit()
        assert len(await chain.ledger.kv_items(TYPE)) == 100
        assert len(await chain.ledger.kv_prefix(TYPE, b"")) == 1000
    finally:
        await chains.close_all()


async def test_processed_body_is_the_body_of_a_processed_resolution(tmp_path: Path) -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        await chain.block(*(chain.vote(k, (TYPE, b"done")) for k in KEYS[:3]))
        assert await chain.ledger.processed_body(event_id(TYPE, b"done")) == b"done"
        assert await chain.ledger.processed_body(event_id(TYPE, b"never")) is None
    finally:
        await chains.close_all()


async def test_a_resolve_reads_a_balance_through_its_app(tmp_path: Path) -> None:
    user = new_eth_account()
    seen: list[int] = []

    async def resolve(ctx: ResolveContext) -> None:
        seen.append(await ctx.app.balance(eth_account_id(user)))

    register_resolution(TYPE, ResolutionConfig(resolve=resolve))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS, accounts=[(eth_account_id(user), 7)]))
        await chain.block(*(chain.vote(k, (TYPE, b"b")) for k in KEYS[:3]))
        assert seen == [7]
    finally:
        await chains.close_all()


async def test_a_savepoint_rollback_restores_the_votes_before_it() -> None:
    import sqlite3

    from bridge.ledger.state import ResolutionRow, State

    state = State(sqlite3.connect(":memory:", isolation_level=None))
    await state.create()
    await state.begin()
    a, b, c = (bytes([n]) * 32 for n in (1, 2, 3))
    await state.add_resolutions([ResolutionRow(r, TYPE, r, a, 10) for r in (b"r1", b"r2")])
    await state.add_votes([b"r1"], a)
    with pytest.raises(RuntimeError):
        async with state.savepoint():
            await state.add_votes([b"r1", b"r2"], b)
            await state.add_votes([b"r2"], c)
            raise RuntimeError
    assert await state.voters([b"r1", b"r2"]) == {b"r1": [a], b"r2": []}


async def test_check_tx_refusals_say_why(tmp_path: Path) -> None:
    from bridge.ledger.app import MAX_NONCE_AHEAD

    user = new_eth_account()
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS, accounts=[(eth_account_id(user), 10)]))
        await chain.block(chain.transfer(user, b"\x02" * 20, 1, nonce=0))
        logs = [
            (await chain.ledger.check_tx(tx)).log
            for tx in (
                chain.transfer(user, b"\x02" * 20, 1, nonce=0),
                chain.transfer(user, b"\x02" * 20, 1, nonce=1 + MAX_NONCE_AHEAD),
                chain.transfer(user, b"\x02" * 20, 10, nonce=1),
            )
        ]
        assert logs == [
            "nonce 0 was already used; next is 1",
            f"nonce {1 + MAX_NONCE_AHEAD} is too far ahead: the next is 1,"
            f" at most {MAX_NONCE_AHEAD - 1} more may wait",
            "balance 9 is less than the amount 10",
        ]
    finally:
        await chains.close_all()


async def test_set_validator_power_refusals_say_why(tmp_path: Path) -> None:
    only = KEYS[0]
    errors: list[str] = []

    async def resolve(ctx: ResolveContext) -> None:
        for key, power in ((only.public[:31], 1), (only.public, 0)):
            try:
                await ctx.app.set_validator_power(key, power)
            except ValueError as exc:
                errors.append(str(exc))

    register_resolution(TYPE, ResolutionConfig(resolve=resolve))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis([only]))
        await chain.block(chain.vote(only, (TYPE, b"")))
        assert errors == [
            "a validator is a 32-byte ed25519 key with a power in [0, 2**63)",
            "cannot remove the last validator",
        ]
    finally:
        await chains.close_all()


async def test_an_inner_savepoint_rolls_back_only_its_own_writes() -> None:
    import sqlite3

    from bridge.ledger.state import ResolutionRow, State

    state = State(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))
    await state.create()
    await state.begin()
    await state.add_resolutions([ResolutionRow(b"r", TYPE, b"", b"p", 10)])
    await state.commit()
    await state.begin()
    async with state.savepoint():
        await state.set_nonce(b"outer", 1)
        with pytest.raises(RuntimeError):
            async with state.savepoint():
                await state.set_nonce(b"inner", 1)
                await state.remove_resolutions([b"r", b"never created"])
                raise RuntimeError
    assert (await state.nonce(b"outer"), await state.nonce(b"inner")) == (1, 0)
    assert await state.all_pending_ids() == [b"r"]
    # An outer savepoint that fails undoes its writes, an inner one's that succeeded too.
    with pytest.raises(RuntimeError):
        async with state.savepoint():
            await state.set_nonce(b"outer", 2)
            async with state.savepoint():
                await state.set_nonce(b"inner", 2)
            raise RuntimeError
    assert (await state.nonce(b"outer"), await state.nonce(b"inner")) == (1, 0)
    # A balance that reaches zero is logged as a delete, like the row it removes.
    await state.set_balance("acc", 0)
    assert state.log[-1] == ("accounts", b"acc", None)
    await state.commit()


async def test_resolution_rows_read_back_whole_and_expire_in_type_then_id_order() -> None:
    import sqlite3

    from bridge.ledger.state import ResolutionRow, State

    state = State(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))
    await state.create()
    a, b = ResolutionRow(b"\x01", "t2", b"a", b"pa", 5), ResolutionRow(b"\x03", "t1", b"b", b"pb", 5)
    c, d = ResolutionRow(b"\x02", "t1", b"c", b"pc", 5), ResolutionRow(b"\x04", "t1", b"d", b"pd", 6)
    await state.begin()
    await state.add_resolutions([a, b])
    await state.commit()
    await state.begin()
    await state.add_resolutions([c, d])  # created in this block: no row yet
    assert await state.resolutions([a.id, c.id, b"\x09"]) == {a.id: a, c.id: c}
    assert await state.expired(5) == [c, b, a]
    assert await state.expired(4) == []


async def test_pending_resolutions_are_listed_as_pending_100_by_default(tmp_path: Path) -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        await chain.block(chain.vote(KEYS[0], *((TYPE, i.to_bytes(2, "big")) for i in range(101))))
        rows = await chain.ledger.list_resolutions()
        assert len(rows) == 100 and {r["status"] for r in rows} == {"pending"}
    finally:
        await chains.close_all()


async def test_check_tx_join_refusals_say_why(tmp_path: Path) -> None:
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", replace(genesis(KEYS), join_bond=5))
        fresh = node_keys(1, offset=70)[0]
        logs = [(await chain.ledger.check_tx(chain.join(k, 1))).log for k in (KEYS[0], fresh)]
        assert logs == [
            "join needs an ed25519 key that is not a validator yet",
            "a join request locks a bond of 5; the key's account holds 0",
        ]
    finally:
        await chains.close_all()


async def test_prepare_proposal_puts_the_proposers_votes_first_and_a_transfer_carries_no_votes(
    tmp_path: Path,
) -> None:
    from bridge.ledger.app import MAX_VOTES_PER_BLOCK
    from bridge.txs import MAX_VOTES_PER_TX

    user = new_eth_account()
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS, accounts=[(eth_account_id(user), 10)]))
        n = MAX_VOTES_PER_TX
        mine = [  # the whole block's vote budget
            chain.vote(KEYS[0], *((TYPE, (i * n + j).to_bytes(4, "big")) for j in range(n)), nonce=i)
            for i in range(MAX_VOTES_PER_BLOCK // n)
        ]
        transfer = chain.transfer(user, b"\x02" * 20, 1, nonce=0)
        assert await chain.ledger.prepare_proposal([transfer], 10**8, injected=mine) == [*mine, transfer]
    finally:
        await chains.close_all()


async def test_prepare_proposal_fills_the_byte_cap_exactly_and_skips_what_follows_a_gap(
    tmp_path: Path,
) -> None:
    chains = Chains(tmp_path)
    try:
        chain = await chains.open("l", genesis(KEYS))
        a, b = KEYS[:2]
        a0, a2 = (chain.vote(a, (TYPE, b"a"), nonce=i) for i in (0, 2))
        a1 = chain.vote(a, *((TYPE, i.to_bytes(2, "big")) for i in range(1000)), nonce=1)  # too big
        b0, b1, b2 = (chain.vote(b, (TYPE, b"b"), nonce=i) for i in range(3))
        cap = len(a0) + len(b0) + len(b1)
        assert len(a1) > cap
        # Turns: a0 b0 a1 b1 a2 b2; a1 does not fit, a2 would follow its gap, b2 is over the cap.
        assert await chain.ledger.prepare_proposal([a0, a1, a2, b0, b1, b2], cap) == [a0, b0, b1]
        # a2 alone would fit: only the gap at a1 leaves it out.
        assert await chain.ledger.prepare_proposal([a0, a1, a2, b0], cap) == [a0, b0]
    finally:
        await chains.close_all()
