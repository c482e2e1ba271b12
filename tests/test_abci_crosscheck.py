"""The ABCI codec against an independent encoder: protobuf's own, from classes that grpc_tools
generates at test time out of tests/abci/minimal.proto (this project's transcription of the
CometBFT v0.38 messages the ledger uses).

Our dataclasses and the generated classes are matched by field *name* only, so the field
numbers, scalar types and oneof numbers of ``types.py`` are checked against the .proto. The
values to try are drawn from the .proto's types (int32 vs int64, uint32 vs uint64, open enums).

Conventions of the codec that the conversion follows: a dataclass default (0, "", b"", (),
None) is an unset protobuf field; a sub-message or "raw" field that is not None is present,
even when empty (CometBFT always writes its non-nullable sub-messages); time 0 is an unset
Timestamp.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
from collections.abc import Iterator
from operator import ne
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.engines.abci import codec, types
from bridge.engines.abci.codec import decode_request, decode_response, encode_request, encode_response
from bridge.engines.abci.types import (
    CommitInfo,
    ExecTxResult,
    ExtendedCommitInfo,
    ExtendedVoteInfo,
    FinalizeBlockRequest,
    FinalizeBlockResponse,
    InitChainRequest,
    InitChainResponse,
    Misbehavior,
    PrepareProposalRequest,
    PublicKey,
    QueryResponse,
    Validator,
    ValidatorUpdate,
    VoteInfo,
)
from bridge.ledger import snapshots

PROTO = Path(__file__).parent / "abci" / "minimal.proto"
NS = 1_000_000_000
EXAMPLES = 100  # per message kind


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The generated module (outside the repo, so typed as Any)."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out = tmp_path_factory.mktemp("abci_pb")
    assert protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}", str(PROTO)]) == 0
    spec = importlib.util.spec_from_file_location("minimal_pb2", out / "minimal_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def oneof_name(cls: type) -> str:
    """EchoRequest -> echo, VerifyVoteExtensionResponse -> verify_vote_extension."""
    stem = cls.__name__.removesuffix("Request").removesuffix("Response")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def is_synthetic(oneof: Any) -> bool:
    """The oneof protoc makes for a proto3 ``optional`` field."""
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


# --- our value -> their message ------------------------------------------------------------


def fill(msg: Any, value: object) -> None:
    """Sets the fields of ``msg`` (a generated message) from a dataclass, by name."""
    for f in dataclasses.fields(value):  # type: ignore[arg-type]
        v = getattr(value, f.name)
        if v == f.default:
            continue  # a proto3 default: unset
        fd = msg.DESCRIPTOR.fields_by_name[f.name]
        target = getattr(msg, f.name)
        if fd.message_type is None:
            if fd.is_repeated:
                target.extend(v)
            else:
                setattr(msg, f.name, v)
        elif fd.message_type.name == "Timestamp":
            target.seconds, target.nanos = divmod(v, NS)
        elif fd.is_repeated:
            for item in v:
                fill(target.add(), item)
        else:
            target.SetInParent()  # present, even if every field is a default
            fill(target, v)


def wrap(pb: Any, value: types.Request | types.Response) -> Any:
    """A generated Request/Response whose oneof holds ``value``."""
    wrapper = (pb.Request if type(value) in types.REQUEST_FIELDS.values() else pb.Response)()
    inner = getattr(wrapper, oneof_name(type(value)))
    inner.SetInParent()
    fill(inner, value)
    return wrapper


def inner_descriptor(pb: Any, cls: type) -> Any:
    wrapper = pb.Request if cls in types.REQUEST_FIELDS.values() else pb.Response
    return wrapper.DESCRIPTOR.fields_by_name[oneof_name(cls)].message_type


# --- strategies from the .proto's types ----------------------------------------------------


def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Small values (0, 1, 127/128 boundaries) often, the type's whole range too."""
    return st.integers(max(lo, -2), min(hi, 300)) | st.integers(lo, hi)


# Timestamps: near the epoch (negative ns is before 1970), realistic block times, and every
# value whose seconds fit in an int64.
TIMES = (
    st.integers(-3 * NS, 3 * NS)
    | st.integers(1_600_000_000 * NS, 2_000_000_000 * NS)
    | st.integers(-(1 << 63) * NS, ((1 << 63) - 1) * NS + NS - 1)
)


def scalars(fd: Any) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == fd.TYPE_STRING:
        return st.text(max_size=10)
    if t == fd.TYPE_BYTES:
        return st.binary(max_size=10)
    if t == fd.TYPE_BOOL:
        return st.booleans()
    if t == fd.TYPE_INT64:
        return ints(-(1 << 63), (1 << 63) - 1)
    if t in (fd.TYPE_INT32, fd.TYPE_ENUM):  # proto3 enums are open: any int32
        return ints(-(1 << 31), (1 << 31) - 1)
    if t == fd.TYPE_UINT64:
        return ints(0, (1 << 64) - 1)
    if t == fd.TYPE_UINT32:
        return ints(0, (1 << 32) - 1)
    raise AssertionError(f"{fd.full_name}: no strategy for protobuf type {t}")


def messages(cls: type, desc: Any) -> st.SearchStrategy[Any]:
    """Instances of dataclass ``cls`` whose values fit the .proto message ``desc``."""
    nested = {name: spec.kind for name, spec in codec._schema(cls).values() if isinstance(spec.kind, type)}
    fields: dict[str, st.SearchStrategy[Any]] = {}
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        fd = desc.fields_by_name[f.name]
        if fd.message_type is None:
            one = scalars(fd)
        elif fd.message_type.name == "Timestamp":
            one = TIMES
        else:
            one = messages(nested[f.name], fd.message_type)
        if fd.is_repeated:
            fields[f.name] = st.lists(one, max_size=2).map(tuple)
        elif f.default is None:  # an optional sub-message or raw message: absent, empty or full
            fields[f.name] = st.none() | one
        else:
            fields[f.name] = one
        defaults[f.name] = f.default
    # A real oneof (PublicKey.sum) holds at most one member. The dataclass has no presence for
    # its members, so a member set to its default is not drawn: see test_empty_public_key.
    real_oneofs = [o for o in desc.oneofs if not is_synthetic(o)]
    if not real_oneofs:
        return st.just(cls()) | st.builds(cls, **fields)
    (oneof,) = real_oneofs
    members = [m.name for m in oneof.fields]
    rest = {k: v for k, v in fields.items() if k not in members}
    options = [st.builds(cls, **rest)]
    for m in members:
        options.append(st.builds(cls, **rest, **{m: fields[m].filter(functools.partial(ne, defaults[m]))}))
    return st.one_of(options)


@functools.cache
def strategy(pb: Any, cls: type) -> st.SearchStrategy[Any]:
    return messages(cls, inner_descriptor(pb, cls))


# --- the checks ----------------------------------------------------------------------------


def crosscheck(pb: Any, value: Any) -> None:
    """``value``: a Request or Response dataclass."""
    theirs = wrap(pb, value)
    their_bytes = theirs.SerializeToString(deterministic=True)
    decoded: object
    if type(value) in types.REQUEST_FIELDS.values():
        ours, decoded = encode_request(value), decode_request(their_bytes)
    else:
        ours, decoded = encode_response(value), decode_response(their_bytes)
    assert type(theirs).FromString(ours) == theirs  # protobuf reads our bytes as the same message
    assert ours.hex() == their_bytes.hex()  # and writes the same bytes: both in field-number order
    assert decoded == value  # we read protobuf's bytes as the same value


@pytest.mark.parametrize("cls", list(types.REQUEST_FIELDS.values()), ids=lambda c: c.__name__)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_requests_match_protobuf(pb, cls, data):
    crosscheck(pb, data.draw(strategy(pb, cls)))


@pytest.mark.parametrize("cls", list(types.RESPONSE_FIELDS.values()), ids=lambda c: c.__name__)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_responses_match_protobuf(pb, cls, data):
    crosscheck(pb, data.draw(strategy(pb, cls)))


def raw_fields(pb: Any, cls: type) -> list[str]:
    """Fields the codec keeps as raw encoded messages (``optional bytes`` in the .proto)."""
    desc = inner_descriptor(pb, cls)
    return [fd.name for fd in desc.fields if fd.containing_oneof and is_synthetic(fd.containing_oneof)]


@pytest.mark.parametrize("table", [types.REQUEST_FIELDS, types.RESPONSE_FIELDS], ids=["Request", "Response"])
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_concatenated_messages_merge_like_protobuf(pb, table, data):
    """Protobuf parses two encodings back to back as one message: the last scalar wins, repeated
    fields append, an embedded message seen again is merged, and so is the same oneof member
    (a different one replaces it)."""
    classes = list(table.values())
    cls = data.draw(st.sampled_from(classes))
    a = data.draw(strategy(pb, cls))
    b = data.draw(strategy(pb, data.draw(st.just(cls) | st.sampled_from(classes))))
    # A raw message is merged by concatenating its bytes, which an ``optional bytes`` field
    # cannot show: protobuf would keep the last one. Draw at most one of the two.
    if type(b) is cls:
        for name in raw_fields(pb, cls):
            if getattr(a, name) is not None:
                b = dataclasses.replace(b, **{name: None})
    if table is types.REQUEST_FIELDS:
        wrapper, both = pb.Request, encode_request(a) + encode_request(b)
        again = encode_request(decode_request(both))
    else:
        wrapper, both = pb.Response, encode_response(a) + encode_response(b)
        again = encode_response(decode_response(both))
    # our reading, written out again, is what protobuf reads (its oneof rules apply to both)
    assert wrapper.FromString(again) == wrapper.FromString(both)


PK = bytes(range(32))

EDGE_CASES = [
    # negative int64s are 10-byte two's complement varints; a time before 1970 has nanos >= 0
    FinalizeBlockRequest(height=-1, time=-1, misbehavior=(Misbehavior(height=-(1 << 63), time=-NS),)),
    FinalizeBlockResponse(
        tx_results=(ExecTxResult(gas_wanted=-1, gas_used=-(1 << 63)),),
        validator_updates=(ValidatorUpdate.ed25519(PK, -1),),
    ),
    QueryResponse(index=-5, height=-1, code=(1 << 32) - 1),
    # empty sub-messages are written as present (CometBFT's non-nullable ones always are) ...
    FinalizeBlockRequest(decided_last_commit=CommitInfo(votes=(VoteInfo(Validator()), VoteInfo()))),
    PrepareProposalRequest(local_last_commit=ExtendedCommitInfo(votes=(ExtendedVoteInfo(),))),
    # ... and so are empty results: one ExecTxResult per tx, even when all is default
    FinalizeBlockResponse(tx_results=(ExecTxResult(), ExecTxResult(), ExecTxResult(code=1))),
    FinalizeBlockResponse(validator_updates=(ValidatorUpdate(), ValidatorUpdate(PublicKey()))),
    # raw embedded messages: absent (None) and present but empty (b"") differ
    InitChainRequest(consensus_params=b""),
    InitChainResponse(consensus_params=b"", validators=(ValidatorUpdate(PublicKey(secp256k1=b"\x02" * 33)),)),
    FinalizeBlockResponse(consensus_param_updates=b""),
    QueryResponse(proof_ops=b""),
    # repeated fields keep empty elements
    FinalizeBlockRequest(txs=(b"", b"a", b"")),
    types.ApplySnapshotChunkResponse(refetch_chunks=(0, 0, (1 << 32) - 1), reject_senders=("", "p")),
]


@pytest.mark.parametrize("value", EDGE_CASES, ids=lambda v: type(v).__name__)
def test_edge_cases_match_protobuf(pb, value):
    crosscheck(pb, value)


def test_cometbft_style_request_decodes(pb):
    """CometBFT writes its non-nullable sub-messages and times even when empty or zero."""
    theirs = pb.Request()
    fb = theirs.finalize_block
    fb.decided_last_commit.votes.add().validator.SetInParent()
    fb.misbehavior.add().time.SetInParent()  # the Unix epoch, written as an empty Timestamp
    fb.time.SetInParent()
    data = theirs.SerializeToString(deterministic=True)
    # finalize_block { decided_last_commit { votes [{validator {}}] }, misbehavior [{time {}}], time {} }
    assert data.hex() == "a2010c" + "120412020a00" + "1a022200" + "3200"
    req = decode_request(data)
    assert req == FinalizeBlockRequest(
        decided_last_commit=CommitInfo(votes=(VoteInfo(Validator()),)), misbehavior=(Misbehavior(),)
    )
    # Re-encoding keeps the present sub-messages; an epoch time (0) is written as absent, which
    # protobuf reads as the same epoch.
    again = pb.Request.FromString(encode_request(req))
    assert not again.finalize_block.HasField("time")
    assert again.finalize_block.decided_last_commit == fb.decided_last_commit
    assert again.finalize_block.time == fb.time


def test_empty_public_key(pb):
    """A PublicKey oneof member set to empty bytes has no dataclass twin: it reads as no key.
    (CometBFT rejects such a key anyway; ed25519 keys are 32 bytes.)"""
    theirs = pb.ValidatorUpdate()
    theirs.pub_key.ed25519 = b""
    assert theirs.SerializeToString().hex() == "0a020a00"
    assert codec.decode_message(ValidatorUpdate, theirs.SerializeToString()) == ValidatorUpdate(PublicKey())


# --- the schemas themselves ----------------------------------------------------------------


def test_oneof_numbers_match(pb):
    for wrapper, table in ((pb.Request, types.REQUEST_FIELDS), (pb.Response, types.RESPONSE_FIELDS)):
        theirs = {fd.number: fd.name for fd in wrapper.DESCRIPTOR.oneofs_by_name["value"].fields}
        assert theirs == {number: oneof_name(cls) for number, cls in table.items()}


def _pairs(pb: Any) -> Iterator[tuple[type, Any]]:
    """(dataclass, message descriptor) for every message reachable from Request and Response."""
    todo = [
        (cls, inner_descriptor(pb, cls))
        for cls in [*types.REQUEST_FIELDS.values(), *types.RESPONSE_FIELDS.values()]
    ]
    seen: set[type] = set()
    while todo:
        cls, desc = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls, desc
        for name, spec in codec._schema(cls).values():
            if isinstance(spec.kind, type):
                todo.append((spec.kind, desc.fields_by_name[name].message_type))


def test_every_field_matches_the_proto(pb):
    """Same field names, numbers, repetition and a compatible kind; nothing missing on either side."""
    compatible = {
        "string": {"TYPE_STRING"},
        "bytes": {"TYPE_BYTES"},
        "raw": {"TYPE_BYTES"},
        "bool": {"TYPE_BOOL"},
        "int": {"TYPE_INT32", "TYPE_INT64", "TYPE_ENUM"},
        "uint": {"TYPE_UINT32", "TYPE_UINT64"},
        "time": {"TYPE_MESSAGE"},
    }
    checked = 0
    for cls, desc in _pairs(pb):
        ours = {name: (number, spec) for number, (name, spec) in codec._schema(cls).items()}
        assert set(ours) == set(desc.fields_by_name), cls.__name__
        for name, (number, spec) in ours.items():
            fd = desc.fields_by_name[name]
            where = f"{cls.__name__}.{name}"
            assert number == fd.number, where
            assert spec.repeated == fd.is_repeated, where
            type_name = {getattr(fd, a): a for a in dir(fd) if a.startswith("TYPE_")}[fd.type]
            if isinstance(spec.kind, type):
                assert type_name == "TYPE_MESSAGE" and fd.message_type.name == spec.kind.__name__, where
            else:
                assert type_name in compatible[spec.kind], where
                assert spec.kind != "time" or fd.message_type.name == "Timestamp", where
                optional = fd.containing_oneof is not None and is_synthetic(fd.containing_oneof)
                assert (spec.kind == "raw") == optional, where
            checked += 1
    assert checked > 100


def test_enums_match(pb):
    def values(enum: Any, prefix: str = "") -> dict[str, int]:
        return {v.name.removeprefix(prefix): v.number for v in enum.DESCRIPTOR.values}

    def ours(enum: Any) -> dict[str, int]:
        return {m.name: int(m) for m in enum}

    assert ours(types.CheckTxType) == values(pb.CheckTxType)
    assert ours(types.BlockIDFlag) == values(pb.BlockIDFlag, "BLOCK_ID_FLAG_")
    assert ours(types.ProposalStatus) == values(pb.ResponseProcessProposal.ProposalStatus)
    assert ours(types.VerifyStatus) == values(pb.ResponseVerifyVoteExtension.VerifyStatus)
    for result in (pb.ResponseOfferSnapshot.Result, pb.ResponseApplySnapshotChunk.Result):
        assert ours(types.SnapshotResult).items() <= values(result).items()
    # The ledger's state-sync answers (bridge/ledger/snapshots.py).
    assert ours(snapshots.Offer).items() <= values(pb.ResponseOfferSnapshot.Result).items()
    assert ours(snapshots.Apply).items() <= values(pb.ResponseApplySnapshotChunk.Result).items()
