"""Every warning of fit, transform, predict, predict_proba and explain points at the user's line (issue 24),
called directly, through scikit-learn's set_output wrapper, inside a Pipeline, or from cross_validate.

"The user's line" is checked by file name and line number: the line of this file that made the call. Whether
a frame is inside skcarl is decided by the installed package's folder, never by a path part named "skcarl"
(a clone of the repository into a folder named skcarl holds the venv and every test file under that name).
"""

import inspect
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_affect
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._warnings import user_stacklevel, warn
from skcarl.network import CARLNetwork

PACKAGE = Path(skcarl.__file__).resolve().parent
FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(32, seed=4)
LABELS = np.where(VA[:, 0] > 5, "joy", "sadness")
LONG = " ".join(["happy"] * 40)  # longer than max_length=16


def here() -> int:
    """The line number of the caller's next line (where the call under test stands)."""
    return inspect.currentframe().f_back.f_lineno + 1


def caught(record, match):
    found = [w for w in record if match in str(w.message)]
    assert len(found) == 1, [str(w.message) for w in record]
    return found[0]


def assert_at(warning, line):
    assert Path(warning.filename).resolve() == Path(__file__).resolve(), warning.filename
    assert warning.lineno == line, (warning.filename, warning.lineno, line)
    assert PACKAGE not in Path(warning.filename).resolve().parents


@pytest.fixture(scope="module")
def models(tiny_bert):
    return {cls: cls(tiny_bert, **FAST, max_length=16).fit(X, LABELS if cls is CARLClassifier else VA)
            for cls in (CARLEmbedder, CARLRegressor, CARLClassifier)}


INFERENCE_CASES = [(CARLEmbedder, "transform", None), (CARLEmbedder, "transform", "pandas"),
                   (CARLEmbedder, "transform", "default"), (CARLEmbedder, "explain", "pandas"),
                   (CARLRegressor, "predict", None), (CARLRegressor, "transform", None),
                   (CARLRegressor, "explain", None), (CARLClassifier, "predict", None),
                   (CARLClassifier, "predict_proba", None), (CARLClassifier, "decision_function", None),
                   (CARLClassifier, "explain", None)]


@pytest.mark.parametrize("cls, method, output", INFERENCE_CASES,
                         ids=[f"{c.__name__}.{m}-{o}" for c, m, o in INFERENCE_CASES])
def test_truncation_warnings_of_inference_point_at_the_caller(cls, method, output, models):
    est = pickle.loads(pickle.dumps(models[cls]))
    if output is not None:  # scikit-learn's set_output wraps transform in a function of its own
        est.set_output(transform=output)
    call = getattr(est, method)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = here()
        call([LONG, "short"])
    assert_at(caught(record, "texts are longer than max_length=16"), line)


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor, CARLClassifier], ids=lambda c: c.__name__)
def test_fit_warnings_point_at_the_caller(cls, tiny_bert):
    y = LABELS if cls is CARLClassifier else VA
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = here()
        cls(tiny_bert, **FAST, max_length=16).fit(X[:-1] + [LONG], y)
    assert_at(caught(record, "texts are longer than max_length=16"), line)


def test_target_warnings_point_at_the_caller(tiny_bert):
    y = VA.copy()
    y[:, 1] = 4.0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = here()
        CARLRegressor(tiny_bert, **FAST).fit(X, y)
        single = here()
        CARLEmbedder(tiny_bert, **FAST).fit(X, ["joy"] * len(X))
        column = here()
        CARLClassifier(tiny_bert, **FAST).fit(X, LABELS.reshape(-1, 1))
    assert_at(caught(record, "Label column 1 is constant"), line)
    assert_at(caught(record, "y holds a single class"), single)
    conversion = caught(record, "A column-vector y was passed")
    assert conversion.category is DataConversionWarning
    assert_at(conversion, column)


def test_warnings_inside_a_pipeline_and_cross_validate_point_at_the_caller(tiny_bert):
    pipe = make_pipeline(CARLEmbedder(tiny_bert, **FAST, max_length=16).set_output(transform="pandas"), Ridge())
    texts = X[:-1] + [LONG]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit_line = here()
        pipe.fit(texts, VA[:, 0])
        predict_line = here()
        pipe.predict([LONG])
        cv_line = here()
        cross_validate(pipe, texts, VA[:, 0], cv=2)
    lines = sorted(w.lineno for w in record if "longer than max_length" in str(w.message))
    assert fit_line in lines and predict_line in lines and cv_line in lines, lines
    assert all(Path(w.filename).resolve() == Path(__file__).resolve()
               for w in record if "longer than max_length" in str(w.message))


def test_the_out_of_memory_warning_points_at_the_caller_through_set_output(models, monkeypatch):
    real = CARLNetwork.pooled

    def pooled(self, input_ids, attention_mask):
        if input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return real(self, input_ids, attention_mask)

    monkeypatch.setattr(CARLNetwork, "pooled", pooled)
    est = pickle.loads(pickle.dumps(models[CARLEmbedder])).set_output(transform="pandas")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = here()
        est.transform(X[:8])
    assert_at(caught(record, "CUDA ran out of memory"), line)


def helper_in_user_code():
    warn("from user code")


def test_warn_attributes_to_the_first_frame_outside_the_package():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        helper_in_user_code()  # a user function calling warn directly: its own line is outside skcarl
    assert record[0].lineno == helper_in_user_code.__code__.co_firstlineno + 1
    assert user_stacklevel(folders=(str(PACKAGE),)) == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="skip_file_prefixes is Python 3.12+")
def test_python_312_uses_skip_file_prefixes(models):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = here()
        models[CARLEmbedder].transform([LONG])
    assert_at(caught(record, "longer than max_length"), line)
