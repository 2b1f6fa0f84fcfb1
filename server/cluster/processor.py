"""The processor role: own partitions of the ingest log and store their batches.

One thread: every third of `lease_seconds` it renews, takes and gives back leases (`leases`);
on a partition it gains, it forgets the models of the partition's streams (the next batch
reloads them from the database: parser from `stream_parsers`, RAPID topped up from the stored
normals) and claims the messages the previous owner left unacknowledged; then it reads new
messages and stores each batch with `server.ingest.store_batch`, fenced by the lease, answers,
and acknowledges. Batches of one partition are stored in order, one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from sqlmodel import Session

from logsense.server import store, streams, windows
from logsense.server.batch import from_message
from logsense.server.cluster.broker import Broker
from logsense.server.cluster.leases import Fenced, Leases, heartbeat, partition_of
from logsense.server.ingest import Replayed, store_batch
from logsense.server.loop import Loop
from logsense.server.registry import ModelsUnavailable
from logsense.server.services import Services
from logsense.server.tables import Stream, utcnow

log = logging.getLogger("logsense.processor")

READ_COUNT = 4  # messages read per partition at a time: the leases are renewed between batches anyway


class Processor(Loop):
    name = "logsense-processor"

    def __init__(self, services: Services, broker: Broker):
        super().__init__(poll_seconds=0.01)
        settings = services.settings
        self.services, self.broker = services, broker
        self.node = settings.node()
        self.leases = Leases(services.engine, self.node, settings.partitions, settings.lease_seconds)
        self._next_lease_round = self._next_renewal = 0.0
        self._changed: set[int] = set()  # streams whose models to reload before their next batch
        self._guard = threading.Lock()

    def start(self) -> None:
        self.leases.setup()
        self.broker.setup()
        heartbeat(self.services.engine, self.node, "processor")
        super().start()

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        try:
            self.leases.release_all()
        except Exception:  # noqa: BLE001 (they expire anyway)
            log.exception("could not release the partition leases")

    def ready(self) -> bool:
        return self.services.registry.ready_reason() is None

    def owns(self, stream_id: int) -> bool:
        """Is this stream in a partition this processor holds (its encoder works only on those)?"""
        return partition_of(stream_id, self.leases.partitions) in self.leases.held

    def changed(self, stream_id: int) -> None:
        """An event said the stream's model changed elsewhere: reload it before its next batch."""
        with self._guard:
            self._changed.add(stream_id)

    # ------------------------------------------------------------------ one round

    def round(self) -> bool:
        claimed = []
        if time.monotonic() >= self._next_lease_round:
            claimed = self._lease_round()
            self._next_lease_round = time.monotonic() + self.leases.ttl / 3
        self._reload_changed()
        for message in claimed:
            self._handle(*message)
        if not self.leases.held:
            time.sleep(0.2)
            return False
        messages = self.broker.read(sorted(self.leases.held), self.node, count=READ_COUNT)
        for message in messages:
            if time.monotonic() >= self._next_renewal:  # a long round must not let the leases lapse
                self._renew()
            self._reload_changed()  # feedback made elsewhere applies from the next batch on
            if partition_of(int(message[2][b"stream"]), self.leases.partitions) in self.leases.held:
                self._handle(*message)  # else taken over meanwhile: the new owner claims it
        return bool(messages)

    def _renew(self) -> set[int]:
        lost = self.leases.renew()
        for p in lost:
            self._forget_partition(p)
        self._next_renewal = time.monotonic() + self.leases.ttl / 3
        return lost

    def _lease_round(self) -> list:
        self._renew()
        gained, released = self.leases.rebalance()
        for p in released | set(gained):
            self._forget_partition(p)
        claimed = []
        for p in sorted(gained):
            claimed += self.broker.claim(p, self.node)
        for p in sorted(self.leases.held):  # a deposed owner's leftovers, long unacknowledged
            if p not in gained:
                claimed += self.broker.claim(p, self.node, min_idle_ms=int(self.leases.ttl * 2000))
        self._close_idle()
        self.services.registry.save_dirty()
        return claimed

    def _forget_partition(self, partition: int) -> None:
        registry = self.services.registry
        for stream_id in list(registry.loaded()):
            if partition_of(stream_id, self.leases.partitions) == partition:
                registry.drop(stream_id)

    def _reload_changed(self) -> None:
        with self._guard:
            changed, self._changed = self._changed, set()
        for stream_id in changed:
            self.services.registry.drop(stream_id)

    def _close_idle(self) -> None:
        """Windows of owned streams quiet for their idle timeout close here, not in a worker:
        only the owner writes a stream's open windows."""
        with Session(self.services.engine) as session:
            owned = [s for s in streams.all_streams(session) if self.owns(s.id)]
        if owned:
            idle = {s.id: s.config().idle_timeout_seconds for s in owned}
            with store.write_session(self.services.engine) as session:
                queued = windows.close_idle(session, idle, utcnow())
            if queued and self.services.worker is not None:
                self.services.worker.wake()

    # ------------------------------------------------------------------ one batch

    def _handle(self, partition: int, message_id: bytes, fields: dict) -> None:
        request_id = fields[b"rid"].decode()
        stream_id, key = int(fields[b"stream"]), fields[b"key"].decode()
        with Session(self.services.engine) as session:
            stream = session.get(Stream, stream_id)
            if stream is not None:
                session.expunge(stream)
        try:
            if stream is None:
                self.broker.reply(request_id, 404, b"the stream was deleted")
            else:
                status, content = store_batch(self.services, stream, from_message(fields[b"batch"]), key,
                                              fence=partial(self.leases.fence, partition=partition))
                self.broker.reply(request_id, status, content)
        except Replayed as again:  # stored before, by this owner or the one before
            self.broker.reply(request_id, again.status, again.content, replayed=True)
        except Fenced:
            log.warning("partition %d taken over: batch %s left to the new owner", partition, request_id)
            self._forget_partition(partition)
            return  # not acknowledged: the new owner claims it
        except ModelsUnavailable as exc:
            self.broker.reply(request_id, 503, str(exc).encode())
        except Exception as exc:  # noqa: BLE001 (the client retries with the key; no message loops forever)
            log.exception("could not store batch %s of stream %s", request_id, stream_id)
            self.services.registry.drop(stream_id)  # its model may hold what rolled back: reload it
            self.broker.reply(request_id, 503, f"could not store the batch: {type(exc).__name__}: {exc}".encode())
        self.broker.done(partition, message_id)


