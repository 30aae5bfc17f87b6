"""The few-shot protocol (benchmarks/fewshot): draws, scores, the run cache and the report, without MiniLM."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, quadrant_labels, synthetic_affect

from benchmarks.fewshot import methods as fewshot_methods
from benchmarks.fewshot.__main__ import parse_params
from benchmarks.fewshot.data import Task
from benchmarks.fewshot.head_refit import paired_fits
from benchmarks.fewshot.methods import va_bins
from benchmarks.fewshot.report import markdown, plot
from benchmarks.fewshot.run import Result, run_one, scores
from skcarl import CARLClassifier, CARLRegressor

CLASSES = ["anger", "joy", "sadness", "neutral"]


def ekman_task():
    rng = np.random.default_rng(0)
    pool = pd.DataFrame({"text": [f"text {i}" for i in range(200)], "ekman": [CLASSES[i % 4] for i in range(200)]})
    evaluation = pd.DataFrame({"text": [f"eval {i}" for i in range(40)],
                               "ekman": rng.choice(CLASSES, 40).tolist()})
    return Task("ekman", pool, evaluation)


def va_task():
    rng = np.random.default_rng(1)
    pool = pd.DataFrame({"text": [f"text {i}" for i in range(300)], "V": rng.uniform(1, 5, 300),
                         "A": rng.uniform(1, 5, 300)})
    evaluation = pd.DataFrame({"text": [f"eval {i}" for i in range(30)], "V": rng.uniform(1, 5, 30),
                               "A": rng.uniform(1, 5, 30)})
    return Task("va", pool, evaluation)


def test_an_ekman_draw_has_the_size_per_class_and_depends_on_the_draw_only():
    task = ekman_task()
    rows = task.draw(8, draw=0)
    assert rows["ekman"].value_counts().to_dict() == dict.fromkeys(CLASSES, 8) and task.n_train(8) == 32
    assert rows.equals(task.draw(8, draw=0))
    assert not rows.equals(task.draw(8, draw=1))


def test_a_va_draw_has_the_size():
    task = va_task()
    rows = task.draw(64, draw=3)
    assert len(rows) == 64 == rows["text"].nunique()
    assert task.targets(rows).shape == (64, 2)


def test_va_bins_cut_each_dimension_at_its_tertiles():
    y = np.column_stack([np.repeat([1.0, 2.0, 3.0], 3), np.tile([1.0, 2.0, 3.0], 3)])
    assert va_bins(y) == list(range(9))


def test_scores():
    assert scores("ekman", ["a", "b", "b"], np.array(["a", "b", "a"])) == pytest.approx({"acc": 2 / 3, "f1": 2 / 3})
    true = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]])
    s = scores("va", true * 2, true)
    assert s["r_V"] == pytest.approx(1.0) and s["r_A"] == pytest.approx(1.0) and s["r_mean"] == pytest.approx(1.0)


class Majority:
    """A stand-in method: predicts the most frequent training label."""

    fits = 0

    def __init__(self, task, draw, params):
        pass

    def fit(self, texts, y):
        Majority.fits += 1
        values, counts = np.unique(y, return_counts=True)
        self.label = values[counts.argmax()]
        return self

    def predict(self, texts):
        return np.array([self.label] * len(texts), dtype=object)


def test_a_run_is_kept_and_read_back_by_what_it_computes(tmp_path, monkeypatch):
    monkeypatch.setitem(fewshot_methods.METHODS, "majority",
                        fewshot_methods.Method("majority", "majority", Majority, ("ekman",)))
    task = ekman_task()
    first = run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None)
    assert first.error is None and first.n_train == 32 and first.n_eval == 40 and Majority.fits == 1
    assert first.fit_seconds >= 0 and first.fit_cpu_seconds >= 0
    again = run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None)
    assert again == first and Majority.fits == 1
    run_one(task, "dev", 8, 1, "majority", {}, tmp_path, threads=None)  # another draw is another run
    assert Majority.fits == 2 and len(list(tmp_path.glob("*.json"))) == 2
    assert json.loads(next(tmp_path.glob("*draw0*.json")).read_text())["scores"] == first.scores
    # reporting only what is kept trains nothing
    assert run_one(task, "dev", 8, 2, "majority", {}, tmp_path, threads=None, compute=False) is None
    assert run_one(task, "dev", 8, 1, "majority", {}, tmp_path, threads=None, compute=False).draw == 1
    assert Majority.fits == 2


class MajorityWithDefaults(Majority):
    """A stand-in whose fit reads a default that the run's own parameters do not name."""

    default = 1

    def params(self):
        return {"default": MajorityWithDefaults.default}


def test_a_changed_default_is_a_new_run_not_the_kept_one(tmp_path, monkeypatch):
    monkeypatch.setitem(fewshot_methods.METHODS, "majority",
                        fewshot_methods.Method("majority", "majority", MajorityWithDefaults, ("ekman",)))
    monkeypatch.setattr(Majority, "fits", 0)
    task = ekman_task()
    run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None)
    run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None)
    assert Majority.fits == 1
    monkeypatch.setattr(MajorityWithDefaults, "default", 2)
    assert run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None, compute=False) is None
    run_one(task, "dev", 8, 0, "majority", {}, tmp_path, threads=None)
    assert Majority.fits == 2 and len(list(tmp_path.glob("*.json"))) == 2


def test_the_carl_rows_key_holds_every_parameter_of_the_estimator():
    params = fewshot_methods.CARL("ekman", 0, {"max_epochs": 2}).params()
    assert params["max_epochs"] == 2 and params["head_refit"] is True and "verbose" not in params


def test_a_failed_run_is_reported_and_not_kept(tmp_path):
    result = run_one(ekman_task(), "dev", 8, 0, "carl", {"max_epochs": -1}, tmp_path, threads=None)
    assert "max_epochs" in result.error and not list(tmp_path.glob("*.json"))


def _result(method, size, draw, acc, cpu):
    return Result("ekman", size, draw, method, "test", 7 * size, 100, {"acc": acc, "f1": acc - 0.1},
                  fit_seconds=2 * cpu, fit_cpu_seconds=cpu)


def test_the_report_gives_gaps_and_cpu_ratios_against_setfit(tmp_path):
    results = [_result("setfit", 8, 0, 0.40, 100.0), _result("setfit", 8, 1, 0.50, 100.0),
               _result("carl", 8, 0, 0.50, 50.0), _result("carl", 8, 1, 0.52, 70.0)]
    meta = {"split": "test", "command": "python -m benchmarks.fewshot", "machine": "m", "date": "d", "draws": "0..1",
            "note": ""}
    text = markdown(meta, results, ["setfit", "carl"])
    row = next(line for line in text.splitlines() if line.startswith("| 8 | carl"))
    assert "0.510 ± 0.014" in row and "+0.060 (2/2)" in row and "| 0.60 |" in row
    # a draw SetFit was not run on does not enter the gap: it is paired over the common draws
    text = markdown(meta, results + [_result("carl", 8, 2, 0.10, 60.0)], ["setfit", "carl"])
    row = next(line for line in text.splitlines() if line.startswith("| 8 | carl"))
    assert "| 3 |" in row and "+0.060 (2/2)" in row
    assert plot(results, ["setfit", "carl"], tmp_path / "fewshot.png").is_file()


def test_the_report_pairs_each_carl_row_with_every_baseline():
    results = [_result("frozen", 8, 0, 0.30, 1.0), _result("frozen", 8, 1, 0.34, 1.0),
               _result("setfit", 8, 0, 0.40, 100.0), _result("setfit", 8, 1, 0.50, 100.0),
               _result("carl", 8, 0, 0.50, 50.0), _result("carl", 8, 1, 0.45, 70.0),
               _result("carl lr=1", 8, 0, 0.20, 50.0)]
    meta = {"split": "test", "command": "c", "machine": "m", "date": "d", "draws": "0..1", "note": ""}
    lines = markdown(meta, results, ["frozen", "setfit", "carl", "carl lr=1"]).splitlines()
    header = lines.index("## CARL against each baseline, paired by draw")
    rows = {line.split(" | ")[2]: line for line in lines[header:] if line.startswith("| ekman | 8 |")}
    # carl − frozen: +0.20, +0.11; carl − setfit: +0.10, −0.05 (accuracy; macro-F1 is accuracy − 0.1 here)
    assert "| +0.155 (2/2) / +0.155 (2/2) | +0.025 (1/2) / +0.025 (1/2) |" in rows["carl"]
    assert "| -0.100 (0/1) / -0.100 (0/1) | -0.200 (0/1) / -0.200 (0/1) |" in rows["carl lr=1"]
    assert set(rows) == {"carl", "carl lr=1"}  # baselines get no row of their own


def test_parse_params():
    assert parse_params("max_epochs=10,learning_rate=1e-4,max_epochs_name=auto") == {
        "max_epochs": 10, "learning_rate": 1e-4, "max_epochs_name": "auto"}


def test_setfit_trains_on_a_tiny_encoder_without_writing_checkpoints(tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("setfit")
    monkeypatch.setattr(fewshot_methods, "resolve_backbone", lambda name: (tiny_bert, []))
    monkeypatch.chdir(tmp_path)
    texts = ["i feel happy joy", "great love wonderful", "sad gloomy tired", "angry furious scared"] * 2
    labels = np.array(["joy", "joy", "sadness", "anger"] * 2, dtype=object)
    model = fewshot_methods.SetFit("ekman", 0, {"num_iterations": 1}).fit(texts, labels)
    assert set(model.predict(texts)) <= {"joy", "sadness", "anger"}
    va = np.array([[4.5, 3.0], [4.0, 2.0], [1.5, 1.5], [1.0, 4.5]] * 2)
    assert fewshot_methods.SetFit("va", 0, {"num_iterations": 1}).fit(texts, va).predict(texts).shape == (8, 2)
    assert not list(tmp_path.iterdir())  # nothing written where it ran


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_the_paired_head_refit_check_gives_what_a_fit_with_head_refit_gives(kind, tiny_bert):
    texts, va = synthetic_affect(40, seed=3)
    cls, y = (CARLClassifier, quadrant_labels(va)) if kind == "classifier" else (CARLRegressor, va)
    joint, refit = paired_fits(cls, texts[:32], y[:32], model_name_or_path=tiny_bert, **FAST)
    direct = cls(tiny_bert, **FAST, head_refit=True).fit(texts[:32], y[:32])
    outputs = (lambda est: est.decision_function(texts[32:])) if kind == "classifier" else \
        (lambda est: est.predict(texts[32:]))
    np.testing.assert_allclose(outputs(refit), outputs(direct), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs(joint), outputs(refit), atol=1e-4)
