"""The hand-sliced ``Deposit.decode`` accepts exactly the bodies eth_abi's decode + re-encode
accepts, and reads the same deposit from them."""

from __future__ import annotations

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from resolutions.credit import _TYPES, Deposit, _credit

words = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=20, max_size=20).map(lambda a: bytes(12) + a),  # a canonical address word
    st.integers(0, 2**64).map(lambda n: n.to_bytes(32, "big")),
)
canonical = st.lists(words, min_size=9, max_size=9).map(b"".join)
bodies = st.one_of(canonical, st.binary(max_size=400), canonical.map(lambda b: b + b"\x00"))


def reference(body: bytes) -> Deposit | None:
    """The eth_abi reading: decode, then the body must be what encoding the values gives."""
    try:
        values = decode(_TYPES, body)
    except Exception:
        return None
    if encode(_TYPES, values) != body:
        return None
    c, e, n, h, i, b, s, r, a = values
    return Deposit(c, to_checksum_address(e), n, h, i, b, to_checksum_address(s), to_checksum_address(r), a)


def fast(body: bytes) -> Deposit | None:
    try:
        return Deposit.decode(body)
    except ValueError:
        return None


@given(bodies)
def test_decode_matches_eth_abi(body: bytes) -> None:
    deposit = fast(body)
    assert deposit == reference(body)
    if deposit is not None:
        assert deposit.encode() == body
        assert deposit.key == encode(
            ("uint256", "address", "uint256"), (deposit.chain_id, deposit.escrow, deposit.nonce)
        )


@given(bodies)
def test_resolve_reads_what_decode_reads(body: bytes) -> None:
    deposit = fast(body)
    try:
        fields = _credit(body)
    except ValueError:
        assert deposit is None
        return
    assert deposit is not None
    assert fields == (deposit.key, deposit.tx_hash, deposit.log_index, deposit.account, deposit.amount)
