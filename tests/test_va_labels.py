"""The VA labeling system: default table, user maps, learnable anchors, multi-label rows."""

import numpy as np
import pytest
import torch

from skcarl import CARLClassifier, CARLEmbedder
from skcarl._targets import check_class_targets
from skcarl._va_table import DEFAULT_VA_TABLE
from skcarl.va_labels import ClassAnchors, class_anchor_points

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
    from conftest import synthetic_affect

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


def test_classifier_learns_quadrant_emotions(tiny_bert):
    """The words of each text reveal its quadrant; the classifier must find them well above chance."""
    from conftest import synthetic_affect

    X, _ = synthetic_affect(n=96, seed=1)
    labels = np.array(["joy", "calmness", "sadness", "anger"])[np.arange(96) % 4]
    clf = CARLClassifier(tiny_bert, batch_size=16, max_epochs=12, queue_size=16, learning_rate=1e-3,
                         random_state=0).fit(X[:64], labels[:64])
    assert clf.score(X[64:], labels[64:]) >= 0.75


def test_regressor_learns_va_from_words(tiny_bert):
    from conftest import synthetic_affect

    from skcarl import CARLRegressor

    X, y = synthetic_affect(n=96, seed=2)
    reg = CARLRegressor(tiny_bert, batch_size=16, max_epochs=30, queue_size=16, learning_rate=1e-3,
                        random_state=0).fit(X[:64], y[:64])
    assert reg.score(X[64:], y[64:]) > 0.7
    assert reg.history_[-1]["task_loss"] < 0.5 * reg.history_[0]["task_loss"]


def test_documented_table_is_the_table_in_the_code():
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "va_labels.md").read_text()
    rows = re.findall(r"^\| ([a-z ]+) \| ([0-9.]+) \| ([0-9.]+) \|", doc, flags=re.M)
    assert {name: (float(v), float(a)) for name, v, a in rows} == DEFAULT_VA_TABLE


def test_column_vector_of_labels_is_read_as_one_label_per_row():
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning, match="column-vector y"):
        targets = check_class_targets(np.array([["joy"], ["anger"], ["joy"]]), 3)
    assert not targets.multilabel and targets.classes.tolist() == ["anger", "joy"]
    assert targets.indices.tolist() == [1, 0, 1]
