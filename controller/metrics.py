"""Prometheus metrics: one registry per controller instance (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """Counters and gauges the controller exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("sigap_mqtt_messages", "MQTT messages handled", ["kind"], registry=r)
        self.rejected = Counter("sigap_mqtt_rejected", "MQTT messages rejected, by reason", ["reason"], registry=r)
        self.duplicates = Counter("sigap_events_duplicate", "Redelivered events answered from memory", registry=r)
        self.tickets = Counter("sigap_tickets_issued", "Tickets issued", ["site", "service"], registry=r)
        self.refusals = Counter("sigap_tickets_refused", "Ticket requests refused", ["site", "reason"], registry=r)
        self.calls = Counter("sigap_calls", "Tickets called at counters", ["site"], registry=r)
        self.publish_failures = Counter("sigap_publish_failures", "Publishes lost while the broker was down", registry=r)
        self.readings = Counter("sigap_readings", "Water readings received (valid or not)", registry=r)
        self.readings_rejected = Counter(
            "sigap_readings_rejected", "Water readings rejected or held back as suspect, by reason", ["reason"], registry=r
        )
        self.alert_changes = Counter("sigap_alert_changes", "Alert changes, by action and kind", ["action", "kind"],
                                     registry=r)
        self.devices_online = Gauge("sigap_devices_online", "Boards online now", registry=r)
        self.broker_connected = Gauge("sigap_broker_connected", "1 when the broker link is up", registry=r)

    def reject(self, reason: str) -> None:
        """Count one rejected message."""
        self.rejected.labels(reason=reason).inc()

    def render(self) -> bytes:
        """Prometheus text format."""
        return generate_latest(self.registry)
