"""The methods of the suite: baselines, CARL with the estimators' defaults, and CARL's ablations.

Every trained method gets the same :class:`Budget` (backbone, epochs, batch size, maximum length, learning
rates) and seed. CARL is ``CARLEmbedder`` with its *defaults*, only the budget set, so a change of default
shows here; each ablation changes one parameter of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._base import resolve_ranking_weight
from skcarl.backbone import DEFAULT_BACKBONE

from .baselines import FrozenEncoder, PlainFineTuning, TfidfModel

_DEFAULTS = CARLEmbedder().get_params()


@dataclass(frozen=True)
class Budget:
    backbone: str = DEFAULT_BACKBONE
    device: str = "auto"
    use_amp: bool | str = True
    epochs: int = 1
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float | str = _DEFAULTS["learning_rate"]  # "auto": resolved by each method from its steps
    head_learning_rate: float = _DEFAULTS["head_learning_rate"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    warmup_ratio: float = _DEFAULTS["warmup_ratio"]
    max_grad_norm: float | None = _DEFAULTS["max_grad_norm"]

    def carl_params(self, seed) -> dict:
        return dict(model_name_or_path=self.backbone, device=self.device, use_amp=self.use_amp,
                    max_epochs=self.epochs, batch_size=self.batch_size, max_length=self.max_length,
                    learning_rate=self.learning_rate, head_learning_rate=self.head_learning_rate,
                    weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio,
                    max_grad_norm=self.max_grad_norm, random_state=seed)

    def as_dict(self):
        return asdict(self)


class CARLModel:
    """A CARL estimator fitted on the corpus' own labels: (V, A) on EmoBank, Ekman groups on GoEmotions
    (placed on the VA plane by skcarl's VA labeling system)."""

    dense = True

    def __init__(self, budget, task, seed, estimator="embedder", **params):
        self.task = task
        kind = {"embedder": CARLEmbedder, "e2e": CARLRegressor if task == "va" else CARLClassifier}[estimator]
        self.predicts = estimator == "e2e"
        self.estimator = kind(**{**budget.carl_params(seed), **params})

    def fit(self, frame):
        y = frame[["V", "A"]].to_numpy(float) if self.task == "va" else frame["ekman"].to_numpy(object)
        self.estimator.fit(frame["text"].tolist(), y)
        return self

    def transform(self, texts):
        return self.estimator.transform(texts)

    def predict(self, texts):
        return self.estimator.predict(texts)

    def params(self) -> dict:
        # what a run computes: without the progress display and the training-time hooks (callbacks=None here)
        params = {k: v for k, v in self.estimator.get_params().items() if k not in ("verbose", "callbacks")}
        # the weight the fit will use, so that "auto" and the number it stands for are one run
        params["ranking_weight"] = resolve_ranking_weight(params["ranking_weight"], self.task == "va",
                                                          params["contrastive_loss"])
        if params["ranking_weight"] == 0:
            # added after results were kept: without the term a run computes what it did before, so its
            # key stays the one those results were kept under
            params.pop("ranking_weight"), params.pop("ranking_temperature")
        for name in ("perturbed_view_weight", "consistency_weight"):
            if params[name] == 0:  # likewise: runs without the adversarial terms keep their keys
                params.pop(name)
        if params.get("head_refit") is False:  # likewise: a jointly trained head is what runs before it computed
            params.pop("head_refit")
        return params

    def training_record(self) -> dict:
        """The last epoch's mean losses (for L_det: is the head better than always saying "not perturbed"?)."""
        last = self.estimator.history_[-1]
        return {f"train/{k}": float(last[k]) for k in ("contrastive_loss", "detection_loss", "task_loss")
                if k in last}


class DiscreteSupCon(CARLModel):
    """The "discrete labels" baseline: supervised contrastive learning (Khosla et al. 2020) over bins.

    EmoBank's (V, A) are cut into a 3 × 3 grid at the training texts' tertiles; GoEmotions uses its Ekman
    groups. Each text's label is the one-hot row of its bin, and ``contrastive_loss="weighted_supcon"`` with
    σ = 0.05 gives same-bin candidates weight 1 and all others exp(−2/(2·0.05²)) ≈ 0: SupCon exactly, with
    CARL's momentum encoder and queue, and no detection. Against CARL it changes the labels (and drops
    L_det, whose own effect is the λ = 0 ablation).
    """

    def __init__(self, budget, task, seed):
        super().__init__(budget, task, seed, contrastive_loss="weighted_supcon", label_temperature=0.05,
                         detection_weight=0.0, ranking_weight=0.0)

    def fit(self, frame):
        if self.task == "va":
            edges = [np.quantile(frame[d], [1 / 3, 2 / 3]) for d in "VA"]
            bins = np.digitize(frame["V"], edges[0]) * 3 + np.digitize(frame["A"], edges[1])
        else:
            bins = np.unique(frame["ekman"], return_inverse=True)[1]
        onehot = np.eye(bins.max() + 1)[bins]
        self.estimator.fit(frame["text"].tolist(), onehot)
        return self


# λ of the ablations that study the detection task (token selection, operators): they set it explicitly, so
# that they stay detection ablations whatever the default λ is.
DETECTION_WEIGHT = 0.1
# the Rank-N-Contrast terms chosen for three-seed runs, each the dev pick of a round of the study (three epochs
# on all of EmoBank, seed 0): w of round 8 (its grid ended at w = 50 still rising) and 9, τ_r of round 10 (the
# default for continuous labels since; on class labels, where the default leaves the term out, it is an ablation)
RANKING_TERMS = {
    "carl_ranking": dict(ranking_weight=20.0, ranking_temperature=0.5),
    "carl_ranking_100": dict(ranking_weight=100.0, ranking_temperature=0.5),
    "carl_ranking_100_sharp": dict(ranking_weight=100.0, ranking_temperature=0.25),
}

# The candidate forms of the adversarial half, each on the defaults (λ = 0): their weights put the new term in
# the units of L_cont, whose Rank-N-Contrast part carries w = 100
ADVERSARIAL_FORMS = {
    "carl_perturbed_view": ("perturbed view: salient tokens replaced, 2nd query in L_cont (μ_view = 1)",
                            dict(perturbed_view_weight=1.0)),
    "carl_adversarial_consistency": ("adversarial consistency: salient embeddings shifted along ∂L/∂E, KL to clean "
                                     "(μ_adv = 100, ε = 1)",
                                     dict(consistency_weight=100.0, perturbation="adversarial")),
    # the FreeLB/SMART regime: a shift a tenth of a token embedding's norm, a term a tenth of the ranking term's
    "carl_adversarial_consistency_mild": ("adversarial consistency, mild: μ_adv = 10, ε = 0.1",
                                          dict(consistency_weight=10.0, perturbation="adversarial",
                                               perturb_eps=0.1)),
}

ABLATIONS = {
    "carl_no_queue": ("no momentum encoder, no queue (m = 0, K = 0)", dict(momentum=0.0, queue_size=0)),
    "carl_label_temperature": ("τ_y = 0.05 instead of auto (≈ 0.02 on EmoBank)", dict(label_temperature=0.05)),
    "carl_queue_1024": (f"queue of 1,024 keys instead of {_DEFAULTS['queue_size']:,}", dict(queue_size=1024)),
    "carl_momentum_099": (f"key-encoder momentum 0.99 instead of {_DEFAULTS['momentum']:g}", dict(momentum=0.99)),
    "carl_no_detection": ("no detection (λ = 0)", dict(detection_weight=0.0)),
    "carl_detection": (f"with detection (λ = {DETECTION_WEIGHT})", dict(detection_weight=DETECTION_WEIGHT)),
    "carl_random_tokens": ("λ = 0.1, random token selection",
                           dict(detection_weight=DETECTION_WEIGHT, token_selection="random")),
    "carl_op_unigram": ("λ = 0.1, operator: unigram replacement",
                        dict(detection_weight=DETECTION_WEIGHT, perturbation="unigram")),
    "carl_op_mask": ("λ = 0.1, operator: [MASK]", dict(detection_weight=DETECTION_WEIGHT, perturbation="mask")),
    "carl_op_adversarial": ("λ = 0.1, operator: adversarial shift",
                            dict(detection_weight=DETECTION_WEIGHT, perturbation="adversarial")),
    # the adversarial half without detection (one family at a time): the perturbed sentence as a second query
    # view with its label unchanged, and the consistency of an adversarially shifted sentence (docs/study_log.md)
    **{name: (label, params) for name, (label, params) in ADVERSARIAL_FORMS.items()},
    "carl_loss_soft_infonce": ("loss: soft InfoNCE", dict(contrastive_loss="soft_infonce")),
    "carl_loss_weighted_supcon": ("loss: weighted SupCon", dict(contrastive_loss="weighted_supcon")),
    "carl_loss_rank_n_contrast": ("loss: Rank-N-Contrast", dict(contrastive_loss="rank_n_contrast")),
    **{name: (f"ranking term, w = {term['ranking_weight']:g} (Rank-N-Contrast, τ_r = {term['ranking_temperature']:g})",
              term) for name, term in RANKING_TERMS.items()},
    # the defaults before the ranking term (ranking_weight="auto" leaves it out of class labels already)
    "carl_no_ranking": ("no ranking term (w = 0)", dict(ranking_weight=0.0)),
    "carl_e2e_no_ranking": ("CARLRegressor / CARLClassifier, no ranking term (w = 0)",
                            dict(estimator="e2e", ranking_weight=0.0)),
    # the regressor's head started at the ridge probe (LP-FT), which head_init="auto" does only on small sets
    # (AUTO_PROBE_BELOW); the classifier starts there by default, so on GoEmotions this row is carl_e2e's
    "carl_e2e_probe_start": ("CARLRegressor / CARLClassifier, head started at the probe (head_init=\"probe\")",
                             dict(estimator="e2e", head_init="probe")),
}


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    group: str  # "baseline", "carl" or "ablation"
    build: object
    seeded: bool = True  # False: the result does not depend on the seed, run once

    def make(self, budget, task, seed):
        return self.build(budget, task, seed)


def with_learning_rate(build, learning_rate):
    """``build`` with its own encoder learning rate instead of the budget's."""
    if learning_rate is None:
        return build
    return lambda budget, task, seed: build(replace(budget, learning_rate=learning_rate), task, seed)


def _carl(**params):
    return lambda budget, task, seed: CARLModel(budget, task, seed, **params)


def all_methods(learning_rates=None) -> dict[str, Method]:
    """Every method, by name. ``learning_rates`` maps "plain" and "supcon_bins" to their own encoder learning
    rate (chosen on dev like CARL's, which is the budget's); a missing one takes the budget's."""
    learning_rates = learning_rates or {}
    methods = [
        Method("tfidf", "TF-IDF + linear model", "baseline", TfidfModel, seeded=False),
        Method("frozen", "frozen encoder", "baseline", FrozenEncoder, seeded=False),
        Method("plain", "plain fine-tuning (MSE / cross-entropy head)", "baseline",
               with_learning_rate(PlainFineTuning, learning_rates.get("plain"))),
        Method("supcon_bins", "SupCon on discrete labels (VA bins / classes)", "baseline",
               with_learning_rate(DiscreteSupCon, learning_rates.get("supcon_bins"))),
        Method("carl", "CARL (CARLEmbedder defaults)", "carl", _carl()),
        Method("carl_e2e", "CARLRegressor / CARLClassifier", "carl", _carl(estimator="e2e")),
    ]
    defaults = CARLEmbedder().get_params()
    seen = [defaults]
    for name, (label, params) in ABLATIONS.items():
        # an ablation that computes what the CARL row or an earlier ablation computes (it sets defaults) is skipped
        effective = {**defaults, **params}
        if effective not in seen:
            seen.append(effective)
            methods.append(Method(name, label, "ablation", _carl(**params)))
    return {m.name: m for m in methods}


MAIN_METHODS = ("tfidf", "frozen", "plain", "supcon_bins", "carl", "carl_e2e")
# the transfer protocol's rows: the encoders (TF-IDF is no embedding to transfer), CARL with the paper's full
# objective (detection on) and the adversarial forms
TRANSFER_METHODS = ("frozen", "plain", "supcon_bins", "carl", "carl_detection", *ADVERSARIAL_FORMS)
