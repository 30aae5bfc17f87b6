"""Perturbed-token detection: CARL's token-level discriminator loss."""

import torch
from torch import nn
from torch.nn import functional as F


class TokenDetectionLoss(nn.Module):
    r"""Binary cross-entropy of "was this token perturbed?", averaged over real tokens.

    .. math::

        \mathcal{L}_{det} = -\frac{1}{|R|} \sum_{(i,t) \in R}
        \big[ m_{it} \log \sigma(h_{it}) + (1 - m_{it}) \log (1 - \sigma(h_{it})) \big]

    :math:`h_{it}` is the token head's logit on the perturbed sentence, :math:`m_{it}` is 1 where token t
    of sentence i was replaced, and :math:`R` holds the real tokens: neither padding nor special tokens
    (those are never perturbed, so they would only teach the head to read positions). It is ELECTRA's
    replaced-token-detection objective (Clark et al., 2020) with saliency-chosen replacements.

    Examples
    --------
    >>> import torch
    >>> from skcarl.losses import TokenDetectionLoss
    >>> logits = torch.tensor([[9.0, -9.0, -9.0, 100.0]])           # the last position is padding
    >>> perturbed = torch.tensor([[True, False, False, False]])
    >>> real = torch.tensor([[True, True, True, False]])
    >>> round(float(TokenDetectionLoss()(logits, perturbed, real)), 4)
    0.0001
    """

    def forward(self, logits: torch.Tensor, perturbed: torch.Tensor, real_tokens: torch.Tensor):
        real = real_tokens.bool()
        if not real.any():  # e.g. a batch of empty strings: nothing to detect, and no NaN from an empty mean
            return logits.float().sum() * 0.0
        return F.binary_cross_entropy_with_logits(logits.float()[real], perturbed.float()[real])
