import numpy as np
import pytest

from logsense.models.bench.ensemble import Ensemble, EnsembleConfig, calibrate_jointly, choose_policy, combine, severity


def test_combine_is_and_for_danger_or_for_watch():
    assert combine(True, True) == "danger"
    assert combine(True, False) == "watch"
    assert combine(False, True) == "watch"
    assert combine(False, False) == "normal"
    out = severity(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert list(out) == ["danger", "watch", "watch", "normal"]


def test_joint_calibration_keeps_the_or_within_budget():
    rng = np.random.default_rng(0)
    # Two independent parts: each at 1% alone would give an OR near 2%.
    a, b = rng.random(5000), rng.random(5000)
    t = calibrate_jointly({"a": a, "b": b}, target_fpr=0.01)
    union = np.mean((a > t["a"]) | (b > t["b"]))
    assert union <= 0.01
    assert union > 0.008  # it spends the budget, not far less
    alone = np.mean(a > t["a"])
    assert alone < 0.0075  # each part gets only part of the budget


def test_fixed_part_spends_budget_first():
    a = np.zeros(1000)
    a[:20] = 1.0  # a fixed part that flags 2% on its own: over budget
    b = np.linspace(0, 1, 1000)
    t = calibrate_jointly({"a": a, "b": b}, target_fpr=0.01, fixed={"a": 0.5})
    assert t["a"] == 0.5
    assert not np.any(b > t["b"])  # nothing left for b


def test_ties_at_zero_give_threshold_zero():
    a = np.zeros(1000)
    a[:3] = 0.7  # 0.3% of normals are novel
    t = calibrate_jointly({"a": a}, target_fpr=0.01)
    assert t["a"] == 0.0


def test_policy_from_training_levels_only():
    assert choose_policy(["INFO", "WARN", None]) == "calibrated"
    assert choose_policy(["INFO", "FATAL"]) == "gated"


def test_gated_policy_flags_only_severe_unknown_lines():
    ens = Ensemble(EnsembleConfig(policy="gated", target_fpr=0.01))
    val_levels = ["INFO"] * 100
    ens.calibrate({"rapid": np.full(100, 0.3), "loggpt": np.zeros(100)}, levels=val_levels)
    assert ens.thresholds["rapid"] == 0.0  # exact lookup
    scores = {"rapid": np.array([0.0, 0.4, 0.4, 0.9]), "loggpt": np.array([0.0, 0.0, 0.0, 5.0])}
    levels = ["FATAL", "INFO", "FATAL", "ERROR"]
    out = ens.decide(scores, levels)
    assert list(out) == ["normal", "normal", "watch", "danger"]
    with pytest.raises(ValueError):
        ens.decide(scores, None)


def test_continuous_score_orders_like_the_parts():
    ens = Ensemble(EnsembleConfig())
    ref = np.linspace(0, 1, 101)
    ens.calibrate({"rapid": ref, "loggpt": ref})
    s = ens.score({"rapid": np.array([0.1, 0.5, 2.0]), "loggpt": np.array([0.0, 0.0, 0.0])})
    assert s[0] < s[1] < s[2]


def test_combine_agrees_with_severity_and_treats_unchecked_as_not_flagged():
    import numpy as np

    for r in (True, False):
        for g in (True, False):
            assert combine(r, g) == severity(np.array([r]), np.array([g]))[0]
    assert combine(None, None) == "normal" and combine(True, None) == "watch"


def test_loggpt_does_not_flag_known_normal_content():
    """Known content comes first: LogGPT's flag on a known-normal session raises no severity,
    RAPID's flags are untouched, and the thresholds are the strict OR's (the rule only takes
    flags away, so the budget holds)."""
    val = {"rapid_session": np.zeros(1000), "loggpt": np.zeros(1000)}
    val["loggpt"][:5] = 9.0
    ens = Ensemble(EnsembleConfig(target_fpr=0.01))
    ens.calibrate(val)
    assert ens.thresholds["loggpt"] == 0.0
    test = {"rapid_session": np.array([0.0, 0.0, 0.5, 0.5]), "loggpt": np.array([9.0, 9.0, 9.0, 0.0])}
    known = np.array([True, False, False, False])
    assert list(ens.decide(test, known=known)) == ["normal", "watch", "danger", "watch"]
    assert list(ens.decide(test)) == ["watch", "watch", "danger", "watch"]
    known_val = np.zeros(1000, dtype=bool)
    known_val[:3] = True
    assert np.mean(ens.decide(val, known=known_val) != "normal") <= np.mean(ens.decide(val) != "normal") <= 0.01
    s = ens.score(test, known=known)
    assert s[0] == 0.0 and s[1] > 0.0
