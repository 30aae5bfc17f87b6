"""A paired check of ``head_refit``: one CARL fit per draw, scored with its jointly trained head and with the
head re-fitted on the tuned encoder's features, so that the two differ only by the head (half the fits of two
benchmark rows, and no draw-to-draw noise between them).

    python -m benchmarks.fewshot.head_refit --task va --sizes 64,256 --draws 100,101,102
    python -m benchmarks.fewshot.head_refit --task ekman --sizes 8,16 --draws 100,101,102

Dev split, ``--n-eval`` rows (1,000 by default, drawn as in the benchmark). Prints one JSON line per fit.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from skcarl import CARLClassifier, CARLRegressor
from skcarl.tokens import tokenize

from .data import load_task
from .run import scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("ekman", "va"), required=True)
    parser.add_argument("--sizes", required=True, help="rows per class (ekman) or texts (va), comma-separated")
    parser.add_argument("--draws", default="100,101,102")
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load_task(args.task, "dev", args.data_dir, n_eval=args.n_eval)
    texts, truth = task.evaluation["text"].tolist(), task.targets(task.evaluation)
    kind = CARLClassifier if args.task == "ekman" else CARLRegressor
    for size in map(int, args.sizes.split(",")):
        for draw in map(int, args.draws.split(",")):
            train = task.draw(size, draw)
            started = time.perf_counter()
            joint, refit = paired_fits(kind, train["text"].tolist(), task.targets(train), random_state=draw)
            print(json.dumps({"task": args.task, "size": size, "draw": draw,
                              "fit_s": round(time.perf_counter() - started),
                              "joint": scores(args.task, joint.predict(texts), truth),
                              "refit": scores(args.task, refit.predict(texts), truth)}), flush=True)


def paired_fits(kind, texts, y, **params):
    """One fit of ``kind(**params)`` with its jointly trained head, and a copy of it whose head is the one
    that ``head_refit=True`` would give the same fit."""
    joint = kind(**params, head_refit=False).fit(texts, y)
    refit = copy.deepcopy(joint).set_params(head_refit=True)
    # the step that head_refit adds to fit, on the same tuned encoder and training texts
    prepared = refit._prepare_targets(y, len(texts), np.random.default_rng(0))
    tokens = tokenize(refit.tokenizer_, texts, refit._max_tokens(refit.network_))
    refit._refit_head(refit.network_, refit.tokenizer_, tokens, prepared, np.arange(len(texts)), refit.device_)
    return joint, refit


if __name__ == "__main__":
    main()
