"""Reports: the JSON every stage after evaluation reads, and its markdown and terminal renderings."""

import json
import os
import platform
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from corpus.errors import BadInput, at
from harness.metrics import DISTRACTOR_METRICS, LOWER_IS_BETTER, METRICS
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


def new_report(corpus, cfg, configs: dict, timings: dict, sets) -> dict:
    run_cfg = clean_paths(asdict(cfg))
    return {
        "meta": {
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
        },
        "results": {},
        "per_query": {},
        "significance": {},
    }


def load_report(path) -> dict:
    path = Path(path)
    if path.is_dir():
        if not (path / "report.json").is_file():
            raise at(path, None, "is a folder without a report.json; give a report file or a run folder")
        path = path / "report.json"
    try:
        rep = json.loads(path.read_text("utf-8-sig"))
    except FileNotFoundError:
        raise at(path, None, "no such report") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise at(path, None, f"not a valid report JSON ({e})") from None
    if not isinstance(rep, dict):
        raise at(path, None, "not a versebench report (not a JSON object)")
    for key in ("meta", "results"):
        if not isinstance(rep.get(key), dict):
            raise at(path, None, f"not a versebench report (no {key!r} object)")
    check_results(rep["results"], path)
    return rep


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


def metrics_of(results_for_set: dict) -> list[str]:
    present = {m for r in results_for_set.values() for m in r}
    return [m for m in (*METRICS, *DISTRACTOR_METRICS) if m in present]


def markers(sig: dict, metric: str, name: str, names: list[str], results: dict) -> str:
    """Superscript letters of the rows this row beats significantly (p < 0.05) on this metric."""
    letters = ""
    for i, other in enumerate(names):
        p = sig.get(metric, {}).get(name, {}).get(other)
        if other == name or p is None or p >= SIG_P:
            continue
        a, b = results[name].get(metric), results[other].get(metric)
        better = (a < b) if metric in LOWER_IS_BETTER else (a > b)
        if better:
            letters += SUPERSCRIPT[chr(ord("a") + i)]
    return letters


def set_table_rows(report: dict, set_name: str) -> tuple[list[str], list[list[str]]]:
    res = report["results"][set_name]
    names = list(res)
    ms = metrics_of(res)
    sig = report.get("significance", {}).get(set_name, {})
    best = {}
    for m in ms:
        vals = [res[n][m] for n in names if m in res[n]]
        best[m] = (min if m in LOWER_IS_BETTER else max)(vals)
    rows = []
    for i, n in enumerate(names):
        cells = [f"{chr(ord('a') + i)}", n]
        for m in ms:
            v = res[n].get(m)
            txt = "" if v is None else f"{v:.3f}"
            if v is not None and v == best[m] and len(names) > 1:
                txt = f"**{txt}**"
            cells.append(txt + markers(sig, m, n, names, res))
        rows.append(cells)
    return ["", "retriever", *ms], rows


def to_markdown(report: dict, title: str = "versebench run") -> str:
    meta = report["meta"]
    lines = [f"# {title}", "",
             f"Corpus `{meta['corpus']['id']}` ({meta['corpus']['verses']} verses), k={meta['run']['k']}, "
             f"versebench {meta['versebench']} at "
             f"{'`' + meta['git']['commit'][:10] + '`' if meta['git']['commit'] else 'an unknown commit'}"
             f"{' (' + meta['git']['why'] + ')' if meta['git'].get('why') else ''}"
             f"{' (dirty)' if meta['git']['dirty'] else ''}, {meta['date']}.", "",
             f"Superscript letters: the row is better than those rows with p < {SIG_P} "
             f"(ranx paired {meta['run']['stat_test']} test). Bold: best in column.", ""]
    for s in report["results"]:
        info = meta["sets"].get(s, {})
        lines += [f"## {s} ({info.get('queries', '?')} queries)", ""]
        header, rows = set_table_rows(report, s)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    t = meta.get("timings", {})
    if t:
        lines += ["## Timings", "", "| retriever | build s | search s (all sets) |", "|---|---|---|"]
        lines += [f"| {n} | {v['build_s']:.2f} | {sum(v['search_s'].values()):.2f} |" for n, v in t.items()]
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict, folder: Path) -> None:
    atomic_write_text(Path(folder) / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(Path(folder) / "report.md", to_markdown(report))


def require_same_basis(a: dict, b: dict, a_name: str, b_name: str) -> None:
    """Refuse to compare reports made on different corpora or different versions of a set."""
    ca, cb = a["meta"]["corpus"]["id"], b["meta"]["corpus"]["id"]
    if ca != cb:
        raise BadInput(f"{b_name}: corpus {cb} differs from {a_name}'s {ca}; numbers are not comparable")
    for s, info in b["meta"].get("sets", {}).items():
        other = a["meta"].get("sets", {}).get(s)
        if other and other.get("version") != info.get("version"):
            raise BadInput(f"{b_name}: set {s!r} version {info.get('version')} differs from {a_name}'s "
                           f"{other.get('version')}; judgments changed")
