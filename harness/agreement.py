"""Do the query sets agree on which system is better? For each pair of sets, Kendall's tau-b between the orders in
which they rank the systems (by one metric's mean). A set whose taus against the others are low ranks systems unlike
them: a sign that it measures something else (a style of query the others lack) or that it is too small to tell.
"""

from itertools import combinations


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Tau-b over the systems both dicts score (ties counted as neither concordant nor discordant, and corrected
    for); None when fewer than 3 systems are shared or one side ranks them all equal."""
    names = sorted(set(a) & set(b))
    if len(names) < 3:
        return None
    conc = disc = ties_a = ties_b = 0
    for x, y in combinations(names, 2):
        da, db = a[x] - a[y], b[x] - b[y]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            conc += 1
        else:
            disc += 1
    denom = ((conc + disc + ties_a) * (conc + disc + ties_b)) ** 0.5
    return None if denom == 0 else (conc - disc) / denom


def table(results: dict, metric: str = "ndcg@10", systems=None) -> dict[str, dict[str, float | None]]:
    """{set: {other set: tau}} over `results[set][system][metric]` (a report's results), every pair of sets."""
    means = {s: {r: m[metric] for r, m in by_r.items() if metric in m and (systems is None or r in systems)}
             for s, by_r in results.items()}
    return {s: {t: (1.0 if s == t else kendall_tau(means[s], means[t])) for t in means} for s in means}


def to_markdown(tau: dict, systems: list[str], metric: str = "ndcg@10") -> str:
    sets = list(tau)
    lines = [f"Kendall's tau-b between the orders in which two sets rank the same {len(systems)} systems by "
             f"{metric} ({', '.join(systems)}); 1 = the same order, -1 = reversed.", "",
             "| set | " + " | ".join(sets) + " | mean vs others |", "|" + "---|" * (len(sets) + 2)]
    for s in sets:
        others = [v for t, v in tau[s].items() if t != s and v is not None]
        cells = ["" if v is None else f"{v:.2f}" for v in tau[s].values()]
        mean = f"{sum(others) / len(others):.2f}" if others else ""
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines) + "\n"
