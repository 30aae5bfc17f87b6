"""The training loop's concerns as small objects called at its events: validation, timing, progress, early
stopping, keeping the best weights, and whatever a user adds.

:meth:`skcarl.training.CARLTrainer.fit` runs the epochs; at each event it calls every callback in order, the
built-in ones first, then those of the estimator's ``callbacks`` parameter:

========================  ==========================================================================
``on_train_begin``        before the first epoch
``on_epoch_begin``        before an epoch's first batch
``on_batch_end``          after each optimisation step, with that step's losses
``on_epoch_end``          after an epoch, with its ``record`` (the row ``history_`` will hold); a
                          callback may add entries to it, or stop training by setting
                          ``trainer.stop_training = True`` (the epoch is kept, no further one runs)
``on_train_end``          after the last epoch, with the whole history
========================  ==========================================================================

Callbacks exist only while ``fit`` runs: they are not saved with the model (:func:`skcarl.io.save` drops the
``callbacks`` parameter). In a data-parallel fit every rank calls them; the records hold the global batch's
means, identical on all ranks, so a decision taken from a record is the same everywhere (a callback that stops
on one rank alone would leave the others waiting). :attr:`CARLTrainer.is_main
<skcarl.training.CARLTrainer.is_main>` tells the one process that should write files or print.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from ._param_validation import Constraint


class Callback:
    """Base class of the training loop's callbacks: every hook does nothing until a subclass overrides it.

    The hooks receive the :class:`~skcarl.training.CARLTrainer`, which holds the network being trained
    (``trainer.network``), the optimiser, ``trainer.config`` (the resolved training parameters),
    ``trainer.global_step`` and ``trainer.stop_training``.

    Examples
    --------
    A callback that logs the training loss of each epoch and stops once it falls below a threshold:

    >>> from skcarl.callbacks import Callback
    >>> class StopBelow(Callback):
    ...     def __init__(self, threshold):
    ...         self.threshold = threshold
    ...     def on_train_begin(self, trainer):
    ...         self.losses = []             # a callback object may be reused by several fits
    ...     def on_epoch_end(self, trainer, record):
    ...         self.losses.append(record["loss"])
    ...         if record["loss"] < self.threshold:
    ...             trainer.stop_training = True
    >>> from skcarl import CARLEmbedder
    >>> emb = CARLEmbedder(max_epochs=10, callbacks=[StopBelow(0.5)])
    >>> emb.fit(texts, va)  # doctest: +SKIP
    """

    def on_train_begin(self, trainer) -> None:
        """Called before the first epoch."""

    def on_epoch_begin(self, trainer, epoch: int, n_batches: int) -> None:
        """Called before epoch ``epoch`` (counted from 1), which runs ``n_batches`` optimisation steps."""

    def on_batch_end(self, trainer, losses: dict) -> None:
        """Called after each optimisation step with its losses (this rank's means in a data-parallel fit)."""

    def on_epoch_end(self, trainer, record: dict) -> None:
        """Called after each epoch with ``record``: ``epoch`` and the epoch's mean losses, plus what the
        callbacks before this one added (``validation_loss``, ``duration``)."""

    def on_train_end(self, trainer, history: list) -> None:
        """Called after the last epoch with the records of all epochs."""


class ValidationScoring(Callback):
    """Adds ``validation_loss`` to each epoch's record: :meth:`CARLTrainer.validation_loss
    <skcarl.training.CARLTrainer.validation_loss>` of the held-out texts.

    In a data-parallel fit the loss is measured once, on rank 0, and shared, so that every rank takes the
    same early-stopping decision.

    Parameters
    ----------
    tokens : skcarl.tokens.TokenizedTexts
        The held-out texts.
    label_rows : torch.Tensor
        Their label rows, on the training device.

    Examples
    --------
    >>> import torch
    >>> from skcarl.callbacks import ValidationScoring
    >>> class Trainer:                      # stands in for a CARLTrainer
    ...     parallel, is_main = None, True
    ...     def validation_loss(self, tokens, label_rows):
    ...         return 0.25
    >>> record = {"epoch": 1}
    >>> ValidationScoring(tokens=None, label_rows=torch.zeros(2, 2)).on_epoch_end(Trainer(), record)
    >>> record
    {'epoch': 1, 'validation_loss': 0.25}
    """

    def __init__(self, tokens, label_rows: torch.Tensor):
        self.tokens = tokens
        self.label_rows = label_rows

    def on_epoch_end(self, trainer, record: dict) -> None:
        if trainer.parallel is None:
            record["validation_loss"] = trainer.validation_loss(self.tokens, self.label_rows)
            return
        value = trainer.validation_loss(self.tokens, self.label_rows) if trainer.is_main else math.nan
        record["validation_loss"] = trainer.parallel.from_main(value)


class EpochTimer(Callback):
    """Adds ``duration`` to each epoch's record: seconds from the epoch's start to this callback's turn at its
    end (so, placed after :class:`ValidationScoring`, the validation is counted).

    Examples
    --------
    >>> from skcarl.callbacks import EpochTimer
    >>> timer, record = EpochTimer(), {"epoch": 1}
    >>> timer.on_epoch_begin(None, epoch=1, n_batches=3)
    >>> timer.on_epoch_end(None, record)
    >>> record["duration"] >= 0
    True
    """

    def on_epoch_begin(self, trainer, epoch: int, n_batches: int) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, trainer, record: dict) -> None:
        record["duration"] = time.perf_counter() - self.started


class ProgressBar(Callback):
    """A progress bar per epoch with the last step's losses and, after each epoch, one line with its record;
    shown by the main process only (rank 0 of a data-parallel fit).

    Parameters
    ----------
    verbose : int
        0 shows nothing; 1 a bar that is replaced by the next epoch's and the epoch lines; 2 and more keep
        every epoch's bar.
    max_epochs : int
        The number of epochs, for the bar's title.

    Examples
    --------
    >>> from skcarl.callbacks import ProgressBar
    >>> class Trainer:                      # stands in for a CARLTrainer
    ...     is_main = True
    >>> bar = ProgressBar(verbose=1, max_epochs=3)
    >>> bar.on_train_begin(Trainer())
    >>> bar.on_epoch_begin(Trainer(), epoch=1, n_batches=1)
    >>> bar.on_batch_end(Trainer(), {"loss": 0.5, "contrastive_loss": 0.5})
    >>> bar.on_epoch_end(Trainer(), {"epoch": 1, "loss": 0.5})  # doctest: +SKIP
    epoch=1  loss=0.5000
    """

    def __init__(self, verbose: int, max_epochs: int):
        self.verbose = verbose
        self.max_epochs = max_epochs

    def on_train_begin(self, trainer) -> None:
        self.shown = self.verbose >= 1 and trainer.is_main
        self.bar = None

    def on_epoch_begin(self, trainer, epoch: int, n_batches: int) -> None:
        self.bar = tqdm(total=n_batches, desc=f"CARL epoch {epoch}/{self.max_epochs}", unit="batch",
                        disable=not self.shown, leave=self.verbose >= 2)

    def on_batch_end(self, trainer, losses: dict) -> None:
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items() if k != "loss"}, refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.bar.close()
        if self.shown:
            tqdm.write("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))


# what EarlyStopping and BestWeights watch unless told otherwise: one home for both
MONITOR = "validation_loss"
THRESHOLD = 1e-4


def _improves(value: float, best: float, threshold: float) -> bool:
    """Whether ``value`` is lower than ``best`` by more than ``threshold`` (never for NaN)."""
    return value < best - threshold


class EarlyStopping(Callback):
    """Stops training after ``patience`` epochs in a row whose ``monitor`` value did not improve on the best
    one so far by more than ``threshold``. An epoch whose record lacks ``monitor`` is ignored.

    Parameters
    ----------
    patience : int
        The estimator's ``n_iter_no_change``.
    monitor : str, default="validation_loss"
        The record entry to watch; lower is better.
    threshold : float, default=1e-4
        The least decrease that counts as an improvement.

    Examples
    --------
    >>> from skcarl.callbacks import EarlyStopping
    >>> class Trainer:                      # stands in for a CARLTrainer
    ...     stop_training = False
    >>> trainer, stopping = Trainer(), EarlyStopping(patience=2)
    >>> stopping.on_train_begin(trainer)
    >>> for epoch, loss in enumerate([1.0, 0.5, 0.9, 0.95], start=1):
    ...     stopping.on_epoch_end(trainer, {"epoch": epoch, "validation_loss": loss})
    ...     print(epoch, trainer.stop_training)
    1 False
    2 False
    3 False
    4 True
    """

    def __init__(self, patience: int, monitor: str = MONITOR, threshold: float = THRESHOLD):
        self.patience = patience
        self.monitor = monitor
        self.threshold = threshold

    def on_train_begin(self, trainer) -> None:
        self.best, self.epochs_without_gain = math.inf, 0

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.monitor not in record:
            return
        if _improves(record[self.monitor], self.best, self.threshold):
            self.best, self.epochs_without_gain = record[self.monitor], 0
            return
        self.epochs_without_gain += 1
        if self.epochs_without_gain >= self.patience:
            trainer.stop_training = True


class BestWeights(Callback):
    """Keeps a CPU copy of the weights of the epoch with the best ``monitor`` value and puts them back when
    training ends; sets ``trainer.best_epoch``. Without ``monitor`` in the records (no validation split) the
    last epoch is the one kept.

    The copy covers the network and the label points (the class anchors can be learnt).

    Parameters
    ----------
    monitor : str, default="validation_loss"
        The record entry to watch; lower is better.
    threshold : float, default=1e-4
        The least decrease that counts as an improvement.

    Examples
    --------
    >>> import torch
    >>> from skcarl.callbacks import BestWeights
    >>> class Trainer:                      # stands in for a CARLTrainer
    ...     network, label_points, best_epoch = torch.nn.Linear(1, 1, bias=False), torch.nn.Identity(), None
    >>> trainer, best = Trainer(), BestWeights()
    >>> best.on_train_begin(trainer)
    >>> for epoch, loss in enumerate([1.0, 0.5, 0.9], start=1):
    ...     _ = trainer.network.weight.data.fill_(epoch)
    ...     best.on_epoch_end(trainer, {"epoch": epoch, "validation_loss": loss})
    >>> best.on_train_end(trainer, history=[])
    >>> trainer.best_epoch, trainer.network.weight.item()
    (2, 2.0)
    """

    def __init__(self, monitor: str = MONITOR, threshold: float = THRESHOLD):
        self.monitor = monitor
        self.threshold = threshold

    def on_train_begin(self, trainer) -> None:
        self.best, self.state = math.inf, None

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.monitor not in record:
            trainer.best_epoch = record["epoch"]
        elif _improves(record[self.monitor], self.best, self.threshold):
            self.best, trainer.best_epoch = record[self.monitor], record["epoch"]
            self.state = [_cpu_state(trainer.network), _cpu_state(trainer.label_points)]

    def on_train_end(self, trainer, history: list) -> None:
        if self.state is not None:
            trainer.network.load_state_dict(self.state[0])
            trainer.label_points.load_state_dict(self.state[1])
            self.state = None  # the copy is not needed any more, and a CPU copy of an encoder is large


def _cpu_state(module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def default_callbacks(config, validation=None) -> list:
    """The built-in callbacks of a fit, in the order they run: the ones that complete an epoch's record
    (validation loss, duration) before those that read it.

    Parameters
    ----------
    config : skcarl.training.TrainingConfig
        Reads ``verbose``, ``max_epochs`` and ``n_iter_no_change``.
    validation : tuple of (TokenizedTexts, torch.Tensor) or None, default=None
        The held-out texts and their label rows; None trains without validation or early stopping.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from skcarl.callbacks import default_callbacks
    >>> config = SimpleNamespace(verbose=0, max_epochs=3, n_iter_no_change=2)
    >>> [type(c).__name__ for c in default_callbacks(config)]
    ['EpochTimer', 'ProgressBar', 'BestWeights']
    >>> [type(c).__name__ for c in default_callbacks(config, validation=(None, None))]
    ['ValidationScoring', 'EpochTimer', 'ProgressBar', 'BestWeights', 'EarlyStopping']
    """
    callbacks = [] if validation is None else [ValidationScoring(*validation)]
    callbacks += [EpochTimer(), ProgressBar(config.verbose, config.max_epochs), BestWeights()]
    if validation is not None:
        callbacks.append(EarlyStopping(config.n_iter_no_change))
    return callbacks


class CallbackList(Constraint):
    """The ``callbacks`` parameter's constraint in the estimators' table: a list (or tuple) of :class:`Callback`."""

    description = "a list of skcarl.callbacks.Callback instances"

    def is_satisfied_by(self, value):
        return isinstance(value, (list, tuple)) and all(isinstance(c, Callback) for c in value)

    def reason(self, value):
        if isinstance(value, (list, tuple)):
            wrong = next(c for c in value if not isinstance(c, Callback))
            return (f"{wrong!r} in the list is a {type(wrong).__name__}; subclass Callback and override the hooks "
                    "you need")
        return ""
