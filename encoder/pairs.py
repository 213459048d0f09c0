"""Contrastive training pairs for `bench finetune`, built so that no evaluation label reaches training.

Kinds of (anchor, positive) pairs; the positive is always a whole verse, and every pair names its verse id:
  xlate    the same verse in two translations (remembered wording is another translation's wording);
  span     a 4-12 word span of a verse in one translation -> the whole verse in another (what a person types);
  naves    a Nave's Topical Bible topic/subtopic label, worded exactly like the thematic queries
           (`corpus.qrels_build.query_text`) -> one of the verses Nave lists under it;
  comment  a sentence of Matthew Henry's commentary -> a verse of the passage it comments on;
  natural  a query in people's words written for a TRAINING Nave label (data/natural-anchors/) -> one of that
           label's verses. It rides on the label: a label that is held out, forbidden or without training verses
           takes its natural anchors out with it, and a natural anchor shares its label's batch key (the label's
           other verses would be false negatives for it).

What is held out, and why:
- Nave's topics whose head word (`corpus.qrels_build.split_unit`) is the head word of a topic with a query in
  thematic-test (and, by default, thematic-dev too, so that dev stays an honest stand-in for test when the hybrid's
  weights are tuned on it). Splitting by head word keeps twins such as FAITH / FAITH IN CHRIST on one side.
- Every verse judged relevant in keyword-xlate: its queries are spans of those very verses in other translations, so
  span or translation pairs on them would be training on the test. They are left out of xlate and span pairs.
- Any anchor whose normalised text equals a query of ANY committed query set (curated keyword, thematic-curated,
  distractor, and the generated sets too): Nave labels are filtered when the pairs are built, spans when they are
  drawn.
- Validation pairs use the pre-training's held-out verses (`encoder.data.heldout`, same fraction), so validation
  shares no verse with either training phase.

Batches are pure functions of (seed, step), like the MLM batches: a resumed run and every rank of a distributed run
draw the same global batch. A batch never holds a verse id (or a Nave label) twice: a second pair for the same
verse would be a false negative for the first.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pysword.canons import canons

from corpus import naves as N
from corpus.bible import TRANSLATIONS, load_corpus, sword_dir
from corpus.commentary import read_passages, sentences
from corpus.errors import BadInput
from corpus.paths import REPO
from corpus.qrels_build import TOPICS_FILE, query_text, split_unit, test_topic_keys
from corpus.qsets import QRELS_DIR, read_qrels, read_queries, set_names
from encoder.data import heldout

KINDS = ("xlate", "span", "naves", "comment", "natural")
NATURAL_FILE = REPO / "data" / "natural-anchors" / "anchors.tsv"
NATURAL_NEAR = 0.8  # token Jaccard at which a natural anchor counts as a rewrite of an evaluation query
SPAN_MIN, SPAN_MAX = 4, 12
NAVES_HOLDOUTS = ("test", "dev+test")
XLATE_SET = "keyword-xlate"


@dataclass(frozen=True)
class Pair:
    kind: str
    anchor: str
    positive: str
    verse: str            # OSIS id of the positive verse
    anchor_key: str       # what else must be unique in a batch: the Nave label (or the verse again)
    anchor_translation: str | None
    positive_translation: str


@dataclass(frozen=True)
class PairData:
    translations: tuple[str, ...]
    ids: tuple[str, ...]                        # verse ids, canonical (KJV) order
    texts: dict                                 # translation -> tuple of texts parallel to ids ("" = missing)
    train_verses: np.ndarray                    # indices into ids usable for xlate/span training pairs
    val_verses: np.ndarray                      # held-out indices (pre-training's split) for validation pairs
    naves_labels: tuple[str, ...]               # label texts (query-like)
    naves_train: tuple[np.ndarray, ...]         # per label: its training verse indices (labels with none dropped)
    naves_val: tuple[tuple[int, int], ...]      # (label index, held-out verse index)
    forbidden: frozenset[str]                   # normalised query texts never allowed as an anchor
    naves_topics: tuple[str, ...]               # Nave topic keys whose labels are used
    xlate_holdout: frozenset[str]               # keyword-xlate verse ids (never in xlate/span pairs)
    stats: dict = field(compare=False)
    comment_anchors: tuple[str, ...] = ()       # commentary sentences and chapter-outline lines
    comment_train: tuple[np.ndarray, ...] = ()  # per anchor: its training verse indices (anchors with none dropped)
    comment_val: tuple[tuple[int, int], ...] = ()  # (anchor index, held-out verse index)
    comment_passage: tuple[int, ...] = ()       # per anchor: its passage (two of one passage never share a batch)
    natural_anchors: tuple[str, ...] = ()       # queries in people's words for training Nave labels
    natural_label: tuple[int, ...] = ()         # per anchor: its Nave label (index into naves_labels)


def norm(text: str) -> str:
    """Lowercase words: the form in which anchors and evaluation queries are compared."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower().replace("\u2019", "'")).split())


def eval_queries(root: Path = QRELS_DIR) -> frozenset[str]:
    """Normalised text of every query of every committed set."""
    out = set()
    for name in set_names(root):
        out.update(norm(t) for t in read_queries(Path(root) / name / "queries.tsv").values())
    out.discard("")
    return frozenset(out)


def xlate_verses(root: Path = QRELS_DIR) -> frozenset[str]:
    path = Path(root) / XLATE_SET / "qrels.trec"
    if not path.is_file():
        raise BadInput(f"{path}: missing; the keyword-xlate verses must be known to hold them out of training")
    return frozenset(d for docs in read_qrels(path).values() for d, r in docs.items() if r > 0)


def heldout_topic_units(holdout: str, root: Path = QRELS_DIR) -> frozenset[str]:
    """Head words of the Nave topics that have queries in the held-out thematic split(s)."""
    if holdout not in NAVES_HOLDOUTS:
        raise BadInput(f"naves holdout must be one of {', '.join(NAVES_HOLDOUTS)}, got {holdout!r}")
    keys = set(test_topic_keys(root))
    if holdout == "dev+test":
        keys |= set(json.loads((Path(root) / TOPICS_FILE).read_text("utf-8"))["dev"])
    return frozenset(split_unit(k) for k in keys)


def _words(text: str) -> list[str]:
    # YLT's backtick quotes and `--` dashes are typography, not words anyone types.
    return [w for w in text.replace("`", "").split() if re.search(r"\w", w)]


def build(translations=("web", "kjv", "asv", "ylt", "dar"), *, val_fraction: float = 0.02, naves: bool = True,
          naves_holdout: str = "dev+test", limit: int | None = None, root: Path = QRELS_DIR,
          commentary: bool = False, natural: Path | None = None, home: Path) -> PairData:
    """Every pair source, with the hold-outs applied. `limit`: only the first N verse ids (tests, smoke runs).
    `root`: the committed query sets; `home`: the cache root the corpora are read from; `natural`: a natural-anchors
    file (label TAB style TAB query), or None for none."""

    translations = tuple(translations)
    bad = [t for t in translations if t not in TRANSLATIONS]
    if bad or len(translations) < 2:
        raise BadInput(f"pairs need at least two known translations ({', '.join(TRANSLATIONS)}), got "
                       f"{', '.join(translations) or 'none'}")
    corpora = {t: load_corpus(t, "all", home=home) for t in translations}
    kjv_ids = load_corpus("kjv", "all", home=home).ids  # the versification every corpus is numbered in
    ids = kjv_ids if limit is None else kjv_ids[:limit]
    texts = {t: tuple(c.text(i) if i in c.position else "" for i in ids) for t, c in corpora.items()}
    present = np.array([[bool(texts[t][k]) for t in translations] for k in range(len(ids))], dtype=bool)
    pos = {v: k for k, v in enumerate(ids)}
    outside = {t: sum(1 for i in c.ids if i not in pos) for t, c in corpora.items()} if limit is None else {}

    hold_x = xlate_verses(root)
    forbidden = eval_queries(root)
    held = np.array([heldout(i, val_fraction) for i in ids], dtype=bool)
    in_x = np.array([i in hold_x for i in ids], dtype=bool)
    usable = present.sum(1) >= 2
    train_verses = np.flatnonzero(usable & ~held & ~in_x)
    val_verses = np.flatnonzero(usable & held & ~in_x)

    any_text = present.any(1)
    labels, naves_train, naves_val, topics_used, nstats = _naves(
        naves, naves_holdout, root, ids, pos, held, any_text, forbidden, frozenset(kjv_ids))
    comment = _commentary(pos, held, in_x, any_text, forbidden) if commentary else None
    nat_anchors, nat_label, nat_stats = (_natural(natural, labels, len(naves_train), forbidden) if natural else
                                          ((), (), None))
    n_tr = len(translations)
    stats = {
        "translations": list(translations),
        "verse_ids": len(ids),
        "verses_in_fewer_than_two_translations": int((~usable).sum()),
        "verses_outside_kjv_numbering": outside,
        "keyword_xlate_heldout_verses": int(in_x.sum()),
        "val_fraction": val_fraction,
        "val_verses": int(len(val_verses)),
        "xlate": {"verses": int(len(train_verses)),
                  "ordered_translation_pairs": int(sum(int(present[k].sum()) * (int(present[k].sum()) - 1)
                                                       for k in train_verses))},
        "span": {"verses": int(len(train_verses)), "verse_texts": int(present[train_verses].sum()),
                 "span_words": [SPAN_MIN, SPAN_MAX]},
        "naves": nstats,
        **({"comment": comment[4]} if comment else {}),
        **({"natural": nat_stats} if nat_stats else {}),
        "forbidden_anchor_texts": len(forbidden),
        "max_translations_per_verse": n_tr,
    }
    return PairData(translations, tuple(ids), texts, train_verses, val_verses, tuple(labels), tuple(naves_train),
                    tuple(naves_val), forbidden, tuple(topics_used), hold_x, stats,
                    *(comment[:4] if comment else ((), (), (), ())), nat_anchors, nat_label)


def _naves(naves: bool, naves_holdout: str, root, ids, pos, held, any_text, forbidden, known):
    """Nave's labels of topics outside the held-out splits -> their verses (train) and held-out verses (val).
    `known`: every KJV verse id, also those a `limit` cut off (a ref to one is cut, not unparsable)."""

    labels: list[str] = []
    naves_train: list[np.ndarray] = []
    naves_val: list[tuple[int, int]] = []
    topics_used: list[str] = []
    nstats = {"topics": 0, "topics_heldout": 0, "labels_forbidden": 0, "labels_duplicate": 0, "labels": 0,
              "train_pairs": 0, "val_pairs": 0}
    if naves:
        units = heldout_topic_units(naves_holdout, root)
        verses = N.VerseList.of(ids)
        seen: dict[str, int] = {}
        topics, _ = N.topics()
        for t in topics:
            nstats["topics"] += 1
            if split_unit(t.key) in units:
                nstats["topics_heldout"] += 1
                continue
            used = False
            for s in t.subtopics:
                if not s.refs:
                    continue
                text = query_text(t.key, s.path)
                if not text:
                    continue
                if norm(text) in forbidden:
                    nstats["labels_forbidden"] += 1
                    continue
                got, _ = N.expand(s.refs, verses, known)
                got = [pos[g] for g in got if any_text[pos[g]]]
                if not got:
                    continue
                if text in seen:  # the same words under two lines: one label, the verses of both
                    nstats["labels_duplicate"] += 1
                    li = seen[text]
                else:
                    li = seen[text] = len(labels)
                    labels.append(text)
                    naves_train.append(np.zeros(0, dtype=np.int64))
                tr = np.array([g for g in got if not held[g]], dtype=np.int64)
                naves_train[li] = np.unique(np.concatenate([naves_train[li], tr]))
                naves_val.extend((li, g) for g in got if held[g])
                used = True
            if used:
                topics_used.append(t.key)
        # Labels whose verses are all held out keep only validation pairs; drop them from the training draw.
        keep = [k for k, v in enumerate(naves_train) if len(v)]
        remap = {k: n for n, k in enumerate(keep)}
        val_labels = sorted({li for li, _ in naves_val} - set(keep))
        for li in val_labels:  # validation-only labels go after the training ones
            remap[li] = len(remap)
        labels = [labels[k] for k in keep] + [labels[k] for k in val_labels]
        naves_train = [naves_train[k] for k in keep]
        naves_val = sorted({(remap[li], g) for li, g in naves_val})
        nstats.update(labels=len(labels), train_labels=len(naves_train), topics_used=len(topics_used),
                      train_pairs=int(sum(len(v) for v in naves_train)), val_pairs=len(naves_val),
                      holdout=naves_holdout, heldout_head_words=len(units))
    return labels, naves_train, naves_val, topics_used, nstats


def read_natural(path: Path) -> list[tuple[str, str, str]]:
    """(label, style, query) rows of a natural-anchors file; '#' lines are comments."""
    rows = []
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the natural anchors ({e.__class__.__name__})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(x.strip() for x in parts):
            raise BadInput(f"{path}:{n}: expected label<TAB>style<TAB>query")
        rows.append((parts[0], parts[1], parts[2]))
    return rows


def _natural(path: Path, labels: list[str], n_train: int, forbidden: frozenset[str]) -> tuple[tuple, tuple, dict]:
    """Natural anchors whose label is a TRAINING label (the first `n_train` of `labels`), minus any anchor that is,
    or nearly is (token Jaccard >= NATURAL_NEAR), a query of a committed set (`forbidden`: their normalised texts)."""
    train_label = {t: k for k, t in enumerate(labels[:n_train])}
    evals = [frozenset(q.split()) for q in forbidden]
    anchors, label_of = [], []
    stats = {"file": str(Path(path).relative_to(REPO) if Path(path).is_relative_to(REPO) else path), "rows": 0,
             "label_not_in_training": 0, "near_an_evaluation_query": 0}
    for label, _style, query in read_natural(path):
        stats["rows"] += 1
        if label not in train_label:
            stats["label_not_in_training"] += 1
            continue
        w = frozenset(norm(query).split())
        if any(len(w & e) >= NATURAL_NEAR * len(w | e) for e in evals):
            stats["near_an_evaluation_query"] += 1
            continue
        anchors.append(query)
        label_of.append(train_label[label])
    stats.update(anchors=len(anchors), labels=len(set(label_of)))
    return tuple(anchors), tuple(label_of), stats


def _commentary(pos, held, in_x, any_text, forbidden):
    """Matthew Henry's commentary sentences and chapter-outline lines -> the verses their passage comments on.
    Held-out verses become validation pairs; keyword-xlate verses are never a positive."""
    passages, counts = read_passages(sword_dir(), canons["kjv"])
    anchors, train, val, passage_of = [], [], [], []
    stats = {**counts, "anchors_forbidden": 0, "anchors": 0, "train_pairs": 0, "val_pairs": 0}
    for n, p in enumerate(passages):
        units = [(line, verses) for line, verses in p.outline] + [(t, p.verses) for t in sentences(p.text)]
        for text, verses in units:
            if norm(text) in forbidden:
                stats["anchors_forbidden"] += 1
                continue
            ks = [pos[v] for v in verses if v in pos and any_text[pos[v]] and not in_x[pos[v]]]
            tr = np.array([k for k in ks if not held[k]], dtype=np.int64)
            if not len(tr):
                continue
            anchors.append(text)
            train.append(tr)
            passage_of.append(n)
            val.extend((len(anchors) - 1, k) for k in ks if held[k])
    stats.update(anchors=len(anchors), train_pairs=int(sum(len(t) for t in train)), val_pairs=len(val))
    return tuple(anchors), tuple(train), tuple(val), tuple(passage_of), stats


# ---- drawing pairs --------------------------------------------------------------------------------------------------

def _pick_translations(pd: PairData, k: int, rng: np.random.Generator, web_share: float,
                       anchor_needed: bool = True) -> tuple[str, str] | None:
    """(anchor translation, positive translation), different, both with text for verse k. The positive is the WEB
    (the corpus searched) with probability `web_share` when the WEB has the verse."""
    have = [t for t in pd.translations if pd.texts[t][k]]
    if len(have) < (2 if anchor_needed else 1):
        return None
    if "web" in have and rng.random() < web_share:
        pos = "web"
    else:
        pos = have[rng.integers(len(have))]
    if not anchor_needed:
        return None, pos
    rest = [t for t in have if t != pos]
    return rest[rng.integers(len(rest))], pos


def span_of(text: str, rng: np.random.Generator) -> str:
    words = _words(text)
    if len(words) <= SPAN_MIN:
        return " ".join(words)
    n = int(rng.integers(SPAN_MIN, min(SPAN_MAX, len(words)) + 1))
    start = int(rng.integers(0, len(words) - n + 1))
    return re.sub(r"^\W+|\W+$", "", " ".join(words[start:start + n]))


def draw(pd: PairData, kind: str, rng: np.random.Generator, web_share: float, split: str = "train") -> Pair | None:
    """One random pair of `kind` (None when the draw is unusable; the caller draws again)."""
    if kind == "natural":
        return _draw_natural(pd, rng, web_share, split)
    if kind in ("naves", "comment"):  # a text about several verses -> one of them
        anchors, train, val = ((pd.naves_labels, pd.naves_train, pd.naves_val) if kind == "naves" else
                               (pd.comment_anchors, pd.comment_train, pd.comment_val))
        if split == "train":
            if not train:
                return None
            li = int(rng.integers(len(train)))
            k = int(train[li][rng.integers(len(train[li]))])
        else:
            if not val:
                return None
            li, k = val[int(rng.integers(len(val)))]
        tr = _pick_translations(pd, k, rng, web_share, anchor_needed=False)
        if tr is None:
            return None
        key = f"naves:{li}" if kind == "naves" else f"comment:{pd.comment_passage[li]}"
        return Pair(kind, anchors[li], pd.texts[tr[1]][k], pd.ids[k], key, None, tr[1])
    pool = pd.train_verses if split == "train" else pd.val_verses
    if not len(pool):
        return None
    k = int(pool[rng.integers(len(pool))])
    tr = _pick_translations(pd, k, rng, web_share)
    if tr is None:
        return None
    a_t, p_t = tr
    anchor = pd.texts[a_t][k] if kind == "xlate" else span_of(pd.texts[a_t][k], rng)
    if not anchor or norm(anchor) in pd.forbidden:
        return None
    return Pair(kind, anchor, pd.texts[p_t][k], pd.ids[k], f"verse:{pd.ids[k]}", a_t, p_t)


def _draw_natural(pd: PairData, rng: np.random.Generator, web_share: float, split: str) -> Pair | None:
    """A natural anchor -> a verse of its label: a training verse, or for validation a held-out one."""
    if not pd.natural_anchors:
        return None
    n = int(rng.integers(len(pd.natural_anchors)))
    li = pd.natural_label[n]
    if split == "train":
        k = int(pd.naves_train[li][rng.integers(len(pd.naves_train[li]))])
    else:
        held = [k for l, k in pd.naves_val if l == li]
        if not held:
            return None
        k = held[int(rng.integers(len(held)))]
    tr = _pick_translations(pd, k, rng, web_share, anchor_needed=False)
    if tr is None:
        return None
    return Pair("natural", pd.natural_anchors[n], pd.texts[tr[1]][k], pd.ids[k], f"naves:{li}", None, tr[1])


def check_mix(mix) -> tuple[float, ...]:
    """Draw weights per kind, normalised. Three or four weights are a mix from before the commentary or the natural
    kind (the missing kinds get weight 0, and the batches draw exactly as they did)."""
    mix = tuple(float(x) for x in mix)
    if len(KINDS) - 2 <= len(mix) < len(KINDS):
        mix += (0.0,) * (len(KINDS) - len(mix))
    if len(mix) != len(KINDS) or any(x < 0 for x in mix) or not sum(mix) > 0:
        raise BadInput(f"pair mix must be {len(KINDS)} non-negative weights for {'/'.join(KINDS)}, got {mix}")
    return tuple(x / sum(mix) for x in mix)


def sample_batch(pd: PairData, batch_size: int, seed: int, step: int, mix=(0.2, 0.4, 0.4, 0.0),
                 web_share: float = 0.5) -> list[Pair]:
    """The global batch of `step`: a function of (seed, step) alone; no verse id, Nave label or commentary passage
    twice."""
    weights = check_mix(mix)
    empty = (False, False, not pd.naves_train, not pd.comment_train, not pd.natural_anchors)  # nothing to draw from
    if any(w > 0 and e for w, e in zip(weights, empty)):
        weights = check_mix(tuple(0.0 if e else w for w, e in zip(weights, empty)))
    rng = np.random.default_rng([seed, step, 2])
    out: list[Pair] = []
    used: set[str] = set()
    tries = 0
    while len(out) < batch_size and tries < 20 * batch_size:
        tries += 1
        kind = KINDS[int(rng.choice(len(KINDS), p=weights))]
        p = draw(pd, kind, rng, web_share)
        if p is None or p.verse in used or p.anchor_key in used:
            continue
        used.update((p.verse, p.anchor_key))
        out.append(p)
    return out


def val_pairs(pd: PairData, per_kind: int, seed: int, web_share: float = 0.5) -> dict[str, list[Pair]]:
    """Fixed validation pairs per kind from held-out verses, each verse id and label at most once per kind."""
    out = {}
    for n, kind in enumerate(KINDS):
        rng = np.random.default_rng([seed, 11, n])
        got, used, tries = [], set(), 0
        while len(got) < per_kind and tries < 20 * per_kind:
            tries += 1
            p = draw(pd, kind, rng, web_share, split="val")
            if p is None or p.verse in used or p.anchor_key in used:
                continue
            used.update((p.verse, p.anchor_key))
            got.append(p)
        if got:
            out[kind] = got
    return out
