"""Tables and plots of a suite run: mean ± sd over seeds, written as markdown, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .evaluate import NEIGHBOUR_FOLDS, NEIGHBOURS
from .methods import all_methods

# (score key without the split, column title, format); "↓" marks lower-is-better columns
EMOBANK_COLUMNS = [
    ("probe/r_V", "probe r_V", ".3f"), ("probe/r_A", "probe r_A", ".3f"),
    ("probe/mae_V", "MAE_V ↓", ".3f"), ("probe/mae_A", "MAE_A ↓", ".3f"),
    ("polarity/acc", "polarity acc", ".3f"),
    ("e2e/r_V", "end-to-end r_V", ".3f"), ("e2e/r_A", "end-to-end r_A", ".3f"),
]
NEIGHBOUR_COLUMNS = [
    ("knn/r_V", "kNN r_V", ".3f"), ("knn/r_A", "kNN r_A", ".3f"),
    ("knn/mae_V", "kNN MAE_V ↓", ".3f"), ("knn/mae_A", "kNN MAE_A ↓", ".3f"),
    ("probe/r_V", "linear r_V", ".3f"), ("probe/r_A", "linear r_A", ".3f"),
]
GEOMETRY_COLUMNS = [
    ("geometry/alignment", "alignment ↓", ".3f"), ("geometry/uniformity", "uniformity ↓", ".3f"),
    ("geometry/va_gap", "VA gap", ".4f"),
]
GOEMOTIONS_COLUMNS = [
    ("ekman/acc", "Ekman acc", ".3f"), ("ekman/f1", "Ekman macro-F1", ".3f"),
    ("polarity/acc", "polarity acc", ".3f"),
    ("e2e/acc", "end-to-end acc", ".3f"), ("e2e/f1", "end-to-end macro-F1", ".3f"),
]

# the transfer protocol: a model trained on one corpus, read by probes on its own and the other corpus, and by
# the EmoBank (V, A) probe on the minimal pairs
PAIR_COLUMNS = [
    ("pairs/dir_V", "pairs dir ΔV", ".3f"), ("pairs/dir_A", "pairs dir ΔA", ".3f"), ("pairs/dir", "pairs dir", ".3f"),
    ("pairs/dist_ratio", "affect/control distance", ".2f"),
]
TRANSFER_COLUMNS = {
    "emobank": [("probe/r_V", "EmoBank r_V", ".3f"), ("probe/r_A", "EmoBank r_A", ".3f"),
                ("transfer/ekman/acc", "→ Ekman acc", ".3f"), ("transfer/ekman/f1", "→ Ekman macro-F1", ".3f"),
                ("transfer/polarity/acc", "→ GoEmotions polarity", ".3f"), *PAIR_COLUMNS],
    "goemotions": [("ekman/acc", "Ekman acc", ".3f"), ("ekman/f1", "Ekman macro-F1", ".3f"),
                   ("transfer/probe/r_V", "→ EmoBank r_V", ".3f"), ("transfer/probe/r_A", "→ EmoBank r_A", ".3f"),
                   ("transfer/polarity/acc", "→ EmoBank polarity", ".3f"), *PAIR_COLUMNS],
}
TRANSFER_TITLES = {"emobank": "Trained on EmoBank (V, A), probed on GoEmotions and the minimal pairs",
                   "goemotions": "Trained on GoEmotions' Ekman classes (through the VA labeling system), probed on "
                                 "EmoBank and the minimal pairs"}


def aggregate(results) -> dict:
    """{(corpus, method): {"scores": {key: [values over seeds]}, "fit": [...], "errors": [...]}}."""
    table = {}
    for r in results:
        cell = table.setdefault((r.corpus, r.method), {"scores": {}, "fit": [], "errors": [], "seeds": []})
        cell["seeds"].append(r.seed)
        if r.error:
            cell["errors"].append(r.error)
            continue
        cell["fit"].append(r.fit_seconds)
        for k, v in r.scores.items():
            cell["scores"].setdefault(k, []).append(v)
    return table


def _cell(values, fmt) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ± {format(np.std(values, ddof=1), fmt)}"


def markdown_table(table, corpus, split, columns, method_order, methods=None) -> str:
    methods = methods or all_methods()
    header = ["method", "seeds", *[title for _, title, _ in columns], "fit (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in method_order:
        cell = table.get((corpus, name))
        if cell is None:
            continue
        label = methods[name].label if name in methods else name
        if methods.get(name) and methods[name].group == "ablation":
            label = f"&nbsp;&nbsp;ablation: {label}"
        if cell["errors"] and not cell["fit"]:
            lines.append(f"| {label} | {len(cell['seeds'])} | failed: {cell['errors'][0][:80]} |"
                         + " |" * (len(header) - 3))
            continue
        row = [label, str(len(cell["fit"]))]
        row += [_cell(cell["scores"].get(f"{split}/{key}", []), fmt) for key, _, fmt in columns]
        row.append("—" if name in ("tfidf", "frozen") else f"{np.median(cell['fit']):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render(meta, results, method_order, splits=("dev", "test"), methods=None) -> str:
    table = aggregate(results)
    corpora = {r.corpus for r in results}
    parts = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; {meta['date']}; fits and scoring {meta['compute_minutes']:.0f} min "
             f"(summed over runs: the time from a clean work dir), this invocation {meta['minutes']:.0f} min.  ",
             f"Profile `{meta['profile']}`: {meta['profile_note']}. Budget: {meta['budget_text']}.  ",
             "Mean ± sd over seeds (sd with n − 1); *fit* is the median training time. Deterministic methods "
             "(TF-IDF, frozen encoder) run once. Probes: RidgeCV / LogisticRegressionCV fitted on the training "
             "texts' embeddings."]
    transfer = [c for c in TRANSFER_COLUMNS if any(r.corpus == c and any("/transfer/" in k for k in r.scores)
                                                   for r in results)]
    for corpus in transfer:
        for split in splits:
            parts += ["", f"### {TRANSFER_TITLES[corpus]}, {split}", "",
                      markdown_table(table, corpus, split, TRANSFER_COLUMNS[corpus], method_order, methods)]
    if transfer:
        parts += ["", "Transfer: the encoder is trained on one corpus only; linear probes fitted on the other corpus' "
                  "training rows read its frozen embeddings. *pairs dir*: share of the minimal pairs' affect edits "
                  "whose change of the EmoBank probe's (V, A) has the expected sign (ΔV, ΔA, both pooled); "
                  "*affect/control distance*: mean cosine distance of the two sentences' embeddings over affect "
                  "edits divided by that over control edits. Each pair is in the dev or the test half."]
    if "emobank" in corpora and "test" in splits:
        parts += ["", "### EmoBank, test", "",
                  markdown_table(table, "emobank", "test", EMOBANK_COLUMNS, method_order, methods),
                  "", "### EmoBank test, embedding geometry (Wang & Isola 2020)", "",
                  "Positives: test pairs within 0.1 in (V, A) on the 1–5 scale. *VA gap*: mean squared distance "
                  "of the other pairs minus that of the positives (higher: VA neighbours closer than the rest).",
                  "", markdown_table(table, "emobank", "test", GEOMETRY_COLUMNS, method_order, methods)]
        if any(r.scores.get("test/knn/r_V") is not None for r in results):
            parts += ["", "### EmoBank, test: neighbour probe (diagnostic)", "",
                      "A distance-weighted k-nearest-neighbour regressor on cosine distance, k ∈ "
                      f"{{{', '.join(map(str, NEIGHBOURS))}}} chosen by {NEIGHBOUR_FOLDS}-fold CV on the training "
                      "texts' embeddings: does a text's VA follow from its "
                      "neighbours' (what a contrastive loss over VA labels asks) rather than from a direction of "
                      "the space (what the linear probe reads)? The linear columns repeat the table above.", "",
                      markdown_table(table, "emobank", "test", NEIGHBOUR_COLUMNS, method_order, methods)]
    if "goemotions" in corpora and "test" in splits:
        parts += ["", "### GoEmotions (Ekman groups, single-group rows), test", "",
                  markdown_table(table, "goemotions", "test", GOEMOTIONS_COLUMNS, method_order, methods)]
    parts += ["", "### Dev (where choices were made)", ""]
    if "emobank" in corpora:
        # the tuning study has no test table, so its dev table shows the end-to-end columns too
        columns = EMOBANK_COLUMNS if "test" not in splits else EMOBANK_COLUMNS[:5]
        if any(r.scores.get("dev/knn/r_V") is not None for r in results):
            columns = columns + NEIGHBOUR_COLUMNS[:2]
        parts += ["EmoBank dev:", "", markdown_table(table, "emobank", "dev", columns, method_order, methods), ""]
    if "goemotions" in corpora:
        parts += ["GoEmotions dev:", "", markdown_table(table, "goemotions", "dev", GOEMOTIONS_COLUMNS[:3],
                                                        method_order, methods), ""]
    failures = [r for r in results if r.error]
    if failures:
        parts += ["", "Failed runs:", ""] + [f"- {r.corpus}/{r.method}/seed {r.seed}: {r.error}" for r in failures]
    return "\n".join(parts).rstrip() + "\n"


def write_json(path: Path, meta, results) -> None:
    path.write_text(json.dumps({"meta": meta, "runs": [r.__dict__ for r in results]}, indent=1, default=str))


def plot_projection(results, work_dir: Path, corpus, out: Path, seed=0) -> Path | None:
    """PCA of EmoBank test embeddings, frozen encoder against CARL, coloured by valence and by arousal."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    found = {r.method: work_dir / r.embeddings_file for r in results
             if r.corpus == "emobank" and r.seed == seed and r.method in ("frozen", "carl") and r.embeddings_file}
    found = {m: found[m] for m in ("frozen", "carl") if m in found and found[m].is_file()}
    if not found:
        return None
    va = corpus.frames["test"][["V", "A"]].to_numpy(float)
    fig, axes = plt.subplots(len(found), 2, figsize=(9, 4.2 * len(found)), squeeze=False)
    for row, (name, path) in enumerate(found.items()):
        xy = PCA(2, random_state=0).fit_transform(np.load(path))
        for col, (dim, cmap) in enumerate((("valence", "RdYlGn"), ("arousal", "coolwarm"))):
            ax = axes[row, col]
            points = ax.scatter(xy[:, 0], xy[:, 1], c=va[:, col], cmap=cmap, s=6, alpha=0.8)
            ax.set_title(f"{'frozen encoder' if name == 'frozen' else 'CARL'}: coloured by {dim}")
            ax.set_xticks([]), ax.set_yticks([])
            fig.colorbar(points, ax=ax, shrink=0.8)
    fig.suptitle("EmoBank test embeddings, first two principal components")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_scores(results, method_order, out: Path) -> Path | None:
    """Test scores per method with ± sd bars: EmoBank probe r_V, r_A; GoEmotions Ekman accuracy, macro-F1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(results)
    panels = [("emobank", [("test/probe/r_V", "r_V"), ("test/probe/r_A", "r_A")], "EmoBank test, linear probe"),
              ("goemotions", [("test/ekman/acc", "accuracy"), ("test/ekman/f1", "macro-F1")],
               "GoEmotions-Ekman test, linear probe")]
    if any("test/transfer/ekman/acc" in cell["scores"] for (c, _), cell in table.items() if c == "emobank"):
        panels[1] = ("emobank", [("test/transfer/ekman/acc", "accuracy"), ("test/transfer/ekman/f1", "macro-F1")],
                     "EmoBank-trained → GoEmotions-Ekman test, linear probe")
        panels.append(("emobank", [("test/pairs/dir_V", "ΔV"), ("test/pairs/dir_A", "ΔA")],
                       "EmoBank-trained, minimal pairs (test half): direction accuracy"))
    panels = [p for p in panels if any(c == p[0] for c, _ in table)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (corpus, keys, title) in zip(axes[0], panels):
        names = [m for m in method_order if (corpus, m) in table and table[(corpus, m)]["fit"]]
        y = np.arange(len(names))
        for j, (key, label) in enumerate(keys):
            vals = [table[(corpus, m)]["scores"].get(key, [np.nan]) for m in names]
            means = [np.mean(v) for v in vals]
            sds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
            ax.barh(y + (j - 0.5) * 0.38, means, 0.38, xerr=sds, label=label)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
