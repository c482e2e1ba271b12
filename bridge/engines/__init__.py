"""Consensus engines: what turns transactions into an ordered chain of blocks."""
