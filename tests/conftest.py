"""Shared fixtures: a real Mosquitto broker per test (see tests/harness/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path) -> Iterator[MosquittoBroker]:
    """A private mosquitto on a free loopback port, torn down after the test."""
    b = MosquittoBroker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()
