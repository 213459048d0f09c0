"""sword: the search that Bible study apps ship. Xiphos and BibleTime search through the SWORD library; Debian ships
its command-line front end `diatheke` (package `diatheke`) and `mkfastmod` (`libsword-utils`), which builds SWORD's
CLucene index of a module. This retriever runs them on the very module the corpus was read from.

Modes (SWORD's own search types, as `diatheke -s` names them):
  multiword  every query word, in any order, each matched as a case-insensitive SUBSTRING of the verse's text
             ("love" finds "beloved"). SWORD slides a window of two verses: words split over two neighbouring
             verses are a hit on the pair, which diatheke lists as both verses. Results in canonical order.
  phrase     the query as one case-insensitive substring of the verse's text. Canonical order.
SWORD searches the module's text of a verse, which is not quite the corpus's: it keeps the WEB's footnotes ("begotten"
finds John 3:16 through its note on "only born") and the glossary the module appends to Rev 22:21 (so Rev 22:21
matches many multiword queries). That is what an app's user gets, so it is left as it is.
  lucene     SWORD's CLucene index (StandardAnalyzer, no stopwords, no stemming: whole words), ranked by CLucene's
             score, in the order diatheke prints (score order; ties in module order). `operator=and` (default)
             requires every word, as Xiphos's search bar sends it (`+word +word`); `operator=or` is CLucene's own
             default, any word.
What the apps default to (checked in their sources): Xiphos's search bar and BibleTime's dialog both look for "all
words"; Xiphos uses the Lucene index when the module has one and then SORTS the hits into canonical order
(`results.sort()` in `BackEnd::do_module_search`), else SWORD's multiword scan; BibleTime always uses an index of its
own. So `multiword` (all words, canonical order) is the default and what `-r all` runs.

The query: for multiword and lucene, its words (runs of word characters, `\\w+`, lower-cased, each once, the first
`max_words`), so punctuation never reaches SWORD and no word can be Lucene syntax (lower-case `and`/`or`/`not` are
terms, not operators; `+ - ( ) " * : ~ ^ [ ] \\` never survive). For phrase, the text with whitespace collapsed and
punctuation cut from both ends (inside it stays: "neighbor, and" is a phrase of the verse, "neighbor and" is not).
diatheke is run with an argument list, never a shell, the query as the single argument after `-k` (which it takes
verbatim). Nothing searchable -> `{}` without running anything.

Scope: diatheke's range option (`-r Matt-Rev`, `Gen-Mal`, `Gen-Mal;Matt-Rev`) keeps SWORD to the corpus's books (the
WEB module also holds the deuterocanon); its references ("Revelation of John 22:21", "I Corinthians 13:4") are read
with corpus.books, NRSVA's two extra slots are moved to their KJV verses as corpus.bible does, and whatever is not
a verse of the corpus (a verse the corpus has no text for) is dropped before the cut at k. SWORD has no scores:
a verse's score is its reciprocal rank, 1/1, 1/2, ..., strictly decreasing.

Caches, both under `<cache root>/sword/`, both data only, verified on load (corpus.cache):
- `<module>-<hash>/`: a private SWORD_PATH, so nothing is written into /usr/share/sword: the module's .conf and data
  files copied, and the Lucene index mkfastmod built there. Keyed by the module's bytes and diatheke's version; a
  folder manifest of sha256s, checked before every use (a damaged entry is a notice and a rebuild).
- `answers/<module>-<hash>.json`: diatheke's answers (the references, each once, before the scope's mapping; the
  first STORED_REFS of a longer list), keyed by the module folder, mode, operator, range and the query as given to
  diatheke. A multiword scan of the New Testament takes about 0.2 s, a phrase scan 0.8 s, so the committed sets
  take minutes once, then seconds. `cache=false` leaves it out (what `bench perf` times). Two processes filling the
  same file at once can lose each other's new answers (each rewrites the whole file); they are searched again, never
  wrong.
diatheke runs with SWORD_PATH and HOME pointing at the private folder (no ~/.sword module joins in) and `-l en`.
"""

import concurrent.futures
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from corpus import cache
from corpus.bible import NRSVA_TO_KJV
from corpus.books import books_for, normalize_ref
from corpus.errors import BadInput
from retrievers.base import check_k, positive_int, strictly_decreasing

MODES = ("multiword", "phrase", "lucene")
OPERATORS = ("and", "or")
FORMAT = 1  # bump when what goes into either cache changes
WORKERS = 2  # diatheke processes at once (the machine has two cores)
# An answer is cached up to this many references ("any word" in Lucene lists most of the Bible: 75 MB for the
# committed sets uncut); a cut answer serves any k up to STORED_REFS - MARGIN, a deeper search asks diatheke again.
# The margin covers what the corpus may still drop (a verse it has no text for, an NRSVA slot merged into its KJV
# verse): a handful at most.
STORED_REFS, MARGIN = 1000, 100
TIMEOUT_S = 300  # one diatheke call; a phrase scan of the whole Bible takes about 3 s
WORD = re.compile(r"\w+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ENTRY = re.compile(r"<entry>([^<]*)</entry>")
SETUP_HINT = "run ./scripts/setup.sh (or: apt-get install diatheke libsword-utils)"


@dataclass(frozen=True)
class SwordOptions:
    mode: str = "multiword"  # multiword | phrase | lucene
    operator: str = "and"  # lucene only: and (every word, as Xiphos sends it) | or (any word)
    max_words: int = 32  # only the first max_words distinct query words count (multiword, lucene)
    cache: bool = True  # keep diatheke's answers under the cache root (the same results either way)


@dataclass(frozen=True)
class SwordConfig:
    mode: str
    operator: str | None  # None outside lucene mode
    max_words: int
    module: str  # the SWORD module, e.g. engWEB2015eb
    module_sha256: str  # of its .conf and data files
    engine: str  # diatheke's banner: "Diatheke ... Version 4.8 (SWORD: 1.9.0)"
    search_range: str  # diatheke's -r


class SwordRetriever:
    name = "sword"

    def __init__(self, corpus, options: SwordOptions, home: Path, on_progress=None):
        module = source_module(corpus)
        self._exe = _tool("diatheke")
        self.folder = module_folder(module, home, on_progress=on_progress)
        self._module = module.name
        self._range = ";".join(f"{b[0]}-{b[-1]}" for b in _testaments(corpus.scope))
        lucene = options.mode == "lucene"
        self.config = SwordConfig(options.mode, options.operator if lucene else None, options.max_words,
                                  module.name, module.sha256, engine_version(self._exe), self._range)
        self._position = corpus.position
        # A query word longer than every word of the corpus, or a phrase longer than every verse, cannot match.
        self._max_word = max((len(w) for t in corpus.texts for w in WORD.findall(t)), default=0)
        self._max_phrase = max(map(len, corpus.texts), default=0)
        self._answers = Answers(home, self.folder, self.config) if options.cache else None

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        check_k(k)
        keys = {qid: self.diatheke_key(text) for qid, text in queries.items()}
        refs = self._refs({key for key in keys.values() if key}, k)
        return {qid: self._ranked(refs[key], k) if key else {} for qid, key in keys.items()}

    def diatheke_key(self, text: str) -> str:
        """What diatheke is asked (`-k`), or "" when nothing in `text` can match."""
        c = self.config
        if c.mode == "phrase":
            text = text.encode("utf-8", "ignore").decode("utf-8")  # a lone surrogate cannot be an argument
            phrase = re.sub(r"^\W+|\W+$", "", " ".join(CONTROL.sub(" ", text).split()))
            return phrase if len(phrase) <= self._max_phrase else ""
        words = list(dict.fromkeys(WORD.findall(text.lower())))[:c.max_words]
        if any(len(w) > self._max_word for w in words):
            if c.operator != "or":
                return ""  # every word is required and this one is in no verse
            words = [w for w in words if len(w) <= self._max_word]
        if c.mode == "lucene" and c.operator == "and":
            return " ".join(f"+{w}" for w in words)
        return " ".join(words)

    def _refs(self, keys: set[str], k: int) -> dict[str, list[str]]:
        """SWORD's answer to each key: OSIS references in SWORD's order, each once, from the cache or from diatheke
        (at least the first STORED_REFS of them; all of them when k is deeper than the cache keeps)."""
        got = {key: self._answers.get(key, k) for key in keys} if self._answers else dict.fromkeys(keys)
        todo = sorted(key for key, refs in got.items() if refs is None)
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
                for key, refs in zip(todo, pool.map(self._ask, todo)):
                    got[key] = refs
                    if self._answers:
                        self._answers.put(key, refs)
        finally:
            # what was answered is kept even when a later query fails or the run is interrupted (minutes of scans)
            if self._answers and self._answers.pending():
                self._answers.save()
        return got

    def _ask(self, key: str) -> list[str]:
        mode = self.config.mode
        argv = [self._exe, "-b", self._module, "-s", mode, "-r", self._range, "-l", "en", "-f", "CGI", "-k", key]
        try:
            p = subprocess.run(argv, env=sword_env(self.folder), cwd=self.folder, capture_output=True,
                               timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BadInput(f"sword: diatheke took over {TIMEOUT_S} s on {key[:60]!r}") from None
        if p.returncode != 0:
            why = p.stderr.decode("utf-8", "replace").strip().splitlines()[:1] or [f"exit status {p.returncode}"]
            raise BadInput(f"sword: diatheke failed on {key[:60]!r}: {why[0][:200]}")
        # a two-verse window lists a verse twice (as the end of one hit and the start of the next)
        return list(dict.fromkeys(parse_answer(p.stdout, key, self._module)))

    def _ranked(self, refs: list[str], k: int) -> dict[str, float]:
        kept = []
        for ref in refs:
            docid = NRSVA_TO_KJV.get(ref, (ref,))[0]
            if docid in self._position:
                kept.append(docid)
        kept = list(dict.fromkeys(kept))  # an NRSVA slot merged into its KJV verse could repeat it
        # SWORD gives no scores: the reciprocal rank, the same whatever k or the number of hits
        return strictly_decreasing((d, 1.0 / (1 + i)) for i, d in enumerate(kept[:k]))


def make(corpus, options: SwordOptions, *, home: Path, on_progress=None) -> SwordRetriever:
    """Options: mode (multiword | phrase | lucene), operator (and | or, lucene only), max_words, cache.
    `on_progress` hears how far mkfastmod has got when the private module copy and its index are first built."""
    if options.mode not in MODES:
        raise BadInput(f"sword: mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    if options.operator not in OPERATORS:
        raise BadInput(f"sword: operator must be one of {', '.join(OPERATORS)}, got {options.operator!r}")
    if options.mode != "lucene" and options.operator != "and":
        raise BadInput(f"sword: operator applies to mode=lucene only (mode={options.mode} requires every word)")
    positive_int(options.max_words, "sword: max_words")
    return SwordRetriever(corpus, options, home, on_progress)


def _testaments(scope: str) -> list[tuple[str, ...]]:
    """The scope's books as contiguous runs, one per testament (the deuterocanon lies between them in NRSVA)."""
    return [books for t in ("ot", "nt") if scope in (t, "all") for books in [books_for(t)]]


# ---- diatheke -------------------------------------------------------------------------------------------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BadInput(f"sword: {name} is not installed; {SETUP_HINT}")
    return path


@functools.cache
def engine_version(exe: str) -> str:
    """diatheke's banner line (it names SWORD's version too); called without arguments it prints its usage."""
    p = subprocess.run([exe], capture_output=True, timeout=60, env={"PATH": os.environ.get("PATH", "")})
    line = (p.stdout or p.stderr).decode("utf-8", "replace").strip().splitlines()[:1]
    if not line or "diatheke" not in line[0].lower():
        raise BadInput(f"sword: {exe} does not look like diatheke (it printed {line[:1]!r}); {SETUP_HINT}")
    return line[0].strip()


def sword_env(folder: Path) -> dict:
    """diatheke's and mkfastmod's environment: only the private SWORD_PATH, and HOME there too, so a user's
    ~/.sword modules never join in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SWORD_PATH": str(folder), "HOME": str(folder),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def parse_answer(out: bytes, key: str, module: str) -> list[str]:
    """diatheke's search output (`-f CGI`) -> OSIS references in its order. It echoes the key first (skipped by its
    known length, so a key can never pass for a reference), then `<entry>REF</entry>` items and a count, or `none`."""
    head = f'Entries containing "{key}"-- '.encode()
    if not out.startswith(head):
        raise BadInput(f"sword: unexpected answer from diatheke for {key[:60]!r}: {out[:120]!r}; is module {module} "
                       "installed?")
    rest = out[len(head):].decode("utf-8", "replace")
    if rest.startswith("none ("):
        return []
    if not re.search(r" -- \d+ matches total \(", rest):
        raise BadInput(f"sword: diatheke's answer for {key[:60]!r} is cut short: ...{rest[-120:]!r}")
    return [osis_ref(entry) for entry in ENTRY.findall(rest)]


def osis_ref(entry: str) -> str:
    """'Revelation of John 22:21' -> 'Rev.22.21' (SWORD's English names, read by corpus.books)."""
    name, _, cv = entry.strip().rpartition(" ")
    book = _book(name)
    chapter, _, verse = cv.partition(":")
    if book is None or not (chapter.isdigit() and verse.isdigit()):
        raise BadInput(f"sword: diatheke named {entry!r}, which is no verse of the 66 books")
    return f"{book}.{int(chapter)}.{int(verse)}"


@functools.lru_cache(maxsize=256)
def _book(name: str) -> str | None:
    ref = normalize_ref(f"{name} 1:1")
    return ref.split(".", 1)[0] if ref else None


# ---- the private SWORD_PATH: module copy and Lucene index -----------------------------------------------------------

@dataclass(frozen=True)
class Module:
    name: str
    conf: Path
    data_path: str  # the conf's DataPath, relative to the SWORD_PATH
    files: tuple[Path, ...]  # the data files
    sha256: str  # of the conf and the data files, with their names


def source_module(corpus) -> Module:
    """The SWORD module the corpus was read from (its manifest says which, and from which folder)."""
    source = corpus.manifest.get("source") or {}
    if source.get("kind") != "sword":
        raise BadInput(f"sword: corpus {corpus.corpus_id} does not come from a SWORD module (translation "
                       f"{corpus.translation}); sword searches the web and kjv corpora")
    name, root = source["module"], Path(source["sword_dir"])
    confs = [p for p in sorted((root / "mods.d").glob("*.conf")) if p.stem.lower() == name.lower()]
    if not confs:
        raise BadInput(f"sword: module {name} is no longer in {root}/mods.d; run ./scripts/setup.sh")
    conf = confs[0]
    entries = dict(line.split("=", 1) for line in conf.read_text(errors="replace").splitlines() if "=" in line)
    data_path = os.path.normpath(entries.get("DataPath", "").strip())
    if not data_path or os.path.isabs(data_path) or data_path.startswith(".."):
        raise BadInput(f"{conf}: DataPath {entries.get('DataPath')!r} is not a path inside {root}")
    if entries.get("Version", "").strip() != (source.get("module_version") or ""):
        raise BadInput(f"{conf}: version {entries.get('Version', '').strip()!r}, but corpus {corpus.corpus_id} was "
                       f"read from version {source.get('module_version')!r}; rebuild the corpus (bench corpus build)")
    files = tuple(sorted(p for p in (root / data_path).iterdir() if p.is_file()))
    h = hashlib.sha256(conf.read_bytes())
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return Module(name, conf, data_path, files, h.hexdigest())


def module_folder(module: Module, home: Path, on_progress=None) -> Path:
    """The private SWORD_PATH holding a copy of `module` and its Lucene index, built once under the cache root."""
    engine = engine_version(_tool("diatheke"))
    key = {"module": module.name, "sha256": module.sha256, "engine": engine, "format": FORMAT}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    final = home / "sword" / f"{module.name}-{digest}"
    # Every file's sha256 is checked before diatheke opens any: a damaged copy or index is a notice and a rebuild.
    if cache.check_folder(final, "SWORD module"):
        return final
    mkfastmod = _tool("mkfastmod")
    tmp = cache.temp_folder(final)
    try:
        start = time.perf_counter()
        (tmp / "mods.d").mkdir()
        shutil.copyfile(module.conf, tmp / "mods.d" / module.conf.name)
        data = tmp / module.data_path
        data.mkdir(parents=True)
        for p in module.files:
            shutil.copyfile(p, data / p.name)
        _mkfastmod(mkfastmod, module.name, tmp, on_progress)
        if not any((data / "lucene").glob("segments*")):
            raise BadInput(f"sword: mkfastmod built no Lucene index for {module.name} in {data / 'lucene'}")
        manifest = {**key, "data_path": module.data_path, "build_seconds": round(time.perf_counter() - start, 2)}
        cache.publish_folder(tmp, final, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _mkfastmod(exe: str, module: str, folder: Path, on_progress=None) -> None:
    """Build the module's CLucene index. mkfastmod draws a bar of 69 '=' under a ruler line while it indexes; those
    are relayed to `on_progress`."""
    bar, seen = 69, 0
    with subprocess.Popen([exe, module], env=sword_env(folder), cwd=folder, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as p:
        out = b""
        for chunk in iter(lambda: p.stdout.read1(256), b""):
            out += chunk
            ruler = out.find(b"100]")
            if ruler >= 0 and on_progress is not None:
                done = min(bar, out[ruler:].count(b"="))
                if done > seen:
                    seen = done
                    on_progress(done, bar)
        p.wait(timeout=TIMEOUT_S)
    if p.returncode != 0:
        lines = out.decode("utf-8", "replace").strip().splitlines()
        raise BadInput(f"sword: mkfastmod {module} failed (exit status {p.returncode}): {(lines or [''])[-1][:200]}")


# ---- diatheke's answers, cached -------------------------------------------------------------------------------------

class Answers:
    """{diatheke key: OSIS references} for one module folder, mode, operator and range: one JSON file with a sha256
    sidecar (corpus.cache), read and checked once, rewritten whole after a search added answers."""

    def __init__(self, home: Path, folder: Path, config: SwordConfig):
        self.key = {"format": FORMAT, "folder": folder.name, "mode": config.mode, "operator": config.operator,
                    "range": config.search_range}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = home / "sword" / "answers" / f"{config.module}-{digest}.json"
        self.answers = self._load()
        self._new: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        data = cache.read_file(self.path, "SWORD answers")
        if data is None:
            return {}
        try:
            got = json.loads(data)
            answers = got["answers"]
            if got["key"] == self.key and all(isinstance(k, str) and isinstance(v, str) for k, v in answers.items()):
                return answers
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        # its bytes are what its manifest says, but not an answer file of this key: as damaged as a bad sha256
        cache.notice(f"SWORD answers cache {self.path} is not the answers of {self.key}; rebuilding it")
        cache.discard(self.path)
        cache.discard(cache.sidecar(self.path))
        return {}

    def get(self, key: str, k: int) -> list[str] | None:
        """The cached answer, or None when there is none or it was cut shorter than a search to depth k needs."""
        refs = self.answers.get(key)
        if refs is None:
            return None
        refs = refs.split()
        if refs and refs[-1] == "+":  # cut at STORED_REFS
            return refs[:-1] if k <= STORED_REFS - MARGIN else None
        return refs

    def put(self, key: str, refs: list[str]) -> None:
        kept = refs[:STORED_REFS] + ["+"] * (len(refs) > STORED_REFS)
        self._new[key] = self.answers[key] = " ".join(kept)

    def pending(self) -> bool:
        return bool(self._new)

    def save(self) -> None:
        """Write the file with this process's new answers merged into what is there now (another process may have
        added some since it was read)."""
        merged = {**self._load(), **self._new}
        blob = json.dumps({"key": self.key, "answers": merged}, sort_keys=True, ensure_ascii=False)
        cache.write_file(self.path, blob.encode("utf-8"))
        self.answers, self._new = merged, {}
