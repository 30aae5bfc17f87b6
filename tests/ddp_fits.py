"""Seeded CARL fits for the data-parallel tests: run by tests/test_distributed.py, once under torchrun and
once in the test process itself, and written to files for comparison.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_fits.py MODEL_DIR OUT_DIR

Each rank writes ``OUT_DIR/<case>-rank<r>.pt``: the fitted attributes, the network's and the key network's
weights, the queue and the saliency cache at the end of training.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

N_TEXTS = 46  # 9 validation + 37 training texts: the last global batch of 8 has 5 texts, split 3 + 2
PER_RANK_BATCH = 4
CLASSES = np.array(["joy", "anger", "sadness", "calmness"])


def cases():
    """name -> (estimator class, parameters, kind of y); ``batch_size`` is set by the caller."""
    from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor

    common = dict(max_epochs=3, random_state=0, device="cpu", learning_rate=1e-3, queue_size=24, detection_weight=0.1)
    return {
        # deterministic given the weights: no dropout (in the model folder), mask tokens chosen by saliency
        "embedder": (CARLEmbedder, dict(common, perturbation="mask", validation_fraction=0.2, va_range=(1, 9)),
                     "va"),
        "classifier": (CARLClassifier, dict(common, perturbation="mask", va_map="learn",
                                            contrastive_loss="rank_n_contrast"), "classes"),
        # random replacements and first visits: the ranks must agree, a single process cannot match
        "regressor_cached": (CARLRegressor, dict(common, saliency_refresh="cached", perturbation="random"), "va"),
    }


def data(kind):
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import synthetic_affect

    texts, va = synthetic_affect(N_TEXTS, seed=1)
    # 5 to 8 words: the ranks' parts differ in real tokens, which L_det averages over
    texts = [" ".join(text.split()[: 8 - i % 4]) for i, text in enumerate(texts)]
    return texts, (va if kind == "va" else CLASSES[np.arange(N_TEXTS) % 4])


def run(model_dir, out_dir, batch_size, suffix):
    """Fit every case and save what the tests compare to ``out_dir/<case>-<suffix>.pt``."""
    from skcarl.training import CARLTrainer

    trainers = []
    fit = CARLTrainer.fit

    def keep_trainer(self, *args, **kwargs):
        trainers.append(self)
        return fit(self, *args, **kwargs)

    CARLTrainer.fit = keep_trainer
    try:
        for name, (cls, params, kind) in cases().items():
            est = cls(model_name_or_path=model_dir, batch_size=batch_size, **params).fit(*data(kind))
            trainer = trainers[-1]
            queue_keys, queue_rows = trainer.queue.contents()
            cache = trainer.saliency_cache
            torch.save({
                "history": [{k: v for k, v in r.items() if k != "duration"} for r in est.history_],
                "n_iter": est.n_iter_, "best_epoch": est.best_epoch_, "queue_size": est.queue_size_,
                "network": {k: v.detach().clone() for k, v in est.network_.state_dict().items()},
                "key_network": {k: v.detach().clone() for k, v in trainer.key_network.state_dict().items()},
                "queue_keys": queue_keys.clone(), "queue_rows": queue_rows.clone(),
                "saliency_cache": None if cache is None else cache.scores.clone(),
                "va_map": getattr(est, "va_map_", None),
                "device": str(est.device_),
            }, Path(out_dir) / f"{name}-{suffix}.pt")
    finally:
        CARLTrainer.fit = fit


def errors(model_dir, out_dir, rank):
    """Two failures every rank must report alike: other data on rank 1, and a NaN loss on rank 1 at step 2."""
    from skcarl import CARLEmbedder
    from skcarl.losses import SoftInfoNCELoss

    texts, va = data("va")
    params = dict(model_name_or_path=model_dir, max_epochs=1, batch_size=PER_RANK_BATCH, device="cpu",
                  random_state=0)
    lines = []
    try:
        CARLEmbedder(**params).fit(texts, va if rank == 0 else va[::-1].copy())
        lines.append("no error")
    except ValueError as exc:
        lines.append(f"ValueError: {exc}")
    forward, calls = SoftInfoNCELoss.forward, []

    def nan_at_second_call(self, *args):
        calls.append(1)
        loss = forward(self, *args)
        return loss * float("nan") if rank == 1 and len(calls) == 2 else loss

    SoftInfoNCELoss.forward = nan_at_second_call
    try:
        CARLEmbedder(**params).fit(texts, va)
        lines.append("no error")
    except FloatingPointError as exc:
        lines.append(f"FloatingPointError: {exc}")
    finally:
        SoftInfoNCELoss.forward = forward
    (Path(out_dir) / f"errors-rank{rank}.txt").write_text("\n".join(lines) + "\n")


def command_line(out_dir, model_dir, rank):
    """``skcarl fit`` under torchrun: every rank trains, rank 0 alone saves the model."""
    import pandas as pd

    from skcarl import _base, cli

    texts, va = data("va")
    csv = Path(out_dir) / f"train-rank{rank}.csv"
    pd.DataFrame({"text": texts, "valence": va[:, 0], "arousal": va[:, 1]}).to_csv(csv, index=False)
    save, saves = _base._CARLBase.save, []

    def counted_save(self, *args, **kwargs):
        saves.append(1)
        return save(self, *args, **kwargs)

    _base._CARLBase.save = counted_save
    try:
        status = cli.main(["fit", str(csv), "--va-cols", "valence", "arousal", "--estimator", "embedder",
                           "--param", f"model_name_or_path={model_dir}", "--param", "max_epochs=1",
                           "--param", "batch_size=4",
                           "--device", "cpu", "--seed", "0", "--quiet", "--out", str(Path(out_dir) / "cli-model")])
    finally:
        _base._CARLBase.save = save
    (Path(out_dir) / f"cli-rank{rank}.txt").write_text(f"{status} {len(saves)}\n")


if __name__ == "__main__":
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)  # two ranks on two cores
    rank = int(os.environ["RANK"])
    run(sys.argv[1], sys.argv[2], PER_RANK_BATCH, suffix=f"rank{rank}")
    # fit initialised the process group from torchrun's variables, with Gloo for the CPU
    assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 2
    errors(sys.argv[1], sys.argv[2], rank)
    command_line(sys.argv[2], sys.argv[1], rank)
    dist.destroy_process_group()
