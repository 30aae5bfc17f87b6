"""The ``skcarl`` command line: ``demo``, ``fit``, ``embed``, ``predict``, ``evaluate`` and ``export``.

Every command prints ``skcarl <command>: error: <message>`` on stderr when it fails, without a traceback
(set the environment variable ``SKCARL_DEBUG=1`` to see one), and exits with 0 on success, 1 on a runtime
failure (unreadable file or model folder, failed training) and 2 on a usage error (bad option, unknown
parameter or invalid value, missing column, unsupported file type).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .backbone import DEFAULT_BACKBONE

#: Compression suffixes pandas recognises in a file name (``data.csv.gz`` is read as a gzip-compressed CSV).
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")
DATA_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
EMBED_FORMATS = (".npy", ".parquet", ".csv", ".tsv")
PREDICT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
#: Texts embedded per progress-bar step; a file with at most this many texts is embedded in one call.
_CHUNK = 2048

_EXIT_STATUS = "exit status: 0 success, 1 runtime failure (unreadable file or model, failed training), 2 usage error"
_DATA_HELP = ("data file: .csv, .tsv, .jsonl (one JSON object per line) or .parquet, optionally compressed "
              "(.csv.gz, ...); '-' reads CSV from stdin")


class UsageError(Exception):
    """A mistake in the command line or in its input files (exit status 2).

    Examples
    --------
    >>> raise UsageError("column 'txt' not found")
    Traceback (most recent call last):
    ...
    skcarl.cli.UsageError: column 'txt' not found
    """


# ---------------------------------------------------------------------------------------------- commands
def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.model, max_epochs=args.epochs, test_size=args.test_size, random_state=args.seed,
             verbose=0 if args.quiet else 1)
    return 0


def _fit(args) -> int:
    from . import CARLClassifier, CARLEmbedder, CARLRegressor

    if args.label_sep is not None and args.label_col is None:
        raise UsageError("--label-sep goes with --label-col (a column of separated labels).")
    estimator_name = args.estimator or ("regressor" if args.va_cols else "classifier")
    if estimator_name == "regressor" and not args.va_cols:
        raise UsageError("the regressor learns continuous targets: give them with --va-cols (or use "
                         "--estimator classifier or embedder with --label-col).")
    if estimator_name == "classifier" and not args.label_col:
        raise UsageError("the classifier learns class labels: give their column with --label-col (or use "
                         "--estimator regressor or embedder with --va-cols).")
    estimator = {"embedder": CARLEmbedder, "regressor": CARLRegressor, "classifier": CARLClassifier}[estimator_name]()
    params = parse_params(args.param, estimator)
    params.setdefault("verbose", 1)
    if args.quiet:
        params["verbose"] = 0
    if args.device is not None:
        params["device"] = args.device
    if args.seed is not None:
        params["random_state"] = args.seed
    estimator.set_params(**params)
    try:
        estimator.validate_params()
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    _check_model_out(out)
    _check_device(estimator.device)

    data = _read_data(args.data)
    texts = _text_column(data, args.text_col, args.data)
    if args.va_cols:
        y = _numeric_columns(data, args.va_cols, args.data)
    elif args.label_sep is not None:
        y = _split_labels(_label_column(data, args.label_col, args.data, allow_empty=True), args.label_sep)
    else:
        y = _label_column(data, args.label_col, args.data)
    estimator.fit(texts, y)
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun every rank ends with the same model; rank 0 writes it
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"text_col": args.text_col, "va_cols": args.va_cols, "label_col": args.label_col,
                "label_sep": args.label_sep}
    estimator.save(out, metadata=metadata)
    if not args.quiet:
        print(f"skcarl fit: saved a {type(estimator).__name__} trained on {len(texts)} texts "
              f"({estimator.n_iter_} epochs, {estimator.fit_time_:.1f} s) to {out}", file=sys.stderr)
    return 0


def _embed(args) -> int:
    _check_out(args.out, EMBED_FORMATS, "embeddings")
    estimator = _load_model(args.model, args.device)
    data = _read_data(args.data)
    texts = _text_column(data, args.text_col or _metadata(estimator).get("text_col") or "text", args.data)
    embeddings = _in_chunks(estimator.transform, texts, quiet=args.quiet, desc="embedding")
    suffix = _format(args.out)
    if suffix == ".npy":
        path = _prepare_out(args.out)
        import numpy as np

        np.save(path, embeddings)
    else:
        import pandas as pd

        columns = [f"emb_{i}" for i in range(embeddings.shape[1])]
        _write_table(pd.DataFrame(embeddings, columns=columns), args.out)
    if not args.quiet:
        print(f"skcarl embed: wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {_where(args.out)}",
              file=sys.stderr)
    return 0


def _predict(args) -> int:
    _check_out(args.out, PREDICT_FORMATS, "predictions")
    estimator = _load_model(args.model, args.device)
    _check_predicts(estimator, "predict")
    data = _read_data(args.data)
    texts = _text_column(data, args.text_col or _metadata(estimator).get("text_col") or "text", args.data)
    table = _prediction_table(estimator, texts, args.quiet)
    _write_table(table, args.out)
    if not args.quiet:
        print(f"skcarl predict: wrote {len(table)} predictions to {_where(args.out)}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    estimator = _load_model(args.model, args.device)
    _check_predicts(estimator, "evaluate")
    meta = _metadata(estimator)
    data = _read_data(args.data)
    texts = _text_column(data, args.text_col or meta.get("text_col") or "text", args.data)
    name = type(estimator).__name__
    if name == "CARLRegressor":
        va_cols = args.va_cols or meta.get("va_cols")
        if not va_cols:
            raise UsageError("this model does not record its target columns; name them with --va-cols.")
        if len(va_cols) != estimator.n_outputs_:
            raise UsageError(f"the model predicts {estimator.n_outputs_} target(s); --va-cols names {len(va_cols)}.")
        y_true = _numeric_columns(data, va_cols, args.data)
        y_pred = _in_chunks(estimator.predict, texts, quiet=args.quiet, desc="predicting").reshape(len(texts), -1)
        rows = _regression_metrics(y_true.to_numpy(), y_pred, va_cols)
    else:
        label_col = args.label_col or meta.get("label_col")
        if not label_col:
            raise UsageError("this model does not record its label column; name it with --label-col.")
        if estimator.multilabel_:
            sep = args.label_sep or meta.get("label_sep")
            if sep is None:
                raise UsageError("this classifier is multi-label, and the command line reads multi-label truth "
                                 "only from one column of separated labels: pass --label-sep (e.g. ',') so "
                                 f"that column {label_col!r} is split. Indicator columns are not supported.")
            truth = _split_labels(_label_column(data, label_col, args.data, allow_empty=True), sep)
        else:
            truth = _label_column(data, label_col, args.data)
        predicted = _in_chunks(estimator.predict, texts, quiet=args.quiet, desc="predicting")
        if estimator.multilabel_:
            rows = _multilabel_metrics(truth, predicted, estimator.classes_)
        else:
            rows = _classification_metrics(truth, predicted)
    source = "stdin" if args.data == "-" else args.data
    print(f"{name} from {args.model} on {len(texts)} texts of {source}")
    print()
    print(markdown_table(rows))
    return 0


# ---------------------------------------------------------------------------------------------- helpers
def _export(args) -> int:
    from .export import _require_onnx

    if args.quantize and args.format != "onnx":
        raise UsageError(f"--quantize {args.quantize} applies to --format onnx only; got --format {args.format}.")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"OUT {str(out)!r} exists already; pass --overwrite to replace it, or choose a new folder.")
    if out.is_file():
        raise UsageError(f"OUT {str(out)!r} is a file; give a folder.")
    if args.format == "onnx":
        try:
            _require_onnx()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    estimator = _load_model(args.model, "cpu")
    path = estimator.export(out, format=args.format, quantize=args.quantize, overwrite=args.overwrite)
    if not args.quiet:
        print(f"exported {type(estimator).__name__} to {path} ({args.format}"
              + (f", {args.quantize}" if args.quantize else "") + ")", file=sys.stderr)
    return 0


def parse_params(pairs, estimator) -> dict:
    """Read ``--param key=value`` options: each value as JSON where it parses, else as a plain string.

    Parameters
    ----------
    pairs : list of str
        The ``key=value`` strings, in command-line order (a later key wins).
    estimator : CARLEmbedder, CARLRegressor or CARLClassifier
        The estimator whose ``get_params()`` names are the valid keys.

    Returns
    -------
    dict
        Parameter names to values, for ``estimator.set_params``.

    Raises
    ------
    UsageError
        For a string without ``=`` or a key that is not a parameter (the message lists the valid names).

    Examples
    --------
    >>> from skcarl import CARLRegressor
    >>> parse_params(["max_epochs=2", "va_range=[1, 9]", "pooling=cls"], CARLRegressor())
    {'max_epochs': 2, 'va_range': [1, 9], 'pooling': 'cls'}
    """
    valid = sorted(estimator.get_params(deep=False))
    params = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param needs key=value; got {pair!r}.")
        if key not in valid:
            raise UsageError(f"unknown parameter {key!r} for {type(estimator).__name__}. "
                             f"Valid names: {', '.join(valid)}.")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _format(path: str) -> str:
    """The file type of ``path`` from its extension, ignoring a compression suffix."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_data(path: str):
    """Read a data file (CSV, TSV, JSONL, Parquet by extension; ``-`` for CSV on stdin) with pandas.

    Text cells are kept as written: ``NA``, ``null`` or an empty cell of a CSV is not turned into a missing
    value.
    """
    import pandas as pd

    kind = ".csv" if path == "-" else _format(path)
    if kind not in DATA_FORMATS:
        raise UsageError(f"cannot read {path!r}: unsupported file type {kind or '(no extension)'!r}; "
                         f"use one of {', '.join(DATA_FORMATS)} (or '-' for CSV on stdin).")
    if path != "-" and not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist.")
    source = "stdin" if path == "-" else repr(path)
    try:
        if kind == ".csv":
            return pd.read_csv(sys.stdin if path == "-" else path, keep_default_na=False)
        if kind == ".tsv":
            return pd.read_csv(path, sep="\t", keep_default_na=False)
        if kind == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        return pd.read_parquet(path)
    except ImportError as exc:
        raise RuntimeError(f"cannot read {source}: {exc}") from None
    except Exception as exc:  # a parser error from pandas/pyarrow: name the file, keep the message
        raise RuntimeError(f"cannot read {source} as {kind[1:].upper()}: {type(exc).__name__}: {exc}") from None


def _check_columns(data, columns, path) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        source = "stdin" if path == "-" else repr(path)
        raise UsageError(f"column(s) {', '.join(map(repr, missing))} not found in {source}; its columns are: "
                         f"{', '.join(map(repr, map(str, data.columns)))}.")


def _text_column(data, column: str, path: str) -> list[str]:
    """The texts of ``column`` as a list of str; a missing column or a missing text is a usage error."""
    _check_columns(data, [column], path)
    values = data[column]
    if len(values) == 0:
        raise UsageError(f"{'stdin' if path == '-' else repr(path)} has no data rows: there are no texts to read.")
    missing = values.isna().to_numpy()
    if missing.any():
        raise UsageError(f"text column {column!r} has {int(missing.sum())} missing value(s); the first is in "
                         f"data row {int(missing.argmax())} (counting from 0).")
    return values.astype(str).tolist()


def _numeric_columns(data, columns, path):
    """The continuous targets as a float DataFrame; a cell that is not a number is a usage error."""
    import pandas as pd

    _check_columns(data, columns, path)
    out = {}
    for column in columns:
        values = pd.to_numeric(data[column], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise UsageError(f"column {column!r} must hold numbers; data row {row} (counting from 0) holds "
                             f"{data[column].iloc[row]!r} ({int(bad.sum())} such row(s)).")
        out[column] = values.astype(float)
    return pd.DataFrame(out)


def _label_column(data, column: str, path: str, allow_empty: bool = False) -> list[str]:
    """Class labels as str (so that they match the string keys of a JSON ``va_map``)."""
    _check_columns(data, [column], path)
    values = data[column]
    labels = ["" if missing else str(v) for v, missing in zip(values.tolist(), values.isna().tolist())]
    if not allow_empty:
        empty = [i for i, label in enumerate(labels) if not label.strip()]
        if empty:
            raise UsageError(f"label column {column!r} has {len(empty)} empty cell(s); the first is data row "
                             f"{empty[0]} (counting from 0).")
    return labels


def _split_labels(cells, sep: str) -> list[list[str]]:
    """Multi-label truth from one column of separated labels: ``"joy, love"`` -> ``["joy", "love"]``."""
    return [[label.strip() for label in cell.split(sep) if label.strip()] for cell in cells]


def _check_model_out(out: Path) -> None:
    """Refuse to write a model over a file, or into a folder that holds something else than a model."""
    if out.is_file():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder for the model.")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise UsageError(f"--out {str(out)!r} is a folder that is not empty and holds no skcarl model; "
                         "choose a new or empty folder.")


def _check_out(out: str, formats, what: str) -> None:
    if out != "-" and _format(out) not in formats:
        raise UsageError(f"cannot write {what} to {out!r}: unsupported file type "
                         f"{_format(out) or '(no extension)'!r}; use one of {', '.join(formats)} "
                         "(or '-' for CSV on stdout).")


def _where(out: str) -> str:
    return "stdout" if out == "-" else out


def _prepare_out(out: str) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_table(table, out: str) -> None:
    """Write a DataFrame by the extension of ``out`` (``-``: CSV on stdout), creating parent folders."""
    if out == "-":
        table.to_csv(sys.stdout, index=False)
        return
    kind, path = _format(out), _prepare_out(out)
    if kind == ".csv":
        table.to_csv(path, index=False)
    elif kind == ".tsv":
        table.to_csv(path, sep="\t", index=False)
    elif kind == ".jsonl":
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_parquet(path, index=False)


def _load_model(path: str, device):
    """:func:`skcarl.load`, with a missing folder reported as such."""
    from . import load

    if not os.path.isdir(path):
        raise FileNotFoundError(f"model folder {path!r} does not exist (make one with `skcarl fit`).")
    _check_device(device or "auto")
    return load(path, device=device or "auto")


def _check_device(device) -> None:
    """An unknown or unavailable device is a usage error, found before any data is read or model loaded."""
    from ._devices import resolve_device

    try:
        resolve_device(device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None


def _metadata(estimator) -> dict:
    return getattr(estimator, "metadata_", None) or {}


def _check_predicts(estimator, command: str) -> None:
    if not hasattr(estimator, "predict"):
        raise UsageError(f"this model is a {type(estimator).__name__}: it only embeds texts and has no "
                         f"predictions to {command}. Use `skcarl embed` (and fit your own model on the "
                         "embeddings), or train a regressor or classifier with `skcarl fit`.")


def _in_chunks(fn, texts, *, quiet: bool, desc: str):
    """``fn(texts)`` with a progress bar over chunks of texts (one call when there are few texts)."""
    import numpy as np

    if len(texts) <= _CHUNK:
        return np.asarray(fn(texts))
    from tqdm.auto import tqdm

    starts = range(0, len(texts), _CHUNK)
    parts = [fn(texts[i:i + _CHUNK]) for i in tqdm(starts, desc=desc, unit="chunk", disable=quiet, leave=False)]
    return np.concatenate([np.asarray(p) for p in parts])


def _prediction_table(estimator, texts, quiet):
    import pandas as pd

    meta = _metadata(estimator)
    if type(estimator).__name__ == "CARLRegressor":
        predictions = _in_chunks(estimator.predict, texts, quiet=quiet, desc="predicting").reshape(len(texts), -1)
        names = meta.get("va_cols") or [f"target_{j}" for j in range(predictions.shape[1])]
        if len(names) != predictions.shape[1]:
            names = [f"target_{j}" for j in range(predictions.shape[1])]
        return pd.DataFrame(predictions, columns=list(names))
    from .classifier import labels_from_proba

    proba = _in_chunks(estimator.predict_proba, texts, quiet=quiet, desc="predicting")
    classes = [str(c) for c in estimator.classes_]
    predicted = labels_from_proba(proba, estimator.classes_, estimator.multilabel_)  # predict's rule, one pass
    if estimator.multilabel_:
        sep = meta.get("label_sep") or ","
        labels = [sep.join(c for c, on in zip(classes, row) if on) for row in predicted]
    else:
        labels = [str(label) for label in predicted]
    table = pd.DataFrame({"label": labels})
    for j, c in enumerate(classes):
        table[f"proba_{c}"] = proba[:, j]
    return table


def _regression_metrics(y_true, y_pred, names) -> list[dict]:
    """Per target: n, Pearson r, MAE and R² (rows for :func:`markdown_table`)."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, r2_score

    rows = []
    for j, name in enumerate(names):
        t, p = y_true[:, j], y_pred[:, j]
        r = float(np.corrcoef(t, p)[0, 1]) if len(t) > 1 and t.std() > 0 and p.std() > 0 else float("nan")
        r2 = float(r2_score(t, p)) if len(t) > 1 else float("nan")
        rows.append({"target": name, "n": len(t), "Pearson r": r, "MAE": float(mean_absolute_error(t, p)),
                     "R²": r2})
    return rows


def _classification_metrics(y_true, y_pred) -> list[dict]:
    """Accuracy and macro-F1 of single-label predictions, compared as strings."""
    from sklearn.metrics import accuracy_score, f1_score

    t, p = [str(v) for v in y_true], [str(v) for v in y_pred]
    return [{"n": len(t), "accuracy": float(accuracy_score(t, p)),
             "macro-F1": float(f1_score(t, p, average="macro", zero_division=0))}]


def _multilabel_metrics(y_true, indicator, classes) -> list[dict]:
    """Micro- and macro-F1 and exact-match accuracy of multi-label predictions."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    names = [str(c) for c in classes]
    unseen = sorted({label for row in y_true for label in row} - set(names))
    binarizer = MultiLabelBinarizer(classes=names + unseen).fit([])
    truth = binarizer.transform(y_true)
    predicted = np.hstack([np.asarray(indicator, dtype=int), np.zeros((len(truth), len(unseen)), dtype=int)])
    return [{"n": len(truth), "exact match": float(accuracy_score(truth, predicted)),
             "micro-F1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
             "macro-F1": float(f1_score(truth, predicted, average="macro", zero_division=0))}]


def markdown_table(rows: list[dict]) -> str:
    """Format rows of metrics as a Markdown table (floats with 3 decimals, numbers right-aligned).

    Parameters
    ----------
    rows : list of dict
        One dict per row, all with the keys of the first (the column names, in order).

    Returns
    -------
    str
        The table, without a final newline.

    Examples
    --------
    >>> print(markdown_table([{"target": "valence", "Pearson r": 0.81234}]))
    | target  | Pearson r |
    |---------|----------:|
    | valence |     0.812 |
    """
    import numbers

    columns = list(rows[0])
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    numeric = [all(isinstance(row[c], numbers.Number) for row in rows) for c in columns]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values):
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if num else "-" * (w + 2) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(columns), rule, *(line(r) for r in cells)])


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcarl`` command and its subcommands.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["embed", "models/va", "test.csv", "--out", "emb.npy"])
    >>> args.command, args.model, args.out
    ('embed', 'models/va', 'emb.npy')
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="skcarl", formatter_class=formatter,
        description="CARL affective text embeddings: train, embed, predict and evaluate from the shell.",
        epilog="examples:\n"
               "  skcarl fit train.csv --va-cols valence arousal --param max_epochs=3 --out models/va\n"
               "  skcarl embed models/va test.csv --out emb.npy\n"
               "  skcarl predict models/va test.csv --out predictions.csv\n"
               "  skcarl evaluate models/va test.csv\n"
               "  skcarl export models/va carl-onnx --format onnx --quantize int8\n\n"
               "Run `skcarl COMMAND --help` for the options of a command.\n" + _EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="train CARL on the shipped affect corpus; print frozen vs CARL")
    demo.add_argument("--model", default=DEFAULT_BACKBONE, help="encoder name or local folder (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=4, help="training epochs (default: %(default)s)")
    demo.add_argument("--test-size", type=float, default=0.25, help="held-out fraction (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)

    fit = commands.add_parser(
        "fit", help="fine-tune a model on a data file and save it to a folder", formatter_class=formatter,
        description="Fine-tune a CARL model on the texts of DATA and save it to the folder --out.\n\n"
                    "With --va-cols (continuous targets such as valence and arousal) the default estimator is a\n"
                    "CARLRegressor; with --label-col (emotion classes) a CARLClassifier. --estimator embedder\n"
                    "trains the embeddings alone (for `skcarl embed`). The column names are saved with the\n"
                    "model, so that embed, predict and evaluate find them again.",
        epilog="examples:\n"
               "  skcarl fit train.csv --va-cols valence arousal --param va_range=[1,9] --out models/va\n"
               "  skcarl fit train.jsonl --label-col emotion --param max_epochs=2 --seed 0 --out models/emo\n"
               "  skcarl fit train.csv --label-col emotions --label-sep , --out models/multi   # multi-label\n"
               "  skcarl fit train.parquet --estimator embedder --va-cols V A --out models/emb\n\n"
               "parameters (--param): any parameter of the estimator's constructor, e.g. max_epochs,\n"
               "batch_size, learning_rate, model_name_or_path, va_range, va_map, contrastive_loss;\n"
               "see `help(skcarl.CARLRegressor)`. Values are read as JSON when they parse (2, 0.5,\n"
               "true, null, [1,9], {\"joy\": [0.9, 0.8]}), otherwise as plain strings.\n" + _EXIT_STATUS)
    fit.add_argument("data", metavar="DATA", help=_DATA_HELP)
    fit.add_argument("--text-col", default="text", help="column of texts (default: %(default)s)")
    target = fit.add_mutually_exclusive_group(required=True)
    target.add_argument("--va-cols", nargs="+", metavar="COL",
                        help="columns of continuous targets, e.g. valence arousal (put DATA before this option)")
    target.add_argument("--label-col", metavar="COL", help="column of class labels, e.g. emotion")
    fit.add_argument("--label-sep", metavar="SEP",
                     help="multi-label: the --label-col cells hold labels separated by SEP (e.g. ',')")
    fit.add_argument("--estimator", choices=("embedder", "regressor", "classifier"),
                     help="what to train (default: regressor with --va-cols, classifier with --label-col)")
    fit.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="an estimator parameter; repeat for several (e.g. --param max_epochs=2)")
    fit.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to save the model to (created)")
    fit.add_argument("--device", help="cpu, cuda, cuda:1, mps or auto (default: the 'device' parameter, auto)")
    fit.add_argument("--seed", type=int, help="random seed (the 'random_state' parameter)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars or messages (verbose=0)")
    fit.set_defaults(handler=_fit)

    def model_command(name, help_, description, epilog):
        sub = commands.add_parser(name, help=help_, description=description, formatter_class=formatter,
                                  epilog=epilog + _EXIT_STATUS)
        sub.add_argument("model", metavar="MODEL_DIR", help="a model folder saved by `skcarl fit` or est.save()")
        sub.add_argument("data", metavar="DATA", help=_DATA_HELP)
        sub.add_argument("--text-col", help="column of texts (default: the one the model was trained on, "
                                            "else 'text')")
        sub.add_argument("--device", help="cpu, cuda, cuda:1, mps or auto (default: auto)")
        sub.add_argument("--quiet", action="store_true", help="no progress bars or messages")
        return sub

    embed = model_command(
        "embed", "write the sentence embeddings of a data file",
        "Embed the texts of DATA with a saved model (any of the three estimators): one L2-normalised row\n"
        "per text, in the order of DATA.",
        "output by extension: .npy (a float32 array), .parquet, .csv or .tsv (columns emb_0, emb_1, ...);\n"
        "'-' writes CSV to stdout.\n\nexamples:\n  skcarl embed models/va test.csv --out emb.npy\n"
        "  cat test.csv | skcarl embed models/va - --out emb.parquet\n\n")
    embed.add_argument("--out", required=True, help="output file: .npy, .parquet, .csv, .tsv, or '-'")
    embed.set_defaults(handler=_embed)

    predict = model_command(
        "predict", "write the predictions of a regressor or classifier",
        "Predict with a saved CARLRegressor (one column per target, named as at fit time) or\n"
        "CARLClassifier (column 'label' and one 'proba_<class>' column per class; for a multi-label model\n"
        "'label' joins the predicted labels with the separator used at fit time). Rows follow DATA.",
        "output by extension: .csv, .tsv, .jsonl or .parquet; '-' writes CSV to stdout.\n\n"
        "examples:\n  skcarl predict models/va test.csv --out predictions.csv\n\n")
    predict.add_argument("--out", required=True, help="output file: .csv, .tsv, .jsonl, .parquet, or '-'")
    predict.set_defaults(handler=_predict)

    evaluate = model_command(
        "evaluate", "print the metrics of a model on a labelled data file",
        "Compare a saved model's predictions with the targets in DATA and print a Markdown table:\n"
        "per target Pearson r, MAE and R² for a regressor; accuracy and macro-F1 for a classifier\n"
        "(exact-match accuracy, micro- and macro-F1 for a multi-label one). The target columns default\n"
        "to those named at fit time.",
        "examples:\n  skcarl evaluate models/va test.csv\n  skcarl evaluate models/emo test.tsv --label-col gold\n\n")
    evaluate.add_argument("--va-cols", nargs="+", metavar="COL",
                          help="regressor: the target columns in DATA (default: those named at fit time)")
    evaluate.add_argument("--label-col", metavar="COL",
                          help="classifier: the label column in DATA (default: the one named at fit time)")
    evaluate.add_argument("--label-sep", metavar="SEP", help="multi-label classifier: separator of the labels")
    evaluate.set_defaults(handler=_evaluate)

    from .export import EXPORT_FORMATS, QUANTIZATIONS

    export = commands.add_parser(
        "export", help="export a saved model for sentence-transformers, transformers or ONNX Runtime",
        formatter_class=formatter,
        description="Write the model of MODEL_DIR to the new folder OUT in another format, with a README.md model\n"
                    "card:\n"
                    "  sentence-transformers  SentenceTransformer(OUT).encode(texts) gives the model's embeddings\n"
                    "  transformers           AutoModel/AutoTokenizer.from_pretrained(OUT) + the pooling on the card\n"
                    "  onnx                   model.onnx (embedding, predictions or probabilities) and its\n"
                    "                         tokenizer, served by skcarl.onnx.ONNXModel without torch\n"
                    "The sentence-transformers and transformers folders also load with skcarl.load.",
        epilog="examples:\n  skcarl export models/va carl-st --format sentence-transformers\n"
               "  skcarl export models/va carl-onnx --format onnx --quantize int8\n\n"
               "ONNX needs the optional dependencies: pip install 'skcarl[export]'.\n" + _EXIT_STATUS)
    export.add_argument("model", metavar="MODEL_DIR", help="a model folder saved by `skcarl fit` or est.save()")
    export.add_argument("out", metavar="OUT", help="the folder to create")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--quantize", choices=QUANTIZATIONS, help="onnx only: dynamically quantised int8 weights")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    export.add_argument("--quiet", action="store_true", help="no messages")
    export.set_defaults(handler=_export)
    return parser


def _version() -> str:
    from ._version import __version__

    return __version__


def main(argv=None) -> int:
    """Run the ``skcarl`` command line (the ``skcarl`` script and ``python -m skcarl``).

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 1 on a runtime failure, 2 on a usage error. Errors are printed as
        ``skcarl <command>: error: <message>`` on stderr, without a traceback (set ``SKCARL_DEBUG=1`` to
        get one).

    Examples
    --------
    >>> main(["fit", "train.csv", "--va-cols", "valence", "--param", "max_epochs=0", "--out", "m"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `skcarl predict ... --out - | head`: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except UsageError as exc:
        print(f"skcarl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a runtime failure: one line, no traceback (SKCARL_DEBUG=1 shows it)
        if os.environ.get("SKCARL_DEBUG"):
            raise
        message = str(exc) if isinstance(exc, (OSError, ValueError, RuntimeError)) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.strerror and exc.filename:  # e.g. a permission error
            message = f"{exc.strerror}: {exc.filename!r}"
        print(f"skcarl {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
