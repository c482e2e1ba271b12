"""Encode and decode the dataclasses of ``types.py`` from the schema in their annotations."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from bridge.engines.abci.types import (
    REQUEST_FIELDS,
    RESPONSE_FIELDS,
    F,
    Request,
    Response,
)
from bridge.engines.abci.wire import (
    LEN,
    VARINT,
    DecodeError,
    decode_varint,
    encode_varint,
    iter_fields,
    key,
    len_field,
    to_int64,
)

T = TypeVar("T")
_NS = 1_000_000_000
_SCALARS = ("int", "uint", "bool")


class UnknownRequest(DecodeError):
    """A Request whose oneof holds no member this codec knows (e.g. v0.39's InsertTx = 21)."""


_SCHEMAS: dict[type, dict[int, tuple[str, F]]] = {}


def _schema(cls: type) -> dict[int, tuple[str, F]]:
    """{field number: (attribute name, F)} from the class's Annotated hints (cached)."""
    if cls in _SCHEMAS:
        return _SCHEMAS[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[int, tuple[str, F]] = {}
    for f in dataclasses.fields(cls):
        (spec,) = (m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, F))
        out[spec.number] = (f.name, spec)
    _SCHEMAS[cls] = out
    return out


# --- encoding ------------------------------------------------------------------------------


def _timestamp(ns: int) -> bytes:
    seconds, nanos = divmod(ns, _NS)  # protobuf Timestamp: nanos always in [0, 1e9)
    return _varint_field(1, seconds) + _varint_field(2, nanos)


def _scalar(kind: str | type, value: Any) -> bytes:
    if kind == "uint" and value < 0:
        raise ValueError(f"unsigned field got {value}")
    return encode_varint(int(value))


def _varint_field(number: int, value: int) -> bytes:
    return key(number, VARINT) + encode_varint(int(value)) if value else b""


def _encode_one(spec: F, value: Any) -> bytes:
    """One non-repeated value, always written (the caller drops proto3 defaults)."""
    kind = spec.kind
    if kind == "string":
        return len_field(spec.number, value.encode())
    if kind in ("bytes", "raw"):
        return len_field(spec.number, bytes(value))
    if kind == "time":
        return len_field(spec.number, _timestamp(value))
    if isinstance(kind, type):
        return len_field(spec.number, encode_message(value))
    return key(spec.number, VARINT) + _scalar(kind, value)


def encode_message(msg: object) -> bytes:
    out = bytearray()
    for number, (name, spec) in sorted(_schema(type(msg)).items()):
        value = getattr(msg, name)
        if spec.repeated:
            if spec.kind in _SCALARS:  # proto3 packs repeated scalars
                if value:
                    out += len_field(number, b"".join(_scalar(spec.kind, v) for v in value))
            else:
                for item in value:
                    out += _encode_one(spec, item)
        elif value is not None and (spec.kind == "raw" or isinstance(spec.kind, type) or value):
            out += _encode_one(spec, value)
    return bytes(out)


def encode_response(resp: Response) -> bytes:
    """A serialized ``Response`` (without the length prefix)."""
    return _encode_oneof(resp, RESPONSE_FIELDS)


def encode_request(req: Request) -> bytes:
    """A serialized ``Request``: what CometBFT sends (used by tests and tools)."""
    return _encode_oneof(req, REQUEST_FIELDS)


def _encode_oneof(msg: object, table: dict[int, Any]) -> bytes:
    for number, cls in table.items():
        if type(msg) is cls:
            return len_field(number, encode_message(msg))
    raise TypeError(f"{type(msg).__name__} is not a member of this oneof")


# --- decoding ------------------------------------------------------------------------------


def _decode_scalar(kind: str, raw: int) -> int | bool:
    if kind == "bool":
        return raw != 0
    return to_int64(raw) if kind == "int" else raw


def _decode_len(cls: type, name: str, kind: str | type, data: bytes) -> Any:
    if kind == "string":
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{cls.__name__}.{name} is not UTF-8: {exc}") from None
    if kind in ("bytes", "raw"):
        return data
    if kind == "time":
        ts = decode_message(_Timestamp, data)
        return ts.seconds * _NS + ts.nanos
    assert isinstance(kind, type)
    return decode_message(kind, data)


def decode_message(cls: type[T], data: bytes) -> T:
    schema = _schema(cls)
    values: dict[str, Any] = {}
    repeated: dict[str, list[Any]] = {}
    embedded: dict[int, list[bytes]] = {}  # singular embedded messages, merged as protobuf does
    for number, wire_type, raw in iter_fields(data):
        if number not in schema:
            continue  # unknown field: skipped, as protobuf does
        name, spec = schema[number]
        kind = spec.kind
        if isinstance(raw, int):
            if kind not in _SCALARS:
                raise DecodeError(f"{cls.__name__}.{name}: got a varint, expected length-delimited")
            value: Any = _decode_scalar(str(kind), raw)
            if spec.repeated:
                repeated.setdefault(name, []).append(value)
            else:
                values[name] = value
        elif kind in _SCALARS:
            if not spec.repeated:
                raise DecodeError(f"{cls.__name__}.{name}: got wire type {wire_type}, expected a varint")
            repeated.setdefault(name, []).extend(_unpack(str(kind), raw))
        elif spec.repeated:
            repeated.setdefault(name, []).append(_decode_len(cls, name, kind, raw))
        elif kind in ("time", "raw") or isinstance(kind, type):
            embedded.setdefault(number, []).append(raw)  # seen again: merged, i.e. parsed concatenated
        else:
            values[name] = _decode_len(cls, name, kind, raw)  # the last one wins
    for number, parts in embedded.items():
        name, spec = schema[number]
        values[name] = _decode_len(cls, name, spec.kind, b"".join(parts))
    values.update((name, tuple(items)) for name, items in repeated.items())
    return cls(**values)


def _unpack(kind: str, data: bytes) -> list[int | bool]:
    out, pos = [], 0
    while pos < len(data):
        raw, pos = decode_varint(data, pos)
        out.append(_decode_scalar(kind, raw))
    return out


def decode_request(data: bytes) -> Request:
    """Parses a serialized ``Request``; raises DecodeError (UnknownRequest for an unknown oneof)."""
    return typing.cast(Request, _decode_oneof(data, REQUEST_FIELDS, "Request"))


def decode_response(data: bytes) -> Response:
    return typing.cast(Response, _decode_oneof(data, RESPONSE_FIELDS, "Response"))


def _decode_oneof(data: bytes, table: dict[int, type], what: str) -> object:
    found: tuple[int, list[bytes]] | None = None
    unknown: list[int] = []
    for number, wire_type, raw in iter_fields(data):
        if number not in table:
            unknown.append(number)
        elif wire_type != LEN or not isinstance(raw, bytes):
            raise DecodeError(f"{what} field {number} has wire type {wire_type}, expected 2")
        else:
            if found is None or found[0] != number:
                found = (number, [])  # for a oneof the last member seen wins
            found[1].append(raw)  # and the same member seen again is merged, as protobuf does
    if found is None:
        detail = f"unknown field(s) {sorted(set(unknown))}" if unknown else "no field set"
        raise UnknownRequest(f"{what} has no known member: {detail}")
    number, parts = found
    return decode_message(table[number], b"".join(parts))


@dataclasses.dataclass(frozen=True)
class _Timestamp:
    seconds: typing.Annotated[int, F(1, "int")] = 0
    nanos: typing.Annotated[int, F(2, "int")] = 0
