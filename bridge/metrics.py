"""Prometheus metrics of one node (its own registry, so several nodes can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("bridge_ledger_height", "Last committed ledger height", registry=r)
        self.txs = Counter("bridge_ledger_txs", "Transactions executed, by result code", ["code"], registry=r)
        self.resolutions = Counter(
            "bridge_resolutions", "Resolutions processed, by type and outcome", ["type", "status"], registry=r
        )
        self.validator_power = Gauge("bridge_validator_power", "This node's voting power", registry=r)
        self.events = Gauge("bridge_events", "Events in the local store, by state", ["state"], registry=r)
        self.votes_sent = Counter("bridge_votes_sent", "Event votes sent in transactions", registry=r)
        self.listener_up = Gauge(
            "bridge_listener_running", "1 while a listener runs", ["listener"], registry=r
        )
        self.listener_restarts = Counter(
            "bridge_listener_restarts", "Listener restarts after a failure", ["listener"], registry=r
        )
