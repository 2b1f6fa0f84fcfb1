"""LogGPT: a small GPT-2 trained from scratch to predict the next log key (Han, Yuan, Trabelsi 2023,
"LogGPT: Log Anomaly Detection via GPT", arXiv 2309.14482).

The model reads `<bos> k0 k1 ... <eos>` (template ids as tokens, see `models.sequence`) and
learns normal sequences as a language. At detection, a key the model does not rank among its
top-K predictions is a miss; a sequence with a miss is anomalous. K comes from validation
normal sequences (`calibrate_k`), never from labels.

Sequences longer than the context are cut into chunks of `n_positions` tokens that overlap by
half, so every key after the first chunk is predicted with at least `n_positions / 2` keys of
context; each key is trained and scored exactly once.

The optional reinforcement step of the paper (`rl_steps > 0`) follows the language-model
training: the model samples K next keys at every position, earns +1 when the actual key is
among them and -1 otherwise, and a policy-gradient (REINFORCE) update raises the chance that
the actual key lands in the top K. It is off by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from logsense.models.policy import TARGET_FPR
from logsense.models.sequence import BOS, EOS, PAD, CheckResult, Miss, NextKeyModel, Scored, Vocabulary  # noqa: F401

__all__ = ["LogGPT", "LogGPTConfig", "TrainingConfig", "CheckResult", "Miss", "Vocabulary", "length_batches"]


@dataclass
class TrainingConfig:
    """The training and run fields of LogGPT and the bench's baselines: one early-stopping loop
    (`models.sequence.train_early_stopping`) reads them all. A model's config redeclares a field
    to change its default."""

    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0
    batch_size: int = 64  # chunks per step
    max_epochs: int = 30  # upper bound; early stopping usually ends sooner
    patience: int = 3  # epochs without a better validation loss before stopping
    val_fraction: float = 0.1  # held back from the end of train (in time) when no validation is given
    seed: int = 0  # weights, dropout, masks and shuffling; the caller's RNG is left alone
    device: str = "cpu"  # "cpu", "cuda", or "auto" (cuda when available)
    progress: bool | None = None  # tqdm bar: None = only on a terminal


@dataclass
class LogGPTConfig(TrainingConfig):
    """LogGPT's settings; the training ones (`TrainingConfig`) keep their defaults."""

    # model (GPT-2 from scratch; tokens are template ids, so it stays tiny)
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 64  # width
    n_positions: int = 512  # context; longer sequences are scored in half-overlapping chunks
    dropout: float = 0.1  # embedding, attention and residual dropout
    # reinforcement step (the paper's top-K reward; 0 = off)
    rl_steps: int = 0  # policy-gradient steps after language-model training
    rl_top_k: int | None = None  # K of the reward; None: K calibrated on the validation sequences
    rl_lr: float = 1e-4  # learning rate of the reinforcement step
    # detection
    target_fpr: float = TARGET_FPR  # K is calibrated so at most this share of validation normals is flagged


def length_batches(items: list, size: int, length: Callable[[Any], int], rng: np.random.Generator | None) -> list[list]:
    """Batches of `size` items of similar `length` (little padding): in length order without `rng`;
    with it, random batches (sorted within pools of 50 batches) in a random order."""
    if rng is None:
        ordered = sorted(items, key=length)
        return [ordered[i:i + size] for i in range(0, len(ordered), size)]
    order = rng.permutation(len(items))
    pool = 50 * size
    batches = []
    for p in range(0, len(order), pool):
        part = sorted((items[j] for j in order[p:p + pool]), key=length)
        batches += [part[i:i + size] for i in range(0, len(part), size)]
    return [batches[j] for j in rng.permutation(len(batches))]


class LogGPT(NextKeyModel):
    """GPT-2 next-key detector. `fit` / `fine_tune` / `ranks` / `scores` / `calibrate_k` /
    `check` / `save` / `LogGPT.load` / `copy` / `validation_loss`: see `models.sequence`."""

    KIND = "loggpt"
    config_class = LogGPTConfig

    def __init__(self, config: LogGPTConfig | None = None):
        super().__init__(config or LogGPTConfig())

    # -- network -------------------------------------------------------------------------------
    def _new_net(self) -> nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.config
        gpt = GPT2Config(
            vocab_size=len(self.vocab), n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
            n_head=c.n_head, resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
            bos_token_id=BOS, eos_token_id=EOS, use_cache=False,  # no pad id: right padding needs no mask
        )
        return GPT2LMHeadModel(gpt)

    def _grow_net(self, n_tokens: int) -> None:
        """New template rows (embedding and tied LM head); existing rows are kept."""
        self.net.resize_token_embeddings(n_tokens)
        self.net.to(self.device)

    # -- batches -------------------------------------------------------------------------------
    def _chunks(self, token_seqs: list[list[int]]) -> list[tuple]:
        """(seq index, first target index, input ids, n targets, first scored index) per chunk.

        Target t of a sequence is token t + 1 predicted from tokens 0..t. A chunk covers targets
        [start, start + P); after the first, a chunk scores only its second half (the first half
        is context, scored by the chunk before).
        """
        P = self.config.n_positions
        stride = max(1, P // 2)
        chunks = []
        for i, tokens in enumerate(token_seqs):
            n = len(tokens) - 1  # targets
            start = 0
            while True:
                end = min(start + P, n)
                chunks.append((i, start, tokens[start:end + 1], end - start, 0 if start == 0 else P - stride))
                if end >= n:
                    break
                start += stride
        return [c for c in chunks if c[3] > 0]

    def _batches(self, token_seqs, shuffle, rng) -> list[list[tuple]]:
        return length_batches(self._chunks(token_seqs), self.config.batch_size, lambda c: len(c[2]),
                              rng if shuffle else None)

    def _run(self, batch: list[tuple]) -> Scored:
        T = max(n for _, _, _, n, _ in batch)
        x = torch.full((len(batch), T), PAD, dtype=torch.long)  # (B, T) inputs, right-padded
        y = torch.full((len(batch), T), -1, dtype=torch.long)  # (B, T) targets, -1 = not scored
        seq, pos = [], []
        for b, (i, start, tokens, n, first) in enumerate(batch):
            t = torch.as_tensor(tokens, dtype=torch.long)
            x[b, :n] = t[:n]
            y[b, first:n] = t[first + 1:n + 1]
            seq.append(np.full(n - first, i))
            pos.append(np.arange(start + first, start + n))
        x, y = x.to(self.device), y.to(self.device)
        logits = self.net(input_ids=x).logits  # (B, T, V); causal, so right padding is harmless
        scored = y >= 0
        return Scored(logits=logits[scored], targets=y[scored], seq=np.concatenate(seq), pos=np.concatenate(pos))

    # -- reinforcement step --------------------------------------------------------------------
    def _after_fit(self, train_tokens: list[list[int]], val_seqs: list[list[int]]) -> None:
        """REINFORCE with the top-K reward: sample K keys per position, +1 if the actual key is
        among them, -1 if not. Its expected gradient raises P(actual key among K samples)."""
        c = self.config
        if c.rl_steps <= 0:
            return
        k = c.rl_top_k or (self.calibrate_k(val_seqs, c.target_fpr) if val_seqs else 1)
        rng = np.random.default_rng(c.seed + 7)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=c.rl_lr)
        neg = self._allowed().logical_not()
        batches: list = []
        self.net.train()
        for step in range(c.rl_steps):
            if not batches:
                batches = self._batches(train_tokens, True, rng)
            out = self._run(batches.pop())
            logits = out.logits.masked_fill(neg, -math.inf)  # (n, V)
            dist = torch.distributions.Categorical(logits=logits)
            actions = dist.sample((k,))  # (K, n)
            reward = (actions == out.targets).any(0).float() * 2 - 1  # (n,) +1 hit, -1 miss
            loss = -(reward * dist.log_prob(actions).sum(0)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            optimizer.step()
            self.history.append({"rl_step": step, "rl_loss": float(loss.detach()), "rl_reward": float(reward.mean())})
        self.net.eval()
