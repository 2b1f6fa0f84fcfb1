"""StreamModel's session-level rules: known content comes first, new content is RAPID's flag."""

from __future__ import annotations

import pytest

from logsense.models.embedding import load_embedder
from logsense.models.rapid import session_text
from logsense.models.stream import StreamConfig, StreamModel, TrainingData

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32, "max_epochs": 2, "batch_size": 8,
        "device": "cpu", "seed": 0, "progress": False}


@pytest.fixture(scope="module")
def trained() -> StreamModel:
    model = StreamModel(StreamConfig(preset="generic", session_regex=r"blk_-?\d+", loggpt=TINY, loggpt_top_k=1),
                        load_embedder())
    normal = ["blk_{n} start", "blk_{n} step a", "blk_{n} step b", "blk_{n} done"]
    sessions = [[line.format(n=n) for line in normal] for n in range(40)]
    parsed = [model.parse(s) for s in sessions]
    seqs = [[p.template_id for p in ps] for ps in parsed]
    texts = [session_text([p.masked for p in ps]) for ps in parsed]
    model.train(TrainingData(train_seqs=seqs[:30], val_seqs=seqs[30:],
                             train_texts=[p.masked for ps in parsed[:30] for p in ps],
                             val_texts=[p.masked for ps in parsed[30:] for p in ps], session_texts=texts))
    return model


def _session(model: StreamModel, lines: list[str]) -> tuple[list[int], str]:
    parsed = model.parse(lines)
    return [p.template_id for p in parsed], session_text([p.masked for p in parsed])


def test_known_content_is_not_flagged_even_in_another_order(trained) -> None:
    seq, text = _session(trained, ["blk_99 step b", "blk_99 done", "blk_99 start", "blk_99 step a"])
    assert trained.session_flags([text]) == [False]
    raw = trained._det.loggpt.check([seq], k=1)[0]
    assert raw.anomalous  # at top-1, LogGPT alone misses this order...
    assert trained.check([seq], sessions=[text])[0].anomalous is False  # ...but the content is a known normal's


def test_new_content_is_flagged_by_rapid_and_still_checked_by_loggpt(trained) -> None:
    seq, text = _session(trained, ["blk_98 start", "blk_98 step a", "blk_98 done"])  # step b missing
    assert trained.session_flags([text]) == [True]
    raw = trained._det.loggpt.check([seq], k=1)[0]
    assert trained.check([seq], sessions=[text])[0].anomalous == raw.anomalous  # LogGPT's verdict stands


def test_refuted_content_joins_the_normal_set(trained) -> None:
    seq, text = _session(trained, ["blk_97 start", "blk_97 step a", "blk_97 step b"])
    assert trained.session_flags([text]) == [True]
    trained.learn_normal_sessions([text])
    assert trained.session_flags([text]) == [False]
    assert trained.check([seq], sessions=[text])[0].anomalous is False


def test_windows_without_a_session_regex_get_no_session_flag() -> None:
    model = StreamModel(StreamConfig(preset="generic"), load_embedder())
    assert model.session_flags(["a ; b"]) is None  # untrained, and count/time windows


def test_count_windows_keep_only_refuted_contents() -> None:
    """Training a window stream does not keep every window's text (memory would grow with each)."""
    model = StreamModel(StreamConfig(preset="generic", loggpt=TINY, loggpt_top_k=1), load_embedder())
    windows = [model.parse([f"step {c}" for c in "abcd"]) for _ in range(10)]
    seqs = [[p.template_id for p in ps] for ps in windows]
    texts = [session_text([p.masked for p in ps]) for ps in windows]
    model.train(TrainingData(train_seqs=seqs[:8], val_seqs=seqs[8:], train_texts=[p.masked for ps in windows for p in ps],
                             session_texts=texts))
    assert model.trained and not model.rapid_session.is_normal(texts[0])
    model.learn_normal_sessions(texts[:1])
    assert model.check(seqs[:1], sessions=texts[:1])[0].anomalous is False
