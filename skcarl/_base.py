"""What the CARL estimators share: their parameters and constraints, the fit driver as named steps, inference.

Persistence (``save``, ``export``, pickling) is :class:`~skcarl._persistence.PersistenceMixin`, ``explain`` is
:class:`~skcarl._explanation.ExplainMixin`, and what ``fit`` learns from y is built by each estimator's
``_prepare_targets`` from :mod:`skcarl._fit_targets`.
"""

from __future__ import annotations

import inspect
import math
import time
import zlib
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _ddp
from ._docs import CARL_ATTRIBUTES, CARL_PARAMETERS
from ._explanation import ExplainMixin
from ._finite import check_finite_fit
from ._fit_targets import PreparedTargets
from ._oom import reports_oom_retries
from ._param_validation import (
    Device,
    InstanceOf,
    Interval,
    Options,
    PathLike,
    RangePairs,
    inference_checks,
    validate_parameter_constraints,
)
from ._persistence import PersistenceMixin
from ._validation import check_texts
from ._warnings import warn
from .backbone import DEFAULT_BACKBONE, POOLINGS, load_backbone, max_positions, resolve_pooling
from .callbacks import CallbackList
from .inference import embed_texts, map_texts, map_tokens
from .losses import CONTRASTIVE_LOSSES
from .network import CARLNetwork
from .perturbation import PERTURBATIONS, SALIENCY_MODES, TOKEN_SELECTIONS, TokenPerturber
from .tokens import tokenize, unigram_counts
from .training import (
    AMP_DTYPES,
    SALIENCY_REFRESHES,
    CARLTrainer,
    MixedPrecision,
    TrainingConfig,
    resolve_device,
    resolve_learning_rate,
    resolve_max_epochs,
)
from .va_labels import (
    auto_label_temperature,
)

# The ranking term's weight under ranking_weight="auto" for continuous labels: on EmoBank dev the probe scores
# rise up to w = 50 and stay flat to 200 (docs/study_log.md). Class labels get no term: their anchors leave most
# label distances tied, so there is little order for it to keep, and on GoEmotions dev it lowered accuracy.
AUTO_RANKING_WEIGHT = 100.0


def resolve_ranking_weight(ranking_weight, continuous: bool, contrastive_loss: str = "soft_infonce") -> float:
    """The weight of the ranking term that ``ranking_weight`` means for these labels and this loss.

    ``"auto"`` adds the term to continuous labels only, and not to a loss that is Rank-N-Contrast already.
    """
    if isinstance(ranking_weight, str) and ranking_weight == "auto":
        return AUTO_RANKING_WEIGHT if continuous and contrastive_loss != "rank_n_contrast" else 0.0
    return float(ranking_weight)


# How a supervised head starts: a linear probe on the pretrained features (LP-FT), or PyTorch's initialisation.
HEAD_INITS = ("probe", "random")


def check_saliency_refresh(params) -> None:
    """``saliency_refresh="cached"`` reuses the previous step's saliency, so no term may need this step's gradient
    or a clean-versus-perturbed pair of passes."""
    if params["saliency_refresh"] != "cached":
        return
    if params["perturbation"] == "adversarial" and params["detection_weight"]:
        raise ValueError("saliency_refresh='cached' cannot be combined with perturbation='adversarial': the "
                         "adversarial shift needs this step's gradient. Use saliency_refresh='step' or a "
                         "discrete perturbation ('random', 'unigram', 'mask').")
    if params["perturbed_view_weight"] or params["consistency_weight"]:
        raise ValueError("saliency_refresh='cached' cannot be combined with perturbed_view_weight > 0 or "
                         "consistency_weight > 0: those terms compare the perturbed sentence with the clean "
                         "one, which the cached mode does not encode. Use saliency_refresh='step', or set "
                         "consistency_weight=0 and perturbed_view_weight=0 (detection alone can use the cache).")


def carl_estimator(cls):
    """Class decorator for an estimator that adds its own parameters to those of :class:`_CARLBase`.

    The subclass writes ``__init__(self, model_name_or_path=..., *, own=..., **carl_params)``; scikit-learn
    reads an estimator's parameters from the ``__init__`` signature and refuses ``**kwargs``, so the
    decorator gives ``__init__`` the flat signature (CARL parameters, then the subclass's own). It also
    fills ``%(carl_parameters)s`` and ``%(carl_attributes)s`` in the class docstring, so the shared
    parameters are written (and kept true) in one place.
    """
    base = inspect.signature(_CARLBase.__init__)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for name, p in inspect.signature(cls.__init__).parameters.items()
           if name not in base.parameters and p.kind is not inspect.Parameter.VAR_KEYWORD]
    cls.__init__.__signature__ = base.replace(parameters=[*base.parameters.values(), *own])
    cls.__doc__ = cls.__doc__ % {"carl_parameters": CARL_PARAMETERS.rstrip("\n"),
                                 "carl_attributes": CARL_ATTRIBUTES.rstrip("\n")}
    return cls


class _CARLBase(PersistenceMixin, ExplainMixin, BaseEstimator):
    """Parameters and machinery of CARL fine-tuning; see :class:`skcarl.CARLEmbedder` for their meaning."""

    def __init__(
        self,
        model_name_or_path=DEFAULT_BACKBONE,
        *,
        pooling="auto",
        projection_dim=128,
        contrastive_loss="soft_infonce",
        temperature=0.05,
        label_temperature="auto",
        ranking_weight="auto",
        ranking_temperature=0.25,
        va_range=None,
        momentum=0.995,
        queue_size=4096,
        saliency="grad_norm",
        token_selection="saliency",
        saliency_refresh="step",
        perturbation="random",
        perturb_ratio=0.15,
        perturb_eps=1.0,
        detection_weight=0.0,
        perturbed_view_weight=0.0,
        consistency_weight=0.0,
        learning_rate="auto",
        head_learning_rate=1e-3,
        weight_decay=0.01,
        warmup_ratio=0.1,
        max_grad_norm=1.0,
        batch_size=32,
        max_epochs="auto",
        max_length=128,
        device="auto",
        use_amp=True,
        compile=False,
        distributed="auto",
        validation_fraction=None,
        n_iter_no_change=2,
        callbacks=None,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.projection_dim = projection_dim
        self.contrastive_loss = contrastive_loss
        self.temperature = temperature
        self.label_temperature = label_temperature
        self.ranking_weight = ranking_weight
        self.ranking_temperature = ranking_temperature
        self.va_range = va_range
        self.momentum = momentum
        self.queue_size = queue_size
        self.saliency = saliency
        self.token_selection = token_selection
        self.saliency_refresh = saliency_refresh
        self.perturbation = perturbation
        self.perturb_ratio = perturb_ratio
        self.perturb_eps = perturb_eps
        self.detection_weight = detection_weight
        self.perturbed_view_weight = perturbed_view_weight
        self.consistency_weight = consistency_weight
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.max_grad_norm = max_grad_norm
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.max_length = max_length
        self.device = device
        self.use_amp = use_amp
        self.compile = compile
        self.distributed = distributed
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags

    # One entry per parameter of __init__ (tests/test_validation.py checks both ways); a subclass merges its own:
    # {**_CARLBase._parameter_constraints, "own": [...]}. Checked by validate_params at the top of fit.
    _parameter_constraints: dict = {
        "model_name_or_path": [PathLike()],
        "pooling": [Options(POOLINGS)],
        "projection_dim": [Interval(Integral, 1, None), None],
        "contrastive_loss": [Options(CONTRASTIVE_LOSSES)],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "label_temperature": [Interval(Real, 0, None, closed="neither"), "auto"],
        "ranking_weight": [Interval(Real, 0, None), "auto"],
        "ranking_temperature": [Interval(Real, 0, None, closed="neither")],
        "va_range": [None, RangePairs()],
        "momentum": [Interval(Real, 0, 1)],
        "queue_size": [Interval(Integral, 0, None)],
        "saliency": [Options(SALIENCY_MODES)],
        "token_selection": [Options(TOKEN_SELECTIONS)],
        "saliency_refresh": [Options(SALIENCY_REFRESHES)],
        "perturbation": [Options(PERTURBATIONS + (None,))],
        "perturb_ratio": [Interval(Real, 0, 1, closed="right")],
        "perturb_eps": [Interval(Real, 0, None, closed="neither")],
        "detection_weight": [Interval(Real, 0, None)],
        "perturbed_view_weight": [Interval(Real, 0, None)],
        "consistency_weight": [Interval(Real, 0, None)],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), "auto"],
        "head_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None)],
        "warmup_ratio": [Interval(Real, 0, 1, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None)],
        "max_epochs": [Interval(Integral, 1, None), "auto"],
        "max_length": [Interval(Integral, 2, None)],
        "device": [Device()],
        "use_amp": [bool, *AMP_DTYPES],
        "compile": [bool],
        "distributed": ["auto", bool],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None)],
        "callbacks": [None, CallbackList()],
        "warm_start": [bool],
        "random_state": [Interval(Integral, 0, 2**32 - 1),
                         InstanceOf(np.random.RandomState, "a numpy.random.RandomState instance"), None],
        "verbose": [Interval(Integral, 0, None)],
    }

    def validate_params(self):
        """Check every parameter against the class's ``_parameter_constraints``, then the pairs that must agree.

        ``fit`` calls it first, and ``transform``, ``predict`` and the other inference methods call it again
        (so that a ``set_params`` after ``fit`` is refused with the same message); the command line calls it
        before reading any data. Data-dependent checks (a class ``va_map`` does not know, a
        ``validation_fraction`` too large for the texts, ``perturbation="mask"`` with a tokenizer without a mask
        token) happen in ``fit``, where the data and the backbone are known.

        Raises
        ------
        ValueError
            Naming the first invalid parameter, what it may be and its value, in scikit-learn's words.

        Examples
        --------
        >>> from skcarl import CARLEmbedder
        >>> CARLEmbedder(temperature=-1).validate_params()
        Traceback (most recent call last):
        ...
        ValueError: The 'temperature' parameter of CARLEmbedder must be a float in the range (0, inf). Got -1 instead.
        """
        params = self.get_params(deep=False)
        validate_parameter_constraints(self._parameter_constraints, params, type(self).__name__)
        check_saliency_refresh(params)

    # ------------------------------------------------------------------ what each estimator learns from y
    # Fitted attributes that a subclass adds and that depend on the kind of y: a refit drops those of the
    # previous fit before publishing its own, and skcarl.io saves the private ones (names without a final "_").
    _target_attributes: tuple[str, ...] = ()

    def _prepare_targets(self, y, n_samples: int, rng: np.random.Generator) -> PreparedTargets:
        """Label rows for L_cont, how they map to points, and the supervised task (if any)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fit, as named steps
    def _fit_carl(self, X, y) -> None:
        """Validate, then fine-tune the encoder with CARL (and the task head, if any) on texts ``X``.

        All or nothing: when ``fit`` raises (bad input, a non-finite loss, KeyboardInterrupt, out of memory),
        the estimator is left as it was, unfitted or with its previous fit whole. With ``warm_start`` the fitted
        network trains in place, so its weights are copied to the CPU first and put back on failure.
        """
        warm = isinstance(self.warm_start, (bool, np.bool_)) and self.warm_start
        previous = vars(self).get("network_") if warm else None
        saved = None if previous is None else {k: v.detach().to("cpu", copy=True)
                                               for k, v in previous.state_dict().items()}
        try:
            self._fit_unguarded(X, y)
        except BaseException:
            if saved is not None:
                previous.load_state_dict(saved)
                previous.to(self.device_).eval()
            raise

    def _fit_unguarded(self, X, y) -> None:
        """The steps of ``fit``; each is a method a subclass may override."""
        texts = self._check_fit_inputs(X, y)
        run = self._initialize_run()
        started = time.perf_counter()
        with torch.random.fork_rng(devices=run.fork_devices):
            torch.manual_seed(run.seed)
            prepared = self._prepare_targets(y, len(texts), run.rng)
            if run.parallel is not None:
                run.parallel.check_same("texts or labels", _data_checksum(texts, prepared.rows))
            tokenizer, network = self._initialize_network(prepared.n_task_outputs)
            max_tokens = self._max_tokens(network)
            tokens = tokenize(tokenizer, texts, max_tokens)
            _warn_truncated(tokens.n_truncated, len(texts), self.max_length, max_tokens)
            train_idx, val_idx = self._validation_split(len(texts), run.rng)
            train_tokens = tokens.subset(train_idx)
            self._initialize_head(network, tokenizer, train_tokens, prepared, train_idx, run.device)
            settings = self._resolve_settings(prepared, train_idx, run)
            trainer = self._initialize_trainer(network, tokenizer, train_tokens, prepared, settings, train_idx,
                                               val_idx, run)
            if run.parallel is not None:  # dropout and perturbations differ between ranks, as their data do
                torch.manual_seed(run.seed + run.parallel.rank)
            validation = None if val_idx is None else (tokens.subset(val_idx), prepared.rows[val_idx])
            history = trainer.fit(train_tokens, prepared.rows[train_idx], run.rng, validation)
            self._refit_head(trainer.network, tokenizer, train_tokens, prepared, train_idx, run.device)
            check_finite_fit(self, trainer.network, tokenizer, texts, max_length=max_tokens, device=run.device,
                             learning_rate=trainer.config.learning_rate)
        fitted = dict(prepared.fitted, **prepared.learned_attributes(), **settings,
                      **_training_record(trainer, history, validation is not None),
                      network_=trainer.network, encoder_=trainer.network.encoder, tokenizer_=tokenizer,
                      device_=run.device, fit_time_=time.perf_counter() - started, n_samples_fit_=len(train_idx))
        self._publish(fitted)

    def _check_fit_inputs(self, X, y) -> list[str]:
        """The parameters (:meth:`validate_params`), then the texts; y is checked by ``_prepare_targets``."""
        self.validate_params()
        texts = check_texts(X, min_samples=2, owner=type(self).__name__)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        return texts

    def _initialize_run(self) -> _Run:
        """The device, the data-parallel group (under torchrun) and the seeds of this fit."""
        distributed = self.distributed if isinstance(self.distributed, str) else bool(self.distributed)
        parallel, device = _ddp.setup(distributed, resolve_device(self.device))
        seed, rng = self._seeds()
        if parallel is not None:  # one seed for all ranks: the same split, label temperature and permutations
            seed = parallel.broadcast_int(seed)
            rng = np.random.default_rng(seed)
        return _Run(parallel, device, seed, rng)

    def _seeds(self) -> tuple[int, np.random.Generator]:
        """A torch seed and a NumPy generator from ``random_state``, without touching global RNGs."""
        if self.random_state is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return seed, np.random.default_rng(seed)

    def _initialize_network(self, n_task_outputs: int):
        """A fresh backbone with new heads, or, with ``warm_start``, the fitted network to train on."""
        if self.warm_start and hasattr(self, "network_"):
            head = self.network_.task_head
            if (head.out_features if head is not None else 0) != n_task_outputs:
                raise ValueError("warm_start=True needs the same outputs (classes or target columns) as the "
                                 "previous fit; set warm_start=False to start afresh.")
            tokenizer, network = self.tokenizer_, self.network_
        else:
            tokenizer, encoder = load_backbone(self.model_name_or_path)
            pooling = resolve_pooling(self.pooling, self.model_name_or_path)
            network = CARLNetwork(encoder, self.projection_dim, pooling, n_task_outputs)
        if self.compile:
            network.compile_encoder()
        if self.perturbation == "mask" and self._perturbs() and tokenizer.mask_token_id is None:
            raise ValueError("perturbation='mask' needs a tokenizer with a mask token; this backbone has "
                             "none. Use perturbation='random'.")
        return tokenizer, network

    def _validation_split(self, n: int, rng: np.random.Generator):
        if self.validation_fraction is None:
            return np.arange(n), None
        n_val = int(round(self.validation_fraction * n))
        if n_val < 2 or n - n_val < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves {n_val} validation and "
                             f"{n - n_val} training texts out of {n}; both need at least 2.")
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _initialize_head(self, network, tokenizer, train_tokens, prepared: PreparedTargets, train_idx, device):
        """Start a new task head at the linear probe that ``_prepare_targets`` chose (LP-FT), if any; a
        warm-started network keeps its trained head."""
        if prepared.probe is None or network.task_head is None or network is getattr(self, "network_", None):
            return
        _fit_head(network.to(device), train_tokens, prepared.probe, prepared.task_targets[train_idx],
                  tokenizer.pad_token_id, self.batch_size, device, train_mode=True)

    def _refit_head(self, network, tokenizer, train_tokens, prepared: PreparedTargets, train_idx, device):
        """Re-fit the task head as the linear model that ``_prepare_targets`` chose (``prepared.refit``), on
        the tuned encoder's features of the training texts, dropout off: the features ``predict`` reads."""
        if prepared.refit is None or network.task_head is None:
            return
        _fit_head(network.to(device), train_tokens, prepared.refit, prepared.task_targets[train_idx],
                  tokenizer.pad_token_id, self.batch_size, device, train_mode=False)

    def _resolve_settings(self, prepared: PreparedTargets, train_idx, run: _Run) -> dict:
        """The values that the "auto" parameters and the data size give, as fitted attributes."""
        if self.label_temperature == "auto":
            with torch.no_grad():
                points = prepared.points(torch.from_numpy(prepared.rows[train_idx])).numpy()
            label_temperature = auto_label_temperature(points, run.rng)
        else:
            label_temperature = float(self.label_temperature)
        step_batch = self.batch_size * run.world_size  # a step's batch is batch_size texts per rank
        max_epochs = resolve_max_epochs(self.max_epochs, len(train_idx), step_batch)
        return {
            "label_temperature_": label_temperature,
            "ranking_weight_": resolve_ranking_weight(self.ranking_weight, prepared.continuous, self.contrastive_loss),
            "queue_size_": min(self.queue_size, max(len(train_idx) - step_batch, 0)),
            "max_epochs_": max_epochs,
            "learning_rate_": resolve_learning_rate(self.learning_rate,
                                                    max_epochs * math.ceil(len(train_idx) / step_batch)),
        }

    def _initialize_trainer(self, network, tokenizer, train_tokens, prepared: PreparedTargets, settings: dict,
                            train_idx, val_idx, run: _Run) -> CARLTrainer:
        resolved = {name.rstrip("_"): value for name, value in settings.items()}  # named as their parameters
        config = TrainingConfig.from_params(self.get_params(deep=False), **resolved)
        return CARLTrainer(
            network, config, run.device, self._make_perturber(tokenizer, train_tokens),
            label_points=prepared.points,
            label_dim=prepared.rows.shape[1],
            steps_per_epoch=math.ceil(len(train_idx) / (self.batch_size * run.world_size)),
            pad_id=tokenizer.pad_token_id,
            task=prepared.task(train_idx, val_idx, run.device),
            parallel=run.parallel,
        )

    def _publish(self, fitted: dict) -> None:
        """One assignment, so that an interrupt cannot leave a mix of two fits. A refit on another kind of y
        drops the previous kind's attributes (classes_ after continuous targets, ...)."""
        dropped = set(self._target_attributes)
        self.__dict__ = {**{k: v for k, v in vars(self).items() if k not in dropped}, **fitted}

    def _perturbs(self) -> bool:
        """Whether a term reads perturbed sentences: L_det, or an adversarial term."""
        return self.detection_weight > 0 or self.perturbed_view_weight > 0 or self.consistency_weight > 0

    def _make_perturber(self, tokenizer, train_tokens) -> TokenPerturber | None:
        if self.perturbation is None or not self._perturbs():
            return None
        vocab_size = len(tokenizer)
        return TokenPerturber(
            self.perturbation, vocab_size, tokenizer.all_special_ids, mask_id=tokenizer.mask_token_id,
            unigram_counts=unigram_counts(train_tokens, vocab_size) if self.perturbation == "unigram" else None,
            eps=self.perturb_eps,
        )

    # ------------------------------------------------------------------ inference
    def _check_inference_params(self) -> None:
        """Fitted, and the parameters valid by fit's rules and messages (a ``set_params`` after fit is seen
        here); ``device`` is not asked to exist on this machine, as inference runs on ``device_``."""
        check_is_fitted(self, "network_")
        with inference_checks():
            self.validate_params()

    def _fitted_network(self):
        """``network_``, compiled again when asked for (the compiled function is never pickled)."""
        self._check_inference_params()
        if getattr(self, "compile", False):
            self.network_.compile_encoder()
        return self.network_

    def _max_tokens(self, network) -> int:
        """``max_length``, capped at the encoder's position embeddings (a longer input fails inside torch)."""
        limit = max_positions(network.encoder)
        return self.max_length if limit is None else min(self.max_length, limit)

    @reports_oom_retries
    def _embed(self, X) -> np.ndarray:
        """L2-normalised sentence embeddings (n, hidden) in the input order."""
        network = self._fitted_network()
        texts = check_texts(X)
        with MixedPrecision(self.device_, getattr(self, "use_amp", False), training=False).autocast():
            embeddings, n_truncated = embed_texts(network, self.tokenizer_, texts, max_length=self._max_tokens(network),
                                                  batch_size=self.batch_size, device=self.device_)
        _warn_truncated(n_truncated, len(texts), self.max_length, self._max_tokens(network))
        return embeddings

    @reports_oom_retries
    def _task_outputs(self, X) -> np.ndarray:
        """Raw outputs of the prediction head (n, n_task_outputs), in the input order."""
        network = self._fitted_network()
        texts = check_texts(X)
        with MixedPrecision(self.device_, getattr(self, "use_amp", False), training=False).autocast():
            outputs, n_truncated = map_texts(network.predict_outputs, network.task_head.out_features,
                                             self.tokenizer_, texts, max_length=self._max_tokens(network),
                                             batch_size=self.batch_size, device=self.device_, network=network)
        _warn_truncated(n_truncated, len(texts), self.max_length, self._max_tokens(network))
        return outputs


def _data_checksum(texts, rows: np.ndarray) -> int:
    """A digest of the training data that is the same in every process (``hash`` of a str is salted)."""
    digest = zlib.crc32(len(texts).to_bytes(8, "little"))
    for text in texts:
        digest = zlib.crc32(text.encode("utf-8", "surrogatepass"), digest)
    return zlib.crc32(np.ascontiguousarray(rows, dtype=np.float64).tobytes(), digest)


@dataclass
class _Run:
    """Where and with which seeds one fit runs."""

    parallel: object
    device: torch.device
    seed: int
    rng: np.random.Generator

    @property
    def world_size(self) -> int:
        return 1 if self.parallel is None else self.parallel.world_size

    @property
    def fork_devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []


def _training_record(trainer: CARLTrainer, history: list[dict], validated: bool) -> dict:
    return {"history_": history, "loss_curve_": [record["loss"] for record in history],
            "validation_scores_": [r["validation_loss"] for r in history] if validated else None,
            "best_epoch_": trainer.best_epoch, "n_iter_": len(history)}


def _warn_truncated(n_truncated: int, n_texts: int, max_length: int, limit: int | None = None) -> None:
    if n_truncated and limit is not None and limit < max_length:
        warn(f"{n_truncated} of {n_texts} texts are longer than {limit} tokens (max_length={max_length}, capped at "
             f"the {limit} positions of the encoder) and were truncated.")
    elif n_truncated:
        warn(f"{n_truncated} of {n_texts} texts are longer than max_length={max_length} tokens and were truncated.")


@torch.no_grad()
def _fit_head(network, tokens, probe, targets, pad_id, batch_size, device, train_mode: bool) -> None:
    """Set the task head to ``probe``'s linear fit of ``targets`` on the network's pooled features.

    Before fine-tuning (``head_init="probe"``) this is linear probing, then fine-tuning (LP-FT; Kumar et al.,
    2022, "Fine-Tuning can Distort Pretrained Features"): the head starts at the best linear fit on the
    pretrained features, so the first steps do not push a random head's large gradients into the encoder.
    Those features are taken with dropout on (``train_mode``), as the head will see them during training: a
    probe fitted without dropout can lean on directions that dropout scrambles (seen on a randomly initialised
    encoder: a first-epoch loss 3x that of a random head). After fine-tuning (``head_refit``) the features
    are the ones ``predict`` reads, dropout off: the second stage of SetFit (Tunstall et al., 2022)."""
    features = map_tokens(network.pooled_features, network.encoder.config.hidden_size, tokens, pad_id=pad_id,
                          batch_size=batch_size, device=device, network=network, train_mode=train_mode)
    if not np.isfinite(features).all():  # a diverged encoder: check_finite_fit reports it, with advice
        return
    weight, bias = probe(features.astype(np.float64), np.asarray(targets))
    network.task_head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    network.task_head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
