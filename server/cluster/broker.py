"""The ingest log on Redis Streams: API replicas publish batches, the owning processor reads them
through a consumer group and answers on a per-request reply list.

One Redis Stream per partition (`logsense:ingest:{p}`), one consumer group (`processors`). A
message stays in its reader's pending list until acknowledged, which happens only after the
batch committed and its answer went out; a new owner claims a partition's pending messages
(XAUTOCLAIM) and stores them again, and the idempotency row makes a second store answer from the
first (`server.ingest.Replayed`). Acknowledged messages are deleted: the stream holds only work.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from logsense.server.batch import Batch, to_message
from logsense.server.registry import ModelsUnavailable

log = logging.getLogger("logsense.broker")

GROUP = "processors"
AUTO_KEY = "auto:"  # an idempotency key the API replica made up for a batch that came without one
REPLY_TTL_SECONDS = 300  # an answer nobody waits for any more expires


class NoAnswer(ModelsUnavailable):
    """No owner answered in time (or it could not store the batch): a 503 telling the client to
    retry with the batch's Idempotency-Key, which stores it at most once."""


def _stream_key(partition: int) -> str:
    return f"logsense:ingest:{partition}"


def _reply_key(request_id: str) -> str:
    return f"logsense:reply:{request_id}"


class Broker:
    """A Redis connection and the partitioned ingest log (thread-safe: redis-py pools connections)."""

    def __init__(self, url: str, partitions: int, reply_timeout: float = 30.0):
        import redis

        # reads wait longer than the longest BLPOP / XREADGROUP block, so a wait never reads as a dead socket
        self.redis = redis.Redis.from_url(url, socket_keepalive=True, health_check_interval=30,
                                          socket_timeout=reply_timeout + 10)
        self.partitions = partitions
        self.reply_timeout = reply_timeout

    def close(self) -> None:
        self.redis.close()

    # ------------------------------------------------------------------ API replica side

    def submit(self, stream_id: int, batch: Batch, key: str | None) -> tuple[int, bytes, bool]:
        """Publish one batch to its stream's partition and wait for the owner's answer:
        (status, answer JSON, replayed). NoAnswer when none comes within `reply_timeout`."""
        from logsense.server.cluster.leases import partition_of

        import redis

        request_id = uuid.uuid4().hex
        key = key or f"{AUTO_KEY}{request_id}"
        try:
            self.redis.xadd(_stream_key(partition_of(stream_id, self.partitions)),
                            {"rid": request_id, "stream": stream_id, "key": key, "batch": to_message(batch)})
        except redis.RedisError as exc:
            raise NoAnswer(f"the ingest log (Redis) is unavailable: {exc}; nothing was stored, retry") from None
        try:
            got = self.redis.blpop([_reply_key(request_id)], timeout=self.reply_timeout)
        except redis.RedisError:
            got = None
        if got is None:
            raise NoAnswer(f"the stream's processor did not answer within {self.reply_timeout:g} s; the batch may "
                           f"still be stored: retry with the header Idempotency-Key: {key}")
        head, _, content = got[1].partition(b"\n")
        status, replayed = head.split(b" ")
        if int(status) >= 500:
            raise NoAnswer(content.decode("utf-8", "replace"))
        return int(status), content, replayed == b"1"

    # ------------------------------------------------------------------ processor side

    def setup(self) -> None:
        """The consumer group on every partition, reading from the start (idempotent)."""
        import redis

        for p in range(self.partitions):
            try:
                self.redis.xgroup_create(_stream_key(p), GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, partitions: list[int], consumer: str, count: int = 16, block_ms: int = 200
             ) -> list[tuple[int, bytes, dict]]:
        """New messages of these partitions for `consumer`: (partition, message id, fields)."""
        streams = {_stream_key(p): ">" for p in partitions}
        out = []
        for name, messages in self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms) or []:
            p = int(name.rsplit(b":", 1)[1])
            out += [(p, mid, fields) for mid, fields in messages]
        return out

    def claim(self, partition: int, consumer: str, min_idle_ms: int = 0) -> list[tuple[int, bytes, dict]]:
        """Take over the partition's messages read but never acknowledged (a dead or deposed owner's)."""
        out, start = [], "0-0"
        while True:
            reply = self.redis.xautoclaim(_stream_key(partition), GROUP, consumer, min_idle_ms, start, count=100)
            start, messages = reply[0], reply[1]
            out += [(partition, mid, fields) for mid, fields in messages if fields]
            if start in (b"0-0", "0-0"):
                return out

    def reply(self, request_id: str, status: int, content: bytes, replayed: bool = False) -> None:
        key = _reply_key(request_id)
        self.redis.rpush(key, b"%d %d\n" % (status, replayed) + content)
        self.redis.expire(key, REPLY_TTL_SECONDS)

    def done(self, partition: int, message_id: Any) -> None:
        """Acknowledge and delete a message whose batch committed and was answered."""
        self.redis.xack(_stream_key(partition), GROUP, message_id)
        self.redis.xdel(_stream_key(partition), message_id)
