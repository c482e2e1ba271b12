"""A validator's part of the way back: its Ethereum signing key, and the signatures it owes.

What is owed is read from the committed ledger every time: a signature stored there is a
duty done, so nothing is kept locally and a restart or crash loses nothing. The broadcaster
sends the duties as transactions, with the node's votes, one transaction in flight at a
time (so the validator's nonces stay gapless).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account

from bridge.errors import ConfigError
from bridge.ledger.app import Ledger
from bridge.txs import SignBatch, SignValset
from bridge.withdrawals import eip712

SIGNER_FILE = "eth_signer.key"  # in a node's home: 0x-prefixed hex of the key, mode 0600


def create_key(path: Path) -> bytes:
    """Write a new signing key to ``path`` (which must not exist); returns its address."""
    account = Account.create()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("0x" + bytes(account.key).hex() + "\n")
    return bytes.fromhex(account.address[2:])


def load_key(home: Path, key_file: str, keystore: str = "", password_file: str = "") -> bytes | None:
    """The signing key the config names (``signer.*``): a key file, or an encrypted keystore
    with its password in a file. None when the default key file does not exist (a node of a
    network without an escrow needs none); ``ConfigError`` naming the key for anything else."""
    try:
        if keystore:
            if not password_file:
                raise ConfigError("signer.keystore needs signer.password_file (the keystore's password)")
            password = (home / password_file).read_text().rstrip("\n")
            try:
                return bytes(Account.decrypt(json.loads((home / keystore).read_text()), password))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"signer.keystore {keystore}: cannot decrypt it ({exc})") from None
        path = home / key_file
        if not path.exists() and key_file == SIGNER_FILE:
            return None
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"signer: cannot read {exc.filename}: {exc.strerror}") from None
    try:
        return bytes(Account.from_key(text).key)
    except (ValueError, TypeError):
        raise ConfigError(f"signer.key_file {key_file}: not a 32-byte hex private key") from None


class Signer:
    """The signatures the validator ``pubkey`` owes, with the Ethereum key ``key``."""

    def __init__(self, ledger: Ledger, pubkey: bytes, key: bytes) -> None:
        self.ledger, self.pubkey, self.key = ledger, pubkey, key
        self.address = bytes.fromhex(Account.from_key(key).address[2:])
        # (set nonce, batch id): every batch below the id is signed under the set already, so
        # a pass does not read the whole history again.
        self._cursor = (-1, 0)

    async def duties(self, limit: int = 16) -> list[SignBatch | SignValset]:
        """Up to ``limit`` signatures not yet on the ledger: of each new validator set by a
        member of the set before it, and of each closed batch under the newest set."""
        escrow = self.ledger.escrow
        if escrow is None:
            return []
        state = self.ledger.committed_withdrawals()
        if await state.signer(self.pubkey) != self.address:
            return []  # the ledger knows another key for this validator (or none)
        newest = await state.valset()
        if newest is None:
            return []
        out: list[SignBatch | SignValset] = []
        previous = await state.valset(newest.nonce - 1) if newest.nonce else None
        if previous is not None and previous.power_of(self.address):
            if await state.app.get(b"vsig:" + newest.nonce.to_bytes(8, "big") + self.pubkey) is None:
                digest = eip712.valset_digest(escrow, newest.nonce, newest.signers, newest.powers)
                out.append(SignValset(newest.nonce, eip712.sign(digest, self.key)))
        if not newest.power_of(self.address):
            return out
        start = self._cursor[1] if self._cursor[0] == newest.nonce else 0
        done = True  # whether every batch so far is signed
        for batch_id in range(start, await state.next_batch()):
            key = b"sig:" + batch_id.to_bytes(8, "big") + newest.nonce.to_bytes(8, "big") + self.pubkey
            batch = await state.batch(batch_id)
            if batch is not None and batch.root is not None and await state.app.get(key) is not None:
                if done:
                    self._cursor = (newest.nonce, batch_id + 1)
                continue
            done = False
            if batch is None or batch.root is None or len(out) >= limit:
                break  # batches close in order: the open one is the last
            digest = eip712.batch_digest(escrow, batch_id, batch.root, batch.total, newest.nonce)
            out.append(SignBatch(batch_id, newest.nonce, eip712.sign(digest, self.key)))
        return out
