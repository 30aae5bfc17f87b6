"""The CARL training losses, one module each.

Every contrastive loss takes L2-normalised queries ``q`` (B, D) with their labels ``y`` (B, L) and a candidate
set of keys ``k`` (N, D) with labels ``y_k`` (N, L): the current batch's momentum keys followed by the queue.
Gradients flow into the queries only.
"""

from .consistency import SimilarityConsistencyLoss
from .detection import TokenDetectionLoss
from .rank_n_contrast import RankNContrastLoss
from .rank_regularised import RankRegularisedLoss
from .soft_infonce import SoftInfoNCELoss
from .weighted_supcon import WeightedSupConLoss

CONTRASTIVE_LOSSES = {
    "soft_infonce": SoftInfoNCELoss,
    "weighted_supcon": WeightedSupConLoss,
    "rank_n_contrast": RankNContrastLoss,
}


def make_contrastive_loss(name, temperature, label_temperature, ranking_weight, ranking_temperature):
    """Build the contrastive loss called ``name`` (a key of :data:`CONTRASTIVE_LOSSES`), with a
    Rank-N-Contrast term of weight ``ranking_weight`` and temperature ``ranking_temperature`` added when
    the weight is positive (:class:`RankRegularisedLoss`).

    Examples
    --------
    >>> from skcarl.losses import make_contrastive_loss
    >>> make_contrastive_loss("rank_n_contrast", temperature=0.05, label_temperature=0.02, ranking_weight=0.0,
    ...                       ranking_temperature=0.25)
    RankNContrastLoss()
    >>> make_contrastive_loss("soft_infonce", 0.05, 0.02, ranking_weight=0.5, ranking_temperature=0.25).weight
    0.5
    """
    loss = CONTRASTIVE_LOSSES[name](temperature=temperature, label_temperature=label_temperature)
    if ranking_weight == 0:
        return loss
    return RankRegularisedLoss(loss, RankNContrastLoss(temperature=ranking_temperature), ranking_weight)


__all__ = [
    "CONTRASTIVE_LOSSES",
    "RankNContrastLoss",
    "RankRegularisedLoss",
    "SimilarityConsistencyLoss",
    "SoftInfoNCELoss",
    "TokenDetectionLoss",
    "WeightedSupConLoss",
    "make_contrastive_loss",
]
