"""A contrastive loss with a weighted Rank-N-Contrast term that keeps the global order of the labels."""

from torch import nn


class RankRegularisedLoss(nn.Module):
    r"""A contrastive loss plus a weighted Rank-N-Contrast term over the same candidates.

    .. math::

        \mathcal{L}_{cont} = \mathcal{L}_{base} + w \, \mathcal{L}_{RnC}(\tau_r)

    Soft InfoNCE with a sharp :math:`\tau_y` (CARL's default) puts almost all of each query's target
    mass on its nearest labels: it orders *neighbourhoods* but says little about candidates far away,
    so valence and arousal need not lie along directions a linear read-out can find.
    :class:`~skcarl.losses.RankNContrastLoss` contrasts every candidate against all those at least as
    far in label space, which asks for the order of similarities to follow the order of label
    distances at every range. Their sum keeps the local pull of the first and the global order of the
    second. Each term keeps its own similarity temperature, because Rank-N-Contrast wants a softer one
    than soft InfoNCE (see :class:`~skcarl.losses.RankNContrastLoss`).

    Parameters
    ----------
    base : nn.Module
        The contrastive loss, e.g. :class:`~skcarl.losses.SoftInfoNCELoss`.
    ranking : nn.Module
        The ranking term, a :class:`~skcarl.losses.RankNContrastLoss`.
    weight : float
        :math:`w`.

    Examples
    --------
    >>> import torch
    >>> from skcarl.losses import RankNContrastLoss, RankRegularisedLoss, SoftInfoNCELoss
    >>> base, ranking = SoftInfoNCELoss(0.05, 0.02), RankNContrastLoss(0.5)
    >>> loss = RankRegularisedLoss(base, ranking, weight=0.5)
    >>> q = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    >>> y = torch.rand(4, 2)
    >>> bool(torch.isclose(loss(q, q, y, y), base(q, q, y, y) + 0.5 * ranking(q, q, y, y)))
    True
    """

    def __init__(self, base: nn.Module, ranking: nn.Module, weight: float):
        super().__init__()
        self.base = base
        self.ranking = ranking
        self.weight = weight

    def forward(self, queries, keys, query_labels, key_labels):
        return (self.base(queries, keys, query_labels, key_labels)
                + self.weight * self.ranking(queries, keys, query_labels, key_labels))
