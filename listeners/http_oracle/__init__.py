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

from listeners import EventStore, Service, register_listener
from resolutions import MAX_BODY_BYTES
from resolutions.oracle_value import ORACLE_VALUE, OracleReading

__all__ = ["HTTP_ORACLE"]

HTTP_ORACLE = "http_oracle"
_LAST_ROUND = b"last_round"


def _settings(service: Service) -> tuple[str, float, float]:
    config = service.config or {}
    prefix = f"app.extensions.{service.name}"
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{prefix}.url must be an http(s) URL, got {url!r}")
    numbers = []
    for key, default in (("poll_interval", 1.0), ("request_timeout", 5.0)):
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{prefix}.{key} must be a positive number, got {value!r}")
        numbers.append(float(value))
    return url, numbers[0], numbers[1]


@register_listener(HTTP_ORACLE)
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
