"""Running the suite: every (corpus, method, seed) once, its scores kept on disk so that a run resumes."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .evaluate import evaluate_emobank, evaluate_goemotions
from .methods import ABLATIONS, MAIN_METHODS, Budget, all_methods
from .tasks import emobank_corpus, goemotions_corpus

# dev-best learning rates of the 1,500-text, 1-epoch budget (`--tune` and the baselines' study)
SMALL_BUDGET_LEARNING_RATES = {"carl": 2e-4, "plain": 2e-4, "supcon_bins": 1e-4}

# The corpora: which labels the methods train on, and how a trained model is scored.
TASKS = {"emobank": "va", "goemotions": "ekman"}


@dataclass(frozen=True)
class Profile:
    """How much of the data and how many seeds and methods a run takes."""

    n_train_emobank: int | None
    n_train_goemotions: int | None
    n_eval_goemotions: int | None  # Ekman rows of GoEmotions dev and test (None: all)
    epochs: int
    seeds: tuple
    methods: tuple
    note: str = ""
    goemotions_methods: tuple | None = None  # None: the same as ``methods``
    # encoder learning rates chosen on EmoBank dev at this profile's budget (docs/benchmarks.md, dev-set study):
    # "carl" for every CARL row, "plain" and "supcon_bins" for those baselines; None: the estimators' default
    learning_rates: dict | None = None

    def methods_for(self, corpus: str) -> tuple:
        """The method names of ``corpus``; ablations that equal the defaults are dropped by the caller."""
        return (self.goemotions_methods or self.methods) if corpus == "goemotions" else self.methods


PROFILES = {
    # quick is the first seed of cpu's main methods: from a clean clone it takes their time, about 10 minutes
    # on 2 cores, and after a cpu run it reads them back
    "quick": Profile(1500, 1500, None, 1, (0,), MAIN_METHODS,
                     "1,500 training texts per corpus, full dev and test, 1 epoch, 1 seed, main methods",
                     learning_rates=SMALL_BUDGET_LEARNING_RATES),
    "cpu": Profile(1500, 1500, None, 1, (0, 1, 2), MAIN_METHODS + tuple(ABLATIONS),
                   "1,500 training texts per corpus, full dev and test, 1 epoch, 3 seeds; all methods and ablations "
                   "on EmoBank, the main methods and λ = 0 / 0.1 on GoEmotions",
                   goemotions_methods=MAIN_METHODS + ("carl_detection", "carl_no_detection"),
                   learning_rates=SMALL_BUDGET_LEARNING_RATES),
    "full": Profile(None, 8000, None, 2, (0, 1, 2), MAIN_METHODS + tuple(ABLATIONS),
                    "all 8,062 EmoBank and 8,000 GoEmotions training texts, 2 epochs, 3 seeds, all methods"),
}


@dataclass
class RunResult:
    corpus: str
    method: str
    seed: int
    scores: dict
    fit_seconds: float
    eval_seconds: float
    params: dict = field(default_factory=dict)
    error: str | None = None
    embeddings_file: str | None = None  # EmoBank test embeddings (dense models), for the projection plot


# part of every run's key: raised when evaluate.py adds a score, so that results kept on disk without it are
# computed again instead of read back short of it (2: the EmoBank neighbour probe)
SCORES_VERSION = 2


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_corpus(name, profile: Profile, data_dir, sample_seed=0):
    if name == "emobank":
        return emobank_corpus(data_dir, n_train=profile.n_train_emobank, seed=sample_seed)
    return goemotions_corpus(data_dir, n_train=profile.n_train_goemotions, n_eval=profile.n_eval_goemotions,
                             seed=sample_seed)


def _model_and_key(corpus, method, budget: Budget, seed: int, splits) -> tuple[object, dict, str]:
    """The unfitted model of a run, its parameters, and the key of what it computes."""
    model = method.make(budget, TASKS[corpus.name], seed)
    params = model.params() if hasattr(model, "params") else {}
    kind = type(model).__name__ + (f"/{type(model.estimator).__name__}" if hasattr(model, "estimator") else "")
    budget = getattr(model, "budget", budget)  # a baseline may run with its own learning rate
    key = fingerprint(SCORES_VERSION, corpus.name, kind, seed, budget.as_dict(), params,
                      {s: len(f) for s, f in corpus.frames.items()}, corpus.frames["train"]["text"].iloc[:5].tolist(),
                      list(splits))
    return model, params, key


def run_one(corpus, method, budget: Budget, seed: int, work_dir: Path, log=print,
            splits=("dev", "test")) -> RunResult:
    """Fit ``method`` on ``corpus``'s training rows with ``seed``, score it, and keep the result on disk.

    A run is known by what it computes — the model's class and parameters, the budget, the seed and the
    data — not by the method's name: a result already on disk for the same is read back, so that renaming
    a method or changing a default (which turns an ablation into the default row) trains nothing again.
    """
    model, params, key = _model_and_key(corpus, method, budget, seed, splits)
    path = work_dir / f"{corpus.name}-seed{seed}-{key}.json"
    work_dir.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        return RunResult(**{**json.loads(path.read_text()), "method": method.name})
    started = time.perf_counter()
    embeddings_file = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*longer than max_length.*")
            model.fit(corpus.frames["train"])
            fitted = time.perf_counter()
            record = model.training_record() if hasattr(model, "training_record") else {}
            if corpus.name == "emobank":
                scores, test_embeddings = evaluate_emobank(model, corpus, seed, splits)
                if test_embeddings is not None:
                    embeddings_file = path.with_suffix(".test.npy")
                    np.save(embeddings_file, test_embeddings)
            else:
                scores = evaluate_goemotions(model, corpus, seed, splits)
    except Exception as exc:  # one failed method must not cost the others; the table shows the failure
        log(f"  {corpus.name}/{method.name}/seed {seed} FAILED: {exc!r}")
        return RunResult(corpus.name, method.name, seed, {}, time.perf_counter() - started, 0.0, params,
                         error="".join(traceback.format_exception_only(exc)).strip())
    result = RunResult(corpus.name, method.name, seed, {**scores, **record}, fitted - started,
                       time.perf_counter() - fitted, params, embeddings_file=embeddings_file and embeddings_file.name)
    path.write_text(json.dumps(result.__dict__, indent=1, default=str))
    return result


def run_suite(profile: Profile, budget: Budget, corpora, method_names, data_dir, work_dir: Path, log=print,
              methods=None, splits=("dev", "test")):
    """All runs of the profile; returns the list of :class:`RunResult` (failures included)."""
    methods = methods or all_methods()
    if not isinstance(method_names, dict):
        method_names = {corpus: method_names for corpus in corpora}
    unknown = sorted({n for names in method_names.values() for n in names} - set(methods))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose among {sorted(methods)}.")
    plan = []
    for corpus_name in corpora:
        corpus = load_corpus(corpus_name, profile, data_dir)
        computes = {}  # run key of the first seed -> method name
        for name in method_names[corpus_name]:
            seeds = profile.seeds if methods[name].seeded else profile.seeds[:1]
            # an ablation can compute what an earlier row computes on one corpus and not on another (a
            # default that depends on the labels): the table keeps the first
            key = _model_and_key(corpus, methods[name], budget, seeds[0], splits)[2]
            if key in computes:
                log(f"{corpus_name}: {name} computes what {computes[key]} does; left out")
                continue
            computes[key] = name
            plan += [(corpus, methods[name], seed) for seed in seeds]
    results = []
    suite_started = time.perf_counter()
    for i, (corpus, method, seed) in enumerate(plan, 1):
        started = time.perf_counter()
        result = run_one(corpus, method, budget, seed, work_dir, log, splits=splits)
        results.append(result)
        elapsed = time.perf_counter() - suite_started
        log(f"[{i}/{len(plan)}] {corpus.name:10s} {method.name:26s} seed {seed}: "
            f"{_headline(result)}  ({time.perf_counter() - started:.0f} s; {elapsed / 60:.1f} min so far)")
    return results


def _headline(result: RunResult) -> str:
    s = result.scores
    if result.error:
        return "failed"
    split = "test" if any(k.startswith("test/") for k in s) else "dev"
    if result.corpus == "emobank":
        return f"{split} probe r_V {s[f'{split}/probe/r_V']:.3f} r_A {s[f'{split}/probe/r_A']:.3f}"
    return f"{split} probe acc {s[f'{split}/ekman/acc']:.3f} F1 {s[f'{split}/ekman/f1']:.3f}"
