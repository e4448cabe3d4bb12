"""Users, passwords and API tokens (CONTRACT §4), kept small.

* Passwords: PBKDF2-HMAC-SHA256 (hashlib), 240,000 iterations, a random salt per user.
* The first start with no users creates ``admin`` with the password from
  ``SIGAP_ADMIN_PASSWORD``, or a generated one that is printed once; no fixed
  default password exists.
* API tokens: ``<payload>.<signature>`` in base64url, the payload JSON
  ``{"sub", "role", "exp", "jti"}``, signed with HMAC-SHA256 under a secret generated
  once and kept in the database (so tokens survive a restart).
* Web sessions (``POST /api/login``): the same signed token, kept in an HttpOnly
  cookie; state-changing requests carrying it also need ``csrf_token(session)``
  (an HMAC of the session under the same secret) in a header. Logout revokes
  the token (its ``jti`` is kept in the database until its expiry), so a copy
  of the cookie stops working too.
* Roles: ``viewer`` < ``operator`` < ``admin``; a role may do what lower ones may.
* Failed logins are limited per client (``max_failures`` per ``window_s``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("sigap.auth")

ROLES = ("viewer", "operator", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
ITERATIONS = 240_000
TOKEN_TTL_S = 12 * 3600
ADMIN = "admin"
ADMIN_PASSWORD_ENV = "SIGAP_ADMIN_PASSWORD"


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    """A storable PBKDF2 hash of a password."""
    salt = secrets.token_bytes(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${dk.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when the password matches a hash from hash_password (constant-time compare)."""
    try:
        scheme, iterations, salt, want = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        dk = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(dk.hex(), want)


def role_allows(role: str, needed: str) -> bool:
    """Whether a user of `role` may do what `needed` may."""
    return _RANK.get(role, -1) >= _RANK[needed]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass(frozen=True)
class User:
    """Who a request acts as."""

    name: str
    role: str


class Auth:
    """Logins and tokens for one installation, backed by the Store."""

    max_failures = 10
    window_s = 60.0

    def __init__(self, store: Any, now: Callable[[], float] = time.time):
        self.store = store
        self.now = now
        self._key = bytes.fromhex(store.secret("token_key", lambda: secrets.token_hex(32)))
        self._failures: dict[str, list[float]] = {}
        self.generated_password: str | None = None
        """The admin password generated on this start (first start only, no env var)."""
        if store.count_users() == 0:
            password = os.environ.get(ADMIN_PASSWORD_ENV)
            if not password:
                password = self.generated_password = secrets.token_urlsafe(12)
                print(f"Sigap: created user {ADMIN!r} with password {password!r} (shown only this once)", flush=True)
            else:
                log.info("created user %r with the password from %s", ADMIN, ADMIN_PASSWORD_ENV)
            self.add_user(ADMIN, password, "admin")

    def add_user(self, name: str, password: str, role: str) -> None:
        """Create or replace a user."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.store.save_user(name, hash_password(password), role, datetime.now(UTC))

    # -- logging in -------------------------------------------------------------------------
    def limited(self, client: str) -> bool:
        """True when this client failed too often recently."""
        t = self.now()
        recent = [x for x in self._failures.get(client, []) if t - x < self.window_s]
        self._failures[client] = recent
        return len(recent) >= self.max_failures

    def retry_after_s(self, client: str) -> int:
        """Whole seconds until a limited client may try again (the oldest counted failure expires)."""
        recent = self._failures.get(client) or [self.now()]
        return max(1, math.ceil(self.window_s - (self.now() - min(recent))))

    def login(self, name: str, password: str, client: str = "") -> str | None:
        """A bearer token for good credentials, else None (the failure counts against the client)."""
        row = self.store.user(name)
        if row is None or not check_password(password, row["pw_hash"]):
            self._failures.setdefault(client, []).append(self.now())
            return None
        return self.token(User(name, row["role"]))

    def token(self, user: User, ttl_s: int = TOKEN_TTL_S) -> str:
        """A signed token for a user."""
        # `jti`: two logins of one user in the same second still get different tokens (and CSRF values).
        claims = {"sub": user.name, "role": user.role, "exp": int(self.now()) + ttl_s, "jti": secrets.token_urlsafe(9)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{sig}"

    def csrf_token(self, session: str) -> str:
        """The anti-CSRF value belonging to one session token (derived, so nothing is stored)."""
        return _b64(hmac.new(self._key, b"csrf\x00" + session.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: str, value: str) -> bool:
        """True when `value` is the anti-CSRF value of this session (constant-time compare)."""
        return hmac.compare_digest(self.csrf_token(session).encode(), value.encode())

    def revoke(self, token: str) -> bool:
        """End a valid token before its expiry (web logout): verify() refuses it from now on,
        whoever holds a copy. False when the token was not valid anyway."""
        if self.verify(token) is None:
            return False
        data = json.loads(_unb64(token.partition(".")[0]))
        jti = data.get("jti")
        if not isinstance(jti, str):
            return False
        self.store.revoke_token(jti, int(data["exp"]), int(self.now()))
        return True

    def verify(self, token: str) -> User | None:
        """The user of a valid, unexpired token, else None."""
        payload, _, sig = token.partition(".")
        want = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig, want):
            return None
        try:
            data = json.loads(_unb64(payload))
            name, role, exp = data["sub"], data["role"], data["exp"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(exp, int) or exp < self.now() or role not in ROLES:
            return None
        jti = data.get("jti")
        if isinstance(jti, str) and self.store.token_revoked(jti):
            return None  # logged out
        # A deleted user's tokens stop working; a changed role applies at once.
        row = self.store.user(name)
        if row is None:
            return None
        return User(name, row["role"])
