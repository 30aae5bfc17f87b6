from importlib import resources

import pandas as pd


def load_affect_demo() -> pd.DataFrame:
    """The affect demo corpus that ships with skcarl.

    Short English sentences written for skcarl, each rated for valence and arousal on the 1–9 SAM
    scales (1 = very unpleasant / very calm, 9 = very pleasant / very excited). See
    ``skcarl/datasets/data/README.md`` for how it was made and its statistics.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` (str), ``valence`` and ``arousal`` (float).

    Examples
    --------
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo()
    >>> list(data.columns)
    ['text', 'valence', 'arousal']
    >>> bool(data[["valence", "arousal"]].stack().between(1, 9).all())
    True
    """
    path = resources.files("skcarl.datasets").joinpath("data", "affect_demo.csv")
    with resources.as_file(path) as csv_path:
        return pd.read_csv(csv_path, keep_default_na=False)
