"""The CUDA path: mixed precision (bfloat16, float16 with a gradient scaler), both saliency refresh modes,
and a model trained on the GPU that is pickled or saved and then used where there is no GPU.

Skipped on machines without CUDA (CI); run on a GPU with ``python -m pytest tests/test_cuda.py``.
"""

import pickle

import numpy as np
import pytest
import torch

from skcarl import CARLClassifier, CARLRegressor, load

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PARAMS = dict(batch_size=16, max_epochs=3, queue_size=32, random_state=0, learning_rate=1e-3, device="cuda")


@pytest.mark.parametrize("use_amp", [False, "bfloat16", "float16"])
@pytest.mark.parametrize("refresh", ["step", "cached"])
def test_fit_on_cuda_with_mixed_precision(tiny_bert, affect_data, use_amp, refresh):
    X, y = affect_data
    model = CARLRegressor(tiny_bert, use_amp=use_amp, detection_weight=0.1, saliency_refresh=refresh,
                          **PARAMS).fit(X, y)
    assert model.device_.type == "cuda"
    assert next(model.network_.parameters()).device.type == "cuda"
    assert np.isfinite(model.loss_curve_).all()
    assert model.history_[-1]["detection_loss"] > 0
    prediction = model.predict(X)
    assert prediction.dtype == np.float64 and np.isfinite(prediction).all()
    # the model learns the synthetic task on the GPU as it does on the CPU
    assert model.score(X, y) > 0.3


def test_float16_uses_a_gradient_scaler(tiny_bert, affect_data, monkeypatch):
    from skcarl import training
    scalers = []
    original = training.MixedPrecision.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        scalers.append(self.scaler)

    monkeypatch.setattr(training.MixedPrecision, "__init__", spy)
    X, y = affect_data
    CARLRegressor(tiny_bert, use_amp="float16", **PARAMS).fit(X, y)
    assert scalers and isinstance(scalers[0], torch.amp.GradScaler)


def test_cuda_and_cpu_agree_in_float32(tiny_bert, affect_data):
    X, y = affect_data
    params = {**PARAMS, "max_epochs": 1}
    gpu = CARLRegressor(tiny_bert, use_amp=False, **params).fit(X, y)
    cpu = CARLRegressor(tiny_bert, use_amp=False, **{**params, "device": "cpu"}).fit(X, y)
    # different kernels and random streams: the same training recipe, not the same numbers
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.3


def test_gpu_model_pickled_then_loaded_without_cuda(tiny_bert, affect_data, monkeypatch):
    X, y = affect_data
    model = CARLClassifier(tiny_bert, use_amp=False, **PARAMS).fit(X, np.where(y[:, 0] > 5, "joy", "sadness"))
    expected = model.predict_proba(X)
    blob = pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="trained on CUDA"):
        restored = pickle.loads(blob)
    assert restored.device_.type == "cpu"
    assert next(restored.network_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X), expected, atol=1e-4)


def test_gpu_model_saved_then_loaded_on_cpu(tiny_bert, affect_data, tmp_path):
    X, y = affect_data
    model = CARLRegressor(tiny_bert, use_amp=False, **PARAMS).fit(X, y)
    model.save(tmp_path / "model")
    restored = load(tmp_path / "model", device="cpu")
    assert restored.device_.type == "cpu"
    np.testing.assert_allclose(restored.predict(X), model.predict(X), atol=1e-4)


def test_mixed_precision_inference_is_close_to_float32(tiny_bert, affect_data):
    X, y = affect_data
    model = CARLRegressor(tiny_bert, use_amp="bfloat16", **PARAMS).fit(X, y)
    amp = model.predict(X)
    model.set_params(use_amp=False)
    exact = model.predict(X)
    assert np.abs(amp - exact).max() < 0.1 * np.ptp(exact)
