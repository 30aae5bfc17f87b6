"""Token saliency, the choice of tokens to perturb, and the perturbation operators.

Saliency is read off the gradient that the contrastive loss already left on the input token embeddings,
so choosing tokens costs no extra backward pass.
"""

from __future__ import annotations

import math

import torch

SALIENCY_MODES = ("grad_norm", "grad_x_input")
TOKEN_SELECTIONS = ("saliency", "random")
PERTURBATIONS = ("random", "unigram", "mask", "adversarial")


def token_saliency(grad: torch.Tensor, embeds: torch.Tensor, mode: str = "grad_norm") -> torch.Tensor:
    """Saliency a_it of every token, (B, T), from ∂L/∂E (B, T, H) and the embeddings E.

    ``"grad_norm"``: a_it = ‖∂L/∂E_it‖₂. ``"grad_x_input"``: a_it = |⟨∂L/∂E_it, E_it⟩|, the first-order
    change of the loss if the token were removed (Simonyan et al. 2014; Shrikumar et al. 2017).

    Examples
    --------
    >>> import torch
    >>> from skcarl.perturbation import token_saliency
    >>> grad = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])              # one sentence, two tokens
    >>> token_saliency(grad, torch.ones(1, 2, 2), "grad_norm")
    tensor([[5., 1.]])
    >>> token_saliency(grad, torch.ones(1, 2, 2), "grad_x_input")
    tensor([[7., 1.]])
    """
    grad = grad.float()
    if mode == "grad_norm":
        return grad.norm(dim=-1)
    if mode == "grad_x_input":
        return (grad * embeds.float()).sum(-1).abs()
    raise ValueError(f"Unknown saliency mode {mode!r}; expected one of {SALIENCY_MODES}.")


def select_tokens(scores: torch.Tensor, eligible: torch.Tensor, ratio: float) -> torch.Tensor:
    """Mark the ⌈ratio·n_i⌉ highest-scoring eligible tokens of each sentence (at least one).

    Parameters
    ----------
    scores : (B, T) tensor
        Saliency, or random numbers for the random-selection ablation.
    eligible : (B, T) bool tensor
        Real tokens: not padding, not special. Only these can be chosen.
    ratio : float
        ρ in (0, 1].

    Returns
    -------
    (B, T) bool tensor, True at the chosen tokens.

    Examples
    --------
    >>> import torch
    >>> from skcarl.perturbation import select_tokens
    >>> scores = torch.tensor([[9.0, 0.2, 0.9, 0.5, 9.0]])          # [CLS] w1 w2 w3 [SEP]
    >>> real = torch.tensor([[False, True, True, True, False]])
    >>> select_tokens(scores, real, ratio=0.15)                      # ceil(0.15 * 3) = 1 token
    tensor([[False, False,  True, False, False]])
    """
    eligible = eligible.bool()
    n_real = eligible.sum(1)
    # the small margin keeps float error from rounding 0.15 * 20 = 3.0000000000000004 up to 4
    k = torch.ceil(n_real.double() * ratio - 1e-9).long().clamp(min=1)
    k = torch.minimum(k, n_real)
    # every eligible score, even -inf or NaN, must rank above every ineligible position
    lowest = torch.finfo(torch.float32).min
    finite = torch.nan_to_num(scores.float(), nan=lowest, neginf=lowest)
    masked = finite.masked_fill(~eligible, -math.inf)
    order = masked.argsort(dim=1, descending=True, stable=True)
    take = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0) < k.unsqueeze(1)
    return torch.zeros_like(eligible).scatter(1, order, take) & eligible


class TokenPerturber:
    """Replace the chosen tokens, and say which tokens really changed.

    Parameters
    ----------
    kind : {"random", "unigram", "mask", "adversarial"}
        ``"random"``: a uniformly drawn non-special vocabulary token other than the original.
        ``"unigram"``: a token drawn from the training corpus' token frequencies (redrawn up to 8 times
        when it equals the original). ``"mask"``: the tokenizer's mask token. ``"adversarial"``: the
        embedding is moved along its own loss gradient, E_it + ε·‖Ē‖·g_it/‖g_it‖, where ‖Ē‖ is the mean
        norm of the batch's real token embeddings: a continuous perturbation that keeps the token id.
    vocab_size : int
    special_ids : iterable of int
        Ids never drawn as replacements.
    mask_id : int or None
    unigram_counts : (vocab_size,) tensor or None
        Token counts in the training corpus (needed for ``"unigram"``).
    eps : float
        ε for ``"adversarial"``, relative to the mean embedding norm.

    Examples
    --------
    >>> import torch
    >>> from skcarl.perturbation import TokenPerturber
    >>> perturber = TokenPerturber("mask", vocab_size=10, special_ids=[0, 1, 2, 3], mask_id=3)
    >>> ids = torch.tensor([[1, 5, 6, 2]])
    >>> perturber.replace_ids(ids, torch.tensor([[False, True, False, False]]))
    tensor([[1, 3, 6, 2]])
    >>> _ = torch.manual_seed(0)
    >>> new = TokenPerturber("random", 10, [0, 1, 2, 3]).replace_ids(ids, torch.tensor([[False, True, True, False]]))
    >>> bool((new[0, 1:3] != ids[0, 1:3]).all() and (new[0, 1:3] > 3).all())
    True
    """

    def __init__(self, kind, vocab_size, special_ids, mask_id=None, unigram_counts=None, eps=1.0):
        if kind not in PERTURBATIONS:
            raise ValueError(f"Unknown perturbation {kind!r}; expected one of {PERTURBATIONS} or None.")
        self.kind = kind
        self.eps = eps
        self.mask_id = mask_id
        special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        is_candidate = torch.ones(vocab_size, dtype=torch.bool)
        is_candidate[special[special < vocab_size]] = False
        self.candidates = torch.nonzero(is_candidate).squeeze(1)
        self.unigram_probs = None
        if kind == "unigram":
            counts = unigram_counts.double().clone()
            counts[~is_candidate] = 0
            if counts.sum() <= 0:
                raise ValueError("perturbation='unigram' needs at least one non-special token in the corpus.")
            self.unigram_probs = (counts / counts.sum()).float()
        if kind == "mask" and mask_id is None:
            raise ValueError("perturbation='mask' needs a tokenizer with a mask token.")

    def to(self, device):
        self.candidates = self.candidates.to(device)
        if self.unigram_probs is not None:
            self.unigram_probs = self.unigram_probs.to(device)
        return self

    def replace_ids(self, input_ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """New ids for a discrete operator; positions not chosen keep their id."""
        original = input_ids[chosen]
        if self.kind == "mask":
            replacement = torch.full_like(original, self.mask_id)
        elif self.kind == "random":
            # draw among the candidates minus the original: skip over the original's slot. An original
            # that is no candidate (an [UNK] inside a text) leaves all candidates open.
            n = len(self.candidates)
            slot = torch.searchsorted(self.candidates, original).clamp(max=n - 1)
            is_candidate = self.candidates[slot] == original
            draw = torch.randint(0, n, original.shape, device=input_ids.device)
            if n > 1:
                narrowed = torch.randint(0, n - 1, original.shape, device=input_ids.device)
                narrowed = narrowed + (narrowed >= slot).long()
                draw = torch.where(is_candidate, narrowed, draw)
            replacement = self.candidates[draw]
        else:  # unigram
            replacement = torch.multinomial(self.unigram_probs, len(original), replacement=True)
            for _ in range(8):
                same = replacement == original
                if not same.any():
                    break
                replacement[same] = torch.multinomial(self.unigram_probs, int(same.sum()), replacement=True)
        perturbed = input_ids.clone()
        perturbed[chosen] = replacement
        return perturbed

    def shift_embeddings(self, embeds: torch.Tensor, grad: torch.Tensor, chosen: torch.Tensor,
                         real: torch.Tensor) -> torch.Tensor:
        """E + δ for ``"adversarial"``; δ is a constant (no gradient flows through it)."""
        norms = embeds.detach().float()[real.bool()].norm(dim=-1)
        if norms.numel() == 0:  # a batch of blank texts: no token to shift (and the mean of no norms is NaN)
            return embeds
        scale = self.eps * norms.mean()
        direction = torch.nn.functional.normalize(torch.nan_to_num(grad.float()), dim=-1)
        delta = scale * direction * chosen.unsqueeze(-1)
        return embeds + delta.to(embeds.dtype)
