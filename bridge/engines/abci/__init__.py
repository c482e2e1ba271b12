"""ABCI 2.0 over a socket, for CometBFT v0.38: a hand-written protobuf codec and an asyncio server.

``types`` holds the request/response dataclasses, ``codec`` turns them into protobuf bytes,
``wire`` has the varint and framing primitives, ``server`` the socket server and the
``Application`` protocol it calls.
"""

from bridge.engines.abci.codec import (
    UnknownRequest,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from bridge.engines.abci.server import MAX_FRAME, AbciServer, Application
from bridge.engines.abci.wire import DecodeError, FrameTooLarge

__all__ = [
    "MAX_FRAME",
    "AbciServer",
    "Application",
    "DecodeError",
    "FrameTooLarge",
    "UnknownRequest",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]
