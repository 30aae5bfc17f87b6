"""Parameter validation: the constraint tables, their one public path, and what each parameter may be."""

from __future__ import annotations

import inspect

import pytest

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._base import _CARLBase

ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_init_parameter_has_a_constraint_and_every_constraint_a_parameter(cls):
    parameters = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cls._parameter_constraints) == parameters


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_a_subclass_table_extends_the_shared_one_unchanged(cls):
    shared = _CARLBase._parameter_constraints
    assert {name: cls._parameter_constraints[name] for name in shared} == shared


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_validate_params_is_public_and_passes_at_the_defaults(cls):
    cls().validate_params()
    with pytest.raises(ValueError, match=rf"^The 'batch_size' parameter of {cls.__name__} must be an int in the "
                                         r"range \[1, inf\)\. Got 0 instead\.$"):
        cls(batch_size=0).validate_params()


@pytest.mark.parametrize("value, shown", [("auto", None), (0.5, None), ("sharp", "'sharp'"), (0, "0")])
def test_an_entry_with_several_constraints_lists_them_all(value, shown):
    est = CARLEmbedder(label_temperature=value)
    if shown is None:
        est.validate_params()
        return
    with pytest.raises(ValueError, match=r"must be a float in the range \(0, inf\) or 'auto'\. "
                                         rf"Got {shown} instead\.$"):
        est.validate_params()


def test_the_pairs_that_must_agree_are_checked_after_the_table():
    est = CARLEmbedder(saliency_refresh="cached", perturbation="adversarial", detection_weight=0.1)
    with pytest.raises(ValueError, match="saliency_refresh='cached' cannot be combined with perturbation="):
        est.validate_params()
    with pytest.raises(ValueError, match="perturbed_view_weight > 0 or consistency_weight > 0"):
        CARLEmbedder(saliency_refresh="cached", consistency_weight=1.0).validate_params()
