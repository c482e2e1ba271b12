"""A devnet's homes from its setup steps' report (`write_from_setup`): with an escrow deployed
for the devnet's signers, withdrawals are on in the genesis, every node checks solvency and
node0 relays; a report made for another number of validators is refused. (The running
devnet is tested by tests/network/test_readme_devnet.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from bridge.config import load_config
from bridge.devnet.homes import (
    POWER,
    RELAYER_FILE,
    RELAYER_KEY,
    devnet_signer_key,
    devnet_signers,
    write_from_setup,
)
from bridge.errors import BridgeError
from bridge.withdrawals.signer import SIGNER_FILE

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
RPC = "http://anvil:8545"


def report(validators: int) -> dict[str, Any]:
    """What `run_setups` returns after the escrow's step, as JSON (the compose network's file)."""
    table = {"rpc_url": RPC, "contract_address": ESCROW}
    setup = {
        "extensions": {"eth_deposits": table, "eth_claims": table},
        "rpc_url": RPC,
        "signers": [list(s) for s in devnet_signers(validators)],
        "escrow": {"chain_id": 31337, "address": ESCROW},
    }
    loaded: dict[str, Any] = json.loads(json.dumps(setup))
    return loaded


def test_an_escrow_turns_withdrawals_on_in_every_home(tmp_path: Path) -> None:
    homes = write_from_setup(tmp_path, 3, report(3), observers=1)
    genesis = json.loads((homes[0] / "genesis.json").read_text())
    assert genesis["escrow"] == {"chain_id": 31337, "address": ESCROW.lower()}
    # The genesis' signers are the escrow's first set: same addresses, same powers.
    registered = sorted((Account.from_key(devnet_signer_key(i)).address.lower(), POWER) for i in range(3))
    assert sorted((v["eth_signer"], v["power"]) for v in genesis["validators"]) == registered
    assert [(a.lower(), p) for a, p in devnet_signers(3)] == registered
    watch = {"rpc_url": RPC, "chain_id": 31337, "escrow": ESCROW}
    for i, home in enumerate(homes):  # the observer (node3) too
        assert (home / SIGNER_FILE).read_text().strip() == "0x" + devnet_signer_key(i).hex()
        tables = load_config(home).app.extensions
        assert tables["solvency"] == watch
        assert tables["eth_claims"]["contract_address"] == ESCROW
        assert ("relayer" in tables) is (i == 0)
    relayer = load_config(homes[0]).app.extensions["relayer"]
    key_file = Path(relayer["private_key_file"])
    assert key_file == (tmp_path / "node0" / RELAYER_FILE).resolve()
    assert key_file.read_text().strip() == RELAYER_KEY and key_file.stat().st_mode & 0o777 == 0o600


def test_a_report_made_for_other_validators_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="not deployed for 4 devnet validators"):
        write_from_setup(tmp_path, 4, report(3))
    broken = report(1) | {"escrow": {"chain_id": 31337}}
    with pytest.raises(BridgeError, match="not {chain_id, address}"):
        write_from_setup(tmp_path, 1, broken)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_without_an_escrow_the_devnet_only_deposits(tmp_path: Path) -> None:
    (home,) = write_from_setup(tmp_path, 1, {"extensions": {"eth_deposits": {"rpc_url": RPC}}})
    assert "escrow" not in json.loads((home / "genesis.json").read_text())
    assert set(load_config(home).app.extensions) == {"eth_deposits"}
    assert not (home / RELAYER_FILE).exists()
