"""Outgoing webhooks: every alert change POSTed as JSON to each configured URL.

An alert change is written to the `webhook_outbox` table in the same
transaction as the change itself, so nothing is lost across a restart. A
background task delivers each entry in order per URL, retrying with
exponential back-off; a failing endpoint never slows ingest (which only
inserts a row). Each delivery carries `X-Sigap-Delivery: <id>`, the same on
every retry, so a receiver can drop a repeat after a lost reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from controller.store.db import utc
from controller.store.tables import webhook_outbox

log = logging.getLogger("sigap.webhooks")


class Webhooks:
    """The outbox and its delivery task."""

    backoff_base_s = 2.0
    backoff_max_s = 300.0
    timeout_s = 5.0
    batch = 50

    def __init__(self, urls: list[str], store: Any, metrics: Any = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.urls = list(urls)
        self.store = store
        # Retry timing is wall-clock time, not the controller's (injectable) domain clock.
        self.clock = clock
        self.metrics = metrics
        self._wake = asyncio.Event()
        self.delivered = 0
        self.failures = 0

    def enqueue(self, conn: sa.Connection, event: dict[str, Any]) -> None:
        """Queue one event for every URL (in the caller's transaction)."""
        if not self.urls:
            return
        now = self.clock()
        body = json.dumps(event, separators=(",", ":"), default=str)
        for url in self.urls:
            conn.execute(
                webhook_outbox.insert(),
                {"url": url, "body": body, "created_at": now, "attempts": 0, "next_at": now},
            )

    def wake(self) -> None:
        """New entries are committed: deliver now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever (until cancelled)."""
        if not self.urls:
            return
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                wait_s = await self.deliver_due(client)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass

    async def deliver_due(self, client: httpx.AsyncClient) -> float:
        """One pass over due entries; returns seconds until the next is due."""
        now = self.clock()
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(webhook_outbox)
                .where(webhook_outbox.c.delivered_at.is_(None))
                .order_by(webhook_outbox.c.id)
                .limit(self.batch)
            ).all()
        blocked: set[str] = set()  # a URL whose earlier entry failed waits: order per URL
        next_due = 60.0
        for row in rows:
            if row.url in blocked:
                continue
            due = utc(row.next_at)
            if due is not None and due > now:
                blocked.add(row.url)
                next_due = min(next_due, (due - now).total_seconds())
                continue
            error = await self._post(client, row)
            with self.store.transaction() as conn:
                if error is None:
                    conn.execute(
                        webhook_outbox.update().where(webhook_outbox.c.id == row.id).values(delivered_at=self.clock())
                    )
                    self.delivered += 1
                else:
                    attempts = row.attempts + 1
                    delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1))
                    conn.execute(
                        webhook_outbox.update()
                        .where(webhook_outbox.c.id == row.id)
                        .values(attempts=attempts, next_at=self.clock() + timedelta(seconds=delay),
                                last_error=error[:200])
                    )
                    self.failures += 1
                    blocked.add(row.url)
                    next_due = min(next_due, delay)
                    log.warning("webhook %s failed (attempt %d): %s; retry in %.0f s", row.url, attempts, error, delay)
        if len(rows) == self.batch and len(blocked) < len(self.urls):
            return 0.0
        return next_due

    async def _post(self, client: httpx.AsyncClient, row: Any) -> str | None:
        try:
            resp = await client.post(
                row.url,
                content=row.body,
                headers={"Content-Type": "application/json", "X-Sigap-Delivery": str(row.id)},
            )
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code}"

    def pending(self) -> int:
        """Entries not delivered yet."""
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(webhook_outbox).where(webhook_outbox.c.delivered_at.is_(None))
                ).scalar()
                or 0
            )
