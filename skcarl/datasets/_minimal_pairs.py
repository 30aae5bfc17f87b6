from importlib import resources

import pandas as pd

COLUMNS = ["pair_id", "kind", "operator", "original", "edited", "dv", "da"]
# Integer columns are read as int64 whatever the platform's default integer; text columns take pandas' string default.
INTEGER_COLUMNS = {"pair_id": "int64", "dv": "int64", "da": "int64"}


def load_minimal_pairs() -> pd.DataFrame:
    """The minimal-pairs contrast set that ships with skcarl.

    Pairs of English sentences written for skcarl that differ by a one- or two-word edit. In an ``"affect"``
    pair the edit (a negation, an intensifier, a downtoner, an antonym, an emotion-word swap or a hedge) moves
    valence or arousal in a direction annotated in ``dv`` and ``da``; in a ``"control"`` pair the edit (a
    person's name, a number, a synonym of a neutral word, a neutral noun, an inserted time or place) should
    move neither. A model that is
    sensitive to emotional cues predicts the annotated direction on affect pairs and barely moves its embedding
    on controls. See ``skcarl/datasets/data/minimal_pairs.md`` for how the set was made, the annotation rules
    and its limits.

    Returns
    -------
    pandas.DataFrame
        One row per pair, columns ``pair_id`` (int64, unique, from 0), ``kind`` (``"affect"`` or
        ``"control"``), ``operator``, ``original`` and ``edited`` (str, pandas' default string dtype), ``dv``
        and ``da`` (int64 in {-1, 0, 1}): the expected sign of valence(edited) - valence(original) and of the
        arousal difference; 0 means no change expected (controls) or no confident direction on that dimension
        (affect pairs, which then leave that dimension's direction accuracy).
        A fresh copy on each call.

    Examples
    --------
    >>> from skcarl.datasets import load_minimal_pairs
    >>> pairs = load_minimal_pairs()
    >>> list(pairs.columns)
    ['pair_id', 'kind', 'operator', 'original', 'edited', 'dv', 'da']
    >>> sorted(pairs["kind"].unique())
    ['affect', 'control']
    >>> affect = pairs[pairs["kind"] == "affect"]
    >>> bool(((affect["dv"] != 0) | (affect["da"] != 0)).all())
    True
    """
    path = resources.files("skcarl.datasets").joinpath("data", "minimal_pairs.csv")
    with resources.as_file(path) as csv_path:
        data = pd.read_csv(csv_path, keep_default_na=False, dtype=INTEGER_COLUMNS)
    return data[COLUMNS]
