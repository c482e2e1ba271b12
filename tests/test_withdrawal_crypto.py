"""The withdrawal path's cryptography (bridge/withdrawals, docs/withdrawals.md): the Merkle
tree against OpenZeppelin's own vectors, proofs as properties, the EIP-712 digests against
eth_account's independent implementation, and signatures as OpenZeppelin's ECDSA takes them."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import Signature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.withdrawals.eip712 import (
    SECP256K1_N,
    Domain,
    batch_digest,
    checkpoint,
    recover,
    sign,
    valset_digest,
    withdrawal_leaf,
)
from bridge.withdrawals.merkle import MerkleTree, leaf_hash, verify

# Vectors from OpenZeppelin/merkle-tree at commit 98ff55dc7b6004a6e57ca0cb256cc0d08ecb6096.
# test/dumps/standard-v1.sorted.1_0_6.json: a StandardMerkleTree dump (sorted leaves) over
# [["a"], ..., ["f"]] with leaf encoding ["string"].
LETTERS_TREE = [
    "0x6deb52b5da8fd108f79fab00341f38d2587896634c646ee52e49f845680a70c8",
    "0x52426e0f1f65ff7e209a13b8c29cffe82e3acaf3dad0a9b9088f3b9a61a929c3",
    "0xfd3cf45654e88d1cc5d663578c82c76f4b5e3826bacaa1216441443504538f51",
    "0x8076923e76cf01a7c048400a2304c9a9c23bbbdac3a98ea3946340fdafbba34f",
    "0x965b92c6cf08303cc4feb7f3e0819c436c2cec17c6f0688a6af139c9a368707c",
    "0xeba909cf4bb90c6922771d7f126ad0fd11dfde93f3937a196274e1ac20fd2f5b",
    "0xc62a8cfa41edc0ef6f6ae27a2985b7d39c7fea770787d7e104696c6e81f64848",
    "0x9cf5a63718145ba968a01c1d557020181c5b252f665cf7386d370eddb176517b",
    "0x9c15a6a0eaeed500fd9eed4cbeab71f797cefcc67bfd46683e4d2e6ff7f06d1c",
    "0x9a4f64e953595df82d1b4f570d34c4f4f0cfaf729a61e9d60e83e579e1aa283e",
    "0x19ba6c6333e0e9a15bf67523e0676e2f23eb8e574092552d5e888c64a4bb3681",
]
LETTERS_INDEX = {"a": 8, "b": 10, "c": 7, "d": 5, "e": 9, "f": 6}  # value -> treeIndex

# Same commit, src/standard.test.ts.md, "dump (with seed=0)", Snapshot 1 (sortLeaves: true):
# leaf encoding ["uint256", "string[]"]; values as (treeIndex, uint256, string[]).
SEED0_TREE = [
    "0x157e9c38a2614a4493a0e4c38e84a1b43a932665e4d42fa2bf345824b9f101b7",
    "0xcd255af645cd649e62c7e56d324bc8b525a39bd311e05a1a5de00d73ff1fe253",
    "0xcdf36ec033d7950f6d6e01f9a66a67c3940ea15650a1300a5015d068c4543cf3",
    "0x276d63ffce14279caf791d010be5c715c64ec407dba2857628a9741fcd18bcd4",
    "0xf1e0e7f88a5f498d37d5a40af968ad629eabc52b908b9575f3a9735b3cf3a28b",
    "0xcd9fc8f6b33a02d7a601b0c77e7d36f230bc7871623435fe9aecb52887efefc1",
    "0x70ce5864fbf25654a2d3319cab6df02731e260754370f6444c03678b7e5b616a",
    "0xc9487ccb1a15e20f708fd5d6a93b049034d1ec516624b927b5f88ab37f20d06d",
    "0xada38b6fdf007666bf5b19773191f484c99c249e44e1b07d5218f9eefb5ff9b3",
    "0x0b592340f8a37b1fd772c131d85d1fe11f5b5a14ff1575163be1f48cdb569b60",
    "0x18c5e1f567b176b912f504943387285ba231aba9fab91569f5d90e3d72e881ba",
    "0xfff0acc0b7c7dd4dca88db8b9ea4cb251797946d4bf09314f9487d079cbc8168",
    "0xf37f0986a1809cffdf18075f7ff12bdfbc6b46ac4966cbc1dbecf50e59b8146f",
    "0xc141a2c1fa419824b43dbded51a5087ffe99d20964d995f96fb619781a6662d2",
    "0xb2ec04776c599a72b9b1d2dfdee91560dc9f479643e201020ded568f68c06a80",
    "0xa596ffee17c3519d0311edb25ac6d28e08407856a2c6fd1db81a9260295f2851",
    "0x8cf4ffe7174807707948cd21858ba8360b8f37a69e12696a722c9a500970b7dd",
    "0x6de05019198fcc90ba19896fca48ba0c8f9dd00b7264c7a22284351f3652ea5c",
    "0x67c6abdc93cb48b54a8f8e02762d6582ba99455b1112824fa2913e51c14610a3",
    "0x53e63148bd7b5c974996c9469d0fcc9e764d34ddafec28eabb4a93399eb8b882",
    "0x53722a4093d3d803b22250c797e0d4fdda3aebfd9c151c8c775ffa8b440f4629",
    "0x4bda3fa8b7e83fdab2048e0faa3fc2edc803df4f2df2996309c71d9d560ea667",
    "0x02ad059b3cbe14ca74695645b9287bab95865054a44f35870ccb3224d57ae497",
]
SEED0_VALUES: list[tuple[int, int, list[str]]] = [
    (17, 66287721640598561135213480820701815755554778029154065470876227036122175634549, ["yuwNJcxE", "Jo "]),
    (
        21,
        8020480628005766167208460837369934190794242810260282612290465172763096588057,
        ["2,'V8", "O]Z", "m>", "", "d?^EL&", '">S| Y*+{l', "?"],
    ),
    (
        19,
        112879794757531459800339918113696494556225854331871489687900035348027579020272,
        ["%k[", "N!%'jX", "m+;qetk=1", "w&<ss", "U&MS", '"v`', "TF-~j 86*", "%`_"],
    ),
    (
        15,
        33864524538174213180864155446773490862606903779325919174280360794793758686295,
        ["Y]=o", "&zf|-$//", "N5:\\AeJMQS", "gs", "#zoWcV?"],
    ),
    (
        20,
        107050912497579409892259520427413406998189233630829093007942789472118334076630,
        ["", "D{^9}a'b", "J?", "d]hwCj`.0`", "}$8lJ6", "8D?2NFj", "|"],
    ),
    (
        18,
        54271045445295662359842113547789337750728303669052826789247544201502186884440,
        ["", "$5<'C 7\\1", "\\1^"],
    ),
    (
        12,
        111226150757742148204378581053541667604574235726642963873222725227309699221207,
        [":u>t", "<K@3}}>!qy", "7n9|dcX_"],
    ),
    (
        11,
        96858402044473560457792214960792831024578767550709334863707734917529211967478,
        [".\\;fsj", "Xm(#", "", ":Dy.`"],
    ),
    (
        13,
        13592740185343819183668649861246094997575903674719095797724991205103120326931,
        ["FDP:", "vzEG`nVv{", "]p", "G", "4'b4<Z", "cX:NZsGKl", "v2[! @7H7", "PwL\\", "eV}G>"],
    ),
    (
        16,
        5509260375875029578873473733289375469252728349290951718470281734669489179648,
        ["\"$5k'?C!", "d`)G7&{('w", "HcT7M", "P?sG", "lt\\{", "}7P<8S+O", "%5(", ""],
    ),
    (22, 28058159076087978205069147618309547967726169776540400708466739311867552389147, []),
    (
        14,
        28066774421270881318134657595141877811725911146641727151957461238803360834378,
        ["fVnd&dJd", "<)Q", 'f"F?VG\\a', "u$&", "saIit+", ")"],
    ),
]


def h(hex_string: str) -> bytes:
    return bytes.fromhex(hex_string.removeprefix("0x"))


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def siblings(nodes: tuple[bytes, ...], j: int) -> list[bytes]:
    """The proof of any node, inner ones included, read off the array layout."""
    path = []
    while j > 0:
        path.append(nodes[j + 1 if j % 2 else j - 1])
        j = (j - 1) // 2
    return path


# --- OpenZeppelin's vectors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "entries", "expected"),
    [
        (["string"], [(index, [value]) for value, index in LETTERS_INDEX.items()], LETTERS_TREE),
        (["uint256", "string[]"], [(index, [n, strings]) for index, n, strings in SEED0_VALUES], SEED0_TREE),
    ],
    ids=["letters", "seed0"],
)
def test_openzeppelin_dumps(
    types: list[str], entries: list[tuple[int, list[Any]]], expected: list[str]
) -> None:
    nodes = [h(x) for x in expected]
    leaves = []
    for index, values in entries:
        leaf = leaf_hash(types, values)
        assert leaf == nodes[index]
        leaves.append(leaf)
    tree = MerkleTree(leaves)
    assert list(tree.nodes) == nodes and tree.root == nodes[0] and len(tree) == len(leaves)
    assert MerkleTree(leaves[::-1]).nodes == tree.nodes  # the input order does not matter
    for index, _ in entries:
        proof = tree.proof(nodes[index])
        assert proof == siblings(tree.nodes, index) and verify(proof, tree.root, nodes[index])


def test_one_leaf_is_its_own_root() -> None:
    leaf = leaf_hash(["string"], ["a"])
    tree = MerkleTree([leaf])
    assert tree.root == leaf and tree.nodes == (leaf,) and tree.proof(leaf) == []
    assert verify([], leaf, leaf)


def test_bad_trees_and_unknown_leaves() -> None:
    a, b = leaf_hash(["string"], ["a"]), leaf_hash(["string"], ["b"])
    with pytest.raises(ValueError):
        MerkleTree([])
    with pytest.raises(ValueError):
        MerkleTree([a, b, a])
    with pytest.raises(ValueError):
        MerkleTree([a, b[:31]])
    tree = MerkleTree([a, b])
    with pytest.raises(KeyError):
        tree.proof(leaf_hash(["string"], ["c"]))
    with pytest.raises(KeyError):
        tree.proof(tree.root)  # an inner node is no leaf
    assert not verify([b[:31]], tree.root, a)


# --- properties of the tree ---------------------------------------------------------------

uint64 = st.integers(0, 2**64 - 1)
uint256 = st.integers(0, 2**256 - 1)
address = st.binary(min_size=20, max_size=20)
bytes32 = st.binary(min_size=32, max_size=32)
domains = st.builds(Domain, chain_id=uint256, escrow=address)


# Withdrawal ids are unique across the ledger, so a batch's leaves are distinct.
def withdrawals(min_size: int = 1) -> st.SearchStrategy[list[tuple[int, bytes, int]]]:
    return st.lists(
        st.tuples(uint64, address, uint256), min_size=min_size, max_size=40, unique_by=lambda w: w[0]
    )


@st.composite
def batches(draw: st.DrawFn, min_size: int = 1) -> tuple[list[bytes], MerkleTree]:
    domain, batch_id = draw(domains), draw(uint64)
    drawn = draw(withdrawals(min_size))
    leaves = [withdrawal_leaf(domain, batch_id, *w) for w in drawn]
    return leaves, MerkleTree(draw(st.permutations(leaves)))


@given(batches())
def test_every_leaf_proves_its_way_to_the_root(batch: tuple[list[bytes], MerkleTree]) -> None:
    leaves, tree = batch
    assert tree.root == MerkleTree(leaves).root  # whatever order the batch lists them in
    for leaf in leaves:
        proof = tree.proof(leaf)
        assert verify(proof, tree.root, leaf)
        assert len(proof) <= len(leaves).bit_length()


@given(batches(min_size=2), st.data())
def test_wrong_leaves_and_tampered_proofs_fail(
    batch: tuple[list[bytes], MerkleTree], data: st.DataObject
) -> None:
    leaves, tree = batch
    i, j = data.draw(st.lists(st.sampled_from(range(len(leaves))), min_size=2, max_size=2, unique=True))
    proof = tree.proof(leaves[i])
    assert not verify(proof, tree.root, leaves[j])
    assert not verify(tree.proof(leaves[j]), tree.root, leaves[i])
    k, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    tampered = list(proof)
    tampered[k] = (int.from_bytes(proof[k], "big") ^ (1 << bit)).to_bytes(32, "big")
    assert not verify(tampered, tree.root, leaves[i])
    assert not verify(proof[:-1], tree.root, leaves[i])
    assert not verify([*proof, data.draw(bytes32)], tree.root, leaves[i])
    assert not verify(proof, leaves[j], leaves[i])


@given(batches(min_size=2))
def test_no_inner_node_passes_for_a_leaf(batch: tuple[list[bytes], MerkleTree]) -> None:
    # MerkleProof.verify by itself accepts an inner node with the rest of its path: it cannot
    # tell the levels apart. What keeps that harmless is the double hash: a leaf is
    # keccak(keccak(abi.encode(...))) and an inner node keccak(64 bytes), so no inner node is
    # the leaf of any withdrawal, and claim() only ever hashes a withdrawal into a leaf.
    leaves, tree = batch
    inner = tree.nodes[: len(leaves) - 1]
    assert not set(inner) & set(leaves)
    for j in range(1, len(inner)):
        assert verify(siblings(tree.nodes, j), tree.root, inner[j])
        with pytest.raises(KeyError):
            tree.proof(inner[j])


@given(domains, uint64, uint64, address, uint256)
def test_withdrawal_leaf_words(
    domain: Domain, batch_id: int, withdrawal_id: int, recipient: bytes, amount: int
) -> None:
    # The doc's field order, word by word: abi.encode of static types is just their words.
    encoded = (
        word(withdrawal_id)
        + bytes(12)
        + recipient
        + word(amount)
        + bytes(12)
        + domain.escrow
        + word(domain.chain_id)
        + word(batch_id)
    )
    assert withdrawal_leaf(domain, batch_id, withdrawal_id, recipient, amount) == keccak(keccak(encoded))


# --- EIP-712 --------------------------------------------------------------------------------

valsets = st.lists(st.tuples(address, uint256), max_size=12).map(
    lambda pairs: ([s for s, _ in pairs], [p for _, p in pairs])
)


def typed_digest(
    domain: Domain, primary: str, fields: list[tuple[str, str]], message: dict[str, Any]
) -> bytes:
    """The digest by eth_account's own EIP-712 implementation, from the type strings."""
    signable = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                primary: [{"name": name, "type": kind} for kind, name in fields],
            },
            "primaryType": primary,
            "domain": {
                "name": "BridgeEscrow",
                "version": "1",
                "chainId": domain.chain_id,
                "verifyingContract": to_checksum_address(domain.escrow),
            },
            "message": message,
        }
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@given(domains, uint64, bytes32, uint256, uint64)
def test_batch_digest_is_eip712(domain: Domain, batch_id: int, root: bytes, total: int, nonce: int) -> None:
    fields = [("uint64", "batchId"), ("bytes32", "root"), ("uint256", "total"), ("uint64", "valsetNonce")]
    message = {"batchId": batch_id, "root": root, "total": total, "valsetNonce": nonce}
    assert batch_digest(domain, batch_id, root, total, nonce) == typed_digest(
        domain, "Batch", fields, message
    )


@given(domains, uint64, valsets)
def test_valset_digest_is_eip712(domain: Domain, nonce: int, valset: tuple[list[bytes], list[int]]) -> None:
    signers, powers = valset
    fields = [("uint64", "nonce"), ("address[]", "signers"), ("uint256[]", "powers")]
    message = {"nonce": nonce, "signers": [to_checksum_address(s) for s in signers], "powers": powers}
    expected = typed_digest(domain, "ValidatorSet", fields, message)
    assert valset_digest(domain, nonce, signers, powers) == expected


@given(uint64, valsets)
def test_checkpoint_is_abi_encode_of_three_arguments(
    nonce: int, valset: tuple[list[bytes], list[int]]
) -> None:
    signers, powers = valset
    n = len(signers)
    encoded = (
        word(nonce)
        + word(3 * 32)  # offset of signers: after the three head words
        + word(3 * 32 + 32 * (n + 1))  # offset of powers: after signers' length and items
        + word(n)
        + b"".join(bytes(12) + s for s in signers)
        + word(n)
        + b"".join(word(p) for p in powers)
    )
    assert checkpoint(nonce, signers, powers) == keccak(encoded)


def test_sets_of_mismatched_lengths_are_refused() -> None:
    domain = Domain(1, bytes(20))
    with pytest.raises(ValueError):
        checkpoint(0, [b"\x01" * 20], [])
    with pytest.raises(ValueError):
        valset_digest(domain, 0, [], [1])
    with pytest.raises(ValueError):
        Domain(1, bytes(19))


# --- signatures -----------------------------------------------------------------------------

private_keys = st.integers(1, SECP256K1_N - 1).map(word)
ANVIL_KEY = h("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ANVIL_ADDRESS = h("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")  # anvil's well-known account 0


def test_known_key_signs_and_recovers() -> None:
    digest = batch_digest(Domain(31337, b"\x11" * 20), 1, b"\x22" * 32, 10**18, 0)
    assert recover(digest, sign(digest, ANVIL_KEY)) == ANVIL_ADDRESS
    with pytest.raises(ValueError):
        sign(digest[:31], ANVIL_KEY)
    with pytest.raises(ValueError):
        recover(digest + b"\x00", sign(digest, ANVIL_KEY))


@given(private_keys, bytes32, bytes32)
def test_sign_recover_round_trip(key: bytes, digest: bytes, other: bytes) -> None:
    signature = sign(digest, key)
    address = h(Account.from_key(key).address)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    assert signature == bytes(Account.unsafe_sign_hash(digest, key).signature)  # same deterministic k
    assert recover(digest, signature) == address
    assume(other != digest)
    assert recover(other, signature) != address


@given(private_keys, bytes32)
def test_recover_refuses_non_canonical_signatures(key: bytes, digest: bytes) -> None:
    signature = sign(digest, key)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    address = h(Account.from_key(key).address)
    # The high-s twin is as valid to secp256k1 (plain recovery finds the same key) but
    # ECDSA.recover refuses it; so must we, or one approval could be counted twice.
    twin = Signature(vrs=((v - 27) ^ 1, int.from_bytes(r, "big"), SECP256K1_N - s))
    assert twin.recover_public_key_from_msg_hash(digest).to_canonical_address() == address
    assert recover(digest, r + word(SECP256K1_N - s) + bytes([v ^ 1])) is None
    for bad_v in (0, 1, 29, 255):
        assert recover(digest, signature[:64] + bytes([bad_v])) is None
    for bad in (b"", signature[:64], signature + b"\x00", signature[:64] + b"\x00" + signature[64:]):
        assert recover(digest, bad) is None
    for bad_r in (0, SECP256K1_N, 2**256 - 1):
        assert recover(digest, word(bad_r) + signature[32:]) is None
    assert recover(digest, r + word(0) + bytes([v])) is None
    assert recover(digest, r + word(SECP256K1_N // 2 + 1) + bytes([v])) is None


def test_recover_fails_softly_off_the_curve() -> None:
    # r must be the x of a curve point: x**3 + 7 a square mod p. 5**3 + 7 = 132 is none.
    p = 2**256 - 2**32 - 977
    assert pow(5**3 + 7, (p - 1) // 2, p) != 1
    assert recover(bytes(32), word(5) + word(1) + bytes([27])) is None


@settings(max_examples=200)
@given(bytes32, st.integers(1, SECP256K1_N - 1), st.integers(1, SECP256K1_N // 2), st.sampled_from([27, 28]))
def test_recover_of_random_signatures_never_raises(digest: bytes, r: int, s: int, v: int) -> None:
    result = recover(digest, word(r) + word(s) + bytes([v]))
    assert result is None or len(result) == 20
