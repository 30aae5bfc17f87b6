"""Inference (transform, predict, predict_proba): out-of-memory batches halved and retried (skcarl._oom), and
threads that share one fitted model."""

import pickle
import threading
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fit_each, infer, make, synthetic_affect

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLEmbedder, CARLRegressor
from skcarl.network import CARLNetwork

X, VA = synthetic_affect(48, seed=0)


@pytest.fixture(scope="module")
def models(tiny_bert):
    """One fitted estimator of each kind; tests that change one work on a pickled copy."""
    return fit_each(tiny_bert, X, VA)


def copy_of(est):
    return pickle.loads(pickle.dumps(est))


def out_of_memory_above(monkeypatch, limit):
    """CARLNetwork.pooled raises CUDA's out-of-memory error for batches of more than ``limit`` texts."""
    real, sizes = CARLNetwork.pooled, []

    def pooled(self, input_ids, attention_mask):
        if input_ids.shape[0] > limit:
            sizes.append(input_ids.shape[0])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, input_ids, attention_mask)

    monkeypatch.setattr(CARLNetwork, "pooled", pooled)
    return sizes


class _SlowBackend:
    """A tokenizer backend that waits before encoding: it widens the window in which another thread can change
    the truncation settings between a call's set-up and its encoding (a data race without a lock)."""

    def __init__(self, backend):
        object.__setattr__(self, "_backend", backend)

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def __setattr__(self, name, value):
        setattr(self._backend, name, value)

    def encode_batch(self, *args, **kwargs):
        time.sleep(0.002)
        return self._backend.encode_batch(*args, **kwargs)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_regressor(tiny_bert):
    return make(CARLRegressor, tiny_bert, device="cuda").fit(X, VA)


def test_out_of_memory_in_transform_and_predict_retries_with_smaller_batches(models, monkeypatch):
    expected = {cls: (infer(est, X), est.transform(X)) for cls, est in models.items()}
    sizes = out_of_memory_above(monkeypatch, 4)
    for cls, est in models.items():
        for method, want in ((partial(infer, est), expected[cls][0]), (est.transform, expected[cls][1])):
            sizes.clear()
            with pytest.warns(UserWarning, match=r"CUDA ran out of memory on a batch of 16 texts; the texts were "
                                                 r"run in batches of at most 4 instead") as record:
                got = method(X)
            assert len(record) == 1  # reported once per call, at the caller's line, not inside skcarl
            # "inside skcarl" is the installed package's folder: a clone named skcarl holds every file under that name
            assert Path(skcarl.__file__).resolve().parent not in Path(record[0].filename).resolve().parents, \
                record[0].filename
            assert sizes == [16, 8]  # halved until it fit, then the later batches start at the size that fit
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_out_of_memory_on_a_single_text_is_raised(models, monkeypatch):
    out_of_memory_above(monkeypatch, 0)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="even for a single text"):
        models[CARLEmbedder].transform(X[:3])


def test_four_threads_transform_like_serial_calls(models):
    est = copy_of(models[CARLRegressor]).set_params(max_length=16, batch_size=8)
    assert hasattr(est.tokenizer_, "_tokenizer")
    est.tokenizer_._tokenizer = _SlowBackend(est.tokenizer_._tokenizer)
    rng = np.random.default_rng(0)
    texts = [text + " happy" * int(rng.integers(0, 40)) for text in X]  # about half are cut at 16 tokens
    calls = [[texts[i] for i in rng.permutation(len(texts))[: 8 + 5 * k]] for k in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = [(est.transform(c), est.predict(c)) for c in calls]
        barrier = threading.Barrier(4)

        def work(worker):
            barrier.wait()
            return [(est.transform(c), est.predict(c)) for c in calls[worker:] + calls[:worker]]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(4)))
    for worker, result in enumerate(results):
        for (Z, P), (Z_serial, P_serial) in zip(result, serial[worker:] + serial[:worker]):
            np.testing.assert_allclose(Z, Z_serial, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(P, P_serial, rtol=1e-5, atol=1e-6)


@cuda
def test_a_real_cuda_out_of_memory_is_retried_with_smaller_batches(tmp_path):
    """The GPU's memory is filled but for ~300 MB, then 4096 long texts are embedded in one batch."""
    from conftest import tiny_bert_folder

    path = tiny_bert_folder(tmp_path / "bert", hidden_size=256)
    est = make(CARLEmbedder, path, device="cuda", max_length=64, use_amp=False).fit(X, VA)
    texts = [" ".join(np.random.default_rng(i).choice(X[i % len(X)].split(), 60)) for i in range(4096)]
    expected = est.set_params(batch_size=64).transform(texts)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - 300 * 2**20, dtype=torch.uint8, device="cuda")
    try:
        with pytest.warns(UserWarning, match="CUDA ran out of memory on a batch of 4096 texts") as record:
            got = est.set_params(batch_size=4096).transform(texts)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert len([w for w in record if "out of memory" in str(w.message)]) == 1
    np.testing.assert_allclose(got, expected, atol=1e-4)


@cuda
def test_four_threads_predict_on_the_gpu_like_serial_calls(cuda_regressor):
    rng = np.random.default_rng(1)
    calls = [[X[i] for i in rng.permutation(len(X))[: 8 + 5 * k]] for k in range(8)]
    serial = [cuda_regressor.predict(c) for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda w: [cuda_regressor.predict(c) for c in calls[w:] + calls[:w]], range(4)))
    for worker, result in enumerate(results):
        for got, want in zip(result, serial[worker:] + serial[:worker]):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # bfloat16 autocast
