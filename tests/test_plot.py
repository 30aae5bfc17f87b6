"""Plots (skcarl.plot) on the Agg backend: the artists they draw, and the message without matplotlib."""

import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from skcarl import plot  # noqa: E402
from skcarl._va_table import DEFAULT_VA_TABLE  # noqa: E402
from skcarl.explain import COLUMNS  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def explanation():
    rows = []
    for text_id, words in enumerate([["What", "a", "<wonderful>", "day!"], ["so", "sad"]]):
        scores = np.arange(1, len(words) + 1, dtype=float)[::-1] if text_id == 0 else np.array([0.2, 0.9])
        for target in ("valence", "arousal"):
            factor = 1.0 if target == "valence" else 2.0
            rows.append(pd.DataFrame({"text_id": text_id, "word_id": range(len(words)), "word": words,
                                      "saliency": scores * factor, "saliency_share": scores / scores.sum(),
                                      "target": target}))
    return pd.concat(rows, ignore_index=True)[COLUMNS]


# ---------------------------------------------------------------------- va_plane
def test_va_plane_points_labels_and_anchors():
    rng = np.random.default_rng(0)
    points = rng.uniform(1, 9, size=(40, 2))
    labels = np.where(points[:, 0] > 5, "pleasant", "unpleasant")
    fig = plot.va_plane(points, labels=labels, va_map=["joy", "sadness", "anger", "calmness"], va_range=(1, 9))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if c.get_label() != "_anchors"]
    assert sorted(c.get_label() for c in scatters) == ["pleasant", "unpleasant"]
    assert sum(len(c.get_offsets()) for c in scatters) == 40
    assert {c.get_label(): len(c.get_offsets()) for c in scatters} == {"pleasant": int((labels == "pleasant").sum()),
                                                                      "unpleasant": int((labels == "unpleasant").sum())}
    names = {a.get_text(): a.xy for a in ax.texts if isinstance(a, Annotation)}
    assert set(names) == {"joy", "sadness", "anger", "calmness"}
    # default-table anchors (on [0, 1]) are mapped onto the points' scale
    np.testing.assert_allclose(names["joy"], 1 + 8 * np.array(DEFAULT_VA_TABLE["joy"]))
    anchors = [c for c in ax.collections if c.get_label() == "_anchors"][0]
    assert len(anchors.get_offsets()) == 4
    assert "valence" in ax.get_xlabel() and "1 = unpleasant" in ax.get_xlabel()
    assert "arousal" in ax.get_ylabel() and "9 = excited" in ax.get_ylabel()
    assert ax.get_xlim()[0] < 1 < 9 < ax.get_xlim()[1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pleasant", "unpleasant"]


def test_va_plane_anchor_names_do_not_overlap():
    names = ["joy", "excitement", "surprise", "amusement", "enthusiasm", "delight"]  # a crowded corner
    fig = plot.va_plane(np.array([[0.5, 0.5]]), va_map=names)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in fig.axes[0].texts if isinstance(a, Annotation)]
    assert len(boxes) == len(names)
    overlaps = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert overlaps == 0


def test_va_plane_dict_map_on_given_ax_and_unit_scale():
    fig0, ax = plt.subplots()
    fig = plot.va_plane([[0.2, 0.3], [0.8, 0.9]], va_map={"up": (0.9, 0.9), "down": (0.1, 0.1)}, ax=ax)
    assert fig is fig0
    assert ax.get_xlim()[0] < 0 and ax.get_xlim()[1] > 1  # (0, 1) inferred from the points
    notes = {a.get_text(): a.xy for a in ax.texts if isinstance(a, Annotation)}
    np.testing.assert_allclose(notes["up"], (0.9, 0.9))
    assert len(ax.collections[0].get_offsets()) == 2


def test_va_plane_errors():
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        plot.va_plane(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels has 2 entries for 3 points"):
        plot.va_plane(np.zeros((3, 2)), labels=["a", "b"])
    with pytest.raises(ValueError, match="not in skcarl's default"):
        plot.va_plane(np.zeros((3, 2)), va_map=["joy", "hangry"])
    with pytest.raises(ValueError, match="va_range"):
        plot.va_plane(np.full((3, 2), 5.0), va_map=["joy"])  # points on 1-9, table on [0, 1]
    with pytest.raises(ValueError, match="high > low"):
        plot.va_plane(np.full((3, 2), 5.0), va_range=(9, 1))


# ---------------------------------------------------------------------- token_saliency
def test_token_saliency_figure_and_html():
    table = explanation()
    fig, html = plot.token_saliency(table, text_id=0)
    assert isinstance(fig, Figure)
    words = ["What", "a", "<wonderful>", "day!"]
    word_texts = [t for t in fig.texts if t.get_bbox_patch() is not None]
    assert [t.get_text() for t in word_texts] == words
    assert [t.get_text() for t in fig.texts if t.get_bbox_patch() is None] == ["text 0 · valence"]
    # the most salient word ("What") is the darkest, the least salient ("day!") the lightest
    lightness = [sum(t.get_bbox_patch().get_facecolor()[:3]) for t in word_texts]
    assert np.argmin(lightness) == 0 and np.argmax(lightness) == 3
    assert len(fig.axes) == 1  # the colour bar

    assert html.count("<span") == 4
    for word in ["What", "a", "&lt;wonderful&gt;", "day!"]:
        assert f'">{word}</span>' in html
    assert "<wonderful>" not in html  # escaped
    assert html.count('style="background-color:#') == 4
    assert 'title="saliency share 0.400"' in html  # 4 / (4 + 3 + 2 + 1)


def test_token_saliency_several_texts_and_target():
    table = explanation()
    fig, html = plot.token_saliency(table, text_id=[0, 1], target="arousal")
    headings = [t.get_text() for t in fig.texts if t.get_bbox_patch() is None]
    assert headings == ["text 0 · arousal", "text 1 · arousal"]
    assert sum(t.get_bbox_patch() is not None for t in fig.texts) == 6
    assert html.count("<span") == 6 and html.count("text 1 · arousal") == 1
    # long texts wrap: a narrow figure needs more lines, so a taller figure
    long = pd.DataFrame({"text_id": 0, "word_id": range(40), "word": ["word"] * 40, "saliency": 1.0,
                         "saliency_share": 1 / 40, "target": "valence"})
    wide, _ = plot.token_saliency(long, width=12)
    narrow, _ = plot.token_saliency(long, width=4)
    assert narrow.get_size_inches()[1] > wide.get_size_inches()[1]
    right_edges = {round(t.get_position()[0], 3) for t in narrow.texts if t.get_bbox_patch() is not None}
    assert max(right_edges) < 4


def test_token_saliency_errors():
    table = explanation()
    with pytest.raises(ValueError, match=r"text_id 7 is not in the explanation; it has text ids \[0, 1\]"):
        plot.token_saliency(table, text_id=7)
    with pytest.raises(ValueError, match="'dominance' is not explained"):
        plot.token_saliency(table, target="dominance")
    with pytest.raises(ValueError, match="lacks the columns"):
        plot.token_saliency(table.drop(columns="saliency"))


def test_token_saliency_on_a_real_explanation(tiny_bert):
    from conftest import synthetic_affect

    from skcarl import CARLRegressor

    texts, va = synthetic_affect(16)
    reg = CARLRegressor(tiny_bert, max_epochs=1, batch_size=8, random_state=0, device="cpu").fit(texts, va)
    table = reg.explain(texts[:2], target=0)
    fig, html = plot.token_saliency(table, text_id=1)
    assert [t.get_text() for t in fig.texts if t.get_bbox_patch() is not None] == texts[1].split()
    assert all(f">{w}</span>" in html for w in texts[1].split())


# ---------------------------------------------------------------------- learning_curves
class _Fitted:
    def fit(self, X, y):
        return self


def test_learning_curves_lines():
    est = _Fitted()
    est.history_ = [{"epoch": e, "loss": 3.0 / e, "contrastive_loss": 2.0 / e, "detection_loss": 0.5,
                     "task_loss": 1.0 / e, "validation_loss": 2.5 / e, "duration": 1.0} for e in (1, 2, 3)]
    est.best_epoch_ = 3
    fig = plot.learning_curves(est)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["total loss (train)", "contrastive loss (train)", "detection loss (train)",
                      "task loss (train)", "validation loss", "kept epoch (3)"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [3.0, 1.5, 1.0])
    np.testing.assert_allclose(ax.get_lines()[4].get_ydata(), [2.5, 1.25, 2.5 / 3])
    assert ax.get_xlabel() == "epoch"


def test_learning_curves_of_a_fitted_embedder(tiny_bert):
    from conftest import synthetic_affect
    from sklearn.exceptions import NotFittedError

    from skcarl import CARLEmbedder

    with pytest.raises(NotFittedError):
        plot.learning_curves(CARLEmbedder(tiny_bert))
    texts, va = synthetic_affect(16)
    emb = CARLEmbedder(tiny_bert, max_epochs=2, batch_size=8, random_state=0, va_range=(1, 9),
                       device="cpu").fit(texts, va)
    fig = plot.learning_curves(emb)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:3] == ["total loss (train)", "contrastive loss (train)", "detection loss (train)"]
    assert "validation loss" not in labels and "task loss (train)" not in labels
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), emb.loss_curve_)


# ---------------------------------------------------------------------- without matplotlib
@pytest.mark.parametrize("call", [
    lambda: plot.va_plane(np.zeros((2, 2))),
    lambda: plot.token_saliency(explanation()),
    lambda: plot.learning_curves(type("E", (_Fitted,), {"history_": [{"epoch": 1, "loss": 1.0}]})()),
])
def test_missing_matplotlib_names_the_extra(monkeypatch, call):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install skcarl\[plot\]"):
        call()


def test_skcarl_imports_without_matplotlib(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "skcarl.plot")
    module = importlib.import_module("skcarl.plot")  # importing the module needs no matplotlib
    assert callable(module.va_plane)
