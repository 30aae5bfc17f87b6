"""The estimators' parameters are the one home of every training default: the trainer's config and the loss
factory take values, never defaults of their own."""

import dataclasses
import inspect

import pytest

import skcarl._base
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.losses import make_contrastive_loss
from skcarl.training import TrainingConfig


def test_training_config_declares_no_defaults():
    with_default = [f.name for f in dataclasses.fields(TrainingConfig)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == []


@pytest.mark.parametrize("estimator", [CARLEmbedder, CARLRegressor, CARLClassifier])
def test_every_config_field_is_an_estimator_parameter(estimator):
    params = estimator().get_params()
    assert {f.name for f in dataclasses.fields(TrainingConfig)} <= set(params)


def test_loss_factory_declares_no_defaults():
    defaults = [name for name, p in inspect.signature(make_contrastive_loss).parameters.items()
                if p.default is not inspect.Parameter.empty]
    assert defaults == []


def test_from_params_names_what_is_missing():
    params = CARLEmbedder().get_params()
    del params["momentum"]
    with pytest.raises(TypeError, match="momentum"):
        TrainingConfig.from_params(params)


def test_fit_trains_with_the_estimators_own_values(tiny_bert, affect_data, monkeypatch):
    seen = []
    real = skcarl._base.CARLTrainer

    def spy(network, config, *args, **kwargs):
        seen.append(config)
        return real(network, config, *args, **kwargs)

    monkeypatch.setattr(skcarl._base, "CARLTrainer", spy)
    texts, y = affect_data
    est = CARLEmbedder(tiny_bert, max_epochs=1, batch_size=8, learning_rate=3e-5, momentum=0.9, temperature=0.07,
                       detection_weight=0.2, ranking_weight=0.0, queue_size=16, device="cpu", random_state=0)
    est.fit(texts, y)
    expected = TrainingConfig.from_params(est.get_params(), label_temperature=est.label_temperature_,
                                          ranking_weight=est.ranking_weight_, queue_size=est.queue_size_)
    assert seen == [expected]
    assert (seen[0].learning_rate, seen[0].momentum, seen[0].detection_weight) == (3e-5, 0.9, 0.2)
