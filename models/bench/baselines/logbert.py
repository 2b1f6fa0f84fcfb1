"""LogBERT (Guo, Yuan, Wu, "LogBERT: Log Anomaly Detection via BERT", IJCNN 2021).

A small bidirectional Transformer encoder (no causal mask) reads `<dist> k0 k1 ...`, where the
keys are template ids (tokens from `models.sequence.Vocabulary`) and `<dist>` is a special
token in front of every sequence (it takes `<bos>`'s slot, token 1). Two training objectives:

* masked log key prediction (MLKP): a share `mask_ratio` of the keys is replaced by `<mask>` and
  the model predicts them (cross-entropy over the masked positions only);
* volume of the hypersphere (VHM): the output at `<dist>`, h_DIST, should lie near a center c,
  the mean h_DIST over the training sequences. c is fixed during an epoch: before the first
  epoch it is the untrained net's mean, after that the mean of the h_DIST seen in the epoch
  before. loss = MLKP + alpha * mean ||h_DIST - c||^2.

Detection, made deterministic: each key is masked exactly once, the sequence split into
round(1 / mask_ratio) interleaved groups (position j is masked in pass j % m), so the model
sees about as many masks as in training. A key is a *miss* when it is not among the model's
top-g keys; a key never seen in training (`<unk>`) is always a miss. Score of a sequence:

    misses + d / (1 + d),   d = ||h_DIST - c||^2 of the unmasked sequence

where c is computed once more after training: the mean h_DIST of the kept weights over the
unmasked training sequences (the same way d is measured).

The paper flags a sequence on the miss count alone; the distance term (in [0, 1)) only breaks
ties, so the score is continuous and a threshold can be calibrated on validation normals. Higher
= more anomalous; an empty sequence scores 0.

Sequences longer than `max_len` keys are cut into chunks of `max_len` keys: side by side in
training, overlapping by half when scored (the last chunk ends at the last key either way); a
long sequence scores its worst chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from logsense.models.loggpt import TrainingConfig, length_batches
from logsense.models.sequence import (BOS, PAD, SPECIALS, UNK, Vocabulary, chronological_split, resolve_device,
                                      train_early_stopping)

DIST = BOS  # the <dist> token is the vocabulary's <bos> slot: one per sequence, always first
IGNORE = -100  # cross-entropy target of a position that is not predicted


@dataclass
class LogBERTConfig(TrainingConfig):
    """LogBERT's settings; the training ones are `TrainingConfig`'s, three with their own defaults."""

    # model (a BERT encoder from scratch; tokens are template ids, so it stays tiny)
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 64  # width
    max_len: int = 128  # keys per chunk (plus <dist>); longer sequences: half-overlapping chunks, worst one counts
    dropout: float = 0.1  # embedding, attention and residual dropout
    # objective
    mask_ratio: float = 0.3  # share of keys masked in training (BERT: 0.15; LogBERT masks more)
    alpha: float = 0.1  # weight of the hypersphere term (VHM) against masked key prediction (MLKP)
    # training
    batch_size: int = 128  # chunks per step
    max_epochs: int = 10  # upper bound; early stopping usually ends sooner
    patience: int = 2  # epochs without a better validation loss before stopping
    # detection
    g: int = 10  # a key outside the model's top-g predictions is a miss (paper: 6 to 15)
    score_batch_size: int = 512  # masked copies per forward pass when scoring


# ---------------------------------------------------------------------------- network


class _SelfAttention(nn.Module):
    def __init__(self, c: LogBERTConfig):
        super().__init__()
        self.n_head, self.dropout = c.n_head, c.dropout
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        # keep (B, 1, 1, T): every position attends to every real token, both ways (no causal mask)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


class _Block(nn.Module):
    def __init__(self, c: LogBERTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd)
        self.attn = _SelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd),
                                 nn.Dropout(c.dropout))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), keep)
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    """Token + position embeddings, pre-norm blocks, final LayerNorm, a key head."""

    def __init__(self, n_tokens: int, c: LogBERTConfig):
        super().__init__()
        self.tok = nn.Embedding(n_tokens, c.n_embd)
        self.pos = nn.Embedding(c.max_len + 1, c.n_embd)  # + 1: <dist>
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, n_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) token ids, right-padded with <pad> -> (B, T, C) outputs; [:, 0] is h_DIST."""
        T = x.shape[1]
        keep = (x != PAD)[:, None, None, :]  # (B, 1, 1, T)
        h = self.drop(self.tok(x) + self.pos(torch.arange(T, device=x.device)))  # (B, T, C)
        for block in self.blocks:
            h = block(h, keep)
        return self.ln_f(h)


# ---------------------------------------------------------------------------- the detector


class LogBERT:
    """`fit(train_seqs, val_seqs)` on normal sequences, `scores(seqs)`: higher = more anomalous."""

    def __init__(self, config: LogBERTConfig | None = None):
        self.config = config or LogBERTConfig()
        self.device = resolve_device(self.config.device)
        self.vocab = Vocabulary()
        self.net: _Encoder | None = None
        self.center: torch.Tensor | None = None  # (C,) c of the hypersphere term
        self.history: list[dict] = []

    @property
    def mask(self) -> int:
        """The <mask> token: one past the vocabulary."""
        return len(self.vocab)

    # -- chunks and batches --------------------------------------------------------------------
    def _chunks(self, seqs: Sequence[Sequence[int]], overlap: bool = True) -> list[tuple[int, list[int]]]:
        """(sequence index, `<dist> tokens`) per chunk of at most `max_len` keys; empty sequences have none.

        Chunks overlap by half for scoring; training takes them side by side (each key once)."""
        L = self.config.max_len
        stride = max(1, L // 2) if overlap else L
        chunks = []
        for i, seq in enumerate(seqs):
            tokens = [self.vocab.token(k) for k in seq]
            n = len(tokens)
            starts = list(range(0, max(n - L, 0) + 1, stride)) if n else []
            if starts and starts[-1] + L < n:
                starts.append(n - L)  # the last chunk ends at the last key
            chunks += [(i, [DIST] + tokens[s:s + L]) for s in starts]
        return chunks

    def _groups(self, chunks: list, batch_size: int, rng: np.random.Generator | None) -> list[list]:
        """Batches of (tag, tokens) of similar lengths (little padding); shuffled when `rng` is given."""
        return length_batches(chunks, batch_size, lambda c: len(c[1]), rng)

    def _masked_batch(self, batch: list, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (B, T), targets (B, T)): `mask_ratio` of the keys masked, at least one per chunk.

        Targets are IGNORE except at masked keys; an `<unk>` key is masked but not a target."""
        T = max(len(t) for _, t in batch)
        x = np.full((len(batch), T), PAD, dtype=np.int64)
        for b, (_, tokens) in enumerate(batch):
            x[b, :len(tokens)] = tokens
        is_key = x >= len(SPECIALS)  # (B, T): known keys (not <pad>, <dist>, <unk>)
        is_key[:, 0] = False
        masked = (rng.random(x.shape) < self.config.mask_ratio) & (x != PAD)
        masked[:, 0] = False
        lengths = np.array([len(t) for _, t in batch])
        none = ~masked.any(1)
        masked[none, 1 + (rng.random(none.sum()) * (lengths[none] - 1)).astype(np.int64)] = True  # (b, pos) pairs
        y = np.where(masked & is_key, x, IGNORE)
        x = np.where(masked, self.mask, x)
        return torch.as_tensor(x, device=self.device), torch.as_tensor(y, device=self.device)

    # -- training ------------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, h_DIST (B, C)). loss = MLKP (mean over masked keys) + alpha * VHM (mean over
        chunks); with `reduction="none"`, the two sums (2,) instead."""
        h = self.net(x)  # (B, T, C)
        scored = y != IGNORE  # (B, T)
        logits = self.net.head(h[scored])  # (n, V + 1)
        mlkp = F.cross_entropy(logits, y[scored], reduction="sum")  # 0 when nothing is scored
        vhm = ((h[:, 0] - self.center) ** 2).sum()  # sum over the batch of ||h_DIST - c||^2
        if reduction == "none":
            return torch.stack([mlkp, vhm]), h[:, 0]
        return mlkp / max(int(scored.sum()), 1) + self.config.alpha * vhm / len(x), h[:, 0]

    @torch.no_grad()
    def _mean_dist_output(self, chunks: list) -> torch.Tensor:
        """(C,) mean h_DIST of the unmasked chunks, in eval mode."""
        self.net.eval()
        total = torch.zeros(self.config.n_embd, device=self.device)
        for batch in self._groups(chunks, self.config.score_batch_size, None):
            total += self.net(self._inputs(batch))[:, 0].sum(0)
        return total / max(len(chunks), 1)

    def _inputs(self, batch: list) -> torch.Tensor:
        T = max(len(t) for _, t in batch)
        x = torch.full((len(batch), T), PAD, dtype=torch.long)
        for b, (_, tokens) in enumerate(batch):
            x[b, :len(tokens)] = torch.as_tensor(tokens)
        return x.to(self.device)

    def fit(self, train_seqs: Sequence[Sequence[int]], val_seqs: Sequence[Sequence[int]] | None = None) -> "LogBERT":
        """Train from scratch on normal sequences; early stopping on the validation loss.

        Without `val_seqs`, the last `config.val_fraction` of `train_seqs` (in the given, time
        order) is held back for early stopping.
        """
        c = self.config
        train = [list(s) for s in train_seqs]
        val = [list(s) for s in val_seqs] if val_seqs else None
        if val is None:
            train, val = chronological_split(train, c.val_fraction)
        self.vocab = Vocabulary(k for s in train for k in s)
        train_chunks, val_chunks = self._chunks(train, overlap=False), self._chunks(val, overlap=False)
        if not train_chunks:
            raise ValueError("LogBERT.fit needs at least one non-empty training sequence")
        rng = np.random.default_rng(c.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.net = _Encoder(len(self.vocab) + 1, c).to(self.device)  # + 1: <mask>
            self.center = self._mean_dist_output(train_chunks)
            optimizer = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
            seen = {"sum": torch.zeros(c.n_embd, device=self.device), "n": 0}  # h_DIST of this epoch

            def epoch_batches(epoch: int) -> list:
                if seen["n"]:  # c of this epoch: the mean h_DIST of the one before
                    self.center = seen["sum"] / seen["n"]
                seen["sum"], seen["n"] = torch.zeros_like(seen["sum"]), 0
                return [self._masked_batch(b, rng) for b in self._groups(train_chunks, c.batch_size, rng)]

            def batch_loss(batch) -> torch.Tensor:
                loss, h_dist = self._loss(*batch)
                seen["sum"] += h_dist.detach().sum(0)
                seen["n"] += len(h_dist)
                return loss

            val_batches = None
            if val_chunks:  # the same masks every epoch, so the losses compare
                val_rng = np.random.default_rng(c.seed + 1)
                val_groups = self._groups(val_chunks, c.score_batch_size, None)
                val_batches = [self._masked_batch(b, val_rng) for b in val_groups]

            @torch.no_grad()
            def val_loss() -> float:  # as in training: MLKP per masked key + alpha * VHM per chunk
                self.net.eval()
                mlkp, vhm, n = 0.0, 0.0, 0
                for x, y in val_batches:
                    terms = self._loss(x, y, "none")[0]
                    mlkp, vhm, n = mlkp + float(terms[0]), vhm + float(terms[1]), n + int((y != IGNORE).sum())
                return mlkp / max(n, 1) + c.alpha * vhm / len(val_chunks)

            self.history = train_early_stopping(
                self.net, optimizer, epoch_batches, batch_loss, val_loss if val_batches else None,
                c.max_epochs, c.patience, c.progress, "logbert fit")
            self.center = self._mean_dist_output(self._chunks(train))  # c of the kept weights, as scored
        return self

    # -- scoring -------------------------------------------------------------------------------
    @torch.no_grad()
    def score_parts(self, seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(misses, d) of each sequence's worst chunk: keys outside the top-g (or unseen), and
        ||h_DIST - c||^2 of the unmasked chunk. Empty sequences: (0, 0)."""
        if self.net is None:
            raise RuntimeError("LogBERT is not trained: call fit first")
        c = self.config
        self.net.eval()
        seqs = list(seqs)
        chunks = self._chunks(seqs)
        m = max(1, round(1 / c.mask_ratio))  # passes per chunk: each masks every m-th key
        misses = np.zeros(len(chunks), dtype=np.int64)
        dist = np.zeros(len(chunks), dtype=np.float64)
        # a copy per (chunk, pass); pass -1 masks nothing and gives h_DIST
        copies = [((j, r), t) for j, (_, t) in enumerate(chunks) for r in range(-1, min(m, len(t) - 1))]
        g = min(c.g, len(self.vocab.keys))
        not_key = torch.ones(len(self.vocab) + 1, dtype=torch.bool, device=self.device)  # (V + 1,)
        not_key[len(SPECIALS):len(self.vocab)] = False
        for batch in self._groups(copies, c.score_batch_size, None):
            x = self._inputs(batch)  # (B, T)
            idx = np.array([j for (j, _), _ in batch])  # (B,) chunk of each copy
            passes = torch.as_tensor([r for (_, r), _ in batch], device=self.device)  # (B,)
            pos = torch.arange(x.shape[1], device=self.device)  # (T,)
            masked = (x != PAD) & (pos > 0) & ((pos - 1) % m == passes[:, None])  # (B, T)
            truth = x[masked]  # (n,) the masked keys
            h = self.net(torch.where(masked, self.mask, x))  # (B, T, C)
            logits = self.net.head(h[masked]).masked_fill(not_key, -math.inf)  # (n, V + 1)
            actual = logits.gather(1, truth[:, None])  # (n, 1); -inf for <unk>
            miss = ((logits > actual).sum(1) >= g) | (truth == UNK)  # (n,)
            rows = masked.nonzero()[:, 0]  # (n,) batch row of each masked key
            per_row = torch.zeros(len(batch), dtype=torch.long, device=self.device).index_add_(0, rows, miss.long())
            np.add.at(misses, idx, per_row.cpu().numpy())
            plain = (passes == -1).cpu().numpy()
            d = ((h[:, 0] - self.center) ** 2).sum(1).cpu().numpy()  # (B,)
            dist[idx[plain]] = d[plain]
        out_m, out_d = np.zeros(len(seqs)), np.zeros(len(seqs))
        score = np.full(len(seqs), -1.0)
        for j, (i, _) in enumerate(chunks):  # the worst chunk of each sequence
            s = misses[j] + dist[j] / (1 + dist[j])
            if s > score[i]:
                score[i], out_m[i], out_d[i] = s, misses[j], dist[j]
        return out_m, out_d

    def scores(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """(n,) float64: misses + d / (1 + d) of the worst chunk; 0 for an empty sequence."""
        misses, d = self.score_parts(seqs)
        return (misses + d / (1 + d)).astype(np.float64)
