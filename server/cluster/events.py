"""The ordered per-stream log of what changes a live model, and the loop that follows it.

Feedback and model promotions append an event in their own transaction (`publish`); every
process of a cluster polls the log and hands each changed stream to `on_change` (the registry
forgets the model, and the next use reloads it from the database, which holds the feedback).
A later id can commit before an earlier one, so each poll re-reads the last few seconds and
skips the ids it has seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from logsense.server.cluster.leases import heartbeat
from logsense.server.loop import Loop
from logsense.server.tables import StreamEvent, utcnow

LOOKBACK_SECONDS = 10.0  # longer than any transaction that appends an event


def publish(session: Any, stream_id: int, kind: str) -> None:
    """Append an event in the caller's transaction (it is seen once that commits)."""
    session.add(StreamEvent(stream_id=stream_id, kind=kind))


class Follower(Loop):
    """Polls `stream_events`, `on_change(stream_id)` once per new event; and keeps this node's
    heartbeat (`cluster_nodes`), by which the others tell a dead node's claims."""

    name = "logsense-events"

    def __init__(self, engine: Engine, on_change: Callable[[int], None], node: str, role: str,
                 heartbeat_seconds: float, poll_seconds: float = 0.5):
        super().__init__(poll_seconds)
        self.engine, self.on_change = engine, on_change
        self.node, self.role, self.heartbeat_seconds = node, role, heartbeat_seconds
        self._next_beat = 0.0
        self._seen: dict[int, Any] = {}  # event id -> created_at, pruned past the lookback
        self._since = utcnow()

    def start(self) -> None:
        heartbeat(self.engine, self.node, self.role)
        super().start()

    def round(self) -> bool:
        if time.monotonic() >= self._next_beat:
            heartbeat(self.engine, self.node, self.role)
            self._next_beat = time.monotonic() + self.heartbeat_seconds
        since = self._since - timedelta(seconds=LOOKBACK_SECONDS)
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, stream_id, created_at FROM stream_events WHERE created_at > :t "
                                     "ORDER BY id"), {"t": since.replace(tzinfo=None)}).all()
        self._since = utcnow()
        for event_id, stream_id, created in rows:
            if event_id not in self._seen:
                self._seen[event_id] = created
                self.on_change(stream_id)
        cutoff = since.replace(tzinfo=None)
        self._seen = {i: t for i, t in self._seen.items() if t > cutoff}
        return False
