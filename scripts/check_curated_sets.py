"""Re-read the hand-curated query sets against the real WEB text.

    .venv/bin/python scripts/check_curated_sets.py            # validate all three, print counts
    .venv/bin/python scripts/check_curated_sets.py --show     # also print each query with its judged verses
    .venv/bin/python scripts/check_curated_sets.py --show distractor

Validation is corpus.qsets.validate_set (every docid a WEB verse of the set's scope, every query judged, no
verse both relevant and distractor). --show is for people: judgments are only as good as the last re-reading.
"""

import argparse
import sys

from corpus.books import scope_of
from corpus.bible import load_corpus
from corpus.qsets import read_set, validate_set
from harness.cli.home import default_home

SETS = ("keyword", "thematic-curated", "distractor")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", action="store_true", help="print every query with the text of its judged verses")
    ap.add_argument("sets", nargs="*", default=SETS)
    args = ap.parse_args(argv)

    corpora, home = {}, default_home()

    def ids(scope):
        if scope not in corpora:
            corpora[scope] = load_corpus("web", scope, home=home)
        return set(corpora[scope].ids)

    for name in args.sets:
        counts = validate_set(name, ids)
        qs = read_set(name)
        by_scope = {"nt": 0, "ot": 0, "mixed": 0}
        primary = {"nt": 0, "ot": 0}
        for docs in qs.qrels.values():
            scopes = {scope_of(d) for d, r in docs.items() if r > 0}
            by_scope["mixed" if len(scopes) > 1 else scopes.pop()] += 1
            # The first rel-2 line is the verse the query recalls; parallels and quotations follow it.
            primary[scope_of(next((d for d, r in docs.items() if r == 2), next(iter(docs))))] += 1
        print(f"{name}: {counts['queries']} queries, {counts['relevant']} relevant judgments, "
              f"{counts.get('distractors', 0)} distractors; first rel-2 verse NT {primary['nt']} / "
              f"OT {primary['ot']}; relevant verses NT only {by_scope['nt']}, OT only {by_scope['ot']}, "
              f"both {by_scope['mixed']}")
        if args.show:
            corpus = corpora.get("all") or load_corpus("web", "all", home=home)
            for qid, text in qs.queries.items():
                print(f"\n{qid}  {text}")
                for d, r in sorted(qs.qrels[qid].items(), key=lambda kv: -kv[1]):
                    print(f"  {r} {d:<13} {corpus.text(d)}")
                for d in (qs.distractors or {}).get(qid, {}):
                    print(f"  X {d:<13} {corpus.text(d)}")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
