"""GridSearchCV over CARL parameters: CARLRegressor is an ordinary scikit-learn estimator.

Searches the contrastive loss (``soft_infonce`` vs ``rank_n_contrast``) of a ``CARLRegressor`` that predicts
valence and arousal, with 2-fold cross-validation, then refits the best setting on all training texts and
scores it on held-out texts. Every candidate is a fresh fine-tuning run (``clone`` + ``fit``), so the grid is
tiny here: 2 candidates x 2 folds + 1 refit, on a subset of the shipped corpus, one epoch each. About 15 s
on two idle CPU cores::

    python examples/grid_search.py

With several cores, ``n_jobs=2`` runs folds in parallel (joblib gives each worker its share of the threads).
"""

import pandas as pd
from sklearn.model_selection import GridSearchCV, train_test_split

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo

data = load_affect_demo().sample(n=150, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    data["text"], data[["valence", "arousal"]].to_numpy(), test_size=1 / 3, random_state=0
)

search = GridSearchCV(
    CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, random_state=0),
    param_grid={"contrastive_loss": ["soft_infonce", "rank_n_contrast"]},
    cv=2,
    scoring="r2",
)
search.fit(X_train, y_train)

results = pd.DataFrame(search.cv_results_)[["param_contrastive_loss", "mean_test_score", "std_test_score",
                                            "mean_fit_time"]]
print(results.round(3).to_string(index=False))
print(f"Best parameters: {search.best_params_}")
print(f"Held-out R^2 of the refitted best model: {search.score(X_test, y_test):.3f}")
