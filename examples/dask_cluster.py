"""A grid search and batch inference on a Dask cluster (needs ``pip install "skcarl[distributed]"``).

The search's fits run on the cluster's workers through joblib's ``dask`` backend (the refit of the best
setting runs here); the best model then predicts valence and arousal over a ``dask.dataframe`` text column,
shipped once to each worker by ``skcarl.distributed.dask_map``. Without an address the script starts a
``LocalCluster`` of 2 single-threaded worker processes. A subset of the shipped corpus, one epoch per fit:
about 70 s on two idle CPU cores (each worker loads the backbone for every fit it runs)::

    python examples/dask_cluster.py                                 # a local cluster of 2 workers
    python examples/dask_cluster.py tcp://scheduler.example.org:8786   # an existing cluster

On GPU machines start one single-threaded worker per GPU, e.g.
``CUDA_VISIBLE_DEVICES=0 dask worker tcp://scheduler:8786 --nthreads 1``; see the "Scaling out" guide.
"""

import contextlib
import sys

import dask.dataframe as dd
import joblib
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, train_test_split

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo
from skcarl.distributed import dask_map


def cluster():
    if len(sys.argv) > 1:
        return contextlib.nullcontext(sys.argv[1])  # Client(address) connects to it
    return LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)


if __name__ == "__main__":  # LocalCluster starts worker processes, which import this file
    data = load_affect_demo().sample(n=120, random_state=0)
    train, test = train_test_split(data, test_size=1 / 3, random_state=0)
    y_train = train[["valence", "arousal"]].to_numpy()

    with cluster() as where, Client(where) as client:
        print(f"Workers: {len(client.scheduler_info()['workers'])}")
        search = GridSearchCV(
            CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, random_state=0),
            param_grid={"contrastive_loss": ["soft_infonce", "rank_n_contrast"]},
            cv=2, scoring="r2", n_jobs=-1,
        )
        with joblib.parallel_config(backend="dask"):
            search.fit(train["text"], y_train)
        print(f"Best parameters: {search.best_params_}")

        texts = dd.from_pandas(test[["text"]], npartitions=4)
        predictions = dask_map(search.best_estimator_, texts["text"], method="predict",
                               columns=["valence", "arousal"]).compute()
        print(predictions.head(3).round(2).to_string())
        in_process = search.best_estimator_.predict(test["text"])
        same = np.allclose(predictions.loc[test.index].to_numpy(), in_process, atol=1e-4)  # Dask sorts the index
        print(f"Same predictions as in-process: {same}")
