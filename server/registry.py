"""The detectors of every stream: one `models.stream.StreamModel` per stream, shared by the API,
the worker and the scheduler (no globals: the registry is `Services.registry`, `app.state.registry`).

On disk, per stream (`settings.stream_dir(id)`):
- `live/`: parser, RAPID core sets and thresholds as they are now. The parser is saved before
  a batch that created templates is committed (template ids in the database must stay valid);
  the RAPID core sets are saved by the worker every `SAVE_EVERY_SECONDS` when changed, and at
  shutdown.
- `versions/<n>/`: each trained LogGPT (checkpoint, K, RAPID threshold, metrics).

The database is the truth: on load, the RAPID core set is topped up with every train-mode or
operator-normal line it lacks, refuted templates and sessions are re-read, and the live LogGPT
is the one whose `model_versions` row is live. A crash loses no feedback.

The embedder and the models load in a background thread at start; `/readyz` says "not ready"
until they are, and ingest waits for them (up to `LOAD_WAIT_SECONDS`, then 503).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import store
from logsense.server.settings import Settings
from logsense.server.tables import Anomaly, Feedback, ModelVersion, Stream, Window

log = logging.getLogger("logsense.registry")

LOAD_WAIT_SECONDS = 120.0
SAVE_EVERY_SECONDS = 60.0
GC_YOUNG_THRESHOLD = 50_000  # tracked allocations between young collections (CPython's default: 700)


class ModelsUnavailable(RuntimeError):
    """The detection models cannot be used (still loading, or failed to load): a 503, not a 500."""


class Registry:
    """Stream id -> StreamModel, loaded lazily (and all at start, in the background)."""

    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self._models: dict[int, Any] = {}
        self._stamps: dict[int, Any] = {}  # stream.updated_at the model was configured from
        self._dirty: dict[int, bool] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._embedder: Any = None
        self._loaded = threading.Event()
        self._error: str | None = None
        self._last_save = time.monotonic()
        self._thread: threading.Thread | None = None
        # In a cluster only a stream's owner (a processor) writes `live/`; the other roles read it.
        self.writes_live = settings.role in ("all", "processor")
        self.templates_in_database = settings.cluster  # `stream_parsers`, committed with each batch

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Load the embedder and every stream's model in a background thread."""
        self._thread = threading.Thread(target=self._load_all, name="logsense-models", daemon=True)
        self._thread.start()

    def _load_all(self) -> None:
        try:
            from logsense.models.embedding import load_embedder

            self._embedder = load_embedder(self.settings.device)
            with Session(self.engine) as session:
                streams = session.execute(select(Stream)).scalars().all()
            for stream in streams:
                self.get(stream)
            # torch and transformers leave millions of long-lived objects: keep them out of the
            # cyclic GC's full passes, which otherwise cost ingest a third of its time.
            gc.collect()
            gc.freeze()
            # A 1,000-line batch allocates tens of thousands of tuples, lists and dicts that die
            # with it. At the default 700 allocations per young collection they were traversed
            # and promoted several times per batch, and full passes followed (~21 ms each over a
            # trained stream's objects): ~2.4 ms per batch in all. In-process, blocks of batches
            # alternated: medians 51.5 against 53.2 ms per batch, trimmed means 51.9 against 55.2.
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        except Exception as exc:  # noqa: BLE001 (reported by /readyz and ingest)
            log.exception("could not load the detection models")
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._loaded.set()

    def ready_reason(self) -> str | None:
        """For `/readyz`: why the models are not usable yet, or None."""
        if not self._loaded.is_set():
            return "models: loading"
        if self._error:
            return f"models: {self._error}"
        return None

    def embedder(self, wait: float = LOAD_WAIT_SECONDS) -> Any:
        if self._embedder is not None:  # loaded (the loader thread itself asks while loading streams)
            return self._embedder
        if not self._loaded.wait(wait):
            raise ModelsUnavailable("detection models are still loading; retry shortly")
        if self._embedder is None:
            raise ModelsUnavailable(f"detection models unavailable: {self._error}")
        return self._embedder

    # ------------------------------------------------------------------ per stream

    def _lock(self, stream_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(stream_id, threading.Lock())

    def peek(self, stream_id: int) -> Any | None:
        """The model if loaded, without loading it."""
        return self._models.get(stream_id)

    def state(self, stream: Stream) -> tuple[str, str]:
        """(learning | calibrating | detecting | loading, why): `StreamModel.state` (loading: the
        detection models are still loading at start)."""
        model = self._models.get(stream.id)
        if model is None:
            try:
                model = self.get(stream)
            except ModelsUnavailable as exc:
                return "loading", str(exc)
        return model.state(stream.config().train_mode)

    def get(self, stream: Stream) -> Any:
        """The stream's model, loaded (or created) on first use; changed settings are applied."""
        model = self._models.get(stream.id)
        if model is not None and self._stamps.get(stream.id) == stream.updated_at:
            return model
        embedder = self.embedder()
        with self._lock(stream.id):
            model = self._models.get(stream.id)
            try:
                config = stream.config().stream_config()
                if model is None:
                    model = self._load(stream.id, config, embedder)
                    self._models[stream.id] = model
                else:
                    model.configure(config)
            except ModelsUnavailable:
                raise
            except Exception as exc:
                log.exception("could not load the model of stream %s", stream.name)
                raise ModelsUnavailable(f"model of stream {stream.name!r} unavailable: {type(exc).__name__}: {exc}") from exc
            self._stamps[stream.id] = stream.updated_at
            return model

    def _load(self, stream_id: int, config: Any, embedder: Any) -> Any:
        from logsense.models.stream import StreamModel

        live = self.live_dir(stream_id)
        if (live / "stream.json").exists():
            model = StreamModel.load(live, embedder, config)
        else:
            model = StreamModel(config, embedder)
        with Session(self.engine) as session:
            row = session.execute(
                select(ModelVersion).where(ModelVersion.stream_id == stream_id, ModelVersion.kind == "loggpt",
                                           ModelVersion.live == True)  # noqa: E712
            ).scalars().first()
            if row is not None and model.version != row.version:
                model.use_version(self.stream_dir(stream_id) / row.path)
            if self.templates_in_database and (state := store.templates_of(session, stream_id)) is not None:
                model.use_templates(state)  # the ids the stored lines carry, whoever stored them
            store.read_review(session, stream_id, model)  # the training review's answers
            known = model.rapid
            missing = [t for t in store.normal_texts(session, stream_id) if not known.is_normal(t)]
            if missing:
                log.info("stream %s: %d normal texts to add to the RAPID core set", stream_id, len(missing))
                model.learn_normal(missing, defer=True)  # the encoder embeds them: loading does not wait
            templates = session.execute(
                select(Anomaly.template_id)
                .join(Feedback, Feedback.anomaly_id == Anomaly.id)
                .where(Anomaly.stream_id == stream_id, Feedback.label == "normal", Feedback.scope == "template")
            ).scalars().all()
            model.learn_normal([], templates=[t for t in templates if t is not None])
            ids = set(session.execute(
                select(Window.id).where(Window.stream_id == stream_id, Window.label == "normal")
            ).scalars().all())  # refuted windows
            backfill = model.trained and config.session_regex is not None and not model.has_trained_sessions
            if backfill:  # trained before the session-level normal set existed: fill it from the
                # stored normal sessions, or every closed session would look new until the next training
                ids.update(store.normal_window_ids(session, stream_id))
                log.info("stream %s: filling the session-level normal set from %d stored windows", stream_id, len(ids))
            if ids:  # each part with the parts before it, as training learns them (models.stream.with_context)
                from logsense.models.stream import ClosedWindow, content_text, with_context

                lines = store.window_lines(session, sorted(ids))
                keys = store.window_keys(session, sorted(ids)) if backfill else {}
                parts = [ClosedWindow(key=keys.get(w, f"window:{w}"), seq=[x["template_id"] for x in lines[w]],
                                      masked=[x["masked"] for x in lines[w]]) for w in sorted(ids)]
                held = model.excluded_templates()  # the training review's, as training leaves them out
                judged = with_context(parts)
                model.learn_normal_sessions([content_text(w.context_masked + w.masked) for w in judged
                                             if w.masked and not held.intersection(w.context_seq + w.seq)])
                texts = {t for w in judged for t in w.context_masked + w.masked}  # a normal session's lines are normal
                model.learn_normal([t for t in sorted(texts) if not model.rapid.is_normal(t)], defer=True)
            if backfill:
                model.has_trained_sessions = True
                self.mark_dirty(stream_id)
        return model

    def drop(self, stream_id: int) -> None:
        """Forget a deleted stream's model (a `stream_deleted_hooks` entry)."""
        with self._guard:
            self._models.pop(stream_id, None)
            self._stamps.pop(stream_id, None)
            self._dirty.pop(stream_id, None)
            self._locks.pop(stream_id, None)

    def loaded(self) -> dict[int, Any]:
        return dict(self._models)

    # ------------------------------------------------------------------ disk

    def stream_dir(self, stream_id: int) -> Path:
        return self.settings.stream_dir(stream_id)

    def live_dir(self, stream_id: int) -> Path:
        return self.stream_dir(stream_id) / "live"

    def version_dir(self, stream_id: int, version: int) -> Path:
        return self.stream_dir(stream_id) / "versions" / str(version)

    def mark_dirty(self, stream_id: int) -> None:
        """The RAPID core set changed: save it at the next `save_dirty`."""
        self._dirty[stream_id] = True

    def refresh_templates(self, stream: Stream) -> None:
        """A cluster: take the templates the stream's owner created since this process loaded them."""
        model = self._models.get(stream.id)
        if model is None or not self.templates_in_database:
            return
        with Session(self.engine) as session:
            state = store.templates_of(session, stream.id, newer_than=model.n_templates())
        if state is not None:
            model.use_templates(state)

    def save_parser(self, stream_id: int) -> None:
        model = self._models.get(stream_id)
        if model is not None and self.writes_live:
            model.save(self.live_dir(stream_id), parts=("parser",))

    def save(self, stream_id: int) -> None:
        model = self._models.get(stream_id)
        if model is None or not self.writes_live:
            return
        self._dirty[stream_id] = False
        model.save(self.live_dir(stream_id), parts=("parser", "rapid"))

    def save_dirty(self, force: bool = False) -> None:
        """Save changed models (the worker calls this; `force` at shutdown)."""
        if not force and time.monotonic() - self._last_save < SAVE_EVERY_SECONDS:
            return
        self._last_save = time.monotonic()
        for stream_id in [s for s, dirty in self._dirty.items() if dirty]:
            if stream_id not in self._models:
                continue
            try:
                self.save(stream_id)
            except Exception:  # noqa: BLE001 (the database stays the truth; next save retries)
                log.exception("could not save the model of stream %s", stream_id)
                self._dirty[stream_id] = True
