import json

import numpy as np
import pytest

from logsense.models.embedding import load_embedder
from logsense.models.rapid import FORMAT, RapidConfig, RapidScorer, session_text

RECV = "Receiving block <BLK> src: /<IP> dest: /<IP>"
NORMALS = [
    RECV,
    "Received block <BLK> of size <NUM> from /<IP>",
    "PacketResponder <NUM> for block <BLK> terminating",
    "BLOCK* NameSystem.addStoredBlock: blockMap updated: <IP> is added to <BLK> size <NUM>",
    "instruction cache parity error corrected",
]
NEAR = RECV + " retry"
FAR = "kernel panic: fatal machine check interrupt"


class CountingEmbedder:
    """Delegates to the real embedder and counts the texts it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.calls, self.texts = inner, 0, []

    def encode(self, texts):
        self.calls += 1
        self.texts += list(texts)
        return self.inner.encode(texts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture(scope="module")
def fitted(embedder):
    return RapidScorer(embedder).fit(NORMALS + [RECV])  # a duplicate on purpose


def test_fit_dedupes_and_exact_normal_scores_zero(fitted):
    assert len(fitted) == len(NORMALS)
    assert fitted.normal_texts == NORMALS
    assert fitted.is_normal(RECV) and not fitted.is_normal(NEAR)
    s = fitted.score(NORMALS)
    assert s.dtype == np.float32 and np.all(s == 0.0)


def test_unrelated_line_scores_higher_than_near_variant(fitted):
    near, far = fitted.score([NEAR, FAR])
    assert 0.0 < near < 0.3  # ~0.13: one extra word shifts every contextual token a little
    assert far > near + 0.3  # ~0.74
    assert far <= 1.0


def test_scores_within_unit_interval(fitted):
    texts = [NEAR, FAR, "", "???", "Receiving", RECV.upper(), " ".join(["x"] * 500)]
    s = fitted.score(texts)
    assert s.shape == (len(texts),)
    assert np.all((s >= 0.0) & (s <= 1.0))


def test_exact_path_does_not_touch_the_model(embedder):
    counting = CountingEmbedder(embedder)
    scorer = RapidScorer(counting).fit(NORMALS)
    calls = counting.calls
    assert np.all(scorer.score(NORMALS * 3) == 0.0)
    assert counting.calls == calls


def test_cache_answers_repeats_and_duplicates_embed_once(embedder):
    counting = CountingEmbedder(embedder)
    scorer = RapidScorer(counting).fit(NORMALS)
    counting.texts.clear()
    first = scorer.score([FAR, NEAR, FAR, NEAR, FAR])
    assert sorted(counting.texts) == sorted([FAR, NEAR])  # one embedding per distinct text
    calls = counting.calls
    again = scorer.score([NEAR, FAR] * 50)
    assert counting.calls == calls
    assert again[0] == first[1] and again[1] == first[0]


def test_cache_is_bounded(embedder):
    scorer = RapidScorer(embedder, RapidConfig(cache_size=4)).fit(NORMALS)
    scorer.score([f"error code {i}" for i in range(10)])
    assert len(scorer._cache) <= 4
    scorer.score(["disk full", "disk almost full"])
    assert len(scorer._cache) <= 4


def test_add_normal_zeroes_a_flagged_line_and_drops_stale_scores(embedder):
    scorer = RapidScorer(embedder).fit(NORMALS)
    variant = FAR + " on cpu <NUM>"
    before_far, before_variant = scorer.score([FAR, variant])
    assert before_far > 0.3
    scorer.add_normal([FAR])
    assert len(scorer) == len(NORMALS) + 1
    after_far, after_variant = scorer.score([FAR, variant])
    assert after_far == 0.0
    assert after_variant < before_variant - 0.2  # the cached score was not reused


def test_add_normal_without_index_only_remembers_the_exact_text(embedder):
    plain = RapidScorer(embedder).fit(NORMALS)
    exact = RapidScorer(embedder).fit(NORMALS)
    exact.add_normal([FAR], index=False)
    variant = FAR + " on cpu <NUM>"
    assert len(exact) == len(NORMALS)
    assert exact.is_normal(FAR) and exact.exact_texts == [FAR]
    assert exact.score([FAR])[0] == 0.0
    assert exact.score([variant])[0] == plain.score([variant])[0]  # computed fresh in both
    # Later indexing the same text moves it into the core set.
    exact.add_normal([FAR], index=True)
    assert len(exact) == len(NORMALS) + 1 and exact.exact_texts == []


def test_empty_core_set_and_empty_string(embedder):
    scorer = RapidScorer(embedder).fit([])
    assert len(scorer) == 0
    assert np.all(scorer.score([FAR, "", FAR]) == 1.0)
    assert scorer.score([]).shape == (0,)
    e = scorer.explain(FAR)
    assert e.score == 1.0 and e.nearest_text is None
    scorer.add_normal([""])
    assert scorer.score([""])[0] == 0.0
    assert 0.0 <= scorer.score([FAR])[0] <= 1.0


def test_explain_names_nearest_normal_and_worst_tokens(fitted):
    e = fitted.explain(RECV + " checksum mismatch")
    assert not e.exact
    assert e.nearest_text == RECV
    assert e.score == pytest.approx(float(fitted.score([RECV + " checksum mismatch"])[0]), abs=1e-5)
    assert e.score == pytest.approx(1.0 - e.nearest_score, abs=1e-5)
    assert 0 < len(e.worst_tokens) <= 5
    sims = [s for _, s in e.worst_tokens]
    assert sims == sorted(sims)
    words = {t for t, _ in e.worst_tokens}
    assert words & {"check", "##sum", "mis", "##mat", "##ch", "mismatch", "checksum"}
    ex = fitted.explain(RECV)
    assert ex.exact and ex.score == 0.0 and ex.nearest_text == RECV


def test_save_load_round_trip(tmp_path, embedder):
    scorer = RapidScorer(embedder, RapidConfig(k=3)).fit(NORMALS)
    scorer.add_normal([FAR], index=False)
    queries = [NEAR, FAR, "", "disk full on <PATH>", NORMALS[2]]
    expected = scorer.score(queries)
    target = tmp_path / "rapid"
    scorer.save(target)
    scorer.save(target)  # over an existing directory
    meta = json.loads((target / "config.json").read_text())
    assert meta["format"] == FORMAT and meta["config"]["k"] == 3
    live = (tmp_path / "rapid").resolve()  # the link's folder (models.atomic.atomic_dir)
    assert not [p for p in tmp_path.iterdir() if p.name != "rapid" and p != live]  # no temp dirs left
    loaded = RapidScorer.load(target, embedder)
    assert loaded.normal_texts == scorer.normal_texts and loaded.exact_texts == [FAR]
    assert np.array_equal(loaded.score(queries), expected)


def test_load_rejects_a_foreign_directory(tmp_path, embedder):
    (tmp_path / "config.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError):
        RapidScorer.load(tmp_path, embedder)


def test_session_text_is_the_set_of_unique_lines():
    assert session_text(["b", "a", "b", "c", "a"]) == "a ; b ; c"
    assert session_text(["c", "a", "b"]) == session_text(["a", "b", "c", "b"])  # logging order does not matter
    assert session_text([]) == ""


def test_deferred_normals_score_zero_at_once_and_are_embedded_later(embedder, tmp_path):
    counting = CountingEmbedder(embedder)
    scorer = RapidScorer(counting).fit(NORMALS[:2])
    counting.texts.clear()
    scorer.add_normal([NORMALS[2], NORMALS[3], NORMALS[2]], defer=True)
    assert counting.texts == [] and scorer.n_unindexed == 2 and len(scorer) == 2
    assert list(scorer.score([NORMALS[2]], embed=False)) == [0.0]  # normal word for word already
    assert np.isnan(scorer.score([FAR], embed=False)[0]) and counting.texts == []  # new: pending, not embedded

    scorer.save(tmp_path / "r")  # the deferred ones survive a restart as deferred
    loaded = RapidScorer.load(tmp_path / "r", embedder)
    assert loaded.unindexed_texts == [NORMALS[2], NORMALS[3]] and loaded.is_normal(NORMALS[3])

    assert scorer.index_pending(limit=1) == 1 and scorer.index_pending() == 1 and scorer.index_pending() == 0
    assert scorer.normal_texts == NORMALS[:4] and scorer.exact_texts == []
    assert counting.texts == [NORMALS[2], NORMALS[3]]  # each embedded once
    assert scorer.score([NEAR])[0] == pytest.approx(RapidScorer(embedder).fit(NORMALS[:4]).score([NEAR])[0], abs=1e-3)


def test_a_refit_and_absorb_reuse_vectors_instead_of_embedding_again(embedder):
    counting = CountingEmbedder(embedder)
    live = RapidScorer(counting).fit(NORMALS[:3])
    live.add_normal([NORMALS[4]], index=False)
    live.add_normal([NORMALS[3]], defer=True)
    counting.texts.clear()
    fresh = RapidScorer(counting).fit([NORMALS[0], NORMALS[1], NEAR], known=live)
    assert counting.texts == [NEAR]  # only the text the live scorer has no vectors for
    fresh.absorb(live)
    assert counting.texts == [NEAR]
    assert set(fresh.normal_texts) == {NORMALS[0], NORMALS[1], NEAR, NORMALS[2]}
    assert fresh.is_normal(NORMALS[4]) and fresh.unindexed_texts == [NORMALS[3]]
    assert fresh.memory_bytes() > len(fresh) * 384 * 4


def test_a_deferred_normal_taught_again_is_not_embedded_in_the_call(embedder):
    counting = CountingEmbedder(embedder)
    scorer = RapidScorer(counting).fit(NORMALS[:1])
    scorer.add_normal([NORMALS[1]], defer=True)
    counting.texts.clear()
    scorer.add_normal([NORMALS[1], NORMALS[2]])  # the deferred one waits for index_pending
    assert counting.texts == [NORMALS[2]] and scorer.unindexed_texts == [NORMALS[1]]
