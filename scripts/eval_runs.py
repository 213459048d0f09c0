"""Evaluate TREC runs made elsewhere (scripts/gpu_session.py returns them as runs/<label>/<set>.trec) with ranx, into
a report.json that `bench compare` and scripts/model_card_table.py read.

    .venv/bin/python scripts/eval_runs.py RUNS_DIR OUT_DIR

Each label is a retriever column; the metrics, distractor metrics and significance tests are the runner's own.
"""

import sys
from datetime import datetime, timezone
from pathlib import Path

from corpus.bible import load_corpus
from corpus.errors import BadInput
from corpus.qsets import load_set, read_run
from harness import metrics
from harness.report import git_commit, machine, write_report
from harness import __version__
from harness.home import default_home
from harness.runner import evaluate_set


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    runs_dir, out = Path(argv[0]), Path(argv[1])
    home = default_home()
    metrics.configure(home)
    corpus = load_corpus("web", "nt", home=home)
    report = {"meta": {"versebench": __version__, "git": git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "machine": machine(), "source": "TREC runs evaluated from files",
                       "corpus": {"id": corpus.corpus_id, "translation": "web", "scope": "nt", "verses": len(corpus)},
                       "run": {"k": 100, "scope": "nt", "translation": "web", "stat_test": "student"},
                       "sets": {}},
              "results": {}, "per_query": {}, "significance": {}}
    by_set: dict[str, dict[str, Path]] = {}
    for f in sorted(runs_dir.glob("*/*.trec")):
        by_set.setdefault(f.stem, {})[f.parent.name] = f
    if not by_set:
        raise BadInput(f"{runs_dir}: no runs (expected <label>/<set>.trec)")
    for name, files in sorted(by_set.items()):
        qs = load_set(name, "nt")
        runs = {label: read_run(f) for label, f in files.items()}
        unknown = {d for run in runs.values() for docs in run.values() for d in docs if d not in corpus.position}
        if unknown:
            raise BadInput(f"{runs_dir}: {len(unknown)} docids of set {name} are not verses of {corpus.corpus_id}")
        ev = evaluate_set(qs, runs, "student")
        report["meta"]["sets"][qs.name] = {"version": qs.version, "queries": len(qs.queries)}
        for key in ("results", "per_query", "significance"):
            report[key][qs.name] = ev[key]
    write_report(report, out)
    print(f"wrote {out / 'report.json'}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
