import inspect

import numpy as np
import pytest

from logsense.models.bench import ensemble
from logsense.models.bench.baselines.floors import UnseenTemplate
from logsense.models.bench.evaluation import (
    auprc,
    binary_metrics,
    chrono_split,
    oracle_threshold,
    pr_curve,
    protocol_text,
    random_split,
    simulate_operator,
    threshold_at_fpr,
)

# ----------------------------------------------------------------------------- splits


def test_chrono_split_keeps_time_order_and_fractions():
    rng = np.random.default_rng(0)
    keys = rng.permutation(1000).astype(float) * 3.5  # item i starts at keys[i]; items given out of order
    s = chrono_split(keys, (0.6, 0.1, 0.3))
    assert (len(s.train), len(s.val), len(s.test)) == (600, 100, 300)
    assert keys[s.train].max() < keys[s.val].min()
    assert keys[s.val].max() < keys[s.test].min()  # no test item starts before any train/val item
    for part in (s.train, s.val, s.test):
        assert np.all(np.diff(keys[part]) > 0)  # each part in time order
    everything = np.concatenate([s.train, s.val, s.test])
    assert sorted(everything.tolist()) == list(range(1000))  # a partition: no overlap, nothing lost


def test_chrono_split_ties_keep_given_order_and_rounds():
    s = chrono_split([1, 0, 0, 0, 1, 1, 2, 2], (0.5, 0.25, 0.25))
    assert s.train.tolist() == [1, 2, 3, 0]  # the three 0s in given order, then the first 1
    assert s.val.tolist() == [4, 5]
    assert s.test.tolist() == [6, 7]
    s = chrono_split(range(7), (0.5, 0.25, 0.25))  # cuts at round(3.5) = 4 and round(5.25) = 5
    assert (len(s.train), len(s.val), len(s.test)) == (4, 1, 2)


def test_split_fractions_are_checked():
    with pytest.raises(ValueError):
        chrono_split(range(10), (0.6, 0.3, 0.3))
    with pytest.raises(ValueError):
        random_split(10, (0.5, -0.1, 0.6))


def test_random_split_is_deterministic_by_seed():
    a, b, c = random_split(500, seed=3), random_split(500, seed=3), random_split(500, seed=4)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert np.all(np.diff(getattr(a, name)) > 0)  # sorted within each part
    assert not np.array_equal(a.test, c.test)
    assert (len(a.train), len(a.val), len(a.test)) == (300, 50, 150)
    assert sorted(np.concatenate([a.train, a.val, a.test]).tolist()) == list(range(500))


# ----------------------------------------------------------------------------- thresholds


def test_threshold_at_fpr_is_exact_at_most():
    scores = np.arange(100, dtype=float)  # 0..99
    t = threshold_at_fpr(scores, 0.01)
    assert t == 98.0  # exactly one score (99) above: 1% allowed
    assert threshold_at_fpr(scores, 0.05) == 94.0
    assert threshold_at_fpr(scores, 0.0149) == 98.0  # floor(1.49) = 1
    rng = np.random.default_rng(1)
    for fpr in (0.003, 0.01, 0.1, 0.5):
        s = rng.normal(size=777)
        t = threshold_at_fpr(s, fpr)
        assert np.mean(s > t) <= fpr
        lower = s[s < t]
        if lower.size:  # the next lower observed score would overspend: t is the smallest that fits
            assert np.mean(s > lower.max()) > fpr


def test_threshold_at_fpr_ties():
    mostly_zero = np.zeros(1000)
    mostly_zero[:5] = 1.0  # 0.5% novel normals
    assert threshold_at_fpr(mostly_zero, 0.01) == 0.0
    many = np.zeros(1000)
    many[:20] = 1.0  # 2% at 1.0: t = 0 would flag 2%, so t must be 1.0 (flags nothing)
    assert threshold_at_fpr(many, 0.01) == 1.0
    assert threshold_at_fpr(np.full(10, 0.3), 0.5) == 0.3


def test_threshold_at_fpr_target_zero_and_one():
    s = [0.2, 0.9, 0.4, 0.9]
    assert threshold_at_fpr(s, 0.0) == 0.9  # nothing flagged
    assert threshold_at_fpr(s, 1.0) == 0.2  # the lowest observed score


def test_threshold_at_fpr_errors():
    with pytest.raises(ValueError):
        threshold_at_fpr([], 0.01)
    with pytest.raises(ValueError):
        threshold_at_fpr([0.1, float("nan")], 0.01)
    with pytest.raises(ValueError):
        threshold_at_fpr([0.1], 1.5)
    with pytest.raises(ValueError):
        threshold_at_fpr([0.1], -0.1)


LABEL_NAMES = {"y", "y_true", "labels", "label", "y_test", "test_labels"}


def test_threshold_at_fpr_takes_no_labels():
    params = list(inspect.signature(threshold_at_fpr).parameters)
    assert params == ["normal_scores", "target_fpr"]


def test_joint_calibration_takes_only_normal_scores():
    for fn in (ensemble.calibrate_jointly, ensemble.Ensemble.calibrate):
        assert not LABEL_NAMES & set(inspect.signature(fn).parameters), fn


def test_joint_calibration_thresholds_come_from_the_given_normal_scores(monkeypatch):
    seen: list[np.ndarray] = []
    real = ensemble.threshold_at_fpr

    def spy(scores, target_fpr=0.01):
        seen.append(np.asarray(scores, dtype=float))
        return real(scores, target_fpr)

    monkeypatch.setattr(ensemble, "threshold_at_fpr", spy)
    rng = np.random.default_rng(2)
    val = {"rapid": rng.random(300), "loggpt": rng.integers(0, 5, 300).astype(float)}
    t = ensemble.calibrate_jointly(val, 0.01, grid=20)
    assert seen, "calibrate_jointly must calibrate through threshold_at_fpr"
    allowed = set(np.concatenate(list(val.values())).tolist())
    assert all(set(s.tolist()) <= allowed for s in seen)  # nothing but the validation normals
    assert all(t[n] in set(v.tolist()) for n, v in val.items())


def test_oracle_threshold_picks_best_f1():
    y = [0, 0, 1, 0, 1, 1]
    s = [0.1, 0.2, 0.6, 0.3, 0.7, 0.8]
    t = oracle_threshold(y, s)
    assert binary_metrics(y, np.asarray(s) > t)["f1"] == 1.0
    assert t == 0.3  # the highest threshold with the best F1


# ----------------------------------------------------------------------------- metrics


def test_binary_metrics_by_hand():
    y = [1, 1, 1, 0, 0, 0, 0]
    f = [1, 1, 0, 1, 0, 0, 0]
    m = binary_metrics(y, f)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    none = binary_metrics([0, 0], [0, 0])
    assert none["precision"] == none["recall"] == none["f1"] == 0.0
    with pytest.raises(ValueError):
        binary_metrics([1, 0], [1])


def test_auprc_and_pr_curve():
    assert auprc([0, 1, 0, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(1.0)
    # Ranked: anomaly, normal, anomaly -> AP = 0.5 * 1 + 0.5 * 2/3.
    assert auprc([1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.5 + 1 / 3)
    assert np.isnan(auprc([0, 0, 0], [0.1, 0.2, 0.3]))
    p, r, t = pr_curve([0, 0], [0.1, 0.2])
    assert p.size == r.size == t.size == 0
    p, r, _ = pr_curve([1, 0, 1], [0.9, 0.8, 0.1])
    assert r.max() == 1.0 and p.max() == 1.0


def test_protocol_text_labels_the_oracle():
    assert "oracle" in protocol_text("paper").lower()
    assert "oracle" not in protocol_text("chrono").lower()
    assert "1%" in protocol_text("chrono", target_fpr=0.01)
    with pytest.raises(ValueError):
        protocol_text("other")


# ----------------------------------------------------------------------------- simulated operator


def test_simulate_operator_refutations_stop_repeats():
    # A normal but novel template 7 recurs; anomaly template 9 recurs too.
    stream = [[1, 7], [1, 2], [7], [9], [1, 7, 2], [9, 1]]
    labels = [0, 0, 0, 1, 0, 1]
    det = UnseenTemplate().fit([[1, 2]])
    refuted, confirmed = [], []

    def flag(i):
        return bool(det.score([stream[i]])[0] > 0)

    def refute(i):
        refuted.append(i)
        det.add_normal(stream[i])

    out = simulate_operator(labels, flag, refute, confirm=confirmed.append)
    assert out["flagged"].tolist() == [True, False, False, True, False, True]
    assert refuted == [0]  # one click on the novel normal, then it is known
    assert confirmed == [3, 5]  # confirming an anomaly teaches nothing: it keeps flagging
    assert out["clicks"] == 3
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 0)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == 1.0

    # Without learning from refutations, every repeat costs a click.
    det2 = UnseenTemplate().fit([[1, 2]])
    out2 = simulate_operator(labels, lambda i: bool(det2.score([stream[i]])[0] > 0), lambda i: None)
    assert out2["clicks"] == 5 and out2["fp"] == 3
