"""Alert life cycle of CONTRACT §3 (open → acknowledged → resolved) on controller.domain.alerts."""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from controller.domain.alerts import (
    Alert,
    AlertBook,
    AlertEvent,
    InvalidTransition,
    UnknownAlert,
)

T0 = 1_763_880_000.0
SENSOR = "wl-lahar-01"


def opened(book: AlertBook, level: str = "waspada", kind: str = "level") -> Alert:
    alert, change = book.raise_or_update(kind, SENSOR, level, T0)
    assert change is not None and change.action == "open"
    return alert


def test_raise_opens_an_alert_with_a_change_record() -> None:
    book = AlertBook()
    alert, change = book.raise_or_update("level", SENSOR, "waspada", T0)
    assert (alert.id, alert.kind, alert.sensor, alert.level, alert.state) == (
        1,
        "level",
        SENSOR,
        "waspada",
        "open",
    )
    assert (alert.opened, alert.updated, alert.acked_by, alert.resolved_at) == (T0, T0, None, None)
    assert change is not None
    assert (change.action, change.by, change.at, change.previous) == ("open", "system", T0, None)
    assert change.alert == alert


def test_one_alert_per_episode_updated_not_duplicated() -> None:
    book = AlertBook()
    first = opened(book)
    alert, change = book.raise_or_update("level", SENSOR, "siaga", T0 + 60)
    assert alert.id == first.id and alert.level == "siaga" and alert.updated == T0 + 60
    assert change is not None and (change.action, change.previous) == ("update", "waspada")
    assert [a.id for a in book.open_alerts()] == [first.id]


def test_raising_the_same_level_again_changes_nothing() -> None:
    book = AlertBook()
    opened(book)
    alert, change = book.raise_or_update("level", SENSOR, "waspada", T0 + 30)
    assert change is None and alert.updated == T0


def test_kinds_and_sensors_have_separate_episodes() -> None:
    book = AlertBook()
    book.raise_or_update("level", SENSOR, "siaga", T0)
    book.raise_or_update("rate", SENSOR, "rising", T0)
    book.raise_or_update("level", "wl-lahar-02", "siaga", T0)
    assert [(a.id, a.kind, a.sensor) for a in book.open_alerts()] == [
        (1, "level", SENSOR),
        (2, "rate", SENSOR),
        (3, "level", "wl-lahar-02"),
    ]
    assert [a.id for a in book.open_alerts(sensor=SENSOR)] == [1, 2]


def test_ack_then_resolve_by_operators() -> None:
    book = AlertBook()
    alert = opened(book)
    ack = book.ack(alert.id, "operator1", "petugas BPBD dikirim", T0 + 120)
    assert (ack.action, ack.by, ack.previous) == ("ack", "operator1", "open")
    assert (ack.alert.state, ack.alert.acked_by, ack.alert.acked_at, ack.alert.note) == (
        "acknowledged",
        "operator1",
        T0 + 120,
        "petugas BPBD dikirim",
    )
    done = book.resolve(alert.id, "operator2", T0 + 600)
    assert (done.action, done.by, done.previous) == ("resolve", "operator2", "acknowledged")
    assert (done.alert.state, done.alert.resolved_by, done.alert.resolved_at) == (
        "resolved",
        "operator2",
        T0 + 600,
    )
    assert done.alert.note == "petugas BPBD dikirim"
    assert book.open_alerts() == []
    assert book.get(alert.id).state == "resolved"


def test_an_open_alert_can_be_resolved_directly_with_a_note() -> None:
    book = AlertBook()
    alert = opened(book)
    done = book.resolve(alert.id, "admin", T0 + 5, note="sensor dibersihkan")
    assert (done.previous, done.alert.state, done.alert.note) == (
        "open",
        "resolved",
        "sensor dibersihkan",
    )


def test_ack_of_a_resolved_alert_is_refused() -> None:
    book = AlertBook()
    alert = opened(book)
    book.resolve(alert.id, "operator1", T0 + 10)
    with pytest.raises(InvalidTransition, match="already resolved"):
        book.ack(alert.id, "operator2", None, T0 + 20)


def test_ack_twice_is_refused_naming_who_acked() -> None:
    book = AlertBook()
    alert = opened(book)
    book.ack(alert.id, "operator1", None, T0 + 10)
    with pytest.raises(InvalidTransition, match="already acknowledged .by operator1"):
        book.ack(alert.id, "operator2", None, T0 + 20)
    assert book.get(alert.id).acked_by == "operator1"


def test_resolve_twice_is_refused() -> None:
    book = AlertBook()
    alert = opened(book)
    book.clear("level", SENSOR, T0 + 10)
    with pytest.raises(InvalidTransition, match="already resolved .by system"):
        book.resolve(alert.id, "operator1", T0 + 20)


def test_unknown_alert_id_is_refused() -> None:
    book = AlertBook()
    with pytest.raises(UnknownAlert, match="no alert 42"):
        book.ack(42, "operator1", None, T0)
    with pytest.raises(UnknownAlert):
        book.resolve(42, "operator1", T0)
    with pytest.raises(LookupError):
        book.get(42)


def test_an_action_needs_a_user() -> None:
    book = AlertBook()
    alert = opened(book)
    with pytest.raises(ValueError):
        book.ack(alert.id, "", None, T0)
    with pytest.raises(ValueError):
        book.resolve(alert.id, "", T0)


def test_clear_resolves_as_system_and_the_next_raise_is_a_new_alert() -> None:
    book = AlertBook()
    alert = opened(book)
    change = book.clear("level", SENSOR, T0 + 900)
    assert change is not None
    assert (change.action, change.by, change.previous) == ("clear", "system", "open")
    assert (change.alert.state, change.alert.resolved_by) == ("resolved", "system")
    again, change2 = book.raise_or_update("level", SENSOR, "waspada", T0 + 1800)
    assert change2 is not None and change2.action == "open" and again.id == alert.id + 1


def test_clear_with_nothing_active_does_nothing() -> None:
    book = AlertBook()
    assert book.clear("offline", SENSOR, T0) is None


def test_escalation_of_an_acknowledged_alert_reopens_it() -> None:
    book = AlertBook()
    alert = opened(book, "siaga")
    book.ack(alert.id, "operator1", "dipantau", T0 + 60)
    up, change = book.raise_or_update("level", SENSOR, "awas", T0 + 120)
    assert change is not None and (change.action, change.previous) == ("escalate", "siaga")
    assert (up.id, up.state, up.level, up.acked_by, up.note) == (
        alert.id,
        "open",
        "awas",
        None,
        None,
    )
    # A fall in level keeps the acknowledgement.
    book.ack(alert.id, "operator1", None, T0 + 180)
    down, change = book.raise_or_update("level", SENSOR, "siaga", T0 + 240)
    assert change is not None and change.action == "update"
    assert (down.state, down.acked_by) == ("acknowledged", "operator1")


def test_a_manually_resolved_episode_starts_again_only_on_a_new_raise() -> None:
    book = AlertBook()
    alert = opened(book, "siaga")
    book.resolve(alert.id, "operator1", T0 + 60)
    assert book.clear("level", SENSOR, T0 + 120) is None
    new, change = book.raise_or_update("level", SENSOR, "awas", T0 + 180)
    assert change is not None and change.action == "open" and new.id != alert.id


def test_apply_carries_out_sensor_events() -> None:
    book = AlertBook()
    c1 = book.apply(AlertEvent("raise", "offline", SENSOR, "offline", T0))
    assert c1 is not None and (c1.action, c1.at) == ("open", T0)
    assert book.apply(AlertEvent("update", "offline", SENSOR, "offline", T0 + 1)) is None
    c2 = book.apply(AlertEvent("clear", "offline", SENSOR, None, T0 + 5), now=T0 + 6)
    assert c2 is not None and (c2.action, c2.at) == ("clear", T0 + 6)
    with pytest.raises(ValueError):
        book.apply(AlertEvent("raise", "offline", SENSOR, None, T0))


def test_returned_alerts_are_copies() -> None:
    book = AlertBook()
    alert = opened(book)
    alert.state = "resolved"
    assert book.get(alert.id).state == "open"


def test_change_records_are_json_ready() -> None:
    book = AlertBook()
    alert = opened(book)
    change = book.ack(alert.id, "operator1", "ok", T0 + 1)
    data = json.loads(json.dumps(change.to_dict()))
    assert data["action"] == "ack" and data["alert"]["acked_by"] == "operator1"
    assert set(data["alert"]) >= {"id", "kind", "sensor", "level", "state", "opened", "acked_by"}


def test_restore_continues_ids_and_episodes() -> None:
    stored = [
        Alert(id=7, kind="level", sensor=SENSOR, level="siaga", opened=T0, updated=T0),
        Alert(
            id=9,
            kind="offline",
            sensor=SENSOR,
            level="offline",
            state="resolved",
            opened=T0,
            updated=T0,
            resolved_at=T0,
            resolved_by="system",
        ),
    ]
    book = AlertBook()
    book.restore(stored)
    alert, change = book.raise_or_update("level", SENSOR, "awas", T0 + 10)
    assert alert.id == 7 and change is not None and change.action == "update"
    new, _ = book.raise_or_update("offline", SENSOR, "offline", T0 + 20)
    assert new.id == 10
    with pytest.raises(InvalidTransition):
        book.ack(9, "operator1", None, T0 + 30)
    with pytest.raises(ValueError, match="duplicate"):
        book.restore([stored[0], stored[0]])


def test_resolved_alerts_kept_in_memory_are_bounded() -> None:
    book = AlertBook(keep_resolved=2)
    ids = []
    for k in range(4):
        alert, _ = book.raise_or_update("rate", SENSOR, "rising", T0 + k)
        book.clear("rate", SENSOR, T0 + k)
        ids.append(alert.id)
    assert book.get(ids[-1]).state == "resolved"
    with pytest.raises(UnknownAlert):
        book.get(ids[0])


# -------------------------------------------------------------- properties

KINDS = st.sampled_from(["level", "rate", "offline"])
SENSORS = st.sampled_from(["wl-1", "wl-2"])
LEVELS = st.sampled_from(["waspada", "siaga", "awas"])


class AlertBookMachine(RuleBasedStateMachine):
    """Any mix of system and operator actions keeps one active alert per kind and sensor."""

    def __init__(self) -> None:
        super().__init__()
        self.book = AlertBook()
        self.t = T0
        self.seen: set[int] = set()

    def _tick(self) -> float:
        self.t += 1
        return self.t

    @rule(kind=KINDS, sensor=SENSORS, level=LEVELS)
    def raise_(self, kind: str, sensor: str, level: str) -> None:
        alert, change = self.book.raise_or_update(kind, sensor, level, self._tick())
        assert alert.active and alert.level == level
        if change is not None and change.action == "open":
            assert alert.id not in self.seen
        self.seen.add(alert.id)

    @rule(kind=KINDS, sensor=SENSORS)
    def clear(self, kind: str, sensor: str) -> None:
        change = self.book.clear(kind, sensor, self._tick())
        assert self.book.active(kind, sensor) is None
        assert change is None or change.alert.resolved_by == "system"

    @rule(data=st.data())
    def operator(self, data: st.DataObject) -> None:
        if not self.seen:
            return
        alert_id = data.draw(st.sampled_from(sorted(self.seen)))
        before = self.book.get(alert_id).state
        action = data.draw(st.sampled_from(["ack", "resolve"]))
        try:
            if action == "ack":
                change = self.book.ack(alert_id, "op", None, self._tick())
            else:
                change = self.book.resolve(alert_id, "op", self._tick())
        except InvalidTransition:
            assert (action, before) in {
                ("ack", "acknowledged"),
                ("ack", "resolved"),
                ("resolve", "resolved"),
            }
            assert self.book.get(alert_id).state == before
        else:
            assert change.previous == before

    @invariant()
    def one_active_alert_per_kind_and_sensor(self) -> None:
        keys = [(a.kind, a.sensor) for a in self.book.open_alerts()]
        assert len(keys) == len(set(keys))
        for kind, sensor in keys:
            active = self.book.active(kind, sensor)
            assert active is not None and active.active


AlertBookMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestAlertBookMachine = AlertBookMachine.TestCase
