"""Bad input everywhere: the transaction decoder, the ABCI codec and the HTTP API are fed
random and mutated bytes (hypothesis) and every classic attack (oversized, replayed, wrong
chain, forged, unauthorised, overdrawn). Each is rejected with its own error, the node stays
healthy and the state of the accounts involved does not change."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cli import main as cli_main
from bridge.config import GENESIS_FILE
from bridge.encoding import event_id
from bridge.engines.abci import types, wire
from bridge.engines.abci.codec import decode_request, encode_request
from bridge.errors import TxCode, TxError
from bridge.keys import NodeKey, account_id
from bridge.node import Node
from bridge.txs import (
    MAX_TX_BYTES,
    TX_TYPES,
    SignBatch,
    SignValset,
    Transfer,
    Tx,
    Vote,
    VoteIds,
    Withdraw,
    decode_payload,
    encode_join,
)
from resolutions.oracle_value import ORACLE_VALUE, OracleReading
from tests.test_abci_codec import messages

ON_THE_NODE = pytest.mark.asyncio(loop_scope="module")  # one node for the HTTP tests

DEADLINE = 30.0
USER = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
OUTSIDER = NodeKey.from_seed(b"\x03" * 32)
EMPTY = Account.from_key(b"\x05" * 32)
FUNDS = 1_000_000


def mutate(raw: bytes, data: st.DataObject) -> bytes:
    """``raw`` with a few bytes flipped, inserted, dropped, or cut short."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]), label="op")
        i = data.draw(st.integers(0, max(len(out) - 1, 0)), label="at")
        if op == "flip" and out:
            out[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            out[i:i] = data.draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and out:
            del out[i]
        elif op == "truncate":
            del out[i:]
    return bytes(out)


# -- the transaction decoder -- #

VALIDATOR = NodeKey.from_seed(b"\x04" * 32)


def valid_txs() -> st.SearchStrategy[Tx]:
    """Well-formed, signed transactions of every type with meaningful payloads."""
    reading = st.builds(OracleReading, st.integers(0, 2**32), st.text(max_size=20))
    vote = st.lists(reading, min_size=1, max_size=4).map(
        lambda rs: Vote(tuple((ORACLE_VALUE, r.encode()) for r in rs)).encode()
    )
    payloads = {
        "vote": vote,
        "vote_ids": st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5).map(
            lambda ids: VoteIds(tuple(ids)).encode()
        ),
        "join": st.integers(1, 2**63).map(encode_join),
        "approve": st.binary(min_size=32, max_size=32),
        "remove": st.binary(min_size=32, max_size=32),
        "leave": st.just(b""),
        "transfer": st.integers(1, 10**30).map(
            lambda a: Transfer(bytes.fromhex(OTHER.address[2:]), a).encode()
        ),
        "withdraw": st.integers(1, 10**30).map(
            lambda a: Withdraw(bytes.fromhex(OTHER.address[2:]), a).encode()
        ),
        "sign_batch": st.builds(
            lambda b, n, sig: SignBatch(b, n, sig).encode(),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
            st.binary(min_size=65, max_size=65),
        ),
        "sign_valset": st.builds(
            lambda n, sig: SignValset(n, sig).encode(),
            st.integers(0, 2**64 - 1),
            st.binary(min_size=65, max_size=65),
        ),
    }
    return st.sampled_from(TX_TYPES).flatmap(
        lambda t: st.builds(
            lambda p, n: Tx("bad-input", t, VALIDATOR.public, n, p).sign_ed25519(VALIDATOR),
            payloads[t],
            st.integers(0, 2**64 - 1),
        )
    )


def decode_fully(raw: bytes) -> None:
    """Decode, verify and decode the payload: only ``TxError`` may come out."""
    try:
        tx = Tx.decode(raw)
        tx.verify()
        decode_payload(tx)
    except TxError as exc:
        assert exc.code in (TxCode.MALFORMED, TxCode.UNKNOWN_TYPE, TxCode.TOO_LARGE, TxCode.INVALID_PAYLOAD)
        assert str(exc)
        return
    assert tx.encode() == raw  # whatever decodes is canonical


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_tx_decoder_on_random_bytes(raw: bytes) -> None:
    decode_fully(raw)
    decode_fully(b"\x01" + raw)


@settings(max_examples=400, deadline=None)
@given(valid_txs(), st.data())
def test_tx_decoder_on_mutated_signed_txs(tx: Tx, data: st.DataObject) -> None:
    raw = tx.encode()
    decode_fully(raw)
    mutated = mutate(raw, data)
    decode_fully(mutated)
    if mutated != raw:
        try:
            decoded = Tx.decode(mutated)
        except TxError:
            return
        assert not decoded.verify() or decoded.unsigned() == tx.unsigned()


def test_tx_decoder_on_oversized_input() -> None:
    with pytest.raises(TxError) as exc:
        Tx.decode(b"\x01" * (MAX_TX_BYTES + 1))
    assert exc.value.code == TxCode.TOO_LARGE


# -- the ABCI codec -- #


def requests() -> st.SearchStrategy[bytes]:
    """Serialized ABCI requests of every kind, with random contents (nested messages too)."""
    return st.sampled_from(list(types.REQUEST_FIELDS.values())).flatmap(messages).map(encode_request)


def decode_frame(data: bytes) -> None:
    """Read one socket frame from ``data`` and decode it: only the codec's DecodeError."""

    async def read() -> bytes | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.read_frame(reader, max_size=1 << 16)

    try:
        payload = asyncio.run(read())
        if payload is not None:
            decode_request(payload)
    except wire.DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_abci_codec_on_random_bytes(raw: bytes) -> None:
    try:
        decode_request(raw)
    except wire.DecodeError:
        pass
    decode_frame(raw)
    decode_frame(wire.frame(raw))


@settings(max_examples=400, deadline=None)
@given(requests(), st.data())
def test_abci_codec_on_mutated_requests(payload: bytes, data: st.DataObject) -> None:
    decode_request(payload)  # the unmutated request decodes
    mutated = mutate(payload, data)
    try:
        decode_request(mutated)
    except wire.DecodeError:
        pass
    decode_frame(mutate(wire.frame(payload), data))


# -- the HTTP API of a real solo node -- #


class Api:
    def __init__(self, node: Node, http: aiohttp.ClientSession) -> None:
        self.node, self.http, self.url = node, http, node.api_url

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, **kwargs) as r:
            assert r.status < 500, (method, path, r.status, await r.text())
            assert r.content_type == "application/json", (path, r.status, r.content_type)
            body = await r.json()
            if r.status >= 400:
                assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
            return r.status, body

    async def submit(self, tx: Tx) -> tuple[int, Any]:
        return await self.call("POST", "/v1/tx", json={"tx": "0x" + tx.encode().hex()})

    async def account(self, signer: bytes) -> tuple[int, int]:
        _, body = await self.call("GET", f"/v1/accounts/{account_id(signer)}")
        return int(body["balance"]), int(body["nonce"])

    async def wait(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not await check():
                await asyncio.sleep(0.02)

    async def blocks(self, n: int) -> None:
        """Wait for ``n`` more committed blocks: the node is alive and making progress."""
        _, status = await self.call("GET", "/v1/status")
        target = status["height"] + n

        async def reached() -> bool:
            _, s = await self.call("GET", "/v1/status")
            return bool(s["height"] >= target)

        await self.wait(f"height {target}", reached)
        assert await self.call("GET", "/health") == (200, {"status": "ok"})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    home = tmp_path_factory.mktemp("bad-input") / "home"
    assert cli_main(["init", "--home", str(home), "--api-port", "0", "--chain-id", "bad-input"]) == 0
    config = home / "config.toml"
    config.write_text(config.read_text().replace("block_interval = 0.2", "block_interval = 0.02"))
    genesis = json.loads((home / GENESIS_FILE).read_text())
    genesis["accounts"] = [{"id": USER.address.lower(), "balance": str(FUNDS)}]
    (home / GENESIS_FILE).write_text(json.dumps(genesis))
    node = Node.from_home(home)
    task = asyncio.create_task(node.run())
    try:
        async with asyncio.timeout(DEADLINE):
            while not (node.api_url and node.ledger.height > 0):
                assert not task.done(), f"node exited early: {task.result()!r}"
                await asyncio.sleep(0.02)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http:
            yield Api(node, http)
    finally:
        node.stop()
        code = await asyncio.wait_for(task, DEADLINE)
    assert code == 0 and node.fatal is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
tx_fields = st.one_of(
    json_values,
    st.binary(max_size=120).map(lambda b: "0x" + b.hex()),
    st.binary(max_size=120).map(lambda b: b.hex()),
    st.text(max_size=40),
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["tx", "TX", "hash"]), tx_fields, min_size=1).map(
        lambda d: json.dumps(d).encode()
    ),
    st.binary(max_size=100),
)
HEALTH = [HealthCheck.function_scoped_fixture]


@ON_THE_NODE
@settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)
@given(body=bodies)
async def test_random_bodies_to_submit_are_json_4xx(api: Api, body: bytes) -> None:
    status, answer = await api.call("POST", "/v1/tx", data=body, headers={"Content-Type": "application/json"})
    if status == 200:  # random bytes that happen to be a valid, signed tx: practically never
        assert answer["code"] == 0
    else:
        assert status == 400


@ON_THE_NODE
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"tx": ' + b"[" * 100_000, b'{"tx": ' + b'{"a": ' * 50_000],
    ids=["list", "tx", "dict"],
)
async def test_deeply_nested_json_is_a_4xx_not_a_crash(api: Api, body: bytes) -> None:
    # json.loads raises RecursionError (not a JSONDecodeError) past Python's recursion limit.
    status, answer = await api.call("POST", "/v1/tx", data=body)
    assert status == 400 and "JSON" in answer["error"]


segments = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
    st.sampled_from(["0x", "..", "%00", "0x" + "ff" * 20, "0x" + "00" * 32, "-1", "1e9", " "]),
)


@ON_THE_NODE
@settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)
@given(
    path=st.sampled_from(["/v1/accounts/", "/v1/deposits/", "/v1/kv/"]),
    segment=segments,
    query=st.dictionaries(st.sampled_from(["status", "type", "limit"]), segments, max_size=3),
)
async def test_random_path_and_query_params_are_never_5xx(
    api: Api, path: str, segment: str, query: dict[str, str]
) -> None:
    await api.call("GET", path + quote(segment, safe="") if segment else path + "x")
    await api.call("GET", "/v1/resolutions", params=query)
    await api.call("GET", "/v1/kv/credit_account", params={k: v for k, v in query.items() if k == "limit"})


async def rejected(api: Api, tx: Tx, code: TxCode, *, watched: list[bytes]) -> None:
    """``tx`` is refused with ``code``; blocks go on; the watched accounts do not change."""
    before = [await api.account(s) for s in watched]
    status, body = await api.submit(tx)
    assert (status, body["code"]) == (400, code), body
    assert body["hash"] == tx.hash().hex()
    await api.blocks(3)
    assert [await api.account(s) for s in watched] == before


def transfer(chain_id: str, nonce: int, amount: int, key: Any = USER, to: str = OTHER.address) -> Tx:
    tx = Tx(
        chain_id,
        "transfer",
        bytes.fromhex(key.address[2:]),
        nonce,
        Transfer(bytes.fromhex(to[2:]), amount).encode(),
    )
    return tx.sign_eth(key.key)


@ON_THE_NODE
async def test_each_attack_is_rejected_and_changes_nothing(api: Api) -> None:
    chain_id = api.node.ledger.chain_id
    user, other = bytes.fromhex(USER.address[2:]), bytes.fromhex(OTHER.address[2:])
    validator = api.node.key
    watched = [user, other, validator.public, OUTSIDER.public]
    assert await api.account(user) == (FUNDS, 0)

    # A valid transfer goes through (the baseline), then its replay is refused.
    first = transfer(chain_id, 0, 100)
    assert (await api.submit(first))[0] == 200

    async def moved() -> bool:
        return await api.account(user) == (FUNDS - 100, 1)

    await api.wait("the transfer", moved)
    assert await api.account(other) == (100, 0)
    await rejected(api, first, TxCode.BAD_NONCE, watched=watched)

    # Wrong chain id, a signature by someone else, an overdraft.
    await rejected(api, transfer("other-chain", 1, 5), TxCode.WRONG_CHAIN, watched=watched)
    forged = replace(transfer(chain_id, 1, 5), signature=transfer(chain_id, 1, 5, key=OTHER).signature)
    await rejected(api, forged, TxCode.BAD_SIGNATURE, watched=watched)
    await rejected(api, transfer(chain_id, 1, FUNDS), TxCode.INSUFFICIENT_BALANCE, watched=watched)
    # A transfer out of an account that holds nothing.
    await rejected(
        api,
        transfer(chain_id, 0, 1, key=EMPTY, to=USER.address),
        TxCode.INSUFFICIENT_BALANCE,
        watched=watched,
    )

    # Votes: from a key that is no validator, and the validator's with a broken signature.
    payload = Vote(((ORACLE_VALUE, OracleReading(1, "x").encode()),)).encode()
    outsider_vote = Tx(chain_id, "vote", OUTSIDER.public, 0, payload).sign_ed25519(OUTSIDER)
    await rejected(api, outsider_vote, TxCode.NOT_VALIDATOR, watched=watched)
    by_id = VoteIds((event_id(ORACLE_VALUE, OracleReading(1, "x").encode()),)).encode()
    outsider_ids = Tx(chain_id, "vote_ids", OUTSIDER.public, 0, by_id).sign_ed25519(OUTSIDER)
    await rejected(api, outsider_ids, TxCode.NOT_VALIDATOR, watched=watched)
    nonce = (await api.account(validator.public))[1]
    vote = Tx(chain_id, "vote", validator.public, nonce, payload).sign_ed25519(validator)
    await rejected(api, replace(vote, signature=bytes(64)), TxCode.BAD_SIGNATURE, watched=watched)

    # An oversized transaction: by its decoded size, and by the HTTP body's size.
    big = "0x" + (b"\x01" * (MAX_TX_BYTES + 1)).hex()
    before = [await api.account(s) for s in watched]
    status, body = await api.call("POST", "/v1/tx", data=io.BytesIO(json.dumps({"tx": big}).encode()))
    assert (status, body["code"]) == (413, TxCode.TOO_LARGE)  # as the oversized body below
    status, body = await api.call("POST", "/v1/tx", data=io.BytesIO(b"{" * (2 * MAX_TX_BYTES + 100)))
    assert status == 413
    await api.blocks(3)
    assert [await api.account(s) for s in watched] == before
    _, status_body = await api.call("GET", "/v1/status")
    assert status_body["mempool"] == 0
    assert (await api.call("GET", "/ready"))[0] == 200


# -- numbers too long for int(), control characters in a path, high-s signatures -- #

HUGE = b"1" * 5000  # past Python's int-string conversion limit (4300 digits): ValueError


@ON_THE_NODE
@pytest.mark.parametrize(
    "body",
    [b'{"tx": "0x00", "x": ' + HUGE + b"}", HUGE, b"-" + HUGE, b'{"tx": [' + HUGE + b"]}"],
    ids=["field", "bare", "negative", "nested"],
)
async def test_huge_json_numbers_are_a_4xx_without_a_traceback(
    api: Api, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        status, answer = await api.call("POST", "/v1/tx", data=body)
    assert status == 400 and "JSON" in answer["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@ON_THE_NODE
@pytest.mark.parametrize("path", ["/v1/resolutions", "/v1/kv/credit_account"])
async def test_huge_integer_query_params_are_a_4xx(
    api: Api, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        for value in (HUGE.decode(), "-" + HUGE.decode()):
            status, answer = await api.call("GET", path, params={"limit": value})
            assert status == 400 and "limit" in answer["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


ADDRESS = "ab" * 20
CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


@ON_THE_NODE
@pytest.mark.parametrize(
    "segment",
    [
        f"%0A0x{ADDRESS}%0A",  # newlines around a good address
        f"0x{ADDRESS}%0D%0A",
        f"%090x{ADDRESS}",
        f"%200x{ADDRESS}",
        ADDRESS,  # no 0x
        "0X" + ADDRESS,
        "0x" + "ab" * 9 + "%20%20" + "ab" * 10,  # bytes.fromhex skips inner whitespace
        "0x" + ADDRESS[:-1] + "%00",
        "0x" + "ab" * 21,
    ],
)
async def test_account_addresses_are_strict_and_not_echoed(api: Api, segment: str) -> None:
    status, answer = await api.call("GET", "/v1/accounts/" + segment)
    assert status == 400, answer
    assert not CONTROL & set(answer["error"]), answer


@ON_THE_NODE
async def test_account_address_forms_that_are_accepted(api: Api) -> None:
    for segment, expected in (
        ("0x" + ADDRESS, "0x" + ADDRESS),
        ("0x" + ADDRESS.upper(), "0x" + ADDRESS),  # hex is case-insensitive
        ("0x" + "cd" * 32, "0x" + "cd" * 32),  # a 32-byte validator key
    ):
        status, answer = await api.call("GET", "/v1/accounts/" + segment)
        assert (status, answer["address"]) == (200, expected)


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@ON_THE_NODE
async def test_high_s_signature_is_rejected_and_the_low_s_one_accepted(api: Api) -> None:
    """The other form (n - s, v flipped) of a valid signature is refused: one transfer, one hash.
    Runs after the attack test above, which expects the user's account untouched."""
    chain_id = api.node.ledger.chain_id
    user, other = bytes.fromhex(USER.address[2:]), bytes.fromhex(OTHER.address[2:])
    balance, nonce = await api.account(user)
    tx = transfer(chain_id, nonce, 7)
    r, s, v = tx.signature[:32], int.from_bytes(tx.signature[32:64], "big"), tx.signature[64]
    flipped = replace(tx, signature=r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v]))
    assert flipped.hash() != tx.hash()
    await rejected(api, flipped, TxCode.BAD_SIGNATURE, watched=[user, other])
    other_before = await api.account(other)
    assert (await api.submit(tx)) == (200, {"hash": tx.hash().hex(), "code": 0})

    async def moved() -> bool:
        return await api.account(user) == (balance - 7, nonce + 1)

    await api.wait("the low-s transfer", moved)
    assert await api.account(other) == (other_before[0] + 7, other_before[1])
