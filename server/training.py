"""Training jobs: build a stream's LogGPT (and RAPID index) from its stored normal data.

- `start_training(services, stream_id, mode)` records a `jobs` row and runs the job in a background
  thread; the row carries state and progress in [0, 1]. One job per stream runs at a time
  (a second one waits for the first).
- mode `train`: LogGPT from scratch on every normal window (train-mode data and windows an
  operator refuted), the RAPID core set rebuilt from their lines; K and the RAPID threshold
  calibrated on held-back windows (`models.windowing.is_held_back`).
- mode `nightly`: fine-tunes the live LogGPT on the normal windows new since the live version
  plus every confirmed-normal window.
Either is promoted by the product's rule (`StreamModel.should_promote`): a first model only when
its calibration holds (enough held-back windows for the target rate), a retrain only when it
validates no worse than the live model on the same held-back normals and confirmed anomalies.
Every trained model becomes a `model_versions` row (kind `loggpt`) with its metrics and why it
was or was not promoted, and a directory `versions/<n>/` under the stream's data directory.
`rollback(services, stream_id, version)` makes an older version live again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import store
from logsense.server.cluster import events
from logsense.server.services import Services
from logsense.server.settings import Settings
from logsense.server.tables import Job, ModelVersion, Stream, utcnow

log = logging.getLogger("logsense.training")

MODES = ("train", "nightly")
MAX_VAL_WINDOWS = 5000  # newest held-back windows used for calibration and validation
PROGRESS_EVERY_SECONDS = 0.5

_GUARD = threading.Lock()


def _stream_lock(services: Services, stream_id: int) -> threading.Lock:
    with _GUARD:
        return services.training_locks.setdefault(stream_id, threading.Lock())


def start_training(services: Services, stream_id: int, mode: str = "train") -> int:
    """Queue a training job for the stream and start it in a background thread; the job id.

    Raises LookupError for an unknown stream, ValueError for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; one of {MODES}")
    engine = services.engine
    with store.write_session(engine) as session:
        if session.get(Stream, stream_id) is None:
            raise LookupError(f"no stream with id {stream_id}")
        job = Job(stream_id=stream_id, kind=mode, state="queued", message="waiting to start",
                  owner=services.settings.node() if services.settings.cluster else None)
        session.add(job)
        session.flush()
        job_id = int(job.id)
    thread = threading.Thread(target=run_job, args=(services, job_id), name=f"logsense-train-{job_id}", daemon=True)
    threads = services.training_threads  # joined at shutdown; finished ones are forgotten
    threads[:] = [t for t in threads if t.is_alive()]
    threads.append(thread)
    thread.start()
    return job_id


def _set_job(services: Services, job_id: int, **values: Any) -> None:
    t = Job.__table__
    with store.write_session(services.engine) as session:
        session.execute(update(t).where(t.c.id == job_id).values(**values))


def run_job(services: Services, job_id: int) -> None:
    """Run one queued job to its end (done or failed); never raises."""
    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        stream_id, mode = job.stream_id, job.kind
    with _stream_lock(services, stream_id):
        _set_job(services, job_id, state="running", started_at=utcnow(), message="gathering training data")
        last = [0.0]

        def progress(fraction: float, message: str) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_SECONDS or fraction >= 1.0:
                last[0] = time.monotonic()
                _set_job(services, job_id, progress=round(min(max(fraction, 0.0), 1.0), 4), message=message[:500])

        try:
            result = _train(services, job_id, stream_id, mode, progress)
        except Exception as exc:  # noqa: BLE001 (the job row says what went wrong)
            log.exception("training job %s of stream %s failed", job_id, stream_id)
            _set_job(services, job_id, state="failed", finished_at=utcnow(),
                     error=f"{type(exc).__name__}: {exc}"[:4000], message="failed")
            return
        _set_job(services, job_id, state="done", progress=1.0, finished_at=utcnow(), result=result,
                 message=result.get("message", "done"))


def fail_interrupted(engine: Engine, settings: Settings | None = None, at_start: bool = True) -> int:
    """Jobs a dead process left queued or running are marked failed (their threads are gone).
    One process, at start: all of them. A cluster: those of nodes not seen for twice the lease,
    and at start this node's own; never a running peer's."""
    t = Job.__table__
    q = update(t).where(t.c.state.in_(("queued", "running")))
    if settings is not None and settings.cluster:
        from logsense.server.cluster.leases import dead_before

        dead = t.c.owner.not_in(store.live_nodes(dead_before(settings.lease_seconds)))
        q = q.where(or_(t.c.owner.is_(None), t.c.owner == settings.node(), dead) if at_start else dead)
    with store.write_session(engine) as session:
        result = session.execute(q.values(
            state="failed", error="interrupted: the server stopped before the job finished", finished_at=utcnow()))
    return result.rowcount or 0


# --------------------------------------------------------------------------- data


def training_windows(session: Session, stream_id: int, after_window_id: int = 0) -> tuple[list, list, int]:
    """The stream's normal windows for training (windows with id > after_window_id, plus every
    confirmed-normal window; held-back ones, `models.windowing.is_held_back`, for validation),
    the confirmed-anomalous ones, and the newest window id among them, as
    `models.stream.ClosedWindow`s."""
    from logsense.models.stream import ClosedWindow
    from logsense.models.windowing import is_held_back
    from logsense.server.tables import Window

    all_ids = store.normal_window_ids(session, stream_id)
    refuted = set(session.execute(
        select(Window.id).where(Window.stream_id == stream_id, Window.label == "normal")
    ).scalars().all())
    keys = store.window_keys(session, all_ids)
    ids = [w for w in all_ids if is_held_back(keys[w]) or w > after_window_id or w in refuted]
    anomaly_ids = store.confirmed_anomaly_window_ids(session, stream_id)
    lines = store.window_lines(session, [*ids, *anomaly_ids])

    def closed(wid: int) -> ClosedWindow:
        ls = lines[wid]
        return ClosedWindow(key=keys.get(wid, ""), seq=[-1 if x["template_id"] is None else int(x["template_id"]) for x in ls],
                            masked=[x["masked"] for x in ls], levels=[x["level"] for x in ls],
                            timestamps=[x["timestamp"] for x in ls])

    return [closed(w) for w in ids], [closed(w) for w in anomaly_ids], max(all_ids, default=after_window_id)


def training_data(session: Session, stream_id: int, model: Any, after_window_id: int = 0,
                  review: bool = True) -> tuple[Any, int, int]:
    """The training review first (`models.review`: suspicious templates of the train-mode data
    stay held back until an operator answers; stored in template_reviews), then the stream's
    `TrainingData` without what it holds back. Returns (data, newest window id, review items)."""
    from logsense.models.review import training_lines
    from logsense.models.stream import training_data as split_training_data

    windows, anomalies, last = training_windows(session, stream_id, after_window_id)
    store.read_review(session, stream_id, model)  # answers given since the model was loaded
    items = []
    if review:  # a training from scratch reviews all its train-mode data; a nightly one keeps the answers
        items = model.review(training_lines(windows))
        store.save_review(session, stream_id, items, model.reviews)
    held, shapes = model.excluded_templates(), model.excluded_shapes()
    data = split_training_data(windows, anomalies, max_val=MAX_VAL_WINDOWS, exclude=held, exclude_shapes=shapes)
    if review and windows and not data.train_seqs and (held or shapes):
        raise ValueError(f"the training review holds back every training window ({len(held)} suspicious templates, "
                         f"{len(shapes)} session shapes): "
                         "answer it (GET /api/v1/streams/NAME/review) or post more lines in train mode")
    return data, last, len(items)


def _live_row(session: Session, stream_id: int) -> ModelVersion | None:
    return session.execute(
        select(ModelVersion).where(ModelVersion.stream_id == stream_id, ModelVersion.kind == "loggpt",
                                   ModelVersion.live == True)  # noqa: E712
    ).scalars().first()


def _train(services: Services, job_id: int, stream_id: int, mode: str, progress: Any) -> dict:
    engine = services.engine
    registry = services.registry
    with Session(engine) as session:
        stream = session.get(Stream, stream_id)
        if stream is None:
            raise LookupError(f"stream {stream_id} was deleted")
        live = _live_row(session, stream_id)
        after = int((live.metrics or {}).get("last_window_id", 0)) if (live and mode == "nightly") else 0
        next_version = (session.execute(
            select(func.max(ModelVersion.version)).where(ModelVersion.stream_id == stream_id,
                                                         ModelVersion.kind == "loggpt")
        ).scalar() or 0) + 1
    model = registry.get(stream)
    with store.write_session(engine) as session:
        data, last_window_id, n_review = training_data(session, stream_id, model, after,
                                                       review=not (mode == "nightly" and model.trained))
    if mode == "nightly" and model.trained:
        if not data.train_seqs:
            return {"message": "nothing new to learn since the live version", "promoted": False}
        candidate = model.fine_tune(data, progress)
    else:
        candidate = model.fit_candidate(data, progress)
    # the product's rule (StreamModel.adopt applies it too); here the version is on disk before it goes live
    promote, reason = model.should_promote(candidate)
    held = sorted(model.excluded_templates())
    held_shapes = sorted(sorted(s) for s in model.excluded_shapes())
    candidate.metrics.update({"promoted": promote, "reason": reason, "last_window_id": last_window_id,
                              "n_anomalies": len(data.anomaly_seqs), "review_items": n_review,
                              "review_held_back": held, "review_held_back_shapes": held_shapes})
    progress(0.96, "saving")
    rel = f"versions/{next_version}"
    model.save_version(registry.stream_dir(stream_id) / rel, candidate, next_version)
    if promote:
        model.promote(candidate, next_version)
        registry.save(stream_id)
    elif not model.trained:  # a first model kept back: the stream says why ("calibrating")
        model.calibration_note = reason
        registry.save(stream_id)
    t = ModelVersion.__table__
    with store.write_session(engine) as session:
        if promote:
            session.execute(update(t).where(t.c.stream_id == stream_id, t.c.kind == "loggpt").values(live=False))
        session.add(ModelVersion(stream_id=stream_id, kind="loggpt", version=next_version, path=rel,
                                 metrics=_jsonable(candidate.metrics), live=promote, job_id=job_id))
        events.publish(session, stream_id, "model")  # other replicas reload the stream
    message = f"version {next_version} {'promoted' if promote else 'kept back'}: {reason}"
    m = candidate.metrics
    if m.get("val_fpr") is not None:
        message += (f"; validation FPR {m['val_fpr']:.4f} against a target of {m['target_fpr']:.4f} "
                    f"on {m.get('n_val', 0):,} held-back windows, K={candidate.k}")
    if held or held_shapes:
        message += (f"; {len(held)} suspicious template(s) and {len(held_shapes)} session shape(s) held back "
                    f"until reviewed (GET /api/v1/streams/{stream.name}/review)")
    log.info("stream %s: %s", stream.name, message)
    return {"version": next_version, "promoted": promote, "message": message, "metrics": _jsonable(candidate.metrics)}


def _jsonable(d: dict) -> dict:
    """Metrics with numpy scalars turned into plain numbers."""
    out = {}
    for k, v in d.items():
        if hasattr(v, "item"):
            v = v.item()
        out[k] = v
    return out


# --------------------------------------------------------------------------- rollback


def rollback(services: Services, stream_id: int, version: int) -> None:
    """Make LogGPT version `version` of the stream live again (its K and RAPID threshold too).

    Raises LookupError when the stream has no such version. The RAPID core set and the parser
    keep everything learned since.
    """
    engine = services.engine
    with Session(engine) as session:
        stream = session.get(Stream, stream_id)
        row = session.execute(
            select(ModelVersion).where(ModelVersion.stream_id == stream_id, ModelVersion.kind == "loggpt",
                                       ModelVersion.version == version)
        ).scalars().first()
        if stream is None or row is None:
            raise LookupError(f"stream {stream_id} has no LogGPT version {version}")
        path = row.path
    registry = services.registry
    with _stream_lock(services, stream_id):
        model = registry.get(stream)
        model.use_version(registry.stream_dir(stream_id) / path)
        registry.save(stream_id)
        t = ModelVersion.__table__
        with store.write_session(engine) as session:
            session.execute(update(t).where(t.c.stream_id == stream_id, t.c.kind == "loggpt").values(live=False))
            session.execute(update(t).where(t.c.stream_id == stream_id, t.c.kind == "loggpt",
                                            t.c.version == version).values(live=True))
            events.publish(session, stream_id, "model")
    log.info("stream %s: rolled back to LogGPT version %d", stream.name, version)
