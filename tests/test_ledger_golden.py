"""App hashes pinned for a scenario that touches every kind of ledger write: votes spread over
blocks and landing together, a failing resolve, fees and refunds, expiry, transfers (one
failing), a join, a removal and a leave. The hashes were computed by the ledger before its
writes were kept in memory until commit (the statement-per-write version), so this proves
the faster one writes the same state in the same order; a change to what a block hashes
must update them knowingly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from eth_account import Account

from bridge.encoding import event_id
from bridge.keys import account_id
from bridge.ledger import governance
from tests.ledger_helpers import Chains, address, credit_body, genesis, node_keys, register_credit

GOLDEN = [
    "7ea8334df9def47612320cae9a3c49fbd2f4d64469bd0169d30d8f059c258a58",
    "e516e1307ceae9368991d50663ef78521d69881817751236c06fcd2ddebccef8",
    "c797cba964d7fd19437e8b99be668bb89cad971e97802f30b7fe4b344f8ac202",
    "b8533b90078c7bcbd248f23fc9292c25454e1ccf9267cef1a41dece05bdb36f6",
    "321ee6cd7f913e29e1d0e0c69bec12fa3d93dcdf8077fe9e5dd862996c567fb3",
    "9d6b7003922af7cbc15da90656fa19f79a2c7ec23eff5600ce9e7b25311d47bf",
    "244d4661015fabb6c8aed179d01dbd0ced34727edcbc0e0f8d1ed21acf52a284",
    "46151f8ad970195413182e4e032fc20e75eff6df22b13bae7d2b7dc134818554",
    "3e60253b43ce95dfaab3399b5fc5f0c39a4c4f320d3aecebcd9488db1f4b067b",
    "3786d6587e274cf6b9bd33f161ddf37feb0a74ec920aa829b0497c26c39266b9",
    "9e18545c15a1f71c686a4a2031f9df2bdcf2f4fe0daa7f5cd2d4634e490ab1db",
]


async def test_app_hashes_match_the_statement_per_write_ledger(tmp_path: Path) -> None:
    register_credit("golden_credit", expiration_period=3)
    register_credit("golden_fail", fail_after_write=True)
    keys = node_keys(4)
    k0, k1, k2, k3 = keys
    alice = Account.from_key(b"\x07" * 32)
    bob = "0x" + "b0" * 20
    gen = genesis(keys, [10, 10, 10, 10], [(account_id(k.public), 100) for k in keys])
    gen = replace(
        gen, vote_fee=1, accounts=tuple(sorted([*gen.accounts, (account_id(address(alice)), 1000)]))
    )
    chains = Chains(tmp_path)
    c = await chains.open("golden", gen)
    try:
        e = [("golden_credit", credit_body(bob, n)) for n in range(1, 6)]
        fail = ("golden_fail", credit_body(bob, 99))
        candidate = node_keys(1, offset=60)[0]
        join_id = event_id(governance.JOIN, governance.join_body(candidate.public, 5, 0))
        blocks = [
            [
                c.vote(k0, e[0], e[1], fail),
                c.vote(k1, e[0], e[1]),
                c.transfer(alice, bytes.fromhex("b0" * 20), 10),
            ],
            [
                c.vote(k2, e[0], fail, e[3]),
                c.vote(k1, fail, e[3]),
                c.vote(k0, e[3]),
                c.transfer(alice, bytes.fromhex("b0" * 20), 10**6),
            ],
            [c.join(candidate, 5), c.vote(k3, e[1])],
            [c.tx(k, "approve", join_id) for k in (k0, k1, k2)],
            [c.vote(k0, e[4])],
            [],
            [],
            [],
            [c.tx(k0, "remove", k3.public), c.tx(k1, "remove", k3.public)],
            [c.tx(k2, "leave")],
            [c.tx(candidate, "remove", k3.public)],
        ]
        results = [await c.block(*txs) for txs in blocks]
        # The scenario does what it says (else the pinned hashes would prove less).
        outcomes = sorted((status, t) for r in results for _, t, status in r.resolved)
        assert outcomes == [
            *[("confirmed", "golden_credit")] * 3,
            ("confirmed", governance.JOIN),
            ("expired", "golden_credit"),
            ("failed", "golden_fail"),
        ]
        failures = [t.code.name for r in results for t in r.tx_results if not t.ok]
        assert failures == ["INSUFFICIENT_BALANCE"] * 2  # a transfer; the candidate's vote fee
        assert [r.app_hash.hex() for r in results] == GOLDEN
    finally:
        await chains.close_all()
