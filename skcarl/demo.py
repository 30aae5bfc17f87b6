"""The main job: fine-tune a CARLEmbedder on the shipped affect corpus and compare it with the frozen encoder."""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split

from .backbone import DEFAULT_BACKBONE, load_backbone
from .datasets import load_affect_demo
from .embedder import CARLEmbedder
from .inference import embed_texts
from .network import CARLNetwork

_ALPHAS = np.logspace(-3, 3, 13)


def ridge_probe(train_embeddings, y_train, test_embeddings, y_test) -> list[float]:
    """Pearson r per label column of a RidgeCV fitted on frozen embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.demo import ridge_probe
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 5))
    >>> y = Z[:, :2] + 0.1 * rng.normal(size=(80, 2))                # the labels are linear in the embedding
    >>> [round(r, 2) for r in ridge_probe(Z[:60], y[:60], Z[60:], y[60:])]
    [0.99, 1.0]
    """
    predictions = RidgeCV(alphas=_ALPHAS).fit(train_embeddings, y_train).predict(test_embeddings)
    return [float(pearsonr(predictions[:, j], y_test[:, j])[0]) for j in range(y_test.shape[1])]


def run_demo(model_name_or_path=DEFAULT_BACKBONE, max_epochs=4, test_size=0.25, random_state=0, verbose=1,
             print_fn=print) -> dict:
    """Train CARL on the demo corpus and print frozen-vs-CARL ridge-probe correlations on a held-out part.

    Returns the table as a dict: ``{"frozen": {...}, "carl": {...}, "wall_time": seconds}``.

    Examples
    --------
    >>> from skcarl.demo import run_demo
    >>> result = run_demo(max_epochs=4, verbose=0)  # doctest: +SKIP
    >>> result["carl"]["valence_r"] > result["frozen"]["valence_r"]  # doctest: +SKIP
    True
    """
    started = time.perf_counter()
    data = load_affect_demo()
    texts, va = data["text"].tolist(), data[["valence", "arousal"]].to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(texts, va, test_size=test_size, random_state=random_state)
    print_fn(f"skcarl demo: {len(texts)} sentences rated for valence and arousal on 1-9; "
             f"{len(X_train)} to train, {len(X_test)} held out. Backbone: {model_name_or_path}")

    t0 = time.perf_counter()
    tokenizer, encoder = load_backbone(model_name_or_path)
    frozen = CARLNetwork(encoder)
    embed = dict(max_length=128, batch_size=64, device="cpu")
    frozen_r = ridge_probe(embed_texts(frozen, tokenizer, X_train, **embed)[0], y_train,
                           embed_texts(frozen, tokenizer, X_test, **embed)[0], y_test)
    frozen_time = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = CARLEmbedder(model_name_or_path, va_range=(1, 9), max_epochs=max_epochs, random_state=random_state,
                         verbose=verbose).fit(X_train, y_train)
    carl_r = ridge_probe(model.transform(X_train), y_train, model.transform(X_test), y_test)
    carl_time = time.perf_counter() - t0

    wall = time.perf_counter() - started
    rows = [("frozen encoder", frozen_r, frozen_time), (f"CARL, {model.n_iter_} epochs", carl_r, carl_time)]
    print_fn("")
    print_fn("Ridge probe on held-out sentences (Pearson r, higher is better)")
    print_fn(f"| {'embeddings':<20} | {'valence r':>9} | {'arousal r':>9} | {'time (s)':>8} |")
    print_fn(f"|{'-' * 22}|{'-' * 10}:|{'-' * 10}:|{'-' * 9}:|")
    for name, (r_v, r_a), seconds in rows:
        print_fn(f"| {name:<20} | {r_v:>9.3f} | {r_a:>9.3f} | {seconds:>8.1f} |")
    print_fn(f"Wall time: {wall:.1f} s")
    return {"frozen": {"valence_r": frozen_r[0], "arousal_r": frozen_r[1], "time": frozen_time},
            "carl": {"valence_r": carl_r[0], "arousal_r": carl_r[1], "time": carl_time,
                     "epochs": model.n_iter_},
            "wall_time": wall}
