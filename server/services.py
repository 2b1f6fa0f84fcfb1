"""What the server's background parts and domain modules need, built once per app at start.

`Services` is made in the lifespan (`app._start_background`) and hangs on `app.state.services`;
routes pass it on (`request.app.state.services`). Modules below the route layer take it, typed,
instead of the whole FastAPI app, so what each one depends on is visible and a test can build
one without an app. The route layer keeps reading `app.state.<name>`: the same objects.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from logsense.models.parsing.helper import PrepareHelper
    from logsense.server.alerts import AlertHook
    from logsense.server.cluster.broker import Broker
    from logsense.server.cluster.events import Follower
    from logsense.server.cluster.processor import Processor
    from logsense.server.encoder import Encoder
    from logsense.server.metrics import Metrics
    from logsense.server.registry import Registry
    from logsense.server.scheduler import Scheduler
    from logsense.server.search import Indexer
    from logsense.server.settings import Settings
    from logsense.server.syslog import SyslogListener
    from logsense.server.worker import Worker


@dataclass(eq=False, repr=False)
class Services:
    """One running app's dependencies; the optional parts are None while off or not started."""

    settings: Settings
    engine: Engine
    registry: Registry
    metrics: Metrics
    parse_helper: PrepareHelper | None = None  # masks ingest chunks on another core
    encoder: Encoder | None = None
    worker: Worker | None = None
    scheduler: Scheduler | None = None
    search_indexer: Indexer | None = None
    alerts: AlertHook | None = None  # the enqueue hook; its `dispatcher` sends
    syslog: SyslogListener | None = None
    broker: Broker | None = None  # an API replica of a cluster: batches go to their owner through it
    processor: Processor | None = None  # a processor of a cluster: the partitions it owns
    events: Follower | None = None  # a cluster: reloads streams changed elsewhere
    training_locks: dict[int, threading.Lock] = field(default_factory=dict)  # one job per stream at a time
    training_threads: list[threading.Thread] = field(default_factory=list)  # joined at shutdown
    # Builds an ingest answer while the request's thread waits in the commit's fsync (which
    # holds no GIL); one thread per batch would wait for the GIL, and the commit behind it.
    answers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsense-answer"))

    def owns(self, stream_id: int) -> bool:
        """Does this process store the stream's batches (and so score its pending lines)?"""
        return self.processor.owns(stream_id) if self.processor is not None else not self.settings.cluster
