"""Make the two figures of the docs: ``docs/images/va_plane.png`` and ``docs/images/token_saliency.png``.

Trains one CARLRegressor on the shipped affect corpus (all-MiniLM-L6-v2, two epochs on the CPU: about 20 s on
two idle cores), then draws

* its predictions for the held-out sentences on the valence–arousal plane, coloured by the quadrant of
  their ratings, with the default table's anchors of a few emotions (NRC VAD Lexicon, mapped from [0, 1]
  onto the corpus' 1–9 scale);
* the valence saliency of a few held-out sentences (``explain``), words highlighted.

Run it from the repository root (needs ``pip install skcarl[plot]`` and the offline MiniLM copy)::

    HF_HUB_OFFLINE=1 python docs/make_figures.py [--epochs 2] [--out docs/images]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from scipy.stats import pearsonr  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skcarl import CARLRegressor  # noqa: E402
from skcarl.datasets import load_affect_demo  # noqa: E402
from skcarl.plot import token_saliency, va_plane  # noqa: E402

ANCHORS = ["joy", "excitement", "anger", "fear", "sadness", "boredom", "calmness", "relief"]
QUADRANT_NAMES = {"joy": "pleasant, excited", "anger": "unpleasant, excited", "sadness": "unpleasant, calm",
                  "calmness": "pleasant, calm"}


def main(out_dir="docs/images", epochs=2, random_state=0, dpi=130):
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_affect_demo(with_quadrant_emotion=True)
    train, test = train_test_split(data, test_size=0.25, random_state=random_state, stratify=data["emotion"])
    reg = CARLRegressor(va_range=(1, 9), max_epochs=epochs, batch_size=32, max_length=64,
                        random_state=random_state, device="cpu")
    reg.fit(train["text"], train[["valence", "arousal"]])
    print(f"trained in {time.perf_counter() - started:.0f} s")

    predicted = reg.predict(test["text"])
    rated = test[["valence", "arousal"]].to_numpy()
    r = [pearsonr(predicted[:, j], rated[:, j])[0] for j in range(2)]
    quadrant = test["emotion"].map(QUADRANT_NAMES).to_numpy()
    fig = va_plane(predicted, labels=quadrant, va_map=ANCHORS, va_range=(1, 9),
                   title=f"CARLRegressor on {len(test)} held-out sentences\n"
                         f"(Pearson r: valence {r[0]:.2f}, arousal {r[1]:.2f})")
    ax = fig.axes[0]
    ax.get_legend().set_title("quadrant of the ratings", prop={"size": 9})
    ax.text(0.01, -0.11, "◆ emotion anchors of skcarl's default VA table (NRC VAD Lexicon, [0, 1] mapped to 1–9)",
            transform=ax.transAxes, fontsize=7.5, color="0.35", va="top")
    fig.savefig(out_dir / "va_plane.png", dpi=dpi)

    # one sentence per quadrant, the first of each in the held-out order
    chosen = [np.flatnonzero(test["emotion"].to_numpy() == e)[0] for e in ("joy", "calmness", "sadness", "anger")]
    texts = test["text"].to_numpy()[chosen].tolist()
    table = reg.explain(texts, target=0)
    for k, i in enumerate(chosen):
        table.loc[table["text_id"] == k, "target"] = \
            f"valence: predicted {predicted[i, 0]:.1f}, rated {rated[i, 0]:.1f} (1-9)"
    fig, _ = token_saliency(table, text_id=list(range(len(texts))), width=8.5)
    fig.savefig(out_dir / "token_saliency.png", dpi=dpi)
    print(f"figures written to {out_dir} in {time.perf_counter() - started:.0f} s")
    return {"pearson_r": r, "texts": texts}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.epochs, args.seed)
