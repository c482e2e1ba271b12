"""The HTTP API of a real node: a solo engine making blocks on SQLite, served over TCP."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli import main as cli_main
from bridge.config import KEY_FILE
from bridge.encoding import event_id
from bridge.errors import TX_HTTP_STATUS, TxCode
from bridge.keys import NodeKey
from bridge.ledger.types import TxResult
from bridge.node import Node
from bridge.txs import MAX_TX_BYTES, Tx, Vote
from listeners import EventStore, Service, register_listener
from resolutions.oracle_value import ORACLE_VALUE, OracleReading

DEADLINE = 30.0


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    node: Node
    home: Path
    url: str
    http: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, **kwargs) as r:
            return r.status, await r.json(content_type=None)


@asynccontextmanager
async def start_node(
    home: Path, extra_config: str = "", edits: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """A node on a fresh home, until the block exits. ``edits`` replace text in config.toml
    and ``extra_config`` is appended to it. The node must stop cleanly with exit code 0."""
    assert cli_main(["init", "--home", str(home), "--api-port", "0"]) == 0
    path = home / "config.toml"
    text = path.read_text()
    for old, new in (edits or {}).items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text + "\n" + extra_config)
    node = Node.from_home(home)
    task = asyncio.create_task(node.run())

    async def started() -> bool:
        if task.done():
            raise AssertionError(f"node exited early: {task.result()!r}")
        return bool(node.api_url) and node.ledger.height > 0

    try:
        await wait_for("the node to serve and commit a block", started)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http:
            yield Running(node, home, node.api_url, http)
    finally:
        node.stop()
        code = await asyncio.wait_for(task, DEADLINE)
    assert code == 0
    assert node.fatal is None


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with start_node(tmp_path / "home") as r:
        yield r


async def metric_families(running: Running) -> dict[str, Metric]:
    async with running.http.get(running.url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        return {f.name: f for f in text_string_to_metric_families(await r.text())}


async def assert_json_error(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body


def vote_tx(node: Node, key: NodeKey, nonce: int, reading: OracleReading, chain_id: str = "") -> Tx:
    payload = Vote(((ORACLE_VALUE, reading.encode()),)).encode()
    tx = Tx(chain_id or node.ledger.chain_id, "vote", key.public, nonce, payload)
    return tx.sign_ed25519(key)


# -- probes -- #


async def test_health(running: Running) -> None:
    assert await running.get("/health") == (200, {"status": "ok"})


async def test_ready(running: Running) -> None:
    assert await running.get("/ready") == (200, {"ready": True, "problems": []})


async def test_metrics_are_prometheus_text(running: Running) -> None:
    families = await metric_families(running)
    assert "bridge_ledger_height" in families
    (height,) = families["bridge_ledger_height"].samples
    assert height.value >= 1
    (power,) = families["bridge_validator_power"].samples
    assert power.value == 10
    assert "bridge_ledger_txs" in families


# -- reads -- #


async def test_status(running: Running) -> None:
    status, body = await running.get("/v1/status")
    assert status == 200
    assert body["chain_id"] == "bridge-local"
    assert isinstance(body["height"], int) and body["height"] >= 1
    assert len(bytes.fromhex(body["app_hash"])) == 32
    assert body["node_id"] == running.node.key.public.hex()
    assert body["validator"] is True
    assert body["power"] == 10
    assert body["caught_up"] is True
    assert body["engine"] == "solo"
    # http_oracle is registered but has no config table here: it returns at once.
    assert body["listeners"]["http_oracle"]["state"] in ("running", "finished")
    assert body["listeners"]["http_oracle"]["configured"] is False
    assert body["listeners"]["http_oracle"]["restarts"] == 0
    assert body["events"] == {}
    assert body["mempool"] == 0


async def test_status_height_advances(running: Running) -> None:
    _, first = await running.get("/v1/status")

    async def advanced() -> bool:
        _, now = await running.get("/v1/status")
        return bool(now["height"] > first["height"])

    await wait_for("a new block", advanced)


async def test_account(running: Running) -> None:
    address = "0x" + "AB" * 20
    status, body = await running.get(f"/v1/accounts/{address}")
    assert status == 200
    assert body == {"address": address.lower(), "balance": "0", "nonce": 0}

    key_account = "0x" + running.node.key.public.hex()
    status, body = await running.get(f"/v1/accounts/{key_account}")
    assert status == 200
    assert body["address"] == key_account
    assert body["nonce"] == 0


@pytest.mark.parametrize("address", ["0x1234", "nothex", "0x" + "zz" * 20, "0x" + "ab" * 21])
async def test_account_invalid(running: Running, address: str) -> None:
    async with running.http.get(f"{running.url}/v1/accounts/{address}") as r:
        body = await assert_json_error(r, 400)
    assert address in body["error"]


async def test_resolutions_empty(running: Running) -> None:
    assert await running.get("/v1/resolutions") == (200, {"resolutions": []})
    for status_ in ("pending", "confirmed", "failed"):
        assert await running.get(f"/v1/resolutions?status={status_}") == (200, {"resolutions": []})


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("status=done", "status"),
        ("status=", "status"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-5", "limit"),
    ],
)
async def test_resolutions_invalid_query(running: Running, query: str, needle: str) -> None:
    async with running.http.get(f"{running.url}/v1/resolutions?{query}") as r:
        body = await assert_json_error(r, 400)
    assert needle in body["error"]


async def test_validators(running: Running) -> None:
    assert await running.get("/v1/validators") == (
        200,
        {"validators": [{"pubkey": running.node.key.public.hex(), "power": 10}], "requests": []},
    )


async def test_kv_unknown_namespace_is_empty(running: Running) -> None:
    assert await running.get("/v1/kv/nothing_here") == (200, {"entries": []})


@pytest.mark.parametrize("limit", ["x", "0", "100000"])
async def test_kv_invalid_limit(running: Running, limit: str) -> None:
    async with running.http.get(f"{running.url}/v1/kv/oracle_value?limit={limit}") as r:
        body = await assert_json_error(r, 400)
    assert "limit" in body["error"]


# -- transactions -- #


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not json", "JSON"),
        (b"\xff\xfe\x00garbage", "JSON"),
        (b"", "JSON"),
        (b'{"transaction": "0x00"}', "tx"),
        (b'["0x00"]', "tx"),
        (b'{"tx": 5}', "tx"),
        (b'{"tx": "0xnothex"}', "hex"),
        (b'{"tx": "abc"}', "hex"),
    ],
)
async def test_submit_bad_request(running: Running, data: bytes, needle: str) -> None:
    async with running.http.post(running.url + "/v1/tx", data=data) as r:
        body = await assert_json_error(r, 400)
    assert needle in body["error"]
    assert "code" not in body


@pytest.mark.parametrize("raw", [b"", b"\xde\xad\xbe\xef", b"\x01" + b"\xff" * 40])
async def test_submit_garbage_bytes(running: Running, raw: bytes) -> None:
    status, body = await running.post("/v1/tx", json={"tx": "0x" + raw.hex()})
    assert status == 400
    assert body["code"] == TxCode.MALFORMED
    assert "malformed" in body["error"]


async def test_submit_unknown_tx_type(running: Running) -> None:
    key = running.node.key
    tx = Tx(running.node.ledger.chain_id, "mint", key.public, 0, b"").sign_ed25519(key)
    status, body = await running.post("/v1/tx", json={"tx": tx.encode().hex()})
    assert status == 400
    assert body["code"] == TxCode.UNKNOWN_TYPE


async def test_submit_rejected_by_the_ledger(running: Running) -> None:
    node = running.node
    reading = OracleReading(1, "x")
    cases: list[tuple[Tx, TxCode]] = [
        (vote_tx(node, node.key, 0, reading, chain_id="other-chain"), TxCode.WRONG_CHAIN),
        (vote_tx(node, NodeKey.generate(), 0, reading), TxCode.NOT_VALIDATOR),
    ]
    forged = vote_tx(node, node.key, 0, reading)
    cases.append((replace(forged, signature=b"\x00" * 64), TxCode.BAD_SIGNATURE))
    for tx, code in cases:
        status, body = await running.post("/v1/tx", json={"tx": "0x" + tx.encode().hex()})
        assert (status, body["code"]) == (400, code), body
        assert body["hash"] == tx.hash().hex()
        assert body["error"]
    _, status_body = await running.get("/v1/status")
    assert status_body["mempool"] == 0


async def test_submit_vote_resolves_and_replay_is_rejected(running: Running) -> None:
    node = running.node
    key = NodeKey.load(running.home / KEY_FILE)
    assert key.public == node.key.public
    reading = OracleReading(7, "forty-two")
    tx = vote_tx(node, key, 0, reading)
    payload = {"tx": "0x" + tx.encode().hex()}

    assert await running.post("/v1/tx", json=payload) == (200, {"hash": tx.hash().hex(), "code": 0})

    account = "/v1/accounts/0x" + key.public.hex()

    async def included() -> bool:
        _, body = await running.get(account)
        return bool(body["nonce"] == 1)

    await wait_for("the vote to be included", included)

    status, body = await running.post("/v1/tx", json=payload)
    assert status == 400
    assert body["code"] == TxCode.BAD_NONCE
    assert body["hash"] == tx.hash().hex()
    assert "nonce" in body["error"]

    # One validator holds all the power: its vote confirms the resolution.
    rid = event_id(ORACLE_VALUE, reading.encode()).hex()

    async def confirmed() -> bool:
        _, body = await running.get("/v1/resolutions?status=confirmed")
        return any(r["id"] == rid for r in body["resolutions"])

    await wait_for("the resolution to be confirmed", confirmed)
    _, body = await running.get(f"/v1/resolutions?status=confirmed&type={ORACLE_VALUE}")
    (item,) = body["resolutions"]
    assert item["status"] == "confirmed"
    assert not item["error"]
    assert bytes.fromhex(item["body"]) == reading.encode()
    assert await running.get("/v1/resolutions?status=pending") == (200, {"resolutions": []})
    assert await running.get("/v1/resolutions?status=failed") == (200, {"resolutions": []})
    assert await running.get("/v1/kv/oracle_value") == (
        200,
        {"entries": [{"key": "latest", "value": "7"}, {"key": "round:7", "value": "forty-two"}]},
    )
    assert await running.get("/v1/kv/oracle_value?limit=1") == (
        200,
        {"entries": [{"key": "latest", "value": "7"}]},
    )

    families = await metric_families(running)
    ok = [s for s in families["bridge_ledger_txs"].samples if s.name.endswith("_total")]
    assert any(s.labels == {"code": "OK"} and s.value >= 1 for s in ok)
    resolved = [s for s in families["bridge_resolutions"].samples if s.name.endswith("_total")]
    assert any(s.labels.get("type") == ORACLE_VALUE and s.value == 1 for s in resolved)
    assert (await running.get("/v1/status"))[1]["events"] == {}


async def test_restarting_listener(tmp_path: Path) -> None:
    """With restart_policy "always" a listener that fails at run time is restarted: the node
    is not ready meanwhile, the restarts are counted, and the node still stops cleanly. (A
    broken table no longer serves here: misconfiguration is always fatal, see below.)"""

    @register_listener("crashing")
    async def crashing(service: Service, store: EventStore) -> None:
        raise RuntimeError("the source went away")

    policy = 'restart_policy = "always"\nrestart_max_delay = 0.05'
    async with start_node(tmp_path / "home", "", {'restart_policy = "never"': policy}) as running:

        async def restarted() -> bool:
            _, body = await running.get("/v1/status")
            return bool(body["listeners"]["crashing"]["restarts"] >= 2)

        await wait_for("the listener to be restarted", restarted)

        async def counted() -> bool:
            families = await metric_families(running)
            samples = [s for s in families["bridge_listener_restarts"].samples if s.name.endswith("_total")]
            return any(s.labels == {"listener": "crashing"} and s.value >= 2 for s in samples)

        await wait_for("the restarts metric", counted)

        async def not_ready() -> bool:
            async with running.http.get(running.url + "/ready") as r:
                body = await r.json()
                return r.status == 503 and body == {
                    "ready": False,
                    "problems": ["listener_restarting:crashing"],
                }

        await wait_for("/ready to report the restarting listener", not_ready)


def test_misconfigured_listener_stops_the_node_even_with_restart_always(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A present but wrong table is misconfiguration: `bridge start` exits 1 at once, with
    one line naming the key and no traceback, though the policy is "always" (no loop)."""
    home = tmp_path / "home"
    assert cli_main(["init", "--home", str(home), "--api-port", "0"]) == 0
    config = home / "config.toml"
    policy = 'restart_policy = "always"\nrestart_max_delay = 0.05'
    text = config.read_text().replace('restart_policy = "never"', policy)
    config.write_text(text + '\n[app.extensions.http_oracle]\nurl = "ftp://x"\n')
    with caplog.at_level(logging.INFO):
        assert cli_main(["start", "--home", str(home)]) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "stopping: listener http_oracle is misconfigured: app.extensions.http_oracle.url: "
        "Value error, must be an http(s) URL, got 'ftp://x'"
    ]
    assert errors[0].exc_info is None
    assert not [r for r in caplog.records if "restart" in r.getMessage()]


def test_every_tx_code_has_one_http_status() -> None:
    """The table POST /v1/tx answers from is complete: a new TxCode must be given a status."""
    assert set(TX_HTTP_STATUS) == set(TxCode)
    retry_later = {TxCode.MEMPOOL_FULL, TxCode.BLOCK_FULL, TxCode.INTERNAL}
    assert {c for c, s in TX_HTTP_STATUS.items() if s == 503} == retry_later
    assert {c for c, s in TX_HTTP_STATUS.items() if s < 300} == {TxCode.OK, TxCode.DUPLICATE}
    assert TX_HTTP_STATUS[TxCode.TOO_MANY_PENDING] == 429
    assert TX_HTTP_STATUS[TxCode.TOO_LARGE] == 413
    mistakes = set(TxCode) - retry_later - {TxCode.OK, TxCode.DUPLICATE, TxCode.TOO_MANY_PENDING}
    assert {TX_HTTP_STATUS[c] for c in mistakes - {TxCode.TOO_LARGE}} == {400}


@pytest.mark.parametrize("code", list(TxCode))
async def test_submit_answers_each_code_with_its_status(
    running: Running, monkeypatch: pytest.MonkeyPatch, code: TxCode
) -> None:
    """Whatever the engine answers, POST /v1/tx takes the status from the one table."""

    async def submit(raw: bytes) -> TxResult:
        return TxResult(code, "" if code == TxCode.OK else f"because {code.name}")

    monkeypatch.setattr(running.node.engine, "submit", submit)
    tx = vote_tx(running.node, running.node.key, 0, OracleReading(1, "x"))
    async with running.http.post(running.url + "/v1/tx", json={"tx": "0x" + tx.encode().hex()}) as r:
        status, body = r.status, await r.json()
        retry_after = r.headers.get("Retry-After")
    assert status == TX_HTTP_STATUS[code]
    assert (body["hash"], body["code"]) == (tx.hash().hex(), code)
    assert retry_after == ("1" if status in (429, 503) else None)
    if status >= 400:
        assert body["error"] == f"because {code.name}"
    elif code == TxCode.OK:
        assert body == {"hash": tx.hash().hex(), "code": 0}
    else:  # a duplicate: accepted already, and said so
        assert body["info"] == f"because {code.name}"


async def test_full_mempool_is_503(running: Running) -> None:
    """A full mempool is no fault of the client: 503, send it again later."""
    node = running.node
    node.engine.mempool.max_txs = 0  # type: ignore[attr-defined]  # the solo engine's mempool
    tx = vote_tx(node, node.key, await node.ledger.nonce(node.key.public), OracleReading(1, "x"))
    async with running.http.post(running.url + "/v1/tx", json={"tx": "0x" + tx.encode().hex()}) as r:
        assert (r.status, r.headers.get("Retry-After")) == (503, "1")
        body = await r.json()
    assert (body["code"], body["hash"]) == (TxCode.MEMPOOL_FULL, tx.hash().hex())
    assert "mempool is full" in body["error"]


async def test_submit_too_large(running: Running) -> None:
    data = b'{"tx": "' + b"0" * (2 * MAX_TX_BYTES + 1000) + b'"}'
    async with running.http.post(running.url + "/v1/tx", data=io.BytesIO(data)) as r:
        await assert_json_error(r, 413)


# -- routing -- #


@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/accounts", "/v1/kv/"])
async def test_unknown_path(running: Running, path: str) -> None:
    async with running.http.get(running.url + path) as r:
        await assert_json_error(r, 404)


async def test_wrong_method(running: Running) -> None:
    async with running.http.get(running.url + "/v1/tx") as r:
        await assert_json_error(r, 405)
    async with running.http.post(running.url + "/v1/status", json={}) as r:
        await assert_json_error(r, 405)
