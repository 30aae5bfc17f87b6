"""The few-shot tables (markdown, JSON) and plot: mean ± sd over draws, fit time against SetFit's."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

# (score key, column title) of each task
COLUMNS = {"ekman": [("acc", "accuracy"), ("f1", "macro-F1")],
           "va": [("r_V", "r valence"), ("r_A", "r arousal"), ("r_mean", "mean r")]}
TITLES = {"ekman": "GoEmotions, Ekman groups (single-group rows): rows per class",
          "va": "EmoBank, valence and arousal: training texts"}
REFERENCE = "setfit"  # fit times are also given as a ratio to this method's, and score gaps against it


def aggregate(results) -> dict:
    """{(task, size, method): {"scores": {key: [per draw]}, "fit": [...], "draws": [...], "errors": [...]}}."""
    table = {}
    for r in results:
        cell = table.setdefault((r.task, r.size, r.method), {"scores": {}, "fit": [], "cpu": [], "draws": [],
                                                              "errors": []})
        if r.error:
            cell["errors"].append(r.error)
            continue
        cell["draws"].append(r.draw)
        cell["fit"].append(r.fit_seconds)
        if np.isfinite(r.fit_cpu_seconds):  # runs kept before CPU time was recorded have none
            cell["cpu"].append(r.fit_cpu_seconds)
        for k, v in r.scores.items():
            cell["scores"].setdefault(k, []).append(v)
    return table


def _cell(values, fmt=".3f") -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ± {format(np.std(values, ddof=1), fmt)}"


def _gap(cell: dict, ref: dict | None, key: str) -> str:
    """The mean of the method's score minus the reference's over the draws both have (paired: the spread between draws
    is larger than most gaps), and on how many of those draws the method is ahead."""
    if ref is None:
        return "—"
    mine = dict(zip(cell["draws"], cell["scores"].get(key, [])))
    theirs = dict(zip(ref["draws"], ref["scores"].get(key, [])))
    common = sorted(set(mine) & set(theirs))
    if not common:
        return "—"
    diffs = np.array([mine[d] - theirs[d] for d in common])
    return f"{diffs.mean():+.3f} ({int((diffs > 0).sum())}/{len(common)})"


def markdown(meta: dict, results, methods: list[str]) -> str:
    table = aggregate(results)
    lines = [f"# Few-shot benchmark ({meta['split']} split)", "", "```bash", meta["command"], "```", "",
             f"{meta['machine']}; {meta['date']}; draws {meta['draws']}; {meta['note']}", "",
             "Mean ± sd over draws (a single draw: its value). Δ: the method's score minus SetFit's, averaged "
             "over the draws both were run on, and (k/n) the number of those draws on which the method is ahead. "
             "Fit time: wall-clock seconds of `fit` and CPU seconds of the process during `fit` (medians over "
             "draws; on a machine shared with other jobs the CPU time is the fair measure of cost), and the "
             "ratio of CPU times to SetFit's.", ""]
    for task in ("ekman", "va"):
        sizes = sorted({size for (t, size, _) in table if t == task})
        if not sizes:
            continue
        cols = COLUMNS[task]
        lines += [f"## {TITLES[task]}", "",
                  "| size | method | draws | " + " | ".join(f"{title} | Δ" for _, title in cols)
                  + " | fit s | fit CPU s | CPU × SetFit |",
                  "|---|---|---|" + "---|---|" * len(cols) + "---|---|---|"]
        for size in sizes:
            ref = table.get((task, size, REFERENCE))
            for method in methods:
                cell = table.get((task, size, method))
                if cell is None:
                    continue
                if not cell["draws"]:
                    lines.append(f"| {size} | {method} | 0 | failed: {cell['errors'][0][:80]} |")
                    continue
                parts = []
                for key, _ in cols:
                    parts += [_cell(cell["scores"].get(key, [])),
                              "" if method == REFERENCE else _gap(cell, ref, key)]
                fit = float(np.median(cell["fit"]))
                cpu = f"{np.median(cell['cpu']):.0f}" if cell["cpu"] else "—"
                ratio = f"{np.median(cell['cpu']) / np.median(ref['cpu']):.2f}" if cell["cpu"] and ref and ref["cpu"] \
                    else "—"
                lines.append(f"| {size} | {method} | {len(cell['draws'])} | " + " | ".join(parts)
                             + f" | {fit:.0f} | {cpu} | {ratio} |")
        lines.append("")
    lines += _paired_section(table, methods)
    return "\n".join(lines)


# the scores a goal of the protocol reads: CARL ahead of every baseline on each of them
GOAL_SCORES = {"ekman": ("acc", "f1"), "va": ("r_mean",)}


def _paired_section(table: dict, methods: list[str]) -> list[str]:
    """Every CARL row against every baseline of its task and size, paired by draw: the protocol's goals."""
    carl = [m for m in methods if m.split(" ")[0] == "carl"]
    baselines = [m for m in methods if m.split(" ")[0] != "carl"]
    if not carl or not baselines:
        return []
    lines = ["## CARL against each baseline, paired by draw", "",
             "CARL's score minus the baseline's, averaged over the draws both were run on, and (k/n) the draws on "
             "which CARL is ahead: accuracy / macro-F1 (Ekman), mean r (EmoBank).", "",
             "| task | size | CARL row | " + " | ".join(f"− {b}" for b in baselines) + " |",
             "|---|---|---|" + "---|" * len(baselines)]
    for task in ("ekman", "va"):
        for size in sorted({size for (t, size, _) in table if t == task}):
            for method in carl:
                cell = table.get((task, size, method))
                if not cell or not cell["draws"]:
                    continue
                gaps = [" / ".join(_gap(cell, table[task, size, b], key) for key in GOAL_SCORES[task])
                        if (task, size, b) in table else "—" for b in baselines]
                lines.append(f"| {task} | {size} | {method} | " + " | ".join(gaps) + " |")
    return lines + [""]


def write_json(path: Path, meta: dict, results) -> None:
    path.write_text(json.dumps({"meta": meta, "runs": [asdict(r) for r in results]}, indent=1))


def plot(results, methods: list[str], out: Path) -> Path:
    """Score against training size, one line per method: Ekman accuracy and macro-F1, EmoBank mean r."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(results)
    panels = [("ekman", "acc", "GoEmotions Ekman: accuracy", "rows per class"),
              ("ekman", "f1", "GoEmotions Ekman: macro-F1", "rows per class"),
              ("va", "r_mean", "EmoBank: mean Pearson r (V, A)", "training texts")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (task, key, title, xlabel) in zip(axes, panels):
        for method in methods:
            points = sorted((size, cell["scores"][key]) for (t, size, m), cell in table.items()
                            if t == task and m == method and cell["scores"].get(key))
            if not points:
                continue
            sizes = [p[0] for p in points]
            means = [np.mean(p[1]) for p in points]
            sds = [np.std(p[1], ddof=1) if len(p[1]) > 1 else 0.0 for p in points]
            ax.errorbar(sizes, means, yerr=sds, marker="o", capsize=3, label=method, color=f"C{methods.index(method)}")
        ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
