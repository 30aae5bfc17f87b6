import torch


def similarity_logits(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """s_ij = q_i · k_j / τ, in float32 whatever the autocast dtype (the softmax needs the range)."""
    return queries.float() @ keys.float().T / temperature


def label_distances(query_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
    """‖y_i − y_j‖₂ for every query/candidate pair, (B, N).

    Written out rather than with ``torch.cdist`` so that the gradient stays finite at zero distance
    (labels are learnable when the VA anchors are).
    """
    diff = query_labels.float().unsqueeze(1) - key_labels.float().unsqueeze(0)
    return diff.pow(2).sum(-1).clamp(min=1e-12).sqrt()
