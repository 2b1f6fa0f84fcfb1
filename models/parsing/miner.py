"""Template mining: masked message -> template id, with Drain3's `Drain` as the engine.

`add` learns (a new template gets the next cluster id; a known one may be generalized, keeping
its id), `match` never learns. A dict cache `masked text -> id` sits in front of Drain: a stream
repeats the same masked texts all day, and a dict lookup is what makes the seen-line path fast.
The cache is bounded (oldest entries go first); its newest entries are saved with the model, so
a restart answers the same ids for the texts it had seen.

State is saved as plain JSON (format + version, written to a temporary name and renamed): the
clusters AND Drain's prefix tree exactly as they were, so `add`/`match` after a load give what
they would have given without the restart. Drain3's own TemplateMiner and its jsonpickle
persistence are not used (unpickling a state file can run code).

Similarity (Drain's, with one change): when learning, a token that carries a masked placeholder
(`<NUM>`, `<UUID>]`, `(uid=<NUM>)`) counts as a parameter, like Drain's own `<*>`, not as a word
the two texts share. Masking makes every line's variables equal text; counted as shared words
they would lift short, variable-heavy lines over the threshold (`[instance: <UUID>] Claim
successful` joining `[instance: <UUID>] Terminating instance` at 2/4), which bare Drain on the
raw values never does. Words decide what is one event; placeholders only say where values sit.
`match` (exact, wildcards and placeholders covering their own kind) is unchanged.

Not thread-safe: Drain mutates clusters and its tree in place. The caller holds a lock around
`add` (and around `match` when another thread may `add`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from drain3.drain import Drain, LogCluster, Node

FORMAT = "logsense.miner"
VERSION = 1
PARAM = "<*>"  # Drain's wildcard in templates
# A masked placeholder (the presets' `<NUM>`, `<IP>`, ...; custom rules' default `<*>`) inside a token.
_PLACEHOLDER = re.compile(r"<(?:\*|[A-Z][A-Z0-9_]*)>")


class _Drain(Drain):
    """Drain3's Drain, its similarity counting placeholder tokens as parameters (module docstring)."""

    def get_seq_distance(self, seq1, seq2, include_params: bool):  # seq1: a template, seq2: the line
        if not seq1:
            return 1.0, 0
        param, placeholder = self.param_str, _PLACEHOLDER.search
        sim_tokens = param_count = 0
        for token1, token2 in zip(seq1, seq2):
            if token1 == param:
                param_count += 1
            elif token1 == token2:
                if "<" in token1 and placeholder(token1) is not None:
                    param_count += 1
                else:
                    sim_tokens += 1
        if include_params:  # `match`: a placeholder covers the same placeholder, as before
            sim_tokens += param_count
        return sim_tokens / len(seq1), param_count


class TemplateMiner:
    """Drain (Loghub parameters: depth 4, similarity 0.4; placeholders count as parameters) behind
    an exact-text cache."""

    def __init__(
        self,
        sim_th: float = 0.4,  # similarity below which a line starts a new template
        depth: int = 4,  # prefix tree depth (Drain counts root and token-count levels: >= 3)
        max_children: int = 100,  # children per tree node before tokens share the wildcard branch
        cache_size: int = 200_000,  # masked texts remembered exactly; oldest go first
        saved_cache: int = 20_000,  # newest cache entries written by `to_dict`
    ):
        self.sim_th = float(sim_th)
        self.depth = int(depth)
        self.max_children = int(max_children)
        self.cache_size = int(cache_size)
        self.saved_cache = int(saved_cache)
        self.drain = _Drain(depth=self.depth, sim_th=self.sim_th, max_children=self.max_children, param_str=PARAM)
        self._cache: dict[str, int] = {}

    # ------------------------------------------------------------------ mining

    def add(self, masked: str) -> int:
        """The template id of `masked`, learning it (new template, or a known one generalized)."""
        cid = self._cache.get(masked)
        if cid is not None:
            cluster = self.drain.id_to_cluster.get(cid)
            if cluster is not None:
                cluster.size += 1
            return cid
        cluster, _ = self.drain.add_log_message(masked)
        self._remember(masked, cluster.cluster_id)
        return cluster.cluster_id

    def match(self, masked: str) -> int | None:
        """The id of a template that covers `masked` exactly (wildcards aside), or None. Never learns."""
        cid = self._cache.get(masked)
        if cid is not None:
            return cid
        cluster = self.drain.match(masked, full_search_strategy="fallback")
        if cluster is None:
            return None
        self._remember(masked, cluster.cluster_id)  # a cache entry is not learning: the templates stay
        return cluster.cluster_id

    def _remember(self, masked: str, cid: int) -> None:
        cache = self._cache
        if len(cache) >= self.cache_size:  # drop the oldest tenth at once: amortized O(1)
            for key in list(cache)[: max(1, self.cache_size // 10)]:
                del cache[key]
        cache[masked] = cid

    # ------------------------------------------------------------------ reading

    def template(self, template_id: int) -> str:
        """The template's current text (Drain generalizes it as lines arrive). KeyError if unknown."""
        cluster = self.drain.id_to_cluster.get(int(template_id))
        if cluster is None:
            raise KeyError(template_id)
        return cluster.get_template()

    def templates(self) -> dict[int, str]:
        """Every template by id, in id order."""
        return {cid: self.drain.id_to_cluster[cid].get_template() for cid in sorted(self.drain.id_to_cluster)}

    def sizes(self) -> dict[int, int]:
        """Lines counted per template id."""
        return {cid: c.size for cid, c in self.drain.id_to_cluster.items()}

    def __len__(self) -> int:
        return len(self.drain.id_to_cluster)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self.drain.id_to_cluster

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        return {
            "sim_th": self.sim_th, "depth": self.depth, "max_children": self.max_children,
            "cache_size": self.cache_size, "saved_cache": self.saved_cache,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: config, clusters, Drain's prefix tree, the newest cache entries."""
        drain = self.drain
        clusters = [
            {"id": cid, "tokens": list(drain.id_to_cluster[cid].log_template_tokens), "size": drain.id_to_cluster[cid].size}
            for cid in sorted(drain.id_to_cluster)
        ]
        cache = list(self._cache.items())[-self.saved_cache :] if self.saved_cache > 0 else []
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config(),
            "clusters_counter": drain.clusters_counter,
            "clusters": clusters,
            "tree": _node_to_dict(drain.root_node),
            "cache": [[text, cid] for text, cid in cache],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TemplateMiner":
        """Rebuild a miner; ValueError if `d` is not a miner state this code can read.

        Without a saved `tree` (hand-written state), the tree is rebuilt from the clusters in id
        order with Drain's `add_seq_to_prefix_tree`.
        """
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} state")
        if int(d.get("version", 0)) > VERSION:
            raise ValueError(f"{FORMAT} version {d.get('version')} is newer than this code ({VERSION})")
        miner = cls(**{k: v for k, v in d.get("config", {}).items() if k in _CONFIG_KEYS})
        drain = miner.drain
        for c in d.get("clusters", []):
            cluster = LogCluster(list(c["tokens"]), int(c["id"]))
            cluster.size = int(c.get("size", 1))
            drain.id_to_cluster[cluster.cluster_id] = cluster
        drain.clusters_counter = max([int(d.get("clusters_counter", 0)), *drain.id_to_cluster.keys()], default=0)
        if d.get("tree") is not None:
            drain.root_node = _node_from_dict(d["tree"])
        else:
            for cid in sorted(drain.id_to_cluster):
                drain.add_seq_to_prefix_tree(drain.root_node, drain.id_to_cluster[cid])
        for text, cid in d.get("cache", []):
            if int(cid) in drain.id_to_cluster:
                miner._cache[str(text)] = int(cid)
        return miner

    def save(self, path: str | os.PathLike) -> None:
        """Write `to_dict()` as JSON to `path` atomically (temporary name in the same folder, then rename)."""
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TemplateMiner":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


_CONFIG_KEYS = ("sim_th", "depth", "max_children", "cache_size", "saved_cache")


def _node_to_dict(node: Node) -> dict[str, Any]:
    """{"c": {token: child}, "i": [cluster ids]}; key order kept (Drain's tie-breaks follow it)."""
    out: dict[str, Any] = {}
    if node.key_to_child_node:
        out["c"] = {token: _node_to_dict(child) for token, child in node.key_to_child_node.items()}
    if node.cluster_ids:
        out["i"] = list(node.cluster_ids)
    return out


def _node_from_dict(d: dict[str, Any]) -> Node:
    node = Node()
    node.key_to_child_node = {str(token): _node_from_dict(child) for token, child in d.get("c", {}).items()}
    node.cluster_ids = [int(i) for i in d.get("i", [])]
    return node


def write_json(path: Path, data: dict[str, Any]) -> None:
    """JSON at `path`, atomically (`models.atomic.write_json`): readers see the old or the new file."""
    from logsense.models.atomic import write_json as write

    write(path, data)
