"""Searches and inference on a Dask cluster: joblib's dask backend and skcarl.distributed.dask_map, on a
LocalCluster of 2 single-threaded worker processes."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor

WHY = "dask.distributed is not installed (pip install 'skcarl[distributed]')"


def test_skcarl_does_not_import_dask():
    code = ("import sys, skcarl, skcarl.distributed, skcarl.training; "
            "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith(('dask.', 'distributed'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dask_map_without_dask_says_what_to_install(monkeypatch, tiny_bert, affect_data):
    from skcarl.distributed import dask_map

    est = CARLEmbedder(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(*affect_data)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"pip install 'skcarl\[distributed\]'"):
        dask_map(est, ["a text"])


def test_dask_map_refuses_an_unfitted_estimator_and_a_plain_list(tiny_bert, affect_data):
    pytest.importorskip("dask.dataframe", reason=WHY)
    from sklearn.exceptions import NotFittedError

    from skcarl.distributed import dask_map

    with pytest.raises(NotFittedError):
        dask_map(CARLEmbedder(tiny_bert), ["a text"])
    est = CARLEmbedder(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(*affect_data)
    with pytest.raises(TypeError, match=r"dask.dataframe.Series of str, e.g. ddf\['text'\]"):
        dask_map(est, ["a text"])
    with pytest.raises(ValueError, match="method='predict' is not available for CARLEmbedder"):
        dask_map(est, ["a text"], method="predict")


def test_dask_map_on_the_local_scheduler_equals_transform(tiny_bert, affect_data):
    dd = pytest.importorskip("dask.dataframe", reason=WHY)
    from skcarl.distributed import dask_map

    texts, va = affect_data
    est = CARLEmbedder(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(texts, va)
    ids = np.arange(100, 100 + len(texts))
    frame = pd.DataFrame({"text": texts, "id": ids}, index=ids)
    ddf = dd.from_pandas(frame, npartitions=3)
    ddf = ddf[ddf["id"] % 7 != 0]  # some rows filtered out
    result = dask_map(est, ddf["text"]).compute(scheduler="sync")
    kept = frame[frame["id"] % 7 != 0]
    assert list(result.index) == list(kept.index)
    assert list(result.columns) == [f"emb_{i}" for i in range(32)] and (result.dtypes == np.float32).all()
    np.testing.assert_allclose(result.to_numpy(), est.transform(kept["text"].tolist()), atol=1e-6)
    empty = dask_map(est, ddf[ddf["id"] < 0]["text"]).compute(scheduler="sync")  # empty partitions only
    assert empty.shape == (0, 32)
    moved = dask_map(est, ddf["text"], device="auto").compute(scheduler="sync")  # the CPU here
    np.testing.assert_allclose(moved.to_numpy(), result.to_numpy(), atol=1e-6)


# ============================================================================================ on a cluster
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed", reason=WHY)
    pytest.importorskip("dask.dataframe", reason=WHY)
    # processes, one thread each: what a cluster of single-GPU (or few-core) workers looks like
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.slow
def test_grid_search_and_cross_validate_run_on_the_dask_workers(client, tiny_bert, affect_data):
    import joblib
    from dask.distributed import get_task_stream
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold, cross_validate
    from sklearn.pipeline import make_pipeline

    texts, va = affect_data
    pipe = make_pipeline(CARLEmbedder(tiny_bert, max_epochs=1, batch_size=16, device="cpu", random_state=0),
                         Ridge())
    grid = {"carlembedder__projection_dim": [8, 16]}
    cv = KFold(2, shuffle=True, random_state=0)
    here = GridSearchCV(pipe, grid, cv=cv).fit(texts, va[:, 0])
    with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        there = GridSearchCV(pipe, grid, cv=cv, n_jobs=-1).fit(texts, va[:, 0])
        scores = cross_validate(pipe, texts, va, cv=cv, n_jobs=-1)
    assert len({t["worker"] for t in tasks.data}) >= 1  # the fits ran on the cluster's workers
    np.testing.assert_allclose(there.cv_results_["mean_test_score"], here.cv_results_["mean_test_score"],
                               atol=1e-4)
    assert there.best_params_ == here.best_params_
    assert len(scores["test_score"]) == 2 and np.isfinite(scores["test_score"]).all()


@pytest.mark.slow
def test_dask_map_on_a_cluster_equals_in_process_inference(client, tiny_bert, affect_data):
    import dask.dataframe as dd

    from skcarl.distributed import dask_map

    texts, va = affect_data
    labels = np.array(["joy", "anger", "sadness", "calmness"])[np.arange(len(texts)) % 4]
    emb = CARLEmbedder(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(texts, va)
    reg = CARLRegressor(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(texts, va)
    clf = CARLClassifier(tiny_bert, max_epochs=1, device="cpu", random_state=0).fit(texts, labels)
    ddf = dd.from_pandas(pd.DataFrame({"text": texts, "id": np.arange(len(texts))}), npartitions=4)

    embeddings = dask_map(emb, ddf["text"])
    # the estimator was scattered to both workers before any partition ran, once each
    held = {str(key): workers for key, workers in client.who_has().items()}
    assert [len(workers) for key, workers in held.items() if key.startswith("CARLEmbedder")] == [2], held
    np.testing.assert_allclose(embeddings.compute().to_numpy(), emb.transform(texts), atol=1e-6)

    predictions = dask_map(reg, ddf["text"], method="predict", columns=["valence", "arousal"]).compute()
    assert list(predictions.columns) == ["valence", "arousal"]
    np.testing.assert_allclose(predictions.to_numpy(), reg.predict(texts), atol=1e-4)

    proba = dask_map(clf, ddf["text"], method="predict_proba").compute()
    assert list(proba.columns) == [f"proba_{c}" for c in clf.classes_]
    np.testing.assert_allclose(proba.to_numpy(), clf.predict_proba(texts), atol=1e-5)
    labels_out = dask_map(clf, ddf["text"], method="predict").compute()
    assert labels_out.name == "predict" and labels_out.tolist() == clf.predict(texts).tolist()
    # joined back onto the data frame by index
    joined = ddf.join(labels_out.to_frame()).compute()
    assert joined["predict"].tolist() == clf.predict(texts).tolist()
