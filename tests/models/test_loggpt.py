"""LogGPT on a hand-made grammar: it learns it, and check() names the right misses."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from logsense.models.loggpt import LogGPT, LogGPTConfig
from logsense.models.sequence import END, UNK, Vocabulary, calibrate_top_k

# Two session shapes: 5 6 7 8 (three times as often) and 5 9 8. After 5 the model's top choice
# is 6; every other step is deterministic.
GRAMMAR = ([[5, 6, 7, 8]] * 3 + [[5, 9, 8]]) * 40
TINY = LogGPTConfig(n_layer=1, n_head=2, n_embd=32, n_positions=32, dropout=0.0, lr=1e-2, batch_size=32,
                    max_epochs=15, patience=3, progress=False)


@pytest.fixture(scope="module")
def model() -> LogGPT:
    return LogGPT(TINY).fit(GRAMMAR, None, sessions=True)


def test_learns_the_grammar(model):
    ranks = model.ranks([[5, 6, 7, 8], [5, 9, 8]])
    assert [len(r) for r in ranks] == [5, 4]  # one per key plus the end key
    assert ranks[0].tolist() == [0, 0, 0, 0, 0]
    assert ranks[1].tolist() == [0, 1, 0, 0]  # 9 is the second choice after 5
    assert model.scores([[5, 6, 7, 8], [5, 9, 8]]).tolist() == [0.0, 1.0]
    assert len(model.vocab) == 4 + 5


def test_wrong_key_is_a_miss_at_its_position(model):
    (result,) = model.check([[5, 6, 8]], k=1)
    assert result.anomalous
    assert len(result.misses) == 1
    miss = result.misses[0]
    assert (miss.position, miss.actual, miss.unseen) == (2, 8, False)
    assert miss.expected == [7]
    (fine,) = model.check([[5, 9, 8]], k=2)
    assert not fine.anomalous and fine.misses == []


def test_session_that_stops_early_misses_the_end_key(model):
    (result,) = model.check([[5, 6, 7]], k=1)
    assert [(m.position, m.actual) for m in result.misses] == [(3, END)]
    assert result.misses[0].expected == [8]
    (longer,) = model.check([[5, 6, 7, 8, 8]], k=1)  # goes on after its end
    assert (longer.misses[0].position, longer.misses[0].actual, longer.misses[0].expected) == (4, 8, [END])


def test_unseen_template_is_always_a_miss(model):
    ranks = model.ranks([[5, 6, 42, 8]])[0]
    assert ranks[2] == len(model.vocab)
    (result,) = model.check([[5, 6, 42, 8]], k=model.max_k())
    assert [(m.position, m.actual, m.unseen) for m in result.misses] == [(2, 42, True)]


def test_calibrate_top_k_numbers():
    # K is the smallest with at most floor(fpr * n) sequences scoring >= K
    assert calibrate_top_k([0, 0, 0, 1, 3], target_fpr=0.0) == 4
    assert calibrate_top_k([0, 0, 0, 1, 3], target_fpr=0.2) == 2  # one of five may be flagged: the 3
    assert calibrate_top_k([0, 0, 0, 1, 3], target_fpr=0.4) == 1
    assert calibrate_top_k([0, 0, 0, 0], target_fpr=0.0) == 1  # K is at least 1
    assert calibrate_top_k([2, 2, 2, 2], target_fpr=0.5) == 3  # ties: all or none
    assert calibrate_top_k([0, 1, math.inf], target_fpr=0.0, max_k=7) == 7  # unseen: no K helps
    assert calibrate_top_k([0, 1, math.inf], target_fpr=0.34, max_k=7) == 2
    with pytest.raises(ValueError):
        calibrate_top_k([0, math.inf], target_fpr=0.0)


def test_calibrate_k_on_validation_normals(model):
    val = [[5, 6, 7, 8]] * 9 + [[5, 9, 8]]  # worst ranks: nine 0s and one 1
    assert model.calibrate_k(val, target_fpr=0.0) == 2
    assert model.k == 2
    assert model.calibrate_k(val, target_fpr=0.1) == 1
    assert np.mean([r.anomalous for r in model.check(val, k=1)]) == pytest.approx(0.1)


def test_checkpoint_round_trip(model, tmp_path):
    model.k = 3
    path = tmp_path / "loggpt.pt"
    model.save(path)
    loaded = LogGPT.load(path)
    seqs = [[5, 6, 7, 8], [5, 6, 8], [5, 42]]
    assert all(np.array_equal(a, b) for a, b in zip(model.ranks(seqs), loaded.ranks(seqs)))
    assert loaded.config == model.config
    assert loaded.vocab.keys == model.vocab.keys
    assert loaded.k == 3 and loaded.sessions is True
    assert [p.name for p in tmp_path.iterdir()] == ["loggpt.pt"]  # no temporary left behind


def test_fine_tune_grows_the_vocabulary_and_keeps_old_ids(model):
    tuned = model.copy()
    old = {k: tuned.vocab.token(k) for k in tuned.vocab.keys}
    tuned.fine_tune([[5, 6, 10, 7, 8]] * 60 + GRAMMAR, None, epochs=8)
    assert tuned.vocab.keys[-1] == 10
    assert {k: tuned.vocab.token(k) for k in old} == old
    assert tuned.net.get_input_embeddings().num_embeddings == len(tuned.vocab)
    assert tuned.ranks([[5, 6, 10, 7, 8]])[0][2] < len(tuned.vocab)  # no longer unseen
    assert 10 not in model.vocab  # the copy is independent


def test_windows_do_not_end():
    m = LogGPT(replace(TINY, max_epochs=3)).fit([[1, 2, 3, 1, 2, 3]] * 20, None, sessions=False)
    ranks = m.ranks([[1, 2, 3], []])
    assert [len(r) for r in ranks] == [3, 0]
    assert m.scores([[]]).tolist() == [0.0]
    (result,) = m.check([[1, 2, 1]], k=m.max_k())
    assert m.max_k() == 3 and result.misses == []  # <eos> is never expected for a window


def test_long_sequences_are_chunked_and_every_key_scored_once():
    m = LogGPT(replace(TINY, n_positions=8, max_epochs=10))
    seqs = [[1, 2, 3, 4] * 6] * 30  # 24 keys: longer than the context
    m.fit(seqs, None, sessions=True)
    tokens = [m.vocab.encode(s, True) for s in seqs[:1]]
    batch = m._run(m._chunks(tokens))
    assert sorted(batch.pos.tolist()) == list(range(25))  # every target exactly once
    ranks = m.ranks(seqs[:1])[0]
    assert len(ranks) == 25 and ranks[:24].tolist() == [0] * 24  # (where a long session ends is beyond the context)


def test_reinforcement_step_changes_weights():
    plain = LogGPT(replace(TINY, max_epochs=1)).fit(GRAMMAR, None)
    again = LogGPT(replace(TINY, max_epochs=1)).fit(GRAMMAR, None)
    rl = LogGPT(replace(TINY, max_epochs=1, rl_steps=2, rl_top_k=2, rl_lr=1e-2)).fit(GRAMMAR, None)
    assert [h["rl_step"] for h in rl.history if "rl_step" in h] == [0, 1]
    a, b, c = plain.net.state_dict(), again.net.state_dict(), rl.net.state_dict()
    assert all(torch.equal(w, b[name]) for name, w in a.items())  # seeded: the same without RL
    assert any(not torch.equal(w, c[name]) for name, w in a.items())  # so RL made the difference


def test_vocabulary_dict_round_trip():
    v = Vocabulary([7, 3, 7, 9])
    assert v.keys == [7, 3, 9] and len(v) == 7
    assert v.encode([3, 11], sessions=True) == [1, 5, UNK, 2]
    assert v.grow([9, 12]) == 1 and v.token(12) == 7
    assert Vocabulary.from_dict(v.to_dict()).keys == v.keys
    assert v.key(2) == END
