"""Speed and memory of skcarl, as ratios measured in one run (issue 5).

    python -m benchmarks.speed --quick                       # CPU, a few minutes
    python -m benchmarks.speed                               # CPU, longer
    python -m benchmarks.speed --device cuda --tag h200      # on a GPU: adds AMP, torch.compile, tokens/s

Sections (``--sections``, comma-separated; default all that apply):

``step``
    Training step time of CARL (saliency every step; cached saliency; λ = 0) against plain supervised
    fine-tuning (MSE head, one forward and backward), same backbone, batches and optimiser. Steps are
    interleaved round by round, so that machine noise hits every method alike; the ratio is the median of
    the per-round ratios.
``profile``
    Where a CARL step's time goes (torch.profiler over the ``carl/...`` ranges of the training step).
``quality``
    What ``saliency_refresh="cached"`` costs: a linear probe (RidgeCV) on EmoBank dev after fitting with
    each refresh mode.
``transform``
    Throughput of skcarl's inference against ``sentence_transformers.SentenceTransformer.encode`` on the
    same model, texts and batch size, and the largest difference between their embeddings.
``memory``
    Peak RSS growth of ``transform`` over many sentences (a child process per measurement), and training
    peak memory per batch size.
``scaling``
    ``fit`` and ``transform`` time against the number of texts and ``max_length``; a plot.
``onnx``
    Serving with ONNX Runtime (``estimator.export(format="onnx")`` and :class:`skcarl.onnx.ONNXModel`) against
    skcarl's torch ``transform``: throughput of the float32 and the dynamically quantised int8 model on the same
    EmoBank texts, batch size and thread count (``--threads``, applied to torch and to onnxruntime), repeats
    interleaved in a rotating order, median of the per-round ratios; then what int8 costs: cosine between
    float32 and int8 embeddings of EmoBank test, and a RidgeCV probe (fit on EmoBank train) r_V / r_A on test
    with each. The model is the pretrained backbone wrapped as a fitted CARLEmbedder (no fine-tuning: the
    export and the runtime do not depend on the weights' values).
``gpu``
    CUDA only: training and inference tokens/s in float32, bfloat16 and float16, with and without
    ``torch.compile``, and the ratio to this machine's CPU.

Everything is written to ``--out`` (default ``docs/performance/``) as ``speed-<tag>.json`` and
``speed-<tag>.md`` (plus ``scaling-<tag>.png``); the table is printed last.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.affect.methods import ADVERSARIAL_FORMS
from benchmarks.data import emobank_texts, load_emobank

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("step", "profile", "quality", "transform", "memory", "scaling", "onnx", "gpu")


# ---------------------------------------------------------------------------------------------- helpers
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(values) -> dict:
    values = list(values)
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fmt(s: dict, digits=3, scale=1.0) -> str:
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Samples this process's RSS every few milliseconds in a thread; ``peak`` after the ``with`` block."""

    def __init__(self, interval=0.005):
        self.interval, self.peak, self._stop = interval, rss_mb(), threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def emobank_va(split=None, data=None):
    frame = load_emobank(data, split)
    return frame["text"].tolist(), frame[["V", "A"]].to_numpy(float)


# ---------------------------------------------------------------------------------------------- step
class PlainFineTuning:
    """The baseline step: one forward, an MSE head on the pooled vector, one backward, one AdamW step."""

    def __init__(self, network, device, use_amp, learning_rate=2e-5):
        from skcarl.training import MixedPrecision
        self.network = network.to(device)
        self.precision = MixedPrecision(device, use_amp)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=learning_rate, weight_decay=0.01)
        self.parameters = [p for p in self.network.parameters() if p.requires_grad]

    def training_step(self, batch, label_rows, task_targets=None, example_index=None):
        net = self.network.train()
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with self.precision.autocast():
            sentence = net.sentence(net.encode(net.embed_tokens(ids), mask), mask)
            loss = F.mse_loss(net.task_head(sentence).float(), label_rows)
        self.precision.backward(loss)
        self.precision.step(self.optimizer, self.parameters, 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}


def build_steppers(backbone, device, use_amp, n_texts, max_tokens, methods, compile_encoder=False):
    """One trainer per method, each on its own copy of the same pretrained weights."""
    from skcarl import CARLEmbedder
    from skcarl.backbone import load_backbone
    from skcarl.network import CARLNetwork
    from skcarl.perturbation import TokenPerturber
    from skcarl.training import CARLTrainer, SaliencyCache, TrainingConfig

    tokenizer, encoder = load_backbone(backbone)
    steppers = {}
    for name in methods:
        torch.manual_seed(0)
        network = CARLNetwork(copy.deepcopy(encoder), n_task_outputs=2 if name == "plain" else 0)
        if compile_encoder:
            network.compile_encoder()
        if name == "plain":
            steppers[name] = PlainFineTuning(network, device, use_amp)
            continue
        params = {**CARLEmbedder().get_params(), **STEP_SETTINGS[name]}
        config = TrainingConfig.from_params(params, label_temperature=0.02, ranking_weight=0.0, max_epochs=3,
                                            use_amp=use_amp)
        perturber = TokenPerturber(params["perturbation"], len(tokenizer), tokenizer.all_special_ids,
                                   eps=params["perturb_eps"])
        trainer = CARLTrainer(network, config, device, perturber, label_dim=2, steps_per_epoch=1000,
                              pad_id=tokenizer.pad_token_id)
        if name == "carl_cached":
            trainer.saliency_cache = SaliencyCache(n_texts, max_tokens, device)
        steppers[name] = trainer
    return tokenizer, steppers


METHOD_NAMES = {
    "plain": "plain fine-tuning (MSE head)",
    "carl_step": "CARL with detection (λ = 0.1), saliency every step",
    "carl_cached": 'CARL with detection (λ = 0.1), saliency_refresh="cached"',
    "carl_no_detection": "CARL defaults (L_cont alone: no detection, no adversarial term)",
    "carl_consistency": "CARL + adversarial consistency (μ_adv = 10, ε = 0.1)",
}
# what each CARL row changes from the estimators' defaults
STEP_SETTINGS = {
    "carl_step": dict(detection_weight=0.1),
    "carl_cached": dict(detection_weight=0.1, saliency_refresh="cached"),
    "carl_no_detection": {},
    "carl_consistency": ADVERSARIAL_FORMS["carl_adversarial_consistency_mild"][1],
}


def time_steps(args, device, use_amp=None, methods=tuple(METHOD_NAMES), rounds=None, compile_encoder=False,
               batch_size=None):
    """Seconds per step of each method over the same batches, interleaved; and tokens per batch."""
    from skcarl.tokens import pad_batch, tokenize

    use_amp = args.use_amp if use_amp is None else use_amp
    batch_size = batch_size or args.batch_size
    rounds = rounds or args.repeats
    texts, va = emobank_va("train", args.data_dir)
    tokenizer, steppers = build_steppers(args.backbone, device, use_amp, len(texts), args.max_length, methods,
                                         compile_encoder)
    tokens = tokenize(tokenizer, texts, args.max_length)
    rows = torch.as_tensor((va - 1) / 4, dtype=torch.float32, device=device)
    rng = np.random.default_rng(0)
    warmup = args.warmup + (3 if compile_encoder else 0)
    batches = [rng.choice(len(texts), batch_size, replace=False) for _ in range(rounds + warmup)]
    times = {name: [] for name in steppers}
    n_tokens = []
    for r, index in enumerate(batches):
        batch = pad_batch(tokens, index, tokenizer.pad_token_id, device)
        order = list(steppers)
        order = order[r % len(order):] + order[: r % len(order)]
        for name in order:
            sync(device)
            started = time.perf_counter()
            steppers[name].training_step(batch, rows[index], example_index=index)
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - started)
        if r >= warmup:
            n_tokens.append(int(batch["attention_mask"].sum()))
    return times, n_tokens, steppers


def section_step(args, device, results):
    times, n_tokens, _ = time_steps(args, device)
    base = times["plain"]
    out = {}
    for name, values in times.items():
        out[name] = {"seconds": summary(values),
                     "ratio_to_plain": summary([t / b for t, b in zip(values, base)])}
    results["step"] = {"methods": out, "tokens_per_batch": summary(n_tokens), "batch_size": args.batch_size,
                       "max_length": args.max_length}


def section_profile(args, device, results):
    from torch.profiler import ProfilerActivity, profile

    from skcarl.tokens import pad_batch, tokenize

    texts, va = emobank_va("train", args.data_dir)
    methods = ("carl_step", "carl_cached")
    tokenizer, steppers = build_steppers(args.backbone, device, args.use_amp, len(texts), args.max_length, methods)
    tokens = tokenize(tokenizer, texts, args.max_length)
    rows = torch.as_tensor((va - 1) / 4, dtype=torch.float32, device=device)
    rng = np.random.default_rng(1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = {}
    for name in methods:
        def step(index, trainer=steppers[name]):
            trainer.training_step(pad_batch(tokens, index, tokenizer.pad_token_id, device), rows[index],
                                  example_index=index)
        batches = [rng.choice(len(texts), args.batch_size, replace=False)
                   for _ in range(args.warmup + args.profile_steps)]
        for index in batches[: args.warmup]:
            step(index)
        sync(device)
        started = time.perf_counter()
        with profile(activities=activities) as prof:
            for index in batches[args.warmup:]:
                step(index)
            sync(device)
        wall = time.perf_counter() - started
        parts = {}
        for event in prof.key_averages():  # on CUDA a range is listed twice: on the host and on the device
            if event.key.startswith("carl/"):
                parts[event.key] = max(parts.get(event.key, 0.0), event.cpu_time_total / 1e6)
        out[name] = {"wall_seconds": wall, "steps": args.profile_steps, "parts_seconds": parts}
    results["profile"] = out


# ---------------------------------------------------------------------------------------------- quality
def section_quality(args, device, results):
    from scipy.stats import pearsonr
    from sklearn.linear_model import RidgeCV

    from skcarl import CARLEmbedder

    train_texts, train_va = emobank_va("train", args.data_dir)
    dev_texts, dev_va = emobank_va("dev", args.data_dir)
    if args.quick:
        keep = np.random.default_rng(0).permutation(len(train_texts))[: args.quality_train]
        train_texts, train_va = [train_texts[i] for i in keep], train_va[keep]
    out = {}
    for refresh in ("step", "cached"):
        model = CARLEmbedder(args.backbone, saliency_refresh=refresh, max_epochs=args.quality_epochs,
                             batch_size=args.batch_size, max_length=args.max_length, device=device.type,
                             use_amp=args.use_amp, va_range=(1, 5), random_state=0)
        model.fit(train_texts, train_va)
        probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(model.transform(train_texts), train_va)
        predicted = probe.predict(model.transform(dev_texts))
        out[refresh] = {"r_valence": float(pearsonr(predicted[:, 0], dev_va[:, 0])[0]),
                        "r_arousal": float(pearsonr(predicted[:, 1], dev_va[:, 1])[0]),
                        "fit_seconds": model.fit_time_}
        del model
        gc.collect()
    results["quality"] = {"n_train": len(train_texts), "epochs": args.quality_epochs, "modes": out}


# ---------------------------------------------------------------------------------------------- transform
def section_transform(args, device, results):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        results["transform"] = {"skipped": "sentence-transformers is not installed "
                                           "(pip install --no-deps sentence-transformers)"}
        return
    from skcarl.backbone import load_backbone, resolve_backbone
    from skcarl.inference import embed_texts
    from skcarl.network import CARLNetwork

    texts = emobank_texts(args.transform_texts, args.data_dir)
    source, _ = resolve_backbone(args.backbone)
    st = SentenceTransformer(str(source), device=str(device))
    max_length = st.max_seq_length
    tokenizer, encoder = load_backbone(args.backbone)
    network = CARLNetwork(encoder).to(device).eval()

    def ours():
        return embed_texts(network, tokenizer, texts, max_length=max_length, batch_size=args.batch_size,
                           device=device)[0]

    def theirs():
        return st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)

    ours(), theirs()  # warm-up (first-call allocations, kernel selection)
    times = {"skcarl": [], "sentence_transformers": []}
    outputs = {}
    for r in range(args.transform_repeats):
        for name, fn in (("skcarl", ours), ("sentence_transformers", theirs))[:: 1 if r % 2 == 0 else -1]:
            sync(device)
            started = time.perf_counter()
            outputs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - started)
    ratios = [t / o for o, t in zip(times["skcarl"], times["sentence_transformers"])]
    results["transform"] = {
        "n_texts": len(texts), "batch_size": args.batch_size, "max_length": max_length,
        "texts_per_second": {k: summary([len(texts) / t for t in v]) for k, v in times.items()},
        "speedup": summary(ratios),
        "max_abs_difference": float(np.abs(outputs["skcarl"] - outputs["sentence_transformers"]).max()),
    }


# ---------------------------------------------------------------------------------------------- onnx
def frozen_embedder(backbone, batch_size, max_length):
    """The pretrained backbone as a fitted CARLEmbedder (what ``fit`` would leave, without training)."""
    from skcarl import CARLEmbedder
    from skcarl.backbone import load_backbone
    from skcarl.network import CARLNetwork

    tokenizer, encoder = load_backbone(backbone)
    embedder = CARLEmbedder(backbone, batch_size=batch_size, max_length=max_length, device="cpu")
    network = CARLNetwork(encoder).eval()
    embedder.network_, embedder.encoder_, embedder.tokenizer_ = network, encoder, tokenizer
    embedder.device_ = torch.device("cpu")
    return embedder


def section_onnx(args, device, results):
    import tempfile

    from scipy.stats import pearsonr
    from sklearn.linear_model import RidgeCV

    from skcarl.onnx import ONNXModel

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        embedder = frozen_embedder(args.backbone, args.batch_size, args.max_length)
        texts = emobank_texts(args.onnx_texts, args.data_dir)
        folder = Path(tempfile.mkdtemp(prefix="skcarl-onnx-bench-"))
        models = {}
        for name, quantize in (("onnx_fp32", None), ("onnx_int8", "int8")):
            started = time.perf_counter()
            embedder.export(folder / name, format="onnx", quantize=quantize)
            export_seconds = time.perf_counter() - started
            models[name] = ONNXModel(folder / name, n_threads=args.threads)
            models[name].export_seconds = export_seconds
        runners = {"torch": embedder.transform, **{name: m.transform for name, m in models.items()}}
        for fn in runners.values():  # warm-up (first-call allocations, kernel selection)
            fn(texts[:256])
        times = {name: [] for name in runners}
        outputs = {}
        names = list(runners)
        for r in range(args.onnx_repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
                started = time.perf_counter()
                outputs[name] = runners[name](texts)
                times[name].append(time.perf_counter() - started)
            print(f"[speed] onnx round {r + 1}: " + ", ".join(f"{name} {v[-1]:.1f} s" for name, v in times.items()),
                  file=sys.stderr, flush=True)
        speedups = {name: summary([t / o for t, o in zip(times["torch"], times[name])]) for name in models}

        test_texts, test_va = emobank_va("test", args.data_dir)
        train_texts, train_va = emobank_va("train", args.data_dir)
        if args.quick:
            keep = np.random.default_rng(0).permutation(len(train_texts))[: args.quality_train]
            train_texts, train_va = [train_texts[i] for i in keep], train_va[keep]
        # torch's embeddings are the float32 ONNX model's (max_abs_difference below), so its probe is too: the
        # probe runs the two ONNX models only
        quality = {}
        test_embeddings = {}
        for name, fn in ((name, runners[name]) for name in models):
            train_x, test_x = fn(train_texts), fn(test_texts)
            test_embeddings[name] = test_x
            probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(train_x, train_va)
            predicted = probe.predict(test_x)
            quality[name] = {"r_valence": float(pearsonr(predicted[:, 0], test_va[:, 0])[0]),
                             "r_arousal": float(pearsonr(predicted[:, 1], test_va[:, 1])[0])}
        cosine = np.sum(test_embeddings["onnx_fp32"] * test_embeddings["onnx_int8"], axis=1)
        sizes = {name: (folder / name / "model.onnx").stat().st_size / 2**20 for name in models}
        results["onnx"] = {
            "n_texts": len(texts), "batch_size": args.batch_size, "max_length": args.max_length,
            "threads": args.threads, "repeats": args.onnx_repeats,
            "texts_per_second": {name: summary([len(texts) / t for t in v]) for name, v in times.items()},
            "speedup_vs_torch": speedups,
            "max_abs_difference_fp32_vs_torch": float(np.abs(outputs["onnx_fp32"] - outputs["torch"]).max()),
            "int8_cosine_to_fp32": {"mean": float(cosine.mean()), "min": float(cosine.min()),
                                    "n_texts": len(test_texts)},
            "probe": quality, "probe_n_train": len(train_texts),
            "model_mb": sizes, "export_seconds": {name: m.export_seconds for name, m in models.items()},
        }
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        torch.set_num_threads(threads_before)


# ---------------------------------------------------------------------------------------------- memory
def _memory_child(spec: dict) -> dict:
    """Run in a child process: RSS growth of one transform or of a few training steps."""
    from skcarl.backbone import load_backbone
    from skcarl.inference import embed_texts
    from skcarl.network import CARLNetwork

    device = torch.device(spec["device"])
    if spec["kind"] == "transform":
        tokenizer, encoder = load_backbone(spec["backbone"])
        if spec.get("tiny"):
            from transformers import BertConfig, BertModel
            encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=128))
        network = CARLNetwork(encoder).to(device).eval()
        texts = emobank_texts(spec["n"], spec["data_dir"])
        embed_texts(network, tokenizer, texts[:64], max_length=128, batch_size=32, device=device)
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        with PeakRSS() as peak:
            out, _ = embed_texts(network, tokenizer, texts, max_length=128, batch_size=32, device=device)
        return {"baseline_mb": before, "peak_mb": peak.peak, "output_mb": out.nbytes / 2**20,
                "seconds": time.perf_counter() - started}
    # training: a few CARL steps at one batch size
    from skcarl.tokens import pad_batch, tokenize
    texts, va = emobank_va("train", spec["data_dir"])
    tokenizer, steppers = build_steppers(spec["backbone"], device, spec["use_amp"], len(texts), 128,
                                         ["carl_step"])
    trainer = steppers["carl_step"]
    tokens = tokenize(tokenizer, texts, 128)
    rows = torch.as_tensor((va - 1) / 4, dtype=torch.float32, device=device)
    # the longest texts: the worst case of a batch of this size
    index = np.argsort(-tokens.lengths)[: spec["batch_size"]]
    gc.collect()
    before = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as peak:
        for _ in range(3):
            trainer.training_step(pad_batch(tokens, index, tokenizer.pad_token_id, device), rows[index])
    result = {"baseline_mb": before, "peak_mb": peak.peak, "tokens": int(tokens.lengths[index].max())}
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _run_child(spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--child", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_memory(args, device, results):
    tiny = device.type == "cpu" and not args.full_model_memory
    stream = _run_child({"kind": "transform", "n": args.memory_texts, "backbone": args.backbone, "tiny": tiny,
                         "device": str(device), "data_dir": str(args.data_dir or "")})
    stream["encoder"] = "random 2-layer BERT, hidden 64, MiniLM's tokenizer" if tiny else args.backbone
    stream["growth_mb"] = stream["peak_mb"] - stream["baseline_mb"]
    stream["working_set_mb"] = stream["growth_mb"] - stream["output_mb"]
    stream["n_texts"] = args.memory_texts
    training = {}
    for batch_size in args.memory_batch_sizes:
        r = _run_child({"kind": "train", "batch_size": batch_size, "backbone": args.backbone,
                        "device": str(device), "use_amp": args.use_amp, "data_dir": str(args.data_dir or "")})
        r["growth_mb"] = r["peak_mb"] - r["baseline_mb"]
        training[str(batch_size)] = r
    results["memory"] = {"transform": stream, "training": training}


# ---------------------------------------------------------------------------------------------- scaling
def section_scaling(args, device, results):
    from skcarl import CARLEmbedder

    texts, va = emobank_va("train", args.data_dir)
    fit_rows, transform_rows = [], []

    def make_model():
        return CARLEmbedder(args.backbone, max_epochs=1, batch_size=args.batch_size, max_length=args.max_length,
                            device=device.type, use_amp=args.use_amp, va_range=(1, 5), random_state=0)

    # warm-up: first-call costs (CUDA context, kernel choice, allocator) must not land on the smallest size
    make_model().fit(texts[: 4 * args.batch_size], va[: 4 * args.batch_size]).transform(texts[:256])
    for n in args.fit_sizes:
        idx = np.arange(n) % len(texts)
        model = make_model()
        model.fit([texts[i] for i in idx], va[idx])
        fit_rows.append({"n": n, "max_length": args.max_length,
                         "seconds": sum(r["duration"] for r in model.history_)})
    for n in args.transform_sizes:
        sample = emobank_texts(n, args.data_dir)
        sync(device)
        started = time.perf_counter()
        model.transform(sample)
        sync(device)
        transform_rows.append({"n": n, "max_length": args.max_length, "seconds": time.perf_counter() - started})
    # max_length: passages of several sentences, so that the cut really binds
    passages = [" ".join(texts[i:i + 8]) for i in range(0, 8 * args.length_texts, 8)]
    length_rows = []
    for max_length in args.lengths:
        model.set_params(max_length=max_length)
        with_warnings_off(model.transform, passages)  # warm-up
        started = time.perf_counter()
        with_warnings_off(model.transform, passages)
        length_rows.append({"n": len(passages), "max_length": max_length,
                            "seconds": time.perf_counter() - started})
    results["scaling"] = {"fit": fit_rows, "transform": transform_rows, "max_length": length_rows,
                          "fit_linearity": linearity(fit_rows), "transform_linearity": linearity(transform_rows)}


def with_warnings_off(fn, *a):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a)


def linearity(rows) -> dict:
    """Least-squares line through (n, seconds): R², and seconds per 1,000 texts at the smallest and largest n."""
    n = np.array([r["n"] for r in rows], float)
    t = np.array([r["seconds"] for r in rows], float)
    slope, intercept = np.polyfit(n, t, 1)
    r2 = 1 - ((t - (slope * n + intercept)) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12)
    return {"r2": float(r2), "seconds_per_1000_first": float(1000 * t[0] / n[0]),
            "seconds_per_1000_last": float(1000 * t[-1] / n[-1])}


def plot_scaling(scaling: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("fit", "fit (1 epoch)"), ("transform", "transform")):
        rows = scaling[key]
        axes[0].plot([r["n"] for r in rows], [r["seconds"] for r in rows], "o-", label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="texts", ylabel="seconds", title="against the number of texts")
    axes[0].legend()
    rows = scaling["max_length"]
    axes[1].plot([r["max_length"] for r in rows], [r["seconds"] for r in rows], "o-")
    axes[1].set(xlabel="max_length (tokens)", ylabel="seconds",
                title=f"transform of {rows[0]['n']} passages")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- gpu
def section_gpu(args, device, results):
    from skcarl.backbone import load_backbone
    from skcarl.inference import embed_texts
    from skcarl.network import CARLNetwork
    from skcarl.training import MixedPrecision

    out = {"device_name": torch.cuda.get_device_name(device), "train": {}, "transform": {}}
    configs = [("float32", False, False), ("bfloat16", "bfloat16", False), ("float16", "float16", False),
               ("bfloat16 + torch.compile", "bfloat16", True)]
    for label, amp, compiled in configs:
        methods = ("plain", "carl_step", "carl_cached") if not compiled else ("carl_step", "carl_cached")
        try:
            times, n_tokens, _ = time_steps(args, device, use_amp=amp, methods=methods, compile_encoder=compiled)
        except Exception:  # one failing setting (a compiler error, say) must not lose the others
            out.setdefault("errors", {})[label] = traceback.format_exc()
            continue
        tokens = statistics.median(n_tokens)
        out["train"][label] = {m: {"tokens_per_second": tokens / statistics.median(t), "seconds": summary(t)}
                               for m, t in times.items()}
    # the same steps on this machine's CPU, for the ratio
    cpu_times, cpu_tokens, _ = time_steps(args, torch.device("cpu"), use_amp=False, methods=("carl_step",),
                                          rounds=3)
    out["train_cpu_tokens_per_second"] = statistics.median(cpu_tokens) / statistics.median(cpu_times["carl_step"])
    out["cpu_threads"] = torch.get_num_threads()

    texts = emobank_texts(args.transform_texts, args.data_dir)
    tokenizer, encoder = load_backbone(args.backbone)
    network = CARLNetwork(encoder).to(device).eval()
    n_tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"])
    for label, amp in (("float32", False), ("bfloat16", "bfloat16"), ("float16", "float16")):
        seconds = []
        for _ in range(args.transform_repeats + 1):
            sync(device)
            started = time.perf_counter()
            with MixedPrecision(device, amp, training=False).autocast():
                embed_texts(network, tokenizer, texts, max_length=args.max_length, batch_size=args.gpu_batch_size,
                            device=device)
            sync(device)
            seconds.append(time.perf_counter() - started)
        seconds = seconds[1:]
        out["transform"][label] = {"tokens_per_second": n_tokens / statistics.median(seconds),
                                   "seconds": summary(seconds), "batch_size": args.gpu_batch_size}
    network_cpu = CARLNetwork(load_backbone(args.backbone)[1]).eval()
    cpu_texts = texts[:1000]
    cpu_tokens = sum(len(ids) for ids in tokenizer(cpu_texts, truncation=True, max_length=args.max_length)["input_ids"])
    started = time.perf_counter()
    embed_texts(network_cpu, tokenizer, cpu_texts, max_length=args.max_length, batch_size=args.batch_size,
                device="cpu")
    out["transform_cpu_tokens_per_second"] = cpu_tokens / (time.perf_counter() - started)
    results["gpu"] = out


# ---------------------------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    failed = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    results = {k: v for k, v in results.items() if k not in failed}
    meta = results["machine"]
    lines = [f"### {meta['tag']}: {meta['device']} — {meta['date']}", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; torch {meta['torch']}, "
             f"transformers {meta['transformers']}; backbone `{meta['backbone']}`.", ""]
    if meta.get("note"):
        lines += [f"Note: {meta['note']}.", ""]
    if "step" in results:
        s = results["step"]
        lines += [f"**Training step** (batch {s['batch_size']}, max_length {s['max_length']}, "
                  f"{s['tokens_per_batch']['median']:.0f} tokens per padded batch, median over "
                  f"{s['methods']['plain']['seconds']['n']} interleaved rounds; min–max in brackets)", "",
                  "| method | seconds per step | ratio to plain fine-tuning |", "|---|---:|---:|"]
        for name, m in s["methods"].items():
            lines.append(f"| {METHOD_NAMES[name]} | {fmt(m['seconds'])} | {fmt(m['ratio_to_plain'], 2)} |")
        lines.append("")
    if "profile" in results:
        lines += ["**Where a CARL step's time goes** (torch.profiler, CPU time of the step's ranges, "
                  "share of the wall time)", "", "| range | saliency every step | cached saliency |",
                  "|---|---:|---:|"]
        p = results["profile"]
        keys = sorted(set(p["carl_step"]["parts_seconds"]) | set(p["carl_cached"]["parts_seconds"]))
        for key in keys:
            cells = []
            for name in ("carl_step", "carl_cached"):
                v = p[name]["parts_seconds"].get(key)
                cells.append("—" if v is None else f"{100 * v / p[name]['wall_seconds']:.0f}%")
            lines.append(f"| `{key}` | {cells[0]} | {cells[1]} |")
        lines.append("")
    if "quality" in results:
        q = results["quality"]
        lines += [f"**Quality of the cached saliency** (EmoBank dev, RidgeCV probe; fit on {q['n_train']} "
                  f"training texts, {q['epochs']} epoch(s))", "", "| saliency_refresh | r valence | r arousal "
                  "| fit seconds |", "|---|---:|---:|---:|"]
        for mode, m in q["modes"].items():
            lines.append(f"| {mode} | {m['r_valence']:.3f} | {m['r_arousal']:.3f} | {m['fit_seconds']:.0f} |")
        lines.append("")
    if "transform" in results:
        t = results["transform"]
        if "skipped" in t:
            lines += [f"**Transform**: skipped — {t['skipped']}", ""]
        else:
            lines += [f"**Transform throughput** ({t['n_texts']} EmoBank texts, batch {t['batch_size']}, "
                      f"max_length {t['max_length']}, {t['speedup']['n']} alternating repeats)", "",
                      "| | texts/s |", "|---|---:|",
                      f"| skcarl | {fmt(t['texts_per_second']['skcarl'], 1)} |",
                      f"| SentenceTransformer.encode | {fmt(t['texts_per_second']['sentence_transformers'], 1)} |",
                      "", f"Speed-up (paired): **{fmt(t['speedup'], 2)}**; largest embedding difference "
                      f"{t['max_abs_difference']:.1e}.", ""]
    if "memory" in results:
        m = results["memory"]
        tr = m["transform"]
        lines += [f"**Memory.** `transform` of {tr['n_texts']:,} texts ({tr['encoder']}): peak RSS "
                  f"{tr['growth_mb']:.0f} MB above the loaded model, of which {tr['output_mb']:.0f} MB is the "
                  f"returned array; working set {tr['working_set_mb']:.0f} MB; {tr['seconds']:.0f} s.", "",
                  "| batch size | longest text (tokens) | peak RSS growth, 3 CARL steps (MB) | CUDA peak (MB) |",
                  "|---:|---:|---:|---:|"]
        for bs, r in m["training"].items():
            cuda = f"{r['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in r else "—"
            lines.append(f"| {bs} | {r['tokens']} | {r['growth_mb']:.0f} | {cuda} |")
        lines.append("")
    if "scaling" in results:
        sc = results["scaling"]
        lines += ["**Scaling** (seconds)", "", "| texts | fit, 1 epoch | | texts | transform |",
                  "|---:|---:|---|---:|---:|"]
        for f, t in zip(sc["fit"], sc["transform"]):
            lines.append(f"| {f['n']} | {f['seconds']:.1f} | | {t['n']} | {t['seconds']:.1f} |")
        for key in ("fit", "transform"):
            lin = sc[f"{key}_linearity"]
            lines.append(f"\n{key}: straight-line R² {lin['r2']:.4f}; seconds per 1,000 texts "
                         f"{lin['seconds_per_1000_first']:.2f} at the smallest size, "
                         f"{lin['seconds_per_1000_last']:.2f} at the largest.")
        lines += ["", "| max_length | transform seconds |", "|---:|---:|"]
        lines += [f"| {r['max_length']} | {r['seconds']:.2f} |" for r in sc["max_length"]]
        lines.append("")
    if "onnx" in results:
        o = results["onnx"]
        tps, sp = o["texts_per_second"], o["speedup_vs_torch"]
        lines += [f"**ONNX serving** ({o['n_texts']:,} EmoBank texts, batch {o['batch_size']}, max_length "
                  f"{o['max_length']}, {o['threads']} threads for torch and onnxruntime alike, median of "
                  f"{o['repeats']} interleaved repeats; min–max in brackets)", "",
                  "| model | texts/s | speed-up over torch (paired) | model size (MB) |", "|---|---:|---:|---:|",
                  f"| skcarl `transform` (torch, float32) | {fmt(tps['torch'], 1)} | 1 | — |"]
        for name, label in (("onnx_fp32", "ONNX Runtime, float32"), ("onnx_int8", "ONNX Runtime, int8 (dynamic)")):
            lines.append(f"| {label} | {fmt(tps[name], 1)} | **{fmt(sp[name], 2)}** | {o['model_mb'][name]:.0f} |")
        q, c = o["probe"], o["int8_cosine_to_fp32"]
        lines += ["", f"Largest difference between the float32 ONNX and torch embeddings: "
                  f"{o['max_abs_difference_fp32_vs_torch']:.1e}. int8 against float32 on EmoBank test "
                  f"({c['n_texts']} texts): cosine mean {c['mean']:.4f}, min {c['min']:.4f}.", "",
                  "| embeddings | probe r valence (test) | probe r arousal (test) |", "|---|---:|---:|"]
        for name, label in (("onnx_fp32", "ONNX float32 (= torch)"), ("onnx_int8", "ONNX int8")):
            lines.append(f"| {label} | {q[name]['r_valence']:.4f} | {q[name]['r_arousal']:.4f} |")
        lines += ["", f"RidgeCV probe fit on the {o['probe_n_train']:,} EmoBank train texts' embeddings of the same "
                  "model; int8 − float32: "
                  f"{q['onnx_int8']['r_valence'] - q['onnx_fp32']['r_valence']:+.4f} (valence), "
                  f"{q['onnx_int8']['r_arousal'] - q['onnx_fp32']['r_arousal']:+.4f} (arousal).", ""]
    if "gpu" in results:
        g = results["gpu"]
        lines += [f"**GPU** ({g['device_name']}): training tokens/s (median step)", "",
                  "| precision | plain | CARL, every step | CARL, cached |", "|---|---:|---:|---:|"]
        for label, methods in g["train"].items():
            cells = [f"{methods[m]['tokens_per_second']:,.0f}" if m in methods else "—"
                     for m in ("plain", "carl_step", "carl_cached")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        fp32 = g["train"]["float32"]["carl_step"]["tokens_per_second"] if "float32" in g["train"] else float("nan")
        best = max(v["carl_step"]["tokens_per_second"] for v in g["train"].values())
        cpu = g["train_cpu_tokens_per_second"]
        lines += ["", f"CARL training on this machine's CPU ({g['cpu_threads']} threads): {cpu:,.0f} tokens/s; "
                  f"GPU float32 {fp32 / cpu:.0f}×, best GPU setting {best / cpu:.0f}× the CPU.", "",
                  "| transform precision | tokens/s |", "|---|---:|"]
        for label, r in g["transform"].items():
            lines.append(f"| {label} | {r['tokens_per_second']:,.0f} |")
        cpu = g["transform_cpu_tokens_per_second"]
        lines += ["", f"Transform on the CPU: {cpu:,.0f} tokens/s; GPU bfloat16 "
                  f"{g['transform']['bfloat16']['tokens_per_second'] / cpu:.0f}× that.", ""]
        lines += [f"{label} failed: `{error.strip().splitlines()[-1]}`" for label, error in g.get("errors", {}).items()]
    lines += [f"**{name}** failed: `{error.strip().splitlines()[-1]}`" for name, error in failed.items()]
    return "\n".join(lines)


def machine_description(device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def parse_args(argv=None):
    from skcarl.backbone import DEFAULT_BACKBONE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a few minutes on a CPU)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--data-dir", default=None, help="folder holding emobank/ (default: ../shared/data)")
    p.add_argument("--sections", default=None, help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--out", default=str(REPO / "docs" / "performance"))
    p.add_argument("--tag", default=None, help="name of this run's files (default: the device type)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="onnx section: torch and onnxruntime threads (default 2)")
    p.add_argument("--onnx-repeats", type=int, default=None, help="onnx section: timed rounds (default 5, quick 3)")
    p.add_argument("--use-amp", default="bfloat16", help="mixed precision on CUDA: bfloat16, float16 or off")
    p.add_argument("--full-model-memory", action="store_true",
                   help="measure transform memory with the backbone itself also on the CPU (slow)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="write the table (and plot) of an earlier run's speed-<tag>.json, and print it")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.use_amp = False if args.use_amp in ("off", "false", "False", "0") else args.use_amp
    quick = args.quick
    args.warmup = 2
    args.repeats = args.repeats or (8 if quick else 20)
    args.profile_steps = 3 if quick else 6
    args.quality_train = 1000
    args.quality_epochs = 1 if quick else 2
    args.transform_texts = 1000 if quick else 10_062
    args.transform_repeats = 3
    args.memory_texts = 50_000 if quick else 200_000
    args.memory_batch_sizes = (8, 32) if quick else (8, 16, 32, 64)
    args.fit_sizes = (128, 256, 512) if quick else (1000, 4000, 16000)
    args.transform_sizes = (500, 1000, 2000) if quick else (1000, 4000, 16000)
    args.length_texts = 64 if quick else 256
    args.lengths = (32, 64, 128, 256)
    args.gpu_batch_size = 128
    args.onnx_texts = 1000 if quick else 10_000
    args.onnx_repeats = args.onnx_repeats or (3 if quick else 5)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(_memory_child(json.loads(args.child))))
        return
    if args.render:
        path = Path(args.render)
        results = json.loads(path.read_text())
        if "scaling" in results and "error" not in results["scaling"]:
            plot_scaling(results["scaling"], path.with_name(path.name.replace("speed-", "scaling-")
                                                            .replace(".json", ".png")),
                         results["machine"]["machine"])
        table = markdown(results)
        path.with_suffix(".md").write_text(table + "\n")
        print(table)
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here.")
    load_emobank(args.data_dir)  # fail early, with the message, when the data are absent
    sections = args.sections.split(",") if args.sections else [s for s in SECTIONS
                                                                if s != "gpu" or device.type == "cuda"]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"Unknown sections {sorted(unknown)}; choose from {SECTIONS}.")
    import transformers
    tag = args.tag or device.type + ("-quick" if args.quick else "")
    results = {"machine": {"tag": tag, "device": str(device), "date": time.strftime("%Y-%m-%d"),
                           "command": "python -m benchmarks.speed " + " ".join(sys.argv[1:]),
                           "machine": machine_description(device), "torch": torch.__version__,
                           "transformers": transformers.__version__, "backbone": args.backbone}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in sections:
        started = time.perf_counter()
        print(f"[speed] {name} ...", file=sys.stderr, flush=True)
        try:
            globals()[f"section_{name}"](args, device, results)
        except Exception:  # keep the other sections' figures; the table says what failed
            results[name] = {"error": traceback.format_exc()}
            print(results[name]["error"], file=sys.stderr)
        print(f"[speed] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        (out / f"speed-{tag}.json").write_text(json.dumps(results, indent=1))
    if "scaling" in results and "error" not in results["scaling"]:
        plot_scaling(results["scaling"], out / f"scaling-{tag}.png", f"{results['machine']['machine']}")
    table = markdown(results)
    (out / f"speed-{tag}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
