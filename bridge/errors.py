"""The node's exceptions, all rooted at :class:`BridgeError`.

BridgeError
 ├── ConfigError                    a config key is missing or invalid; also a
 │                                  listeners.ConfigError (a ValueError), which listeners raise
 │                                  and which the supervisor treats as always fatal
 ├── DecodeError (ValueError)       bytes are not the canonical encoding of a value
 └── TxError                        a transaction is rejected; carries a TxCode
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType

import listeners


class BridgeError(Exception):
    """Root of every error the node raises on purpose."""


class ConfigError(BridgeError, listeners.ConfigError):
    """Raised when a configuration key is missing or invalid; the message names the key.

    A subclass of the listener API's :class:`listeners.ConfigError` (``listeners`` imports
    nothing from ``bridge``), so ``except listeners.ConfigError`` catches every configuration
    error, the node's and the listeners'."""


class DecodeError(BridgeError, ValueError):
    """Raised when bytes are not the one canonical encoding of the value they claim to be."""


class TxCode(IntEnum):
    """Result codes of transactions, shared by check_tx and finalize_block."""

    OK = 0
    MALFORMED = 1
    WRONG_CHAIN = 2
    BAD_SIGNATURE = 3
    BAD_NONCE = 4
    UNKNOWN_TYPE = 5
    TOO_LARGE = 6
    NOT_VALIDATOR = 7
    INSUFFICIENT_BALANCE = 8
    INVALID_PAYLOAD = 9
    MEMPOOL_FULL = 10
    BLOCK_FULL = 11  # the block's vote budget is spent: send it again
    TOO_MANY_PENDING = 12  # the signer created too many resolutions still pending
    DUPLICATE = 13  # the same transaction is already in the mempool
    INTERNAL = 100


# The HTTP status of each result code, for ``POST /v1/tx``: one entry per code (a test checks
# that none is missing). 4xx: the transaction is wrong and sending it again will not help;
# 503: the node cannot take it now, send it again later.
TX_HTTP_STATUS: Mapping[TxCode, int] = MappingProxyType(
    {
        TxCode.OK: 200,
        TxCode.MALFORMED: 400,
        TxCode.WRONG_CHAIN: 400,
        TxCode.BAD_SIGNATURE: 400,
        TxCode.BAD_NONCE: 400,
        TxCode.UNKNOWN_TYPE: 400,
        TxCode.TOO_LARGE: 413,  # as for an HTTP body beyond the limit
        TxCode.NOT_VALIDATOR: 400,
        TxCode.INSUFFICIENT_BALANCE: 400,
        TxCode.INVALID_PAYLOAD: 400,
        TxCode.MEMPOOL_FULL: 503,
        TxCode.BLOCK_FULL: 503,
        TxCode.TOO_MANY_PENDING: 429,  # this signer's own backlog: later, once some settle
        # Accepted already: the same answer as the solo engine, which takes a resubmission
        # as the same transaction (a client retrying after a timeout has succeeded).
        TxCode.DUPLICATE: 200,
        TxCode.INTERNAL: 503,  # CometBFT did not take it (down, timed out): not the client's fault
    }
)


class TxError(BridgeError):
    """Raised when a transaction is rejected; ``code`` says why, the message says what."""

    def __init__(self, code: TxCode, message: str) -> None:
        super().__init__(message)
        self.code = code
