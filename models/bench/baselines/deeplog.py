"""DeepLog (Du et al., CCS 2017): an LSTM predicts the next log key from the h keys before it.

A key outside the model's top-g predictions is a miss. Same public calls as `models.loggpt.LogGPT`
(see `models.sequence.NextKeyModel`); g is `DeepLog.g` (the same number as `k`). The first keys
of a sequence see a window padded at the start with `<bos>`; a session's end key is predicted too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from logsense.models.loggpt import TrainingConfig
from logsense.models.sequence import BOS, NextKeyModel, Scored


@dataclass
class DeepLogConfig(TrainingConfig):
    """DeepLog's settings; the training ones are `TrainingConfig`'s, two with their own defaults."""

    # model
    h: int = 10  # window: keys seen before each prediction
    n_embd: int = 32  # key embedding width (the paper feeds one-hot keys; an embedding is the same, smaller)
    hidden: int = 64  # LSTM width
    layers: int = 2  # LSTM layers
    # training
    batch_size: int = 256  # windows per step
    max_epochs: int = 10  # upper bound; early stopping usually ends sooner
    # detection
    g: int | None = None  # fixed top-g; None: calibrated on validation normals
    target_fpr: float = 0.01  # g is calibrated so at most this share of validation normals is flagged


class _LSTM(nn.Module):
    def __init__(self, n_tokens: int, c: DeepLogConfig):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, c.n_embd)
        self.lstm = nn.LSTM(c.n_embd, c.hidden, c.layers, batch_first=True)
        self.head = nn.Linear(c.hidden, n_tokens)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(windows))  # (B, h, hidden)
        return self.head(out[:, -1])  # (B, V) logits of the next key


class DeepLog(NextKeyModel):
    """LSTM next-key detector over windows of `h` keys."""

    KIND = "deeplog"
    config_class = DeepLogConfig

    def __init__(self, config: DeepLogConfig | None = None):
        super().__init__(config or DeepLogConfig())

    @property
    def g(self) -> int | None:
        return self.k

    @g.setter
    def g(self, value: int | None) -> None:
        self.k = value

    def fit(self, train_seqs, val_seqs=None, sessions: bool = True) -> "DeepLog":
        super().fit(train_seqs, val_seqs, sessions)
        if self.config.g:
            self.k = int(self.config.g)
        return self

    def _new_net(self) -> nn.Module:
        return _LSTM(len(self.vocab), self.config)

    def _grow_net(self, n_tokens: int) -> None:
        """New rows for new keys in the embedding and the output layer; old rows are copied."""
        old = self.net
        with self._torch_rng():
            torch.manual_seed(self.config.seed + n_tokens)
            new = _LSTM(n_tokens, self.config).to(self.device)
        n_old = old.embed.num_embeddings
        with torch.no_grad():
            new.lstm.load_state_dict(old.lstm.state_dict())
            new.embed.weight[:n_old] = old.embed.weight
            new.head.weight[:n_old] = old.head.weight
            new.head.bias[:n_old] = old.head.bias
        self.net = new

    def _batches(self, token_seqs, shuffle, rng) -> list[tuple]:
        """(windows (b, h), targets (b,), seq (b,), pos (b,)) batches over every next key."""
        h = self.config.h
        windows, targets, seq, pos = [], [], [], []
        for i, tokens in enumerate(token_seqs):
            n = len(tokens) - 1  # targets: tokens[1:]
            if n <= 0:
                continue
            padded = np.asarray([BOS] * (h - 1) + list(tokens), dtype=np.int64)
            windows.append(np.lib.stride_tricks.sliding_window_view(padded, h)[:n])  # window j ends at token j
            targets.append(padded[h:h + n])
            seq.append(np.full(n, i))
            pos.append(np.arange(n))
        if not windows:
            return []
        w, t, s, p = (np.concatenate(a) for a in (windows, targets, seq, pos))
        order = rng.permutation(len(t)) if shuffle else np.arange(len(t))
        B = self.config.batch_size
        return [(w[j], t[j], s[j], p[j]) for j in (order[i:i + B] for i in range(0, len(order), B))]

    def _run(self, batch: tuple) -> Scored:
        w, t, s, p = batch
        logits = self.net(torch.as_tensor(w, device=self.device))
        return Scored(logits=logits, targets=torch.as_tensor(t, device=self.device), seq=s, pos=p)
