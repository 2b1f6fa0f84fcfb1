"""Partition leases on a real PostgreSQL (`server.cluster.leases`): the fair share, takeover of a
dead owner's partitions with a higher epoch, and the fence that makes a deposed owner's batch
roll back. PostgreSQL as in test_postgres: given, or started from Debian's package, else skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

@pytest.fixture(scope="module")
def engine(postgres_admin_url: str) -> Iterator:
    from logsense.server.bench.backing import fresh_database
    from logsense.server.db import make_engine, upgrade_database

    url = fresh_database(postgres_admin_url, "logsense_leases")
    upgrade_database(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_a_dead_owners_partitions_move_on_and_its_batches_are_fenced(engine) -> None:  # noqa: ANN001
    from sqlmodel import Session

    from logsense.server.cluster.leases import Fenced, Leases, heartbeat

    ttl = 1.0
    a, b = Leases(engine, "node-a", 4, ttl), Leases(engine, "node-b", 4, ttl)
    a.setup()
    heartbeat(engine, "node-a", "processor")
    gained, _ = a.rebalance()
    assert sorted(gained) == [0, 1, 2, 3] and set(gained.values()) == {1}  # alone: all of them
    heartbeat(engine, "node-b", "processor")
    _, released = a.rebalance()  # two live processors: a gives back what is over its share
    assert len(released) == 2 and len(a.held) == 2
    gained_b, _ = b.rebalance()
    assert sorted(gained_b) == sorted(released) and set(gained_b.values()) == {2}  # taken over: epoch 2
    assert not set(a.held) & set(b.held)

    p = sorted(a.held)[0]
    with Session(engine) as session:  # a still owns p: its batch may commit
        a.fence(session, p)
        session.rollback()
    time.sleep(2.2 * ttl)  # a stops renewing (paused, or dead); b stays alive
    heartbeat(engine, "node-b", "processor")
    assert b.renew() == set()
    gained_b, _ = b.rebalance()
    assert p in gained_b and gained_b[p] == 2
    with Session(engine) as session, pytest.raises(Fenced):  # a's late batch: rolled back, not stored
        a.fence(session, p)
    assert p not in a.held
    other = set(a.held)
    assert a.renew() == other and a.held == {}  # a learns at its next renewal that the rest went too
    assert sorted(b.held) == [0, 1, 2, 3]
