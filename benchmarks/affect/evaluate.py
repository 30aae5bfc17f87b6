"""Scores of one trained model: probes on its embeddings, end-to-end predictions, embedding geometry.

Every probe is fitted on the embeddings of the training texts the model itself was trained on (the same
subsample for every method), chooses its one parameter by internal cross-validation on those texts only, and
is scored on dev and test. The probes the issue asks for are linear (RidgeCV, LogisticRegressionCV). EmoBank
also gets a k-nearest-neighbour probe of (V, A), a diagnostic: a linear probe asks whether valence and arousal
are directions of the space, which is what an MSE head trains for; a contrastive loss over VA labels asks
instead that texts with near labels be near, which is what a neighbour probe reads.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KNeighborsRegressor

RIDGE_ALPHAS = np.logspace(-3, 3, 13)
LOGISTIC_CS = np.logspace(-2, 3, 6)
# the neighbour probe's k, chosen by 5-fold cross-validation on the training texts
NEIGHBOURS = (5, 10, 20, 50)
NEIGHBOUR_FOLDS = 5
# Wang & Isola (2020): alignment with α = 2, uniformity with t = 2
ALIGNMENT_ALPHA = 2
UNIFORMITY_T = 2
# positives for alignment: test pairs whose (valence, arousal) lie within this Euclidean distance on EmoBank's
# 1-5 scale: 3% of the pairs of EmoBank test (0.2 would take 15%: its ratings crowd near the centre)
POSITIVE_VA_DISTANCE = 0.1


def va_scores(pred: np.ndarray, true: np.ndarray, prefix: str) -> dict:
    """Pearson r and MAE of valence and arousal (columns 0 and 1)."""
    scores = {}
    for j, dim in enumerate("VA"):
        scores[f"{prefix}r_{dim}"] = float(pearsonr(pred[:, j], true[:, j])[0])
        scores[f"{prefix}mae_{dim}"] = float(mean_absolute_error(true[:, j], pred[:, j]))
    return scores


def class_scores(pred, true, prefix: str, f1=True) -> dict:
    scores = {f"{prefix}acc": float(accuracy_score(true, pred))}
    if f1:
        scores[f"{prefix}f1"] = float(f1_score(true, pred, average="macro"))
    return scores


def neighbour_probe(n_train: int, seed=0) -> GridSearchCV:
    """Distance-weighted k-nearest-neighbour regression on cosine distance, k chosen by 5-fold CV.

    ``n_train`` caps k at what the smallest inner training fold holds.
    """
    smallest_fold = n_train - -(-n_train // NEIGHBOUR_FOLDS)
    grid = [k for k in NEIGHBOURS if k <= smallest_fold] or [max(1, smallest_fold)]
    return GridSearchCV(KNeighborsRegressor(weights="distance", metric="cosine"), {"n_neighbors": grid},
                        cv=KFold(NEIGHBOUR_FOLDS, shuffle=True, random_state=seed))


def va_probe(train_x, train_y, evals: dict, seed=0, fitted: dict | None = None, neighbours=True,
             prefix="") -> dict:
    """RidgeCV (``probe/``) and the neighbour probe (``knn/``) from embeddings to (V, A).

    ``evals`` maps a split name to (x, y). ``fitted``, when given, receives the fitted probes by name;
    ``neighbours=False`` leaves the neighbour probe out; ``prefix`` goes before the probe's name.
    """
    probes = {"probe": RidgeCV(alphas=RIDGE_ALPHAS)}
    if neighbours:
        probes["knn"] = neighbour_probe(train_x.shape[0], seed)
    scores = {}
    for name, probe in probes.items():
        probe.fit(train_x, train_y)
        for split, (x, y) in evals.items():
            scores.update(va_scores(probe.predict(x), y, f"{split}/{prefix}{name}/"))
    if fitted is not None:
        fitted.update(probes)
    return scores


def class_probe(train_x, train_y, evals: dict, task: str, f1=True, seed=0) -> dict:
    """LogisticRegressionCV (multinomial, C chosen by 3-fold CV on the training texts)."""
    with warnings.catch_warnings():  # scikit-learn 1.8+ announces changes of defaults we do not rely on
        warnings.simplefilter("ignore", FutureWarning)
        model = LogisticRegressionCV(Cs=LOGISTIC_CS, cv=3, max_iter=2000, scoring="accuracy",
                                     random_state=seed).fit(train_x, train_y)
    scores = {}
    for split, (x, y) in evals.items():
        scores.update(class_scores(model.predict(x), y, f"{split}/{task}/", f1=f1))
    return scores


def alignment_uniformity(embeddings: np.ndarray, va: np.ndarray, max_distance=POSITIVE_VA_DISTANCE) -> dict:
    """Alignment (over pairs within ``max_distance`` in VA) and uniformity of L2-normalised embeddings.

    alignment = E_{(x, y) positive} ‖f(x) − f(y)‖², uniformity = log E_{x, y} exp(−2‖f(x) − f(y)‖²), over
    distinct pairs. Lower is better for both (Wang & Isola 2020). ``va_gap`` is the mean squared distance of
    the other pairs minus alignment: how much closer VA neighbours sit than the rest.
    """
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    sq = pdist(x, "sqeuclidean")
    positive = pdist(va, "euclidean") < max_distance
    if not positive.any():
        raise ValueError(f"no pair of texts lies within {max_distance} in VA")
    alignment = float(np.mean(sq[positive] ** (ALIGNMENT_ALPHA / 2)))
    uniformity = float(np.log(np.mean(np.exp(-UNIFORMITY_T * sq))))
    return {"test/geometry/alignment": alignment, "test/geometry/uniformity": uniformity,
            "test/geometry/va_gap": float(np.mean(sq[~positive]) - np.mean(sq[positive])),
            "test/geometry/n_positive_pairs": int(positive.sum())}


def evaluate_emobank(model, corpus, seed, splits=("dev", "test"), fitted=None) -> tuple[dict, np.ndarray | None]:
    """All EmoBank scores on ``splits`` of a model trained on ``corpus.frames['train']``; also the test
    embeddings (None when test is not scored or the features are not embeddings). ``fitted`` receives the
    fitted (V, A) probes."""
    frames = corpus.frames
    feats = {split: model.transform(frames[split]["text"].tolist()) for split in ("train", *splits)}
    va = {split: frames[split][["V", "A"]].to_numpy(float) for split in feats}
    scores = va_probe(feats["train"], va["train"], {s: (feats[s], va[s]) for s in splits}, seed=seed,
                      fitted=fitted)
    polar = {s: frames[s]["polarity"].to_numpy() >= 0 for s in feats}
    scores.update(class_probe(feats["train"][polar["train"]], frames["train"]["polarity"][polar["train"]],
                              {s: (feats[s][polar[s]], frames[s]["polarity"][polar[s]]) for s in splits},
                              "polarity", f1=False, seed=seed))
    test_embeddings = None
    if model.dense and "test" in splits:
        test_embeddings = np.asarray(feats["test"], dtype=np.float32)
        scores.update(alignment_uniformity(test_embeddings, va["test"]))
    if model.predicts:
        for split in splits:
            scores.update(va_scores(model.predict(frames[split]["text"].tolist()), va[split], f"{split}/e2e/"))
    return scores, test_embeddings


def evaluate_goemotions(model, corpus, seed, splits=("dev", "test")) -> dict:
    """All GoEmotions scores on ``splits`` of a model trained on ``corpus.frames['train']`` (Ekman labels)."""
    frames = corpus.frames
    feats = {split: model.transform(frames[split]["text"].tolist()) for split in ("train", *splits)}
    scores = {}
    ekman = {s: frames[s]["ekman"].notna().to_numpy() for s in feats}
    scores.update(class_probe(feats["train"][ekman["train"]], frames["train"]["ekman"][ekman["train"]],
                              {s: (feats[s][ekman[s]], frames[s]["ekman"][ekman[s]]) for s in splits},
                              "ekman", seed=seed))
    polar = {s: frames[s]["polarity"].notna().to_numpy() for s in feats}
    scores.update(class_probe(feats["train"][polar["train"]], frames["train"]["polarity"][polar["train"]],
                              {s: (feats[s][polar[s]], frames[s]["polarity"][polar[s]]) for s in splits},
                              "polarity", f1=False, seed=seed))
    if model.predicts:
        for split in splits:
            rows = frames[split][ekman[split]]
            scores.update(class_scores(model.predict(rows["text"].tolist()), rows["ekman"], f"{split}/e2e/"))
    return scores


def evaluate_transfer(model, target, seed, splits=("dev", "test"), fitted=None) -> dict:
    """Scores of a model trained on another corpus, read by linear probes fitted on ``target``'s training rows.

    Keys carry ``transfer/``: ``{split}/transfer/probe/r_V`` … and ``transfer/polarity/acc`` on EmoBank,
    ``transfer/ekman/acc``, ``transfer/ekman/f1`` and ``transfer/polarity/acc`` on GoEmotions. The encoder is
    not trained further: only the probes see the target's labels. ``fitted`` receives the EmoBank (V, A) probe.
    """
    frames = target.frames
    feats = {split: model.transform(frames[split]["text"].tolist()) for split in ("train", *splits)}
    if target.name == "emobank":
        va = {split: frames[split][["V", "A"]].to_numpy(float) for split in feats}
        scores = va_probe(feats["train"], va["train"], {s: (feats[s], va[s]) for s in splits}, seed=seed,
                          fitted=fitted, neighbours=False, prefix="transfer/")
        classes = {s: frames[s]["polarity"].to_numpy() >= 0 for s in feats}
    else:
        ekman = {s: frames[s]["ekman"].notna().to_numpy() for s in feats}
        scores = class_probe(feats["train"][ekman["train"]], frames["train"]["ekman"][ekman["train"]],
                             {s: (feats[s][ekman[s]], frames[s]["ekman"][ekman[s]]) for s in splits},
                             "transfer/ekman", seed=seed)
        classes = {s: frames[s]["polarity"].notna().to_numpy() for s in feats}
    scores.update(class_probe(feats["train"][classes["train"]], frames["train"]["polarity"][classes["train"]],
                              {s: (feats[s][classes[s]], frames[s]["polarity"][classes[s]]) for s in splits},
                              "transfer/polarity", f1=False, seed=seed))
    return scores


def pair_split(pair_ids) -> np.ndarray:
    """"dev" or "test" for each minimal pair: a fixed half each, by a checksum of its id (so that a pair
    keeps its half when others are added)."""
    return np.array(["dev" if zlib.crc32(str(i).encode()) % 2 == 0 else "test" for i in pair_ids])


def pair_scores(model, va_probe_model, pairs, splits=("dev", "test")) -> dict:
    """Sensitivity to emotional cues, on minimal pairs (``skcarl.datasets.load_minimal_pairs``).

    For each pair the (V, A) probe reads both sentences; its change Δ = probe(edited) − probe(original) is
    compared with the pair's expected sign (``dv``, ``da`` in {−1, 0, 1}; 0 is no expectation and is left out):

    - ``pairs/dir_V``, ``pairs/dir_A``: the share of affect pairs whose Δ has the expected sign (a zero Δ counts
      as wrong); ``pairs/dir``: the same over both dimensions' decisions pooled; ``pairs/<operator>/dir_V`` …
      per editing operator;
    - ``pairs/dist_ratio``: mean cosine distance between the two sentences' embeddings over affect pairs,
      divided by the same over control pairs (edits that should not move affect). Above 1: the embedding
      moves more for an affective edit than for a neutral one.

    Each pair belongs to one half (:func:`pair_split`), scored as ``dev/pairs/…`` or ``test/pairs/…``.
    """
    originals = np.asarray(model.transform(pairs["original"].tolist()), dtype=np.float64)
    edited = np.asarray(model.transform(pairs["edited"].tolist()), dtype=np.float64)
    delta = va_probe_model.predict(edited) - va_probe_model.predict(originals)
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12) for x in (originals, edited)]
    distance = 1.0 - (unit[0] * unit[1]).sum(1)
    half = pair_split(pairs["pair_id"])
    affect = (pairs["kind"] == "affect").to_numpy()
    expected = pairs[["dv", "da"]].to_numpy(int)
    hit = np.sign(delta) == expected
    counted = affect[:, None] & (expected != 0)
    operators = pairs["operator"].to_numpy()
    scores = {}
    for split in splits:
        rows = half == split
        prefix = f"{split}/pairs/"
        for groups, name in [(rows, ""), *[(rows & (operators == op), f"{op}/")
                                          for op in sorted(set(operators[affect]))]]:
            for j, dim in enumerate("VA"):
                chosen = groups & counted[:, j]
                if chosen.any():
                    scores[f"{prefix}{name}dir_{dim}"] = float(hit[chosen, j].mean())
                    scores[f"{prefix}{name}n_{dim}"] = int(chosen.sum())
        both = counted & rows[:, None]
        if both.any():
            scores[f"{prefix}dir"] = float(hit[both].mean())
        controls = rows & ~affect
        if controls.any() and (rows & affect).any():
            scores[f"{prefix}dist_ratio"] = float(distance[rows & affect].mean() / distance[controls].mean())
    return scores
