"""Where a command gets an Ethereum private key: a file, the environment or an encrypted
keystore, and the command line only as a last resort (it shows in `ps` and shell history)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from eth_account import Account

from listeners import ConfigError

KEY_ENV, PASSWORD_ENV = "ETH_PRIVATE_KEY", "ETH_KEYSTORE_PASSWORD"


def add_key_arguments(parser: argparse.ArgumentParser, what: str = "the sending account") -> None:
    """Add the key options; read them back with :func:`private_key`."""
    keys = parser.add_argument_group(
        f"the key of {what} (one of these, else ${KEY_ENV})",
        "a key on the command line is visible to other users (ps) and kept in shell history",
    )
    keys.add_argument("--private-key-file", type=Path, metavar="PATH", help="a file holding the hex key")
    keys.add_argument("--keystore", type=Path, metavar="PATH", help="an encrypted JSON keystore (geth, cast)")
    keys.add_argument(
        "--password-file",
        type=Path,
        metavar="PATH",
        help=f"the keystore's password (else ${PASSWORD_ENV}, else asked on the terminal)",
    )
    keys.add_argument("--private-key", metavar="HEX", help="the hex key itself (avoid: see above)")


def private_key(args: argparse.Namespace) -> str:
    """The key the options (or $ETH_PRIVATE_KEY) name, as 0x-prefixed hex; ``ConfigError``
    naming the option when none, several, or an unreadable one is given."""
    given = [name for name in ("private_key", "private_key_file", "keystore") if getattr(args, name)]
    if len(given) > 1:
        raise ConfigError("give one of --private-key, --private-key-file and --keystore")
    try:
        if args.private_key_file:
            key = args.private_key_file.read_text().strip()
        elif args.keystore:
            key = _decrypt(args.keystore, args.password_file)
        elif args.private_key:
            key = args.private_key
        elif os.environ.get(KEY_ENV):
            key = os.environ[KEY_ENV].strip()
        else:
            raise ConfigError(
                f"no key: give --private-key-file, --keystore or --private-key, or set ${KEY_ENV}"
            )
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    key = key if key.startswith("0x") else "0x" + key
    try:
        Account.from_key(key)
    except (ValueError, TypeError):
        raise ConfigError("the private key is not 32 bytes of hex") from None
    return str(key)


def _decrypt(keystore: Path, password_file: Path | None) -> str:
    if password_file is not None:
        password = password_file.read_text().rstrip("\n")
    elif PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    else:
        password = getpass.getpass(f"password of {keystore}: ")
    try:
        secret: bytes = bytes(Account.decrypt(json.loads(keystore.read_text()), password))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--keystore {keystore}: cannot decrypt it ({exc})") from None
    return "0x" + secret.hex()
