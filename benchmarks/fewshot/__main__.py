"""Command line of the few-shot protocol; ``python -m benchmarks.fewshot --help``."""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from . import __doc__ as PROTOCOL_DOC
from .data import EKMAN_SHOTS, EMOBANK_SIZES, load_task
from .methods import METHODS
from .report import markdown, plot, write_json
from .run import method_name, run_one

REPO = Path(__file__).resolve().parents[2]


def parse_params(text: str) -> dict:
    """``"max_epochs=10,learning_rate=1e-4"`` → {"max_epochs": 10, "learning_rate": 0.0001}."""
    params = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _ints(text):
    return tuple(int(v) for v in text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fewshot", description=PROTOCOL_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="ekman,va", help="ekman, va or both (default)")
    parser.add_argument("--split", default="test", choices=("dev", "test"))
    parser.add_argument("--n-eval", type=int, default=None, help="score on this many rows of the split "
                        "(dev study only; the report reads the whole split)")
    parser.add_argument("--draws", type=int, default=5, help="draws of the training rows (seeds 0..draws-1)")
    parser.add_argument("--first-draw", type=int, default=0)
    parser.add_argument("--shots", type=_ints, default=EKMAN_SHOTS, help="Ekman rows per class")
    parser.add_argument("--sizes", type=_ints, default=EMOBANK_SIZES, help="EmoBank training texts")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"among {', '.join(METHODS)}")
    parser.add_argument("--carl", action="append", default=[], metavar="PARAMS",
                        help="an extra CARL row with these parameters (e.g. 'max_epochs=10,learning_rate=1e-4'); "
                        "repeatable")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work-dir", default=str(REPO / "benchmarks" / ".runs" / "fewshot"))
    parser.add_argument("--kept-only", action="store_true", help="report the runs kept in --work-dir, train "
                        "nothing (the table then says which runs it holds)")
    parser.add_argument("--tag", default=None, help="write docs/benchmarks/fewshot-TAG.{md,json,png}")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = [(m, {}) for m in args.methods.split(",") if m]
    rows += [("carl", parse_params(p)) for p in args.carl]
    unknown = sorted({m for m, _ in rows} - set(METHODS))
    if unknown:
        raise SystemExit(f"Unknown methods {unknown}; choose among {sorted(METHODS)}.")
    draws = range(args.first_draw, args.first_draw + args.draws)
    results = []
    for task_name in args.tasks.split(","):
        task = load_task(task_name, args.split, args.data_dir, args.n_eval)
        sizes = args.shots if task_name == "ekman" else args.sizes
        for size in sizes:
            for draw in draws:
                for base, params in rows:
                    if task_name not in METHODS[base].tasks:
                        continue
                    result = run_one(task, args.split, size, draw, base, params, Path(args.work_dir),
                                     args.threads, compute=not args.kept_only)
                    if result is None:
                        continue
                    results.append(result)
                    headline = result.error or " ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
                    print(f"{task_name:5s} {size:5d} draw {draw} {result.method:40s} {headline}  "
                          f"fit {result.fit_seconds:.0f} s", flush=True)
    methods = list(dict.fromkeys(method_name(m, p) for m, p in rows))
    meta = {"command": "python -m benchmarks.fewshot " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "split": args.split, "draws": f"{args.first_draw}..{args.first_draw + args.draws - 1}",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                       f"{torch.__version__}, {torch.get_num_threads()} thread(s)",
            "date": datetime.date.today().isoformat(),
            "note": "scored on " + ("all rows" if args.n_eval is None else f"{args.n_eval} rows") + " of the split"
                    + ("; read from the runs kept on disk, each trained in its own process on this machine "
                       "(a size or draw without a row was not run)" if args.kept_only else "")}
    text = markdown(meta, results, methods)
    print(text)
    if args.tag:
        out = REPO / "docs" / "benchmarks" / f"fewshot-{args.tag}"
        out.with_suffix(".md").write_text(text + "\n")
        write_json(out.with_suffix(".json"), meta, results)
        plot(results, methods, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
