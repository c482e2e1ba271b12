"""The replicated ledger (see ``app.py``)."""

from bridge.ledger.app import Ledger
from bridge.ledger.threshold import passes, required_power
from bridge.ledger.types import Block, BlockResult, Genesis, TxResult

__all__ = ["Block", "BlockResult", "Genesis", "Ledger", "TxResult", "passes", "required_power"]
