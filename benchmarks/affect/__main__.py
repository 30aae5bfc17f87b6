"""Command line of the affect benchmark suite; ``python -m benchmarks.affect --help``."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from skcarl import CARLEmbedder

from . import __doc__ as SUITE_DOC
from .baselines import PlainFineTuning
from .methods import (
    ABLATIONS,
    Budget,
    DiscreteSupCon,
    Method,
    _carl,
    all_methods,
    with_learning_rate,
)
from .report import plot_projection, plot_scores, render, write_json
from .suite import PROFILES, load_corpus, run_suite

REPO = Path(__file__).resolve().parents[2]
_BASELINES = {"plain": PlainFineTuning, "supcon_bins": DiscreteSupCon}

# One factor at a time around the estimators' defaults, scored on dev only (``--tune``).
TUNING_GRID = {
    "learning_rate": [2e-5, 5e-5, 1e-4, 2e-4],
    "label_temperature": [0.01, 0.03, 0.05, 0.08],
    "detection_weight": [0.0, 0.5],
    "perturb_ratio": [0.3],
    "temperature": [0.1, 0.2, 0.5],
    "queue_size": [1024],
    "momentum": [0.9, 0.99],
    "projection_dim": [None],
    "contrastive_loss": ["soft_infonce", "weighted_supcon", "rank_n_contrast"],
    "ranking_weight": [1.0, 5.0, 20.0, 50.0, 100.0, 200.0],
    "ranking_temperature": [0.1, 0.5, 1.0],
}


def tuning_methods(base: dict) -> dict:
    """The frozen encoder (for reference), CARL with ``base`` changed from the defaults, and one-factor
    variations of that. A setting is named by what it changes from the defaults ("carl" for none), so that
    one met in an earlier round is read back, not trained again."""
    defaults = CARLEmbedder().get_params()

    def method(params):
        changed = {k: v for k, v in params.items() if defaults[k] != v}
        name = " ".join(f"{k}={v}" for k, v in changed.items()) or "carl"
        return name, Method(name, name, "tuning", _carl(**changed))

    methods = dict([("frozen", all_methods()["frozen"]), method(base)])
    for param, values in TUNING_GRID.items():
        for value in values:
            methods.update([method({**base, param: value})])
    # the trained baselines get their own learning rate, chosen on dev as CARL's is
    for name in ("plain", "supcon_bins"):
        for lr in TUNING_GRID["learning_rate"]:
            label = f"{name} learning_rate={lr}"
            methods[label] = Method(label, label, "tuning", with_learning_rate(_BASELINES[name], lr))
    return methods


def parse_params(text: str) -> dict:
    """``"learning_rate=1e-4,perturbation=mask"`` → {"learning_rate": 0.0001, "perturbation": "mask"}."""
    params = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, _, value = item.partition("=")
        default, parsed = CARLEmbedder().get_params()[key], _literal(value)
        # a string parameter stays a string unless it is a number ("auto" or a float: label_temperature)
        numeric = isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
        params[key] = value if isinstance(default, str) and value != "None" and not numeric else parsed
    return params


def _literal(value: str):
    import ast
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def machine() -> str:
    device = "CPU"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {device}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.affect", description=SUITE_DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="same as --profile quick (about 10 minutes on 2 cores)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="data, seeds and methods: " + "; ".join(f"{k}: {v.note}" for k, v in PROFILES.items()))
    p.add_argument("--tune", action="store_true",
                   help="the dev-set study instead: CARL with one parameter changed at a time, dev scores only")
    p.add_argument("--tune-base", default="", metavar="PARAM=VALUE,...",
                   help="with --tune: vary one parameter at a time around these settings instead of the defaults")
    p.add_argument("--corpora", default="emobank,goemotions", help="comma-separated: emobank, goemotions")
    p.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(all_methods()))
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    p.add_argument("--backbone", default=Budget.backbone, help="Hugging Face name or folder of the encoder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=Budget.batch_size)
    p.add_argument("--max-length", type=int, default=Budget.max_length)
    p.add_argument("--data-dir", default=None, help="folder with emobank/ and goemotions/ (default: ../shared/data)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="where tables and plots go")
    p.add_argument("--work-dir", default=str(REPO / "benchmarks" / ".runs"),
                   help="per-run results, so that an interrupted run resumes (default: benchmarks/.runs)")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: tables of the runs already kept in the work dir (the others left out)")
    p.add_argument("--tag", default=None, help="name of the output files (default: the profile, or 'tune')")
    return p.parse_args(argv)


def _rate(learning_rate) -> str:
    return learning_rate if isinstance(learning_rate, str) else f"{learning_rate:g}"


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    profile_name = "quick" if args.quick else (args.profile or "cpu")
    profile = PROFILES[profile_name]
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else profile.seeds
    profile = type(profile)(**{**profile.__dict__, "seeds": seeds,
                               "epochs": args.epochs or profile.epochs})
    # the study varies parameters around the estimators' defaults; a profile's rates are its chosen ones
    learning_rates = {} if args.tune else (profile.learning_rates or {})
    budget = Budget(backbone=args.backbone, device=args.device, epochs=profile.epochs, batch_size=args.batch_size,
                    max_length=args.max_length,
                    learning_rate=learning_rates.get("carl", CARLEmbedder().learning_rate))
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    if args.tune:
        if not args.seeds:  # a study of many settings: one seed each unless asked
            profile = type(profile)(**{**profile.__dict__, "seeds": seeds[:1]})
            seeds = profile.seeds
        methods, splits = tuning_methods(parse_params(args.tune_base)), ("dev",)
        tag = args.tag or f"tune-{profile_name}"
        method_names = list(methods) if args.methods is None else args.methods.split(",")
    else:
        methods, splits, tag = all_methods(learning_rates), ("dev", "test"), args.tag or profile_name
        # a profile lists every ablation; the one that sets a default (λ = 0 or λ = 0.1) is the CARL row itself
        method_names = ({c: [n for n in profile.methods_for(c) if n in methods] for c in corpora}
                        if args.methods is None
                        else args.methods.split(","))
    # one pool of results for every profile and tag: a run is known by what it computes (suite.run_one)
    out, work_dir = Path(args.out), Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"affect suite, profile {profile_name}: {profile.note}; seeds {seeds}; "
          f"results kept in {work_dir}", flush=True)
    results = run_suite(profile, budget, corpora, method_names, args.data_dir, work_dir,
                        log=lambda line: print(line, flush=True), methods=methods, splits=splits,
                        train=not args.cached_only)
    meta = {
        "command": "python -m benchmarks.affect " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine(), "date": datetime.date.today().isoformat(),
        "minutes": (time.perf_counter() - started) / 60, "profile": profile_name,
        # what a run from a clean work dir costs: every fit and its scoring, summed (results read back cost ~0)
        "compute_minutes": sum(r.fit_seconds + r.eval_seconds for r in results) / 60,
        "profile_note": profile.note + ("" if seeds == PROFILES[profile_name].seeds else f"; here seeds {seeds}")
        + ("" if profile.epochs == PROFILES[profile_name].epochs else f"; here {profile.epochs} epoch(s)"),
        "budget": budget.as_dict(),
        "budget_text": (f"{budget.backbone}, {budget.epochs} epoch(s), batch {budget.batch_size}, max_length "
                        f"{budget.max_length} for every trained method; encoder learning rate "
                        f"{_rate(budget.learning_rate)} for CARL"
                        + "".join(f", {_rate(lr)} for {name}" for name, lr in learning_rates.items() if name != "carl")
                        + f"; heads {budget.head_learning_rate:g}"),
        "ablations": {k: v[1] for k, v in ABLATIONS.items()},
    }
    order = list(dict.fromkeys(n for names in (method_names.values() if isinstance(method_names, dict)
                                                else [method_names]) for n in names))
    table = render(meta, results, order, splits, methods)
    (out / f"affect-{tag}.md").write_text(table)
    write_json(out / f"affect-{tag}.json", meta, results)
    if not args.tune:
        plot_scores(results, order, out / f"scores-{tag}.png")
        if "emobank" in corpora:
            plot_projection(results, work_dir, load_corpus("emobank", profile, args.data_dir),
                            out / f"projection-{tag}.png", seed=seeds[0])
    print(f"\nwritten to {out}/affect-{tag}.md (.json, .png)\n")
    print(table)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
