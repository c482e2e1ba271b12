"""The listener's fast body encoding is byte-for-byte ``decode_log(...).encode()``."""

from __future__ import annotations

from typing import Any

from listeners.eth_deposits import DEPOSIT_TOPIC, decode_log
from listeners.eth_deposits.decode import deposit_bodies, deposit_body

ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _log(**overrides: Any) -> dict[str, Any]:
    log = {
        "address": ESCROW.lower(),
        "topics": [
            DEPOSIT_TOPIC,
            "0x" + "00" * 31 + "2a",
            "0x" + "00" * 12 + "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "0x" + "00" * 12 + "AbCDEF0123456789abcdef0123456789ABCDEF01",
        ],
        "data": "0x" + "00" * 30 + "03e8",
        "blockNumber": "0x1f",
        "transactionHash": "0x" + "ab" * 32,
        "logIndex": "0x3",
        "removed": False,
    }
    log.update(overrides)
    return log


def test_same_bytes_as_the_deposit_encoding() -> None:
    cases = [
        _log(),
        _log(data="0x" + "ff" * 32),
        _log(topics=[DEPOSIT_TOPIC.upper().replace("0X", "0x"), *_log()["topics"][1:]]),
        # dirty upper bytes of an address topic: both paths keep only the last 20 bytes
        _log(
            topics=[
                *_log()["topics"][:2],
                "0x" + "11" * 12 + "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
                _log()["topics"][3],
            ]
        ),
        _log(data="0x3e8"),  # a short data word takes the general path
        _log(removed=True),
        _log(address="0x" + "00" * 20),
        _log(topics=_log()["topics"][:3]),
    ]
    for log in cases:
        deposit = decode_log(log, 31337, ESCROW)
        assert deposit_body(log, 31337, ESCROW) == (None if deposit is None else deposit.encode())


def _usual(i: int) -> dict[str, Any]:
    topics = _log()["topics"]
    return _log(
        topics=[topics[0], "0x" + f"{i:064x}", *topics[2:]],
        logIndex=hex(i),
        blockNumber=hex(1000 + i // 7),
        transactionHash="0x" + f"{i:064x}",
        data="0x" + f"{i * 10**15:064x}",
    )


def _expected(logs: list[dict[str, Any]]) -> list[bytes] | type[Exception]:
    try:
        return [d.encode() for d in (decode_log(log, 31337, ESCROW) for log in logs) if d is not None]
    except ValueError:
        return ValueError


def _actual(logs: list[dict[str, Any]]) -> list[bytes] | type[Exception]:
    try:
        return deposit_bodies(logs, 31337, ESCROW)
    except ValueError:
        return ValueError


def test_a_chunk_of_usual_logs_is_encoded_at_once() -> None:
    logs = [_usual(i) for i in range(50)] + [_usual(2**200)]  # an index of 26 bytes still fits
    assert deposit_bodies(logs, 31337, ESCROW) == _expected(logs)


def test_one_unusual_log_sends_the_chunk_down_the_general_path() -> None:
    unusual = [
        _log(removed=True),
        _log(address="0x" + "00" * 20),
        _log(data="0x3e8"),
        _log(data="0x" + " " * 2 + "00" * 31),  # whitespace bytes.fromhex would skip: an error
        _log(data="0x" + "zz" * 32),  # not hex: an error on both paths
        _log(topics=_log()["topics"][:3]),
        _log(logIndex="0x"),
    ]
    for odd in unusual:
        logs = [_usual(1), odd, _usual(2)]
        assert _actual(logs) == _expected(logs), odd
