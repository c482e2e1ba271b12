"""Validator membership as resolutions, registered through the public API like any other.

A candidate's ``join`` transaction creates a ``validator_join`` resolution; validators
``approve`` it; at 2/3 of the power it resolves into a power update. ``remove`` works the
same way against a sitting validator.
"""

from __future__ import annotations

from fractions import Fraction

from bridge.encoding import Reader, Writer
from resolutions import App, BlockContext, Resolution, ResolutionConfig, register_resolution

JOIN = "validator_join"
REMOVE = "validator_remove"


def join_body(pubkey: bytes, power: int, nonce: int) -> bytes:
    # The candidate's nonce makes every request unique, so a node that left can join again.
    return Writer().blob(pubkey).u64(power).u64(nonce).finish()


def remove_body(pubkey: bytes, since: int) -> bytes:
    # The height the validator joined at: one removal per tenure.
    return Writer().blob(pubkey).u64(since).finish()


async def _join(app: App, resolution: Resolution, block: BlockContext) -> None:
    r = Reader(resolution.body)
    pubkey, power = r.blob(32), r.u64()
    await app.set_validator_power(pubkey, power)


async def _remove(app: App, resolution: Resolution, block: BlockContext) -> None:
    await app.set_validator_power(Reader(resolution.body).blob(32), 0)


register_resolution(JOIN, ResolutionConfig(resolve=_join, confirmation_threshold=Fraction(2, 3)))
register_resolution(REMOVE, ResolutionConfig(resolve=_remove, confirmation_threshold=Fraction(2, 3)))
