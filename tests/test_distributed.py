"""Data-parallel training: batch sharding, the distributed parameter, and 2 CPU ranks (Gloo, torchrun) against
one process that sees the same global batch.

The comparison is meaningful because nothing random happens during training: the model has no dropout, the
perturbation is the mask token at the most salient tokens, and the permutations share one seed. What remains
is floating-point order: each rank computes its part of the batch and the gradients are summed across ranks
instead of over one batch. Measured on a 2-core CPU (3 epochs, 15 steps): final weights within 2.3e-6 of the
single process, key encoder within 1.7e-7, queue keys within 6e-8, epoch losses within 3e-7 relative. The
tests allow 2e-5 (weights, queue) and 1e-5 relative (losses), some margin for other CPUs' kernels. A single
process that steps on the per-rank batch instead ends 1.1e-2 away, so the tolerance does tell them apart;
and with the ranks' losses left unweighted by their share of the batch, the comparison fails.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skcarl import CARLEmbedder
from skcarl._ddp import BatchShare, launched_by_torchrun, split_global_batch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_fits  # noqa: E402
from conftest import synthetic_affect, tiny_bert_folder  # noqa: E402

WEIGHT_TOLERANCE = 2e-5
LOSS_RTOL = 1e-5


# ============================================================================================ sharding
@pytest.mark.parametrize("n, world", [(37, 2), (8, 2), (5, 3), (1, 2), (2, 4), (9, 4)])
def test_a_global_batch_is_cut_into_contiguous_parts_in_rank_order(n, world):
    order = np.random.default_rng(0).permutation(100)
    index = order[:n]
    parts = split_global_batch(index, world, order)
    assert len(parts) == world and all(len(p) >= 1 for p in parts)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    joined = np.concatenate(parts)
    assert joined[:n].tolist() == index.tolist()  # gathered in rank order = the batch's own order
    if n < world:  # topped up from the start of the epoch's order, as DistributedSampler pads
        assert joined[n:].tolist() == np.resize(order, world - n).tolist()
    else:
        assert len(joined) == n


def test_the_ranks_contributions_add_up_to_the_global_batch_means():
    # part 0: 3 texts with 10 real tokens, part 1: 2 texts with 30 tokens
    steps = [{"contrastive_loss": 1.0, "detection_loss": 0.5, "task_loss": 2.0},
             {"contrastive_loss": 3.0, "detection_loss": 0.1, "task_loss": 4.0}]
    shares = [BatchShare(r, (3, 2), np.arange(5), token_fraction=f) for r, f in enumerate((0.25, 0.75))]
    parts = [s.contributions(step, detection_weight=0.1, task_weight=2.0) for s, step in zip(shares, steps)]
    total = {k: sum(p[k] for p in parts) for k in parts[0]}
    assert total["contrastive_loss"] == pytest.approx((3 * 1.0 + 2 * 3.0) / 5)
    assert total["detection_loss"] == pytest.approx((10 * 0.5 + 30 * 0.1) / 40)
    assert total["task_loss"] == pytest.approx((3 * 2.0 + 2 * 4.0) / 5)
    assert total["loss"] == pytest.approx(total["contrastive_loss"] + 0.1 * total["detection_loss"]
                                          + 2.0 * total["task_loss"])
    # the adversarial terms are per text, and count in the total with their weights
    for step in steps:
        step["view_loss"] = 1.0
    parts = [s.contributions(step, 0.1, 2.0, {"view_loss": 0.5, "consistency_loss": 3.0})
             for s, step in zip(shares, steps)]
    with_view = {k: sum(p[k] for p in parts) for k in parts[0]}
    assert with_view["view_loss"] == pytest.approx(1.0)
    assert with_view["loss"] == pytest.approx(total["loss"] + 0.5)


# ============================================================================================ switching it on
def test_torchrun_variables_are_recognised(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_by_torchrun()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched_by_torchrun()  # one rank: nothing to share
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()


def test_distributed_true_without_a_launch_fails_in_fit_with_the_command(tiny_bert, affect_data, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    texts, va = affect_data
    est = CARLEmbedder(tiny_bert, distributed=True, max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="torchrun --nproc_per_node"):
        est.fit(texts, va)
    assert not hasattr(est, "network_")


@pytest.mark.parametrize("value", ["yes", None, 1])
def test_a_bad_distributed_value_raises_in_scikit_learns_style(value, tiny_bert, affect_data):
    est = CARLEmbedder(tiny_bert, distributed=value, max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match=r"The 'distributed' parameter of CARLEmbedder must be 'auto' or a bool"):
        est.fit(*affect_data)


def test_false_and_auto_train_alone_outside_a_launch(tiny_bert, affect_data, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    texts, va = affect_data
    common = dict(max_epochs=1, device="cpu", random_state=0, batch_size=16)
    auto = CARLEmbedder(tiny_bert, **common).fit(texts, va)
    alone = CARLEmbedder(tiny_bert, distributed=np.bool_(False), **common).fit(texts, va)
    assert auto.loss_curve_ == alone.loss_curve_
    assert not torch.distributed.is_initialized()


# ============================================================================================ two ranks
@pytest.fixture(scope="module")
def two_rank_fits(tmp_path_factory):
    """The cases of ddp_fits.py fitted by 2 Gloo ranks under torchrun, and by one process with twice the
    batch (the same global batch) and with the per-rank batch."""
    model = tiny_bert_folder(tmp_path_factory.mktemp("nodropout-bert"), hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)
    out = tmp_path_factory.mktemp("ddp-fits")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "ddp_fits.py"), model, str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ddp_fits.run(model, out, 2 * ddp_fits.PER_RANK_BATCH, "single")
        ddp_fits.run(model, out, ddp_fits.PER_RANK_BATCH, "small-batch")
    finally:
        torch.set_num_threads(threads)
    return out


def load(out, case, who):
    return torch.load(out / f"{case}-{who}.pt", weights_only=False)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ddp_fits.cases()))
def test_every_rank_ends_with_the_same_model_key_encoder_queue_and_history(two_rank_fits, case):
    rank0, rank1 = load(two_rank_fits, case, "rank0"), load(two_rank_fits, case, "rank1")
    assert max_difference(rank0["network"], rank1["network"]) == 0.0
    assert max_difference(rank0["key_network"], rank1["key_network"]) == 0.0  # the momentum encoder
    assert torch.equal(rank0["queue_keys"], rank1["queue_keys"])
    assert torch.equal(rank0["queue_rows"], rank1["queue_rows"])
    assert rank0["history"] == rank1["history"]  # validation loss and early stopping agree
    assert rank0["va_map"] == rank1["va_map"]
    if rank0["saliency_cache"] is not None:  # cached saliency is shared: a text may come back on another rank
        assert torch.equal(rank0["saliency_cache"].nan_to_num(-1), rank1["saliency_cache"].nan_to_num(-1))
        assert not rank0["saliency_cache"].isnan().all(dim=1).any()  # every text's saliency was stored
    assert {rank0["device"], rank1["device"]} == {"cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["embedder", "classifier"])
def test_two_ranks_match_one_process_that_sees_the_same_global_batch(two_rank_fits, case):
    ranks, single = load(two_rank_fits, case, "rank0"), load(two_rank_fits, case, "single")
    small = load(two_rank_fits, case, "small-batch")
    assert ranks["n_iter"] == single["n_iter"] and ranks["best_epoch"] == single["best_epoch"]
    assert ranks["queue_size"] == single["queue_size"] == 24
    for got, want in zip(ranks["history"], single["history"], strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=LOSS_RTOL, abs=1e-7), (key, got, want)
    assert max_difference(ranks["network"], single["network"]) < WEIGHT_TOLERANCE
    assert max_difference(ranks["key_network"], single["key_network"]) < WEIGHT_TOLERANCE
    # the queue holds the same keys, in the same order, with the same label rows
    assert ranks["queue_keys"].shape == single["queue_keys"].shape == (24, 128)
    assert float((ranks["queue_keys"] - single["queue_keys"]).abs().max()) < WEIGHT_TOLERANCE
    assert torch.equal(ranks["queue_rows"], single["queue_rows"])
    # the tolerance tells a different global batch apart
    assert max_difference(small["network"], single["network"]) > 100 * WEIGHT_TOLERANCE


@pytest.mark.slow
def test_ranks_given_different_data_or_a_non_finite_loss_all_raise(two_rank_fits):
    for rank in (0, 1):
        messages = (two_rank_fits / f"errors-rank{rank}.txt").read_text().splitlines()
        assert messages[0].startswith("ValueError: A distributed fit needs the same training data on every "
                                      "rank, but the texts or labels differ"), messages
        assert messages[1].startswith("FloatingPointError: "), messages
        assert "at training step 2; the weights were not updated" in messages[1]
    assert "another rank" in (two_rank_fits / "errors-rank0.txt").read_text()  # the NaN was on rank 1


@pytest.mark.slow
def test_skcarl_fit_under_torchrun_saves_the_model_once(two_rank_fits):
    import skcarl

    assert [(two_rank_fits / f"cli-rank{r}.txt").read_text().split() for r in (0, 1)] == [["0", "1"], ["0", "0"]]
    model = skcarl.load(two_rank_fits / "cli-model", device="cpu")
    assert model.n_iter_ == 1 and model.transform(["i feel happy"]).shape == (1, 32)


def test_ddp_fits_is_importable_without_side_effects():
    """The helper runs under torchrun only; importing it (pytest's doctest collection does) starts nothing."""
    assert not torch.distributed.is_initialized()
    assert callable(ddp_fits.run) and synthetic_affect(4)[0]
