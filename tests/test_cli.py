"""The command line, run as users run it: ``python -m skcarl ...`` in a subprocess, on files of every kind.

Each subprocess pays a few seconds of imports (torch, transformers), so independent commands of a test run
side by side (``run_all``), one torch thread each.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_affect
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLRegressor
from skcarl.cli import build_parser, main
from skcarl.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
       "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
VA = ["valence", "arousal"]


def run_all(*commands, cwd=None):
    """Run ``python -m skcarl <args>`` for each command at once; a command is a list of args, or
    ``(args, stdin_text)``. Returns the CompletedProcess of each, in order."""
    started = []
    for command in commands:
        args, stdin = command if isinstance(command, tuple) else (command, None)
        args = [sys.executable, "-m", "skcarl", *map(str, args)]
        process = subprocess.Popen(args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd)
        started.append((args, process, stdin))
    done = []
    for args, process, stdin in started:
        try:
            out, err = process.communicate(stdin, timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def ok(result):
    assert result.returncode == 0, f"{result.args[3:]} exited with {result.returncode}:\n{result.stderr}"
    return result


def frame(n, seed):
    texts, va = synthetic_affect(n, seed)
    emotion = np.where(va[:, 0] > 5, np.where(va[:, 1] > 5, "joy", "relief"),
                       np.where(va[:, 1] > 5, "anger", "sadness"))
    return pd.DataFrame({"text": texts, "valence": va[:, 0], "arousal": va[:, 1], "emotion": emotion})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training data as CSV, JSONL and Parquet; test data as CSV (with a text "NA") and TSV."""
    folder = tmp_path_factory.mktemp("cli-data")
    train, test = frame(48, 0), frame(16, 1)
    test.loc[3, "text"] = "NA"  # a text, not a missing value
    paths = {"csv": folder / "train.csv", "jsonl": folder / "train.jsonl", "parquet": folder / "train.parquet",
             "test_csv": folder / "test.csv", "test_tsv": folder / "test.tsv"}
    train.to_csv(paths["csv"], index=False)
    train.to_json(paths["jsonl"], orient="records", lines=True)
    train.to_parquet(paths["parquet"], index=False)
    test.to_csv(paths["test_csv"], index=False)
    test.to_csv(paths["test_tsv"], sep="\t", index=False)
    return {"folder": folder, "test": test, **paths}


@pytest.fixture(scope="module")
def models(files, tiny_bert):
    """A regressor (from CSV), a classifier (from JSONL) and an embedder (from Parquet), fitted by the CLI."""
    folder = files["folder"] / "models"
    params = ["--param", f"model_name_or_path={tiny_bert}", "--param", "max_epochs=1", "--param", "batch_size=8",
              "--param", "queue_size=8", "--device", "cpu", "--seed", "0"]
    paths = {name: folder / name for name in ("regressor", "classifier", "embedder")}
    results = run_all(
        ["fit", files["csv"], "--va-cols", *VA, *params, "--out", paths["regressor"]],  # progress shown
        ["fit", files["jsonl"], "--label-col", "emotion", *params, "--quiet", "--out", paths["classifier"]],
        ["fit", files["parquet"], "--estimator", "embedder", "--va-cols", *VA, "--param", "va_range=[1,9]",
         *params, "--quiet", "--out", paths["embedder"]],
    )
    for result in results:
        ok(result)
    verbose, quiet = results[0], results[1]
    assert "CARL epoch 1/1" in verbose.stderr and "saved a CARLRegressor trained on 48 texts" in verbose.stderr
    assert quiet.stdout == "" and "CARL epoch" not in quiet.stderr and "saved" not in quiet.stderr
    return paths


def test_fit_saves_each_estimator_with_its_columns(models):
    regressor = skcarl.load(models["regressor"], device="cpu")
    classifier = skcarl.load(models["classifier"], device="cpu")
    embedder = skcarl.load(models["embedder"], device="cpu")
    assert type(regressor) is skcarl.CARLRegressor and type(classifier) is skcarl.CARLClassifier
    assert type(embedder) is skcarl.CARLEmbedder
    assert regressor.metadata_["va_cols"] == VA and regressor.metadata_["text_col"] == "text"
    assert classifier.metadata_["label_col"] == "emotion"
    assert classifier.classes_.tolist() == ["anger", "joy", "relief", "sadness"]
    # --param values arrive parsed (JSON) and --seed sets random_state
    assert regressor.max_epochs == 1 and regressor.batch_size == 8 and regressor.random_state == 0
    assert list(embedder.va_range) == [1, 9] and embedder.device == "cpu"


def test_regressor_embed_predict_evaluate(models, files):
    model, test = models["regressor"], files["test"]
    emb_path, pred_path = files["folder"] / "out" / "reg" / "emb.npy", files["folder"] / "out" / "reg" / "pred.csv"
    embed, predict, evaluate = run_all(
        ["embed", model, files["test_tsv"], "--out", emb_path, "--device", "cpu", "--quiet"],
        (["predict", model, "-", "--out", pred_path, "--device", "cpu", "--quiet"], files["test_csv"].read_text()),
        ["evaluate", model, files["test_csv"], "--device", "cpu", "--quiet"],
    )
    for result in (embed, predict, evaluate):
        ok(result)

    loaded = skcarl.load(model, device="cpu")
    texts = test["text"].tolist()
    embeddings = np.load(emb_path)
    assert embeddings.shape == (len(test), loaded.encoder_.config.hidden_size)
    np.testing.assert_array_equal(embeddings, loaded.transform(texts))

    predictions = pd.read_csv(pred_path)
    assert predictions.columns.tolist() == VA and len(predictions) == len(test)
    np.testing.assert_allclose(predictions.to_numpy(), loaded.predict(texts), rtol=1e-12)

    lines = evaluate.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| target"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["target", "n", "Pearson r", "MAE", "R²"]
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith(("| valence", "| arousal"))}
    assert set(rows) == set(VA)
    mae = np.abs(predictions["valence"] - test["valence"]).mean()
    assert f"{mae:.3f}" in rows["valence"]


def test_classifier_predict_and_evaluate(models, files):
    model, test = models["classifier"], files["test"]
    pred_path = files["folder"] / "out" / "clf.csv"
    predict, evaluate = run_all(
        ["predict", model, files["test_csv"], "--out", pred_path, "--device", "cpu", "--quiet"],
        ["evaluate", model, files["test_tsv"], "--device", "cpu", "--quiet"],
    )
    ok(predict), ok(evaluate)
    predictions = pd.read_csv(pred_path, keep_default_na=False)
    classes = ["anger", "joy", "relief", "sadness"]
    assert predictions.columns.tolist() == ["label", *(f"proba_{c}" for c in classes)]
    proba = predictions.iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert predictions["label"].tolist() == [classes[i] for i in proba.argmax(1)]

    accuracy = (predictions["label"] == test["emotion"]).mean()
    header, rule, row = [line for line in evaluate.stdout.splitlines() if line.startswith("|")]
    assert [c.strip() for c in header.strip("|").split("|")] == ["n", "accuracy", "macro-F1"]
    assert [c.strip() for c in row.strip("|").split("|")][:2] == [str(len(test)), f"{accuracy:.3f}"]


def test_multilabel_classifier_from_separated_labels(files, tiny_bert, capsys):
    """In-process through ``main`` (the same code as the script, without the cost of a subprocess)."""
    data = files["folder"] / "multi.csv"
    table = frame(32, 2)
    table["emotions"] = table["emotion"] + np.where(table["valence"] > 5, ",love", "")
    table.to_csv(data, index=False)
    model, pred_path = files["folder"] / "models" / "multi", files["folder"] / "out" / "multi.jsonl"
    args = ["--device", "cpu", "--quiet"]
    assert main(["fit", str(data), "--label-col", "emotions", "--label-sep", ",", "--param",
                 f"model_name_or_path={tiny_bert}", "--param", "max_epochs=1", "--param", "batch_size=8",
                 "--out", str(model), *args]) == 0
    assert main(["predict", str(model), str(data), "--out", str(pred_path), *args]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(data), *args]) == 0
    evaluate = capsys.readouterr()
    assert skcarl.load(model, device="cpu").multilabel_
    predictions = pd.read_json(pred_path, lines=True, dtype=False)
    classes = ["anger", "joy", "love", "relief", "sadness"]
    assert predictions.columns.tolist() == ["label", *(f"proba_{c}" for c in classes)]
    on = predictions.iloc[:, 1:].to_numpy() >= 0.5
    assert predictions["label"].tolist() == [",".join(c for c, o in zip(classes, row) if o) for row in on]
    header = next(line for line in evaluate.out.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["n", "exact match", "micro-F1", "macro-F1"]

    # a model saved without the CLI's metadata: the label column and the separator must be given
    meta_free = files["folder"] / "models" / "multi-no-meta"
    skcarl.load(model, device="cpu").save(meta_free, metadata={})
    assert main(["evaluate", str(meta_free), str(data), *args]) == 2
    assert "name it with --label-col" in capsys.readouterr().err
    assert main(["evaluate", str(meta_free), str(data), "--label-col", "emotions", *args]) == 2
    err = capsys.readouterr().err
    assert "multi-label" in err and "--label-sep" in err


def test_embedder_writes_parquet_and_refuses_to_predict(models, files):
    model, test = models["embedder"], files["test"]
    emb_path = files["folder"] / "out" / "emb.parquet"
    embed, predict = run_all(
        ["embed", model, files["test_csv"], "--out", emb_path, "--device", "cpu"],
        ["predict", model, files["test_csv"], "--out", files["folder"] / "out" / "never.csv", "--quiet"],
    )
    ok(embed)
    assert "wrote 16 x 32 embeddings" in embed.stderr
    embeddings = pd.read_parquet(emb_path)
    assert embeddings.columns.tolist() == [f"emb_{i}" for i in range(32)] and len(embeddings) == len(test)
    expected = skcarl.load(model, device="cpu").transform(test["text"].tolist())
    np.testing.assert_array_equal(embeddings.to_numpy(), expected)

    assert predict.returncode == 2
    assert predict.stderr.startswith("skcarl predict: error: this model is a CARLEmbedder")
    assert "skcarl embed" in predict.stderr and "Traceback" not in predict.stderr
    assert not (files["folder"] / "out" / "never.csv").exists()


def test_errors_in_a_subprocess_are_one_line_with_the_exit_status(files, tmp_path):
    missing_column, missing_model = run_all(
        ["fit", files["csv"], "--text-col", "sentence", "--va-cols", *VA, "--out", tmp_path / "m"],
        ["evaluate", tmp_path / "no-model", files["csv"]],
    )
    assert missing_column.returncode == 2 and missing_model.returncode == 1
    assert missing_column.stderr == ("skcarl fit: error: column(s) 'sentence' not found in "
                                     f"{str(files['csv'])!r}; its columns are: 'text', 'valence', 'arousal', "
                                     "'emotion'.\n")
    assert missing_model.stderr.startswith("skcarl evaluate: error: model folder")
    assert "no-model" in missing_model.stderr and "does not exist" in missing_model.stderr
    assert len(missing_model.stderr.splitlines()) == 1
    assert missing_column.stdout == missing_model.stdout == ""
    assert not (tmp_path / "m").exists()


def test_usage_errors(files, tmp_path, capsys):
    """The other error paths, in-process through ``main`` (the function the script calls)."""
    fit = ["fit", str(files["csv"]), "--va-cols", *VA, "--out", str(tmp_path / "model"), "--quiet"]
    (tmp_path / "data.xlsx").write_text("not read")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    cases = {  # name: (args, exit status, fragments of the message)
        "unknown param": ([*fit, "--param", "max_epoch=2"], 2, ["unknown parameter 'max_epoch'", "max_epochs,"]),
        "no key=value": ([*fit, "--param", "max_epochs"], 2, ["key=value"]),
        "bad value": ([*fit, "--param", "max_epochs=0"], 2, ["'max_epochs' parameter", "Got 0"]),
        "bad string value": ([*fit, "--param", "pooling=max"], 2, ["'pooling' parameter", "'max'"]),
        "bad device": ([*fit, "--device", "tpu"], 2, ["device='tpu'"]),
        "data type": (["fit", str(tmp_path / "data.xlsx"), "--label-col", "emotion", "--out", str(tmp_path / "m")],
                      2, ["unsupported file type '.xlsx'", ".csv, .tsv, .jsonl, .parquet"]),
        "output type": (["embed", str(tmp_path / "no-model"), str(files["csv"]), "--out", str(tmp_path / "e.txt")],
                        2, ["unsupported file type '.txt'", ".npy"]),
        "not numbers": (["fit", str(files["csv"]), "--va-cols", "emotion", "--out", str(tmp_path / "m")], 2,
                        ["column 'emotion' must hold numbers", "'joy'"]),
        "wrong estimator": (["fit", str(files["csv"]), "--label-col", "emotion", "--estimator", "regressor",
                             "--out", str(tmp_path / "m")], 2, ["--va-cols"]),
        "occupied out": (["fit", str(files["csv"]), "--va-cols", *VA, "--out", str(tmp_path / "busy")], 2,
                         ["not empty"]),
        "missing data": (["fit", str(tmp_path / "absent.csv"), "--va-cols", *VA, "--out", str(tmp_path / "m")], 1,
                         ["absent.csv", "does not exist"]),
    }
    for name, (args, status, fragments) in cases.items():
        assert main(args) == status, (name, capsys.readouterr().err)
        err = capsys.readouterr().err
        assert err.startswith(f"skcarl {args[0]}: error: ") and len(err.splitlines()) == 1, (name, err)
        for fragment in fragments:
            assert fragment in err, (name, fragment, err)
    assert not (tmp_path / "model").exists() and not (tmp_path / "m").exists()
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_help_lists_the_commands_and_their_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    fit_help = capsys.readouterr().out
    for option in ("--va-cols", "--label-col", "--param", "--out", "--quiet", "--device", "--seed", "exit status"):
        assert option in fit_help
    parser_help = build_parser().format_help()
    for command in ("demo", "fit", "embed", "predict", "evaluate"):
        assert command in parser_help


# ============================================================================================================= fuzzing


@pytest.fixture(scope="module")
def cli_model(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    texts, va = synthetic_affect(48, seed=0)
    fast = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
    CARLRegressor(tiny_bert, **fast).fit(texts, va).save(path, metadata={"text_col": "text", "va_cols": VA})
    return path


CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "NA", "null", "nan", "inf", "-inf", "1e999", '"', '""', "\\", "\x00", "😀", "1,2", "\n",
                     "\r", "{", "[1, 2]", "joy", "5.5", "-3", "\ufeff", "\udcff"]),
    st.floats(allow_nan=True).map(str), st.integers(-10**20, 10**20).map(str),
)


COLUMNS = st.sampled_from(["text", "valence", "arousal", "emotion", "", "Text", "valence ", "\ufefftext"])


@st.composite
def data_files(draw):
    """A CSV or JSONL file: well-formed, ragged, truncated, or plain garbage."""
    kind = draw(st.sampled_from([".csv", ".jsonl"]))
    shape = draw(st.sampled_from(["table", "table", "nearly valid", "garbage"]))
    if shape == "garbage":
        return kind, draw(st.binary(max_size=300))
    if shape == "nearly valid":  # text and two numbers per row, now and then a bad cell
        columns = ["text", "valence", "arousal"]
        cell = st.one_of(st.sampled_from(["happy day", "so sad", "angry", "calm", ""]), st.floats(1, 9).map(str))
        rows = draw(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=8))
        rows = [[row[0], *[draw(st.one_of(st.floats(1, 9).map(str), CELLS)) if draw(st.integers(0, 9)) == 0
                           else str(float(len(row[0]) % 9 + 1)) for _ in range(2)]] for row in rows]
    else:
        columns = draw(st.lists(COLUMNS, max_size=5))
        if draw(st.booleans()):
            columns = ["text", "valence", "arousal"] + columns
        rows = draw(st.lists(st.lists(CELLS, min_size=max(len(columns) - 1, 0), max_size=len(columns) + 1),
                             max_size=8))
    if kind == ".csv":
        lines = [",".join(columns)] + [",".join(row) for row in rows]
    else:
        lines = []
        for row in rows:
            record = {c: draw(st.one_of(st.just(v), st.floats(), st.none(), st.lists(st.integers(), max_size=2)))
                      for c, v in zip(columns, row)}
            lines.append(json.dumps(record))  # NaN and Infinity too, which strict JSON does not have
        if lines and draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["{", "not json", "[]", "1", ""])))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # cut anywhere, even inside a quote or a character
    return kind, text.encode("utf-8", "surrogatepass")


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = cli_main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def assert_clean_failure(status, err, command):
    assert status in (1, 2), (status, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skcarl {command}: error: "), err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=data_files())
def test_cli_fuzz_predict_on_malformed_files(file, cli_model):
    kind, content = file
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / f"data{kind}", Path(folder) / "out" / "pred.csv"
        data.write_bytes(content)
        status, _, err = run_cli(["predict", cli_model, data, "--out", out, "--device", "cpu", "--quiet"])
        event(f"exit status {status}")
        if status == 0:
            table = pd.read_csv(out)
            assert list(table.columns) == ["valence", "arousal"] and np.isfinite(table.to_numpy()).all()
        else:
            assert_clean_failure(status, err, "predict")
            assert not out.exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=data_files(), target=st.sampled_from([["--va-cols", "valence", "arousal"], ["--label-col", "text"]]))
def test_cli_fuzz_fit_on_malformed_files(file, target, tiny_bert):
    kind, content = file
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / f"data{kind}", Path(folder) / "model"
        data.write_bytes(content)
        status, _, err = run_cli(["fit", data, *target, "--param", f"model_name_or_path={tiny_bert}",
                                  "--param", "max_epochs=1", "--param", "batch_size=4", "--param", "va_map=learn",
                                  "--device", "cpu", "--seed", "0", "--quiet", "--out", out]
                                 if target[0] == "--label-col" else
                                 ["fit", data, *target, "--param", f"model_name_or_path={tiny_bert}",
                                  "--param", "max_epochs=1", "--param", "batch_size=4",
                                  "--device", "cpu", "--seed", "0", "--quiet", "--out", out])
        event(f"exit status {status}")
        if status == 0:
            assert np.isfinite(skcarl.load(out, device="cpu").transform(["i feel happy"])).all()
        else:
            assert_clean_failure(status, err, "fit")
            assert not out.exists()


def test_cli_a_file_with_a_header_and_no_rows_is_a_usage_error(cli_model, tmp_path):
    data = tmp_path / "header-only.csv"
    data.write_text("text,valence,arousal\n")
    status, _, err = run_cli(["predict", cli_model, data, "--out", tmp_path / "p.csv", "--device", "cpu"])
    assert_clean_failure(status, err, "predict")
    assert status == 2 and "header-only.csv' has no data rows" in err
