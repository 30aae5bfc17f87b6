"""The VA labeling system: default table, user maps, learnable anchors, multi-label rows."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FINITE, label_arrays, synthetic_affect
from hypothesis import given, settings
from hypothesis import strategies as st

from skcarl import CARLEmbedder
from skcarl._targets import check_class_targets
from skcarl._va_table import DEFAULT_VA_TABLE
from skcarl.va_labels import ClassAnchors, auto_label_temperature, class_anchor_points, resolve_va_range, scale_labels

# the label sets of the corpora the default table is meant to cover
GOEMOTIONS_LABELS = (
    'admiration', 'amusement', 'anger', 'annoyance', 'approval', 'caring', 'confusion', 'curiosity', 'desire',
    'disappointment', 'disapproval', 'disgust', 'embarrassment', 'excitement', 'fear', 'gratitude', 'grief',
    'joy', 'love', 'nervousness', 'optimism', 'pride', 'realization', 'relief', 'remorse', 'sadness',
    'surprise', 'neutral',
)
EKMAN_LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")

RNG = np.random.default_rng(0)


def test_default_table_covers_goemotions_and_ekman_on_the_unit_square():
    assert len(GOEMOTIONS_LABELS) == 28 and set(GOEMOTIONS_LABELS) <= set(DEFAULT_VA_TABLE)
    assert set(EKMAN_LABELS) <= set(DEFAULT_VA_TABLE)
    points = np.array(list(DEFAULT_VA_TABLE.values()))
    assert points.shape[1] == 2 and (points >= 0).all() and (points <= 1).all()
    # the circumplex the contrastive loss relies on: joy pleasant and aroused, sadness unpleasant and calm
    assert DEFAULT_VA_TABLE["joy"][0] > 0.9 > 0.1 > DEFAULT_VA_TABLE["sadness"][0]
    assert DEFAULT_VA_TABLE["anger"][1] > 0.8 > 0.3 > DEFAULT_VA_TABLE["sadness"][1]


def test_default_map_matches_names_loosely_and_lists_unknown_labels():
    raw, scaled, low, high = class_anchor_points(["Joy", " anger ", "SADNESS"], None, None, RNG)
    table = DEFAULT_VA_TABLE
    np.testing.assert_array_equal(raw, [table["joy"], table["anger"], table["sadness"]])
    np.testing.assert_allclose(scaled, raw, rtol=1e-6)  # the table is already on [0, 1]
    with pytest.raises(ValueError, match=r"\['happyish', 'meh'\] are not in skcarl's default"):
        class_anchor_points(["joy", "happyish", "meh"], None, None, RNG)


def test_user_map_is_scaled_by_va_range_or_its_own_extent():
    va_map = {"up": (9, 9), "down": (1, 1), "mid": (5, 3)}
    _, scaled, _, _ = class_anchor_points(["down", "mid", "up"], va_map, (1, 9), RNG)
    np.testing.assert_allclose(scaled, [[0, 0], [0.5, 0.25], [1, 1]])
    _, scaled, low, high = class_anchor_points(["down", "mid"], va_map, None, RNG)
    np.testing.assert_allclose(scaled, [[0, 0], [1, 1]])
    np.testing.assert_array_equal(low, [1, 1])
    with pytest.raises(ValueError, match="no point for the class"):
        class_anchor_points(["down", "sideways"], va_map, None, RNG)


def test_learn_starts_unknown_classes_at_the_mean_of_known_ones():
    raw, _, _, _ = class_anchor_points(["joy", "sadness", "zorgle"], "learn", None, np.random.default_rng(1))
    expected = (np.array(DEFAULT_VA_TABLE["joy"]) + np.array(DEFAULT_VA_TABLE["sadness"])) / 2
    np.testing.assert_allclose(raw[2], expected, atol=5e-3)
    assert not np.array_equal(raw[2], expected)  # jittered, so two unknown classes can separate
    raw, _, _, _ = class_anchor_points(["a", "b"], "learn", None, np.random.default_rng(1))
    np.testing.assert_allclose(raw, 0.5, atol=5e-3)


def test_multilabel_rows_sit_at_the_mean_of_their_labels():
    targets = check_class_targets([["joy"], ["joy", "anger"], []], 3)
    assert targets.multilabel and targets.classes.tolist() == ["anger", "joy"]
    anchors = ClassAnchors(torch.tensor([[0.2, 0.9], [1.0, 0.8]]))
    points = anchors(torch.from_numpy(targets.membership)).numpy()
    np.testing.assert_allclose(points, [[1.0, 0.8], [0.6, 0.85], [0.6, 0.85]])  # empty row: mean of all


def test_learned_anchors_move_and_stay_in_the_unit_square(tiny_bert):

    X, _ = synthetic_affect(n=48)
    labels = np.array(["joy", "calmness", "sadness", "anger"])[np.arange(48) % 4]
    fixed = CARLEmbedder(tiny_bert, batch_size=8, max_epochs=2, queue_size=8, random_state=0).fit(X, labels)
    learned = CARLEmbedder(tiny_bert, batch_size=8, max_epochs=2, queue_size=8, random_state=0, va_map="learn",
                           head_learning_rate=5e-2).fit(X, labels)
    assert fixed.va_map_ == {c: DEFAULT_VA_TABLE[c] for c in fixed.classes_}
    moved = (np.array([learned.va_map_[c] for c in learned.classes_])
             - np.array([fixed.va_map_[c] for c in fixed.classes_]))
    assert np.abs(moved).max() > 1e-3
    assert all(0 <= v <= 1 for point in learned.va_map_.values() for v in point)


def test_documented_table_is_the_table_in_the_code():
    import re

    doc = (Path(__file__).parents[1] / "docs" / "va_labels.md").read_text()
    rows = re.findall(r"^\| ([a-z ]+) \| ([0-9.]+) \| ([0-9.]+) \|", doc, flags=re.M)
    assert {name: (float(v), float(a)) for name, v, a in rows} == DEFAULT_VA_TABLE


def test_column_vector_of_labels_is_read_as_one_label_per_row():
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning, match="column-vector y"):
        targets = check_class_targets(np.array([["joy"], ["anger"], ["joy"]]), 3)
    assert not targets.multilabel and targets.classes.tolist() == ["anger", "joy"]
    assert targets.indices.tolist() == [1, 0, 1]


# ========================================================================================= properties of label scaling


@settings(max_examples=150, deadline=None)
@given(y=label_arrays(min_rows=2), margin=st.floats(0, 10))
def test_property_label_scaling(y, margin):
    """Scaled labels lie in [0, 1], keep their order per column and map back to y."""
    low, high = resolve_va_range(y, None)
    scaled = scale_labels(y, low, high)
    assert scaled.dtype == np.float32 and ((scaled >= 0) & (scaled <= 1)).all()
    varying = high > low
    np.testing.assert_allclose(scaled.min(0)[varying], 0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(0)[varying], 1, atol=1e-6)
    np.testing.assert_array_equal(scaled[:, ~varying], 0)
    for col in np.flatnonzero(varying):  # order kept (ties may merge in float32, never swap)
        order = np.argsort(y[:, col], kind="stable")
        assert (np.diff(scaled[order, col]) >= 0).all()
    given_range = (float(y.min()) - margin, float(y.max()) + margin + 1.0)
    low, high = resolve_va_range(y, given_range)
    scaled = scale_labels(y, low, high).astype(np.float64)
    assert ((scaled >= 0) & (scaled <= 1)).all()
    np.testing.assert_allclose(low + scaled * (high - low), y, rtol=1e-5, atol=1e-6 * (high - low).max())
    outside = y.copy()
    outside[0, 0] = given_range[1] + 1.0
    with pytest.raises(ValueError, match=r"outside va_range.*the first is y\[0, 0\]"):
        resolve_va_range(outside, given_range)


@settings(max_examples=100, deadline=None)
@given(y=label_arrays(min_rows=2), factor=st.floats(0.01, 100))
def test_property_auto_label_temperature(y, factor):
    low, high = resolve_va_range(y, None)
    scaled = scale_labels(y, low, high).astype(np.float64)
    tau = auto_label_temperature(scaled, np.random.default_rng(0))
    assert np.isfinite(tau) and tau > 0
    if np.ptp(scaled) > 1e-3:  # the median distance scales with the labels
        assert auto_label_temperature(scaled * factor, np.random.default_rng(0)) == pytest.approx(tau * factor,
                                                                                                  rel=1e-4)


@settings(max_examples=200, deadline=None)
@given(tied=st.lists(st.floats(0, 1, width=32), min_size=1, max_size=3), other=st.floats(0, 1, width=32),
       copies=st.integers(4, 40))
def test_property_tied_labels_are_at_distance_zero(tied, other, copies):
    """Many copies of one label and one other label: over half the pairs tie at 0, so tau_y comes from the
    distinct pairs, all at one distance D: tau_y = 0.14 D (not a fraction of the rounding noise of the ties)."""
    row = np.array(tied, dtype=np.float64)
    distinct = row.copy()
    distinct[0] = other
    distance = float(np.linalg.norm(row - distinct))
    y = np.vstack([np.tile(row, (copies, 1)), distinct])
    tau = auto_label_temperature(y, np.random.default_rng(0))
    assert tau == pytest.approx(0.14 * distance if distance > 1e-12 else 0.14, rel=1e-9)  # below 1e-12: a tie


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(FINITE, FINITE), min_size=2, max_size=8))
def test_property_class_anchors_are_scaled_into_the_unit_square(points):
    classes = [f"c{i}" for i in range(len(points))]
    raw, scaled, low, high = class_anchor_points(classes, dict(zip(classes, points)), None, None)
    np.testing.assert_array_equal(raw, np.array(points))
    assert ((scaled >= 0) & (scaled <= 1)).all()
