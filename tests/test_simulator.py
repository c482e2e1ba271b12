"""Four ledgers in the simulator: random transaction streams and random crashes must leave
every node with the same app hash at every height and the balances a simple model predicts."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.encoding import event_id
from bridge.engines.simulator import DivergenceError, Simulator
from bridge.errors import TxCode
from bridge.keys import NodeKey, account_id
from bridge.ledger import Genesis, governance
from bridge.txs import Transfer, Tx, Vote, encode_join
from resolutions import (
    ResolutionConfig,
    ResolveContext,
    register_resolution,
    registered_resolutions,
)
from tests.ledger_helpers import CHAIN_ID, address, credit_body, genesis, node_keys, register_credit

TYPE = "test_sim_credit"
KEYS = node_keys(4)
OUTSIDER = NodeKey.from_seed(b"\x99" * 32)
USERS: list[LocalAccount] = [Account.from_key(bytes([0x40 + i]) * 32) for i in range(2)]
USER_IDS = [account_id(address(u)) for u in USERS]
GENESIS_BALANCES = [100, 40]
# Events credit the users (so credits and transfers interact) and a third account.
OTHER = "0x" + "0c" * 20
EVENTS = [
    (TYPE, credit_body(USER_IDS[0], 5)),
    (TYPE, credit_body(USER_IDS[1], 70)),
    (TYPE, credit_body(OTHER, 11)),
    (TYPE, credit_body(OTHER, 13)),
]
EVENT_AMOUNTS = [(USER_IDS[0], 5), (USER_IDS[1], 70), (OTHER, 11), (OTHER, 13)]
ACCOUNTS = [*USER_IDS, OTHER]


def sim_genesis() -> Genesis:
    return genesis(KEYS, accounts=zip(USER_IDS, GENESIS_BALANCES, strict=True))


def ensure_type_registered() -> None:
    # Hypothesis runs the body many times inside one test: register once per test.
    if TYPE not in registered_resolutions():
        register_credit(TYPE)


# -- actions and the model -- #


@dataclass(frozen=True)
class VoteAction:
    validator: int
    events: tuple[int, ...]  # may repeat an event: counted once


@dataclass(frozen=True)
class TransferAction:
    sender: int
    to: int
    amount: int


@dataclass(frozen=True)
class OutsiderVote:
    event: int


@dataclass(frozen=True)
class QuorumAction:
    """Three validators (all but ``absent``) vote for one event, in three transactions."""

    absent: int
    event: int

    def votes(self) -> list[VoteAction]:
        return [VoteAction(v, (self.event,)) for v in range(4) if v != self.absent]


Action = VoteAction | TransferAction | OutsiderVote

actions = st.one_of(
    st.builds(VoteAction, st.integers(0, 3), st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple)),
    st.builds(VoteAction, st.integers(0, 3), st.integers(0, 3).map(lambda e: (e, e))),
    st.builds(TransferAction, st.integers(0, 1), st.integers(0, 2), st.integers(1, 120)),
    st.builds(OutsiderVote, st.integers(0, 3)),
)


def expand(items: list[Action | QuorumAction]) -> list[Action]:
    return [a for item in items for a in (item.votes() if isinstance(item, QuorumAction) else [item])]


# A quorum expands into three votes, so that blocks often confirm events.
block_actions = st.lists(
    st.one_of(actions, st.builds(QuorumAction, st.integers(0, 3), st.integers(0, 3))), max_size=5
).map(expand)
blocks = st.lists(
    st.tuples(block_actions, st.frozensets(st.integers(0, 3), max_size=4)),
    min_size=1,
    max_size=4,
)


class Model:
    """What the ledger should compute, written independently of it."""

    def __init__(self) -> None:
        self.balances = dict.fromkeys(ACCOUNTS, 0)
        self.balances.update(zip(USER_IDS, GENESIS_BALANCES, strict=True))
        self.votes: dict[int, set[int]] = {i: set() for i in range(len(EVENTS))}
        self.processed: set[int] = set()
        self.codes: list[TxCode] = []

    def apply(self, action: Action) -> None:
        if isinstance(action, VoteAction):
            for e in action.events:
                if e not in self.processed:
                    self.votes[e].add(action.validator)
            self.codes.append(TxCode.OK)
        elif isinstance(action, TransferAction):
            sender, to = USER_IDS[action.sender], ACCOUNTS[action.to]
            if self.balances[sender] >= action.amount:
                self.balances[sender] -= action.amount
                self.balances[to] += action.amount
                self.codes.append(TxCode.OK)
            else:
                self.codes.append(TxCode.INSUFFICIENT_BALANCE)
        else:
            self.codes.append(TxCode.NOT_VALIDATOR)

    def end_block(self) -> set[int]:
        confirmed = {e for e, voters in self.votes.items() if e not in self.processed and len(voters) >= 3}
        for e in confirmed:
            account, amount = EVENT_AMOUNTS[e]
            self.balances[account] += amount
            self.votes[e].clear()
        self.processed |= confirmed
        return confirmed


class Signer:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}

    def _next(self, signer: bytes) -> int:
        n = self.nonces.get(signer, 0)
        self.nonces[signer] = n + 1
        return n

    def raw(self, action: Action) -> bytes:
        if isinstance(action, VoteAction):
            key = KEYS[action.validator]
            vote = Vote(tuple(EVENTS[e] for e in action.events)).encode()
            return Tx(CHAIN_ID, "vote", key.public, self._next(key.public), vote).sign_ed25519(key).encode()
        if isinstance(action, TransferAction):
            user = USERS[action.sender]
            to = bytes.fromhex(ACCOUNTS[action.to][2:])
            payload = Transfer(to, action.amount).encode()
            tx = Tx(CHAIN_ID, "transfer", address(user), self._next(address(user)), payload)
            return tx.sign_eth(user.key).encode()
        vote = Vote((EVENTS[action.event],)).encode()
        tx = Tx(CHAIN_ID, "vote", OUTSIDER.public, self._next(OUTSIDER.public), vote)
        return tx.sign_ed25519(OUTSIDER).encode()


def in_turns(actions: list[Action]) -> list[Action]:
    """``actions`` taken in turn from each signer, as ``Ledger.prepare_proposal`` orders them."""
    queues: dict[object, list[Action]] = {}
    for action in actions:
        who = (
            ("validator", action.validator)
            if isinstance(action, VoteAction)
            else ("user", action.sender)
            if isinstance(action, TransferAction)
            else "outsider"
        )
        queues.setdefault(who, []).append(action)
    return [a for turn in itertools.zip_longest(*queues.values()) for a in turn if a is not None]


async def run_scenario(
    directory: Path, plan: list[tuple[list[Action], frozenset[int]]], trailing_blocks: int = 1
) -> Model:
    sim = Simulator(directory, KEYS, sim_genesis())
    await sim.start()
    try:
        model, signer = Model(), Signer()
        genesis_hashes = {(await ledger.info()) for ledger in sim.ledgers}
        assert len(genesis_hashes) == 1
        plan = [*plan, *[([], frozenset[int]()) for _ in range(trailing_blocks)]]
        for height, (block_actions, crash) in enumerate(plan, start=1):
            model.codes = []
            for action in block_actions:
                sim.submit(signer.raw(action))
            for action in in_turns(block_actions):  # the order the proposer puts them in
                model.apply(action)
            confirmed = model.end_block()
            result = await sim.step(crash=crash)
            assert sim.mempool == []
            infos = {await ledger.info() for ledger in sim.ledgers}
            assert infos == {(height, result.app_hash)}, f"nodes disagree at height {height}"
            assert [t.code for t in result.tx_results] == model.codes
            assert {rid for rid, _, status in result.resolved if status == "confirmed"} == {
                event_id(*EVENTS[e]) for e in confirmed
            }
            assert all(status == "confirmed" for _, _, status in result.resolved)
            assert result.validator_updates == ()
        for i, ledger in enumerate(sim.ledgers):
            for account in ACCOUNTS:
                assert await ledger.balance(account) == model.balances[account], (i, account)
            for signer_key, nonce in signer.nonces.items():
                assert await ledger.nonce(signer_key) == nonce
            processed = await ledger.list_resolutions("confirmed")
            assert {r["id"] for r in processed} == {event_id(*EVENTS[e]).hex() for e in model.processed}
            pending = await ledger.list_resolutions("pending")
            expected_pending = {
                event_id(*EVENTS[e]).hex(): len(v)
                for e, v in model.votes.items()
                if v and e not in model.processed
            }
            assert {r["id"]: r["approved_power"] for r in pending} == expected_pending
        # Money is only created by confirmed events.
        minted = sum(EVENT_AMOUNTS[e][1] for e in model.processed)
        assert sum(model.balances.values()) == sum(GENESIS_BALANCES) + minted
        return model
    finally:
        await sim.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(blocks)
def test_random_streams_keep_nodes_in_agreement(plan: list[tuple[list[Action], frozenset[int]]]) -> None:
    ensure_type_registered()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_scenario(Path(tmp), plan))


def test_scripted_stream_with_crashes(tmp_path: Path) -> None:
    """A fixed scenario that surely confirms events, crosses credits with transfers and
    crashes every node at least once."""
    register_credit(TYPE)
    plan: list[tuple[list[Action], frozenset[int]]] = [
        ([VoteAction(0, (0, 1)), VoteAction(1, (0, 1, 1)), TransferAction(0, 1, 60)], frozenset({0})),
        ([VoteAction(2, (0,)), TransferAction(0, 2, 41), TransferAction(1, 2, 100)], frozenset({1, 2})),
        ([VoteAction(2, (1,)), VoteAction(3, (0, 1)), OutsiderVote(2)], frozenset({0, 1, 2, 3})),
        (
            [VoteAction(0, (2,)), VoteAction(1, (2,)), VoteAction(1, (2,)), TransferAction(1, 0, 10)],
            frozenset(),
        ),
        ([VoteAction(3, (2, 3)), VoteAction(0, (3,)), VoteAction(2, (3, 0))], frozenset({2, 3})),
    ]
    model = asyncio.run(run_scenario(tmp_path, plan))
    assert model.processed == {0, 1, 2, 3}
    assert model.balances == {USER_IDS[0]: 45 + 10, USER_IDS[1]: 70 - 10, OTHER: 100 + 11 + 13}


def test_model_of_scripted_stream() -> None:
    """The model itself, on the scripted stream: guards the oracle the property test uses."""
    model = Model()
    for a in (VoteAction(0, (0, 1)), VoteAction(1, (0, 1, 1)), TransferAction(0, 1, 60)):
        model.apply(a)
    assert model.end_block() == set()
    for a in (VoteAction(2, (0,)), TransferAction(0, 2, 41), TransferAction(1, 2, 100)):
        model.apply(a)
    # Alice has 40 left, so the 41 transfer fails; Bob has 100 and sends it all.
    assert model.codes[-2:] == [TxCode.INSUFFICIENT_BALANCE, TxCode.OK]
    assert model.end_block() == {0}
    assert model.balances == {USER_IDS[0]: 45, USER_IDS[1]: 0, OTHER: 100}


def test_divergent_resolve_is_detected(tmp_path: Path) -> None:
    """A resolve that is not deterministic (it counts its calls across nodes) must make the
    simulator fail rather than let the nodes drift apart."""
    calls: list[int] = []

    async def impure(ctx: ResolveContext) -> None:
        calls.append(1)
        await ctx.app.set(b"calls", len(calls).to_bytes(4, "big"))

    register_resolution("test_impure", ResolutionConfig(resolve=impure))

    async def scenario() -> None:
        sim = Simulator(tmp_path, KEYS, sim_genesis())
        await sim.start()
        try:
            signer = Signer()
            for i in range(3):
                key = KEYS[i]
                vote = Vote((("test_impure", b"x"),)).encode()
                sim.submit(
                    Tx(CHAIN_ID, "vote", key.public, signer._next(key.public), vote)
                    .sign_ed25519(key)
                    .encode()
                )
            with pytest.raises(DivergenceError, match="app hashes differ at height 1"):
                await sim.step()
        finally:
            await sim.close()

    asyncio.run(scenario())
    assert len(calls) == 4


def test_governance_through_the_simulator(tmp_path: Path) -> None:
    """A fifth key joins with crashes on the way; every node applies the same update and
    the proposer rotation takes the new validator into account."""
    candidate = NodeKey.from_seed(b"\x77" * 32)

    async def scenario() -> None:
        sim = Simulator(tmp_path, KEYS, sim_genesis())
        await sim.start()
        try:
            join = Tx(CHAIN_ID, "join", candidate.public, 0, encode_join(3)).sign_ed25519(candidate)
            sim.submit(join.encode())
            result = await sim.step(crash=frozenset({3}))
            assert result.tx_results[0].ok
            rid = event_id(governance.JOIN, governance.join_body(candidate.public, 3, 0))
            for i in range(3):
                approve = Tx(CHAIN_ID, "approve", KEYS[i].public, 0, rid).sign_ed25519(KEYS[i])
                sim.submit(approve.encode())
            result = await sim.step(crash=frozenset({0, 2}))
            assert result.resolved == ((rid, governance.JOIN, "confirmed"),)
            assert result.validator_updates == ((candidate.public, 3),)
            for ledger in sim.ledgers:
                assert ledger.validators[candidate.public] == 3
            # Blocks keep coming with the candidate in the rotation (it is no node here).
            for _ in range(len(KEYS) + 1):
                await sim.step(crash=frozenset({1}))
            assert {await ledger.info() for ledger in sim.ledgers} == {
                (sim.ledgers[0].height, sim.ledgers[0].app_hash)
            }
            assert sim.ledgers[0].height == 2 + len(KEYS) + 1
        finally:
            await sim.close()

    asyncio.run(scenario())
