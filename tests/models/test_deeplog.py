"""DeepLog: the same calls as LogGPT, on the same hand-made grammar."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from logsense.models.bench.baselines.deeplog import DeepLog, DeepLogConfig
from logsense.models.sequence import END

GRAMMAR = ([[5, 6, 7, 8]] * 3 + [[5, 9, 8]]) * 40
TINY = DeepLogConfig(h=3, n_embd=16, hidden=32, layers=1, lr=1e-2, batch_size=32, max_epochs=15, progress=False)


@pytest.fixture(scope="module")
def model() -> DeepLog:
    return DeepLog(TINY).fit(GRAMMAR, None, sessions=True)


def test_learns_the_grammar_and_names_misses(model):
    ranks = model.ranks([[5, 6, 7, 8], [5, 9, 8]])
    assert ranks[0].tolist() == [0] * 5 and ranks[1].tolist() == [0, 1, 0, 0]
    wrong, short, unseen = model.check([[5, 6, 8], [5, 6, 7], [5, 6, 42, 8]], k=1)
    assert [(m.position, m.actual, m.expected) for m in wrong.misses] == [(2, 8, [7])]
    assert [(m.position, m.actual, m.expected) for m in short.misses] == [(3, END, [8])]
    assert (unseen.misses[0].position, unseen.misses[0].actual, unseen.misses[0].unseen) == (2, 42, True)
    assert model.scores([[5, 6, 42, 8]])[0] == len(model.vocab)


def test_window_is_padded_with_bos_at_the_start(model):
    (w, t, s, p) = model._batches([model.vocab.encode([5, 6, 7, 8], True)], False, None)[0]
    assert w.shape == (5, 3) and w[0].tolist() == [1, 1, 1]  # <bos> only, predicting key 0
    assert w[4].tolist() == model.vocab.encode([6, 7, 8], False)[1:]  # the last h keys before <eos>
    assert p.tolist() == [0, 1, 2, 3, 4]


def test_g_is_calibrated_or_fixed(model):
    val = [[5, 6, 7, 8]] * 9 + [[5, 9, 8]]
    assert model.calibrate_k(val, target_fpr=0.0) == 2 and model.g == 2
    assert model.calibrate_k(val, target_fpr=0.1) == 1
    fixed = DeepLog(replace(TINY, max_epochs=1, g=3)).fit(GRAMMAR, None)
    assert fixed.g == 3 and fixed.k == 3


def test_checkpoint_round_trip_and_fine_tune(model, tmp_path):
    model.g = 2
    model.save(tmp_path / "deeplog.pt")
    loaded = DeepLog.load(tmp_path / "deeplog.pt")
    seqs = [[5, 6, 7, 8], [5, 6, 8], [5, 42]]
    assert all(np.array_equal(a, b) for a, b in zip(model.ranks(seqs), loaded.ranks(seqs)))
    assert loaded.config == model.config and loaded.vocab.keys == model.vocab.keys and loaded.g == 2
    old = {k: loaded.vocab.token(k) for k in loaded.vocab.keys}
    loaded.fine_tune([[5, 6, 10, 7, 8]] * 60 + GRAMMAR, None, epochs=8)
    assert {k: loaded.vocab.token(k) for k in old} == old and loaded.vocab.keys[-1] == 10
    ranks = loaded.ranks([[5, 6, 10, 7, 8]])[0]
    assert ranks[2] <= 1 and ranks[3:].tolist() == [0, 0, 0]  # 10 learned (7 is as likely after 5 6)
