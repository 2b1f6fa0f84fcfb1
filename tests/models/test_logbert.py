"""LogBERT baseline: learns a cyclic grammar, scores order breaks and unseen keys above normals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from logsense.models.bench.baselines.logbert import DIST, IGNORE, LogBERT, LogBERTConfig

CYCLE = [1, 2, 3, 4, 5, 6]
UNSEEN = 99


def normal_seqs(n: int, seed: int) -> list[list[int]]:
    """The cycle 1..6 from a random start, 6 to 24 keys; after a 3, sometimes an extra 7."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        start, length = int(rng.integers(6)), int(rng.integers(6, 25))
        seq = []
        for j in range(length):
            key = CYCLE[(start + j) % 6]
            seq.append(key)
            if key == 3 and rng.random() < 0.3:
                seq.append(7)
        seqs.append(seq)
    return seqs


def anomalies(seqs: list[list[int]], seed: int) -> list[list[int]]:
    """Per normal sequence, in turn: a key replaced by an unseen one, reversed, two keys swapped."""
    rng = np.random.default_rng(seed)
    out = []
    for i, seq in enumerate(seqs):
        seq = list(seq)
        j = int(rng.integers(1, len(seq) - 2))
        if i % 3 == 0:
            seq[j] = UNSEEN
        elif i % 3 == 1:
            seq = seq[::-1]
        else:
            seq[j], seq[j + 1] = seq[j + 1], seq[j]
        out.append(seq)
    return out


def tiny(**kw) -> LogBERTConfig:
    base = dict(n_layer=1, n_head=2, n_embd=32, max_len=16, dropout=0.0, lr=5e-3, batch_size=32,
                max_epochs=12, patience=2, g=2, progress=False)
    return LogBERTConfig(**{**base, **kw})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and do not stall when the other core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> LogBERT:
    return LogBERT(tiny()).fit(normal_seqs(400, 0), normal_seqs(80, 1))


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(anomaly scores above a normal), ties count half."""
    a, n = anomalous[:, None], normal[None, :]
    return float(((a > n).sum() + 0.5 * (a == n).sum()) / (a.size * n.size))


def test_anomalies_score_above_normals(model):
    test = normal_seqs(90, 2)
    normal, anomalous = model.scores(test), model.scores(anomalies(test, 3))
    assert normal.shape == (90,) and normal.dtype == np.float64
    assert auc(normal, anomalous) > 0.95  # an untrained model: about 0.5
    assert (anomalous > np.percentile(normal, 95)).mean() >= 0.9
    misses, _ = model.score_parts(test)
    assert (misses == 0).mean() >= 0.9  # g = 2 covers the optional 7


def test_same_seed_same_scores():
    train, val, test = normal_seqs(120, 4), normal_seqs(30, 5), normal_seqs(30, 6) + anomalies(normal_seqs(30, 7), 8)
    a = LogBERT(tiny(max_epochs=2)).fit(train, val).scores(test)
    b = LogBERT(tiny(max_epochs=2)).fit(train, val).scores(test)
    c = LogBERT(tiny(max_epochs=2, seed=1)).fit(train, val).scores(test)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unseen_key_scores_at_least_as_high(model):
    seqs = normal_seqs(30, 9)
    replaced = [s[:3] + [UNSEEN] + s[4:] for s in seqs]
    inserted = [s[:3] + [UNSEEN] + s[3:] for s in seqs]
    base = model.scores(seqs)
    for other in (replaced, inserted):
        scores = model.scores(other)
        assert (scores >= base).all() and (scores >= 1).all()
        assert (model.score_parts(other)[0] >= 1).all()  # the unseen key is always a miss
    assert model.scores([[UNSEEN]])[0] >= 1


def test_empty_sequences_score_zero(model):
    scores = model.scores([[], [1, 2, 3, 4, 5, 6, 1, 2], []])
    assert scores[0] == 0.0 and scores[2] == 0.0 and 0.0 < scores[1] < 1.0
    assert model.scores([]).shape == (0,)
    assert model.scores([[1, 2, 3, 4, 5, 6, 1, 2]])[0] == scores[1]  # a sequence's score does not depend on its batch


def test_long_sequences_are_scored_in_chunks(model):
    long = normal_seqs(1, 10)[0] * 10  # > max_len keys
    chunks = model._chunks([long])
    assert len(chunks) > 1 and all(t[0] == DIST and len(t) == 17 for _, t in chunks)
    covered = set()
    L, stride = 16, 8
    for n, (_, t) in enumerate(chunks):
        start = min(n * stride, len(long) - L)
        assert t[1:] == [model.vocab.token(k) for k in long[start:start + L]]
        covered |= set(range(start, start + L))
    assert covered == set(range(len(long)))
    side_by_side = model._chunks([long], overlap=False)  # training: each key once
    head = [k for _, t in side_by_side[:-1] for k in t[1:]]
    assert head == [model.vocab.token(k) for k in long[:16 * (len(side_by_side) - 1)]]
    assert side_by_side[-1][1][1:] == [model.vocab.token(k) for k in long[-16:]]
    broken = long[:-1] + [UNSEEN]  # only in the last chunk
    assert model.scores([long])[0] < 1 <= model.scores([broken])[0]


def test_masking_in_training(model):
    rng = np.random.default_rng(0)
    batch = model._chunks([[1], [1, 2, 3, 4, 5, 6], [1, UNSEEN, 3]])
    x, y = model._masked_batch(batch, rng)
    assert (x[:, 0] == DIST).all() and ((x == model.mask).sum(1) >= 1).all()  # <dist> never masked
    assert (y[x != model.mask] == IGNORE).all()  # only masked keys are predicted
    unk = model.vocab.token(UNSEEN)
    assert unk == 3 and not (y == unk).any()  # <unk> is never a target


def test_fit_needs_keys_and_splits_validation_itself():
    with pytest.raises(ValueError):
        LogBERT(tiny()).fit([[], []])
    m = LogBERT(tiny(max_epochs=1)).fit(normal_seqs(40, 11))  # last 10% held back for early stopping
    assert len(m.history) == 1 and "val_loss" in m.history[0]
