"""Canonical binary encoding for everything the ledger hashes or signs.

Fixed-width big-endian integers and u32-length-prefixed byte strings. A :class:`Reader`
accepts exactly one byte sequence per value (no trailing bytes, no non-minimal big
integers, strict UTF-8), so decode-then-encode always gives back the input.
"""

from __future__ import annotations

import hashlib
import struct

from bridge.errors import DecodeError

MAX_U64 = 2**64 - 1
_U32 = struct.Struct(">I").pack
_READ_U32 = struct.Struct(">I").unpack_from


class Writer:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(struct.pack(">B", v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(_U32(v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(struct.pack(">Q", v))
        return self

    def blob(self, v: bytes) -> Writer:
        self._parts.append(_U32(len(v)) + v)
        return self

    def text(self, v: str) -> Writer:
        return self.blob(v.encode())

    def uint(self, v: int) -> Writer:
        """An unbounded non-negative integer: minimal big-endian bytes (0 is empty)."""
        if v < 0:
            raise ValueError("uint cannot be negative")
        return self.blob(v.to_bytes((v.bit_length() + 7) // 8, "big"))

    def raw(self, v: bytes) -> Writer:
        self._parts.append(v)
        return self

    def finish(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise DecodeError("unexpected end of data")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return int(self._take(1)[0])

    def u32(self) -> int:
        if self._pos + 4 > len(self._data):
            raise DecodeError("unexpected end of data")
        self._pos += 4
        return int(_READ_U32(self._data, self._pos - 4)[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def blob(self, max_len: int | None = None) -> bytes:
        n = self.u32()
        if max_len is not None and n > max_len:
            raise DecodeError(f"field of {n} bytes exceeds the limit of {max_len}")
        return self._take(n)

    def fixed(self, n: int) -> bytes:
        return self._take(n)

    def text(self, max_len: int | None = None) -> str:
        try:
            return self.blob(max_len).decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise DecodeError("string is not valid UTF-8") from exc

    def pairs(self, n: int, max_text: int, max_blob: int) -> tuple[tuple[str, bytes], ...]:
        """``n`` times (text, blob): what as many :meth:`text` and :meth:`blob` calls read, in
        one loop (a vote carries thousands)."""
        data, pos, end = self._data, self._pos, len(self._data)

        def field(limit: int) -> bytes:
            nonlocal pos
            if pos + 4 > end:
                raise DecodeError("unexpected end of data")
            size = _READ_U32(data, pos)[0]
            if size > limit:
                raise DecodeError(f"field of {size} bytes exceeds the limit of {limit}")
            pos += 4 + size
            if pos > end:
                raise DecodeError("unexpected end of data")
            return data[pos - size : pos]

        out = []
        for _ in range(n):
            try:
                text = field(max_text).decode("utf-8", errors="strict")
            except UnicodeDecodeError as exc:
                raise DecodeError("string is not valid UTF-8") from exc
            out.append((text, field(max_blob)))
        self._pos = pos
        return tuple(out)

    def uint(self, max_bytes: int = 32) -> int:
        raw = self.blob(max_bytes)
        if raw[:1] == b"\x00":
            raise DecodeError("integer has a leading zero byte")
        return int.from_bytes(raw, "big")

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def done(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError(f"{len(self._data) - self._pos} trailing bytes")


def event_id(event_type: str, body: bytes) -> bytes:
    """The id of an event and of the resolution it becomes: a hash of (type, body)."""
    t = event_type.encode()
    return hashlib.sha256(_U32(len(t)) + t + _U32(len(body)) + body).digest()  # text, blob
