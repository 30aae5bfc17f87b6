"""Consistency of a perturbed query's candidate distribution with the clean query's: the adversarial term."""

import torch
from torch import nn
from torch.nn import functional as F

from ._common import similarity_logits


class SimilarityConsistencyLoss(nn.Module):
    r"""KL divergence from the clean query's similarity distribution to the perturbed query's.

    For query :math:`i`, its perturbed version :math:`\tilde q_i` (the most salient tokens' input embeddings
    shifted, or the tokens replaced) and the candidates :math:`k_j` of L_cont,

    .. math::

        p_{ij} = \operatorname{softmax}_j(q_i \cdot k_j / \tau), \qquad
        \tilde p_{ij} = \operatorname{softmax}_j(\tilde q_i \cdot k_j / \tau),

        \mathcal{L}_{adv} = \frac{1}{B} \sum_i \sum_{j \in C} p_{ij} \,(\log p_{ij} - \log \tilde p_{ij}).

    :math:`p` is a fixed target (no gradient flows through the clean query): the term asks the encoder to
    keep a sentence's place among the candidates when its salient tokens are pushed along the loss gradient,
    the smoothness-inducing adversarial regulariser of virtual adversarial training (Miyato et al., 2018) and
    SMART (Jiang et al., 2020), read on the contrastive similarities instead of class probabilities.

    Parameters
    ----------
    temperature : float
        :math:`\tau`, the similarity temperature of L_cont.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import normalize
    >>> from skcarl.losses import SimilarityConsistencyLoss
    >>> loss = SimilarityConsistencyLoss(temperature=0.1)
    >>> keys = normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    >>> float(loss(keys, keys.clone(), keys))                          # an unmoved query costs nothing
    0.0
    >>> bool(loss(keys, keys.flip(0), keys) > 1.0)                     # one that changed places costs
    True
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(self, clean_queries: torch.Tensor, perturbed_queries: torch.Tensor, keys: torch.Tensor):
        log_p = F.log_softmax(similarity_logits(clean_queries.detach(), keys.detach(), self.temperature), dim=1)
        log_p_tilde = F.log_softmax(similarity_logits(perturbed_queries, keys.detach(), self.temperature), dim=1)
        return (log_p.exp() * (log_p - log_p_tilde)).sum(1).mean()
