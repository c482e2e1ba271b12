"""Node configuration: ``config.toml`` in the node's home, every key overridable from the
environment as ``BRIDGE_<SECTION>__<KEY>`` (e.g. ``BRIDGE_API__PORT=8081``).

``[app.extensions.NAME]`` tables are handed to listener ``NAME`` unchanged. A name that maps
to nothing (a ``BRIDGE_*`` variable, a table of no listener) is an error, not ignored, and
every number must be finite: a typo must not start a node that silently does nothing.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.hints import command
from bridge.ledger.app import MAX_NONCE_AHEAD
from bridge.txs import MAX_VOTES_PER_TX
from listeners import registered_listeners

CONFIG_FILE, GENESIS_FILE, KEY_FILE, DATA_DIR = "config.toml", "genesis.json", "node_key.json", "data"
ENV_PREFIX = "BRIDGE_"
# Cap of durations: asyncio and aiohttp timers overflow or never fire on huge values, which
# would stall a node that still reports itself ready.
DAY = 86_400


class Section(BaseModel):
    # TOML and float() accept inf and nan: no setting means them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NodeConfig(Section):
    engine: Literal["solo", "cometbft"] = Field(
        "solo", description='"solo": one validator in this process; "cometbft": a real network'
    )
    block_interval: float = Field(
        0.2, gt=0, le=3600, description="seconds between solo blocks; at most an hour (slower looks stopped)"
    )
    max_block_bytes: int = Field(4 << 20, ge=1024, description="byte cap of a block's transactions")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="logging level")


class CometConfig(Section):
    home: str = Field("cometbft", description="CometBFT's home, relative to the node's home")
    binary: str = Field("", description="the cometbft binary (default: the project's .tools/bin, then PATH)")
    rpc_laddr: str = Field("tcp://127.0.0.1:26657", description="CometBFT's RPC address (loopback)")
    snapshot_interval: int = Field(
        1000, ge=0, description="take a state-sync snapshot of the ledger every this many blocks (0: never)"
    )
    snapshot_keep: int = Field(2, ge=1, description="how many snapshots to keep (older ones are deleted)")
    retain_blocks: int = Field(
        0,
        ge=0,
        description="let CometBFT prune blocks older than this many, never past the newest snapshot"
        " (0: keep every block)",
    )


class ApiConfig(Section):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8080, ge=0, le=65535, description="port of the HTTP API (0 picks a free one)")


class BroadcasterConfig(Section):
    max_votes_per_tx: int = Field(2000, ge=1, le=MAX_VOTES_PER_TX, description="events per vote tx")
    max_inflight: int = Field(
        4, ge=1, lt=MAX_NONCE_AHEAD, description="vote txs in the mempool at once (consecutive nonces)"
    )
    resend_timeout: float = Field(
        5.0, gt=0, le=DAY, description="seconds before an unconfirmed vote is sent again; at most a day"
    )


class ListenersConfig(Section):
    restart_policy: Literal["never", "always"] = Field(
        "never",
        description='"never": a failing listener stops the node; "always": restart it. A listener\'s '
        "misconfiguration (`listeners.ConfigError`) stops the node under either",
    )
    restart_max_delay: float = Field(
        60.0, gt=0, le=DAY, description="cap of the restart backoff, seconds; at most a day"
    )


class SignerConfig(Section):
    key_file: str = Field(
        "eth_signer.key",
        description="the validator's Ethereum key that signs withdrawals: a file of its hex, "
        "relative to the node's home (`bridge init` writes one)",
    )
    keystore: str = Field(
        "", description="instead of key_file: an encrypted keystore (eth-account JSON), relative to the home"
    )
    password_file: str = Field("", description="the keystore's password, in a file relative to the home")


class AppConfig(Section):
    extensions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="one `[app.extensions.NAME]` table per listener, handed to it unchanged; "
        "a listener without its table does not run on this node, a table of no listener is an error",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    node: NodeConfig = Field(default_factory=NodeConfig)  # type: ignore[arg-type]
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    cometbft: CometConfig = Field(default_factory=CometConfig)  # type: ignore[arg-type]
    broadcaster: BroadcasterConfig = Field(default_factory=BroadcasterConfig)  # type: ignore[arg-type]
    listeners: ListenersConfig = Field(default_factory=ListenersConfig)  # type: ignore[arg-type]
    signer: SignerConfig = Field(default_factory=SignerConfig)  # type: ignore[arg-type]
    app: AppConfig = Field(default_factory=AppConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which arrives as init arguments.
        return env_settings, init_settings


def _is_setting(parts: list[str]) -> bool:
    """Whether ``BRIDGE_A__B__C`` (as ``[a, b, c]``) names a section, a key, or a key inside
    a table (``app.extensions.NAME.key``): what pydantic-settings would read."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        if (field := model.model_fields.get(part)) is None:
            return False
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            model = kind
            continue
        rest = parts[i + 1 :]
        return not rest or (typing.get_origin(kind) is dict and all(rest))
    return True


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``BRIDGE_*`` variables that set nothing; pydantic-settings would ignore them."""
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)  # pydantic-settings ignores the case, so do we
        and not _is_setting(name[len(ENV_PREFIX) :].lower().split("__"))
    )


def check_extensions(settings: Settings) -> None:
    """Raise ``ConfigError`` for an ``[app.extensions.NAME]`` table (from the file or the
    environment) of no registered listener: call it after ``load_extensions()``."""
    known = registered_listeners()
    if unknown := sorted(set(settings.app.extensions) - set(known)):
        raise ConfigError(
            "; ".join(f"app.extensions.{name}: no listener is named {name!r}" for name in unknown)
            + f" (the listeners: {', '.join(known) or 'none'})"
        )


def load_config(home: Path) -> Settings:
    path = home / CONFIG_FILE
    if unknown := unknown_variables(os.environ):
        raise ConfigError(
            "; ".join(f"{name}: not a setting" for name in unknown)
            + f" (use {ENV_PREFIX}<SECTION>__<KEY> with a key of {path})"
        )
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (run `{command(f'init --home {home}')}`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8 only
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    # pydantic-settings reads ``_env_prefix`` and friends from init arguments: not from here.
    if private := sorted(k for k in data if k.startswith("_")):
        raise ConfigError(f"{path}: {', '.join(private)}: Extra inputs are not permitted")
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path} (or its BRIDGE_* overrides): {problems}") from None


CONFIG_TEMPLATE = """\
# Bridge node configuration. Every key can be overridden from the environment as
# BRIDGE_<SECTION>__<KEY>, e.g. BRIDGE_API__PORT=8081.

[node]
# Consensus engine: "solo" runs a one-validator chain inside this process.
engine = "solo"
# Seconds between blocks of the solo engine.
block_interval = 0.2
# One of debug, info, warning, error.
log_level = "info"

[api]
# The HTTP API (/health, /ready, /metrics, /v1/...). Keep it on 127.0.0.1 unless a
# reverse proxy guards it.
host = "127.0.0.1"
port = {port}

[broadcaster]
# Events per vote transaction, how many vote transactions may wait in the mempool at once,
# and seconds before an unconfirmed vote is sent again.
max_votes_per_tx = 2000
max_inflight = 4
resend_timeout = 5.0

[listeners]
# "never": a listener that raises stops the node (exit code 1).
# "always": it is restarted with a capped exponential backoff.
# Either way a misconfigured listener (a wrong [app.extensions.NAME] table) stops the node.
restart_policy = "never"

# Each listener reads its own [app.extensions.NAME] table; a listener without one does not
# run on this node, and a table of no listener stops it. The tables: docs/configuration.md
# (`bridge config docs`).
"""
