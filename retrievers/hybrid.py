"""Hybrid: BM25 and a dense retriever, each run to `depth`, fused with `ranx.fuse`.

Fusion parameters come from `retrievers/fusion_weights.json`, tuned by `bench tune-fusion` with
`ranx.optimize_fusion` on dev splits only; the file records what they were tuned on and when. Without an entry for
the (dense, method) pair the method's untuned default is used, and the config says so.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus.errors import BadInput, at
from corpus.paths import REPO
from retrievers.base import strictly_decreasing

WEIGHTS_FILE = REPO / "retrievers" / "fusion_weights.json"
DENSE = ("encoder", "minilm")
# ranx methods that need no training run; the probabilistic ones (probfuse, segfuse, ...) do.
METHODS = ("wsum", "rrf", "sum", "mnz", "wmnz", "max", "min", "med", "anz", "gmnz", "isr", "log_isr", "logn_isr",
           "rbc", "bordafuse", "w_bordafuse", "condorcet", "w_condorcet", "mixed")
DEFAULT_PARAMS = {"wsum": {"weights": [0.5, 0.5]}, "wmnz": {"weights": [0.5, 0.5]}, "rrf": {"k": 60},
                  "rbc": {"phi": 0.8}, "w_bordafuse": {"weights": [0.5, 0.5]},
                  "w_condorcet": {"weights": [0.5, 0.5]}, "mixed": {"weights": [0.5, 0.5]}}
NOTHING = "\0nothing"
NORM = {"rrf": None, "isr": None, "log_isr": None, "logn_isr": None, "rbc": None, "bordafuse": None,
        "w_bordafuse": None, "condorcet": None, "w_condorcet": None}  # rank-based methods take no score norm


@dataclass(frozen=True)
class HybridConfig:
    dense: str = "encoder"
    sparse: str = "bm25"
    fusion: str = "wsum"
    norm: str | None = "min-max"
    params: dict = field(default_factory=dict)
    params_source: str = ""
    depth: int = 100
    checkpoint: str | None = None


def read_weights(path: Path = WEIGHTS_FILE) -> dict:
    if not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise at(path, None, f"not valid JSON ({e})") from None
    for dense, methods in data.items():
        if dense not in DENSE:
            raise at(path, None, f"fusion weights for {dense!r}, which is not a dense retriever "
                                 f"({', '.join(DENSE)})")
        for method, entry in methods.items():
            if method not in METHODS:
                raise at(path, None, f"{dense}: unknown fusion method {method!r}")
            w = entry.get("params", {}).get("weights")
            if w is not None and (len(w) != 2 or not all(isinstance(x, (int, float)) for x in w)):
                raise at(path, None, f"{dense}/{method}: weights must be two numbers (sparse, dense), got {w!r}")
    return data


def resolve_params(dense: str, fusion: str, checkpoint_sha: str | None, path: Path = WEIGHTS_FILE):
    entry = read_weights(path).get(dense, {}).get(fusion)
    if entry is None:
        return dict(DEFAULT_PARAMS.get(fusion, {})), f"default for {fusion} (not tuned)"
    src = f"tuned on {', '.join(entry['tuned_on'])} by {entry['metric']} on {entry['date'][:10]}"
    if dense == "encoder" and entry.get("checkpoint_sha256") not in (None, checkpoint_sha):
        src += " for another checkpoint"
    return dict(entry["params"]), src


class Hybrid:
    name = "hybrid"

    def __init__(self, corpus, dense: str = "encoder", fusion: str = "wsum", checkpoint: str | None = None,
                 depth: int = 100, sparse: str = "bm25"):
        from retrievers.base import make

        if dense not in DENSE:
            raise BadInput(f"hybrid: --dense must be one of {', '.join(DENSE)}, got {dense!r}")
        if fusion not in METHODS:
            raise BadInput(f"hybrid: --fusion must be one of {', '.join(METHODS)}, got {fusion!r}")
        self.sparse = make(sparse, corpus)
        self.dense = make(dense, corpus, **({"checkpoint": checkpoint} if checkpoint and dense == "encoder" else {}))
        sha = getattr(self.dense.config, "checkpoint_sha256", None)
        params, source = resolve_params(dense, fusion, sha)
        self.config = HybridConfig(dense=dense, sparse=sparse, fusion=fusion, norm=NORM.get(fusion, "min-max"),
                                   params=params, params_source=source, depth=int(depth),
                                   checkpoint=getattr(self.dense.config, "checkpoint", None))

    def parts(self, queries: dict[str, str], k: int) -> tuple[dict, dict]:
        depth = max(k, self.config.depth)
        return self.sparse.search(queries, depth), self.dense.search(queries, depth)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        sparse, dense = self.parts(queries, k)
        return fuse(sparse, dense, self.config, k)

    def explain(self, query: str, k: int) -> dict[str, dict[str, tuple[float, int]]]:
        """For each verse either side found: {side: (score, rank)}, so a person can see why it ranked there."""
        sparse, dense = self.parts({"q": query}, k)
        out: dict = {}
        for side, run in ((self.config.sparse, sparse["q"]), (self.config.dense, dense["q"])):
            for rank, (d, s) in enumerate(sorted(run.items(), key=lambda kv: -kv[1]), 1):
                out.setdefault(d, {})[side] = (s, rank)
        return out


def fuse(sparse: dict, dense: dict, cfg: HybridConfig, k: int) -> dict[str, dict[str, float]]:
    """The two runs fused by `cfg`, each query cut to `k` and made strictly decreasing (ties: see `_tie_key`)."""
    qids = [q for q in sparse if sparse[q] or dense.get(q)]
    if cfg.fusion == "wsum" and cfg.norm == "min-max" and (cfg.params or {}).get("weights"):
        fused = {q: wsum_min_max(sparse.get(q) or {}, dense.get(q) or {}, cfg.params["weights"]) for q in qids}
    else:
        fused = ranx_fuse(sparse, dense, cfg, qids) if qids else {}
    return rank_fused(sparse, dense, fused, cfg, k)


def rank_fused(sparse: dict, dense: dict, fused: dict, cfg: HybridConfig, k: int) -> dict[str, dict[str, float]]:
    """Fused scores {qid: {docid: score}} in rank order, cut to k; every query of `sparse` gets an entry."""
    out = {q: {} for q in sparse}
    weights = (cfg.params or {}).get("weights") or [1.0, 1.0]
    for q, scores in fused.items():
        sides = (sparse.get(q) or {}, dense.get(q) or {})
        ranks = [{d: r for r, d in enumerate(sorted(side, key=lambda d: -side[d]), 1)} for side in sides]
        key = _tie_key(weights, ranks)
        out[q] = strictly_decreasing(sorted(((d, v) for d, v in scores.items() if d != NOTHING), key=key)[:k])
    return out


def _tie_key(weights, ranks):
    def key(kv):
        # Min-max maps each run's last verse to 0, the score of a verse the run never returned. At equal fused
        # score, a verse returned by the more heavily weighted run goes first, then the better-ranked one.
        # (Seen: with weights (1, 0), BM25's 4th and last hit sank below 96 dense-only verses.)
        d, v = kv
        present = sum(w for w, r in zip(weights, ranks) if d in r)
        return (-v, -present, min(r.get(d, math.inf) for r in ranks), d)

    return key


def wsum_min_max(sparse: dict, dense: dict, weights) -> dict[str, float]:
    """ranx's `wsum` over `min-max` normalised runs, for one query, in numpy: ranx compiles its fusion with numba on
    first use in every process (8.5 s here; numba does not cache those functions), which cost more than the search.
    Same arithmetic in the same order as ranx: (s - min) / max(max - min, 1e-9), then w0 * s0 + w1 * s1, with 0 for a
    verse a run did not return; tests hold it to ranx.fuse within 1e-9 on real runs."""
    docs = list(dict.fromkeys([*sparse, *dense]))
    total = np.zeros(len(docs))
    for w, side in zip(weights, (sparse, dense)):
        if not side:
            continue
        scores = np.fromiter(side.values(), dtype=np.float64, count=len(side))
        lo = scores.min()
        normed = dict(zip(side, ((scores - lo) / max(scores.max() - lo, 1e-9)).tolist()))
        total += w * np.array([normed.get(d, 0.0) for d in docs])
    return dict(zip(docs, total.tolist()))


def ranx_fuse(sparse: dict, dense: dict, cfg: HybridConfig, qids: list[str]) -> dict[str, dict[str, float]]:
    """Any other ranx method, through `ranx.fuse` (and its numba compile)."""
    import ranx  # here, not at the top: importing ranx starts numba (seconds); only the other methods need it

    # ranx refuses a run with an empty query (or no queries). A side with nothing for a query gets a placeholder verse
    # scored 0: normalisation is per query and per run, so it changes no real verse's fused score, and is dropped.
    runs = [ranx.Run({q: (side.get(q) or {NOTHING: 0.0}) for q in qids}, name=n)
            for side, n in ((sparse, "sparse"), (dense, "dense"))]
    fused = ranx.fuse(runs, norm=cfg.norm, method=cfg.fusion, params=cfg.params or None).to_dict()
    return {q: fused.get(q, {}) for q in qids}


def make(corpus, **options) -> Hybrid:
    allowed = {"dense", "fusion", "checkpoint", "depth", "sparse"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadInput(f"hybrid: unknown option(s) {', '.join(unknown)}; hybrid takes: {', '.join(sorted(allowed))}")
    return Hybrid(corpus, **options)
