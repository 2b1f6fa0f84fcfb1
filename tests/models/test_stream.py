"""StreamModel's session-level rules: known content comes first, new content is RAPID's flag."""

from __future__ import annotations

import pytest

from logsense.models.embedding import load_embedder
from logsense.models.stream import StreamConfig, StreamModel, TrainingData, content_text

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
    texts = [content_text([p.masked for p in ps]) for ps in parsed]
    model.train(TrainingData(train_seqs=seqs[:30], val_seqs=seqs[30:],
                             train_texts=[p.masked for ps in parsed[:30] for p in ps],
                             val_texts=[p.masked for ps in parsed[30:] for p in ps], session_texts=texts))
    return model


def _session(model: StreamModel, lines: list[str]) -> tuple[list[int], str]:
    parsed = model.parse(lines)
    return [p.template_id for p in parsed], content_text([p.masked for p in parsed])


def _content(model: StreamModel, lines: list[str]) -> set[str]:
    return {p.masked for p in model.parse(lines)}


def test_known_content_is_not_flagged_even_in_another_order(trained) -> None:
    lines = ["blk_99 step b", "blk_99 done", "blk_99 start", "blk_99 step a"]
    seq, text = _session(trained, lines)
    assert trained.session_flags([_content(trained, lines)]) == [False]
    raw = trained._det.loggpt.check([seq], k=1)[0]
    assert raw.anomalous  # at top-1, LogGPT alone misses this order...
    assert trained.check([seq], sessions=[text])[0].anomalous is False  # ...but the content is a known normal's


def test_new_content_is_flagged_by_rapid_and_still_checked_by_loggpt(trained) -> None:
    lines = ["blk_98 start", "blk_98 step a", "blk_98 crashed"]  # a line no normal session had
    seq, text = _session(trained, lines)
    assert trained.session_flags([_content(trained, lines)]) == [True]
    raw = trained._det.loggpt.check([seq], k=1)[0]
    assert trained.check([seq], sessions=[text])[0].anomalous == raw.anomalous  # LogGPT's verdict stands


def test_content_that_fits_inside_a_normal_session_is_not_new(trained) -> None:
    """A session cut short (or missing a step) holds nothing a normal session lacked: not new
    content (LogGPT still reads its order)."""
    assert trained.session_flags([_content(trained, ["blk_96 start", "blk_96 step a"])]) == [False]
    assert trained.session_flags([_content(trained, ["blk_96 start", "blk_96 step a", "blk_96 done"])]) == [False]


def test_a_session_split_by_the_idle_timeout_is_not_flagged_for_being_partial() -> None:
    """Training sees sessions as the stream cut them (some in two parts, the second with the first
    as context); a live session cut the same way is judged part by part with what came before:
    neither its prefix nor its continuation is anomalous. The continuation alone would be."""
    from logsense.models.stream import ClosedWindow, training_data

    model = StreamModel(StreamConfig(preset="generic", session_regex=r"blk_-?\d+", loggpt=TINY, loggpt_top_k=1),
                        load_embedder())
    head, tail = ["blk_{n} start", "blk_{n} step a"], ["blk_{n} step b", "blk_{n} done"]

    def parts(n: int, split: bool) -> list[ClosedWindow]:
        chunks = [head, tail] if split else [head + tail]
        out = []
        for chunk in chunks:
            parsed = model.parse([line.format(n=n) for line in chunk])
            out.append(ClosedWindow(key=f"blk_{n}", seq=[p.template_id for p in parsed], masked=[p.masked for p in parsed]))
        return out

    windows = [w for n in range(60) for w in parts(n, split=n % 2 == 0)]
    model.train(training_data(windows))
    assert model.trained
    prefix, rest = parts(1000, split=True)
    rest_in_context = ClosedWindow(key=rest.key, seq=rest.seq, masked=rest.masked, context_seq=prefix.seq,
                                   context_masked=prefix.masked)
    verdicts = model.judge([prefix, rest_in_context, rest])
    assert [v.anomalous for v in verdicts] == [False, False, True]


def test_refuted_content_joins_the_normal_set(trained) -> None:
    lines = ["blk_97 start", "blk_97 step a", "blk_97 step b", "blk_97 retried"]
    seq, text = _session(trained, lines)
    assert trained.session_flags([_content(trained, lines)]) == [True]
    trained.learn_normal_sessions([text])
    assert trained.session_flags([_content(trained, lines)]) == [False]
    assert trained.check([seq], sessions=[text])[0].anomalous is False


def test_windows_without_a_session_regex_get_no_session_flag() -> None:
    model = StreamModel(StreamConfig(preset="generic"), load_embedder())
    assert model.session_flags([{"a", "b"}]) is None  # untrained, and count/time windows


def test_count_windows_keep_only_refuted_contents() -> None:
    """Training a window stream does not keep every window's text (memory would grow with each)."""
    model = StreamModel(StreamConfig(preset="generic", loggpt=TINY, loggpt_top_k=1), load_embedder())
    windows = [model.parse([f"step {c}" for c in "abcd"]) for _ in range(10)]
    seqs = [[p.template_id for p in ps] for ps in windows]
    texts = [content_text([p.masked for p in ps]) for ps in windows]
    model.train(TrainingData(train_seqs=seqs[:8], val_seqs=seqs[8:], train_texts=[p.masked for ps in windows for p in ps],
                             session_texts=texts))
    assert model.trained and not model.rapid_session.is_normal(texts[0])
    model.learn_normal_sessions(texts[:1])
    assert model.check(seqs[:1], sessions=texts[:1])[0].anomalous is False


def test_a_worse_retrain_is_not_promoted() -> None:
    """A candidate that validates worse than the live model on the same data (here: it misses the
    operator-confirmed anomalies the live model catches) is kept back and the live model stays;
    an as-good one is promoted."""
    model = StreamModel(StreamConfig(preset="generic", session_regex=r"blk_-?\d+", loggpt={**TINY, "max_epochs": 10},
                                     loggpt_top_k=1), load_embedder())
    normal = ["blk_{n} receiving data from client", "writing replica of blk_{n} to local disk",
              "checksum verified for blk_{n} in volume", "closing stream of blk_{n} after transfer"]
    parsed = [model.parse([line.format(n=n) for line in normal]) for n in range(200)]
    seqs = [[p.template_id for p in ps] for ps in parsed]
    confirmed = [list(reversed(s)) for s in seqs[:20]]  # anomalies an operator confirmed

    def data(train: list) -> TrainingData:
        return TrainingData(train_seqs=train, val_seqs=seqs[150:], anomaly_seqs=confirmed)

    first = model.train(data(seqs[:150]))
    assert first["promoted"] and model.trained and first["anomaly_recall"] == 1.0
    live = model._det.loggpt
    worse = model.train(data(confirmed * 8))  # trained on the anomalies' order: blind to them
    assert worse["val_fpr"] > worse["live_val_fpr"] and worse["anomaly_recall"] < worse["live_anomaly_recall"]
    assert worse["promoted"] is False and "worse than the live model" in worse["reason"]
    assert model._det.loggpt is live
    again = model.train(data(seqs[:150]))
    assert again["promoted"] is True and model._det.loggpt is not live


def test_a_refuted_session_teaches_its_lines_too() -> None:
    """An operator's "normal" on a session: the same content never flags again, and each of its
    lines scores as a known normal line from then on."""
    model = StreamModel(StreamConfig(preset="generic", session_regex=r"blk_-?\d+"), load_embedder())
    odd = ["blk_7 replica moved to rack <NUM>", "blk_7 replica verified"]
    assert all(v.score > 0 for v in model.score(model.parse(odd)))
    model.refute(windows=[[p.masked for p in model.parse(odd)]])
    assert all(v.score == 0.0 and not v.flag for v in model.score(model.parse(odd)))
