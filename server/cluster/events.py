"""The ordered per-stream log of what changes a live model, and the loop that follows it.

Feedback and model promotions append an event in their own transaction (`publish`); every
process of a cluster polls the log and hands each changed stream to `on_change` (the registry
forgets the model, and the next use reloads it from the database, which holds the feedback).
A later id can commit before an earlier one, so each poll reads from the highest id it had seen
`LOOKBACK_SECONDS` ago (by the primary key, whatever the log's length) and skips the ids it has
seen since.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from logsense.server.cluster.leases import heartbeat
from logsense.server.loop import Loop
from logsense.server.tables import StreamEvent

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
        self._low: int | None = None  # every event up to this id has been handed on (or predates the start)
        self._marks: deque[tuple[float, int]] = deque()  # (when, highest id seen by then)
        self._seen: set[int] = set()  # ids above `_low` handed on already

    def start(self) -> None:
        heartbeat(self.engine, self.node, self.role)
        super().start()

    def round(self) -> bool:
        now = time.monotonic()
        if now >= self._next_beat:
            heartbeat(self.engine, self.node, self.role)
            self._next_beat = now + self.heartbeat_seconds
        with self.engine.connect() as conn:
            if self._low is None:  # the models load from the database after this: earlier events are in it
                self._low = conn.execute(text("SELECT coalesce(max(id), 0) FROM stream_events")).scalar_one()
            rows = conn.execute(text("SELECT id, stream_id FROM stream_events WHERE id > :low ORDER BY id"),
                                {"low": self._low}).all()
        for event_id, stream_id in rows:
            if event_id not in self._seen:
                self._seen.add(event_id)
                self.on_change(stream_id)
        self._marks.append((now, max([self._low, *self._seen])))
        while self._marks[0][0] < now - LOOKBACK_SECONDS:  # ids that old have committed or never will
            self._low = max(self._low, self._marks.popleft()[1])
        self._seen = {i for i in self._seen if i > self._low}
        return False
