"""The in-process LogGPT worker: drains the durable window queue (`windows.state = 'queued'`).

`worker_threads` daemon threads per process. Each round it closes idle windows, claims a batch of queued
windows (an atomic `queued -> checking` update, so several processes on one database never
check a window twice), checks them with the stream's LogGPT, and in one transaction writes the
window results, the lines' LogGPT flags and severities, and window anomalies.

At start, windows left `checking` by a dead process go back to `queued`: nothing acknowledged
is lost, a window is at worst checked twice. A window that fails `worker_max_attempts` times
is marked `failed` (its lines keep their RAPID verdicts).

A window with a line still waiting for its RAPID verdict (`pending`, see `server.encoder`) goes
back to the queue unchecked: its severity needs both flags. The encoder wakes the worker.

While a stream has no trained LogGPT its windows are marked `done` with result
`{"skipped": "untrained"}`: their lines' RAPID verdicts are final.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from typing import Any

from sqlmodel import Session

from logsense.models.policy import line_severity
from logsense.models.stream import MAX_CONTEXT_LINES, ClosedWindow
from logsense.server import store, streams, windows
from logsense.server.loop import Loop
from logsense.server.registry import ModelsUnavailable
from logsense.server.services import Services
from logsense.server.tables import Stream, utcnow

log = logging.getLogger("logsense.worker")

BATCH_WINDOWS = 256  # windows claimed per round


class Worker(Loop):
    """Background thread(s) that check queued windows; `wake()` after queueing skips the poll wait."""

    name = "logsense-worker"

    def __init__(self, services: Services):
        super().__init__(services.settings.worker_poll_seconds, services.settings.worker_threads)
        self.services = services
        self.settings = services.settings
        self.node = services.settings.node()
        self._next_requeue = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.settings.cluster:
            self._requeue()
        else:
            with store.write_session(self.services.engine) as session:
                n = store.requeue_checking(session)
            if n:
                log.info("re-queued %d windows a previous process was checking", n)
        super().start()

    def ready(self) -> bool:
        return self.services.registry.ready_reason() is None  # not while the models load (or failed)

    def round(self) -> bool:
        busy = self.run_once()
        self.services.registry.save_dirty()
        return busy

    # ------------------------------------------------------------------ one round

    def run_once(self) -> bool:
        """Close idle windows, check one batch of queued ones; True when there may be more."""
        engine, cluster = self.services.engine, self.settings.cluster
        now = utcnow()
        with Session(engine) as session:
            by_id = {s.id: s for s in streams.all_streams(session)}
        if not cluster:  # in a cluster, each stream's owner closes its windows (server.cluster.processor)
            idle = {sid: s.config().idle_timeout_seconds for sid, s in by_id.items()}
            with store.write_session(engine) as session:
                windows.close_idle(session, idle, now)
        elif time.monotonic() >= self._next_requeue:  # the windows of workers that died while checking
            self._requeue()
        with store.write_session(engine) as session:
            claimed = store.claim_windows(session, BATCH_WINDOWS, self.node if cluster else None, now)
        if not claimed:
            return False
        by_stream: dict[int, list[int]] = defaultdict(list)
        for wid, sid in claimed:
            by_stream[sid].append(wid)
        checked = 0
        for sid, ids in by_stream.items():
            stream = by_id.get(sid)
            if stream is None:  # created since the streams were read: next round
                with store.write_session(engine) as session:
                    store.unclaim_windows(session, ids)
                continue
            if cluster:  # templates the stream's owner created since this process loaded them
                self.services.registry.refresh_templates(stream)
            checked += self.check_windows(stream, ids)
        return checked > 0 and len(claimed) == BATCH_WINDOWS  # none checked: wait for a wake, do not spin

    def _requeue(self) -> None:
        from logsense.server.cluster.leases import dead_before

        from logsense.server.training import fail_interrupted

        with store.write_session(self.services.engine) as session:
            n = store.requeue_checking(session, self.node, dead_before(self.settings.lease_seconds))
        if n:
            log.info("re-queued %d windows of workers that stopped while checking them", n)
        if fail_interrupted(self.services.engine, self.settings, at_start=False):
            log.info("marked failed the jobs of nodes that stopped while running them")
        self._next_requeue = time.monotonic() + self.settings.lease_seconds

    def check_windows(self, stream: Stream, window_ids: list[int]) -> int:
        """Check claimed windows of one stream and store the results; failures go back to the
        queue, and so do windows with a line whose RAPID verdict is pending. Returns how many
        were checked."""
        engine = self.services.engine
        metrics = self.services.metrics
        with Session(engine) as session:
            lines = store.window_lines(session, window_ids)
        waiting = [w for w in window_ids if any(x["severity"] == "pending" for x in lines[w])]
        if waiting:
            with store.write_session(engine) as session:
                store.unclaim_windows(session, waiting)
            window_ids = [w for w in window_ids if w not in set(waiting)]
            if not window_ids:
                return 0
        try:
            model = self.services.registry.get(stream)
            with Session(engine) as session:
                context = store.session_context(session, stream.id, window_ids, MAX_CONTEXT_LINES)
            closed = [ClosedWindow(key="", seq=_seq(lines[w]), masked=[x["masked"] for x in lines[w]],
                                   rapid_flags=[x["rapid_flag"] for x in lines[w]], context_seq=_seq(context[w]),
                                   context_masked=[x["masked"] for x in context[w]])
                      for w in window_ids]
            verdicts = model.judge(closed)
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, ModelsUnavailable):
                log.exception("checking %d windows of stream %s failed", len(window_ids), stream.name)
            self._fail(window_ids, f"{type(exc).__name__}: {exc}")
            for _ in window_ids:
                metrics.windows_checked.labels(stream.name, "failed").inc()
            return 0
        self._store(stream, model, window_ids, lines, verdicts)
        return len(window_ids)

    def _fail(self, window_ids: list[int], error: str) -> None:
        with store.write_session(self.services.engine) as session:
            store.fail_windows(session, window_ids, error, self.settings.worker_max_attempts)

    def _store(self, stream: Stream, model: Any, window_ids: list[int], lines: dict[int, list[dict]],
               verdicts: list | None) -> None:
        """Write window results, line flags and severities, and window anomalies, as
        `StreamModel.judge` decided them (None: untrained, the RAPID verdicts stand)."""
        now = utcnow()
        metrics = self.services.metrics
        window_rows, line_flags, anomalies = [], {}, []
        version = model.version
        for i, wid in enumerate(window_ids):
            members = lines[wid]
            if verdicts is None:
                window_rows.append({"_id": wid, "state": "done", "checked_at": now, "anomalous": None,
                                    "model_version": None, "result": {"skipped": "untrained"}})
                for x in members:
                    line_flags.setdefault(x["id"], (x, False))
                continue
            v = verdicts[i]
            missed = set(v.missed)
            for pos, x in enumerate(members):
                old = line_flags.get(x["id"], (x, bool(x["loggpt_flag"])))[1]
                line_flags[x["id"]] = (x, old or pos in missed)
            misses = [self._miss(model, m, members) for m in v.misses]
            result = {"misses": misses, "k": model.k}
            if v.new_content is not None:
                result["new_content"] = v.new_content
            window_rows.append({"_id": wid, "state": "done", "checked_at": now, "anomalous": v.anomalous,
                                "model_version": version, "result": result})
            metrics.windows_checked.labels(stream.name, "anomalous" if v.anomalous else "normal").inc()
            if v.anomalous:
                first = members[v.missed[0]] if v.missed else None  # new content alone: no line is to blame
                reasons = {"loggpt_misses": misses, "k": model.k, "model_version": version, "window_lines": len(members)}
                if v.new_content:
                    reasons["new_content"] = "no normal session held all of these events (RAPID, session level)"
                anomalies.append({
                    "stream_id": stream.id, "line_id": first["id"] if first else None, "window_id": wid,
                    "template_id": first["template_id"] if first else None, "kind": "window",
                    "severity": v.severity, "status": "open", "reasons": reasons,
                    "created_at": now, "updated_at": now,
                })

        line_rows = []
        for line_id, (x, flag) in line_flags.items():
            severity = line_severity(x["severity"], x["label"], x["rapid_flag"], flag)
            line_rows.append({"_id": line_id, "loggpt_flag": flag if verdicts is not None else None,
                              "severity": severity, "checked_at": now})
        with store.write_session(self.services.engine) as session:
            store.route_anomalies(session, stream.id, anomalies, now, self.services.settings.incident_gap_seconds)
            store.save_window_checks(session, window_rows)
            store.update_lines(session, line_rows)
            store.insert_anomalies(session, anomalies)
            store.raise_line_anomalies(session, [r["_id"] for r in line_rows if r["severity"] == "danger"], now)
        changed = Counter(r["severity"] for r in line_rows if r["severity"] != line_flags[r["_id"]][0]["severity"])
        for severity, n in changed.items():  # verdicts LogGPT changed
            metrics.verdicts.labels(stream.name, severity).inc(n)

    @staticmethod
    def _miss(model: Any, miss: Any, members: list[dict]) -> dict:
        """A miss as JSON: position, line id, actual template (id and text), expected top-K."""
        pos = int(miss.position)
        expected = [_key(e) for e in (miss.expected or [])]
        actual = _key(miss.actual)
        return {
            "position": pos,
            "line_id": members[pos]["id"] if 0 <= pos < len(members) else None,
            "actual": actual,
            "actual_template": _key_text(model, actual),
            "expected": expected,
            "expected_templates": [_key_text(model, e) for e in expected],
            "unseen": bool(getattr(miss, "unseen", False)),
        }


def _seq(lines: list[dict]) -> list[int]:
    return [-1 if x["template_id"] is None else int(x["template_id"]) for x in lines]


def _key(key: Any) -> int | str | None:
    """A sequence key as JSON: a template id, or a special key such as "<eos>" (end of session)."""
    if key is None:
        return None
    return key if isinstance(key, str) else int(key)


def _key_text(model: Any, key: int | str | None) -> str | None:
    if isinstance(key, str):
        return "(end of session)" if key == "<eos>" else key
    return model.template(key) if key is not None and key >= 0 else None


__all__ = ["Worker"]
