"""The canonical transaction encoding, its payloads, and both signature schemes."""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.encoding import MAX_U64, Reader, Writer
from bridge.errors import DecodeError, TxCode, TxError
from bridge.keys import NodeKey
from bridge.txs import (
    MAX_TX_BYTES,
    PAYLOADS,
    TX_TYPES,
    VERSION,
    Approve,
    Join,
    Leave,
    Payload,
    Remove,
    Transfer,
    Tx,
    Vote,
    VoteIds,
    decode_payload,
    encode_join,
)

KEY = NodeKey.from_seed(bytes(range(32)))
SAMPLE_VOTE = Vote((("a", b""), ("b_2", b"\x00" * 10)))


def sample_tx(**changes: object) -> Tx:
    tx = Tx("bridge-test", "vote", KEY.public, 7, Vote((("credit", b"\x01\x02"),)).encode())
    return replace(tx, **changes)  # type: ignore[arg-type]


def test_roundtrip_is_exact() -> None:
    tx = sample_tx().sign_ed25519(KEY)
    raw = tx.encode()
    decoded = Tx.decode(raw)
    assert decoded == tx
    assert decoded.encode() == raw
    assert decoded.hash() == tx.hash()


def test_layout_is_the_documented_one() -> None:
    tx = Tx("c", "leave", b"\xaa" * 32, 258, b"", b"\x55" * 64)
    expected = (
        bytes([VERSION])
        + struct.pack(">I", 1)
        + b"c"
        + struct.pack(">I", 5)
        + b"leave"
        + struct.pack(">I", 32)
        + b"\xaa" * 32
        + (258).to_bytes(8, "big")
        + struct.pack(">I", 0)
        + struct.pack(">I", 64)
        + b"\x55" * 64
    )
    assert tx.encode() == expected


def expect_code(raw: bytes, code: TxCode) -> TxError:
    with pytest.raises(TxError) as info:
        Tx.decode(raw)
    assert info.value.code == code, str(info.value)
    return info.value


def test_trailing_bytes_rejected() -> None:
    raw = sample_tx().sign_ed25519(KEY).encode()
    err = expect_code(raw + b"\x00", TxCode.MALFORMED)
    assert "trailing" in str(err)


@pytest.mark.parametrize("cut", [0, 1, 5, 20, -65, -1])
def test_truncated_bytes_rejected(cut: int) -> None:
    raw = sample_tx().sign_ed25519(KEY).encode()
    expect_code(raw[:cut], TxCode.MALFORMED)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_rejected(version: int) -> None:
    raw = sample_tx().sign_ed25519(KEY).encode()
    err = expect_code(bytes([version]) + raw[1:], TxCode.MALFORMED)
    assert "version" in str(err)


def test_length_prefix_beyond_data_rejected() -> None:
    raw = bytearray(sample_tx().encode())
    raw[1:5] = struct.pack(">I", 2**32 - 1)  # chain id length
    expect_code(bytes(raw), TxCode.MALFORMED)


def test_overlong_fields_rejected() -> None:
    expect_code(sample_tx(chain_id="c" * 129).encode(), TxCode.MALFORMED)
    expect_code(sample_tx(signer=b"\x01" * 33).encode(), TxCode.MALFORMED)
    expect_code(sample_tx(signature=b"\x01" * 66).encode(), TxCode.MALFORMED)


def test_invalid_utf8_rejected() -> None:
    raw = Writer().u8(VERSION).blob(b"\xff\xfe").text("vote").blob(KEY.public).u64(0).blob(b"").blob(b"")
    expect_code(raw.finish(), TxCode.MALFORMED)


def test_unknown_type_and_bad_signer_length() -> None:
    expect_code(sample_tx(type="mint").encode(), TxCode.UNKNOWN_TYPE)
    expect_code(sample_tx(signer=b"\x01" * 31).encode(), TxCode.MALFORMED)


def test_too_large_rejected_before_parsing() -> None:
    expect_code(b"\x01" * (MAX_TX_BYTES + 1), TxCode.TOO_LARGE)


# -- the integer encodings -- #


@pytest.mark.parametrize("value", [0, 1, 255, 256, 2**64, 2**255])
def test_uint_roundtrip_is_minimal(value: int) -> None:
    raw = Writer().uint(value).finish()
    assert struct.unpack(">I", raw[:4])[0] == (value.bit_length() + 7) // 8
    r = Reader(raw)
    assert r.uint() == value
    r.done()


@pytest.mark.parametrize("raw", [b"\x00", b"\x00\x01", b"\x00\x00\x00\x05"])
def test_non_minimal_uint_rejected(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="leading zero"):
        Reader(Writer().blob(raw).finish()).uint()


def test_non_minimal_uint_in_transfer_payload_rejected() -> None:
    good = Transfer(b"\x02" * 20, 5).encode()
    bad = Writer().blob(b"\x02" * 20).blob(b"\x00\x05").finish()
    tx = Tx("c", "transfer", b"\x01" * 20, 0, good)
    assert decode_payload(tx) == Transfer(b"\x02" * 20, 5)
    with pytest.raises(TxError) as info:
        decode_payload(replace(tx, payload=bad))
    assert info.value.code == TxCode.INVALID_PAYLOAD


def test_uint_too_wide_rejected() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit"):
        Reader(Writer().uint(2**256).finish()).uint()


def test_negative_uint_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        Writer().uint(-1)


# -- payloads -- #


@pytest.mark.parametrize(
    ("type_", "payload", "expected"),
    [
        ("vote", SAMPLE_VOTE.encode(), SAMPLE_VOTE),
        ("vote_ids", VoteIds((b"\x05" * 32, b"\x06" * 32)).encode(), VoteIds((b"\x05" * 32, b"\x06" * 32))),
        ("join", encode_join(5), Join(5)),
        ("approve", b"\x07" * 32, Approve(b"\x07" * 32)),
        ("remove", b"\x08" * 32, Remove(b"\x08" * 32)),
        ("leave", b"", Leave()),
        ("transfer", Transfer(b"\x09" * 32, 2**200).encode(), Transfer(b"\x09" * 32, 2**200)),
    ],
)
def test_payload_roundtrip(type_: str, payload: bytes, expected: Payload) -> None:
    decoded = decode_payload(Tx("c", type_, KEY.public, 0, payload))
    assert decoded == expected
    assert type(decoded).TX_TYPE == type_
    assert decoded.encode() == payload
    with pytest.raises(FrozenInstanceError):
        decoded.__setattr__("TX_TYPE", "other")


def test_the_type_list_is_written_once() -> None:
    """TX_TYPES is the wire names of the payload classes; a name no class has is refused
    as an unknown type, not read as some other payload."""
    assert TX_TYPES == (
        "vote",
        "vote_ids",
        "join",
        "approve",
        "leave",
        "remove",
        "transfer",
        "withdraw",
        "sign_batch",
        "sign_valset",
    )
    assert all(PAYLOADS[name].TX_TYPE == name for name in TX_TYPES)
    with pytest.raises(TxError) as info:
        decode_payload(Tx("c", "mint", KEY.public, 0, b""))
    assert info.value.code == TxCode.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        ("vote", Writer().u32(0).finish()),  # no events
        ("vote", Vote((("a", b""),)).encode() + b"\x00"),  # trailing byte
        ("join", encode_join(5)[:-1]),
        ("join", Writer().u64(0).finish()),  # zero power
        ("approve", b"\x07" * 31),
        ("leave", b"\x00"),
        ("transfer", Writer().blob(b"\x01" * 21).uint(1).finish()),  # bad recipient
        ("transfer", Writer().blob(b"\x01" * 20).uint(0).finish()),  # zero amount
    ],
)
def test_invalid_payloads_rejected(type_: str, payload: bytes) -> None:
    with pytest.raises(TxError) as info:
        decode_payload(Tx("c", type_, KEY.public, 0, payload))
    assert info.value.code == TxCode.INVALID_PAYLOAD


def test_encode_join_bounds() -> None:
    assert Reader(encode_join(MAX_U64)).u64() == MAX_U64
    for bad in (0, -1, MAX_U64 + 1):
        with pytest.raises(ValueError):
            encode_join(bad)


# -- signatures -- #


def test_ed25519_signature_verifies_and_tampering_fails() -> None:
    tx = sample_tx().sign_ed25519(KEY)
    assert len(tx.signature) == 64
    assert tx.verify()
    assert Tx.decode(tx.encode()).verify()
    for tampered in (
        replace(tx, nonce=tx.nonce + 1),
        replace(tx, chain_id="other-chain"),
        replace(tx, type="leave"),
        replace(tx, payload=tx.payload + b"\x00"),
        replace(tx, signature=bytes([tx.signature[0] ^ 1]) + tx.signature[1:]),
        replace(tx, signature=b""),
        replace(tx, signer=NodeKey.generate().public),
    ):
        assert not tampered.verify(), tampered


def test_ed25519_signature_is_domain_separated() -> None:
    tx = sample_tx()
    # A signature over the bare unsigned bytes (no prefix) must not verify.
    assert not replace(tx, signature=KEY.sign(tx.unsigned())).verify()


def test_ed25519_sign_requires_matching_key() -> None:
    with pytest.raises(ValueError, match="signer must be the key's public key"):
        sample_tx().sign_ed25519(NodeKey.generate())


def test_eip712_signature_verifies_and_tampering_fails() -> None:
    account = Account.create()
    signer = bytes.fromhex(account.address[2:])
    tx = Tx("bridge-test", "transfer", signer, 3, Transfer(b"\x01" * 20, 10).encode()).sign_eth(account.key)
    assert len(tx.signature) == 65
    assert tx.verify()
    assert Tx.decode(tx.encode()).verify()
    other = bytes.fromhex(Account.create().address[2:])
    for tampered in (
        replace(tx, nonce=4),
        replace(tx, chain_id="other-chain"),
        replace(tx, type="vote"),
        replace(tx, payload=Transfer(b"\x01" * 20, 11).encode()),
        replace(tx, signer=other),
        replace(tx, signature=tx.signature[:64] + bytes([tx.signature[64] ^ 1])),
        replace(tx, signature=bytes(65)),
        replace(tx, signature=tx.signature[:64]),
    ):
        assert not tampered.verify(), tampered


def test_eip712_signature_from_other_account_fails() -> None:
    signer = bytes.fromhex(Account.create().address[2:])
    payload = Transfer(b"\x01" * 20, 10).encode()
    tx = Tx("bridge-test", "transfer", signer, 0, payload).sign_eth(Account.create().key)
    assert not tx.verify()


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def high_s(tx: Tx) -> Tx:
    """The same ECDSA signature in its other valid form: s -> n - s, with v flipped."""
    r, s, v = tx.signature[:32], int.from_bytes(tx.signature[32:64], "big"), tx.signature[64]
    return replace(tx, signature=r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v]))


def test_eip712_high_s_and_other_v_encodings_are_rejected() -> None:
    """One signature, one encoding: otherwise a transfer could appear under several tx hashes."""
    account = Account.from_key(b"\x07" * 32)
    signer = bytes.fromhex(account.address[2:])
    seen_v = set()
    for nonce in range(8):
        tx = Tx("c", "transfer", signer, nonce, Transfer(b"\x01" * 20, 5).encode()).sign_eth(account.key)
        assert tx.verify() and tx.signature[64] in (27, 28)
        seen_v.add(tx.signature[64])
        assert int.from_bytes(tx.signature[32:64], "big") <= SECP256K1_N // 2
        flipped = high_s(tx)
        # eth_account itself recovers the signer from the flipped form: it is a valid signature.
        message = encode_typed_data(full_message=tx.typed_data())
        assert Account.recover_message(message, signature=flipped.signature) == account.address
        assert not flipped.verify()
        # v as 0/1 or with an EIP-155 chain id folded in: the same key recovers, also refused.
        for v in (0, 1, 35, 36, 37, 38, 255):
            other_v = replace(tx, signature=tx.signature[:64] + bytes([v]))
            assert not other_v.verify(), v
    assert seen_v == {27, 28}  # both parities of v were flipped


# -- properties -- #

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20).filter(lambda s: len(s.encode()) <= 32)
txs = st.builds(
    Tx,
    chain_id=texts,
    type=st.sampled_from(TX_TYPES),
    signer=st.one_of(st.binary(min_size=20, max_size=20), st.binary(min_size=32, max_size=32)),
    nonce=st.integers(0, MAX_U64),
    payload=st.binary(max_size=64),
    signature=st.binary(max_size=65),
)


@given(txs)
def test_any_tx_roundtrips(tx: Tx) -> None:
    raw = tx.encode()
    decoded = Tx.decode(raw)
    assert decoded == tx
    assert decoded.encode() == raw


def mutate(raw: bytes, data: st.DataObject) -> bytes:
    if not raw:
        return raw
    i = data.draw(st.integers(0, len(raw) - 1))
    return raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]


def check_decode(raw: bytes) -> None:
    try:
        tx = Tx.decode(raw)
    except TxError as exc:
        assert exc.code in (TxCode.MALFORMED, TxCode.UNKNOWN_TYPE, TxCode.TOO_LARGE)
        return
    assert tx.encode() == raw


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_tx_error(raw: bytes) -> None:
    check_decode(bytes([VERSION]) + raw)
    check_decode(raw)


@settings(max_examples=300)
@given(txs, st.data())
def test_mutated_encodings_only_raise_tx_error(tx: Tx, data: st.DataObject) -> None:
    check_decode(mutate(tx.encode(), data))


@settings(max_examples=300)
@given(st.sampled_from(TX_TYPES), st.binary(max_size=80))
def test_random_payloads_only_raise_tx_error_and_roundtrip(type_: str, payload: bytes) -> None:
    try:
        value = decode_payload(Tx("c", type_, KEY.public, 0, payload))
    except TxError as exc:
        assert exc.code == TxCode.INVALID_PAYLOAD
        return
    assert type(value).TX_TYPE == type_
    assert value.encode() == payload


def test_a_wallet_signature_from_foundry_cast_is_accepted(tmp_path: Path) -> None:
    """An independent signer (Foundry's `cast wallet sign --data`) over the typed-data JSON
    the node serves gives the signature the node accepts: the format is standard EIP-712."""
    from bridge.txs import Withdraw
    from bridge.withdrawals.eip712 import Domain

    cast = Path(__file__).resolve().parents[1] / "node_modules" / ".bin" / "cast"
    user = Account.from_key(b"\x61" * 32)
    escrow = Domain(31337, bytes.fromhex("ee" * 20))
    signer = bytes.fromhex(user.address[2:])
    for tx in (
        Tx("bridge-test", "withdraw", signer, 3, Withdraw(b"\xab" * 20, 300).encode()),
        Tx("bridge-test", "transfer", signer, 4, Transfer(b"\xab" * 32, 10**30).encode()),
    ):
        path = tmp_path / f"{tx.type}.json"
        path.write_text(json.dumps(tx.typed_data_json(escrow)))
        done = subprocess.run(
            [
                str(cast),
                "wallet",
                "sign",
                "--data",
                "--from-file",
                str(path),
                "--private-key",
                "0x" + "61" * 32,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        signed = replace(tx, signature=bytes.fromhex(done.stdout.strip()[2:]))
        assert signed.verify(escrow)
        assert not signed.verify(None) and not signed.verify(replace(escrow, chain_id=1))
        assert signed.signature == tx.sign_eth(user.key, escrow).signature
