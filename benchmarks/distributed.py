"""Data-parallel training on this machine's CPU: 2 torchrun processes (Gloo) against 1 process, same work.

Both runs fine-tune the same encoder on the same texts with the same global batch (the single process takes
``2 × batch`` texts per step, each rank ``batch``), so they compute the same model (see
tests/test_distributed.py) and only the wall time differs. The single process may use all the machine's cores
for its intra-op threads; each of the 2 ranks gets half of them. The figure compared is the training loop's
time (the epochs' ``duration`` in ``history_``), without loading the model or tokenising.

    python -m benchmarks.distributed                    # MiniLM when installed, else a small random BERT
    python -m benchmarks.distributed --texts 256 --epochs 2 --batch 8

Prints one JSON object: seconds per run, texts per second, and ``speedup`` = 1-process time / 2-process time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _model() -> tuple[str, str]:
    """The offline MiniLM when installed, else a 4-layer random BERT of MiniLM's width (written to a temp dir)."""
    from skcarl.backbone import DEFAULT_BACKBONE, load_backbone

    try:
        load_backbone(DEFAULT_BACKBONE)
        return DEFAULT_BACKBONE, "all-MiniLM-L6-v2"
    except Exception:  # noqa: BLE001 - any failure to load means: not installed here
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import tiny_bert_folder

        folder = tiny_bert_folder(tempfile.mkdtemp(prefix="skcarl-bench-"), hidden_size=384, layers=4)
        return folder, "random BERT, 4 layers, hidden 384"


def worker(args) -> None:
    """One run (the single process, or one rank): fit, and let rank 0 write the timings."""
    import torch

    from skcarl import CARLEmbedder
    from skcarl.datasets import load_affect_demo
    from skcarl.distributed import is_main_process

    data = load_affect_demo().sample(n=args.texts, random_state=0)
    world = int(os.environ.get("WORLD_SIZE", 1))
    model = CARLEmbedder(args.model, va_range=(1, 9), max_epochs=args.epochs, batch_size=args.batch * 2 // world,
                         max_length=64, device="cpu", random_state=0)
    started = time.perf_counter()
    model.fit(data["text"].tolist(), data[["valence", "arousal"]].to_numpy())
    if is_main_process():
        loop = sum(record["duration"] for record in model.history_)
        Path(args.out).write_text(json.dumps({
            "processes": world, "threads_per_process": torch.get_num_threads(),
            "texts_per_step": args.batch * 2, "fit_s": round(time.perf_counter() - started, 2),
            "training_loop_s": round(loop, 2), "texts_per_s": round(args.texts * args.epochs / loop, 1),
            "final_loss": model.loss_curve_[-1],
        }))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="texts per rank and step (the single process: 2x)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    model, name = _model()
    cores = os.cpu_count() or 1
    worker_args = ["--worker", "--model", model, "--texts", str(args.texts), "--epochs", str(args.epochs),
                   "--batch", str(args.batch)]
    launchers = {
        "1_process": ([sys.executable, "-m", "benchmarks.distributed"], cores),
        "2_processes": ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "--module", "benchmarks.distributed"], max(1, cores // 2)),
    }
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (launcher, threads) in launchers.items():
            out = Path(tmp) / f"{label}.json"
            subprocess.run([*launcher, *worker_args, "--out", str(out)], env=dict(env, OMP_NUM_THREADS=str(threads)),
                           check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
            runs[label] = json.loads(out.read_text())
    result = {"model": name, "cpu_cores": cores, "texts": args.texts, "epochs": args.epochs, **runs,
              "speedup": round(runs["1_process"]["training_loop_s"] / runs["2_processes"]["training_loop_s"], 2)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
