"""Unit tests of the example bridge (listeners/http_oracle + resolutions/oracle_value); its
end-to-end run on the solo engine is tests/e2e/test_solo_node.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from listeners import Service
from listeners.http_oracle import _settings
from resolutions.oracle_value import OracleReading


def service(table: dict[str, Any] | None) -> Service:
    configs = {} if table is None else {"http_oracle": table}
    return Service("http_oracle", logging.getLogger("t"), configs, b"\x00" * 32, "chain")


def test_readings_have_one_canonical_body() -> None:
    reading = OracleReading(7, "42")
    assert reading.encode() == b'{"round":7,"value":"42"}'
    assert OracleReading.decode(reading.encode()) == reading
    for other in (b'{"value":"42","round":7}', b'{"round": 7, "value": "42"}', b'{"round":"7","value":"42"}'):
        with pytest.raises(ValueError, match="canonical"):
            OracleReading.decode(other)


def test_settings_defaults_and_errors_name_the_key() -> None:
    assert _settings(service({"url": "http://127.0.0.1:9/v"})) == ("http://127.0.0.1:9/v", 1.0, 5.0)
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "app.extensions.http_oracle.url"),
        ({"url": "ftp://x"}, "app.extensions.http_oracle.url"),
        ({"url": "http://x", "poll_interval": 0}, "app.extensions.http_oracle.poll_interval"),
        ({"url": "http://x", "request_timeout": True}, "app.extensions.http_oracle.request_timeout"),
    ]
    for table, key in bad:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            _settings(service(table))
