"""max_epochs="auto" and learning_rate="auto": a training budget in optimiser steps, and a rate sized to it, that fit
a few hundred texts as well as thousands."""

import pytest

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.callbacks import Callback
from skcarl.training import (
    AUTO_EPOCH_RANGE,
    AUTO_LEARNING_RATE,
    AUTO_MAX_LEARNING_RATE,
    AUTO_MIN_STEPS,
    resolve_learning_rate,
    resolve_max_epochs,
)


def test_auto_is_the_default_of_every_estimator():
    for kind in (CARLEmbedder, CARLRegressor, CARLClassifier):
        assert kind().max_epochs == kind().learning_rate == "auto"


@pytest.mark.parametrize("n_texts, batch_size", [(56, 32), (112, 32), (448, 32), (1024, 32), (1500, 32),
                                                 (8000, 32), (100_000, 32), (300, 8)])
def test_auto_gives_the_minimum_number_of_steps_within_the_epoch_range(n_texts, batch_size):
    epochs = resolve_max_epochs("auto", n_texts, batch_size)
    steps_per_epoch = -(-n_texts // batch_size)
    low, high = AUTO_EPOCH_RANGE
    assert low <= epochs <= high
    # the fewest epochs that reach AUTO_MIN_STEPS, unless a bound of the range stops them
    assert epochs * steps_per_epoch >= AUTO_MIN_STEPS or epochs == high
    assert (epochs - 1) * steps_per_epoch < AUTO_MIN_STEPS or epochs == low


def test_auto_keeps_three_epochs_at_thousands_of_texts_and_raises_them_for_few():
    # the benchmarks' 8,000 texts at batch 32: the fixed default it replaced
    assert resolve_max_epochs("auto", 8000, 32) == 3
    # 8 rows x 7 classes: two steps an epoch; three epochs would give 6 optimiser steps
    assert resolve_max_epochs("auto", 56, 32) == AUTO_EPOCH_RANGE[1] > 3


def test_an_int_is_kept():
    assert resolve_max_epochs(2, 56, 32) == 2
    assert resolve_max_epochs(40, 8000, 32) == 40


def test_fit_resolves_auto_and_runs_that_many_epochs(tiny_bert, affect_data):
    X, y = affect_data  # 64 texts at batch 16: 4 steps an epoch
    emb = CARLEmbedder(tiny_bert, batch_size=16, queue_size=16, random_state=0).fit(X, y)
    assert emb.max_epochs_ == resolve_max_epochs("auto", len(X), 16) == AUTO_EPOCH_RANGE[1]
    assert emb.n_iter_ == len(emb.history_) == emb.max_epochs_
    assert emb.max_epochs == "auto"  # the parameter itself is left as given


def test_fit_counts_the_training_part_with_a_validation_split(tiny_bert, affect_data):
    X, y = affect_data
    reg = CARLRegressor(tiny_bert, batch_size=8, queue_size=8, validation_fraction=0.25, n_iter_no_change=100,
                        random_state=0).fit(X, y)
    assert reg.max_epochs_ == resolve_max_epochs("auto", 48, 8)


def test_an_explicit_max_epochs_is_run(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, batch_size=16, queue_size=16, max_epochs=2, random_state=0).fit(X, y)
    assert emb.max_epochs_ == emb.n_iter_ == 2


@pytest.mark.parametrize("value", ["fast", 0, 2.5, None])
def test_bad_max_epochs_is_named(tiny_bert, affect_data, value):
    X, y = affect_data
    with pytest.raises(ValueError, match=r"'max_epochs' parameter .* must be an int in the range \[1, inf\) or "
                                         r"'auto'"):
        CARLEmbedder(tiny_bert, max_epochs=value).fit(X, y)


def test_auto_learning_rate_is_the_full_data_rate_from_the_minimum_number_of_steps():
    assert resolve_learning_rate("auto", AUTO_MIN_STEPS) == AUTO_LEARNING_RATE
    assert resolve_learning_rate("auto", 10 * AUTO_MIN_STEPS) == AUTO_LEARNING_RATE


@pytest.mark.parametrize("steps", [1, 20, 40, 63, 100, 140, 249])
def test_auto_learning_rate_keeps_rate_times_steps_below_the_minimum_within_the_cap(steps):
    rate = resolve_learning_rate("auto", steps)
    assert AUTO_LEARNING_RATE < rate <= AUTO_MAX_LEARNING_RATE
    assert rate == AUTO_MAX_LEARNING_RATE or rate * steps == pytest.approx(AUTO_LEARNING_RATE * AUTO_MIN_STEPS)
    assert resolve_learning_rate("auto", steps + 1) <= rate  # never larger for a longer budget


def test_a_number_is_kept_as_the_learning_rate():
    assert resolve_learning_rate(3e-5, 20) == 3e-5
    assert resolve_learning_rate(1e-3, 10_000) == 1e-3


class _EncoderRate(Callback):
    """Records the encoder's scheduled peak learning rate as the optimiser holds it when training begins."""

    def on_train_begin(self, trainer):
        self.rates = {group["initial_lr"] for group in trainer.optimizer.param_groups}


def test_fit_resolves_the_learning_rate_from_its_own_budget_and_trains_with_it(tiny_bert, affect_data):
    X, y = affect_data  # 64 texts at batch 16: 4 steps an epoch
    seen = _EncoderRate()
    emb = CARLEmbedder(tiny_bert, batch_size=16, queue_size=16, max_epochs=2, callbacks=[seen],
                       random_state=0).fit(X, y)
    assert emb.learning_rate == "auto"  # the parameter itself is left as given
    assert emb.learning_rate_ == resolve_learning_rate("auto", 2 * 4) == AUTO_MAX_LEARNING_RATE
    assert seen.rates == {emb.learning_rate_, emb.head_learning_rate}
    fixed = CARLEmbedder(tiny_bert, batch_size=16, queue_size=16, max_epochs=1, learning_rate=3e-5,
                         callbacks=[seen], random_state=0).fit(X, y)
    assert fixed.learning_rate_ == 3e-5
    assert seen.rates == {3e-5, fixed.head_learning_rate}


@pytest.mark.parametrize("value", ["fast", 0, -1e-4, None])
def test_bad_learning_rate_is_named(tiny_bert, affect_data, value):
    X, y = affect_data
    with pytest.raises(ValueError, match="learning_rate"):
        CARLEmbedder(tiny_bert, learning_rate=value).fit(X, y)
