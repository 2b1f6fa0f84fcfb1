import numpy as np
import pytest

from logsense.models.bench.baselines.iforest import IForestDetector


def normal_items(n: int = 300, seed: int = 0) -> list[list[int]]:
    """Sessions that use templates 1..5, each about 5 times (binomial counts), in shuffled order."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = [t for t in range(1, 6) for _ in range(int(rng.binomial(10, 0.5)))]
        out.append([int(t) for t in rng.permutation(seq)])
    return out


def test_obviously_odd_count_vector_ranks_above_normals():
    det = IForestDetector(seed=0).fit(normal_items())
    test_normals = normal_items(100, seed=1)
    odd = [[t for t in range(1, 6) for _ in range(12)], [1, 2, 3, 4, 5]]  # every count far too high / too low
    scores = det.score(test_normals + odd)
    assert scores.shape == (102,)
    assert scores[-2:].min() > scores[:-2].max()


def test_a_feature_constant_in_training_cannot_isolate():
    """Why UnseenTemplate is still needed beside it: the forest only splits where training varies,
    so the (always-zero in training) other/unseen column alone does not raise a score."""
    det = IForestDetector(seed=0).fit(normal_items())
    base = [t for t in range(1, 6) for _ in range(5)]
    assert det.score([base + [99, 99, 99]])[0] == pytest.approx(det.score([base])[0])


def test_vectorize_counts_and_other_column():
    det = IForestDetector(seed=0, n_estimators=10).fit([[5, 7, 7], [7, 9]])
    assert det.columns == {5: 0, 7: 1, 9: 2}
    x = det.vectorize([[7, 7, 5], [42, None, 9], []])
    assert x.tolist() == [[1, 2, 0, 0], [0, 0, 1, 2], [0, 0, 0, 0]]


def test_same_seed_same_scores():
    train, test = normal_items(), normal_items(20, seed=3) + [[2] * 10]
    a = IForestDetector(seed=1).fit(train).score(test)
    b = IForestDetector(seed=1).fit(train).score(test)
    assert np.array_equal(a, b)


def test_empty_training_set_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one training item"):
        IForestDetector().fit([])


def test_score_before_fit_and_empty_input():
    with pytest.raises(RuntimeError):
        IForestDetector().score([[1]])
    det = IForestDetector(n_estimators=5).fit([[1, 2]])
    assert det.score([]).shape == (0,)
