"""RAPID (No et al. 2023, arXiv 2311.05160): is this masked text close to a known normal one?

Normal texts form the *core set*. A query is embedded token by token (see `embedding.py`);
FAISS finds the k normals whose pooled vectors are nearest (cosine); against each, token
MaxSim = mean over query tokens of the token's best cosine among the normal's tokens. The
anomaly score is 1 - the best MaxSim over the k, clipped to [0, 1].

The instant path never touches the model: a text known exactly as normal scores 0.0 and a
text seen before answers from a bounded cache. Only new texts are embedded, once per call;
`score(..., embed=False)` leaves them unscored (NaN) for a background encoder, and
`add_normal(..., defer=True)` makes normals exact at once and indexes them later
(`index_pending`), so a request never waits for the model.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

FORMAT = "logsense.rapid"
VERSION = 1


@dataclass
class RapidConfig:
    k: int = 5  # nearest normals (by pooled cosine) that get the token-level MaxSim
    cache_size: int = 200_000  # scores of non-normal texts kept; the older half goes when full
    store_dtype: str = "float16"  # core-set token vectors on disk and in memory (float16 halves RAM)
    index_batch: int = 512  # deferred normals embedded per `index_pending` call


@dataclass
class Explanation:
    score: float  # as `score([text])` would give
    nearest_text: str | None  # the normal with the best MaxSim (None: empty core set)
    nearest_score: float  # its MaxSim similarity; score = 1 - nearest_score unless exact
    worst_tokens: list[tuple[str, float]] = field(default_factory=list)  # least matched query tokens, worst first (<= 5)
    exact: bool = False  # the text is a known normal, word for word


def session_text(masked_lines: list[str]) -> str:
    """A session as one text: its unique masked lines, sorted, joined by " ; ".

    This is how RAPID scores an HDFS block: as the set of distinct events it saw. Sorted, not in
    first-seen order, so that the order in which concurrent lines happened to be logged (or a
    time-sorted file broke its ties) does not make a known session look new; order is LogGPT's
    part. The embedder keeps only the first `max_seq_length` wordpieces (256 by default, ~10-15
    lines), so lines past that point are invisible to the similarity: a session that differs
    from a normal one only there scores near 0. Exact matching still sees the whole text.
    """
    return " ; ".join(sorted(set(masked_lines)))


class RapidScorer:
    """Retrieval-based anomaly score of masked texts against a growing set of normal ones."""

    def __init__(self, embedder, config: RapidConfig | None = None):
        self.embedder = embedder
        self.config = config or RapidConfig()
        self._lock = threading.RLock()
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        dim = self.embedder.dim
        self._texts: list[str] = []  # core set, in insertion order
        self._row: dict[str, int] = {}  # core text -> its row
        self._exact_only: dict[str, None] = {}  # normals remembered word for word, not indexed
        self._unindexed: dict[str, None] = {}  # of those, the ones waiting for `index_pending`
        self._indexing: dict[str, None] = {}  # of those, the ones an `index_pending` call is embedding
        self._vecs: list[np.ndarray] = []  # core text i's token vectors (T_i, D), store_dtype: no spare capacity
        self._n_tok = 0
        self._index = faiss.IndexFlatIP(dim)  # pooled vectors, one per core text
        self._cache: dict[str, float] = {}  # non-normal text -> score under the current core set

    def _append(self, texts: list[str], vectors: list[np.ndarray]) -> None:
        """Add embedded texts to the core set (token vectors, FAISS)."""
        if not texts:
            return
        stored = [np.ascontiguousarray(v, dtype=self.config.store_dtype) for v in vectors]
        for text, v in zip(texts, stored):
            self._row[text] = len(self._texts)
            self._texts.append(text)
            self._vecs.append(v)
            self._n_tok += len(v)
            self._exact_only.pop(text, None)
            self._unindexed.pop(text, None)
        # Pool the stored (rounded) vectors, so a loaded scorer rebuilds the very same index.
        pooled = np.stack([self.embedder.pool(v.astype(np.float32)) for v in stored])  # (n, D)
        self._index.add(np.ascontiguousarray(pooled, dtype=np.float32))

    def fit(self, normal_texts: list[str], known: "RapidScorer | None" = None) -> "RapidScorer":
        """Start over with these normal texts as the core set (duplicates embedded once). Texts in
        `known`'s core set (same embedder) take its vectors instead of being embedded again."""
        texts = list(dict.fromkeys(normal_texts))
        reused = known.vectors(texts) if known is not None else {}
        fresh = [t for t in texts if t not in reused]
        embedded = dict(zip(fresh, self.embedder.encode(fresh))) if fresh else {}
        with self._lock:
            self._reset()
            self._append(texts, [reused[t] if t in reused else embedded[t] for t in texts])
        return self

    def vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored token vectors of those `texts` that are in the core set."""
        with self._lock:
            return {t: self._vecs[self._row[t]] for t in texts if t in self._row}

    def add_normal(self, texts: list[str], index: bool = True, defer: bool = False) -> None:
        """Teach normal texts (training data, operator feedback). They score 0.0 from now on.

        index=True also adds them to the similarity core set, so texts *like* them score lower;
        cached scores are dropped, as they may now be too high. index=False only remembers the
        exact text: nothing else changes. defer=True (with index) remembers them exactly now and
        embeds them on the next `index_pending` calls: the caller never waits for the model.
        """
        texts = list(dict.fromkeys(texts))
        with self._lock:  # deferred ones stay deferred: `index_pending` embeds them
            new = [t for t in texts if t not in self._row and t not in self._unindexed and t not in self._indexing]
            if not index or defer:
                for t in new:
                    if index:
                        self._unindexed[t] = None
                    self._exact_only[t] = None
                    self._cache.pop(t, None)
                return
        self._index_texts(new)

    def absorb(self, other: "RapidScorer") -> None:
        """Take every normal `other` (same embedder) knows and this one does not: its core texts
        with their vectors (nothing is embedded again), its exact-only ones as exact, its
        deferred ones still deferred."""
        with other._lock:
            core = list(zip(other._texts, other._vecs))
            exact, deferred = list(other._exact_only), set(other.unindexed_texts)
        with self._lock:
            add = [(t, v) for t, v in core if t not in self._row]
            self._append([t for t, _ in add], [v for _, v in add])
            if add:
                self._cache.clear()
            for t in exact:
                if t not in self._row:
                    self._exact_only[t] = None
                    self._cache.pop(t, None)
                    if t in deferred:
                        self._unindexed[t] = None

    def _index_texts(self, new: list[str]) -> None:
        vectors = self.embedder.encode(new) if new else []  # outside the lock: the slow part
        with self._lock:
            keep = [(t, v) for t, v in zip(new, vectors) if t not in self._row]  # another thread may have won
            self._append([t for t, _ in keep], [v for _, v in keep])
            if keep:
                self._cache.clear()

    def index_pending(self, limit: int | None = None) -> int:
        """Embed up to `limit` (default `config.index_batch`) deferred normals into the core set;
        returns how many. The background encoder calls it until it returns 0."""
        with self._lock:  # taken out while embedded, so two callers never embed the same text
            batch = list(itertools.islice(self._unindexed, limit or self.config.index_batch))
            for t in batch:
                del self._unindexed[t]
                self._indexing[t] = None
        try:
            self._index_texts(batch)
        except BaseException:
            with self._lock:
                for t in batch:
                    if t not in self._row:
                        self._unindexed[t] = None
            raise
        finally:
            with self._lock:
                for t in batch:
                    self._indexing.pop(t, None)
        return len(batch)

    @property
    def n_unindexed(self) -> int:
        """Deferred normals still waiting to be embedded (they already score 0.0)."""
        return len(self._unindexed) + len(self._indexing)

    # ------------------------------------------------------------------ scoring

    def score(self, texts: list[str], embed: bool = True, reuse: "RapidScorer | None" = None) -> np.ndarray:
        """Anomaly score in [0, 1] per text (float32); 0.0 for a known normal. embed=False: a text
        neither known nor cached is not embedded and scores NaN (its verdict is pending). A text
        in `reuse`'s core set (same embedder) takes its vectors instead of being embedded."""
        texts = list(texts)
        known: dict[str, float] = dict.fromkeys(texts)  # type: ignore[arg-type]  # unique, first-seen order
        with self._lock:
            row, exact, cache = self._row, self._exact_only, self._cache
            for t in known:
                if t in row or t in exact:
                    known[t] = 0.0
                else:
                    known[t] = cache.get(t)  # type: ignore[assignment]
        misses = [t for t, s in known.items() if s is None]
        if misses and not embed:
            known.update(dict.fromkeys(misses, float("nan")))
        elif misses:
            reused = reuse.vectors(misses) if reuse is not None else {}
            fresh = [t for t in misses if t not in reused]
            embedded = dict(zip(fresh, self.embedder.encode(fresh))) if fresh else {}  # outside the lock: the slow part
            vectors = [reused[t].astype(np.float32) if t in reused else embedded[t] for t in misses]
            with self._lock:
                scores = self._maxsim_scores(vectors)
                self._remember(misses, scores)
            known.update(zip(misses, scores.tolist()))
        return np.fromiter((known[t] for t in texts), dtype=np.float32, count=len(texts))

    def unknown(self, texts: list[str]) -> list[str]:
        """The distinct texts `score` would have to embed: neither normal nor cached."""
        with self._lock:
            row, exact, cache = self._row, self._exact_only, self._cache
            return [t for t in dict.fromkeys(texts) if t not in row and t not in exact and t not in cache]

    def _remember(self, texts: list[str], scores: np.ndarray) -> None:
        cache, limit = self._cache, self.config.cache_size
        if limit <= 0:
            return
        if len(cache) + len(texts) > limit:  # drop the older half (dicts keep insertion order)
            for t in list(itertools.islice(cache, max(len(cache) // 2, len(cache) + len(texts) - limit))):
                del cache[t]
        for t, s in zip(texts[-limit:], scores[-limit:].tolist()):
            cache[t] = s

    def _neighbours(self, vectors: list[np.ndarray]) -> np.ndarray:
        """Core rows of the k nearest normals by pooled cosine: (n, k), -1 where fewer exist."""
        pooled = np.stack([self.embedder.pool(v) for v in vectors])  # (n, D)
        k = min(self.config.k, len(self._texts))
        _, rows = self._index.search(np.ascontiguousarray(pooled, dtype=np.float32), k)  # (n, k)
        return rows

    def _maxsim(self, q: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """MaxSim of one query against some core rows, and each token's best cosine per row.

        q: (Tq, D) float32, rows: (m,) -> (m,) similarities and m arrays of shape (Tq,).
        All m normals' tokens go through one matmul; reduceat takes the max per normal.
        """
        parts = [self._vecs[r] for r in rows]
        cand = np.concatenate(parts).astype(np.float32)  # (sum Tn, D)
        sims = q @ cand.T  # (Tq, sum Tn): cosine of every query token with every candidate token
        bounds = np.cumsum([0] + [len(p) for p in parts])[:-1]
        best = np.maximum.reduceat(sims, bounds, axis=1)  # (Tq, m): each token's best match per normal
        return best.mean(axis=0), list(best.T)

    def _maxsim_scores(self, vectors: list[np.ndarray]) -> np.ndarray:
        if not self._texts:
            return np.ones(len(vectors), dtype=np.float32)
        out = np.empty(len(vectors), dtype=np.float32)
        for i, (q, rows) in enumerate(zip(vectors, self._neighbours(vectors))):
            sim, _ = self._maxsim(q, rows[rows >= 0])
            out[i] = sim.max()
        return np.clip(1.0 - out, 0.0, 1.0)

    def explain(self, text: str) -> Explanation:
        """Why `text` scores what it does: its nearest normal and its least matched tokens."""
        if self.is_normal(text):
            return Explanation(0.0, text, 1.0, [], exact=True)
        q = self.embedder.encode([text])[0]
        with self._lock:
            if not self._texts:
                return Explanation(1.0, None, 0.0, [], exact=False)
            rows = self._neighbours([q])[0]
            rows = rows[rows >= 0]
            sims, per_token = self._maxsim(q, rows)
            best = int(np.argmax(sims))
            nearest = self._texts[int(rows[best])]
        tokens = self.embedder.tokens(text)
        token_sims = per_token[best]
        worst = np.argsort(token_sims, kind="stable")[:5]
        return Explanation(
            score=float(np.clip(1.0 - np.float32(sims[best]), 0.0, 1.0)),
            nearest_text=nearest,
            nearest_score=float(sims[best]),
            worst_tokens=[(tokens[i], float(token_sims[i])) for i in worst],
            exact=False,
        )

    # ------------------------------------------------------------------ lookups

    def is_normal(self, text: str) -> bool:
        """Known normal, word for word (core set or remembered with index=False)."""
        return text in self._row or text in self._exact_only

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def normal_texts(self) -> list[str]:
        """The core set (indexed normals), in the order they were added."""
        return list(self._texts)

    @property
    def exact_texts(self) -> list[str]:
        """Normals remembered only word for word (add_normal(..., index=False)), and deferred
        ones not embedded yet (`unindexed_texts`)."""
        return list(self._exact_only)

    @property
    def unindexed_texts(self) -> list[str]:
        """Deferred normals (add_normal(..., defer=True)) still waiting for `index_pending`."""
        return [*self._unindexed, *self._indexing]

    def memory_bytes(self) -> int:
        """About what the scorer holds in memory: token vectors, the FAISS index, texts and caches."""
        with self._lock:
            vectors = self._n_tok * self.embedder.dim * np.dtype(self.config.store_dtype).itemsize
            pooled = len(self._texts) * self.embedder.dim * 4
            texts = sum(map(len, self._texts)) + sum(map(len, self._exact_only)) + sum(map(len, self._cache))
            per_entry = 120 * (len(self._texts) + len(self._exact_only) + len(self._cache))  # dict slots, str and array heads
            return int(vectors + pooled + texts + per_entry)

    # ------------------------------------------------------------------ disk

    def save(self, path: str | os.PathLike) -> None:
        """Write the scorer to directory `path`, atomically (`models.atomic.atomic_dir`).

        The FAISS index is not written: `load` rebuilds it from the stored token vectors.
        """
        from logsense.models.atomic import atomic_dir

        with self._lock:  # a snapshot (appended vectors never change): the slow writes below hold no lock
            texts, vecs = list(self._texts), list(self._vecs)
            exact, unindexed = list(self._exact_only), self.unindexed_texts
        with atomic_dir(path) as tmp:
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "config": asdict(self.config),
                "embedder": {"name": getattr(self.embedder, "name", None), "dim": self.embedder.dim},
                "n_texts": len(texts),
            }
            (tmp / "texts.json").write_text(json.dumps(texts))
            (tmp / "exact.json").write_text(json.dumps(exact))
            (tmp / "unindexed.json").write_text(json.dumps(unindexed))
            _save_rows(tmp / "tokens.npy", vecs, self.embedder.dim, self.config.store_dtype)
            np.save(tmp / "offsets.npy", np.cumsum([0] + [len(v) for v in vecs], dtype=np.int64), allow_pickle=False)
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike, embedder) -> "RapidScorer":
        """Read a scorer written by `save`; `embedder` must be the model it was built with."""
        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{VERSION} directory: {meta.get('format')} v{meta.get('version')}")
        saved = meta["embedder"]
        if saved["dim"] != embedder.dim or saved["name"] != getattr(embedder, "name", None):
            raise ValueError(f"{path}: built with {saved}, not {getattr(embedder, 'name', None)} (dim {embedder.dim})")
        scorer = cls(embedder, RapidConfig(**meta["config"]))
        texts = json.loads((path / "texts.json").read_text())
        tokens = np.load(path / "tokens.npy", allow_pickle=False)
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        if len(offsets) != len(texts) + 1 or offsets[-1] != len(tokens):
            raise ValueError(f"{path}: texts, offsets and tokens disagree")
        scorer._append(texts, [tokens[s:e] for s, e in zip(offsets[:-1], offsets[1:])])
        scorer._exact_only = dict.fromkeys(json.loads((path / "exact.json").read_text()))
        if (path / "unindexed.json").exists():  # written since deferred indexing (older ones had none)
            scorer._unindexed = dict.fromkeys(json.loads((path / "unindexed.json").read_text()))
        return scorer


def _save_rows(path: Path, parts: list[np.ndarray], dim: int, dtype: str) -> None:
    """`np.save` of the parts stacked, written part by part: no second copy of the core set in memory."""
    dtype_ = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype_), "fortran_order": False,
              "shape": (sum(len(v) for v in parts), dim)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for v in parts:
            f.write(np.ascontiguousarray(v, dtype=dtype_).tobytes())
