"""Passwords, tokens, the first admin and the login limit (controller.auth)."""

from __future__ import annotations

import pytest

from controller.auth import Auth, User, check_password, hash_password, role_allows
from controller.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'auth.db'}")
    yield s
    s.engine.dispose()


def test_password_hash_round_trip_and_salted():
    h = hash_password("rahasia", iterations=1000)
    assert check_password("rahasia", h) and not check_password("Rahasia", h)
    assert h != hash_password("rahasia", iterations=1000)
    assert not check_password("x", "garbage")


def test_first_admin_password_comes_from_the_environment(store, monkeypatch, capsys):
    monkeypatch.setenv("SIGAP_ADMIN_PASSWORD", "dari-env-123")
    auth = Auth(store)
    assert auth.generated_password is None
    assert "dari-env-123" not in capsys.readouterr().out
    assert auth.login("admin", "dari-env-123") is not None


def test_first_admin_password_is_generated_and_printed_once(store, monkeypatch, capsys):
    monkeypatch.delenv("SIGAP_ADMIN_PASSWORD", raising=False)
    auth = Auth(store)
    pw = auth.generated_password
    assert pw and pw in capsys.readouterr().out
    again = Auth(store)  # second start: the user exists, nothing printed
    assert again.generated_password is None and capsys.readouterr().out == ""
    token = again.login("admin", pw)
    assert token is not None
    assert auth.verify(token) == User("admin", "admin")  # same key in the database


def test_tokens_expire_and_cannot_be_forged(store, monkeypatch):
    monkeypatch.setenv("SIGAP_ADMIN_PASSWORD", "pw-123456")
    t = [1_000_000.0]
    auth = Auth(store, now=lambda: t[0])
    token = auth.token(User("admin", "admin"), ttl_s=60)
    payload, _, sig = token.partition(".")
    assert auth.verify(payload + "." + sig[::-1]) is None
    assert auth.verify(token) == User("admin", "admin")
    t[0] += 61
    assert auth.verify(token) is None


def test_failed_logins_are_limited_per_client(store, monkeypatch):
    monkeypatch.setenv("SIGAP_ADMIN_PASSWORD", "pw-123456")
    t = [0.0]
    auth = Auth(store, now=lambda: t[0])
    for _ in range(auth.max_failures):
        assert not auth.limited("10.0.0.9")
        assert auth.login("admin", "wrong", "10.0.0.9") is None
    assert auth.limited("10.0.0.9") and not auth.limited("10.0.0.10")
    t[0] += auth.window_s
    assert not auth.limited("10.0.0.9")


def test_roles_are_ordered():
    assert role_allows("admin", "operator") and role_allows("operator", "operator")
    assert not role_allows("viewer", "operator") and not role_allows("nobody", "viewer")


def test_a_revoked_token_is_refused_and_forgotten_after_its_expiry(store, monkeypatch):
    monkeypatch.setenv("SIGAP_ADMIN_PASSWORD", "pw-123456")
    now = [1_800_000_000.0]
    auth = Auth(store, now=lambda: now[0])
    first, second = auth.token(User("admin", "admin"), ttl_s=60), auth.token(User("admin", "admin"), ttl_s=600)
    assert auth.revoke(first)
    assert auth.verify(first) is None  # logged out, whoever holds a copy
    assert auth.verify(second) == User("admin", "admin")  # the user's other sessions go on
    assert Auth(store, now=lambda: now[0]).verify(first) is None  # kept across a restart
    assert not auth.revoke("forged.token")
    now[0] += 120  # past the first token's expiry: its row goes at the next revocation
    assert auth.revoke(second)
    with store.engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT exp FROM revoked_tokens")] == [1_800_000_600]
