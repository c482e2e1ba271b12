"""Protobuf wire primitives and the ABCI socket framing.

Only what CometBFT v0.38's ABCI messages use: varints (wire type 0) and length-delimited fields
(wire type 2). Fixed-width fields (wire types 1 and 5) are skipped as unknown; groups (3 and 4)
are rejected. Each socket frame is ``uvarint(len(payload)) || payload`` (CometBFT v0.37+ uses an
*unsigned* varint; v0.34 used a signed, zig-zag one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_U64 = 1 << 64


class DecodeError(ValueError):
    """Bytes that are not a valid (or supported) protobuf encoding."""


class FrameTooLarge(DecodeError):
    pass


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128; a negative int64 is sent as its 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += _U64
    if not 0 <= value < _U64:
        raise ValueError(f"{value} does not fit in 64 bits")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Returns (unsigned value, position after it)."""
    result = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >= _U64:
                raise DecodeError(f"varint at offset {pos} overflows 64 bits")
            return result, i + 1
        shift += 7
    if len(data) - pos >= 10:
        raise DecodeError(f"varint at offset {pos} is longer than 10 bytes")
    raise DecodeError(f"truncated varint at offset {pos}")


def to_int64(value: int) -> int:
    """Reads a decoded varint as a signed int64 (int32 and enums are sign-extended the same way)."""
    return value - _U64 if value >= 1 << 63 else value


def zigzag_encode(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def zigzag_decode(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """Yields (field number, wire type, value): an int for varints, bytes for length-delimited
    fields. Fixed-width fields are skipped."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError(f"field number 0 at offset {pos}")
        if wire_type == VARINT:
            value, pos = decode_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            size, pos = decode_varint(data, pos)
            if size > end - pos:
                raise DecodeError(f"truncated field {number}: needs {size} bytes, {end - pos} left")
            yield number, wire_type, bytes(data[pos : pos + size])
            pos += size
        elif wire_type in (FIXED64, FIXED32):
            pos += 8 if wire_type == FIXED64 else 4
            if pos > end:
                raise DecodeError(f"truncated fixed-width field {number}")
        else:
            raise DecodeError(f"unsupported wire type {wire_type} (field {number})")


def key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def len_field(number: int, payload: bytes) -> bytes:
    return key(number, LEN) + encode_varint(len(payload)) + payload


def frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> bytes | None:
    """One length-prefixed message, or None on a clean end of stream between messages."""
    size = shift = 0
    for i in range(10):
        byte = await reader.read(1)
        if not byte:
            if i == 0:
                return None
            raise DecodeError("connection closed inside a length prefix")
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    else:
        raise DecodeError("length prefix longer than 10 bytes")
    if size > max_size:
        raise FrameTooLarge(f"message of {size} bytes exceeds the {max_size}-byte limit")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise DecodeError(f"connection closed inside a {size}-byte message") from exc
