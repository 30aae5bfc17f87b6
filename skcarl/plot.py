"""Plots: the valence–arousal plane, word saliency, learning curves.

matplotlib is an optional dependency (``pip install skcarl[plot]``); it is imported when a plot is drawn, so
the rest of skcarl works without it.
"""

from __future__ import annotations

import html as _html
from collections.abc import Mapping

import numpy as np

from ._va_table import DEFAULT_VA_TABLE
from .va_labels import normalize_label_name


def _pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("skcarl's plots need matplotlib, which is not installed. Install it with "
                          "`pip install skcarl[plot]` (or `pip install matplotlib`).") from exc
    return plt


# ---------------------------------------------------------------------- the valence–arousal plane
def va_plane(points, labels=None, va_map=None, ax=None, *, va_range=None, title=None, point_size=18,
             alpha=0.75):
    """Points on the valence–arousal plane (the circumplex), with emotion anchors annotated.

    Parameters
    ----------
    points : array-like of shape (n_samples, 2)
        (valence, arousal) per text, e.g. a :class:`~skcarl.CARLRegressor`'s predictions.
    labels : array-like of shape (n_samples,), default=None
        A category per point (an emotion, a quadrant, ...): one colour per category, with a legend.
        ``None`` draws every point in one colour.
    va_map : None, dict or sequence of str, default=None
        Emotion anchors to mark and name. A dict ``{name: (valence, arousal)}`` is taken on the scale of
        ``points`` (a fitted classifier's ``va_map_`` on its own scale, for instance). A sequence of names
        looks them up in skcarl's default table (NRC VAD Lexicon, on [0, 1]) and maps them linearly onto
        ``va_range``. ``None`` marks no anchors.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if ``None``.
    va_range : (low, high), default=None
        The scale of both dimensions, e.g. ``(1, 9)`` for SAM ratings: it sets the axis limits, the
        midlines and circle of the circumplex, and where default-table anchors land. ``None`` means
        ``(0, 1)`` when every point lies in [0, 1]; otherwise the axes follow the data and default-table
        anchors need an explicit ``va_range``.
    title : str, default=None
        Axes title.
    point_size, alpha : float
        Marker size and opacity of the points.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes (``fig.axes[0]`` when ``ax`` was ``None``).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install skcarl[plot]``).
    ValueError
        For points that are not (n, 2), labels of another length, or anchor names not in the default table.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.plot import va_plane
    >>> points = np.array([[7.5, 7.0], [2.0, 3.0], [3.0, 7.5]])
    >>> fig = va_plane(points, labels=["joy", "sadness", "anger"], va_map=["joy", "sadness", "anger"],
    ...                va_range=(1, 9))
    >>> len(fig.axes[0].texts) >= 3          # the three anchors are named
    True
    """
    plt = _pyplot()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n_samples, 2): (valence, arousal); got {points.shape}.")
    if labels is not None:
        labels = np.asarray(labels, dtype=object).ravel()
        if len(labels) != len(points):
            raise ValueError(f"labels has {len(labels)} entries for {len(points)} points.")
    finite = points[np.isfinite(points).all(1)]
    if va_range is None and len(finite) and finite.min() >= 0 and finite.max() <= 1:
        va_range = (0.0, 1.0)
    if va_range is not None:
        low, high = (float(v) for v in va_range)
        if not high > low:
            raise ValueError(f"va_range must be (low, high) with high > low; got {va_range!r}.")
    anchors = _anchor_points(va_map, None if va_range is None else (low, high))

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 6.0), layout="constrained")
    else:
        fig = ax.figure

    if va_range is not None:
        mid, radius = (low + high) / 2, (high - low) / 2
        ax.add_patch(plt.Circle((mid, mid), radius, fill=False, color="0.75", lw=1.0, zorder=0))
        ax.axhline(mid, color="0.6", lw=0.8, ls="--", zorder=0)
        ax.axvline(mid, color="0.6", lw=0.8, ls="--", zorder=0)
        pad = 0.04 * (high - low)
        # the scale, widened to show predictions that fall outside it
        shown = np.vstack([finite.reshape(-1, 2), [[low, low], [high, high]]])
        ax.set_xlim(min(low, shown[:, 0].min()) - pad, max(high, shown[:, 0].max()) + pad)
        ax.set_ylim(min(low, shown[:, 1].min()) - pad, max(high, shown[:, 1].max()) + pad)
        ax.set_xticks(np.linspace(low, high, 5))
        ax.set_yticks(np.linspace(low, high, 5))
        ax.set_xlabel(f"valence  ({low:g} = unpleasant, {high:g} = pleasant)")
        ax.set_ylabel(f"arousal  ({low:g} = calm, {high:g} = excited)")
    else:
        ax.set_xlabel("valence")
        ax.set_ylabel("arousal")
    ax.set_aspect("equal", adjustable="box")

    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=point_size, alpha=alpha, color="C0", edgecolors="none",
                   zorder=2)
    else:
        for k, category in enumerate(_categories(labels)):
            chosen = np.array([label == category for label in labels])
            ax.scatter(points[chosen, 0], points[chosen, 1], s=point_size, alpha=alpha, color=f"C{k % 10}",
                       edgecolors="none", label=str(category), zorder=2)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9,
                  title=None, markerscale=1.5)

    if anchors:
        names, coords = zip(*anchors.items())
        coords = np.asarray(coords, dtype=np.float64)
        ax.scatter(coords[:, 0], coords[:, 1], marker="D", s=34, color="black", edgecolors="white",
                   linewidths=0.8, zorder=4, label="_anchors")
        _annotate_without_overlap(fig, ax, names, coords)
    if title:
        ax.set_title(title)
    return fig


def _categories(labels) -> list:
    seen = []
    for label in labels:
        if label not in seen:
            seen.append(label)
    try:
        return sorted(seen)
    except TypeError:
        return seen


def _anchor_points(va_map, va_range) -> dict:
    if va_map is None:
        return {}
    if isinstance(va_map, Mapping):
        out = {}
        for name, point in va_map.items():
            point = np.asarray(point, dtype=np.float64).ravel()
            if point.shape[0] < 2:
                raise ValueError(f"va_map[{name!r}] must be a (valence, arousal) pair; got {va_map[name]!r}.")
            out[str(name)] = point[:2]
        return out
    if isinstance(va_map, str):
        va_map = [va_map]
    names = list(va_map)
    unknown = [n for n in names if normalize_label_name(n) not in DEFAULT_VA_TABLE]
    if unknown:
        raise ValueError(f"{unknown!r} are not in skcarl's default valence-arousal table; pass a dict "
                         f"{{name: (valence, arousal)}} instead. Known names: {sorted(DEFAULT_VA_TABLE)}.")
    if va_range is None:
        raise ValueError("Anchors from the default table (on [0, 1]) need va_range=(low, high): the scale of "
                         "the points, onto which they are mapped.")
    low, high = va_range
    return {str(n): low + np.asarray(DEFAULT_VA_TABLE[normalize_label_name(n)]) * (high - low) for n in names}


def _annotate_without_overlap(fig, ax, names, coords) -> None:
    """Name each anchor, trying positions around it so that a name covers neither another name nor another
    anchor's marker, and stays inside the axes."""
    from matplotlib import patheffects
    from matplotlib.transforms import Bbox

    halo = [patheffects.withStroke(linewidth=3, foreground="white")]
    candidates = [(7, 4, "left", "bottom"), (7, -4, "left", "top"), (-7, 4, "right", "bottom"),
                  (-7, -4, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
                  (9, 0, "left", "center"), (-9, 0, "right", "center")]
    style = {"textcoords": "offset points", "fontsize": 9, "fontweight": "bold", "path_effects": halo, "zorder": 5}
    renderer = _renderer(fig)
    if renderer is None:
        for name, (x, y) in zip(names, coords):
            dx, dy, ha, va = candidates[0]
            ax.annotate(name, (x, y), xytext=(dx, dy), ha=ha, va=va, **style)
        return
    if hasattr(fig, "draw_without_rendering"):
        fig.draw_without_rendering()  # run the layout engine first, so that the measures below hold
    to_display = ax.transData.transform
    half = 4.5 * fig.dpi / 72  # half the size of an anchor marker, in pixels
    markers = [Bbox.from_bounds(*(to_display((x, y)) - half), 2 * half, 2 * half) for x, y in coords]
    inside = ax.get_window_extent(renderer)
    placed = []
    for k, (name, (x, y)) in enumerate(zip(names, coords)):
        others = placed + [m for j, m in enumerate(markers) if j != k]
        best = None
        for dx, dy, ha, va in candidates:
            note = ax.annotate(name, (x, y), xytext=(dx, dy), ha=ha, va=va, **style)
            box = note.get_window_extent(renderer)
            clashes = sum(box.overlaps(other) for other in others)
            outside = not (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                           and box.y1 <= inside.y1)
            # a name nearer another anchor than its own reads as that anchor's name
            centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
            own = np.linalg.norm(centre - to_display((x, y)))
            misleading = sum(np.linalg.norm(centre - to_display(p)) < own for j, p in enumerate(coords) if j != k)
            cost = clashes + 2 * outside + 0.5 * misleading
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        placed.append(best[2])


def _renderer(fig):
    try:
        get = getattr(fig.canvas, "get_renderer", None)
        return get() if get is not None else fig._get_renderer()
    except Exception:  # a backend without a renderer to measure text: place names without checking
        return None


# ---------------------------------------------------------------------- word saliency
def token_saliency(explanation, text_id=0, *, target=None, cmap="Reds", width=8.0, fontsize=13):
    """Words of explained texts, highlighted by their saliency: a figure and the same as HTML.

    Parameters
    ----------
    explanation : pandas.DataFrame
        The table returned by ``estimator.explain`` (columns ``text_id``, ``word_id``, ``word``,
        ``saliency``, ``saliency_share``, ``target``).
    text_id : int or sequence of int, default=0
        The text(s) to show, one block each.
    target : default=None
        Which explained target to show (a regressor explained for all targets has several); ``None`` takes,
        for each text, the first target it has in the table.
    cmap : str or matplotlib Colormap, default="Reds"
        Colours for saliency; each word gets ``cmap(saliency / the text's largest saliency)``, so the most
        salient word of every text has the darkest colour.
    width : float, default=8.0
        Largest figure width in inches: lines wrap to it, and the figure is narrower when every line is
        shorter.
    fontsize : float, default=13

    Returns
    -------
    fig : matplotlib.figure.Figure
        One figure-level text artist per word (``fig.texts``), plus a heading per text and a colour bar.
    html : str
        The same highlighting as HTML (a ``<div>`` per text, a ``<span style=...>`` per word, the share in
        the ``title``), for notebooks: ``IPython.display.HTML(html)``.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install skcarl[plot]``).
    ValueError
        For a table without the expected columns, or a text id / target not in it.

    Examples
    --------
    >>> import pandas as pd
    >>> from skcarl.plot import token_saliency
    >>> table = pd.DataFrame({"text_id": 0, "word_id": [0, 1, 2], "word": ["what", "a", "day"],
    ...                       "saliency": [0.2, 0.1, 0.7], "saliency_share": [0.2, 0.1, 0.7],
    ...                       "target": "valence"})
    >>> fig, html = token_saliency(table)
    >>> html.count("<span")
    3
    """
    plt = _pyplot()
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.colors import Normalize, to_hex
    from matplotlib.font_manager import FontProperties

    blocks = _saliency_blocks(explanation, text_id, target)
    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap

    measure = RendererAgg(10, 10, 72)  # 72 dpi: one pixel is one point
    font = FontProperties(size=fontsize)
    pad = 0.18  # box padding, in font sizes
    gap = (measure.get_text_width_height_descent("a a", font, ismath=False)[0]
           - measure.get_text_width_height_descent("aa", font, ismath=False)[0] + 2 * pad * fontsize) / 72
    line = 2.0 * fontsize / 72
    heading = 1.5 * 9 / 72
    margin = 0.25

    layout, y = [], margin  # y: inches from the top
    used = 3.0 + 2 * margin  # the colour bar's width, at least
    for text_id_, target_, rows in blocks:
        y += heading
        title = f"text {text_id_} · {target_}"
        layout.append(("heading", margin, y, title, None))
        used = max(used, 2 * margin + measure.get_text_width_height_descent(
            title, FontProperties(size=9), ismath=False)[0] / 72)
        y += 0.55 * line
        x = margin
        top = rows["saliency"].max()
        for word, score, share in zip(rows["word"], rows["saliency"], rows["saliency_share"]):
            w = measure.get_text_width_height_descent(str(word), font, ismath=False)[0] / 72
            if x > margin and x + w > width - margin:
                x, y = margin, y + line
            relative = float(score / top) if top > 0 else 0.0
            layout.append(("word", x, y, str(word), (relative, float(share))))
            used = max(used, x + w + 2 * pad * fontsize / 72 + margin)
            x += w + gap
        y += line
    bar_height = 0.12
    height = y + 0.15 + bar_height + 0.45

    width = min(width, used)  # no empty band on the right when every line is short
    fig = plt.figure(figsize=(width, height))
    inches = fig.dpi_scale_trans
    parts = []
    for kind, x, y_, content, values in layout:
        if kind == "heading":
            fig.text(x, height - y_, content, transform=inches, fontsize=9, color="0.4", va="baseline",
                     parse_math=False)
            parts.append([f'<div style="color:#666;font-size:smaller">{_html.escape(content)}</div>'])
            continue
        relative, share = values
        colour = colormap(relative)
        ink = "white" if _luminance(colour) < 0.45 else "black"
        fig.text(x + pad * fontsize / 72, height - y_, content, transform=inches, fontsize=fontsize, color=ink,
                 va="baseline", parse_math=False,
                 bbox={"boxstyle": f"round,pad={pad}", "facecolor": colour, "edgecolor": "none"})
        parts[-1].append(f'<span style="background-color:{to_hex(colour)};color:{ink};padding:0 0.15em;'
                     f'border-radius:0.25em" title="saliency share {share:.3f}">{_html.escape(content)}</span>')
    bar = fig.add_axes([margin / width, 0.45 / height, min(3.0, width - 2 * margin) / width, bar_height / height])
    mappable = plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap=colormap)
    colorbar = fig.colorbar(mappable, cax=bar, orientation="horizontal")
    colorbar.set_label("saliency relative to the text's most salient word", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    body = "\n".join(f'<div style="margin-bottom:0.8em">{block[0]}\n{" ".join(block[1:])}</div>' for block in parts)
    html = f'<div class="skcarl-saliency" style="line-height:1.9;font-family:sans-serif">\n{body}\n</div>\n'
    return fig, html


def _saliency_blocks(explanation, text_id, target):
    needed = {"text_id", "word_id", "word", "saliency", "saliency_share", "target"}
    missing = needed - set(getattr(explanation, "columns", ()))
    if missing:
        raise ValueError(f"explanation must be the table returned by explain(); it lacks the columns "
                         f"{sorted(missing)}.")
    ids = [text_id] if np.ndim(text_id) == 0 else list(text_id)
    available = list(dict.fromkeys(explanation["text_id"].tolist()))
    blocks = []
    for i in ids:
        rows = explanation[explanation["text_id"] == i]
        if rows.empty:
            raise ValueError(f"text_id {i!r} is not in the explanation; it has text ids {available!r}.")
        targets = list(dict.fromkeys(rows["target"].tolist()))
        chosen = targets[0] if target is None else target
        if chosen not in targets:
            raise ValueError(f"target {target!r} is not explained for text {i!r}; it has {targets!r}.")
        blocks.append((i, chosen, rows[rows["target"] == chosen].sort_values("word_id")))
    return blocks


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# ---------------------------------------------------------------------- learning curves
def learning_curves(estimator, ax=None):
    """The training losses per epoch, from a fitted estimator's ``history_``.

    Draws the total loss and each of its parts that the estimator recorded (``contrastive_loss``,
    ``detection_loss``, ``task_loss``), the validation loss (dashed) when ``validation_fraction`` was set,
    and a dotted line at the kept epoch (``best_epoch_``).

    Parameters
    ----------
    estimator : fitted CARLEmbedder, CARLRegressor or CARLClassifier
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if ``None``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install skcarl[plot]``).
    sklearn.exceptions.NotFittedError
        If the estimator has no ``history_``.

    Examples
    --------
    >>> from skcarl import CARLEmbedder
    >>> from skcarl.plot import learning_curves
    >>> emb = CARLEmbedder(max_epochs=3, validation_fraction=0.2).fit(texts, va)  # doctest: +SKIP
    >>> fig = learning_curves(emb)  # doctest: +SKIP
    """
    from sklearn.exceptions import NotFittedError

    if not getattr(estimator, "history_", None):
        raise NotFittedError(f"This {type(estimator).__name__} has no training history yet; call 'fit' before "
                             "plotting its learning curves.")
    plt = _pyplot()
    history = estimator.history_
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    else:
        fig = ax.figure
    epochs = [record.get("epoch", k + 1) for k, record in enumerate(history)]
    keys = [k for k in ("loss", "contrastive_loss", "detection_loss", "task_loss")
            if any(k in record for record in history)]
    for key in keys:
        values = [record.get(key, np.nan) for record in history]
        ax.plot(epochs, values, marker="o", lw=2.2 if key == "loss" else 1.2,
                label="total loss (train)" if key == "loss" else key.replace("_", " ") + " (train)")
    if any("validation_loss" in record for record in history):
        ax.plot(epochs, [record.get("validation_loss", np.nan) for record in history], marker="s", ls="--",
                color="black", label="validation loss")
    best = getattr(estimator, "best_epoch_", None)
    if best is not None and len(history) > 1:
        ax.axvline(best, color="0.5", ls=":", lw=1, label=f"kept epoch ({best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_xticks(epochs)
    ax.legend(frameon=False, fontsize=9)
    ax.set_title(f"{type(estimator).__name__} training")
    return fig
