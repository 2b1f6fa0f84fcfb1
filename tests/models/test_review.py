"""The training review: suspicious templates, and rare session shapes made of common lines."""

from __future__ import annotations

import pytest

from logsense.models.embedding import load_embedder
from logsense.models.review import Review, TrainingLine, shape_id, suspicious
from logsense.models.stream import ClosedWindow, StreamConfig, StreamModel, training_data


@pytest.fixture(scope="module")
def embedder():  # noqa: ANN201
    return load_embedder()


def _sessions(n_normal: int, n_short: int) -> list[ClosedWindow]:
    """Normal sessions of four steps (templates 1-4), and sessions that stop after the first two
    steps: no rare template among them, only a rare shape."""
    full, short = [1, 2, 3, 4], [1, 2]
    out = [ClosedWindow(key=f"s{i}", seq=list(full), masked=[f"step {t}" for t in full]) for i in range(n_normal)]
    out += [ClosedWindow(key=f"x{i}", seq=list(short), masked=[f"step {t}" for t in short]) for i in range(n_short)]
    return out


def _lines(windows: list[ClosedWindow]) -> list[TrainingLine]:
    return [TrainingLine(t, m, "INFO", float(i), w.key) for i, w in enumerate(windows) for t, m in zip(w.seq, w.masked)]


def test_a_rare_session_shape_of_common_templates_is_an_item_of_its_own() -> None:
    items = suspicious(_lines(_sessions(400, 3)), sessions=True)
    assert [it.shape for it in items] == [(1, 2)]
    item = items[0]
    assert item.template_id == shape_id([2, 1]) < 0 and item.n_windows == 3 and "rare session shape" in item.reasons[0]
    assert suspicious(_lines(_sessions(400, 3)), sessions=False) == []  # count windows have no shapes
    assert [it.shape for it in suspicious(_lines(_sessions(100, 30)), sessions=True)] == []  # 23% of sessions: common


def test_the_sessions_of_an_unanswered_shape_train_nothing_until_called_normal(embedder) -> None:
    model = StreamModel(StreamConfig(preset="generic", session_regex=r"s\d+"), embedder)
    windows = _sessions(400, 3)
    items = model.review(_lines(windows))
    sid = items[0].template_id
    assert model.reviews[sid] == Review.UNCONFIRMED.value and model.excluded_templates() == set()
    data = training_data(windows, exclude=model.excluded_templates(), exclude_shapes=model.excluded_shapes())
    assert all(seq == [1, 2, 3, 4] for seq in data.train_seqs + data.val_seqs)
    model.answer_review(sid, "normal")
    data = training_data(windows, exclude=model.excluded_templates(), exclude_shapes=model.excluded_shapes())
    assert sum(seq == [1, 2] for seq in data.train_seqs + data.val_seqs) == 3


def test_shape_answers_survive_a_save_and_load(tmp_path, embedder) -> None:
    model = StreamModel(StreamConfig(preset="generic", session_regex=r"s\d+"), embedder)
    sid = model.review(_lines(_sessions(400, 3)))[0].template_id
    model.answer_review(sid, "anomaly")
    model.save(tmp_path)
    loaded = StreamModel.load(tmp_path, embedder)
    assert loaded.reviews[sid] == "anomaly" and loaded.excluded_shapes() == {frozenset({1, 2})}
