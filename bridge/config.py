"""Node configuration: ``config.toml`` in the node's home, every key overridable from the
environment as ``BRIDGE_<SECTION>__<KEY>`` (e.g. ``BRIDGE_API__PORT=8081``).

``[app.extensions.NAME]`` tables are handed to listener ``NAME`` unchanged.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.txs import MAX_VOTES_PER_TX

CONFIG_FILE, GENESIS_FILE, KEY_FILE, DATA_DIR = "config.toml", "genesis.json", "node_key.json", "data"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeConfig(Section):
    engine: Literal["solo", "cometbft"] = Field(
        "solo", description='"solo": one validator in this process; "cometbft": a real network'
    )
    block_interval: float = Field(0.2, gt=0, description="seconds between solo blocks")
    max_block_bytes: int = Field(4 << 20, ge=1024, description="byte cap of a block's transactions")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="logging level")


class CometConfig(Section):
    home: str = Field("cometbft", description="CometBFT's home, relative to the node's home")
    binary: str = Field("", description="the cometbft binary (default: the project's .tools/bin, then PATH)")
    rpc_laddr: str = Field("tcp://127.0.0.1:26657", description="CometBFT's RPC address (loopback)")


class ApiConfig(Section):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8080, ge=0, le=65535, description="port of the HTTP API (0 picks a free one)")


class BroadcasterConfig(Section):
    max_votes_per_tx: int = Field(500, ge=1, le=MAX_VOTES_PER_TX, description="events per vote tx")
    resend_timeout: float = Field(5.0, gt=0, description="seconds before an unconfirmed vote is sent again")


class ListenersConfig(Section):
    restart_policy: Literal["never", "always"] = Field(
        "never", description='"never": a failing listener stops the node; "always": restart it'
    )
    restart_max_delay: float = Field(60.0, gt=0, description="cap of the restart backoff, seconds")


class AppConfig(Section):
    extensions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="one `[app.extensions.NAME]` table per listener, handed to it unchanged; "
        "a listener without its table does not run on this node",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", env_nested_delimiter="__", extra="forbid")

    node: NodeConfig = Field(default_factory=NodeConfig)  # type: ignore[arg-type]
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    cometbft: CometConfig = Field(default_factory=CometConfig)  # type: ignore[arg-type]
    broadcaster: BroadcasterConfig = Field(default_factory=BroadcasterConfig)  # type: ignore[arg-type]
    listeners: ListenersConfig = Field(default_factory=ListenersConfig)  # type: ignore[arg-type]
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


def load_config(home: Path) -> Settings:
    path = home / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (run `bridge init --home {home}`)") from None
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
# Events per vote transaction, and seconds before an unconfirmed vote is sent again.
max_votes_per_tx = 500
resend_timeout = 5.0

[listeners]
# "never": a listener that raises stops the node (exit code 1).
# "always": it is restarted with a capped exponential backoff.
restart_policy = "never"

# Each listener reads its own [app.extensions.NAME] table; a listener without one does not
# run on this node. The tables: docs/configuration.md (`bridge config docs`).
"""
