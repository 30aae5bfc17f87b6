"""Loss values of seeded CARL training steps, as JSON: run before and after a speed change and compare.

A speed-up must not change behaviour: the output of

    python -m benchmarks.step_fingerprint > before.json     # on the old commit
    python -m benchmarks.step_fingerprint > after.json      # on the new one
    cmp before.json after.json

must be identical. It covers every perturbation operator and both token selections, with the per-step
saliency refresh, on a tiny random BERT (CPU, float32). Run it with the same settings on both commits: a change of
default changes it.
"""

from __future__ import annotations

import json
import sys

import torch
from transformers import BertConfig, BertModel

from skcarl import CARLEmbedder
from skcarl.network import CARLNetwork
from skcarl.perturbation import PERTURBATIONS, TOKEN_SELECTIONS, TokenPerturber
from skcarl.training import CARLTrainer, TrainingConfig

# the estimators' defaults with detection on, and fixed values for the "auto" settings
SETTING = {**CARLEmbedder().get_params(), "label_temperature": 0.02, "ranking_weight": 0.0, "max_epochs": 3,
           "detection_weight": 0.1, "learning_rate": 2e-5}


def fingerprint(n_steps: int = 4) -> dict:
    out = {}
    for kind in PERTURBATIONS:
        for selection in TOKEN_SELECTIONS:
            torch.manual_seed(0)
            encoder = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64))
            network = CARLNetwork(encoder, projection_dim=16)
            perturber = TokenPerturber(kind, 50, [0, 1, 2, 3, 4], mask_id=4, unigram_counts=torch.arange(50),
                                       eps=SETTING["perturb_eps"])
            config = TrainingConfig.from_params(SETTING, queue_size=8, batch_size=4, token_selection=selection,
                                                use_amp=False)
            trainer = CARLTrainer(network, config, torch.device("cpu"), perturber, label_dim=2,
                                  steps_per_epoch=5, pad_id=0)
            generator = torch.Generator().manual_seed(1)
            values = []
            for _ in range(n_steps):
                ids = torch.randint(5, 50, (4, 9), generator=generator)
                ids[:, 0], ids[:, -1] = 2, 3
                ids[1, 6:], ids[1, 5] = 0, 3  # one padded sentence
                mask = ids != 0
                real = mask & (ids != 2) & (ids != 3)
                rows = torch.rand(4, 2, generator=generator)
                values.append(trainer.training_step({"input_ids": ids, "attention_mask": mask,
                                                     "real_tokens": real}, rows))
            out[f"{kind}/{selection}"] = values
    return out


if __name__ == "__main__":
    json.dump(fingerprint(), sys.stdout, indent=1)
    sys.stdout.write("\n")
