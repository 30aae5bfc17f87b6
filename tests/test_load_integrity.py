"""skcarl.load trusts nothing in the folder (issue 24): every checksum the folder carries is verified, a folder
with none says so, only regular files inside the folder are read, and no file can make load hang, recurse or
exhaust memory: each is an InvalidModelError naming the file.

Cases that could hang (named pipes) run load in a daemon thread that the test unblocks if it waits too long.
"""

import json
import os
import pickle
import shutil
import threading
import warnings

import joblib
import numpy as np
import pytest
import torch
from conftest import FAST, fit_each, synthetic_affect
from safetensors.torch import load_file, save_file

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.io import InvalidModelError

X, VA = synthetic_affect(32, seed=3)
HANG_LIMIT_S = 60


@pytest.fixture(scope="module")
def saved(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    CARLRegressor(tiny_bert, **FAST).fit(X, VA).save(folder / "regressor")
    CARLRegressor(tiny_bert, **{**FAST, "random_state": 1}).fit(X, VA).save(folder / "twin")
    labels = np.where(VA[:, 0] > 5, "joy", "sadness")
    CARLClassifier(tiny_bert, **FAST).fit(X, labels).save(folder / "classifier")
    return folder


@pytest.fixture
def model(saved, tmp_path):
    shutil.copytree(saved / "regressor", tmp_path / "model")
    return tmp_path / "model"


def edit_json(file, change):
    config = json.loads(file.read_text())
    change(config)
    file.write_text(json.dumps(config))


def drop_files_entry(model):
    edit_json(model / "config.json", lambda c: c.pop("files"))


def drop_header_checksum(model):
    weights = model / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt"})


def load_quietly(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skcarl.load(model, device="cpu")


# =========================================================================================================== checksums
CONFIG_EDITS = {
    "a parameter": lambda c: c["params"].update(batch_size=4),
    "a fitted attribute": lambda c: c["fitted"]["target_mean_"]["__ndarray__"]["values"].__setitem__(0, 99.0),
    "the network": lambda c: c["network"].update(pooling="cls"),
    "the seed": lambda c: c["params"].update(random_state=5),
}


@pytest.mark.parametrize("edit", list(CONFIG_EDITS))
def test_the_header_checksum_is_verified_without_the_files_entry(edit, model):
    drop_files_entry(model)
    load_quietly(model)  # unedited: loads
    edit_json(model / "config.json", CONFIG_EDITS[edit])
    with pytest.raises(InvalidModelError, match="config.json was changed after the model was saved"):
        load_quietly(model)


def test_weights_of_another_model_are_found_without_the_files_entry(model, saved):
    """The same architecture trained with another seed: every shape agrees, only the header's checksum differs."""
    drop_files_entry(model)
    shutil.copy(saved / "twin" / "model.safetensors", model / "model.safetensors")
    with pytest.raises(InvalidModelError, match="config.json was changed after the model was saved"):
        load_quietly(model)


def test_the_files_entry_is_verified_without_the_header_checksum(model):
    drop_header_checksum(model)  # the weights' SHA-256 in config.json no longer matches
    with pytest.raises(InvalidModelError, match="model.safetensors does not match the SHA-256"):
        load_quietly(model)


def test_a_folder_without_any_checksum_loads_with_a_warning(model):
    drop_files_entry(model)
    drop_header_checksum(model)
    with pytest.warns(UserWarning, match="carries no checksums at all: none of its files can be verified") as record:
        est = skcarl.load(model, device="cpu")
    assert record[0].filename == __file__
    assert np.isfinite(est.predict(X[:2])).all()


def test_a_folder_without_the_files_entry_warns_that_the_other_files_are_unverified(model):
    drop_files_entry(model)
    with pytest.warns(UserWarning, match="only config.json is verified"):
        skcarl.load(model, device="cpu")


def test_a_complete_folder_loads_without_a_warning(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skcarl.load(model, device="cpu")


@pytest.mark.parametrize("files", ["not a dict", ["model.safetensors"], {"model.safetensors": 3}, None, 5])
def test_a_malformed_files_entry_is_refused(files, model):
    edit_json(model / "config.json", lambda c: c.update(files=files))
    if files is None:  # "files": null is no files entry: the header checksum still holds
        with pytest.warns(UserWarning, match="only config.json is verified"):
            skcarl.load(model, device="cpu")
        return
    with pytest.raises(InvalidModelError, match='the "files" entry of config.json is malformed'):
        skcarl.load(model, device="cpu")


# =========================================================================================== only regular files inside
def load_with_deadline(model):
    """skcarl.load in a daemon thread; (exception or None, whether it finished in time)."""
    outcome = {}

    def run():
        try:
            load_quietly(model)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT_S)
    return outcome.get("error"), not thread.is_alive()


def unblock(fifo):
    """Open the FIFO for writing once, so that a reader blocked on it returns."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "encoder_config.json",
                                  "tokenizer/tokenizer_config.json", "tokenizer/tokenizer.json",
                                  "tokenizer/extra.txt"])
def test_a_named_pipe_in_the_folder_is_refused_not_waited_on(name, model):
    target = model / name
    if target.exists():
        target.unlink()
    os.mkfifo(target)
    try:
        error, finished = load_with_deadline(model)
    finally:
        unblock(target)
    assert finished, f"load hung on a named pipe at {name}"
    assert isinstance(error, InvalidModelError), repr(error)
    assert "named pipe" in str(error) and str(target) in str(error)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "encoder_config.json",
                                  "tokenizer/tokenizer.json"])
def test_a_symlink_to_a_file_outside_the_folder_is_refused(name, model, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(model / name, outside / "file")
    (model / name).unlink()
    (model / name).symlink_to(outside / "file")
    with pytest.raises(InvalidModelError, match="is a symbolic link to .* outside the model folder"):
        load_quietly(model)


def test_a_symlinked_tokenizer_folder_outside_is_refused(model, tmp_path):
    shutil.move(model / "tokenizer", tmp_path / "tokenizer")
    (model / "tokenizer").symlink_to(tmp_path / "tokenizer", target_is_directory=True)
    with pytest.raises(InvalidModelError, match="outside the model folder"):
        load_quietly(model)


def test_a_symlink_inside_the_folder_and_a_symlinked_folder_load(model, tmp_path):
    tokenizer = model / "tokenizer"
    (tokenizer / "tokenizer.json").rename(tokenizer / "real.json")
    (tokenizer / "tokenizer.json").symlink_to("real.json")
    edit_json(model / "config.json",
              lambda c: c["files"].update({"tokenizer/real.json": c["files"]["tokenizer/tokenizer.json"]}))
    link = tmp_path / "link-to-model"
    link.symlink_to(model, target_is_directory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(skcarl.load(link, device="cpu").predict(X[:2])).all()


def test_a_dangling_symlink_is_refused(model):
    (model / "tokenizer" / "dangling.json").symlink_to(model / "tokenizer" / "nowhere.json")
    with pytest.raises(InvalidModelError, match="dangling.json"):
        load_quietly(model)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "encoder_config.json"])
def test_a_folder_in_place_of_a_file_is_refused(name, model):
    (model / name).unlink()
    (model / name).mkdir()
    with pytest.raises(InvalidModelError, match=f"{name} is a folder where a file belongs"):
        load_quietly(model)


def test_a_file_in_place_of_the_tokenizer_folder_is_refused(model):
    shutil.rmtree(model / "tokenizer")
    (model / "tokenizer").write_text("{}")
    with pytest.raises(InvalidModelError, match="tokenizer is a file where a folder belongs"):
        load_quietly(model)


# ====================================================================================================== malformed JSON
@pytest.mark.parametrize("name", ["config.json", "encoder_config.json"])
@pytest.mark.parametrize("depth", [100_000, 5_000, 500], ids=lambda d: f"depth {d}")
def test_deeply_nested_json_is_refused(name, depth, model):
    (model / name).write_text("[" * depth + "]" * depth)
    with pytest.raises(InvalidModelError, match=rf"{name} is nested"):
        load_quietly(model)


def test_deep_nesting_inside_a_valid_config_is_refused(model):
    nested = {}
    for _ in range(200):
        nested = {"__tuple__": [nested]}
    drop_header_checksum(model)
    edit_json(model / "config.json", lambda c: c["metadata"].update(deep=nested))
    with pytest.raises(InvalidModelError, match="nested more than 100 levels"):
        load_quietly(model)


@pytest.mark.parametrize("name", ["config.json", "encoder_config.json"])
def test_a_huge_json_file_is_refused_without_reading_it(name, model):
    with open(model / name, "r+b") as f:
        f.truncate(2**36)  # a sparse 64 GiB file: nothing is written to disk
    with pytest.raises(InvalidModelError, match=rf"{name} is 68,719,476,736 bytes"):
        load_quietly(model)


@pytest.mark.parametrize("body", [
    {"dtype": "<U2000000000", "shape": [1], "values": ["a"]},
    {"dtype": "<f8", "shape": [10**12], "values": [1.0]},
    {"dtype": "<f8", "shape": [-1], "values": []},
    {"dtype": "<V8", "shape": [1], "values": [1]},
], ids=["huge itemsize", "huge shape", "negative shape", "void dtype"])
def test_a_hostile_array_in_config_is_refused(body, model):
    drop_files_entry(model)
    drop_header_checksum(model)  # no checksum to fail: the decoding itself must refuse the array
    edit_json(model / "config.json", lambda c: c["fitted"].update(target_mean_={"__ndarray__": body}))
    with pytest.raises(InvalidModelError):
        load_quietly(model)


@pytest.mark.parametrize("change", [
    {"hidden_size": 2**20, "intermediate_size": 2**20, "vocab_size": 2**24},
    {"vocab_size": 10**15},
], ids=["wide", "huge vocabulary"])
def test_an_encoder_config_too_large_for_its_weights_is_refused_before_allocating(change, model):
    edit_json(model / "encoder_config.json", lambda c: c.update(change))
    with pytest.raises(InvalidModelError, match="encoder_config.json describes an encoder of"):
        load_quietly(model)


def test_a_huge_tokenizer_file_is_refused_without_reading_it(model):
    with open(model / "tokenizer" / "tokenizer.json", "r+b") as f:
        f.truncate(2**36)
    with pytest.raises(InvalidModelError, match=r"tokenizer\.json is 68,719,476,736 bytes"):
        load_quietly(model)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_saving_over_a_folder_with_a_named_pipe_does_not_hang(saved, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    os.mkfifo(target / "config.json")
    est = load_quietly(saved / "regressor")
    outcome = {}

    def run():
        try:
            est.save(target)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT_S)
    unblock(target / "config.json")
    assert not thread.is_alive(), "save hung on a named pipe"
    assert isinstance(outcome.get("error"), FileExistsError), outcome


def test_a_deeply_nested_config_in_the_save_target_is_not_a_model(saved, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileExistsError, match="holds no saved skcarl model"):
        load_quietly(saved / "regressor").save(target)


# ======================================================================================= no pickle, no edits, no swaps


@pytest.fixture(scope="module")
def models(tiny_bert):
    """One fitted estimator of each kind; tests that change one work on a pickled copy."""
    return fit_each(tiny_bert, X, VA)


class _Payload:
    """Unpickling this creates the file ``path``: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


MALICIOUS_PLACES = ["model.safetensors", "config.json", "encoder_config.json", "tokenizer/tokenizer.json",
                    "tokenizer/tokenizer_config.json", "tokenizer", "tokenizer/vocab.txt", "pytorch_model.bin"]


def flip_last_byte(path):
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(bytes(content))


EDITS = {
    "config: a fitted value": (lambda m: edit_json(m / "config.json", lambda c: c["fitted"]["target_mean_"][
        "__ndarray__"]["values"].__setitem__(0, 0.0)), "config.json was changed after the model was saved"),
    "config: a parameter": (lambda m: edit_json(m / "config.json", lambda c: c["params"].update(max_length=64)),
                            "config.json was changed after the model was saved"),
    "encoder config": (lambda m: edit_json(m / "encoder_config.json", lambda c: c.update(hidden_dropout_prob=0.5)),
                       "encoder_config.json does not match the SHA-256 recorded in config.json"),
    "weights: one bit": (lambda m: flip_last_byte(m / "model.safetensors"),
                         "model.safetensors does not match the SHA-256 recorded in config.json"),
    "tokenizer vocabulary": (lambda m: edit_json(m / "tokenizer" / "tokenizer.json",
                                                 lambda c: c["model"]["vocab"].update(happy=5, sad=9)),
                             "tokenizer.json does not match the SHA-256"),
    "tokenizer file removed": (lambda m: (m / "tokenizer" / "tokenizer.json").unlink(),
                               r"tokenizer/tokenizer.json is missing"),
    "tokenizer file added": (lambda m: (m / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhappy\n"),
                             r"unexpected file tokenizer/vocab.txt"),
}


def another_tokenizer(folder):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "sad", "happy", "i", "feel"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)


SWAPS = {
    "weights of another model of the same architecture": (
        lambda m, other: shutil.copy(other / "model.safetensors", m / "model.safetensors"),
        "model.safetensors does not match the SHA-256 recorded in config.json"),
    "config of another model": (lambda m, other: shutil.copy(other / "config.json", m / "config.json"),
                                "does not match the SHA-256 recorded in config.json|config.json was changed"),
    "config and encoder config": (
        lambda m, other: (os.replace(m / "config.json", m / "x"), os.replace(m / "encoder_config.json",
                                                                             m / "config.json"),
                          os.replace(m / "x", m / "encoder_config.json")),
        "is not the configuration of a saved skcarl model"),
    "tokenizer of another encoder": (
        lambda m, other: (shutil.rmtree(m / "tokenizer"), another_tokenizer(m / "tokenizer")),
        "tokenizer.json does not match the SHA-256"),
}


def test_load_never_unpickles(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load"), (joblib, "load")]:
        monkeypatch.setattr(module, name, refuse)
    est = skcarl.load(model, device="cpu")
    assert est.predict(X[:2]).shape == (2, 2)


@pytest.mark.parametrize("place", MALICIOUS_PLACES)
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_pickle_anywhere_in_the_folder_is_never_run(place, writer, model, tmp_path):
    marker = tmp_path / "pwned"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()  # the payload does run when unpickled

    target = model / place
    if target.is_dir():
        shutil.rmtree(target)
    if place == "pytorch_model.bin":  # the usual name of pickled weights, instead of the safetensors file
        (model / "model.safetensors").unlink()
    if writer == "pickle":
        target.write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    else:
        torch.save({"weight": _Payload(marker)}, target)
    with pytest.raises((InvalidModelError, FileNotFoundError)) as info:
        skcarl.load(model, device="cpu")
    assert not marker.exists()
    assert str(model) in str(info.value) or "model.safetensors" in str(info.value)


@pytest.mark.parametrize("file", ["config.json", "encoder_config.json", "model.safetensors",
                                  "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"])
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_truncated_file_is_a_clear_error(file, keep, model):
    path = model / file
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(InvalidModelError, match=file.split("/")[-1]):
        skcarl.load(model, device="cpu")


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_file_is_a_clear_error(edit, model):
    change, message = EDITS[edit]
    change(model)
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model, device="cpu")


def test_metadata_may_be_edited_by_hand_and_hidden_files_are_ignored(model):
    edit_json(model / "config.json", lambda c: c["metadata"].update(note="edited"))
    (model / "tokenizer" / ".DS_Store").write_bytes(b"\x00finder")
    assert skcarl.load(model, device="cpu").metadata_ == {"note": "edited"}


@pytest.mark.parametrize("swap", list(SWAPS))
def test_a_swapped_file_is_a_clear_error(swap, model, saved):
    change, message = SWAPS[swap]
    change(model, saved / "twin")
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model, device="cpu")


def test_a_folder_saved_before_checksums_still_loads(model):
    """Folders without the recorded checksums (older saves) load as before, unverified, with a warning."""
    edit_json(model / "config.json", lambda c: c.pop("files"))
    weights = model / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="carries no checksums at all"):  # loaded, but said to be unverified
        assert skcarl.load(model, device="cpu").predict(X[:2]).shape == (2, 2)


@pytest.mark.parametrize("other_version", ["0.0.1", "99.0.0"], ids=["older", "newer"])
@pytest.mark.parametrize("dumper", ["pickle", "joblib"])
def test_a_pickle_from_another_version_warns_with_both_versions(other_version, dumper, models, tmp_path,
                                                                monkeypatch):
    import skcarl._base

    with monkeypatch.context() as patch:
        patch.setattr(skcarl._persistence, "__version__", other_version)
        if dumper == "pickle":
            blob = pickle.dumps(models[CARLEmbedder])
        else:
            joblib.dump(models[CARLEmbedder], tmp_path / "m.joblib")
    with pytest.warns(UserWarning, match=rf"pickled with skcarl {other_version} and is loaded with skcarl "
                                         rf"{skcarl.__version__}"):
        est = pickle.loads(blob) if dumper == "pickle" else joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(est.transform(X[:3]), models[CARLEmbedder].transform(X[:3]))
    with warnings.catch_warnings():  # the same version loads silently
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(models[CARLEmbedder]))


@pytest.mark.parametrize("other_version", ["0.0.1", "99.0.0"], ids=["older", "newer"])
def test_a_saved_model_from_another_version_warns_with_both_versions(other_version, model):
    edit_json(model / "config.json", lambda c: c["versions"].update(skcarl=other_version))
    with pytest.warns(UserWarning, match=rf"saved with skcarl {other_version} and is loaded with skcarl "
                                         rf"{skcarl.__version__}"):
        skcarl.load(model, device="cpu")
