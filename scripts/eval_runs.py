"""Evaluate TREC runs made elsewhere (scripts/gpu_session.py returns them as runs/<label>/<set>.trec) with ranx, into
a report.json that `bench compare` and scripts/model_card_table.py read.

    .venv/bin/python scripts/eval_runs.py RUNS_DIR OUT_DIR

Each label is a retriever column; the metrics, distractor metrics and significance tests are the runner's own.
"""

import sys
from pathlib import Path

from corpus.bible import load_corpus
from corpus.errors import BadInput
from corpus.qsets import load_set, read_run
from harness import metrics
from harness.cli.home import default_home
from harness.report import new_report, write_report
from harness.runner import RunConfig, evaluate_set


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    runs_dir, out = Path(argv[0]), Path(argv[1])
    home = default_home()
    metrics.configure()
    corpus = load_corpus("web", "nt", home=home)
    by_set: dict[str, dict[str, Path]] = {}
    for f in sorted(runs_dir.glob("*/*.trec")):
        by_set.setdefault(f.stem, {})[f.parent.name] = f
    if not by_set:
        raise BadInput(f"{runs_dir}: no runs (expected <label>/<set>.trec)")
    sets = [load_set(name, "nt") for name in sorted(by_set)]
    labels = sorted({label for files in by_set.values() for label in files})
    # the runner's own report shape, so `bench compare` and the model card's table read it like any other
    report = new_report(corpus, RunConfig(retrievers=tuple(labels), sets=tuple(by_set)),
                        {label: {"source": "TREC run files"} for label in labels}, {}, sets)
    for qs in sets:
        runs = {label: read_run(f) for label, f in by_set[qs.name].items()}
        unknown = {d for run in runs.values() for docs in run.values() for d in docs if d not in corpus.position}
        if unknown:
            raise BadInput(f"{runs_dir}: {len(unknown)} docids of set {qs.name} are not verses of {corpus.corpus_id}")
        ev = evaluate_set(qs, runs, "student")
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
