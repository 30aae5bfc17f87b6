"""Soft-target InfoNCE over continuous labels: CARL's default momentum contrastive loss."""

import torch
from torch import nn
from torch.nn import functional as F

from ._common import label_distances, similarity_logits


class SoftInfoNCELoss(nn.Module):
    r"""InfoNCE whose one-hot target is replaced by a label-distance softmax.

    For query :math:`i` and candidate :math:`j` (batch keys followed by the queue),

    .. math::

        s_{ij} = q_i \cdot k_j / \tau, \qquad
        t_{ij} = \operatorname{softmax}_j\!\left(-\lVert y_i - y_j \rVert_2 / \tau_y\right),

        \mathcal{L}_{cont} = -\frac{1}{B} \sum_i \sum_{j \in C} t_{ij} \log \operatorname{softmax}_j(s_{ij}).

    The candidate whose valence-arousal label is nearest gets most of the target mass, far candidates
    almost none, so the encoder learns an ordering of similarity that follows VA distance. With one-hot
    labels and :math:`\tau_y \to 0` it reduces to MoCo's InfoNCE (He et al., 2020).
    Reference: Son, Saurez & Har (2025), CARL, arXiv:2502.20613 (our formulation; the paper's code is
    not public).

    Parameters
    ----------
    temperature : float
        :math:`\tau`, the similarity temperature.
    label_temperature : float
        :math:`\tau_y`, in the units of the scaled labels; smaller means sharper targets.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import normalize
    >>> from skcarl.losses import SoftInfoNCELoss
    >>> loss = SoftInfoNCELoss(temperature=0.1, label_temperature=0.05)
    >>> labels = torch.tensor([[0.9, 0.8], [0.1, 0.2]])          # VA points of two texts
    >>> keys = normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    >>> aligned = loss(keys.clone(), keys, labels, labels)         # each query on its own key
    >>> swapped = loss(keys.flip(0), keys, labels, labels)         # each query on the other's key
    >>> bool(aligned < swapped)
    True
    >>> loss.soft_targets(labels, labels).sum(1)
    tensor([1., 1.])
    """

    def __init__(self, temperature: float = 0.05, label_temperature: float = 0.02):
        super().__init__()
        self.temperature = temperature
        self.label_temperature = label_temperature

    def soft_targets(self, query_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
        return F.softmax(-label_distances(query_labels, key_labels) / self.label_temperature, dim=1)

    def forward(self, queries, keys, query_labels, key_labels):
        log_p = F.log_softmax(similarity_logits(queries, keys, self.temperature), dim=1)
        t = self.soft_targets(query_labels, key_labels)
        return -(t * log_p).sum(1).mean()
