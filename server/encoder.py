"""The background encoder: embeds new masked texts off the request path.

Ingest never waits for the embedder on a batch with more than `inline_embed_texts` new texts.
In train mode their lines join RAPID's normals word for word at once and are embedded here
(`StreamModel.index_pending`); in detection their lines are stored with severity `pending` and
get their RAPID verdict here: this thread reads them back oldest first, embeds each distinct text
once (in batches, sorted by length), and writes score, flag, severity and line anomalies in one
transaction, as ingest would have.

One daemon thread per process, streams taken in turn with a bounded share each round, so one
stream's burst of new texts delays another's by at most one round. A pending line is in the
database, so a restart loses nothing: the next process picks it up. The LogGPT worker leaves a
window queued while one of its lines is pending (its severity needs both flags).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from sqlmodel import Session

from logsense.models.policy import combine
from logsense.server import lines as stored_lines
from logsense.server import store, streams
from logsense.server.loop import Loop
from logsense.server.services import Services
from logsense.server.tables import Stream, utcnow


LINES_PER_ROUND = 4096  # pending lines read per stream and round: one embedding call's worth


class Pending(NamedTuple):
    """A stored line waiting for its RAPID verdict: what `StreamModel.score` reads."""

    id: int
    masked: str
    template_id: int | None


class Encoder(Loop):
    """Background thread; `wake()` after storing pending lines or deferring normals."""

    name = "logsense-encoder"

    def __init__(self, services: Services):
        super().__init__(services.settings.worker_poll_seconds)
        self.services = services

    def ready(self) -> bool:
        return self.services.registry.ready_reason() is None

    def round(self) -> bool:
        return self.run_once()

    def run_once(self) -> bool:
        """One round over the streams: some deferred normals, some pending lines each; True when
        work is left."""
        engine = self.services.engine
        registry = self.services.registry
        with Session(engine) as session:
            found = [s for s in streams.all_streams(session) if self.services.owns(s.id)]  # a cluster: its owner's
        busy = False
        for stream in found:
            model = registry.loaded().get(stream.id)
            if model is not None and model.n_unindexed and model.index_pending():
                registry.mark_dirty(stream.id)
                busy = busy or model.n_unindexed > 0
            busy = self.score_pending(stream) or busy
        return busy

    def score_pending(self, stream: Stream) -> bool:
        """Give the oldest pending lines of one stream their RAPID verdict; True when more wait."""
        services = self.services
        with Session(services.engine) as session:
            rows = stored_lines.rapid_pending_lines(session, stream.id, LINES_PER_ROUND)
        if not rows:
            return False
        model = services.registry.get(stream)
        lines = [Pending(*r) for r in rows]
        verdicts = model.score(lines)  # embeds each new text once
        now = utcnow()
        updates, anomalies = [], []
        for line, v in zip(lines, verdicts):
            severity = combine(v.flag, None)
            updates.append({"_id": line.id, "rapid_score": v.score, "rapid_flag": v.flag, "severity": severity})
            if v.flag:
                anomalies.append({"stream_id": stream.id, "line_id": line.id, "window_id": None,
                                  "template_id": line.template_id, "kind": "line", "severity": severity,
                                  "status": "open", "reasons": {"rapid_score": v.score,
                                                                "rapid_threshold": model.rapid_threshold},
                                  "created_at": now, "updated_at": now})
        with store.write_session(services.engine) as session:
            # an operator may have answered one of them meanwhile: their verdict stands, no anomaly
            still = stored_lines.save_rapid_verdicts(session, updates)
            updates = [u for u in updates if u["_id"] in still]
            anomalies = [a for a in anomalies if a["line_id"] in still]
            if not updates:
                return len(rows) == LINES_PER_ROUND
            store.route_anomalies(session, stream.id, anomalies, now, services.settings.incident_gap_seconds)
            store.insert_anomalies(session, anomalies)
        for severity, n in Counter(u["severity"] for u in updates).items():
            services.metrics.verdicts.labels(stream.name, severity).inc(n)
        if services.worker is not None:
            services.worker.wake()  # windows that waited for these lines can be checked now
        return len(rows) == LINES_PER_ROUND
