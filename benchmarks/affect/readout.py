"""Linear against neighbourhood read-out of the same EmoBank test embeddings: why the probe ranks CARL where it does.

The suite's probe is linear (``RidgeCV``): it asks whether valence and arousal are linear functions of the
embedding, which is what an MSE head trains for. CARL's loss asks for something else: that texts with near VA
labels be nearer than the others. This diagnostic reads the *same* stored test embeddings of a committed table
both ways, by 10-fold cross-validation within EmoBank test (1,000 texts, the folds shared by both):

- *linear*: ``RidgeCV`` (the suite's α grid, leave-one-out within each training fold);
- *neighbours*: the suite's neighbour probe (``evaluate.neighbour_probe``), a distance-weighted k-nearest-neighbour
  regressor on cosine distance, k chosen from (5, 10, 20, 50) by a 5-fold search within each training fold.

Both choose their one parameter inside the training folds, so neither sees the texts it is scored on. The
training texts' embeddings are not stored by the suite, so this is a within-test cross-validation, not the
suite's train → test protocol: compare its rows with each other, not with the suite's tables. Tables written
since the suite gained its own neighbour probe (``knn/`` scores) hold the train → test version as well.

    python -m benchmarks.affect.readout full-emobank-1epoch full-emobank-2epochs full-emobank-3epochs

reads ``docs/benchmarks/affect-<tag>.json`` and the embeddings its runs left in ``benchmarks/.runs/`` (run the
command at the top of each table first, on a clean clone) and writes ``docs/benchmarks/readout.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

from .evaluate import RIDGE_ALPHAS, neighbour_probe, va_scores
from .methods import all_methods
from .report import _cell
from .suite import PROFILES, load_corpus

REPO = Path(__file__).resolve().parents[2]
FOLDS = 10


def readouts(n_texts: int, seed: int = 0) -> dict:
    """The two read-outs, each choosing its own parameter within the training folds of ``n_texts`` texts."""
    smallest_training_fold = n_texts - -(-n_texts // FOLDS)
    return {"linear": RidgeCV(alphas=RIDGE_ALPHAS), "neighbours": neighbour_probe(smallest_training_fold, seed)}


def score_embeddings(embeddings: np.ndarray, va: np.ndarray, seed: int = 0) -> dict:
    """Cross-validated Pearson r and MAE of valence and arousal per read-out: {"linear/r_V": ..., ...}."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    folds = KFold(FOLDS, shuffle=True, random_state=seed)
    scores = {}
    for name, model in readouts(len(x), seed).items():
        scores.update(va_scores(cross_val_predict(model, x, va, cv=folds), va, f"{name}/"))
    return scores


def table_rows(tag: str, out: Path, work_dir: Path, va: np.ndarray) -> list[tuple[str, dict]]:
    path = out / f"affect-{tag}.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: name a table the suite wrote (affect-<tag>.json in {out}).")
    record = json.loads(path.read_text())
    per_method: dict[str, list[dict]] = {}
    for run in record["runs"]:
        if run["corpus"] != "emobank" or run["error"] or not run.get("embeddings_file"):
            continue
        file = work_dir / run["embeddings_file"]
        if not file.is_file():
            raise SystemExit(f"{file} is missing: run the table's command first: {record['meta']['command']}")
        per_method.setdefault(run["method"], []).append(score_embeddings(np.load(file), va))
    return list(per_method.items())


def render(command: str, sections: list[tuple[str, list]]) -> str:
    names = {name: m.label for name, m in all_methods().items()}
    lines = [f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}. EmoBank test (1,000 texts), "
             f"{FOLDS}-fold cross-validation within test, the same folds for both read-outs; mean ± sd over the "
             "table's seeds.", ""]
    for tag, rows in sections:
        lines += [f"### `{tag}`", "",
                  "| method | seeds | linear r_V | neighbours r_V | linear r_A | neighbours r_A |",
                  "|---|---|---|---|---|---|"]
        for method, runs in rows:
            cols = [_cell([r[key] for r in runs], ".3f") for key in
                    ("linear/r_V", "neighbours/r_V", "linear/r_A", "neighbours/r_A")]
            lines.append(f"| {names.get(method, method)} | {len(runs)} | " + " | ".join(cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.affect.readout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tags", nargs="+", help="tables of the suite, e.g. full-emobank-2epochs")
    p.add_argument("--data-dir", default=None, help="folder with emobank/ (default: ../shared/data)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="where the tables are and this goes")
    p.add_argument("--work-dir", default=str(REPO / "benchmarks" / ".runs"))
    args = p.parse_args(argv)
    out, work_dir = Path(args.out), Path(args.work_dir)
    va = load_corpus("emobank", PROFILES["full"], args.data_dir).frames["test"][["V", "A"]].to_numpy(float)
    sections = [(tag, table_rows(tag, out, work_dir, va)) for tag in args.tags]
    text = render("python -m benchmarks.affect.readout " + shlex.join(argv), sections)
    (out / "readout.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
