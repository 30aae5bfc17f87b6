"""The study's decision rule, applied to a suite table: is a candidate ahead of the reference by 2 seed-sds?

    python -m benchmarks.affect.compare docs/benchmarks/affect-study.json --reference carl \\
        --candidates carl_perturbed_view,carl_adversarial_consistency --baseline plain

A candidate *wins* when its mean is ahead of the reference's by at least 2 pooled seed-sds
(√((sd₁² + sd₂²)/2)) on a transfer or sensitivity score, and neither in-domain score is below the reference's by
more than 1 pooled seed-sd (``docs/study_log.md``). Scores are read on ``--split`` (dev: the study chooses there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

IN_DOMAIN = {"probe/r_V": "EmoBank r_V", "probe/r_A": "EmoBank r_A"}
GAINS = {"transfer/ekman/acc": "→ Ekman acc", "transfer/ekman/f1": "→ Ekman macro-F1", "pairs/dir": "pairs dir"}


def seed_values(runs, corpus, method, key) -> list[float]:
    return [r["scores"][key] for r in runs if r["corpus"] == corpus and r["method"] == method and not r["error"]
            and key in r["scores"]]


def margin(candidate: list[float], reference: list[float]) -> tuple[float, float]:
    """(difference of means, pooled seed-sd) of two rows."""
    sd = np.sqrt((np.var(candidate, ddof=1) + np.var(reference, ddof=1)) / 2)
    return float(np.mean(candidate) - np.mean(reference)), float(sd)


def verdict(runs, corpus, candidate, reference, split="dev") -> tuple[bool, dict]:
    """Whether ``candidate`` wins over ``reference`` by the rule, and each score's (difference, pooled sd)."""
    detail = {}
    for key in (*IN_DOMAIN, *GAINS):
        a, b = (seed_values(runs, corpus, m, f"{split}/{key}") for m in (candidate, reference))
        if len(a) >= 2 and len(b) >= 2:
            detail[key] = margin(a, b)
    keeps = all(key in detail and detail[key][0] >= -detail[key][1] for key in IN_DOMAIN)
    gains = any(key in detail and detail[key][0] > 0 and detail[key][0] >= 2 * detail[key][1] for key in GAINS)
    return keeps and gains, detail


def render(runs, corpus, reference, candidates, baseline=None, split="dev") -> str:
    rows = [m for m in (baseline, reference, *candidates) if m]
    keys = {**IN_DOMAIN, **GAINS}
    lines = ["| method | seeds | " + " | ".join(keys.values()) + " | verdict |", "|---" * (len(keys) + 3) + "|"]
    for method in rows:
        cells = []
        for key in keys:
            values = seed_values(runs, corpus, method, f"{split}/{key}")
            cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1
                         else (f"{values[0]:.3f}" if values else "—"))
        n = len(seed_values(runs, corpus, method, f"{split}/probe/r_V"))
        text = ""
        if method in candidates:
            wins, detail = verdict(runs, corpus, method, reference, split)
            text = ("**wins**" if wins else "no") + ": " + ", ".join(
                f"{keys[k]} {d:+.3f} ({d / s:+.1f} sd)" if s > 0 else f"{keys[k]} {d:+.3f}"
                for k, (d, s) in detail.items())
            if not detail:
                text = "not decidable: fewer than 2 seeds in a row"
        lines.append(f"| {method} | {n} | " + " | ".join(cells) + f" | {text} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.affect.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", help="a suite table's .json (docs/benchmarks/affect-<tag>.json)")
    p.add_argument("--corpus", default="emobank")
    p.add_argument("--reference", default="carl")
    p.add_argument("--candidates", required=True, help="comma-separated method names")
    p.add_argument("--baseline", default="plain")
    p.add_argument("--split", default="dev")
    args = p.parse_args(argv)
    runs = json.loads(Path(args.table).read_text())["runs"]
    print(render(runs, args.corpus, args.reference, args.candidates.split(","), args.baseline, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
