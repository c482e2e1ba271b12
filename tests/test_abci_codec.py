"""The ABCI codec against hand-computed protobuf bytes, bytes made by CometBFT's own Go types,
and round-trip properties."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.engines.abci import codec, types, wire
from bridge.engines.abci.codec import (
    UnknownRequest,
    decode_message,
    decode_request,
    decode_response,
    encode_message,
    encode_request,
    encode_response,
)
from bridge.engines.abci.types import (
    ApplySnapshotChunkResponse,
    CheckTxRequest,
    CheckTxResponse,
    CommitInfo,
    CommitResponse,
    EchoRequest,
    Event,
    EventAttribute,
    ExceptionResponse,
    ExecTxResult,
    ExtendedCommitInfo,
    ExtendedVoteInfo,
    FinalizeBlockRequest,
    FinalizeBlockResponse,
    FlushRequest,
    InfoRequest,
    InfoResponse,
    InitChainRequest,
    InitChainResponse,
    Misbehavior,
    PrepareProposalRequest,
    ProcessProposalResponse,
    QueryResponse,
    Validator,
    ValidatorUpdate,
    VoteInfo,
)
from bridge.engines.abci.wire import DecodeError, FrameTooLarge

PK = bytes([0x11]) * 32

# --- hand-computed vectors: (hex with spaces between fields, message) -------------------------

K = PK.hex()

HAND_REQUESTS = [
    # Request{echo=1 {message=1 "hi"}}
    ("0a 04 | 0a 02 6869", EchoRequest("hi")),
    # Request{flush=2 {}}
    ("12 00", FlushRequest()),
    # Request{info=3 {version "0.38.26", block_version 11, p2p_version 8, abci_version "2.0.0"}}
    (
        "1a 14 | 0a 07 302e33382e3236 | 10 0b | 18 08 | 22 05 322e302e30",
        InfoRequest("0.38.26", 11, 8, "2.0.0"),
    ),
    # Request{check_tx=8 (key 0x42) {tx "abc", type RECHECK}}
    ("42 07 | 0a 03 616263 | 10 01", CheckTxRequest(b"abc", 1)),
    # Request{finalize_block=20 (key a2 01) {height=5: -1 as a 10-byte two's complement varint}}
    ("a2 01 0b | 28 ffffffffffffffffff01", FinalizeBlockRequest(height=-1)),
    # Request{init_chain=5 {time {seconds 1, nanos 500}, chain_id "c",
    #   validators [{pub_key {ed25519 PK}, power 10}], initial_height 1}}
    (
        f"2a 34 | 0a 05 (08 01 | 10 f403) | 12 01 63 | 22 26 (0a 22 (0a 20 {K}) | 10 0a) | 30 01",
        InitChainRequest(
            time=1_000_000_500,
            chain_id="c",
            validators=(ValidatorUpdate.ed25519(PK, 10),),
            initial_height=1,
        ),
    ),
]

HAND_RESPONSES = [
    # Response{info=4 {data "x", last_block_height 5, last_block_app_hash abcd}}
    (
        "22 09 | 0a 01 78 | 20 05 | 2a 02 abcd",
        InfoResponse(data="x", last_block_height=5, last_block_app_hash=b"\xab\xcd"),
    ),
    # Response{process_proposal=18 (key 92 01) {status ACCEPT}}
    ("92 01 02 | 08 01", ProcessProposalResponse(1)),
    # Response{commit=12 {}}: retain_height 0 is omitted, the empty message is not
    ("62 00", CommitResponse()),
    # Response{finalize_block=21 (key aa 01) {tx_results [{}, {code 1, log "no"}],
    #   validator_updates [{pub_key {ed25519 PK}, power 0}], app_hash 01}}:
    #   an empty ExecTxResult is still written (12 00), power 0 is not
    (
        f"aa 01 33 | 12 00 | 12 06 (08 01 | 1a 02 6e6f) | 1a 24 (0a 22 (0a 20 {K})) | 2a 01 01",
        FinalizeBlockResponse(
            tx_results=(ExecTxResult(), ExecTxResult(code=1, log="no")),
            validator_updates=(ValidatorUpdate.ed25519(PK, 0),),
            app_hash=b"\x01",
        ),
    ),
    # Response{apply_snapshot_chunk=16 {refetch_chunks packed [1, 300]}}
    ("82 01 05 | 12 03 (01 ac02)", ApplySnapshotChunkResponse(refetch_chunks=(1, 300))),
]


def unhex(spaced: str) -> bytes:
    return bytes.fromhex(spaced.translate(str.maketrans("", "", "|()")))


@pytest.mark.parametrize(("hexbytes", "msg"), HAND_REQUESTS)
def test_hand_computed_requests(hexbytes: str, msg: types.Request) -> None:
    assert decode_request(unhex(hexbytes)) == msg
    assert encode_request(msg) == unhex(hexbytes)


@pytest.mark.parametrize(("hexbytes", "msg"), HAND_RESPONSES)
def test_hand_computed_responses(hexbytes: str, msg: types.Response) -> None:
    assert encode_response(msg) == unhex(hexbytes)
    assert decode_response(unhex(hexbytes)) == msg


# --- vectors made once by gogoproto's proto.Marshal of cometbft v0.38.26's abci types ----------
# (a throwaway Go program; gogoproto writes non-nullable embedded messages even when empty, so
# requests are only checked by decoding; responses must match byte for byte)

T = 1_700_000_000_123_456_789  # time.Unix(1700000000, 123456789)
GO_TIME = "0b0880e2cfaa0610959aef3a"  # length 11, Timestamp{seconds, nanos}

GO_REQUESTS = [
    (
        "2a600a" + GO_TIME + "120a746573742d636861696e1a120a10088080c00a10ffffffffffffffffff01"
        "22260a220a20" + PK.hex() + "100a2a077b2261223a317d3001",
        InitChainRequest(
            time=T,
            chain_id="test-chain",
            # ConsensusParams{block {max_bytes 22020096, max_gas -1}}, kept raw
            consensus_params=bytes.fromhex("0a10088080c00a10ffffffffffffffffff01"),
            validators=(ValidatorUpdate.ed25519(PK, 10),),
            app_state_bytes=b'{"a":1}',
            initial_height=1,
        ),
    ),
    (
        "a2015e0a036b3d760a0012200801121c0a180a14" + "aa" * 20 + "180a18021a1a080112050a010118051803"
        "22" + GO_TIME + "28142202bbcc280732" + GO_TIME + "3a01dd4201ee",
        FinalizeBlockRequest(
            txs=(b"k=v", b""),
            decided_last_commit=CommitInfo(1, (VoteInfo(Validator(b"\xaa" * 20, 10), 2),)),
            misbehavior=(Misbehavior(1, Validator(b"\x01", 5), 3, T, 20),),
            hash=b"\xbb\xcc",
            height=7,
            time=T,
            next_validators_hash=b"\xdd",
            proposer_address=b"\xee",
        ),
    ),
    (
        "820126088080401201781a0b12090a050a010218012801280232" + GO_TIME + "4201ee",
        PrepareProposalRequest(
            max_tx_bytes=1048576,
            txs=(b"x",),
            local_last_commit=ExtendedCommitInfo(
                0, (ExtendedVoteInfo(Validator(b"\x02", 1), block_id_flag=1),)
            ),
            height=2,
            time=T,
            proposer_address=b"\xee",
        ),
    ),
    ("42070a036162631001", CheckTxRequest(b"abc", 1)),
]

GO_RESPONSES = [
    (
        "aa015a0a170a087472616e73666572120b0a02746f1203626f62180112001212"
        "08031a0362616428ffffffffffffffffff011a240a220a20" + PK.hex() + "2a03010203",
        FinalizeBlockResponse(
            events=(Event("transfer", (EventAttribute("to", "bob", True),)),),
            tx_results=(ExecTxResult(), ExecTxResult(code=3, log="bad", gas_wanted=-1)),
            validator_updates=(ValidatorUpdate.ed25519(PK, 0),),
            app_hash=b"\x01\x02\x03",
        ),
    ),
    ("22100a026b761203312e301801202a2a0109", InfoResponse("kv", "1.0", 1, 42, b"\x09")),
    ("32031a0107", InitChainResponse(app_hash=b"\x07")),
    ("3a1008011a076d697373696e6732016b4809", QueryResponse(code=1, log="missing", key=b"k", height=9)),
    ("82010a0803120301ac021a0170", ApplySnapshotChunkResponse(3, (1, 300), ("p",))),
    ("0a060a04626f6f6d", ExceptionResponse("boom")),
    ("6200", CommitResponse()),
]


@pytest.mark.parametrize(("hexbytes", "msg"), GO_REQUESTS)
def test_requests_encoded_by_cometbft(hexbytes: str, msg: types.Request) -> None:
    assert decode_request(bytes.fromhex(hexbytes)) == msg


@pytest.mark.parametrize(("hexbytes", "msg"), GO_RESPONSES)
def test_responses_match_cometbft_bytes(hexbytes: str, msg: types.Response) -> None:
    assert encode_response(msg).hex() == hexbytes
    assert decode_response(bytes.fromhex(hexbytes)) == msg


# --- primitives and edge cases -------------------------------------------------------------


def test_varint_edges() -> None:
    assert wire.encode_varint(0) == b"\x00"
    assert wire.encode_varint(300) == b"\xac\x02"
    assert wire.encode_varint(-1) == b"\xff" * 9 + b"\x01"
    assert wire.encode_varint(-(1 << 63)) == b"\x80" * 9 + b"\x01"
    assert wire.to_int64(wire.decode_varint(b"\xff" * 9 + b"\x01")[0]) == -1
    assert wire.decode_varint(b"\x01\xac\x02", 1) == (300, 3)
    with pytest.raises(DecodeError, match="truncated varint"):
        wire.decode_varint(b"\xac")
    with pytest.raises(DecodeError, match="longer than 10"):
        wire.decode_varint(b"\xff" * 11)
    with pytest.raises(DecodeError, match="overflows"):
        wire.decode_varint(b"\xff" * 9 + b"\x02")
    with pytest.raises(ValueError):
        wire.encode_varint(1 << 64)
    assert [wire.zigzag_encode(v) for v in (0, -1, 1, -2)] == [0, 1, 2, 3]
    assert wire.zigzag_decode(wire.zigzag_encode(-(1 << 63))) == -(1 << 63)


def test_frame_prefix_is_unsigned_varint() -> None:
    # 300 bytes -> ac 02; a signed (zig-zag) v0.34-style prefix would be d8 04
    assert wire.frame(b"x" * 300)[:2] == b"\xac\x02"
    assert wire.frame(b"") == b"\x00"


async def test_read_frame() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(wire.frame(b"abc") + wire.frame(b"") + b"\xac")
    reader.feed_eof()
    assert await wire.read_frame(reader, 10) == b"abc"
    assert await wire.read_frame(reader, 10) == b""
    with pytest.raises(DecodeError, match="inside a length prefix"):
        await wire.read_frame(reader, 10)

    reader = asyncio.StreamReader()
    reader.feed_data(wire.frame(b"x" * 11))
    with pytest.raises(FrameTooLarge, match="exceeds the 10-byte limit"):
        await wire.read_frame(reader, 10)

    reader = asyncio.StreamReader()
    reader.feed_data(b"\x05ab")
    reader.feed_eof()
    with pytest.raises(DecodeError, match="inside a 5-byte message"):
        await wire.read_frame(reader, 10)

    reader = asyncio.StreamReader()
    reader.feed_eof()
    assert await wire.read_frame(reader, 10) is None


def test_unknown_fields_are_skipped() -> None:
    inner = (
        bytes.fromhex("0a03616263")  # tx "abc"
        + bytes.fromhex("79")
        + bytes(8)  # field 15, fixed64
        + bytes.fromhex("4d")
        + bytes(4)  # field 9, fixed32
        + bytes.fromhex("a00607")  # field 100, varint 7
        + bytes.fromhex("6202ffff")  # field 12, length-delimited
        + bytes.fromhex("1001")  # type RECHECK
    )
    req = bytes.fromhex("42") + bytes([len(inner)]) + inner
    assert decode_request(req) == CheckTxRequest(b"abc", 1)
    # unknown Request fields next to a known member are ignored too
    assert decode_request(bytes.fromhex("b80101") + req) == CheckTxRequest(b"abc", 1)


def test_packed_and_unpacked_repeated_scalars() -> None:
    assert decode_message(ApplySnapshotChunkResponse, bytes.fromhex("10011002")).refetch_chunks == (1, 2)
    assert decode_message(ApplySnapshotChunkResponse, bytes.fromhex("120201021003")).refetch_chunks == (
        1,
        2,
        3,
    )


def test_last_value_wins_for_singular_fields() -> None:
    assert decode_message(CheckTxRequest, bytes.fromhex("0a01610a0162")).tx == b"b"


def test_negative_values_round_trip() -> None:
    msg = FinalizeBlockResponse(
        tx_results=(ExecTxResult(gas_wanted=-(1 << 63), gas_used=-5),),
        validator_updates=(ValidatorUpdate.ed25519(PK, -1),),
    )
    assert decode_response(encode_response(msg)) == msg
    # a time before 1970 is a negative Timestamp.seconds with nanos in [0, 1e9)
    req = FinalizeBlockRequest(time=-1)
    assert encode_request(req).hex() == "a20113321108ffffffffffffffffff0110ff93ebdc03"
    assert decode_request(encode_request(req)) == req


def test_request_errors() -> None:
    with pytest.raises(UnknownRequest, match=r"unknown field\(s\) \[21\]"):
        decode_request(bytes.fromhex("aa0100"))  # v0.39's InsertTx
    with pytest.raises(UnknownRequest, match="no field set"):
        decode_request(b"")
    with pytest.raises(DecodeError, match="wire type 0, expected 2"):
        decode_request(bytes.fromhex("0801"))
    with pytest.raises(DecodeError, match="unsupported wire type 3"):
        decode_request(bytes.fromhex("0b"))
    with pytest.raises(DecodeError, match="field number 0"):
        decode_request(bytes.fromhex("0200"))
    with pytest.raises(DecodeError, match=r"CheckTxRequest\.tx: got a varint"):
        decode_request(bytes.fromhex("42020801"))
    with pytest.raises(DecodeError, match=r"CheckTxRequest\.type: got wire type 2"):
        decode_request(bytes.fromhex("4203120101"))
    with pytest.raises(DecodeError, match=r"EchoRequest\.message is not UTF-8"):
        decode_request(bytes.fromhex("0a030a01ff"))
    with pytest.raises(ValueError, match="unsigned field got -1"):
        encode_response(CheckTxResponse(code=-1))
    with pytest.raises(TypeError, match="not a member"):
        encode_response(EchoRequest())  # type: ignore[arg-type]


@pytest.mark.parametrize("hexbytes", [unhex(h).hex() for h, _ in HAND_REQUESTS + GO_REQUESTS])
def test_every_truncation_is_a_clear_error(hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes)
    for cut in range(len(data)):
        with pytest.raises(DecodeError, match="truncated|no field set"):
            decode_request(data[:cut])


# --- round-trip properties -----------------------------------------------------------------

_KIND = {
    "string": st.text(max_size=8),
    "bytes": st.binary(max_size=8),
    "int": st.integers(-(1 << 63), (1 << 63) - 1),
    "uint": st.integers(0, (1 << 64) - 1),
    "bool": st.booleans(),
    "time": st.integers(-(1 << 62), 1 << 62),
    "raw": st.none() | st.binary(max_size=8),
}


def _value(spec: types.F) -> st.SearchStrategy[Any]:
    one = messages(spec.kind) if isinstance(spec.kind, type) else _KIND[spec.kind]
    if spec.repeated:
        return st.lists(one, max_size=3).map(tuple)
    return st.none() | one if isinstance(spec.kind, type) else one


def messages(cls: type) -> st.SearchStrategy[Any]:
    """Any instance of an ABCI dataclass (the messages nest at most four deep, without cycles)."""
    return st.builds(cls, **{name: _value(spec) for name, spec in codec._schema(cls).values()})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(types.REQUEST_FIELDS.values())).flatmap(messages))
def test_requests_round_trip(req: types.Request) -> None:
    assert decode_request(encode_request(req)) == req


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(types.RESPONSE_FIELDS.values())).flatmap(messages))
def test_responses_round_trip(resp: types.Response) -> None:
    data = encode_response(resp)
    assert decode_response(data) == resp
    assert encode_response(decode_response(data)) == data


def test_all_dataclasses_have_a_complete_schema() -> None:
    for cls in [*types.REQUEST_FIELDS.values(), *types.RESPONSE_FIELDS.values()]:
        assert len(codec._schema(cls)) == len(dataclasses.fields(cls)), cls
    assert encode_message(ValidatorUpdate()) == b""
