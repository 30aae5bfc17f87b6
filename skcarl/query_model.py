"""The query side of a training step behind one ``forward`` per pass, as DistributedDataParallel needs it.

Each pass (the L_cont pass, the L_det pass, the perturbed pass of the adversarial terms, the one pass of
``saliency_refresh="cached"``) is a method of :class:`QueryModel`; the step calls ``model("contrastive", ...)``
so that a data-parallel fit, whose ``model`` is the DistributedDataParallel wrapper, exchanges the gradients of
every pass. The step itself is :meth:`skcarl.training.CARLTrainer.training_step`.
"""

from __future__ import annotations

import torch


class _Kept:
    """A tensor handed out of ``forward`` untouched. DistributedDataParallel passes the tensors a forward
    returns through an identity function of its own; the gradient that ``retain_grad`` keeps (the saliency)
    lands on the original, which only this wrapper reaches."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class QueryModel(torch.nn.Module):
    """The trained modules of a step behind one ``forward`` per pass: ``model(part, *args)``.

    DistributedDataParallel exchanges the gradients of what its module's ``forward`` computed; a step that
    called the network's parts (``embed_tokens``, ``encode``, ...) directly would bypass it. Each pass of the query
    side is therefore one call, and it includes the label points (the class anchors can be learnt) and the
    task head. A single process calls the same module unwrapped, so both run the same code.

    Examples
    --------
    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> from skcarl.network import CARLNetwork
    >>> from skcarl.query_model import QueryModel
    >>> from skcarl.va_labels import ContinuousLabels
    >>> encoder = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                                intermediate_size=16))
    >>> model = QueryModel(CARLNetwork(encoder, projection_dim=4), ContinuousLabels())
    >>> ids, mask = torch.tensor([[2, 7, 8, 3]]), torch.ones(1, 4, dtype=torch.bool)
    >>> embeds, sentence, queries, task_outputs, points = model("contrastive", ids, mask, torch.zeros(3, 2),
    ...                                                         False, False)
    >>> embeds.tensor.shape, queries.shape, task_outputs, points.shape
    (torch.Size([1, 4, 8]), torch.Size([1, 4]), None, torch.Size([3, 2]))
    """

    def __init__(self, network, label_points):
        super().__init__()
        self.network = network
        self.label_points = label_points

    PASSES = ("contrastive", "detection", "perturbed", "one_pass")

    def forward(self, part: str, *args):
        """Run the pass named ``part`` (one of ``PASSES``) on ``args``.

        The pass is named, not called as a method, because DistributedDataParallel prepares the exchange of
        gradients in its own ``forward``: ``ddp.module.contrastive(...)`` would skip it, and the ranks' weights
        would drift apart. One DDP wrapper must hold all the passes (they share the encoder), so its one
        ``forward`` dispatches.
        """
        if part not in self.PASSES:
            raise ValueError(f"part={part!r} is not a pass of the step; expected one of {self.PASSES}.")
        return getattr(self, part)(*args)

    def contrastive(self, ids, mask, candidate_rows, keep_saliency: bool, with_task: bool):
        """The L_cont pass: input embeddings (kept), sentence vectors, queries, task outputs, candidate points."""
        net = self.network
        embeds = net.embed_tokens(ids)
        if keep_saliency:
            embeds.retain_grad()
        sentence = net.sentence(net.encode(embeds, mask), mask)
        queries = net.project(sentence)
        return _Kept(embeds), sentence, queries, self._task(sentence, with_task), self.label_points(candidate_rows)

    def detection(self, ids, mask, shift):
        """The L_det pass of the per-step mode: token logits on the perturbed sentences."""
        embeds = self.network.embed_tokens(ids)
        if shift is not None:
            embeds = shift(embeds)
        return self.network.detect(self.network.encode(embeds, mask))

    def perturbed(self, ids, mask, shift):
        """The pass over the perturbed sentences when an adversarial term reads them: token logits and queries."""
        net = self.network
        embeds = net.embed_tokens(ids)
        if shift is not None:
            embeds = shift(embeds)
        hidden = net.encode(embeds, mask)
        return net.detect(hidden), net.project(net.sentence(hidden, mask))

    def one_pass(self, perturbed_ids, mask, candidate_rows, with_task: bool):
        """The single pass of ``saliency_refresh="cached"``: what both passes above return, at once."""
        net = self.network
        embeds = net.embed_tokens(perturbed_ids)
        embeds.retain_grad()
        hidden = net.encode(embeds, mask)
        sentence = net.sentence(hidden, mask)
        queries = net.project(sentence)
        return (_Kept(embeds), net.detect(hidden), sentence, queries, self._task(sentence, with_task),
                self.label_points(candidate_rows))

    def _task(self, sentence, with_task):
        return self.network.task_head(sentence) if with_task else None
