"""LSTM autoencoder baseline: window features, reconstruction error as the anomaly score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logsense.models.bench.baselines.lstm_ae import LSTMAEConfig, LSTMAutoencoder

RARE = 9  # a key that normal items carry at most once, and rarely


def normal_items(n: int, seed: int) -> list[list[int]]:
    """Sessions `1 2 (3 4 5)x2..4 [6] [9] 7 8`: a fixed pattern with small variations."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = [1, 2] + [3, 4, 5] * int(rng.integers(2, 5))
        if rng.random() < 0.3:
            seq.append(6)
        if rng.random() < 0.05:
            seq.append(RARE)
        out.append(seq + [7, 8])
    return out


def tiny(**kw) -> LSTMAEConfig:
    base = dict(step=3, max_steps=4, hidden=16, latent=8, batch_size=32, lr=1e-2, max_epochs=15, patience=3, progress=False)
    return LSTMAEConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def model() -> LSTMAutoencoder:
    return LSTMAutoencoder(tiny()).fit(normal_items(300, seed=0), normal_items(60, seed=1))


def test_features_are_shares_unseen_column_and_length():
    m = LSTMAutoencoder(tiny(step=2, max_epochs=1)).fit([[5, 7, 7], [7, 9]])
    assert m.columns == {5: 0, 7: 1, 9: 2} and m.n_features == 5
    l1, l2 = math.log1p(1), math.log1p(2)
    x = m.features([7, 7, 5, 42, 9])  # sub-windows [7 7] [5 42] [9]
    assert x.shape == (3, 5)
    assert np.allclose(x, [[0, 1, 0, 0, l2], [0.5, 0, 0, 0.5, l2], [0, 0, 1, 0, l1]])
    assert m.features([]).shape == (0, 5)
    assert m.std[3] == pytest.approx(m.config.min_std) and m.mean[3] == 0  # unseen: never in training


def test_anomalies_score_above_held_out_normals(model):
    assert model.history and "val_loss" in model.history[-1]
    normals = model.scores(normal_items(300, seed=2))
    base = normal_items(20, seed=3)
    unseen = [s[:3] + [99] + s[4:] for s in base]  # one key replaced by a template never seen
    burst = [s[:3] + [RARE] * 6 + s[3:] for s in base]  # a rare key, six times in a row
    threshold = np.percentile(normals, 95)
    assert model.scores(unseen).min() > threshold
    assert model.scores(burst).min() > threshold
    assert normals.mean() < 0.5 * model.scores(unseen).mean()  # a clear gap, not a hair


def test_unseen_key_raises_the_score_of_the_same_sequence(model):
    base = normal_items(20, seed=4)
    for replaced in ([s[:4] + [99] + s[5:] for s in base], [s[:4] + [None] + s[5:] for s in base]):
        assert (model.scores(replaced) > model.scores(base)).all()


def test_long_items_are_chunked_and_score_their_worst_chunk(model):
    """max_steps=4: an item of 6 sub-windows is read as two chunks of 3, each on its own."""
    item = [1, 2] + [3, 4, 5] * 4 + [6, 7, 8]  # 17 keys = 6 sub-windows of 3 (the last one of 2)
    assert [len(c) for c in model._chunks(item)] == [3, 3]
    odd = item[:15] + [99] + item[16:]  # an unseen key in the second chunk only
    whole, first, second, odd_whole, odd_second = model.scores([item, item[:9], item[9:], odd, odd[9:]])
    assert whole == pytest.approx(max(first, second), rel=1e-5)  # chunk boundaries fall on sub-windows
    assert odd_whole == pytest.approx(odd_second, rel=1e-5) and odd_whole > 10 * whole
    long = [k for s in normal_items(30, seed=5) for k in s]
    chunks, n_sub = model._chunks(long), math.ceil(len(long) / model.config.step)
    assert len(chunks) == math.ceil(n_sub / 4) and sum(map(len, chunks)) == n_sub
    assert {len(c) for c in chunks} == {3, 4}  # near-equal chunks (139 = 35 chunks of 3 or 4), none over max_steps


def test_empty_sequence_scores_zero_and_shapes(model):
    s = model.scores([[], [1, 2, 3]])
    assert s.shape == (2,) and s.dtype == np.float64
    assert s[0] == 0.0 and s[1] > 0.0
    assert model.scores([]).shape == (0,)


def test_same_seed_same_scores():
    train, test = normal_items(100, seed=6), normal_items(10, seed=7) + [[1, 2, 99, 7, 8]]
    a = LSTMAutoencoder(tiny(max_epochs=3, seed=1)).fit(train).scores(test)
    b = LSTMAutoencoder(tiny(max_epochs=3, seed=1)).fit(train).scores(test)
    c = LSTMAutoencoder(tiny(max_epochs=3, seed=2)).fit(train).scores(test)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the seed is really used


def test_threads_are_restored_after_fit_and_scores():
    before = torch.get_num_threads()
    m = LSTMAutoencoder(tiny(max_epochs=1, threads=1)).fit(normal_items(20, seed=8))
    m.scores([[1, 2, 3]])
    assert torch.get_num_threads() == before


def test_clear_errors():
    with pytest.raises(RuntimeError, match="call fit first"):
        LSTMAutoencoder().scores([[1]])
    with pytest.raises(ValueError, match="at least one non-empty"):
        LSTMAutoencoder(tiny()).fit([[], []])
