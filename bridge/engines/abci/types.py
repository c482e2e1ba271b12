"""The CometBFT v0.38 ABCI messages (``tendermint.abci``) that a ledger needs, as dataclasses.

Each field carries its protobuf number and kind in ``Annotated[..., F(number, kind)]``; the codec
in ``codec.py`` reads that schema. Field numbers follow ``proto/tendermint/abci/types.proto``.
Proto3 defaults (0, "", b"", None, ()) are what an absent field decodes to. Timestamps are int
nanoseconds since the Unix epoch; ConsensusParams and ProofOps stay raw encoded bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated


@dataclass(frozen=True)
class F:
    """Schema of one field. kind: "string", "bytes", "int" (int32/int64/enum, two's complement),
    "uint" (uint32/uint64), "bool", "time" (google.protobuf.Timestamp as int ns), "raw" (an
    embedded message kept as bytes), or a message class."""

    number: int
    kind: str | type
    repeated: bool = False


class CheckTxType(IntEnum):
    NEW = 0
    RECHECK = 1


class ProposalStatus(IntEnum):
    UNKNOWN = 0
    ACCEPT = 1
    REJECT = 2


VerifyStatus = ProposalStatus  # same values for ResponseVerifyVoteExtension.status


class BlockIDFlag(IntEnum):
    UNKNOWN = 0
    ABSENT = 1
    COMMIT = 2
    NIL = 3


class SnapshotResult(IntEnum):
    """OfferSnapshot and ApplySnapshotChunk results (the values the server uses agree)."""

    UNKNOWN = 0
    ACCEPT = 1
    ABORT = 2


# --- nested messages -----------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:  # tendermint.crypto.PublicKey: oneof sum {ed25519 = 1; secp256k1 = 2}
    ed25519: Annotated[bytes, F(1, "bytes")] = b""
    secp256k1: Annotated[bytes, F(2, "bytes")] = b""


@dataclass(frozen=True)
class ValidatorUpdate:
    pub_key: Annotated[PublicKey | None, F(1, PublicKey)] = None
    power: Annotated[int, F(2, "int")] = 0

    @classmethod
    def ed25519(cls, key: bytes, power: int) -> ValidatorUpdate:
        return cls(PublicKey(ed25519=key), power)


@dataclass(frozen=True)
class Validator:
    address: Annotated[bytes, F(1, "bytes")] = b""
    power: Annotated[int, F(3, "int")] = 0


@dataclass(frozen=True)
class VoteInfo:
    validator: Annotated[Validator | None, F(1, Validator)] = None
    block_id_flag: Annotated[int, F(3, "int")] = 0


@dataclass(frozen=True)
class ExtendedVoteInfo:
    validator: Annotated[Validator | None, F(1, Validator)] = None
    vote_extension: Annotated[bytes, F(3, "bytes")] = b""
    extension_signature: Annotated[bytes, F(4, "bytes")] = b""
    block_id_flag: Annotated[int, F(5, "int")] = 0


@dataclass(frozen=True)
class CommitInfo:
    round: Annotated[int, F(1, "int")] = 0
    votes: Annotated[tuple[VoteInfo, ...], F(2, VoteInfo, True)] = ()


@dataclass(frozen=True)
class ExtendedCommitInfo:
    round: Annotated[int, F(1, "int")] = 0
    votes: Annotated[tuple[ExtendedVoteInfo, ...], F(2, ExtendedVoteInfo, True)] = ()


@dataclass(frozen=True)
class Misbehavior:
    type: Annotated[int, F(1, "int")] = 0  # 1 duplicate vote, 2 light client attack
    validator: Annotated[Validator | None, F(2, Validator)] = None
    height: Annotated[int, F(3, "int")] = 0
    time: Annotated[int, F(4, "time")] = 0
    total_voting_power: Annotated[int, F(5, "int")] = 0


@dataclass(frozen=True)
class EventAttribute:
    key: Annotated[str, F(1, "string")] = ""
    value: Annotated[str, F(2, "string")] = ""
    index: Annotated[bool, F(3, "bool")] = False


@dataclass(frozen=True)
class Event:
    type: Annotated[str, F(1, "string")] = ""
    attributes: Annotated[tuple[EventAttribute, ...], F(2, EventAttribute, True)] = ()


@dataclass(frozen=True)
class ExecTxResult:
    code: Annotated[int, F(1, "uint")] = 0
    data: Annotated[bytes, F(2, "bytes")] = b""
    log: Annotated[str, F(3, "string")] = ""
    info: Annotated[str, F(4, "string")] = ""
    gas_wanted: Annotated[int, F(5, "int")] = 0
    gas_used: Annotated[int, F(6, "int")] = 0
    events: Annotated[tuple[Event, ...], F(7, Event, True)] = ()
    codespace: Annotated[str, F(8, "string")] = ""


@dataclass(frozen=True)
class Snapshot:
    height: Annotated[int, F(1, "uint")] = 0
    format: Annotated[int, F(2, "uint")] = 0
    chunks: Annotated[int, F(3, "uint")] = 0
    hash: Annotated[bytes, F(4, "bytes")] = b""
    metadata: Annotated[bytes, F(5, "bytes")] = b""


# --- requests (oneof Request.value) --------------------------------------------------------


@dataclass(frozen=True)
class EchoRequest:
    message: Annotated[str, F(1, "string")] = ""


@dataclass(frozen=True)
class FlushRequest:
    pass


@dataclass(frozen=True)
class InfoRequest:
    version: Annotated[str, F(1, "string")] = ""
    block_version: Annotated[int, F(2, "uint")] = 0
    p2p_version: Annotated[int, F(3, "uint")] = 0
    abci_version: Annotated[str, F(4, "string")] = ""


@dataclass(frozen=True)
class InitChainRequest:
    time: Annotated[int, F(1, "time")] = 0
    chain_id: Annotated[str, F(2, "string")] = ""
    consensus_params: Annotated[bytes | None, F(3, "raw")] = None
    validators: Annotated[tuple[ValidatorUpdate, ...], F(4, ValidatorUpdate, True)] = ()
    app_state_bytes: Annotated[bytes, F(5, "bytes")] = b""
    initial_height: Annotated[int, F(6, "int")] = 0


@dataclass(frozen=True)
class QueryRequest:
    data: Annotated[bytes, F(1, "bytes")] = b""
    path: Annotated[str, F(2, "string")] = ""
    height: Annotated[int, F(3, "int")] = 0
    prove: Annotated[bool, F(4, "bool")] = False


@dataclass(frozen=True)
class CheckTxRequest:
    tx: Annotated[bytes, F(1, "bytes")] = b""
    type: Annotated[int, F(2, "int")] = CheckTxType.NEW


@dataclass(frozen=True)
class CommitRequest:
    pass


@dataclass(frozen=True)
class ListSnapshotsRequest:
    pass


@dataclass(frozen=True)
class OfferSnapshotRequest:
    snapshot: Annotated[Snapshot | None, F(1, Snapshot)] = None
    app_hash: Annotated[bytes, F(2, "bytes")] = b""


@dataclass(frozen=True)
class LoadSnapshotChunkRequest:
    height: Annotated[int, F(1, "uint")] = 0
    format: Annotated[int, F(2, "uint")] = 0
    chunk: Annotated[int, F(3, "uint")] = 0


@dataclass(frozen=True)
class ApplySnapshotChunkRequest:
    index: Annotated[int, F(1, "uint")] = 0
    chunk: Annotated[bytes, F(2, "bytes")] = b""
    sender: Annotated[str, F(3, "string")] = ""


@dataclass(frozen=True)
class PrepareProposalRequest:
    max_tx_bytes: Annotated[int, F(1, "int")] = 0
    txs: Annotated[tuple[bytes, ...], F(2, "bytes", True)] = ()
    local_last_commit: Annotated[ExtendedCommitInfo | None, F(3, ExtendedCommitInfo)] = None
    misbehavior: Annotated[tuple[Misbehavior, ...], F(4, Misbehavior, True)] = ()
    height: Annotated[int, F(5, "int")] = 0
    time: Annotated[int, F(6, "time")] = 0
    next_validators_hash: Annotated[bytes, F(7, "bytes")] = b""
    proposer_address: Annotated[bytes, F(8, "bytes")] = b""


@dataclass(frozen=True)
class ProcessProposalRequest:
    txs: Annotated[tuple[bytes, ...], F(1, "bytes", True)] = ()
    proposed_last_commit: Annotated[CommitInfo | None, F(2, CommitInfo)] = None
    misbehavior: Annotated[tuple[Misbehavior, ...], F(3, Misbehavior, True)] = ()
    hash: Annotated[bytes, F(4, "bytes")] = b""
    height: Annotated[int, F(5, "int")] = 0
    time: Annotated[int, F(6, "time")] = 0
    next_validators_hash: Annotated[bytes, F(7, "bytes")] = b""
    proposer_address: Annotated[bytes, F(8, "bytes")] = b""


@dataclass(frozen=True)
class ExtendVoteRequest:
    hash: Annotated[bytes, F(1, "bytes")] = b""
    height: Annotated[int, F(2, "int")] = 0
    time: Annotated[int, F(3, "time")] = 0
    txs: Annotated[tuple[bytes, ...], F(4, "bytes", True)] = ()
    proposed_last_commit: Annotated[CommitInfo | None, F(5, CommitInfo)] = None
    misbehavior: Annotated[tuple[Misbehavior, ...], F(6, Misbehavior, True)] = ()
    next_validators_hash: Annotated[bytes, F(7, "bytes")] = b""
    proposer_address: Annotated[bytes, F(8, "bytes")] = b""


@dataclass(frozen=True)
class VerifyVoteExtensionRequest:
    hash: Annotated[bytes, F(1, "bytes")] = b""
    validator_address: Annotated[bytes, F(2, "bytes")] = b""
    height: Annotated[int, F(3, "int")] = 0
    vote_extension: Annotated[bytes, F(4, "bytes")] = b""


@dataclass(frozen=True)
class FinalizeBlockRequest:
    txs: Annotated[tuple[bytes, ...], F(1, "bytes", True)] = ()
    decided_last_commit: Annotated[CommitInfo | None, F(2, CommitInfo)] = None
    misbehavior: Annotated[tuple[Misbehavior, ...], F(3, Misbehavior, True)] = ()
    hash: Annotated[bytes, F(4, "bytes")] = b""
    height: Annotated[int, F(5, "int")] = 0
    time: Annotated[int, F(6, "time")] = 0
    next_validators_hash: Annotated[bytes, F(7, "bytes")] = b""
    proposer_address: Annotated[bytes, F(8, "bytes")] = b""


# --- responses (oneof Response.value) ------------------------------------------------------


@dataclass(frozen=True)
class ExceptionResponse:
    error: Annotated[str, F(1, "string")] = ""


@dataclass(frozen=True)
class EchoResponse:
    message: Annotated[str, F(1, "string")] = ""


@dataclass(frozen=True)
class FlushResponse:
    pass


@dataclass(frozen=True)
class InfoResponse:
    data: Annotated[str, F(1, "string")] = ""
    version: Annotated[str, F(2, "string")] = ""
    app_version: Annotated[int, F(3, "uint")] = 0
    last_block_height: Annotated[int, F(4, "int")] = 0
    last_block_app_hash: Annotated[bytes, F(5, "bytes")] = b""


@dataclass(frozen=True)
class InitChainResponse:
    consensus_params: Annotated[bytes | None, F(1, "raw")] = None
    validators: Annotated[tuple[ValidatorUpdate, ...], F(2, ValidatorUpdate, True)] = ()
    app_hash: Annotated[bytes, F(3, "bytes")] = b""


@dataclass(frozen=True)
class QueryResponse:
    code: Annotated[int, F(1, "uint")] = 0
    log: Annotated[str, F(3, "string")] = ""
    info: Annotated[str, F(4, "string")] = ""
    index: Annotated[int, F(5, "int")] = 0
    key: Annotated[bytes, F(6, "bytes")] = b""
    value: Annotated[bytes, F(7, "bytes")] = b""
    proof_ops: Annotated[bytes | None, F(8, "raw")] = None
    height: Annotated[int, F(9, "int")] = 0
    codespace: Annotated[str, F(10, "string")] = ""


@dataclass(frozen=True)
class CheckTxResponse:
    code: Annotated[int, F(1, "uint")] = 0
    data: Annotated[bytes, F(2, "bytes")] = b""
    log: Annotated[str, F(3, "string")] = ""
    info: Annotated[str, F(4, "string")] = ""
    gas_wanted: Annotated[int, F(5, "int")] = 0
    gas_used: Annotated[int, F(6, "int")] = 0
    events: Annotated[tuple[Event, ...], F(7, Event, True)] = ()
    codespace: Annotated[str, F(8, "string")] = ""


@dataclass(frozen=True)
class CommitResponse:
    retain_height: Annotated[int, F(3, "int")] = 0


@dataclass(frozen=True)
class ListSnapshotsResponse:
    snapshots: Annotated[tuple[Snapshot, ...], F(1, Snapshot, True)] = ()


@dataclass(frozen=True)
class OfferSnapshotResponse:
    result: Annotated[int, F(1, "int")] = 0


@dataclass(frozen=True)
class LoadSnapshotChunkResponse:
    chunk: Annotated[bytes, F(1, "bytes")] = b""


@dataclass(frozen=True)
class ApplySnapshotChunkResponse:
    result: Annotated[int, F(1, "int")] = 0
    refetch_chunks: Annotated[tuple[int, ...], F(2, "uint", True)] = ()
    reject_senders: Annotated[tuple[str, ...], F(3, "string", True)] = ()


@dataclass(frozen=True)
class PrepareProposalResponse:
    txs: Annotated[tuple[bytes, ...], F(1, "bytes", True)] = ()


@dataclass(frozen=True)
class ProcessProposalResponse:
    status: Annotated[int, F(1, "int")] = 0


@dataclass(frozen=True)
class ExtendVoteResponse:
    vote_extension: Annotated[bytes, F(1, "bytes")] = b""


@dataclass(frozen=True)
class VerifyVoteExtensionResponse:
    status: Annotated[int, F(1, "int")] = 0


@dataclass(frozen=True)
class FinalizeBlockResponse:
    events: Annotated[tuple[Event, ...], F(1, Event, True)] = ()
    tx_results: Annotated[tuple[ExecTxResult, ...], F(2, ExecTxResult, True)] = ()
    validator_updates: Annotated[tuple[ValidatorUpdate, ...], F(3, ValidatorUpdate, True)] = ()
    consensus_param_updates: Annotated[bytes | None, F(4, "raw")] = None
    app_hash: Annotated[bytes, F(5, "bytes")] = b""


Request = (
    EchoRequest
    | FlushRequest
    | InfoRequest
    | InitChainRequest
    | QueryRequest
    | CheckTxRequest
    | CommitRequest
    | ListSnapshotsRequest
    | OfferSnapshotRequest
    | LoadSnapshotChunkRequest
    | ApplySnapshotChunkRequest
    | PrepareProposalRequest
    | ProcessProposalRequest
    | ExtendVoteRequest
    | VerifyVoteExtensionRequest
    | FinalizeBlockRequest
)

Response = (
    ExceptionResponse
    | EchoResponse
    | FlushResponse
    | InfoResponse
    | InitChainResponse
    | QueryResponse
    | CheckTxResponse
    | CommitResponse
    | ListSnapshotsResponse
    | OfferSnapshotResponse
    | LoadSnapshotChunkResponse
    | ApplySnapshotChunkResponse
    | PrepareProposalResponse
    | ProcessProposalResponse
    | ExtendVoteResponse
    | VerifyVoteExtensionResponse
    | FinalizeBlockResponse
)

# Oneof field numbers of Request.value / Response.value (4, 7, 9, 10 and 5, 8, 10, 11 are reserved).
REQUEST_FIELDS: dict[int, type[Request]] = {
    1: EchoRequest,
    2: FlushRequest,
    3: InfoRequest,
    5: InitChainRequest,
    6: QueryRequest,
    8: CheckTxRequest,
    11: CommitRequest,
    12: ListSnapshotsRequest,
    13: OfferSnapshotRequest,
    14: LoadSnapshotChunkRequest,
    15: ApplySnapshotChunkRequest,
    16: PrepareProposalRequest,
    17: ProcessProposalRequest,
    18: ExtendVoteRequest,
    19: VerifyVoteExtensionRequest,
    20: FinalizeBlockRequest,
}

RESPONSE_FIELDS: dict[int, type[Response]] = {
    1: ExceptionResponse,
    2: EchoResponse,
    3: FlushResponse,
    4: InfoResponse,
    6: InitChainResponse,
    7: QueryResponse,
    9: CheckTxResponse,
    12: CommitResponse,
    13: ListSnapshotsResponse,
    14: OfferSnapshotResponse,
    15: LoadSnapshotChunkResponse,
    16: ApplySnapshotChunkResponse,
    17: PrepareProposalResponse,
    18: ProcessProposalResponse,
    19: ExtendVoteResponse,
    20: VerifyVoteExtensionResponse,
    21: FinalizeBlockResponse,
}
