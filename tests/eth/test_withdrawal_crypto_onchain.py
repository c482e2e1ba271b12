"""The Python withdrawal cryptography (bridge/withdrawals) against the escrow itself on
anvil: the same leaves and digests as its views, and Python's trees, proofs and signatures
accepted by ``submitBatch`` and ``claim`` (simulated with eth_call, so one deployment serves
every example)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError

from bridge.withdrawals.eip712 import Domain, batch_digest, checkpoint, sign, valset_digest, withdrawal_leaf
from bridge.withdrawals.merkle import MerkleTree
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import Chain

# One deployment per test, shared by its examples: hypothesis must not object to that.
onchain = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

uint64 = st.integers(0, 2**64 - 1)
uint256 = st.integers(0, 2**256 - 1)
address = st.binary(min_size=20, max_size=20)
bytes32 = st.binary(min_size=32, max_size=32)

# Four validators with fixed keys, sorted by address as the escrow requires.
KEYS = sorted(
    (keccak(b"withdrawal crypto validator %d" % i) for i in range(4)),
    key=lambda key: bytes.fromhex(Account.from_key(key).address[2:]),
)
SIGNERS = [bytes.fromhex(Account.from_key(key).address[2:]) for key in KEYS]
POWERS = [1, 2, 3, 4]
FUNDS = 10**24
# Who signs: every subset of the validators, split by the escrow's rule 3 * signed > 2 * total.
SUBSETS = [set(c) for n in range(len(KEYS) + 1) for c in combinations(range(len(KEYS)), n)]
ENOUGH = [c for c in SUBSETS if 3 * sum(POWERS[i] for i in c) > 2 * sum(POWERS)]
TOO_FEW = [c for c in SUBSETS if c not in ENOUGH]


@dataclass
class Escrow:
    contract: Any
    domain: Domain


@pytest.fixture
async def escrow(chain: Chain) -> Escrow:
    token, _ = await chain.deploy("TestToken", "Bridge Test Token", "BTT")
    await chain.call(chain.contract("TestToken", token).functions.mint(chain.account.address, FUNDS))
    signers = [to_checksum_address(s) for s in SIGNERS]
    address, _ = await chain.deploy("BridgeEscrow", to_checksum_address(token), signers, POWERS)
    await deposit(chain, address, FUNDS)  # what the batches promise must be there
    chain_id = await chain.w3.eth.chain_id
    return Escrow(chain.contract("BridgeEscrow", address), Domain(chain_id, bytes.fromhex(address[2:])))


def valset(nonce: int, signers: list[bytes], powers: list[int]) -> tuple[int, list[str], list[int]]:
    return nonce, [to_checksum_address(s) for s in signers], powers


async def test_checkpoint_matches_the_constructor(escrow: Escrow) -> None:
    assert bytes(await escrow.contract.functions.checkpoint().call()) == checkpoint(0, SIGNERS, POWERS)


@onchain
@given(uint64, uint64, address, uint256)
async def test_withdrawal_leaf_matches(
    escrow: Escrow, batch_id: int, withdrawal_id: int, recipient: bytes, amount: int
) -> None:
    w = (withdrawal_id, to_checksum_address(recipient), amount)
    onchain_leaf = await escrow.contract.functions.withdrawalLeaf(batch_id, w).call()
    assert bytes(onchain_leaf) == withdrawal_leaf(escrow.domain, batch_id, withdrawal_id, recipient, amount)


@onchain
@given(uint64, bytes32, uint256, uint64)
async def test_batch_digest_matches(
    escrow: Escrow, batch_id: int, root: bytes, total: int, nonce: int
) -> None:
    onchain_digest = await escrow.contract.functions.batchDigest(batch_id, root, total, nonce).call()
    assert bytes(onchain_digest) == batch_digest(escrow.domain, batch_id, root, total, nonce)


@onchain
@given(uint64, st.lists(st.tuples(address, uint256), max_size=12))
async def test_validator_set_digest_matches(
    escrow: Escrow, nonce: int, pairs: list[tuple[bytes, int]]
) -> None:
    signers, powers = [s for s, _ in pairs], [p for _, p in pairs]
    onchain_digest = await escrow.contract.functions.validatorSetDigest(valset(nonce, signers, powers)).call()
    assert bytes(onchain_digest) == valset_digest(escrow.domain, nonce, signers, powers)


def signatures(digest: bytes, signing: set[int]) -> list[tuple[int, bytes, bytes]]:
    """The escrow's positional (v, r, s) slots; v = 0 for a validator that did not sign."""
    sigs = []
    for i, key in enumerate(KEYS):
        signature = sign(digest, key) if i in signing else bytes(65)
        sigs.append((signature[64], signature[:32], signature[32:64]))
    return sigs


withdrawals = st.lists(
    st.tuples(uint64, address.filter(any), st.integers(1, 10**6)),
    min_size=1,
    max_size=20,
    unique_by=lambda w: w[0],
)


# Per withdrawal: which proof element to replace, and by what. Drawn up front: the tree's
# shape depends on the batch id, which the escrow's state may move on a replay.
tampers = st.lists(st.tuples(st.integers(0, 63), bytes32), min_size=20, max_size=20)


@onchain
@given(uint64, withdrawals, st.sampled_from(ENOUGH), st.sampled_from(TOO_FEW), tampers)
async def test_python_trees_proofs_and_signatures_pass_the_escrow(
    chain: Chain,
    escrow: Escrow,
    batch_id: int,
    drawn: list[tuple[int, bytes, int]],
    signing: set[int],
    too_few: set[int],
    tamper: list[tuple[int, bytes]],
) -> None:
    functions = escrow.contract.functions
    while bytes(await functions.batchRoots(batch_id).call()) != bytes(32):
        batch_id = (batch_id + 1) % 2**64  # each example its own batch, without filtering
    leaves = [withdrawal_leaf(escrow.domain, batch_id, *w) for w in drawn]
    tree = MerkleTree(leaves)
    total = sum(amount for _, _, amount in drawn)

    digest = batch_digest(escrow.domain, batch_id, tree.root, total, 0)
    current = valset(0, SIGNERS, POWERS)
    with pytest.raises(ContractLogicError):
        await functions.submitBatch(batch_id, tree.root, total, current, signatures(digest, too_few)).call()
    await chain.call(functions.submitBatch(batch_id, tree.root, total, current, signatures(digest, signing)))
    assert bytes(await functions.batchRoots(batch_id).call()) == tree.root

    for (withdrawal_id, recipient, amount), leaf, (k, junk) in zip(drawn, leaves, tamper, strict=False):
        w = (withdrawal_id, to_checksum_address(recipient), amount)
        proof = tree.proof(leaf)
        await functions.claim(batch_id, w, proof).call()  # eth_call: reverts unless the proof passes
        if proof:
            tampered = list(proof)
            tampered[k % len(proof)] = junk
            with pytest.raises(ContractLogicError):
                await functions.claim(batch_id, w, tampered).call()
