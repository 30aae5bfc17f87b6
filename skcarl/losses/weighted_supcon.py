"""Supervised contrastive loss with Gaussian label-similarity weights."""

import torch
from torch import nn
from torch.nn import functional as F

from ._common import label_distances, similarity_logits


class WeightedSupConLoss(nn.Module):
    r"""SupCon (Khosla et al., 2020) where every candidate is a positive with a continuous weight.

    .. math::

        w_{ij} = \exp\!\left(-\frac{\lVert y_i - y_j \rVert_2^2}{2\sigma^2}\right), \qquad
        \mathcal{L} = -\frac{1}{B} \sum_i \frac{1}{\sum_{j} w_{ij}} \sum_{j \in C} w_{ij}
        \log \frac{\exp(s_{ij})}{\sum_{l \in C} \exp(s_{il})}.

    With 0/1 weights (same class or not) this is SupCon. Compared with :class:`SoftInfoNCELoss` the
    weights fall off with the *squared* distance: candidates within about σ of the query count almost
    fully, those beyond 2σ hardly at all. σ is the ``label_temperature`` of the estimator.
    Queries and keys come from different encoders (MoCo style), so no self-pair is excluded: the query's
    own key is its strongest positive.

    Examples
    --------
    >>> import torch
    >>> from skcarl.losses import WeightedSupConLoss
    >>> loss = WeightedSupConLoss(temperature=0.1, label_temperature=0.05)
    >>> labels = torch.tensor([[0.9, 0.8], [0.1, 0.2]])
    >>> keys = torch.eye(2)
    >>> bool(loss(keys.clone(), keys, labels, labels) < loss(keys.flip(0), keys, labels, labels))
    True
    """

    def __init__(self, temperature: float = 0.05, label_temperature: float = 0.02):
        super().__init__()
        self.temperature = temperature
        self.label_temperature = label_temperature

    def forward(self, queries, keys, query_labels, key_labels):
        sigma = self.label_temperature
        w = torch.exp(-label_distances(query_labels, key_labels).pow(2) / (2 * sigma**2))
        log_p = F.log_softmax(similarity_logits(queries, keys, self.temperature), dim=1)
        return -((w * log_p).sum(1) / w.sum(1).clamp(min=1e-12)).mean()
