"""The trainable network: the encoder with CARL's projection head and token head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .backbone import pool


class CARLNetwork(nn.Module):
    """Encoder f, projection head g (2-layer MLP) and token head (linear) of CARL.

    ``embed_tokens`` → ``encode`` → ``sentence`` gives the representation that ``transform`` returns;
    ``project`` gives the normalised contrastive query q = normalize(g(pool(f(x)))), or, with
    ``projection_dim=None``, q = normalize(pool(f(x))): the loss then shapes the embedding itself;
    ``detect`` gives one perturbed-or-not logit per token; ``task_head`` (regressor and classifier only)
    reads the pooled sentence vector.

    Examples
    --------
    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> encoder = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                                intermediate_size=16))
    >>> from skcarl.network import CARLNetwork
    >>> network = CARLNetwork(encoder, projection_dim=4, n_task_outputs=2)
    >>> ids, mask = torch.tensor([[2, 7, 8, 3]]), torch.ones(1, 4, dtype=torch.bool)
    >>> network.embed_sentences(ids, mask).shape, network.query(ids, mask).shape
    (torch.Size([1, 8]), torch.Size([1, 4]))
    """

    def __init__(self, encoder: nn.Module, projection_dim: int | None = 128, pooling: str = "mean",
                 n_task_outputs: int = 0):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.pooling = pooling
        if projection_dim is None:
            self.projection = nn.Identity()
        else:
            self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, projection_dim))
        self.token_head = nn.Linear(hidden, 1)
        # regression or classification head of the supervised estimators, on the pooled sentence vector
        self.task_head = nn.Linear(hidden, n_task_outputs) if n_task_outputs else None

    @property
    def projection_dim(self) -> int | None:
        """Width of the projection head's output; None without a head."""
        return None if isinstance(self.projection, nn.Identity) else self.projection[-1].out_features

    @property
    def key_dim(self) -> int:
        """Width of a query or key q: the projection's, or the encoder's without a projection head."""
        return self.encoder.config.hidden_size if self.projection_dim is None else self.projection_dim

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input token embeddings E (B, T, H): the tensor whose gradient is the token saliency."""
        return self.encoder.get_input_embeddings()(input_ids)

    def encode(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, T, H) of the encoder run on embeddings E."""
        return self._encoder(inputs_embeds=embeds, attention_mask=attention_mask.long()).last_hidden_state

    def sentence(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden, attention_mask, self.pooling)

    def project(self, sentence: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(sentence).float(), dim=-1)

    def detect(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.token_head(hidden).squeeze(-1)

    def query(self, input_ids, attention_mask):
        """q for a batch of token ids (used for keys and validation; training calls the parts itself)."""
        hidden = self.encode(self.embed_tokens(input_ids), attention_mask)
        return self.project(self.sentence(hidden, attention_mask))

    @torch.inference_mode()
    def embed_sentences(self, input_ids, attention_mask) -> torch.Tensor:
        """L2-normalised pooled encoder output: the embedding ``transform`` returns."""
        return F.normalize(self.pooled(input_ids, attention_mask).float(), dim=-1)

    @torch.inference_mode()
    def predict_outputs(self, input_ids, attention_mask) -> torch.Tensor:
        """Raw outputs of the task head (standardised values or logits)."""
        return self.task_head(self.pooled(input_ids, attention_mask)).float()

    @torch.inference_mode()
    def pooled_features(self, input_ids, attention_mask) -> torch.Tensor:
        """The pooled sentence vector the task head reads (for initialising the head by a linear probe)."""
        return self.pooled(input_ids, attention_mask)

    def pooled(self, input_ids, attention_mask) -> torch.Tensor:
        # A batch without padding (common once texts are sorted by length) needs no attention mask, and
        # attention without one takes the faster kernels.
        mask = None if bool(attention_mask.all()) else attention_mask.long()
        hidden = self._encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return self.sentence(hidden, attention_mask)

    # ------------------------------------------------------------------ torch.compile
    def compile_encoder(self) -> None:
        """Run the encoder through :func:`torch.compile` from now on (idempotent).

        The compiled function lives outside the module's state: it is neither saved, pickled nor deep-copied
        (the momentum encoder, a deep copy, compiles its own).
        """
        if "_compiled_encoder" not in self.__dict__:
            self.__dict__["_compiled_encoder"] = torch.compile(self.encoder, dynamic=True)

    @property
    def is_compiled(self) -> bool:
        return "_compiled_encoder" in self.__dict__

    @property
    def _encoder(self):
        return self.__dict__.get("_compiled_encoder", self.encoder)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.pop("_compiled_encoder", None)
        return state
