"""``http_oracle``: polls an HTTP JSON API for a value that validators must agree on.

Configure it in ``config.toml``::

    [app.extensions.http_oracle]
    url = "http://127.0.0.1:9000/value"   # required; answers {"round": 7, "value": "42"}
    poll_interval = 1.0                   # seconds between polls (default 1.0)
    request_timeout = 5.0                 # seconds per request (default 5.0)

Each new round is broadcast once as an ``oracle_value`` event; the last round seen is kept
in the listener's store, in the same transaction, so a restart resumes after it.
"""

from __future__ import annotations

import asyncio

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from listeners import EventStore, Service, parse_config, register_listener
from resolutions import MAX_BODY_BYTES
from resolutions.oracle_value import ORACLE_VALUE, OracleReading

__all__ = ["HTTP_ORACLE"]

HTTP_ORACLE = "http_oracle"
_LAST_ROUND = b"last_round"


class HttpOracleConfig(BaseModel):
    """The example oracle (`listeners/http_oracle`): see
    [building-a-bridge.md](building-a-bridge.md)."""

    # No inf or nan, and at most a day: aiohttp's timeout overflows on inf, and a huge
    # interval would stall the listener while the node reports itself ready.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    url: str = Field(description='an http(s) URL answering `{"round": 7, "value": "42"}`')
    poll_interval: float = Field(1.0, gt=0, le=86_400, description="seconds between polls; at most a day")
    request_timeout: float = Field(5.0, gt=0, le=86_400, description="seconds per request; at most a day")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url


def _settings(service: Service) -> tuple[str, float, float]:
    config = parse_config(service, HttpOracleConfig)
    return config.url, config.poll_interval, config.request_timeout


@register_listener(HTTP_ORACLE, config=HttpOracleConfig)
async def listen(service: Service, store: EventStore) -> None:
    if service.config is None:
        service.logger.info("no [app.extensions.%s] table: not running on this node", service.name)
        return
    url, interval, timeout = _settings(service)
    raw = await store.get(_LAST_ROUND)
    last = int(raw) if raw is not None else -1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    response.raise_for_status()
                    data = await response.json()
                reading = OracleReading(int(data["round"]), str(data["value"]))
                if len(reading.encode()) > MAX_BODY_BYTES:  # no vote could carry it
                    raise ValueError(f"reading of round {reading.round} exceeds {MAX_BODY_BYTES} bytes")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, OverflowError) as exc:
                # The source being down or odd is not this node's fault: try again later.
                service.logger.warning("reading %s failed: %r", url, exc)
            else:
                if reading.round > last:
                    async with store.transaction() as tx:
                        await tx.broadcast(ORACLE_VALUE, reading.encode())
                        await tx.set(_LAST_ROUND, str(reading.round).encode())
                    last = reading.round
            await asyncio.sleep(interval)
