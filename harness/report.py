"""Reports: the typed `Report` every stage after evaluation reads (its JSON, markdown and DataFrames), and the
run's metadata.

A report's JSON is `{"meta": ..., "results": ..., "per_query": ..., "significance": ...}`:
- results[set][retriever][metric] = mean value
- per_query[set][retriever][metric][qid] = value (absent in reports written before they were kept)
- significance[set][metric][row_a][row_b] = p of the paired test (absent in a gate baseline)
- by_tag[set][tag] = {"qids": [...], "results": ..., "significance": ...}: the same by query tag, for the sets whose
  queries carry a style tag (absent where none does)
- failed_queries[set][retriever] = {qid: problem}: queries a retriever could not answer (a live service that failed,
  tolerated with `max_failures`); they were scored as unanswered. Absent in a complete report. A row with failed
  queries is INCOMPLETE wherever it is shown, never bold, never in a significance letter, and the gate refuses it.
`Report.load` and `Report.save` keep that format, so committed reports read and write back unchanged.
"""

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from corpus.errors import BadInput, at, redact
from harness.metrics import DISTRACTOR_METRICS, LOWER_IS_BETTER, METRICS, POOL_METRICS
from corpus.paths import REPO, atomic_write_text

SIG_P = 0.05
SUPERSCRIPT = dict(zip("abcdefghijklmnopqrstuvwxyz", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖqʳˢᵗᵘᵛʷˣʸᶻ"))


def git_commit(repo: Path = REPO) -> dict:
    """{"commit", "dirty"} of the work tree (dirty: a tracked file differs from HEAD). When git cannot tell, commit
    and dirty are None and "why" says what stopped it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no") if head.returncode == 0 else None
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "why": "git is not on PATH"}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "why": f"git did not answer ({type(e).__name__})"}
    if status is None or status.returncode != 0:
        said = ((status or head).stderr.strip().splitlines() or ["git failed"])[0]
        return {"commit": None, "dirty": None, "why": f"{rel_path(repo)}: {said}"}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def rel_path(path) -> str:
    """A path as a report records it: relative to the repository; outside it, only its name (a report is committed
    and shared, and the machine's folders are nobody else's business)."""
    p = Path(os.path.abspath(path))
    try:
        rel = p.relative_to(REPO)
    except ValueError:
        return f"(outside the repository)/{p.name}"
    return rel.as_posix() or "."


def clean_paths(obj):
    """`obj` with every Path and every absolute path string made repository-relative (`rel_path`)."""
    if isinstance(obj, dict):
        return {k: clean_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clean_paths(v) for v in obj)
    if isinstance(obj, Path) or (isinstance(obj, str) and os.path.isabs(obj)):
        return rel_path(obj)
    return obj


def machine() -> dict:
    """What decides a score's last bits: the CPU model, torch's intra-op thread count and its SIMD kernel level, and
    the BLAS numpy multiplies with (numbers made on another of these differ in float noise, see base.SCORE_DECIMALS)."""
    import numpy as np
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_model": cpu_model(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": numpy_blas(np),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas(np) -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # the layout of numpy's build info is not a promise; the report does without it
        return "unknown"


@dataclass(frozen=True)
class Report:
    """One evaluation: which systems, on which sets, how they scored, and whether the differences are significant.
    `per_query` and `significance` are None where the report does not keep them (a gate baseline has no
    significance; old compare tables have no per-query values)."""
    meta: dict
    results: dict  # {set: {retriever: {metric: mean}}}
    per_query: dict | None = None  # {set: {retriever: {metric: {qid: value}}}}
    significance: dict | None = None  # {set: {metric: {row: {other row: p}}}}
    by_tag: dict | None = None  # {set: {tag: {"qids": [qid], "results": ..., "significance": ...}}}
    failed_queries: dict | None = None  # {set: {retriever: {qid: problem}}}; None: every query was answered

    # ---- reading the numbers ---------------------------------------------------------------------------------------

    @property
    def sets(self) -> list[str]:
        return list(self.results)

    def retrievers(self, set_name: str | None = None) -> list[str]:
        """The rows of one set, or of every set (first seen first)."""
        sets = [set_name] if set_name is not None else self.results
        return list(dict.fromkeys(r for s in sets for r in self.results.get(s, {})))

    def values(self, set_name: str, retriever: str, metric: str) -> dict | None:
        """{qid: value} of one row's metric on a set, or None when the report did not keep it."""
        return (self.per_query or {}).get(set_name, {}).get(retriever, {}).get(metric)

    def set_info(self, set_name: str) -> dict:
        """What the report recorded about a set: version, number of queries, split, kind."""
        return self.meta.get("sets", {}).get(set_name, {})

    @property
    def corpus_id(self) -> str:
        return self.meta["corpus"]["id"]

    def failed(self, set_name: str, retriever: str) -> dict[str, str]:
        """{qid: problem} of the queries `retriever` could not answer on the set; empty for a complete row."""
        return (self.failed_queries or {}).get(set_name, {}).get(retriever, {})

    @property
    def incomplete(self) -> bool:
        return any(rows for rows in (self.failed_queries or {}).values())

    def incomplete_lines(self) -> list[str]:
        """One line per incomplete row: which retriever, on which set, how many queries failed and the first
        problem."""
        lines = []
        for s, rows in (self.failed_queries or {}).items():
            for r, failed in rows.items():
                qid, problem = next(iter(failed.items()))
                lines.append(f"INCOMPLETE: {r} on {s}: {len(failed)} of {self.set_info(s).get('queries', '?')} "
                             f"queries failed and count as unanswered (first: {qid}: {problem})")
        return lines

    def tag_of(self, set_name: str) -> dict[str, str]:
        """{qid: tag} of a set whose queries are tagged; empty otherwise."""
        return {q: tag for tag, part in (self.by_tag or {}).get(set_name, {}).items() for q in part["qids"]}

    # ---- renderings ------------------------------------------------------------------------------------------------

    def to_markdown(self, title: str = "versebench run") -> str:
        """A run's tables (with its commit and timings), or a comparison's (`bench compare`: which reports)."""
        if "reports" in self.meta:
            from harness.compare import to_markdown as comparison

            return comparison(self)
        return to_markdown(self, title)

    def to_frame(self):
        """A pandas DataFrame, one row per (set, retriever, metric) mean (harness.frames.tidy)."""
        from harness import frames

        return frames.tidy(self)

    def per_query_frame(self):
        """A pandas DataFrame, one row per (set, qid, retriever, metric), with the query's text."""
        from harness import frames

        return frames.per_query(self)

    # ---- files -----------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {"meta": self.meta, "results": self.results}
        if self.per_query is not None:
            out["per_query"] = self.per_query
        if self.significance is not None:
            out["significance"] = self.significance
        if self.by_tag is not None:
            out["by_tag"] = self.by_tag
        if self.failed_queries is not None:
            out["failed_queries"] = self.failed_queries
        return out

    @classmethod
    def from_dict(cls, d: dict, where="report") -> "Report":
        for key in ("meta", "results"):
            if not isinstance(d.get(key), dict):
                raise at(where, None, f"not a versebench report (no {key!r} object)")
        check_results(d["results"], where)
        check_failed(d.get("failed_queries"), where)
        return cls(meta=d["meta"], results=d["results"], per_query=d.get("per_query"),
                   significance=d.get("significance"), by_tag=d.get("by_tag"), failed_queries=d.get("failed_queries"))

    @classmethod
    def load(cls, path) -> "Report":
        """From a run folder (its report.json) or a report JSON file (report.json, baseline.json, compare.json)."""
        path = Path(path)
        if path.is_dir():
            if not (path / "report.json").is_file():
                raise at(path, None, "is a folder without a report.json; give a report file or a run folder")
            path = path / "report.json"
        try:
            d = json.loads(path.read_text("utf-8-sig"))  # a byte-order mark from a Windows editor is not an error
        except FileNotFoundError:
            raise at(path, None, "no such report") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise at(path, None, f"not a valid report JSON ({e})") from None
        if not isinstance(d, dict):
            raise at(path, None, "not a versebench report (not a JSON object)")
        return cls.from_dict(d, path)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    def write_json(self, path) -> Path:
        return atomic_write_text(path, self.to_json())

    def save(self, folder) -> list[Path]:
        """report.json and report.md in `folder`."""
        return [self.write_json(Path(folder) / "report.json"),
                atomic_write_text(Path(folder) / "report.md", self.to_markdown())]


def new_meta(corpus, cfg, configs: dict, timings: dict, sets) -> dict:
    """A run's meta: versions, commit, date, machine, corpus, the run's config, every retriever's config, the sets."""
    run_cfg = clean_paths(asdict(cfg))
    # options as given (a dsn, a service's url): what a user typed may hold a password, which no report keeps
    run_cfg["options"] = {r: {k: redact(v) if isinstance(v, str) else v for k, v in opts.items()}
                          for r, opts in run_cfg.get("options", {}).items()}
    return {
        "versebench": __version__,
        "git": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "corpus": {"id": corpus.corpus_id, "translation": corpus.translation, "scope": corpus.scope,
                   "verses": len(corpus)},
        "run": run_cfg,
        "retrievers": clean_paths(configs),
        "checkpoint_sha256": {n: c.get("checkpoint_sha256") for n, c in configs.items()
                              if c.get("checkpoint_sha256")},
        "sets": {s.name: {"version": s.version, "queries": len(s.queries), "split": s.meta.get("split"),
                          "kind": s.meta.get("kind")} for s in sets},
        "timings": timings,
    }


def check_results(results: dict, path) -> None:
    """`results[set][retriever][metric]` is a number everywhere, so what reads a report never meets a string where
    a score should be (a hand-edited or truncated report); BadInput names the first place that is not."""
    for set_name, rows in results.items():
        if not isinstance(rows, dict):
            raise at(path, None, f"results.{set_name} is not an object")
        for retriever, metrics in rows.items():
            if not isinstance(metrics, dict):
                raise at(path, None, f"results.{set_name}.{retriever} is not an object")
            for metric, value in metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                    raise at(path, None, f"results.{set_name}.{retriever}.{metric} is {shown}, not a number")


def check_failed(failed, path) -> None:
    """`failed_queries[set][retriever]` is {qid: problem} everywhere (or the key is absent)."""
    if failed is None:
        return
    ok = isinstance(failed, dict) and all(
        isinstance(rows, dict) and all(isinstance(qs, dict) and all(isinstance(q, str) for q in qs)
                                       for qs in rows.values()) for rows in failed.values())
    if not ok:
        raise at(path, None, "failed_queries is not {set: {retriever: {qid: problem}}}")


def metrics_of(results_for_set: dict) -> list[str]:
    present = {m for r in results_for_set.values() for m in r}
    return [m for m in (*METRICS, *DISTRACTOR_METRICS, *POOL_METRICS) if m in present]


def markers(sig: dict, metric: str, name: str, names: list[str], results: dict, skip=frozenset()) -> str:
    """Superscript letters of the rows this row beats significantly (p < 0.05) on this metric. Rows in `skip`
    (incomplete ones) neither get nor give a letter: their failed queries were scored as unanswered."""
    letters = ""
    if name in skip:
        return letters
    for i, other in enumerate(names):
        p = sig.get(metric, {}).get(name, {}).get(other)
        if other == name or other in skip or p is None or p >= SIG_P:
            continue
        a, b = results[name].get(metric), results[other].get(metric)
        better = (a < b) if metric in LOWER_IS_BETTER else (a > b)
        if better:
            letters += SUPERSCRIPT[chr(ord("a") + i)]
    return letters


def incomplete_rows(report: Report, set_name: str) -> frozenset:
    return frozenset(r for r, failed in (report.failed_queries or {}).get(set_name, {}).items() if failed)


def row_label(report: Report, set_name: str, name: str) -> str:
    """A row's name as a table shows it: an incomplete row says so, with how many of the set's queries failed."""
    failed = report.failed(set_name, name)
    if not failed:
        return name
    return f"{name} INCOMPLETE ({len(failed)} of {report.set_info(set_name).get('queries', '?')} queries failed)"


def set_table_rows(report: Report, set_name: str) -> tuple[list[str], list[list[str]]]:
    """One set's table: a header and a row of cells per retriever (bold: best in column; superscript letters: the
    rows it beats significantly). An incomplete row is named so, and is never best and never in a letter."""
    res = report.results[set_name]
    names = list(res)
    ms = metrics_of(res)
    sig = (report.significance or {}).get(set_name, {})
    skip = incomplete_rows(report, set_name)
    best = {}
    for m in ms:
        vals = [res[n][m] for n in names if m in res[n] and n not in skip]
        best[m] = (min if m in LOWER_IS_BETTER else max)(vals) if vals else None
    rows = []
    for i, n in enumerate(names):
        cells = [f"{chr(ord('a') + i)}", row_label(report, set_name, n)]
        for m in ms:
            v = res[n].get(m)
            txt = "" if v is None else f"{v:.3f}"
            if v is not None and v == best[m] and len(names) > 1 and n not in skip:
                txt = f"**{txt}**"
            cells.append(txt + markers(sig, m, n, names, res, skip))
        rows.append(cells)
    return ["", "retriever", *ms], rows


def to_markdown(report: Report, title: str = "versebench run") -> str:
    meta = report.meta
    lines = [f"# {title}", "", *(f"**{line}**" for line in report.incomplete_lines()),
             *([""] if report.incomplete else []),
             f"Corpus `{meta['corpus']['id']}` ({meta['corpus']['verses']} verses), k={meta['run']['k']}, "
             f"versebench {meta['versebench']} at "
             f"{'`' + meta['git']['commit'][:10] + '`' if meta['git']['commit'] else 'an unknown commit'}"
             f"{' (' + meta['git']['why'] + ')' if meta['git'].get('why') else ''}"
             f"{' (dirty)' if meta['git']['dirty'] else ''}, {meta['date']}.", "",
             f"Superscript letters: the row is better than those rows with p < {SIG_P} "
             f"(ranx paired {meta['run']['stat_test']} test). Bold: best in column.", ""]
    for s in report.results:
        info = report.set_info(s)
        lines += [f"## {s} ({info.get('queries', '?')} queries)", ""]
        header, rows = set_table_rows(report, s)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
        lines += tag_table(report, s)
    t = meta.get("timings", {})
    if t:
        lines += ["## Timings", "", "| retriever | build s | search s (all sets) |", "|---|---|---|"]
        lines += [f"| {n} | {v['build_s']:.2f} | {sum(v['search_s'].values()):.2f} |" for n, v in t.items()]
        lines.append("")
    return "\n".join(lines)


def tag_table_rows(report: Report, set_name: str, metric: str = "ndcg@10") -> tuple[list[str], list[list[str]]] | None:
    """A tagged set's `metric` by tag, as `set_table_rows` gives a set: a header (tag, then a column per retriever
    lettered as in the set's table) and a row per tag (bold: best in the row; letters from the paired test on the
    tag's queries alone). None for a set without tags."""
    tags = (report.by_tag or {}).get(set_name)
    if not tags:
        return None
    names = list(report.results[set_name])
    skip = incomplete_rows(report, set_name)
    rows = []
    for tag, t in tags.items():
        res = t["results"]
        best = max((res[n].get(metric, float("-inf")) for n in names if n not in skip), default=None)
        cells = [f"{tag} ({len(t['qids'])})"]
        for n in names:
            v = res[n].get(metric)
            txt = "" if v is None else f"{v:.3f}"
            if v is not None and v == best and len(names) > 1 and n not in skip:
                txt = f"**{txt}**"
            cells.append(txt + markers(t["significance"], metric, n, names, res, skip))
        rows.append(cells)
    return ["tag (queries)", *(f"{chr(ord('a') + i)} {n}{' INCOMPLETE' if n in skip else ''}"
                               for i, n in enumerate(names))], rows


def tag_table(report: Report, set_name: str, metric: str = "ndcg@10") -> list[str]:
    """Markdown lines of `tag_table_rows`; empty for a set without tags."""
    table = tag_table_rows(report, set_name, metric)
    if table is None:
        return []
    header, rows = table
    return ([f"### {set_name} by query tag ({metric})", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def require_same_basis(a: Report, b: Report, a_name: str, b_name: str) -> None:
    """Refuse to compare reports made on different corpora or different versions of a set."""
    ca, cb = a.corpus_id, b.corpus_id
    if ca != cb:
        raise BadInput(f"{b_name}: corpus {cb} differs from {a_name}'s {ca}; numbers are not comparable")
    for s, info in b.meta.get("sets", {}).items():
        other = a.meta.get("sets", {}).get(s)
        if other and other.get("version") != info.get("version"):
            raise BadInput(f"{b_name}: set {s!r} version {info.get('version')} differs from {a_name}'s "
                           f"{other.get('version')}; judgments changed")
