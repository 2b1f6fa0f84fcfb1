import numpy as np
import pytest

from logsense.models.embedding import load_embedder

HDFS = "Receiving block <BLK> src: /<IP> dest: /<IP>"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_load_embedder_is_cached(embedder):
    assert load_embedder() is embedder
    assert embedder.dim == 384


def test_encode_token_vectors_are_unit_and_aligned_with_tokens(embedder):
    texts = [HDFS, "instruction cache parity error corrected", "x"]
    out = embedder.encode(texts)
    assert len(out) == 3
    for text, v in zip(texts, out):
        assert v.dtype == np.float32 and v.shape[1] == 384
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        toks = embedder.tokens(text)
        assert len(toks) == len(v)
        assert "[CLS]" not in toks and "[SEP]" not in toks and "[PAD]" not in toks
    assert embedder.tokens("x") == ["x"]


def test_padding_does_not_change_a_text(embedder):
    # Alone vs batched with a much longer text (padded): same vectors.
    alone = embedder.encode(["disk full"])[0]
    batched = embedder.encode(["disk full", HDFS + " " + HDFS])[0]
    assert alone.shape == batched.shape
    assert np.allclose(alone, batched, atol=1e-4)


def test_empty_string_and_empty_list(embedder):
    assert embedder.encode([]) == []
    v = embedder.encode([""])[0]
    assert v.shape == (2, 384)  # only [CLS] and [SEP] are left, and kept
    assert embedder.tokens("") == ["[CLS]", "[SEP]"]


def test_pool_is_unit_and_close_for_similar_texts(embedder):
    a, b, c = embedder.encode([HDFS, HDFS + " retry", "kernel panic: fatal machine check interrupt"])
    pa, pb, pc = (embedder.pool(x) for x in (a, b, c))
    assert pa.shape == (384,)
    assert abs(np.linalg.norm(pa) - 1.0) < 1e-5
    assert pa @ pb > pa @ pc + 0.2


def test_long_text_is_truncated(embedder):
    v = embedder.encode([" ".join(["block"] * 1000)])[0]
    assert len(v) == embedder.max_seq_length - 2
