"""Which torch device a ``device`` value means, and whether this machine can run on it.

One function, :func:`resolve_device`, serves the estimators' ``fit``, :func:`skcarl.load` and the command
line's ``--device``, so that a device is refused (with the devices this machine has) when it is chosen, never
deep inside torch at the first forward pass. :func:`parse_device` is the machine-independent part: what any
machine would refuse (garbage, the ``meta`` device, an accelerator type that skcarl does not run on).
"""

from __future__ import annotations

import numbers

import torch

# Device types skcarl trains and predicts on: the mixed precision, out-of-memory and seeding code knows these.
SUPPORTED_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device strings this machine can run skcarl on, e.g. ``['cpu', 'cuda:0', 'cuda:1']``.

    Examples
    --------
    >>> from skcarl._devices import available_devices
    >>> available_devices()[0]
    'cpu'
    """
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _refused(device, why: str) -> ValueError:
    return ValueError(f"device={device!r} {why}. Devices available on this machine: "
                      f"{', '.join(repr(d) for d in available_devices())} (or 'auto').")


def parse_device(device) -> torch.device | None:
    """The ``torch.device`` that ``device`` names, or None for ``"auto"``/None; no check of the machine.

    Accepted: ``"auto"``, None, a device string of type cpu, cuda or mps (``"cuda:1"``), a ``torch.device``
    of those types, or a non-negative int (a CUDA ordinal, as torch reads it). Refused with ``ValueError``:
    strings torch cannot parse, ``"meta"`` (a device that holds no data), other accelerators (``"xpu"``,
    ``"hpu"``, ...), ``"cpu:1"`` and ``"mps:1"`` (there is one of each); ``TypeError`` for other types.

    Examples
    --------
    >>> from skcarl._devices import parse_device
    >>> parse_device("cuda:1")
    device(type='cuda', index=1)
    >>> parse_device("meta")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: device='meta' is the meta device, which holds no data: nothing can be computed on it. Devices ...
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return None
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        if device < 0:
            raise _refused(device, "is not a device: an ordinal must be >= 0")
        device = f"cuda:{int(device)}"
    if isinstance(device, str):
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise _refused(device, "is not a torch device (use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps')") from None
    elif isinstance(device, torch.device):
        parsed = device
    else:
        raise TypeError(f"device={device!r:.60} is a {type(device).__name__}, not a device: use 'auto', None, a "
                        "device string ('cpu', 'cuda', 'cuda:1', 'mps'), an int CUDA ordinal or a torch.device.")
    if parsed.type == "meta":
        raise _refused(device, "is the meta device, which holds no data: nothing can be computed on it")
    if parsed.type not in SUPPORTED_TYPES:
        raise _refused(device, f"names a device of type {parsed.type!r}; skcarl runs on "
                               f"{', '.join(SUPPORTED_TYPES)} devices")
    if parsed.type in ("cpu", "mps") and parsed.index not in (None, 0):
        raise _refused(device, f"does not exist: there is one {parsed.type} device, {parsed.type!r}")
    if parsed.type in ("cpu", "mps"):
        return torch.device(parsed.type)  # "cpu:0" is the CPU: one spelling, so that devices compare equal
    return parsed


def resolve_device(device) -> torch.device:
    """The device ``device`` means on this machine: ``"auto"`` picks CUDA, then Apple MPS, then the CPU; an
    explicit device must exist here (a CUDA index below the number of GPUs).

    Raises ``ValueError`` naming the device and the devices this machine has, ``TypeError`` for a value that
    is no kind of device.

    Examples
    --------
    >>> from skcarl._devices import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in {"cuda", "mps", "cpu"}
    True
    """
    parsed = parse_device(device)
    if parsed is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise _refused(device, "was requested but CUDA is not available on this machine (a CPU-only torch "
                                   "build or no GPU)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise _refused(device, f"does not exist: this machine has {count} CUDA device"
                                   f"{'s' if count != 1 else ''}")
    if parsed.type == "mps" and not _mps_available():
        raise _refused(device, "was requested but Apple MPS is not available on this machine")
    return parsed
