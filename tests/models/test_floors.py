import numpy as np

from logsense.models.bench.baselines.floors import SeverityRule, UnseenSession, UnseenTemplate
from logsense.models.bench.ensemble import SEVERE_LEVELS

TRAIN = [[1, 2, 3], [1, 2], [2, 3, 3, 3]]


def test_unseen_template_flags_items_with_a_new_id_only():
    det = UnseenTemplate().fit(TRAIN)
    scores = det.score([[1, 2], [3, 1, 2, 2], [1, 4], [9], [], [2, None]])
    assert scores.dtype == np.float64
    assert list(scores) == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]  # None (no template matched) is unseen


def test_unseen_template_add_normal_teaches_at_once_and_refit_forgets():
    det = UnseenTemplate().fit(TRAIN)
    assert det.score([[1, 4]])[0] == 1.0
    det.add_normal([4])
    assert list(det.score([[1, 4], [4, 4], [5]])) == [0.0, 0.0, 1.0]
    det.fit(TRAIN)  # a new fit starts from the training data alone
    assert det.score([[4]])[0] == 1.0


def test_unseen_session_uses_the_set_of_ids():
    det = UnseenSession().fit(TRAIN)
    # {1,2,3}, {1,2}, {2,3} are known; order and counts do not matter.
    scores = det.score([[3, 2, 1, 1], [2, 1], [3, 2], [1, 3], [1], [1, 2, 3, 4]])
    assert list(scores) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # Known templates in a new combination: UnseenTemplate stays silent, UnseenSession flags.
    assert UnseenTemplate().fit(TRAIN).score([[1, 3]])[0] == 0.0


def test_unseen_session_add_normal():
    det = UnseenSession().fit(TRAIN)
    assert det.score([[1, 3]])[0] == 1.0
    det.add_normal([3, 1, 3])
    assert list(det.score([[1, 3], [1, 1, 3], [1, 3, 4]])) == [0.0, 0.0, 1.0]


def test_severity_rule_levels_case_insensitive_and_none():
    rule = SeverityRule()
    rule.fit([["INFO"], ["ERROR"]])  # no-op: a rule does not learn
    items = [["INFO", "WARN"], ["INFO", "error"], ["Fatal"], [None, None], [], ["WARNING"], ["panic"], ["SEVERE"]]
    assert list(rule.score(items)) == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    rule.add_normal(["ERROR"])  # no-op too: ERROR still flags
    assert rule.score([["ERROR"]])[0] == 1.0
    assert all(rule.score([[lvl]])[0] == 1.0 for lvl in SEVERE_LEVELS)


def test_scores_are_empty_arrays_for_no_items():
    assert UnseenTemplate().fit(TRAIN).score([]).shape == (0,)
    assert UnseenSession().fit(TRAIN).score([]).shape == (0,)
    assert SeverityRule().score([]).shape == (0,)
