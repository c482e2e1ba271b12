"""``oracle_value``: stores the value that 2/3 of the validators read for a round.

The body is the JSON ``{"round": <int>, "value": <str>}`` with sorted keys and no spaces,
so every honest validator that read the same value broadcasts the same bytes (and so votes
for the same resolution id). The agreed value is kept under the key ``round:<round>``, and
``latest`` holds the highest round agreed so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from resolutions import ResolutionConfig, ResolveContext, register_resolution

__all__ = ["ORACLE_VALUE", "OracleReading"]

ORACLE_VALUE = "oracle_value"


@dataclass(frozen=True)
class OracleReading:
    round: int
    value: str

    def encode(self) -> bytes:
        return json.dumps(
            {"round": self.round, "value": self.value}, sort_keys=True, separators=(",", ":")
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> OracleReading:
        data = json.loads(body)
        reading = cls(int(data["round"]), str(data["value"]))
        if reading.encode() != body:  # only the canonical form is accepted
            raise ValueError("oracle reading is not canonical JSON")
        return reading


async def _resolve(ctx: ResolveContext) -> None:
    reading, app = OracleReading.decode(ctx.resolution.body), ctx.app
    await app.set(f"round:{reading.round}".encode(), reading.value.encode())
    latest = await app.get(b"latest")
    if latest is None or int(latest) < reading.round:
        await app.set(b"latest", str(reading.round).encode())


# Readings are cheap and frequent: a round nobody confirmed within 600 blocks is dropped.
register_resolution(ORACLE_VALUE, ResolutionConfig(resolve=_resolve, expiration_period=600))
