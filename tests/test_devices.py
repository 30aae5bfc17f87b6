"""A device is checked when it is chosen (issue 24): in fit, in skcarl.load(device=...) and in the CLI's --device.

One function, ``skcarl._devices.resolve_device``, decides for all three. The machine's accelerators are faked
with monkeypatch where a case needs CUDA or MPS to exist (or not).
"""

import numpy as np
import pytest
import torch
from conftest import synthetic_affect

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._devices import available_devices, parse_device, resolve_device
from skcarl.cli import main as cli_main

FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(32, seed=1)

# strings torch parses (or not) that no machine of this test suite can train on
NEVER_USABLE = ["meta", "meta:0", "xpu", "xpu:0", "hpu", "mtia", "privateuseone", "ipu", "xla", "lazy", "vulkan",
                "cpu:1", "mps:1", "garbage", "", " cpu", "CPU", "cuda:-1", "cuda:0:1", "cuda:1e3", "gpu7", "tpu",
                "auto ", "cuda:", -1]
NOT_DEVICES = [3.5, True, False, ["cpu"], {"device": "cpu"}, b"cpu", np.float64(0.0)]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture(scope="module")
def saved(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model"
    CARLRegressor(tiny_bert, **FAST).fit(X, VA).save(path)
    return path


@pytest.mark.parametrize("device", NEVER_USABLE, ids=repr)
def test_devices_no_machine_can_use_are_refused_by_name(device, no_cuda):
    with pytest.raises(ValueError) as info:
        resolve_device(device)
    message = str(info.value)
    assert message.startswith(f"device={device!r} "), message
    assert "Devices available on this machine: 'cpu'" in message
    with pytest.raises(ValueError):
        parse_device(device)  # refused whatever the machine


@pytest.mark.parametrize("device", NOT_DEVICES, ids=repr)
def test_values_that_are_no_kind_of_device_are_a_type_error(device):
    with pytest.raises(TypeError, match="not a device"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", 0, torch.device("cuda", 1), "mps"], ids=repr)
def test_an_accelerator_this_machine_lacks_is_refused(device, no_cuda):
    with pytest.raises(ValueError, match="is not available on this machine"):
        resolve_device(device)
    assert parse_device(device) is not None  # another machine could run on it


@pytest.mark.parametrize("device", ["cuda:2", "cuda:7", 2, torch.device("cuda", 5)], ids=repr)
def test_a_cuda_index_past_the_device_count_is_refused(device, two_gpus):
    with pytest.raises(ValueError, match=r"does not exist: this machine has 2 CUDA devices\. Devices available on "
                                         r"this machine: 'cpu', 'cuda:0', 'cuda:1'"):
        resolve_device(device)


def test_cuda_indices_within_the_count_resolve(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(np.int64(1)) == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu"), "auto", None], ids=repr)
def test_the_cpu_and_auto_resolve(device, no_cuda):
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor, CARLClassifier], ids=lambda c: c.__name__)
@pytest.mark.parametrize("device", ["meta", "xpu:0", "cuda", "cuda:7", "garbage", "cpu:1", 3.5], ids=repr)
def test_fit_refuses_the_device_in_scikit_learns_wording_before_loading_anything(cls, device, no_cuda, monkeypatch):
    def no_backbone(*args):
        raise AssertionError("the backbone was loaded before the device was checked")

    monkeypatch.setattr(skcarl._base, "load_backbone", no_backbone)
    est = cls("no-such-folder", **{**FAST, "device": device})
    y = np.where(VA[:, 0] > 5, "joy", "sadness") if cls is CARLClassifier else VA
    with pytest.raises(ValueError) as info:
        est.fit(X, y)
    message = str(info.value)
    assert message.startswith(f"The 'device' parameter of {cls.__name__} must be "), message
    assert message.endswith(f"Got {device!r} instead."), message
    assert "network_" not in vars(est)


def test_fit_refuses_a_gpu_past_the_count(tiny_bert, two_gpus):
    with pytest.raises(ValueError, match=r"device='cuda:3' does not exist: this machine has 2 CUDA devices"):
        CARLEmbedder(tiny_bert, **{**FAST, "device": "cuda:3"}).fit(X, VA)


@pytest.mark.parametrize("device", ["meta", "xpu:0", "cuda", "cuda:7", "mps", "garbage", ""], ids=repr)
def test_load_refuses_the_device_before_reading_the_folder(device, saved, no_cuda, monkeypatch):
    monkeypatch.setattr(skcarl.io, "_read_json", lambda *a: pytest.fail("the folder was read"))
    with pytest.raises(ValueError, match=f"device={device!r} "):
        skcarl.load(saved, device=device)


def test_load_on_the_cpu_predicts(saved):
    assert np.isfinite(skcarl.load(saved, device="cpu:0").predict(X[:3])).all()


@pytest.mark.parametrize("device", ["meta", "xpu:0", "cuda", "cuda:7", "garbage"])
@pytest.mark.parametrize("command", ["fit", "embed", "predict", "evaluate"])
def test_the_cli_refuses_the_device_with_a_usage_error(command, device, saved, tiny_bert, tmp_path, capsys, no_cuda):
    data = tmp_path / "data.csv"
    data.write_text("text,valence,arousal\n" + "".join(f"{t},{v:.2f},{a:.2f}\n" for t, (v, a) in zip(X, VA)))
    if command == "fit":
        args = ["fit", str(data), "--va-cols", "valence", "arousal", "--out", str(tmp_path / "m"),
                "--param", f"model_name_or_path={tiny_bert}"]
    elif command == "evaluate":
        args = ["evaluate", str(saved), str(data)]
    else:
        args = [command, str(saved), str(data), "--out", str(tmp_path / "out.csv")]
    assert cli_main([*args, "--device", device, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"device={device!r}" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_inference_checks_the_device_parameter_for_what_no_machine_can_use(tiny_bert, no_cuda):
    est = CARLEmbedder(tiny_bert, **FAST).fit(X, VA)
    expected = est.transform(X[:3])
    est.set_params(device="meta")
    with pytest.raises(ValueError, match=r"The 'device' parameter of CARLEmbedder must be .*Got 'meta' instead\."):
        est.transform(X[:3])
    # a model trained or saved on a GPU predicts where it was loaded (device_), whatever its parameter says
    est.set_params(device="cuda:3")
    np.testing.assert_allclose(est.transform(X[:3]), expected, rtol=1e-6)
    assert est.device_ == torch.device("cpu")
