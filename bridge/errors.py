"""The node's exceptions, all rooted at :class:`BridgeError`.

BridgeError
 ├── ConfigError (ValueError)       a config key is missing or invalid
 ├── DecodeError (ValueError)       bytes are not the canonical encoding of a value
 └── TxError                        a transaction is rejected; carries a TxCode
"""

from __future__ import annotations

from enum import IntEnum


class BridgeError(Exception):
    """Root of every error the node raises on purpose."""


class ConfigError(BridgeError, ValueError):
    """Raised when a configuration key is missing or invalid; the message names the key."""


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


class TxError(BridgeError):
    """Raised when a transaction is rejected; ``code`` says why, the message says what."""

    def __init__(self, code: TxCode, message: str) -> None:
        super().__init__(message)
        self.code = code
