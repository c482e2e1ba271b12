"""Signing keys: ed25519 for validators, Ethereum (EIP-712) for users."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.errors import ConfigError
from bridge.hints import command


class NodeKey:
    """A validator's ed25519 key pair."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def save(self, path: Path) -> None:
        data = {"type": "ed25519", "private_key": self.seed().hex(), "public_key": self.public.hex()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        try:
            data = json.loads(path.read_text())
            return cls.from_seed(bytes.fromhex(data["private_key"]))
        except FileNotFoundError:
            raise ConfigError(
                f"node key file {path} does not exist (run `{command('init --home DIR')}`)"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"node key file {path} is not a valid ed25519 key: {exc}") from None


def verify_ed25519(pubkey: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pubkey).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def account_id(signer: bytes) -> str:
    """The ledger account of a signer: 0x-prefixed lower-case hex of its address or key."""
    return "0x" + signer.hex()


def parse_account(text: str) -> str:
    """Normalise a user-supplied account (20-byte address or 32-byte key); ``ValueError``.

    Strict: exactly ``0x`` and 40 or 64 hex digits, no stripping (a path may carry encoded
    newlines), and the error shows no control characters."""
    if not re.fullmatch("0x(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})", text):
        shown = repr(text[:80]) if text.isprintable() else "(with control characters)"
        raise ValueError(f"account {shown} must be 20 or 32 bytes of hex")
    return text.lower()
