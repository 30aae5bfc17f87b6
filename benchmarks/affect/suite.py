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
import torch

from .evaluate import evaluate_emobank, evaluate_goemotions, evaluate_transfer, pair_scores
from .methods import ABLATIONS, MAIN_METHODS, TRANSFER_METHODS, Budget, all_methods
from .tasks import emobank_corpus, goemotions_corpus, load_pairs

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
    # the transfer protocol: every trained model is also read by probes on the other corpus (fitted on this many
    # of its training rows) and on the minimal pairs; None: no transfer
    transfer_probe_rows: dict | None = None

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
    # train on one corpus' labels, read the frozen embeddings with linear probes on the other (8,000 GoEmotions
    # rows as in the full profile; EmoBank's own 1,500 training rows) and on the minimal pairs; GoEmotions dev and
    # test are sampled to 2,000 Ekman rows each, so that a run (three encodings of GoEmotions) fits on 2 cores
    "transfer": Profile(1500, 1500, 2000, 1, (0, 1, 2), TRANSFER_METHODS,
                        "1,500 training texts per corpus, 1 epoch, 3 seeds; each model also probed on the other "
                        "corpus (8,000 GoEmotions / 1,500 EmoBank probe-training rows); EmoBank dev and test in full, "
                        "2,000 Ekman rows of GoEmotions dev and test; minimal pairs in a dev and a test half",
                        learning_rates=SMALL_BUDGET_LEARNING_RATES,
                        transfer_probe_rows={"goemotions": 8000, "emobank": 1500}),
    # the transfer protocol at the estimators' own budget: all of EmoBank, their default epochs and learning rates
    "transfer-full": Profile(None, 8000, 2000, 3, (0, 1, 2), TRANSFER_METHODS,
                             "all 8,062 EmoBank / 8,000 GoEmotions training texts, 3 epochs, 3 seeds, the estimators' "
                             "default learning rates; each model also probed on the other corpus (8,000 GoEmotions / "
                             "1,500 EmoBank probe-training rows), 2,000 Ekman rows of GoEmotions dev and test, and on "
                             "the minimal pairs",
                             transfer_probe_rows={"goemotions": 8000, "emobank": 1500}),
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
    pairs_version: str | None = None  # fingerprint of the minimal pairs its ``pairs/`` scores were computed on


@dataclass
class Transfer:
    """What a transfer run is also scored on: the other corpus (its probes' training rows and splits) and the
    minimal pairs (None until the set exists)."""

    target: object
    pairs: object = None

    def key(self) -> dict:
        """What the transfer scores depend on (the pairs are not part of it: see :func:`run_one`)."""
        frames = self.target.frames
        return {"target": self.target.name, "rows": {s: len(f) for s, f in frames.items()},
                "head": frames["train"]["text"].iloc[:5].tolist()}

    def pairs_version(self) -> str | None:
        return None if self.pairs is None else fingerprint(self.pairs.to_dict("list"))


# part of every run's key: raised when evaluate.py adds a score, so that results kept on disk without it are
# computed again instead of read back short of it (2: the EmoBank neighbour probe)
SCORES_VERSION = 2


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_corpus(name, profile: Profile, data_dir, sample_seed=0, as_target=False):
    """The corpus ``name`` as the profile trains on it, or (``as_target``) as transfer probes read it."""
    if as_target:
        rows = profile.transfer_probe_rows[name]
        if name == "emobank":
            return emobank_corpus(data_dir, n_train=rows, seed=sample_seed)
        return goemotions_corpus(data_dir, n_train=rows, n_eval=profile.n_eval_goemotions, seed=sample_seed)
    if name == "emobank":
        return emobank_corpus(data_dir, n_train=profile.n_train_emobank, seed=sample_seed)
    return goemotions_corpus(data_dir, n_train=profile.n_train_goemotions, n_eval=profile.n_eval_goemotions,
                             seed=sample_seed)


def _model_and_key(corpus, method, budget: Budget, seed: int, splits, transfer=None) -> tuple[object, dict, str]:
    """The unfitted model of a run, its parameters, and the key of what it computes."""
    model = method.make(budget, TASKS[corpus.name], seed)
    params = model.params() if hasattr(model, "params") else {}
    kind = type(model).__name__ + (f"/{type(model.estimator).__name__}" if hasattr(model, "estimator") else "")
    budget = getattr(model, "budget", budget)  # a baseline may run with its own learning rate
    key = fingerprint(SCORES_VERSION, corpus.name, kind, seed, budget.as_dict(), params,
                      {s: len(f) for s, f in corpus.frames.items()}, corpus.frames["train"]["text"].iloc[:5].tolist(),
                      list(splits), *([transfer.key()] if transfer is not None else []))
    return model, params, key


def run_one(corpus, method, budget: Budget, seed: int, work_dir: Path, log=print,
            splits=("dev", "test"), transfer: Transfer | None = None, train=True) -> RunResult | None:
    """Fit ``method`` on ``corpus``'s training rows with ``seed``, score it, and keep the result on disk.

    A run is known by what it computes — the model's class and parameters, the budget, the seed, the
    data and, for a transfer run, the target corpus — not by the method's name: a result already on disk for
    the same is read back, so that renaming a method or changing a default (which turns an ablation into the
    default row) trains nothing again.

    A transfer run also keeps its fitted model and (V, A) probe (``models/<key>.pt``), so that minimal pairs
    written or changed after it ran are scored without training again: its ``pairs/`` scores are recomputed
    whenever the pairs' fingerprint differs from the one the result records.
    """
    model, params, key = _model_and_key(corpus, method, budget, seed, splits, transfer)
    path = work_dir / f"{corpus.name}-seed{seed}-{key}.json"
    kept = work_dir / "models" / f"{key}.pt"
    work_dir.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        result = RunResult(**{**json.loads(path.read_text()), "method": method.name})
        if transfer is not None and transfer.pairs is not None and result.pairs_version != transfer.pairs_version():
            if kept.is_file():
                stored = torch.load(kept, weights_only=False)
                _score_pairs(result, stored["model"], stored["va_probe"], transfer, splits)
                path.write_text(json.dumps(result.__dict__, indent=1, default=str))
            else:
                log(f"  {corpus.name}/{method.name}/seed {seed}: no kept model, minimal pairs not scored")
        return result
    if not train:  # only what is on disk was asked for
        return None
    started = time.perf_counter()
    embeddings_file = None
    probes = {}  # the fitted (V, A) probes: EmoBank's own, or the transfer probe on EmoBank
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*longer than max_length.*")
            model.fit(corpus.frames["train"])
            fitted = time.perf_counter()
            record = model.training_record() if hasattr(model, "training_record") else {}
            if corpus.name == "emobank":
                scores, test_embeddings = evaluate_emobank(model, corpus, seed, splits, fitted=probes)
                if test_embeddings is not None:
                    embeddings_file = path.with_suffix(".test.npy")
                    np.save(embeddings_file, test_embeddings)
            else:
                scores = evaluate_goemotions(model, corpus, seed, splits)
            if transfer is not None:
                scores.update(evaluate_transfer(model, transfer.target, seed, splits, fitted=probes))
    except Exception as exc:  # one failed method must not cost the others; the table shows the failure
        log(f"  {corpus.name}/{method.name}/seed {seed} FAILED: {exc!r}")
        return RunResult(corpus.name, method.name, seed, {}, time.perf_counter() - started, 0.0, params,
                         error="".join(traceback.format_exception_only(exc)).strip())
    result = RunResult(corpus.name, method.name, seed, {**scores, **record}, fitted - started,
                       time.perf_counter() - fitted, params, embeddings_file=embeddings_file and embeddings_file.name)
    if transfer is not None:
        kept.parent.mkdir(exist_ok=True)
        torch.save({"model": model, "va_probe": probes["probe"]}, kept)
        if transfer.pairs is not None:
            _score_pairs(result, model, probes["probe"], transfer, splits)
    path.write_text(json.dumps(result.__dict__, indent=1, default=str))
    return result


def _score_pairs(result: RunResult, model, va_probe_model, transfer: Transfer, splits) -> None:
    result.scores = {k: v for k, v in result.scores.items() if "/pairs/" not in k}
    result.scores.update(pair_scores(model, va_probe_model, transfer.pairs, splits))
    result.pairs_version = transfer.pairs_version()


def run_suite(profile: Profile, budget: Budget, corpora, method_names, data_dir, work_dir: Path, log=print,
              methods=None, splits=("dev", "test"), train=True):
    """All runs of the profile; returns the list of :class:`RunResult` (failures included). ``train=False``
    reads back the runs kept on disk and leaves the others out."""
    methods = methods or all_methods()
    if not isinstance(method_names, dict):
        method_names = {corpus: method_names for corpus in corpora}
    unknown = sorted({n for names in method_names.values() for n in names} - set(methods))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose among {sorted(methods)}.")
    plan = []
    transfers = {}
    if profile.transfer_probe_rows is not None:
        pairs = load_pairs()
        if pairs is None:
            log("minimal pairs not found (skcarl.datasets.load_minimal_pairs): transfer runs keep their models and "
                "score the pairs when a later invocation finds them")
        for name in corpora:
            other = next(c for c in TASKS if c != name)
            transfers[name] = Transfer(load_corpus(other, profile, data_dir, as_target=True), pairs)
    for corpus_name in corpora:
        corpus = load_corpus(corpus_name, profile, data_dir)
        transfer = transfers.get(corpus_name)
        computes = {}  # run key of the first seed -> method name
        for name in method_names[corpus_name]:
            seeds = profile.seeds if methods[name].seeded else profile.seeds[:1]
            # an ablation can compute what an earlier row computes on one corpus and not on another (a
            # default that depends on the labels): the table keeps the first
            key = _model_and_key(corpus, methods[name], budget, seeds[0], splits, transfer)[2]
            if key in computes:
                log(f"{corpus_name}: {name} computes what {computes[key]} does; left out")
                continue
            computes[key] = name
            plan += [(corpus, methods[name], seed, transfer) for seed in seeds]
    results = []
    suite_started = time.perf_counter()
    for i, (corpus, method, seed, transfer) in enumerate(plan, 1):
        started = time.perf_counter()
        result = run_one(corpus, method, budget, seed, work_dir, log, splits=splits, transfer=transfer, train=train)
        if result is None:
            log(f"[{i}/{len(plan)}] {corpus.name:10s} {method.name:26s} seed {seed}: not on disk, left out")
            continue
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
