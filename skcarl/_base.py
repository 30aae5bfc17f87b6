"""What the CARL estimators share: parameters, validation, the fit driver, transform and pickling."""

from __future__ import annotations

import inspect
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _ddp
from ._docs import CARL_ATTRIBUTES, CARL_PARAMETERS
from ._finite import check_finite_fit
from ._oom import reports_oom_retries
from ._persistence import PersistenceMixin
from ._targets import ClassTargets, check_class_targets
from ._validation import ParameterChecker, check_continuous_targets, check_texts, inference_checks
from ._warnings import warn
from .backbone import DEFAULT_BACKBONE, POOLINGS, load_backbone, max_positions, resolve_pooling
from .callbacks import check_callbacks
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
    SupervisedTask,
    TrainingConfig,
    resolve_device,
    resolve_max_epochs,
)
from .va_labels import (
    ClassAnchors,
    ContinuousLabels,
    auto_label_temperature,
    class_anchor_points,
    resolve_va_range,
    scale_labels,
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


# Fitted attributes that depend on the kind of y (continuous or classes) and so on the estimator's last fit.
_TARGET_ATTRIBUTES = {"n_outputs_", "classes_", "va_map_", "multilabel_", "class_weight_", "target_mean_",
                      "target_scale_", "_y_ndim"}


@dataclass
class PreparedTargets:
    """What ``fit`` learns from y: label rows for L_cont, their points, and an optional supervised task."""

    rows: np.ndarray
    points: torch.nn.Module
    fitted: dict
    n_task_outputs: int = 0
    task_loss: Callable | None = None
    task_targets: np.ndarray | None = None
    task_weight: float = 1.0
    # (features, targets) -> (weight, bias) of a linear probe that initialises the task head (LP-FT)
    probe: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def task(self, train_idx, val_idx, device) -> SupervisedTask | None:
        if self.task_loss is None:
            return None
        targets = torch.as_tensor(self.task_targets, device=device)
        return SupervisedTask(self.task_loss, targets[train_idx], self.task_weight,
                              None if val_idx is None else targets[val_idx])


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


class _CARLBase(PersistenceMixin, BaseEstimator):
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
        learning_rate=5e-5,
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

    def _checker(self) -> ParameterChecker:
        return ParameterChecker(self)

    def _check_params(self) -> None:
        check = self._checker()
        if not isinstance(self.model_name_or_path, str) and not hasattr(self.model_name_or_path, "__fspath__"):
            raise check._fail("model_name_or_path", "a str or path-like")
        check.option("pooling", POOLINGS)
        check.number("projection_dim", 1, integer=True, none=True)
        check.option("contrastive_loss", tuple(CONTRASTIVE_LOSSES))
        check.number("temperature", 0, low_open=True)
        if not (isinstance(self.label_temperature, str) and self.label_temperature == "auto"):
            try:
                check.number("label_temperature", 0, low_open=True)
            except ValueError:
                raise check._fail("label_temperature", "a float in the range (0, inf) or 'auto'") from None
        if not (isinstance(self.ranking_weight, str) and self.ranking_weight == "auto"):
            try:
                check.number("ranking_weight", 0)
            except ValueError:
                raise check._fail("ranking_weight", "a float in the range [0, inf) or 'auto'") from None
        check.number("ranking_temperature", 0, low_open=True)
        check.range_pairs("va_range")
        check.number("momentum", 0, 1)
        check.number("queue_size", 0, integer=True)
        check.option("saliency", SALIENCY_MODES)
        check.option("token_selection", TOKEN_SELECTIONS)
        check.option("saliency_refresh", SALIENCY_REFRESHES)
        check.option("perturbation", PERTURBATIONS + (None,))
        check.number("perturb_ratio", 0, 1, low_open=True)
        check.number("perturb_eps", 0, low_open=True)
        if self.saliency_refresh == "cached" and self.perturbation == "adversarial" and self.detection_weight:
            raise ValueError("saliency_refresh='cached' cannot be combined with perturbation='adversarial': the "
                             "adversarial shift needs this step's gradient. Use saliency_refresh='step' or a "
                             "discrete perturbation ('random', 'unigram', 'mask').")
        check.number("detection_weight", 0)
        check.number("perturbed_view_weight", 0)
        check.number("consistency_weight", 0)
        if self.saliency_refresh == "cached" and (self.perturbed_view_weight or self.consistency_weight):
            raise ValueError("saliency_refresh='cached' cannot be combined with perturbed_view_weight > 0 or "
                             "consistency_weight > 0: those terms compare the perturbed sentence with the clean "
                             "one, which the cached mode does not encode. Use saliency_refresh='step'.")
        check.number("learning_rate", 0, low_open=True)
        check.number("head_learning_rate", 0, low_open=True)
        check.number("weight_decay", 0)
        check.number("warmup_ratio", 0, 1, high_open=True)
        check.number("max_grad_norm", 0, low_open=True, none=True)
        check.number("batch_size", 1, integer=True)
        if not (isinstance(self.max_epochs, str) and self.max_epochs == "auto"):
            try:
                check.number("max_epochs", 1, integer=True)
            except (ValueError, TypeError):
                raise check._fail("max_epochs", "an int in the range [1, inf) or 'auto'") from None
        check.number("max_length", 2, integer=True)
        check.device("device")
        if not (isinstance(self.use_amp, (bool, np.bool_)) or (isinstance(self.use_amp, str)
                                                                 and self.use_amp in AMP_DTYPES)):
            raise check._fail("use_amp", "a bool, 'bfloat16' or 'float16'")
        check.boolean("compile")
        if not (isinstance(self.distributed, (bool, np.bool_)) or (isinstance(self.distributed, str)
                                                                   and self.distributed == "auto")):
            raise check._fail("distributed", "'auto' or a bool")
        check.number("validation_fraction", 0, 1, low_open=True, high_open=True, none=True)
        check.number("n_iter_no_change", 1, integer=True)
        check_callbacks(self.callbacks)
        check.number("verbose", 0, integer=True)
        check.boolean("warm_start")
        check.random_state("random_state")

    def _seeds(self) -> tuple[int, np.random.Generator]:
        """A torch seed and a NumPy generator from ``random_state``, without touching global RNGs."""
        if self.random_state is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return seed, np.random.default_rng(seed)

    # ------------------------------------------------------------------ what each estimator learns from y
    def _prepare_targets(self, y, n_samples: int, rng: np.random.Generator) -> PreparedTargets:
        """Label rows for L_cont, how they map to points, and the supervised task (if any)."""
        raise NotImplementedError

    def _continuous_targets(self, y, n_samples: int) -> PreparedTargets:
        """Continuous labels (valence, arousal, ...): scaled to [0, 1] per column, their own points."""
        y = check_continuous_targets(y, n_samples)
        low, high = resolve_va_range(y, self.va_range)
        for col in np.flatnonzero(high <= low):
            warn(f"Label column {col} is constant; it cannot order the texts.")
        return PreparedTargets(rows=scale_labels(y, low, high), points=ContinuousLabels(),
                               fitted={"label_min_": low, "label_max_": high, "n_outputs_": y.shape[1]})

    def _class_targets(self, y, n_samples: int, rng: np.random.Generator) -> tuple[PreparedTargets, ClassTargets]:
        """Class labels placed on the VA plane by ``va_map`` (the VA labeling system)."""
        targets = check_class_targets(y, n_samples)
        classes = targets.classes.tolist()
        raw, anchors, low, high = class_anchor_points(classes, self.va_map, self.va_range, rng)
        points = ClassAnchors(torch.from_numpy(anchors), learn=self.va_map == "learn")
        va_map = {c: tuple(float(v) for v in point) for c, point in zip(classes, raw)}
        prepared = PreparedTargets(rows=targets.membership, points=points,
                                   fitted={"classes_": targets.classes, "va_map_": va_map,
                                           "label_min_": low, "label_max_": high})
        return prepared, targets

    # ------------------------------------------------------------------ fit
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
        self._check_params()
        texts = check_texts(X, min_samples=2, owner=type(self).__name__)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        distributed = self.distributed if isinstance(self.distributed, str) else bool(self.distributed)
        parallel, device = _ddp.setup(distributed, resolve_device(self.device))
        seed, rng = self._seeds()
        if parallel is not None:  # one seed for all ranks: the same split, label temperature and permutations
            seed = parallel.broadcast_int(seed)
            rng = np.random.default_rng(seed)
        world_size = 1 if parallel is None else parallel.world_size
        started = time.perf_counter()
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            prepared = self._prepare_targets(y, len(texts), rng)
            if parallel is not None:
                parallel.check_same("texts or labels", _data_checksum(texts, prepared.rows))
            tokenizer, network = self._initial_network(prepared.n_task_outputs)
            if self.compile:
                network.compile_encoder()
            if self.perturbation == "mask" and self._perturbs() and tokenizer.mask_token_id is None:
                raise ValueError("perturbation='mask' needs a tokenizer with a mask token; this backbone has "
                                 "none. Use perturbation='random'.")
            max_tokens = self._max_tokens(network)
            tokens = tokenize(tokenizer, texts, max_tokens)
            _warn_truncated(tokens.n_truncated, len(texts), self.max_length, max_tokens)
            train_idx, val_idx = self._validation_split(len(texts), rng)
            train_tokens = tokens.subset(train_idx)
            if prepared.probe is not None and self.head_init == "probe" and network.task_head is not None \
                    and network is not getattr(self, "network_", None):
                _initialise_head_by_probe(network.to(device), train_tokens, prepared.probe,
                                          prepared.task_targets[train_idx], tokenizer.pad_token_id,
                                          self.batch_size, device)
            label_temperature = self._label_temperature(prepared, train_idx, rng)
            ranking_weight = resolve_ranking_weight(self.ranking_weight, isinstance(prepared.points, ContinuousLabels),
                                                    self.contrastive_loss)
            # a step's batch is batch_size texts per rank
            queue_size = min(self.queue_size, max(len(train_idx) - self.batch_size * world_size, 0))
            max_epochs = resolve_max_epochs(self.max_epochs, len(train_idx), self.batch_size * world_size)
            trainer = CARLTrainer(
                network,
                self._training_config(label_temperature, ranking_weight, queue_size, max_epochs),
                device,
                self._make_perturber(tokenizer, train_tokens),
                label_points=prepared.points,
                label_dim=prepared.rows.shape[1],
                steps_per_epoch=math.ceil(len(train_idx) / (self.batch_size * world_size)),
                pad_id=tokenizer.pad_token_id,
                task=prepared.task(train_idx, val_idx, device),
                parallel=parallel,
            )
            if parallel is not None:  # dropout and perturbations differ between ranks, as their data do
                torch.manual_seed(seed + parallel.rank)
            validation = None if val_idx is None else (tokens.subset(val_idx), prepared.rows[val_idx])
            history = trainer.fit(train_tokens, prepared.rows[train_idx], rng, validation)
            check_finite_fit(self, trainer.network, tokenizer, texts, max_length=max_tokens, device=device)

        fitted = dict(prepared.fitted, network_=trainer.network, encoder_=trainer.network.encoder,
                      tokenizer_=tokenizer, device_=device)
        if isinstance(prepared.points, ClassAnchors) and prepared.points.anchors.requires_grad:
            low, span = fitted["label_min_"], fitted["label_max_"] - fitted["label_min_"]
            anchors = prepared.points.anchors.detach().cpu().numpy().astype(np.float64)
            fitted["va_map_"] = {c: tuple(float(v) for v in low + a * span)
                                 for c, a in zip(fitted["classes_"].tolist(), anchors)}
        fitted.update(
            label_temperature_=label_temperature, ranking_weight_=ranking_weight, queue_size_=queue_size,
            max_epochs_=max_epochs, history_=history,
            loss_curve_=[record["loss"] for record in history],
            validation_scores_=[r["validation_loss"] for r in history] if validation is not None else None,
            best_epoch_=trainer.best_epoch, n_iter_=len(history), fit_time_=time.perf_counter() - started,
            n_samples_fit_=len(train_idx),
        )
        # One assignment, so that an interrupt cannot leave a mix of two fits. A refit on another kind of y
        # drops the previous kind's attributes (classes_ after continuous targets, ...).
        self.__dict__ = {**{k: v for k, v in vars(self).items() if k not in _TARGET_ATTRIBUTES}, **fitted}

    def _initial_network(self, n_task_outputs: int):
        """A fresh backbone with new heads, or, with ``warm_start``, the fitted network to train on."""
        if self.warm_start and hasattr(self, "network_"):
            head = self.network_.task_head
            if (head.out_features if head is not None else 0) != n_task_outputs:
                raise ValueError("warm_start=True needs the same outputs (classes or target columns) as the "
                                 "previous fit; set warm_start=False to start afresh.")
            return self.tokenizer_, self.network_
        tokenizer, encoder = load_backbone(self.model_name_or_path)
        pooling = resolve_pooling(self.pooling, self.model_name_or_path)
        return tokenizer, CARLNetwork(encoder, self.projection_dim, pooling, n_task_outputs)

    def _label_temperature(self, prepared: PreparedTargets, train_idx, rng) -> float:
        if self.label_temperature != "auto":
            return float(self.label_temperature)
        with torch.no_grad():
            points = prepared.points(torch.from_numpy(prepared.rows[train_idx])).numpy()
        return auto_label_temperature(points, rng)

    def _validation_split(self, n: int, rng: np.random.Generator):
        if self.validation_fraction is None:
            return np.arange(n), None
        n_val = int(round(self.validation_fraction * n))
        if n_val < 2 or n - n_val < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves {n_val} validation and "
                             f"{n - n_val} training texts out of {n}; both need at least 2.")
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _training_config(self, label_temperature: float, ranking_weight: float, queue_size: int,
                         max_epochs: int) -> TrainingConfig:
        return TrainingConfig.from_params(self.get_params(deep=False), label_temperature=label_temperature,
                                          ranking_weight=ranking_weight, queue_size=queue_size,
                                          max_epochs=max_epochs)

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
            self._check_params()

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

    def explain(self, texts, target=None, **kwargs):
        """Per-word saliency ‖∂f/∂E_t‖₂ of the model's output on ``texts``, the signal CARL trains with.

        f is each predicted target (regressor), the logit of the predicted or named class (classifier), or
        the whole embedding (embedder, by seeded random projections). See :func:`skcarl.explain.explain`
        for the parameters and the columns of the table.

        Parameters
        ----------
        texts : sequence of str
        target : None, int, str or class label, default=None
        **kwargs
            ``n_projections`` and ``random_state`` (embedder only).

        Returns
        -------
        pandas.DataFrame
            Columns ``text_id``, ``word_id``, ``word``, ``saliency``, ``saliency_share``, ``target``.

        Examples
        --------
        >>> from skcarl import CARLRegressor
        >>> reg = CARLRegressor(va_range=(1, 9), max_epochs=1).fit(texts, va)  # doctest: +SKIP
        >>> reg.explain(["What a wonderful day"], target=0).word.tolist()  # doctest: +SKIP
        ['What', 'a', 'wonderful', 'day']
        """
        from .explain import explain

        return explain(self, texts, target, **kwargs)


def _data_checksum(texts, rows: np.ndarray) -> int:
    """A digest of the training data that is the same in every process (``hash`` of a str is salted)."""
    digest = zlib.crc32(len(texts).to_bytes(8, "little"))
    for text in texts:
        digest = zlib.crc32(text.encode("utf-8", "surrogatepass"), digest)
    return zlib.crc32(np.ascontiguousarray(rows, dtype=np.float64).tobytes(), digest)


def _warn_truncated(n_truncated: int, n_texts: int, max_length: int, limit: int | None = None) -> None:
    if n_truncated and limit is not None and limit < max_length:
        warn(f"{n_truncated} of {n_texts} texts are longer than {limit} tokens (max_length={max_length}, capped at "
             f"the {limit} positions of the encoder) and were truncated.")
    elif n_truncated:
        warn(f"{n_truncated} of {n_texts} texts are longer than max_length={max_length} tokens and were truncated.")


@torch.no_grad()
def _initialise_head_by_probe(network, tokens, probe, targets, pad_id, batch_size, device) -> None:
    """Linear probing, then fine-tuning (LP-FT; Kumar et al., 2022, "Fine-Tuning can Distort Pretrained
    Features"): the task head starts at the best linear fit on the pretrained encoder's features, so the
    first steps do not push a random head's large gradients into the encoder. The features are taken with
    dropout on, as the head will see them during training: a probe fitted without dropout can lean on
    directions that dropout scrambles (seen on a randomly initialised encoder: a first-epoch loss 3x that of
    a random head)."""
    features = map_tokens(network.pooled_features, network.encoder.config.hidden_size, tokens, pad_id=pad_id,
                          batch_size=batch_size, device=device, network=network, train_mode=True)
    weight, bias = probe(features.astype(np.float64), np.asarray(targets))
    network.task_head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    network.task_head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
