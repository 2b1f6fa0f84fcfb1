"""What LogGPT and DeepLog share: the key vocabulary, misses, top-K calibration, the training loop.

A *sequence* is a list of template ids (ints) in time order: an HDFS session, or a window of
lines. A next-key model reads `<bos> k0 k1 ...` and, before each key, ranks every key it knows;
the actual key's *rank* is how many keys it liked better (0 = its top choice). Under the top-K
rule a key ranked K or worse is a *miss*, and a sequence with a miss is anomalous. A template
the model never saw is `<unk>`, ranked `len(vocab)`, and always a miss.

Sessions end: they are encoded `<bos> ... <eos>`, so a session that stops early (or goes on
after its usual end) shows up as a miss at the end key. Windows are cut by count or time and do
not end, so they get `<bos>` only.

`NextKeyModel` holds the public calls (`fit`, `fine_tune`, `ranks`, `scores`, `calibrate_k`,
`check`, `save` / `load`, `copy`); a subclass (`models.loggpt.LogGPT`,
`models.baselines.deeplog.DeepLog`) brings the network, how sequences become training batches,
and how a batch becomes next-key logits.
"""

from __future__ import annotations

import copy as _copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from logsense.models.policy import TARGET_FPR

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
END = "<eos>"  # how a miss names the end key (Miss.actual / Miss.expected)


# ---------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Template ids <-> token ids. Specials take 0..3; template ids follow in order of arrival.

    `grow` only appends, so a model fine-tuned on a grown vocabulary keeps every old id.
    """

    def __init__(self, keys: Iterable[int] = ()):
        self.keys: list[int] = []  # token id 4 + i <-> template id keys[i]
        self._ids: dict[int, int] = {}
        self.grow(keys)

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.keys)

    def __contains__(self, key: int) -> bool:
        return key in self._ids

    def grow(self, new_keys: Iterable[int]) -> int:
        """Append the keys not yet known (in order of first appearance); returns how many were new."""
        added = 0
        for key in new_keys:
            if key not in self._ids:
                self._ids[key] = len(SPECIALS) + len(self.keys)
                self.keys.append(key)
                added += 1
        return added

    def token(self, key: int) -> int:
        """The token id of a template id; `<unk>` when unseen."""
        return self._ids.get(key, UNK)

    def key(self, token: int) -> int | str:
        """The template id of a token id; specials come back as their names ("<eos>", ...)."""
        token = int(token)
        return SPECIALS[token] if token < len(SPECIALS) else self.keys[token - len(SPECIALS)]

    def encode(self, seq: Sequence[int], sessions: bool) -> list[int]:
        """`<bos> tokens <eos>` for a session, `<bos> tokens` for a window (a window does not end)."""
        tokens = [BOS] + [self._ids.get(k, UNK) for k in seq]
        return tokens + [EOS] if sessions else tokens

    def to_dict(self) -> dict:
        return {"specials": list(SPECIALS), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        if tuple(d.get("specials", SPECIALS)) != SPECIALS:
            raise ValueError(f"vocabulary with other specials {d.get('specials')}")
        return cls(d["keys"])


def encode(vocab: Vocabulary, seq: Sequence[int], sessions: bool) -> list[int]:
    """Module-level spelling of `Vocabulary.encode`."""
    return vocab.encode(seq, sessions)


def n_targets(seq: Sequence[int], sessions: bool) -> int:
    """Predictions per sequence: one per key, plus the end key for a session."""
    return len(seq) + (1 if sessions else 0)


# ---------------------------------------------------------------------------- verdicts


@dataclass
class Miss:
    """A key outside the top-K. `actual`/`expected` are template ids, or "<eos>" for the end key."""

    position: int  # index of the key in the sequence; len(seq) for the end key of a session
    actual: int | str
    expected: list = field(default_factory=list)  # the model's top-K, best first
    unseen: bool = False  # the actual template was never seen in training (<unk>)


@dataclass
class CheckResult:
    anomalous: bool
    misses: list[Miss] = field(default_factory=list)


def calibrate_top_k(max_ranks: Sequence[float], target_fpr: float = TARGET_FPR, max_k: int | None = None) -> int:
    """The smallest K with at most `target_fpr` of the sequences having a key ranked outside the top-K.

    `max_ranks` holds each validation normal sequence's worst rank (0 = the model's top choice;
    an unseen key is `inf` or the vocabulary size). This is `models.evaluation.threshold_at_fpr`
    on those scores with K = t + 1. Unseen keys miss at every K, so when they alone exceed the
    budget no K meets it and the answer is `max_k` (everything the model knows is expected).
    """
    from logsense.models.policy import threshold_at_fpr

    scores = np.asarray(max_ranks, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("calibrate_top_k needs at least one validation sequence")
    k = threshold_at_fpr(scores, target_fpr) + 1
    if max_k is not None:
        k = min(k, max_k)
    if not math.isfinite(k):
        raise ValueError("no finite K meets the rate (unseen keys); pass max_k")
    return max(1, int(k))


# ---------------------------------------------------------------------------- training loop


def train_early_stopping(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch_batches: Callable[[int], list],
    batch_loss: Callable[[Any], torch.Tensor],
    val_loss: Callable[[], float] | None,
    max_epochs: int,
    patience: int,
    progress: bool | None = None,
    desc: str = "training",
    clip: float = 1.0,
) -> list[dict]:
    """Epochs of minibatch steps; stops after `patience` epochs without a better validation
    loss and leaves `net` with its best weights. Without `val_loss`, runs all epochs and keeps
    the last. `progress=None` shows a tqdm bar only on a terminal. Returns one dict per epoch.
    """
    from tqdm.auto import tqdm

    history: list[dict] = []
    best, best_state, stale = math.inf, None, 0
    bar = tqdm(total=max_epochs, desc=desc, unit="epoch", disable=(None if progress is None else not progress), leave=False)
    try:
        for epoch in range(max_epochs):
            net.train()
            total, n = 0.0, 0
            for batch in epoch_batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = batch_loss(batch)
                loss.backward()
                if clip:
                    nn.utils.clip_grad_norm_(net.parameters(), clip)
                optimizer.step()
                total, n = total + float(loss.detach()), n + 1
            row = {"epoch": epoch, "train_loss": total / max(n, 1)}
            if val_loss is not None:
                row["val_loss"] = float(val_loss())
                if row["val_loss"] < best - 1e-6:
                    best, stale = row["val_loss"], 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
            history.append(row)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
            if val_loss is not None and stale >= patience:
                break
    finally:
        bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history


def chronological_split(seqs: list, fraction: float) -> tuple[list, list]:
    """(first part, last `fraction`): validation comes after training in time. No split below 1."""
    n_val = int(len(seqs) * fraction)
    if n_val == 0 or n_val == len(seqs):
        return list(seqs), []
    return list(seqs[:-n_val]), list(seqs[-n_val:])


def resolve_device(device: str) -> torch.device:
    """"auto": cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------- the shared model


@dataclass
class Scored:
    """A batch run through a network: next-key logits of the scored targets, flattened."""

    logits: torch.Tensor  # (n, V)
    targets: torch.Tensor  # (n,) token ids
    seq: np.ndarray  # (n,) index of the sequence in the batch's input list
    pos: np.ndarray  # (n,) index of the target within its sequence (0 = first key)


class NextKeyModel:
    """Public calls of a next-key anomaly detector; subclasses supply the network.

    Subclass hooks: `_new_net()`, `_grow_net(n_tokens)`, `_batches(token_seqs, shuffle, rng)`
    (a list of batches; every target of every sequence appears exactly once per epoch) and
    `_run(batch) -> Scored`.
    """

    KIND = "next-key"
    FORMAT_VERSION = 1
    config_class: type = object

    def __init__(self, config):
        self.config = config
        self.device = resolve_device(getattr(config, "device", "cpu"))
        self.vocab = Vocabulary()
        self.net: nn.Module | None = None
        self.k: int | None = None  # top-K for `check`; set by `calibrate_k` (fit calibrates it)
        self.sessions = True
        self.history: list[dict] = []

    # -- hooks -----------------------------------------------------------------------------
    def _new_net(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def _grow_net(self, n_tokens: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _batches(self, token_seqs: list[list[int]], shuffle: bool, rng: np.random.Generator | None) -> list:
        raise NotImplementedError  # pragma: no cover - interface

    def _run(self, batch) -> Scored:  # pragma: no cover - interface
        raise NotImplementedError

    def _after_fit(self, train_tokens: list[list[int]], val_seqs: list[list[int]]) -> None:
        """Extra training after the language-model epochs (LogGPT's reinforcement step)."""

    # -- training ------------------------------------------------------------------------------
    def _torch_rng(self):
        """Seeded torch randomness that leaves the caller's global generator untouched."""
        return torch.random.fork_rng(devices=[])

    def fit(self, train_seqs: Sequence[Sequence[int]], val_seqs: Sequence[Sequence[int]] | None = None,
            sessions: bool = True) -> "NextKeyModel":
        """Train from scratch on normal sequences; K is then calibrated on the validation ones.

        Without `val_seqs`, the last `config.val_fraction` of `train_seqs` (in the given, time
        order) is held back for early stopping and K.
        """
        train = [list(s) for s in train_seqs]
        if not train:
            raise ValueError("fit needs at least one training sequence")
        val = [list(s) for s in val_seqs] if val_seqs else None
        if val is None:
            train, val = chronological_split(train, self.config.val_fraction)
        self.sessions = bool(sessions)
        self.vocab = Vocabulary(k for s in train for k in s)
        with self._torch_rng():
            torch.manual_seed(self.config.seed)
            self.net = self._new_net().to(self.device)
            self._train(train, val, self.config.max_epochs, self.config.lr, "fit")
            self._after_fit([self.vocab.encode(s, self.sessions) for s in train], val)
        self.k = self.calibrate_k(val, self.config.target_fpr) if val else None
        return self

    def fine_tune(self, seqs: Sequence[Sequence[int]], val_seqs: Sequence[Sequence[int]] | None = None,
                  epochs: int | None = None, lr: float | None = None) -> "NextKeyModel":
        """Go on training from the current weights. New templates grow the vocabulary (old ids
        keep their rows). K is re-calibrated when there are validation sequences."""
        if self.net is None:
            return self.fit(seqs, val_seqs, self.sessions)
        train = [list(s) for s in seqs]
        val = [list(s) for s in val_seqs] if val_seqs else None
        if val is None:
            train, val = chronological_split(train, self.config.val_fraction)
        if self.vocab.grow(k for s in train for k in s):
            self._grow_net(len(self.vocab))
        with self._torch_rng():
            torch.manual_seed(self.config.seed + 1 + len(self.history))
            self._train(train, val, epochs or self.config.max_epochs, lr or self.config.lr, "fine-tune")
        if val:
            self.k = self.calibrate_k(val, self.config.target_fpr)
        return self

    def _train(self, train: list[list[int]], val: list[list[int]], epochs: int, lr: float, desc: str) -> None:
        rng = np.random.default_rng(self.config.seed + len(self.history))
        train_tokens = [self.vocab.encode(s, self.sessions) for s in train]
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=getattr(self.config, "weight_decay", 0.0))

        def loss_of(batch) -> torch.Tensor:
            out = self._run(batch)
            return F.cross_entropy(out.logits, out.targets)

        self.history += train_early_stopping(
            self.net, optimizer, lambda epoch: self._batches(train_tokens, True, rng), loss_of,
            (lambda: self.validation_loss(val)) if val else None, epochs, self.config.patience,
            getattr(self.config, "progress", None), f"{self.KIND} {desc}")

    @torch.no_grad()
    def validation_loss(self, seqs: Sequence[Sequence[int]]) -> float:
        """Mean next-key cross-entropy (nats per key) on `seqs`."""
        self.net.eval()
        total, n = 0.0, 0
        for batch in self._batches([self.vocab.encode(list(s), self.sessions) for s in seqs], False, None):
            out = self._run(batch)
            total += float(F.cross_entropy(out.logits, out.targets, reduction="sum"))
            n += len(out.targets)
        return total / max(n, 1)

    # -- scoring -------------------------------------------------------------------------------
    def _allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens a next key can be (templates, and the end key for sessions)."""
        allowed = torch.ones(len(self.vocab), dtype=torch.bool, device=self.device)
        allowed[[PAD, BOS, UNK]] = False
        if not self.sessions:
            allowed[EOS] = False
        return allowed

    @torch.no_grad()
    def _predict(self, seqs: Sequence[Sequence[int]], top: int = 0) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Rank of every actual next key and, with `top`, the model's `top` best tokens there."""
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} is not trained: call fit first")
        self.net.eval()
        seqs = [list(s) for s in seqs]
        counts = np.array([n_targets(s, self.sessions) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        ranks = np.zeros(offsets[-1], dtype=np.int64)
        top = min(top, int(self._allowed().sum()))
        best = np.zeros((offsets[-1], top), dtype=np.int64) if top else None
        neg = self._allowed().logical_not()
        for batch in self._batches([self.vocab.encode(s, self.sessions) for s in seqs], False, None):
            out = self._run(batch)
            logits = out.logits.float().masked_fill(neg, -math.inf)  # (n, V)
            actual = logits.gather(1, out.targets[:, None])  # (n, 1)
            r = (logits > actual).sum(1)
            r[out.targets == UNK] = len(self.vocab)
            idx = offsets[out.seq] + out.pos
            ranks[idx] = r.cpu().numpy()
            if top:
                best[idx] = logits.topk(top, dim=1).indices.cpu().numpy()
        split = lambda a: [a[offsets[i]:offsets[i + 1]] for i in range(len(seqs))]  # noqa: E731
        return split(ranks), (split(best) if top else [None] * len(seqs))

    def ranks(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per sequence, the rank of each actual next key (0 = the model's top choice).

        Entry i (i < len(seq)) is key i's rank given the keys before it; a session has one more
        entry, the end key's. An unseen template ranks `len(vocab)`, beyond every K.
        """
        return self._predict(seqs)[0]

    def scores(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Worst rank per sequence (0 for an empty window): flagged at top-K when score >= K."""
        return np.array([float(r.max()) if len(r) else 0.0 for r in self.ranks(seqs)], dtype=np.float64)

    def max_k(self) -> int:
        """How many keys a prediction ranks: with K this large only unseen templates miss."""
        return int(self._allowed().sum())

    def calibrate_k(self, val_normal_seqs: Sequence[Sequence[int]], target_fpr: float | None = None) -> int:
        """Set and return the smallest K that flags at most `target_fpr` of these normal sequences."""
        target = self.config.target_fpr if target_fpr is None else target_fpr
        self.k = calibrate_top_k(self.scores(val_normal_seqs), target, max_k=self.max_k())
        return self.k

    def check(self, seqs: Sequence[Sequence[int]], k: int | None = None) -> list[CheckResult]:
        """Top-K verdict per sequence: every key ranked K or worse, or unseen, is a miss."""
        k = int(k or self.k or 0)
        if k < 1:
            raise ValueError("no K: pass k or call calibrate_k first")
        seqs = [list(s) for s in seqs]
        all_ranks, all_best = self._predict(seqs, top=k)
        results = []
        for seq, ranks, best in zip(seqs, all_ranks, all_best):
            misses = []
            for i in np.nonzero(ranks >= k)[0].tolist():
                unseen = i < len(seq) and seq[i] not in self.vocab
                actual = seq[i] if i < len(seq) else END
                misses.append(Miss(position=i, actual=actual, expected=[self.vocab.key(t) for t in best[i]], unseen=unseen))
            results.append(CheckResult(anomalous=bool(misses), misses=misses))
        return results

    # -- disk ----------------------------------------------------------------------------------
    def copy(self) -> "NextKeyModel":
        return _copy.deepcopy(self)

    def save(self, path: str | os.PathLike) -> None:
        """One torch checkpoint (config, vocabulary, K, sessions, weights), written atomically."""
        from logsense.models.atomic import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "format": f"logsense.{self.KIND}", "format_version": self.FORMAT_VERSION,
            "config": asdict(self.config), "vocab": self.vocab.to_dict(), "k": self.k,
            "sessions": self.sessions, "history": self.history,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None):
        """Read what `save` wrote (weights only: nothing is unpickled)."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("format") != f"logsense.{cls.KIND}" or ck.get("format_version") != cls.FORMAT_VERSION:
            raise ValueError(f"{path}: not a logsense.{cls.KIND} v{cls.FORMAT_VERSION} checkpoint")
        config = cls.config_class(**ck["config"])
        if device is not None:
            config.device = device
        model = cls(config)
        model.vocab = Vocabulary.from_dict(ck["vocab"])
        model.k, model.sessions, model.history = ck["k"], ck["sessions"], list(ck.get("history", []))
        with model._torch_rng():
            model.net = model._new_net()
        model.net.load_state_dict(ck["state_dict"])
        model.net.to(model.device).eval()
        return model
