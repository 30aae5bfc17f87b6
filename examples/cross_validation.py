"""Cross-validation of CARLRegressor with scikit-learn's cross_validate and several metrics.

``cross_validate`` clones the estimator for each fold, fine-tunes it on the training part and scores it on the
rest; any scikit-learn scorer works because ``CARLRegressor`` follows the estimator API (here R^2, the mean
absolute error on the 1-9 rating scale, and Pearson's r of valence through ``make_scorer``). Three folds of a
subset of the shipped corpus, one epoch each: about 10 s on two idle CPU
cores::

    python examples/cross_validation.py
"""

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import make_scorer
from sklearn.model_selection import KFold, cross_validate

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo

data = load_affect_demo().sample(n=120, random_state=0)
X, y = data["text"], data[["valence", "arousal"]].to_numpy()


def valence_pearson(y_true, y_pred):
    return pearsonr(y_true[:, 0], y_pred[:, 0])[0]


scores = cross_validate(
    CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, random_state=0),
    X, y,
    cv=KFold(n_splits=3, shuffle=True, random_state=0),
    scoring={"r2": "r2", "mae": "neg_mean_absolute_error", "pearson_valence": make_scorer(valence_pearson)},
)
for fold, (r2, mae, r) in enumerate(zip(scores["test_r2"], -scores["test_mae"], scores["test_pearson_valence"])):
    print(f"fold {fold}: R^2 {r2:6.3f}   MAE {mae:.3f}   Pearson r (valence) {r:.3f}")
print(f"Cross-validated R^2: {np.mean(scores['test_r2']):.3f} +/- {np.std(scores['test_r2']):.3f}")
