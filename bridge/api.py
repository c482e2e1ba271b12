"""The node's HTTP API (aiohttp). Every error is JSON: ``{"error": "..."}`` with a 4xx code
for bad input; ``POST /v1/tx`` answers each transaction result code with the status that
``bridge.errors.TX_HTTP_STATUS`` gives it (503: send it again later)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge import explorer
from bridge.encoding import Reader
from bridge.engines.cometbft import CometEngine
from bridge.errors import TX_HTTP_STATUS, TxCode, TxError
from bridge.keys import parse_account
from bridge.ledger import governance
from bridge.queries import add_query_routes, extension_problems
from bridge.supervisor import ListenerState
from bridge.txs import MAX_TX_BYTES, Tx
from bridge.withdrawals import onchain

if TYPE_CHECKING:
    from bridge.node import Node

log = logging.getLogger("bridge.api")
NODE: web.AppKey[Node] = web.AppKey("node")
STATUSES = ("pending", "confirmed", "failed")
MAX_JSON_BRACKETS = 32
# Deadlines against slow and idle clients, each of which would otherwise hold a connection
# (and its memory) open for as long as it likes. See create_runner.
# Idle keep-alive connection, and also receiving a request's headers. Above the 15 s after
# which aiohttp's client drops idle connections itself, so it rarely reuses one we are closing.
IDLE_TIMEOUT = 20.0
BODY_TIMEOUT = 30.0  # receiving a request's body (up to 2 MB: 70 kB/s at least)
LINGER_TIME = 2.0  # draining a body left unread after the answer, before closing
BODY_DEADLINE: web.AppKey[float] = web.AppKey("body_deadline", float)
routes = web.RouteTableDef()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(
            exc.status, exc.text if exc.text and exc.content_type == "application/json" else exc.reason
        )
    except Exception as exc:  # a bug, not the client's fault: log it, answer JSON anyway
        log.exception("error serving %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message, content_type="application/json")


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"query parameter {name!r} must be an integer") from None
    if not lo <= value <= hi:
        raise _bad(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def _text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + b.hex()


async def readiness(node: Node) -> list[str]:
    """Reasons the node is not ready; empty when it is."""
    problems = []
    if not node.engine.caught_up:
        problems.append("catching_up")
    for name, status in sorted(node.listener_status.items()):
        problems += [f"{problem}:{name}" for problem in sorted(status.problems)]
    problems += [
        f"listener_{state}:{name}"
        for name, state in node.supervisor.states.items()
        if state in (ListenerState.FAILED, ListenerState.RESTARTING)
    ]
    # What extensions check (resolutions.register_readiness), e.g. unbacked credits.
    problems += await extension_problems(node)
    return problems


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    problems = await readiness(request.app[NODE])
    return web.json_response({"ready": not problems, "problems": problems}, status=503 if problems else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[NODE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    ledger = node.ledger
    return web.json_response(
        {
            "chain_id": ledger.chain_id,
            "height": ledger.height,
            "app_hash": ledger.app_hash.hex(),
            "node_id": node.key.public.hex(),
            "validator": node.is_validator,
            "power": ledger.validators.get(node.key.public, 0),
            "caught_up": node.engine.caught_up,
            "engine": node.settings.node.engine,
            "listeners": {
                name: {
                    "state": state,
                    # A listener without its [app.extensions.NAME] table does not run here.
                    "configured": name in node.settings.app.extensions,
                    "restarts": node.supervisor.restarts[name],
                    "problems": sorted(node.listener_status[name].problems),
                    "counters": dict(sorted(node.listener_status[name].counters.items())),
                    **node.listener_status[name].info,
                }
                for name, state in node.supervisor.states.items()
            },
            "events": await node.store.counts(),
            "mempool": node.engine.mempool_size,
            # What users' transactions are signed under (bridge.txs.user_domain).
            "escrow": None
            if ledger.escrow is None
            else {"chain_id": ledger.escrow.chain_id, "address": "0x" + ledger.escrow.escrow.hex()},
        }
    )


@routes.get("/v1/network")
async def network(request: web.Request) -> web.Response:
    """What ``bridge init --join`` needs to make a node that joins this network."""
    from bridge.devnet import network_info

    node = request.app[NODE]
    comet = node.home / node.settings.cometbft.home if node.settings.node.engine == "cometbft" else None
    info = network_info(node.genesis, comet)
    if "state_sync" in request.query and isinstance(node.engine, CometEngine) and info["cometbft"]:
        # Where a state-syncing node's light client starts: this node's latest block.
        info["cometbft"]["state_sync"] = await node.engine.trust_point()
    return web.json_response(info)


@routes.get("/v1/accounts/{address}")
async def account(request: web.Request) -> web.Response:
    try:
        address = parse_account(request.match_info["address"])
    except ValueError as exc:
        raise _bad(str(exc)) from None
    ledger = request.app[NODE].ledger
    return web.json_response(
        {
            "address": address,
            "balance": str(await ledger.balance(address)),
            "nonce": await ledger.nonce(bytes.fromhex(address[2:])),
        }
    )


@routes.get("/v1/resolutions")
async def resolutions(request: web.Request) -> web.Response:
    status_ = request.query.get("status")
    if status_ is not None and status_ not in STATUSES:
        raise _bad(f"query parameter 'status' must be one of {', '.join(STATUSES)}")
    limit = _int_param(request, "limit", 100, 1, 1000)
    items = await request.app[NODE].ledger.list_resolutions(status_, request.query.get("type"), limit)
    return web.json_response({"resolutions": items})


@routes.get("/v1/validators")
async def validators(request: web.Request) -> web.Response:
    ledger = request.app[NODE].ledger
    requests = []
    for kind in (governance.JOIN, governance.REMOVE):
        for item in await ledger.list_resolutions("pending", kind, 1000):
            body = Reader(bytes.fromhex(str(item["body"])))
            key, value = body.blob(32).hex(), body.u64()
            requests.append({**item, "pubkey": key, **({"power": value} if kind == governance.JOIN else {})})
    return web.json_response(
        {
            "validators": [{"pubkey": k.hex(), "power": p} for k, p in sorted(ledger.validators.items())],
            "requests": requests,
        }
    )


@routes.get("/v1/kv/{namespace}")
async def kv(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 100, 1, 1000)
    items = await request.app[NODE].ledger.kv_items(request.match_info["namespace"], limit)
    return web.json_response({"entries": [{"key": _text(k), "value": _text(v)} for k, v in items]})


@routes.get("/v1/accounts/{address}/withdrawals")
async def account_withdrawals(request: web.Request) -> web.Response:
    """The ids of an account's withdrawals, oldest first (up to ``limit``)."""
    try:
        address = parse_account(request.match_info["address"])
    except ValueError as exc:
        raise _bad(str(exc)) from None
    limit = _int_param(request, "limit", 100, 1, 1000)
    return web.json_response(
        {"withdrawals": await request.app[NODE].ledger.account_withdrawals(address, limit)}
    )


@routes.get("/v1/withdrawals/{id}")
async def withdrawal(request: web.Request) -> web.Response:
    """Where a withdrawal is: debited, in its batch, signed (with the proof and signatures a
    claim needs), paid."""
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 20:
        raise _bad("id: a withdrawal id is a non-negative integer")
    ledger = request.app[NODE].ledger
    state = ledger.committed_withdrawals()
    found = await state.status(int(text))
    if found is None:
        return _error(404, f"no withdrawal {text}")
    return web.json_response(found)


@routes.get("/v1/withdrawals/{id}/claim")
async def withdrawal_claim(request: web.Request) -> web.Response:
    """The calldata a wallet sends to the escrow to claim a signed withdrawal itself."""
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 20:
        raise _bad("id: a withdrawal id is a non-negative integer")
    ledger = request.app[NODE].ledger
    found = await ledger.committed_withdrawals().status(int(text))
    if found is None:
        return _error(404, f"no withdrawal {text}")
    if found["status"] != "signed" or ledger.escrow is None:
        return _error(409, f"withdrawal {text} is {found['status']}: only a signed one can be claimed")
    escrow = "0x" + ledger.escrow.escrow.hex()
    return web.json_response(
        {"chain_id": ledger.escrow.chain_id, "escrow": escrow, **onchain.claim_calls(escrow, found)}
    )


@routes.get("/v1/txs/{hash}")
async def tx_result(request: web.Request) -> web.Response:
    """A transaction's result, once it is in a block (404 before, or once it is old: this
    node keeps the latest ones)."""
    text = request.match_info["hash"].removeprefix("0x")
    try:
        tx_hash = bytes.fromhex(text)
    except ValueError:
        tx_hash = b""
    if len(tx_hash) != 32:
        raise _bad("hash: a transaction hash is 32 bytes of hex")
    found = request.app[NODE].tx_results.get(tx_hash)
    if found is None:
        return _error(404, "not in a block this node has seen lately")
    height, result = found
    return web.json_response(
        {"hash": tx_hash.hex(), "height": height, "code": int(result.code), "log": result.log}
    )


@routes.get("/v1/batches")
async def batches(request: web.Request) -> web.Response:
    """Withdrawal batches from ``from`` on (up to ``limit``), oldest first, with what
    ``submitBatch`` takes once signed: what a relayer reads."""
    first = _int_param(request, "from", 0, 0, 2**63)
    limit = _int_param(request, "limit", 100, 1, 1000)
    ledger = request.app[NODE].ledger
    state = ledger.committed_withdrawals()
    found = []
    for batch_id in range(first, min(first + limit, await state.next_batch())):
        status = await state.batch_status(batch_id)
        if status is not None:
            found.append(status)
    return web.json_response({"batches": found, "next": await state.next_batch()})


@routes.get("/v1/liabilities")
async def liabilities(request: web.Request) -> web.Response:
    """What the ledger owes, at one height: every balance, the genesis' share of them (not
    backed by deposits), and the withdrawal batches from ``from`` on (debited, paid by the
    escrow only once posted). The solvency check compares it with the escrow."""
    first = _int_param(request, "from", 0, 0, 2**63)
    node = request.app[NODE]
    ledger = node.ledger
    while True:  # reads that straddle a commit are done again
        height = ledger.height
        balances = await ledger.total_balances()
        state = ledger.committed_withdrawals()
        batches = []
        for batch_id in range(first, await state.next_batch()):
            batch = await state.batch(batch_id)
            if batch is not None:
                batches.append({"batch": batch_id, "total": str(sum(e.amount for e in batch.entries))})
        if ledger.height == height:
            break
    return web.json_response(
        {
            "height": height,
            "balances": str(balances),
            "genesis_balances": str(sum(b for _, b in node.genesis.accounts)),
            "batches": batches,
        }
    )


@routes.get("/v1/valsets/{nonce}")
async def valset(request: web.Request) -> web.Response:
    """A validator set of the escrow (``latest``: the newest), with the previous set's
    signatures of it: what ``updateValidatorSet`` takes."""
    ledger = request.app[NODE].ledger
    state = ledger.committed_withdrawals()
    text = request.match_info["nonce"]
    if text == "latest":
        newest = await state.valset()
        nonce = -1 if newest is None else newest.nonce
    elif text.isdigit() and len(text) <= 20:
        nonce = int(text)
    else:
        raise _bad("nonce: a validator-set nonce is a non-negative integer, or latest")
    found = None if nonce < 0 else await state.valset_status(nonce)
    if found is None:
        return _error(404, f"no validator set {text}")
    return web.json_response(found)


@routes.post("/v1/tx")
async def submit(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > 2 * MAX_TX_BYTES + 64:
        raise web.HTTPRequestEntityTooLarge(
            max_size=2 * MAX_TX_BYTES + 64, actual_size=request.content_length
        )
    try:
        async with asyncio.timeout(request.app[BODY_DEADLINE]):
            data = await request.read()
    except TimeoutError:
        response = _error(408, "the request body did not arrive in time")
        response.force_close()  # no keep-alive for a client this slow
        return response
    # A transaction body holds one "{": many more brackets is no transaction. Checked before
    # the recursive json.loads: py_ecc (imported by eth_account) raises the recursion limit to
    # 100,000, so a deeply nested body would overflow the C stack (a segfault of the node)
    # instead of raising RecursionError.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_BRACKETS:
        raise _bad('body must be JSON: {"tx": "0x<hex>"} (too many nested brackets)')
    try:
        body: Any = json.loads(data)
    # ValueError beyond JSONDecodeError: a number of more than 4300 digits exceeds Python's
    # int-string conversion limit.
    except (ValueError, RecursionError):
        raise _bad('body must be JSON: {"tx": "0x<hex>"}') from None
    if not isinstance(body, dict) or not isinstance(body.get("tx"), str):
        raise _bad("field 'tx' is required: the hex-encoded signed transaction")
    try:
        raw = bytes.fromhex(body["tx"].removeprefix("0x"))
    except ValueError:
        raise _bad("field 'tx' is not valid hex") from None
    try:
        tx_hash = Tx.decode(raw).hash().hex()
    except TxError as exc:
        return _tx_answer(exc.code, str(exc))
    result = await request.app[NODE].engine.submit(raw)
    return _tx_answer(result.code, result.log, tx_hash)


def _tx_answer(code: TxCode, message: str, tx_hash: str | None = None) -> web.Response:
    """A transaction's result, with the HTTP status of its code. An error carries the message
    as ``error``; a success that is no plain OK (a duplicate) carries it as ``info``."""
    status = TX_HTTP_STATUS[code]
    body: dict[str, Any] = {} if tx_hash is None else {"hash": tx_hash}
    body["code"] = int(code)
    if status >= 400:
        body["error"] = message
    elif code != TxCode.OK:
        body["info"] = message
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return web.json_response(body, status=status, headers=headers)


def create_app(node: Node, body_timeout: float = BODY_TIMEOUT) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=2 * MAX_TX_BYTES + 1024)
    app[NODE] = node
    app[BODY_DEADLINE] = body_timeout
    app.add_routes(routes)
    explorer.add_routes(app, lambda request: request.app[NODE], readiness)
    add_query_routes(app, lambda request: request.app[NODE])  # resolutions.register_query
    return app


def create_runner(
    node: Node,
    idle_timeout: float = IDLE_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    linger_time: float = LINGER_TIME,
) -> web.AppRunner:
    """The API's runner, with the deadlines above. aiohttp starts its keep-alive timer when a
    connection opens and after each answer, and closes the connection if no complete request
    head has arrived by then; bytes received do not reset it. So ``idle_timeout`` is also the
    deadline for a request's headers (tests/test_http_hardening.py holds aiohttp to that)."""
    return web.AppRunner(
        create_app(node, body_timeout),
        access_log=None,
        keepalive_timeout=idle_timeout,
        lingering_time=linger_time,
    )
