"""Running the protocol: every (task, size, draw, method) once, its result kept on disk under a key of what it
computes, so that an interrupted run resumes and a rerun costs nothing."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score

from .data import Task
from .methods import METHODS

# part of every run's key: raised when a run's scores or what it computes change
RESULTS_VERSION = 1


@dataclass
class Result:
    task: str
    size: int
    draw: int
    method: str  # the method's name, with the study's parameters ("carl max_epochs=10")
    split: str
    n_train: int
    n_eval: int
    scores: dict = field(default_factory=dict)
    fit_seconds: float = float("nan")
    # CPU seconds of the process during fit: on a shared machine, the cost that other jobs do not inflate
    fit_cpu_seconds: float = float("nan")
    record: dict = field(default_factory=dict)
    error: str | None = None


def method_name(base: str, params: dict) -> str:
    return " ".join([base, *(f"{k}={v}" for k, v in sorted(params.items()))])


def scores(task: str, pred, true) -> dict:
    if task == "ekman":
        return {"acc": float(accuracy_score(true, pred)), "f1": float(f1_score(true, pred, average="macro"))}
    pred = np.asarray(pred, dtype=float)
    r = {f"r_{d}": float(pearsonr(pred[:, j], true[:, j])[0]) for j, d in enumerate("VA")}
    return {**r, "r_mean": (r["r_V"] + r["r_A"]) / 2}


def run_path(task: Task, split: str, size: int, draw: int, base: str, params: dict, work_dir: Path,
             threads: int | None, train, model) -> Path:
    """Where the result of one (task, size, draw, method) is kept: a file named by a key of what it computes
    (``train``: the draw's rows, ``model``: the built method)."""
    key_parts = [RESULTS_VERSION, task.name, split, size, draw, base, sorted(params.items()), len(train),
                 train["text"].iloc[:3].tolist(), len(task.evaluation), task.evaluation["text"].iloc[:3].tolist(),
                 threads]
    if hasattr(model, "params"):
        # every parameter the fit runs with, defaults included: a changed default is a new run, not a kept one
        key_parts.append(sorted(model.params().items()))
    key = hashlib.sha256(json.dumps(key_parts, default=str).encode()).hexdigest()[:16]
    return work_dir / f"{task.name}-{size}-draw{draw}-{base}-{key}.json"


def run_one(task: Task, split: str, size: int, draw: int, base: str, params: dict, work_dir: Path,
            threads: int | None, log=print, compute: bool = True) -> Result | None:
    """Fit one method on one draw, score it on the evaluation rows, keep the result (failures are not kept).

    With ``compute=False`` only a kept result is returned; None when there is none.
    """
    train = task.draw(size, draw)
    model = METHODS[base].build(task.name, draw, params)
    path = run_path(task, split, size, draw, base, params, work_dir, threads, train, model)
    if path.is_file():
        return Result(**json.loads(path.read_text()))
    if not compute:
        return None
    name = method_name(base, params)
    result = Result(task.name, size, draw, name, split, len(train), len(task.evaluation))
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        model.fit(train["text"].tolist(), task.targets(train))
        result.fit_seconds = time.perf_counter() - started
        result.fit_cpu_seconds = time.process_time() - started_cpu
        result.scores = scores(task.name, model.predict(task.evaluation["text"].tolist()),
                               task.targets(task.evaluation))
        result.record = model.record() if hasattr(model, "record") else {}
    except Exception as exc:  # one failed run must not cost the others; the table shows the failure
        log(f"  {task.name}/{size}/draw {draw}/{name} FAILED: {exc!r}")
        result.error = "".join(traceback.format_exception_only(exc)).strip()
        return result
    work_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=1))
    return result
