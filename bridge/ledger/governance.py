"""Validator membership as resolutions, registered through the public API like any other.

A candidate's ``join`` transaction creates a ``validator_join`` resolution; validators
``approve`` it; at 2/3 of the power it resolves into a power update. ``remove`` works the
same way against a sitting validator.
"""

from __future__ import annotations

from fractions import Fraction

from bridge.encoding import Reader, Writer
from bridge.keys import account_id
from resolutions import App, ResolutionConfig, ResolveContext, register_resolution

JOIN = "validator_join"
REMOVE = "validator_remove"


def join_body(pubkey: bytes, power: int, nonce: int) -> bytes:
    # The candidate's nonce makes every request unique, so a node that left can join again.
    return Writer().blob(pubkey).u64(power).u64(nonce).finish()


def remove_body(pubkey: bytes, since: int) -> bytes:
    # The height the validator joined at: one removal per tenure.
    return Writer().blob(pubkey).u64(since).finish()


def bond_key(request_id: bytes) -> bytes:
    """Where a join request's locked bond is kept (in the ``validator_join`` namespace)."""
    return b"bond:" + request_id


def amount(value: int) -> bytes:
    return value.to_bytes(32, "big")


async def release_bond(app: App, request_id: bytes, body: bytes) -> None:
    """Return a join request's locked bond (if any) to the candidate's account."""
    locked = await app.get(bond_key(request_id))
    if locked is not None:
        await app.delete(bond_key(request_id))
        await app.credit(account_id(Reader(body).blob(32)), int.from_bytes(locked, "big"))


async def _join(ctx: ResolveContext) -> None:
    r = Reader(ctx.resolution.body)
    pubkey, power = r.blob(32), r.u64()
    await ctx.app.set_validator_power(pubkey, power)
    await release_bond(ctx.app, ctx.resolution.id, ctx.resolution.body)


async def _remove(ctx: ResolveContext) -> None:
    await ctx.app.set_validator_power(Reader(ctx.resolution.body).blob(32), 0)


register_resolution(JOIN, ResolutionConfig(resolve=_join, confirmation_threshold=Fraction(2, 3)))
register_resolution(REMOVE, ResolutionConfig(resolve=_remove, confirmation_threshold=Fraction(2, 3)))
