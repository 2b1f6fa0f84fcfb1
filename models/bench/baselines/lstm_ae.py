"""LSTM autoencoder over window features: an item the model cannot rebuild is anomalous.

An *item* is a list of template ids (log keys) in time order: an HDFS session, or a window of
lines. The autoencoder is trained on normal items only; the anomaly score of an item is how badly
it is reconstructed (mean squared error), higher = more anomalous.

Features. An item is cut into consecutive sub-windows of `step` keys (the last one may be
shorter; an item shorter than `step` is one sub-window), and each sub-window becomes one feature
vector of width V + 2, V = the number of distinct keys seen in training:

    [ share of each training key (V) | share of unseen keys (1) | log1p(keys in the sub-window) (1) ]

The shares are counts divided by the sub-window's length (they sum to 1). The length column only
differs on the last, shorter, sub-window, so it tells the model where the item ends (where every
training item's length is a multiple of `step`, that column is constant, and a short last
sub-window stands far out: a real sign, and a loud one). Order inside
a sub-window is ignored; the order of the sub-windows is what the LSTMs read. Every column is
standardized with the mean and std over all training sub-windows; a std below `min_std` counts as
`min_std`. The unseen column is 0 throughout training (std 0), so the model learns to output 0
there: one unseen key in a full sub-window stands (1 / step) / min_std = 4 std out with the
defaults, a squared error of 16 in that column that the model has no way to explain. A burst of
a key that is rare in training lands the same way on that key's column.

Network. An LSTM encoder reads the (standardized) feature vectors of a chunk; its output after the
last real step goes through a linear layer to a `latent` vector. An LSTM decoder reads that latent
vector repeated once per step and a linear head rebuilds each feature vector. Loss: squared error
averaged over features and over the real (non-padded) steps of the batch.

Long items. The LSTMs read at most `max_steps` sub-windows at a time: an item with more is cut
into ceil(n / max_steps) consecutive chunks of near-equal size, each encoded on its own (in
training as well). Score of an item = the worst chunk's mean per-step squared error (for an item
of at most max_steps sub-windows, simply its mean squared error). An empty item scores 0.

Batches group chunks of similar length (sorted by length, random order among equal lengths,
batches shuffled), so padding is small: with the defaults, 5,000 items of 20 keys fit in about
6 s and 20,000 items of 1 to ~1,000 keys in about 25 s on 2 busy CPU cores (20 epochs).
Same seed, same data: same weights and same scores.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from logsense.models.loggpt import TrainingConfig
from logsense.models.sequence import chronological_split, resolve_device, train_early_stopping


@dataclass
class LSTMAEConfig(TrainingConfig):
    """The autoencoder's settings; the training ones are `TrainingConfig`'s, three with their own defaults."""

    # features
    step: int = 5  # keys per sub-window: one feature vector per `step` consecutive keys
    max_steps: int = 64  # sub-windows read at once; longer items are cut into chunks (score = worst chunk)
    min_std: float = 0.05  # floor on a feature's training std (the unseen-key column has std 0)
    # model
    hidden: int = 64  # LSTM width (encoder and decoder)
    latent: int = 32  # the bottleneck: one vector per chunk
    layers: int = 1  # LSTM layers (encoder and decoder)
    # training
    lr: float = 2e-3  # AdamW learning rate
    batch_size: int = 128  # chunks per step
    max_epochs: int = 20  # upper bound; early stopping usually ends sooner
    threads: int | None = 1  # torch CPU threads during fit/scores (restored after); None = leave torch's setting.
    # Small LSTMs gain nothing from a second thread, and two threads on a busy 2-core machine spin:
    # an HDFS-sized fit measured 7 s on one thread, 65 s on two, beside other jobs.


class _AE(nn.Module):
    def __init__(self, width: int, c: LSTMAEConfig):
        super().__init__()
        self.encoder = nn.LSTM(width, c.hidden, c.layers, batch_first=True)
        self.to_latent = nn.Linear(c.hidden, c.latent)
        self.decoder = nn.LSTM(c.latent, c.hidden, c.layers, batch_first=True)
        self.head = nn.Linear(c.hidden, width)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # x: (B, T, D) standardized features, zero-padded after each chunk's length
        out, _ = self.encoder(x)  # (B, T, hidden)
        last = out[torch.arange(B, device=x.device), lengths - 1]  # (B, hidden) after each chunk's last real step
        z = self.to_latent(last)  # (B, latent)
        dec, _ = self.decoder(z[:, None, :].expand(B, T, z.shape[1]))  # (B, T, hidden)
        return self.head(dec)  # (B, T, D) reconstruction


class LSTMAutoencoder:
    """`fit(train_seqs)` on normal items, `scores(seqs)`: mean reconstruction error, higher = more anomalous."""

    def __init__(self, config: LSTMAEConfig | None = None):
        self.config = config or LSTMAEConfig()
        self.device = resolve_device(self.config.device)
        self.columns: dict[int, int] = {}  # template id -> column; column len(columns) = unseen keys
        self.mean: np.ndarray | None = None  # (D,) training mean of each feature
        self.std: np.ndarray | None = None  # (D,) training std of each feature, floored at min_std
        self.net: _AE | None = None
        self.history: list[dict] = []

    @property
    def n_features(self) -> int:
        """D = V training keys + the unseen column + the length column."""
        return len(self.columns) + 2

    # -- features -------------------------------------------------------------------------------
    def features(self, seq: Sequence[int | None]) -> np.ndarray:
        """(n_sub_windows, D) float32 raw (unstandardized) features of one item; (0, D) when empty."""
        n, unseen, width = len(seq), len(self.columns), self.n_features
        if n == 0:
            return np.zeros((0, width), dtype=np.float32)
        cols = np.fromiter((self.columns.get(k, unseen) for k in seq), dtype=np.int64, count=n)  # (n,)
        sub = np.arange(n) // self.config.step  # (n,) sub-window of each key
        n_sub = int(sub[-1]) + 1
        x = np.bincount(sub * width + cols, minlength=n_sub * width).reshape(n_sub, width).astype(np.float32)
        sizes = np.bincount(sub, minlength=n_sub).astype(np.float32)  # (n_sub,) keys per sub-window
        x /= sizes[:, None]  # shares; the length column (last) is still 0
        x[:, -1] = np.log1p(sizes)
        return x

    def _chunks(self, seq: Sequence[int | None]) -> list[np.ndarray]:
        """Standardized (t, D) chunks of one item, t <= max_steps; [] for an empty item."""
        x = self.features(seq)
        if len(x) == 0:
            return []
        x = (x - self.mean) / self.std
        return np.array_split(x, math.ceil(len(x) / self.config.max_steps))

    # -- batches --------------------------------------------------------------------------------
    def _batches(self, chunks: list[np.ndarray], shuffle: bool, rng: np.random.Generator | None) -> Iterator[tuple]:
        """(x (B, T, D), lengths (B,), chunk index (B,)) batches, padded as they are needed;
        chunks of similar length go together. Every chunk appears exactly once."""
        if not chunks:
            return
        lengths = np.array([len(c) for c in chunks], dtype=np.int64)
        if shuffle:
            perm = rng.permutation(len(chunks))
            order = perm[np.argsort(lengths[perm], kind="stable")]  # by length, random among equals
        else:
            order = np.argsort(lengths, kind="stable")
        B, D = self.config.batch_size, self.n_features
        groups = [order[i:i + B] for i in range(0, len(order), B)]
        if shuffle:
            groups = [groups[j] for j in rng.permutation(len(groups))]
        for idx in groups:
            x = np.zeros((len(idx), int(lengths[idx].max()), D), dtype=np.float32)  # (B, T, D)
            for r, j in enumerate(idx):
                x[r, :lengths[j]] = chunks[j]
            yield torch.as_tensor(x, device=self.device), torch.as_tensor(lengths[idx], device=self.device), idx

    def _step_errors(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step squared error (B, T), mean over features, and the mask of real steps (B, T)."""
        err = (self.net(x, lengths) - x).pow(2).mean(-1)  # (B, T)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, T)
        return err, mask

    @contextmanager
    def _threads(self):
        """`config.threads` torch threads inside the block (CPU only), the caller's count after it."""
        n, before = self.config.threads, torch.get_num_threads()
        if not n or self.device.type != "cpu" or n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- training -------------------------------------------------------------------------------
    def fit(self, train_seqs: Sequence[Sequence[int]], val_seqs: Sequence[Sequence[int]] | None = None) -> "LSTMAutoencoder":
        """Train from scratch on normal items, with early stopping on the validation loss.

        Validation items must be normal too. Without `val_seqs`, the last `config.val_fraction`
        of `train_seqs` (in the given, time order) is held back. The vocabulary and the feature
        statistics come from the training items only.
        """
        c = self.config
        train = [list(s) for s in train_seqs]
        if not any(train):
            raise ValueError("LSTMAutoencoder.fit needs at least one non-empty training sequence")
        val = [list(s) for s in val_seqs] if val_seqs is not None and len(val_seqs) > 0 else None
        if val is None:
            train, val = chronological_split(train, c.val_fraction)
            if not any(train):  # the split left only empty items to train on
                train, val = train + val, []
        self.columns = {k: i for i, k in enumerate(sorted({k for s in train for k in s if k is not None}))}
        raw = np.concatenate([self.features(s) for s in train])  # (all training sub-windows, D)
        self.mean = raw.mean(0, dtype=np.float64).astype(np.float32)
        self.std = np.maximum(raw.std(0, dtype=np.float64), c.min_std).astype(np.float32)
        train_chunks = [ch for s in train for ch in self._chunks(s)]
        val_chunks = [ch for s in val for ch in self._chunks(s)]

        rng = np.random.default_rng(c.seed)
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's generator alone
            torch.manual_seed(c.seed)
            self.net = _AE(self.n_features, c).to(self.device)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        val_batches = list(self._batches(val_chunks, False, None))  # padded once, reused every epoch

        def batch_loss(batch) -> torch.Tensor:
            x, lengths, _ = batch
            err, mask = self._step_errors(x, lengths)
            return err[mask].mean()  # MSE over the real steps of the batch

        @torch.no_grad()
        def val_loss() -> float:
            self.net.eval()
            total, n = 0.0, 0
            for x, lengths, _ in val_batches:
                err, mask = self._step_errors(x, lengths)
                total, n = total + float(err[mask].sum()), n + int(mask.sum())
            self.net.train()
            return total / n

        with self._threads():
            self.history = train_early_stopping(
                self.net, optimizer, lambda epoch: self._batches(train_chunks, True, rng), batch_loss,
                val_loss if val_batches else None, c.max_epochs, c.patience, c.progress, "lstm-ae fit")
        return self

    # -- scoring --------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """(n_items,) float64: each item's mean squared reconstruction error (worst chunk of a long
        item); 0.0 for an empty item. Keys not seen in training go to the unseen column."""
        if self.net is None:
            raise RuntimeError("LSTMAutoencoder is not trained: call fit first")
        self.net.eval()
        seqs = [list(s) for s in seqs]
        chunks, owner = [], []
        for i, s in enumerate(seqs):
            for ch in self._chunks(s):
                chunks.append(ch)
                owner.append(i)
        out = np.zeros(len(seqs), dtype=np.float64)
        if not chunks:
            return out
        per_chunk = np.zeros(len(chunks), dtype=np.float64)
        with self._threads():
            for x, lengths, idx in self._batches(chunks, False, None):
                err, mask = self._step_errors(x, lengths)
                per_chunk[idx] = ((err * mask).sum(1) / lengths).double().cpu().numpy()  # mean over real steps
        np.maximum.at(out, np.asarray(owner), per_chunk)  # errors are >= 0, so 0 is a safe start
        return out
