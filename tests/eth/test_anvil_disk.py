"""anvil, as the project starts it, keeps no chain history on disk.

By default anvil writes each state it evicts from memory (after about 500 blocks) to
disk and never removes it, about 300 KB per block: a few test or benchmark runs once
filled this machine's disk. Every place that starts anvil passes ``ANVIL_NO_DISK``.
"""

from __future__ import annotations

from tests.eth.conftest import Anvil


async def test_a_long_chain_writes_no_state_files(anvil: Anvil) -> None:
    await anvil.mine(1_000)
    assert await anvil.head() == 1_000
    written = [path for path in anvil.cache.rglob("*") if path.is_file()]
    assert written == []
