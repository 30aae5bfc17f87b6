"""The last check of ``fit``: a network that computes NaN or infinity is never published as the fitted model.

The trainer stops on a non-finite loss, but a loss is computed before the update that follows it: the last
steps can still leave non-finite weights (an update of 1e30 from ``learning_rate=1e30``), or finite weights so
large that the forward pass overflows. So, after training and before the fitted attributes are set, every
weight is checked and the network is run on a few training texts, as ``transform`` and ``predict`` would run it.
"""

from __future__ import annotations

import numpy as np
import torch

from .inference import embed_texts, map_texts
from .training import MixedPrecision

# Training texts the fitted network is run on: one small batch, enough to see an overflow that the weights of
# every layer would cause on any input.
PROBE_TEXTS = 8


def _non_finite_tensors(network) -> list[str]:
    named = [*network.named_parameters(), *network.named_buffers()]
    return [name for name, tensor in named if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def _advice(estimator, device: torch.device, learning_rate: float) -> str:
    amp = estimator.use_amp is not False and device.type == "cuda"
    rate = repr(estimator.learning_rate)
    if estimator.learning_rate != learning_rate:  # "auto": name the rate it gave
        rate += f", {learning_rate:g} in this fit"
    return (f"Lower learning_rate (now {rate}) or head_learning_rate (now "
            f"{estimator.head_learning_rate!r})" + (", or set use_amp=False" if amp else "") + ".")


def check_finite_fit(estimator, network, tokenizer, texts, *, max_length: int, device: torch.device,
                     learning_rate: float) -> None:
    """Raise ``FloatingPointError`` when ``network`` holds a non-finite weight or computes a non-finite output
    on ``texts[:PROBE_TEXTS]`` (embeddings, and the prediction head's outputs if it has one).

    The advice names the parameters of ``estimator`` that set the size of the updates, and the encoder's
    ``learning_rate`` this fit used.
    """
    bad = _non_finite_tensors(network)
    if bad:
        raise FloatingPointError(
            f"Training ended with non-finite weights (NaN or infinity) in {len(bad)} tensor(s), the first "
            f"{bad[0]}, although every loss was finite: the last updates were too large. The model was not "
            f"kept. {_advice(estimator, device, learning_rate)}")
    probe = list(texts[:PROBE_TEXTS])
    with torch.no_grad(), MixedPrecision(device, estimator.use_amp, training=False).autocast():
        outputs = [embed_texts(network, tokenizer, probe, max_length=max_length, batch_size=len(probe),
                               device=device)[0]]
        if network.task_head is not None:
            outputs.append(map_texts(network.predict_outputs, network.task_head.out_features, tokenizer, probe,
                                     max_length=max_length, batch_size=len(probe), device=device,
                                     network=network)[0])
    if not all(np.isfinite(out).all() for out in outputs):
        raise FloatingPointError(
            "Training ended with finite weights so large that the fitted network computes NaN or infinity on "
            "its training texts (the forward pass overflows). The model was not kept. "
            + _advice(estimator, device, learning_rate))
