"""Saving a fitted CARL estimator to a folder, and loading it back without running pickled code.

A saved model is a folder::

    config.json          format version, estimator class, get_params(), versions, fitted attributes, metadata
    encoder_config.json  the Hugging Face config of the encoder (rebuilds the architecture, no download)
    model.safetensors    the CARLNetwork state dict: encoder, projection head, token head, task head
    tokenizer/           tokenizer.save_pretrained
    README.md            the model card (skcarl.model_card), not checksummed: it may be edited

Everything is JSON or safetensors: :func:`load` never unpickles (no ``pickle``, no ``torch.load``), so a folder
from an untrusted source cannot run code when it is loaded. Pickle and joblib still work on the estimators, for
files you trust.

Checksums: ``config.json`` records the SHA-256 of every other file (``"files"``), and the safetensors header
records the SHA-256 of ``config.json`` itself (its canonical JSON, without the ``"files"``, ``"versions"`` and
``"metadata"`` entries, which may be edited by hand). :func:`load` checks both, so a file that was truncated,
edited or swapped for another model's after saving is an :class:`InvalidModelError`, even where it would still
parse. They guard against accidents, not attackers (anyone can write a consistent folder): safety comes from
never running code from the folder. Each checksum the folder carries is verified, whichever is left; a folder
without them loads with a warning that says what was not verified. Only regular files inside the folder are
read, and JSON files of bounded size and depth (``_safe_files.py``).

Values that JSON cannot hold directly are written as one-key objects: ``{"__ndarray__": {"dtype", "shape",
"values"}}``, ``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (dicts whose keys are not all
strings, e.g. integer class labels), ``{"__scalar__": {"dtype", "value"}}`` (NumPy scalars), ``{"__float__":
"nan" | "inf" | "-inf"}`` and a few more, so that every fitted attribute comes back with its exact type and dtype.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ._safe_files import MAX_TOKENIZER_FILE_BYTES, check_folder, check_sizes, read_json
from ._version import __version__
from ._warnings import warn

__all__ = ["InvalidModelError", "load", "save"]

FORMAT = "skcarl-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
ENCODER_CONFIG_FILE = "encoder_config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
README_FILE = "README.md"  # the model card: not checksummed, so that people may edit it
# Entries of config.json outside its checksum: the checksums themselves, and what may be edited by hand.
_UNCHECKED_ENTRIES = ("files", "versions", "metadata")
_CONFIG_DIGEST_KEY = "skcarl_config_sha256"  # in the safetensors header
# The most memory one array of config.json may take once decoded (its JSON is at most 64 MiB).
_MAX_ARRAY_BYTES = 1 << 30
# An encoder_config.json is refused before the encoder is allocated when it describes more than this many times
# the weights of model.safetensors, plus this many (40 MB of float32: cheap to allocate, then named by shape).
_MAX_WEIGHTS_RATIO = 2
_WEIGHTS_SLACK = 10_000_000

# Fitted state that is not JSON: written to model.safetensors, encoder_config.json and tokenizer/ instead.
_NOT_IN_CONFIG = {"network_", "encoder_", "tokenizer_", "device_", "metadata_"}
# scikit-learn's record of set_output, a private attribute that a fitted estimator keeps; an estimator's own
# private fitted attributes are those it declares in _target_attributes.
_SKLEARN_PRIVATE_FITTED = ("_sklearn_output_config",)
# Parameters used only while fit runs, and not written: a loaded model has their default (None). A user's
# callback is any Python object, which JSON cannot hold and a pickle-free load could not rebuild.
TRAINING_ONLY_PARAMS = ("callbacks",)


class InvalidModelError(ValueError):
    """A saved-model folder whose content is garbled, tampered with, or not a skcarl model."""


# ====================================================================================== JSON encoding
_TAGS = ("__ndarray__", "__tuple__", "__dict__", "__scalar__", "__float__", "__complex__", "__bytes__", "__set__",
         "__frozenset__", "__path__", "__random_state__", "__device__")


def _encode(value, where: str = "value"):
    """A JSON-safe form of ``value`` that :func:`_decode` turns back into an equal object of the same type."""
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if type(value) is complex:
        return {"__complex__": [_encode(value.real, where), _encode(value.imag, where)]}
    if type(value) is bytes:
        return {"__bytes__": value.decode("latin-1")}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode_array(value, where)}
    if isinstance(value, np.generic):
        dtype = _check_dtype(value.dtype, where)
        return {"__scalar__": {"dtype": dtype.str, "value": _encode(value.item(), where)}}
    if type(value) is list:
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) is tuple:
        return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if type(value) in (set, frozenset):
        items = sorted(value, key=lambda v: (type(v).__name__, repr(v)))
        tag = "__set__" if type(value) is set else "__frozenset__"
        return {tag: [_encode(v, f"{where} item") for v in items]}
    if type(value) is dict:
        plain = all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS)
        if plain:
            return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__dict__": [[_encode(k, f"{where} key"), _encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, pathlib.PurePath):
        return {"__path__": {"class": type(value).__name__, "value": str(value)}}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if type(value) is np.random.RandomState:
        name, keys, pos, has_gauss, cached = value.get_state()
        return {"__random_state__": [name, _encode(keys, where), int(pos), int(has_gauss), float(cached)]}
    raise TypeError(f"Cannot save {where}: a {type(value).__module__}.{type(value).__qualname__} cannot be written "
                    "to JSON. A saved skcarl model holds None, bool, int, float, str, lists, tuples, sets, dicts, "
                    "NumPy arrays and scalars, paths and torch devices.")


def _check_dtype(dtype: np.dtype, where: str) -> np.dtype:
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufcUSO":
        raise TypeError(f"Cannot save {where}: NumPy dtype {dtype} is not supported (numbers, bool, str, object).")
    return dtype


def _encode_array(array: np.ndarray, where: str) -> dict:
    dtype = _check_dtype(array.dtype, where)
    if dtype.kind == "O":
        flat = [_encode(v, f"{where} element") for v in array.ravel()]
    else:
        flat = [_encode(v, where) for v in array.ravel().tolist()]
    return {"dtype": dtype.str, "shape": list(array.shape), "values": flat}


def _decode(value):
    """Inverse of :func:`_encode`; raises ``InvalidModelError`` on a malformed tag."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, body = next(iter(value.items()))
        try:
            return _DECODERS[tag](body)
        except InvalidModelError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, MemoryError) as exc:
            raise InvalidModelError(f"Malformed {tag} entry in {CONFIG_FILE}: {type(exc).__name__}: {exc}") from None
    return {k: _decode(v) for k, v in value.items()}


def _decode_array(body: dict) -> np.ndarray:
    dtype = np.dtype(body["dtype"])
    _check_dtype(dtype, "array")
    shape = tuple(int(n) for n in body["shape"])
    values = body["values"]
    if len(values) != math.prod(shape):
        raise ValueError(f"an array of shape {shape} needs {math.prod(shape)} values, got {len(values)}")
    if dtype.itemsize * len(values) > _MAX_ARRAY_BYTES:  # e.g. one string of dtype "<U2000000000"
        raise ValueError(f"an array of {len(values)} values of dtype {dtype.str} would take "
                         f"{dtype.itemsize * len(values):,} bytes")
    if dtype.kind == "O":
        array = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            array[i] = _decode(v)
    else:
        array = np.array([_decode(v) for v in values], dtype=dtype)
    return array.reshape(shape)


def _decode_float(body: str) -> float:
    if body not in ("nan", "inf", "-inf"):
        raise ValueError(f"{body!r} is not nan, inf or -inf")
    return float(body)


def _decode_path(body: dict):
    classes = {cls.__name__: cls for cls in (pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath,
                                             pathlib.PureWindowsPath, pathlib.PosixPath, pathlib.WindowsPath)}
    cls = classes[body["class"]]
    if cls in (pathlib.PosixPath, pathlib.WindowsPath):  # a concrete path of the other OS: the local kind
        cls = pathlib.Path
    return cls(body["value"])


def _decode_random_state(body: list) -> np.random.RandomState:
    name, keys, pos, has_gauss, cached = body
    state = np.random.RandomState()
    state.set_state((name, _decode(keys), int(pos), int(has_gauss), float(cached)))
    return state


_DECODERS = {
    "__ndarray__": _decode_array,
    "__tuple__": lambda body: tuple(_decode(v) for v in body),
    "__dict__": lambda body: {_decode(k): _decode(v) for k, v in body},
    "__scalar__": lambda body: np.dtype(_check_dtype(np.dtype(body["dtype"]), "scalar")).type(_decode(body["value"])),
    "__float__": _decode_float,
    "__complex__": lambda body: complex(_decode(body[0]), _decode(body[1])),
    "__bytes__": lambda body: body.encode("latin-1"),
    "__set__": lambda body: {_decode(v) for v in body},
    "__frozenset__": lambda body: frozenset(_decode(v) for v in body),
    "__path__": _decode_path,
    "__random_state__": _decode_random_state,
    "__device__": lambda body: torch.device(body),
}


def _estimator_classes() -> dict:
    from .classifier import CARLClassifier
    from .embedder import CARLEmbedder
    from .regressor import CARLRegressor

    return {cls.__name__: cls for cls in (CARLEmbedder, CARLRegressor, CARLClassifier)}


# ====================================================================================== save
def _is_fitted_name(name, cls) -> bool:
    """Fitted attributes of a ``cls`` that go into config.json: names ending in "_" (not dunders) and the private
    ones that ``cls`` declares (``_target_attributes``) or scikit-learn keeps."""
    return isinstance(name, str) and name not in _NOT_IN_CONFIG and (
        name in _SKLEARN_PRIVATE_FITTED or name in cls._target_attributes
        or (name.endswith("_") and not name.startswith("__")))


def saved_params(estimator) -> dict:
    """The parameters a saved or exported folder records: ``get_params()`` without ``TRAINING_ONLY_PARAMS``."""
    return {k: v for k, v in estimator.get_params(deep=False).items() if k not in TRAINING_ONLY_PARAMS}


def _fitted_attributes(estimator) -> dict:
    return {name: value for name, value in vars(estimator).items() if _is_fitted_name(name, type(estimator))}


def _is_model_folder(path: Path) -> bool:
    if not (path / CONFIG_FILE).is_file():  # a named pipe would block the read
        return False
    try:
        with open(path / CONFIG_FILE, encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def save(estimator, path, metadata=None) -> Path:
    """Save a fitted CARL estimator to the folder ``path``, in a form that loads without pickle.

    Parameters
    ----------
    estimator : CARLEmbedder, CARLRegressor or CARLClassifier
        A fitted estimator.
    path : str or path-like
        The folder to write. It is created (with its parents) if needed. An existing folder must be empty
        or hold a saved skcarl model, which is replaced; the new folder is written next to it first, so a
        failed save leaves the old model intact.
    metadata : dict or None, default=None
        Anything JSON-like to keep with the model (e.g. the column names it was trained on); after
        :func:`load` it is ``estimator.metadata_``. ``None`` keeps the ``metadata_`` of a loaded estimator,
        or stores an empty dict.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    TypeError
        If a parameter, fitted attribute or metadata value cannot be written to JSON (nothing is written).
    FileExistsError
        If ``path`` is a file, or a folder that is neither empty nor a saved skcarl model.

    See Also
    --------
    load : read the folder back.

    Examples
    --------
    >>> from skcarl import CARLRegressor, load
    >>> reg = CARLRegressor(max_epochs=1).fit(texts, va)  # doctest: +SKIP
    >>> reg.save("va-model", metadata={"va_cols": ["valence", "arousal"]})  # doctest: +SKIP
    PosixPath('va-model')
    >>> load("va-model").predict(["What a day!"])  # doctest: +SKIP
    array([[6.8, 5.9]])
    """
    from safetensors.torch import save_model
    from sklearn.utils.validation import check_is_fitted

    classes = _estimator_classes()
    name = type(estimator).__name__
    if classes.get(name) is not type(estimator):
        raise TypeError(f"save() writes CARLEmbedder, CARLRegressor and CARLClassifier; got {name}.")
    check_is_fitted(estimator, "network_")
    if metadata is None:
        metadata = getattr(estimator, "metadata_", None) or {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict; got {type(metadata).__name__}.")

    network = estimator.network_
    head = network.task_head
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": name,
        "versions": _versions(),
        "params": _encode(saved_params(estimator), "parameter"),
        "network": {
            "projection_dim": network.projection_dim,
            "pooling": network.pooling,
            "n_task_outputs": int(head.out_features) if head is not None else 0,
        },
        "fitted": {key: _encode(value, key) for key, value in _fitted_attributes(estimator).items()},
        "metadata": _encode(metadata, "metadata"),
    }
    json.dumps(config, allow_nan=False)  # everything checked before any file is written

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"Cannot save to {str(path)!r}: it is a file, not a folder.")
    if path.is_dir() and any(path.iterdir()) and not _is_model_folder(path):
        raise FileExistsError(f"Cannot save to {str(path)!r}: the folder is not empty and holds no saved skcarl "
                              "model; refusing to overwrite it. Choose a new or empty folder.")

    def write(staging: Path) -> None:
        (staging / ENCODER_CONFIG_FILE).write_text(network.encoder.config.to_json_string(use_diff=False),
                                                   encoding="utf-8")
        save_model(network, str(staging / WEIGHTS_FILE),
                   metadata={"format": "pt", "skcarl": __version__, _CONFIG_DIGEST_KEY: _config_digest(config)})
        estimator.tokenizer_.save_pretrained(str(staging / TOKENIZER_DIR))
        from .model_card import model_card

        (staging / README_FILE).write_text(model_card(estimator, "skcarl"), encoding="utf-8")
        config["files"] = {name: _sha256(staging / name) for name in _model_files(staging)}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, allow_nan=False), encoding="utf-8")

    write_folder(path, write, "saving")
    return path


def _config_digest(config: dict) -> str:
    """SHA-256 of the canonical JSON of ``config`` without the entries that are not checked."""
    checked = {k: v for k, v in config.items() if k not in _UNCHECKED_ENTRIES}
    text = json.dumps(checked, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_files(folder: Path) -> list[str]:
    """Every file of a model folder but config.json, as sorted relative POSIX paths; hidden files (".DS_Store",
    ...) and hidden folders are not part of a model."""
    files = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        if file.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append(relative.as_posix())
    return sorted(name for name in files if name not in (CONFIG_FILE, README_FILE))


def _saved_config_digest(path: Path):
    """The checksum of config.json kept in the weights file's header (None if it has none, or is unreadable)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS_FILE), "pt") as weights:
            return (weights.metadata() or {}).get(_CONFIG_DIGEST_KEY)
    except Exception:  # unreadable weights are reported by their own check
        return None


def _checksum_problems(path: Path, config: dict, under: str = "") -> list[str]:
    """What differs from the checksums the folder carries: the SHA-256 of every file in config.json's "files"
    entry, and config.json's own checksum in the weights file's header, each verified whenever it is there."""
    recorded = config.get("files")
    problems = []
    if recorded is not None and not (isinstance(recorded, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in recorded.items())):
        problems.append(f'the "files" entry of {CONFIG_FILE} is malformed')
    elif recorded is not None:
        for name, digest in sorted(recorded.items()):
            if not name.startswith(under):
                continue
            file = path / name
            if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
                problems.append(f"{name} is missing")
            elif _sha256(file) != digest:
                problems.append(f"{name} does not match the SHA-256 recorded in {CONFIG_FILE}")
        problems += [f"unexpected file {name}" for name in _model_files(path)
                     if name.startswith(under) and name not in recorded]
    if not under:
        saved_digest = _saved_config_digest(path)
        if saved_digest is not None and saved_digest != _config_digest(config):
            problems.append(f"{CONFIG_FILE} was changed after the model was saved (it no longer matches the checksum "
                            f"kept in {WEIGHTS_FILE}; only its \"metadata\" entry may be edited by hand)")
    return problems


def _warn_unverified(path: Path, config: dict) -> None:
    """Say which files of the folder no checksum covers: a folder saved without them, or one whose
    checksums were removed, loads, but a truncated, edited or swapped file in it would go unnoticed."""
    has_files, has_digest = config.get("files") is not None, _saved_config_digest(path) is not None
    if has_files and has_digest:
        return
    if not has_files and not has_digest:
        what = "carries no checksums at all: none of its files can be verified"
    elif not has_files:
        what = (f"has no \"files\" entry in {CONFIG_FILE}: only {CONFIG_FILE} is verified (by the checksum kept in "
                f"{WEIGHTS_FILE}), not the weights, encoder configuration or tokenizer files")
    else:
        what = f"has no checksum of {CONFIG_FILE} in {WEIGHTS_FILE}: {CONFIG_FILE} cannot be verified"
    warn(f"The saved model at {str(path)!r} {what}. Saving the model again records them.")


def write_folder(path: Path, write, verb: str) -> None:
    """Run ``write(staging)`` on a new folder beside ``path``, then move it to ``path``: a failure at any point
    leaves no half-written folder, and an old one at ``path`` intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{verb}-", dir=path.parent))
    try:
        write(staging)
        _replace_folder(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, path: Path) -> None:
    """Move the finished folder ``new`` to ``path``; an old model at ``path`` is removed only after."""
    if not path.exists():
        os.replace(new, path)
        return
    old = path.parent / f".{path.name}.old-{os.getpid()}-{id(new)}"
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict:
    import safetensors
    import sklearn
    import transformers

    return {"skcarl": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__}


# ====================================================================================== load
def load(path, device="auto"):
    """Load an estimator saved by :func:`save` (or ``estimator.save``), without running pickled code.

    Only JSON files, safetensors weights and tokenizer files are read: ``pickle`` and ``torch.load`` are never
    called, so loading a folder from an untrusted source cannot execute code. The encoder's architecture is
    rebuilt from ``encoder_config.json`` (no download) and must be one that transformers ships.

    Parameters
    ----------
    path : str or path-like
        A folder written by :func:`save`.
    device : str or torch.device, default="auto"
        Where to put the network: ``"auto"`` (CUDA, then Apple MPS, then the CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ... The estimator's ``device`` parameter (used by a later ``fit``) is left as saved;
        ``device_`` says where the loaded model lives.

    Returns
    -------
    CARLEmbedder, CARLRegressor or CARLClassifier
        The fitted estimator, in evaluation mode, with the saved parameters and fitted attributes, and
        ``metadata_`` (the dict given to :func:`save`).

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the files of a saved model is missing.
    ValueError
        If ``device`` is not a device this machine can run on (checked before any file is read).
    InvalidModelError
        If the folder holds anything but regular files and folders (a named pipe, a symbolic link to outside
        the folder, a folder where a file belongs), a JSON file too large or nested too deep, if a file is
        garbled or does not match the others (invalid JSON, an unknown estimator or encoder
        class, a weights file that is not safetensors or whose tensors have the wrong names or shapes), or if
        a file was truncated, edited or swapped after saving (its SHA-256 differs from the one recorded by
        :func:`save`; only the ``"metadata"`` entry of ``config.json`` may be edited by hand).

    Warns
    -----
    UserWarning
        If the model was saved with another skcarl version, or the folder carries no checksums (or only some).

    See Also
    --------
    save : write the folder.

    Examples
    --------
    >>> import skcarl
    >>> clf = skcarl.load("emotion-model", device="cpu")  # doctest: +SKIP
    >>> clf.predict(["I can't stop smiling"])  # doctest: +SKIP
    array(['joy'], dtype='<U8')
    """
    from ._devices import resolve_device

    target = resolve_device(device)  # the device is refused before a file is read
    path = Path(path)
    from .export import is_exported_folder, load_exported

    if is_exported_folder(path):  # a sentence-transformers or transformers folder written by export()
        return load_exported(path, device)
    if not path.is_dir():
        raise FileNotFoundError(f"No saved skcarl model at {str(path)!r}: "
                                f"{'it is a file, not a folder' if path.exists() else 'the folder does not exist'}.")
    for name in (CONFIG_FILE, ENCODER_CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR):
        if not (path / name).exists():
            raise FileNotFoundError(f"{str(path)!r} is not a complete saved skcarl model: {name} is missing "
                                    f"(a saved model holds {CONFIG_FILE}, {ENCODER_CONFIG_FILE}, {WEIGHTS_FILE} "
                                    f"and {TOKENIZER_DIR}/).")
    check_folder(path, InvalidModelError, files=(CONFIG_FILE, ENCODER_CONFIG_FILE, WEIGHTS_FILE),
                 folders=(TOKENIZER_DIR,))
    check_sizes(path / TOKENIZER_DIR, MAX_TOKENIZER_FILE_BYTES, InvalidModelError)
    config = _read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InvalidModelError(f"{path / CONFIG_FILE} is not the configuration of a saved skcarl model "
                                f"(no \"format\": \"{FORMAT}\").")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise InvalidModelError(f"{path / CONFIG_FILE} has format version {version!r}; this skcarl ({__version__}) "
                                f"reads versions 1 to {FORMAT_VERSION}. Upgrade skcarl to load it.")
    saved_version = (config.get("versions") or {}).get("skcarl")
    if saved_version != __version__:
        warnings.warn(f"This model was saved with skcarl {saved_version} and is loaded with skcarl {__version__}; "
                      "results may differ.", UserWarning, stacklevel=2)

    classes = _estimator_classes()
    cls = classes.get(config.get("estimator"))
    if cls is None:
        raise InvalidModelError(f"{path / CONFIG_FILE} names the estimator {config.get('estimator')!r}; skcarl "
                                f"loads {', '.join(sorted(classes))}.")
    try:
        params, fitted, metadata = (_decode(config[key]) for key in ("params", "fitted", "metadata"))
        spec = config["network"]
        projection_dim, pooling = spec["projection_dim"], spec["pooling"]
        projection_dim = None if projection_dim is None else int(projection_dim)
        n_task_outputs = int(spec["n_task_outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidModelError):
            raise
        raise InvalidModelError(f"{path / CONFIG_FILE} is incomplete or malformed: {type(exc).__name__}: {exc}") \
            from None
    if not isinstance(params, dict) or not isinstance(fitted, dict) or not isinstance(metadata, dict):
        raise InvalidModelError(f"{path / CONFIG_FILE}: params, fitted and metadata must be JSON objects.")
    try:
        estimator = cls(**params)
    except TypeError as exc:
        valid = sorted(cls().get_params())
        raise InvalidModelError(f"{path / CONFIG_FILE} holds parameters that {cls.__name__} does not take "
                                f"({exc}); its parameters are {', '.join(valid)}.") from None

    network = _rebuild_network(path, projection_dim, pooling, n_task_outputs)
    try:
        tokenizer = _load_tokenizer(path / TOKENIZER_DIR)
    except InvalidModelError as exc:
        changed = _checksum_problems(path, config, under=f"{TOKENIZER_DIR}/")
        if not changed:
            raise
        raise InvalidModelError(f"{exc} ({'; '.join(changed)}: truncated, edited or replaced after saving)") from None

    for name, value in fitted.items():
        if not _is_fitted_name(name, cls) or name in vars(estimator):
            raise InvalidModelError(f"{path / CONFIG_FILE}: {name!r} is not a fitted attribute.")
        setattr(estimator, name, value)
    problems = _checksum_problems(path, config)
    if problems:
        raise InvalidModelError(f"{path} does not hold the files it was saved with: {'; '.join(problems)}. The "
                                "files were truncated, edited or swapped after saving; save the model again, or "
                                "restore the original files.")
    _warn_unverified(path, config)
    network.to(target)
    network.eval()
    estimator.network_ = network
    estimator.encoder_ = network.encoder
    estimator.tokenizer_ = tokenizer
    estimator.device_ = target
    estimator.metadata_ = metadata
    return estimator


def _read_json(file: Path):
    return read_json(file, InvalidModelError)


def _rebuild_network(path: Path, projection_dim: int | None, pooling: str, n_task_outputs: int):
    """A CARLNetwork of the saved architecture holding the saved weights (on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .network import CARLNetwork

    encoder_file = path / ENCODER_CONFIG_FILE
    encoder_config = _read_json(encoder_file)
    if not isinstance(encoder_config, dict):
        raise InvalidModelError(f"{encoder_file} must hold a JSON object.")
    model_type = encoder_config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise InvalidModelError(f"{encoder_file} names the encoder type {model_type!r}, which this transformers "
                                "does not ship (custom code is never run when loading).")
    if encoder_config.get("auto_map"):
        raise InvalidModelError(f"{encoder_file} asks for custom model code (auto_map); skcarl loads only the "
                                "architectures that transformers ships.")
    if pooling not in ("mean", "cls") or (projection_dim is not None and projection_dim < 1) or n_task_outputs < 0:
        raise InvalidModelError(f"{path / CONFIG_FILE}: invalid network settings (projection_dim={projection_dim}, "
                                f"pooling={pooling!r}, n_task_outputs={n_task_outputs}).")
    weights_file = path / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_file), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"{weights_file} is not a valid safetensors file (was it replaced or truncated?): "
                                f"{exc}") from None
    try:
        hf_config = CONFIG_MAPPING[model_type].from_dict(encoder_config)
        _check_size(encoder_file, AutoModel, hf_config, weights_file, sum(t.numel() for t in tensors.values()))
        encoder = AutoModel.from_config(hf_config)
        network = CARLNetwork(encoder, projection_dim, pooling, n_task_outputs)
    except InvalidModelError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise InvalidModelError(f"Cannot rebuild the encoder from {encoder_file}: {type(exc).__name__}: {exc}") \
            from None
    expected = network.state_dict()
    problems = [f"{key}: saved {tuple(tensors[key].shape)}, model needs {tuple(value.shape)}"
                for key, value in expected.items() if key in tensors and tensors[key].shape != value.shape]
    unexpected = sorted(tensors.keys() - expected.keys())
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    # tied weights (e.g. shared embeddings) are saved once: a missing name is fine if it shares its storage with
    # a saved one in the rebuilt network
    present = {_storage_key(expected[key]): key for key in expected if key in tensors}
    missing = []
    for key in expected.keys() - tensors.keys():
        twin = present.get(_storage_key(expected[key]))
        if twin is None:
            missing.append(key)
        else:
            tensors[key] = tensors[twin]
    if missing:
        problems.append(f"missing tensors {sorted(missing)}")
    if problems:
        raise InvalidModelError(f"{weights_file} does not match the network described by {CONFIG_FILE} and "
                                f"{ENCODER_CONFIG_FILE}: " + "; ".join(problems))
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InvalidModelError(f"Cannot load {weights_file}: {exc}") from None
    return network


def _check_size(encoder_file: Path, auto_model, hf_config, weights_file: Path, n_saved: int) -> None:
    """Refuse an encoder configuration with far more weights than the weights file holds (``n_saved`` numbers),
    before allocating them: a few edited numbers in encoder_config.json must not exhaust the memory. A smaller
    difference is left to the comparison of the tensors' shapes, which names them."""
    with torch.device("meta"):  # shapes only, no memory
        n_weights = sum(p.numel() for p in auto_model.from_config(hf_config).parameters())
    if n_weights > _MAX_WEIGHTS_RATIO * n_saved + _WEIGHTS_SLACK:
        raise InvalidModelError(f"{encoder_file} describes an encoder of {n_weights:,} weights, far more than the "
                                f"{n_saved:,} that {weights_file} holds: the files do not belong together.")


def _storage_key(tensor: torch.Tensor):
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # the tokenizers backend raises plain Exceptions on a garbled tokenizer.json
        raise InvalidModelError(f"Cannot load the tokenizer from {folder}: {type(exc).__name__}: {exc}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
