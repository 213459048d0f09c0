"""MLM training data: Bible text in windows of consecutive whole verses, a held-out split by verse id, and masking.

Text: every verse of the chosen translations (default all five, whole Bible) plus Nave's Topical Bible entries as
prose (scripture references removed, topic names and subtopic labels kept). Nave's prose is TRAINING ONLY: it has no
verse ids to split on, and it contains no verse text, so it cannot leak a held-out verse.

Split: a verse id is held out when a hash of the id falls in the lowest `val_fraction` of the range. The hash
depends on the id alone, so a held-out verse is held out in EVERY translation, and since a window only ever holds
verses of one split, no validation window shares a verse with a training window.

Windows: [CLS] verse verse ... [SEP], at most `max_len` tokens, consecutive verses of one book and one split; a verse
longer than a window (a few in Esther/Revelation at 104) is cut into window-sized pieces (counted as `split_units`).
Tokenised windows are cached under <cache root>/encoder/windows/, keyed by the tokenizer, corpus ids, max_len and split.

Batches and masks are pure functions of (seed, step): that is what makes a resumed run repeat the same numbers.
"""

import hashlib
import html
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from corpus import cache
from corpus.errors import BadInput
from encoder import tokenizer as tok

DATA_VERSION = 1  # bump when windowing changes: it is part of the cache key


@dataclass(frozen=True)
class Source:
    """One stream of text in order: a translation's verses (kind "verses") or Nave's entries (kind "prose")."""
    name: str
    key: str                    # content id: the corpus id, or Nave's hash; part of every cache key
    kind: str                   # "verses" | "prose"
    ids: tuple[str, ...]        # verse ids (OSIS) or Nave's keys
    texts: tuple[str, ...]


# ---- sources --------------------------------------------------------------------------------------------------------

_NAVE_REF = re.compile(r"<ref\s+osisRef=[^>]*>.*?</ref>(?:\s*:\s*\d+(?:\s*[-,]\s*\d+)*)?", re.S)
_NAVE_BREAK = re.compile(r"<lb/>|</?item>|</?list>|</?def>")
_TAG = re.compile(r"<[^>]*>")


def naves_prose(key: str, tei: str) -> str:
    """'AARON: Lineage of. Marriage of. ...' — a Nave's entry with its scripture references cut out (left in, they
    are strings of book abbreviations and numbers) and its lines joined as sentences."""
    t = _NAVE_BREAK.sub("\n", _NAVE_REF.sub(" ", tei))
    t = html.unescape(_TAG.sub(" ", t)).replace("→", " ")
    lines = []
    for line in t.split("\n"):
        line = re.sub(r"(?:[\s;,.:]|\b\d+\b)+$", "", line)           # numbers/punctuation the refs left at the end
        line = re.sub(r"\s*(?:[;,]\s*)+(?=[;,]|\s|$)", " ", line)     # runs of separators between removed refs
        line = re.sub(r"\s+", " ", line).strip(" ;,.:")
        if line:
            lines.append(line)
    return f"{key}: " + ". ".join(lines) if lines else key


def load_sources(translations, scope: str = "all", naves: bool = True, limit: int | None = None, *,
                 home: Path) -> list[Source]:
    """The training text, the corpora read from the cache root `home`. `limit` keeps the first N verses of each
    translation (tests, smoke runs) and drops Nave's."""
    from corpus.bible import TRANSLATIONS, load_corpus
    bad = [t for t in translations if t not in TRANSLATIONS]
    if bad or not translations:
        raise BadInput(f"unknown translation(s) {', '.join(bad) or '(none)'}: choose from {', '.join(TRANSLATIONS)}")
    sources = []
    for t in translations:
        c = load_corpus(t, scope, home=home)
        n = len(c) if limit is None else limit
        sources.append(Source(t, c.corpus_id + (f"[:{n}]" if limit is not None else ""), "verses",
                              c.ids[:n], c.texts[:n]))
    if naves and limit is None:
        from corpus.naves import read_entries
        entries = read_entries()
        keys = tuple(entries)
        texts = tuple(naves_prose(k, entries[k]) for k in keys)
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
        sources.append(Source("naves", f"naves-{digest}", "prose", keys, texts))
    return sources


def heldout(verse_id: str, fraction: float) -> bool:
    """Deterministic, translation-independent: the same id gives the same answer on every machine."""
    h = int.from_bytes(hashlib.sha256(verse_id.encode()).digest()[:8], "big")
    return h < fraction * 2 ** 64


def sources_key(sources: list[Source], val_fraction: float) -> str:
    return json.dumps([[s.name, s.key] for s in sources] + [val_fraction])


def train_texts(sources: list[Source], val_fraction: float) -> Iterator[str]:
    """Training-split text only (the tokenizer is trained on this, so it never sees a held-out verse)."""
    for s in sources:
        for i, t in zip(s.ids, s.texts):
            if s.kind == "prose" or not heldout(i, val_fraction):
                yield t


# ---- windows --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Windows:
    """Ragged int32 token rows: row i is tokens[offsets[i]:offsets[i+1]], each [CLS] ... [SEP]."""
    tokens: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    @property
    def n_tokens(self) -> int:
        return int(len(self.tokens))

    @staticmethod
    def of(rows: list[list[int]]) -> "Windows":
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in rows])
        tokens = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
        return Windows(tokens, offsets)


@dataclass(frozen=True)
class WindowSet:
    train: Windows
    val: Windows
    stats: dict = field(compare=False)


def _pack(units: list[list[int]], budget: int, stats: dict) -> list[list[int]]:
    """Greedy: add units (verses) to the current window while they fit; a unit longer than `budget` is cut."""
    windows, cur = [], []
    for u in units:
        if len(u) > budget:
            stats["split_units"] += 1
        for k in range(0, len(u), budget):
            piece = u[k:k + budget]
            if cur and len(cur) + len(piece) > budget:
                windows.append(cur)
                cur = []
            cur = cur + piece
    if cur:
        windows.append(cur)
    return windows


def build_windows(tk: Tokenizer, sources: list[Source], max_len: int, val_fraction: float) -> WindowSet:
    if max_len < 3:
        raise BadInput(f"max_len {max_len} leaves no room for text between [CLS] and [SEP]")
    sp = tok.special_ids(tk)
    budget = max_len - 2
    stats = {"split_units": 0, "heldout_ids": 0, "train_units": 0, "val_units": 0}
    rows = {"train": [], "val": []}
    held_ids = set()
    for s in sources:
        pieces = tok.encode_batch(tk, s.texts)
        run, run_split, run_book = [], None, None
        for vid, p in zip(s.ids, pieces):
            if not p:
                continue
            split = "val" if s.kind == "verses" and heldout(vid, val_fraction) else "train"
            book = vid.split(".", 1)[0] if s.kind == "verses" else None
            if split == "val":
                held_ids.add(vid)
            if run and (split, book) != (run_split, run_book):
                rows[run_split] += _pack(run, budget, stats)
                run = []
            run.append(p)
            run_split, run_book = split, book
            stats[f"{split}_units"] += 1
        if run:
            rows[run_split] += _pack(run, budget, stats)
    stats["heldout_ids"] = len(held_ids)
    wrap = lambda r: [sp["cls"], *r, sp["sep"]]  # noqa: E731
    train = Windows.of([wrap(r) for r in rows["train"]])
    val = Windows.of([wrap(r) for r in rows["val"]])
    stats.update(train_windows=len(train), val_windows=len(val), train_tokens=train.n_tokens, val_tokens=val.n_tokens,
                 max_len=max_len, val_fraction=val_fraction, sources=[[s.name, s.key, len(s.ids)] for s in sources])
    return WindowSet(train, val, stats)


def tokenizer_hash(tk: Tokenizer) -> str:
    return hashlib.sha256(tk.to_str().encode()).hexdigest()


def load_windows(tk: Tokenizer, sources: list[Source], max_len: int, val_fraction: float, home: Path) -> WindowSet:
    """build_windows, cached under the cache root `home` by content: tokenizer, source ids, max_len, split,
    DATA_VERSION."""
    key = hashlib.sha256(json.dumps([tokenizer_hash(tk), sources_key(sources, val_fraction), max_len,
                                     DATA_VERSION]).encode()).hexdigest()[:20]
    path = home / "encoder" / "windows" / f"{key}.npz"
    data = cache.read_file(path, "window")
    if data is not None:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return WindowSet(Windows(z["train_tokens"], z["train_offsets"]),
                                 Windows(z["val_tokens"], z["val_offsets"]), json.loads(str(z["stats"])))
        except (ValueError, KeyError, OSError):  # vouched-for bytes that are not windows: rebuilt, never trusted
            cache.notice(f"window cache {path} is not a window set; rebuilding it")
    ws = build_windows(tk, sources, max_len, val_fraction)
    buf = io.BytesIO()
    np.savez(buf, train_tokens=ws.train.tokens, train_offsets=ws.train.offsets, val_tokens=ws.val.tokens,
             val_offsets=ws.val.offsets, stats=np.array(json.dumps(ws.stats)))
    cache.write_file(path, buf.getvalue())
    return ws


# ---- batches and masking --------------------------------------------------------------------------------------------

def batch_indices(lengths: np.ndarray, batch_size: int, seed: int, step: int, bucket: int = 50) -> np.ndarray:
    """Rows for `step`, a function of (seed, step) only. Epoch e is a permutation seeded by (seed, e), cut into
    groups of `bucket` batches; a group is sorted by length before it is cut into batches (so a batch pads little)
    and its batches are visited in a shuffled order (so lengths do not trend within the group)."""
    n = len(lengths)
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)[:per_epoch * batch_size]  # drop the ragged tail
    g, j = divmod(i, bucket)
    group = perm[g * bucket * batch_size:(g + 1) * bucket * batch_size]
    group = group[np.argsort(lengths[group], kind="stable")]
    order = np.random.default_rng([seed, epoch, g]).permutation(-(-len(group) // batch_size))
    b = order[j]
    return group[b * batch_size:(b + 1) * batch_size]


def collate(w: Windows, rows, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest row in the batch (not to max_len: short batches cost less). -> ids, attention [B, T]."""
    return pad_rows([w.row(int(i)) for i in rows], pad_id)


def pad_rows(seqs, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token-id rows -> ids and attention [B, T], padded to the longest row."""
    T = max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)
    attn = np.zeros((len(seqs), T), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = s
        attn[b, :len(s)] = 1
    return ids, attn


@dataclass(frozen=True)
class Masking:
    prob: float            # share of maskable tokens chosen as targets
    mask_id: int
    special: np.ndarray    # ids never chosen (PAD, UNK, CLS, SEP, MASK)
    ordinary: np.ndarray   # every other id: where random replacements come from

    @staticmethod
    def of(tk: Tokenizer, prob: float) -> "Masking":
        if not 0.0 < prob < 1.0:
            raise BadInput(f"mask probability must be in (0, 1), got {prob}")
        sp = tok.special_ids(tk)
        special = np.array(sorted(sp.values()))
        return Masking(prob, sp["mask"], special, np.setdiff1d(np.arange(tk.get_vocab_size()), special))


def mask_tokens(ids: np.ndarray, m: Masking, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking: choose `prob` of the maskable tokens; of those 80% -> [MASK], 10% -> a random ordinary token,
    10% unchanged. -> (input ids, labels with -100 where not chosen). At least one target per batch."""
    maskable = ~np.isin(ids, m.special)
    chosen = maskable & (rng.random(ids.shape) < m.prob)
    if not chosen.any() and maskable.any():  # a tiny batch can draw no target; the loss needs one
        flat = np.flatnonzero(maskable)
        chosen.flat[flat[rng.integers(len(flat))]] = True
    labels = np.where(chosen, ids, -100)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (u < 0.8)] = m.mask_id
    rand = chosen & (u >= 0.8) & (u < 0.9)
    # Random replacements come from ordinary tokens only: a stray [CLS] mid-sentence teaches nothing.
    inputs[rand] = m.ordinary[rng.integers(len(m.ordinary), size=int(rand.sum()))]
    return inputs, labels


def train_batch(w: Windows, m: Masking, pad_id: int, batch_size: int, seed: int, step: int):
    """(input ids, attention mask, labels) for one training step, a function of (seed, step)."""
    ids, attn = collate(w, batch_indices(np.diff(w.offsets), batch_size, seed, step), pad_id)
    inputs, labels = mask_tokens(ids, m, np.random.default_rng([seed, step, 1]))
    return inputs, attn, labels


def val_batches(w: Windows, m: Masking, pad_id: int, batch_size: int, seed: int, limit: int | None = None):
    """Fixed validation batches (same rows, same masks at every evaluation, so val losses are comparable)."""
    n = len(w) if limit is None else min(limit, len(w))
    rows = np.random.default_rng([seed, 7]).permutation(len(w))[:n] if n < len(w) else np.arange(n)
    rows = rows[np.argsort([len(w.row(int(i))) for i in rows], kind="stable")]  # similar lengths: less padding
    for k in range(0, n, batch_size):
        ids, attn = collate(w, rows[k:k + batch_size], pad_id)
        inputs, labels = mask_tokens(ids, m, np.random.default_rng([seed, 7, k]))
        yield inputs, attn, labels


def texts_fn(sources: list[Source], val_fraction: float) -> Callable[[], Iterator[str]]:
    return lambda: train_texts(sources, val_fraction)
