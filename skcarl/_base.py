"""What the CARL estimators share: parameters, validation, the fit driver, transform and pickling."""

from __future__ import annotations

import io
import math
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._validation import ParameterChecker, check_continuous_targets, check_texts
from .backbone import DEFAULT_BACKBONE, load_backbone
from .inference import embed_texts
from .losses import CONTRASTIVE_LOSSES
from .network import CARLNetwork
from .perturbation import PERTURBATIONS, SALIENCY_MODES, TOKEN_SELECTIONS, TokenPerturber
from .tokens import tokenize, unigram_counts
from .training import CARLTrainer, TrainingConfig, resolve_device
from .va_labels import auto_label_temperature, resolve_va_range, scale_labels


class _CARLBase(BaseEstimator):
    """Parameters and machinery of CARL fine-tuning; see :class:`skcarl.CARLEmbedder` for their meaning."""

    def __init__(
        self,
        model_name_or_path=DEFAULT_BACKBONE,
        *,
        pooling="mean",
        projection_dim=128,
        contrastive_loss="soft_infonce",
        temperature=0.05,
        label_temperature="auto",
        va_range=None,
        momentum=0.995,
        queue_size=1024,
        saliency="grad_norm",
        token_selection="saliency",
        perturbation="random",
        perturb_ratio=0.15,
        perturb_eps=1.0,
        detection_weight=0.1,
        learning_rate=2e-5,
        head_learning_rate=1e-3,
        weight_decay=0.01,
        warmup_ratio=0.1,
        max_grad_norm=1.0,
        batch_size=32,
        max_epochs=3,
        max_length=128,
        device="auto",
        use_amp=True,
        validation_fraction=None,
        n_iter_no_change=2,
        random_state=None,
        verbose=0,
    ):
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.projection_dim = projection_dim
        self.contrastive_loss = contrastive_loss
        self.temperature = temperature
        self.label_temperature = label_temperature
        self.va_range = va_range
        self.momentum = momentum
        self.queue_size = queue_size
        self.saliency = saliency
        self.token_selection = token_selection
        self.perturbation = perturbation
        self.perturb_ratio = perturb_ratio
        self.perturb_eps = perturb_eps
        self.detection_weight = detection_weight
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
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
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

    def _check_params(self) -> None:
        check = ParameterChecker(self)
        if not isinstance(self.model_name_or_path, str) and not hasattr(self.model_name_or_path, "__fspath__"):
            raise check._fail("model_name_or_path", "a str or path-like")
        check.option("pooling", ("mean", "cls"))
        check.number("projection_dim", 1, integer=True)
        check.option("contrastive_loss", tuple(CONTRASTIVE_LOSSES))
        check.number("temperature", 0, low_open=True)
        if isinstance(self.label_temperature, str) and self.label_temperature != "auto":
            raise check._fail("label_temperature", "a float in the range (0, inf) or 'auto'")
        if self.label_temperature != "auto":
            check.number("label_temperature", 0, low_open=True)
        check.number("momentum", 0, 1)
        check.number("queue_size", 0, integer=True)
        check.option("saliency", SALIENCY_MODES)
        check.option("token_selection", TOKEN_SELECTIONS)
        check.option("perturbation", PERTURBATIONS + (None,))
        check.number("perturb_ratio", 0, 1, low_open=True)
        check.number("perturb_eps", 0, low_open=True)
        check.number("detection_weight", 0)
        check.number("learning_rate", 0, low_open=True)
        check.number("head_learning_rate", 0, low_open=True)
        check.number("weight_decay", 0)
        check.number("warmup_ratio", 0, 1, high_open=True)
        check.number("max_grad_norm", 0, low_open=True, none=True)
        check.number("batch_size", 1, integer=True)
        check.number("max_epochs", 1, integer=True)
        check.number("max_length", 2, integer=True)
        check.boolean("use_amp")
        check.number("validation_fraction", 0, 1, low_open=True, high_open=True, none=True)
        check.number("n_iter_no_change", 1, integer=True)
        check.number("verbose", 0, integer=True)

    def _seeds(self) -> tuple[int, np.random.Generator]:
        """A torch seed and a NumPy generator from ``random_state``, without touching global RNGs."""
        if self.random_state is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return seed, np.random.default_rng(seed)

    # ------------------------------------------------------------------ fit
    def _fit_carl(self, X, y_continuous) -> None:
        """Validate, then fine-tune the encoder with CARL on texts ``X`` and continuous labels."""
        self._check_params()
        texts = check_texts(X)
        y = check_continuous_targets(y_continuous, len(texts))
        low, high = resolve_va_range(y, self.va_range)
        for col in np.flatnonzero(high <= low):
            warnings.warn(f"Label column {col} is constant; it cannot order the texts.", UserWarning,
                          stacklevel=3)
        y_scaled = scale_labels(y, low, high)
        device = resolve_device(self.device)
        seed, rng = self._seeds()
        started = time.perf_counter()
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            tokenizer, encoder = load_backbone(self.model_name_or_path)
            if self.perturbation == "mask" and tokenizer.mask_token_id is None:
                raise ValueError("perturbation='mask' needs a tokenizer with a mask token; this backbone has "
                                 "none. Use perturbation='random'.")
            tokens = tokenize(tokenizer, texts, self.max_length)
            if tokens.n_truncated:
                warnings.warn(f"{tokens.n_truncated} of {len(texts)} texts are longer than max_length="
                              f"{self.max_length} tokens and were truncated.", UserWarning, stacklevel=3)
            train_idx, val_idx = self._validation_split(len(texts), rng)
            train_tokens = tokens.subset(train_idx)
            label_temperature = (auto_label_temperature(y_scaled[train_idx], rng)
                                 if self.label_temperature == "auto" else float(self.label_temperature))
            queue_size = min(self.queue_size, max(len(train_idx) - self.batch_size, 0))
            network = CARLNetwork(encoder, self.projection_dim, self.pooling)
            trainer = CARLTrainer(
                network,
                self._training_config(label_temperature, queue_size),
                device,
                self._make_perturber(tokenizer, train_tokens),
                label_dim=y_scaled.shape[1],
                steps_per_epoch=math.ceil(len(train_idx) / self.batch_size),
                pad_id=tokenizer.pad_token_id,
            )
            validation = None
            if val_idx is not None:
                validation = (tokens.subset(val_idx), y_scaled[val_idx])
            history = trainer.fit(train_tokens, y_scaled[train_idx], rng, validation)

        self.network_ = trainer.network
        self.encoder_ = trainer.network.encoder
        self.tokenizer_ = tokenizer
        self.device_ = device
        self.label_min_, self.label_max_ = low, high
        self.n_outputs_ = y.shape[1]
        self.label_temperature_ = label_temperature
        self.queue_size_ = queue_size
        self.history_ = history
        self.loss_curve_ = [record["loss"] for record in history]
        self.validation_scores_ = [record["validation_loss"] for record in history] if validation else None
        self.best_epoch_ = trainer.best_epoch
        self.n_iter_ = len(history)
        self.fit_time_ = time.perf_counter() - started

    def _validation_split(self, n: int, rng: np.random.Generator):
        if self.validation_fraction is None:
            return np.arange(n), None
        n_val = int(round(self.validation_fraction * n))
        if n_val < 2 or n - n_val < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves {n_val} validation and "
                             f"{n - n_val} training texts out of {n}; both need at least 2.")
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _training_config(self, label_temperature: float, queue_size: int) -> TrainingConfig:
        return TrainingConfig(
            contrastive_loss=self.contrastive_loss, temperature=self.temperature,
            label_temperature=label_temperature, momentum=self.momentum, queue_size=queue_size,
            saliency=self.saliency, token_selection=self.token_selection, perturb_ratio=self.perturb_ratio,
            detection_weight=self.detection_weight, learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate, weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio, max_grad_norm=self.max_grad_norm, batch_size=self.batch_size,
            max_epochs=self.max_epochs, n_iter_no_change=self.n_iter_no_change, use_amp=self.use_amp,
            verbose=self.verbose,
        )

    def _make_perturber(self, tokenizer, train_tokens) -> TokenPerturber | None:
        if self.perturbation is None or self.detection_weight == 0:
            return None
        vocab_size = len(tokenizer)
        return TokenPerturber(
            self.perturbation, vocab_size, tokenizer.all_special_ids, mask_id=tokenizer.mask_token_id,
            unigram_counts=unigram_counts(train_tokens, vocab_size) if self.perturbation == "unigram" else None,
            eps=self.perturb_eps,
        )

    # ------------------------------------------------------------------ inference
    def _embed(self, X) -> np.ndarray:
        """L2-normalised sentence embeddings (n, hidden) in the input order."""
        check_is_fitted(self, "network_")
        texts = check_texts(X)
        embeddings, n_truncated = embed_texts(self.network_, self.tokenizer_, texts, max_length=self.max_length,
                                              batch_size=self.batch_size, device=self.device_)
        if n_truncated:
            warnings.warn(f"{n_truncated} of {len(texts)} texts are longer than max_length={self.max_length} "
                          "tokens and were truncated.", UserWarning, stacklevel=3)
        return embeddings

    # ------------------------------------------------------------------ pickling (skorch-style)
    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        state["_skcarl_version"] = __version__
        if "network_" in state:
            # torch.save keeps the device of every tensor; __setstate__ maps them to one that exists.
            buffer = io.BytesIO()
            torch.save(state["network_"], buffer)
            state["network_"] = buffer.getvalue()
            state.pop("encoder_", None)
        return state

    def __setstate__(self, state):
        saved_version = state.pop("_skcarl_version", None)
        if saved_version is not None and saved_version != __version__:
            warnings.warn(f"This {type(self).__name__} was pickled with skcarl {saved_version} and is loaded "
                          f"with skcarl {__version__}; results may differ.", UserWarning, stacklevel=2)
        if isinstance(state.get("network_"), bytes):
            device = state.get("device_", torch.device("cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                warnings.warn("This model was trained on CUDA, which is not available here; it is loaded on "
                              "the CPU.", UserWarning, stacklevel=2)
                device = torch.device("cpu")
            network = torch.load(io.BytesIO(state["network_"]), map_location=device, weights_only=False)
            state["network_"], state["encoder_"], state["device_"] = network, network.encoder, device
        super().__setstate__(state)

