"""The training loop's callbacks (skcarl/callbacks.py) and the estimators' ``callbacks`` parameter."""

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.base import clone

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.callbacks import (
    BestWeights,
    Callback,
    EarlyStopping,
    EpochTimer,
    ProgressBar,
    ValidationScoring,
    default_callbacks,
)

FAST = dict(batch_size=16, max_epochs=2, queue_size=16, random_state=0, device="cpu")


class Recorder(Callback):
    """Records every event it receives, with a copy of what came with it."""

    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, trainer, epoch, n_batches):
        self.events.append(("epoch_begin", epoch, n_batches))

    def on_batch_end(self, trainer, losses):
        self.events.append(("batch_end", dict(losses)))

    def on_epoch_end(self, trainer, record):
        self.events.append(("epoch_end", dict(record)))

    def on_train_end(self, trainer, history):
        self.events.append(("train_end", [dict(r) for r in history]))


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, record):
        if record["epoch"] >= self.epochs:
            trainer.stop_training = True


def _trainer(**attributes):
    """A stand-in for CARLTrainer with just the attributes a callback reads."""
    return SimpleNamespace(**{"stop_training": False, "best_epoch": None, "parallel": None, "is_main": True,
                              **attributes})


# ---------------------------------------------------------------------------------------------- each callback
def test_early_stopping_counts_epochs_without_a_gain_above_the_threshold():
    trainer, stopping = _trainer(), EarlyStopping(patience=2, threshold=0.1)
    stopping.on_train_begin(trainer)
    stops = []
    # 0.95 is lower than 1.0 but not by more than the threshold: no gain; 0.5 resets the count
    for epoch, loss in enumerate([1.0, 0.95, 0.5, 0.45, 0.44], start=1):
        stopping.on_epoch_end(trainer, {"epoch": epoch, "validation_loss": loss})
        stops.append(trainer.stop_training)
    assert stops == [False, False, False, False, True]


def test_early_stopping_never_counts_nan_as_a_gain_and_ignores_records_without_the_monitor():
    trainer, stopping = _trainer(), EarlyStopping(patience=2)
    stopping.on_train_begin(trainer)
    for epoch in (1, 2, 3):
        stopping.on_epoch_end(trainer, {"epoch": epoch})
    assert not trainer.stop_training
    stopping.on_epoch_end(trainer, {"epoch": 4, "validation_loss": math.nan})
    stopping.on_epoch_end(trainer, {"epoch": 5, "validation_loss": math.nan})
    assert trainer.stop_training


def test_early_stopping_starts_afresh_on_each_fit():
    trainer, stopping = _trainer(), EarlyStopping(patience=1)
    stopping.on_train_begin(trainer)
    stopping.on_epoch_end(trainer, {"epoch": 1, "validation_loss": 0.1})
    stopping.on_train_begin(trainer)
    stopping.on_epoch_end(trainer, {"epoch": 1, "validation_loss": 0.5})  # worse than the last fit, first of this
    assert not trainer.stop_training


def test_best_weights_restores_the_best_epoch_of_network_and_label_points():
    trainer = _trainer(network=torch.nn.Linear(2, 1), label_points=torch.nn.Linear(1, 1))
    best = BestWeights()
    best.on_train_begin(trainer)
    for epoch, loss in enumerate([1.0, 0.2, 0.7, math.nan], start=1):
        trainer.network.weight.data.fill_(epoch)
        trainer.label_points.weight.data.fill_(10 * epoch)
        best.on_epoch_end(trainer, {"epoch": epoch, "validation_loss": loss})
    assert trainer.best_epoch == 2 and trainer.network.weight.eq(4).all()  # not restored before the end
    best.on_train_end(trainer, history=[])
    assert trainer.network.weight.eq(2).all() and trainer.label_points.weight.item() == 20


def test_best_weights_without_validation_keeps_the_last_epoch():
    trainer = _trainer(network=torch.nn.Linear(2, 1), label_points=torch.nn.Identity())
    best = BestWeights()
    best.on_train_begin(trainer)
    for epoch in (1, 2, 3):
        trainer.network.weight.data.fill_(epoch)
        best.on_epoch_end(trainer, {"epoch": epoch, "loss": 1.0 / epoch})
    best.on_train_end(trainer, history=[])
    assert trainer.best_epoch == 3 and trainer.network.weight.eq(3).all()


def test_validation_scoring_on_one_process_and_from_rank_0_in_a_data_parallel_fit():
    calls = []

    def validation_loss(tokens, rows):
        calls.append((tokens, rows))
        return 0.25

    rows = torch.zeros(2, 2)
    record = {"epoch": 1}
    ValidationScoring("held-out", rows).on_epoch_end(_trainer(validation_loss=validation_loss), record)
    assert record == {"epoch": 1, "validation_loss": 0.25} and calls == [("held-out", rows)]

    shared = []
    parallel = SimpleNamespace(from_main=lambda value: shared.append(value) or 0.5)
    other_rank = _trainer(validation_loss=validation_loss, is_main=False)
    other_rank.parallel = parallel
    record = {"epoch": 1}
    ValidationScoring("held-out", rows).on_epoch_end(other_rank, record)
    assert len(calls) == 1 and math.isnan(shared[0]) and record["validation_loss"] == 0.5


def test_epoch_timer_measures_from_the_epoch_start(monkeypatch):
    clock = iter([10.0, 12.5])
    monkeypatch.setattr("skcarl.callbacks.time.perf_counter", lambda: next(clock))
    timer, record = EpochTimer(), {"epoch": 1}
    timer.on_epoch_begin(None, 1, 4)
    timer.on_epoch_end(None, record)
    assert record["duration"] == 2.5


@pytest.mark.parametrize("verbose, is_main, shown", [(0, True, False), (1, True, True), (1, False, False)])
def test_progress_bar_shows_the_epoch_line_on_the_main_process_only(capsys, verbose, is_main, shown):
    bar, trainer = ProgressBar(verbose, max_epochs=2), _trainer(is_main=is_main)
    bar.on_train_begin(trainer)
    bar.on_epoch_begin(trainer, 1, 2)
    bar.on_batch_end(trainer, {"loss": 1.0, "contrastive_loss": 1.0})
    bar.on_batch_end(trainer, {"loss": 0.5, "contrastive_loss": 0.5})
    bar.on_epoch_end(trainer, {"epoch": 1, "loss": 0.75, "duration": 0.5})
    out = capsys.readouterr()
    assert ("epoch=1  loss=0.7500  duration=0.5000" in out.out) is shown
    assert ("CARL epoch 1/2" in out.err) is shown


def test_default_callbacks_complete_the_record_before_they_read_it():
    config = SimpleNamespace(verbose=0, max_epochs=3, n_iter_no_change=4)
    names = [type(c).__name__ for c in default_callbacks(config, validation=("tokens", "rows"))]
    assert names.index("ValidationScoring") < names.index("EpochTimer") < names.index("ProgressBar")
    assert names.index("ValidationScoring") < names.index("BestWeights")
    assert names.index("ValidationScoring") < names.index("EarlyStopping")
    assert "EarlyStopping" not in [type(c).__name__ for c in default_callbacks(config)]


def test_the_callbacks_parameter_names_itself_and_the_wrong_item():
    for ok in (None, [], [Recorder(), StopAfter(1)]):
        CARLEmbedder(callbacks=ok).validate_params()
    with pytest.raises(ValueError, match=r"'callbacks' parameter of CARLEmbedder must be None or a list.*Got <func"):
        CARLEmbedder(callbacks=lambda trainer: None).validate_params()
    with pytest.raises(ValueError, match=r"'log' in the list is a str"):
        CARLEmbedder(callbacks=[Recorder(), "log"]).validate_params()


# ---------------------------------------------------------------------------------------------- in a fit
def test_a_user_callback_receives_the_events_in_order(tiny_bert, affect_data):
    X, y = affect_data  # 64 texts, 16 per batch: 4 steps an epoch
    recorder = Recorder()
    emb = CARLEmbedder(tiny_bert, **FAST, callbacks=[recorder]).fit(X, y)
    kinds = [event[0] for event in recorder.events]
    epoch = ["epoch_begin", "batch_end", "batch_end", "batch_end", "batch_end", "epoch_end"]
    assert kinds == ["train_begin", *epoch, *epoch, "train_end"]
    assert [e[1:] for e in recorder.events if e[0] == "epoch_begin"] == [(1, 4), (2, 4)]
    assert set(recorder.events[2][1]) >= {"loss", "contrastive_loss", "detection_loss"}
    # a user callback runs after the built-in ones: it sees the record as history_ keeps it
    assert [e[1] for e in recorder.events if e[0] == "epoch_end"] == emb.history_
    assert "duration" in emb.history_[0]
    assert recorder.events[-1][1] == emb.history_


def test_a_user_callback_stops_training_after_the_current_epoch(tiny_bert, affect_data):
    X, y = affect_data
    recorder = Recorder()
    emb = CARLEmbedder(tiny_bert, **{**FAST, "max_epochs": 4}, callbacks=[StopAfter(2), recorder]).fit(X, y)
    assert emb.n_iter_ == len(emb.history_) == 2 and emb.best_epoch_ == 2
    # the callbacks after the one that stopped still see the epoch, and the end of training
    assert [e[0] for e in recorder.events][-2:] == ["epoch_end", "train_end"]


def test_a_user_callback_stops_training_with_a_validation_split_and_keeps_the_best_weights(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **{**FAST, "max_epochs": 4}, validation_fraction=0.25, n_iter_no_change=10,
                       callbacks=[StopAfter(3)]).fit(X, y)
    scores = emb.validation_scores_
    assert emb.n_iter_ == 3 and emb.best_epoch_ == 1 + int(np.argmin(scores))


def test_callbacks_survive_get_params_set_params_and_clone():
    recorder = Recorder()
    est = CARLRegressor(callbacks=[recorder])
    assert est.get_params()["callbacks"] == [recorder] and est.get_params()["callbacks"][0] is recorder
    cloned = clone(est)
    copied = cloned.get_params()["callbacks"]
    assert len(copied) == 1 and isinstance(copied[0], Recorder) and copied[0] is not recorder
    est.set_params(callbacks=None)
    assert est.callbacks is None and cloned.callbacks == copied
    assert CARLEmbedder().callbacks is None and CARLClassifier().get_params()["callbacks"] is None


@pytest.mark.parametrize("callbacks", [lambda trainer: None, [print], Recorder()])
def test_bad_callbacks_fail_before_training(tiny_bert, affect_data, monkeypatch, callbacks):
    monkeypatch.setattr("skcarl._base.load_backbone", lambda *a, **k: pytest.fail("loaded the backbone"))
    X, y = affect_data
    with pytest.raises(ValueError, match="'callbacks' parameter"):
        CARLEmbedder(tiny_bert, **FAST, callbacks=callbacks).fit(X, y)


def test_a_model_fitted_with_a_callback_saves_and_loads_without_it(tiny_bert, affect_data, tmp_path):
    X, y = affect_data
    reg = CARLRegressor(tiny_bert, **FAST, callbacks=[Recorder()]).fit(X, y)
    folder = reg.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert "callbacks" not in config["params"] and "Recorder" not in (folder / "README.md").read_text()
    loaded = skcarl.load(folder)
    assert loaded.callbacks is None
    np.testing.assert_array_equal(loaded.predict(X[:5]), reg.predict(X[:5]))
    # other parameters are kept as they were
    assert {k: v for k, v in loaded.get_params().items() if k != "callbacks"} == \
        {k: v for k, v in reg.get_params().items() if k != "callbacks"}


def test_a_model_fitted_with_a_callback_pickles_with_it(tiny_bert, affect_data):
    import pickle

    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **{**FAST, "max_epochs": 1}, callbacks=[Recorder()]).fit(X, y)
    restored = pickle.loads(pickle.dumps(emb))
    assert isinstance(restored.callbacks[0], Recorder) and restored.callbacks[0].events == emb.callbacks[0].events
    assert copy.deepcopy(emb).callbacks[0].events == emb.callbacks[0].events
