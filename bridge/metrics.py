"""Prometheus metrics of one node (its own registry, so several nodes can share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from listeners import ListenerStatus


class ListenerCollector(Collector):
    """Listener state, read when scraped: running, restarts, and each listener's own counters."""

    def __init__(
        self,
        states: Callable[[], Mapping[str, str]],
        restarts: Callable[[], Mapping[str, int]],
        statuses: Mapping[str, ListenerStatus],
    ) -> None:
        self._states, self._restarts, self._statuses = states, restarts, statuses

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("bridge_listener_running", "1 while a listener runs", labels=["listener"])
        restarts = CounterMetricFamily(
            "bridge_listener_restarts", "Listener restarts after a failure", labels=["listener"]
        )
        events = CounterMetricFamily(
            "bridge_listener_events",
            "Counters a listener keeps (RPC errors, deposits seen...)",
            labels=["listener", "event"],
        )
        values = GaugeMetricFamily(
            "bridge_listener_value",
            "A listener's numeric progress fields (safe block, escrow balance...)",
            labels=["listener", "field"],
        )
        for name, state in sorted(self._states().items()):
            running.add_metric([name], 1 if state == "running" else 0)
            restarts.add_metric([name], self._restarts().get(name, 0))
        for name, status in sorted(self._statuses.items()):
            for event, n in sorted(status.counters.items()):
                events.add_metric([name, event], n)
            for field, value in sorted(status.info.items()):
                if isinstance(value, int) and not isinstance(value, bool):
                    values.add_metric([name, field], value)
        yield from (running, restarts, events, values)


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
