"""Who owns what in a cluster, kept in PostgreSQL: partition leases with fencing epochs, the
nodes' heartbeats, and the advisory lock that lets one scheduler run at a time.

A processor holds a fair share of the partitions (`ceil(partitions / live processors)`), renews
its leases every third of `lease_seconds`, and gives up the ones over its share; a dead
processor's leases expire and the others take them, each takeover raising the epoch. `fence`
runs inside a batch's transaction: it locks the lease row (FOR SHARE) and refuses when the epoch
moved on, so a deposed owner's batch rolls back instead of being stored twice.
"""

from __future__ import annotations

import logging
import math
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from logsense.server.tables import utcnow

log = logging.getLogger("logsense.cluster")


class Fenced(RuntimeError):
    """This node's lease on a partition was taken over: the batch must not commit here."""


def partition_of(stream_id: int, partitions: int) -> int:
    """The partition a stream's batches go to (stream ids are dense: a modulo spreads them)."""
    return stream_id % partitions


def heartbeat(engine: Engine, node: str, role: str) -> None:
    """Say this node is alive (`cluster_nodes.seen_at`)."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO cluster_nodes (name, role, started_at, seen_at) VALUES (:n, :r, :t, :t) "
                          "ON CONFLICT (name) DO UPDATE SET role = :r, seen_at = :t"),
                     {"n": node, "r": role, "t": _naive(now)})


def dead_before(ttl: float) -> datetime:
    """A node not seen since this time is dead: twice the lease without a heartbeat."""
    return utcnow() - timedelta(seconds=2 * ttl)


def _naive(when: datetime) -> datetime:
    """Raw SQL gets times as the tables store them: naive UTC (`tables.UtcDateTime`)."""
    return when.astimezone(timezone.utc).replace(tzinfo=None)


class Leases:
    """This processor's partitions: partition -> epoch it holds."""

    def __init__(self, engine: Engine, node: str, partitions: int, ttl: float):
        self.engine, self.node, self.partitions, self.ttl = engine, node, partitions, ttl
        self.held: dict[int, int] = {}

    def setup(self) -> None:
        """One row per partition (idempotent: every node may run it)."""
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO partition_leases (partition, owner, epoch, expires_at) "
                              "SELECT p, NULL, 0, :t FROM generate_series(0, :n - 1) AS p ON CONFLICT DO NOTHING"),
                         {"n": self.partitions, "t": _naive(utcnow())})

    def renew(self) -> set[int]:
        """Extend the leases still ours; the partitions lost since (taken over) are returned and forgotten."""
        if not self.held:
            return set()
        now = utcnow()
        with self.engine.begin() as conn:
            kept = {row[0] for row in conn.execute(
                text("UPDATE partition_leases SET expires_at = :until WHERE owner = :me AND partition = ANY(:ps) "
                     "AND epoch = ANY(:es) RETURNING partition, epoch"),
                {"until": _naive(now + timedelta(seconds=self.ttl)), "me": self.node,
                 "ps": list(self.held), "es": list(self.held.values())}).all()
                if self.held.get(row[0]) == row[1]}
        lost = set(self.held) - kept
        for p in lost:
            log.warning("partition %d: lease taken over", p)
            self.held.pop(p)
        return lost

    def rebalance(self) -> tuple[dict[int, int], set[int]]:
        """Take free or expired partitions up to the fair share, give back those over it:
        ({partition: epoch} gained, partitions released)."""
        now = _naive(utcnow())
        with self.engine.begin() as conn:
            live = conn.execute(text("SELECT count(*) FROM cluster_nodes WHERE role = 'processor' AND seen_at > :t"),
                                {"t": _naive(utcnow() - timedelta(seconds=self.ttl))}).scalar_one()
            share = math.ceil(self.partitions / max(1, live))
            released: set[int] = set()
            gained: dict[int, int] = {}
            if len(self.held) > share:
                for p in sorted(self.held)[share:]:
                    conn.execute(text("UPDATE partition_leases SET owner = NULL, expires_at = :t "
                                      "WHERE partition = :p AND owner = :me AND epoch = :e"),
                                 {"t": now, "p": p, "me": self.node, "e": self.held.pop(p)})
                    released.add(p)
            elif len(self.held) < share:
                rows = conn.execute(text(
                    "UPDATE partition_leases SET owner = :me, epoch = epoch + 1, expires_at = :until "
                    "WHERE partition IN (SELECT partition FROM partition_leases WHERE (owner IS NULL OR expires_at < :t) "
                    "AND partition < :n ORDER BY partition LIMIT :k FOR UPDATE SKIP LOCKED) RETURNING partition, epoch"),
                    {"me": self.node, "until": now + timedelta(seconds=self.ttl), "t": now, "n": self.partitions,
                     "k": share - len(self.held)}).all()
                gained = {p: e for p, e in rows}
                self.held.update(gained)
        for p, e in sorted(gained.items()):
            log.info("partition %d: owned by %s (epoch %d)", p, self.node, e)
        return gained, released

    def release_all(self) -> None:
        """At a clean stop: hand the partitions over now rather than when the leases expire."""
        if not self.held:
            return
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE partition_leases SET owner = NULL, expires_at = :t "
                              "WHERE owner = :me AND partition = ANY(:ps)"),
                         {"t": _naive(utcnow()), "me": self.node, "ps": list(self.held)})
        self.held.clear()

    def fence(self, session: Any, partition: int) -> None:
        """Inside a batch's transaction: go on only while this node still holds `partition` at its
        epoch (the row stays locked against a takeover until the commit). Fenced otherwise."""
        row = session.connection().execute(
            text("SELECT owner, epoch FROM partition_leases WHERE partition = :p FOR SHARE"), {"p": partition}).first()
        if row is None or row[0] != self.node or self.held.get(partition) != row[1]:
            self.held.pop(partition, None)
            raise Fenced(f"partition {partition} is no longer owned by {self.node}")


class AdvisoryLock:
    """The scheduler's lock across hosts: a PostgreSQL session-level advisory lock held on its own
    connection (released by PostgreSQL if this process dies). Same interface as the file lock."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.path = f"pg_advisory_lock({name})"  # for the log line that names the lock
        self._key = zlib.crc32(name.encode()) - 2**31  # a signed 32-bit key
        self._conn: Any = None

    def acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    @property
    def held(self) -> bool:
        return self._conn is not None
